"""The HL7 output: a :class:`~roommon.room.pipeline.RoomOutput` that sends PCD-01/PCD-04 over MLLP.

Data flow: the rooms' publications (alarm events, room events, timer events,
state snapshots) arrive through the synchronous RoomOutput methods; each one
that is reported becomes one message per receiver that takes that room and
message kind, written to the durable :class:`~roommon.hl7.queue.Hl7Queue`
at once. One delivery task per receiver (named ``hl7-RECEIVER``, in this
component's TaskGroup) sends the oldest pending message, waits for its
acknowledgement with one message in flight, and only then takes the next:
``AA`` deletes it, ``AE``/``AR`` mark it rejected (logged, counted, and
after ``reject_alarm_after`` of them a technical alarm), a refused or
dropped connection or a missing ACK is retried with the shared capped,
jittered :class:`~roommon.transports.backoff.Backoff` on the injected
clock. A periodic task sends the vitals report every ``period_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import ssl
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from roommon.alerts.engine import Outgoing
from roommon.alerts.store import AlarmStore
from roommon.config import Config
from roommon.core.clock import Clock
from roommon.core.conditions import AlarmKind, ConditionReport, ConditionSpec, Priority
from roommon.core.errors import ConfigError, ProtocolError, StoreError
from roommon.core.log import get_logger
from roommon.core.model import DataOrigin
from roommon.hl7 import pcd01, pcd04
from roommon.hl7.ack import Reply, ack, parse_reply
from roommon.hl7.codes import CodesTable
from roommon.hl7.config import Hl7Config, MessageKind, ReceiverConfig
from roommon.hl7.queue import Hl7Queue, QueuedMessage
from roommon.hl7.segments import Destination, Envelope, Location, Patient, Sender
from roommon.transports.backoff import Backoff
from roommon.transports.mllp import MllpConnection, MllpEndpoint, MllpError
from roommon.wire.payloads import AlarmEventMessage, RoomEventMessage, RoomStateMessage
from roommon.wire.timer import TimerEventMessage, TimerMessage

log = get_logger(__name__)

REJECTED = ConditionSpec(
    code="hl7.rejected",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="The hospital's HL7 receiver rejects roommon's messages (AE/AR): "
    "vitals or alarms are missing from the record",
)
UNDELIVERED = ConditionSpec(
    code="hl7.undelivered",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="HL7 messages wait undelivered: the receiver is unreachable or silent",
)
FAILED = ConditionSpec(
    code="hl7.failed",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="roommon's HL7 output failed: messages to the hospital's systems may be "
    "missing until it recovers",
)


class ConditionSink(Protocol):
    """Where the output's own technical conditions go (a room pipeline)."""

    def external_conditions(self, reports: Iterable[ConditionReport]) -> None: ...


@dataclass(slots=True)
class ReceiverState:
    """What one receiver's delivery task has seen; ``counters`` names every outcome."""

    name: str
    connected: bool = False
    counters: Counter[str] = field(default_factory=Counter)
    rejections: deque[float] = field(default_factory=deque)  # monotonic times, in the window
    alarmed: set[str] = field(default_factory=set)  # condition codes raised now
    last_error: str = ""


#: Messages held in memory at most while the queue cannot be written (then vitals are shed).
MAX_HELD = 10_000


@dataclass(frozen=True, slots=True)
class _Held:
    """A message waiting for the queue to take it (the queue's store cannot be written)."""

    room: str
    kind: MessageKind
    now: float
    builds: dict[str, Callable[[str], str]]
    alarm_seq: int | None


