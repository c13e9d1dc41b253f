"""Capture: the latest-frame slot, paced files, fault reporting and recovery with backoff."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from deskpulse.capture import Capture, ImageSource, open_source, resolve_auto
from deskpulse.config import CameraConfig
from deskpulse.errors import CameraError
from deskpulse.sources import SourceSpec, parse_source

from .mjpeg import MjpegServer, jpeg_of
from .support import wait_until


def images_dir(tmp_path: Path, n: int = 3) -> Path:
    for i in range(n):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((48, 64, 3), i * 40, np.uint8))
    return tmp_path


@pytest.mark.parametrize("text,kind", [
    ("auto", "auto"), ("demo", "demo"), ("0", "device"), ("/dev/video0", "device"),
    ("rtsp://cam/stream", "url"), ("http://cam/mjpg", "url"),
])
def test_parse_source_kinds(text: str, kind: str) -> None:
    assert parse_source(text).kind == kind


def test_parse_source_files(tmp_path: Path) -> None:
    d = images_dir(tmp_path)
    assert parse_source(str(d)).kind == "images"
    assert parse_source(str(d / "0.png")).kind == "image"
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert parse_source(str(tmp_path / "clip.mp4")).kind == "video"


@pytest.mark.parametrize("text,msg", [
    ("", "empty source"), ("ftp://x", "unsupported URL scheme"), ("/no/such/file.mp4", "no such file"),
])
def test_parse_source_errors(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_source(text)


def test_empty_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no images"):
        parse_source(str(tmp_path))


def test_missing_device_raises_camera_error() -> None:
    with pytest.raises(CameraError, match="does not exist"):
        open_source(SourceSpec("device", "/dev/video97"), CameraConfig())


def test_auto_without_camera_is_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(()))
    assert resolve_auto(SourceSpec("auto")).kind == "demo"


def test_directory_loops_through_images(tmp_path: Path) -> None:
    src = ImageSource(parse_source(str(images_dir(tmp_path))))
    means = [int(src.read().mean()) for _ in range(6)]  # type: ignore[union-attr]
    assert means == [0, 40, 80, 0, 40, 80]


def test_latest_slot_keeps_only_the_newest_and_counts_drops(tmp_path: Path) -> None:
    cap = Capture(CameraConfig(fps=50), source=str(images_dir(tmp_path))).start()
    try:
        first = cap.latest(timeout=5)
        assert first is not None
        wait_until(lambda: cap.dropped >= 3)  # nobody took frames: they were overwritten
        newest = cap.latest(timeout=5)
        assert newest is not None and newest.seq > first.seq + 3
        assert cap.latest(timeout=0.05) is None or cap.latest(timeout=5) is not None
    finally:
        cap.stop()
    assert not cap.alive()


class FlakySource:
    """Delivers `good` frames, then fails reads; the opener fails `down` times before recovery."""

    live = False
    stream = False

    def __init__(self, frames: int) -> None:
        self.left = frames

    def read(self):
        if self.left <= 0:
            return None
        self.left -= 1
        return np.zeros((48, 64, 3), np.uint8)

    def close(self) -> None:
        pass


def test_fault_is_reported_then_recovers_by_itself() -> None:
    opens: list[int] = []
    down = threading.Event()

    def opener():
        opens.append(1)
        if len(opens) == 1:
            return FlakySource(frames=5)
        if len(opens) <= 3:
            down.set()
            raise CameraError("camera unplugged")
        return FlakySource(frames=10_000)

    cap = Capture(CameraConfig(fps=50, retry_max_s=0.5), opener=opener, source="demo").start()
    try:
        wait_until(lambda: cap.state == "ok")
        wait_until(down.is_set)
        # Two failed reopens back off 0.5 s then 1 s: long enough to be seen as disconnected.
        wait_until(lambda: cap.camera_state() == "disconnected" and cap.last_error == "camera unplugged")
        wait_until(lambda: len(opens) >= 4 and cap.state == "ok")
        assert cap.latest(timeout=5) is not None
    finally:
        cap.stop()


def test_stalled_source_counts_as_disconnected() -> None:
    release = threading.Event()

    class Stalls:
        live = True
        stream = False

        def __init__(self) -> None:
            self.n = 0

        def read(self):
            self.n += 1
            if self.n > 3:
                release.wait(10)  # a camera that stops delivering without an error
            return np.zeros((48, 64, 3), np.uint8)

        def close(self) -> None:
            pass

    cap = Capture(CameraConfig(fps=50, read_timeout_s=0.3), opener=Stalls, source="demo").start()
    try:
        wait_until(lambda: cap.state == "ok")
        wait_until(lambda: cap.camera_state() == "disconnected")
    finally:
        release.set()
        cap.stop()


def test_pause_releases_the_source(tmp_path: Path) -> None:
    closed = threading.Event()

    class Tracked(FlakySource):
        def close(self) -> None:
            closed.set()

    cap = Capture(CameraConfig(fps=50), opener=lambda: Tracked(10_000), source="demo").start()
    try:
        wait_until(lambda: cap.state == "ok")
        cap.pause()
        assert closed.wait(5)
        wait_until(lambda: cap.state == "released")
        cap.resume()
        wait_until(lambda: cap.state == "ok")
        assert cap.opened == 2
    finally:
        cap.stop()


def test_a_network_stream_read_slowly_still_gives_the_newest_picture() -> None:
    """An MJPEG camera keeps sending whether or not we read. At the idle rate the agent used
    to leave its frames in the socket, and a person who came back was seen a minute later
    (the backlog of empty frames came first). The stream is drained between wanted frames."""
    black = jpeg_of(np.zeros((120, 160, 3), np.uint8))
    white = jpeg_of(np.full((120, 160, 3), 255, np.uint8))
    cam = MjpegServer(black, fps=30).start()
    cap = Capture(CameraConfig(source=cam.url, fps=10.0, read_timeout_s=5.0))
    cap.set_fps(0.1)  # the idle rate: one frame wanted every 10 s
    cap.start()
    try:
        first = cap.latest(timeout=20)
        assert first is not None and first.image.mean() < 10
        sent = cam.served
        wait_until(lambda: cam.served >= sent + 120, what="4 s of stream nobody wanted")
        cam.show(white)
        cap.set_fps(10.0)  # someone might be there: frames are wanted again, now
        means = []
        for _ in range(3):  # the newest picture, give or take the frame in flight
            frame = cap.latest(timeout=10)
            assert frame is not None
            means.append(frame.image.mean())
            if means[-1] > 245:
                break
        assert means[-1] > 245, f"stale frames after the switch (mean brightness): {means}"
    finally:
        cap.stop()
        cam.stop()
