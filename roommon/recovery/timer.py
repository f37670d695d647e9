"""The recovery timer of one room: a pure, synchronous state machine on absolute deadlines.

Where it sits: the room pipeline feeds it the cement check's room events
(:meth:`RecoveryTimer.on_room_event`) and the nurses' commands
(:func:`roommon.recovery.messages.apply_command`), and calls
:meth:`RecoveryTimer.advance` on every tick. Everything it returns is a
:class:`TimerEvent` for the store (:mod:`roommon.recovery.store`) and the
broker (:mod:`roommon.recovery.messages`); overdue checks become alarm
conditions through :class:`OverdueEscalation`. It never reads a clock, never
sleeps and does no I/O: time is passed in.

The rules
---------
* A recovery starts at the end of an injection (the cement check's
  ``cement.injection_ended``; its ``last_injecting_t``, when the cement
  stopped flowing). It is *unconfirmed* until a nurse confirms it or
  ``plan.confirm_s`` passes without a new injection. While unconfirmed, a new
  injection *interrupts* it (nothing falls due while cement is going in) and
  the end of that injection *restarts* it: a new generation with every
  deadline counted from the new end and the checks numbered from 1 again.
  Once confirmed, an injection does not touch the timer; it is reported as
  ``injection_ignored`` for a nurse to judge (cancel and restart, or ignore a
  pressure artefact).
* Each scheduled check falls *due* at its time and becomes *overdue*
  ``grace_s`` later if not done; an overdue check stays outstanding (an alarm
  condition) until it is done. A check may be done from ``grace_s`` before
  its due time.
* At the target the recovery is ``target_reached``; it *ends* (reason
  ``target``) once every check due by then is done. A nurse may extend the
  target (before it is reached: checks continue at the last interval),
  end early (reason required) or cancel.
* Every time-driven event (``check_due``, ``check_overdue``, ``confirmed``,
  ``min_reached``, ``target_reached``, ``ended``) is emitted exactly once,
  stamped with the time it fell due. The emitted flags are part of the state
  the store persists, so after a restart whatever fell due while the daemon
  was down is emitted once, late, and nothing already emitted is repeated.
* Invalid commands raise :class:`~roommon.core.errors.CommandError` (reasons
  ``no_recovery``, ``already_done``, ``unknown_check``, ``not_allowed``,
  ``bad_value``) and change nothing: every operation works on a copy of the
  state that replaces it only on success.

Wall-clock changes
------------------
Deadlines are absolute UTC epoch seconds, never countdowns, so they mean the
same after a restart. The consequence of a wall-clock change is stated here
and tested:

* **Forward jump**: every deadline now in the past fires at the next
  :meth:`~RecoveryTimer.advance`, each exactly once, in deadline order,
  stamped with its deadline (so the message shows it as late).
* **Backward jump**: nothing fires again (the flags say it was emitted);
  remaining times grow by the jump; the next deadlines fire when the new wall
  clock reaches them.

Either way the daemon must be told, because a bed-rest time measured on a
clock that jumped is wrong by the jump: ``advance(now, monotonic)`` compares
the wall-clock progress since the previous call with the monotonic progress
and, when they differ by more than :data:`CLOCK_JUMP_THRESHOLD_S`, returns a
``clock_jump`` event (the daemon raises :data:`RECOVERY_CLOCK_JUMP`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from roommon.core.clock import iso
from roommon.core.conditions import ConditionReport
from roommon.core.errors import CommandError
from roommon.core.events import InjectionEnded, InjectionStarted, RoomEvent
from roommon.core.log import get_logger
from roommon.core.model import DataOrigin
from roommon.core.phases import MAX_PLAN_S
from roommon.recovery.conditions import RECOVERY_CHECK_OVERDUE
from roommon.recovery.plan import RecoveryPlan
from roommon.wire.timer import (
    CheckInfo,
    EndInfo,
    EndReason,
    EventKind,
    ExtensionInfo,
    TimerAlarm,
    TimerMessage,
    TimerState,
)

log = get_logger(__name__)

#: Wall-clock vs monotonic discrepancy between two ``advance`` calls above
#: which a clock jump is reported. NTP slews by at most 0.5 ms/s, so over one
#: tick a real correction stays far below this; a step (manual change, NTP
#: step, VM resume) exceeds it.
CLOCK_JUMP_THRESHOLD_S = 2.0

#: Feed part of the check-overdue condition key: ``f"{OVERDUE_FEED_PREFIX}{n}"``.
OVERDUE_FEED_PREFIX = "check"
#: Check name on the condition reports of this module.
CHECK_NAME = "recovery"


#: Kinds emitted at most once per recovery generation and check (see TimerEvent.once_key).
ONCE_KINDS: frozenset[str] = frozenset(
    {
        "started",
        "confirmed",
        "check_due",
        "check_overdue",
        "check_done",
        "min_reached",
        "target_reached",
        "ended",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerEvent:
    """Something that happened to a room's recovery.

    ``t`` is when it happened or fell due; ``emitted`` is when the timer
    noticed (later for a deadline that passed while the daemon was down).
    """

    kind: EventKind
    seq: int
    t: float
    emitted: float
    recovery_id: str | None
    generation: int
    check_no: int | None = None
    actor: str | None = None
    reason: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def once_key(self) -> tuple[str | None, int, str, int | None] | None:
        """Identity of a once-only event; None for kinds that may repeat."""
        if self.kind not in ONCE_KINDS:
            return None
        per_recovery = self.kind in ("started", "ended")
        return (self.recovery_id, 0 if per_recovery else self.generation, self.kind, self.check_no)


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class _Check:
    no: int
    due_t: float
    due_emitted: bool = False
    overdue_emitted: bool = False
    done_t: float | None = None
    done_by: str | None = None
    vitals: dict[str, float | None] | None = None
    note: str = ""


@dataclass(slots=True)
class _Extension:
    t: float
    seconds: float
    reason: str
    by: str


@dataclass(slots=True)
class _End:
    t: float
    reason: EndReason
    by: str | None
    detail: str


@dataclass(slots=True)
class _Recovery:
    recovery_id: str
    plan: RecoveryPlan
    procedure: str | None
    first_start_t: float
    start_t: float
    generation: int = 0
    injections: int = 1
    interrupted_t: float | None = None
    confirmed_t: float | None = None
    confirmed_by: str | None = None
    extensions: list[_Extension] = field(default_factory=list)
    checks: list[_Check] = field(default_factory=list)
    min_emitted: bool = False
    target_emitted: bool = False
    ended: _End | None = None

    @property
    def target_s(self) -> float:
        return self.plan.target_s + sum(e.seconds for e in self.extensions)

    @property
    def min_t(self) -> float:
        return self.start_t + self.plan.min_bed_rest_s

    @property
    def target_t(self) -> float:
        return self.start_t + self.target_s

    @property
    def auto_confirm_t(self) -> float | None:
        if self.confirmed_t is not None or self.plan.confirm_s is None:
            return None
        if self.interrupted_t is not None:
            return None
        return self.start_t + self.plan.confirm_s

    def schedule(self) -> None:
        """Materialise the checks up to the current target, keeping the existing ones."""
        offsets = list(self.plan.check_offsets(self.target_s))
        for no, offset in enumerate(offsets[len(self.checks) :], start=len(self.checks) + 1):
            self.checks.append(_Check(no=no, due_t=self.start_t + offset))

    def overdue_at(self, check: _Check) -> float:
        return check.due_t + self.plan.grace_s


@dataclass(slots=True)
class _State:
    room: str
    seq: int = 0
    recovery: _Recovery | None = None


_STATE_ADAPTER: TypeAdapter[_State] = TypeAdapter(_State)

# Order of time-driven events falling due at the same instant.
_ORDER: dict[str, int] = {
    "confirmed": 0,
    "check_due": 1,
    "check_overdue": 2,
    "min_reached": 3,
    "target_reached": 4,
}


# --------------------------------------------------------------------------- timer


class RecoveryTimer:
    """The recovery of one room. Build with ``RecoveryTimer(room=...)``; restore with
    :meth:`from_json`. Every method that changes the state returns its events."""

    __slots__ = ("_alarms", "_last_clock", "_state")

    def __init__(self, *, room: str) -> None:
        self._state = _State(room=room)
        self._alarms: list[TimerAlarm] = []
        self._last_clock: tuple[float, float] | None = None  # (wall, monotonic) of last advance

    # ------------------------------------------------------------------ queries

    @property
    def room(self) -> str:
        return self._state.room

    @property
    def seq(self) -> int:
        """Seq of the last event emitted by this room's timer."""
        return self._state.seq

    @property
    def state(self) -> TimerState:
        rec = self._state.recovery
        if rec is None:
            return "idle"
        if rec.ended is not None:
            return "ended"
        if rec.interrupted_t is not None:
            return "interrupted"
        if rec.target_emitted:
            return "target_reached"
        return "unconfirmed" if rec.confirmed_t is None else "confirmed"

    @property
    def running(self) -> bool:
        return self.state not in ("idle", "ended")

    @property
    def recovery_id(self) -> str | None:
        rec = self._state.recovery
        return None if rec is None else rec.recovery_id

    def deadlines(self) -> dict[str, float]:
        """Absolute deadlines of the current recovery: start, min, target, check N."""
        rec = self._state.recovery
        if rec is None:
            return {}
        out = {"start": rec.start_t, "min": rec.min_t, "target": rec.target_t}
        out.update({f"check{c.no}": c.due_t for c in rec.checks})
        return out

    def next_deadline(self) -> float | None:
        """The earliest time-driven event still to fall due (what :meth:`advance` would
        emit first), or None: the daemon sleeps until it instead of the next tick."""
        rec = self._state.recovery
        if rec is None or rec.ended is not None or rec.interrupted_t is not None:
            return None
        times = [c.due_t for c in rec.checks if not c.due_emitted]
        times += [
            rec.overdue_at(c) for c in rec.checks if not c.overdue_emitted and c.done_t is None
        ]
        if rec.auto_confirm_t is not None:
            times.append(rec.auto_confirm_t)
        if not rec.min_emitted:
            times.append(rec.min_t)
        if not rec.target_emitted:
            times.append(rec.target_t)
        return min(times, default=None)

    def overdue_outstanding(self) -> frozenset[int]:
        """Numbers of the checks that are overdue and not done (alarm conditions)."""
        rec = self._state.recovery
        if rec is None or rec.ended is not None or rec.interrupted_t is not None:
            return frozenset()
        return frozenset(c.no for c in rec.checks if c.overdue_emitted and c.done_t is None)

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> bytes:
        """The whole persistent state (the store's row); alarms and clock history excluded."""
        return _STATE_ADAPTER.dump_json(self._state)

    @classmethod
    def from_json(cls, data: bytes | str) -> RecoveryTimer:
        state = _STATE_ADAPTER.validate_json(data)
        timer = cls(room=state.room)
        timer._state = state
        return timer

    # ------------------------------------------------------------------ inputs: injections

    def on_room_event(
        self, event: RoomEvent, *, plan: RecoveryPlan, now: float
    ) -> list[TimerEvent]:
        """Start, interrupt or restart on the cement check's events; other events are ignored.

        ``plan`` is used only if this starts a new recovery. Never raises: an
        event that cannot apply (an injection end older than the current
        start) is logged and dropped.
        """
        try:
            if isinstance(event, InjectionStarted):
                return self.injection_started(at=event.t, now=now)
            if isinstance(event, InjectionEnded):
                end = event.last_injecting_t
                at = end if math.isfinite(end) else event.t
                return self.injection_ended(at=at, now=now, plan=plan, injection=event.injection)
        except CommandError as err:
            log.warning(
                "recovery_event_dropped",
                room=self.room,
                name=event.name,
                reason=err.reason,
                detail=err.detail,
            )
        return []

    def injection_started(self, *, at: float, now: float) -> list[TimerEvent]:
        """An injection began; it interrupts an unconfirmed recovery."""

        def op(s: _State, out: _Emitter) -> None:
            rec = s.recovery
            if rec is None or rec.ended is not None:
                return  # not in recovery: the procedure is going on, nothing to time
            _catch_up(s, out, at)
            if rec.ended is not None:
                return
            if rec.confirmed_t is not None:
                out.emit("injection_ignored", t=at, data={"phase": "started"})
                return
            if rec.interrupted_t is None:
                rec.interrupted_t = at
                out.emit("interrupted", t=at)

        return self._apply(op, now)

    def injection_ended(
        self,
        *,
        at: float,
        now: float,
        plan: RecoveryPlan,
        procedure: str | None = None,
        injection: int | None = None,
    ) -> list[TimerEvent]:
        """An injection ended at ``at``: start a recovery, or restart an unconfirmed one."""

        def op(s: _State, out: _Emitter) -> None:
            rec = s.recovery
            if rec is not None and rec.ended is None:
                _catch_up(s, out, min(at, now))
            rec = s.recovery
            if rec is None or rec.ended is not None:
                _start(s, out, at=at, plan=plan, procedure=procedure, by=None, injection=injection)
            elif rec.confirmed_t is not None:
                out.emit("injection_ignored", t=at, data={"phase": "ended", "injection": injection})
            else:
                _restart(rec, out, at=at)
            _catch_up(s, out, now)

        return self._apply(op, now)

    def start(
        self,
        *,
        at: float,
        now: float,
        plan: RecoveryPlan,
        procedure: str | None = None,
        by: str | None = None,
    ) -> list[TimerEvent]:
        """Start a recovery explicitly (no injection seen); refused while one runs."""

        def op(s: _State, out: _Emitter) -> None:
            rec = s.recovery
            if rec is not None and rec.ended is None:
                raise CommandError(
                    "not_allowed", f"recovery {rec.recovery_id} is running; end or cancel it first"
                )
            _finite(at, "at")
            _start(s, out, at=at, plan=plan, procedure=procedure, by=by, injection=None)
            _catch_up(s, out, now)

        return self._apply(op, now)

    def restart(self, *, at: float, now: float) -> list[TimerEvent]:
        """Restart the wait of an unconfirmed recovery from ``at`` (a later injection end)."""

        def op(s: _State, out: _Emitter) -> None:
            rec = _running(s)
            _catch_up(s, out, min(at, now))
            rec = _running(s)
            if rec.confirmed_t is not None:
                raise CommandError(
                    "not_allowed", f"recovery was confirmed at {iso(rec.confirmed_t)}"
                )
            _restart(rec, out, at=at)
            _catch_up(s, out, now)

        return self._apply(op, now)

    # ------------------------------------------------------------------ inputs: commands

    def confirm(self, *, at: float, by: str) -> list[TimerEvent]:
        def op(s: _State, out: _Emitter) -> None:
            _catch_up(s, out, at)
            rec = _running(s)
            if rec.confirmed_t is not None:
                who = rec.confirmed_by or "?"
                raise CommandError("already_done", f"confirmed at {iso(rec.confirmed_t)} by {who}")
            _not_interrupted(rec)
            rec.confirmed_t, rec.confirmed_by = at, by
            out.emit("confirmed", t=at, actor=by)

        return self._apply(op, at)

    def check_done(
        self,
        *,
        check_no: int | None,
        at: float,
        by: str,
        vitals: Mapping[str, float | None] | None = None,
        note: str = "",
    ) -> list[TimerEvent]:
        """Record a check as done; ``check_no=None`` picks the earliest that may be done."""

        def op(s: _State, out: _Emitter) -> None:
            _catch_up(s, out, at)
            rec = _running(s)
            _not_interrupted(rec)
            grace = rec.plan.grace_s
            if check_no is None:
                open_checks = [c for c in rec.checks if c.done_t is None]
                if not open_checks:
                    raise CommandError("already_done", "every scheduled check is done")
                check = open_checks[0]
            else:
                if not 1 <= check_no <= len(rec.checks):
                    raise CommandError(
                        "unknown_check",
                        f"check {check_no}: the schedule has checks 1..{len(rec.checks)}",
                    )
                check = rec.checks[check_no - 1]
                if check.done_t is not None:
                    raise CommandError(
                        "already_done",
                        f"check {check.no} was done at {iso(check.done_t)} by {check.done_by}",
                    )
            if at < check.due_t - grace:
                raise CommandError(
                    "not_allowed",
                    f"check {check.no} is due at {iso(check.due_t)}; it can be recorded "
                    f"from {iso(check.due_t - grace)}",
                )
            if vitals is not None:
                bad = [k for k, v in vitals.items() if v is not None and not math.isfinite(v)]
                if bad:
                    raise CommandError("bad_value", f"vitals: {', '.join(bad)} not finite")
            check.done_t, check.done_by = at, by
            check.vitals = None if vitals is None else dict(vitals)
            check.note = note
            # A check done before it fell due never falls due afterwards.
            check.due_emitted = True
            data: dict[str, Any] = {"due": check.due_t, "late_s": max(0.0, at - check.due_t)}
            if check.vitals is not None:
                data["vitals"] = check.vitals
            if note:
                data["note"] = note
            out.emit("check_done", t=at, check_no=check.no, actor=by, data=data)
            _maybe_end_at_target(rec, out, at)

        return self._apply(op, at)

    def extend(self, *, seconds: float, reason: str, by: str, at: float) -> list[TimerEvent]:
        """Move the target later by ``seconds`` (before it is reached)."""

        def op(s: _State, out: _Emitter) -> None:
            _catch_up(s, out, at)
            rec = _running(s)
            _not_interrupted(rec)
            if not math.isfinite(seconds) or seconds <= 0:
                raise CommandError("bad_value", f"seconds: {seconds} is not a positive duration")
            if rec.target_s + seconds > MAX_PLAN_S:
                raise CommandError(
                    "bad_value",
                    f"seconds: target would be {(rec.target_s + seconds) / 3600:.1f} h, "
                    f"more than {MAX_PLAN_S / 3600:g} h",
                )
            if not reason.strip():
                raise CommandError("bad_value", "reason: required to extend")
            if rec.target_emitted:
                raise CommandError(
                    "not_allowed",
                    f"the target was reached at {iso(rec.target_t)}; end the recovery instead",
                )
            before = rec.target_t
            rec.extensions.append(_Extension(t=at, seconds=seconds, reason=reason, by=by))
            rec.schedule()
            out.emit(
                "extended",
                t=at,
                actor=by,
                reason=reason,
                data={"seconds": seconds, "target_before": before, "target": rec.target_t},
            )

        return self._apply(op, at)

    def end_early(self, *, reason: str, by: str, at: float) -> list[TimerEvent]:
        """End before the target (transfer, discharge decision); reason required."""

        def op(s: _State, out: _Emitter) -> None:
            _catch_up(s, out, at)
            rec = _open(s)
            if not reason.strip():
                raise CommandError("bad_value", "reason: required to end a recovery early")
            _end(rec, out, t=at, reason="early", by=by, detail=reason)

        return self._apply(op, at)

    def cancel(self, *, reason: str, by: str, at: float) -> list[TimerEvent]:
        """Void the recovery (started in error, e.g. a pressure artefact)."""

        def op(s: _State, out: _Emitter) -> None:
            _catch_up(s, out, at)
            rec = _open(s)
            _end(rec, out, t=at, reason="cancelled", by=by, detail=reason)

        return self._apply(op, at)

    def note_alarms(self, alarms: Iterable[TimerAlarm]) -> None:
        """The room's active alarms, shown on the timer message (not persisted)."""
        self._alarms = sorted(alarms, key=lambda a: a.since)

    # ------------------------------------------------------------------ time

    def advance(self, now: float, monotonic: float | None = None) -> list[TimerEvent]:
        """Emit everything that fell due up to ``now``; with ``monotonic``, detect clock jumps."""
        jump: tuple[float, float, float] | None = None
        if monotonic is not None:
            if self._last_clock is not None:
                wall_dt = now - self._last_clock[0]
                mono_dt = monotonic - self._last_clock[1]
                if abs(wall_dt - mono_dt) > CLOCK_JUMP_THRESHOLD_S:
                    jump = (wall_dt - mono_dt, wall_dt, mono_dt)
            self._last_clock = (now, monotonic)

        rec = self._state.recovery
        if jump is None and (rec is None or rec.ended is not None) and math.isfinite(now):
            return []  # nothing can fall due: no copy of the state (every room, every tick)

        def op(s: _State, out: _Emitter) -> None:
            if jump is not None:
                out.emit(
                    "clock_jump",
                    t=now,
                    data={"jump_s": jump[0], "wall_s": jump[1], "monotonic_s": jump[2]},
                )
            if s.recovery is not None and s.recovery.ended is None:
                _catch_up(s, out, now)

        events = self._apply(op, now)
        if jump is not None:
            log.warning("recovery_clock_jump", room=self.room, jump_s=jump[0])
        return events

    # ------------------------------------------------------------------ message

    def snapshot(self, *, site: str, now: float) -> TimerMessage:
        """The retained timer message as of ``now`` (call after :meth:`advance`)."""
        s = self._state
        rec = s.recovery
        base: dict[str, Any] = {
            "site": site,
            "room": s.room,
            "t": now,
            "time": iso(now),
            "seq": s.seq,
            "state": self.state,
        }
        if rec is None:
            return TimerMessage(**base)
        infos = [_check_info(rec, c) for c in rec.checks]
        running = rec.ended is None
        next_check = next((i for i in infos if i.status != "done"), None) if running else None
        auto = rec.auto_confirm_t if running else None
        return TimerMessage(
            **base,
            recovery_id=rec.recovery_id,
            procedure=rec.procedure,
            started=rec.start_t,
            started_time=iso(rec.start_t),
            first_started=rec.first_start_t,
            first_started_time=iso(rec.first_start_t),
            injections=rec.injections,
            restarts=rec.generation,
            confirmed=rec.confirmed_t,
            confirmed_time=None if rec.confirmed_t is None else iso(rec.confirmed_t),
            confirmed_by=rec.confirmed_by,
            auto_confirm_at=auto,
            auto_confirm_at_time=None if auto is None else iso(auto),
            min_deadline=rec.min_t,
            min_deadline_time=iso(rec.min_t),
            min_remaining_s=max(0.0, rec.min_t - now) if running else 0.0,
            min_reached=rec.min_emitted,
            target_deadline=rec.target_t,
            target_deadline_time=iso(rec.target_t),
            target_remaining_s=max(0.0, rec.target_t - now) if running else 0.0,
            target_reached=rec.target_emitted,
            extended_s=rec.target_s - rec.plan.target_s,
            next_check=next_check,
            overdue_checks=sorted(self.overdue_outstanding()),
            checks=infos,
            extensions=[
                ExtensionInfo(t=e.t, time=iso(e.t), seconds=e.seconds, reason=e.reason, by=e.by)
                for e in rec.extensions
            ],
            alarms=self._alarms if running else [],
            ended=None
            if rec.ended is None
            else EndInfo(
                t=rec.ended.t,
                time=iso(rec.ended.t),
                reason=rec.ended.reason,
                by=rec.ended.by,
                detail=rec.ended.detail,
            ),
        )

    # ------------------------------------------------------------------ plumbing

    def _apply(self, op: Callable[[_State, _Emitter], None], now: float) -> list[TimerEvent]:
        """Run ``op`` on a copy of the state; keep the copy only if it did not raise."""
        if not math.isfinite(now):
            raise CommandError("bad_value", f"time {now} is not finite")
        work = copy.deepcopy(self._state)
        out = _Emitter(work, now)
        op(work, out)
        self._state = work
        for e in out.events:
            log.info(
                "recovery_event",
                room=self.room,
                kind=e.kind,
                seq=e.seq,
                check_no=e.check_no,
                t=iso(e.t),
                actor=e.actor,
            )
        return out.events


