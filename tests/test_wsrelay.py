"""deskpulse.wsrelay: browsers' MQTT-over-WebSocket relayed byte for byte to a broker's TCP port.

Real brokers (embedded amqtt; Debian mosquitto with accounts + ACL), real clients (paho over
WebSockets; mqtt.js under node, as the page uses it).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from deskpulse.broker import EmbeddedBroker
from deskpulse.errors import BrokerError
from deskpulse.topics import Topics
from deskpulse.wsrelay import WsRelay

from .support import ROOT, Mosquitto, Recorder

T = Topics("deskpulse", "desk1")
NODE_SUB = ROOT / "bench" / "node" / "frame_sub.mjs"
MQTTJS = ROOT / "web" / "node_modules" / "mqtt"


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


class WsClient:
    """paho over WebSockets through the relay, recording messages and connection results."""

    def __init__(self, port: int, topics: list[str] | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        self.messages: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.connack: "queue.Queue[Any]" = queue.Queue()
        self.disconnected = threading.Event()
        self.suback = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, transport="websockets",
                                  protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        self.client.ws_set_options(path="/mqtt")
        if username:
            self.client.username_pw_set(username, password)
        self._topics = topics or []
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda *a: self.suback.set()
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.connect_async("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.connack.put(rc)
        if not rc.is_failure and self._topics:
            client.subscribe([(t, 1) for t in self._topics])

    def connected(self, timeout: float = 10.0) -> Any:
        rc = self.connack.get(timeout=timeout)
        if not rc.is_failure and self._topics:
            assert self.suback.wait(timeout), "no SUBACK through the relay"
        return rc

    def wait_message(self, pred: Callable[[mqtt.MQTTMessage], bool], timeout: float = 10.0) -> mqtt.MQTTMessage:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("expected message did not arrive through the relay")
            try:
                m = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if pred(m):
                return m

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def relay(broker: EmbeddedBroker) -> Iterator[WsRelay]:
    r = WsRelay("127.0.0.1", 0, "127.0.0.1", broker.port).start()
    try:
        yield r
    finally:
        r.stop()


def relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "deskpulse-ws-relay"]


# --- (a) through the relay to amqtt -----------------------------------------------------------

def test_retained_state_and_round_trip(relay: WsRelay, recorder: Recorder) -> None:
    recorder.publish(T.state, json.dumps({"posture": "good", "seq": 1}), qos=1, retain=True)
    ws = WsClient(relay.port, [f"{T.base}/#"])
    try:
        assert not ws.connected().is_failure
        retained = ws.wait_message(lambda m: m.topic == T.state)
        assert retained.retain and json.loads(retained.payload)["posture"] == "good"
        assert relay.connections == 1

        mark = recorder.mark()
        ws.client.publish(T.request("pause"), b'{"minutes": 5}', qos=1).wait_for_publish(10)
        got = recorder.wait_topic(T.request("pause"), start=mark)
        assert json.loads(got.payload) == {"minutes": 5}

        recorder.publish(T.state, json.dumps({"posture": "bad", "seq": 2}), qos=1, retain=True)
        live = ws.wait_message(lambda m: m.topic == T.state and b'"bad"' in m.payload)
        assert json.loads(live.payload)["seq"] == 2
    finally:
        ws.close()


def test_large_binary_frame_arrives_intact(relay: WsRelay, recorder: Recorder) -> None:
    ws = WsClient(relay.port, [T.frame])
    try:
        assert not ws.connected().is_failure
        payloads = [os.urandom(40 * 1024) for _ in range(3)]
        for p in payloads:
            recorder.publish(T.frame, p, qos=0)
        got = [ws.wait_message(lambda m: m.topic == T.frame).payload for _ in payloads]
        assert [hashlib.sha256(g).digest() for g in got] == [hashlib.sha256(p).digest() for p in payloads]

        # And the other way: a large message from the WebSocket side reaches TCP subscribers.
        mark = recorder.mark()
        big = os.urandom(40 * 1024)
        ws.client.publish(T.snapshot, big, qos=1).wait_for_publish(10)
        assert recorder.wait_topic(T.snapshot, start=mark).payload == big
    finally:
        ws.close()


def test_client_disconnect_closes_the_broker_side(relay: WsRelay, recorder: Recorder) -> None:
    ws = WsClient(relay.port, [T.state])
    assert not ws.connected().is_failure
    wait_until(lambda: relay.connections == 1, what="one relayed connection")
    ws.close()
    wait_until(lambda: relay.connections == 0, what="relay connection closed after the client left")


def test_negotiates_mqtt_subprotocols_and_rejects_other_paths() -> None:
    # No MQTT is spoken here, so the target is a bare listening socket (amqtt leaks its
    # transport when a connection closes before CONNECT).
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen()
        with WsRelay("127.0.0.1", 0, "127.0.0.1", sink.getsockname()[1]) as relay:
            for proto in ("mqtt", "mqttv3.1"):
                with ws_connect(f"ws://127.0.0.1:{relay.port}/mqtt",
                                subprotocols=[proto]) as conn:  # type: ignore[list-item]
                    assert conn.subprotocol == proto
            with pytest.raises(InvalidStatus) as err:
                with ws_connect(f"ws://127.0.0.1:{relay.port}/other",
                                subprotocols=["mqtt"]):  # type: ignore[list-item]
                    pass
            assert err.value.response.status_code == 404


def test_unreachable_broker_closes_the_websocket() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    with WsRelay("127.0.0.1", 0, "127.0.0.1", dead_port) as r:
        with ws_connect(f"ws://127.0.0.1:{r.port}/mqtt", subprotocols=["mqtt"]) as conn:  # type: ignore[list-item]
            with pytest.raises(ConnectionClosed) as closed:
                conn.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


def test_cannot_bind_raises_broker_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(BrokerError, match=f"cannot listen on 127.0.0.1:{busy}"):
            WsRelay("127.0.0.1", busy, "127.0.0.1", 1883).start()
    assert not relay_threads()


# --- (d) stop() ---------------------------------------------------------------------------------

def test_stop_ends_thread_and_closes_clients(broker: EmbeddedBroker) -> None:
    r = WsRelay("127.0.0.1", 0, "127.0.0.1", broker.port).start()
    assert r.port != 0
    assert len(relay_threads()) == 1
    ws = WsClient(r.port, [T.state])
    try:
        assert not ws.connected().is_failure
        r.stop()
        assert ws.disconnected.wait(10), "client was not disconnected by stop()"
        assert not relay_threads()
        assert r.connections == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", r.port), timeout=2).close()
    finally:
        ws.close()
        r.stop()


# --- (b) Debian mosquitto with accounts and an ACL ----------------------------------------------

@pytest.fixture
def secured_mosquitto() -> Iterator[Mosquitto]:
    m = Mosquitto()  # its own /tmp/dp-mosq-* dir: pytest's tmp_path is not traversable by `mosquitto`
    passwd, acl = m.dir / "passwd", m.dir / "acl"
    passwd.write_text("")
    for user, pw in (("agent", "agent-pw"), ("viewer", "viewer-pw")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
    acl.write_text("user agent\ntopic readwrite deskpulse/#\n\n"
                   "user viewer\ntopic read deskpulse/#\ntopic write deskpulse/+/request/#\n")
    # mosquitto drops root and runs as `mosquitto`, which must be able to read both files.
    os.chmod(m.dir, 0o755)
    for f in (passwd, acl):
        os.chmod(f, 0o644)
    m.conf_body = (f"per_listener_settings false\nlistener {m.port} 127.0.0.1\nallow_anonymous false\n"
                   f"password_file {passwd}\nacl_file {acl}\n")
    try:
        yield m.start()
    finally:
        m.stop()
        m.log.close()  # support.Mosquitto.stop() leaves its log file open


@pytest.mark.mosquitto
def test_mosquitto_acl_applies_through_the_relay(secured_mosquitto: Mosquitto) -> None:
    agent = Recorder(secured_mosquitto.port, [T.request_filter, T.state], username="agent", password="agent-pw")
    viewer = None
    try:
        agent.publish(T.state, b'{"posture":"good","seq":1}', qos=1, retain=True)
        with WsRelay("127.0.0.1", 0, "127.0.0.1", secured_mosquitto.port) as r:
            viewer = WsClient(r.port, [f"{T.base}/#"], username="viewer", password="viewer-pw")
            assert not viewer.connected().is_failure
            seen = viewer.wait_message(lambda m: m.topic == T.state)
            assert seen.retain and b'"good"' in seen.payload

            mark = agent.mark()
            viewer.client.publish(T.state, b'{"posture":"bad","seq":99}', qos=1, retain=True).wait_for_publish(10)
            # Allowed, and sent after the forbidden one on the same connection: once the agent
            # sees it, mosquitto has already handled (and refused) the forbidden publish.
            viewer.client.publish(T.request("pause"), b"{}", qos=1).wait_for_publish(10)
            agent.wait_topic(T.request("pause"), start=mark)
            assert all(b'"bad"' not in m.payload for m in agent.on(T.state))

        check = Recorder(secured_mosquitto.port, T.state, username="agent", password="agent-pw")
        try:
            assert check.wait_topic(T.state, lambda m: m.retain).payload == b'{"posture":"good","seq":1}'
        finally:
            check.close()
    finally:
        if viewer is not None:
            viewer.close()
        agent.close()


@pytest.mark.mosquitto
def test_mosquitto_refuses_wrong_password_through_the_relay(secured_mosquitto: Mosquitto) -> None:
    with WsRelay("127.0.0.1", 0, "127.0.0.1", secured_mosquitto.port) as r:
        ws = WsClient(r.port, username="viewer", password="wrong")
        try:
            rc = ws.connected()
            assert rc.is_failure
            # mosquitto closes TCP after refusing; the relay must close the browser side too.
            assert ws.disconnected.wait(10)
            wait_until(lambda: r.connections == 0, what="refused connection closed")
        finally:
            ws.close()


# --- (c) mqtt.js under node, as the page uses it ------------------------------------------------

@pytest.mark.slow
def test_mqttjs_receives_frames_through_the_relay(relay: WsRelay, recorder: Recorder) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not MQTTJS.exists():
        pytest.skip("web/node_modules/mqtt is absent: run scripts/fetch_mqttjs.sh")
    control = f"{T.base}/bench/control"
    proc = subprocess.Popen(
        ["node", str(NODE_SUB), "--url", f"ws://127.0.0.1:{relay.port}/mqtt", "--frame-topic", T.frame,
         "--state-topic", T.state, "--control-topic", control, "--print-messages", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: "queue.Queue[dict[str, Any] | None]" = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(json.loads(line))
        lines.put(None)

    reader = threading.Thread(target=read, name="test-node-stdout", daemon=True)
    reader.start()

    def next_event(kind: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ev = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if ev is None:
                raise AssertionError(f"node exited: {proc.stderr.read() if proc.stderr else ''}")
            if ev["event"] == kind:
                return ev

    try:
        next_event("ready")
        frames = [os.urandom(38_000 + i) for i in range(5)]
        recorder.publish(control, "start", qos=1)
        for f in frames:
            recorder.publish(T.frame, f, qos=0)
        recorder.publish(T.state, json.dumps({"posture": "bad", "seq": 7}), qos=1)
        recorder.publish(control, "end", qos=1)
        got = [next_event("msg")]
        while got[-1]["topic"] != T.state:
            got.append(next_event("msg"))
        frame_msgs = [m for m in got if m["topic"] == T.frame]
        assert [m["sha256"] for m in frame_msgs] == [hashlib.sha256(f).hexdigest() for f in frames]
        result = next_event("result")
        client = result["clients"][0]
        assert client["frames"] == len(frames) and client["state_seqs"] == [7] and not client["errors"]
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(10)  # it ends at EOF; only then may the pipes be closed under it
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
