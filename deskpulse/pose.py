"""The pose model boundary: frames in, body landmarks of a person who is really there out.

Only this module runs MediaPipe. It uses the legacy `solutions.pose` with
model_complexity=1, the one whose model ships inside the mediapipe 0.10.18 wheel, so it
works offline (complexity 0/2 and the Tasks API download models at run time).

The pose tracker (video mode) can keep a confident skeleton on an empty scene after the
person has left (ARCHITECTURE.md constraint 6). So a tracked pose is believed only as long
as presence.py's schedule allows. When a check is due, MediaPipe's face detector (bundled
too, about a tenth of a pose frame) looks for a face where the landmarks put the head,
then, if there is none, MediaPipe's pose detector looks there. Neither finds the person:
the frame is "nobody" and the tracker is made to let go. docs/presence.md has the
measurements behind the design.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Protocol

import numpy as np

from .errors import DeskPulseError
from .nativelog import native_stderr_to_log
from .presence import Box, PresenceConfig, PresenceGuard, View

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
UPPER_BODY = range(0, 13)  # face and shoulders: what presence compares and checks

# A detection confirms the tracked person when the tracked nose lies in its box grown by
# this fraction of its size on each side (both detectors' boxes frame the face; allow for
# the landmarks' smoothing lag).
MATCH_MARGIN = 0.5
# The pose detector's score needed to *keep* a tracked person (acquiring one needs the
# tracker's min_detection_confidence): hysteresis, and the match by position guards it.
KEEP_SCORE = 0.3


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
        """The pose in an RGB frame, or None when no person is there."""

    def close(self) -> None: ...


class PoseModelError(DeskPulseError):
    """The pose model could not be loaded or run."""


@dataclass
class PresenceStats:
    """What presence did so far (tests and the bench read it)."""

    acquired: int = 0  # the tracker found a person after nobody (its own detector ran)
    checks: int = 0  # tracked frames checked
    by_face: int = 0  # ... confirmed by a face where the landmarks put the head
    by_pose_detector: int = 0  # ... confirmed by the pose detector there (no face found)
    ghosts: int = 0  # ... where neither found the person: reported as nobody


def _load_pose_solution() -> ModuleType:
    """MediaPipe's legacy pose solution module (the one place that imports it), without the
    parts of mediapipe pose never uses (matplotlib among them: see mp_import.py)."""
    from .mp_import import load_pose_solution

    return load_pose_solution()


def detector_graph(subgraph: str, xnnpack: bool = True) -> Any:
    """A graph config running one of MediaPipe's bundled detector subgraphs on an image.

    xnnpack=False runs its model on TensorFlow Lite's own CPU kernels instead: for the pose
    detector about twice the CPU per run, but half the memory (measured: +24 MB instead
    of +50 MB resident), which a check a few times a minute can afford.
    """
    # All loaded with the pose solution already (these imports only look them up).
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2
    from mediapipe.python._framework_bindings import validated_graph_config

    config = text_format.Parse(
        f'input_stream: "image" output_stream: "detections" '
        f'node {{ calculator: "{subgraph}" input_stream: "IMAGE:image" output_stream: "DETECTIONS:detections" }}',
        calculator_pb2.CalculatorGraphConfig())
    if xnnpack:
        return config
    validated = validated_graph_config.ValidatedGraphConfig()
    validated.initialize(graph_config=config)
    expanded = calculator_pb2.CalculatorGraphConfig()
    expanded.ParseFromString(validated.binary_config)  # the subgraph's own nodes, editable
    _tflite_kernels(expanded, "")
    return expanded


def _tflite_kernels(config: Any, prefix: str) -> list[str]:
    """Run the inference nodes whose name starts with prefix on TensorFlow Lite's own CPU
    kernels instead of XNNPACK (which keeps a repacked copy of the weights and its own
    buffers). Returns the nodes changed."""
    from mediapipe.calculators.tensor import inference_calculator_pb2

    changed = []
    for node in config.node:
        if node.calculator.startswith("InferenceCalculator") and node.name.startswith(prefix):
            options = node.options.Extensions[inference_calculator_pb2.InferenceCalculatorOptions.ext]
            options.delegate.Clear()
            options.delegate.tflite.SetInParent()
            changed.append(node.name)
    return changed


def tracker(solution: ModuleType, **kwargs: Any) -> Any:
    """MediaPipe's pose solution (video mode) with its person detector on TFLite's own kernels.

    In video mode the detector runs only while nobody is tracked (and on the first frame with
    someone); the landmark model, which runs on every tracked frame, stays on XNNPACK. That
    saves about 21 MB resident for a slower search while the desk is empty
    (docs/presence.md). SolutionBase expands the graph and then calls
    _modify_calculator_options on it before building it: the one place to change a node.
    """

    class Tracker(solution.Pose):  # type: ignore[misc, name-defined]
        def _modify_calculator_options(self, config: Any, params: Any) -> None:
            self.detector_on_tflite = _tflite_kernels(config, "posedetectioncpu__")
            super()._modify_calculator_options(config, params)

    return Tracker(**kwargs)


# The pose detector (the second look, for when no face is found) is loaded when a check
# needs it and let go once it has not been needed for this long, or at once after it found
# nobody there: a person whose face shows never needs it, and it holds about 20 MB.
BODY_HOLD_S = 30.0


class Detectors:
    """The independent evidence, run only on a check: MediaPipe's face detector, then its
    pose detector (both bundled in the wheel), each looking for the person where the
    tracked landmarks put the head.

    The face detector stays loaded (it settles most checks for about a tenth of a pose
    frame). The pose detector is loaded on the first check the face detector can't settle
    and released when it has not been needed for BODY_HOLD_S, or by `release()` after a
    departure (measured: about 20 MB resident while loaded; loading it adds about 70 ms to
    that check on the development machine; docs/presence.md).
    """

    def __init__(self, solution: ModuleType, face: bool = True) -> None:
        self._solution = solution
        base = solution.SolutionBase
        self._face = base(graph_config=detector_graph("FaceDetectionShortRangeCpu")) if face else None
        self._body: Any = None
        self._body_used = -math.inf
        self.body_loads = 0  # how often the pose detector was loaded (tests, the bench)
        self.load_s = 0.0  # seconds the last find() spent loading it (0: it was loaded)
        # Run the face detector once now: a model's first run is several times slower (its
        # interpreter is prepared lazily), and a departure is no moment to pay for that.
        # Without it, the pose detector is the only evidence: kept loaded all along.
        if self._face is not None:
            self._face.process(np.zeros((64, 64, 3), np.uint8))
        else:
            self._load_body()

    @property
    def body_loaded(self) -> bool:
        return self._body is not None

    def _load_body(self) -> Any:
        if self._body is None:
            t0 = time.perf_counter()
            # Its graph logs absl warnings as it opens the model and on its first run (which
            # prepares the interpreter: several times a normal run), so both happen here.
            with native_stderr_to_log(log):
                self._body = self._solution.SolutionBase(
                    graph_config=detector_graph("PoseDetectionCpu", xnnpack=False),
                    calculator_params={"posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": KEEP_SCORE})
                self._body.process(np.zeros((64, 64, 3), np.uint8))
            self.body_loads += 1
            self.load_s = time.perf_counter() - t0
        return self._body

    def find(self, rgb: np.ndarray, nose: tuple[float, float], now: float = 0.0) -> str | None:
        """Which detector finds a person whose face holds `nose` (normalised): face, pose or
        None. `now` (monotonic seconds) dates the pose detector's use."""
        self.load_s = 0.0
        if self._face is not None and _holds(self._face.process(rgb), nose):
            return "face"
        body = self._load_body()
        self._body_used = now
        return "pose" if _holds(body.process(rgb), nose) else None

    def tidy(self, now: float) -> None:
        """Let the pose detector go once it has not been needed for BODY_HOLD_S."""
        if self._face is not None and self._body is not None and now - self._body_used > BODY_HOLD_S:
            self.release()

    def release(self) -> None:
        """Let the pose detector go now (it is loaded again by the next check that needs it)."""
        if self._face is not None and self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        if self._face is not None:
            self._face.close()
        if self._body is not None:
            self._body.close()
            self._body = None


