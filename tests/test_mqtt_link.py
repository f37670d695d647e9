"""The daemon's broker link on a real Mosquitto: alarms are never queued behind room state."""

from __future__ import annotations

import asyncio
import selectors
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt import client as paho_client

from roommon.alerts.store import AlarmStore
from roommon.core.clock import RealClock
from roommon.testing import LOOPBACK, MosquittoBroker, MqttCollector
from roommon.testing.collector import stalled_reading
from roommon.testing.flap import wait_until
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.mqtt import BATCH, MqttLink

pytestmark = pytest.mark.broker

BACKLOG = 600  # rooms' worth of retained state waiting when the connection comes up


def make_link(endpoint: BrokerEndpoint, store: AlarmStore, **kw: Any) -> MqttLink:
    """The daemon's link as these tests use it: the parts they vary given by keyword."""
    args: dict[str, Any] = {
        "client_id": "roommon-t-main",
        "subscriptions": [],
        "on_message": lambda _m: None,
        "will_topic": "roommon/v1/t/status/main",
        "will_payload": b'{"status":"offline"}',
        "online": lambda: b'{"status":"online"}',
    }
    return MqttLink(endpoint=endpoint, store=store, clock=RealClock(), **(args | kw))


async def test_alarms_go_out_ahead_of_a_backlog_of_retained_state(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    link = make_link(BrokerEndpoint(host=LOOPBACK, port=broker.port), store)
    # Queued while not connected: a backlog of room states (one updated twice), then an alarm.
    for i in range(BACKLOG):
        link.publish_retained(f"roommon/v1/t/room{i}/state", b'{"n":1}')
    link.publish_retained("roommon/v1/t/room0/state", b'{"n":2}')
    store.enqueue("roommon/v1/t/room7/alarm", b'{"alarm":true}')
    filters = ["roommon/v1/t/+/state", "roommon/v1/t/+/alarm"]
    try:
        async with MqttCollector(broker.port, filters) as c, link:
            got = await c.wait_for(lambda ms: len(ms) >= BACKLOG + 1, within=30)
    finally:
        store.close()
    topics = [m.topic for m in got]
    assert topics[0] == "roommon/v1/t/room7/alarm"  # first, not after 600 states
    states = [m for m in got if m.topic.endswith("/state")]
    assert len(states) == BACKLOG  # coalesced: one message per room
    assert next(m.payload for m in states if m.topic == "roommon/v1/t/room0/state") == b'{"n":2}'


async def test_the_status_goes_out_ahead_of_a_backlog_of_room_state(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    # An overloaded daemon's status ("overloaded", its lag) updated while hundreds of
    # room states wait: it is sent first, not where an update re-enters the queue.
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    link = make_link(BrokerEndpoint(host=LOOPBACK, port=broker.port), store)
    status = "roommon/v1/t/status/main"
    for i in range(BACKLOG):  # the status was sent before these: it re-enters behind them
        link.publish_retained(f"roommon/v1/t/room{i}/state", b'{"n":1}')
    link.publish_retained(status, b'{"status":"online","overloaded":true}', first=True)
    filters = ["roommon/v1/t/+/state", status]
    try:
        async with MqttCollector(broker.port, filters) as c, link:
            got = await c.wait_for(lambda ms: len(ms) >= BACKLOG + 1, within=30)
    finally:
        store.close()
    newest = b'{"status":"online","overloaded":true}'
    at = next(i for i, m in enumerate(got) if m.payload == newest)
    # ahead of every room state: only the link's own "online" on connecting precedes it
    assert {m.topic for m in got[:at]} <= {status}


async def test_a_refused_connection_is_logged_naming_the_broker(tmp_path: Path) -> None:

    from roommon.testing import free_port
    from roommon.testing.logs import capture_logs

    endpoint = BrokerEndpoint(host=LOOPBACK, port=free_port())  # nothing listens there
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    link = make_link(endpoint, store, client_id="roommon-t-refused")
    try:
        with capture_logs() as logs:
            async with link:
                async with asyncio.timeout(10):  # bound only: the first attempt fails at once
                    # Polls the capture, which has no event to wait on (bounded above).
                    while not logs.named("mqtt_disconnected"):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
    finally:
        store.close()
    entry = logs.named("mqtt_disconnected")[0]
    assert entry["broker"] == endpoint.url == f"mqtt://{LOOPBACK}:{endpoint.port}"
    assert entry["log_level"] == "warning"
    assert entry["connected"] is False  # refused at connect, not a lost link


FLOOD = 5_000  # feed messages of ~1 kB: megabytes the feed connection has not read


async def test_alarms_are_acknowledged_while_the_feed_connection_is_backlogged(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Feeds come on a connection of their own: a feed backlog (here: a feed connection
    not read at all, megabytes waiting in its socket) cannot hold up an alarm's PUBACK,
    which on a shared connection would queue behind the feed data."""
    import asyncio

    store = AlarmStore(tmp_path / "roommon.sqlite3")
    received: list[str] = []
    link = make_link(
        BrokerEndpoint(host=LOOPBACK, port=broker.port, keepalive_s=30),
        store,
        subscriptions=["roommon/v1/t/+/command/+"],
        feed_subscriptions=["roommon/v1/t/r1/feed/+"],
        on_message=lambda m: received.append(str(m.topic)),
    )
    chunk = b'{"samples":"' + b"0" * 1000 + b'"}'
    try:
        async with MqttCollector(broker.port, ["roommon/v1/t/+/alarm"]) as c, link:
            async with asyncio.timeout(10):
                await link.connected.wait()
            with stalled_reading(link.feed_client):  # the feed connection is not read
                for _ in range(FLOOD):
                    await c.publish("roommon/v1/t/r1/feed/ekg", chunk, qos=0)
                await c.publish("roommon/v1/t/r1/feed/ekg", chunk, qos=1)  # all routed
                store.enqueue("roommon/v1/t/r1/alarm", b'{"alarm":true}')
                link.outbox_changed()
                await c.wait_for(lambda ms: len(ms) >= 1, within=10)
                await wait_until(lambda: store.pending_count() == 0)  # its PUBACK came back
                assert len(received) < FLOOD  # the feed backlog was still there meanwhile
            await wait_until(lambda: len(received) == FLOOD + 1)  # read again: all of it
    finally:
        store.close()


async def test_an_alarm_goes_out_while_a_batch_of_room_state_waits_for_its_acknowledgement(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The outbox has a loop of its own: an alarm queued while a batch of retained state
    is in flight (here: a broker that stopped answering) is written at once, not after
    that batch's PUBACKs."""
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    link = make_link(BrokerEndpoint(host=LOOPBACK, port=broker.port, keepalive_s=60), store)

    def on_the_wire() -> list[str]:
        """Topics of the publishes paho has written and not had acknowledged (not those
        it still holds in its own queue)."""
        client = link._client
        if client is None:
            return []
        return [
            m.topic
            for m in client._client._out_messages.values()
            if m.state == paho_client.mqtt_ms_wait_for_puback
        ]

    try:
        async with MqttCollector(broker.port, ["roommon/v1/t/+/alarm"]) as c, link:
            await wait_until(lambda: link.connected.is_set() and not link.pending_retained)
            broker.pause()  # no PUBACK from here on
            for i in range(3 * BATCH):
                link.publish_retained(f"roommon/v1/t/room{i}/state", b'{"n":1}')
            await wait_until(lambda: len(on_the_wire()) == BATCH)  # one batch of state
            store.enqueue("roommon/v1/t/r1/alarm", b'{"alarm":true}')
            link.outbox_changed()
            await wait_until(lambda: "roommon/v1/t/r1/alarm" in on_the_wire())  # the alarm too
            broker.resume()
            await c.wait_for(lambda ms: len(ms) >= 1)
            await wait_until(lambda: store.pending_count() == 0 and not link.pending_retained)
    finally:
        broker.resume()
        store.close()


async def test_an_alarm_is_written_to_the_socket_before_outbox_changed_returns(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """No turn of the event loop between an alarm's outbox row and the wire (a busy daemon's
    turns are slices of input work: at 300 rooms each added tens of ms), and still one
    copy per row: the outbox loop records the PUBACK and does not send it again."""
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    link = make_link(BrokerEndpoint(host=LOOPBACK, port=broker.port), store)
    topic = "roommon/v1/t/r1/alarm"
    try:
        async with MqttCollector(broker.port, ["roommon/v1/t/+/alarm"]) as c, link:
            await wait_until(lambda: link.connected.is_set() and link.writing)
            assert link._client is not None
            paho = link._client._client
            store.enqueue(topic, b'{"alarm":1}')
            link.outbox_changed()
            # no await since: the PUBLISH is on the socket, waiting for its PUBACK
            assert not paho._out_packet
            assert [m.topic for m in paho._out_messages.values()] == [topic]
            link.outbox_changed()  # again, before the PUBACK: nothing sent twice
            store.enqueue(topic, b'{"alarm":2}')
            link.outbox_changed()
            assert not paho._out_packet
            await wait_until(lambda: store.pending_count() == 0)
            link.outbox_changed()  # after the PUBACKs: nothing sent again either
            store.enqueue(topic, b'{"alarm":3}')  # the last: a copy sent before it came first
            link.outbox_changed()
            await c.wait_for(lambda ms: len(ms) >= 3)
            await wait_until(lambda: store.pending_count() == 0 and not paho._out_messages)
        assert [m.payload for m in c.messages] == [b'{"alarm":1}', b'{"alarm":2}', b'{"alarm":3}']
    finally:
        store.close()


async def test_a_directly_written_alarm_leaves_no_writer_spinning_on_the_socket(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """paho's request to watch the socket for writing reaches the loop (aiomqtt's
    call_soon_threadsafe) after the direct write emptied paho's queue: nothing may stay
    registered, or a writable socket runs its callback on every turn (a full core idle)."""
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    link = make_link(BrokerEndpoint(host=LOOPBACK, port=broker.port), store)
    loop = asyncio.get_running_loop()
    selector: selectors.BaseSelector = loop._selector  # type: ignore[attr-defined]

    def watched_for_writing(fd: int) -> bool:
        try:
            return bool(selector.get_key(fd).events & selectors.EVENT_WRITE)
        except KeyError:
            return False

    try:
        async with link:
            await wait_until(lambda: link.connected.is_set() and link.writing)
            assert link._client is not None
            paho = link._client._client
            sock = paho.socket()
            assert sock is not None
            for i in range(3):
                store.enqueue("roommon/v1/t/r1/alarm", b'{"alarm":%d}' % i)
                link.outbox_changed()
            await wait_until(lambda: store.pending_count() == 0)
            for _ in range(5):  # a few turns of the loop, for the scheduled callbacks
                await asyncio.sleep(0)
            assert not paho.want_write()
            assert not watched_for_writing(sock.fileno())
    finally:
        store.close()
