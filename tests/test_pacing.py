"""The pose rate policy (pacing.py): pure, time passed in, metrics from the real classifier."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.config import CameraConfig, FramesConfig, PostureConfig
from deskpulse.pacing import MODES, FrameFacts, Pace, Pacer
from deskpulse.pose import LEFT_EAR, LEFT_SHOULDER, NOSE, RIGHT_EAR, RIGHT_SHOULDER, Landmark, Pose
from deskpulse.posture import Baseline, classify

W, H = 640, 480
CAM = CameraConfig()  # fps 10, steady 2, idle 2 after 10 s, hold 1 s
FRAMES = FramesConfig()  # 10 fps
POSTURE = PostureConfig()


def metrics(head_y: float = 130.0, width: float = 200.0, tilt_px: float = 0.0, view: str = "front") -> dict[str, float]:
    """A frontal upper body's metrics, as the classifier computes them."""
    cx = 320.0
    points = {LEFT_SHOULDER: (cx + width / 2, 300 + tilt_px / 2), RIGHT_SHOULDER: (cx - width / 2, 300 - tilt_px / 2),
              NOSE: (cx, head_y + 20), LEFT_EAR: (cx + 35, head_y), RIGHT_EAR: (cx - 35, head_y)}
    marks = [Landmark(0.0, 0.0, 0.0) for _ in range(33)]
    for i, (x, y) in points.items():
        marks[i] = Landmark(x, y, 0.99)
    reading = classify(Pose(tuple(marks), W, H), POSTURE, Baseline())
    return dict(reading.metrics)


STILL = metrics()


def facts(now: float, *, present: bool = True, m: dict[str, float] | None = STILL, posture: str = "good",
          pending: str | None = None, streaming: bool = False, calibrating: bool = False) -> FrameFacts:
    return FrameFacts(now=now, present=present, metrics=m if present else None, posture=posture,
                      pending=pending, streaming=streaming, calibrating=calibrating)


def settled(pacer: Pacer, start: float = 0.0, m: dict[str, float] = STILL, posture: str = "good") -> float:
    """Feed still frames at 2 fps until the hold has passed; returns the time reached."""
    t = start
    while t <= start + CAM.active_hold_s + 0.5:
        pacer.decide(facts(t, m=m, posture=posture))
        t += 0.5
    assert pacer.pace == Pace(2.0, "steady")
    return t


def test_someone_sitting_still_is_steady_after_the_hold() -> None:
    p = Pacer(CAM, FRAMES)
    assert p.pace == Pace(10.0, "active")  # before any frame: full rate
    assert p.decide(facts(0.0)) == Pace(10.0, "active")  # a person first seen is a change
    assert p.decide(facts(CAM.active_hold_s - 0.1)) == Pace(10.0, "active")  # still held
    assert p.decide(facts(CAM.active_hold_s + 0.1)) == Pace(2.0, "steady")
    assert p.decide(facts(100.0)) == Pace(2.0, "steady")


@pytest.mark.parametrize("moved", [
    metrics(head_y=150.0),      # head sinks: head_height 0.85 -> 0.75 of the shoulder width (-12%)
    metrics(width=230.0),       # leans in: shoulder width +15%
    metrics(tilt_px=40.0),      # shoulders tilt about 11 degrees
])
def test_metrics_moving_past_the_threshold_go_active_and_hold(moved: dict[str, float]) -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    assert p.decide(facts(t, m=moved)) == Pace(10.0, "active")
    # held still in the new position: active for the hold time, then steady again
    assert p.decide(facts(t + CAM.active_hold_s - 0.1, m=moved)).mode == "active"
    assert p.decide(facts(t + CAM.active_hold_s + 0.1, m=moved)) == Pace(2.0, "steady")


def test_small_moves_stay_steady_but_a_slow_drift_counts_once_it_adds_up() -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    # head height 0.85 of the shoulder width; each step 1.5 px = under 1% of it
    modes = []
    for i in range(1, 30):
        modes.append(p.decide(facts(t, m=metrics(head_y=130.0 + 1.5 * i))).mode)
        t += 0.5
    first_active = modes.index("active")
    assert all(m == "steady" for m in modes[:first_active])
    assert 3 <= first_active <= 15  # the drift was caught once it passed 8%, not on every frame
    assert modes.count("active") < len(modes) // 2


def test_a_pending_candidate_keeps_the_full_rate_until_it_is_settled() -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    # The classifier says bad, the filter waits out onset_s: full rate for the whole wait.
    for k in range(31):
        assert p.decide(facts(t + 0.1 * k, pending="bad")) == Pace(10.0, "active")
    t += 3.1
    assert p.decide(facts(t, posture="bad")) == Pace(10.0, "active")  # confirmed: hold
    assert p.decide(facts(t + CAM.active_hold_s + 0.01, posture="bad")) == Pace(2.0, "steady")


