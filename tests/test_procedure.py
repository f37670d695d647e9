"""A whole kyphoplasty through the room pipeline on the virtual clock: two injections
detected from the cement-pressure waveform, three hours of recovery with every scheduled
check, one check overdue and escalated through the alarm engine, one extension, the end,
and the procedure phases (with their alarm profiles) along the way."""

from __future__ import annotations

from typing import Any

from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.core.model import NumericReading, SignalKind
from roommon.room.pipeline import RoomPipeline
from roommon.testing import CaptureOutput
from roommon.wire.timer import NurseCommand
from simulators.cement import CementPressureSimulator

ESCALATION = {"notify": ["nurse"], "medium": [{"after_s": 60, "to": "charge-nurse"}]}


def room(**extra: Any) -> Any:
    return parse_config(
        {
            "site": {"id": "s"},
            "daemon": {"tick_s": 5.0},
            "rooms": {
                "r1": {
                    "feeds": {
                        "cement": {
                            "kind": "cement_pressure",
                            "fs": 50,
                            "required": False,
                            "stale_s": 1e5,
                        },
                        "spo2": {"kind": "spo2", "stale_s": 60},
                    },
                    "checks": {
                        "cement": {},
                        "numeric_limits": {
                            "rules": [{"kind": "spo2", "field": "spo2", "below": 90, "delay_s": 15}]
                        },
                    },
                    "escalation": ESCALATION,
                    # cement alarms only while cement goes in; recovery has its own SpO2 delay
                    "profiles": {
                        "recovery": {
                            "cement.*": {"enabled": False},
                            "limit.spo2_low": {"delay_s": 30},
                        },
                        "ready_for_discharge": {"cement.*": {"enabled": False}},
                    },
                    **extra,
                }
            },
        }
    )


def nurse(action: str, **fields: Any) -> NurseCommand:
    body = {"v": 1, "id": action, "room": "r1", "action": action, **fields}
    return NurseCommand.model_validate(body)


async def test_whole_procedure_from_injections_to_discharge() -> None:
    clock = VirtualClock()
    cfg = room()
    out = CaptureOutput()
    p = RoomPipeline(
        site="s", room="r1", config=cfg.rooms["r1"], daemon=cfg.daemon, clock=clock, output=out
    )
    sim = CementPressureSimulator(fs=50, t0=clock.now(), room="r1", feed="cement")
    seq = 0

    async def run(seconds: float, *, cement: bool = True, step: float = 1.0) -> None:
        nonlocal seq
        end = clock.monotonic() + seconds
        while clock.monotonic() < end:
            seq += 1
            if cement:
                p.ingest(sim.next_chunk(round(50 * step)))
            p.ingest(
                NumericReading(
                    room="r1",
                    feed="spo2",
                    kind=SignalKind.SPO2,
                    t=clock.now(),
                    values={"spo2": 97.0},
                    seq=seq,
                )
            )
            await clock.advance(step)
            if int(clock.monotonic()) % 5 == 0:  # the daemon's 5 s tick
                p.tick()

    await run(30)
    assert p.workflow.phase == "patient_connected"
    p.command(cmd_mixed(), client="scrub-nurse")
    assert p.workflow.phase == "procedure"
    # first vertebra: 60 s of injection, then the cement check sees it end (60 s idle)
    sim.inject(level_kpa=1700)
    await run(60)
    assert p.workflow.phase == "cement_injection"
    sim.pause()
    await run(120)
    names = [e.name for e in out.room_events]
    assert names.count("cement.injection_ended") == 1
    assert p.workflow.phase == "recovery"
    first_start = out.timers[-1].started
    # second vertebra 5 minutes later (before the recovery is confirmed): restarts the wait
    await run(180)
    sim.inject(level_kpa=1800)
    await run(45)
    sim.pause()
    await run(120)
    assert [e.name for e in out.room_events].count("cement.injection_ended") == 2
    timer = out.timers[-1]
    assert timer.state in {"running", "unconfirmed"}
    assert timer.restarts == 1
    assert timer.started is not None
    assert first_start is not None
    assert timer.started > first_start + 200
    start = timer.started
    assert timer.min_deadline == start + 7200
    assert timer.target_deadline == start + 10800

    # recovery: the nurse does each check 2 minutes after it is due, except check 5
    p.recovery_command(nurse("recovery_confirm"), client="ward-nurse")
    done: set[int] = set()
    extended = False
    while p.recovery.timer.state not in {"ended"} and clock.monotonic() < 6 * 3600:
        await run(60, cement=False, step=5.0)
        now = clock.now()
        for m in out.timer_messages:
            n = m.check_no
            if (
                m.event == "check_due"
                and n is not None
                and n not in done
                and n != 5
                and (now - m.t >= 120)
            ):
                p.recovery_command(
                    nurse("check_done", check_no=n, vitals=True), client="ward-nurse"
                )
                done.add(n)
        overdue = [e for e in out.events if e.code == "recovery.check_overdue"]
        if 5 not in done and any(e.transition == "escalated" for e in overdue):
            p.recovery_command(nurse("check_done", check_no=5), client="ward-nurse")
            done.add(5)
        if not extended and now - start >= 2.5 * 3600:
            p.recovery_command(
                nurse("recovery_extend", seconds=1800, reason="pain on moving"), client="ward-nurse"
            )
            extended = True

    kinds = [(m.event, m.check_no) for m in out.timer_messages]
    due = sorted(n for k, n in kinds if k == "check_due" and n is not None)
    # q15 for the first hour (4), q30 to 3 h (4 more), plus one more in the 30 min extension
    assert due == list(range(1, 10))
    assert sorted(n for k, n in kinds if k == "check_done" and n is not None) == due
    assert [n for k, n in kinds if k == "check_overdue"] == [5]
    for once in ("min_reached", "target_reached", "extended", "ended", "confirmed"):
        assert [k for k, _ in kinds].count(once) == 1, once
    assert sum(1 for m in out.timer_messages if m.event == "started") == 1
    assert sum(1 for m in out.timer_messages if m.event == "restarted") == 1
    ids = [m.event_id for m in out.timer_messages]
    assert len(ids) == len(set(ids))

    # check 5 went overdue: an alarm, escalated to the charge nurse, cleared once done
    transitions = [
        (e.transition, e.feed) for e in out.events if e.code == "recovery.check_overdue"
    ]
    assert transitions[:2] == [("raised", "check5"), ("escalated", "check5")]
    assert ("cleared", "check5") in transitions
    escalated = next(
        o
        for o in out.outgoing
        if o.event.code == "recovery.check_overdue" and o.event.transition == "escalated"
    )
    assert [n.recipient for n in escalated.notifications] == ["charge-nurse"]

    final = out.timers[-1]
    assert final.ended is not None
    assert final.ended.reason == "target"
    assert final.target_deadline == start + 10800 + 1800
    assert final.extended_s == 1800
    done_with_vitals = [c for c in final.checks if c.vitals]
    assert done_with_vitals
    assert done_with_vitals[0].vitals is not None
    assert "spo2" in done_with_vitals[0].vitals
    assert p.workflow.phase == "ready_for_discharge"
    phases = [e.data["to"] for e in out.room_events if e.name == "phase.changed"]
    assert phases == [
        "patient_connected",
        "procedure",
        "cement_injection",
        "procedure",
        "recovery",
        "cement_injection",
        "procedure",
        "recovery",
        "ready_for_discharge",
    ]


