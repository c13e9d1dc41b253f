"""`deskpulse fleet`: one line per device found under the topic prefix on a broker.

Reads only the retained topics every agent keeps on the broker (availability, state,
stats), so it works against a desk's own broker or a central broker that desks bridge
into, with no database and no agent involvement. It never publishes. Devices are
discovered from topic names (`<prefix>/<device>/...`); nothing is configured per device.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

import paho.mqtt.client as mqtt

from .config import BrokerAddress, Config
from .errors import BrokerError
from .mqttclient import connect, target_address

log = logging.getLogger(__name__)

FIELDS = ("availability", "state", "stats")
QUIET_S = 0.5  # retained messages arrive in one burst after SUBACK; this much silence ends it


@dataclass
class Device:
    device_id: str
    availability: str | None = None
    state: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None

    @property
    def posture(self) -> str | None:
        return self.state.get("posture") if self.state else None

    @property
    def camera(self) -> str | None:
        return self.state.get("camera") if self.state else None

    @property
    def good_pct(self) -> float | None:
        value = self.stats.get("good_pct") if self.stats else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def summary(self) -> dict[str, Any]:
        return {
            "device": self.device_id,
            "availability": self.availability,
            "posture": self.posture,
            "camera": self.camera,
            "since": self.state.get("since") if self.state else None,
            "good_pct": self.good_pct,
            "date": self.stats.get("date") if self.stats else None,
            "ts": self.state.get("ts") if self.state else None,
        }


def _absorb(devices: dict[str, Device], prefix: str, topic: str, payload: bytes) -> None:
    """Fold one message into `devices`; anything that isn't a well-formed contract topic is skipped."""
    head = prefix + "/"
    if not topic.startswith(head):
        return
    parts = topic[len(head):].split("/")
    if len(parts) != 2 or parts[1] not in FIELDS or not parts[0]:
        return
    device_id, field = parts
    if not payload:
        return  # an empty retained payload is a deletion, not a value
    # A device with an unreadable payload is still listed (with "?"): it exists and is broken.
    dev = devices.setdefault(device_id, Device(device_id))
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        log.debug("skipping non-UTF-8 payload on %s", topic)
        return
    if field == "availability":
        dev.availability = text.strip()
        return
    try:
        value = json.loads(text)
    except ValueError:
        log.debug("skipping non-JSON payload on %s", topic)
        return
    if isinstance(value, dict):
        setattr(dev, field, value)


def collect(address: BrokerAddress, prefix: str, timeout: float = 3.0,
            quiet_s: float = QUIET_S) -> dict[str, Device]:
    """Every device with retained topics under `prefix`, read within `timeout` seconds."""
    devices: dict[str, Device] = {}
    lock = threading.Lock()
    last_message = [time.monotonic()]

    def on_message(m: mqtt.MQTTMessage) -> None:
        with lock:
            _absorb(devices, prefix, m.topic, bytes(m.payload))
            last_message[0] = time.monotonic()

    deadline = time.monotonic() + timeout
    client = connect(address, on_message, timeout=max(0.5, timeout))
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    try:
        client.subscribe([(f"{prefix}/+/{field}", 1) for field in FIELDS])
        if not subscribed.wait(max(0.1, deadline - time.monotonic())):
            raise BrokerError("the broker did not confirm our subscription")
        with lock:
            last_message[0] = time.monotonic()
        while (now := time.monotonic()) < deadline:
            with lock:
                idle = now - last_message[0]
            if idle >= quiet_s:
                break
            time.sleep(min(0.05, quiet_s - idle))
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return dict(sorted(devices.items()))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def format_table(devices: dict[str, Device]) -> str:
    rows = [("DEVICE", "AVAILABILITY", "POSTURE", "CAMERA", "GOOD TODAY", "DATE", "UPDATED")]
    for dev in devices.values():
        s = dev.summary()
        rows.append((dev.device_id, s["availability"] or "?", s["posture"] or "?", s["camera"] or "?",
                     _pct(s["good_pct"]), s["date"] or "-", s["ts"] or "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def fleet_command(config: Config, timeout: float = 3.0, out: TextIO = sys.stdout, *,
                  as_json: bool = False) -> int:
    """Print every device under the prefix. 0 if any was found, 1 if none or the broker failed."""
    prefix = config.mqtt.prefix
    address = target_address(config)
    try:
        devices = collect(address, prefix, timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps([d.summary() for d in devices.values()], indent=2), file=out)
    elif devices:
        print(format_table(devices), file=out)
    if not devices:
        print(f"no devices under {prefix}/ on mqtt://{address.host}:{address.port}", file=sys.stderr)
        return 1
    online = sum(d.availability == "online" for d in devices.values())
    if not as_json:
        print(f"{len(devices)} device(s), {online} online", file=out)
    return 0
