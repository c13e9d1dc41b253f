"""MQTT wire format for the relay's browser->broker direction: packet framing and CONNECT.

Owns three pure functions of bytes, with no I/O and no clock:
- `PacketSplitter` cuts a byte stream into whole MQTT control packets (a packet may span
  WebSocket messages and a message may hold several packets), refusing any packet larger
  than a cap before buffering it;
- `parse_connect` reads a CONNECT packet (MQTT 3.1, 3.1.1 and 5);
- `rewrite_connect` builds the CONNECT the broker gets instead: the relay's account and a
  server-chosen client id, everything else (will, keepalive, properties) as the browser sent it.

It must not know any topic and must not look inside PUBLISH payloads. The broker validates
everything this module passes through unchanged (topic names, UTF-8, QoS rules); this module
only checks what it has to read to reframe or rewrite a packet, and raises `MalformedPacket`
for anything it cannot read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_REMAINING_LENGTH", "Connect", "MalformedPacket", "Packet", "PacketSplitter", "PacketTooLarge",
    "PacketType",
    "encode_varint", "parse_connect", "rewrite_connect",
]

MAX_REMAINING_LENGTH = 268_435_455  # four varint bytes: the protocol's own limit


class MalformedPacket(ValueError):
    """Bytes that are not a valid MQTT packet (or are one this relay refuses to carry)."""


class PacketTooLarge(MalformedPacket):
    """A packet whose fixed header announces more bytes than the splitter's cap."""


