"""The classifier and the debouncing filter on landmark fixtures (no camera, no model)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.config import PostureConfig
from deskpulse.pose import (LEFT_EAR, LEFT_HIP, LEFT_SHOULDER, NOSE, RIGHT_EAR, RIGHT_HIP,
                            RIGHT_SHOULDER, Landmark, Pose)
from deskpulse.posture import Baseline, PostureFilter, Reading, classify

W, H = 640, 480


def make_pose(points: dict[int, tuple[float, float]], vis: float = 0.99,
              low: tuple[int, ...] = ()) -> Pose:
    marks = [Landmark(0.0, 0.0, 0.0) for _ in range(33)]
    for i, (x, y) in points.items():
        marks[i] = Landmark(x, y, 0.1 if i in low else vis)
    return Pose(tuple(marks), W, H)


def front(head_y: float = 130, nose_y: float = 150, tilt_px: float = 0, width: float = 200,
          **kw: object) -> Pose:
    """A frontal upper body: shoulders at y=300 around x=320, head above."""
    cx = 320
    return make_pose({
        LEFT_SHOULDER: (cx + width / 2, 300 + tilt_px / 2), RIGHT_SHOULDER: (cx - width / 2, 300 - tilt_px / 2),
        NOSE: (cx, nose_y), LEFT_EAR: (cx + 35, head_y), RIGHT_EAR: (cx - 35, head_y),
    }, **kw)  # type: ignore[arg-type]


def side(neck_deg: float, torso_deg: float = 0.0, **kw: object) -> Pose:
    sx, sy = 300.0, 250.0
    ear = (sx + 80 * math.sin(math.radians(neck_deg)), sy - 80 * math.cos(math.radians(neck_deg)))
    hip = (sx - 150 * math.sin(math.radians(torso_deg)), sy + 150 * math.cos(math.radians(torso_deg)))
    return make_pose({LEFT_EAR: ear, LEFT_SHOULDER: (sx, sy), LEFT_HIP: hip,
                      RIGHT_EAR: ear, RIGHT_SHOULDER: (sx, sy), RIGHT_HIP: hip}, **kw)  # type: ignore[arg-type]


CAL = Baseline(head_height=0.85, nose_height=0.75, shoulder_width=200 / W, calibrated=True)
CFG = PostureConfig()


def test_upright_is_good() -> None:
    r = classify(front(), CFG, CAL)
    assert r.posture == "good" and r.reasons == ()
    assert r.metrics["head_height"] == pytest.approx(0.85)
    assert r.confidence > 0.9


@pytest.mark.parametrize("pose,reason", [
    (front(head_y=200, nose_y=150), "head_forward"),   # ears sink towards the shoulder line
    (front(nose_y=230), "head_down"),                   # looking down at the keyboard
    (front(tilt_px=60), "shoulder_tilt"),               # ~17 degrees
    (front(width=260), "lean_in"),                      # 1.3x closer than the baseline
])
def test_each_front_rule_flags_bad(pose: Pose, reason: str) -> None:
    r = classify(pose, CFG, CAL)
    assert r.posture == "bad"
    assert reason in r.reasons


def test_sensitivity_scales_thresholds() -> None:
    slight = front(head_y=165)  # 18% drop: under the default 25%
    assert classify(slight, CFG, CAL).posture == "good"
    assert classify(slight, PostureConfig(sensitivity=2.0), CAL).posture == "bad"


def test_low_visibility_gives_unknown_not_a_guess() -> None:
    r = classify(front(low=(LEFT_SHOULDER,)), CFG, CAL)
    assert r.posture == "unknown" and r.reasons == ("low_visibility",)


def test_ears_hidden_falls_back_to_nose() -> None:
    r = classify(front(low=(LEFT_EAR, RIGHT_EAR)), CFG, CAL)
    assert r.posture in ("good", "bad") and r.metrics["head_height"] == r.metrics["nose_height"]


@pytest.mark.parametrize("neck,torso,expected,reason", [
    (10, 0, "good", None), (50, 0, "bad", "neck_forward"), (10, 20, "bad", "torso_lean"),
])
def test_side_view(neck: float, torso: float, expected: str, reason: str | None) -> None:
    cfg = PostureConfig(view="side")
    r = classify(side(neck, torso), cfg, Baseline())
    assert r.posture == expected
    assert r.metrics["neck_deg"] == pytest.approx(neck, abs=0.01)
    if reason:
        assert reason in r.reasons


def test_calibrated_baseline_moves_the_line() -> None:
    slumped = front(head_y=190, nose_y=200)
    assert classify(slumped, CFG, CAL).posture == "bad"
    personal = Baseline(head_height=0.6, nose_height=0.5, shoulder_width=200 / W, calibrated=True)
    assert classify(slumped, CFG, personal).posture == "good"


# --- the filter ------------------------------------------------------------------------
GOOD = Reading("good", 0.9)
BAD = Reading("bad", 0.9, reasons=("head_down",))


def feed(f: PostureFilter, seq: list[Reading | None], t0: float, dt: float = 0.1) -> list[str]:
    out = []
    for i, r in enumerate(seq):
        out.append(f.update(r, t0 + i * dt).posture)
    return out


def test_bad_needs_onset_delay() -> None:
    f = PostureFilter(PostureConfig(onset_s=3.0), now=0)
    f.update(GOOD, 0)
    states = feed(f, [BAD] * 40, t0=1.0)  # 4 s of bad at 10 fps
    assert states[:30] == ["good"] * 30  # < 3 s
    assert states[-1] == "bad"


def test_a_glance_never_flips_the_state() -> None:
    f = PostureFilter(PostureConfig(onset_s=3.0), now=0)
    f.update(GOOD, 0)
    glance = ([BAD] * 20 + [GOOD] * 2) * 5  # 2 s looking down, a moment up, again ...
    assert set(feed(f, glance, t0=1.0)) == {"good"}


def test_exit_hysteresis() -> None:
    f = PostureFilter(PostureConfig(onset_s=0.0, exit_s=2.0), now=0)
    f.update(BAD, 0)
    assert f.state.posture == "bad"
    states = feed(f, [GOOD] * 25, t0=1.0)
    assert states[:20] == ["bad"] * 20 and states[-1] == "good"


def test_absent_after_n_empty_frames_and_back_at_once() -> None:
    f = PostureFilter(PostureConfig(absent_frames=5), now=0)
    f.update(GOOD, 0)
    assert feed(f, [None] * 5, t0=1.0) == ["good"] * 4 + ["absent"]
    assert f.update(GOOD, 2.0).posture == "good"


def test_changed_flag_marks_the_switching_frame_only() -> None:
    f = PostureFilter(PostureConfig(onset_s=0.0), now=0)
    first = f.update(GOOD, 0.0)
    again = f.update(GOOD, 0.1)
    assert first.changed and not again.changed
    assert first.since == 0.0 and again.since == 0.0


def test_bad_for_counts_from_the_switch() -> None:
    f = PostureFilter(PostureConfig(onset_s=1.0), now=0)
    f.update(GOOD, 0)
    f.update(BAD, 1.0)
    state = f.update(BAD, 2.0)
    assert state.posture == "bad" and state.bad_for(12.0) == pytest.approx(10.0)


# --- robustness ----------------------------------------------------------------------------
coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)
landmarks = st.lists(st.tuples(coord, coord, st.floats(0, 1)), min_size=33, max_size=33)


@settings(max_examples=300, deadline=None)
@given(landmarks, st.sampled_from(["front", "side"]), st.floats(0.25, 4.0))
def test_classify_never_raises_and_stays_in_range(marks, view, sens) -> None:
    pose = Pose(tuple(Landmark(x, y, v) for x, y, v in marks), W, H)
    r = classify(pose, PostureConfig(view=view, sensitivity=sens), Baseline())
    assert r.posture in ("good", "bad", "unknown")
    assert 0.0 <= r.confidence <= 1.0
    assert all(math.isfinite(v) for v in r.metrics.values())
    assert (r.posture == "bad") == bool(r.reasons) or r.posture == "unknown"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["good", "bad", "unknown", None]), max_size=200),
       st.floats(0, 5), st.floats(0, 5), st.integers(1, 20))
def test_filter_only_emits_known_states_and_since_is_monotonic(seq, onset, exit_s, absent) -> None:
    f = PostureFilter(PostureConfig(onset_s=onset, exit_s=exit_s, absent_frames=absent), now=0)
    last_since = 0.0
    for i, p in enumerate(seq):
        state = f.update(None if p is None else Reading(p, 0.9), i * 0.1)
        assert state.posture in ("good", "bad", "unknown", "absent")
        assert state.since >= last_since
        last_since = state.since
