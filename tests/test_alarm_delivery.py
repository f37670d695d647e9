"""No alarm event is lost: a real broker is SIGKILLed and restarted mid-stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.core.model import NumericReading, SignalKind
from roommon.runtime.daemon import Daemon
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.wire.registry import SCHEMA_DIR

pytestmark = pytest.mark.broker

ROOMS = ("r1", "r2")
TOTAL_EVENTS = 1200  # raise/clear pairs across both rooms


def config(port: int, state: Path) -> Any:
    room = {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
        "checks": {"numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}},
    }
    return parse_config(
        {
            "site": {"id": "s"},
            "broker": {"port": port, "reconnect_initial_s": 1.0, "reconnect_max_s": 2.0},
            "daemon": {"state_dir": str(state)},
            "rooms": dict.fromkeys(ROOMS, room),
        }
    )


def unique_in_order(messages: list[Received], room: str) -> list[dict[str, Any]]:
    """First copy of each event of a room, in arrival order (subscribers dedupe on event_id)."""
    seen: set[str] = set()
    out = []
    for m in messages:
        if m.topic != f"roommon/v1/s/{room}/alarm":
            continue
        e = m.json()
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            out.append(e)
    return out


async def test_every_event_arrives_in_order_across_a_broker_crash(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    # The daemon's clock is virtual: the test decides when its reconnect backoff ends,
    # so the second subscriber is in place before the outbox is flushed.
    clock = VirtualClock()
    validator = jsonschema.Draft202012Validator(
        json.loads((SCHEMA_DIR / "alarm_event.schema.json").read_text())
    )
    cfg = config(broker.port, tmp_path / "state")
    seqs = dict.fromkeys(ROOMS, 0)

    def produce(n_events: int) -> None:
        for i in range(n_events // 2):
            room = ROOMS[i % 2]
            for value in (80.0, 97.0):  # one raise, one clear
                seqs[room] += 1
                daemon.pipelines[room].ingest(
                    NumericReading(
                        room=room,
                        feed="spo2",
                        kind=SignalKind.SPO2,
                        t=clock.now(),
                        values={"spo2": value},
                        seq=seqs[room],
                    )
                )

    async with Daemon(config=cfg, clock=clock) as daemon:
        link = daemon.link
        assert link is not None
        async with asyncio.timeout(10):
            await link.connected.wait()
        first = MqttCollector(broker.port, ["roommon/v1/s/+/alarm"], client_id="display-1")
        async with first:
            produce(TOTAL_EVENTS // 2)
            # let some of it go out, then pull the plug mid-stream
            await first.wait_for(lambda ms: len(ms) >= 100)
            broker.kill()
            produce(TOTAL_EVENTS // 2)  # the room goes on while the broker is gone
            async with asyncio.timeout(10):
                await link.lost.wait()
        assert daemon.store.pending_count() > 0
        broker.start()
        second = MqttCollector(broker.port, ["roommon/v1/s/+/alarm"], client_id="display-2")
        async with second:
            await clock.advance(3.0)  # backoff over: the daemon reconnects and flushes
            expected = {r: daemon.engine_seq(r) for r in ROOMS}

            ids: dict[str, set[str]] = {r: set() for r in ROOMS}
            for e in first.messages:
                ids[e.json()["room"]].add(e.json()["event_id"])
            scanned = 0

            def complete(ms: list[Received]) -> bool:
                nonlocal scanned
                for m in ms[scanned:]:
                    e = m.json()
                    ids[e["room"]].add(e["event_id"])
                scanned = len(ms)
                return all(len(ids[r]) == expected[r] for r in ROOMS)

            await second.wait_for(complete, within=60)
            # The feed connection came back too: its feed.disconnected events may be logged
            # after the snapshot above. Whatever the log holds now must arrive as well.
            logged_events = daemon.store.events()
            logged = {e.event_id for e in logged_events}
            last = {r: max(e.seq for e in logged_events if e.room == r) for r in ROOMS}

            def covers(ms: list[Received]) -> bool:
                complete(ms)
                return logged <= set().union(*ids.values())

            await second.wait_for(covers, within=60)
        limits = [e for e in logged_events if e.code != "feed.disconnected"]
    # Besides the limit alarms, the spo2 feeds may have alarmed as disconnected: the feed
    # connection was lost too (whether past its grace depends on the reconnect).
    assert len(limits) == TOTAL_EVENTS
    got = first.messages + second.messages
    for room in ROOMS:
        events = [e for e in unique_in_order(got, room) if e["seq"] <= last[room]]
        assert [e["seq"] for e in events] == list(range(1, last[room] + 1)), room
        for event in events:
            validator.validate(event)
    received_ids = {
        e["event_id"] for r in ROOMS for e in unique_in_order(got, r) if e["seq"] <= last[r]
    }
    assert received_ids == logged
    # duplicates, if any, are byte-identical copies of the same event
    by_id: dict[str, bytes] = {}
    for m in got:
        event_id = m.json()["event_id"]
        assert by_id.setdefault(event_id, m.payload) == m.payload
