"""One room's processing: samples in, alarm events, room events and state out.

Data flow: a transport hands decoded samples (or a rejection) to
:meth:`RoomPipeline.ingest` / :meth:`RoomPipeline.reject`; bad samples are
removed; the checks that need the feed run (each keeps the window it
needs); their condition reports go to the room's alarm engine; everything to be
published leaves through a :class:`RoomOutput`. Time-based rules run
from :meth:`RoomPipeline.tick`, which the daemon calls about once a second.
The pipeline is synchronous: it never awaits, so one room's work is one
uninterrupted step and the order of events is the order of inputs.

Every public entry (ingest, reject, tick, commands, transport state, room
events) runs under :meth:`RoomPipeline._guard`: an unexpected exception is
this room's high-priority technical alarm ``room.failed`` (its alarms cannot be
trusted), logged with its traceback, and the room goes on from its state; the
other rooms never see it. A :class:`~roommon.core.errors.StoreError` is not a
room's fault but shared infrastructure's, so it passes through to the daemon.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from types import TracebackType
from typing import Protocol

from roommon.alerts.engine import WHOLE_ROOM, Outgoing, RoomAlarms
from roommon.checks.base import Check, CheckContext
from roommon.config import DaemonConfig, RoomConfig
from roommon.core import units
from roommon.core.clock import Clock, iso
from roommon.core.conditions import ConditionReport
from roommon.core.errors import CommandError, ProtocolError, StoreError
from roommon.core.events import (
    CementMixed,
    InjectionEnded,
    InjectionStarted,
    PatientCleared,
    PatientSet,
    PhaseChanged,
    RoomEvent,
)
from roommon.core.log import get_logger
from roommon.core.model import NUMERIC_FIELDS, DataOrigin, NumericReading, SignalKind, WaveformChunk
from roommon.core.phases import Phase
from roommon.core.work import WorkTime, work_clock
from roommon.recovery.service import RoomRecovery
from roommon.recovery.store import RecoveryStore
from roommon.recovery.timer import TimerEvent
from roommon.room.conditions import BAD_PAYLOAD, BAD_SAMPLES, SEQ_GAP, build_checks

# ROOM_FAILED and CHECK_FAILED are re-exported: they were defined here first.
from roommon.room.conditions import CHECK_FAILED as CHECK_FAILED
from roommon.room.conditions import ROOM_FAILED as ROOM_FAILED
from roommon.room.feeds import FeedRuntime
from roommon.room.sequence import SeqDecision
from roommon.room.workflow import RoomWorkflow
from roommon.wire.commands import CommandPayload
from roommon.wire.payloads import (
    FeedStatus,
    MeasurementValue,
    RoomEventMessage,
    RoomStateMessage,
)
from roommon.wire.timer import NurseCommand, TimerEventMessage, TimerMessage

log = get_logger(__name__)

#: Nominal rate assumed for a numeric feed's readings when judging a seq jump (they
#: come at most about once a second; ten leaves room for bursts after a reconnect).
MAX_READING_HZ = 10.0

#: A failed room's or check's condition ends this long after its last failure (the
#: alarm stays latched).
FAILED_CLEAR_S = 60.0

#: A change of the wall clock against the monotonic one this large is a step (NTP, an
#: operator): the alarm engine's delays are kept in elapsed time across it.
CLOCK_STEP_S = 1.0


class RoomOutput(Protocol):
    """Where a room's results go (the daemon's dispatcher, the demo's console...)."""

    def alarms(self, outgoing: list[Outgoing]) -> None: ...

    def room_event(self, message: RoomEventMessage) -> None: ...

    def state(self, message: RoomStateMessage) -> None: ...

    def timer_events(self, messages: list[TimerEventMessage]) -> None: ...

    def timer(self, message: TimerMessage) -> None: ...


