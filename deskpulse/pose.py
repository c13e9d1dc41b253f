"""The pose model boundary: frames in, body landmarks out.

Only this module imports mediapipe. It uses the legacy `solutions.pose` with
model_complexity=1, the one whose model ships inside the mediapipe 0.10.18 wheel, so it
works offline (complexity 0/2 and the Tasks API download models at run time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import DeskPulseError

log = logging.getLogger(__name__)

# MediaPipe pose landmark indices used by the classifier and the overlay.
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 2, 5, 7, 8
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
# Connections drawn by the overlay (upper body: what a desk camera sees).
SKELETON = (
    (LEFT_EAR, LEFT_EYE), (LEFT_EYE, NOSE), (NOSE, RIGHT_EYE), (RIGHT_EYE, RIGHT_EAR),
    (LEFT_SHOULDER, RIGHT_SHOULDER), (LEFT_SHOULDER, 13), (13, 15), (RIGHT_SHOULDER, 14), (14, 16),
    (LEFT_SHOULDER, LEFT_HIP), (RIGHT_SHOULDER, RIGHT_HIP), (LEFT_HIP, RIGHT_HIP),
)


@dataclass(frozen=True)
class Landmark:
    x: float  # pixels
    y: float  # pixels
    visibility: float  # 0..1


@dataclass(frozen=True)
class Pose:
    """Landmarks of one person in pixel coordinates of a width x height frame."""

    landmarks: tuple[Landmark, ...]
    width: int
    height: int

    def __getitem__(self, index: int) -> Landmark:
        return self.landmarks[index]


class PoseEstimator(Protocol):
    def estimate(self, rgb: np.ndarray) -> Pose | None:
        """The pose in an RGB frame, or None when no person is found."""

    def close(self) -> None: ...


class PoseModelError(DeskPulseError):
    """The pose model could not be loaded or run."""


class MediaPipePose:
    """MediaPipe's legacy pose solution in video (tracking) mode."""

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> None:
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as exc:  # a broken or missing install: say which package
            raise PoseModelError(f"cannot import mediapipe (pip install mediapipe==0.10.18): {exc}") from None
        try:
            self._pose = mp_pose.Pose(
                static_image_mode=False,
                model_complexity=1,  # the only complexity whose model is bundled in the wheel
                smooth_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
        except Exception as exc:  # mediapipe raises RuntimeError/FileNotFoundError for model problems
            raise PoseModelError(f"cannot load the MediaPipe pose model: {exc}") from None

    def estimate(self, rgb: np.ndarray) -> Pose | None:
        height, width = rgb.shape[:2]
        result = self._pose.process(rgb)
        if result.pose_landmarks is None:
            return None
        marks = tuple(
            Landmark(lm.x * width, lm.y * height, float(lm.visibility))
            for lm in result.pose_landmarks.landmark
        )
        return Pose(marks, width, height)

    def close(self) -> None:
        self._pose.close()
