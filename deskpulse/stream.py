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


MAX_LEASES = 256  # pages holding their own lease at once; beyond that the oldest-ending goes


class FrameStream:
    def __init__(self, config: Config, publisher: Publisher, topics: Topics) -> None:
        self.config = config
        self.publisher = publisher
        self.topics = topics
        self.leases: dict[str | None, float] = {}  # viewer (None: pages without an id) -> monotonic end
        self.encoded = 0
        self._last_sent = -1e9

    def set_lease(self, until: float | None, viewer: str | None = None) -> None:
        """Extend `viewer`'s lease to `until` (monotonic); None releases it (without a viewer:
        every lease). Expired leases are forgotten, so the table stays as small as the
        number of pages watching."""
        if until is None:
            if viewer is None:
                self.leases.clear()
            else:
                self.leases.pop(viewer, None)
            return
        self.leases[viewer] = max(self.leases.get(viewer, 0.0), until)
        if len(self.leases) > MAX_LEASES:
            del self.leases[min(self.leases, key=self.leases.__getitem__)]

    def active(self, mono: float) -> bool:
        mode = self.config.frames.mode
        if mode == "always":
            return True
        if mode != "on_demand":
            return False
        for viewer in [v for v, end in self.leases.items() if end <= mono]:
            del self.leases[viewer]
        return bool(self.leases)

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