class RoomPipeline:
    def __init__(
        self,
        *,
        site: str,
        room: str,
        config: RoomConfig,
        daemon: DaemonConfig,
        clock: Clock,
        output: RoomOutput,
        next_seq: int = 1,
        recovery_store: RecoveryStore | None = None,
    ) -> None:
        self.site = site
        self.room = room
        self.config = config
        self._clock = clock
        self._output = output
        self._started = clock.monotonic()
        self._wall_offset = clock.now() - self._started  # see _wall()
        self.feeds: dict[str, FeedRuntime] = {}
        for name, fc in config.feeds.items():
            self.feeds[name] = FeedRuntime(room=room, name=name, config=fc)
        self.engine = RoomAlarms(site=site, room=room, config=config, next_seq=next_seq)
        self.workflow = RoomWorkflow(room=room, since=clock.now())
        self.recovery = RoomRecovery(
            site=site,
            room=room,
            config=config.recovery,
            store=recovery_store or RecoveryStore(":memory:"),
            procedure=config.procedure,
        )
        if self.recovery.timer.running:  # restored mid-recovery after a restart
            self.workflow.phase = self.engine.phase = Phase.RECOVERY
        self._last_timer_mono = -1e18
        self.checks: list[Check] = []
        #: Work time of each check's calls, by check name (metrics).
        self.check_time: dict[str, WorkTime] = {}
        self._routes: dict[str, list[Check]] = {name: [] for name in self.feeds}
        #: One context per check, drained after each call (a call never nests in itself).
        self._contexts: dict[Check, CheckContext] = {}
        for check in build_checks(room, config):
            self.checks.append(check)
            self.check_time[check.name] = WorkTime()
            self._contexts[check] = CheckContext(room=room, check=check.name)
            for n in check.feeds:
                self._routes[n].append(check)
        # The checks that implement each broadcast hook: a call to a hook a check does not
        # override does nothing but costs the call's bookkeeping (every heart rate went to
        # every other check of the room).
        self._tick_checks = _implementing(self.checks, "on_tick")
        self._measurement_checks = _implementing(self.checks, "on_measurement")
        self._event_checks = _implementing(self.checks, "on_event")
        self.measurements: dict[str, MeasurementValue] = {}
        self._checked: set[str] = set()  # measurement names some check publishes
        self._origin = DataOrigin.LIVE  # of the newest sample; for time-driven reports
        self._last_state: RoomStateMessage | None = None
        self._last_state_mono = -1e18
        #: Room entries that failed (room.failed); the last failure's monotonic time.
        self.failures = 0
        #: What failed ("": the room itself, else a check's name) -> its last failure (mono).
        self._failed_mono: dict[str, float] = {}
        #: The earliest clock time (``now`` scale) at which a time-based rule of the
        #: engine or the recovery timer falls due; ``on_deadline`` is told when it moves.
        self.deadline: float | None = None
        self.on_deadline: Callable[[RoomPipeline], None] | None = None
        self._deadline_dirty = True
        self._guards: dict[tuple[str, bool], _Guard] = {}

    # ------------------------------------------------------------------ the guard

    def guard(self, entry: str, *, command: bool = False) -> _Guard:
        """Contain an unexpected exception of one entry into the room (see module doc).

        Public so that code feeding the room from outside (a serial binding) runs
        under the same guard.
        """
        g = self._guards.get((entry, command))
        if g is None:
            g = self._guards[(entry, command)] = _Guard(self, entry, command=command)
        return g

    def _wall(self) -> float:
        """The wall-clock time, with a step of the wall clock against the monotonic one
        handed to the alarm engine first (:meth:`RoomAlarms.clock_stepped`): every time the
        room reads the wall clock goes through here, so no delay is measured across a step.
        The recovery timer sees the step itself (``recovery.clock_jump``)."""
        now = self._clock.now()
        offset = now - self._clock.monotonic()
        step = offset - self._wall_offset
        if abs(step) >= CLOCK_STEP_S:
            self.engine.clock_stepped(step)
            self._deadline_dirty = True
        self._wall_offset = offset  # slews below the threshold are followed, never summed
        return now

    def refresh_deadline(self) -> None:
        """Recompute :attr:`deadline` and tell ``on_deadline`` when it moved."""
        self._deadline_dirty = False
        times = [
            t
            for t in (self.engine.next_deadline(), self.recovery.timer.next_deadline())
            if t is not None
        ]
        deadline = min(times, default=None)
        if deadline != self.deadline:
            self.deadline = deadline
            if self.on_deadline is not None:
                self.on_deadline(self)

    def _room_failed(self, entry: str, exc: Exception) -> None:
        self.failures += 1
        self._failed_mono[""] = self._clock.monotonic()
        log.exception("room_failed", room=self.room, entry=entry, failures=self.failures)
        report = ConditionReport(
            room=self.room,
            feed="",
            check="room",
            spec=ROOM_FAILED,
            active=True,
            t=self._wall(),
            message=f"{ROOM_FAILED.description} ({entry}: {type(exc).__name__}: {exc})",
            origin=self._origin,
        )
        try:
            self._conditions([report])
        except StoreError:
            raise
        except Exception:  # the alarm path itself is broken: say so in the log and status
            log.exception("room_failed_unreported", room=self.room, entry=entry)

    def _clear_failures(self, mono: float, now: float) -> None:
        """``room.failed`` (key "") or a check's ``check.failed`` (key: its name) ends once
        that part has run FAILED_CLEAR_S without failing again; both alarms are latching,
        so they stay until a person resets them."""
        for name, failed in list(self._failed_mono.items()):
            if mono - failed < FAILED_CLEAR_S:
                continue
            del self._failed_mono[name]
            spec, check = (ROOM_FAILED, "room") if name == "" else (CHECK_FAILED, name)
            self._conditions(
                [
                    ConditionReport(
                        room=self.room,
                        feed=name,
                        check=check,
                        spec=spec,
                        active=False,
                        t=now,
                        origin=self._origin,
                    )
                ]
            )

    # ------------------------------------------------------------------ inputs

    def ingest(self, sample: WaveformChunk | NumericReading) -> None:
        with self.guard("ingest"):
            self._ingest(sample)

    def _ingest(self, sample: WaveformChunk | NumericReading) -> None:
        feed = self.feeds.get(sample.feed)
        if feed is None or sample.kind != feed.kind:
            self._reject(sample.feed, ProtocolError("unknown_feed", "no such feed of that kind"))
            return
        mono = self._clock.monotonic()
        if feed.seq.take_next(sample.seq, mono):  # the count simply goes on
            self._accept(feed, sample, mono)
            return
        rate = (
            sample.fs / len(sample.samples)
            if isinstance(sample, WaveformChunk) and len(sample.samples)
            else MAX_READING_HZ
        )
        d = feed.seq.offer(
            sample.seq, sample, mono=mono, rate_hz=rate, shed=feed.shed_since_accepted
        )
        self._sequenced(feed, d, mono)

    def _sequenced(
        self, feed: FeedRuntime, d: SeqDecision[WaveformChunk | NumericReading], mono: float
    ) -> None:
        """Carry out the feed's sequence decision: refusals, a gap, then the accepted data."""
        for _item, err in d.rejected:
            self._reject(feed.name, err)
        if d.held:
            log.warning(
                "feed_seq_jump_held",
                room=self.room,
                feed=feed.name,
                seq=feed.seq.holding,
                last=feed.last_seq,
            )
        if d.gap and feed.skip_is_shed(d.skipped):
            log.info(
                "feed_seq_gap_shed", room=self.room, feed=feed.name, detail=d.gap, shed=feed.shed
            )
        elif d.gap:
            feed.gaps += 1
            feed.note_problem(SEQ_GAP.code, mono)
            log.warning("feed_seq_gap", room=self.room, feed=feed.name, detail=d.gap)
        for item in d.accepted:
            self._accept(feed, item, mono)

    def _accept(
        self, feed: FeedRuntime, sample: WaveformChunk | NumericReading, mono: float
    ) -> None:
        feed.last_seen_mono = mono
        feed.shed_since_accepted = 0
        feed.origin = self._origin = sample.origin
        if self.workflow.phase is Phase.IDLE:  # the first data: the patient is connected
            self._phase(self.workflow.on_data(self._wall()))
        feed.received += 1
        if isinstance(sample, WaveformChunk):
            feed.last_seen_t = sample.t_end
            runs = feed.split_good(sample.samples)
            if len(runs) == 1 and runs[0] == (0, len(sample.samples)):  # clean: nearly always
                self._run(sample.feed, lambda c, ctx: c.on_chunk(sample, ctx))
            else:
                self._bad_samples(feed, sample, runs, mono)
        else:
            feed.last_seen_t = sample.t
            self._record_reading(sample)
            self._run(sample.feed, lambda c, ctx: c.on_reading(sample, ctx))
        if feed.needs_evaluation(self.workflow.phase):
            self._feed_health(feed, mono)

    def _bad_samples(
        self, feed: FeedRuntime, sample: WaveformChunk, runs: list[tuple[int, int]], mono: float
    ) -> None:
        """A chunk with bad samples: counted, logged, and its good runs go on to the checks."""
        feed.note_problem(BAD_SAMPLES.code, mono)
        log.warning(
            "feed_bad_samples",
            room=self.room,
            feed=sample.feed,
            seq=sample.seq,
            good_runs=len(runs),
            total_bad=feed.bad_samples,
        )
        for a, b in runs:
            part = replace(sample, samples=sample.samples[a:b], t0=sample.t0 + a / sample.fs)
            self._run(sample.feed, lambda c, ctx, p=part: c.on_chunk(p, ctx))

    def _feed_health(self, feed: FeedRuntime, mono: float) -> None:
        """The feed's technical conditions, judged in the room's current phase."""
        self._conditions(feed.evaluate(mono, self._started, self._wall(), self.workflow.phase))

    def _record_reading(self, r: NumericReading) -> None:
        """A device's own numbers are measurements too, unless a check of the room publishes
        that measurement: its judged value (``null`` while the signal is unreliable) must
        not be overwritten by the raw one a second later."""
        fields = NUMERIC_FIELDS[r.kind]
        prefix = "" if r.kind == SignalKind.SPO2 else f"{r.kind.value}_"
        for name, value in r.values.items():
            if prefix + name in self._checked:
                continue
            self.measurements[prefix + name] = MeasurementValue(
                value=None if math.isnan(value) else value,
                unit=fields[name][0],
                t=r.t,
                feed=r.feed,
            )

    def reject(self, feed_name: str, err: ProtocolError, *, count: int = 1) -> None:
        with self.guard("reject"):
            self._reject(feed_name, err, count=count)

    def _reject(self, feed_name: str, err: ProtocolError, *, count: int = 1) -> None:
        """Count and log rejected payloads or frames (``count`` of one reason); the feed goes on."""
        feed = self.feeds.get(feed_name)
        log.warning(
            "feed_payload_rejected",
            room=self.room,
            feed=feed_name,
            reason=err.reason,
            detail=err.detail,
        )
        if feed is None:
            return
        feed.rejected[err.reason] += count
        mono = self._clock.monotonic()
        feed.note_problem(BAD_PAYLOAD.code, mono)
        self._feed_health(feed, mono)

    def transport_state(self, feed_name: str, *, up: bool, reason: str = "") -> None:
        with self.guard("transport_state"):
            self._transport_state(feed_name, up=up, reason=reason)

    def _transport_state(self, feed_name: str, *, up: bool, reason: str = "") -> None:
        """A transport that knows its connection (serial) reports it here, at once."""
        feed = self.feeds[feed_name]
        feed.transport_up = up
        log.info("feed_transport", room=self.room, feed=feed_name, up=up, reason=reason)
        self._feed_health(feed, self._clock.monotonic())
        self.publish_state(force=True)

    def event(self, event: RoomEvent) -> None:
        """A room event from outside the checks (an operator command)."""
        with self.guard("event"):
            self._events([event], source=None)

    def shed(self, feed_name: str) -> None:
        """The daemon shed a message of this room's feed ``feed_name`` (its inbound queue was
        full): counted per feed, and neither a gap in the feed's count nor its silence."""
        feed = self.feeds.get(feed_name)
        if feed is not None:
            feed.note_shed(self._clock.monotonic())

    def external_conditions(self, reports: Iterable[ConditionReport]) -> None:
        """Conditions found outside the checks (an output that cannot deliver) become alarms."""
        self._conditions(reports)
        self.refresh_deadline()

    def due(self) -> None:
        """Run the time-based rules now: the daemon calls this at :attr:`deadline`, so a
        condition delay, an escalation step, a pause's end or a recovery deadline acts at
        its instant rather than at the next :meth:`tick`."""
        with self.guard("deadline"):
            now, mono = self._wall(), self._clock.monotonic()
            self._deadline_dirty = True
            self._publish_alarms(self.engine.tick(now))
            self.recovery.note_alarms(self.engine.summaries(now))
            self._timer(self.recovery.tick(now, mono))
            self.publish_state()  # an audio pause's end changes what sounds: say it now

    def tick(self) -> None:
        with self.guard("tick"):
            self._tick()

    def _tick(self) -> None:
        now, mono = self._wall(), self._clock.monotonic()
        self._deadline_dirty = True
        for check in self._tick_checks:
            self._call(check, lambda c, ctx: c.on_tick(now, ctx))
        for feed in self.feeds.values():
            self._sequenced(feed, feed.seq.expire(mono), mono)
            self._feed_health(feed, mono)
        self._clear_failures(mono, now)
        self._publish_alarms(self.engine.tick(now))
        seen = [f.last_seen_mono for f in self.feeds.values() if f.last_seen_mono is not None]
        last_data = max(seen, default=-math.inf)
        if mono - last_data > self.config.idle_after_s:
            self._phase(self.workflow.on_feeds_gone(now))
        self.recovery.note_alarms(self.engine.summaries(now))
        self._timer(self.recovery.tick(now, mono))
        self.publish_state()

    def recovery_command(self, cmd: NurseCommand, *, client: str) -> str:
        """Apply a validated nurse command to the recovery timer, or raise CommandError."""
        with self.guard("recovery_command", command=True):
            return self._recovery_command(cmd, client=client)
        raise AssertionError("unreachable")  # pragma: no cover - the guard raises

    def _recovery_command(self, cmd: NurseCommand, *, client: str) -> str:
        now = self._wall()
        self._deadline_dirty = True
        log.info(
            "command",
            room=self.room,
            client=client,
            action=cmd.action,
            id=cmd.id,
            reason=cmd.reason,
        )
        vitals = {k: m.value for k, m in self.measurements.items()}
        events = self.recovery.command(cmd, now=now, by=client, vitals=vitals)
        self._timer(events, force=True)
        return ", ".join(f"{e.kind}" + (f" {e.check_no}" if e.check_no else "") for e in events)

    def _timer(self, events: list[TimerEvent], *, force: bool = False) -> None:
        """Publish timer events (durably, first), persist, then the alarms and the snapshot."""
        now, mono = self._wall(), self._clock.monotonic()
        if events:
            self._deadline_dirty = True
            self._output.timer_events(self.recovery.messages(events))
        self.recovery.commit(events, now)
        for e in events:
            self._phase(self.workflow.on_timer(e.kind, e.reason, e.t))
        self._conditions(self.recovery.conditions(events, now=now, origin=self._origin))
        if events or force or mono - self._last_timer_mono >= 10.0:
            self._last_timer_mono = mono
            self._output.timer(self.recovery.snapshot(now))

    def _phase(self, change: tuple[Phase, Phase] | None) -> None:
        if change is None:
            return
        before, after = change
        self.engine.phase = after
        self._events(
            [PhaseChanged(t=self.workflow.since, before=before, after=after, origin=self._origin)],
            source=None,
        )
        self.publish_state(force=True)

    def command(self, cmd: CommandPayload, *, client: str) -> str:
        """Apply a validated command; return a detail string or raise CommandError."""
        with self.guard("command", command=True):
            return self._command(cmd, client=client)
        raise AssertionError("unreachable")  # pragma: no cover - the guard raises

    def _command(self, cmd: CommandPayload, *, client: str) -> str:
        now = self._wall()
        self._deadline_dirty = True
        log.info(
            "command",
            room=self.room,
            client=client,
            action=cmd.action,
            id=cmd.id,
            alarm_id=cmd.alarm_id,
            reason=cmd.reason,
        )
        detail = ""
        if cmd.action == "acknowledge":
            assert cmd.alarm_id is not None
            self._publish_alarms(self.engine.acknowledge(cmd.alarm_id, now, actor=client))
        elif cmd.action == "reset":
            assert cmd.alarm_id is not None
            self._publish_alarms(self.engine.reset(cmd.alarm_id, now, actor=client))
        elif cmd.action == "audio_pause":
            until = self.engine.pause_audio(now, duration_s=cmd.duration_s)
            detail = f"audio paused until {iso(until)}"
        elif cmd.action == "alarm_pause":
            assert cmd.duration_s is not None
            scope = cmd.feed or WHOLE_ROOM
            until = self.engine.pause_alarms(now, scope=scope, duration_s=cmd.duration_s)
            detail = f"alarms of {scope} paused until {iso(until)}"
        elif cmd.action == "cement_mixed":
            self._events([CementMixed(t=now, by=client)], source=None)
            detail = "cement mixing time recorded"
        elif cmd.action == "phase_set":
            assert cmd.phase is not None
            self._phase(self.workflow.set(Phase(cmd.phase), now, client))
            detail = f"phase is {self.workflow.phase.value}"
        elif cmd.action == "patient_set":
            assert cmd.patient_id is not None
            patient = PatientSet(
                t=now, patient_id=cmd.patient_id, authority=cmd.patient_authority, by=client
            )
            self._events([patient], source=None)
            detail = f"patient is {cmd.patient_id}"
        elif cmd.action == "patient_clear":
            self._events([PatientCleared(t=now, by=client)], source=None)
            detail = "no patient"
        else:  # pragma: no cover - Literal type makes this unreachable
            raise CommandError("malformed", f"unknown action {cmd.action}")
        self.publish_state(force=True)
        return detail

    # ------------------------------------------------------------------ plumbing

    def _call(self, check: Check, fn: _Hook) -> None:
        ctx = self._contexts[check]
        ctx.origin = self._origin
        started = work_clock()
        try:
            fn(check, ctx)
        except Exception as exc:  # supervisor (STYLE rule 6): a check's bug becomes an alarm
            ctx.drain()  # what the failed call reported so far is not to be trusted
            log.exception("check_failed", room=self.room, check=check.name)
            self._failed_mono[check.name] = self._clock.monotonic()
            self._conditions(
                [
                    ConditionReport(
                        room=self.room,
                        feed=check.name,
                        check=check.name,
                        spec=CHECK_FAILED,
                        active=True,
                        t=self._wall(),
                        message=f"{type(exc).__name__}: {exc}",
                        origin=self._origin,
                    )
                ]
            )
            return
        finally:
            self.check_time[check.name].add(work_clock() - started)
        if not (ctx.conditions or ctx.measurements or ctx.events):
            return  # the check had nothing to say: most calls
        conditions, measurements, events = ctx.drain()
        self._conditions(conditions)
        for m in measurements:
            self._checked.add(m.name)
            self.measurements[m.name] = MeasurementValue(
                value=m.value if m.reliable else None,
                unit=m.unit,
                t=m.t,
                feed=m.feed,
                label=m.label,
            )
            for other in self._measurement_checks:
                if other is not check:
                    self._call(other, lambda c, ctx, m=m: c.on_measurement(m, ctx))
        self._events(events, source=check)

    def _run(self, feed: str, fn: _Hook) -> None:
        for check in self._routes[feed]:
            self._call(check, fn)

    def _events(self, events: Iterable[RoomEvent], *, source: Check | None) -> None:
        for e in events:
            data = e.data()
            self._phase(self.workflow.on_room_event(e))
            if isinstance(e, InjectionStarted | InjectionEnded):
                self._timer(self.recovery.on_room_event(e, self._wall()))
            log.info(
                "room_event",
                room=self.room,
                feed=e.feed,
                name=e.name,
                data=data,
                text=units.data(data, utc=True),
            )
            self._output.room_event(
                RoomEventMessage(
                    site=self.site,
                    room=self.room,
                    name=e.name,
                    feed=e.feed,
                    t=e.t,
                    time=iso(e.t),
                    origin=e.origin.value,
                    data=data,
                )
            )
            for check in self._event_checks:
                if check is not source:
                    self._call(check, lambda c, ctx, e=e: c.on_event(e, ctx))

    def _conditions(self, reports: Iterable[ConditionReport]) -> None:
        out: list[Outgoing] = []
        now = 0.0
        for i, r in enumerate(reports):
            if i == 0:
                now = self._wall()
                self._deadline_dirty = True
            out += self.engine.report(r, now)
        self._publish_alarms(out)

    def _publish_alarms(self, out: list[Outgoing]) -> None:
        if out:
            self._output.alarms(out)
            self.publish_state(force=True)

    def state_message(self) -> RoomStateMessage:
        now, mono = self._wall(), self._clock.monotonic()
        alarms = self.engine.summaries(now)
        top = max(
            (a.priority for a in alarms if a.state != "cleared"),
            default="none",
            key=lambda p: ["none", "low", "medium", "high"].index(p),
        )
        return RoomStateMessage(
            site=self.site,
            room=self.room,
            name=self.config.name,
            t=now,
            time=iso(now),
            seq=self.engine.last_seq,
            audio_paused_until=self.engine.audio_paused_until,
            alarm_paused=dict(self.engine.alarm_paused),
            phase=self.workflow.phase.value,
            phase_since=self.workflow.since,
            phase_since_time=iso(self.workflow.since),
            highest_priority=top,
            alarms=alarms,
            feeds={
                n: FeedStatus(
                    status=f.status(mono),
                    last_seen=f.last_seen_t,
                    received=f.received,
                    rejected=dict(f.rejected),
                    bad_samples=f.bad_samples,
                )
                for n, f in self.feeds.items()
            },
            measurements=dict(self.measurements),
        )

    def publish_state(self, *, force: bool = False, every_s: float = 5.0) -> None:
        """Publish the retained state when it changed, or at least every ``every_s``."""
        msg = self.state_message()
        mono = self._clock.monotonic()
        last = self._last_state
        if (
            force
            or last is None
            or mono - self._last_state_mono >= every_s
            or not _same_but_time(last, msg)
        ):
            self._last_state, self._last_state_mono = msg, mono
            self._output.state(msg)


