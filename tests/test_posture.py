"""The classifier and the debouncing filter on landmark fixtures (no camera, no model)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.config import PostureConfig
from deskpulse.pose import (LEFT_EAR, LEFT_HIP, LEFT_SHOULDER, NOSE, RIGHT_EAR, RIGHT_HIP,
                            RIGHT_SHOULDER, Landmark, Pose)
from deskpulse.posture import METRICS, REASONS, RULES, Baseline, Reading, classify
from deskpulse.posture_filter import PostureFilter

W, H = 640, 480


def make_pose(points: dict[int, tuple[float, float]], vis: float = 0.99,
              low: tuple[int, ...] = (), size: tuple[int, int] = (W, H)) -> Pose:
    marks = [Landmark(0.0, 0.0, 0.0) for _ in range(33)]
    for i, (x, y) in points.items():
        marks[i] = Landmark(x, y, 0.1 if i in low else vis)
    return Pose(tuple(marks), *size)


def front(head_y: float = 130, nose_y: float = 150, tilt_px: float = 0, width: float = 200,
          hips_y: float | None = None, **kw: object) -> Pose:
    """A frontal upper body: shoulders at y=300 around x=320, head above, hips if given."""
    cx = 320
    points = {
        LEFT_SHOULDER: (cx + width / 2, 300 + tilt_px / 2), RIGHT_SHOULDER: (cx - width / 2, 300 - tilt_px / 2),
        NOSE: (cx, nose_y), LEFT_EAR: (cx + 35, head_y), RIGHT_EAR: (cx - 35, head_y),
    }
    if hips_y is not None:
        points.update({LEFT_HIP: (cx + 60, hips_y), RIGHT_HIP: (cx - 60, hips_y)})
    return make_pose(points, **kw)  # type: ignore[arg-type]


def side(neck_deg: float, torso_deg: float = 0.0, pitch_deg: float = 15.0, facing: int = 1,
         nose: bool = True, **kw: object) -> Pose:
    """A person seen from the side, facing image right (facing=1) or left (-1).

    neck_deg: the ear ahead of the shoulder; torso_deg: the shoulder ahead of the hip
    (negative: leaning back); pitch_deg: the nose below the ear."""
    sx, sy = 300.0, 250.0
    def x(dx: float) -> float:
        return sx + facing * dx
    ear_dx, ear_y = 80 * math.sin(math.radians(neck_deg)), sy - 80 * math.cos(math.radians(neck_deg))
    ear = (x(ear_dx), ear_y)
    hip = (x(-150 * math.sin(math.radians(torso_deg))), sy + 150 * math.cos(math.radians(torso_deg)))
    points = {LEFT_EAR: ear, LEFT_SHOULDER: (sx, sy), LEFT_HIP: hip,
              RIGHT_EAR: ear, RIGHT_SHOULDER: (sx, sy), RIGHT_HIP: hip}
    if nose:
        points[NOSE] = (x(ear_dx + 30 * math.cos(math.radians(pitch_deg))), ear_y + 30 * math.sin(math.radians(pitch_deg)))
    return make_pose(points, **kw)  # type: ignore[arg-type]


CAL = Baseline(head_height=0.85, nose_height=0.75, shoulder_width=200 / W, torso_height=1.5, calibrated=True)
CFG = PostureConfig()
SIDE = PostureConfig(view="side")


def test_upright_is_good() -> None:
    r = classify(front(hips_y=600, size=(W, 700)), CFG, CAL)
    assert r.posture == "good" and r.reasons == ()
    assert r.metrics["head_height"] == pytest.approx(0.85)
    assert r.metrics["nose_height"] == pytest.approx(0.75) and r.metrics["head_drop"] == pytest.approx(0.0)
    assert r.metrics["torso_height"] == pytest.approx(1.5)
    assert r.confidence > 0.9


@pytest.mark.parametrize("pose,reason", [
    (front(nose_y=230), "head_down"),          # the nose sinks towards the shoulder line
    (front(hips_y=480), "slumped"),            # the shoulders sink towards the hips (0.9 widths)
    (front(tilt_px=60), "shoulder_tilt"),      # ~17 degrees
    (front(width=260), "lean_in"),             # 1.3x closer than the baseline
])
def test_each_front_rule_flags_bad(pose: Pose, reason: str) -> None:
    r = classify(pose, CFG, CAL)
    assert r.posture == "bad"
    assert r.reasons == (reason,)


def test_measurements_do_not_depend_on_frame_size_or_position() -> None:
    """Halve every coordinate in a half-size frame, shift it: the same metrics and verdict."""
    pose = front(nose_y=200, tilt_px=20, hips_y=450)
    moved = Pose(tuple(Landmark(lm.x / 2 + 7, lm.y / 2 - 5, lm.visibility) for lm in pose.landmarks), W // 2, H // 2)
    a, b = classify(pose, CFG, CAL), classify(moved, CFG, CAL)
    assert a.posture == b.posture and a.reasons == b.reasons
    assert a.metrics == pytest.approx(b.metrics, abs=1e-3)


def test_uncalibrated_is_lenient_and_calibration_moves_the_line() -> None:
    """A low head is normal for some people: bad only against their own good posture."""
    low = front(nose_y=220)  # nose 0.4 shoulder widths above the shoulder line
    assert classify(low, CFG, Baseline()).posture == "good"
    assert classify(low, CFG, CAL).reasons == ("head_down",)  # this person sat at 0.75
    personal = dataclasses.replace(CAL, nose_height=0.5)
    assert classify(low, CFG, personal).posture == "good"
    # ... and a really sunken head is bad for anybody, calibrated or not
    assert classify(front(nose_y=270), CFG, Baseline()).reasons == ("head_down",)


def test_sensitivity_scales_thresholds() -> None:
    slight = front(nose_y=175)  # the nose 0.125 widths below the baseline: under the 0.2 margin
    assert classify(slight, CFG, CAL).posture == "good"
    assert classify(slight, PostureConfig(sensitivity=2.0), CAL).posture == "bad"


def test_low_visibility_gives_unknown_not_a_guess() -> None:
    r = classify(front(low=(LEFT_SHOULDER,)), CFG, CAL)
    assert r.posture == "unknown" and r.reasons == ("low_visibility",)


def test_ears_hidden_falls_back_to_nose() -> None:
    r = classify(front(low=(LEFT_EAR, RIGHT_EAR)), CFG, CAL)
    assert r.posture in ("good", "bad") and r.metrics["head_height"] == r.metrics["nose_height"]


@pytest.mark.parametrize("hips", [dict(hips_y=520, low=(LEFT_HIP,)), dict(hips_y=490, size=(W, 485))])
def test_hips_hidden_or_outside_the_frame_are_not_judged(hips: dict) -> None:
    """At a desk the hips are often hidden; a guess below the frame edge is no slump."""
    r = classify(front(**hips), CFG, CAL)
    assert "torso_height" not in r.metrics and r.posture == "good"


@pytest.mark.parametrize("neck,torso,pitch,reason", [
    (10, 0, 15, None), (45, 0, 15, "neck_forward"), (10, 20, 15, "torso_lean"),
    (10, -25, 15, "reclined"), (10, 0, 70, "head_down"),
])
@pytest.mark.parametrize("facing", [1, -1])
def test_side_view(neck: float, torso: float, pitch: float, reason: str | None, facing: int) -> None:
    r = classify(side(neck, torso, pitch, facing=facing), SIDE, Baseline())
    assert r.reasons == ((reason,) if reason else ())
    assert r.metrics["neck_deg"] == pytest.approx(neck, abs=0.01)
    assert r.metrics["torso_deg"] == pytest.approx(torso, abs=0.01)
    assert r.metrics["head_pitch_deg"] == pytest.approx(pitch, abs=0.01)


def test_side_view_without_a_nose_measures_unsigned_angles() -> None:
    """Which way the person faces comes from the nose; without it leaning back reads as forward."""
    r = classify(side(-20, -5, nose=False), SIDE, Baseline())
    assert r.metrics["neck_deg"] == pytest.approx(20, abs=0.01) and r.metrics["torso_deg"] == pytest.approx(5, abs=0.01)
    assert "head_pitch_deg" not in r.metrics


def test_side_view_uses_the_visible_side() -> None:
    """The far side's landmarks, barely visible, do not pull the measurement."""
    pose = side(40)
    far = list(pose.landmarks)
    far[RIGHT_EAR] = Landmark(0.0, 0.0, 0.05)
    r = classify(Pose(tuple(far), W, H), PostureConfig(view="side", min_visibility=0.1), Baseline())
    assert r.metrics["neck_deg"] == pytest.approx(40, abs=0.01)


