"""What a `camera.source` string means: parsing only, no I/O beyond checking paths exist.

Kinds: auto, demo, a camera index or device path, a video file, an image file, a
directory of images, or a stream URL. Device paths may be missing at start (a USB camera
can be plugged in later: the capture retries); files and directories must exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg", ".h264"}
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")

Kind = Literal["auto", "demo", "device", "video", "image", "images", "url"]


@dataclass(frozen=True)
class SourceSpec:
    kind: Kind
    # device: int index or device path; video/image/images: path; url: the URL
    target: int | str | None = None

    @property
    def live(self) -> bool:
        """A live source delivers frames at its own pace; files are paced by us."""
        return self.kind in ("device", "url")

    def describe(self) -> str:
        return self.kind if self.target is None else f"{self.kind} {self.target}"


def parse_source(value: str) -> SourceSpec:
    """Parse a source string. Raises ValueError with a message a user can act on."""
    text = value.strip()
    if not text:
        raise ValueError("empty source; use auto, demo, 0, /dev/video0, a file, a directory or a URL")
    if text in ("auto", "demo"):
        return SourceSpec(text)  # type: ignore[arg-type]
    if text.isdigit():
        return SourceSpec("device", int(text))
    if text.startswith(URL_SCHEMES):
        return SourceSpec("url", text)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text):
        raise ValueError(f"unsupported URL scheme in {text!r} (use rtsp://, http:// or https://)")
    path = Path(text).expanduser()
    if text.startswith("/dev/"):
        return SourceSpec("device", str(path))
    if path.is_dir():
        if not any(p.suffix.lower() in IMAGE_EXTS for p in path.iterdir()):
            raise ValueError(f"directory {text!r} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
        return SourceSpec("images", str(path))
    if not path.exists():
        raise ValueError(f"no such file, directory or device: {text!r}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTS:
        return SourceSpec("image", str(path))
    if suffix in VIDEO_EXTS or path.is_file():
        return SourceSpec("video", str(path))
    raise ValueError(f"{text!r} is neither a file, a directory nor a device")
