"""Recovery timer on the virtual clock: a whole procedure, restarts, clock jumps."""

from __future__ import annotations

from collections import Counter

from roommon.core.clock import VirtualClock
from roommon.core.events import InjectionEnded, InjectionStarted, RoomEvent
from roommon.recovery.conditions import RECOVERY_CHECK_OVERDUE
from roommon.recovery.messages import event_message
from roommon.recovery.plan import RecoveryPlan
from roommon.recovery.timer import (
    CLOCK_JUMP_THRESHOLD_S,
    OverdueEscalation,
    RecoveryTimer,
    TimerEvent,
)
from roommon.wire.timer import TimerAlarm

PLAN = RecoveryPlan()  # 2 h / 3 h, q15 for 1 h then q30, grace 5 min, auto-confirm 30 min


def injection(name: str, t: float, *, last: float | None = None, n: int = 1) -> RoomEvent:
    if name == "started":
        return InjectionStarted(t=t, feed="cement", injection=n)
    return InjectionEnded(
        t=t,
        feed="cement",
        injection=n,
        started_t=t - 120,
        last_injecting_t=t if last is None else last,
        peak_kpa=900.0,
    )


def kinds(events: list[TimerEvent]) -> list[tuple[str, int | None]]:
    return [(e.kind, e.check_no) for e in events]


def assert_once(events: list[TimerEvent]) -> None:
    keys = [e.once_key for e in events if e.once_key is not None]
    dupes = [k for k, n in Counter(keys).items() if n > 1]
    assert not dupes, dupes
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_whole_procedure_two_injections_checks_overdue_extension_end() -> None:
    clock = VirtualClock()
    t0 = clock.now()
    timer = RecoveryTimer(room="or1")
    escalation = OverdueEscalation(room="or1")
    events: list[TimerEvent] = []
    reports = []

    def step() -> None:
        events.extend(timer.advance(clock.now(), clock.monotonic()))
        reports.extend(escalation.reports(timer, t=clock.now()))

    # First level: injection from t0+60, cement stops at t0+290, end detected at t0+300.
    await clock.advance(60)
    events += timer.on_room_event(injection("started", clock.now()), plan=PLAN, now=clock.now())
    assert events == []  # no recovery yet: the injection is part of the procedure
    await clock.advance(240)
    events += timer.on_room_event(
        injection("ended", clock.now(), last=t0 + 290), plan=PLAN, now=clock.now()
    )
    assert timer.deadlines()["start"] == t0 + 290
    states = [timer.state]
    # Second level ten minutes later: interrupts, then restarts the wait from its own end.
    await clock.advance(600)
    events += timer.on_room_event(
        injection("started", clock.now(), n=2), plan=PLAN, now=clock.now()
    )
    states.append(timer.state)
    assert states == ["unconfirmed", "interrupted"]
    await clock.advance(310)
    s = t0 + 1200  # cement stopped flowing
    events += timer.on_room_event(
        injection("ended", clock.now(), last=s, n=2), plan=PLAN, now=clock.now()
    )
    assert kinds(events) == [("started", None), ("interrupted", None), ("restarted", None)]
    assert timer.deadlines()["min"] == s + 7200
    assert timer.deadlines()["target"] == s + 10800
    await clock.advance(290)
    events += timer.confirm(at=clock.now(), by="nurse-anna")
    assert timer.snapshot(site="clinic", now=clock.now()).confirmed_by == "nurse-anna"

    timer.note_alarms([TimerAlarm(code="spo2.desat", priority="high", since=s + 1000)])
    done_at: dict[int, float] = {}
    extended = False
    while timer.state != "ended" and clock.now() < s + 5 * 3600:
        await clock.advance(30)
        step()
        now = clock.now()
        for e in events:
            if e.kind != "check_due" or e.check_no in done_at:
                continue
            assert e.check_no is not None
            late = 16 * 60 if e.check_no == 5 else 120  # check 5 is forgotten past its grace
            if now >= e.t + late:
                done = timer.check_done(check_no=e.check_no, at=now, by="nurse-anna")
                events += done
                done_at[e.check_no] = now
                reports.extend(escalation.reports(timer, t=now))
        if check5_overdue_window(s, now):
            assert timer.overdue_outstanding() == {5}
            snap = timer.snapshot(site="clinic", now=now)
            assert snap.overdue_checks == [5]
            assert [a.code for a in snap.alarms] == ["spo2.desat"]
        if not extended and now >= s + 8000:
            events += timer.extend(seconds=1800, reason="pain on mobilisation", by="dr-b", at=now)
            extended = True

    assert_once(events)
    counts = Counter(e.kind for e in events)
    # q15 x4 in the first hour, q30 to 3 h (4), then q30 through the 30 min extension (1).
    assert counts["check_due"] == 9
    assert counts["check_done"] == 9
    assert [e.check_no for e in events if e.kind == "check_overdue"] == [5]
    assert counts["min_reached"] == counts["target_reached"] == counts["extended"] == 1
    due = {e.check_no: e.t for e in events if e.kind == "check_due"}
    offsets = [900, 1800, 2700, 3600, 5400, 7200, 9000, 10800, 12600]
    assert due == {i + 1: s + o for i, o in enumerate(offsets)}
    target = next(e for e in events if e.kind == "target_reached")
    assert target.t == s + 10800 + 1800
    min_reached = next(e for e in events if e.kind == "min_reached")
    assert min_reached.t == s + 7200
    ended = events[-1]
    assert ended.kind == "ended"
    assert ended.reason == "target"
    # The last check falls due at the target: the recovery ends when it is done.
    assert ended.t == done_at[9] == s + 12600 + 120
    assert timer.state == "ended"
    assert timer.overdue_outstanding() == frozenset()
    # The overdue check escalated once and cleared when done.
    assert [(r.feed, r.active, r.spec.code) for r in reports] == [
        ("check5", True, RECOVERY_CHECK_OVERDUE.code),
        ("check5", False, RECOVERY_CHECK_OVERDUE.code),
    ]
    assert s + 5700 <= reports[0].t < s + 5700 + 30  # noticed on the first tick after grace
    assert reports[1].t == done_at[5]
    snap = timer.snapshot(site="clinic", now=clock.now())
    assert snap.state == "ended"
    assert snap.ended is not None
    assert snap.ended.reason == "target"
    assert [c.status for c in snap.checks] == ["done"] * 9
    assert snap.extensions[0].seconds == 1800
    assert snap.alarms == []  # alarms are shown while the recovery runs


