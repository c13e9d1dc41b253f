"""Home Assistant MQTT discovery: the retained config messages that make a desk appear in
Home Assistant, the messages that remove it again, and the small record of what was last
published (so that renaming the device or changing the prefix leaves no ghost entities).

Per-component discovery, `<prefix>/<component>/deskpulse_<device>/<key>/config`, with the
long key names (no abbreviations). Every entity reads the contract's retained topics through
`value_template`s; nothing here adds a topic just for Home Assistant.

This module builds payloads and reads/writes the record file. It never talks to the broker:
the agent publishes what it returns (retained, QoS 1) and routes the command topics named
in COMMANDS through its normal request handlers.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from .config import Config
from .files import write_json_atomic
from .storage import device_dir
from .topics import POSTURES, Topics

__all__ = [
    "ALERT_TYPES", "COMMANDS", "Command", "ENTITY_KEYS", "HA_ONLINE", "RECORD_NAME",
    "REDISCOVERY_DELAY_S", "configuration_url", "default_entity_id", "discovery_filter",
    "discovery_messages", "discovery_topics", "parse_discovery_topic", "read_published",
    "record_path", "removal_messages", "stale_messages", "status_topic", "unique_id",
    "write_published",
]

log = logging.getLogger(__name__)

# Home Assistant's birth message on <prefix>/status; on it, discovery is sent again after a
# random delay in this range (HA's advice: spread the load when many devices answer at once).
HA_ONLINE = "online"
REDISCOVERY_DELAY_S = (1.0, 5.0)

# In the device's directory (storage.device_dir): the discovery topics last published, one JSON list.
RECORD_NAME = "ha-discovery.json"

NODE_PREFIX = "deskpulse_"
# Alert event types of contract v1 (alert.type).
ALERT_TYPES = ("bad_posture", "recovered", "break_reminder")
# Postures for which someone is at the desk; "paused" means the camera is released, so
# presence is not known then.
PRESENT = ("good", "bad", "unknown")


@dataclass(frozen=True)
class Command:
    """A Home Assistant control and the request verb its command topic carries."""

    key: str  # the entity key
    verb: str  # published on Topics.request(verb), i.e. deskpulse/<dev>/request/<verb>
    payloads: tuple[str, ...]  # what Home Assistant sends there


# The router already subscribes to request/#, so these arrive as ordinary requests. They
# carry no transaction and are never retained (Home Assistant's default retain is false).
COMMANDS: Mapping[str, Command] = MappingProxyType({
    "monitoring": Command("monitoring", "monitoring", ("ON", "OFF")),  # ON = resume, OFF = pause
    "calibrate": Command("calibrate", "calibrate", ("{}",)),
})


@dataclass(frozen=True)
class _Entity:
    key: str
    component: str
    body: dict[str, Any]


def _num(field: str) -> str:
    """A numeric field, or None when it is null or missing (an older agent).

    Home Assistant turns a rendered "None" into unknown, while an empty string is ignored
    by numeric sensors and would leave a stale value showing.
    """
    v = f"value_json.{field}"
    return f"{{{{ {v} if {v} is number and {v} is not boolean else none }}}}"


def _attrs(fields: Iterable[str]) -> str:
    """A json_attributes_template picking some fields (missing ones become null)."""
    items = ", ".join(f"'{f}': value_json.{f} | default(none)" for f in fields)
    return f"{{{{ {{{items}}} | tojson }}}}"


# A missing or unexpected posture renders 'unknown', not none: Home Assistant 2024.3 shows a
# text sensor's "None" as that very text (tests/ha/test_ha_core.py), while 'unknown' is one of
# the options and Home Assistant's own unknown state on every version.
_POSTURE_TEMPLATE = (
    "{{ value_json.posture if value_json.posture in "
    + "[" + ", ".join(f"'{p}'" for p in POSTURES) + "]"
    + " else 'unknown' }}"
)
_BAD_TEMPLATE = (
    "{{ none if value_json.posture is not string "
    "else ('ON' if value_json.posture == 'bad' else 'OFF') }}"
)
_PRESENT_TEMPLATE = (
    "{{ 'ON' if value_json.posture in ["
    + ", ".join(f"'{p}'" for p in PRESENT)
    + "] else ('OFF' if value_json.posture == 'absent' else none) }}"
)
_MONITORING_TEMPLATE = (
    "{{ none if value_json.posture is not string "
    "else ('OFF' if value_json.posture == 'paused' else 'ON') }}"
)
_POSTURE_ATTRS = (
    "{{ {'since': value_json.since | default(none), 'until': value_json.until | default(none), "
    "'camera': value_json.camera | default(none), 'calibrated': value_json.calibrated | default(none), "
    "'view': value_json.view | default(none), "
    "'reasons': (value_json.metrics.reasons if value_json.metrics is mapping else none) | default(none)}"
    " | tojson }}"
)
# ts/seq/timeline are left out: they change on every refresh and would make the recorder
# store a new row each time for nothing.
_STATS_ATTRS = _attrs((
    "date", "good_s", "bad_s", "absent_s", "paused_s", "unknown_s",
    "longest_good_streak_s", "current_good_streak_s",
))
_ALERT_TEMPLATE = (
    "{% if value_json.type is string %}"
    "{{ {'event_type': value_json.type, 'message': value_json.message | default(none), "
    "'duration_s': value_json.duration_s | default(none), "
    "'started': value_json.started | default(none)} | tojson }}"
    "{% endif %}"
)


def _entities(t: Topics, camera: bool) -> list[_Entity]:
    state = {"state_topic": t.state, "qos": 1}
    stats = {"state_topic": t.stats, "qos": 1}
    health = {"state_topic": t.health, "qos": 1}
    diagnostic = {"entity_category": "diagnostic"}
    out = [
        _Entity("posture", "sensor", {
            **state, "name": "Posture", "device_class": "enum", "options": list(POSTURES),
            "value_template": _POSTURE_TEMPLATE, "icon": "mdi:chair-rolling",
            "json_attributes_topic": t.state, "json_attributes_template": _POSTURE_ATTRS,
        }),
        _Entity("bad_posture", "binary_sensor", {
            **state, "name": "Bad posture", "device_class": "problem",
            "payload_on": "ON", "payload_off": "OFF", "value_template": _BAD_TEMPLATE,
        }),
        _Entity("present", "binary_sensor", {
            **state, "name": "User present", "device_class": "occupancy",
            "payload_on": "ON", "payload_off": "OFF", "value_template": _PRESENT_TEMPLATE,
        }),
        _Entity("bad_streak", "sensor", {
            **state, "name": "Bad posture streak", "device_class": "duration",
            "unit_of_measurement": "s", "state_class": "measurement",
            "suggested_display_precision": 0, "value_template": _num("bad_for_s"),
            "icon": "mdi:timer-sand",
        }),
        _Entity("good_today", "sensor", {
            **stats, "name": "Good posture today", "unit_of_measurement": "%",
            "state_class": "measurement", "suggested_display_precision": 0,
            "value_template": _num("good_pct"), "icon": "mdi:thumb-up",
            "json_attributes_topic": t.stats, "json_attributes_template": _STATS_ATTRS,
        }),
        # Resets at local midnight; total_increasing reads a drop as a new cycle.
        _Entity("alerts_today", "sensor", {
            **stats, "name": "Alerts today", "state_class": "total_increasing",
            "value_template": _num("alerts"), "icon": "mdi:bell-alert",
        }),
        # Not retained on the broker: an event entity ignores retained replays anyway.
        _Entity("alert", "event", {
            "state_topic": t.alert, "qos": 1, "name": "Alert", "event_types": list(ALERT_TYPES),
            "value_template": _ALERT_TEMPLATE, "icon": "mdi:bell-ring",
        }),
        _Entity("monitoring", "switch", {
            **state, "name": "Monitoring",
            "command_topic": t.request(COMMANDS["monitoring"].verb),
            "payload_on": "ON", "payload_off": "OFF", "state_on": "ON", "state_off": "OFF",
            "value_template": _MONITORING_TEMPLATE, "retain": False, "icon": "mdi:eye",
        }),
        _Entity("calibrate", "button", {
            "name": "Calibrate", "command_topic": t.request(COMMANDS["calibrate"].verb),
            "payload_press": COMMANDS["calibrate"].payloads[0], "qos": 1, "retain": False,
            "entity_category": "config", "icon": "mdi:target",
        }),
        _Entity("fps", "sensor", {
            **health, **diagnostic, "name": "Frame rate", "unit_of_measurement": "fps",
            "state_class": "measurement", "suggested_display_precision": 1,
            "value_template": _num("fps"), "icon": "mdi:speedometer",
        }),
        _Entity("inference_ms", "sensor", {
            **health, **diagnostic, "name": "Inference time", "device_class": "duration",
            "unit_of_measurement": "ms", "state_class": "measurement",
            "suggested_display_precision": 0, "value_template": _num("inference_ms"),
        }),
        _Entity("cpu_temp", "sensor", {
            **health, **diagnostic, "name": "CPU temperature", "device_class": "temperature",
            "unit_of_measurement": "°C", "state_class": "measurement",
            "suggested_display_precision": 1, "value_template": _num("cpu_temp_c"),
        }),
    ]
    if camera:
        # Raw JPEG bytes on the snapshot topic: no image_encoding, no value_template.
        out.append(_Entity("camera", "camera", {"name": "Camera", "topic": t.snapshot}))
    return out


# Every entity key that may ever be published, camera included.
ENTITY_KEYS: tuple[str, ...] = tuple(e.key for e in _entities(Topics("x", "x"), camera=True))
_COMPONENT_OF: Mapping[str, str] = MappingProxyType(
    {e.key: e.component for e in _entities(Topics("x", "x"), camera=True)})


def _slug(device_id: str) -> str:
    """device_id as an entity-id part: Home Assistant allows [a-z0-9_], no '__', no edge '_'."""
    return re.sub(r"_+", "_", device_id.replace("-", "_")).strip("_")


def _node(device_id: str) -> str:
    return f"{NODE_PREFIX}{device_id}"


def _topic(prefix: str, component: str, device_id: str, key: str) -> str:
    return f"{prefix}/{component}/{_node(device_id)}/{key}/config"


def unique_id(device_id: str, key: str) -> str:
    # ':' cannot occur in a device id, so desks "a" and "a_bad" never share an id.
    return f"deskpulse:{device_id}:{key}"


def default_entity_id(component: str, device_id: str, key: str) -> str:
    middle = "_".join(p for p in ("deskpulse", _slug(device_id), key) if p)
    return f"{component}.{middle}"


def discovery_topics(prefix: str, device_id: str) -> list[str]:
    """Every discovery topic DeskPulse may publish for this device (camera included)."""
    return [_topic(prefix, _COMPONENT_OF[k], device_id, k) for k in ENTITY_KEYS]


def discovery_filter(prefix: str, device_id: str) -> str:
    """A subscription matching this device's discovery topics (to sweep ones no longer used)."""
    return f"{prefix}/+/{_node(device_id)}/+/config"


