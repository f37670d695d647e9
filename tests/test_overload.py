"""Back-pressure that is an alarm: a daemon behind real time, or shedding input, says so.

Through a real Mosquitto: feed data arriving seconds behind real time raises
the high-priority technical alarm ``daemon.overloaded`` in that room (saying
how far behind), the retained status carries the lag, and the alarm clears
once the input is current again. The bounded inbound queue sheds the oldest
message when full, counted per room and feed, in the status and the alarm.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest

from roommon.config import Config, parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.runtime.daemon import Daemon
from roommon.runtime.inbound import Inbound, InboundQueue, InputLag
from roommon.testing import CaptureOutput, MosquittoBroker, MqttCollector, Received
from roommon.testing.collector import stalled_reading
from roommon.testing.flap import wait_until
from roommon.wire.registry import SCHEMA_DIR

SITE = "s"
BASE = f"roommon/v1/{SITE}"


def config(port: int, state_dir: Path, *, stale_s: float = 60, **daemon: Any) -> Config:
    return parse_config(
        {
            "site": {"id": SITE},
            "broker": {"host": "127.0.0.1", "port": port, "reconnect_initial_s": 0.05},
            "daemon": {
                "state_dir": str(state_dir),
                "tick_s": 0.2,
                "heartbeat_s": 0.5,
                "overload_lag_s": 1.0,
                **daemon,
            },
            "rooms": {
                room: {
                    "feeds": {"spo2": {"kind": "spo2", "stale_s": stale_s}},
                    "alarms": {"daemon.overloaded": {"clear_delay_s": 0.4}},
                }
                for room in ("r1", "r2")
            },
        }
    )


def reading(seq: int, t: float) -> bytes:
    body = {"v": 1, "kind": "spo2", "seq": seq, "t": t, "values": {"spo2": 97.0}}
    return json.dumps(body).encode()


def test_the_queue_is_bounded_and_sheds_the_oldest_counted_per_feed() -> None:
    q = InboundQueue(capacity=100)
    for i in range(250):
        q.put(Inbound("r1" if i % 5 else "r2", "spo2" if i % 2 else "ekg", b"%d" % i, float(i)))
    assert (q.queued, q.high_water, q.shed_total) == (100, 100, 150)
    assert sum(q.shed.values()) == 150
    assert q.shed[("r2", "ekg")] == sum(1 for i in range(150) if i % 5 == 0 and i % 2 == 0)
    taken = q.take(1000)
    assert [m.payload for m in taken] == [b"%d" % i for i in range(150, 250)]  # newest kept
    assert not q.ready.is_set()


def test_a_gateway_clock_off_by_a_constant_is_not_lag_but_data_arriving_later_is() -> None:
    lag = InputLag()
    for i in range(10):  # a gateway an hour behind, its data on time
        assert lag.sample("r1", "spo2", offset=3600.0 + 0.01 * (i % 3), waited=0.0, mono=i) < 0.05
    late = lag.sample("r1", "spo2", offset=3605.0, waited=0.0, mono=10.0)
    assert late == pytest.approx(5.0, abs=0.05)
    assert lag.sample("r2", "spo2", offset=0.0, waited=0.7, mono=10.0) == pytest.approx(0.7)
    assert lag.roll() == {"r1": pytest.approx(5.0, abs=0.05), "r2": pytest.approx(0.7)}
    assert lag.lag_s == pytest.approx(5.0, abs=0.05)
    assert lag.roll() == {}


@pytest.fixture
async def daemon(broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Daemon]:
    async with Daemon(config=config(broker.port, tmp_path), clock=RealClock()) as d:
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        yield d


def overloaded(room: str, transition: str) -> Any:
    def pred(ms: list[Received]) -> bool:
        return any(
            m.topic == f"{BASE}/{room}/alarm"
            and m.json()["code"] == "daemon.overloaded"
            and m.json()["transition"] == transition
            for m in ms
        )

    return pred


@pytest.mark.broker
async def test_input_behind_real_time_raises_daemon_overloaded_and_it_clears(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        for seq in range(1, 3):  # both rooms current...
            for room in ("r1", "r2"):
                await c.publish(f"{BASE}/{room}/feed/spo2", reading(seq, time.time()), qos=0)
        for seq in range(3, 6):  # ...then r1's data arrives 5 s late
            await c.publish(f"{BASE}/r1/feed/spo2", reading(seq, time.time() - 5.0), qos=0)
            await c.publish(f"{BASE}/r2/feed/spo2", reading(seq, time.time()), qos=0)
        msgs = await c.wait_for(overloaded("r1", "raised"))
        event = next(
            m.json()
            for m in msgs
            if m.topic == f"{BASE}/r1/alarm" and m.json()["code"] == "daemon.overloaded"
        )
        jsonschema.validate(
            event, json.loads((SCHEMA_DIR / "alarm_event.schema.json").read_text())
        )
        assert (event["priority"], event["kind"]) == ("high", "technical")
        assert "s behind real time" in event["message"]
        assert event["value"] >= 4.5  # how far behind, in seconds
        assert event["value"] < 30

        def lagging(ms: list[Received]) -> bool:
            return any(
                m.topic == f"{BASE}/status/main" and "r1" in m.json()["overloaded"] for m in ms
            )

        status = next(m.json() for m in reversed(await c.wait_for(lagging)) if lagging([m]))
        jsonschema.validate(status, json.loads((SCHEMA_DIR / "status.schema.json").read_text()))
        assert status["input_lag_s"] >= 4.5
        assert status["overloaded"] == ["r1"]
        assert not overloaded("r2", "raised")(c.messages)

        for seq in range(6, 9):  # current again: the alarm ends
            await c.publish(f"{BASE}/r1/feed/spo2", reading(seq, time.time()), qos=0)
        await c.wait_for(overloaded("r1", "cleared"))
        assert daemon.overloaded == set()
        assert not overloaded("r2", "raised")(c.messages)


async def test_shed_messages_are_counted_per_feed_and_alarm_the_room(tmp_path: Path) -> None:
    clock = VirtualClock()
    cfg = config(1883, tmp_path, inbound_queue_max=100)  # no broker: use_broker=False
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        # 300 messages reach the daemon before it gets to run: the queue keeps 100.
        for seq in range(1, 301):
            topic = f"{BASE}/r1/feed/spo2"
            d.handle_message(aiomqtt.Message(topic, reading(seq, clock.now()), 0, False, 0, None))
        assert d.inbound.queued == 100
        await clock.advance(0.2)  # the queue drains, then a tick
        assert d.inbound.shed == {("r1", "spo2"): 200}
        status = json.loads(d.status_payload("online"))
        assert status["shed"] == {"r1/spo2": 200}
        assert status["inbound_high_water"] == 100
        (raised,) = [e for e in capture.events if e.code == "daemon.overloaded"]
        assert raised.room == "r1"
        assert "200 feed messages shed" in raised.message
        assert d.pipelines["r1"].feeds["spo2"].received == 100  # the newest 100
        await clock.advance(1.0)  # nothing shed since and no lag: it clears
        assert [e.transition for e in capture.events if e.code == "daemon.overloaded"] == [
            "raised",
            "cleared",
        ]


async def test_the_first_shed_message_raises_overloaded_before_the_next_tick(
    tmp_path: Path,
) -> None:
    # An overloaded daemon reaches its next tick late: the onset is judged by the drain.
    clock = VirtualClock()
    cfg = config(1883, tmp_path, inbound_queue_max=100)  # tick 0.2 s
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        await clock.advance(0.05)  # between ticks
        for seq in range(1, 301):
            topic = f"{BASE}/r1/feed/spo2"
            d.handle_message(aiomqtt.Message(topic, reading(seq, clock.now()), 0, False, 0, None))
        await clock.advance(0.01)  # the drain runs; the next tick is 0.14 s away
        raised = [e for e in capture.events if e.code == "daemon.overloaded"]
        assert [e.room for e in raised] == ["r1"]
        assert "200 feed messages shed" in raised[0].message


FLOOD = 10_000  # spo2 readings arriving at once


@pytest.mark.broker
async def test_a_feed_flood_sheds_counted_and_overloaded_reaches_a_subscriber(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Feeds flood the feed connection (a backlog arriving at once, as when the daemon
    was too busy to read): the bounded queue sheds, each message counted, and
    ``daemon.overloaded`` reaches an outside subscriber over the control connection;
    it clears once the daemon has caught up."""
    cfg = config(broker.port, tmp_path, inbound_queue_max=100)
    async with Daemon(config=cfg, clock=RealClock()) as d:
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        async with MqttCollector(broker.port, [f"{BASE}/+/alarm"]) as c:
            with stalled_reading(d.link.feed_client):  # the backlog builds up unread...
                now = time.time()
                for seq in range(1, FLOOD + 1):
                    await c.publish(f"{BASE}/r1/feed/spo2", reading(seq, now), qos=0)
                await c.publish(f"{BASE}/r2/feed/spo2", reading(1, now), qos=1)  # all routed
            # ...and arrives at once
            await c.wait_for(overloaded("r1", "raised"), within=30)
            feed = d.pipelines["r1"].feeds["spo2"]
            await wait_until(lambda: feed.received + d.inbound.shed_total >= FLOOD, within=30)
            shed = d.inbound.shed[("r1", "spo2")]
            assert shed > 0
            assert feed.received + shed == FLOOD  # every message accepted or counted as shed
            status = json.loads(d.status_payload("online"))
            assert status["shed"] == {"r1/spo2": shed}
            # nothing behind and nothing shed any more: it clears
            await c.wait_for(overloaded("r1", "cleared"), within=30)
        assert not overloaded("r2", "raised")(c.messages)


