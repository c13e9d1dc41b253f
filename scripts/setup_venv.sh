#!/usr/bin/env bash
# Creates or updates a Python venv with DeskPulse's pinned dependencies and DeskPulse itself.
#
#   scripts/setup_venv.sh VENV [--test]
#
# requirements/agent.txt is a full pinned closure installed with --no-deps, so that exactly one
# OpenCV (the headless one) ends up installed; see the comment at its top. --test adds
# requirements/test.txt, constrained by the agent pins. Safe to run again: a stamp in the venv
# records hashes of the requirement files and of the project's sources, and each step runs
# only when its hash changed, so a second run does nothing, prints nothing and needs no
# network. pip's own output is shown only when it fails.
#
# Run scripts/fetch_mqttjs.sh first: the vendored mqtt.js is part of the installed package.
set -euo pipefail

usage() {
    echo "usage: $0 VENV [--test]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
venv="$1"
with_test=0
if [[ $# -eq 2 ]]; then
    [[ "$2" == "--test" ]] || usage
    with_test=1
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
stamp="$venv/.deskpulse-stamp"
pip_flags=(--disable-pip-version-check --no-input --quiet)

sha() {
    sha256sum | cut -d' ' -f1
}

pip_quiet() {  # pip_quiet ARGS...: pip install ARGS, its output shown only if it fails
    local out
    if ! out="$("$vpy" -m pip install "${pip_flags[@]}" "$@" 2>&1 </dev/null)"; then
        printf '%s\n' "$out" >&2
        echo "setup_venv: pip install $* failed (above)" >&2
        return 1
    fi
}

# Everything that ends up in the installed package (sources, page assets, the vendored mqtt.js),
# names included, so a rename or a new file also triggers a reinstall.
project_hash() {
    (
        cd "$root"
        local items=() item
        for item in pyproject.toml README.md deskpulse web; do
            [[ -e "$item" ]] && items+=("$item")
        done
        find "${items[@]}" -type f ! -path '*/__pycache__/*' ! -path 'web/node_modules/*' ! -name '*.pyc' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum | sha
    )
}

stamp_get() {
    [[ -f "$stamp" ]] || return 0
    sed -n "s/^$1=//p" "$stamp"
}

stamp_set() {
    local key="$1" value="$2" tmp
    tmp="$(mktemp "$venv/.deskpulse-stamp.XXXXXX")"
    if [[ -f "$stamp" ]]; then
        grep -v "^$key=" "$stamp" >"$tmp" || true
    fi
    echo "$key=$value" >>"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$stamp"
}

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup_venv: creating $venv"
    "$python" -m venv "$venv" </dev/null
fi
vpy="$venv/bin/python"
pyver="$("$vpy" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

deps="py$pyver-$(sha <"$root/requirements/agent.txt")"
if [[ "$(stamp_get deps)" != "$deps" ]]; then
    echo "setup_venv: installing the pinned dependencies (requirements/agent.txt)"
    pip_quiet --no-deps -r "$root/requirements/agent.txt"
    stamp_set deps "$deps"
fi

if [[ $with_test -eq 1 ]]; then
    tests="$deps-$(sha <"$root/requirements/test.txt")"
    if [[ "$(stamp_get tests)" != "$tests" ]]; then
        echo "setup_venv: installing the test dependencies (requirements/test.txt)"
        pip_quiet -c "$root/requirements/agent.txt" -r "$root/requirements/test.txt"
        stamp_set tests "$tests"
    fi
fi

project="$deps-$(project_hash)"
if [[ "$(stamp_get project)" != "$project" ]]; then
    echo "setup_venv: installing deskpulse from $root"
    pip_quiet --no-deps --force-reinstall "$root"
    stamp_set project "$project"
fi