def status_topic(config: Config) -> str:
    """Home Assistant's birth/last-will topic: "online" there means send discovery again."""
    return f"{config.homeassistant.prefix}/status"


def parse_discovery_topic(topic: str) -> tuple[str, str, str, str] | None:
    """(prefix, component, device_id, key) of a DeskPulse discovery topic, else None."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[4] != "config" or not parts[2].startswith(NODE_PREFIX):
        return None
    prefix, component, node, key, _ = parts
    device_id = node[len(NODE_PREFIX):]
    # Any key, not only today's: an entity dropped by an upgrade must still be clearable.
    if not (
        re.fullmatch(r"[A-Za-z0-9_-]+", prefix)
        and re.fullmatch(r"[a-z_]+", component)
        and re.fullmatch(r"[a-z0-9_-]+", device_id)
        and re.fullmatch(r"[A-Za-z0-9_-]+", key)
    ):
        return None
    return prefix, component, device_id, key


def configuration_url(config: Config, hostname: str) -> str | None:
    """The dashboard link for the device page: the configured one, else http://host:port/."""
    if config.homeassistant.configuration_url:
        return config.homeassistant.configuration_url
    if not hostname or config.web.port == 0:
        return None
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"http://{host}:{config.web.port}/"


def _valid_url(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _device(config: Config, version: str, dashboard_url: str | None) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [f"deskpulse_{config.device_id}"],
        "name": f"DeskPulse {config.device_id}",
        "manufacturer": "DeskPulse",
        "model": "Posture monitor",
        "sw_version": version,
    }
    if _valid_url(dashboard_url):
        device["configuration_url"] = dashboard_url
    elif dashboard_url:
        # Home Assistant would reject every entity over a bad configuration_url.
        log.warning("not a usable dashboard URL for Home Assistant, left out: %r", dashboard_url)
    return device


