"""Two real agents on one host: same default data dir, different device ids, one broker.

What a user with two cameras on one Pi does. Desk A watches an empty chair (a black frame:
absent), desk B a person (the astronaut photo: good). They must share nothing: pausing A
leaves B running, also across B's restart; each desk's `request/history` and
`deskpulse stats` show only its own time; restarting B leaves A's Home Assistant entities
(retained discovery topics) in place.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deskpulse import discovery
from deskpulse.topics import Topics

from .photos import astronaut, black
from .support import ROOT, AgentProcess, Msg, Recorder, agent_env

pytestmark = pytest.mark.slow

START_S = 90.0  # a cold agent's first classified state (MediaPipe load), two agents sharing the CPU
HA_PREFIX = "homeassistant"


class Desk:
    """One agent: its own config file (device id, no data_dir: the default), its own log dir."""

    def __init__(self, tmp: Path, device: str, source: str, broker_port: int, env: dict[str, str]) -> None:
        self.device = device
        self.t = Topics("deskpulse", device)
        self.config = tmp / f"{device}.toml"
        self.config.write_text(
            f'device_id = "{device}"\n'
            "[mqtt]\nstate_refresh_s = 1.0\n"
            '[history]\ncheckpoint_s = 1\nstats_interval_s = 1\ntimezone = "UTC"\n')
        self.env = env
        # AgentProcess writes its own config (with a data_dir) into its directory; the second
        # --config wins (argparse keeps the last), so the agent runs on ours: the default data dir.
        self.agent = AgentProcess(broker_port, source, device, tmp / f"run-{device}",
                                  extra_args=("--config", str(self.config)), env=env)
        self._n = 0

    def call(self, rec: Recorder, verb: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request and its final answer, matched by transaction; the answer must be ok."""
        self._n += 1
        tx = f"{self.device}-{self._n}-{time.monotonic_ns()}"
        start = rec.mark()
        rec.publish(self.t.request(verb), json.dumps({**(body or {}), "transaction": tx}))
        answer = rec.wait_topic(self.t.response(verb), lambda m: m.json().get("transaction") == tx
                                and m.json().get("final", True) is not False, timeout=15, start=start).json()
        assert answer["status"] == "ok", answer
        return answer["data"]

    def stats_cli(self) -> list[str]:
        res = subprocess.run([sys.executable, "-m", "deskpulse", "stats", "--days", "1", "--config", str(self.config)],
                             capture_output=True, text=True, env=agent_env(**self.env), cwd=str(ROOT), timeout=60)
        assert (res.returncode, res.stderr) == (0, ""), res.stderr
        return res.stdout.splitlines()

    def clean_log(self) -> None:
        log = self.agent.log()
        assert "Traceback" not in log, log[log.find("Traceback") - 300:][:3000]


def posture(expected: str) -> Any:
    return lambda m: m.json().get("posture") == expected


def today(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["days"][-1]


def stats_row(lines: list[str]) -> tuple[str, str]:
    """(date, good %) of the only day in a `deskpulse stats --days 1` table."""
    header, row, *_ = lines
    assert header.split() == ["date", "good", "%", "bad", "min", "alerts"]
    fields = re.split(r"\s+", row.strip())
    return fields[0], fields[1]


def test_two_desks_on_one_host_share_nothing(broker, recorder: Recorder, tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}  # both agents and `stats`: one default data dir
    a = Desk(tmp_path, "desk-a", str(black(tmp_path / "empty.png")), broker.port, env)
    b = Desk(tmp_path, "desk-b", str(astronaut(tmp_path / "person.png")), broker.port, env)
    a_topics = discovery.discovery_topics(HA_PREFIX, a.device)
    b_topics = discovery.discovery_topics(HA_PREFIX, b.device)
    try:
        # A first, its discovery published, then B: B's start must not remove A's entities.
        a.agent.start()
        recorder.wait_topic(a.t.state, posture("absent"), timeout=START_S)
        for topic in a_topics:
            recorder.wait_topic(topic, lambda m: m.payload != b"", timeout=10)
        b.agent.start()
        recorder.wait_topic(b.t.state, posture("good"), timeout=START_S)

        # Pausing A (request/pause) leaves B running.
        assert a.call(recorder, "pause")["paused"] is True
        mark = recorder.mark()
        recorder.wait_topic(a.t.state, posture("paused"), start=mark)
        recorder.wait_topic(b.t.state, posture("good"), start=mark)  # B's next refresh: still watching
        recorder.wait_topic(a.t.stats, lambda m: m.json()["paused_s"] >= 2, timeout=30, start=mark)
        recorder.wait_topic(b.t.stats, lambda m: m.json()["good_s"] >= 3, timeout=30, start=mark)

        # Restarting B: it comes back watching, not paused by A's pause...
        b.agent.stop()
        b.clean_log()
        mark = recorder.mark()
        b.agent.start()
        first = recorder.wait_topic(b.t.state, timeout=START_S, start=mark)
        assert first.json()["posture"] != "paused", f"desk B restarted paused: {first.json()}"
        recorder.wait_topic(b.t.state, posture("good"), timeout=START_S, start=mark)
        # ...its discovery is sent again, and A's entities are still there.
        for topic in b_topics:
            recorder.wait_topic(topic, lambda m: m.payload != b"", timeout=10, start=mark)
        removed = [m.topic for m in recorder.messages if m.topic in a_topics and m.payload == b""]
        assert removed == [], f"desk A's discovery topics were cleared: {removed}"
        fresh = Recorder(broker.port, f"{HA_PREFIX}/#")  # what Home Assistant sees when it (re)connects
        try:
            for topic in a_topics:
                got: Msg = fresh.wait_topic(topic, timeout=10)
                assert got.retain and json.loads(got.payload)["device"]["identifiers"], topic
        finally:
            fresh.close()

        # request/history: each desk reports only its own time.
        history_a = today(a.call(recorder, "history"))
        history_b = today(b.call(recorder, "history"))
        assert history_a["good_s"] == 0 and history_a["paused_s"] > 0 and history_a["absent_s"] > 0, history_a
        assert history_b["good_s"] > 0 and history_b["paused_s"] == 0, history_b
    finally:
        for desk in (a, b):
            desk.agent.stop()
    for desk in (a, b):
        desk.clean_log()
        assert desk.agent.proc is not None and desk.agent.proc.returncode in (0, -signal.SIGTERM)

    # `deskpulse stats --config <desk>.toml`: A never had anyone in good or bad posture; B did.
    day_a, good_a = stats_row(a.stats_cli())
    day_b, good_b = stats_row(b.stats_cli())
    assert day_a == day_b == history_a["date"]
    assert good_a == "-", f"desk A's stats show monitored time: {good_a}"
    assert float(good_b) > 0