class PacketType(enum.IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


@dataclass(frozen=True)
class Packet:
    """One whole control packet: its type, the fixed header's low nibble, and every byte."""

    type: int
    flags: int
    raw: bytes


def encode_varint(value: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property lengths)."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _decode_varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None if the buffer ends inside it."""
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(data):
            return None
        byte = data[pos + i]
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MalformedPacket("variable byte integer longer than 4 bytes")


class PacketSplitter:
    """Reassembles a byte stream into packets; holds at most one partial packet."""

    def __init__(self, max_packet_bytes: int) -> None:
        self.max_packet_bytes = max_packet_bytes
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held for a packet that has not fully arrived."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        """Every packet completed by data, in order. Raises MalformedPacket on a bad length or
        a packet over the cap (as soon as its header says so, before its body is buffered)."""
        self._buf += data
        packets: list[Packet] = []
        pos = 0
        while len(self._buf) - pos >= 2:
            decoded = _decode_varint(self._buf, pos + 1)
            if decoded is None:
                break
            remaining, body = decoded
            total = body - pos + remaining
            if total > self.max_packet_bytes:
                raise PacketTooLarge(f"packet of {total} bytes is over the {self.max_packet_bytes}-byte limit")
            if len(self._buf) < pos + total:
                break
            first = self._buf[pos]
            packets.append(Packet(first >> 4, first & 0x0F, bytes(self._buf[pos:pos + total])))
            pos += total
        if pos:
            del self._buf[:pos]
        return packets


# --- CONNECT ------------------------------------------------------------------------------------

# The protocol name each protocol level must carry.
PROTOCOLS = {3: b"MQIsdp", 4: b"MQTT", 5: b"MQTT"}

USERNAME_FLAG = 0x80
PASSWORD_FLAG = 0x40
WILL_RETAIN = 0x20
WILL_QOS = 0x18
WILL_FLAG = 0x04
CLEAN_START = 0x02
RESERVED = 0x01

# MQTT 5 property identifiers -> how their value is encoded (section 2.2.2.2).
_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _STRING, 0x08: _STRING, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _STRING, 0x13: _TWO, 0x15: _STRING, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _STRING, 0x1C: _STRING, 0x1F: _STRING, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE,
    0x29: _BYTE, 0x2A: _BYTE,
}
CONNECT_PROPERTIES = {0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27}
SESSION_EXPIRY, AUTH_METHOD, AUTH_DATA = 0x11, 0x15, 0x16
# Dropped from the browser's CONNECT: credentials of enhanced authentication (the relay's
# account replaces the browser's), and a session that would outlive the connection (every
# connection gets a fresh random client id, so a kept session could never be resumed and
# would only pile up in the broker).
DROPPED_PROPERTIES = {SESSION_EXPIRY, AUTH_METHOD, AUTH_DATA}


@dataclass(frozen=True)
class Connect:
    """The fields of a CONNECT that the relay reads or replaces; the rest is kept as bytes."""

    level: int
    flags: int
    keepalive: int
    properties: bytes  # MQTT 5 only: the property list without its length, as received
    client_id: bytes
    will: bytes  # will properties (MQTT 5), topic and payload, still encoded; b"" without a will
    username: bytes | None
    password: bytes | None


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedPacket(f"CONNECT ends inside its {what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def prefixed(self, what: str) -> bytes:
        """A two-byte length and that many bytes (UTF-8 string or binary data)."""
        return self.take(self.u16(what), what)

    def varint(self, what: str) -> int:
        decoded = _decode_varint(self.data, self.pos)
        if decoded is None:
            raise MalformedPacket(f"CONNECT ends inside its {what}")
        value, self.pos = decoded
        return value

    def properties(self, what: str) -> bytes:
        """An MQTT 5 property list (length and body); returns the body after checking that
        every property in it is well-formed."""
        body = self.take(self.varint(what), what)
        _property_ids(body, what)
        return body


def _property_ids(body: bytes, what: str) -> list[tuple[int, bytes]]:
    """Split a property list into (identifier, encoded property) pairs."""
    out: list[tuple[int, bytes]] = []
    r = _Reader(body, 0)
    while r.pos < len(body):
        start = r.pos
        ident = r.u8(what)
        kind = PROPERTY_TYPES.get(ident)
        if kind is None:
            raise MalformedPacket(f"unknown property 0x{ident:02x} in {what}")
        if kind == _BYTE:
            r.take(1, what)
        elif kind == _TWO:
            r.take(2, what)
        elif kind == _FOUR:
            r.take(4, what)
        elif kind == _VARINT:
            r.varint(what)
        elif kind in (_STRING, _BINARY):
            r.prefixed(what)
        else:  # a string pair
            r.prefixed(what)
            r.prefixed(what)
        out.append((ident, body[start:r.pos]))
    return out


def parse_connect(raw: bytes) -> Connect:
    """Read a whole CONNECT packet. Raises MalformedPacket if it is not one this relay can
    rewrite safely."""
    if not raw or raw[0] != PacketType.CONNECT << 4:
        raise MalformedPacket("not a CONNECT packet (or reserved header flags set)")
    decoded = _decode_varint(raw, 1)
    if decoded is None:
        raise MalformedPacket("CONNECT ends inside its remaining length")
    remaining, pos = decoded
    if pos + remaining != len(raw):
        raise MalformedPacket("CONNECT length does not match its remaining length")
    r = _Reader(raw, pos)
    name = r.prefixed("protocol name")
    level = r.u8("protocol level")
    if PROTOCOLS.get(level) != name:
        raise MalformedPacket(f"unsupported protocol {name[:16]!r} level {level}")
    flags = r.u8("connect flags")
    if flags & RESERVED:
        raise MalformedPacket("reserved connect flag set")
    if not flags & WILL_FLAG and flags & (WILL_QOS | WILL_RETAIN):
        raise MalformedPacket("will QoS or retain set without a will")
    if (flags & WILL_QOS) >> 3 == 3:
        raise MalformedPacket("will QoS 3")
    keepalive = r.u16("keep alive")
    properties = b""
    if level == 5:
        properties = r.properties("CONNECT properties")
        if any(ident not in CONNECT_PROPERTIES for ident, _ in _property_ids(properties, "CONNECT properties")):
            raise MalformedPacket("a property not allowed in CONNECT")
    client_id = r.prefixed("client identifier")
    will = b""
    if flags & WILL_FLAG:
        start = r.pos
        if level == 5:
            r.properties("will properties")
        r.prefixed("will topic")
        r.prefixed("will payload")
        will = raw[start:r.pos]
    username = r.prefixed("user name") if flags & USERNAME_FLAG else None
    password = r.prefixed("password") if flags & PASSWORD_FLAG else None
    if r.pos != len(raw):
        raise MalformedPacket("bytes after the end of CONNECT")
    return Connect(level, flags, keepalive, properties, client_id, will, username, password)


def _prefixed(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def rewrite_connect(connect: Connect, *, client_id: str, username: str | None,
                    password: str | None) -> bytes:
    """The CONNECT packet to send instead: the given client id and account (None: no user
    name, no password), a clean session, and the browser's will, keepalive and remaining
    properties unchanged."""
    flags = connect.flags & (WILL_RETAIN | WILL_QOS | WILL_FLAG)
    flags |= CLEAN_START
    if username is not None:
        flags |= USERNAME_FLAG
        if password is not None:
            flags |= PASSWORD_FLAG
    body = bytearray(_prefixed(PROTOCOLS[connect.level]))
    body.append(connect.level)
    body.append(flags)
    body += connect.keepalive.to_bytes(2, "big")
    if connect.level == 5:
        kept = b"".join(prop for ident, prop in _property_ids(connect.properties, "CONNECT properties")
                        if ident not in DROPPED_PROPERTIES)
        body += encode_varint(len(kept)) + kept
    body += _prefixed(client_id.encode())
    body += connect.will
    if username is not None:
        body += _prefixed(username.encode())
        if password is not None:
            body += _prefixed(password.encode())
    return bytes([PacketType.CONNECT << 4]) + encode_varint(len(body)) + bytes(body)