class _Emitter:
    """Collects the events of one operation, numbering them from the state's seq."""

    __slots__ = ("_now", "_state", "events")

    def __init__(self, state: _State, now: float) -> None:
        self._state = state
        self._now = now
        self.events: list[TimerEvent] = []

    def emit(
        self,
        kind: EventKind,
        *,
        t: float,
        check_no: int | None = None,
        actor: str | None = None,
        reason: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> None:
        s = self._state
        s.seq += 1
        rec = s.recovery
        self.events.append(
            TimerEvent(
                kind=kind,
                seq=s.seq,
                t=t,
                emitted=self._now,
                recovery_id=None if rec is None else rec.recovery_id,
                generation=0 if rec is None else rec.generation,
                check_no=check_no,
                actor=actor,
                reason=reason,
                data=data or {},
            )
        )


# --------------------------------------------------------------------------- transitions


def _finite(value: float, name: str) -> None:
    if not math.isfinite(value):
        raise CommandError("bad_value", f"{name}: {value} is not finite")


def _start(
    s: _State,
    out: _Emitter,
    *,
    at: float,
    plan: RecoveryPlan,
    procedure: str | None,
    by: str | None,
    injection: int | None,
) -> None:
    _finite(at, "at")
    # Deterministic (a replay or a re-emission after a crash gives the same id) and
    # unique per room even if a wall-clock jump repeats a start time: the seq is in it.
    rec = _Recovery(
        recovery_id=f"{s.room}-{round(at * 1000)}-{s.seq + 1}",
        plan=plan,
        procedure=procedure,
        first_start_t=at,
        start_t=at,
    )
    rec.schedule()
    s.recovery = rec
    out.emit(
        "started",
        t=at,
        actor=by,
        data={
            "injection": injection,
            "min": rec.min_t,
            "target": rec.target_t,
            "checks": len(rec.checks),
        },
    )


def _restart(rec: _Recovery, out: _Emitter, *, at: float) -> None:
    _finite(at, "at")
    if at < rec.start_t:
        raise CommandError(
            "bad_value",
            f"at: {iso(at)} is before the current start {iso(rec.start_t)}",
        )
    previous = rec.start_t
    rec.generation += 1
    rec.injections += 1
    rec.start_t = at
    rec.interrupted_t = None
    rec.checks = []
    rec.min_emitted = rec.target_emitted = False
    # Extensions are kept: they are a nurse's decision about this patient's bed rest.
    rec.schedule()
    out.emit(
        "restarted",
        t=at,
        data={"previous_start": previous, "min": rec.min_t, "target": rec.target_t},
    )


def _running(s: _State) -> _Recovery:
    rec = s.recovery
    if rec is None:
        raise CommandError("no_recovery", "no recovery has been started in this room")
    if rec.ended is not None:
        raise CommandError(
            "no_recovery",
            f"recovery {rec.recovery_id} ended at {iso(rec.ended.t)} ({rec.ended.reason})",
        )
    return rec


def _open(s: _State) -> _Recovery:
    """The recovery for end/cancel: ending an ended one is 'already_done'."""
    rec = s.recovery
    if rec is None:
        raise CommandError("no_recovery", "no recovery has been started in this room")
    if rec.ended is not None:
        raise CommandError(
            "already_done",
            f"recovery {rec.recovery_id} ended at {iso(rec.ended.t)} ({rec.ended.reason})",
        )
    return rec


def _not_interrupted(rec: _Recovery) -> None:
    if rec.interrupted_t is not None:
        raise CommandError(
            "not_allowed",
            f"an injection is in progress since {iso(rec.interrupted_t)}; the wait restarts "
            "when it ends",
        )


def _end(
    rec: _Recovery, out: _Emitter, *, t: float, reason: EndReason, by: str | None, detail: str
) -> None:
    rec.ended = _End(t=t, reason=reason, by=by, detail=detail)
    out.emit(
        "ended",
        t=t,
        actor=by,
        reason=reason,
        data={
            "detail": detail,
            "min_reached": rec.min_emitted,
            "bed_rest_s": t - rec.start_t,
            "checks_done": sum(c.done_t is not None for c in rec.checks),
            "checks": len(rec.checks),
        },
    )


def _catch_up(s: _State, out: _Emitter, now: float) -> None:
    """Emit, in deadline order, every time-driven event due at or before ``now``."""
    rec = s.recovery
    if rec is None or rec.ended is not None or rec.interrupted_t is not None:
        return
    due: list[tuple[float, int, int, str, _Check | None]] = []
    auto = rec.auto_confirm_t
    if auto is not None and auto <= now:
        due.append((auto, _ORDER["confirmed"], 0, "confirmed", None))
    for c in rec.checks:
        if not c.due_emitted and c.due_t <= now:
            due.append((c.due_t, _ORDER["check_due"], c.no, "check_due", c))
        over = rec.overdue_at(c)
        if not c.overdue_emitted and c.done_t is None and over <= now:
            due.append((over, _ORDER["check_overdue"], c.no, "check_overdue", c))
    if not rec.min_emitted and rec.min_t <= now:
        due.append((rec.min_t, _ORDER["min_reached"], 0, "min_reached", None))
    if not rec.target_emitted and rec.target_t <= now:
        due.append((rec.target_t, _ORDER["target_reached"], 0, "target_reached", None))
    due.sort(key=lambda d: d[:3])
    for t, _, _, kind, check in due:
        if kind == "confirmed":
            rec.confirmed_t, rec.confirmed_by = t, "auto"
            out.emit("confirmed", t=t, actor=None, data={"auto": True})
        elif kind == "check_due" and check is not None:
            check.due_emitted = True
            out.emit(
                "check_due", t=t, check_no=check.no, data={"overdue_at": rec.overdue_at(check)}
            )
        elif kind == "check_overdue" and check is not None:
            check.overdue_emitted = True
            out.emit("check_overdue", t=t, check_no=check.no, data={"due": check.due_t})
        elif kind == "min_reached":
            rec.min_emitted = True
            out.emit("min_reached", t=t)
        elif kind == "target_reached":
            rec.target_emitted = True
            out.emit("target_reached", t=t, data={"extended_s": rec.target_s - rec.plan.target_s})
    _maybe_end_at_target(rec, out, now)


def _maybe_end_at_target(rec: _Recovery, out: _Emitter, now: float) -> None:
    """At the target, end once every check due by then is done."""
    if not rec.target_emitted or rec.ended is not None:
        return
    if any(c.done_t is None for c in rec.checks):
        return
    last_done = max((c.done_t for c in rec.checks if c.done_t is not None), default=rec.target_t)
    _end(rec, out, t=min(now, max(rec.target_t, last_done)), reason="target", by=None, detail="")


def _check_info(rec: _Recovery, c: _Check) -> CheckInfo:
    status: Any
    if c.done_t is not None:
        status = "done"
    elif c.overdue_emitted:
        status = "overdue"
    elif c.due_emitted:
        status = "due"
    else:
        status = "scheduled"
    return CheckInfo(
        no=c.no,
        due=c.due_t,
        due_time=iso(c.due_t),
        overdue_at=rec.overdue_at(c),
        status=status,
        done_t=c.done_t,
        done_time=None if c.done_t is None else iso(c.done_t),
        done_by=c.done_by,
        vitals=c.vitals,
        note=c.note,
    )


# --------------------------------------------------------------------------- escalation


class OverdueEscalation:
    """Turns a timer's outstanding overdue checks into alarm-condition reports.

    Keeps which checks it reported active; each call reports only changes:
    newly overdue checks active, checks no longer outstanding (done, recovery
    restarted, ended or interrupted) inactive. Condition key:
    ``(room, f"check{n}", "recovery.check_overdue")``.
    """

    __slots__ = ("_active", "_room")

    def __init__(self, *, room: str) -> None:
        self._room = room
        self._active: frozenset[int] = frozenset()

    def reports(
        self, timer: RecoveryTimer, *, t: float, origin: DataOrigin = DataOrigin.LIVE
    ) -> list[ConditionReport]:
        current = timer.overdue_outstanding()
        due = timer.deadlines()
        out = [
            ConditionReport(
                room=self._room,
                feed=f"{OVERDUE_FEED_PREFIX}{n}",
                check=CHECK_NAME,
                spec=RECOVERY_CHECK_OVERDUE,
                active=True,
                t=t,
                value=(t - due[f"check{n}"]) / 60.0,  # minutes past due
                message=f"recovery check {n} due {iso(due[f'check{n}'])} is not done",
                origin=origin,
            )
            for n in sorted(current - self._active)
        ]
        out += [
            ConditionReport(
                room=self._room,
                feed=f"{OVERDUE_FEED_PREFIX}{n}",
                check=CHECK_NAME,
                spec=RECOVERY_CHECK_OVERDUE,
                active=False,
                t=t,
                origin=origin,
            )
            for n in sorted(self._active - current)
        ]
        self._active = current
        return out
