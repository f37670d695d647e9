"""``roommon timers --once`` against a real Mosquitto broker, and the renderer."""

from __future__ import annotations

import argparse
import asyncio
import io

import aiomqtt
import pytest

from roommon.cli.timers import add_parser, render, run_timers
from roommon.core.clock import VirtualClock
from roommon.recovery.plan import RecoveryPlan
from roommon.recovery.timer import RecoveryTimer
from roommon.testing import LOOPBACK, MosquittoBroker
from roommon.wire.timer import TimerAlarm, TimerMessage
from roommon.wire.topics import Topics

SITE = "clinic"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="roommon")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def recovery_snapshot(clock: VirtualClock) -> TimerMessage:
    """or1: 48 min into recovery, check 1 done, check 2 forgotten (overdue), an alarm."""
    s = clock.now() - 2880
    timer = RecoveryTimer(room="or1")
    timer.start(at=s, now=s, plan=RecoveryPlan(), procedure="kyphoplasty", by="nurse")
    timer.check_done(check_no=1, at=s + 950, by="nurse-anna")
    timer.advance(clock.now())
    timer.note_alarms([TimerAlarm(code="spo2.desat", priority="high", since=s + 2800)])
    return timer.snapshot(site=SITE, now=clock.now())


async def publish_retained(port: int, messages: dict[str, bytes]) -> None:
    async with aiomqtt.Client(LOOPBACK, port, identifier="test-publisher") as client:
        for topic, payload in messages.items():
            await client.publish(topic, payload, qos=1, retain=True)


@pytest.mark.broker
def test_once_prints_every_retained_room(broker: MosquittoBroker) -> None:
    clock = VirtualClock()
    idle = RecoveryTimer(room="or2").snapshot(site=SITE, now=clock.now())
    asyncio.run(
        publish_retained(
            broker.port,
            {
                Topics(SITE).timer("or1"): recovery_snapshot(clock).model_dump_json().encode(),
                Topics(SITE).timer("or2"): idle.model_dump_json().encode(),
                # Another site's room must not show up.
                Topics("elsewhere").timer("or9"): idle.model_dump_json().encode(),
            },
        )
    )
    out = io.StringIO()
    args = parse(["timers", "--broker", broker.url, "--site", SITE, "--once", "--utc"])
    assert run_timers(args, out=out, clock=clock) == 0
    text = out.getvalue()
    assert "2 room(s)" in text
    assert "or1: CONFIRMED (kyphoplasty)" in text
    assert "or2: IDLE" in text
    assert "or9" not in text
    # Started 00:00 - 48 min = 23:12 UTC; min 2 h and target 3 h later.
    assert "started 23:12" in text
    assert "minimum bed rest 01:12  in 1:12:00" in text
    assert "target           02:12  in 2:12:00" in text
    assert "OVERDUE check #2 due 23:42, 0:18:00 ago" in text
    assert "next check #3 at 23:57  DUE NOW" in text
    assert "checks done 1/8, last #1 at 23:27 by nurse-anna" in text
    assert "alarm HIGH spo2.desat since 23:58" in text
    assert "\x1b[" not in text  # not a terminal: no colour codes


@pytest.mark.broker
def test_once_with_no_timers_and_bad_usage(broker: MosquittoBroker) -> None:
    out = io.StringIO()
    args = parse(["timers", "--broker", broker.url, "--site", SITE, "--once"])
    assert run_timers(args, out=out, clock=VirtualClock()) == 0
    assert "no room has published a timer yet" in out.getvalue()
    assert run_timers(parse(["timers", "--broker", broker.url, "--once"]), out=out) == 2
    assert run_timers(parse(["timers", "--broker", "http://x", "--site", SITE]), out=out) == 2


def test_render_counts_down_from_deadlines_between_messages() -> None:
    clock = VirtualClock()
    snap = recovery_snapshot(clock)
    later = render({"or1": snap}, clock.now() + 600, utc=True)
    assert "minimum bed rest 01:12  in 1:02:00" in later
    # Check 3 (due 23:57) became overdue at 00:02 by the clock even without a new message.
    assert "OVERDUE check #3 due 23:57, 0:13:00 ago" in later
    assert "next check #4 at 00:12  in 0:02:00" in later
    stale = render({"or1": snap}, clock.now() + 120, utc=True)
    assert "[last update 0:02:00 ago]" in stale
    coloured = render({"or1": snap}, clock.now(), utc=True, color=True)
    assert "\x1b[31;1m  OVERDUE check #2" in coloured