def test_a_pending_equal_to_the_current_posture_is_no_reason() -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    assert p.decide(facts(t, pending="good")) == Pace(2.0, "steady")


def test_nobody_seen_goes_active_until_absent_then_idle_after_idle_after_s() -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    for k in range(5):  # absent_frames: the filter still says good
        assert p.decide(facts(t + 0.1 * k, present=False)) == Pace(10.0, "active")
    gone = t + 0.5
    assert p.decide(facts(gone, present=False, posture="absent")).mode == "active"  # hold
    after_hold = gone + CAM.active_hold_s + 0.1
    assert p.decide(facts(after_hold, present=False, posture="absent")) == Pace(2.0, "steady")
    assert p.decide(facts(gone + CAM.idle_after_s - 0.01, present=False, posture="absent")).mode == "steady"
    assert p.decide(facts(gone + CAM.idle_after_s, present=False, posture="absent")) == Pace(2.0, "idle")
    # back: the filter says good at once, and the person appearing is a change
    assert p.decide(facts(gone + 20.0)) == Pace(10.0, "active")


def test_idle_rate_is_its_own_setting() -> None:
    p = Pacer(CameraConfig(idle_fps=0.5, idle_after_s=0.0, active_hold_s=0.0), FRAMES)
    assert p.decide(facts(0.0, present=False, posture="absent")) == Pace(0.5, "idle")


def test_calibration_runs_at_the_full_rate() -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    for k in range(50):
        assert p.decide(facts(t + 0.1 * k, calibrating=True)) == Pace(10.0, "active")
    # even with nobody there, long after idle_after_s
    for k in range(3):
        assert p.decide(facts(100.0 + 20 * k, present=False, posture="absent", calibrating=True)).mode == "active"


@pytest.mark.parametrize("frames_fps,expected", [(10.0, Pace(10.0, "streaming")), (5.0, Pace(5.0, "streaming")),
                                                 (15.0, Pace(15.0, "streaming"))])
def test_a_stream_lease_keeps_at_least_frames_fps(frames_fps: float, expected: Pace) -> None:
    p = Pacer(CAM, FramesConfig(fps=frames_fps))
    t = settled(p)
    assert p.decide(facts(t, streaming=True)) == expected
    # nobody present for long: still streaming at the stream's rate, never idle
    assert p.decide(facts(t + 60.0, present=False, posture="absent", streaming=True)) == expected
    assert p.decide(facts(t + 60.0 + CAM.idle_after_s, present=False, posture="absent")) == Pace(2.0, "idle")


def test_streaming_below_the_active_rate_doesnt_slow_a_change() -> None:
    p = Pacer(CAM, FramesConfig(fps=5.0))
    t = settled(p)
    assert p.decide(facts(t, pending="bad", streaming=True)) == Pace(10.0, "active")


def test_fixed_rate_is_today_s_behaviour() -> None:
    p = Pacer(CameraConfig(adaptive=False), FRAMES)
    for k in range(40):  # sitting still: full rate all along
        assert p.decide(facts(0.5 * k)) == Pace(10.0, "active")
    assert p.decide(facts(20.0, present=False, posture="absent")) == Pace(10.0, "active")
    assert p.decide(facts(29.9, present=False, posture="absent")) == Pace(10.0, "active")
    assert p.decide(facts(30.0, present=False, posture="absent")) == Pace(2.0, "idle")
    assert p.decide(facts(31.0, present=False, posture="absent", streaming=True)) == Pace(10.0, "streaming")
    assert p.decide(facts(32.0, present=False, posture="absent", calibrating=True)) == Pace(10.0, "active")


def test_steady_fps_equal_to_fps_is_a_fixed_rate_too() -> None:
    p = Pacer(CameraConfig(steady_fps=10.0), FRAMES)
    assert {p.decide(facts(0.5 * k)).fps for k in range(40)} == {10.0}


def test_rates_never_exceed_camera_fps_except_for_the_stream() -> None:
    p = Pacer(CameraConfig(fps=1.0), FRAMES)  # steady 2 and idle 2 are above fps 1
    assert settled_rate(p, present=True) == 1.0
    assert p.decide(facts(100.0, present=False, posture="absent")).fps == 1.0
    assert p.decide(facts(200.0, present=False, posture="absent")).fps == 1.0


def settled_rate(p: Pacer, present: bool) -> float:
    for k in range(20):
        pace = p.decide(facts(0.5 * k, present=present))
    return pace.fps


def test_settings_can_change_at_run_time() -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    p.camera = CameraConfig(steady_fps=1.0)
    assert p.decide(facts(t)) == Pace(1.0, "steady")
    p.camera = CameraConfig(adaptive=False)
    assert p.decide(facts(t + 0.5)) == Pace(10.0, "active")


