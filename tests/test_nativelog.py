"""deskpulse/nativelog.py against real MediaPipe: its absl warnings leave stderr for the
debug log, while anything else written to stderr meanwhile still reaches it."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from skimage import data

from deskpulse.nativelog import NATIVE_LINE, native_stderr_to_log

LOGGER = "test.nativelog"


def test_mediapipe_warnings_go_to_the_debug_log(capfd: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    from mediapipe.python.solutions import pose as mp_pose

    pose = mp_pose.Pose(static_image_mode=False, model_complexity=1)
    other = threading.Thread(target=lambda: print("another thread's line", file=sys.stderr, flush=True))
    try:
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            with native_stderr_to_log(logging.getLogger(LOGGER)):
                result = pose.process(data.astronaut())  # a new graph's first frame warns
                print("a python line", file=sys.stderr)
                other.start()
                other.join()
    finally:
        pose.close()
    assert result.pose_landmarks is not None
    err = capfd.readouterr().err
    assert "Feedback manager" not in err and not any(NATIVE_LINE.match(x) for x in err.splitlines())
    assert "a python line" in err and "another thread's line" in err
    native = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any("Feedback manager" in m for m in native), native
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == LOGGER)


def test_stderr_is_back_after_the_block(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError):
        with native_stderr_to_log(logging.getLogger(LOGGER)):
            raise RuntimeError("inside")
    print("after", file=sys.stderr, flush=True)
    assert capfd.readouterr().err == "after\n"


@pytest.mark.parametrize("line,native", [
    ("W0000 00:00:1796178108.020511    7776 inference_feedback_manager.cc:114] Feedback manager", True),
    ("I0000 00:00:1796178108.1 12 gl_context.cc:357] GL version", True),
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", True),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("2026-12-02 02:21:48,285 WARNING deskpulse.agent: camera lost", False),
    ("Traceback (most recent call last):", False),
    ("WARNING: something else", False),
])
def test_native_line_pattern(line: str, native: bool) -> None:
    assert bool(NATIVE_LINE.match(line)) is native
