"""mp_import: the pose solution without the rest of MediaPipe, and MediaPipe whole on demand.

Each case runs in a fresh interpreter (what is imported is the point), with real MediaPipe
on scikit-image's astronaut photo.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import json, sys
sys.path.insert(0, {root!r})
from skimage import data

def landmarks(solution):
    with solution.Pose(static_image_mode=True, model_complexity=1) as pose:
        found = pose.process(data.astronaut()).pose_landmarks
    return [[lm.x, lm.y, lm.visibility] for lm in found.landmark]

def loaded():
    return {{"matplotlib": "matplotlib" in sys.modules, "tasks": "mediapipe.tasks" in sys.modules,
             "modules": len(sys.modules)}}
"""


def run(body: str) -> dict:
    code = PRELUDE.format(root=str(ROOT)) + body
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                         env={"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pose_loads_without_matplotlib_or_the_tasks_api_and_finds_the_same_person() -> None:
    light = run("""
from deskpulse.mp_import import load_pose_solution
solution = load_pose_solution()
before = loaded()
from mediapipe.framework import calculator_pb2  # what pose.py's presence checks import too
print(json.dumps({"loaded": before, "after_framework": loaded(), "marks": landmarks(solution),
                  "again": load_pose_solution() is solution}))
""")
    ordinary = run("""
from mediapipe.python.solutions import pose
print(json.dumps({"loaded": loaded(), "marks": landmarks(pose)}))
""")
    assert light["loaded"]["matplotlib"] is False and light["loaded"]["tasks"] is False
    assert light["after_framework"] == light["loaded"]
    assert ordinary["loaded"]["matplotlib"] is True  # what the light import saves
    assert light["loaded"]["modules"] < ordinary["loaded"]["modules"] - 200
    assert light["again"] is True
    assert len(light["marks"]) == 33
    assert light["marks"] == ordinary["marks"]  # the same model on the same photo


@pytest.mark.slow
def test_mediapipe_asked_for_more_runs_its_own_init_then() -> None:
    got = run("""
from deskpulse.mp_import import load_pose_solution
solution = load_pose_solution()
import mediapipe as mp
light = loaded()
version = mp.__version__  # anything the package's __init__ provides completes it
print(json.dumps({"before": light, "version": version, "after": loaded(),
                  "tasks": mp.tasks.__name__, "hands": mp.solutions.hands.__name__,
                  "same_pose": mp.solutions.pose is solution,
                  "drawing": hasattr(mp.solutions.drawing_utils, "draw_landmarks")}))
""")
    assert got["before"]["matplotlib"] is False
    assert got["version"] == "0.10.18"
    assert got["after"]["matplotlib"] is True and got["after"]["tasks"] is True
    assert got["tasks"] == "mediapipe.tasks.python"  # as the real package binds it
    assert got["hands"] == "mediapipe.python.solutions.hands"
    assert got["same_pose"] is True and got["drawing"] is True


@pytest.mark.slow
def test_a_mediapipe_laid_out_otherwise_falls_back_to_the_ordinary_import_without_matplotlib() -> None:
    got = run("""
import deskpulse.mp_import as mpi
# A package this MediaPipe doesn't have: the light path fails, the fallback must still work.
mpi.FAN_OUT_PACKAGES = {"mediapipe": False, "mediapipe.no_such_package": False}
solution = mpi.load_pose_solution()
during = loaded()
import matplotlib  # the stand-in is gone: the real one imports now
print(json.dumps({"loaded": during, "marks": len(landmarks(solution)),
                  "real_matplotlib": hasattr(matplotlib, "__version__")}))
""")
    assert got["loaded"]["matplotlib"] is False  # mediapipe's import of pyplot met the stand-in
    assert got["loaded"]["tasks"] is True  # the ordinary import: everything else is there
    assert got["marks"] == 33
    assert got["real_matplotlib"] is True


@pytest.mark.slow
def test_the_trackers_detector_runs_on_tflite_kernels_and_finds_the_same_person() -> None:
    """pose.tracker() moves the tracker graph's person detector (not its landmark model) off
    XNNPACK to save memory; on the same photos it must find the same person, the same way."""
    result = run("""
import numpy as np
from deskpulse.mp_import import load_pose_solution
from deskpulse.pose import tracker
solution = load_pose_solution()
def track(make):
    with make(static_image_mode=False, model_complexity=1) as pose:
        marks = []
        for image in (data.astronaut(), np.zeros((512, 512, 3), np.uint8), data.astronaut()):
            found = pose.process(image).pose_landmarks
            marks.append(None if found is None else [[lm.x, lm.y] for lm in found.landmark])
        return pose, marks
ours, light = track(lambda **kw: tracker(solution, **kw))
_, stock = track(solution.Pose)
print(json.dumps({"changed": ours.detector_on_tflite, "ours": light, "stock": stock}))
""")
    assert len(result["changed"]) == 1 and result["changed"][0].startswith("posedetectioncpu__")
    ours, stock = result["ours"], result["stock"]
    assert ours[1] is None and stock[1] is None  # nobody: both detectors search and find no one
    for a, b in ((ours[0], stock[0]), (ours[2], stock[2])):
        assert a is not None and b is not None
        assert max(abs(p - q) for m, n in zip(a, b) for p, q in zip(m, n)) < 0.02


def test_the_allocator_settings_take_on_glibc() -> None:
    out = subprocess.run([sys.executable, "-c", "from deskpulse import allocator; print(allocator.tune())"],
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert out.stdout.strip() == "True", out.stderr
