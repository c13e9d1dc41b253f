#!/usr/bin/env bash
# Installs the Debian packages a DeskPulse checkout needs, if the tools are missing.
#
#   scripts/debian_packages.sh run|test
#
# run:  python3-venv, npm (to fetch the pinned mqtt.js once). No broker is needed: the
#       agent embeds one when none answers.
# test: also mosquitto + clients (ACL, websockets and fault tests run the real Debian
#       broker), chromium (the page is tested in a real headless browser), shellcheck, sqlite3.
# A tool already present by other means (e.g. node/npm from NodeSource) is not reinstalled.
# As root it runs apt-get; otherwise it uses sudo when available, or prints the command. apt's
# output is shown only when it fails.
set -euo pipefail

have() {  # have PACKAGE: is what the package provides already usable?
    case "$1" in
        python3-venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
        npm) command -v npm >/dev/null 2>&1 ;;
        mosquitto) [[ -x /usr/sbin/mosquitto ]] || command -v mosquitto >/dev/null 2>&1 ;;
        mosquitto-clients) command -v mosquitto_sub >/dev/null 2>&1 ;;
        chromium) [[ -x /usr/bin/chromium ]] ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

case "${1:-}" in
    run) pkgs=(python3-venv npm) ;;
    test) pkgs=(python3-venv npm mosquitto mosquitto-clients chromium shellcheck sqlite3) ;;
    *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    have "$p" || missing+=("$p")
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
quiet() {  # quiet CMD...: run CMD, its output shown only if it fails
    local out
    if ! out="$("$@" 2>&1 </dev/null)"; then
        printf '%s\n' "$out" >&2
        echo "debian_packages: $* failed (above)" >&2
        exit 1
    fi
}
quiet ${sudo[@]+"${sudo[@]}"} apt-get update -qq
quiet ${sudo[@]+"${sudo[@]}"} apt-get install -y -qq --no-install-recommends "${missing[@]}"
