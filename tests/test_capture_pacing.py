"""Capture reads only when a frame is due, and a new rate (pacing.py) takes effect at once."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deskpulse.capture import Capture
from deskpulse.config import CameraConfig
from deskpulse.sources import parse_source


class CountingSource:
    """A real image directory source that counts its reads (every read is a decode on a camera)."""

    live = False
    stream = False

    def __init__(self, path: Path) -> None:
        from deskpulse.capture import ImageSource

        self._inner = ImageSource(parse_source(str(path)))
        self.reads = 0

    def read(self) -> np.ndarray | None:
        self.reads += 1
        return self._inner.read()

    def close(self) -> None:
        self._inner.close()


def images(tmp_path: Path) -> Path:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((48, 64, 3), i * 40, np.uint8))
    return tmp_path


SLOW_FPS = 0.1  # one frame every 10 s


def test_a_faster_rate_cuts_short_the_wait_the_slow_rate_scheduled(tmp_path: Path) -> None:
    source = CountingSource(images(tmp_path))
    cap = Capture(CameraConfig(fps=SLOW_FPS), opener=lambda: source).start()
    try:
        first = cap.latest(timeout=5)
        assert first is not None
        cap.set_fps(10.0)  # e.g. the first frame showed a slouch: pose wants frames now
        second = cap.latest(timeout=9)
        assert second is not None, "the next frame waited for the slow rate's schedule"
        assert second.at - first.at < 1 / SLOW_FPS
    finally:
        cap.stop()


def test_frames_nobody_wants_are_not_read(tmp_path: Path) -> None:
    source = CountingSource(images(tmp_path))
    cap = Capture(CameraConfig(fps=50.0), opener=lambda: source).start()
    try:
        assert cap.latest(timeout=5) is not None
        cap.set_fps(SLOW_FPS)
        taken = cap.latest(timeout=1)  # at most the one frame already scheduled at 50 fps
        reads = source.reads
        # The slow rate's next frame is 10 s away: no read (no decode) happens meanwhile.
        assert cap.latest(timeout=1.5) is None
        assert source.reads == reads
        assert taken is None or taken.seq >= 2
    finally:
        cap.stop()
