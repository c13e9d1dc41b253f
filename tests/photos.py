"""Real photos of people (scikit-image's public-domain images) written as test sources."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data


def astronaut(path: Path) -> Path:
    """A frontal head-and-shoulders portrait: good posture."""
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def cameraman(path: Path) -> Path:
    """A man bent over a camera, head down, shoulders tilted: bad posture."""
    cv2.imwrite(str(path), np.dstack([data.camera()] * 3))
    return path


def black(path: Path) -> Path:
    cv2.imwrite(str(path), np.zeros((480, 640, 3), np.uint8))
    return path
