"""The posture classifier: landmarks + baseline -> a reading of one frame.

Pure code over plain data: no camera, no broker, no clock. `front_metrics` and
`side_metrics` turn landmarks into scale-invariant measurements (ratios of the shoulder
width, angles); `classify` compares them with a `Baseline` through the explicit `RULES`,
each of which yields one reason code the page can explain. The debouncing of per-frame
readings into a stable state lives in posture_filter.py.

The rules, the default baseline and the margins in PostureConfig were chosen on labelled
photos of real people with subject-wise cross-validation: see docs/accuracy.md and
bench/accuracy.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

from .config import PostureConfig
from .pose import (LEFT_EAR, LEFT_HIP, LEFT_SHOULDER, NOSE, RIGHT_EAR, RIGHT_HIP,
                   RIGHT_SHOULDER, Landmark, Pose)

Raw = Literal["good", "bad", "unknown"]


@dataclass(frozen=True)
class Rule:
    """One explainable check: `metric` beyond the baseline's value of it by a margin is bad.

    sign +1: bad when metric > baseline + margin; -1: bad when metric < baseline - margin.
    The margin is the PostureConfig field `margin`, divided by the sensitivity. A `ratio`
    rule compares metric / baseline - 1 with the field's value - 1 (lean_in = 1.2: 20%).
    """

    reason: str
    metric: str  # a key of the view's metrics and a field of Baseline
    sign: Literal[1, -1]
    margin: str  # a PostureConfig field
    ratio: bool = False

    def margin_of(self, cfg: PostureConfig) -> float:
        value = float(getattr(cfg, self.margin))
        return (value - 1 if self.ratio else value) / cfg.sensitivity

    def excess(self, metrics: dict[str, float], baseline: "Baseline") -> float | None:
        """How far the metric lies on the bad side of the baseline (None when not measured)."""
        value = metrics.get(self.metric)
        if value is None:
            return None
        base = float(getattr(baseline, self.metric))
        return self.sign * ((value / base - 1) if self.ratio else (value - base))


RULES: dict[str, tuple[Rule, ...]] = {
    "front": (
        Rule("head_down", "nose_height", -1, "head_drop"),
        Rule("slumped", "torso_height", -1, "torso_drop"),
        Rule("shoulder_tilt", "shoulder_tilt_deg", 1, "shoulder_tilt_deg"),
        Rule("lean_in", "shoulder_width", 1, "lean_in", ratio=True),
    ),
    "side": (
        Rule("neck_forward", "neck_deg", 1, "neck_deg"),
        Rule("torso_lean", "torso_deg", 1, "torso_deg"),
        Rule("reclined", "torso_deg", -1, "recline_deg"),
        Rule("head_down", "head_pitch_deg", 1, "head_pitch_deg"),
    ),
}

# Every reason code `classify` can put in Reading.reasons (and so in state.metrics.reasons).
# The page's hint table and the payload schema are keyed by this tuple.
REASONS: tuple[str, ...] = tuple(dict.fromkeys(
    [r.reason for view in ("front", "side") for r in RULES[view]] + ["low_visibility"]))

# Every key `classify` can put in Reading.metrics (and so in state.metrics), per view. Some
# appear only when measured: torso_height needs both hips, head_pitch_deg the nose.
METRICS: dict[str, tuple[str, ...]] = {
    "front": ("head_height", "nose_height", "shoulder_tilt_deg", "shoulder_width", "torso_height",
              "head_drop", "lean_in"),
    "side": ("neck_deg", "torso_deg", "head_pitch_deg"),
}


@dataclass(frozen=True)
class Baseline:
    """A person's good posture. The defaults apply until a calibration replaces them.

    The defaults are not an average person: they sit where the uncalibrated thresholds
    (default - margin) keep almost every well-seated person in the labelled sample good,
    so a new user is told "bad" only for what is bad for nearly anybody.
    """

    head_height: float = 0.55      # front: ears above the shoulder line / shoulder width (reported)
    nose_height: float = 0.40      # front: nose above the shoulder line / shoulder width
    torso_height: float = 1.50     # front: hips below the shoulder line / shoulder width
    shoulder_width: float = 0.38   # front: shoulder width / frame width (distance to the screen)
    shoulder_tilt_deg: float = 0.0
    neck_deg: float = 15.0         # side: ear ahead of the shoulder, degrees from vertical
    torso_deg: float = -2.0        # side: shoulder ahead of the hip (negative: leaning back)
    head_pitch_deg: float = 20.0   # side: nose below the ear, degrees below horizontal
    calibrated: bool = False
    at: str | None = None          # ISO time of the calibration

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "Baseline":
        """Parse a saved baseline; fields it lacks (older files) take their defaults."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        base = cls(**known)  # type: ignore[arg-type]
        for f in fields(cls):
            if f.type in ("float", float):
                value = getattr(base, f.name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{f.name} must be a number, got {value!r}")
        for name in ("head_height", "nose_height", "shoulder_width"):
            if getattr(base, name) <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(base, name)!r}")
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