def test_reset_forgets_what_was_seen() -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    for k in range(120):  # away long enough to be idle
        p.decide(facts(t + 0.5 * k, present=False, posture="absent"))
    assert p.pace.mode == "idle"
    assert p.reset() == Pace(10.0, "active") == p.pace
    # after a pause the same person is a new sighting: judged at the full rate first
    assert p.decide(facts(t + 100.0)) == Pace(10.0, "active")


def test_health_fields() -> None:
    assert Pace(2.0, "steady").health() == {"pose_fps": 2.0, "mode": "steady"}
    assert Pace(1 / 3, "idle").health() == {"pose_fps": 0.33, "mode": "idle"}


def test_metrics_without_a_person_or_odd_values_are_handled() -> None:
    p = Pacer(CAM, FRAMES)
    t = settled(p)
    # present but unmeasurable (low visibility): the filter's "unknown" candidate drives it
    assert p.decide(facts(t, m=None, pending="unknown")).mode == "active"
    odd = {"head_height": float("nan"), "shoulder_width": 0.3, "reasons": []}  # type: ignore[dict-item]
    assert p.decide(facts(t + 0.1, m=odd)).mode == "active"  # measurable again: a change
    assert p.decide(facts(t + 5.0, m=odd)) == Pace(2.0, "steady")


def test_a_metric_that_comes_into_view_is_not_a_move() -> None:
    side = {"neck_deg": 20.0}
    p = Pacer(CAM, FRAMES)
    t = settled(p, m=side)
    assert p.decide(facts(t, m={"neck_deg": 21.0, "torso_deg": 5.0})) == Pace(2.0, "steady")
    assert p.decide(facts(t + 0.5, m={"neck_deg": 21.0, "torso_deg": 12.5})).mode == "active"  # torso moved 7.5 deg


def test_every_metric_the_classifier_reports_is_watched_for_movement() -> None:
    from deskpulse.pacing import ANGLE_METRICS, DERIVED_METRICS, RATIO_METRICS
    from deskpulse.pose import LEFT_HIP, RIGHT_HIP

    marks = [Landmark(0.0, 0.0, 0.0) for _ in range(33)]
    for i, (x, y) in {LEFT_SHOULDER: (420, 300), RIGHT_SHOULDER: (220, 300), NOSE: (330, 150),
                      LEFT_EAR: (300, 130), RIGHT_EAR: (290, 131), LEFT_HIP: (400, 460), RIGHT_HIP: (240, 460)}.items():
        marks[i] = Landmark(x, y, 0.99)
    pose = Pose(tuple(marks), W, H)
    keys = set()
    for view in ("front", "side"):
        keys |= set(classify(pose, POSTURE.model_copy(update={"view": view}), Baseline()).metrics)
    assert keys, "the fixture must be measurable"
    assert keys <= set(RATIO_METRICS) | set(ANGLE_METRICS) | set(DERIVED_METRICS)


# --- properties over arbitrary frame sequences ------------------------------------------------

@dataclass(frozen=True)
class Step:
    dt: float
    present: bool
    head_y: float
    width: float
    posture: str
    pending: str | None
    streaming: bool
    calibrating: bool


steps = st.builds(
    Step,
    dt=st.floats(0.0, 15.0),
    present=st.booleans(),
    head_y=st.floats(100.0, 180.0),
    width=st.floats(150.0, 260.0),
    posture=st.sampled_from(["good", "bad", "unknown", "absent"]),
    pending=st.none() | st.sampled_from(["good", "bad", "unknown", "absent"]),
    streaming=st.booleans(),
    calibrating=st.booleans(),
)
cameras = st.builds(
    CameraConfig,
    fps=st.sampled_from([1.0, 5.0, 10.0, 30.0]),
    adaptive=st.booleans(),
    steady_fps=st.sampled_from([0.5, 2.0, 10.0]),
    idle_fps=st.sampled_from([0.2, 2.0, 5.0]),
    idle_after_s=st.sampled_from([0.0, 3.0, 10.0]),
    active_hold_s=st.sampled_from([0.0, 1.5, 5.0]),
)


def legacy_rate(cam: CameraConfig, seq: list[tuple[float, Step]]) -> list[float]:
    """The agent's fixed-rate rule before pacing.py (agent._adapt_rate), as the oracle."""
    out, absent_since = [], None
    for now, s in seq:
        absent_since = (absent_since if absent_since is not None else now) if s.posture == "absent" else None
        idle = absent_since is not None and now - absent_since >= cam.idle_after_s and not s.calibrating
        out.append(max(cam.fps, FRAMES.fps) if s.streaming else (cam.idle_fps if idle else cam.fps))
    return out


