"""``roommon timers --once`` against a real Mosquitto broker, and the renderer."""

from __future__ import annotations

import argparse
import asyncio
import io
import re

import aiomqtt
import pytest

from roommon.cli.timers import add_parser, render, run_timers
from roommon.core.clock import VirtualClock, iso
from roommon.recovery.plan import RecoveryPlan
from roommon.recovery.timer import RecoveryTimer
from roommon.testing import LOOPBACK, MosquittoBroker
from roommon.wire.payloads import StatusMessage
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
    timer.note_alarms([
        TimerAlarm(code="spo2.desat", priority="high", since=s + 2800, feed="spo2",
                   message="SpO2 below the low limit")
    ])
    return timer.snapshot(site=SITE, now=clock.now())


def daemon_status(
    clock: VirtualClock, *, rooms: list[str], status: str = "online", age_s: float = 0.0,
    reason: str = "",
) -> bytes:
    t = clock.now() - age_s
    return StatusMessage.model_validate({
        "site": SITE, "instance": "main", "status": status, "reason": reason,
        "version": "test", "t": t, "time": iso(t), "started": t - 600, "heartbeat_s": 5.0,
        "rooms": rooms, "outbox_pending": 0,
    }).model_dump_json().encode()


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
                Topics(SITE).status("main"): daemon_status(clock, rooms=["or1", "or2"]),
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
    assert "alarm HIGH [spo2] SpO2 below the low limit (spo2.desat) since 23:58" in text
    assert "NOT SUPERVISED" not in text
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
    assert re.search(r"\x1b\[[0-9;]*31[0-9;]*m  OVERDUE check #2", coloured)  # red
    assert "[/]" not in coloured  # rich markup rendered, not printed
    # A nurse's or room's name is never taken for markup.
    odd = render({"or[1]": snap}, clock.now(), utc=True, color=True)
    assert "or[1]: CONFIRMED" in odd


@pytest.mark.broker
@pytest.mark.parametrize(
    ("status", "why"),
    [
        ({"status": "offline", "reason": "shutdown"}, "daemon main offline since 23:59 (shutdown)"),
        ({"age_s": 16.0}, "no heartbeat from daemon main for 0:00:16"),  # > 3 x 5 s heartbeat
        (None, "no daemon status for this room on the broker"),
    ],
)
def test_a_recovery_no_daemon_watches_is_not_supervised(
    broker: MosquittoBroker, status: dict[str, object] | None, why: str
) -> None:
    clock = VirtualClock()
    retained = {Topics(SITE).timer("or1"): recovery_snapshot(clock).model_dump_json().encode()}
    if status is not None:
        fields = {"age_s": 60.0, **status} if status.get("status") == "offline" else status
        retained[Topics(SITE).status("main")] = daemon_status(
            clock, rooms=["or1"], **fields  # type: ignore[arg-type]
        )
    asyncio.run(publish_retained(broker.port, retained))
    out = io.StringIO()
    args = parse(["timers", "--broker", broker.url, "--site", SITE, "--once", "--utc"])
    assert run_timers(args, out=out, clock=clock) == 0
    text = out.getvalue()
    assert f"NOT SUPERVISED: {why}" in text
    assert "minimum bed rest 01:12  (not supervised)" in text  # no countdown nobody watches
    assert "in 1:12:00" not in text
