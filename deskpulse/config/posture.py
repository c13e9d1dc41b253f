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
    # ...or this many seconds of frames with no person (at least two frames), at any pose rate.
    absent_s: float = Field(1.0, ge=0, le=60)
    # Seconds of good posture recorded by a calibration.
    calibration_s: float = Field(5.0, gt=0, le=120)
    # The margins below: how far a measurement may move past the baseline (the defaults until
    # you calibrate, your own good posture after) before it counts as bad. Each is divided by
    # the sensitivity. Chosen by subject-wise cross-validation: docs/accuracy.md.
    # Front view: the nose may sink this far towards the shoulder line, in shoulder widths.
    head_drop: float = Field(0.20, gt=0, lt=1)
    # Front view: the shoulders may sink this far towards the hips (when both hips are seen).
    torso_drop: float = Field(0.40, gt=0, lt=2)
    # Front view: shoulder line tilt in degrees.
    shoulder_tilt_deg: float = Field(9.0, gt=0, le=90)
    # Front view: shoulder width (closeness to the screen) above baseline by this factor.
    lean_in: float = Field(1.20, gt=1, le=3)
    # Side view: the neck (shoulder->ear) may lean forward this many degrees past the baseline,
    # the torso (hip->shoulder) forward by torso_deg and back by recline_deg.
    neck_deg: float = Field(14.0, gt=0, le=90)
    torso_deg: float = Field(10.0, gt=0, le=90)
    recline_deg: float = Field(15.0, gt=0, le=90)
    # Side view: the head may tip down (nose below the ear) this many degrees past the baseline.
    head_pitch_deg: float = Field(35.0, gt=0, le=90)
