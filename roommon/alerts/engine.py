"""Alarm engine of one room: conditions in, alarm events out.

Follows the IEC 60601-1-8 split (the same as IEEE 11073 SDC's AlertCondition /
AlertSignal): checks report *conditions*; this engine decides when a condition
becomes an *alarm* (condition delay), when it ends (clear delay, latching,
reset), whether it sounds (acknowledgement, audio pause, a new alarm of higher
priority during a pause) and who is told (first recipients, escalation chain,
de-escalation). Every transition is an :class:`AlarmEventMessage` with a
unique event id and a gap-free per-room sequence number.

Lifecycle decisions use the clock time at which reports arrive (``now``),
not device sample times: a device clock that is off must not shorten a delay.
The engine is synchronous and pure apart from the ``now`` it is given, which
makes every rule testable on a virtual clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from roommon.alerts.settings import AlarmOverride, AlarmRoomSettings, EscalationConfig
from roommon.core import units
from roommon.core.clock import iso
from roommon.core.conditions import AlarmKind, ConditionReport, ConditionSpec, Priority
from roommon.core.errors import CommandError
from roommon.core.log import get_logger
from roommon.core.model import DataOrigin
from roommon.core.phases import Phase
from roommon.wire.payloads import AlarmEventMessage, AlarmSummary, NotifyMessage, Transition

log = get_logger(__name__)

ConditionKey = tuple[str, str, str]  # (room, feed, code)

#: Pause scope meaning "every feed of the room".
WHOLE_ROOM = "*"


#: active; acknowledged; latched (the condition is gone, the alarm not yet reset).
AlarmState = Literal["active", "acknowledged", "latched"]


@dataclass(slots=True)
class _Tracked:
    """What the engine knows of one condition key, alarm or not."""

    spec: ConditionSpec
    check: str
    present: bool = False
    present_since: float = 0.0
    absent_since: float = 0.0
    value: float | None = None
    limit: float | None = None
    message: str = ""
    origin: DataOrigin = DataOrigin.LIVE
    alarm: Alarm | None = None


@dataclass(slots=True)
class Alarm:
    alarm_id: str
    key: ConditionKey
    spec: ConditionSpec
    check: str
    since: float
    origin: DataOrigin
    state: AlarmState = "active"
    acknowledged: bool = False
    acked_at: float | None = None
    condition_present: bool = True
    escalation_level: int = 0
    escalated_to: list[str] = field(default_factory=list)
    after_pause_start: bool = False  # raised while an audio pause was running
    value: float | None = None
    limit: float | None = None
    message: str = ""

    @property
    def priority(self) -> Priority:
        return self.spec.priority

    @property
    def kind(self) -> AlarmKind:
        return self.spec.kind


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What the engine asks to be published: an alarm event, and maybe notifications."""

    event: AlarmEventMessage
    notifications: tuple[NotifyMessage, ...] = ()


