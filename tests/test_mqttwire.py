"""deskpulse.mqttwire: packet framing and CONNECT parsing/rewriting, on paho's own packets."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.mqttwire import (
    CLEAN_START, PASSWORD_FLAG, USERNAME_FLAG, WILL_FLAG, MalformedPacket, Packet, PacketSplitter,
    PacketTooLarge, PacketType, encode_varint, parse_connect, rewrite_connect,
)

from .mqttbytes import PacketTypes, connect_packet, publish_packets, subscribe_packet, v5_properties

PROTOCOLS = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}
LEVELS = {"3.1": 3, "3.1.1": 4, "5": 5}
WILL = ("deskpulse/desk1/request/stream", b'{"lease_s":0}', 1, True)


@pytest.mark.parametrize("version", ["3.1", "3.1.1", "5"])
@pytest.mark.parametrize("with_will", [False, True])
def test_parse_reads_what_paho_sent(version: str, with_will: bool) -> None:
    raw = connect_packet(protocol=PROTOCOLS[version], client_id="deskpulse-desk1", username="agent",
                         password="agent-pw", will=WILL if with_will else None, keepalive=42)
    c = parse_connect(raw)
    assert (c.level, c.keepalive, c.client_id) == (LEVELS[version], 42, b"deskpulse-desk1")
    assert (c.username, c.password) == (b"agent", b"agent-pw")
    assert bool(c.flags & WILL_FLAG) == with_will
    assert (WILL[0].encode() in c.will) == with_will


@pytest.mark.parametrize("version", ["3.1", "3.1.1", "5"])
@pytest.mark.parametrize("with_will", [False, True])
@pytest.mark.parametrize("account", [("viewer", "viewer-pw"), ("viewer", None), (None, None)])
def test_rewrite_equals_pahos_connect_with_the_relays_account(
        version: str, with_will: bool, account: tuple[str | None, str | None]) -> None:
    """The browser's CONNECT (agent's login, agent's client id, a persistent session), rewritten,
    is byte for byte the CONNECT paho itself sends for the relay's account and client id."""
    username, password = account
    will = WILL if with_will else None
    browser = connect_packet(protocol=PROTOCOLS[version], client_id="deskpulse-desk1", username="agent",
                             password="agent-pw", will=will, keepalive=17, clean_start=False)
    rewritten = rewrite_connect(parse_connect(browser), client_id="deskpulse-web-0a1b2c3d",
                                username=username, password=password)
    expected = connect_packet(protocol=PROTOCOLS[version], client_id="deskpulse-web-0a1b2c3d",
                              username=username, password=password, will=will, keepalive=17,
                              clean_start=True)
    assert rewritten == expected
    again = parse_connect(rewritten)
    assert bool(again.flags & USERNAME_FLAG) == (username is not None)
    assert bool(again.flags & PASSWORD_FLAG) == (password is not None)
    assert again.flags & CLEAN_START


def test_rewrite_keeps_v5_properties_but_drops_session_expiry_and_enhanced_auth() -> None:
    props = dict(ReceiveMaximum=10, UserProperty=("page", "dashboard"), MaximumPacketSize=2_000_000)
    will_props = v5_properties(PacketTypes.WILLMESSAGE, WillDelayInterval=5, ContentType="application/json")
    browser = connect_packet(
        protocol=mqtt.MQTTv5, client_id="x", username="agent", password="pw", will=WILL,
        properties=v5_properties(PacketTypes.CONNECT, SessionExpiryInterval=86400, AuthenticationMethod="SCRAM",
                                 AuthenticationData=b"secret", **props),
        will_properties=will_props, clean_start=False)
    rewritten = rewrite_connect(parse_connect(browser), client_id="deskpulse-web-00000000",
                                username="viewer", password="v")
    expected = connect_packet(protocol=mqtt.MQTTv5, client_id="deskpulse-web-00000000", username="viewer",
                              password="v", will=WILL, properties=v5_properties(PacketTypes.CONNECT, **props),
                              will_properties=will_props)
    assert rewritten == expected
    assert b"SCRAM" not in rewritten and b"secret" not in rewritten


def _connect_v311() -> bytes:
    return connect_packet(protocol=mqtt.MQTTv311, client_id="c", username="u", password="p")


def _patch(raw: bytes, index: int, value: int) -> bytes:
    return raw[:index] + bytes([value]) + raw[index + 1:]


