"""Exact deadlines: time-based alarm rules act at their instant on the clock, not at the next tick.

The daemon's 1 s ticker alone would raise a condition with a 5 s delay up to a
second late. These run the whole daemon (store, dispatcher, deadline task) on
the virtual clock with readings arriving between ticks, and check that each
time-based transition carries its own deadline as its time: condition delay,
escalation step, clear delay, the end of an audio pause, a recovery check.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from roommon.alerts.engine import Outgoing
from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.core.events import InjectionEnded, InjectionStarted
from roommon.core.model import NumericReading, SignalKind
from roommon.runtime.daemon import Daemon
from roommon.testing import CaptureOutput, MosquittoBroker, MqttCollector
from roommon.testing.flap import wait_until
from roommon.wire.commands import parse_command


def config(state_dir: Path, **room: Any) -> dict[str, Any]:
    return {
        "site": {"id": "s"},
        "daemon": {"state_dir": str(state_dir), "tick_s": 1.0},
        "rooms": {
            "r1": {
                "feeds": {"spo2": {"kind": "spo2"}},
                "checks": {
                    "numeric_limits": {
                        "rules": [{"kind": "spo2", "field": "spo2", "below": 90, "delay_s": 5.0}]
                    }
                },
                **room,
            }
        },
    }


def reading(clock: VirtualClock, seq: int, spo2: float) -> NumericReading:
    return NumericReading(
        room="r1", feed="spo2", kind=SignalKind.SPO2, t=clock.now(), values={"spo2": spo2}, seq=seq
    )


async def test_a_delayed_condition_alarms_at_its_deadline_not_at_the_next_tick(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    t0 = clock.now()
    cfg = parse_config(
        config(
            tmp_path,
            escalation={"medium": [{"after_s": 2.5, "to": "charge"}]},
        )
    )
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        room = d.pipelines["r1"]
        await clock.advance(0.3)  # between two ticks (0.0, 1.0 ...)
        room.ingest(reading(clock, 1, 82.0))  # present from 0.3: due at 5.3
        await clock.advance(4.99)
        assert capture.events == []
        await clock.advance(0.01)
        (raised,) = capture.events
        assert raised.transition == "raised"
        assert raised.t == pytest.approx(t0 + 5.3, abs=1e-6)  # a tick would say 6.0
        await clock.advance(2.5)  # escalation step at since + 2.5 = 7.8 (tick: 8.0)
        escalated = capture.events[-1]
        assert escalated.transition == "escalated"
        assert escalated.t == pytest.approx(t0 + 7.8, abs=1e-6)
        await clock.advance(0.2)  # 8.0: a tick; then the condition ends at 8.4
        await clock.advance(0.4)
        room.ingest(reading(clock, 2, 97.0))
        cleared_before = len(capture.events)
        await clock.advance(3.0)  # no clear delay: cleared at once, no later event
        assert capture.events[cleared_before - 1].state == "cleared"
        assert capture.events[-1].state == "cleared"


async def test_the_end_of_an_audio_pause_is_published_at_its_instant(tmp_path: Path) -> None:
    clock = VirtualClock()
    t0 = clock.now()
    capture = CaptureOutput()
    cfg = parse_config(config(tmp_path))
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        room = d.pipelines["r1"]
        room.ingest(reading(clock, 1, 82.0))
        await clock.advance(5.2)  # alarm raised at 5.0 (exactly its delay)
        assert [e.transition for e in capture.events] == ["raised"]
        assert capture.events[0].t == pytest.approx(t0 + 5.0, abs=1e-6)
        cmd = parse_command(
            b'{"v": 1, "id": "c1", "room": "r1", "action": "audio_pause", "duration_s": 3.3}',
            room="r1",
        )
        room.command(cmd, client="nurse")
        assert capture.states[-1].audio_paused_until == pytest.approx(t0 + 8.5, abs=1e-6)
        await clock.advance(3.29)
        assert capture.states[-1].audio_paused_until is not None
        await clock.advance(0.01)
        state = capture.states[-1]
        assert state.audio_paused_until is None
        assert state.t == pytest.approx(t0 + 8.5, abs=1e-6)  # the tick would publish at 9.0
        assert state.alarms[0].audible


async def test_a_recovery_check_falls_due_at_its_deadline(tmp_path: Path) -> None:
    clock = VirtualClock()
    t0 = clock.now()
    capture = CaptureOutput()
    cfg = parse_config(
        config(
            tmp_path,
            recovery={
                "default": {
                    "min_bed_rest_s": 30,
                    "target_s": 60,
                    "checks": [{"every_s": 2.25, "until_s": 60}],
                    "grace_s": 1,
                }
            },
        )
    )
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        room = d.pipelines["r1"]
        await clock.advance(0.4)
        room.event(InjectionStarted(t=clock.now(), injection=1))
        await clock.advance(0.3)
        end = clock.now()
        room.event(
            InjectionEnded(
                t=end, injection=1, started_t=end - 0.3, last_injecting_t=end, peak_kpa=1500.0
            )
        )
        assert [m.event for m in capture.timer_messages] == ["started"]
        await clock.advance(2.25)  # check 1 due at 0.7 + 2.25 = 2.95 (a tick says 3.0)
        due = [m for m in capture.timer_messages if m.event == "check_due"]
        assert len(due) == 1
        assert due[0].t == pytest.approx(t0 + 2.95, abs=1e-6)
        assert due[0].emitted == pytest.approx(t0 + 2.95, abs=1e-6)  # noticed at that instant
        # its message left at that instant, not a tick later
        assert capture.timers[-1].t == pytest.approx(t0 + 2.95, abs=1e-6)
        await clock.advance(1.0)  # overdue at due + grace = 3.95
        overdue = [e for e in capture.events if e.code == "recovery.check_overdue"]
        assert overdue
        assert overdue[0].t == pytest.approx(t0 + 3.95, abs=1e-6)


@pytest.mark.parametrize("step_s", [3600.0, -3600.0], ids=["forward", "back"])
async def test_a_wall_clock_step_neither_shortens_nor_stretches_a_delay_or_an_escalation(
    tmp_path: Path, step_s: float
) -> None:
    """NTP or an operator steps the wall clock mid-delay: the delay and the escalation step
    are measured in elapsed time (a step forward must not raise at once, a step back must
    not hold the alarm for an hour); the events' times are on the new wall clock."""
    clock = VirtualClock()
    cfg = parse_config(config(tmp_path, escalation={"medium": [{"after_s": 10, "to": "charge"}]}))
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[capture]) as d:
        room = d.pipelines["r1"]
        start_mono = clock.monotonic()

        def limit_events() -> list[str]:  # (the recovery timer reports the step itself)
            return [e.transition for e in capture.events if e.code == "limit.spo2_low"]

        room.ingest(reading(clock, 1, 82.0))  # due 5 s from now
        await clock.advance(2.0)
        clock.jump_wall(step_s)
        await clock.advance(2.9)  # 4.9 s elapsed
        assert limit_events() == []
        await clock.advance(0.2)  # 5.1 s elapsed
        assert limit_events() == ["raised"]
        raised = next(e for e in capture.events if e.code == "limit.spo2_low")
        assert raised.t == pytest.approx(clock.now(), abs=1.01)  # on the new wall clock
        await clock.advance(9.5)  # 14.6 s elapsed: the step comes 10 s after the raise
        assert limit_events() == ["raised"]
        await clock.advance(1.0)
        assert limit_events() == ["raised", "escalated"]
        assert clock.monotonic() - start_mono == pytest.approx(15.6)
        # no recovery runs in this room: the step is no recovery.clock_jump alarm here
        assert not [e for e in capture.events if e.code == "recovery.clock_jump"]


