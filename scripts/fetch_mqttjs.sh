#!/usr/bin/env bash
# Installs the pinned mqtt.js (web/package-lock.json) and copies its browser bundle to
# web/static/vendor/, from where the Pi serves it: the page never loads it from a CDN.
# Run at install/CI time, never at run time. Safe to run again.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
web="$root/web"
bundle="$web/node_modules/mqtt/dist/mqtt.min.js"
vendor="$web/static/vendor"
target="$vendor/mqtt.min.js"

if ! command -v npm >/dev/null 2>&1; then
    echo "fetch_mqttjs: npm is not installed (apt-get install npm)" >&2
    exit 1
fi

# npm ci installs exactly what the lockfile pins, checked against its integrity hashes.
npm ci --prefix "$web" --omit=dev --ignore-scripts --no-audit --no-fund

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
version="$(node -p "require('$web/node_modules/mqtt/package.json').version" 2>/dev/null || echo unknown)"
echo "fetch_mqttjs: mqtt.js $version -> ${target#"$root"/}"