class RoomAlarms:
    """Alarm state of one room."""

    def __init__(
        self,
        *,
        site: str,
        room: str,
        config: AlarmRoomSettings,
        next_seq: int = 1,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.site = site
        self.room = room
        self._config = config
        self._escalation: EscalationConfig = config.escalation
        self._seq = next_seq
        self._new_id = new_id
        self._tracked: dict[ConditionKey, _Tracked] = {}
        self.audio_paused_until: float | None = None
        self._audio_pause_level = Priority.LOW
        self.alarm_paused: dict[str, float] = {}  # feed or WHOLE_ROOM -> until
        self.phase = Phase.IDLE  # selects the alarm profile; set by the room pipeline

    # ------------------------------------------------------------------ queries

    @property
    def last_seq(self) -> int:
        return self._seq - 1

    def alarms(self) -> list[Alarm]:
        return [t.alarm for t in self._tracked.values() if t.alarm is not None]

    def find(self, alarm_id: str) -> Alarm | None:
        return next((a for a in self.alarms() if a.alarm_id == alarm_id), None)

    def audible(self, alarm: Alarm, now: float) -> bool:
        if alarm.acknowledged or alarm.state == "acknowledged":
            return False
        if self.audio_paused_until is not None and now < self.audio_paused_until:
            # A new alarm above the pause's level (or any new high one) still sounds.
            return alarm.after_pause_start and (
                alarm.priority > self._audio_pause_level or alarm.priority == Priority.HIGH
            )
        return True

    def summaries(self, now: float) -> list[AlarmSummary]:
        out = [
            AlarmSummary(
                alarm_id=a.alarm_id,
                condition="/".join(a.key),
                code=a.spec.code,
                feed=a.key[1],
                kind=a.kind.value,
                priority=a.priority.label,
                state=a.state,
                audible=self.audible(a, now),
                since=a.since,
                value=a.value,
                limit=a.limit,
                message=a.message or a.spec.description,
                origin=a.origin.value,
                escalation_level=a.escalation_level,
            )
            for a in self.alarms()
        ]
        out.sort(key=lambda s: (-Priority[s.priority.upper()], s.since))
        return out

    # ------------------------------------------------------------------ inputs

    def _override(self, code: str) -> AlarmOverride | None:
        """The phase profile's override (exact code, then ``prefix.*``), else the room's."""
        prefix = code.split(".", 1)[0] + ".*"
        for table in (self._config.profiles.get(self.phase, {}), self._config.alarms):
            o = table.get(code) or table.get(prefix)
            if o is not None:
                return o
        return None

    def effective_spec(self, spec: ConditionSpec) -> ConditionSpec | None:
        """The spec with the current phase's and the room's overrides; None when disabled."""
        o = self._override(spec.code)
        if o is None:
            return spec
        if not o.enabled:
            return None
        return ConditionSpec(
            code=spec.code,
            kind=spec.kind,
            priority=Priority[o.priority.upper()] if o.priority else spec.priority,
            description=spec.description,
            delay_s=spec.delay_s if o.delay_s is None else o.delay_s,
            clear_delay_s=spec.clear_delay_s if o.clear_delay_s is None else o.clear_delay_s,
            latching=spec.latching if o.latching is None else o.latching,
        )

    def report(self, r: ConditionReport, now: float) -> list[Outgoing]:
        """Take one condition report; return the events it causes."""
        spec = self.effective_spec(r.spec)
        tr = self._tracked.get(r.key)
        if spec is None and (tr is None or r.active):
            # Disabled (in this phase): no new alarm; one already running may still end.
            return []
        if tr is None:
            if not r.active or spec is None:
                return []
            tr = self._tracked[r.key] = _Tracked(spec=spec, check=r.check)
        tr.value, tr.limit, tr.message, tr.origin = r.value, r.limit, r.message, r.origin
        if r.active and not tr.present:
            tr.present, tr.present_since = True, now
            log.debug("condition_present", room=self.room, feed=r.feed, code=r.spec.code)
        elif not r.active and tr.present:
            tr.present, tr.absent_since = False, now
            log.debug("condition_absent", room=self.room, feed=r.feed, code=r.spec.code)
        if tr.alarm is not None and r.active:
            tr.alarm.value, tr.alarm.limit, tr.alarm.message = r.value, r.limit, r.message
        return self._evaluate(r.key, tr, now)

    def clock_stepped(self, step_s: float) -> None:
        """The wall clock stepped by ``step_s`` (NTP, an operator, a VM resumed): shift
        every instant the time rules measure from by the same step, so a condition delay,
        a clear delay, an escalation step and a pause last their elapsed time, neither cut
        short by a step forward nor stretched by a step back. Times the events carry
        afterwards (``t``, ``since``) are on the new wall clock."""
        for tr in self._tracked.values():
            tr.present_since += step_s
            tr.absent_since += step_s
            if tr.alarm is not None:
                tr.alarm.since += step_s
                if tr.alarm.acked_at is not None:
                    tr.alarm.acked_at += step_s
        if self.audio_paused_until is not None:
            self.audio_paused_until += step_s
        self.alarm_paused = {scope: until + step_s for scope, until in self.alarm_paused.items()}
        log.warning("alarm_clock_stepped", room=self.room, step_s=round(step_s, 3))

    def next_deadline(self) -> float | None:
        """The earliest clock time (``now`` scale) at which a time-based rule may fire.

        Condition delays, clear delays, escalation steps and the ends of audio and
        alarm pauses: the daemon sleeps until this instant and calls :meth:`tick`,
        so an alarm is raised at its deadline, not at the next periodic tick. The
        rules in :meth:`_evaluate` compare ``now`` with exactly these sums, so a
        tick at the deadline always fires what fell due.
        """
        times: list[float] = []
        if self.audio_paused_until is not None:
            times.append(self.audio_paused_until)
        times.extend(self.alarm_paused.values())
        for key, tr in self._tracked.items():
            alarm, spec = tr.alarm, tr.spec
            if alarm is None:
                if tr.present:
                    due = tr.present_since + spec.delay_s
                    paused = [
                        u for s, u in self.alarm_paused.items() if s in (key[1], WHOLE_ROOM)
                    ]
                    times.append(max(due, *paused) if paused else due)
                continue
            if not tr.present and alarm.state != "latched":
                times.append(tr.absent_since + spec.clear_delay_s)
            step = self._next_step(alarm)
            if step is not None:
                times.append(step)
        return min(times, default=None)

    def _next_step(self, alarm: Alarm) -> float | None:
        """When ``alarm``'s next escalation step falls due (None: no further step)."""
        if alarm.acknowledged or alarm.state == "latched" or not self._routed(alarm):
            return None
        chain = self._escalation.chain(alarm.priority)
        if alarm.escalation_level >= len(chain):
            return None
        return alarm.since + chain[alarm.escalation_level].after_s

    def tick(self, now: float) -> list[Outgoing]:
        """Time-based rules: delays, clear delays, pauses ending, escalation."""
        out: list[Outgoing] = []
        if self.audio_paused_until is not None and now >= self.audio_paused_until:
            log.info("audio_pause_ended", room=self.room)
            self.audio_paused_until = None
        for scope, until in list(self.alarm_paused.items()):
            if now >= until:
                log.info("alarm_pause_ended", room=self.room, scope=scope)
                del self.alarm_paused[scope]
        for key, tr in list(self._tracked.items()):
            out += self._evaluate(key, tr, now)
        return out

    # ------------------------------------------------------------------ commands

    def acknowledge(self, alarm_id: str, now: float, *, actor: str) -> list[Outgoing]:
        alarm = self._require(alarm_id)
        if alarm.acknowledged:
            raise CommandError("not_allowed", f"alarm {alarm_id} is already acknowledged")
        alarm.acknowledged, alarm.acked_at = True, now
        if alarm.state == "active":
            alarm.state = "acknowledged"
        out = [self._emit(alarm, "acknowledged", now, actor=actor)]
        out += self._deescalate(alarm, now, actor=actor)
        return out

    def reset(self, alarm_id: str, now: float, *, actor: str) -> list[Outgoing]:
        alarm = self._require(alarm_id)
        if alarm.state != "latched":
            raise CommandError(
                "not_allowed",
                f"alarm {alarm_id} is {alarm.state}; only a latched alarm whose condition "
                "has ended can be reset",
            )
        out = self._deescalate(alarm, now, actor=actor)
        out.append(self._emit(alarm, "reset", now, actor=actor, state="cleared"))
        self._tracked[alarm.key].alarm = None
        return out

    def pause_audio(self, now: float, *, duration_s: float | None = None) -> float:
        until = now + (duration_s if duration_s is not None else self._config.audio_pause_s)
        self.audio_paused_until = until
        sounding = [a.priority for a in self.alarms() if self.audible(a, now)]
        self._audio_pause_level = max(sounding, default=Priority.LOW)
        for a in self.alarms():
            a.after_pause_start = False
        log.info("audio_paused", room=self.room, until=until, level=self._audio_pause_level.label)
        return until

    def pause_alarms(self, now: float, *, scope: str, duration_s: float) -> float:
        if duration_s > self._config.alarm_pause_max_s:
            raise CommandError(
                "not_allowed",
                f"duration_s {duration_s} exceeds this room's alarm_pause_max_s "
                f"{self._config.alarm_pause_max_s}",
            )
        if scope != WHOLE_ROOM and scope not in self._config.feeds:
            raise CommandError("unknown_feed", f"room {self.room} has no feed {scope!r}")
        until = now + duration_s
        self.alarm_paused[scope] = until
        log.info("alarm_paused", room=self.room, scope=scope, until=until)
        return until

    def close_stale(self, open_events: list[AlarmEventMessage], now: float) -> list[Outgoing]:
        """Close the alarms a previous run left open (it crashed or was killed).

        Their conditions are re-evaluated from fresh data: still present, they
        are raised again as new alarms after their delay. Closing the old ones
        keeps the log's alarm burden honest and tells subscribers tracking
        alarm ids that those ids are finished.
        """
        out = []
        for last in open_events:
            seq, self._seq = self._seq, self._seq + 1
            event = last.model_copy(
                update={
                    "event_id": uuid.uuid4().hex,
                    "seq": seq,
                    "transition": "cleared",
                    "state": "cleared",
                    "audible": False,
                    "escalation_level": 0,
                    "message": "closed at daemon restart; raised again if the condition persists",
                    "t": now,
                    "time": iso(now),
                    "actor": None,
                }
            )
            log.warning(
                "alarm_closed_at_restart",
                room=self.room,
                feed=last.feed,
                alarm_id=last.alarm_id,
                code=last.code,
                seq=seq,
            )
            out.append(Outgoing(event))
        return out

    # ------------------------------------------------------------------ rules

    def _require(self, alarm_id: str) -> Alarm:
        alarm = self.find(alarm_id)
        if alarm is None:
            raise CommandError("unknown_alarm", f"room {self.room} has no alarm {alarm_id!r}")
        return alarm

    def _paused(self, feed: str, now: float) -> bool:
        return any(
            now < until for scope, until in self.alarm_paused.items() if scope in (feed, WHOLE_ROOM)
        )

    def _evaluate(self, key: ConditionKey, tr: _Tracked, now: float) -> list[Outgoing]:
        alarm, spec = tr.alarm, tr.spec
        if alarm is None:
            if (
                tr.present
                and now >= tr.present_since + spec.delay_s
                and not self._paused(key[1], now)
            ):
                return self._raise(key, tr, now)
            if not tr.present:
                del self._tracked[key]
            return []
        if tr.present:
            if alarm.state == "latched":  # the condition came back before a reset
                alarm.state = "acknowledged" if alarm.acknowledged else "active"
                alarm.condition_present = True
                return [self._emit(alarm, "raised", now)]
            return self._escalate(alarm, now)
        if now < tr.absent_since + spec.clear_delay_s:
            return self._escalate(alarm, now)
        if alarm.state == "latched":
            return []
        alarm.condition_present = False
        if spec.latching:
            alarm.state = "latched"
            return [self._emit(alarm, "latched", now)]
        out = self._deescalate(alarm, now, actor=None)
        out.append(self._emit(alarm, "cleared", now, state="cleared"))
        del self._tracked[key]
        return out

    def _routed(self, alarm: Alarm) -> bool:
        return alarm.origin == DataOrigin.LIVE or self._escalation.route_simulated

    def _raise(self, key: ConditionKey, tr: _Tracked, now: float) -> list[Outgoing]:
        alarm = Alarm(
            alarm_id=self._new_id(),
            key=key,
            spec=tr.spec,
            check=tr.check,
            since=now,
            origin=tr.origin,
            value=tr.value,
            limit=tr.limit,
            message=tr.message,
            after_pause_start=self.audio_paused_until is not None,
        )
        tr.alarm = alarm
        out = self._emit(alarm, "raised", now)
        if self._routed(alarm):
            notes = tuple(
                NotifyMessage(recipient=r, reason="new", level=0, event=out.event)
                for r in self._escalation.notify
            )
            out = Outgoing(out.event, notes)
        return [out, *self._escalate(alarm, now)]

    def _escalate(self, alarm: Alarm, now: float) -> list[Outgoing]:
        if alarm.acknowledged or alarm.state == "latched" or not self._routed(alarm):
            return []
        out: list[Outgoing] = []
        chain = self._escalation.chain(alarm.priority)
        while alarm.escalation_level < len(chain):
            step = chain[alarm.escalation_level]
            if now < alarm.since + step.after_s:
                break
            alarm.escalation_level += 1
            alarm.escalated_to.append(step.to)
            o = self._emit(alarm, "escalated", now)
            note = NotifyMessage(
                recipient=step.to, reason="escalation", level=alarm.escalation_level, event=o.event
            )
            out.append(Outgoing(o.event, (note,)))
            log.warning(
                "alarm_escalated",
                room=self.room,
                alarm_id=alarm.alarm_id,
                code=alarm.spec.code,
                to=step.to,
                level=alarm.escalation_level,
            )
        return out

    def _deescalate(self, alarm: Alarm, now: float, *, actor: str | None) -> list[Outgoing]:
        if not alarm.escalated_to:
            return []
        recipients, alarm.escalated_to = alarm.escalated_to, []
        level, alarm.escalation_level = alarm.escalation_level, 0
        o = self._emit(alarm, "deescalated", now, actor=actor)
        notes = tuple(
            NotifyMessage(recipient=r, reason="deescalation", level=level, event=o.event)
            for r in recipients
        )
        return [Outgoing(o.event, notes)]

    def _emit(
        self,
        alarm: Alarm,
        transition: Transition,
        now: float,
        *,
        actor: str | None = None,
        state: str | None = None,
    ) -> Outgoing:
        seq, self._seq = self._seq, self._seq + 1
        event = AlarmEventMessage(
            event_id=uuid.uuid4().hex,
            seq=seq,
            site=self.site,
            room=self.room,
            alarm_id=alarm.alarm_id,
            condition="/".join(alarm.key),
            code=alarm.spec.code,
            check=alarm.check,
            feed=alarm.key[1],
            kind=alarm.kind.value,
            priority=alarm.priority.label,
            transition=transition,
            state=(state or alarm.state),
            audible=False if state == "cleared" else self.audible(alarm, now),
            escalation_level=alarm.escalation_level,
            value=alarm.value,
            limit=alarm.limit,
            # The check's own words when it gave any, else what the condition is: a
            # person reading a log, a display or a page always gets text, not a code.
            message=alarm.message or alarm.spec.description,
            origin=alarm.origin.value,
            t=now,
            time=iso(now),
            since=alarm.since,
            since_time=iso(alarm.since),
            actor=actor,
        )
        # A high-priority alarm starting or escalating is what an operator scanning the log
        # must not miss: it is logged as a warning, everything else as information.
        loud = alarm.priority is Priority.HIGH and transition in ("raised", "escalated")
        (log.warning if loud else log.info)(
            "alarm_" + transition,
            room=self.room,
            feed=alarm.key[1],
            alarm_id=alarm.alarm_id,
            code=alarm.spec.code,
            priority=alarm.priority.label,
            seq=seq,
            origin=alarm.origin.value,
            actor=actor,
            text=event.message,
            **{
                name: units.alarm_value(alarm.spec.code, x)
                for name, x in (("value", alarm.value), ("limit", alarm.limit))
                if x is not None
            },
        )
        return Outgoing(event)
