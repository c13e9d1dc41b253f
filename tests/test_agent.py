"""End to end: the real agent process, real MediaPipe, real photos, the real (amqtt) broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deskpulse.topics import Topics

from .photos import astronaut, black, cameraman
from .support import ROOT, AgentProcess, Recorder, agent_env, free_port

pytestmark = pytest.mark.slow


def state_is(posture: str):
    return lambda m: m.json()["posture"] == posture


def test_real_photo_gives_retained_present_state_seen_by_late_subscriber(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "e2e1")
    with AgentProcess(broker.port, str(astronaut(tmp_path / "a.jpg")), "e2e1", tmp_path / "d"):
        state = recorder.wait_topic(t.state, state_is("good"), timeout=60).json()
        assert state["camera"] == "ok" and state["confidence"] > 0.5
        assert set(state) >= {"posture", "confidence", "since", "bad_for_s", "metrics", "camera", "ts", "seq"}
        assert state["metrics"]["head_height"] > 0 and state["metrics"]["reasons"] == []
        assert recorder.wait_topic(t.availability).payload == b"online"
        late = Recorder(broker.port, f"{t.base}/#")
        try:
            again = late.wait_topic(t.state, lambda m: m.retain)
            assert again.json()["posture"] == "good"
            assert late.wait_topic(t.availability, lambda m: m.retain).payload == b"online"
            # amqtt re-sends retained QoS 0 messages without the retain flag; the retained
            # health on mosquitto is checked in the fault tests.
            health = late.wait_topic(t.health, timeout=20).json()
            assert health["camera"] == "ok" and health["frames_encoded"] == 0
        finally:
            late.close()


def test_slouching_photo_is_bad_with_reasons(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "e2e2")
    with AgentProcess(broker.port, str(cameraman(tmp_path / "c.jpg")), "e2e2", tmp_path / "d",
                      config="[posture]\nonset_s = 0.5\n"):
        state = recorder.wait_topic(t.state, state_is("bad"), timeout=60).json()
        assert state["metrics"]["reasons"] and state["bad_for_s"] >= 0


def test_black_frame_gives_absent(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "e2e3")
    with AgentProcess(broker.port, str(black(tmp_path / "b.png")), "e2e3", tmp_path / "d"):
        state = recorder.wait_topic(t.state, state_is("absent"), timeout=60).json()
        assert state["confidence"] == 1.0 and state["camera"] == "ok"


def test_sigkill_gives_offline_through_the_last_will(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "e2e4")
    agent = AgentProcess(broker.port, "demo", "e2e4", tmp_path / "d").start()
    try:
        recorder.wait_topic(t.availability, lambda m: m.payload == b"online", timeout=60)
        agent.signal(signal.SIGKILL)
        agent.wait()
        assert recorder.wait_topic(t.availability, lambda m: m.payload == b"offline", timeout=60)
    finally:
        agent.stop()


def test_sigterm_stops_cleanly_publishing_offline(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "e2e5")
    agent = AgentProcess(broker.port, "demo", "e2e5", tmp_path / "d").start()
    try:
        recorder.wait_topic(t.state, lambda m: m.json()["camera"] == "ok", timeout=60)
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0
        recorder.wait_topic(t.availability, lambda m: m.payload == b"offline")
        log = agent.log()
        assert "Traceback" not in log and "stopped" in log
    finally:
        agent.stop()


def test_unreachable_broker_is_one_clear_line_and_monitoring_goes_on(tmp_path: Path) -> None:
    agent = AgentProcess(free_port(), "demo", "e2e6", tmp_path / "d").start()
    try:
        deadline_log = ""
        for _ in range(300):  # wait for the agent to report the broker and process frames
            deadline_log = agent.log()
            if "cannot reach broker" in deadline_log and "posture good" in deadline_log:
                break
            subprocess.run(["sleep", "0.1"])
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0
        log = agent.log()
        assert log.count("cannot reach broker mqtt://127.0.0.1") == 1
        assert "posture good" in log and "Traceback" not in log
    finally:
        agent.stop()


@pytest.mark.parametrize("args,key", [
    (["--source", "/no/such/video.mp4"], "camera.source"),
    (["--broker", "http://nope"], "mqtt.broker"),
    (["--device-id", "Bad Id"], "device_id"),
])
def test_bad_flags_exit_2_naming_the_key(args: list[str], key: str) -> None:
    res = subprocess.run([sys.executable, "-m", "deskpulse", "run", *args], capture_output=True, text=True,
                         env=agent_env(), cwd=str(ROOT), timeout=60)
    assert res.returncode == 2
    assert key in res.stderr and "Traceback" not in res.stderr


def test_check_config_unknown_key_and_wrong_type(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[camera]\nfsp = 10\n[frames]\nquality = "high"\n')
    res = subprocess.run([sys.executable, "-m", "deskpulse", "check-config", "--config", str(cfg)],
                         capture_output=True, text=True, env=agent_env(), cwd=str(ROOT), timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2
    assert any(f"{cfg}: camera.fsp: unknown key" in line for line in lines)
    assert any(f"{cfg}: frames.quality" in line for line in lines)


def test_calibrate_from_the_cli_saves_a_baseline(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "e2e7")
    data = tmp_path / "d"
    with AgentProcess(broker.port, str(astronaut(tmp_path / "a.jpg")), "e2e7", data):
        recorder.wait_topic(t.state, state_is("good"), timeout=60)
        res = subprocess.run([sys.executable, "-m", "deskpulse", "calibrate", "--seconds", "2",
                              "--broker", f"mqtt://127.0.0.1:{broker.port}", "--device-id", "e2e7"],
                             capture_output=True, text=True, env=agent_env(), cwd=str(ROOT), timeout=60)
        assert res.returncode == 0, res.stderr
        assert "collecting" in res.stdout and "calibrated:" in res.stdout
        saved = json.loads((data / "e2e7" / "calibration-front.json").read_text())
        assert saved["calibrated"] is True and 0.5 < saved["head_height"] < 0.9
        recorder.wait_topic(t.state, lambda m: m.json()["calibrated"] is True)


def test_pause_releases_camera_and_stream_lease_sends_jpegs(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "e2e8")
    with AgentProcess(broker.port, "demo", "e2e8", tmp_path / "d"):
        recorder.wait_topic(t.state, lambda m: m.json()["camera"] == "ok", timeout=60)
        recorder.publish(t.request("stream"), json.dumps({"lease_s": 5, "transaction": "s1"}))
        answer = recorder.wait_topic(t.response("stream")).json()
        assert answer == {"status": "ok", "data": {"streaming": True, "lease_s": 5.0, "fps": 10.0},
                          "transaction": "s1"}
        frame = recorder.wait_topic(t.frame)
        assert frame.payload[:2] == b"\xff\xd8" and not frame.retain
        recorder.publish(t.request("pause"), json.dumps({"minutes": 5, "transaction": 7}))
        answer = recorder.wait_topic(t.response("pause")).json()
        assert answer["status"] == "ok" and answer["transaction"] == 7 and answer["data"]["until"]
        paused = recorder.wait_topic(t.state, state_is("paused")).json()
        assert paused["camera"] == "released" and paused["until"] == answer["data"]["until"]
        recorder.publish(t.request("resume"), "")
        recorder.wait_topic(t.state, lambda m: m.json()["posture"] != "paused" and m.json()["camera"] == "ok")


def test_lease_expiry_stops_jpeg_encoding_and_pages_share_one_stream(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "e2e9")
    with AgentProcess(broker.port, "demo", "e2e9", tmp_path / "d",
                      config="[mqtt]\nhealth_interval_s = 1.0\n[homeassistant]\nenabled = false\n"):
        recorder.wait_topic(t.state, lambda m: m.json()["camera"] == "ok", timeout=60)
        # Two pages renew with different leases: the longer one wins, the stream is shared.
        recorder.publish(t.request("stream"), json.dumps({"lease_s": 1}))
        recorder.publish(t.request("stream"), json.dumps({"lease_s": 2}))
        recorder.wait_topic(t.frame)
        # After the lease ran out: not streaming, with the frames it did encode counted.
        stopped = recorder.wait_topic(t.health, lambda m: not m.json()["streaming"]
                                      and m.json()["frames_encoded"] > 0, timeout=30)
        later = recorder.wait_topic(t.health, start=recorder.messages.index(stopped) + 1, timeout=20)
        assert later.json()["frames_encoded"] == stopped.json()["frames_encoded"]  # no JPEG without a lease
