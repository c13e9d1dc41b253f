"""Home Assistant core 2024.3, its own MQTT integration under pytest, fed what the real
DeskPulse agent published (tests/ha/agent_harness.py: real MediaPipe on a real photo, the
embedded broker), and asserted the way a user sees it: entities, device, states, the camera
picture, the alert event, the controls, removal and availability.

Messages go in with `async_fire_mqtt_message` in the order a broker delivers them (discovery,
then the retained topics a new subscriber gets). What HA publishes for the switch and the
button is taken from its MQTT client (`mqtt_mock.async_publish`) and sent, unchanged, to the
real agent. The tests share the one agent and run in file order: the controls before
`ha-remove`, and stopping the agent last.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from homeassistant.components.camera import async_get_image
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message

from conftest import Harness, Message

pytestmark = pytest.mark.slow  # the real agent starts once, for the session

DISCOVERY_PREFIX = "homeassistant"
# entity key -> (domain, device class, unit, state class, entity category)
EXPECTED = {
    "posture": ("sensor", "enum", None, None, None),
    "bad_posture": ("binary_sensor", "problem", None, None, None),
    "present": ("binary_sensor", "occupancy", None, None, None),
    "bad_streak": ("sensor", "duration", "s", "measurement", None),
    "good_today": ("sensor", None, "%", "measurement", None),
    "alerts_today": ("sensor", None, None, "total_increasing", None),
    "alert": ("event", None, None, None, None),
    "monitoring": ("switch", None, None, None, None),
    "calibrate": ("button", None, None, None, "config"),
    "fps": ("sensor", None, "fps", "measurement", "diagnostic"),
    "inference_ms": ("sensor", "duration", "ms", "measurement", "diagnostic"),
    "cpu_temp": ("sensor", "temperature", "°C", "measurement", "diagnostic"),
    "camera": ("camera", None, None, None, None),
}
# Postures with someone at the desk; paused: not known.
PRESENT = {"good": "on", "bad": "on", "unknown": "on", "absent": "off"}


# ---------------------------------------------------------------- the agent's messages

def configs(messages: list[Message]) -> dict[str, tuple[str, dict[str, Any]]]:
    """entity key -> (discovery topic, config) of the agent's first discovery of each entity."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for m in messages:
        parts = m.topic.split("/")
        if len(parts) == 5 and parts[0] == DISCOVERY_PREFIX and parts[4] == "config" and m.payload:
            out.setdefault(parts[3], (m.topic, m.json()))
    return out


def topics_of(agent: Harness) -> dict[str, str]:
    """The contract topics, as the agent's own discovery names them."""
    c = {k: cfg for k, (_, cfg) in configs(agent.messages).items()}
    return {"state": c["posture"]["state_topic"], "stats": c["good_today"]["state_topic"],
            "health": c["fps"]["state_topic"], "alert": c["alert"]["state_topic"],
            "snapshot": c["camera"]["topic"], "availability": c["posture"]["availability"][0]["topic"]}


def latest(messages: list[Message], topic: str) -> Message:
    found = [m for m in messages if m.topic == topic]
    assert found, f"the agent published nothing on {topic}"
    return found[-1]


def with_body(m: Message, body: dict[str, Any]) -> Message:
    return Message(m.topic, json.dumps(body).encode(), m.qos, m.retain)


def fire(hass: HomeAssistant, m: Message, retain: bool | None = None) -> None:
    async_fire_mqtt_message(hass, m.topic, m.payload, m.qos, m.retain if retain is None else retain)


async def start_ha(hass: HomeAssistant, mqtt_mock_entry: Any, agent: Harness) -> Any:
    """HA's MQTT integration, then the agent's discovery, then its retained topics."""
    mqtt_mock = await mqtt_mock_entry()
    for topic, _ in configs(agent.messages).values():
        fire(hass, next(m for m in agent.messages if m.topic == topic and m.payload))
    await hass.async_block_till_done()
    t = topics_of(agent)
    for key in ("availability", "state", "stats", "health"):
        fire(hass, latest(agent.messages, t[key]))
    await hass.async_block_till_done()
    return mqtt_mock