# (what is wrong, how to make it from paho's CONNECT) - mosquitto's test/broker/data style.
MALFORMED_CONNECTS = [
    ("reserved header flags", lambda raw: _patch(raw, 0, 0x11)),
    ("not CONNECT at all", lambda raw: _patch(raw, 0, 0x30)),
    ("wrong protocol name", lambda raw: raw.replace(b"MQTT", b"MQTX", 1)),
    ("protocol level 6", lambda raw: _patch(raw, 8, 6)),
    ("level 3 under the name MQTT", lambda raw: _patch(raw, 8, 3)),
    ("reserved connect flag", lambda raw: _patch(raw, 9, raw[9] | 0x01)),
    ("will QoS without a will", lambda raw: _patch(raw, 9, raw[9] | 0x08)),
    ("user name flag, no user name", lambda raw: _patch(raw[:-6], 1, raw[1] - 6)),
    ("remaining length too short", lambda raw: _patch(raw, 1, raw[1] - 1)),
    ("trailing bytes", lambda raw: _patch(raw + b"\x00", 1, raw[1] + 1)),
    ("client id length past the end", lambda raw: raw[:12] + b"\xff\xff" + raw[14:]),
]


@pytest.mark.parametrize("name, make", MALFORMED_CONNECTS, ids=[m[0] for m in MALFORMED_CONNECTS])
def test_malformed_connect_is_refused(name: str, make) -> None:  # type: ignore[no-untyped-def]
    raw = _connect_v311()
    parse_connect(raw)  # the original is fine
    with pytest.raises(MalformedPacket):
        parse_connect(make(raw))


def test_unknown_v5_property_is_refused() -> None:
    raw = connect_packet(protocol=mqtt.MQTTv5, client_id="c",
                         properties=v5_properties(PacketTypes.CONNECT, ReceiveMaximum=10))
    # After the fixed header (2), name (6), level, flags and keepalive (4): the list length, then 0x21.
    assert raw[13] == 0x21
    with pytest.raises(MalformedPacket, match="unknown property"):
        parse_connect(_patch(raw, 13, 0x7F))
    with pytest.raises(MalformedPacket, match="not allowed"):
        parse_connect(_patch(raw, 13, 0x23))  # Topic Alias: a PUBLISH property, two bytes too


# --- framing ----------------------------------------------------------------------------------

STREAM = [
    _connect_v311(),
    subscribe_packet("deskpulse/desk1/#"),
    *publish_packets("deskpulse/desk1/request/pause", [b'{"minutes":5}', b"x" * 300, b""], qos=1),
    *publish_packets("deskpulse/desk1/request/stream", [b"y" * 20_000], qos=0),
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=sum(map(len, STREAM))), max_size=12))
def test_splitter_reassembles_packets_across_any_cuts(cuts: list[int]) -> None:
    data = b"".join(STREAM)
    bounds = [0, *sorted(cuts), len(data)]
    splitter = PacketSplitter(64 * 1024)
    got = []
    for a, b in zip(bounds, bounds[1:]):
        got += splitter.feed(data[a:b])
    assert [p.raw for p in got] == STREAM
    assert [p.type for p in got] == [PacketType.CONNECT, PacketType.SUBSCRIBE] + [PacketType.PUBLISH] * 4
    assert splitter.pending == 0


def test_splitter_refuses_an_oversized_packet_from_its_header_alone() -> None:
    big = publish_packets("t", [b"z" * 70_000])[0]
    splitter = PacketSplitter(64 * 1024)
    with pytest.raises(PacketTooLarge, match="over the 65536-byte limit"):
        splitter.feed(big[:5])  # the body never needs to arrive


def test_splitter_refuses_a_five_byte_length() -> None:
    with pytest.raises(MalformedPacket, match="longer than 4 bytes"):
        PacketSplitter(1 << 30).feed(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))


@given(st.integers(min_value=0, max_value=268_435_455))
def test_varint_round_trips_through_the_splitter(length: int) -> None:
    header = bytes([0xC0]) + encode_varint(length)  # PINGREQ type, any length
    splitter = PacketSplitter(1 << 29)
    assert splitter.feed(header) == ([] if length else [Packet(PacketType.PINGREQ, 0, header)])
    assert splitter.pending == (len(header) if length else 0)
