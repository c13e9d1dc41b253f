"""The MQTT boundary: paho-mqtt 2.x, publishing the topic contract and receiving requests.

Owns the paho client and the network thread "deskpulse-mqtt" that runs it (paho's public
`loop_forever`; a fresh client for every new session, so nothing paho queued for a dead
session is ever resent behind newer messages). It
- sets the last will `offline` on availability and publishes `offline` before a clean stop;
- on every (re)connect publishes `online`, then what happened during the outage (state
  changes and alerts, in order, from a bounded queue), then every retained topic again;
- drops frames while disconnected or while the previous frame is still unsent;
- hands incoming requests to a bounded queue (never works inside a paho callback) and
  ignores retained requests.
Everything else in DeskPulse publishes through this class and never imports paho.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .config import BrokerAddress
from .topics import Topics

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class Incoming:
    """A message on a topic we subscribe to (requests, Home Assistant status)."""

    topic: str
    payload: bytes
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


def probe_protocol(address: BrokerAddress, timeout: float = 3.0) -> str | None:
    """"5" or "3.1.1", whichever the broker accepts; None if it cannot be reached now.

    Some MQTT 3.1.1-only brokers (amqtt) don't answer an MQTT 5 CONNECT that carries a will
    with "unsupported protocol version" but just close the socket, so ask without a will.
    """
    done = threading.Event()
    answer: list[str] = []
    probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if address.username:
        probe.username_pw_set(address.username,
                              address.password.get_secret_value() if address.password else None)

    def on_connect(c: mqtt.Client, u: Any, f: Any, rc: ReasonCode, p: Any = None) -> None:
        answer.append("3.1.1" if rc.getName() == "Unsupported protocol version" else "5")
        done.set()

    probe.on_connect = on_connect
    probe.on_disconnect = lambda *a: done.set()
    try:
        probe.connect(address.host, address.port, keepalive=10)
    except OSError:
        return None
    probe.loop_start()
    try:
        done.wait(timeout)
    finally:
        probe.disconnect()
        probe.loop_stop()
    return answer[0] if answer else "3.1.1"


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


F = TypeVar("F", bound=Callable[..., Any])


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """The broker acknowledged this QoS 1 message. One paho could not even queue (the socket
    was already gone) never will be: is_published() raises for it, this says False."""
    return info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published()


def _loop_writes(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """The network loop selects on the socket for writing whenever paho has output queued."""


class Publisher:
    def __init__(self, topics: Topics, address: BrokerAddress, client_id: str, *,
                 keepalive_s: int = 30, protocol: str = "auto", queue_size: int = 500,
                 reconnect_max_s: float = 4.0, extra_subscriptions: tuple[str, ...] = ()) -> None:
        self.topics = topics
        self.address = address
        self.client_id = client_id
        self.keepalive_s = keepalive_s
        self.protocol = protocol
        self.reconnect_max_s = reconnect_max_s
        self.subscriptions = (topics.request_filter, *extra_subscriptions)
        self.incoming: queue.Queue[Incoming] = queue.Queue(maxsize=256)
        self.connected = threading.Event()
        self.ever_connected = threading.Event()
        self.connects = 0
        self.frames_dropped = 0
        self.incoming_dropped = 0
        self.callback_errors = 0
        self._lock = threading.Lock()
        self._pending: deque[tuple[str, str, int, bool]] = deque(maxlen=queue_size)
        self._pending_overflowed = 0
        # Ordered QoS 1 messages (state, alerts) handed to paho on this session, oldest first.
        self._unacked: deque[tuple[mqtt.MQTTMessageInfo, tuple[str, str, int, bool]]] = deque()
        self._retained: dict[str, tuple[str | bytes, int]] = {}
        self._last_frame: mqtt.MQTTMessageInfo | None = None
        self._last_error: str | None = None
        self._v5 = protocol in ("auto", "5")
        self._client = self._make_client()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            # A lost session ends loop_forever; _run then starts a fresh client (see _run).
            reconnect_on_failure=False,
            **({} if self._v5 else {"clean_session": True}),
        )
        if self.address.username:
            password = self.address.password.get_secret_value() if self.address.password else None
            client.username_pw_set(self.address.username, password)
        client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(self.reconnect_max_s)))
        client.max_queued_messages_set(0)
        # A bug in a callback is logged and counted by _guarded; this keeps paho's loop alive
        # even if something slips through.
        client.suppress_exceptions = True
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        # paho writes to the socket in the *caller's* thread when it doesn't run the loop thread
        # itself (loop_forever in ours). Two threads then pop and send packets at once (state
        # out of order, a frame's bytes split by another packet), and a write that finds the
        # socket dead runs on_disconnect in the caller, under our lock: a deadlock. With a
        # write hook registered paho only queues the packet and wakes the loop; every byte is
        # written by "deskpulse-mqtt".
        client.on_socket_register_write = _loop_writes
        return client

    def start(self) -> "Publisher":
        if self.protocol == "auto" and self._v5 and probe_protocol(self.address) == "3.1.1":
            log.info("broker does not speak MQTT 5; using MQTT 3.1.1")
            self._v5 = False
            self._client = self._make_client()
        log.info("connecting to mqtt://%s:%d as %s", self.address.host, self.address.port, self.client_id)
        self._thread = threading.Thread(target=self._run, name="deskpulse-mqtt", daemon=True)
        self._thread.start()
        return self

    def alive(self) -> bool:
        """The network thread runs (it reconnects by itself for as long as it lives)."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        """One paho client per session: connect (paho retries), serve it until it drops, repeat.

        After a session that worked, the next client connects at once; after one that was
        refused (bad password, protocol fallback), it waits 1, 2, 4... s up to reconnect_max_s.
        """
        delay = 0.0
        while not self._stopping.is_set():
            with self._lock:
                client = self._client
            connects = self.connects
            client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive_s)
            # loop() creates the socket pair paho uses to wake its select() when another
            # thread queues a packet (loop_forever alone never does, so with the write hook a
            # publish would wait up to a second for the loop's timeout). Not connected yet, it
            # returns at once.
            client.loop(timeout=0)
            try:
                client.loop_forever(retry_first_connection=True)
            except Exception:  # paho itself failed: count it, start a fresh client
                self.callback_errors += 1
                log.exception("MQTT network loop failed; starting a new client")
            if self._stopping.is_set():
                return
            with self._lock:
                self._client = self._make_client()
            delay = 0.0 if self.connects > connects else min(max(1.0, delay * 2), self.reconnect_max_s)
            if self._stopping.wait(delay):
                return

    def stop(self, timeout: float = 3.0) -> None:
        """Publish offline, disconnect cleanly and end the network thread."""
        self._stopping.set()
        with self._lock:
            client = self._client
        if self.connected.is_set():
            info = client.publish(self.topics.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("could not deliver 'offline' before stopping")
        elif self.ever_connected.is_set() and not self.alive():
            self._offline_once(timeout)
        client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout + 2)

    def _offline_once(self, timeout: float) -> None:
        """Our network thread is gone: say `offline` through a short-lived client."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311)
        if self.address.username:
            password = self.address.password.get_secret_value() if self.address.password else None
            client.username_pw_set(self.address.username, password)
        try:
            client.connect(self.address.host, self.address.port, keepalive=10)
            client.loop_start()
            client.publish(self.topics.availability, "offline", qos=1, retain=True).wait_for_publish(timeout)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("could not publish 'offline': %s", exc)
        finally:
            client.disconnect()
            client.loop_stop()

    # --- paho callbacks (network thread: never block here, never raise) ------------------
    @staticmethod
    def _guarded(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: "Publisher", *args: Any) -> Any:
            try:
                return fn(self, *args)
            except Exception:
                self.callback_errors += 1
                log.exception("error in MQTT callback %s", fn.__name__)
                return None
        return wrapper  # type: ignore[return-value]

    @_guarded
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None = None) -> None:
        if client is not self._client:
            return
        if rc.is_failure:
            if self.protocol == "auto" and self._v5 and rc.getName() == "Unsupported protocol version":
                log.info("broker does not speak MQTT 5; using MQTT 3.1.1")
                self._v5 = False  # the broker closes the connection; _run starts a 3.1.1 client
                return
            self._report(f"broker mqtt://{self.address.host}:{self.address.port} refused the connection: "
                         f"{rc.getName()} (check the username and password)")
            return
        with self._lock:
            self.connects += 1
            self._last_error = None
            # Subscribe before announcing ourselves: the broker handles our packets in order,
            # so anyone who has seen this connection's state can already reach us with a request.
            for sub in self.subscriptions:
                if self._v5:
                    # Keep the retain flag on forwarded messages, so a retained command
                    # published while we are subscribed is recognised and ignored too.
                    client.subscribe(sub, options=SubscribeOptions(qos=1, retainAsPublished=True))
                else:
                    client.subscribe(sub, qos=1)
            client.publish(self.topics.availability, "online", qos=1, retain=True)
            flushed = set()
            while self._pending:
                entry = self._pending.popleft()
                topic, payload, qos, retain = entry
                info = client.publish(topic, payload, qos=qos, retain=retain)
                if qos > 0:
                    self._unacked.append((info, entry))
                if retain:
                    flushed.add((topic, payload))
            if self._pending_overflowed:
                log.warning("dropped %d queued messages during the outage (queue full)", self._pending_overflowed)
                self._pending_overflowed = 0
            for topic, (payload, qos) in self._retained.items():
                if (topic, payload) not in flushed:
                    client.publish(topic, payload, qos=qos, retain=True)
            self.connected.set()
            self.ever_connected.set()
        log.info("connected to mqtt://%s:%d (%s)", self.address.host, self.address.port,
                 "MQTT 5" if self._v5 else "MQTT 3.1.1")

    @_guarded
    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._report(f"cannot reach broker mqtt://{self.address.host}:{self.address.port} (retrying)")

    @_guarded
    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None = None) -> None:
        if client is not self._client:
            return
        with self._lock:
            was = self.connected.is_set()
            self.connected.clear()
            # Ordered messages the broker never acknowledged go back to the head of the queue;
            # this client (and whatever paho still holds for it) is dropped, so they are sent
            # once, in order, on the next session.
            unacked = [entry for info, entry in self._unacked if not _acknowledged(info)]
            self._unacked.clear()
            if unacked:
                log.info("%d unacknowledged message(s) queued again for the reconnect", len(unacked))
                self._pending.extendleft(reversed(unacked))
        if was and not self._stopping.is_set():
            log.warning("lost the broker connection (%s); reconnecting", rc.getName() if rc else "?")
        # reconnect_on_failure=False: loop_forever returns now and _run starts a fresh client.

    def _report(self, message: str) -> None:
        if message != self._last_error:
            log.error("%s", message)
            self._last_error = message

    @_guarded
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        incoming = Incoming(
            topic=msg.topic,
            payload=bytes(msg.payload[:MAX_REQUEST_BYTES + 1]),
            retain=bool(msg.retain),
            response_topic=getattr(props, "ResponseTopic", None) if props else None,
            correlation_data=getattr(props, "CorrelationData", None) if props else None,
            user_properties=tuple(getattr(props, "UserProperty", ()) or ()) if props else (),
        )
        try:
            self.incoming.put_nowait(incoming)
        except queue.Full:
            self.incoming_dropped += 1
            if self.incoming_dropped % 100 == 1:
                log.warning("request queue full: dropped %d incoming messages", self.incoming_dropped)

    # --- publishing (any thread) ----------------------------------------------------------
    def publish_state(self, payload: dict[str, Any]) -> None:
        """Retained state: queued in order while disconnected."""
        self._publish_ordered(self.topics.state, dumps(payload), qos=1, retain=True)

    def publish_event(self, topic: str, payload: dict[str, Any] | str, retain: bool = False) -> None:
        """A QoS 1 message sent once (alerts, discovery removals): queued in order while
        disconnected, not repeated on later reconnects."""
        text = payload if isinstance(payload, str) else dumps(payload)
        self._publish_ordered(topic, text, qos=1, retain=retain, remember=False)

    def _publish_ordered(self, topic: str, text: str, qos: int, retain: bool, remember: bool = True) -> None:
        with self._lock:
            if retain and remember:
                self._retained[topic] = (text, qos)
            if self.connected.is_set():
                info = self._client.publish(topic, text, qos=qos, retain=retain)
                if qos > 0:
                    while self._unacked and _acknowledged(self._unacked[0][0]):
                        self._unacked.popleft()
                    self._unacked.append((info, (topic, text, qos, retain)))
                return
            if len(self._pending) == self._pending.maxlen:
                self._pending_overflowed += 1
            self._pending.append((topic, text, qos, retain))

    def publish_retained(self, topic: str, payload: dict[str, Any] | str, qos: int = 1) -> None:
        """Latest-value retained topics (stats, health, discovery): only the newest matters."""
        text = payload if isinstance(payload, str) else dumps(payload)
        with self._lock:
            if text == "":
                self._retained.pop(topic, None)
            else:
                self._retained[topic] = (text, qos)
            if self.connected.is_set():
                self._client.publish(topic, text, qos=qos, retain=True)

    def publish_frame(self, topic: str, jpeg: bytes) -> bool:
        """A QoS 0 picture; dropped while disconnected or while the last one is unsent."""
        if not self.connected.is_set():
            self.frames_dropped += 1
            return False
        last = self._last_frame
        if last is not None and last.rc == mqtt.MQTT_ERR_SUCCESS and not last.is_published():
            self.frames_dropped += 1
            return False
        with self._lock:
            self._last_frame = self._client.publish(topic, jpeg, qos=0, retain=False)
        return True

    def respond(self, incoming: Incoming, verb: str, payload: dict[str, Any], own_topic: bool = False) -> None:
        """Answer a request on .../response/<verb>, or on the MQTT 5 response topic the
        requester named (with its correlation data) when that is under this device's
        response/ as well. Anything else is never published to."""
        text = dumps(payload)
        topic = self.topics.response(verb)
        props = None
        if self._v5 and incoming.response_topic and not own_topic and self.topics.is_response(incoming.response_topic):
            topic = incoming.response_topic
            props = Properties(PacketTypes.PUBLISH)
            if incoming.correlation_data is not None:
                props.CorrelationData = incoming.correlation_data
        with self._lock:
            self._client.publish(topic, text, qos=1, retain=False, properties=props)

    def republish(self, topics: list[str]) -> None:
        """Send these remembered retained topics again, in this order (Home Assistant restarts)."""
        with self._lock:
            if not self.connected.is_set():
                return  # the reconnect will send everything anyway
            for topic in topics:
                if topic in self._retained:
                    payload, qos = self._retained[topic]
                    self._client.publish(topic, payload, qos=qos, retain=True)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)