async def test_a_stuck_drain_is_overload_by_what_waits_in_the_queue(tmp_path: Path) -> None:
    """Nothing processed shows no lag: the time the oldest queued message has waited is
    the input lag too, of every room, so a drain that is stuck (or far behind) alarms."""
    clock = VirtualClock()
    cfg = config(1883, tmp_path)  # overload_lag_s 1.0, tick 0.2 s
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        (drain,) = [t for t in d._tasks if t.get_name() == "roommon-inbound"]
        drain.cancel()  # the drain is stuck from here on
        topic = f"{BASE}/r1/feed/spo2"
        d.handle_message(aiomqtt.Message(topic, reading(1, clock.now()), 0, False, 0, None))
        await clock.advance(1.5)
        raised = [e for e in capture.events if e.code == "daemon.overloaded"]
        assert sorted(e.room for e in raised) == ["r1", "r2"]
        assert all("behind real time" in e.message for e in raised)
        assert json.loads(d.status_payload("online"))["input_lag_s"] >= 1.0


def flood(d: Daemon, room: str, seqs: range, t: float) -> None:
    """The messages of one read of the feed connection (the daemon's own subscriber's path)."""
    topic = f"{BASE}/{room}/feed/spo2".encode()
    d.handle_feed_messages([(topic, reading(seq, t)) for seq in seqs])


