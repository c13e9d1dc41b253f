"""The posture classifier: landmarks + baseline -> a reading, and the debouncing filter.

Pure code over plain data: no camera, no broker, no clock of its own (time is passed in).
`classify` judges one frame; `PostureFilter` turns the stream of per-frame readings into a
stable posture state with an onset delay, exit hysteresis and absent detection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from .config import PostureConfig
from .pose import (LEFT_EAR, LEFT_HIP, LEFT_SHOULDER, NOSE, RIGHT_EAR, RIGHT_HIP,
                   RIGHT_SHOULDER, Landmark, Pose)

Raw = Literal["good", "bad", "unknown"]


@dataclass(frozen=True)
class Baseline:
    """A person's good posture. The defaults apply until a calibration replaces them."""

    head_height: float = 0.62      # ears above the shoulder line / shoulder width
    nose_height: float = 0.55      # nose above the shoulder line / shoulder width
    shoulder_width: float = 0.38   # shoulder width / frame width (distance to the screen)
    shoulder_tilt_deg: float = 0.0
    neck_deg: float = 15.0         # side view
    torso_deg: float = 2.0         # side view
    calibrated: bool = False
    at: str | None = None          # ISO time of the calibration

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "Baseline":
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        base = cls(**known)  # type: ignore[arg-type]
        for name in ("head_height", "nose_height", "shoulder_width"):
            value = getattr(base, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        return base


@dataclass(frozen=True)
class Reading:
    """The verdict on one frame."""

    posture: Raw
    confidence: float
    metrics: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


def _visible(lm: Landmark, min_vis: float) -> bool:
    return lm.visibility >= min_vis


def _mid(a: Landmark, b: Landmark) -> tuple[float, float]:
    return (a.x + b.x) / 2, (a.y + b.y) / 2


def _angle_from_vertical(lower: Landmark, upper: Landmark) -> float:
    """Degrees between the segment lower->upper and straight up."""
    dx, dy = upper.x - lower.x, lower.y - upper.y  # image y grows downwards
    return math.degrees(math.atan2(abs(dx), dy)) if (dx or dy) else 0.0


def front_metrics(pose: Pose, min_vis: float) -> tuple[dict[str, float], float] | None:
    """Front-view measurements, or None when the needed landmarks are not trustworthy."""
    ls, rs, nose = pose[LEFT_SHOULDER], pose[RIGHT_SHOULDER], pose[NOSE]
    le, re_ = pose[LEFT_EAR], pose[RIGHT_EAR]
    if not (_visible(ls, min_vis) and _visible(rs, min_vis) and _visible(nose, min_vis)):
        return None
    width = math.hypot(ls.x - rs.x, ls.y - rs.y)
    if width < 4:  # pixels: a degenerate detection
        return None
    _, shoulder_y = _mid(ls, rs)
    ears_visible = _visible(le, min_vis) and _visible(re_, min_vis)
    head_y = _mid(le, re_)[1] if ears_visible else nose.y
    used = [ls, rs, nose] + ([le, re_] if ears_visible else [])
    metrics = {
        "head_height": (shoulder_y - head_y) / width,
        "nose_height": (shoulder_y - nose.y) / width,
        "shoulder_tilt_deg": math.degrees(math.atan2(abs(ls.y - rs.y), abs(ls.x - rs.x))),
        "shoulder_width": width / pose.width,
    }
    return metrics, sum(lm.visibility for lm in used) / len(used)


def side_metrics(pose: Pose, min_vis: float) -> tuple[dict[str, float], float] | None:
    """Side-view measurements on the better-visible side, or None."""
    sides = ((LEFT_EAR, LEFT_SHOULDER, LEFT_HIP), (RIGHT_EAR, RIGHT_SHOULDER, RIGHT_HIP))
    ear_i, sh_i, hip_i = max(sides, key=lambda s: sum(pose[i].visibility for i in s))
    ear, sh, hip = pose[ear_i], pose[sh_i], pose[hip_i]
    if not (_visible(ear, min_vis) and _visible(sh, min_vis)):
        return None
    metrics = {"neck_deg": _angle_from_vertical(sh, ear)}
    used = [ear, sh]
    if _visible(hip, min_vis):
        metrics["torso_deg"] = _angle_from_vertical(hip, sh)
        used.append(hip)
    return metrics, sum(lm.visibility for lm in used) / len(used)


def classify(pose: Pose, cfg: PostureConfig, baseline: Baseline) -> Reading:
    """Judge one frame's pose against the baseline. Low visibility gives "unknown"."""
    measured = (front_metrics if cfg.view == "front" else side_metrics)(pose, cfg.min_visibility)
    if measured is None:
        return Reading("unknown", 0.0, {}, ("low_visibility",))
    metrics, confidence = measured
    strict = cfg.sensitivity
    reasons: list[str] = []
    if cfg.view == "front":
        head_drop = 1 - metrics["head_height"] / baseline.head_height
        nose_drop = 1 - metrics["nose_height"] / baseline.nose_height
        lean_in = metrics["shoulder_width"] / baseline.shoulder_width
        tilt = metrics["shoulder_tilt_deg"] - baseline.shoulder_tilt_deg
        metrics.update(head_drop=head_drop, lean_in=lean_in)
        if head_drop > cfg.head_drop / strict:
            reasons.append("head_forward")
        if nose_drop > cfg.head_drop / strict:
            reasons.append("head_down")
        if tilt > cfg.shoulder_tilt_deg / strict:
            reasons.append("shoulder_tilt")
        if lean_in > 1 + (cfg.lean_in - 1) / strict:
            reasons.append("lean_in")
    else:
        if metrics["neck_deg"] > baseline.neck_deg + cfg.neck_deg / strict:
            reasons.append("neck_forward")
        if "torso_deg" in metrics and metrics["torso_deg"] > baseline.torso_deg + cfg.torso_deg / strict:
            reasons.append("torso_lean")
    rounded = {k: round(v, 3) for k, v in metrics.items()}
    return Reading("bad" if reasons else "good", round(confidence, 3), rounded, tuple(reasons))


@dataclass(frozen=True)
class PostureState:
    """The stable posture after filtering."""

    posture: str  # good | bad | unknown | absent
    since: float  # epoch seconds when this posture began
    reading: Reading | None  # the reading of the latest frame (None when absent)
    changed: bool = False  # True on the frame where the posture switched

    def bad_for(self, now: float) -> float:
        return max(0.0, now - self.since) if self.posture == "bad" else 0.0


class PostureFilter:
    """Debounces per-frame readings into a posture state.

    A new posture must persist (`onset_s` for bad and unknown, `exit_s` to leave bad)
    before the state switches; any other candidate in between restarts the wait, so a
    glance at the keyboard never flips the state. `absent_frames` consecutive frames with
    no person give "absent" at once; a person reappearing is "good" at once.
    """

    def __init__(self, cfg: PostureConfig, now: float, initial: str = "unknown") -> None:
        self.cfg = cfg
        self.state = PostureState(initial, now, None)
        self._pending: str | None = None
        self._pending_since = now
        self._no_person = 0

    def reset(self, posture: str, now: float) -> PostureState:
        """Force a posture (used after pause/resume and camera faults)."""
        changed = posture != self.state.posture
        self.state = PostureState(posture, now if changed else self.state.since, None, changed)
        self._pending = None
        self._no_person = 0
        return self.state

    def _delay(self, current: str, candidate: str) -> float:
        if candidate == "bad" or candidate == "unknown":
            return self.cfg.onset_s
        if candidate == "good" and current == "bad":
            return self.cfg.exit_s
        return 0.0

    def update(self, reading: Reading | None, now: float) -> PostureState:
        """Feed one frame's reading (None = no person in the frame)."""
        if reading is None:
            self._no_person += 1
            candidate = "absent" if self._no_person >= self.cfg.absent_frames else self.state.posture
        else:
            self._no_person = 0
            candidate = reading.posture
        current = self.state.posture
        if candidate == current:
            self._pending = None
            self.state = replace(self.state, reading=reading, changed=False)
            return self.state
        if candidate != self._pending:
            self._pending, self._pending_since = candidate, now
        if now - self._pending_since >= self._delay(current, candidate):
            self.state = PostureState(candidate, now, reading, changed=True)
            self._pending = None
        else:
            self.state = replace(self.state, reading=reading, changed=False)
        return self.state
