"""What a benchmark needs before it starts: one line naming what is missing, not a traceback.

The benchmarks run in the test venv (.venv as ./test.sh sets it up: scikit-image, Playwright,
paho, MediaPipe), with the tools ./test.sh installs (Debian's mosquitto, node) and mqtt.js
under web/node_modules (scripts/fetch_mqttjs.sh). Call `need(...)` before importing any of it.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parent.parent


def _has_tool(name: str) -> bool:
    return shutil.which(name) is not None or Path("/usr/sbin", name).is_file()


def need(modules: Iterable[str] = (), tools: Iterable[str] = (), mqttjs: bool = False) -> None:
    """Exit 2 with one line if a module, a tool or web/node_modules/mqtt is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    missing += [t for t in tools if not _has_tool(t)]
    if mqttjs and not (ROOT / "web" / "node_modules" / "mqtt").is_dir():
        missing.append("web/node_modules/mqtt")
    if missing:
        script = f"bench/{Path(sys.argv[0]).name}"
        print(f"{script} needs the test venv and its tools ({', '.join(missing)} missing): run ./test.sh "
              f"once (it sets them up), then .venv/bin/python {script}", file=sys.stderr)
        raise SystemExit(2)
