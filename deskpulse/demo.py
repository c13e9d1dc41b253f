"""The built-in demo source: a real photo of a person, moved over time.

A scripted, looping scene on a 640x480 canvas: sitting well, slouching (head sinks
towards the shoulders), sitting well, leaning in, tilting, leaving the frame and coming
back. Frames are made from the public-domain astronaut portrait (assets/), so real
MediaPipe runs on every frame and the dashboard shows real state changes with no camera.
The scene is a pure function of the elapsed time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import CameraError

ASSET = Path(__file__).with_name("assets") / "astronaut.jpg"
WIDTH, HEIGHT = 640, 480


@dataclass(frozen=True)
class Segment:
    name: str
    seconds: float


# The scene, in order; ramps of 1.5 s blend between neighbouring poses.
SCENE = (
    Segment("good", 14), Segment("slouch", 12), Segment("good", 8), Segment("lean_in", 10),
    Segment("good", 6), Segment("tilt", 10), Segment("good", 5), Segment("away", 10),
)
SCENE_SECONDS = sum(s.seconds for s in SCENE)
RAMP_S = 1.5


def segment_at(t: float) -> tuple[str, float]:
    """The scene segment at t seconds and how far into it (0..1 ramp-in weight)."""
    t %= SCENE_SECONDS
    for seg in SCENE:
        if t < seg.seconds:
            return seg.name, min(1.0, t / RAMP_S, (seg.seconds - t) / RAMP_S)
        t -= seg.seconds
    return SCENE[-1].name, 0.0


class DemoScene:
    def __init__(self, asset: Path = ASSET) -> None:
        person = cv2.imread(str(asset), cv2.IMREAD_COLOR)
        if person is None:
            raise CameraError(f"demo asset missing or unreadable: {asset}")
        # The portrait fills the canvas height, centred, on a plain wall.
        scale = HEIGHT / person.shape[0]
        self.person = cv2.resize(person, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        self.shoulder_y = int(0.48 * self.person.shape[0])  # just above the shoulder line
        self.neck_top_y = int(0.30 * self.person.shape[0])
        wall = np.linspace(205, 175, HEIGHT, dtype=np.float32)[:, None, None]
        self.background = np.broadcast_to(wall, (HEIGHT, WIDTH, 3)).astype(np.uint8)

    def _slouch(self, img: np.ndarray, amount: float) -> np.ndarray:
        """Sink the head towards the shoulders by squashing the neck (amount 0..1)."""
        h, w = img.shape[:2]
        drop = 0.17 * h * amount
        ys = np.arange(h, dtype=np.float32)
        ramp = np.clip((self.shoulder_y - ys) / (self.shoulder_y - self.neck_top_y), 0, 1)
        src_y = np.clip(ys - drop * ramp, 0, h - 1)
        map_y = np.repeat(src_y[:, None], w, axis=1)
        map_x = np.repeat(np.arange(w, dtype=np.float32)[None, :], h, axis=0)
        return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def frame(self, t: float) -> np.ndarray:
        """The BGR frame at t seconds into the scene."""
        name, weight = segment_at(t)
        person = self.person
        scale, angle, shift_x = 1.0, 0.0, 0.0
        sway = 4.0 * np.sin(t * 0.9)  # a person is never perfectly still
        if name == "slouch":
            person = self._slouch(person, weight)
        elif name == "lean_in":
            scale = 1.0 + 0.8 * weight
        elif name == "tilt":
            angle = -20.0 * weight  # MediaPipe reads ~12-17 degrees of shoulder tilt from it
        elif name == "away":
            shift_x = WIDTH * 1.1 * weight
        ph, pw = person.shape[:2]
        center = (pw / 2, ph * 0.55)
        m = cv2.getRotationMatrix2D(center, angle, scale)
        m[0, 2] += (WIDTH - pw) / 2 + sway + shift_x
        m[1, 2] += (HEIGHT - ph) / 2 + (scale - 1) * ph * 0.25
        canvas = self.background.copy()
        mask = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), m, (WIDTH, HEIGHT))
        warped = cv2.warpAffine(person, m, (WIDTH, HEIGHT))
        canvas[mask > 127] = warped[mask > 127]
        return canvas
