"""Real MQTT packets from a real producer: paho, writing to a loopback socket we read.

The relay's tests feed these bytes to deskpulse.mqttwire and through the relay, so no packet in
the tests is a hand-written copy of what a client sends. Framing here is deliberately separate
from deskpulse.mqttwire (the code under test).
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CONNACK_OK = bytes([0x20, 0x02, 0x00, 0x00])
CONNACK_OK_V5 = bytes([0x20, 0x03, 0x00, 0x00, 0x00])


def split(data: bytes) -> list[bytes]:
    """Whole packets in data (which must end on a packet boundary)."""
    out, pos = [], 0
    while pos < len(data):
        length, mult, i = 0, 1, pos + 1
        while True:
            byte = data[i]
            length += (byte & 0x7F) * mult
            mult *= 128
            i += 1
            if not byte & 0x80:
                break
        out.append(data[pos:i + length])
        pos = i + length
    return out


def _read_packets(conn: socket.socket, count: int) -> list[bytes]:
    buf = b""
    while True:
        try:
            packets = split(buf)
            if len(packets) >= count:
                return packets
        except IndexError:  # a partial packet at the end
            pass
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError(f"paho closed after {buf!r}")
        buf += chunk


def v5_properties(packet_type: int, **values: Any) -> Properties:
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


class PahoSession:
    """A paho client connected to a socket of ours: `connect_packet` is its CONNECT, and
    `packets(fn, n)` returns the next n packets paho writes while fn(client) runs."""

    def __init__(self, protocol: int = mqtt.MQTTv311, client_id: str = "", username: str | None = None,
                 password: str | None = None, will: tuple[str, bytes, int, bool] | None = None,
                 keepalive: int = 30, properties: Properties | None = None,
                 will_properties: Properties | None = None, clean_start: bool = True) -> None:
        self.protocol = protocol
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(1)
        kw: dict[str, Any] = {"client_id": client_id, "protocol": protocol}
        if protocol != mqtt.MQTTv5:
            kw["clean_session"] = clean_start
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=will[2], retain=will[3], properties=will_properties)
        connect_kw: dict[str, Any] = {"keepalive": keepalive}
        if protocol == mqtt.MQTTv5:
            connect_kw.update(properties=properties, clean_start=clean_start)
        self.client.connect("127.0.0.1", self._server.getsockname()[1], **connect_kw)
        self.conn, _ = self._server.accept()
        self.conn.settimeout(10)
        self.connect_packet = _read_packets(self.conn, 1)[0]

    def accept(self) -> "PahoSession":
        """Answer CONNECT with success so paho will send more packets."""
        self.conn.sendall(CONNACK_OK_V5 if self.protocol == mqtt.MQTTv5 else CONNACK_OK)
        self.client.loop_read()
        assert self.client.is_connected()
        return self

    def packets(self, count: int, action: Any) -> list[bytes]:
        action(self.client)
        while self.client.want_write():
            self.client.loop_write()
        return _read_packets(self.conn, count)

    def close(self) -> None:
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        self.conn.close()
        self._server.close()

    def __enter__(self) -> "PahoSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_packet(**kw: Any) -> bytes:
    """paho's CONNECT for the given PahoSession arguments."""
    with PahoSession(**kw) as session:
        return session.connect_packet


def publish_packets(topic: str, payloads: list[bytes], qos: int = 0, protocol: int = mqtt.MQTTv311) -> list[bytes]:
    """paho's PUBLISH packets for payloads, in order."""
    with PahoSession(protocol=protocol) as session:
        session.accept()

        def send(client: mqtt.Client) -> None:
            for p in payloads:
                client.publish(topic, p, qos=qos)

        return session.packets(len(payloads), send)


def subscribe_packet(topic: str, qos: int = 1, protocol: int = mqtt.MQTTv311) -> bytes:
    with PahoSession(protocol=protocol) as session:
        session.accept()
        return session.packets(1, lambda c: c.subscribe(topic, qos))[0]


__all__ = ["CONNACK_OK", "PacketTypes", "PahoSession", "connect_packet", "publish_packets", "split",
           "subscribe_packet", "v5_properties"]