class Hl7Output:
    """Async context manager; enter it, hand it to the Daemon, then :meth:`attach` the rooms."""

    def __init__(
        self,
        *,
        config: Config,
        clock: Clock,
        state_path: Path | None = None,
        rng: random.Random | None = None,
        undelivered_alarm_s: float = 300.0,
    ) -> None:
        if config.hl7 is None:
            raise ConfigError("<config>", [("hl7", "the HL7 output needs an [hl7] section")])
        self._cfg: Hl7Config = config.hl7
        self._site = config.site.id
        self._rooms = list(config.rooms)
        self._clock = clock
        self._rng = rng or random.Random()
        self._path = state_path or config.daemon.state_dir / "roommon.sqlite3"
        self._prefix = f"{config.daemon.instance}-"
        self._undelivered_s = undelivered_alarm_s
        self.codes = CodesTable(self._cfg.codes)
        self.sender = Sender(
            application=self._cfg.sending_application,
            facility=self._cfg.sending_facility or self._site,
            eui64=self._cfg.eui64(self._site, config.daemon.instance),
            processing_id=self._cfg.processing_id,
            acm_profile_oid=self._cfg.acm_profile_oid,
        )
        self.receivers: dict[str, ReceiverState] = {
            name: ReceiverState(name) for name in self._cfg.receivers
        }
        self.counters: Counter[str] = Counter()
        self.queue: Hl7Queue
        self.patients: dict[str, Patient] = {}
        self._states: dict[str, RoomStateMessage] = {}
        self._nibp_t: dict[str, float | None] = {}
        self._wake = {name: asyncio.Event() for name in self._cfg.receivers}
        self._sinks: Mapping[str, ConditionSink] = {}
        self._reports = 0
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Failed parts (an entry point, a task) -> what went wrong; hl7.failed while any.
        self.failures: dict[str, str] = {}
        self._failures_changed = asyncio.Event()
        self._failed_raised = False
        #: Messages the queue could not take yet (its store cannot be written), in order.
        self._held: deque[_Held] = deque()
        self._unsaved_patients: dict[str, tuple[Patient | None, float]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self.queue = Hl7Queue(self._path, control_prefix=self._prefix)
        self.patients = self.queue.patients()
        self._catch_up()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for name, rc in self._cfg.receivers.items():
            self._tasks.append(
                self._tg.create_task(
                    self._supervise(f"deliver-{name}", functools.partial(self._deliver, name, rc)),
                    name=f"hl7-{name}",
                )
            )
        self._tasks.append(
            self._tg.create_task(self._supervise("periodic", self._periodic), name="hl7-periodic")
        )
        self._tasks.append(
            self._tg.create_task(self._supervise("held", self._retry_held), name="hl7-held")
        )
        self._tasks.append(
            self._tg.create_task(
                self._supervise("failures", self._watch_failures), name="hl7-failures"
            )
        )
        pending = self.queue.pending_count()
        log.info("hl7_started", receivers=list(self._cfg.receivers), pending=pending)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        assert self._tg is not None
        await self._tg.__aexit__(exc_type, exc, tb)
        self.queue.close()
        log.info("hl7_stopped")

    def attach(self, sinks: Mapping[str, ConditionSink]) -> None:
        """Give the output the rooms' pipelines, for its technical alarms."""
        self._sinks = sinks

    # ------------------------------------------------------------------ RoomOutput

    def alarms(self, outgoing: list[Outgoing]) -> None:
        with self._guard("alarms"):
            for o in outgoing:
                self._alarm(o.event)

    def _alarm(self, event: AlarmEventMessage) -> None:
        self._enqueue(
            event.room,
            "pcd04",
            lambda env: pcd04.build(env, event, self.codes),
            alarm_seq=event.seq,
        )

    def _catch_up(self) -> None:
        """Queue the alarm events the alarm log has and the HL7 queue missed, in order.

        Runs at entry, before the daemon starts and emits anything new. A room
        never seen before starts from its log's end: HL7 begins now, not with
        the site's history.
        """
        store = AlarmStore(self._path)
        try:
            for room in self._rooms:
                done = self.queue.alarm_seq(room)
                if done is None:
                    self.queue.set_alarm_seq(room, store.next_seq(room) - 1)
                    continue
                missed = [e for e in store.events(room=room) if e.seq > done]
                for event in sorted(missed, key=lambda e: e.seq):
                    self.counters["caught_up"] += 1
                    self._alarm(event)
                if missed:
                    log.warning("hl7_caught_up", room=room, events=len(missed), after_seq=done)
        finally:
            store.close()

    def room_event(self, message: RoomEventMessage) -> None:
        with self._guard("room_event"):
            self._room_event(message)

    def _room_event(self, message: RoomEventMessage) -> None:
        room = message.room
        if message.name == "patient.set":
            pid = message.data.get("patient_id")
            if isinstance(pid, str) and pid:
                authority = message.data.get("authority")
                self._set_patient(
                    room, Patient(id=pid, authority=authority if isinstance(authority, str) else "")
                )
            return
        if message.name == "patient.cleared" or (
            message.name == "phase.changed" and message.data.get("to") == "idle"
        ):
            self._set_patient(room, None)
        observations = pcd01.room_event(message)
        if observations is not None:
            self._report(room, observations, start=message.t)

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        with self._guard("timer_events"):
            self._timer_events(messages)

    def _timer_events(self, messages: list[TimerEventMessage]) -> None:
        for m in messages:
            observations = pcd01.timer_event(m)
            if observations is not None:
                self._report(m.room, observations, start=m.t)

    def timer(self, message: TimerMessage) -> None:
        del message  # the retained timer snapshot has no HL7 counterpart; its events do

    def state(self, message: RoomStateMessage) -> None:
        with self._guard("state"):
            self._state(message)

    def _state(self, message: RoomStateMessage) -> None:
        room = message.room
        self._states[room] = message
        nibp = message.measurements.get("nibp_systolic")
        t = nibp.t if nibp is not None and nibp.value is not None else None
        if room in self._nibp_t and t is not None and t != self._nibp_t[room] and self._cfg.on_nibp:
            self.counters["nibp_reports"] += 1
            self._report(room, pcd01.vitals(message), start=t)
        self._nibp_t[room] = t

    # ------------------------------------------------------------------ building

    def _set_patient(self, room: str, patient: Patient | None) -> None:
        if patient is None:
            self.patients.pop(room, None)
        else:
            self.patients[room] = patient
        log.info("hl7_patient", room=room, patient=patient.id if patient else None)
        self._unsaved_patients[room] = (patient, self._clock.now())
        self._write_patients()

    def _write_patients(self) -> None:
        """Keep each room's current patient durably; on a full disk it lives in memory (the
        messages carry it) and is written with the held messages once the store takes it."""
        while self._unsaved_patients:
            room, (patient, t) = next(iter(self._unsaved_patients.items()))
            try:
                self.queue.set_patient(room, patient, t)
            except StoreError as exc:
                self.counters["queue_write_failed"] += 1
                self._note_failure("queue", exc)
                return
            del self._unsaved_patients[room]

    def location(self, room: str) -> Location:
        loc = self._cfg.locations.get(room)
        facility = self.sender.facility
        if loc is None:
            return Location(point_of_care=room, room=room, facility=facility)
        return Location(
            point_of_care=loc.point_of_care or room,
            room=loc.room or room,
            bed=loc.bed,
            facility=loc.facility or facility,
        )

    def _report(self, room: str, observations: list[pcd01.Observation], *, start: float) -> None:
        self._reports += 1
        report_id = f"{room}-{int(start * 1000)}-{self._reports}"
        self._enqueue(
            room,
            "pcd01",
            lambda env: pcd01.build(
                env, report_id=report_id, observations=observations, codes=self.codes, start=start
            ),
        )

    def _enqueue(
        self,
        room: str,
        kind: MessageKind,
        build: Callable[[Envelope], str],
        *,
        alarm_seq: int | None = None,
    ) -> None:
        now = self._clock.now()
        builds: dict[str, Callable[[str], str]] = {}
        for name, rc in self._cfg.receivers.items():
            if not rc.serves(room, kind):
                continue

            def text(control_id: str, rc: ReceiverConfig = rc) -> str:
                return build(
                    Envelope(
                        sender=self.sender,
                        destination=Destination(application=rc.application, facility=rc.facility),
                        control_id=control_id,
                        created=now,
                        location=self.location(room),
                        patient=self.patients.get(room),
                    )
                )

            builds[name] = text
        self._held.append(_Held(room, kind, now, builds, alarm_seq))
        self._write_held()

    def _write_held(self) -> bool:
        """Write the messages held in memory to the queue, oldest first; False while the
        queue cannot be written (a full disk: hl7.failed, and they wait here, in order)."""
        while self._held:
            h = self._held[0]
            try:
                self.queue.enqueue(
                    room=h.room, kind=h.kind, now=h.now, builds=h.builds, alarm_seq=h.alarm_seq
                )
            except (ValueError, KeyError) as exc:  # a value no HL7 type can carry
                self.counters["build_failed"] += 1
                log.error("hl7_build_failed", room=h.room, kind=h.kind, error=str(exc))
            except StoreError as exc:
                if "queue" not in self.failures:
                    log.error("hl7_queue_unwritable", error=str(exc), held=len(self._held))
                self.counters["queue_write_failed"] += 1
                self._note_failure("queue", exc)
                self._shed_held()
                return False
            else:
                for name in h.builds:
                    self.counters[f"queued_{h.kind}"] += 1
                    self._wake[name].set()
            self._held.popleft()
        if "queue" in self.failures and not self._unsaved_patients:
            log.info("hl7_queue_writable_again")
            self._recovered("queue")
        return True

    def _shed_held(self) -> None:
        """Bound memory on a long outage: the oldest periodic vitals go first, counted;
        alarm and event messages are kept."""
        while len(self._held) > MAX_HELD:
            oldest = next((h for h in self._held if h.kind == "pcd01"), None)
            if oldest is None:
                break
            self._held.remove(oldest)
            self.counters["shed_pcd01"] += 1
            log.warning("hl7_message_shed", room=oldest.room, kind=oldest.kind, held=MAX_HELD)

    async def _retry_held(self) -> None:
        while True:
            await self._clock.sleep(1.0)
            if self._unsaved_patients:
                self._write_patients()
            if self._held or "queue" in self.failures:
                self._write_held()

    async def _periodic(self) -> None:
        period = self._cfg.period_s
        next_at = self._clock.monotonic() + period
        while True:
            await self._clock.sleep_until(next_at)
            next_at += period
            for room in self._rooms:
                state = self._states.get(room)
                if state is not None:
                    self.counters["periodic_reports"] += 1
                    self._report(room, pcd01.vitals(state), start=self._clock.now())
            for name in self.receivers:
                self._judge(name)

    # ------------------------------------------------------------------ delivery

    def _endpoint(self, rc: ReceiverConfig) -> MllpEndpoint:
        context = None
        if rc.tls:
            context = ssl.create_default_context(cafile=str(rc.ca_file) if rc.ca_file else None)
        return MllpEndpoint(
            host=rc.host, port=rc.port, tls=context, server_hostname=rc.server_hostname or rc.host
        )

    async def _deliver(self, name: str, rc: ReceiverConfig) -> None:
        st = self.receivers[name]
        wake = self._wake[name]
        endpoint = self._endpoint(rc)
        backoff = Backoff(initial_s=rc.retry_initial_s, cap_s=rc.retry_max_s)
        attempt = 0
        while True:
            if self.queue.next(name) is None:
                wake.clear()
                await wake.wait()
                continue
            try:
                async with MllpConnection(
                    endpoint, clock=self._clock, timeout_s=rc.connect_timeout_s
                ) as conn:
                    st.connected = True
                    st.counters["connects"] += 1
                    log.info("hl7_connected", receiver=name, host=rc.host, port=rc.port)
                    while True:
                        msg = self.queue.next(name)
                        if msg is None:
                            wake.clear()
                            await wake.wait()
                            continue
                        await self._exchange(conn, st, rc, msg)
                        self._recovered(f"deliver-{name}")
                        attempt = 0
            except (MllpError, ProtocolError) as err:
                st.connected = False
                st.last_error = str(err)
                st.counters[f"failed_{err.reason}"] += 1
                delay = backoff.delay(attempt, self._rng)
                attempt += 1
                log.warning(
                    "hl7_link_failed",
                    receiver=name,
                    reason=err.reason,
                    detail=err.detail,
                    retry_in_s=round(delay, 3),
                    pending=self.queue.pending_count(name),
                )
                self._judge(name)
                await self._clock.sleep(delay)

    async def _exchange(
        self, conn: MllpConnection, st: ReceiverState, rc: ReceiverConfig, msg: QueuedMessage
    ) -> None:
        self.queue.attempted(msg.id)
        st.counters["sent"] += 1
        if msg.attempts:
            st.counters["resent"] += 1
        await conn.send(msg.payload.encode())
        reply = await self._await_ack(conn, st, rc, msg)
        now = self._clock.now()
        if reply.accepted:
            self.queue.accepted(msg.id)
            st.counters["accepted"] += 1
        else:
            code = reply.ack_code or "?"
            self.queue.rejected(msg.id, code=code, text=reply.text, now=now)
            st.counters[f"rejected_{code}"] += 1
            st.rejections.append(self._clock.monotonic())
            log.error(
                "hl7_rejected",
                receiver=st.name,
                room=msg.room,
                kind=msg.kind,
                control_id=msg.control_id,
                code=code,
                text=reply.text,
            )
        self._judge(st.name)

    async def _await_ack(
        self, conn: MllpConnection, st: ReceiverState, rc: ReceiverConfig, msg: QueuedMessage
    ) -> Reply:
        deadline = self._clock.monotonic() + rc.ack_timeout_s
        while True:
            remaining = max(0.001, deadline - self._clock.monotonic())
            raw = await conn.receive(remaining)
            try:
                reply = parse_reply(raw.decode("utf-8", errors="replace"))
            except ProtocolError as err:
                st.counters["bad_replies"] += 1
                log.warning("hl7_bad_reply", receiver=st.name, reason=err.reason, detail=err.detail)
                raise
            if reply.ack_code is None:  # PCD-05 dissemination status: note it, acknowledge it
                st.counters["alert_status"] += 1
                log.info(
                    "hl7_alert_status",
                    receiver=st.name,
                    alarm_id=reply.alarm_id,
                    status=reply.status,
                    control_id=reply.control_id,
                )
                self.counters["acks_sent"] += 1
                await conn.send(
                    ack(
                        reply,
                        application=self.sender.application,
                        facility=self.sender.facility,
                        now=self._clock.now(),
                        control_id=f"{self._prefix}ack-{self.counters['acks_sent']}",
                    ).encode()
                )
                continue
            if reply.acknowledges != msg.control_id:
                st.counters["stray_acks"] += 1
                log.warning(
                    "hl7_stray_ack",
                    receiver=st.name,
                    expected=msg.control_id,
                    got=reply.acknowledges,
                )
                continue
            if reply.message_type.startswith("ORA"):
                st.counters["alert_status"] += 1
            return reply

    # ------------------------------------------------------------------ technical alarms

    def _judge(self, name: str) -> None:
        """Raise or clear this receiver's technical conditions in the rooms it serves."""
        st = self.receivers[name]
        rc = self._cfg.receivers[name]
        mono = self._clock.monotonic()
        while st.rejections and mono - st.rejections[0] > rc.reject_window_s:
            st.rejections.popleft()
        oldest = self.queue.oldest_pending(name)
        wanted = {
            REJECTED.code: len(st.rejections) >= rc.reject_alarm_after,
            UNDELIVERED.code: oldest is not None
            and self._clock.now() - oldest > self._undelivered_s,
        }
        for spec in (REJECTED, UNDELIVERED):
            active = wanted[spec.code]
            if active == (spec.code in st.alarmed):
                continue
            if active:
                st.alarmed.add(spec.code)
            else:
                st.alarmed.discard(spec.code)
            message = (
                f"{len(st.rejections)} rejected by {name} within {rc.reject_window_s:g} s"
                if spec is REJECTED
                else f"messages for {name} wait undelivered ({st.last_error or 'no ACK'})"
            )
            log.warning("hl7_condition", receiver=name, code=spec.code, active=active)
            for room in self._rooms:
                sink = self._sinks.get(room)
                if sink is None or not (rc.serves(room, "pcd01") or rc.serves(room, "pcd04")):
                    continue
                with contextlib.suppress(KeyError):
                    sink.external_conditions(
                        [
                            ConditionReport(
                                room=room,
                                feed=f"hl7-{name}",
                                check="hl7",
                                spec=spec,
                                active=active,
                                t=self._clock.now(),
                                message=message,
                                origin=DataOrigin.LIVE,
                            )
                        ]
                    )

    # ------------------------------------------------------------------ own failures

    @contextlib.contextmanager
    def _guard(self, entry: str) -> Iterator[None]:
        """A RoomOutput entry: a failure here is the HL7 output's, never the room's."""
        try:
            yield
        except StoreError:
            raise  # the shared state store: the daemon's to handle (its status, its exit)
        except Exception as exc:  # supervisor (STYLE rule 6): a failure becomes hl7.failed
            self.counters["output_failed"] += 1
            log.exception("hl7_output_failed", entry=entry)
            self._note_failure(entry, exc)
        else:
            self._recovered(entry)

    async def _supervise(self, part: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run a long-lived task; when it fails, raise hl7.failed and start it again."""
        backoff = Backoff(initial_s=1.0, cap_s=60.0)
        attempt = 0
        while True:
            try:
                await work()
                return
            except Exception as exc:  # supervisor (STYLE rule 6): a failure becomes hl7.failed
                self.counters["task_failed"] += 1
                log.exception("hl7_task_failed", part=part)
                self._note_failure(part, exc)
                await backoff.wait(attempt, self._clock, self._rng)
                attempt += 1

    def _note_failure(self, part: str, exc: Exception) -> None:
        self.failures[part] = f"{type(exc).__name__}: {exc}"
        self._failures_changed.set()

    def _recovered(self, part: str) -> None:
        if self.failures.pop(part, None) is not None:
            self._failures_changed.set()

    async def _watch_failures(self) -> None:
        """Raise or clear hl7.failed from a task of its own: never inside a room's call."""
        while True:
            await self._failures_changed.wait()
            self._failures_changed.clear()
            active = bool(self.failures)
            if active == self._failed_raised:
                continue
            self._failed_raised = active
            detail = "; ".join(f"{k}: {v}" for k, v in sorted(self.failures.items()))
            log.warning("hl7_condition", code=FAILED.code, active=active, detail=detail)
            for room in self._rooms:
                sink = self._sinks.get(room)
                if sink is not None:
                    sink.external_conditions(
                        [
                            ConditionReport(
                                room=room,
                                feed="hl7",
                                check="hl7",
                                spec=FAILED,
                                active=active,
                                t=self._clock.now(),
                                message=detail[:200] or "recovered",
                                origin=DataOrigin.LIVE,
                            )
                        ]
                    )
