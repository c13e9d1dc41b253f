#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, mqtt.js, .venv, the Home Assistant venv)
# and run both suites: the main one (tests/) in .venv, then Home Assistant core's (tests/ha/)
# in tests/ha/.venv, which pins its own pytest. Exits non-zero if either fails.
#
#   ./test.sh [pytest options, e.g. -m "not slow and not browser" for the quick subset]
#
# Options go to both runs. Test paths go to the suite they belong to, and only that suite
# runs (./test.sh tests/test_posture.py runs the main suite alone).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
opts=() main_paths=() ha_paths=()
for arg in "$@"; do
    path="${arg%%::*}"
    if [[ "$arg" != -* && -e "$path" ]]; then
        case "$(realpath "$path")/" in
            "$root/tests/ha/"*) ha_paths+=("$arg") ;;
            *) main_paths+=("$arg") ;;
        esac
    else
        opts+=("$arg")
    fi
done
run_main=1 run_ha=1
if [[ ${#main_paths[@]} -gt 0 || ${#ha_paths[@]} -gt 0 ]]; then
    [[ ${#main_paths[@]} -gt 0 ]] || run_main=0
    [[ ${#ha_paths[@]} -gt 0 ]] || run_ha=0
fi

scripts/debian_packages.sh test
# mqtt.js first: it is part of the package that setup_venv.sh installs into .venv.
scripts/fetch_mqttjs.sh
# .venv runs the main suite and, for the Home Assistant suite, the real agent.
scripts/setup_venv.sh .venv --test
if [[ $run_ha -eq 1 ]]; then
    scripts/setup_ha_venv.sh tests/ha/.venv
fi

main_rc=0 ha_rc=0
# The main suite runs on DESKPULSE_TEST_WORKERS (3) pytest-xdist workers, whole files each;
# pass -n yourself (-n 0: one process) to choose otherwise.
workers=()
if [[ " ${opts[*]-} " != *" -n"* && " ${opts[*]-} " != *" --numprocesses"* ]]; then
    workers=(-n "${DESKPULSE_TEST_WORKERS:-3}" --dist loadfile)
fi
if [[ $run_main -eq 1 ]]; then
    .venv/bin/python -m pytest ${workers[@]+"${workers[@]}"} ${opts[@]+"${opts[@]}"} ${main_paths[@]+"${main_paths[@]}"} || main_rc=$?
fi
if [[ $run_ha -eq 1 ]]; then
    echo "--- Home Assistant core (tests/ha, its own venv)"
    tests/ha/.venv/bin/python -m pytest -c tests/ha/pytest.ini --rootdir tests/ha \
        ${opts[@]+"${opts[@]}"} "${ha_paths[@]:-tests/ha}" || ha_rc=$?
    # 5 = every test deselected (e.g. -m "not slow"): not a failure when the main run ran.
    [[ $ha_rc -eq 5 && $run_main -eq 1 && $main_rc -eq 0 ]] && ha_rc=0
fi
if [[ $main_rc -ne 0 ]]; then
    exit "$main_rc"
fi
exit "$ha_rc"