def check5_overdue_window(s: float, now: float) -> bool:
    return s + 5700 <= now < s + 5400 + 16 * 60


def test_check_done_early_window_and_next_check() -> None:
    t0 = 1_767_225_600.0
    timer = RecoveryTimer(room="or1")
    timer.start(at=t0, now=t0, plan=PLAN, by="nurse")
    # Allowed from grace_s (5 min) before the due time, never earlier.
    events = timer.check_done(check_no=None, at=t0 + 900 - 300, by="nurse")
    assert kinds(events) == [("check_done", 1)]
    later = timer.advance(t0 + 1000)
    assert ("check_due", 1) not in kinds(later)  # done before it fell due: never falls due
    snap = timer.snapshot(site="clinic", now=t0 + 1000)
    assert snap.next_check is not None
    assert snap.next_check.no == 2
    assert snap.next_check.due == t0 + 1800


def test_confirmed_recovery_ignores_a_new_injection() -> None:
    t0 = 1_767_225_600.0
    timer = RecoveryTimer(room="or1")
    timer.injection_ended(at=t0, now=t0, plan=PLAN)
    timer.confirm(at=t0 + 60, by="nurse")
    before = timer.deadlines()
    ev = timer.injection_started(at=t0 + 120, now=t0 + 120)
    ev += timer.injection_ended(at=t0 + 200, now=t0 + 200, plan=PLAN)
    assert kinds(ev) == [("injection_ignored", None), ("injection_ignored", None)]
    assert timer.deadlines() == before


def test_auto_confirm_after_confirm_s_then_no_restart() -> None:
    t0 = 1_767_225_600.0
    timer = RecoveryTimer(room="or1")
    timer.injection_ended(at=t0, now=t0, plan=PLAN)
    ev = timer.advance(t0 + 1800)
    assert ("confirmed", None) in kinds(ev)
    confirmed = next(e for e in ev if e.kind == "confirmed")
    assert confirmed.t == t0 + 1800
    assert confirmed.data["auto"] is True
    assert timer.snapshot(site="s", now=t0 + 1800).confirmed_by == "auto"
    assert kinds(timer.injection_ended(at=t0 + 1900, now=t0 + 1900, plan=PLAN)) == [
        ("injection_ignored", None)
    ]


def test_clock_jump_forward_fires_past_deadlines_once_in_order() -> None:
    clock = VirtualClock()
    timer = RecoveryTimer(room="or1")
    s = clock.now()
    timer.start(at=s, now=s, plan=PLAN, by="nurse")
    timer.confirm(at=s, by="nurse")
    assert timer.advance(clock.now(), clock.monotonic()) == []
    clock.jump_wall(3600.0)  # e.g. a mis-set clock corrected by an NTP step
    ev = timer.advance(clock.now(), clock.monotonic())
    assert ev[0].kind == "clock_jump"
    assert abs(ev[0].data["jump_s"] - 3600.0) < 1e-6
    fired = kinds(ev[1:])
    assert fired == [
        ("check_due", 1),
        ("check_overdue", 1),
        ("check_due", 2),
        ("check_overdue", 2),
        ("check_due", 3),
        ("check_overdue", 3),
        ("check_due", 4),
    ]
    assert [e.t for e in ev[1:]] == sorted(e.t for e in ev[1:])
    assert all(e.emitted == s + 3600 for e in ev)
    # Deadlines are absolute: unchanged by the jump.
    assert timer.deadlines()["target"] == s + 10800
    assert timer.advance(clock.now(), clock.monotonic()) == []


