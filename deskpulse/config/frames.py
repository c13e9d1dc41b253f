"""[frames]: the JPEG stream with the pose overlay on .../frame."""

from typing import Literal

from pydantic import Field

from .base import Section


class FramesConfig(Section):
    # on_demand: only while a viewer holds a lease (request/stream); always; never.
    mode: Literal["on_demand", "always", "never"] = "on_demand"
    quality: int = Field(70, ge=10, le=100)
    # A lease from request/stream lasts this long unless renewed.
    lease_s: float = Field(30.0, gt=0, le=3600)
    # Frames per second sent while streaming (never more than camera.fps).
    fps: float = Field(10.0, gt=0, le=60)
    overlay: bool = True
