"""The MQTT boundary against the real (embedded) broker: will, reconnect, outage queue."""

from __future__ import annotations

import json
import threading
import time

from deskpulse.config import BrokerAddress
from deskpulse.publisher import Publisher
from deskpulse.topics import Topics

from .support import Recorder, TcpProxy, wait_until

T = Topics("deskpulse", "pub1")


def make(port: int, **kw) -> Publisher:
    return Publisher(T, BrokerAddress(host="127.0.0.1", port=port), "deskpulse-pub1",
                     reconnect_max_s=1, **kw)


def test_connect_publishes_online_then_retained_state(broker, recorder: Recorder) -> None:
    pub = make(broker.port)
    pub.publish_state({"posture": "good", "seq": 1})  # before connecting: queued
    pub.start()
    try:
        online = recorder.wait_topic(T.availability, lambda m: m.payload == b"online")
        state = recorder.wait_topic(T.state)
        assert state.json() == {"posture": "good", "seq": 1}
        assert recorder.messages.index(online) < recorder.messages.index(state)
        late = Recorder(broker.port, T.state)
        try:
            assert late.wait_topic(T.state, lambda m: m.retain).json()["seq"] == 1
        finally:
            late.close()
    finally:
        pub.stop()
    recorder.wait_topic(T.availability, lambda m: m.payload == b"offline")


def test_outage_changes_arrive_in_order_after_reconnect_and_frames_are_dropped(broker, recorder: Recorder) -> None:
    proxy = TcpProxy(broker.port).start()
    pub = make(proxy.port)
    pub.start()
    try:
        assert pub.connected.wait(10)
        pub.publish_state({"posture": "good", "seq": 1})
        recorder.wait_topic(T.state, lambda m: m.json()["seq"] == 1)
        pub.publish_retained(T.stats, {"good_s": 5})
        proxy.cut()
        recorder.wait_topic(T.availability, lambda m: m.payload == b"offline")  # the last will
        # The broker may see the link go before the publisher's own thread does.
        wait_until(lambda: not pub.connected.is_set(), what="the publisher noticing the outage")
        mark = recorder.mark()
        for seq, posture in ((2, "bad"), (3, "absent"), (4, "good")):
            pub.publish_state({"posture": posture, "seq": seq})
        pub.publish_event(T.alert, {"type": "bad_posture"})
        assert not pub.publish_frame(T.frame, b"\xff\xd8jpeg")
        proxy.restore()
        recorder.wait_topic(T.availability, lambda m: m.payload == b"online", start=mark)
        recorder.wait_topic(T.alert, start=mark)
        recorder.wait_topic(T.stats, start=mark)
        after = recorder.messages[mark:]
        seqs = [json.loads(m.payload)["seq"] for m in after if m.topic == T.state]
        # seq 1 may come again (QoS 1: its acknowledgement can be lost with the link), first.
        assert seqs[:3] == [2, 3, 4] or seqs[:4] == [1, 2, 3, 4], seqs
        topics = [m.topic for m in after]
        assert topics.index(T.availability) < topics.index(T.state) < topics.index(T.alert)
        assert T.frame not in topics
        assert pub.frames_dropped == 1
    finally:
        pub.stop()
        proxy.stop()


def test_queue_is_bounded(broker) -> None:
    pub = make(broker.port, queue_size=3)
    for seq in range(10):
        pub.publish_state({"seq": seq})
    assert pub.pending() == 3


class BuggyPublisher(Publisher):
    """A publisher whose message callback has a bug for one topic (a fault injection:
    what must survive it is paho's real network thread)."""

    @Publisher._guarded
    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[override]
        if msg.topic.endswith("/request/boom"):
            raise RuntimeError("a bug in a callback")
        Publisher._on_message(self, client, userdata, msg)


