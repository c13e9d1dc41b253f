"""Many desks: agents side by side on one broker, the fleet summary, and desks bridged into a
central mosquitto with the shipped config/bridge.conf.example (real processes, loopback)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from deskpulse.config import load_config
from deskpulse.fleet import _absorb, collect, fleet_command
from deskpulse.topics import Topics

from .photos import astronaut, black
from .support import ROOT, AgentProcess, Mosquitto, Recorder

NO_HA = "[homeassistant]\nenabled = false\n"
FAST_STATS = "[history]\nstats_interval_s = 1\n"


def is_state(posture: str):
    return lambda m: m.json()["posture"] == posture


def test_absorb_ignores_what_is_not_a_device_topic() -> None:
    devices: dict = {}
    for topic, payload in [
        ("deskpulse/a/state", b'{"posture": "good"}'), ("deskpulse/a/stats", b'{"good_pct": 81.5}'),
        ("deskpulse/a/availability", b"online"), ("deskpulse/b/state", b"\xff"), ("deskpulse/c/state", b"[1]"),
        ("deskpulse/d/state", b""), ("deskpulse/e/response/x", b"{}"), ("other/f/state", b"{}"),
    ]:
        _absorb(devices, "deskpulse", topic, payload)
    assert devices["a"].posture == "good" and devices["a"].good_pct == 81.5
    assert devices["a"].availability == "online"
    assert set(devices) == {"a", "b", "c"} and devices["b"].state is None and devices["c"].state is None


@pytest.mark.slow
def test_two_agents_on_one_broker_and_the_fleet_summary(broker, recorder, tmp_path: Path) -> None:
    a, b = Topics("deskpulse", "desk-a"), Topics("deskpulse", "desk-b")
    with AgentProcess(broker.port, str(astronaut(tmp_path / "a.jpg")), "desk-a", tmp_path / "a",
                      config=NO_HA + FAST_STATS), \
         AgentProcess(broker.port, str(black(tmp_path / "b.png")), "desk-b", tmp_path / "b",
                      config=NO_HA + FAST_STATS):
        recorder.wait_topic(a.state, is_state("good"), timeout=90)
        recorder.wait_topic(b.state, is_state("absent"), timeout=90)
        recorder.wait_topic(a.stats, lambda m: m.json()["good_s"] > 0, timeout=30)
        recorder.wait_topic(b.stats, timeout=30)

        config = load_config(None, {"mqtt.broker": f"mqtt://127.0.0.1:{broker.port}"}, env={})
        devices = collect(config.mqtt.address(), "deskpulse", timeout=5)
        assert set(devices) == {"desk-a", "desk-b"}
        assert devices["desk-a"].availability == devices["desk-b"].availability == "online"
        assert devices["desk-a"].posture == "good" and devices["desk-b"].posture == "absent"
        assert devices["desk-a"].good_pct is not None and devices["desk-a"].good_pct > 0

        out = io.StringIO()
        assert fleet_command(config, timeout=5, out=out) == 0
        text = out.getvalue()
        print("\n" + text)
        lines = text.splitlines()
        assert lines[0].split()[:3] == ["DEVICE", "AVAILABILITY", "POSTURE"]
        row_a = next(line for line in lines if line.startswith("desk-a"))
        row_b = next(line for line in lines if line.startswith("desk-b"))
        assert row_a.split()[1:3] == ["online", "good"] and "%" in row_a
        assert row_b.split()[1:3] == ["online", "absent"]
        assert lines[-1] == "2 device(s), 2 online"

        out = io.StringIO()
        assert fleet_command(config, timeout=5, out=out, as_json=True) == 0
        assert {d["device"] for d in json.loads(out.getvalue())} == {"desk-a", "desk-b"}


def test_fleet_with_no_devices_is_exit_1(broker, capsys) -> None:
    config = load_config(None, {"mqtt.broker": f"mqtt://127.0.0.1:{broker.port}", "mqtt.prefix": "nobody"}, env={})
    assert fleet_command(config, timeout=2, out=io.StringIO()) == 1
    assert "no devices under nobody/" in capsys.readouterr().err


def render_bridge(central_port: int, desk: str) -> str:
    """config/bridge.conf.example with the marked values filled in for this test."""
    text = (ROOT / "config" / "bridge.conf.example").read_text()
    for old, new in (("central.example.lan:1883", f"127.0.0.1:{central_port}"), ("desk-1", desk)):
        assert old in text, f"bridge.conf.example no longer contains {old!r}"
        text = text.replace(old, new)
    return text


@pytest.mark.slow
@pytest.mark.mosquitto
def test_desks_bridged_into_a_central_broker(tmp_path: Path) -> None:
    central = Mosquitto().start()
    desks = []
    agents = []
    rec: Recorder | None = None
    try:
        rec = Recorder(central.port, ["deskpulse/#", "$SYS/broker/connection/#"])
        for name, photo in (("desk-a", astronaut(tmp_path / "a.jpg")), ("desk-b", black(tmp_path / "b.png"))):
            desk = Mosquitto()
            desk.conf_body = f"listener {desk.port} 127.0.0.1\nallow_anonymous true\n" + render_bridge(central.port, name)
            desks.append(desk.start())
            # No periodic state refresh within the test: a state that reaches the restarted
            # central broker below can only have come from the bridge resending retained ones.
            agents.append(AgentProcess(desk.port, str(photo), name, tmp_path / name,
                                       config=NO_HA + "[mqtt]\nstate_refresh_s = 600\n").start())
        a, b = Topics("deskpulse", "desk-a"), Topics("deskpulse", "desk-b")
        # Both desks' states reach the central broker, and stay retained there.
        rec.wait_topic(a.state, is_state("good"), timeout=90)
        rec.wait_topic(b.state, is_state("absent"), timeout=90)
        rec.wait_topic("$SYS/broker/connection/deskpulse-bridge-desk-a/state", lambda m: m.payload == b"1")
        late = Recorder(central.port, "deskpulse/+/state")
        try:
            assert late.wait_topic(a.state, lambda m: m.retain).json()["posture"] == "good"
            assert late.wait_topic(b.state, lambda m: m.retain).json()["posture"] == "absent"
        finally:
            late.close()

        # A request sent on the central broker reaches the right desk; the answer comes back.
        for t in (a, b):
            mark = rec.mark()
            rec.publish(t.request("config/get"), json.dumps({"transaction": f"central-{t.device_id}"}))
            answer = rec.wait_topic(t.response("config/get"), start=mark, timeout=20).json()
            assert answer["status"] == "ok" and answer["transaction"] == f"central-{t.device_id}"
            mark = rec.mark()
            rec.publish(t.request("stream"), json.dumps({"lease_s": 3, "transaction": "s"}))
            assert rec.wait_topic(t.response("stream"), start=mark, timeout=20).json()["status"] == "ok"
            frame = rec.wait_topic(t.frame, start=mark, timeout=20)
            assert frame.payload[:2] == b"\xff\xd8"
        # The request went in once and was not echoed back out by the bridge.
        assert len([m for m in rec.on(a.request("config/get"))]) == 1

        # The fleet command works against the central broker as well.
        config = load_config(None, {"mqtt.broker": f"mqtt://127.0.0.1:{central.port}"}, env={})
        devices = collect(config.mqtt.address(), "deskpulse", timeout=5)
        assert {k: d.posture for k, d in devices.items()} == {"desk-a": "good", "desk-b": "absent"}

        # The central broker restarts with nothing retained: the bridges reconnect and send
        # the desks' retained topics again, so a central subscriber sees both states.
        rec.close()
        rec = None
        central.kill()
        central.start()
        again = Recorder(central.port, "deskpulse/+/state")
        try:
            assert again.wait_topic(a.state, timeout=20).json()["posture"] == "good"
            assert again.wait_topic(b.state, timeout=20).json()["posture"] == "absent"
        finally:
            again.close()
    finally:
        if rec is not None:
            rec.close()
        for agent in agents:
            agent.stop()
        for desk in desks:
            desk.stop()
        central.stop()