def run(cam: CameraConfig, seq: list[Step]) -> list[tuple[float, Step, Pace]]:
    p = Pacer(cam, FRAMES)
    t, out = 0.0, []
    for s in seq:
        t += s.dt
        m = metrics(head_y=s.head_y, width=s.width) if s.present else None
        pace = p.decide(FrameFacts(t, s.present, m, s.posture, s.pending, s.streaming, s.calibrating))
        out.append((t, s, pace))
    return out


@settings(max_examples=200, deadline=None)
@given(cam=cameras, seq=st.lists(steps, min_size=1, max_size=40))
def test_properties_of_every_decision(cam: CameraConfig, seq: list[Step]) -> None:
    full = cam.fps
    for t, s, pace in run(cam, seq):
        assert pace.mode in MODES and pace.fps > 0 and math.isfinite(pace.fps)
        if s.streaming:
            assert pace.fps >= FRAMES.fps
        cause = s.calibrating or (s.pending is not None and s.pending != s.posture) or (
            not s.present and s.posture != "absent")
        if cause and cam.adaptive:
            assert pace.fps >= full, "a possible change must be judged at the full rate"
        if pace.mode == "idle":
            assert s.posture == "absent" and not s.streaming and not s.calibrating
        if pace.mode in ("steady", "idle"):
            assert pace.fps <= full
        if pace.mode == "streaming":
            assert s.streaming


@settings(max_examples=200, deadline=None)
@given(cam=cameras, seq=st.lists(steps, min_size=1, max_size=40))
def test_fixed_mode_matches_the_old_rule(cam: CameraConfig, seq: list[Step]) -> None:
    cam = cam.model_copy(update={"adaptive": False, "idle_fps": min(cam.idle_fps, cam.fps)})
    decided = run(cam, seq)
    assert [pace.fps for _, _, pace in decided] == legacy_rate(cam, [(t, s) for t, s, _ in decided])


@settings(max_examples=200, deadline=None)
@given(cam=cameras.map(lambda c: c.model_copy(update={"adaptive": True})),
       seq=st.lists(steps, min_size=1, max_size=40))
def test_active_holds_for_active_hold_s_after_the_last_cause(cam: CameraConfig, seq: list[Step]) -> None:
    last_cause = -math.inf
    for t, s, pace in run(cam, seq):
        cause = s.calibrating or (s.pending is not None and s.pending != s.posture) or (
            not s.present and s.posture != "absent")
        if cause:
            last_cause = t
        if t - last_cause < cam.active_hold_s:
            assert pace.fps >= cam.fps, "no flapping: the full rate holds after a change"


@settings(max_examples=200, deadline=None)
@given(head_y=st.floats(120.0, 140.0), width=st.floats(190.0, 210.0), n=st.integers(5, 60))
def test_a_person_holding_still_costs_steady_fps(head_y: float, width: float, n: int) -> None:
    p = Pacer(CAM, FRAMES)
    m = metrics(head_y=head_y, width=width)
    paces = [p.decide(facts(0.5 * k, m=m)) for k in range(n)]
    assert all(pace == Pace(2.0, "steady") for k, pace in enumerate(paces) if 0.5 * k >= CAM.active_hold_s)


# --- the default thresholds against real MediaPipe on the demo scene ----------------------------

@pytest.mark.slow
def test_default_thresholds_on_real_pose_demo_sway_is_still_and_a_slouch_moves() -> None:
    from deskpulse.demo import DemoScene
    from deskpulse.pose import MediaPipePose

    scene = DemoScene()
    pose = MediaPipePose()
    p = Pacer(CAM, FRAMES)
    try:
        modes = []
        for k in range(24):  # 0..11.5 s of the "good" segment: the person sways a little
            est = pose.estimate(cv2.cvtColor(scene.frame(0.5 * k), cv2.COLOR_BGR2RGB))
            assert est is not None
            reading = classify(est, POSTURE, Baseline())
            modes.append(p.decide(facts(0.5 * k, m=dict(reading.metrics), posture="good")).mode)
        # The tracker settles over the first frames (a move, like a person sitting down); then
        # the sway and the model's jitter stay under the thresholds.
        assert modes[6:] == ["steady"] * 18
        moved = []
        for k in range(6):  # 16..18.5 s: fully slouched (the scene ramps in over 1.5 s)
            est = pose.estimate(cv2.cvtColor(scene.frame(16.0 + 0.5 * k), cv2.COLOR_BGR2RGB))
            assert est is not None
            moved.append(p.decide(facts(12.0 + 0.5 * k, m=dict(classify(est, POSTURE, Baseline()).metrics))).mode)
        assert moved[0] == "active"
    finally:
        pose.close()