def discovery_messages(
    config: Config, version: str, dashboard_url: str | None
) -> list[tuple[str, str]]:
    """(topic, JSON payload) for every entity; publish each retained, QoS 1.

    Does not look at homeassistant.enabled: the agent decides whether to publish.
    """
    topics = Topics(config.mqtt.prefix, config.device_id)
    device = _device(config, version, dashboard_url)
    origin = {"name": "DeskPulse", "sw_version": version}
    availability = [{
        "topic": topics.availability, "payload_available": "online",
        "payload_not_available": "offline",
    }]
    out = []
    for e in _entities(topics, config.homeassistant.camera):
        payload = {
            **e.body,
            "unique_id": unique_id(config.device_id, e.key),
            "default_entity_id": default_entity_id(e.component, config.device_id, e.key),
            "availability": availability,
            "device": device,
            "origin": origin,
        }
        topic = _topic(config.homeassistant.prefix, e.component, config.device_id, e.key)
        out.append((topic, json.dumps(payload, ensure_ascii=False, separators=(",", ":"))))
    return out


def removal_messages(
    config: Config, device_id: str | None = None, previous: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Empty retained payloads for every discovery topic of `device_id` (default: the
    configured one) under the current prefix, plus any `previous` topics (from the record).
    """
    dev = config.device_id if device_id is None else device_id
    wanted = discovery_topics(config.homeassistant.prefix, dev)
    wanted += [t for t in previous if parse_discovery_topic(t) is not None]
    return [(t, "") for t in dict.fromkeys(wanted)]


def stale_messages(previous: Iterable[str], current: Iterable[str]) -> list[tuple[str, str]]:
    """Empty payloads for topics published before but not now: an old device id or prefix,
    a camera turned off, an entity dropped by an upgrade. Only DeskPulse discovery topics
    are ever cleared, whatever the record says.
    """
    now = set(current)
    return [
        (t, "") for t in dict.fromkeys(previous)
        if t not in now and parse_discovery_topic(t) is not None
    ]


def record_path(config: Config) -> Path:
    """This device's record of its published discovery topics (never another device's)."""
    return device_dir(config) / RECORD_NAME


def read_published(path: Path) -> list[str]:
    """The discovery topics last published; [] when there is no usable record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("ignoring unreadable Home Assistant discovery record %s (%s)", path, exc)
        return []
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        log.warning("ignoring malformed Home Assistant discovery record %s", path)
        return []
    return [t for t in data if parse_discovery_topic(t) is not None]


def write_published(path: Path, topics: Iterable[str]) -> None:
    """Atomically replace the record. Raises OSError (the caller logs it and carries on)."""
    write_json_atomic(path, sorted(set(topics)))