def test_an_exception_in_a_callback_is_counted_and_never_ends_the_network_thread(broker, recorder) -> None:
    pub = BuggyPublisher(T, BrokerAddress(host="127.0.0.1", port=broker.port), "deskpulse-pub1", reconnect_max_s=1)
    pub.start()
    try:
        assert pub.connected.wait(10)
        for _ in range(3):
            recorder.publish(T.request("boom"), "{}")
        recorder.publish(T.request("pause"), "{}")
        assert pub.incoming.get(timeout=10).topic == T.request("pause")
        # amqtt may deliver a QoS 1 message after a later one: wait for the third failure.
        wait_until(lambda: pub.callback_errors == 3, what="3 callback errors")
        assert pub.alive()
        pub.publish_state({"posture": "good", "seq": 7})
        recorder.wait_topic(T.state, lambda m: m.json()["seq"] == 7)
    finally:
        pub.stop()
    assert not pub.alive()


def test_a_session_that_drops_gets_a_fresh_client_and_nothing_old_is_resent(broker, recorder) -> None:
    proxy = TcpProxy(broker.port).start()
    pub = make(proxy.port)
    pub.start()
    try:
        assert pub.connected.wait(10)
        first = pub._client  # which object serves the session is what this test is about
        proxy.cut()
        recorder.wait_topic(T.availability, lambda m: m.payload == b"offline")
        mark = recorder.mark()
        pub.publish_state({"posture": "bad", "seq": 2})
        proxy.restore()
        recorder.wait_topic(T.state, lambda m: m.json()["seq"] == 2, start=mark)
        assert pub._client is not first and pub.connects == 2 and pub.alive()
    finally:
        pub.stop()
        proxy.stop()


def test_a_publish_racing_a_dropped_connection_never_hangs_the_caller(broker) -> None:
    """paho writes in the caller's thread when it doesn't own the loop thread; a write that
    found the socket dead then ran on_disconnect there, under our own lock: the pipeline
    thread deadlocked and the agent went silent. Here a thread publishes frames as fast as it
    can, and states between them, while the link is cut and restored five times: it must
    keep going, the agent must come back each time, and every state must arrive."""
    proxy = TcpProxy(broker.port).start()
    pub = make(proxy.port)
    watcher = Recorder(broker.port, [T.state, T.availability])
    stop = threading.Event()
    published = [0]

    def hammer() -> None:
        seq, next_state = 0, 0.0
        while not stop.is_set():
            if time.monotonic() >= next_state:  # ~20 states/s: an outage stays under the queue bound
                seq += 1
                pub.publish_state({"posture": "good", "seq": seq})
                published[0] = seq
                next_state = time.monotonic() + 0.05
            pub.publish_frame(T.frame, b"\xff\xd8" + bytes(2048))

    pub.start()
    worker = threading.Thread(target=hammer, name="test-hammer", daemon=True)
    try:
        assert pub.connected.wait(10)
        worker.start()
        for _ in range(5):
            flowing = published[0] + 5
            mark = watcher.mark()
            watcher.wait_topic(T.state, lambda m, t=flowing: m.json()["seq"] >= t, start=mark)
            mark = watcher.mark()
            proxy.cut()
            watcher.wait_topic(T.availability, lambda m: m.payload == b"offline", start=mark)
            proxy.restore()
            watcher.wait_topic(T.availability, lambda m: m.payload == b"online", start=mark)
        stop.set()
        worker.join(10)
        assert not worker.is_alive()
        last = published[0]
        watcher.wait_topic(T.state, lambda m: m.json()["seq"] == last)
        seen = {m.json()["seq"] for m in watcher.on(T.state)}
        assert set(range(1, last + 1)) <= seen, sorted(set(range(1, last + 1)) - seen)[:10]
        # Within a session the states arrive in the order they were published.
        session: list[int] = []
        for m in watcher.messages:
            if m.topic == T.availability and m.payload == b"online":
                session = []
            elif m.topic == T.state:
                seq = m.json()["seq"]
                assert not session or seq > session[-1], (session[-3:], seq)
                session.append(seq)
        assert pub.alive() and pub.callback_errors == 0
    finally:
        stop.set()
        # If the bug is back, stop() would wait forever for the lock the caller holds.
        stopper = threading.Thread(target=pub.stop, name="test-stop", daemon=True)
        stopper.start()
        stopper.join(15)
        proxy.stop()
        watcher.close()