def _same_but_time(a: RoomStateMessage, b: RoomStateMessage) -> bool:
    """Whether two room states differ only in their time (``t``, ``time``): the fields
    compared as the model's ``==`` compares them, without copying one first."""
    other = b.__dict__
    return all(v == other[k] for k, v in a.__dict__.items() if k not in _STATE_TIME_FIELDS)


_STATE_TIME_FIELDS = frozenset({"t", "time"})


class _Guard:
    """:meth:`RoomPipeline.guard` around one entry. A plain class rather than a generator
    context manager: it runs around every message (about 1 µs less each)."""

    __slots__ = ("_command", "_entry", "_room")

    def __init__(self, room: RoomPipeline, entry: str, *, command: bool) -> None:
        self._room = room
        self._entry = entry
        self._command = command

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        room = self._room
        try:
            if not isinstance(exc, Exception) or isinstance(exc, CommandError | StoreError):
                return False  # none, or not the room's fault: it goes on up
            # supervisor (STYLE rule 6): a room's bug becomes its alarm
            room._room_failed(self._entry, exc)
            if self._command:
                raise CommandError(
                    "room_failed", f"roommon failed applying it ({type(exc).__name__})"
                ) from exc
            return True
        finally:
            if room._deadline_dirty:
                room.refresh_deadline()


def _implementing(checks: list[Check], hook: str) -> list[Check]:
    """The checks whose class overrides ``hook`` of :class:`Check` (a no-op there)."""
    return [c for c in checks if getattr(type(c), hook) is not getattr(Check, hook)]


class _Hook(Protocol):
    def __call__(self, check: Check, ctx: CheckContext, /) -> None: ...
