"""The broker link across broker restarts, crashes and hangs (issue 11, defects 5-7).

Real Mosquitto (persistent where the test says so: sessions and queued
messages kept on disk across the restart, as a production broker must), real
SQLite outbox; the daemon's clock is virtual wherever the test must decide
when its reconnect backoff ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from roommon.alerts.store import AlarmStore
from roommon.config import parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.runtime.daemon import Daemon
from roommon.testing import LOOPBACK, MosquittoBroker, MqttCollector
from roommon.testing.flap import wait_until
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.mqtt import MqttLink

pytestmark = pytest.mark.broker

BASE = "roommon/v1/s"


@pytest.fixture
def persistent_broker() -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(persistent=True)
    b.start()
    try:
        yield b
    finally:
        b.close()


def config(port: int, state: Path, **broker: Any) -> Any:
    room = {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
        "checks": {"numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}},
    }
    return parse_config(
        {
            "site": {"id": "s"},
            "broker": {
                "port": port,
                "reconnect_initial_s": 0.5,
                "reconnect_max_s": 1.0,
                **broker,
            },
            "daemon": {"state_dir": str(state)},
            "rooms": {"r1": room},
        }
    )


def command(cmd_id: str) -> bytes:
    return json.dumps({"v": 1, "id": cmd_id, "room": "r1", "action": "audio_pause"}).encode()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_command_sent_while_the_daemon_reconnects_gets_exactly_one_reply(
    persistent_broker: MosquittoBroker, tmp_path: Path, protocol: str
) -> None:
    """Defect 5: the daemon's session is persistent, so the broker queues the command."""
    clock = VirtualClock()
    broker = persistent_broker
    cfg = config(broker.port, tmp_path, protocol=protocol)
    reply_topic = f"{BASE}/r1/reply/nurse-1"
    async with Daemon(config=cfg, clock=clock) as daemon:
        link = daemon.link
        assert link is not None
        async with asyncio.timeout(10):
            await link.connected.wait()
        broker.stop()  # a graceful stop: the broker writes its sessions to disk
        async with asyncio.timeout(10):
            await link.lost.wait()
        broker.start()
        # The daemon is still waiting out its backoff (virtual clock): the command is
        # accepted by the broker while the daemon is not connected.
        async with MqttCollector(broker.port, [reply_topic], client_id="nurse-1") as nurse:
            await nurse.publish(f"{BASE}/r1/command/nurse-1", command("c1"))
            assert not link.connected.is_set()
            await clock.advance(1.5)  # backoff over: the daemon resumes its session
            await nurse.wait_for(lambda ms: len(ms) >= 1)
            # a second command, answered after the first: nothing else is on its way
            await nurse.publish(f"{BASE}/r1/command/nurse-1", command("c2"))
            await nurse.wait_for(lambda ms: any(m.json()["id"] == "c2" for m in ms))
        replies = [m.json() for m in nurse.messages]
    assert [(r["id"], r["ok"]) for r in replies] == [("c1", True), ("c2", True)]
    assert daemon.counters["commands_ok"] == 2


