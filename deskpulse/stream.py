"""The live frame stream: JPEGs on .../frame only while someone holds a lease.

Two owners, one job each:
- the leases are the pipeline thread's (set through pipeline commands, expired by
  `active()`); after every change it publishes one number, the monotonic time the last
  lease ends, for the stream thread to read;
- the frames are sent by the stream's own thread ("deskpulse-stream", started and
  stopped here). It takes each new camera frame from capture as it arrives, draws the
  skeleton the pipeline last found (`show()`), encodes and publishes it. So the live view
  keeps `frames.fps` however long pose takes on a frame: on a Pi, or on a busy machine,
  the picture stays smooth and only the skeleton updates less often.

Nothing is encoded unless a lease is live (or frames.mode = always) and the broker is
connected: frames from an outage are worthless, and frames are never retained.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, NamedTuple

from .capture import Capture
from .config import Config
from .overlay import draw, encode_jpeg
from .publisher import Publisher
from .topics import Topics
from .worker import ThreadOwner

log = logging.getLogger(__name__)

MAX_LEASES = 256  # pages holding their own lease at once; beyond that the oldest-ending goes
STALE_POSE_S = 1.0  # a skeleton older than this is not drawn on a newer picture
FRAME_WAIT_S = 0.5  # how long the thread waits for a frame before looking at the lease again


class Shown(NamedTuple):
    """What the pipeline last found, for the overlay."""

    pose: Any  # pose.Pose | None
    posture: str
    at: float  # monotonic time of the frame it was found on


class FrameStream(ThreadOwner):
    thread_name = "deskpulse-stream"

    def __init__(self, config: Config, publisher: Publisher, topics: Topics,
                 capture: Capture | None = None, mono: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.config = config
        self.mono = mono  # the pipeline's monotonic clock: leases are set in it
        self.publisher = publisher
        self.topics = topics
        self.capture = capture
        self.leases: dict[str | None, float] = {}  # viewer (None: pages without an id) -> monotonic end
        self.encoded = 0  # written by the stream thread only
        self.errors = 0
        self._until = -math.inf  # when the last lease ends (written by the pipeline thread only)
        self._shown = Shown(None, "unknown", -math.inf)

    # --- leases: the pipeline thread -----------------------------------------------------
    def set_lease(self, until: float | None, viewer: str | None = None) -> None:
        """Extend `viewer`'s lease to `until` (monotonic); None releases it (without a viewer:
        every lease). Expired leases are forgotten, so the table stays as small as the
        number of pages watching."""
        if until is None:
            if viewer is None:
                self.leases.clear()
            else:
                self.leases.pop(viewer, None)
        else:
            self.leases[viewer] = max(self.leases.get(viewer, 0.0), until)
            if len(self.leases) > MAX_LEASES:
                del self.leases[min(self.leases, key=self.leases.__getitem__)]
        self._publish_until()

    def active(self, mono: float) -> bool:
        """wanted(), and expired leases forgotten (the pipeline thread's part)."""
        expired = [v for v, end in self.leases.items() if end <= mono]
        for viewer in expired:
            del self.leases[viewer]
        if expired:
            self._publish_until()
        return self.wanted(mono)

    def _publish_until(self) -> None:
        self._until = max(self.leases.values(), default=-math.inf)
        self._wake.set()

    def show(self, pose: Any, posture: str, at: float) -> None:
        """The skeleton and posture the pipeline found on the frame captured at `at`."""
        self._shown = Shown(pose, posture, at)

    # --- frames: the stream thread ---------------------------------------------------------
    def wanted(self, mono: float) -> bool:
        """Are frames to be sent at `mono`? (frames.mode, and for on_demand a live lease)"""
        mode = self.config.frames.mode
        return mode == "always" or (mode == "on_demand" and mono < self._until)

    def _run(self) -> None:
        assert self.capture is not None, "the stream needs the capture to take frames from"
        seq, last_sent = 0, -math.inf
        while not self._stop.is_set():
            if not self.wanted(self.mono()):
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            frame = self.capture.newer(seq, FRAME_WAIT_S)
            if frame is None or not self.wanted(self.mono()):  # the lease may have ended meanwhile
                continue
            seq = frame.seq
            frames = self.config.frames
            if frame.at - last_sent < 0.9 / frames.fps:
                continue  # the camera runs faster than the stream (pose wants more frames)
            try:
                if self._send(frame.image, frame.at):
                    last_sent = frame.at
            except Exception:  # a bug must not end the live view for good: log it, count it
                self.errors += 1
                log.exception("live frame failed")

    def _send(self, image: Any, at: float) -> bool:
        if not self.publisher.connected.is_set():
            return False
        frames = self.config.frames
        shown = self._shown
        picture = image
        if frames.overlay:
            pose = shown.pose if abs(at - shown.at) <= STALE_POSE_S else None
            picture = draw(image, pose, shown.posture, self.config.posture.min_visibility)
        jpeg = encode_jpeg(picture, frames.quality)
        self.encoded += 1
        return self.publisher.publish_frame(self.topics.frame, jpeg)