async def test_clock_jump_back_refires_nothing_and_remaining_time_grows() -> None:
    clock = VirtualClock()
    timer = RecoveryTimer(room="or1")
    s = clock.now()
    timer.start(at=s, now=s, plan=PLAN, by="nurse")
    timer.advance(clock.now(), clock.monotonic())
    seen: list[TimerEvent] = []
    await clock.advance(2000)
    seen += timer.advance(clock.now(), clock.monotonic())
    # At s+1800 the auto-confirmation sorts before the check falling due at the same instant.
    assert kinds(seen) == [
        ("check_due", 1),
        ("check_overdue", 1),
        ("confirmed", None),
        ("check_due", 2),
    ]
    remaining_before = timer.snapshot(site="s", now=clock.now()).target_remaining_s
    assert remaining_before is not None
    clock.jump_wall(-1500.0)
    ev = timer.advance(clock.now(), clock.monotonic())
    assert kinds(ev) == [("clock_jump", None)]
    assert ev[0].data["jump_s"] < -CLOCK_JUMP_THRESHOLD_S
    seen += ev
    snap = timer.snapshot(site="s", now=clock.now())
    assert snap.target_remaining_s == remaining_before + 1500.0
    # Walk the (now earlier) wall clock forward again: nothing fires twice.
    for _ in range(200):
        await clock.advance(60)
        seen += timer.advance(clock.now(), clock.monotonic())
    assert_once(seen)
    assert [e.check_no for e in seen if e.kind == "check_due"] == list(range(1, 9))


def test_small_drift_is_not_a_jump() -> None:
    timer = RecoveryTimer(room="or1")
    assert timer.advance(1_767_225_600.0, 10.0) == []
    assert timer.advance(1_767_225_601.5, 11.0) == []  # 0.5 s off over one tick: NTP slew
    assert kinds(timer.advance(1_767_225_605.0, 12.0)) == [("clock_jump", None)]


def test_cancel_and_end_early_close_the_overdue_conditions() -> None:
    t0 = 1_767_225_600.0
    timer = RecoveryTimer(room="or1")
    esc = OverdueEscalation(room="or1")
    timer.start(at=t0, now=t0, plan=PLAN)
    timer.advance(t0 + 1300)
    assert [(r.feed, r.active) for r in esc.reports(timer, t=t0 + 1300)] == [("check1", True)]
    ev = timer.end_early(reason="transfer to ward monitoring", by="nurse", at=t0 + 1400)
    assert kinds(ev) == [("ended", None)]
    assert ev[0].reason == "early"
    assert ev[0].data["min_reached"] is False
    assert [(r.feed, r.active) for r in esc.reports(timer, t=t0 + 1400)] == [("check1", False)]
    # A new injection after the end starts a new recovery with a new id.
    first_id = timer.recovery_id
    ev = timer.injection_ended(at=t0 + 5000, now=t0 + 5000, plan=PLAN)
    assert kinds(ev) == [("started", None)]
    assert timer.recovery_id != first_id


def test_event_message_ids_are_stable_and_late_flag() -> None:
    t0 = 1_767_225_600.0
    timer = RecoveryTimer(room="or1")
    timer.start(at=t0, now=t0, plan=PLAN)
    saved = timer.to_json()
    first = [event_message("clinic", "or1", e) for e in timer.advance(t0 + 1000)]
    again = [
        event_message("clinic", "or1", e) for e in RecoveryTimer.from_json(saved).advance(t0 + 1000)
    ]
    assert [m.event_id for m in first] == [m.event_id for m in again]
    assert len({m.event_id for m in first}) == len(first)
    assert first[0].event == "check_due"
    assert first[0].late is True  # due at t0+900, noticed at t0+1000


def test_late_only_for_deadlines_noticed_late_not_for_a_back_dated_start() -> None:
    """The start is back-dated to the injection's end, which the cement check knows only
    end_after_s (60 s) later: that is not "late". A deadline passed while the daemon was
    down is."""
    from roommon.recovery.messages import event_message

    timer = RecoveryTimer(room="or1")
    end = 1_000_000.0
    started = timer.injection_ended(at=end, now=end + 61.0, plan=PLAN, injection=1)
    assert [e.kind for e in started] == ["started"]
    assert not event_message("s", "or1", started[0]).late
    # check 1 falls due 15 min after the start; noticed on time, then one noticed 10 min late
    on_time = timer.advance(end + 15 * 60 + 0.5)
    assert [(e.kind, event_message("s", "or1", e).late) for e in on_time] == [
        ("check_due", False)
    ]
    missed = timer.advance(end + 40 * 60)
    assert ("check_due", True) in [(e.kind, event_message("s", "or1", e).late) for e in missed]
