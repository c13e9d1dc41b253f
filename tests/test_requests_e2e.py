"""Requests end to end: the real agent process (real MediaPipe, real photos) answering
.../request/<verb> on the embedded amqtt broker, every verb, bad input, retained requests,
pause across restarts, Hypothesis-generated malformed payloads, and MQTT 5 response-topic /
correlation-data on Debian mosquitto.

Answers are matched by transaction; waits are on messages with timeouts, never sleeps.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from deskpulse.requests import MAX_DEPTH, MAX_PAYLOAD
from deskpulse.topics import Topics

from .photos import astronaut, black
from .support import AgentProcess, Mosquitto, Msg, Recorder, wait_until

pytestmark = pytest.mark.slow

START_S = 60.0  # first state from a cold agent (MediaPipe load)


class Client:
    """Sends requests to one device and waits for the answers that belong to them."""

    def __init__(self, rec: Recorder, device: str) -> None:
        self.rec = rec
        self.t = Topics("deskpulse", device)
        self._n = 0

    def tx(self) -> str:
        self._n += 1
        return f"t{self._n}-{time.monotonic_ns()}"

    def send(self, verb: str, body: dict[str, Any] | None = None, *, transaction: Any = "auto",
             retain: bool = False) -> Any:
        """Publish a JSON request; returns the transaction used (None: none sent)."""
        payload = dict(body or {})
        if transaction == "auto":
            transaction = self.tx()
        if transaction is not None:
            payload["transaction"] = transaction
        self.rec.publish(self.t.request(verb), json.dumps(payload), retain=retain)
        return transaction

    def answers(self, verb: str, transaction: Any, start: int = 0) -> list[dict[str, Any]]:
        return [m.json() for m in self.rec.messages[start:]
                if m.topic == self.t.response(verb) and m.json().get("transaction") == transaction]

    def final(self, verb: str, transaction: Any, timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        """The final answer (not a progress one) carrying this transaction."""
        def match(m: Msg) -> bool:
            body = m.json()
            return body.get("transaction") == transaction and body.get("final", True) is not False
        return self.rec.wait_topic(self.t.response(verb), match, timeout, start).json()

    def call(self, verb: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
        start = self.rec.mark()
        tx = self.send(verb, body)
        answer = self.final(verb, tx, timeout, start)
        assert answer["transaction"] == tx
        assert set(answer) <= {"status", "data", "error", "transaction", "final"}
        return answer

    def raw(self, verb: str, payload: bytes | str, timeout: float = 10.0) -> dict[str, Any]:
        """A payload that carries no transaction: the next final answer on the response topic."""
        start = self.rec.mark()
        self.rec.publish(self.t.request(verb), payload)
        return self.rec.wait_topic(self.t.response(verb[:64]), lambda m: m.json().get("final", True) is not False,
                                   timeout, start).json()

    def state(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0, start: int = 0) -> dict[str, Any]:
        return self.rec.wait_topic(self.t.state, lambda m: pred(m.json()), timeout, start).json()


def ok(answer: dict[str, Any]) -> Any:
    assert answer["status"] == "ok", answer
    return answer["data"]


def err(answer: dict[str, Any]) -> str:
    assert answer["status"] == "error" and answer["data"] is None, answer
    assert isinstance(answer["error"], str) and answer["error"] and "\n" not in answer["error"]
    assert "Traceback" not in answer["error"] and "internal error" not in answer["error"]
    return answer["error"]


def good_and_watching(s: dict[str, Any]) -> bool:
    return s["posture"] == "good" and s["camera"] == "ok"


def clean_log(agent: AgentProcess) -> None:
    log = agent.log()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


# ---------- pause, resume, monitoring ----------

def test_pause_minutes_releases_the_camera_and_resume_brings_it_back(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq1")
    with AgentProcess(broker.port, str(astronaut(tmp_path / "a.jpg")), "rq1", tmp_path / "d",
                      config="[mqtt]\nhealth_interval_s = 1\n") as agent:
        c.state(good_and_watching, START_S)
        ok(c.call("stream", {"lease_s": 60}))
        recorder.wait_topic(c.t.frame)

        before = time.time()
        data = ok(c.call("pause", {"minutes": 5}))
        assert data["paused"] is True
        until = datetime.fromisoformat(data["until"].replace("Z", "+00:00")).timestamp()
        assert before + 299 <= until <= time.time() + 301
        mark = recorder.mark()
        paused = c.state(lambda s: s["posture"] == "paused" and s["camera"] == "released")
        assert paused["until"] == data["until"] and paused["bad_for_s"] == 0.0
        # Frames stop while paused (the lease is still live): wait for two health reports
        # after the camera was released, then no frame may follow the first one.
        recorder.wait_topic(c.t.health, start=mark, timeout=30)
        quiet = recorder.mark()
        recorder.wait_topic(c.t.health, start=quiet, timeout=30)
        assert not [m for m in recorder.messages[quiet:] if m.topic == c.t.frame]

        mark = recorder.mark()
        data = ok(c.call("resume"))
        assert data == {"paused": False}
        resumed = c.state(good_and_watching, 30, start=mark)
        assert resumed["until"] is None
        # Resuming twice is harmless.
        assert ok(c.call("resume")) == {"paused": False}
        assert not (tmp_path / "d" / "rq1" / "pause.json").exists() or \
            json.loads((tmp_path / "d" / "rq1" / "pause.json").read_text())["paused"] is False
        clean_log(agent)


def test_monitoring_on_off_is_home_assistants_switch(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq2")
    with AgentProcess(broker.port, str(astronaut(tmp_path / "a.jpg")), "rq2", tmp_path / "d") as agent:
        c.state(good_and_watching, START_S)
        answer = c.raw("monitoring", "OFF")
        assert ok(answer) == {"paused": True, "until": None} and "transaction" not in answer
        paused = c.state(lambda s: s["posture"] == "paused" and s["camera"] == "released")
        assert paused["until"] is None
        assert ok(c.raw("monitoring", "on")) == {"paused": False}
        c.state(good_and_watching, 30)
        assert "ON or OFF" in err(c.raw("monitoring", "TOGGLE"))
        assert "ON or OFF" in err(c.raw("monitoring", b"\xff\xfe"))
        clean_log(agent)


def test_pause_validates_minutes(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq3")
    with AgentProcess(broker.port, "demo", "rq3", tmp_path / "d"):
        c.state(lambda s: s["camera"] == "ok", START_S)
        mark = recorder.mark()
        for body, words in (({"minutes": "5"}, "minutes must be a number"),
                            ({"minutes": -1}, "minutes must be between"),
                            ({"minutes": 1e9}, "minutes must be between"),
                            ({"minutes": True}, "minutes must be a number"),
                            ({"minuets": 5}, "unknown field(s): minuets")):
            assert words in err(c.call("pause", body))
        assert "unknown field(s): x" in err(c.call("resume", {"x": 1}))
        # Nothing changed: no paused state was ever published.
        assert not [m for m in recorder.messages[mark:] if m.topic == c.t.state and m.json()["posture"] == "paused"]
        assert not (tmp_path / "d" / "rq3" / "pause.json").exists()


# ---------- calibrate ----------

def test_calibrate_reports_progress_then_the_baseline(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq4")
    with AgentProcess(broker.port, str(astronaut(tmp_path / "a.jpg")), "rq4", tmp_path / "d") as agent:
        c.state(good_and_watching, START_S)
        start = recorder.mark()
        tx = c.send("calibrate", {"seconds": 2})
        final = c.final("calibrate", tx, timeout=30, start=start)
        data = ok(final)
        assert data["stage"] == "done" and data["percent"] == 100
        assert data["baseline"]["calibrated"] is True and 0.5 < data["baseline"]["head_height"] < 0.9
        progress = [a for a in c.answers("calibrate", tx, start) if a.get("final") is False]
        assert len(progress) >= 2, progress
        assert all(a["status"] == "ok" and {"stage", "percent"} <= set(a["data"]) for a in progress)
        percents = [a["data"]["percent"] for a in progress]
        assert percents[0] == 0 and percents == sorted(percents) and percents[-1] <= 100, percents
        # The final answer is the last one with this transaction.
        assert c.answers("calibrate", tx, start)[-1] == final
        c.state(lambda s: s["calibrated"] is True)
        assert "seconds must be between" in err(c.call("calibrate", {"seconds": 0}))
        clean_log(agent)


def test_calibrate_with_nobody_in_view_says_so(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq5")
    with AgentProcess(broker.port, str(black(tmp_path / "b.png")), "rq5", tmp_path / "d") as agent:
        c.state(lambda s: s["posture"] == "absent", START_S)
        start = recorder.mark()
        tx = c.send("calibrate", {"seconds": 1.5})
        message = err(c.final("calibrate", tx, timeout=30, start=start))
        assert message.startswith("no person visible")
        assert not (tmp_path / "d" / "rq5" / "calibration-front.json").exists()
        # A second calibration while one runs is refused; after the failure a new one may start.
        tx1 = c.send("calibrate", {"seconds": 3})
        assert "already running" in err(c.call("calibrate", {"seconds": 3}))
        assert err(c.final("calibrate", tx1, timeout=30)).startswith("no person visible")
        clean_log(agent)


# ---------- stream ----------

def test_stream_lease_and_its_validation(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq6")
    with AgentProcess(broker.port, "demo", "rq6", tmp_path / "d"):
        c.state(lambda s: s["camera"] == "ok", START_S)
        assert ok(c.call("stream", {"lease_s": 3})) == {"streaming": True, "lease_s": 3.0, "fps": 10.0}
        frame = recorder.wait_topic(c.t.frame)
        assert frame.payload[:2] == b"\xff\xd8" and not frame.retain
        assert ok(c.call("stream", {"enable": False})) == {"streaming": False, "lease_s": 0}
        for body, words in (({"lease_s": 0}, "lease_s must be between"), ({"lease_s": "30"}, "lease_s must be a number"),
                            ({"enable": "no"}, "enable must be true or false"), ({"fps": 30}, "unknown field(s): fps")):
            assert words in err(c.call("stream", body))


# ---------- config/get, config/set ----------

def test_config_set_is_validated_applied_and_persisted(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq7")
    data_dir = tmp_path / "d"
    source = str(astronaut(tmp_path / "a.jpg"))
    with AgentProcess(broker.port, source, "rq7", data_dir) as agent:
        c.state(good_and_watching, START_S)
        got = ok(c.call("config/get"))
        before = got["settings"]
        assert before["alerts.bad_posture_minutes"] == 10.0 and before["posture.sensitivity"] == 1.0
        assert set(got["descriptions"]) == set(before)

        for body, key in (({"alerts.bad_posture_minutes": -1}, "alerts.bad_posture_minutes"),
                          ({"alerts.bad_posture_minutes": 0}, "alerts.bad_posture_minutes"),
                          ({"posture.sensitivity": 99}, "posture.sensitivity"),
                          ({"alerts.cooldown_minutes": "5"}, "alerts.cooldown_minutes"),
                          ({"alerts.cooldown_minutes": None}, "alerts.cooldown_minutes"),
                          # A good value next to a bad one: nothing at all is applied.
                          ({"alerts.bad_posture_minutes": 20, "alerts.recovery_s": -3}, "alerts.recovery_s"),
                          ({"mqtt.broker": "mqtt://evil:1883"}, "mqtt.broker"),
                          ({"alerts": {"bad_posture_minutes": 3}}, "alerts")):
            assert key in err(c.call("config/set", body)), body
        assert "expected a JSON object of settings" in err(c.call("config/set", {}))
        assert ok(c.call("config/get"))["settings"] == before
        assert not (data_dir / "rq7" / "settings.json").exists()

        change = {"alerts.bad_posture_minutes": 15, "alerts.cooldown_minutes": 2.5, "posture.sensitivity": 1.5}
        applied = ok(c.call("config/set", change))["settings"]
        assert {k: applied[k] for k in change} == change
        # Applied without a restart: the running agent reports the new values and keeps going.
        assert ok(c.call("config/get"))["settings"] == applied
        saved = json.loads((data_dir / "rq7" / "settings.json").read_text())
        assert {k: saved[k] for k in change} == change
        wait_until(lambda: "settings changed" in agent.log(), timeout=30, what="the change in the log")
        assert "unknown field(s): x" in err(c.call("config/get", {"x": 1}))
        clean_log(agent)

    # Persisted: a restart with the same data dir (and the same file config) keeps them.
    with AgentProcess(broker.port, source, "rq7", data_dir) as agent:
        mark = recorder.mark()
        c.state(good_and_watching, START_S, start=mark)
        assert ok(c.call("config/get"))["settings"] == applied
        clean_log(agent)


# ---------- history ----------

def test_history_returns_per_day_aggregates_and_checks_dates(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq8")
    with AgentProcess(broker.port, str(astronaut(tmp_path / "a.jpg")), "rq8", tmp_path / "d",
                      config="[history]\ncheckpoint_s = 1\nstats_interval_s = 1\ntimezone = \"UTC\"\n") as agent:
        c.state(good_and_watching, START_S)
        recorder.wait_topic(c.t.stats, lambda m: m.json()["good_s"] >= 2, timeout=30)
        data = ok(c.call("history"))
        today = date.fromisoformat(data["to"])
        assert data["from"] == (today - timedelta(days=6)).isoformat()
        assert [d["date"] for d in data["days"]] == [(today - timedelta(days=i)).isoformat() for i in range(6, -1, -1)]
        last = data["days"][-1]
        assert last["good_s"] >= 1 and last["good_pct"] == 100.0 and last["bad_s"] == 0
        assert set(last) >= {"date", "good_s", "bad_s", "absent_s", "unknown_s", "paused_s", "good_pct", "alerts",
                             "longest_good_streak_s"}
        assert all(d["good_pct"] is None and d["good_s"] == 0 for d in data["days"][:-1])

        one = ok(c.call("history", {"from": today.isoformat(), "to": today.isoformat()}))
        assert [d["date"] for d in one["days"]] == [today.isoformat()]

        for body, words in (({"from": "yesterday"}, "from: not a date"),
                            ({"to": "2026-13-01"}, "to: not a date"),
                            ({"from": 20261121}, "from: expected a date"),
                            ({"to": ["2026-11-21"]}, "to: expected a date"),
                            ({"from": "2026-11-22", "to": "2026-11-21"}, "from (2026-11-22) is after to"),
                            ({"from": "2020-01-01", "to": "2026-01-01"}, "range too long"),
                            ({"days": 7}, "unknown field(s): days")):
            assert words in err(c.call("history", body)), body
        clean_log(agent)


# ---------- the envelope ----------

def test_transactions_of_any_json_type_are_echoed_and_unknown_verbs_answered(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq9")
    with AgentProcess(broker.port, "demo", "rq9", tmp_path / "d") as agent:
        c.state(lambda s: s["camera"] == "ok", START_S)
        for tx in (7, "abc", 1.5, ["a", 1], {"page": "x", "n": 2}, True, ""):
            start = recorder.mark()
            c.send("config/get", transaction=tx)
            answer = c.final("config/get", tx, start=start)
            assert answer["status"] == "ok" and answer["transaction"] == tx
        # No transaction: none in the answer.
        start = recorder.mark()
        c.send("config/get", transaction=None)
        answer = recorder.wait_topic(c.t.response("config/get"), start=start).json()
        assert answer["status"] == "ok" and "transaction" not in answer
        # An error answer echoes it too.
        assert c.call("history", {"from": "x"})["status"] == "error"
        message = err(c.call("reboot"))
        assert message.startswith("unknown verb 'reboot'") and "pause" in message and "history" in message
        assert "internal error" not in agent.log()


def test_retained_requests_are_ignored(broker, recorder, tmp_path: Path) -> None:
    """A retained request is replayed by the broker to every (re)subscribing agent: ghost
    switching. MQTT 3.1.1 brokers strip the retain flag when forwarding a live publish to
    existing subscribers, so what the agent can (and must) ignore is the replay on subscribe."""
    c = Client(recorder, "rq10")
    start = recorder.mark()
    tx = c.send("pause", {"minutes": 30}, retain=True)
    try:
        with AgentProcess(broker.port, "demo", "rq10", tmp_path / "d") as agent:
            c.state(lambda s: s["camera"] == "ok", START_S, start=start)
            # A later, live request is answered; the retained one delivered at subscribe time never is.
            assert ok(c.call("config/get"))
            assert c.answers("pause", tx, start) == []
            wait_until(lambda: "ignoring retained request on deskpulse/rq10/request/pause" in agent.log(),
                       timeout=30, what="the ignored request in the log")
            states = [m.json() for m in recorder.messages[start:] if m.topic == c.t.state]
            assert states and not [s for s in states if s["posture"] == "paused"], states
            assert not (tmp_path / "d" / "rq10" / "pause.json").exists()
    finally:
        recorder.publish(c.t.request("pause"), b"", retain=True)  # clear it on the broker
    # Nothing retained is left behind for the next subscriber.
    probe = Recorder(broker.port, c.t.request("#"))
    try:
        probe.publish(c.t.request("x-probe"), b"{}")
        probe.wait_topic(c.t.request("x-probe"))
        assert probe.on(c.t.request("pause")) == []
    finally:
        probe.close()


# ---------- pause across restarts ----------

def test_pause_survives_a_restart_until_it_expires(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq11")
    data_dir = tmp_path / "d"
    source = str(astronaut(tmp_path / "a.jpg"))
    agent = AgentProcess(broker.port, source, "rq11", data_dir).start()
    try:
        c.state(good_and_watching, START_S)
        until = ok(c.call("pause", {"minutes": 30}))["until"]
        c.state(lambda s: s["posture"] == "paused" and s["camera"] == "released")
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0
        clean_log(agent)
    finally:
        agent.stop()

    mark = recorder.mark()
    with AgentProcess(broker.port, source, "rq11", data_dir) as agent:
        restored = c.state(lambda s: s["camera"] == "released", START_S, start=mark)
        assert restored["posture"] == "paused" and restored["until"] == until
        states = [m.json() for m in recorder.messages[mark:] if m.topic == c.t.state]
        assert all(s["posture"] == "paused" for s in states), states  # never a watching state in between
        assert ok(c.call("resume")) == {"paused": False}
        c.state(good_and_watching, 30, start=mark)
        clean_log(agent)


def test_an_expired_pause_is_not_restored(broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rq12")
    data_dir = tmp_path / "d"
    source = str(astronaut(tmp_path / "a.jpg"))
    with AgentProcess(broker.port, source, "rq12", data_dir) as agent:
        c.state(good_and_watching, START_S)
        until = ok(c.call("pause", {"minutes": 0.1}))["until"]
        c.state(lambda s: s["posture"] == "paused")
    end = datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp()
    # Let the snooze run out while the agent is down (waiting for time to pass, not asserting on it).
    time.sleep(max(0.0, end - time.time()) + 0.2)
    mark = recorder.mark()
    with AgentProcess(broker.port, source, "rq12", data_dir) as agent:
        c.state(good_and_watching, START_S, start=mark)
        states = [m.json() for m in recorder.messages[mark:] if m.topic == c.t.state]
        assert not [s for s in states if s["posture"] == "paused"], states
        clean_log(agent)


# ---------- malformed payloads (Hypothesis) ----------

SAFE_VERB = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-/.", min_size=1, max_size=80).filter(
    lambda v: not v.startswith("/") and "//" not in v)
KNOWN = ["pause", "resume", "stream", "config/get", "config/set", "history", "calibrate"]
NO_TX_VERBS = ["pause", "resume", "stream", "config/get", "config/set", "history", "monitoring"]
FIELDS = {"pause": ["minutes"], "stream": ["lease_s", "enable"], "history": ["from", "to"], "calibrate": ["seconds"],
          "config/set": ["alerts.bad_posture_minutes", "alerts.cooldown_minutes", "posture.sensitivity",
                         "alerts.recovery_s"]}
WRONG = st.one_of(st.text(max_size=20), st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
OUT_OF_RANGE = st.one_of(st.floats(allow_nan=False, allow_infinity=False, min_value=1e7, max_value=1e300),
                         st.floats(allow_nan=False, allow_infinity=False, max_value=-1e-3, min_value=-1e300),
                         st.integers(min_value=10**7, max_value=10**30), st.integers(max_value=-1, min_value=-10**30))


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


# Each case: (verb, payload bytes, transaction or None, words the error must contain or None for "ok allowed").
@st.composite
def tx_cases(draw: Any) -> tuple[str, bytes, Any, list[str] | None]:
    tx = draw(st.one_of(st.integers(), st.text(max_size=20)))
    kind = draw(st.sampled_from(["wrong_type", "out_of_range", "unknown_field", "unknown_verb", "deep", "huge",
                                 "nan"]))
    if kind == "unknown_verb":
        verb = draw(SAFE_VERB.filter(lambda v: v[:64] not in KNOWN + ["monitoring"]))
        return verb, json.dumps({"transaction": tx}).encode(), tx, ["unknown verb"]
    verb = draw(st.sampled_from([v for v in KNOWN if v in FIELDS] if kind != "unknown_field" else KNOWN))
    if kind == "wrong_type":
        key = draw(st.sampled_from(FIELDS[verb]))
        value = draw(WRONG.filter(lambda v: not isinstance(v, str) or _not_a_date(v)))
        if verb == "stream" and key == "enable":
            value = draw(st.one_of(st.text(max_size=5), st.integers(), st.lists(st.integers(), max_size=2)))
        if value is None:  # null means "not given" for optional fields: a valid request
            return verb, json.dumps({key: value, "transaction": tx}).encode(), tx, None
        return verb, json.dumps({key: value, "transaction": tx}).encode(), tx, [key]
    if kind == "out_of_range":
        key = draw(st.sampled_from([k for k in FIELDS[verb] if k not in ("enable", "from", "to")] or ["x"]))
        if verb == "history":
            key, value = draw(st.sampled_from(["from", "to"])), draw(st.text(max_size=30).filter(_not_a_date))
            return verb, json.dumps({key: value, "transaction": tx}).encode(), tx, [key]
        value = draw(OUT_OF_RANGE)
        return verb, json.dumps({key: value, "transaction": tx}).encode(), tx, [key]
    if kind == "nan":
        key = draw(st.sampled_from([k for k in FIELDS.get(verb, []) if k not in ("enable", "from", "to")] or ["x"]))
        value = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-2e400"]))
        return verb, f'{{"{key}": {value}, "transaction": {json.dumps(tx)}}}'.encode(), tx, \
            ["not a JSON number", "out of range"]
    if kind == "unknown_field":
        field = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
            lambda f: f not in FIELDS.get(verb, []) + ["transaction"]))
        words = ["not a runtime setting"] if verb == "config/set" else ["unknown field(s)"]
        return verb, json.dumps({field: 1, "transaction": tx}).encode(), tx, words
    if kind == "deep":
        # Deeper than this, Python's json cannot parse the object at all, so no transaction can be
        # recovered from it: those depths are in raw_cases.
        depth = draw(st.integers(min_value=MAX_DEPTH + 1, max_value=500))
        return verb, f'{{"transaction": {json.dumps(tx)}, "x": {nested(depth)}}}'.encode(), tx, ["nested too deeply"]
    # huge: just under the limit, still a JSON object carrying the transaction
    size = draw(st.integers(min_value=MAX_PAYLOAD - 4096, max_value=MAX_PAYLOAD - 200))
    body = json.dumps({"transaction": tx, "pad": ""})
    pad = "x" * (size - len(body))
    words = ["not a runtime setting"] if verb == "config/set" else ["unknown field(s)"]
    return verb, json.dumps({"transaction": tx, "pad": pad}).encode(), tx, words


def _not_a_date(s: str) -> bool:
    try:
        date.fromisoformat(s)
    except ValueError:
        return True
    return False


@st.composite
def raw_cases(draw: Any) -> tuple[str, bytes, Any, list[str] | None]:
    verb = draw(st.sampled_from(NO_TX_VERBS))
    kind = draw(st.sampled_from(["bytes", "utf8", "json_scalar", "json_text", "too_large", "deep_array",
                                 "deep_object", "bad_transaction"]))
    if verb == "monitoring":  # a raw verb: anything but ON/OFF is an error naming the choice
        payload = draw(st.binary(max_size=64))
        text = payload.decode("utf-8", errors="replace").strip().upper()
        return verb, payload, None, None if text in ("ON", "OFF") else ["ON or OFF"]
    if kind == "bytes":
        return verb, draw(st.binary(max_size=300)), None, None
    if kind == "utf8":
        good = draw(st.binary(max_size=20))
        return verb, good + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc"])), None, ["UTF-8"]
    if kind == "json_scalar":
        value = draw(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), st.booleans(),
                               st.lists(st.integers(), max_size=4)))
        return verb, json.dumps(value).encode(), None, ["JSON object"]
    if kind == "json_text":
        text = draw(st.text(max_size=60).filter(lambda s: s.strip() and not _is_json(s)))
        return verb, text.encode(), None, ["not valid JSON"]
    if kind == "bad_transaction":
        value = draw(st.sampled_from(["NaN", "Infinity", "1e999"]))
        return verb, f'{{"transaction": {value}}}'.encode(), None, ["not a JSON number", "out of range"]
    if kind == "deep_object":
        depth = draw(st.integers(min_value=2000, max_value=20000))
        return verb, f'{{"transaction": 1, "x": {nested(depth)}}}'.encode(), None, ["nested too deeply"]
    if kind == "deep_array":
        return verb, nested(draw(st.integers(min_value=MAX_DEPTH + 2, max_value=20000))).encode(), None, \
            ["JSON object", "nested too deeply"]
    size = draw(st.integers(min_value=MAX_PAYLOAD + 1, max_value=MAX_PAYLOAD + 4096))
    return verb, b"{" + b" " * (size - 2) + b"}", None, ["too large"]


def _is_json(s: str) -> bool:
    try:
        json.loads(s)
    except ValueError:
        return False
    except RecursionError:
        return True
    return True


def test_hypothesis_malformed_payloads_are_all_answered_and_the_agent_keeps_going(
        broker, recorder, tmp_path: Path) -> None:
    c = Client(recorder, "rqfuzz")
    counts = {"examples": 0, "errors": 0, "ok": 0, "matched_by_transaction": 0, "counted": 0}
    t0 = time.monotonic()
    # Nobody in view: an accidental valid calibrate fails after calibration_s.
    with AgentProcess(broker.port, str(black(tmp_path / "b.png")), "rqfuzz", tmp_path / "d",
                      config="[posture]\ncalibration_s = 1\n") as agent:
        c.state(lambda s: s["camera"] == "ok", START_S)

        @settings(max_examples=220, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.large_base_example])
        @given(st.one_of(tx_cases(), raw_cases()))
        def one(case: tuple[str, bytes, Any, list[str] | None]) -> None:
            verb, payload, tx, words = case
            counts["examples"] += 1
            start = recorder.mark()
            recorder.publish(c.t.request(verb), payload)
            if tx is not None:
                answer = c.final(verb, tx, start=start, timeout=15)
                counts["matched_by_transaction"] += 1
            else:
                answer = recorder.wait_topic(c.t.response(verb[:64]),
                                             lambda m: m.json().get("final", True) is not False,
                                             timeout=15, start=start).json()
                assert "transaction" not in answer
                counts["counted"] += 1
            assert answer["status"] in ("ok", "error"), answer
            if answer["status"] == "error":
                counts["errors"] += 1
                message = err(answer)
                if words is not None:
                    assert any(w in message for w in words), (case[0], case[1][:200], message)
            else:
                counts["ok"] += 1
                assert words is None, (case[0], case[1][:200], answer)

        one()
        assert counts["examples"] >= 200, counts
        # Still alive: it publishes state and answers a valid request.
        mark = recorder.mark()
        ok(c.call("resume"))
        c.state(lambda s: s["posture"] != "paused", 30, start=mark)
        assert ok(c.call("config/get"))["settings"]["alerts.bad_posture_minutes"] > 0
        recorder.wait_topic(c.t.health, start=mark, timeout=30)
        assert agent.proc is not None and agent.proc.poll() is None
        log = agent.log()
        assert "Traceback" not in log and "internal error" not in log, log[-3000:]
        assert "request queue full" not in log
    print(f"\nfuzz: {counts} in {time.monotonic() - t0:.1f}s (agent start included)")


# ---------- MQTT 5: response topic and correlation data (Debian mosquitto) ----------

@pytest.mark.mosquitto
def test_mqtt5_response_topic_and_correlation_data_are_honoured(tmp_path: Path) -> None:
    with Mosquitto() as mosq:
        t = Topics("deskpulse", "rq5v")
        rec = Recorder(mosq.port, ["deskpulse/rq5v/#"], protocol=mqtt.MQTTv5)
        try:
            with AgentProcess(mosq.port, "demo", "rq5v", tmp_path / "d") as agent:
                rec.wait_topic(t.state, lambda m: m.json()["camera"] == "ok", timeout=START_S)
                for verb, body, corr in (("config/get", {"transaction": "c1"}, b"\x00\x01corr-bin\xff"),
                                         ("history", {"from": "nope", "transaction": "c2"}, b"corr-2")):
                    got: list[Any] = []
                    rec.client.on_message = _capture(rec, got)
                    props = Properties(PacketTypes.PUBLISH)
                    props.ResponseTopic = t.response(f"page-1/{verb}")
                    props.CorrelationData = corr
                    start = rec.mark()
                    rec.publish(t.request(verb), json.dumps(body), properties=props)
                    reply = rec.wait_topic(t.response(f"page-1/{verb}"), start=start)
                    answer = reply.json()
                    assert answer["transaction"] == body["transaction"]
                    assert answer["status"] == ("ok" if verb == "config/get" else "error")
                    assert [p for topic, p in got if topic == t.response(f"page-1/{verb}")] == [corr]
                    # Answered on the response topic asked for, not on the default one.
                    assert not [m for m in rec.messages[start:] if m.topic == t.response(verb)]
                # Without a response topic the default one is used.
                start = rec.mark()
                rec.publish(t.request("config/get"), json.dumps({"transaction": "c3"}))
                assert rec.wait_topic(t.response("config/get"), start=start).json()["transaction"] == "c3"
                assert "MQTT 5" in agent.log()
        finally:
            rec.close()


def _capture(rec: Recorder, got: list[Any]) -> Callable[..., None]:
    """Recorder's on_message, also keeping each message's correlation data."""
    original = Recorder._on_message

    def on_message(client: Any, userdata: Any, m: Any) -> None:
        props = getattr(m, "properties", None)
        got.append((m.topic, getattr(props, "CorrelationData", None)))
        original(rec, client, userdata, m)

    return on_message


@pytest.mark.mosquitto
def test_a_foreign_response_topic_is_refused_and_nothing_is_published_there(tmp_path: Path) -> None:
    """Anyone who may send a request must not make the agent publish where the agent's
    own ACL allows: fake Home Assistant entities, or its own state."""
    with Mosquitto() as mosq:
        t = Topics("deskpulse", "rq5f")
        rec = Recorder(mosq.port, ["#"], protocol=mqtt.MQTTv5)
        try:
            with AgentProcess(mosq.port, "demo", "rq5f", tmp_path / "d") as agent:
                rec.wait_topic(t.state, lambda m: m.json()["camera"] == "ok", timeout=START_S)
                for n, target in enumerate(("homeassistant/sensor/x/config", t.state, t.availability,
                                            "deskpulse/other/response/pause", t.response("+"))):
                    props = Properties(PacketTypes.PUBLISH)
                    props.ResponseTopic = target
                    start = rec.mark()
                    rec.publish(t.request("pause"), json.dumps({"transaction": f"f{n}"}), properties=props)
                    refused = rec.wait_topic(t.response("pause"), lambda m: m.json().get("transaction") == f"f{n}",
                                             start=start).json()
                    assert refused["status"] == "error" and "response topic" in refused["error"]
                    # Nothing went to the foreign topic, and the request was not carried out.
                    published = [m for m in rec.messages[start:] if m.topic == target
                                 or (target.endswith("+") and m.topic.startswith(target[:-1]) and m.topic != t.response("pause"))]
                    assert all(m.topic in (t.state, t.availability) and b'"paused"' not in m.payload
                               and m.payload != b"paused" for m in published), published
                    assert not [m for m in rec.messages[start:] if m.topic == t.state and m.json()["posture"] == "paused"]
                # The warning can sit in nativelog's buffer while a first frame is processed.
                wait_until(lambda: "response topic" in agent.log(), timeout=30, what="the refusal in the log")
        finally:
            rec.close()
