"""The scripted scene of bench/cpu.py: known change times, played by the real agent's demo source.

Timeline (seconds after the start, scaled by duration/120 for short runs):
good -> bad posture at 20 -> good at 50 -> away at 80 -> back (good) at 100 -> end at 120.
The bad posture is one of the demo's segments: `tilt` by default, drawn at 1.5x the demo's
own angle (21 degrees: well past the 10-degree margin, also over a calibrated baseline, so no
frame of it reads good), or `slouch` / `lean_in`, as long as the classifier of the day
judges them bad.

The agent runs unchanged (`python -m deskpulse run --source demo`); bench/cpu.py puts a
generated `sitecustomize.py` on its PYTHONPATH that calls `install()` here. That swaps only
`deskpulse.demo.segment_at`, the demo's segment lookup, for this timeline read from the
wall clock: the demo's own building blocks (the astronaut, the slouch warp, leaving the
frame, the sway) draw every frame, with hard cuts at the change times. The start time is
read from the JSON file named by $DPBENCH_SCENE once the bench writes it; until
then the scene shows good posture. Bench only: nothing here ships in the agent.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "DPBENCH_SCENE"  # not DESKPULSE_*: those are config keys
FULL_S = 120.0
# (seconds into the 120 s scene, segment drawn from then on, the posture it must produce)
# The bad segments and the weight they are drawn at (the demo's own ramps end at 1.0).
BAD_WEIGHTS = {"tilt": 1.5, "slouch": 1.0, "lean_in": 1.0}
BAD_SEGMENTS = tuple(BAD_WEIGHTS)
# (seconds into the 120 s scene, segment drawn from then on ("bad": the chosen bad one),
#  the posture the state must reach)
SCRIPT = ((0.0, "good", "good"), (20.0, "bad", "bad"), (50.0, "good", "good"), (80.0, "away", "absent"),
          (100.0, "good", "good"))
CHANGE_NAMES = {20.0: "to bad", 50.0: "to good", 80.0: "away", 100.0: "back"}


@dataclass(frozen=True)
class Change:
    name: str
    at: float  # seconds after the scene start
    segment: str
    posture: str


def changes(duration: float) -> list[Change]:
    """The scripted changes of a run of `duration` seconds (the 120 s script, scaled)."""
    k = duration / FULL_S
    return [Change(CHANGE_NAMES[t], t * k, seg, posture) for t, seg, posture in SCRIPT if t > 0]


def segment(offset: float, duration: float, bad: str = "tilt") -> str:
    """The segment shown `offset` seconds after the start (before it: good; after the end: the last)."""
    k = duration / FULL_S
    name = "good"
    for t, seg, _ in SCRIPT:
        if offset >= t * k:
            name = bad if seg == "bad" else seg
    return name


def write_start(path: Path, t0: float, duration: float, bad: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"t0": t0, "duration": duration, "bad": bad}))
    os.replace(tmp, path)


def install() -> None:
    """In the agent process: replace the demo's segment lookup with the scripted timeline."""
    path = os.environ.get(ENV)
    if not path:
        return
    import deskpulse.demo as demo

    started: dict[str, Any] = {}
    checked = [0.0]

    def scripted_segment_at(t: float) -> tuple[str, float]:
        if not started and time.monotonic() - checked[0] >= 0.1:
            checked[0] = time.monotonic()
            try:
                started.update(json.loads(Path(path).read_text()))
            except (OSError, ValueError):
                pass
        if not started:
            return "good", 1.0
        name = segment(time.time() - started["t0"], started["duration"], started["bad"])
        return name, BAD_WEIGHTS.get(name, 1.0)

    demo.segment_at = scripted_segment_at
