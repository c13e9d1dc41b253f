"""The real DeskPulse agent for the Home Assistant core tests, run in DeskPulse's own venv.

Home Assistant's venv cannot import DeskPulse (it pins pydantic 1 and its own numpy, and has
no MediaPipe), so the HA tests start this script with .venv's python. It starts the embedded
amqtt broker on 127.0.0.1:0 and the real agent (`python -m deskpulse run`, real MediaPipe)
on a real photo of a man bent over a camera (bad posture), sends Home Assistant's birth
message (given by the test, from HA's own constants: the agent sends camera snapshots only
while HA is online), records everything the agent publishes, and answers requests from the
test, one JSON object per line:

  argv[1]:       HA's birth message, {"topic", "payload", "qos", "retain"}

  stdout, once:  {"ready": true, "device": ..., "messages": [...]}   (or {"error": ..., "log": ...})
  stdin -> stdout:
    {"op": "publish", "topic", "payload_b64", "qos", "retain", "until": [condition, ...]}
        publishes that exact message (a command Home Assistant sent) and waits until the agent
        has sent a message matching each condition -> {"ok": bool, "messages": [all since]}.
        A condition: {"topic", "json": {subset}, "not": {subset}, "absent": [keys]}
    {"op": "ha-remove"}  runs `deskpulse ha-remove` against the broker -> {"ok", "messages"}
    {"op": "stop"}       stops the agent (SIGTERM) and waits for its "offline" -> {"ok", "messages"}
  stdin closed: everything is stopped.

A message is {"topic", "payload_b64", "qos", "retain"}. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deskpulse import discovery  # noqa: E402
from deskpulse.broker import EmbeddedBroker  # noqa: E402
from deskpulse.topics import Topics  # noqa: E402
from tests.photos import cameraman  # noqa: E402
from tests.support import AgentProcess, Msg, Recorder, agent_env  # noqa: E402

DEVICE = "hacore"
T = Topics("deskpulse", DEVICE)
# Fast enough for a test, otherwise the defaults: bad posture holds for 1 s before the state
# changes, and 3 s of it raise the alert.
CONFIG = """
[posture]
onset_s = 1.0
calibration_s = 1.0
[alerts]
bad_posture_minutes = 0.05
[history]
stats_interval_s = 1.0
[mqtt]
health_interval_s = 1.0
"""
START_TIMEOUT_S = 120.0
WAIT_S = 60.0


def encode(m: Msg) -> dict[str, Any]:
    return {"topic": m.topic, "payload_b64": base64.b64encode(m.payload).decode("ascii"),
            "qos": m.qos, "retain": m.retain}


def send(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def matches(m: Msg, cond: dict[str, Any]) -> bool:
    if m.topic != cond["topic"]:
        return False
    if not cond.keys() & {"json", "not", "absent"}:
        return True
    try:
        body = m.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    return (all(body.get(k) == v for k, v in cond.get("json", {}).items())
            and not any(body.get(k) == v for k, v in cond.get("not", {}).items())
            and not any(k in body for k in cond.get("absent", [])))


def started(rec: Recorder, birth: dict[str, Any]) -> None:
    """Wait for every kind of message the agent publishes for Home Assistant."""
    for topic in discovery.discovery_topics("homeassistant", DEVICE):
        rec.wait_topic(topic, lambda m: bool(m.payload), timeout=START_TIMEOUT_S)
    # The agent is subscribed by now: Home Assistant comes online.
    rec.publish(birth["topic"], birth["payload"], qos=birth["qos"], retain=birth["retain"])
    rec.wait_topic(T.availability, lambda m: m.payload == b"online", timeout=START_TIMEOUT_S)
    rec.wait_topic(T.alert, lambda m: m.json().get("type") == "bad_posture", timeout=START_TIMEOUT_S)
    rec.wait_topic(T.state, lambda m: m.json()["posture"] == "bad" and m.json()["camera"] == "ok",
                   timeout=WAIT_S)
    rec.wait_topic(T.stats, lambda m: m.json().get("alerts", 0) >= 1, timeout=WAIT_S)
    rec.wait_topic(T.health, timeout=WAIT_S)
    rec.wait_topic(T.snapshot, lambda m: m.payload[:2] == b"\xff\xd8", timeout=WAIT_S)


def serve(rec: Recorder, agent: AgentProcess, broker: EmbeddedBroker) -> None:
    for line in sys.stdin:
        req = json.loads(line)
        mark = rec.mark()
        ok = True
        try:
            if req["op"] == "publish":
                rec.publish(req["topic"], base64.b64decode(req["payload_b64"]), qos=req["qos"],
                            retain=req["retain"])
                for cond in req["until"]:
                    rec.wait_for(lambda m, c=cond: matches(m, c), timeout=WAIT_S, start=mark)
            elif req["op"] == "ha-remove":
                cfg = agent.args[agent.args.index("--config") + 1]
                res = subprocess.run(
                    [sys.executable, "-m", "deskpulse", "ha-remove", "--config", cfg, "--broker",
                     f"mqtt://127.0.0.1:{broker.port}", "--device-id", DEVICE],
                    capture_output=True, text=True, env=agent_env(), cwd=str(ROOT), timeout=WAIT_S)
                ok = res.returncode == 0
                last = discovery.discovery_topics("homeassistant", DEVICE)[-1]
                rec.wait_topic(last, lambda m: m.payload == b"", timeout=WAIT_S, start=mark)
            elif req["op"] == "stop":
                agent.stop()
                rec.wait_topic(T.availability, lambda m: m.payload == b"offline", timeout=WAIT_S, start=mark)
            else:
                raise ValueError(f"unknown op {req['op']!r}")
        except TimeoutError:
            ok = False
        since = rec.messages[mark:]
        send({"ok": ok, "messages": [encode(m) for m in since], "log": agent.log()[-3000:]})


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("amqtt").setLevel(logging.ERROR)  # the agent's MQTT 5 probe, refused
    birth = json.loads(sys.argv[1])
    work = Path(tempfile.mkdtemp(prefix="dp-ha-harness-"))
    broker = EmbeddedBroker("127.0.0.1", 0, ws_port=None).start()
    rec = Recorder(broker.port, "#")
    agent = AgentProcess(broker.port, str(cameraman(work / "bent.png")), DEVICE, work / "d", config=CONFIG)
    try:
        agent.start()
        try:
            started(rec, birth)
        except TimeoutError as exc:
            send({"error": f"the agent did not publish everything: {exc}", "log": agent.log()[-3000:]})
            return 1
        recorded = list(rec.messages)
        send({"ready": True, "device": DEVICE, "messages": [encode(m) for m in recorded]})
        serve(rec, agent, broker)
        return 0
    finally:
        agent.stop()
        rec.close()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