def cmd_mixed() -> Any:
    from roommon.wire.commands import CommandPayload

    return CommandPayload(v=1, id="mix", room="r1", action="cement_mixed")


async def test_phase_profile_disables_cement_alarms_outside_injection() -> None:
    clock = VirtualClock()
    cfg = room()
    out = CaptureOutput()
    p = RoomPipeline(
        site="s", room="r1", config=cfg.rooms["r1"], daemon=cfg.daemon, clock=clock, output=out
    )
    from roommon.checks.cement import CementCheck
    from roommon.wire.commands import CommandPayload

    spec = next(c for c in CementCheck.conditions if c.code == "cement.over_pressure")
    assert p.engine.effective_spec(spec) == spec
    p.command(
        CommandPayload(v=1, id="x", room="r1", action="phase_set", phase="recovery"),
        client="charge-nurse",
    )
    assert p.workflow.phase == "recovery"
    assert p.engine.effective_spec(spec) is None
    assert [e.data for e in out.room_events if e.name == "phase.changed"][-1] == {
        "from": "idle",
        "to": "recovery",
    }


async def test_wall_clock_jumps_during_recovery() -> None:
    """What the daemon does: deadlines stay absolute; a forward jump makes what is now past
    fall due at once (each once), a backward jump re-fires nothing; either way a latching
    technical alarm says bed-rest times may be off by the jump."""
    from roommon.core.events import InjectionEnded

    clock = VirtualClock()
    cfg = room()
    out = CaptureOutput()
    p = RoomPipeline(
        site="s", room="r1", config=cfg.rooms["r1"], daemon=cfg.daemon, clock=clock, output=out
    )
    start = clock.now()
    p.event(
        InjectionEnded(
            t=start,
            feed="cement",
            injection=1,
            started_t=start - 60,
            last_injecting_t=start,
            peak_kpa=900.0,
        )
    )
    deadlines = p.recovery.timer.deadlines()
    for _ in range(3):
        await clock.advance(5)
        p.tick()
    assert [m.event for m in out.timer_messages] == ["started"]

    clock.jump_wall(40 * 60)  # NTP step forward by 40 minutes
    await clock.advance(5)
    p.tick()
    kinds = [(m.event, m.check_no) for m in out.timer_messages]
    assert ("clock_jump", None) in kinds
    assert [n for k, n in kinds if k == "check_due"] == [1, 2]  # 15 and 30 min, now past
    assert p.recovery.timer.deadlines() == deadlines
    jump = [e.transition for e in out.events if e.code == "recovery.clock_jump"]
    assert jump == ["raised", "latched"]

    clock.jump_wall(-40 * 60)  # and back
    for _ in range(3):
        await clock.advance(5)
        p.tick()
    kinds = [(m.event, m.check_no) for m in out.timer_messages]
    assert kinds.count(("clock_jump", None)) == 2
    assert [n for k, n in kinds if k == "check_due"] == [1, 2]  # nothing fired twice
    assert p.recovery.timer.deadlines() == deadlines


async def test_room_returns_to_idle_when_every_feed_has_gone_quiet() -> None:
    clock = VirtualClock()
    cfg = room(idle_after_s=300)
    out = CaptureOutput()
    p = RoomPipeline(
        site="s", room="r1", config=cfg.rooms["r1"], daemon=cfg.daemon, clock=clock, output=out
    )
    p.ingest(
        NumericReading(
            room="r1",
            feed="spo2",
            kind=SignalKind.SPO2,
            t=clock.now(),
            values={"spo2": 97.0},
            seq=1,
        )
    )
    assert p.workflow.phase == "patient_connected"
    for _ in range(59):  # 295 s of silence: still connected (a cable being swapped)
        await clock.advance(5)
        p.tick()
    assert p.workflow.phase == "patient_connected"
    await clock.advance(10)
    p.tick()
    assert p.workflow.phase == "idle"
    assert [e.data["to"] for e in out.room_events if e.name == "phase.changed"] == [
        "patient_connected",
        "idle",
    ]
