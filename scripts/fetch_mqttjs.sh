#!/usr/bin/env bash
# Installs the pinned mqtt.js (web/package-lock.json) and copies its browser bundle to
# web/static/vendor/, from where the Pi serves it: the page never loads it from a CDN.
# Run at install/CI time, never at run time. Safe to run again: when the bundle already
# matches the lockfile it does nothing and needs no network. npm's own output is shown only
# when it fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
web="$root/web"
lock="$web/package-lock.json"
bundle="$web/node_modules/mqtt/dist/mqtt.min.js"
vendor="$web/static/vendor"
target="$vendor/mqtt.min.js"
# Outside web/static (so it is never served nor installed): the lockfile the bundle came from.
stamp="$web/node_modules/.deskpulse-lock-sha256"

lock_hash="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ -s "$target" && -s "$bundle" && -f "$stamp" && "$(cat "$stamp")" == "$lock_hash" ]] &&
    cmp -s "$bundle" "$target"; then
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "fetch_mqttjs: npm is not installed (apt-get install npm)" >&2
    exit 1
fi

# npm ci installs exactly what the lockfile pins, checked against its integrity hashes.
if ! out="$(npm ci --prefix "$web" --omit=dev --ignore-scripts --no-audit --no-fund 2>&1 </dev/null)"; then
    printf '%s\n' "$out" >&2
    echo "fetch_mqttjs: npm ci failed (above)" >&2
    exit 1
fi

if [[ ! -s "$bundle" ]]; then
    echo "fetch_mqttjs: $bundle is missing after npm ci" >&2
    exit 1
fi

mkdir -p "$vendor"
cp "$bundle" "$target.tmp"
mv -f "$target.tmp" "$target"

if [[ ! -s "$target" ]]; then
    echo "fetch_mqttjs: $target was not written" >&2
    exit 1
fi
echo "$lock_hash" >"$stamp"
version="$(node -p "require('$web/node_modules/mqtt/package.json').version" 2>/dev/null || echo unknown)"
echo "fetch_mqttjs: mqtt.js $version -> ${target#"$root"/}"
