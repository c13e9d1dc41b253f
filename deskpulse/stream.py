"""The live frame stream: JPEGs on .../frame only while someone holds a lease.

Owned by the pipeline thread (the lease is set through pipeline commands). Encodes
nothing unless a lease is live (or frames.mode = always) and the broker is connected:
frames from an outage are worthless, and frames are never retained.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .overlay import draw, encode_jpeg
from .publisher import Publisher
from .topics import Topics


class FrameStream:
    def __init__(self, config: Config, publisher: Publisher, topics: Topics) -> None:
        self.config = config
        self.publisher = publisher
        self.topics = topics
        self.lease_until = 0.0  # monotonic
        self.encoded = 0
        self._last_sent = -1e9

    def set_lease(self, until: float | None) -> None:
        """Extend the lease to `until` (monotonic); None releases it."""
        self.lease_until = 0.0 if until is None else max(self.lease_until, until)

    def active(self, mono: float) -> bool:
        mode = self.config.frames.mode
        return mode == "always" or (mode == "on_demand" and mono < self.lease_until)

    def maybe_send(self, image: Any, pose: Any, posture: str, mono: float) -> None:
        frames = self.config.frames
        if not self.active(mono) or mono - self._last_sent < 1.0 / frames.fps * 0.9:
            return
        if not self.publisher.connected.is_set():
            return
        picture = draw(image, pose, posture, self.config.posture.min_visibility) if frames.overlay else image
        jpeg = encode_jpeg(picture, frames.quality)
        self.encoded += 1
        if self.publisher.publish_frame(self.topics.frame, jpeg):
            self._last_sent = mono
