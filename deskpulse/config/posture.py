"""[posture]: how landmarks become good / bad / unknown / absent."""

from typing import Literal

from pydantic import Field

from .base import Section


class PostureConfig(Section):
    # front: a webcam on the monitor facing the user; side: a camera beside the desk.
    view: Literal["front", "side"] = "front"
    # Multiplies how much deviation counts as bad: 1.5 is stricter, 0.5 more lenient.
    sensitivity: float = Field(1.0, ge=0.25, le=4.0)
    # Landmarks below this visibility are not trusted: the reading becomes "unknown".
    min_visibility: float = Field(0.5, ge=0.0, le=1.0)
    # A new posture must hold this long before the state changes (a glance is not a slouch).
    onset_s: float = Field(3.0, ge=0, le=600)
    # Leaving "bad" needs good posture for this long.
    exit_s: float = Field(2.0, ge=0, le=600)
    # This many consecutive frames with no person give "absent".
    absent_frames: int = Field(5, ge=1, le=1000)
    # Seconds of good posture recorded by a calibration.
    calibration_s: float = Field(5.0, gt=0, le=120)
    # Front view: head (ears) height above the shoulder line may drop by this fraction of
    # the baseline before it counts as head-forward / head-drop.
    head_drop: float = Field(0.25, gt=0, lt=1)
    # Front view: shoulder line tilt in degrees.
    shoulder_tilt_deg: float = Field(10.0, gt=0, le=90)
    # Front view: shoulder width (closeness to the screen) above baseline by this factor.
    lean_in: float = Field(1.20, gt=1, le=3)
    # Side view: ear-shoulder (neck) and shoulder-hip (torso) inclination from vertical may
    # exceed the baseline by this many degrees (uncalibrated baseline: neck 15, torso 2).
    neck_deg: float = Field(25.0, gt=0, le=90)
    torso_deg: float = Field(8.0, gt=0, le=90)