def _holds(result: Any, nose: tuple[float, float]) -> bool:
    """Does one of the detections' boxes (grown by MATCH_MARGIN) hold the tracked nose?"""
    for d in result.detections or ():
        b = d.location_data.relative_bounding_box
        if Box(b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height).grown(MATCH_MARGIN).contains(*nose):
            return True
    return False


class MediaPipePose:
    """MediaPipe's legacy pose solution in video (tracking) mode, with presence checks.

    `clock` is monotonic seconds (injected by tests); presence decisions depend on it and on
    what the frames show, never on how many frames were processed. `face_check=False` (the
    bench) checks with the pose detector alone; `check_presence=False` trusts the tracker
    (the old behaviour, for comparison only).
    """

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5, *,
                 presence: PresenceConfig | None = None, clock: Callable[[], float] = time.monotonic,
                 check_presence: bool = True, face_check: bool = True) -> None:
        try:
            mp_pose = _load_pose_solution()
        except ImportError as exc:  # a broken or missing install: say which package
            raise PoseModelError(f"cannot import mediapipe (pip install mediapipe==0.10.18): {exc}") from None
        try:
            # MediaPipe's graphs log absl warnings from their own threads as they open their
            # models, and on the first frame with a person: to the debug log, not the screen.
            with native_stderr_to_log(log):
                self._pose = tracker(
                    mp_pose,
                    static_image_mode=False,
                    model_complexity=1,  # the only complexity whose model is bundled in the wheel
                    smooth_landmarks=True,
                    min_detection_confidence=min_detection_confidence,
                    min_tracking_confidence=min_tracking_confidence,
                )
                self._pose.process(np.zeros((64, 64, 3), np.uint8))  # waits for the models to open
                self._detectors = Detectors(mp_pose, face_check) if check_presence else None
            self._quiet = True  # until the first frame with a person
        except Exception as exc:  # mediapipe raises RuntimeError/FileNotFoundError for model problems
            raise PoseModelError(f"cannot load the MediaPipe pose model: {exc}") from None
        self._guard = PresenceGuard(presence)
        self._clock = clock
        self.stats = PresenceStats()

    def estimate(self, rgb: np.ndarray) -> Pose | None:
        now = self._clock()
        t0 = time.perf_counter()
        pose = self._track(rgb)
        if self._detectors is None:
            return pose
        self._detectors.tidy(now)
        guard = self._guard
        if pose is None:
            guard.lost()
            return None
        guard.tracked(time.perf_counter() - t0)
        view = View.of(rgb, upper_body_box(pose).grown(guard.cfg.margin))
        if not guard.tracking:
            # Nothing was tracked before this frame, so the tracker ran its detector on it.
            self.stats.acquired += 1
            guard.confirm(view, now)
            return pose
        reason = guard.due(view, now)
        if reason is None:
            return pose
        self.stats.checks += 1
        t0 = time.perf_counter()
        found = self._detectors.find(rgb, (pose[NOSE].x / pose.width, pose[NOSE].y / pose.height), now)
        # A load is a one-off: the checks' budget is for the recurring cost of confirming someone.
        spent = time.perf_counter() - t0 - self._detectors.load_s
        if found is None:
            self.stats.ghosts += 1
            log.info("presence: the pose tracker holds a person the detectors don't find (%s check): "
                     "reporting nobody", reason)
            self._let_go(rgb)
            self._detectors.release()  # nobody is tracked now, so no check needs it soon
            guard.lost()
            return None
        guard.checked(spent)
        if found == "face":
            self.stats.by_face += 1
        else:
            self.stats.by_pose_detector += 1
        guard.confirm(view, now)
        return pose

    def _track(self, rgb: np.ndarray) -> Pose | None:
        height, width = rgb.shape[:2]
        if self._quiet:
            with native_stderr_to_log(log):
                result = self._pose.process(rgb)
            self._quiet = result.pose_landmarks is None
        else:
            result = self._pose.process(rgb)
        if result.pose_landmarks is None:
            return None
        marks = tuple(
            Landmark(lm.x * width, lm.y * height, float(lm.visibility))
            for lm in result.pose_landmarks.landmark
        )
        return Pose(marks, width, height)

    def _let_go(self, rgb: np.ndarray) -> None:
        """Make the tracker drop its person: a blank frame has no one to track."""
        if self._pose.process(np.zeros_like(rgb)).pose_landmarks is not None:
            with native_stderr_to_log(log):
                self._pose.reset()  # never seen; costs a graph restart
                self._pose.process(np.zeros((64, 64, 3), np.uint8))
            self._quiet = True

    def close(self) -> None:
        self._pose.close()
        if self._detectors is not None:
            self._detectors.close()


def upper_body_box(pose: Pose) -> Box:
    """The normalised box around the face and shoulders (the visible ones when enough are)."""
    marks = [pose[i] for i in UPPER_BODY]
    seen = [m for m in marks if m.visibility >= 0.5]
    use = seen if len(seen) >= 3 else marks
    return Box.around((m.x / pose.width, m.y / pose.height) for m in use)
