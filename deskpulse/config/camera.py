"""[camera]: where frames come from and how fast they are processed."""

from pydantic import Field, field_validator

from .base import Section


class CameraConfig(Section):
    # auto | demo | camera index (0) | device path (/dev/video0) | video file | image file
    # | directory of images | rtsp:// or http(s):// stream URL
    source: str = "auto"
    width: int = Field(640, gt=0, le=4096)
    height: int = Field(480, gt=0, le=4096)
    fps: float = Field(10.0, gt=0, le=120)
    # After nobody has been seen for idle_after_s, process only idle_fps frames a second.
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
