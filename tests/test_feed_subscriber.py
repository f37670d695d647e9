"""The feed connection's own MQTT subscriber: its parser on bytes, itself on a real Mosquitto,
and the link's supervision of it (malformed packets from a relay in front of the broker)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roommon.alerts.store import AlarmStore
from roommon.core.clock import RealClock, VirtualClock
from roommon.testing import LOOPBACK, MosquittoBroker, MqttCollector
from roommon.testing.broker import free_port
from roommon.testing.collector import stalled_reading
from roommon.testing.flap import wait_until
from roommon.testing.logs import capture_logs
from roommon.testing.tap import BrokerTap
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.feed_subscriber import (
    FeedConnectionError,
    FeedSubscriber,
    MalformedPacketError,
    Messages,
    PacketParser,
)
from roommon.transports.mqtt import MqttLink

FEEDS = "roommon/v1/t/+/feed/+"


def publish(
    topic: bytes, payload: bytes, *, qos: int = 0, pid: int = 0, props: bytes = b""
) -> bytes:
    """A PUBLISH packet as a broker sends it (``props``: MQTT 5 properties, with length)."""
    body = len(topic).to_bytes(2, "big") + topic
    body += pid.to_bytes(2, "big") if qos else b""
    body += props + payload
    n, length = len(body), bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        length.append(b | 0x80 if n else b)
        if not n:
            return bytes([0x30 | qos << 1]) + bytes(length) + body


# ---------------------------------------------------------------------- the parser


STREAM_311 = [
    (publish(b"a/feed/ekg", b'{"n":1}'), b"a/feed/ekg", b'{"n":1}'),
    (publish(b"a/feed/spo2", b"x" * 300, qos=1, pid=7), b"a/feed/spo2", b"x" * 300),
    (publish(b"b/feed/ekg", b""), b"b/feed/ekg", b""),
    (publish(b"c", b"y" * 20_000, qos=1, pid=65535), b"c", b"y" * 20_000),  # 3 length bytes
]


def test_a_read_of_many_packets_gives_them_all_and_a_packet_split_anywhere_waits_for_the_rest() -> (
    None
):
    stream = b"".join(p for p, _, _ in STREAM_311) + b"\xd0\x00"  # and a PINGRESP
    expected = [(t, m) for _, t, m in STREAM_311]
    messages, acks, control = PacketParser(v5=False).feed(stream)
    assert messages == expected
    assert acks == [7, 65535]
    assert control == [(13, 0, b"")]
    for cut in [*range(40), *range(len(stream) - 40, len(stream))]:
        parser = PacketParser(v5=False)
        first = parser.feed(stream[:cut])
        second = parser.feed(stream[cut:])
        assert first[0] + second[0] == expected, cut
        assert first[1] + second[1] == [7, 65535]
        assert parser.buffered == 0


def test_mqtt_5_properties_are_skipped() -> None:
    props = b"\x05\x03\x00\x02ab"  # 5 bytes of properties: a content type "ab"
    stream = publish(b"t/feed/x", b"data", qos=1, pid=3, props=props)
    stream += publish(b"t/feed/y", b"more", props=b"\x00")
    messages, acks, _ = PacketParser(v5=True).feed(stream)
    assert messages == [(b"t/feed/x", b"data"), (b"t/feed/y", b"more")]
    assert acks == [3]


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "longer than four bytes"),
        (b"\x36\x05\x00\x01ab\x00", "QoS 3"),
        (b"\x34\x05\x00\x01a\x00\x01", "QoS 2"),
        (b"\x30\x04\x00\x09abcdefgh", "run past its end"),
        (b"\x32\x03\x00\x01a", "run past its end"),  # QoS 1 without its packet id
        (b"\x30\x01\x00", "no topic length"),
    ],
)
def test_what_is_not_mqtt_is_a_malformed_packet_saying_what_is_wrong(
    data: bytes, what: str
) -> None:
    with pytest.raises(MalformedPacketError, match=what):
        PacketParser(v5=False).feed(data)


def parsed(v5: bool, *reads: bytes) -> tuple[Messages, list[int], bool]:
    """The messages and acks of ``reads`` fed in turn, and whether it ended malformed."""
    parser = PacketParser(v5=v5)
    messages: Messages = []
    acks: list[int] = []
    for data in reads:
        try:
            m, a, _ = parser.feed(data)
        except MalformedPacketError as exc:
            m, a, _ = exc.parsed
            return messages + m, acks + a, True
        messages += m
        acks += a
    return messages, acks, False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 64), st.booleans())
def test_any_bytes_split_anywhere_give_the_same_packets_or_a_malformed_packet_error(
    data: bytes, cut: int, v5: bool
) -> None:
    """Never another exception, and a read boundary changes nothing."""
    assert parsed(v5, data[:cut], data[cut:]) == parsed(v5, data)


# ---------------------------------------------------------------------- on a real broker


def endpoint(broker_port: int, *, v5: bool = False, keepalive_s: int = 30) -> BrokerEndpoint:
    return BrokerEndpoint(
        host=LOOPBACK,
        port=broker_port,
        keepalive_s=keepalive_s,
        feed_protocol="5" if v5 else "3.1.1",
        reconnect_initial_s=0.05,
    )


@pytest.mark.broker
@pytest.mark.parametrize("v5", [False, True], ids=["3.1.1", "5"])
async def test_feed_data_arrives_in_order_many_messages_a_read_and_qos_1_is_acknowledged(
    broker: MosquittoBroker, v5: bool
) -> None:
    got: Messages = []
    reads: list[int] = []

    def on_messages(ms: Messages) -> None:
        got.extend(ms)
        reads.append(len(ms))

    ep = endpoint(broker.port, v5=v5)
    sub = FeedSubscriber(ep, client_id="feeds", on_messages=on_messages, clean=True)
    async with sub:  # a clean start: no session left by an earlier test
        pass
    n = 400
    async with MqttCollector(broker.port, []) as pub:
        persistent = FeedSubscriber(
            ep, client_id="feeds", on_messages=on_messages, clean=False, session_expiry_s=600
        )
        async with persistent:
            assert not persistent.session_present
            await persistent.subscribe([FEEDS], qos=1)
            with stalled_reading(persistent):  # they pile up in the socket: read in bulk
                for i in range(n):
                    await pub.publish(f"roommon/v1/t/r{i % 3}/feed/ekg", b"%d" % i, qos=0)
                # Acknowledged once the broker has routed all of the above (in order).
                await pub.publish("roommon/v1/t/sync", b"", qos=1)
            await wait_until(lambda: len(got) == n)
            assert len(reads) < n / 10  # many messages per read, not one read (and wake) each
            for i in range(n, n + 50):  # QoS 1 (Mosquitto keeps the order within a QoS)
                await pub.publish(f"roommon/v1/t/r{i % 3}/feed/ekg", b"%d" % i, qos=1)
            await wait_until(lambda: len(got) == n + 50)
        assert [p for _, p in got] == [b"%d" % i for i in range(n + 50)]
        assert got[1][0] == b"roommon/v1/t/r1/feed/ekg"
        # The QoS 1 messages were acknowledged: the resumed session holds none of them.
        got.clear()
        again = FeedSubscriber(
            ep, client_id="feeds", on_messages=on_messages, clean=False, session_expiry_s=600
        )
        async with again:
            assert again.session_present  # (MQTT 5: kept by the session expiry sent)
            await pub.publish("roommon/v1/t/r0/feed/after", b"after", qos=1)
            # A redelivery of unacknowledged messages would come first, at the resume.
            await wait_until(lambda: (b"roommon/v1/t/r0/feed/after", b"after") in got)
        assert got == [(b"roommon/v1/t/r0/feed/after", b"after")]


@pytest.mark.broker
async def test_a_broker_that_stops_answering_is_a_lost_connection_after_a_keepalive(
    broker: MosquittoBroker,
) -> None:
    clock = VirtualClock()
    sub = FeedSubscriber(
        endpoint(broker.port, keepalive_s=5),
        client_id="feeds",
        on_messages=lambda _m: None,
        keepalive_clock=clock,
    )
    async with sub:
        await sub.subscribe([FEEDS])
        assert sub._protocol is not None
        proto = sub._protocol
        assert proto.pingresps == 0
        await clock.advance(5)  # a PINGREQ ...
        await wait_until(lambda: proto.pingresps == 1)  # ... and its PINGRESP
        broker.pause()
        try:
            await clock.advance(5)  # a PINGREQ, never answered
            await clock.advance(5)
            with pytest.raises(FeedConnectionError, match=r"nothing from the broker within the"):
                async with asyncio.timeout(5):
                    await sub.wait_closed()
        finally:
            broker.resume()


@pytest.mark.broker
async def test_a_refused_or_unreachable_broker_is_a_feed_connection_error_saying_so() -> None:
    port = free_port()
    with pytest.raises(FeedConnectionError, match=f"cannot connect to mqtt://{LOOPBACK}:{port}"):
        async with FeedSubscriber(endpoint(port), client_id="f", on_messages=lambda _m: None):
            pass


@pytest.mark.broker
async def test_a_malformed_packet_ends_the_connection_naming_it_after_the_good_ones(
    broker: MosquittoBroker,
) -> None:
    got: Messages = []
    async with BrokerTap(broker.port) as tap, MqttCollector(broker.port, []) as pub:
        sub = FeedSubscriber(endpoint(tap.port), client_id="feeds", on_messages=got.extend)
        async with sub:
            await sub.subscribe([FEEDS])
            await pub.publish("roommon/v1/t/r1/feed/ekg", b"good", qos=1)
            await wait_until(lambda: len(got) == 1)
            assert tap.inject("feeds", publish(b"x", b"fine") + b"\x30\xff\xff\xff\xff\x01") == 1
            with pytest.raises(MalformedPacketError, match="longer than four bytes"):
                async with asyncio.timeout(5):
                    await sub.wait_closed()
    assert got == [(b"roommon/v1/t/r1/feed/ekg", b"good"), (b"x", b"fine")]


@pytest.mark.broker
async def test_the_link_counts_logs_and_survives_a_malformed_packet_on_the_feed_connection(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A broker (or whatever sits between) sending bytes that are not MQTT: the feed
    connection is dropped, counted and logged in one line naming what was wrong, and
    reconnected with the backoff; the daemon's handler never sees an exception."""
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    got: list[tuple[bytes, bytes]] = []
    async with BrokerTap(broker.port) as tap, MqttCollector(broker.port, []) as pub:
        link = MqttLink(
            endpoint=replace(endpoint(tap.port), session_expiry_s=0),
            client_id="roommon-t-main",
            store=store,
            clock=RealClock(),
            subscriptions=[],
            on_message=lambda _m: None,
            on_feed_messages=got.extend,
            feed_subscriptions=[FEEDS],
            will_topic="roommon/v1/t/status/main",
            will_payload=b"{}",
            online=lambda: b"{}",
        )
        try:
            with capture_logs() as logs:
                async with link:
                    await wait_until(link.connected.is_set)
                    tap.inject("roommon-t-main-feed", b"\x36\x05\x00\x01ab\x00")  # QoS 3
                    await wait_until(lambda: link.feed_connects == 2 and link.connected.is_set())
                    await pub.publish("roommon/v1/t/r1/feed/ekg", b"after", qos=1)
                    await wait_until(lambda: got == [(b"roommon/v1/t/r1/feed/ekg", b"after")])
        finally:
            store.close()
    assert link.feed_malformed == 1
    assert tap.connections["roommon-t-main-feed"] == 2
    [entry] = logs.named("mqtt_feeds_disconnected")
    assert entry["malformed"] is True
    assert entry["connected"] is True
    assert "PUBLISH with QoS 3" in entry["error"]
