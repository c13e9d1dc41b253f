#!/usr/bin/env bash
# Quick start: set up this checkout and run the agent and the dashboard in one process.
#
#   ./run.sh [deskpulse up options, e.g. --source demo | --source /dev/video0 | --broker mqtt://host:1883]
#
# No camera: the built-in demo scene. No broker on 127.0.0.1:1883: an embedded one.
# The dashboard's address is printed once it is up (http://localhost:8080/ by default). For a
# locked-down install as services, use ./install.sh instead (docs/install.md).
#
# The setup steps say in one line what they do the first time (a few minutes: Debian packages,
# .venv, mqtt.js) and nothing once done; their tools' output is shown only when one fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
scripts/debian_packages.sh run
# mqtt.js first: it is part of the package that setup_venv.sh installs into .venv.
scripts/fetch_mqttjs.sh
scripts/setup_venv.sh .venv
exec .venv/bin/deskpulse up --config "${DESKPULSE_CONFIG:-config/deskpulse.toml}" "$@"
