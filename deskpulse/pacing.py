"""The pose rate policy: how many frames a second pose should look at, and why.

A posture monitor doesn't need ten judgements a second while someone sits still: a slouch
must hold `posture.onset_s` before it counts. So, per processed frame, the pipeline hands
`Pacer.decide()` what it just learned (`FrameFacts`) and gets back the rate for the next
frames (`Pace`):

- `active` (camera.fps): something may be changing, so a change is confirmed at the full
  rate: the metrics moved past camera.motion_ratio / motion_deg since the last steady
  frame, the filter holds a candidate posture that differs from the current one, no person
  was seen on this frame while the state is not yet `absent`, or a calibration runs. It
  stays active for camera.active_hold_s after the last such frame, so it doesn't flap.
- `streaming` (at least frames.fps): a page holds a stream lease, so the live view stays
  smooth; named so whenever the stream alone would keep this rate.
- `steady` (camera.steady_fps): someone is present and nothing changes (or nobody is,
  for less than camera.idle_after_s).
- `idle` (camera.idle_fps): nobody has been seen for camera.idle_after_s.

With camera.adaptive = false it is the fixed rate: camera.fps (at least frames.fps while
streaming), or idle_fps once idle (not while streaming or calibrating). Pure code: time is passed in (monotonic seconds); no
camera, clock or threads of its own. It does not set the capture rate itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, NamedTuple

from .config import CameraConfig, FramesConfig

Mode = Literal["steady", "active", "streaming", "idle"]
MODES: tuple[Mode, ...] = ("steady", "active", "streaming", "idle")

# The classifier's metrics (posture.front_metrics / side_metrics), compared as a fraction
# of their value (heights and widths normalised by the shoulder width or the frame) or in
# degrees. DERIVED ones are these against the baseline: not compared twice. A metric in
# none of the three is ignored (tests/test_pacing.py checks that none is left out).
RATIO_METRICS = ("head_height", "nose_height", "shoulder_width", "torso_height")
ANGLE_METRICS = ("shoulder_tilt_deg", "neck_deg", "torso_deg", "head_pitch_deg")
DERIVED_METRICS = ("head_drop", "lean_in")
RATIO_FLOOR = 0.1  # a ratio near zero moves relative to this, not to itself


@dataclass(frozen=True)
class FrameFacts:
    """What the pipeline knows after one processed frame."""

    now: float  # monotonic seconds
    present: bool  # a person was seen on this frame (the reading was not None)
    metrics: Mapping[str, float] | None  # this frame's posture metrics; None when not measurable
    posture: str  # the filtered posture after this frame: good | bad | unknown | absent
    pending: str | None = None  # the filter's candidate posture still waiting out its delay
    streaming: bool = False  # a stream lease is held (or frames.mode = always)
    calibrating: bool = False


class Pace(NamedTuple):
    """The rate in force and why."""

    fps: float
    mode: Mode

    def health(self) -> dict[str, float | str]:
        """The health (and state) payload fields."""
        return {"pose_fps": round(self.fps, 2), "mode": self.mode}


class Pacer:
    """Decides the pose rate frame by frame. `camera` and `frames` may be replaced at run time."""

    def __init__(self, camera: CameraConfig, frames: FramesConfig) -> None:
        self.camera = camera
        self.frames = frames
        self.reset()

    def reset(self) -> Pace:
        """Forget what was seen (after a pause or a camera fault): full rate until judged."""
        self._anchor: dict[str, float] | None = None  # metrics when last seen moving (or first seen)
        self._active_until = -math.inf
        self._absent_since: float | None = None
        self.pace = Pace(self.camera.fps, "active")
        return self.pace

    def decide(self, facts: FrameFacts) -> Pace:
        cam = self.camera
        now = facts.now
        if facts.posture == "absent":
            self._absent_since = now if self._absent_since is None else self._absent_since
        else:
            self._absent_since = None
        idle = self._absent_since is not None and now - self._absent_since >= cam.idle_after_s
        moved = self._moved(facts.metrics)
        if cam.adaptive:
            changing = (moved or facts.calibrating
                        or (facts.pending is not None and facts.pending != facts.posture)
                        or (not facts.present and facts.posture != "absent"))
            if changing:
                self._active_until = max(self._active_until, now + cam.active_hold_s)
            if changing or now < self._active_until:
                base = Pace(cam.fps, "active")
            elif idle:
                base = Pace(min(cam.idle_fps, cam.fps), "idle")
            else:
                base = Pace(min(cam.steady_fps, cam.fps), "steady")
        elif idle and not facts.calibrating:
            base = Pace(min(cam.idle_fps, cam.fps), "idle")
        else:
            base = Pace(cam.fps, "active")
        if facts.streaming:
            floor = self.frames.fps if cam.adaptive else max(cam.fps, self.frames.fps)
            if floor >= base.fps:
                base = Pace(floor, "streaming")
        self.pace = base
        return base

    def _moved(self, metrics: Mapping[str, float] | None) -> bool:
        """Did the metrics move past the threshold since the anchor? Re-anchors when they did.

        Comparing with the anchor (not the previous frame) catches a slow drift too, at any
        frame rate. No measurable metrics clears the anchor, so the next ones count as a move.
        """
        if not metrics:
            self._anchor = None
            return False
        current = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        anchor = self._anchor
        if anchor is None:
            self._anchor = current
            return True
        cam = self.camera
        moved = any(
            abs(current[k] - anchor[k]) > cam.motion_ratio * max(abs(anchor[k]), RATIO_FLOOR)
            for k in RATIO_METRICS if k in current and k in anchor
        ) or any(
            abs(current[k] - anchor[k]) > cam.motion_deg
            for k in ANGLE_METRICS if k in current and k in anchor
        )
        if moved:
            self._anchor = current
        else:  # a metric that just became measurable (a hip in view) is a reference, not a move
            self._anchor = current | anchor
        return moved
