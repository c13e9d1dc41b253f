#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, venv, mqtt.js) and run them all.
#
#   ./test.sh [pytest options, e.g. -m "not slow and not browser" for the quick subset]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
scripts/debian_packages.sh test
scripts/setup_venv.sh .venv --test
scripts/fetch_mqttjs.sh >/dev/null
exec .venv/bin/python -m pytest "$@"