def test_every_rule_reason_is_listed_and_rules_name_real_fields() -> None:
    for view, rules in RULES.items():
        for rule in rules:
            assert rule.reason in REASONS
            assert rule.margin in PostureConfig.model_fields and hasattr(Baseline(), rule.metric)
            assert rule.metric in METRICS[view]
    assert len(REASONS) == len(set(REASONS)) and "low_visibility" in REASONS


def test_every_metric_shows_up_when_everything_is_seen() -> None:
    assert set(classify(front(hips_y=600, size=(W, 700)), CFG, CAL).metrics) == set(METRICS["front"])
    assert set(classify(side(10), SIDE, Baseline()).metrics) == set(METRICS["side"])


def test_baseline_files_from_before_the_new_fields_still_load() -> None:
    old = {"head_height": 0.66, "nose_height": 0.58, "shoulder_width": 0.31, "shoulder_tilt_deg": 2.0,
           "neck_deg": 15.0, "torso_deg": 2.0, "calibrated": True, "at": "2026-11-21T10:00:00Z"}
    base = Baseline.from_json(old)
    assert base.nose_height == 0.58 and base.torso_height == Baseline().torso_height and base.calibrated


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


def test_a_frame_the_tracker_drops_does_not_restart_an_onset() -> None:
    """Someone arrives in a posture that needs onset_s while the tracker loses them for one
    frame every 1.7 s (measured on a real photo): they must not stay absent."""
    f = PostureFilter(PostureConfig(onset_s=3.0, absent_s=1.0), now=0)
    assert feed(f, [None] * 20, t0=0.0)[-1] == "absent"
    arriving = ([BAD] * 16 + [None]) * 3  # 5.1 s at 10 fps
    states = feed(f, arriving, t0=2.0)
    assert states[:30] == ["absent"] * 30 and states[-1] == "bad", states
    # ... and the same dropped frames don't hold off a slouch from a good start either.
    f = PostureFilter(PostureConfig(onset_s=3.0, absent_s=1.0), now=0)
    f.update(GOOD, 0)
    assert feed(f, arriving, t0=1.0)[-1] == "bad"


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
    assert set(r.reasons) <= set(REASONS)
    assert set(r.metrics) <= set(METRICS[view])


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
