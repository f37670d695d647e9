"""Sharding: several daemon instances share one site on one real Mosquitto, each its own rooms.

Each instance subscribes only to its rooms' feed and command topics, so it
never sees another instance's traffic: no ``message_unknown_room`` warnings,
no counters of foreign messages, no cross-talk in alarms, state or replies.
A site-wide consumer (``+`` filters, as ``roommon timers``, ``record`` and the
displays use) still sees every room.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.runtime.daemon import Daemon
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.testing.logs import capture_logs

pytestmark = pytest.mark.broker

SITE = "s"
BASE = f"roommon/v1/{SITE}"
SHARDS = {"a": ["r1", "r2"], "b": ["r3"]}


def config(port: int, state_dir: Path, instance: str, rooms: list[str]) -> dict[str, Any]:
    return {
        "site": {"id": SITE},
        "broker": {"host": "127.0.0.1", "port": port, "reconnect_initial_s": 0.05},
        "daemon": {"instance": instance, "state_dir": str(state_dir), "heartbeat_s": 0.5},
        "rooms": {
            room: {
                "feeds": {"spo2": {"kind": "spo2"}},
                "checks": {
                    "numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}
                },
            }
            for room in rooms
        },
    }


def reading(seq: int, spo2: float) -> bytes:
    t = 1_767_225_600.0 + seq
    body = {"v": 1, "kind": "spo2", "seq": seq, "t": t, "values": {"spo2": spo2}}
    return json.dumps(body).encode()


async def test_two_instances_share_a_site_without_cross_talk(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        async with AsyncExitStack() as stack:
            daemons: dict[str, Daemon] = {}
            for instance, rooms in SHARDS.items():
                cfg = parse_config(config(broker.port, tmp_path / instance, instance, rooms))
                d = await stack.enter_async_context(Daemon(config=cfg, clock=RealClock()))
                assert d.link is not None
                async with asyncio.timeout(10):
                    await d.link.connected.wait()
                daemons[instance] = d
            site = await stack.enter_async_context(
                MqttCollector(broker.port, [f"{BASE}/#"])
            )
            for room in ("r1", "r2", "r3"):
                await site.publish(f"{BASE}/{room}/feed/spo2", reading(1, 97.0))
                await site.publish(f"{BASE}/{room}/feed/spo2", reading(2, 82.0))
            await site.publish(
                f"{BASE}/r3/command/nurse1",
                b'{"v": 1, "id": "p1", "room": "r3", "action": "audio_pause", "duration_s": 60}',
            )

            def every_room_alarmed(ms: list[Received]) -> bool:
                rooms = {m.topic.split("/")[3] for m in ms if m.topic.endswith("/alarm")}
                replied = any(m.topic == f"{BASE}/r3/reply/nurse1" for m in ms)
                return rooms == {"r1", "r2", "r3"} and replied

            msgs = await site.wait_for(every_room_alarmed)
            (reply,) = [m.json() for m in msgs if m.topic == f"{BASE}/r3/reply/nurse1"]
            assert reply["ok"]

            def both_online(ms: list[Received]) -> bool:
                return {
                    m.json()["instance"]
                    for m in ms
                    if m.topic.startswith(f"{BASE}/status/") and m.json()["status"] == "online"
                } == set(SHARDS)

            await site.wait_for(both_online)
            for instance, rooms in SHARDS.items():
                d = daemons[instance]
                assert set(d.pipelines) == set(rooms)
                assert d.counters["feed_accepted"] == 2 * len(rooms)  # its rooms' only
                for foreign in ("unknown_room", "unroutable", "unknown_feed"):
                    assert d.counters[foreign] == 0, (instance, foreign)
                status = next(
                    m.json() for m in reversed(msgs) if m.topic == f"{BASE}/status/{instance}"
                )
                assert status["rooms"] == rooms
                for room in rooms:  # each room's alarm came from its own instance's log
                    assert [e.code for e in d.store.events(room=room)] == ["limit.spo2_low"]
            # a site-wide consumer sees every room's retained state
            states = {m.topic.split("/")[3] for m in msgs if m.topic.endswith("/state")}
            assert states == {"r1", "r2", "r3"}
            alarms = [m.json() for m in msgs if m.topic.endswith("/alarm")]
            assert sorted(a["room"] for a in alarms) == ["r1", "r2", "r3"]  # once each
    assert logs.named("message_unknown_room") == []
    assert logs.named("feed_unknown") == []
