#!/usr/bin/env bash
# Quick start: set up this checkout and run the agent and the dashboard in one process.
#
#   ./run.sh [deskpulse run options, e.g. --source demo | --source /dev/video0 | --broker mqtt://host:1883]
#
# No camera: the built-in demo scene. No broker on 127.0.0.1:1883: an embedded one.
# The dashboard is then at http://localhost:8080/ . For a locked-down install as services,
# use ./install.sh instead (docs/install.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
scripts/debian_packages.sh run
scripts/setup_venv.sh .venv
scripts/fetch_mqttjs.sh >/dev/null
exec .venv/bin/deskpulse up --config "${DESKPULSE_CONFIG:-config/deskpulse.toml}" "$@"
