"""The agent's side of the Home Assistant contract on the embedded broker: retained discovery,
discovery again when HA announces itself online, retained (ghost) commands ignored, removal,
and no ghost entities after a rename. A Recorder stands where HA's broker connection would
be; what Home Assistant core itself makes of these messages, and the controls' round trip,
are tested against HA core in tests/ha/test_ha_core.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deskpulse import discovery
from deskpulse.config import load_config
from deskpulse.topics import Topics

from .support import ROOT, AgentProcess, Recorder, agent_env

pytestmark = pytest.mark.slow

DEV = "hae2e"
T = Topics("deskpulse", DEV)


def discovery_topics() -> set[str]:
    return set(discovery.discovery_topics("homeassistant", DEV))


def test_discovery_restart_commands_and_removal(broker, tmp_path: Path) -> None:
    ha = Recorder(broker.port, ["homeassistant/#", f"{T.base}/#"])
    # A retained command left on the broker (ghost switching): replayed to the agent when it
    # subscribes, with the retain flag, and ignored.
    ha.publish(T.request("monitoring"), "OFF", retain=True)
    agent = AgentProcess(broker.port, "demo", DEV, tmp_path / "d").start()
    try:
        # Discovery: every entity's config arrives, retained, naming our topics.
        for topic in discovery_topics():
            msg = ha.wait_topic(topic, timeout=60)
            cfg = json.loads(msg.payload)
            assert cfg["availability"][0]["topic"] == T.availability
        ha.wait_topic(T.state, lambda m: m.json()["camera"] == "ok", timeout=60)

        # Home Assistant restarts: "online" on its status topic -> discovery again, then state.
        mark = ha.mark()
        ha.publish("homeassistant/status", "online")
        first_config = ha.wait_for(lambda m: m.topic in discovery_topics(), start=mark, timeout=30)
        state_after = ha.wait_topic(T.state, start=ha.messages.index(first_config), timeout=30)
        assert ha.messages.index(first_config) < ha.messages.index(state_after)
        again = {m.topic for m in ha.messages[mark:] if m.topic in discovery_topics()}
        assert again == discovery_topics()

        assert not ha.on(T.response("monitoring"))  # the retained OFF was not obeyed
        ha.publish(T.request("monitoring"), "", retain=True)  # clear it

        # The switch: OFF pauses (the same handler as the dashboard's pause).
        switch = next(t for t in discovery_topics() if "/switch/" in t)
        command_topic = json.loads(ha.wait_topic(switch).payload)["command_topic"]
        mark = ha.mark()
        ha.publish(command_topic, "OFF")
        assert ha.wait_topic(T.state, lambda m: m.json()["posture"] == "paused", start=mark).json()["camera"] == "released"
        ha.publish(command_topic, "ON")
        ha.wait_topic(T.state, lambda m: m.json()["posture"] != "paused", start=mark)
        ha.wait_topic(T.response("monitoring"), lambda m: m.json()["data"] == {"paused": False}, start=mark)
        # The retained OFF published before the agent started was never obeyed: only our two.
        answers = [m.json() for m in ha.on(T.response("monitoring")) if m.json()["status"] == "ok"]
        assert [a["data"]["paused"] for a in answers] == [True, False]
    finally:
        agent.stop()

    # ha-remove clears every discovery topic (empty retained payloads).
    cfg = tmp_path / "d" / "deskpulse.toml"
    res = subprocess.run([sys.executable, "-m", "deskpulse", "ha-remove", "--config", str(cfg),
                          "--broker", f"mqtt://127.0.0.1:{broker.port}", "--device-id", DEV],
                         capture_output=True, text=True, env=agent_env(), cwd=str(ROOT), timeout=60)
    assert res.returncode == 0, res.stderr
    late = Recorder(broker.port, "homeassistant/#")
    try:
        mark_topic = "homeassistant/zz-marker"
        late.publish(mark_topic, "x")
        late.wait_topic(mark_topic)
        assert not [m.topic for m in late.messages if m.topic in discovery_topics() and m.payload]
    finally:
        late.close()
        ha.close()


def test_renamed_device_leaves_no_ghost_entities(broker, tmp_path: Path) -> None:
    """A rename is `ha-remove --device-id OLD`: the agent can't tell a rename from a second
    desk, and it never clears another desk's entities by itself (tests/test_two_desks.py)."""
    data = tmp_path / "d"
    ha = Recorder(broker.port, "homeassistant/#")
    try:
        with AgentProcess(broker.port, "demo", "oldname", data) as old_agent:
            ha.wait_for(lambda m: "deskpulse_oldname" in m.topic and m.payload, timeout=60)
        mark = ha.mark()
        with AgentProcess(broker.port, "demo", "newname", data):
            ha.wait_for(lambda m: "deskpulse_newname" in m.topic and m.payload, start=mark, timeout=60)
            assert not [m for m in ha.messages[mark:] if "deskpulse_oldname" in m.topic]
            res = subprocess.run([sys.executable, "-m", "deskpulse", "ha-remove", "--config", str(data / "deskpulse.toml"),
                                  "--broker", f"mqtt://127.0.0.1:{broker.port}", "--device-id", "oldname"],
                                 capture_output=True, text=True, env=agent_env(), cwd=str(ROOT), timeout=60)
            assert res.returncode == 0, res.stderr
            old = set(discovery.discovery_topics("homeassistant", "oldname"))
            for topic in old:
                ha.wait_topic(topic, lambda m: m.payload == b"", start=mark, timeout=30)
            assert not [m for m in ha.messages[mark:] if "deskpulse_newname" in m.topic and m.payload == b""]
        assert old_agent.log()  # the old desk really ran
    finally:
        ha.close()
    assert load_config(data / "deskpulse.toml", {}, {}).homeassistant.enabled


def test_snapshots_leave_only_while_home_assistant_is_online(broker, tmp_path: Path) -> None:
    """The README's promise: a snapshot JPEG goes out only while Home Assistant has said it
    is online (its birth message), never to an empty broker."""
    t = Topics("deskpulse", "hasnap")
    rec = Recorder(broker.port, f"{t.base}/#")
    cfg = "[homeassistant]\nsnapshot_interval_s = 1.0\n[mqtt]\nhealth_interval_s = 1.0\n"
    try:
        with AgentProcess(broker.port, "demo", "hasnap", tmp_path / "d", config=cfg):
            rec.wait_topic(t.state, lambda m: m.json()["camera"] == "ok", timeout=60)
            # Several snapshot intervals go by (health comes every second) with no HA around.
            mark = rec.mark()
            for _ in range(4):
                rec.wait_topic(t.health, start=rec.mark(), timeout=20)
            assert not [m for m in rec.messages[mark:] if m.topic == t.snapshot]
            rec.publish("homeassistant/status", "online")
            snap = rec.wait_topic(t.snapshot, timeout=20)
            assert snap.payload[:2] == b"\xff\xd8" and not snap.retain
            rec.publish("homeassistant/status", "offline")  # HA's last will
            for _ in range(2):  # a second after that the agent has seen it (ms after it was sent)
                rec.wait_topic(t.health, start=rec.mark(), timeout=20)
            quiet = rec.mark()
            for _ in range(4):
                rec.wait_topic(t.health, start=rec.mark(), timeout=20)
            assert not [m for m in rec.messages[quiet:] if m.topic == t.snapshot]
    finally:
        rec.close()
