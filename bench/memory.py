"""Where the agent's resident memory goes: a step-by-step breakdown in fresh processes.

    .venv/bin/python bench/memory.py [--frames 200] [--repeat 3]

Each variant runs in its own interpreter and reports, after every step, the resident set
(anonymous = heap, file = mapped libraries and the model) and the time the step took:
interpreter start, numpy, OpenCV, the agent's own modules, the mediapipe pose import (through
pose.py's `_load_pose_solution`), the demo scene, the agent's estimator (`MediaPipePose()`:
the pose graph and the presence detectors), the first estimate, then `--frames` more demo
frames. Variants:

- ordinary: `from mediapipe.python.solutions import pose` (pose.py before issue 14)
- light: `deskpulse.mp_import.load_pose_solution()` (no matplotlib, no Tasks API)
- light + MALLOC_ARENA_MAX=2: the same with glibc's malloc arenas capped

Prints figures; asserts nothing. Medians over --repeat runs.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "ordinary": ("ordinary", {}),
    "light": ("light", {}),
    "light, MALLOC_ARENA_MAX=2": ("light", {"MALLOC_ARENA_MAX": "2"}),
}


def status() -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of this process in MiB, and its thread count."""
    out: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
            elif key == "Threads":
                out[key] = int(value)
    return out


def child(mode: str, frames: int) -> None:
    """One variant, in this (fresh) process: print one JSON line per step."""
    sys.path.insert(0, str(ROOT))
    last = T_START

    def step(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        print(json.dumps({"step": name, "ms": (now - last) * 1000, **status()}), flush=True)
        last = time.perf_counter()

    step("interpreter")
    import numpy as np  # noqa: F401

    step("numpy")
    import cv2

    step("opencv")
    import deskpulse.agent  # noqa: F401  (config, pydantic, paho, sqlite, the pipeline)
    import deskpulse.pose as pose

    step("deskpulse modules (pydantic, paho, sqlite...)")
    if mode == "ordinary":
        def ordinary() -> object:
            from mediapipe.python.solutions import pose as solution

            return solution
        pose._load_pose_solution = ordinary  # type: ignore[assignment]
    else:
        from deskpulse.mp_import import load_pose_solution

        pose._load_pose_solution = load_pose_solution  # type: ignore[assignment]
    pose._load_pose_solution()
    step("mediapipe pose import")
    step_modules = len(sys.modules)
    from deskpulse.demo import DemoScene

    scene = DemoScene()
    first = cv2.cvtColor(scene.frame(0.0), cv2.COLOR_BGR2RGB)
    step("demo scene (the demo source only)")
    estimator = pose.MediaPipePose()
    step("MediaPipePose() (pose graph + presence detectors, run once)")
    estimator.estimate(first)
    step("first estimate()")
    for i in range(1, frames + 1):
        estimator.estimate(cv2.cvtColor(scene.frame(i * 0.1), cv2.COLOR_BGR2RGB))
    step(f"{frames} more frames")
    print(json.dumps({"step": "modules", "count": step_modules,
                      "matplotlib": "matplotlib" in sys.modules,
                      "tasks": "mediapipe.tasks" in sys.modules}), flush=True)
    estimator.close()


def run_variant(mode: str, env: dict[str, str], frames: int) -> tuple[list[dict[str, float]], dict[str, object]]:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode, "--frames", str(frames)],
                         env=clean | env | {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"},
                         capture_output=True, text=True, check=True, cwd=ROOT)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return [x for x in lines if "ms" in x], next(x for x in lines if x["step"] == "modules")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", choices=["ordinary", "light"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.frames)
        return
    results: dict[str, list[list[dict[str, float]]]] = {name: [] for name in VARIANTS}
    modules: dict[str, dict[str, object]] = {}
    for _ in range(a.repeat):  # interleaved, so machine load hits every variant alike
        for name, (mode, env) in VARIANTS.items():
            steps, modules[name] = run_variant(mode, env, a.frames)
            results[name].append(steps)
    print(f"\n## Resident memory, step by step (MiB; medians of {a.repeat} fresh processes; "
          f"{sys.platform}, {os.uname().machine})\n")
    for name, runs in results.items():
        m = modules[name]
        print(f"### {name}: {m['count']} modules after the import; matplotlib loaded: {m['matplotlib']}; "
              f"Tasks API loaded: {m['tasks']}\n")
        print("| step | step ms | RSS | anonymous | file-backed | threads |\n|---|---|---|---|---|---|")
        for i, first in enumerate(runs[0]):
            med = {k: statistics.median(r[i][k] for r in runs) for k in ("ms", "VmRSS", "RssAnon", "RssFile", "Threads")}
            print(f"| {first['step']} | {med['ms']:.0f} | {med['VmRSS']:.1f} | {med['RssAnon']:.1f} | "
                  f"{med['RssFile']:.1f} | {med['Threads']:.0f} |")
        print()
    first_name = next(iter(results))
    base = results[first_name]
    for name, runs in results.items():
        if name == first_name:
            continue
        d_rss = statistics.median(r[-1]["VmRSS"] for r in runs) - statistics.median(r[-1]["VmRSS"] for r in base)
        d_ms = (statistics.median(sum(s["ms"] for s in r[:-1]) for r in runs)
                - statistics.median(sum(s["ms"] for s in r[:-1]) for r in base))
        print(f"- {name} vs {first_name}: RSS at the end {d_rss:+.1f} MiB; start-up to the first "
              f"estimate {d_ms:+.0f} ms")


if __name__ == "__main__":
    main()
