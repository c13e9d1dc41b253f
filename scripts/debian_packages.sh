#!/usr/bin/env bash
# Installs the Debian packages a DeskPulse checkout needs, if any are missing.
#
#   scripts/debian_packages.sh run|test
#
# run:  python3-venv, npm (to fetch the pinned mqtt.js once).  No broker is needed: the
#       agent embeds one when none answers.
# test: also mosquitto + clients (ACL, websockets and fault tests run the real Debian
#       broker), chromium (the page is tested in a real headless browser), shellcheck, sqlite3.
# As root it runs apt-get; otherwise it uses sudo when available, or prints the command.
set -euo pipefail

case "${1:-}" in
    run) pkgs=(python3-venv python3-dev npm) ;;
    test) pkgs=(python3-venv python3-dev npm mosquitto mosquitto-clients chromium shellcheck sqlite3 procps) ;;
    *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing Debian packages: ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