@pytest.mark.broker
async def test_an_alarm_at_its_deadline_is_on_the_wire_within_a_turn_of_the_event_loop(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The deadline's timer raises the alarm and writes it to the broker connection in its
    own callback: no task woken in between, each a turn later (on a busy daemon a turn
    is a slice of input; at 300 rooms the alarm waited several). The broker is real,
    the clock virtual; the loop is given one turn after the timer fires."""
    clock = VirtualClock()
    raw = config(tmp_path, escalation={})
    raw["broker"] = {"host": "127.0.0.1", "port": broker.port}
    raw["daemon"]["tick_s"] = 5.0  # ticks at 5.0 and 10.0: none at the deadline
    cfg = parse_config(raw)
    async with (
        MqttCollector(broker.port, ["roommon/v1/s/+/alarm"]) as c,
        Daemon(config=cfg, clock=clock) as d,
    ):
        link = d.link
        assert link is not None
        await wait_until(lambda: link.connected.is_set() and link.writing)
        await clock.advance(0.3)
        d.pipelines["r1"].ingest(reading(clock, 1, 82.0))  # due at 5.3
        await clock.advance(4.99)
        await wait_until(lambda: d.store.pending_count() == 0)  # nothing else in the outbox
        written = link.rows_written
        await clock.advance(0.02, rounds=0)  # the timer fires; nothing has run yet
        await asyncio.sleep(0)  # one turn of the loop: the timer's callback, then this test
        assert link.rows_written == written + 1
        (event,) = await c.wait_for(lambda ms: len(ms) >= 1)
        assert event.json()["transition"] == "raised"


async def test_a_deadline_passed_in_the_middle_of_a_slice_of_input_alarms_there(
    tmp_path: Path,
) -> None:
    """The event loop runs a due timer only after what became ready before it: a slice of
    input, a slice of the ticker. The drain runs a deadline it passes itself, between two
    messages, so the alarm does not wait for the rest of the slice (nor the next one)."""
    clock = VirtualClock()
    raw = config(tmp_path)
    raw["rooms"]["r2"] = {"feeds": {"spo2": {"kind": "spo2", "stale_s": 60}}}
    raw["daemon"]["tick_s"] = 5.0  # ticks at 5.0 and 10.0: none at the deadline
    cfg = parse_config(raw)
    received_then: list[int] = []

    class Watch(CaptureOutput):
        def alarms(self, outgoing: list[Outgoing]) -> None:
            received_then.append(d.pipelines["r2"].feeds["spo2"].received)
            super().alarms(outgoing)

    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[Watch()]) as d:
        await clock.advance(0.3)
        d.pipelines["r1"].ingest(reading(clock, 1, 82.0))  # due at 5.3
        await clock.advance(4.99)
        for seq in range(1, 201):  # a backlog of r2's input: the drain is woken for it...
            body = {"v": 1, "kind": "spo2", "seq": seq, "t": clock.now(), "values": {"spo2": 97}}
            topic = "roommon/v1/s/r2/feed/spo2"
            d.handle_message(aiomqtt.Message(topic, json.dumps(body).encode(), 0, False, 0, None))
        await clock.advance(0.02, rounds=0)  # ...before the deadline's timer fires
        await asyncio.sleep(0)  # one turn: the drain's slice, then the timer
        assert received_then == [1]  # raised at the first message past the deadline
