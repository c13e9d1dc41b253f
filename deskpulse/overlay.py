"""The pose overlay and JPEG encoding for .../frame and .../snapshot.

Called only when someone wants a picture: with frames off, no JPEG is ever encoded.
Colours follow the colorblind-safe palette (good #10b981, bad #f59e0b, other #6b7280).
"""

from __future__ import annotations

import cv2
import numpy as np

from .pose import SKELETON, Pose

# BGR
COLOURS = {"good": (129, 185, 16), "bad": (11, 158, 245)}
GREY = (128, 114, 107)


def draw(image: np.ndarray, pose: Pose | None, posture: str, min_vis: float = 0.5) -> np.ndarray:
    """A copy of the frame with the skeleton drawn in the posture's colour."""
    out = image.copy()
    if pose is None:
        return out
    colour = COLOURS.get(posture, GREY)
    thick = max(2, out.shape[1] // 240)
    for a, b in SKELETON:
        la, lb = pose[a], pose[b]
        if la.visibility >= min_vis and lb.visibility >= min_vis:
            cv2.line(out, (int(la.x), int(la.y)), (int(lb.x), int(lb.y)), colour, thick, cv2.LINE_AA)
    for a, b in SKELETON:
        for lm in (pose[a], pose[b]):
            if lm.visibility >= min_vis:
                cv2.circle(out, (int(lm.x), int(lm.y)), thick + 2, (255, 255, 255), -1, cv2.LINE_AA)
    return out


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
