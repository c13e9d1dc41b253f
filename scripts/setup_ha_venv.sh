#!/usr/bin/env bash
# Creates or updates the Home Assistant test venv: Home Assistant core 2024.3 and
# pytest-homeassistant-custom-component, pinned in tests/ha/requirements.txt.
#
#   scripts/setup_ha_venv.sh VENV        (./test.sh uses tests/ha/.venv)
#
# It is separate from .venv because it pins its own pytest, pydantic 1 and numpy. The 108
# pinned packages are installed by uv (pinned below, installed into the venv by pip): pip
# resolves one package at a time and took 6 minutes here, uv about one. Safe to run again: a
# stamp in the venv records the hash of the requirements, so a second run does nothing, prints
# nothing and needs no network. The installers' output is shown only when they fail.
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "usage: $0 VENV" >&2
    exit 2
fi
venv="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
reqs="$root/tests/ha/requirements.txt"
python="${PYTHON:-python3}"
stamp="$venv/.deskpulse-ha-stamp"
uv_pin="uv==0.13.8"

quiet() {  # quiet CMD...: run CMD, its output shown only if it fails
    local out
    if ! out="$("$@" 2>&1 </dev/null)"; then
        printf '%s\n' "$out" >&2
        echo "setup_ha_venv: $* failed (above)" >&2
        exit 1
    fi
}

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup_ha_venv: creating $venv"
    "$python" -m venv "$venv" </dev/null
fi
vpy="$venv/bin/python"
want="py$("$vpy" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')-$uv_pin-$(sha256sum <"$reqs" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

echo "setup_ha_venv: installing Home Assistant core and its pytest plugin (tests/ha/requirements.txt)"
quiet "$vpy" -m pip install --disable-pip-version-check --no-input --quiet "$uv_pin"
quiet "$venv/bin/uv" pip install --quiet --python "$vpy" --no-deps -r "$reqs"

# The plugin's hass fixture reads testing_config/configuration.yaml inside its own package,
# which the wheel does not ship.
config_dir="$("$vpy" -c 'import os, pytest_homeassistant_custom_component as p; print(os.path.join(os.path.dirname(p.__file__), "testing_config"))')"
mkdir -p "$config_dir"
[[ -f "$config_dir/configuration.yaml" ]] || : >"$config_dir/configuration.yaml"

echo "$want" >"$stamp.tmp"
mv -f "$stamp.tmp" "$stamp"