def _in_frame(lm: Landmark, pose: Pose) -> bool:
    return 0 <= lm.x <= pose.width and 0 <= lm.y <= pose.height


def _mid(a: Landmark, b: Landmark) -> tuple[float, float]:
    return (a.x + b.x) / 2, (a.y + b.y) / 2


def front_metrics(pose: Pose, min_vis: float) -> tuple[dict[str, float], float] | None:
    """Front-view measurements, or None when the needed landmarks are not trustworthy.

    Heights are measured up from the shoulder line and divided by the shoulder width, so
    they do not depend on the frame size or the distance to the camera.
    """
    ls, rs, nose = pose[LEFT_SHOULDER], pose[RIGHT_SHOULDER], pose[NOSE]
    le, re_ = pose[LEFT_EAR], pose[RIGHT_EAR]
    lh, rh = pose[LEFT_HIP], pose[RIGHT_HIP]
    if not (_visible(ls, min_vis) and _visible(rs, min_vis) and _visible(nose, min_vis)):
        return None
    width = math.hypot(ls.x - rs.x, ls.y - rs.y)
    if width < 4 or width < 0.005 * max(pose.width, pose.height):  # a degenerate detection
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
    # Hips count only when both are seen inside the frame: at a desk they are often hidden,
    # and a model's guess at a hip below the frame edge says nothing about slumping.
    if all(_visible(h, min_vis) and _in_frame(h, pose) for h in (lh, rh)):
        metrics["torso_height"] = (_mid(lh, rh)[1] - shoulder_y) / width
    return metrics, sum(lm.visibility for lm in used) / len(used)


def _side_point(pose: Pose, left: int, right: int, min_vis: float) -> Landmark | None:
    """One point for a left/right pair seen from the side: the visibility-weighted mean."""
    seen = [lm for lm in (pose[left], pose[right]) if _visible(lm, min_vis)]
    if not seen:
        return None
    total = sum(lm.visibility for lm in seen) or 1.0
    return Landmark(sum(lm.x * lm.visibility for lm in seen) / total,
                    sum(lm.y * lm.visibility for lm in seen) / total,
                    max(lm.visibility for lm in seen))


def _inclination(lower: Landmark, upper: Landmark, facing: int) -> float:
    """Degrees between lower->upper and straight up; positive leans towards `facing`.

    facing is +1 (the person faces image right), -1 (left) or 0 (unknown: unsigned).
    """
    dx, dy = upper.x - lower.x, lower.y - upper.y  # image y grows downwards
    if not (dx or dy):
        return 0.0
    return math.degrees(math.atan2(dx * facing if facing else abs(dx), dy))


def side_metrics(pose: Pose, min_vis: float) -> tuple[dict[str, float], float] | None:
    """Side-view measurements, or None.

    neck_deg: the shoulder->ear line from vertical; torso_deg: hip->shoulder from vertical.
    Both are signed by the way the person faces (nose ahead of the ear): positive leans
    forward, a negative torso_deg leans back. Without a visible nose they are unsigned.
    head_pitch_deg: the ear->nose line below horizontal (looking down), when the nose is seen.
    """
    ear = _side_point(pose, LEFT_EAR, RIGHT_EAR, min_vis)
    sh = _side_point(pose, LEFT_SHOULDER, RIGHT_SHOULDER, min_vis)
    if ear is None or sh is None:
        return None
    nose = pose[NOSE]
    facing = 0
    metrics: dict[str, float] = {}
    if _visible(nose, min_vis):
        facing = 1 if nose.x > ear.x else -1 if nose.x < ear.x else 0
        metrics["head_pitch_deg"] = math.degrees(math.atan2(nose.y - ear.y, abs(nose.x - ear.x)))
    metrics["neck_deg"] = _inclination(sh, ear, facing)
    used = [ear, sh]
    hip = _side_point(pose, LEFT_HIP, RIGHT_HIP, min_vis)
    if hip is not None:
        metrics["torso_deg"] = _inclination(hip, sh, facing)
        used.append(hip)
    return metrics, min(1.0, sum(lm.visibility for lm in used) / len(used))


def classify(pose: Pose, cfg: PostureConfig, baseline: Baseline) -> Reading:
    """Judge one frame's pose against the baseline. Low visibility gives "unknown"."""
    measured = (front_metrics if cfg.view == "front" else side_metrics)(pose, cfg.min_visibility)
    if measured is None:
        return Reading("unknown", 0.0, {}, ("low_visibility",))
    metrics, confidence = measured
    reasons: list[str] = []
    for rule in RULES[cfg.view]:
        excess = rule.excess(metrics, baseline)
        if excess is not None and excess > rule.margin_of(cfg):
            reasons.append(rule.reason)
    if cfg.view == "front":
        metrics["head_drop"] = baseline.nose_height - metrics["nose_height"]
        metrics["lean_in"] = metrics["shoulder_width"] / baseline.shoulder_width
    rounded = {k: round(v, 3) for k, v in metrics.items()}
    return Reading("bad" if reasons else "good", round(confidence, 3), rounded, tuple(reasons))