def entity_ids(hass: HomeAssistant, agent: Harness) -> dict[str, str]:
    """entity key -> entity id, looked up in HA's registry by the agent's unique_id."""
    reg = er.async_get(hass)
    out = {}
    for key, (topic, cfg) in configs(agent.messages).items():
        entity_id = reg.async_get_entity_id(topic.split("/")[1], "mqtt", cfg["unique_id"])
        if entity_id is not None:
            out[key] = entity_id
    return out


def state_of(hass: HomeAssistant, agent: Harness, key: str) -> str:
    s = hass.states.get(entity_ids(hass, agent)[key])
    assert s is not None, key
    return s.state


def expected_states(state: dict[str, Any], stats: dict[str, Any], health: dict[str, Any]) -> dict[str, Any]:
    """What a user should see for the agent's payloads (None: unknown)."""
    posture = state["posture"]
    return {
        "posture": posture,
        "bad_posture": "on" if posture == "bad" else "off",
        "present": PRESENT.get(posture, STATE_UNKNOWN),
        "monitoring": "off" if posture == "paused" else "on",
        "bad_streak": state["bad_for_s"],
        "good_today": stats["good_pct"],
        "alerts_today": stats["alerts"],
        "fps": health["fps"],
        "inference_ms": health["inference_ms"],
        "cpu_temp": health["cpu_temp_c"],
    }


def assert_shows(hass: HomeAssistant, agent: Harness, want: dict[str, Any]) -> None:
    got = {k: state_of(hass, agent, k) for k in want}
    for key, value in want.items():
        if value is None:
            assert got[key] == STATE_UNKNOWN, (key, got[key])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert float(got[key]) == pytest.approx(value), (key, got[key])
        else:
            assert got[key] == value, (key, got[key])


@pytest.fixture(autouse=True)
def no_template_or_mqtt_warnings(caplog: pytest.LogCaptureFixture) -> Any:
    """HA warns about undefined template variables and refused payloads; none are expected."""
    caplog.set_level(logging.WARNING)
    yield
    bad = [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.WARNING
           and r.name.startswith(("homeassistant.helpers.template", "homeassistant.components.mqtt",
                                  "homeassistant.components.sensor", "homeassistant.helpers.entity"))]
    assert not bad, bad


# ---------------------------------------------------------------- what a user sees

async def test_every_entity_is_registered_on_one_device(hass: HomeAssistant, mqtt_mock_entry: Any,
                                                        agent: Harness) -> None:
    await start_ha(hass, mqtt_mock_entry, agent)
    ids = entity_ids(hass, agent)
    assert set(ids) == set(EXPECTED)
    reg = er.async_get(hass)
    entries = {key: reg.async_get(entity_id) for key, entity_id in ids.items()}
    assert len({e.device_id for e in entries.values()}) == 1
    device = dr.async_get(hass).async_get(next(iter(entries.values())).device_id)
    health = latest(agent.messages, topics_of(agent)["health"]).json()
    assert (device.name, device.manufacturer, device.model) == (f"DeskPulse {agent.device}", "DeskPulse",
                                                                 "Posture monitor")
    assert device.sw_version == health["version"]
    for key, (domain, device_class, unit, state_class, category) in EXPECTED.items():
        entry = entries[key]
        assert entry.domain == domain, key
        assert (entry.entity_category.value if entry.entity_category else None) == category, key
        attrs = hass.states.get(ids[key]).attributes
        assert attrs.get("device_class") == device_class, key
        assert attrs.get("unit_of_measurement") == unit, key
        assert attrs.get("state_class") == state_class, key
    # 2024.3 reads no `options` for MQTT sensors (2024.9 does); what it cannot read it drops
    # without complaint, like `default_entity_id` (2025.10).
    assert hass.states.get(ids["alert"]).attributes["event_types"] == ["bad_posture", "recovered",
                                                                      "break_reminder"]


