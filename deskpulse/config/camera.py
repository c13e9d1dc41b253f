"""[camera]: where frames come from and how fast they are processed (see pacing.py)."""

from pydantic import Field, field_validator

from .base import Section


class CameraConfig(Section):
    # auto | demo | camera index (0) | device path (/dev/video0) | video file | image file
    # | directory of images | rtsp:// or http(s):// stream URL
    source: str = "auto"
    width: int = Field(640, gt=0, le=4096)
    height: int = Field(480, gt=0, le=4096)
    # The full pose rate: while posture may be changing, calibrating, or (adaptive = false)
    # whenever someone is present.
    fps: float = Field(10.0, gt=0, le=120)
    # true: run pose at steady_fps while someone sits still, and at fps only while something
    # changes (pacing.py). false: always fps while someone is present (the fixed rate).
    adaptive: bool = True
    # The pose rate while someone is present and their posture metrics hold still (never
    # above fps). steady_fps = fps also gives the fixed rate.
    steady_fps: float = Field(2.0, gt=0, le=120)
    # After the last sign of change, stay at fps this long (so the rate doesn't flap).
    active_hold_s: float = Field(1.0, ge=0, le=60)
    # Counts as movement (-> fps): head/nose height or shoulder width changing by this
    # fraction of its value, or the shoulder/neck/torso angle by motion_deg degrees.
    motion_ratio: float = Field(0.10, gt=0, le=1)
    motion_deg: float = Field(6.0, gt=0, le=90)
    # After nobody has been seen for idle_after_s, process only idle_fps frames a second
    # (never above fps), unless a page is streaming or a calibration runs.
    idle_fps: float = Field(2.0, gt=0, le=60)
    idle_after_s: float = Field(10.0, ge=0)
    # No frame for this long counts as a camera fault: reported as disconnected.
    read_timeout_s: float = Field(2.0, gt=0, le=60)
    # Reopen attempts back off exponentially up to this many seconds.
    retry_max_s: float = Field(10.0, gt=0, le=600)

    @field_validator("source")
    @classmethod
    def _source_valid(cls, value: str) -> str:
        from ..sources import parse_source  # local import: sources imports config types

        parse_source(value)  # raises ValueError with a clear message
        return value
