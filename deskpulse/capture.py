"""Capture: one thread that owns the frame source and keeps only the latest frame.

Old frames are worthless, so there is a single slot, never a queue: a frame that the
pipeline did not take before the next one arrived is counted as dropped. A source that
fails to open or read is reported `disconnected` and reopened with exponential backoff;
the thread never exits on a camera fault. While paused the source is released (closed),
not just ignored. Frames are BGR numpy arrays (OpenCV's convention).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from .config import CameraConfig
from .errors import CameraError
from .sources import IMAGE_EXTS, SourceSpec, parse_source
from .worker import ThreadOwner

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    live: bool  # a camera or stream (frames keep coming) rather than a file we loop over
    # A network stream: it arrives whether or not we read, and what we leave waits in the
    # socket, so the next read would be a picture seconds (at the idle rate, minutes) old.
    # Capture drains such a source between the frames it wants (grab).
    stream: bool

    def read(self) -> np.ndarray | None:
        """The next BGR frame, or None on a read failure."""

    def grab(self) -> bool:
        """Take the next frame off a stream without converting it; False on a read failure."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR
    seq: int
    at: float  # time.monotonic() when captured


def _valid(image: object) -> bool:
    return (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            and image.shape[0] >= 16 and image.shape[1] >= 16)


class OpenCVSource:
    """A camera (index or /dev/video*), a video file (looped) or a stream URL."""

    def __init__(self, spec: SourceSpec, cfg: CameraConfig) -> None:
        self.live = spec.kind in ("device", "url")
        self.stream = spec.kind == "url"
        self._loop = spec.kind == "video"
        target = spec.target
        if spec.kind == "device" and isinstance(target, str) and not os.path.exists(target):
            raise CameraError(f"camera {target} does not exist (is it plugged in?)")
        self._cap = cv2.VideoCapture(target)  # type: ignore[arg-type]
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"cannot open {spec.describe()}")
        if spec.kind == "device":
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
            self._cap.set(cv2.CAP_PROP_FPS, cfg.fps)
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    def read(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        if not ok and self._loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        return image if ok else None

    def grab(self) -> bool:
        return bool(self._cap.grab())

    def close(self) -> None:
        self._cap.release()


class ImageSource:
    """One image file, or a directory of images shown one per frame, looped."""

    live = False
    stream = False

    def __init__(self, spec: SourceSpec) -> None:
        path = Path(str(spec.target))
        files = [path] if spec.kind == "image" else sorted(
            p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        self._images = []
        for f in files:
            image = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping unreadable image %s", f)
                continue
            self._images.append(image)
        if not self._images:
            raise CameraError(f"no readable image in {path}")
        self._i = 0

    def read(self) -> np.ndarray | None:
        image = self._images[self._i % len(self._images)]
        self._i += 1
        return image

    def grab(self) -> bool:
        return True

    def close(self) -> None:
        pass


class DemoSource:
    """The built-in scene (demo.py), timed from when the source was opened."""

    live = False
    stream = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        from .demo import DemoScene

        self._scene = DemoScene()
        self._clock = clock
        self._t0 = clock()

    def read(self) -> np.ndarray | None:
        return self._scene.frame(self._clock() - self._t0)

    def grab(self) -> bool:
        return True

    def close(self) -> None:
        pass


def resolve_auto(spec: SourceSpec) -> SourceSpec:
    """"auto": the first camera if one exists, else the demo scene."""
    if spec.kind != "auto":
        return spec
    cams = sorted(Path("/dev").glob("video[0-9]*"))
    return SourceSpec("device", str(cams[0])) if cams else SourceSpec("demo")


def open_source(spec: SourceSpec, cfg: CameraConfig) -> FrameSource:
    """Open a source; raises CameraError with a clear message."""
    if spec.kind == "demo":
        return DemoSource()
    if spec.kind in ("image", "images"):
        return ImageSource(spec)
    return OpenCVSource(spec, cfg)


Opener = Callable[[], FrameSource]


class Capture(ThreadOwner):
    """Owns the capture thread, the source and the latest-frame slot."""

    thread_name = "deskpulse-capture"

    def __init__(self, cfg: CameraConfig, opener: Opener | None = None, source: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.spec = resolve_auto(parse_source(source or cfg.source))
        self._opener = opener or (lambda: open_source(self.spec, cfg))
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._taken_seq = 0
        self._seq = 0
        self._fps = cfg.fps
        self._paused = False
        self.state = "starting"  # starting | ok | disconnected | released
        self.last_error: str | None = None
        self.dropped = 0
        self.opened = 0  # how many times the source was opened (tests, health)
        self._last_frame_at = time.monotonic()

    # --- control -------------------------------------------------------------------
    def _interrupt(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def set_fps(self, fps: float) -> None:
        """The rate frames are wanted at (pacing.py). Takes effect at once: a faster rate
        cuts short the wait for the next frame that the slower one had scheduled."""
        fps = max(0.1, fps)
        if fps != self._fps:
            self._fps = fps
            self._wake.set()

    def pause(self) -> None:
        """Release the camera until resume()."""
        self._paused = True
        self._wake.set()

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    # --- consumer side ---------------------------------------------------------------
    def latest(self, timeout: float) -> Frame | None:
        """The newest frame not yet taken, waiting up to `timeout` seconds (the pipeline)."""
        return self._after(self._taken_seq, timeout, take=True)

    def newer(self, seq: int, timeout: float) -> Frame | None:
        """The newest frame after frame `seq`, waiting up to `timeout` seconds, for a second
        reader (the live stream): it neither takes the frame from the pipeline nor counts
        it as dropped."""
        return self._after(seq, timeout, take=False)

    def _after(self, seq: int, timeout: float, take: bool) -> Frame | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.seq <= seq:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            if take:
                self._taken_seq = self._latest.seq
            return self._latest

    def camera_state(self) -> str:
        """ok / disconnected / released / starting, counting a stalled source as disconnected."""
        if self.state == "ok" and time.monotonic() - self._last_frame_at > self.cfg.read_timeout_s:
            return "disconnected"
        return self.state

    # --- the thread ------------------------------------------------------------------
    def _publish(self, image: np.ndarray) -> None:
        with self._cond:
            if self._latest is not None and self._latest.seq > self._taken_seq:
                self.dropped += 1
            self._seq += 1
            self._latest = Frame(image, self._seq, time.monotonic())
            self._last_frame_at = self._latest.at
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            if self._paused:
                self.state = "released"
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                source = self._opener()
            except CameraError as exc:
                self._fault(str(exc), backoff)
                backoff = min(backoff * 2, self.cfg.retry_max_s)
                continue
            except Exception as exc:  # an unexpected OpenCV error must not kill capture
                self._fault(f"cannot open camera: {exc!r}", backoff)
                backoff = min(backoff * 2, self.cfg.retry_max_s)
                continue
            self.opened += 1
            log.info("camera opened: %s", self.spec.describe())
            try:
                if self._read_loop(source):
                    backoff = 0.5  # it delivered frames: start the backoff over
            finally:
                source.close()
            if self._paused:
                log.info("camera released (paused)")
        self.state = "released" if self._paused else self.state

    def _fault(self, message: str, backoff: float) -> None:
        if self.state != "disconnected" or message != self.last_error:
            log.warning("camera disconnected: %s (retrying in %.1fs)", message, backoff)
        self.state = "disconnected"
        self.last_error = message
        self._wake.wait(backoff)
        self._wake.clear()

    def _grab(self, source: FrameSource) -> bool:
        try:
            return source.grab()
        except Exception as exc:  # OpenCV raises cv2.error on some broken streams
            self.last_error = repr(exc)
            return False

    def _read_loop(self, source: FrameSource) -> bool:
        delivered = False
        last_due = -float("inf")  # when the previous read was due
        earliest = time.monotonic()  # ... and never before the previous read ended
        while not self._stop.is_set() and not self._paused:
            # Wait until a frame is wanted instead of reading (and decoding) frames nobody
            # will use. Cameras are opened with a one-frame buffer, so the next read is fresh.
            # A network stream is drained meanwhile (grab blocks until its next frame arrives),
            # so the read when one is due is the newest picture, not a backlog.
            # The due time is worked out again after every wake-up: set_fps() may have changed it.
            due = max(last_due + 1.0 / self._fps, earliest)
            wait = due - time.monotonic()
            if wait > 0:
                if source.stream:
                    if not self._grab(source):
                        self._fault(self.last_error or "camera returned no frame", 0.5)
                        return delivered
                    continue
                self._wake.wait(wait)
                self._wake.clear()
                continue
            try:
                image = source.read()
            except Exception as exc:  # OpenCV raises cv2.error on some broken streams
                image = None
                self.last_error = repr(exc)
            if not _valid(image):
                self._fault(self.last_error if image is None and self.last_error else "camera returned no frame", 0.5)
                return delivered
            assert image is not None
            if self.state != "ok":
                log.info("camera delivering frames")
            self.state = "ok"
            self.last_error = None
            delivered = True
            self._publish(image)
            last_due, earliest = due, time.monotonic()
        return delivered