async def test_entity_ids_before_2025_10_come_from_the_names(hass: HomeAssistant, mqtt_mock_entry: Any,
                                                            agent: Harness) -> None:
    """2024.3 ignores `default_entity_id` (2025.10+): ids are the device's and entity's names,
    as docs/home-assistant.md lists them for older versions."""
    await start_ha(hass, mqtt_mock_entry, agent)
    dev = f"deskpulse_{agent.device}"
    names = {"posture": "posture", "bad_posture": "bad_posture", "present": "user_present",
             "bad_streak": "bad_posture_streak", "good_today": "good_posture_today",
             "alerts_today": "alerts_today", "alert": "alert", "monitoring": "monitoring",
             "calibrate": "calibrate", "fps": "frame_rate", "inference_ms": "inference_time",
             "cpu_temp": "cpu_temperature", "camera": "camera"}
    assert entity_ids(hass, agent) == {k: f"{EXPECTED[k][0]}.{dev}_{v}" for k, v in names.items()}


async def test_states_follow_the_agent(hass: HomeAssistant, mqtt_mock_entry: Any, agent: Harness) -> None:
    await start_ha(hass, mqtt_mock_entry, agent)
    t = topics_of(agent)
    state, stats, health = (latest(agent.messages, t[k]).json() for k in ("state", "stats", "health"))
    assert state["posture"] == "bad" and stats["alerts"] >= 1  # the photo of a man bent over
    assert_shows(hass, agent, expected_states(state, stats, health))
    assert state_of(hass, agent, "calibrate") == STATE_UNKNOWN  # a button has no state until pressed
    assert state_of(hass, agent, "camera") == "idle"
    attrs = hass.states.get(entity_ids(hass, agent)["posture"]).attributes
    assert attrs["reasons"] == state["metrics"]["reasons"] and attrs["since"] == state["since"]
    good_attrs = hass.states.get(entity_ids(hass, agent)["good_today"]).attributes
    assert good_attrs["bad_s"] == stats["bad_s"] and "timeline" not in good_attrs
    # Every state update the agent sent on the way there was read without a warning.
    for m in agent.messages:
        if m.topic in (t["state"], t["stats"], t["health"]):
            fire(hass, m)
    await hass.async_block_till_done()
    assert_shows(hass, agent, expected_states(state, stats, health))


async def test_missing_values_show_unknown_never_none(hass: HomeAssistant, mqtt_mock_entry: Any,
                                                      agent: Harness) -> None:
    await start_ha(hass, mqtt_mock_entry, agent)
    t = topics_of(agent)
    # The agent's first stats of the day: no good % yet (null).
    first_stats = next(m for m in agent.messages if m.topic == t["stats"])
    assert first_stats.json()["good_pct"] is None
    fire(hass, first_stats)
    await hass.async_block_till_done()
    assert state_of(hass, agent, "good_today") == STATE_UNKNOWN

    # A value that goes away (null), or a field an older agent does not send: unknown, not the
    # previous value and never the text "None".
    cases = [("health", "cpu_temp_c", None, ["cpu_temp"]), ("health", "fps", "drop", ["fps"]),
             ("health", "inference_ms", "drop", ["inference_ms"]),
             ("state", "bad_for_s", "drop", ["bad_streak"]), ("stats", "good_pct", "drop", ["good_today"]),
             ("stats", "alerts", "drop", ["alerts_today"]),
             ("state", "posture", "drop", ["posture", "bad_posture", "present", "monitoring"]),
             ("state", "posture", "dozing", ["posture"])]  # a posture from a later contract
    options = configs(agent.messages)["posture"][1]["options"]
    for topic_key, field, change, keys in cases:
        real = latest(agent.messages, t[topic_key])
        fire(hass, real)
        await hass.async_block_till_done()
        body = real.json()
        if change == "drop":
            body.pop(field)
        else:
            body[field] = change
        fire(hass, with_body(real, body))
        await hass.async_block_till_done()
        for key in keys:
            assert state_of(hass, agent, key) == STATE_UNKNOWN, (field, change, key)
        # Home Assistant 2024.9+ refuses an enum state outside `options`; 2024.3 cannot check it.
        assert state_of(hass, agent, "posture") in options
    assert not [s.entity_id for s in hass.states.async_all() if s.state == "None"]


