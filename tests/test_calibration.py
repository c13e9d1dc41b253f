"""Calibration: readings in, a personal baseline (or a clear reason) out; saved atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskpulse.calibration import BaselineStore, CalibrationFailed, Calibrator
from deskpulse.posture import Baseline, Reading


def reading(head: float = 0.7, tilt: float = 2.0) -> Reading:
    return Reading("good", 0.95, {"head_height": head, "nose_height": head - 0.08,
                                  "shoulder_tilt_deg": tilt, "shoulder_width": 0.33})


def run(readings: list[Reading | None], seconds: float = 2.0, fps: float = 10) -> Calibrator:
    cal = Calibrator("front", seconds, started=100.0)
    for i, r in enumerate(readings):
        cal.add(r, 100.0 + i / fps)
    return cal


def test_steady_good_posture_becomes_the_baseline() -> None:
    cal = run([reading(0.70 + 0.01 * (i % 3)) for i in range(21)])
    assert cal.done(102.0)
    base = cal.result(102.0)
    assert base.calibrated and base.head_height == pytest.approx(0.71)
    assert base.shoulder_width == pytest.approx(0.33) and base.at is not None


def test_progress_counts_up_to_99_while_collecting() -> None:
    cal = Calibrator("front", 2.0, started=0.0)
    percents = [cal.add(reading(), t / 10).percent for t in range(25)]
    assert percents[0] == 0 and percents == sorted(percents) and max(percents) == 99


def test_nobody_in_front_of_the_camera() -> None:
    cal = run([None] * 15 + [reading()] * 5)
    with pytest.raises(CalibrationFailed, match="no person visible"):
        cal.result(102.0)


def test_moving_around_is_not_steady() -> None:
    cal = run([reading(0.4 if i % 2 else 0.8) for i in range(21)])
    with pytest.raises(CalibrationFailed, match="not steady"):
        cal.result(102.0)


def test_side_view_baseline() -> None:
    cal = Calibrator("side", 1.0, started=0.0)
    for i in range(11):
        cal.add(Reading("good", 0.9, {"neck_deg": 20.0 + (i % 2), "torso_deg": 4.0}), i / 10)
    base = cal.result(1.0)
    assert base.neck_deg == pytest.approx(20.0) and base.torso_deg == pytest.approx(4.0)


def test_store_round_trip_survives_restart(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    saved = Baseline(head_height=0.66, nose_height=0.58, shoulder_width=0.31, calibrated=True, at="2026-11-21T10:00:00Z")
    store.save("front", saved)
    assert BaselineStore(tmp_path).load("front") == saved
    assert BaselineStore(tmp_path).load("side") == Baseline()  # per view
    assert [p.name for p in tmp_path.iterdir()] == ["calibration-front.json"]  # no temp file left


@pytest.mark.parametrize("content", ["{not json", '{"head_height": -1}', '{"head_height": "tall"}', "[]"])
def test_corrupt_file_falls_back_to_defaults_with_one_warning(tmp_path: Path, content: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "calibration-front.json").write_text(content)
    assert BaselineStore(tmp_path).load("front") == Baseline()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "calibration-front.json" in warnings[0].getMessage()


def test_saved_file_is_plain_json(tmp_path: Path) -> None:
    BaselineStore(tmp_path).save("front", Baseline(calibrated=True))
    assert json.loads((tmp_path / "calibration-front.json").read_text())["calibrated"] is True


def test_one_good_frame_is_enough() -> None:
    """A single photo (or the one frame a person was seen in a short video) calibrates."""
    cal = Calibrator("front", 0.1, started=0.0)
    cal.add(reading(0.62), 0.0)
    base = cal.result(0.1)
    assert base.calibrated and base.head_height == pytest.approx(0.62) and base.nose_height == pytest.approx(0.54)


def test_what_was_never_measured_keeps_the_defaults() -> None:
    """Hips out of sight during the calibration: the slump check keeps its default."""
    defaults = Baseline(torso_height=1.4, neck_deg=12.0)
    cal = Calibrator("front", 1.0, started=0.0, defaults=defaults)
    for i in range(11):
        cal.add(reading(), i / 10)
    base = cal.result(1.0)
    assert base.torso_height == 1.4 and base.neck_deg == 12.0  # from the given defaults
    assert base.nose_height == pytest.approx(0.62)  # measured


def test_calibrating_on_a_pose_makes_it_good_and_a_slump_from_it_bad() -> None:
    """The real classifier's readings in, the baseline back into the real classifier."""
    from deskpulse.config import PostureConfig
    from deskpulse.posture import classify

    from .test_posture import front

    cfg = PostureConfig()
    tall = (640, 700)  # hips in the frame
    low_sitter = front(nose_y=225, head_y=205, hips_y=560, size=tall)  # a low head, good for this person
    cal = Calibrator("front", 0.5, started=0.0)
    for i in range(6):
        cal.add(classify(low_sitter, cfg, Baseline()), i / 10)
    base = cal.result(0.5)
    assert classify(low_sitter, cfg, base).posture == "good"
    assert base.torso_height == pytest.approx(1.3) and base.nose_height == pytest.approx(0.375)
    assert classify(front(nose_y=275, head_y=255, hips_y=560, size=tall), cfg, base).reasons == ("head_down",)
    assert classify(front(nose_y=225, head_y=205, hips_y=470, size=tall), cfg, base).reasons == ("slumped",)


def test_side_view_baseline_includes_the_head_pitch() -> None:
    cal = Calibrator("side", 0.2, started=0.0)
    cal.add(Reading("good", 0.9, {"neck_deg": 8.0, "torso_deg": -3.0, "head_pitch_deg": 12.0}), 0.0)
    base = cal.result(0.2)
    assert (base.neck_deg, base.torso_deg, base.head_pitch_deg) == (8.0, -3.0, 12.0)


def test_head_below_the_shoulders_is_refused_not_saved() -> None:
    cal = Calibrator("front", 0.2, started=0.0)
    cal.add(Reading("good", 0.9, {"head_height": -0.1, "nose_height": -0.2, "shoulder_tilt_deg": 1.0,
                                  "shoulder_width": 0.3}), 0.0)
    with pytest.raises(CalibrationFailed, match="sit upright"):
        cal.result(0.2)
