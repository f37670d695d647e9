"""A clustered broker loses a node mid-stream: a real 3-node NATS cluster (issue 12, item 6).

Two daemon instances share the site, each with its own rooms, instance id
and state dir, connected to different nodes (MQTT 3.1.1: NATS speaks no
other), each with the two other nodes as its failover list. A persistent QoS 1
subscriber sits on the third node. The node one daemon uses is SIGKILLed
while both stream alarm events: that daemon fails over to another node within
``reconnect_max_s``, and the subscriber gets every event of both, in order
per room.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.core.model import NumericReading, SignalKind
from roommon.runtime.daemon import Daemon
from roommon.testing.broker import LOOPBACK
from roommon.testing.flap import wait_until
from roommon.testing.nats import NatsCluster, NatsNode
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.subscriber import FeedRecorder

#: NATS elects new JetStream stream and consumer leaders 4-9 s after a node is lost; until
#: then no node accepts a QoS 1 publish or resumes a session. The keepalive (the link's
#: publish timeout) and the reconnect cap are set above that, as docs/deployment.md says.
RECONNECT_MAX_S = 15.0
KEEPALIVE_S = 10
EVENTS_PER_ROOM = 300  # raise/clear events, one every 20 ms
KILL_AFTER = 100  # events of the victim's room seen by the subscriber before the SIGKILL


@pytest.fixture(scope="module")
def cluster() -> Iterator[NatsCluster]:
    c = NatsCluster()
    try:
        c.start()
        yield c
    finally:
        c.close()


def daemon_config(
    instance: str, rooms: list[str], node: NatsNode, others: list[NatsNode], state: Path
) -> Any:
    room = {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
        "checks": {"numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}},
    }
    return parse_config(
        {
            "site": {"id": "s"},
            "broker": {
                "host": LOOPBACK,
                "port": node.mqtt_port,
                "failover": [f"{LOOPBACK}:{o.mqtt_port}" for o in others],
                "protocol": "3.1.1",
                "keepalive_s": KEEPALIVE_S,
                "reconnect_initial_s": 0.5,
                "reconnect_max_s": RECONNECT_MAX_S,
            },
            "daemon": {"state_dir": str(state), "instance": instance},
            "rooms": dict.fromkeys(rooms, room),
        }
    )


async def produce(daemon: Daemon, room: str, stop_after: int) -> None:
    """A reading every 20 ms, alternately below and above the limit: one event each."""
    clock = RealClock()
    for seq in range(1, stop_after + 1):
        daemon.pipelines[room].ingest(
            NumericReading(
                room=room,
                feed="spo2",
                kind=SignalKind.SPO2,
                t=clock.now(),
                values={"spo2": 80.0 if seq % 2 else 97.0},
                seq=seq,
            )
        )
        await clock.sleep(0.02)


@pytest.fixture
async def subscriber(
    cluster: NatsCluster,
) -> AsyncIterator[tuple[FeedRecorder, dict[str, list[dict[str, Any]]]]]:
    node = cluster.nodes[2]
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def sink(_topic: str, payload: bytes, _t: float) -> None:
        e = json.loads(payload)
        events[e["room"]].append(e)

    recorder = FeedRecorder(
        target=BrokerEndpoint(host=LOOPBACK, port=node.mqtt_port, protocol="3.1.1"),
        filters=["roommon/v1/s/+/alarm"],
        sink=sink,
        clock=RealClock(),
        err=io.StringIO(),
        client_id="nats-display",
    )
    async with recorder:
        yield recorder, events


async def test_a_daemon_fails_over_when_its_nats_node_is_killed_and_no_event_is_lost(
    cluster: NatsCluster,
    subscriber: tuple[FeedRecorder, dict[str, list[dict[str, Any]]]],
    tmp_path: Path,
) -> None:
    n1, n2, n3 = cluster.nodes
    _recorder, events = subscriber
    clock = RealClock()
    cfg_a = daemon_config("a", ["a1"], n1, [n2, n3], tmp_path / "a")
    cfg_b = daemon_config("b", ["b1"], n2, [n3, n1], tmp_path / "b")
    async with Daemon(config=cfg_a, clock=clock) as a, Daemon(config=cfg_b, clock=clock) as b:
        link_a, link_b = a.link, b.link
        assert link_a is not None
        assert link_b is not None
        async with asyncio.timeout(30):
            await link_a.connected.wait()
            await link_b.connected.wait()
        assert (link_a.url, link_b.url) == (n1.url, n2.url)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce(a, "a1", EVENTS_PER_ROOM))
            tg.create_task(produce(b, "b1", EVENTS_PER_ROOM))
            await wait_until(lambda: len(events["a1"]) >= KILL_AFTER, within=30)
            connects = link_a.connects
            cluster.kill(n1)  # daemon a's node, mid-stream
            killed = clock.monotonic()
            await wait_until(lambda: link_a.connects > connects, within=60)
            failover_s = clock.monotonic() - killed
            assert link_a.url in (n2.url, n3.url)
            # the feed connection failed over too, to a node that is alive (the two may
            # race to different nodes while the cluster elects; it serves both alike)
            await wait_until(lambda: link_a.connected.is_set(), within=60)
            assert link_a.feed_url in (n2.url, n3.url)
        expected = {"a1": a.engine_seq("a1"), "b1": b.engine_seq("b1")}

        def complete() -> bool:
            return all(
                len({e["event_id"] for e in events[room]}) >= expected[room] for room in expected
            )

        await wait_until(complete, within=60)
    print(f"failed over after {failover_s:.2f} s")
    # The documented bound (docs/deployment.md), as in the broker-flap test: the backoff's
    # cap plus one connection attempt, which waits up to the keepalive for a node still
    # electing (usually 8-10 s here; 20.6 s once, when the first node tried was electing
    # and the second's CONNACK came only after the keepalive).
    bound = RECONNECT_MAX_S + KEEPALIVE_S
    assert failover_s <= bound, f"failed over after {failover_s:.2f} s (bound {bound} s)"
    # Daemon a's feed connection was down for the failover: if for longer than its grace
    # (NATS may take seconds), a1's feed alarmed as disconnected and cleared since; b1's
    # node was never lost.
    lost = [
        (e["room"], e["transition"])
        for r in expected
        for e in events[r]
        if e["code"] == "feed.disconnected"
    ]
    assert set(lost) in (set(), {("a1", "raised"), ("a1", "cleared")})
    for room, n in expected.items():
        limits = {e["event_id"] for e in events[room] if e["code"] != "feed.disconnected"}
        assert len(limits) == EVENTS_PER_ROOM, room
        seen: set[str] = set()
        first_copies = []
        for e in events[room]:
            if e["event_id"] not in seen:
                seen.add(e["event_id"])
                first_copies.append(e["seq"])
        assert first_copies == list(range(1, n + 1)), room