async def test_a_skip_made_of_messages_the_daemon_shed_is_not_a_seq_gap(tmp_path: Path) -> None:
    """The daemon's own shedding is counted as shed (and is daemon.overloaded), not blamed on
    the feed: at twice the sustainable load, feed.seq_gap of every feed was an alarm storm.
    A skip longer than what was shed lost data upstream too: that is still a gap."""
    clock = VirtualClock()
    cfg = config(1883, tmp_path, inbound_queue_max=100)
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        flood(d, "r1", range(1, 11), clock.now())
        await clock.advance(0.05)
        flood(d, "r1", range(11, 311), clock.now())  # 11..210 are shed
        await clock.advance(0.05)
        feed = d.pipelines["r1"].feeds["spo2"]
        assert (feed.received, feed.shed) == (110, 200)
        assert feed.gaps == 0
        assert feed.gaps_shed == 1
        await clock.advance(0.5)
        assert not [e for e in capture.events if e.code == "feed.seq_gap"]
        assert [e.room for e in capture.events if e.code == "daemon.overloaded"] == ["r1"]
        flood(d, "r1", range(321, 322), clock.now())  # 311..320 never came: lost upstream
        await clock.advance(0.05)
        assert feed.gaps == 1
        await clock.advance(0.2)
        assert [e.transition for e in capture.events if e.code == "feed.seq_gap"] == ["raised"]


async def test_a_feed_whose_messages_the_daemon_shed_is_neither_silent_nor_never_seen(
    tmp_path: Path,
) -> None:
    """Every message of r1 is shed (a flood of r2 behind it fills the queue each time): r1's
    feed was sending all along, so no feed.never_seen or feed.silent; daemon.overloaded
    says what happened to its data."""
    clock = VirtualClock()
    cfg = config(1883, tmp_path, inbound_queue_max=100, stale_s=1.0)
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        seq2 = 1
        for seq in range(1, 31):  # 3 s, at 10 Hz
            flood(d, "r1", range(seq, seq + 1), clock.now())
            flood(d, "r2", range(seq2, seq2 + 150), clock.now())  # sheds r1's, and 49 of r2's
            seq2 += 150
            await clock.advance(0.1)
        feed = d.pipelines["r1"].feeds["spo2"]
        assert (feed.received, feed.shed) == (0, 30)
        codes = {(e.room, e.code) for e in capture.events}
        assert ("r1", "daemon.overloaded") in codes
        assert ("r1", "feed.never_seen") not in codes
        assert ("r1", "feed.silent") not in codes
        assert ("r2", "feed.seq_gap") not in codes
        # each round's skip in r2's count is what was shed (not the first: 1..49 never seen)
        assert d.pipelines["r2"].feeds["spo2"].gaps_shed == 29


async def test_data_processed_late_raises_overloaded_before_the_next_tick(tmp_path: Path) -> None:
    """A daemon whose reading falls behind keeps its backlog in the socket and the broker,
    not in its queue (no queue wait, nothing shed): the lag of the data it processes is
    the onset, judged by the drain, not left to a tick an overloaded daemon reaches late."""
    clock = VirtualClock()
    cfg = config(1883, tmp_path)  # overload_lag_s 1.0, tick 0.2 s
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        flood(d, "r1", range(1, 2), clock.now())  # current: the feed's clock baseline
        await clock.advance(0.25)  # a tick, then between ticks
        topic = f"{BASE}/r1/feed/spo2"
        late = reading(2, clock.now() - 1.5)  # sampled 1.5 s ago, processed now
        d.handle_message(aiomqtt.Message(topic, late, 0, False, 0, None))
        await clock.advance(0.01)  # the drain runs; the next tick is 0.14 s away
        raised = [e for e in capture.events if e.code == "daemon.overloaded"]
        assert [e.room for e in raised] == ["r1"]
        assert "1.5 s behind" in raised[0].message