async def test_the_camera_shows_the_agents_jpeg(hass: HomeAssistant, mqtt_mock_entry: Any,
                                                agent: Harness) -> None:
    await start_ha(hass, mqtt_mock_entry, agent)
    snapshot = latest(agent.messages, topics_of(agent)["snapshot"])
    assert snapshot.payload[:2] == b"\xff\xd8" and snapshot.payload[-2:] == b"\xff\xd9"
    fire(hass, snapshot)
    await hass.async_block_till_done()
    image = await async_get_image(hass, entity_ids(hass, agent)["camera"])
    assert image.content_type == "image/jpeg"
    assert image.content == snapshot.payload


async def test_the_event_entity_fires_on_an_alert(hass: HomeAssistant, mqtt_mock_entry: Any,
                                                  agent: Harness) -> None:
    await start_ha(hass, mqtt_mock_entry, agent)
    event_id = entity_ids(hass, agent)["alert"]
    alert = latest(agent.messages, topics_of(agent)["alert"])
    assert not alert.retain
    fire(hass, alert, retain=True)  # a replayed retained alert is not a new event
    await hass.async_block_till_done()
    assert hass.states.get(event_id).state == STATE_UNKNOWN
    fire(hass, alert)
    await hass.async_block_till_done()
    fired = hass.states.get(event_id)
    assert fired.state not in (STATE_UNKNOWN, STATE_UNAVAILABLE)  # the time it fired
    body = alert.json()
    assert fired.attributes["event_type"] == body["type"] == "bad_posture"
    assert fired.attributes["message"] == body["message"]
    assert fired.attributes["duration_s"] == body["duration_s"]


async def test_switch_and_button_commands_are_obeyed_by_the_agent(hass: HomeAssistant, mqtt_mock_entry: Any,
                                                                   agent: Harness) -> None:
    mqtt_mock = await start_ha(hass, mqtt_mock_entry, agent)
    ids = entity_ids(hass, agent)
    t = topics_of(agent)
    response = t["state"].rsplit("/", 1)[0] + "/response/"

    async def command(domain: str, service: str, key: str, *until: dict[str, Any]) -> list[Message]:
        """Press the control in HA, send what HA published to the agent, feed its answer back."""
        mqtt_mock.async_publish.reset_mock()
        await hass.services.async_call(domain, service, {"entity_id": ids[key]}, blocking=True)
        await hass.async_block_till_done()
        assert mqtt_mock.async_publish.call_count == 1
        topic, payload, qos, retain = mqtt_mock.async_publish.call_args.args[:4]
        assert retain is False  # a retained command would be replayed to the agent later
        ok, messages, log = await hass.async_add_executor_job(agent.publish, topic, payload, qos, retain,
                                                              list(until))
        assert ok, f"the agent did not obey {topic} {payload!r}:\n{log}"
        for m in messages:
            if m.topic in (t["state"], t["stats"], t["health"]):
                fire(hass, m)
        await hass.async_block_till_done()
        return messages

    def answers(messages: list[Message], verb: str) -> list[dict[str, Any]]:
        return [m.json() for m in messages if m.topic == response + verb]

    # Monitoring off: the agent pauses and releases the camera.
    got = await command("switch", "turn_off", "monitoring",
                        {"topic": response + "monitoring"},
                        {"topic": t["state"], "json": {"posture": "paused", "camera": "released"}})
    answer = answers(got, "monitoring")[-1]
    assert answer["status"] == "ok" and answer["data"]["paused"] is True
    assert state_of(hass, agent, "monitoring") == "off"
    assert state_of(hass, agent, "posture") == "paused"
    assert state_of(hass, agent, "present") == STATE_UNKNOWN
    assert state_of(hass, agent, "bad_posture") == "off"
    paused = [m.json() for m in got if m.topic == t["state"] and m.json()["posture"] == "paused"][-1]
    attrs = hass.states.get(ids["posture"]).attributes
    assert (attrs["camera"], attrs["until"]) == ("released", paused["until"])

    # Monitoring on: it resumes and watches again.
    got = await command("switch", "turn_on", "monitoring",
                        {"topic": response + "monitoring", "json": {"status": "ok", "data": {"paused": False}}},
                        {"topic": t["state"], "not": {"posture": "paused"}})
    assert state_of(hass, agent, "monitoring") == "on"
    assert state_of(hass, agent, "posture") != "paused"

    # Calibrate: the agent records the person in front of it as the baseline.
    assert hass.states.get(ids["posture"]).attributes["calibrated"] is False
    got = await command("button", "press", "calibrate",
                        {"topic": response + "calibrate", "absent": ["final"]},
                        {"topic": t["state"], "json": {"calibrated": True}})
    final = [a for a in answers(got, "calibrate") if "final" not in a]
    assert final[-1]["status"] == "ok" and final[-1]["data"], final
    assert hass.states.get(ids["posture"]).attributes["calibrated"] is True


