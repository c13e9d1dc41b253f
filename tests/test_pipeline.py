"""The pipeline is the single writer of the agent's state (issue 11).

In-process agents with real MediaPipe on real photos and the real (amqtt) broker:
- many clients hammering pause/resume: `seq` strictly increasing as published, and the
  retained state agrees with the last command the agent carried out;
- a pause during a calibration answers that calibration with an error at once;
- wall-clock steps of an hour either way change neither the debounce nor bad_for_s.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from deskpulse.agent import Agent
from deskpulse.clock import Clock
from deskpulse.config import load_config
from deskpulse.topics import Topics

from .photos import astronaut, cameraman
from .support import Recorder

pytestmark = pytest.mark.slow


def make_agent(broker_port: int, source: Path, device: str, data_dir: Path, clock: Clock | None = None,
               **extra: object) -> Agent:
    overrides = {"camera.source": str(source), "mqtt.broker": f"mqtt://127.0.0.1:{broker_port}",
                 "device_id": device, "data_dir": str(data_dir), "homeassistant.enabled": False, **extra}
    return Agent(load_config(None, overrides, env={}), clock=clock)


@pytest.fixture
def running(request: pytest.FixtureRequest) -> Iterator[list[Agent]]:
    agents: list[Agent] = []
    yield agents
    for agent in agents:
        agent.stop()


def test_pause_resume_from_four_clients_keeps_seq_and_the_retained_state_in_step(
        broker, recorder, running, tmp_path: Path) -> None:
    t = Topics("deskpulse", "hammer")
    agent = make_agent(broker.port, astronaut(tmp_path / "a.jpg"), "hammer", tmp_path / "d")
    running.append(agent.start())
    recorder.wait_topic(t.state, lambda m: m.json()["posture"] == "good", timeout=60)
    answers = Recorder(broker.port, t.response("#"))
    clients = [Recorder(broker.port, f"nothing/{i}") for i in range(4)]
    per_client = 40
    try:
        def hammer(i: int) -> None:
            rng = random.Random(i)
            for n in range(per_client):
                verb = rng.choice(["pause", "resume"])
                clients[i].client.publish(t.request(verb), json.dumps({"transaction": f"{i}-{n}"}), qos=1)

        threads = [threading.Thread(target=hammer, args=(i,), name=f"hammer-{i}") for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        # Every request is answered; the requests thread answers in the order the pipeline ran them.
        verbs = (t.response("pause"), t.response("resume"))

        def answered() -> list:
            return [m for m in answers.messages if m.topic in verbs]

        answers.wait_for(lambda m: len(answered()) >= 4 * per_client, timeout=60)
        done = answered()
        assert len(done) == 4 * per_client and all(m.json()["status"] == "ok" for m in done)
        last_verb = done[-1].topic.rsplit("/", 1)[1]
    finally:
        for c in clients:
            c.close()
        answers.close()
    states = recorder.on(t.state)
    seqs = [m.json()["seq"] for m in states]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), f"seq not strictly increasing: {seqs}"
    late = Recorder(broker.port, t.state)
    try:
        retained = late.wait_topic(t.state, lambda m: m.retain, timeout=10).json()
    finally:
        late.close()
    assert (retained["posture"] == "paused") == (last_verb == "pause"), (retained, last_verb)
    assert retained["seq"] == max(seqs)


def test_pause_during_calibration_answers_the_calibration_first(broker, recorder, running, tmp_path: Path) -> None:
    t = Topics("deskpulse", "calpause")
    agent = make_agent(broker.port, astronaut(tmp_path / "a.jpg"), "calpause", tmp_path / "d")
    running.append(agent.start())
    recorder.wait_topic(t.state, lambda m: m.json()["posture"] == "good", timeout=60)
    mark = recorder.mark()
    recorder.publish(t.request("calibrate"), json.dumps({"seconds": 60, "transaction": "cal"}))
    recorder.wait_topic(t.response("calibrate"), lambda m: m.json().get("final") is False, timeout=20, start=mark)
    recorder.publish(t.request("pause"), json.dumps({"transaction": "p"}))
    paused = recorder.wait_topic(t.response("pause"), timeout=20, start=mark)
    cancelled = recorder.wait_topic(t.response("calibrate"), lambda m: m.json()["status"] == "error",
                                    timeout=20, start=mark)
    assert cancelled.json() == {"status": "error", "data": None, "error": "calibration cancelled: paused",
                                "transaction": "cal"}
    # The pipeline answers the calibration while it carries out the pause, before the
    # pause itself is answered: the page never waits out a timeout.
    assert recorder.messages.index(cancelled) < recorder.messages.index(paused)


class SteppedClock:
    """Real monotonic time; wall time that the test can step."""

    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset


@pytest.mark.parametrize("step_h", [-1.0, 1.0])
def test_wall_clock_steps_change_neither_the_debounce_nor_the_slouch_streak(
        broker, recorder, running, tmp_path: Path, step_h: float) -> None:
    t = Topics("deskpulse", "clock")
    wall = SteppedClock()
    agent = make_agent(broker.port, cameraman(tmp_path / "c.png"), "clock", tmp_path / "d",
                       clock=Clock(wall=wall.wall), **{"posture.onset_s": 3.0})
    running.append(agent.start())
    first = recorder.wait_topic(t.state, lambda m: m.json()["camera"] == "ok", timeout=60)
    wall.offset = step_h * 3600  # NTP steps the clock mid-slouch
    started = time.monotonic()
    bad = recorder.wait_topic(t.state, lambda m: m.json()["posture"] == "bad", timeout=60,
                              start=recorder.messages.index(first))
    assert bad.json()["bad_for_s"] < 60
    mark = recorder.mark()
    wall.offset = -wall.offset  # and back again, an hour the other way
    later = recorder.wait_topic(t.state, lambda m: m.json()["bad_for_s"] > 0, timeout=30, start=mark).json()
    elapsed = time.monotonic() - started
    assert later["posture"] == "bad"
    assert later["bad_for_s"] <= elapsed + 1, (later["bad_for_s"], elapsed)


def test_the_demo_calibrates_itself_in_memory_and_shows_its_slouch(broker, recorder, running, tmp_path: Path) -> None:
    """A new user's first run: the demo's slouch must read as bad although nobody has
    pressed Calibrate (the uncalibrated defaults are lenient), and the demo's baseline must
    never become the baseline of a real camera later."""
    t = Topics("deskpulse", "demo1")
    agent = Agent(load_config(None, {"camera.source": "demo", "mqtt.broker": f"mqtt://127.0.0.1:{broker.port}",
                                     "device_id": "demo1", "data_dir": str(tmp_path / "d"),
                                     "homeassistant.enabled": False}, env={}))
    running.append(agent.start())
    calibrated = recorder.wait_topic(t.state, lambda m: m.json()["calibrated"], timeout=60)
    bad = recorder.wait_topic(t.state, lambda m: m.json()["posture"] == "bad", timeout=60,
                              start=recorder.messages.index(calibrated)).json()
    assert bad["metrics"]["reasons"]
    assert not list((tmp_path / "d").rglob("calibration-*.json"))
