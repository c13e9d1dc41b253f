"""Real photos for the presence tests and bench: people, empty scenes, letterboxing.

scikit-image's public-domain photos, all shipped with the package (no download). People:
the astronaut (frontal) and the cameraman (bent over his camera). Empty scenes: a coffee
cup, a cat, a wall clock, a rocket. After a few frames of a person, MediaPipe's pose
tracker holds on to a ghost on the cup, the cat and the clock (ARCHITECTURE.md
constraint 6); the rocket usually lets it go, so it checks the ordinary path.
All images are RGB uint8, C-contiguous.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from skimage import data

WIDTH, HEIGHT = 640, 480


def rgb(image: np.ndarray) -> np.ndarray:
    out = np.dstack([image] * 3) if image.ndim == 2 else image[:, :, :3]
    return np.ascontiguousarray(out, dtype=np.uint8)


def letterbox(image: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Scaled to fit width x height, centred on black bars (what a 4:3 camera frame looks like)."""
    scale = min(width / image.shape[1], height / image.shape[0])
    fitted = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - fitted.shape[0]) // 2, (width - fitted.shape[1]) // 2
    out[y:y + fitted.shape[0], x:x + fitted.shape[1]] = fitted
    return out


def flipped(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


# People whom MediaPipe's pose model finds at native size and letterboxed. The cameraman
# letterboxed into 640x480 is too small for its detector, so the letterboxed set uses the
# astronaut, mirrored and cropped closer, as further "people".
PEOPLE_NATIVE: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": lambda: rgb(data.astronaut()),
    "cameraman": lambda: rgb(data.camera()),
    "astronaut-mirrored": lambda: flipped(rgb(data.astronaut())),
    "cameraman-mirrored": lambda: flipped(rgb(data.camera())),
}
PEOPLE_LETTERBOXED: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": lambda: letterbox(rgb(data.astronaut())),
    "astronaut-mirrored": lambda: letterbox(flipped(rgb(data.astronaut()))),
    "astronaut-close": lambda: letterbox(rgb(data.astronaut())[0:400, 50:500]),
    "astronaut-close-mirrored": lambda: letterbox(flipped(rgb(data.astronaut())[0:400, 50:500])),
}
EMPTY: dict[str, Callable[[], np.ndarray]] = {
    "coffee": lambda: rgb(data.coffee()),
    "cat": lambda: rgb(data.chelsea()),
    "clock": lambda: rgb(data.clock()),
    "rocket": lambda: rgb(data.rocket()),
}


def alternating(letterboxed: bool) -> list[tuple[str, np.ndarray, bool]]:
    """(name, image, is_person) for person, empty, person, empty, ...: four different pairs."""
    people = PEOPLE_LETTERBOXED if letterboxed else PEOPLE_NATIVE
    fit = letterbox if letterboxed else (lambda image: image)
    out: list[tuple[str, np.ndarray, bool]] = []
    for (person, make_person), (empty, make_empty) in zip(people.items(), EMPTY.items()):
        out.append((person, make_person(), True))
        out.append((empty, fit(make_empty()), False))
    return out


def with_noise(image: np.ndarray, seed: int, sigma: float = 2.0) -> np.ndarray:
    """The image with a camera sensor's noise: a still person is never pixel-identical."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)
