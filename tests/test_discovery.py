"""Contract tests for Home Assistant discovery (deskpulse/discovery.py); no broker needed.

The shape of the payloads, their topics and ids, removal and the record of what was
published. What Home Assistant makes of them (entities, states, templates, unknown values,
the controls) is tested against Home Assistant core itself in tests/ha/test_ha_core.py.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse import discovery
from deskpulse.config import Config, load_config
from deskpulse.errors import ConfigError
from deskpulse.topics import POSTURES, Topics

VERSION = "0.1.0"
URL = "http://desk1.local:8080/"
# homeassistant/core.py: what an entity id may look like.
VALID_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")
# Verbs of topic contract v1 (request/<verb>).
CONTRACT_VERBS = {"pause", "resume", "calibrate", "stream", "config/get", "config/set",
                  "history", "monitoring"}
# Abbreviations HA accepts; we promise the long names.
ABBREVIATIONS = {"dev", "o", "avty", "avty_t", "stat_t", "cmd_t", "val_tpl", "uniq_id", "obj_id",
                 "dev_cla", "unit_of_meas", "ent_cat", "json_attr_t", "json_attr_tpl", "pl_on",
                 "pl_off", "pl_avail", "pl_not_avail", "stat_cla", "ids", "mf", "mdl", "sw",
                 "cu", "cmps", "p", "object_id", "~"}
REQUIRED = {
    "sensor": {"state_topic", "value_template"},
    "binary_sensor": {"state_topic", "value_template", "payload_on", "payload_off"},
    "switch": {"state_topic", "value_template", "command_topic", "payload_on", "payload_off"},
    "button": {"command_topic", "payload_press"},
    "camera": {"topic"},
    "event": {"state_topic", "value_template", "event_types"},
}
COMMON = {"name", "unique_id", "default_entity_id", "availability", "device", "origin"}


# ---------------------------------------------------------------- helpers

def make_config(device_id: str = "desk1", **ha: Any) -> Config:
    overrides: dict[str, Any] = {"device_id": device_id}
    overrides.update({f"homeassistant.{k}": v for k, v in ha.items()})
    return load_config(None, overrides, env={})


def payloads(config: Config | None = None, url: str | None = URL) -> dict[str, dict[str, Any]]:
    """Entity key -> parsed discovery payload (and its topic under "_topic")."""
    config = config or make_config()
    out = {}
    for topic, body in discovery.discovery_messages(config, VERSION, url):
        parsed = json.loads(body)
        key = topic.split("/")[3]
        out[key] = {**parsed, "_topic": topic}
    return out


def named_topics(cfg: dict[str, Any]) -> list[str]:
    found = [v for k, v in cfg.items() if k.endswith("topic") and not k.startswith("_")]
    found += [a["topic"] for a in cfg.get("availability", [])]
    return found


# ---------------------------------------------------------------- payload shape

def test_every_required_entity_is_there() -> None:
    p = payloads()
    expected = {"posture": "sensor", "bad_posture": "binary_sensor", "present": "binary_sensor",
                "bad_streak": "sensor", "good_today": "sensor", "alerts_today": "sensor",
                "camera": "camera", "monitoring": "switch", "calibrate": "button",
                "fps": "sensor", "inference_ms": "sensor", "cpu_temp": "sensor", "alert": "event"}
    assert {k: v["_topic"].split("/")[1] for k, v in p.items()} == expected


def test_topics_are_per_component_under_the_prefix() -> None:
    config = make_config(prefix="ha-test")
    for topic, _ in discovery.discovery_messages(config, VERSION, URL):
        prefix, component, node, key, last = topic.split("/")
        assert (prefix, node, last) == ("ha-test", "deskpulse_desk1", "config")
        assert component in REQUIRED and TOPIC_LEVEL.match(key)


@pytest.mark.parametrize("key", sorted(payloads()))
def test_required_keys_and_types(key: str) -> None:
    cfg = payloads()[key]
    component = cfg["_topic"].split("/")[1]
    body = {k: v for k, v in cfg.items() if k != "_topic"}
    missing = (COMMON | REQUIRED[component]) - body.keys()
    assert not missing
    assert not body.keys() & ABBREVIATIONS, "long key names only; object_id is deprecated"
    for k, v in body.items():
        if k.endswith(("topic", "template")) or k in ("name", "unique_id", "default_entity_id"):
            assert isinstance(v, str) and v, k
    assert body["default_entity_id"] == f"{component}.deskpulse_desk1_{key}"
    assert VALID_ENTITY_ID.match(body["default_entity_id"])
    assert body["unique_id"] == f"deskpulse:desk1:{key}"
    assert body["availability"] == [{"topic": "deskpulse/desk1/availability",
                                     "payload_available": "online",
                                     "payload_not_available": "offline"}]
    assert body["origin"] == {"name": "DeskPulse", "sw_version": VERSION}
    if "entity_category" in body:
        assert body["entity_category"] in ("diagnostic", "config")
    if component == "camera":
        assert "image_encoding" not in body and "value_template" not in body
    if "command_topic" in body:
        assert body["retain"] is False


def test_device_block_is_identical_and_complete() -> None:
    p = payloads()
    devices = [v["device"] for v in p.values()]
    assert all(d == devices[0] for d in devices)
    assert devices[0] == {
        "identifiers": ["deskpulse_desk1"], "name": "DeskPulse desk1", "manufacturer": "DeskPulse",
        "model": "Posture monitor", "sw_version": VERSION, "configuration_url": URL,
    }


def test_entity_classes_units_and_categories() -> None:
    p = payloads()
    assert p["posture"]["device_class"] == "enum"
    assert p["posture"]["options"] == list(POSTURES)
    assert p["bad_posture"]["device_class"] == "problem"
    assert p["present"]["device_class"] == "occupancy"
    assert (p["bad_streak"]["unit_of_measurement"], p["bad_streak"]["state_class"]) == ("s", "measurement")
    assert p["good_today"]["unit_of_measurement"] == "%"
    assert p["alerts_today"]["state_class"] == "total_increasing"
    for key in ("fps", "inference_ms", "cpu_temp"):
        assert p[key]["entity_category"] == "diagnostic"
        assert p[key]["state_class"] == "measurement"
    assert p["cpu_temp"]["device_class"] == "temperature"
    for key in ("posture", "bad_posture", "present", "bad_streak", "good_today", "alerts_today",
                "monitoring", "camera", "alert"):
        assert "entity_category" not in p[key], key


def test_named_topics_are_contract_topics() -> None:
    t = Topics("deskpulse", "desk1")
    allowed = {t.availability, t.state, t.snapshot, t.stats, t.health, t.alert}
    allowed |= {t.request(v) for v in CONTRACT_VERBS}
    for key, cfg in payloads().items():
        for topic in named_topics(cfg):
            assert topic in allowed, (key, topic)
    assert {c.verb for c in discovery.COMMANDS.values()} <= CONTRACT_VERBS
    assert payloads()["camera"]["topic"] == t.snapshot


def test_commands_match_payloads() -> None:
    p = payloads()
    t = Topics("deskpulse", "desk1")
    mon, cal = discovery.COMMANDS["monitoring"], discovery.COMMANDS["calibrate"]
    assert p["monitoring"]["command_topic"] == t.request(mon.verb) == "deskpulse/desk1/request/monitoring"
    assert (p["monitoring"]["payload_on"], p["monitoring"]["payload_off"]) == mon.payloads == ("ON", "OFF")
    assert p["calibrate"]["command_topic"] == t.request(cal.verb)
    assert p["calibrate"]["payload_press"] in cal.payloads
    json.loads(p["calibrate"]["payload_press"])  # the router parses request payloads as JSON
    assert t.verb_of(p["monitoring"]["command_topic"]) == "monitoring"


def test_unique_ids_unique_and_stable() -> None:
    first = discovery.discovery_messages(make_config(), VERSION, URL)
    assert first == discovery.discovery_messages(make_config(), VERSION, URL)
    ids = [json.loads(b)["unique_id"] for _, b in first]
    assert len(ids) == len(set(ids))
    entity_ids = [json.loads(b)["default_entity_id"] for _, b in first]
    assert len(entity_ids) == len(set(entity_ids))


def test_mqtt_prefix_follows_config() -> None:
    config = load_config(None, {"device_id": "desk1", "mqtt.prefix": "office/pulse"}, env={})
    p = payloads(config)
    assert p["posture"]["state_topic"] == "office/pulse/desk1/state"
    assert p["posture"]["availability"][0]["topic"] == "office/pulse/desk1/availability"


def test_camera_can_be_left_out() -> None:
    p = payloads(make_config(camera=False))
    assert "camera" not in p
    assert "homeassistant/camera/deskpulse_desk1/camera/config" in discovery.discovery_topics(
        "homeassistant", "desk1")


def test_bad_dashboard_url_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="deskpulse.discovery"):
        p = payloads(url="desk1:8080")
    assert "configuration_url" not in p["posture"]["device"]
    assert "dashboard URL" in caplog.text
    assert "configuration_url" not in payloads(url=None)["posture"]["device"]


def test_configuration_url() -> None:
    assert discovery.configuration_url(make_config(), "desk1.local") == "http://desk1.local:8080/"
    assert discovery.configuration_url(make_config(), "fe80::1") == "http://[fe80::1]:8080/"
    cfg = make_config(configuration_url="https://proxy.lan/deskpulse/")
    assert discovery.configuration_url(cfg, "desk1") == "https://proxy.lan/deskpulse/"
    with pytest.raises(ConfigError, match="homeassistant.configuration_url"):
        make_config(configuration_url="ftp://x")


# ---------------------------------------------------------------- removal and the record

def test_removal_covers_every_discovery_topic() -> None:
    config = make_config()
    published = {t for t, _ in discovery.discovery_messages(config, VERSION, URL)}
    removal = discovery.removal_messages(config)
    assert {t for t, _ in removal} >= published
    assert {t for t, _ in removal} == set(discovery.discovery_topics("homeassistant", "desk1"))
    assert all(p == "" for _, p in removal)


def test_removal_for_an_old_device_id() -> None:
    config = make_config("desk-new")
    old = discovery.removal_messages(config, device_id="desk-old")
    new = discovery.removal_messages(config)
    assert {t for t, _ in old}.isdisjoint({t for t, _ in new})
    assert all("/deskpulse_desk-old/" in t for t, _ in old)


def test_removal_includes_previous_deskpulse_topics_only() -> None:
    config = make_config("desk1")
    previous = ["ha-old/sensor/deskpulse_desk1/posture/config",
                "homeassistant/sensor/zigbee_lamp/power/config",
                "deskpulse/desk1/state"]
    topics = [t for t, _ in discovery.removal_messages(config, previous=previous)]
    assert "ha-old/sensor/deskpulse_desk1/posture/config" in topics
    assert "homeassistant/sensor/zigbee_lamp/power/config" not in topics
    assert "deskpulse/desk1/state" not in topics
    assert len(topics) == len(set(topics))


def test_stale_messages_after_rename_and_camera_off() -> None:
    before = [t for t, _ in discovery.discovery_messages(make_config("desk1"), VERSION, URL)]
    after = [t for t, _ in discovery.discovery_messages(make_config("study"), VERSION, URL)]
    stale = discovery.stale_messages(before, after)
    assert {t for t, _ in stale} == set(before) and all(p == "" for _, p in stale)

    no_cam = [t for t, _ in discovery.discovery_messages(make_config("desk1", camera=False), VERSION, URL)]
    assert discovery.stale_messages(before, no_cam) == [
        ("homeassistant/camera/deskpulse_desk1/camera/config", "")]
    assert discovery.stale_messages(before, before) == []
    # An entity dropped by a later version is still cleared.
    dropped = "homeassistant/sensor/deskpulse_desk1/old_thing/config"
    assert discovery.stale_messages([dropped], before) == [(dropped, "")]


def test_record_roundtrip(tmp_path: Path) -> None:
    config = load_config(None, {"device_id": "desk1", "data_dir": str(tmp_path / "data")}, env={})
    path = discovery.record_path(config)
    assert discovery.read_published(path) == []
    topics = [t for t, _ in discovery.discovery_messages(config, VERSION, URL)]
    discovery.write_published(path, topics)
    assert sorted(discovery.read_published(path)) == sorted(topics)
    assert [p.name for p in path.parent.iterdir()] == [discovery.RECORD_NAME]


@pytest.mark.parametrize("content", ["", "{", "{\"a\": 1}", "[1, 2]", "\xff\xfe"])
def test_unusable_record_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                    content: str) -> None:
    path = tmp_path / discovery.RECORD_NAME
    path.write_bytes(content.encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="deskpulse.discovery"):
        assert discovery.read_published(path) == []
    assert "discovery record" in caplog.text


def test_record_never_names_foreign_topics(tmp_path: Path) -> None:
    path = tmp_path / discovery.RECORD_NAME
    path.write_text(json.dumps(["homeassistant/light/kitchen/main/config", "#",
                                "homeassistant/sensor/deskpulse_desk1/posture/config"]))
    assert discovery.read_published(path) == ["homeassistant/sensor/deskpulse_desk1/posture/config"]


def test_status_and_filter() -> None:
    config = make_config(prefix="hass")
    assert discovery.status_topic(config) == "hass/status"
    assert discovery.discovery_filter("hass", "desk1") == "hass/+/deskpulse_desk1/+/config"


# ---------------------------------------------------------------- any device id

device_ids = st.from_regex(r"[a-z0-9_-]{1,40}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(device_ids)
def test_any_device_id_gives_valid_topics_and_ids(device_id: str) -> None:
    config = make_config(device_id)
    messages = discovery.discovery_messages(config, VERSION, URL)
    topics = [t for t, _ in messages]
    assert len(topics) == len(set(topics)) == len(discovery.ENTITY_KEYS)
    assert set(topics) <= set(discovery.discovery_topics("homeassistant", device_id))
    bodies = [json.loads(b) for _, b in messages]
    assert len({b["unique_id"] for b in bodies}) == len(bodies)
    for topic, body in zip(topics, bodies):
        levels = topic.split("/")
        assert len(levels) == 5 and all(TOPIC_LEVEL.match(x) for x in levels)
        assert VALID_ENTITY_ID.match(body["default_entity_id"]), body["default_entity_id"]
        assert body["default_entity_id"].startswith(levels[1] + ".")
        assert discovery.parse_discovery_topic(topic) == ("homeassistant", levels[1], device_id, levels[3])
        for named in named_topics(body):
            assert named.startswith(f"deskpulse/{device_id}/")


@settings(max_examples=100, deadline=None)
@given(device_ids, device_ids)
def test_different_device_ids_never_share_topics_or_unique_ids(a: str, b: str) -> None:
    if a == b:
        return
    ta = set(discovery.discovery_topics("homeassistant", a))
    tb = set(discovery.discovery_topics("homeassistant", b))
    assert ta.isdisjoint(tb)
    ua = {json.loads(x)["unique_id"] for _, x in discovery.discovery_messages(make_config(a), VERSION, None)}
    ub = {json.loads(x)["unique_id"] for _, x in discovery.discovery_messages(make_config(b), VERSION, None)}
    assert ua.isdisjoint(ub)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_discovery_topic_never_raises(topic: str) -> None:
    parsed = discovery.parse_discovery_topic(topic)
    if parsed is not None:
        assert topic.endswith("/config") and "/deskpulse_" in topic

