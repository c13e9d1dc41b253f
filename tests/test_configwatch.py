"""A config edited while running, and a pipeline that keeps failing (process faults)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from deskpulse.agent import Agent
from deskpulse.config import load_config
from deskpulse.configwatch import ConfigWatcher
from deskpulse.topics import Topics


def write(path: Path, text: str) -> None:
    path.write_text(text)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a distinct mtime even within one tick


def test_runtime_keys_apply_live_and_others_wait_for_restart(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.toml"
    write(path, "[alerts]\nbad_posture_minutes = 10\n")
    running = load_config(path, {}, {})
    watcher = ConfigWatcher(path, {}, interval_s=0)
    assert watcher.poll(running) is None  # unchanged
    write(path, "[alerts]\nbad_posture_minutes = 15\n[camera]\nfps = 5\n")
    updated = watcher.poll(running)
    assert updated is not None and updated.alerts.bad_posture_minutes == 15
    assert updated.camera.fps == running.camera.fps  # needs a restart, and says so
    assert any("camera.fps take effect after a restart" in r.getMessage() for r in caplog.records)


def test_invalid_edit_keeps_the_running_config_with_one_line_per_problem(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.toml"
    write(path, "")
    running = load_config(path, {}, {})
    watcher = ConfigWatcher(path, {}, interval_s=0)
    write(path, "[alerts]\nbad_posture_minutes = -3\n[camra]\nx = 1\n")
    assert watcher.poll(running) is None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    assert any("alerts.bad_posture_minutes" in e for e in errors) and any("camra: unknown key" in e for e in errors)
    write(path, "[alerts]\nbad_posture_minutes = 12\n")  # fixed: applies
    fixed = watcher.poll(running)
    assert fixed is not None and fixed.alerts.bad_posture_minutes == 12


class Frames:
    live = True

    def read(self):
        return np.zeros((48, 64, 3), np.uint8)

    def close(self) -> None:
        pass


class BrokenModel:
    def estimate(self, rgb):
        raise RuntimeError("model crashed")

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_a_pipeline_that_keeps_failing_brings_the_process_down_loudly(broker, recorder, tmp_path: Path, caplog) -> None:
    config = load_config(None, {"device_id": "broken", "data_dir": str(tmp_path), "camera.source": "demo",
                                "mqtt.broker": f"mqtt://127.0.0.1:{broker.port}"}, {})
    agent = Agent(config, estimator=BrokenModel(), opener=Frames).start()
    try:
        code = agent.wait(threading.Event())  # returns when a thread died
        assert code == 1
        assert agent.fatal and "pipeline failed 5 times" in agent.fatal
        assert "pipeline" in [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"][0]
    finally:
        agent.stop()
    t = Topics("deskpulse", "broken")
    recorder.wait_topic(t.availability, lambda m: m.payload == b"offline")
