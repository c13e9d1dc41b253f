"""The request router (deskpulse/requests.py), runtime settings (settings.py) and the pause
store (pause.py) without a broker or an agent: every payload gets exactly one well-formed
answer, and nothing but RequestError ever comes out of validation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from deskpulse import settings
from deskpulse.config import Config, load_config
from deskpulse.errors import RequestError
from deskpulse.pause import PauseState, PauseStore
from deskpulse.publisher import dumps
from deskpulse.requests import MAX_DEPTH, MAX_PAYLOAD, PENDING, Reply, Router, get_number, parse_payload, reject_unknown


def make_router() -> tuple[Router, list[Any]]:
    router = Router()
    calls: list[Any] = []

    def echo(body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, {"n"})
        return {"n": get_number(body, "n", default=1, low=0, high=10)}

    def slow(body: dict[str, Any], reply: Reply) -> Any:
        reply.progress({"stage": "working", "percent": 50})
        calls.append(reply)
        return PENDING

    def broken(body: dict[str, Any], reply: Reply) -> Any:
        raise KeyError("bug")

    def switch(body: str, reply: Reply) -> Any:
        if body.upper() not in ("ON", "OFF"):
            raise RequestError(f"expects ON or OFF, got {body[:40]!r}")
        return body.upper()

    router.add("echo", echo)
    router.add("slow", slow)
    router.add("broken", broken)
    router.add("switch", switch, raw=True)
    return router, calls


def handle(router: Router, verb: str, raw: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    router.handle(verb, raw, sent.append, origin="test")
    return sent


# ---------- parse_payload ----------

@pytest.mark.parametrize("raw,words", [
    (b"\xff\xfe", "not valid UTF-8"),
    (b"{", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object, got list"),
    (b'"text"', "must be a JSON object, got str"),
    (b"null", "must be a JSON object, got NoneType"),
    (b'{"a": NaN}', "NaN is not a JSON number"),
    (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"a": 1e999}', "number out of range"),
    (b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", "nested too deeply"),
    (b"[" * 100_00 + b"]" * 100_00, "nested too deeply"),
    (b"{" + b" " * MAX_PAYLOAD + b"}", "payload too large"),
])
def test_parse_payload_names_the_problem(raw: bytes, words: str) -> None:
    with pytest.raises(RequestError, match=None) as info:
        parse_payload(raw)
    assert words in str(info.value)


def test_parse_payload_empty_means_no_fields() -> None:
    assert parse_payload(b"") == {} and parse_payload(b"  \n") == {}
    assert parse_payload(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    at_limit = json.dumps({"pad": "x" * (MAX_PAYLOAD - 20)}).encode()
    assert len(at_limit) <= MAX_PAYLOAD and parse_payload(at_limit)["pad"]


# ---------- the router ----------

def test_ok_and_error_answers_echo_the_transaction() -> None:
    router, _ = make_router()
    assert handle(router, "echo", b'{"n": 3, "transaction": "a"}') == [
        {"status": "ok", "data": {"n": 3.0}, "transaction": "a"}]
    assert handle(router, "echo", b'{"n": 30, "transaction": 5}') == [
        {"status": "error", "data": None, "error": "n must be between 0 and 10, got 30", "transaction": 5}]
    assert handle(router, "echo", b"") == [{"status": "ok", "data": {"n": 1}}]


def test_unknown_verbs_and_refused_payloads_still_echo_the_transaction() -> None:
    router, _ = make_router()
    [answer] = handle(router, "reboot", b'{"transaction": "r1"}')
    assert answer["transaction"] == "r1" and answer["error"].startswith("unknown verb 'reboot'; known: broken, echo")
    deep = b'{"transaction": 9, "x": ' + b"[" * 40 + b"]" * 40 + b"}"
    assert handle(router, "echo", deep)[0] == {"status": "error", "data": None,
                                              "error": "payload JSON is nested too deeply", "transaction": 9}
    # A transaction that JSON cannot carry back is not echoed (the answer must still go out).
    [answer] = handle(router, "echo", b'{"transaction": NaN}')
    assert "transaction" not in answer and "NaN" in answer["error"]
    dumps(answer)
    [answer] = handle(router, "reboot", b"\xff")
    assert "transaction" not in answer


def test_a_handler_bug_is_an_error_answer_not_an_exception() -> None:
    router, _ = make_router()
    assert handle(router, "broken", b'{"transaction": 1}') == [
        {"status": "error", "data": None, "error": "internal error: KeyError", "transaction": 1}]


def test_pending_handlers_send_progress_then_finish_later() -> None:
    router, calls = make_router()
    sent = handle(router, "slow", b'{"transaction": "c"}')
    assert sent == [{"status": "ok", "data": {"stage": "working", "percent": 50}, "final": False, "transaction": "c"}]
    reply = calls[0]
    out: list[dict[str, Any]] = []
    reply.send = out.append
    reply.done({"stage": "done"})
    reply.fail("no person visible")
    assert out == [{"status": "ok", "data": {"stage": "done"}, "transaction": "c"},
                   {"status": "error", "data": None, "error": "no person visible", "transaction": "c"}]


def test_raw_routes_get_the_text() -> None:
    router, _ = make_router()
    assert handle(router, "switch", b" on\n") == [{"status": "ok", "data": "ON"}]
    assert handle(router, "switch", b"\xffx")[0]["error"].startswith("expects ON or OFF")


def test_get_number_and_reject_unknown() -> None:
    assert get_number({}, "x", default=2) == 2
    assert get_number({"x": None}, "x", default=2) == 2
    for value, words in ((True, "must be a number, got bool"), ("1", "must be a number, got str"),
                         (float("nan"), "finite"), (float("inf"), "finite"), (-1, "between 0 and 5")):
        with pytest.raises(RequestError, match=words):
            get_number({"x": value}, "x", low=0, high=5)
    with pytest.raises(RequestError, match=r"unknown field\(s\): a, b; allowed: none"):
        reject_unknown({"a": 1, "b": 2}, set())
    # User text never forges a second log line, and never makes a huge one.
    with pytest.raises(RequestError) as info:
        reject_unknown({"a\nINFO forged": 1, "x" * 5000: 2}, {"n"})
    assert "\n" not in str(info.value) and len(str(info.value)) < 200
    assert "'a\\nINFO forged'" in str(info.value)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=10), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10)


@hsettings(max_examples=500, deadline=None)
@given(verb=st.sampled_from(["echo", "slow", "broken", "switch", "nope", "a/b"]),
       raw=st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()),
                     st.dictionaries(st.text(max_size=8), JSON, max_size=4).map(lambda v: json.dumps(v).encode())))
def test_every_payload_gets_exactly_one_final_well_formed_answer(verb: str, raw: bytes) -> None:
    router, _ = make_router()
    sent = handle(router, verb, raw)
    finals = [a for a in sent if a.get("final", True) is not False]
    assert len(sent) == 1
    # A pending handler (calibrate) answers with progress now and its final answer later.
    assert len(finals) == 1 or (verb == "slow" and sent[0]["final"] is False)
    for answer in sent:
        dumps(answer)  # what the publisher sends: strict JSON, no NaN
        assert answer["status"] in ("ok", "error")
        if answer["status"] == "error":
            assert answer["data"] is None and answer["error"] and "\n" not in answer["error"]
            assert not answer["error"].startswith("internal error") or verb == "broken"


@hsettings(max_examples=300, deadline=None)
@given(transaction=JSON.filter(lambda v: v is not None), verb=st.sampled_from(["echo", "broken", "nope"]),
       extra=st.dictionaries(st.sampled_from(["n", "m"]), JSON, max_size=2))
def test_any_json_transaction_is_echoed(transaction: Any, verb: str, extra: dict[str, Any]) -> None:
    router, _ = make_router()
    [answer] = handle(router, verb, json.dumps({**extra, "transaction": transaction}).encode())
    assert answer["transaction"] == transaction


# ---------- runtime settings ----------

@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(None, {"data_dir": str(tmp_path)}, env={})


def test_settings_apply_names_the_key_and_changes_nothing(config: Config) -> None:
    before = settings.current(config)
    for changes, words in (({"alerts.bad_posture_minutes": -1}, "alerts.bad_posture_minutes"),
                           ({"posture.sensitivity": 10}, "posture.sensitivity"),
                           ({"alerts.cooldown_minutes": "5"}, "alerts.cooldown_minutes must be a number"),
                           ({"alerts.cooldown_minutes": True}, "alerts.cooldown_minutes must be a number"),
                           ({"alerts.bad_posture_minutes": 20, "alerts.recovery_s": -1}, "alerts.recovery_s"),
                           ({"mqtt.broker": "x"}, "not a runtime setting: mqtt.broker"),
                           ({}, "expected a JSON object")):
        with pytest.raises(RequestError) as info:
            settings.apply(config, changes)
        assert words in str(info.value) and "\n" not in str(info.value)
    assert settings.current(config) == before


def test_settings_apply_and_persist(config: Config, tmp_path: Path) -> None:
    new = settings.apply(config, {"alerts.bad_posture_minutes": 15, "posture.sensitivity": 1.5})
    assert settings.current(new)["alerts.bad_posture_minutes"] == 15
    assert config.alerts.bad_posture_minutes == 10  # the old config object is untouched
    store = settings.SettingsStore(tmp_path)
    store.save(new)
    assert settings.current(store.load(config)) == settings.current(new)
    (tmp_path / "settings.json").write_text("{not json")
    assert settings.current(store.load(config)) == settings.current(config)
    (tmp_path / "settings.json").write_text(json.dumps({"posture.sensitivity": 99}))
    assert settings.current(store.load(config)) == settings.current(config)
    (tmp_path / "settings.json").write_text(json.dumps(["a"]))
    assert settings.current(store.load(config)) == settings.current(config)


@hsettings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from([*settings.RUNTIME_KEYS, "x.y", "alerts"]),
                               JSON | st.floats(), max_size=4))
def test_settings_apply_only_ever_raises_request_error(changes: dict[str, Any]) -> None:
    config = load_config(None, {}, env={})
    try:
        new = settings.apply(config, changes)
    except RequestError as exc:
        assert "\n" not in str(exc)
        return
    current = settings.current(new)
    for key, value in changes.items():
        assert current[key] == value and math.isfinite(current[key])
    dumps(current)  # config/get must be able to answer with it


# ---------- the pause store ----------

def test_pause_store_round_trip_and_expiry(tmp_path: Path) -> None:
    store = PauseStore(tmp_path)
    assert store.load(1000.0) == PauseState()
    store.save(PauseState(True, 2000.0))
    assert store.load(1999.0) == PauseState(True, 2000.0)
    assert store.load(2000.0) == PauseState()  # expired: not restored
    store.save(PauseState(True, None))
    assert store.load(1e12) == PauseState(True, None)  # until resumed
    for junk in ("{", "[]", '{"paused": true, "until": "soon"}', '{"until": 5}'):
        (tmp_path / "pause.json").write_text(junk)
        assert store.load(0.0) == PauseState()