async def test_an_empty_retained_config_removes_the_entity(hass: HomeAssistant, mqtt_mock_entry: Any,
                                                           agent: Harness) -> None:
    await start_ha(hass, mqtt_mock_entry, agent)
    before = entity_ids(hass, agent)
    device_id = er.async_get(hass).async_get(before["posture"]).device_id
    ok, removal, log = await hass.async_add_executor_job(lambda: agent.request(op="ha-remove"))
    assert ok, log
    empties = [m for m in removal if m.topic.startswith(DISCOVERY_PREFIX + "/") and m.payload == b""]
    assert {m.topic for m in empties} >= {topic for topic, _ in configs(agent.messages).values()}

    first = next(m for m in empties if m.topic == configs(agent.messages)["posture"][0])
    fire(hass, first, retain=True)
    await hass.async_block_till_done()
    assert hass.states.get(before["posture"]) is None
    assert "posture" not in entity_ids(hass, agent)
    assert set(entity_ids(hass, agent)) == set(before) - {"posture"}

    for m in empties:
        fire(hass, m, retain=True)
    await hass.async_block_till_done()
    assert entity_ids(hass, agent) == {}
    assert not [s for s in hass.states.async_all() if s.entity_id in before.values()]
    assert dr.async_get(hass).async_get(device_id) is None


async def test_offline_makes_every_entity_unavailable(hass: HomeAssistant, mqtt_mock_entry: Any,
                                                      agent: Harness) -> None:
    await start_ha(hass, mqtt_mock_entry, agent)
    ids = entity_ids(hass, agent)
    assert not [k for k, e in ids.items() if hass.states.get(e).state == STATE_UNAVAILABLE]
    ok, stopped, log = await hass.async_add_executor_job(lambda: agent.request(op="stop"))
    assert ok, log
    offline = latest(stopped, topics_of(agent)["availability"])
    assert offline.payload == b"offline"
    fire(hass, offline)
    await hass.async_block_till_done()
    assert {k: hass.states.get(e).state for k, e in ids.items()} == {k: STATE_UNAVAILABLE for k in ids}
    # Back online (the agent's retained "online" on restart): the last states show again.
    fire(hass, next(m for m in agent.messages if m.topic == offline.topic and m.payload == b"online"))
    await hass.async_block_till_done()
    assert state_of(hass, agent, "posture") == latest(agent.messages, topics_of(agent)["state"]).json()["posture"]
    assert not [k for k, e in ids.items() if hass.states.get(e).state == STATE_UNAVAILABLE]
