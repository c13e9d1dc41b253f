"""A short-lived MQTT client for CLI commands: one request and its answers, or a snapshot
of retained topics. Not used by the agent itself (that is publisher.py).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

import paho.mqtt.client as mqtt

from .config import BrokerAddress, Config
from .errors import BrokerError
from .publisher import dumps
from .topics import Topics


def target_address(config: Config) -> BrokerAddress:
    address = config.mqtt.address()
    if address is None:  # "auto": the local broker the agent found or embedded
        address = BrokerAddress(host="127.0.0.1", port=config.mqtt.embedded_port or 1883,
                                username=config.mqtt.username, password=config.mqtt.password)
    return address


def connect(address: BrokerAddress, on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
            timeout: float = 10.0) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if address.username:
        client.username_pw_set(address.username,
                               address.password.get_secret_value() if address.password else None)
    connected = threading.Event()
    failure: list[str] = []

    def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any = None) -> None:
        if rc.is_failure:
            failure.append(rc.getName())
        connected.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = lambda c, u, m: on_message(m)
    try:
        client.connect(address.host, address.port, keepalive=30)
    except OSError as exc:
        raise BrokerError(f"cannot reach broker mqtt://{address.host}:{address.port}: {exc.strerror or exc}") from None
    client.loop_start()
    if not connected.wait(timeout) or failure:
        client.loop_stop()
        reason = failure[0] if failure else "no answer"
        raise BrokerError(f"broker mqtt://{address.host}:{address.port} refused us: {reason}")
    return client


def request(config: Config, verb: str, body: dict[str, Any],
            on_answer: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
    """Send a request and feed answers to on_answer until it returns True. True if ok."""
    topics = Topics(config.mqtt.prefix, config.device_id)
    done = threading.Event()
    result: list[bool] = []
    transaction = body.get("transaction")

    def on_message(m: mqtt.MQTTMessage) -> None:
        try:
            answer = json.loads(m.payload)
        except ValueError:
            return
        if not isinstance(answer, dict) or answer.get("transaction") != transaction:
            return
        if on_answer(answer):
            result.append(answer.get("status") == "ok")
            done.set()

    client = connect(target_address(config), on_message)
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    try:
        client.subscribe(topics.response(verb), qos=1)
        if not subscribed.wait(10):
            raise BrokerError("the broker did not confirm our subscription")
        client.publish(topics.request(verb), dumps(body), qos=1)
        if not done.wait(timeout):
            raise BrokerError(f"no answer from device {config.device_id!r} within {timeout:.0f}s (is the agent running?)")
        return bool(result and result[0])
    finally:
        client.disconnect()
        client.loop_stop()
