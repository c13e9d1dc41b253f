"""Calibration: a few seconds of the user's good posture become the personal baseline.

`Calibrator` is a pure collector (readings and times in, progress and a Baseline out): the
median of each metric the view measures replaces its default. One good frame is enough to
calibrate; more frames only make the median steadier.
`BaselineStore` saves the baseline atomically under the data dir and loads it at start;
a missing or corrupt file falls back to the defaults with one warning, never a crash.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .files import write_json_atomic
from .posture import RULES, Baseline, Reading

log = logging.getLogger(__name__)

# A calibration needs the person visible in most frames and holding still.
MIN_PRESENT_FRACTION = 0.7
MAX_HEAD_SPREAD = 0.12  # stdev of head_height and nose_height (fraction of shoulder width)
MAX_TILT_SPREAD = 4.0  # stdev of shoulder tilt, degrees
MAX_NECK_SPREAD = 6.0  # stdev of neck inclination, degrees


class CalibrationFailed(Exception):
    """Why a calibration could not produce a baseline (a message for the user)."""


@dataclass
class Progress:
    stage: str  # collecting | done
    percent: int


class Calibrator:
    """Collects readings for `seconds`, then turns them into a Baseline.

    `defaults` is the baseline the calibration starts from: every metric the view measures
    replaces its default; a metric never measured (hips out of sight) keeps the default.
    """

    def __init__(self, view: str, seconds: float, started: float, defaults: Baseline | None = None) -> None:
        self.view = view
        self.seconds = seconds
        self.started = started
        self.defaults = defaults if defaults is not None else Baseline()
        self.frames = 0
        self.samples: list[dict[str, float]] = []

    def add(self, reading: Reading | None, now: float) -> Progress:
        self.frames += 1
        if reading is not None and reading.metrics:
            self.samples.append(reading.metrics)
        return Progress("collecting", min(99, int(100 * (now - self.started) / self.seconds)))

    def done(self, now: float) -> bool:
        return now - self.started >= self.seconds

    def _values(self, key: str) -> list[float]:
        return [s[key] for s in self.samples if key in s]

    def _spread(self, key: str) -> float:
        values = self._values(key)
        return statistics.pstdev(values) if len(values) > 1 else 0.0

    def result(self, now: float) -> Baseline:
        if not self.samples or len(self.samples) < MIN_PRESENT_FRACTION * max(1, self.frames):
            raise CalibrationFailed("no person visible: sit in front of the camera and try again")
        at = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        if self.view == "front":
            unsteady = (max(self._spread("head_height"), self._spread("nose_height")) > MAX_HEAD_SPREAD
                        or self._spread("shoulder_tilt_deg") > MAX_TILT_SPREAD)
            measured = ("head_height", "nose_height", "torso_height", "shoulder_width", "shoulder_tilt_deg")
        else:
            unsteady = self._spread("neck_deg") > MAX_NECK_SPREAD
            measured = ("neck_deg", "torso_deg", "head_pitch_deg")
        if unsteady:
            raise CalibrationFailed("posture not steady: sit still in your good posture and try again")
        assert {r.metric for r in RULES[self.view]} <= set(measured)
        medians = {k: float(statistics.median(v)) for k in measured if (v := self._values(k))}
        baseline = replace(self.defaults, **medians, calibrated=True, at=at)
        try:
            return Baseline.from_json(baseline.to_json())
        except ValueError:
            raise CalibrationFailed("your head is not above your shoulders: sit upright and try again") from None


class BaselineStore:
    """calibration-<view>.json under the data dir, written atomically."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def path(self, view: str) -> Path:
        return self.data_dir / f"calibration-{view}.json"

    def load(self, view: str) -> Baseline:
        path = self.path(view)
        try:
            return Baseline.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return Baseline()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring calibration file %s (%s); using defaults until you calibrate again", path, exc)
            return Baseline()

    def save(self, view: str, baseline: Baseline) -> None:
        write_json_atomic(self.path(view), baseline.to_json())
