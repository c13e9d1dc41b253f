"""The built-in demo scene through real MediaPipe and the real classifier.

The demo is what a new user sees first (`./run.sh` without a camera): its scripted good,
slouch, lean-in, tilt and away segments must come out as such. Only the steady middle of
each segment is judged (the 1.5 s ramps blend two poses).
"""

from __future__ import annotations

import cv2
import pytest

from deskpulse.calibration import Calibrator
from deskpulse.config import PostureConfig
from deskpulse.demo import SCENE_SECONDS, DemoScene, segment_at
from deskpulse.pose import MediaPipePose, Pose
from deskpulse.posture import Baseline, classify
from deskpulse.posture_filter import PostureFilter

pytestmark = pytest.mark.slow

FPS = 2.0


@pytest.fixture(scope="module")
def scene_poses() -> list[tuple[float, str, bool, Pose | None]]:
    """(t, segment, steady, pose) for one pass through the scene."""
    scene, estimator = DemoScene(), MediaPipePose()
    try:
        out = []
        for i in range(int(SCENE_SECONDS * FPS)):
            t = i / FPS
            name, weight = segment_at(t)
            pose = estimator.estimate(cv2.cvtColor(scene.frame(t), cv2.COLOR_BGR2RGB))
            out.append((t, name, weight >= 1.0, pose))
        return out
    finally:
        estimator.close()


def replay(scene_poses, baseline: Baseline) -> list[tuple[float, str, bool, str, tuple[str, ...]]]:
    """The scene through the classifier and the real debouncing filter, as the agent runs it:
    (t, segment, steady, filtered posture, this frame's reasons)."""
    cfg = PostureConfig()
    filt = PostureFilter(cfg, now=0.0)
    out = []
    for t, name, steady, pose in scene_poses:
        reading = None if pose is None else classify(pose, cfg, baseline)
        state = filt.update(reading, t)
        out.append((t, name, steady, state.posture, reading.reasons if reading else ()))
    return out


def segments(replayed) -> list[tuple[str, list]]:
    """The replay cut into the scene's segments, in order."""
    cut: list[tuple[str, list]] = []
    for item in replayed:
        if not cut or cut[-1][0] != item[1]:
            cut.append((item[1], []))
        cut[-1][1].append(item)
    return cut


def check(replayed, bad_segments: dict[str, str]) -> None:
    """Every listed segment turns bad, with the frame's reasons naming its fault; every good
    segment ends good and never turns bad on its own; the person leaving gives absent."""
    for name, items in segments(replayed):
        states = [posture for _, _, _, posture, _ in items]
        if name in bad_segments:
            turned = [reasons for _, _, _, posture, reasons in items if posture == "bad"]
            assert turned, f"{name} never showed bad: {states}"
            assert any(bad_segments[name] in reasons for reasons in turned), f"{name}: {turned}"
        elif name == "good":
            assert states[-1] == "good", f"good segment ends {states[-1]}: {states}"
            first_good = states.index("good")
            assert "bad" not in states[first_good:], f"a good segment turned bad: {states}"
        elif name == "away":  # the person slides out and, at the loop's end, back in
            assert "absent" in states, states


def calibrated_on_first_good_segment(scene_poses) -> Baseline:
    cfg = PostureConfig()
    cal = Calibrator("front", seconds=5.0, started=2.0)
    for t, name, steady, pose in scene_poses:
        if name == "good" and steady and 2.0 <= t < 7.0:
            cal.add(None if pose is None else classify(pose, cfg, Baseline()), t)
    return cal.result(7.0)


def test_uncalibrated_demo_sits_well_tilts_and_leaves(scene_poses) -> None:
    """A new user's demo: the tilt shows bad, good stays good (the slouch is mild: below)."""
    check(replay(scene_poses, Baseline()), {"tilt": "shoulder_tilt"})


def test_calibrated_demo_shows_every_bad_segment_with_its_reason(scene_poses) -> None:
    """Against the demo person's own good posture (the real Calibrator on the first segment)
    the slouch, the lean-in and the tilt all show bad. Uncalibrated, the slouch (the nose
    sinks from 0.6 to ~0.33 shoulder widths above the shoulders) stays good: well-seated
    people in the labelled sample sit that low (docs/accuracy.md)."""
    check(replay(scene_poses, calibrated_on_first_good_segment(scene_poses)),
          {"slouch": "head_down", "lean_in": "lean_in", "tilt": "shoulder_tilt"})