async def test_a_command_queued_while_no_daemon_ran_is_not_applied_at_start(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The session is resumed across reconnects, not from a previous run.

    An audio pause asked for while the daemon was stopped (an hour ago, perhaps)
    must not act when it starts; its sender got no reply and can ask again.
    """
    cfg = config(broker.port, tmp_path)
    reply_topic = f"{BASE}/r1/reply/nurse-1"
    async with Daemon(config=cfg, clock=RealClock()) as first:
        assert first.link is not None
        async with asyncio.timeout(10):
            await first.link.connected.wait()
    # stopped: its session (session_expiry_s 3600) stays on the broker and queues this
    async with MqttCollector(broker.port, [reply_topic], client_id="nurse-1") as nurse:
        await nurse.publish(f"{BASE}/r1/command/nurse-1", command("while-stopped"))
        async with Daemon(config=cfg, clock=RealClock()) as second:
            assert second.link is not None
            async with asyncio.timeout(10):
                await second.link.connected.wait()
            await nurse.publish(f"{BASE}/r1/command/nurse-1", command("after-start"))
            await nurse.wait_for(lambda ms: any(m.json()["id"] == "after-start" for m in ms))
    assert [m.json()["id"] for m in nurse.messages] == ["after-start"]
    assert second.counters["commands_ok"] == 1
    assert second.pipelines["r1"].engine.audio_paused_until is not None  # by after-start


async def test_a_redelivered_command_is_applied_once_and_decided_once(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A copy of a command (same client, same id, same bytes) is not applied again.

    It gets the same reply again, byte for byte: whoever re-sends has not heard it.
    """
    cfg = config(broker.port, tmp_path)
    reply_topic = f"{BASE}/r1/reply/nurse-1"
    async with Daemon(config=cfg, clock=RealClock()) as daemon:
        assert daemon.link is not None
        async with asyncio.timeout(10):
            await daemon.link.connected.wait()
        async with MqttCollector(broker.port, [reply_topic], client_id="nurse-1") as nurse:
            for _ in range(3):
                await nurse.publish(f"{BASE}/r1/command/nurse-1", command("c1"))
            # same id, other content: a different command, answered
            await nurse.publish(
                f"{BASE}/r1/command/nurse-1",
                json.dumps({"v": 1, "id": "c1", "room": "r1", "action": "bogus"}).encode(),
            )
            await nurse.publish(f"{BASE}/r1/command/nurse-1", command("c2"))
            await nurse.wait_for(lambda ms: any(m.json()["id"] == "c2" for m in ms))
    got = [(r["id"], r["ok"]) for r in (m.json() for m in nurse.messages)]
    assert got == [("c1", True)] * 3 + [("c1", False), ("c2", True)]
    assert len({m.payload for m in nurse.messages[:3]}) == 1  # one decision, sent thrice
    assert daemon.counters["commands_duplicate"] == 2
    assert daemon.counters["commands_ok"] == 2  # c1 once, c2


async def test_retained_state_and_status_are_fresh_after_a_broker_crash(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Defect 7: a crashed broker lost its retained store; the daemon sends it all again."""
    clock = VirtualClock()
    cfg = config(broker.port, tmp_path)
    state_topic, status_topic = f"{BASE}/r1/state", f"{BASE}/status/main"
    async with Daemon(config=cfg, clock=clock) as daemon:
        link = daemon.link
        assert link is not None
        async with MqttCollector(broker.port, [state_topic], client_id="display-1") as first:
            await first.wait_for(lambda ms: len(ms) >= 1)
        broker.kill()  # no persistence: the retained messages are gone
        async with asyncio.timeout(10):
            await link.lost.wait()
        broker.start()
        await clock.advance(1.5)  # reconnect; far less than the room's 5 s state refresh
        await wait_until(lambda: link.connects >= 2 and not link.pending_retained, within=10)
        async with MqttCollector(
            broker.port, [state_topic, status_topic], client_id="display-2"
        ) as second:
            got = await second.wait_for(lambda ms: {m.topic for m in ms} >= {state_topic})
            got = await second.wait_for(lambda ms: {m.topic for m in ms} >= {status_topic})
        now = clock.now()
    state = next(m for m in got if m.topic == state_topic)
    assert state.retain
    assert state.json()["t"] == pytest.approx(now, abs=2.0)  # stamped at the reconnect
    status = next(m for m in got if m.topic == status_topic)
    assert status.retain
    assert status.json()["status"] == "online"


def link_for(
    port: int,
    store: AlarmStore,
    clock: Any,
    *,
    feeds: Sequence[str] = (),
    on_message: Callable[[Any], None] | None = None,
    **endpoint: Any,
) -> MqttLink:
    return MqttLink(
        endpoint=BrokerEndpoint(host=LOOPBACK, port=port, **endpoint),
        client_id="roommon-t-main",
        store=store,
        clock=clock,
        subscriptions=[],
        on_message=on_message or (lambda _m: None),
        will_topic="roommon/v1/t/status/main",
        will_payload=b'{"status":"offline"}',
        online=lambda: b'{"status":"online"}',
        feed_subscriptions=feeds,
    )


ROWS = 4_000


async def test_a_connection_lost_during_redelivery_is_noticed_at_once(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Defect 6: the reader runs while the outbox is re-sent, so it sees the loss."""
    clock = VirtualClock()
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    # keepalive (the publish timeout) 15 s: noticing the loss must not wait for it
    link = link_for(broker.port, store, clock, keepalive_s=15, reconnect_initial_s=0.5)
    try:
        async with link:
            async with asyncio.timeout(10):
                await link.connected.wait()
            for i in range(ROWS):
                store.enqueue("roommon/v1/t/r1/alarm", b'{"n":%d}' % i)
            link.outbox_changed()
            await wait_until(lambda: store.pending_count() == 0, within=60)
            broker.kill()
            await wait_until(lambda: link.disconnects == 1)
            broker.start()
            async with MqttCollector(broker.port, ["roommon/v1/t/+/alarm"]) as c:
                await clock.advance(1.0)  # reconnect: the acknowledged rows are re-sent
                await c.wait_for(lambda ms: len(ms) >= 1, within=30)
                broker.pause()  # mid-redelivery: PUBACKs stop, then the connection dies
                broker.kill()
                await wait_until(lambda: link.disconnects == 2, within=5)
                resent = len(c.messages)
    finally:
        store.close()
    assert resent < ROWS  # the loss did happen during the redelivery


async def test_a_hung_broker_is_noticed_within_the_keepalive(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A broker that stops answering with its connection open: no PUBACK within the keepalive."""
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    link = link_for(broker.port, store, RealClock(), keepalive_s=2)
    try:
        async with link:
            async with asyncio.timeout(10):
                await link.connected.wait()
            broker.pause()
            store.enqueue("roommon/v1/t/r1/alarm", b"{}")
            link.outbox_changed()
            # the unacknowledged publish times out after the keepalive (2 s; + slack), before
            # paho's own keepalive ping (2-3 s of silence, then another keepalive) would
            await wait_until(lambda: link.disconnects == 1, within=3.2)
            broker.resume()
            async with asyncio.timeout(10):
                await link.connected.wait()
            await wait_until(lambda: store.pending_count() == 0)
    finally:
        store.close()


async def test_the_link_fails_over_to_the_next_broker_address(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    other = MosquittoBroker()
    other.start()
    store = AlarmStore(tmp_path / "roommon.sqlite3")
    feeds: list[str] = []
    link = link_for(
        broker.port,
        store,
        RealClock(),
        feeds=["roommon/v1/t/r1/feed/+"],
        on_message=lambda m: feeds.append(str(m.topic)),
        failover=((LOOPBACK, other.port),),
        reconnect_initial_s=5.0,
        reconnect_max_s=5.0,
    )
    try:
        async with link:
            async with asyncio.timeout(10):
                await link.connected.wait()
            assert link.url == link.feed_url == broker.url
            async with MqttCollector(other.port, ["roommon/v1/t/+/alarm"]) as c:
                broker.kill()
                # at once to the next address: no 5 s backoff between the nodes of a round;
                # both connections, the control one and the feed one
                await wait_until(lambda: link.connects == 2, within=4)
                await wait_until(lambda: link.feed_connects == 2, within=4)
                assert link.url == link.feed_url == other.url
                store.enqueue("roommon/v1/t/r1/alarm", b'{"after":"failover"}')
                link.outbox_changed()
                await c.wait_for(lambda ms: len(ms) >= 1)
                await c.publish("roommon/v1/t/r1/feed/spo2", b"{}", qos=1)
                await wait_until(lambda: feeds == ["roommon/v1/t/r1/feed/spo2"])
    finally:
        store.close()
        other.close()


async def test_a_subscriber_keeps_its_session_across_a_broker_restart(
    persistent_broker: MosquittoBroker,
) -> None:
    """``roommon record``'s subscription (and the flap test's display): Mosquitto 2.0
    keeps a session across its restart only if it was begun without clean start."""
    import io

    from roommon.transports.subscriber import FeedRecorder

    broker = persistent_broker
    clock = VirtualClock()
    got: list[bytes] = []
    recorder = FeedRecorder(
        target=BrokerEndpoint(host=LOOPBACK, port=broker.port),
        filters=["roommon/v1/s/+/alarm"],
        sink=lambda _topic, payload, _t: got.append(payload),
        clock=clock,
        err=io.StringIO(),
        client_id="display-9",
    )
    async with recorder:
        broker.stop()
        await wait_until(lambda: not recorder.connected)
        broker.start()
        # published while the recorder waits out its backoff (virtual clock)
        async with MqttCollector(broker.port, [], client_id="pub") as pub:
            await pub.publish("roommon/v1/s/r1/alarm", b'{"while":"away"}')
        await clock.advance(2.0)
        async with asyncio.timeout(10):
            await recorder.wait_for(lambda r: r.received >= 1)
    assert got == [b'{"while":"away"}']


async def test_a_lost_feed_connection_is_a_feed_alarm_sent_on_the_control_connection(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The feed connection alone is lost (another client takes its id) and stays down past
    its grace: the room's MQTT feed alarms as disconnected, which the control connection
    (still up) delivers at once; back, the alarm clears."""
    clock = VirtualClock()
    # a reconnect backoff far beyond the grace: the feed connection stays down meanwhile
    cfg = config(broker.port, tmp_path, reconnect_initial_s=30.0, reconnect_max_s=30.0)
    async with Daemon(config=cfg, clock=clock) as daemon:
        link = daemon.link
        assert link is not None
        async with asyncio.timeout(10):
            await link.connected.wait()
        async with MqttCollector(broker.port, [f"{BASE}/+/alarm"]) as c:
            intruder = MqttCollector(broker.port, [], client_id="roommon-s-main-feed")
            async with intruder:  # takes over the feed connection's client id
                await wait_until(lambda: link.feed_disconnects == 1)
                await clock.advance(2.5)  # past the grace (2 s), not the backoff
                got = await c.wait_for(
                    lambda ms: any(m.json()["code"] == "feed.disconnected" for m in ms)
                )
            raised = next(m.json() for m in got if m.json()["code"] == "feed.disconnected")
            assert (raised["room"], raised["feed"], raised["transition"]) == (
                "r1",
                "spo2",
                "raised",
            )
            assert link.disconnects == 0  # the control connection was never lost
            await clock.advance(30.0)  # the backoff ends: the feed connection is back
            await c.wait_for(
                lambda ms: (
                    [m.json()["transition"] for m in ms if m.json()["code"] == "feed.disconnected"]
                    == ["raised", "cleared"]
                ),
                within=10,
            )

