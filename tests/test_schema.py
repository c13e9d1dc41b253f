"""deskpulse/schema.py: the committed JSON Schema is what the models generate, the enums are
the code's own, the real producers' payloads validate, the page knows every reason code, and
parse_request refuses bad bodies with today's one-line messages (and agrees with the schema)."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from deskpulse import payloads, topics, tracker
from deskpulse.config import PostureConfig, load_config
from deskpulse.errors import RequestError
from deskpulse.posture import REASONS, Baseline
from deskpulse.requests import error, ok
from deskpulse.schema import (PAYLOADS, REGENERATE, REQUESTS, SCHEMA_DIR, Alert, Health, State, Stats,
                              json_schemas, parse_request, render, settings_changes)
from deskpulse.settings import RUNTIME_KEYS, apply, current

from . import fixtures
from .schema_check import check, js_reasons, schema_name, validator
from .support import ROOT


def valid(name: str, instance: Any) -> bool:
    return validator(name).is_valid(instance)


# ---------- the committed files ----------

def test_committed_schema_is_what_the_models_generate() -> None:
    wanted = {f"{name}.json": render(schema) for name, schema in json_schemas().items()}
    present = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.json")}
    stale = sorted(n for n in wanted if present.get(n) != wanted[n])
    extra = sorted(set(present) - set(wanted))
    assert not stale and not extra, (
        f"docs/schema is stale (out of date: {', '.join(stale) or '-'}; no longer generated: "
        f"{', '.join(extra) or '-'}). Regenerate it from the repository root with: {REGENERATE}")


def test_generation_is_deterministic_and_every_file_is_a_valid_schema() -> None:
    assert {n: render(s) for n, s in json_schemas().items()} == {n: render(s) for n, s in json_schemas().items()}
    for name in PAYLOADS:
        jsonschema.Draft202012Validator.check_schema(json.loads((SCHEMA_DIR / f"{name}.json").read_text()))


# ---------- enums come from the code ----------

def _enum(schema: dict[str, Any], *path: str) -> list[str]:
    node: Any = schema
    for key in path:
        node = node[key]
    return node["enum"]


def test_posture_reason_and_view_enums_are_the_codes() -> None:
    state = json.loads((SCHEMA_DIR / "state.json").read_text())
    assert _enum(state, "properties", "posture") == list(payloads.POSTURES)
    assert _enum(state, "$defs", "Metrics", "properties", "reasons", "items") == list(REASONS)
    assert _enum(state, "properties", "view") == ["front", "side"] == list(
        PostureConfig.model_fields["view"].annotation.__args__)  # type: ignore[union-attr]
    # One posture list, wherever it is spelled (the stats keys and timeline letters follow tracker's).
    assert payloads.POSTURES == tracker.POSTURES == topics.POSTURES
    stats = json.loads((SCHEMA_DIR / "stats.json").read_text())
    assert {f"{p}_s" for p in tracker.POSTURES} <= set(stats["properties"])
    config_set = json.loads((SCHEMA_DIR / "request-config-set.json").read_text())
    assert set(config_set["properties"]) - {"transaction"} == set(RUNTIME_KEYS)


# ---------- the page's reason hints ----------

def test_the_page_has_a_hint_for_every_reason_the_classifier_emits() -> None:
    table = js_reasons()
    missing = sorted(set(REASONS) - set(table))
    unknown = sorted(set(table) - set(REASONS))
    assert not missing and not unknown, (
        f"web/static/render.js REASONS and deskpulse/posture.py REASONS differ: no hint for "
        f"{', '.join(missing) or '-'}; hints for codes the classifier never emits: {', '.join(unknown) or '-'}")


def test_the_js_table_reader_catches_drift() -> None:
    good = 'x\nexport const REASONS = {\n  head_down: "Look up.",\n  // c\n};\n'
    assert js_reasons(good) == {"head_down": "Look up."}
    with pytest.raises(AssertionError, match="cannot read"):
        js_reasons('export const REASONS = {\n  head_down: hint(),\n};\n')
    with pytest.raises(AssertionError, match="no `export const REASONS"):
        js_reasons("const REASONS = {};")


# ---------- the real producers' payloads validate ----------

@pytest.mark.parametrize("posture", payloads.POSTURES)
def test_state_payloads_of_every_posture_validate(posture: str) -> None:
    payload = fixtures.state(posture, bad_for_s=12.5 if posture == "bad" else 0.0,
                             until=time.time() + 60 if posture == "paused" else None)
    State.model_validate(payload)
    assert valid("state", payload), list(validator("state").iter_errors(payload))


@pytest.mark.parametrize("kind,view", [("good", "front"), ("slumped", "front"), ("bad", "front"),
                                       ("side_bad", "side"), ("unknown", "front")])
def test_every_reading_shape_validates(kind: str, view: str) -> None:
    reading = fixtures.reading(kind)
    posture = {"side_bad": "bad", "slumped": "bad"}.get(kind, kind)
    payload = fixtures.state(posture, reading_=reading, view=view)
    assert valid("state", payload), list(validator("state").iter_errors(payload))
    assert payload["metrics"]["reasons"] == list(reading.reasons)


def test_a_state_with_a_code_the_schema_does_not_know_is_refused() -> None:
    payload = fixtures.state("bad")
    payload["metrics"]["reasons"] = ["head_drop"]  # what the old fixtures wrote, never emitted
    assert not valid("state", payload)
    assert "head_drop" in (check("deskpulse/d1/state", json.dumps(payload).encode()) or "")
    del payload["metrics"]
    assert not valid("state", payload)


def test_stats_health_and_alerts_validate() -> None:
    stats = fixtures.stats()
    Stats.model_validate(stats)
    assert valid("stats", stats), list(validator("stats").iter_errors(stats))
    assert stats["alerts"] >= 1 and "b" in stats["timeline"]["postures"]
    health = fixtures.health()
    Health.model_validate(health)
    assert valid("health", health)
    for kind in ("bad_posture", "recovered", "break_reminder"):
        event = fixtures.alert(kind)
        Alert.model_validate(event)
        assert valid("alert", event)
    assert not valid("health", {**health, "gpu": 1})  # extra="forbid": every field is declared


def test_answers_validate_per_verb_and_as_an_envelope() -> None:
    day = fixtures.day(date(2026, 11, 21), 3600, 600, 1)
    cases = {
        "pause": fixtures.data("pause", paused=True, until=None),
        "resume": fixtures.data("resume", paused=False),
        "monitoring": fixtures.data("monitoring", paused=True, until="2026-11-21T10:00:00.000Z"),
        "stream": fixtures.data("stream", streaming=False, lease_s=0),
        "config/get": {"settings": current(load_config(None, {}, env={})), "descriptions": dict(RUNTIME_KEYS),
                       "sources": dict.fromkeys(RUNTIME_KEYS, "default")},
        "config/set": {"settings": current(load_config(None, {}, env={}))},
        "history": fixtures.data("history", **{"from": "2026-11-21", "to": "2026-11-21", "days": [day]}),
    }
    for verb, data in cases.items():
        name = schema_name(f"deskpulse/d1/response/{verb}")
        assert name == f"response-{verb.replace('/', '-')}"
        for answer in (ok(data, "t1"), ok(data, None), error("nope", {"any": ["json"]})):
            assert valid(name, answer) and valid("response", answer), (verb, answer)
    baseline = Baseline(head_height=0.7, calibrated=True, at="2026-11-21T08:00:00Z").to_json()
    progress = ok({"stage": "starting", "percent": 0, "seconds": 5.0}, "c", final=False)
    done = ok({"stage": "done", "percent": 100, "baseline": baseline}, "c")
    assert valid("response-calibrate", progress) and valid("response-calibrate", done)
    assert not valid("response-calibrate", ok({"stage": "done", "percent": 100, "baseline": {"head_height": 0.7}}, 1))
    assert not valid("response-pause", ok({"lease_s": 30}, 1))
    assert not valid("response", {"status": "error", "data": None, "error": ""})
    assert schema_name("deskpulse/d1/response/reboot") == "response"


def test_the_topic_check_names_topic_and_problem() -> None:
    assert check("deskpulse/d1/state", json.dumps(fixtures.state("good")).encode()) is None
    assert check("deskpulse/d1/state", b"") is None  # clearing a retained topic
    assert check("deskpulse/d1/frame", b"\xff\xd8") is None  # not a JSON topic
    assert check("deskpulse/d1/request/pause", b"garbage") is None  # requests are the sender's
    assert check("deskpulse/d1/availability", b"online") is None
    assert "deskpulse/d1/availability" in (check("deskpulse/d1/availability", b"maybe") or "")
    problem = check("deskpulse/d1/health", b'{"fps": 1}')
    assert problem and problem.startswith("deskpulse/d1/health") and "required" in problem
    assert "not JSON" in (check("deskpulse/d1/stats", b"{nope") or "")


# ---------- requests ----------

@pytest.mark.parametrize("verb,body,words", [
    ("pause", {"minutes": "5"}, "minutes must be a number, got str"),
    ("pause", {"minutes": -1}, "minutes must be between 0.1 and 10080, got -1"),
    ("pause", {"minutes": 1e9}, "minutes must be between"),
    ("pause", {"minutes": True}, "minutes must be a number, got bool"),
    ("pause", {"minutes": float("nan")}, "minutes must be a finite number"),
    ("pause", {"minuets": 5}, "unknown field(s): minuets; allowed: minutes"),
    ("resume", {"x": 1}, "unknown field(s): x; allowed: none"),
    ("calibrate", {"seconds": 0}, "seconds must be between 1 and 120, got 0"),
    ("stream", {"lease_s": 0}, "lease_s must be between"),
    ("stream", {"lease_s": "30"}, "lease_s must be a number"),
    ("stream", {"enable": "no"}, "enable must be true or false"),
    ("stream", {"fps": 30}, "unknown field(s): fps"),
    ("config/get", {"x": 1}, "unknown field(s): x"),
    ("config/set", {}, "expected a JSON object of settings"),
    ("config/set", {"transaction": 3}, "expected a JSON object of settings"),
    ("config/set", {"alerts.bad_posture_minutes": 0}, "alerts.bad_posture_minutes: "),
    ("config/set", {"posture.sensitivity": 99}, "posture.sensitivity: "),
    ("config/set", {"alerts.cooldown_minutes": "5"}, "alerts.cooldown_minutes must be a number, got str"),
    ("config/set", {"alerts.cooldown_minutes": None}, "alerts.cooldown_minutes must be a number"),
    ("config/set", {"alerts.bad_posture_minutes": 20, "alerts.recovery_s": -3}, "alerts.recovery_s: "),
    ("config/set", {"mqtt.broker": "mqtt://evil:1883"}, "not a runtime setting: mqtt.broker; settable: alerts."),
    ("config/set", {"alerts": {"bad_posture_minutes": 3}}, "not a runtime setting: alerts"),
    ("history", {"from": "yesterday"}, 'from: not a date like "2026-11-21": \'yesterday\''),
    ("history", {"to": "2026-13-01"}, "to: not a date"),
    ("history", {"from": 20261121}, 'from: expected a date like "2026-11-21", got int'),
    ("history", {"to": ["2026-11-21"]}, "to: expected a date"),
    ("history", {"days": 7}, "unknown field(s): days; allowed: from, to"),
    ("monitoring", "TOGGLE", "monitoring expects ON or OFF, got 'TOGGLE'"),
    ("pause", [1], "payload must be a JSON object, got list"),
    ("reboot", {}, "unknown verb 'reboot'"),
])
def test_parse_request_names_the_problem_in_one_line(verb: str, body: Any, words: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(verb, body)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_parse_request_gives_typed_values() -> None:
    assert parse_request("pause", {"minutes": 5}).minutes == 5.0
    assert parse_request("pause", {"minutes": None, "transaction": "t"}).minutes is None
    assert parse_request("calibrate", {}).seconds is None
    stream = parse_request("stream", {"enable": False})
    assert stream.enable is False and stream.lease_s is None
    assert parse_request("stream", {"lease_s": 30}).enable is True
    history = parse_request("history", {"from": "2026-11-15"})
    assert history.from_ == "2026-11-15" and history.to is None
    assert parse_request("monitoring", " off\n").on is False and parse_request("monitoring", "On").on is True
    changes = settings_changes(parse_request("config/set", {"alerts.bad_posture_minutes": 15, "transaction": 1}))
    assert changes == {"alerts.bad_posture_minutes": 15}
    config = load_config(None, {}, env={})
    assert current(apply(config, changes))["alerts.bad_posture_minutes"] == 15


JSON = st.recursive(st.none() | st.booleans() | st.integers(min_value=-10**6, max_value=10**6)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
NAMES = st.sampled_from(["minutes", "seconds", "lease_s", "enable", "from", "to", "x", *RUNTIME_KEYS])
VALUES = st.one_of(JSON, st.sampled_from(["2026-11-21", "2026-02-30", "20261121", "ON"]),
                   st.floats(min_value=-5, max_value=2000), st.integers(min_value=-5, max_value=2000))


@hsettings(max_examples=300, deadline=None)
@given(verb=st.sampled_from([v for v in REQUESTS if v != "monitoring"]),
       body=st.dictionaries(NAMES, VALUES, max_size=3))
def test_parse_request_and_the_json_schema_agree(verb: str, body: dict[str, Any]) -> None:
    """A body the handlers accept is exactly a body the published schema accepts."""
    try:
        parse_request(verb, body)
        accepted = True
    except RequestError as exc:
        assert "\n" not in str(exc)
        accepted = False
    name = f"request-{verb.replace('/', '-')}"
    assert accepted == valid(name, body), (verb, body, list(validator(name).iter_errors(body))[:1])


@hsettings(max_examples=200, deadline=None)
@given(text=st.text(max_size=8) | st.sampled_from(["ON", "off", " On \n", "OFF\t"]))
def test_monitoring_text_and_its_schema_agree(text: str) -> None:
    try:
        parse_request("monitoring", text.strip())  # the router strips raw payloads
        accepted = True
    except RequestError:
        accepted = False
    assert accepted == valid("request-monitoring", text.strip())


def test_schema_dir_is_in_the_repository() -> None:
    assert SCHEMA_DIR == ROOT / "docs" / "schema" and Path(SCHEMA_DIR).is_dir()


# ---------- the end-to-end hook ----------

def test_recorders_report_agent_payloads_that_do_not_match(broker, recorder) -> None:
    from . import schema_check

    good = json.dumps(fixtures.state("good")).encode()
    recorder.publish("deskpulse/d1/state", good)
    recorder.publish("deskpulse/d1/state", b'{"posture": "good", "seq": 1}')
    recorder.publish("deskpulse/d1/request/pause", b"garbage")
    recorder.wait_topic("deskpulse/d1/request/pause")
    problems = schema_check.PROBLEMS.take()  # taken: this test's own bad payload must not fail it
    assert len(problems) == 1 and problems[0].startswith("deskpulse/d1/state: ") and "required" in problems[0]


def test_the_contract_doc_links_every_schema_file() -> None:
    doc = (ROOT / "docs" / "topics.md").read_text(encoding="utf-8")
    missing = [name for name in PAYLOADS if f"(schema/{name}.json)" not in doc]
    assert not missing, f"docs/topics.md does not link docs/schema/{{{', '.join(missing)}}}.json"


def test_metric_and_mode_names_are_the_pipelines() -> None:
    """Metrics and modes are spelled in the schema (for their descriptions); these lists in the
    pose-rate policy are the code's own, so the two must name the same things."""
    pacing = pytest.importorskip("deskpulse.pacing")
    from deskpulse.schema import Metrics, Mode

    metrics = set(Metrics.model_fields) - {"reasons"}
    assert metrics == set(pacing.RATIO_METRICS + pacing.ANGLE_METRICS + pacing.DERIVED_METRICS)
    assert set(Mode.__args__) == {*pacing.MODES, "paused"}  # paused: the pipeline's, while paused
