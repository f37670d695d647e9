"""The daemon: transports -> per-room pipelines -> alarm engine -> outputs, in one TaskGroup.

:class:`Daemon` is an async context manager. Entering it opens the SQLite
alarm store, builds one :class:`~roommon.room.pipeline.RoomPipeline` per room and
starts the long-lived tasks (MQTT link, ticker, heartbeat) as named tasks of
one TaskGroup; leaving it says goodbye to the broker (retained status
offline), cancels the tasks and closes the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from roommon import __version__
from roommon.alerts.engine import Outgoing
from roommon.alerts.faults import DAEMON_OVERLOADED
from roommon.alerts.guarded_store import STORE_UNWRITABLE, GuardedAlarmStore
from roommon.alerts.store import STORE_FILE, AlarmStore
from roommon.config import Config
from roommon.core.clock import Cancellable, Clock, iso
from roommon.core.conditions import ConditionReport
from roommon.core.errors import DaemonFailedError, StoreError
from roommon.core.log import get_logger
from roommon.core.model import DataOrigin
from roommon.core.work import WorkTime, work_clock
from roommon.recovery.store import RecoveryStore
from roommon.room.pipeline import RoomOutput, RoomPipeline
from roommon.runtime.commands import CommandDesk
from roommon.runtime.inbound import Inbound, InboundQueue, InputLag
from roommon.runtime.ingest import FeedIngest
from roommon.runtime.serial_bindings import SerialPortBinding, serial_bindings
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.mqtt import MqttLink
from roommon.transports.receive import InboundMessage
from roommon.wire.commands import CommandReply
from roommon.wire.payloads import (
    AlarmEventMessage,
    RoomEventMessage,
    RoomStateMessage,
    StatusMessage,
)
from roommon.wire.timer import (
    TimerEventMessage,
    TimerMessage,
)
from roommon.wire.topics import Topics

log = get_logger(__name__)

#: Work done between two yields to the event loop, at most about this many seconds (the
#: inbound drain and the ticker's pass over the rooms): the readers, the writer and the
#: deadline task run in between, so an alarm raised meanwhile waits for at most one
#: slice to go out, and a PUBACK round trip takes a few slices even when every message
#: is expensive (under overload, in an alarm storm, slices of 50-200 messages took
#: 100s of ms). Shorter slices cost input throughput on a loaded machine (5 ms: 300
#: rooms shed where 20 ms did not).
SLICE_S = 0.02
#: Rooms whose daemon.overloaded is logged and queued in one transaction (and written to
#: the broker together) in the overload pass.
OVERLOAD_CHUNK = 50


#: Alarm events and outbox rows (topic, payload, qos, retain) for one transaction.
_Held = tuple[list[AlarmEventMessage], list[tuple[str, bytes, int, bool]]]


class Dispatcher:
    """The daemon's :class:`RoomOutput`: durable outbox for events, retained state, extras."""

    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        # Inside held(): the alarm events and outbox rows waiting for its one transaction.
        self._held: _Held | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Alarms of many rooms at once (a pass of the ticker, the overload alarm of every
        room): logged and queued in one transaction at the end of the block, then written
        to the broker together, rather than a transaction and a write per room (at 800
        rooms the overload pass took 0.5 s, a third of it in SQLite commits)."""
        if self._held is not None:  # nested: the outer block records
            yield
            return
        self._held = ([], [])
        try:
            yield
        finally:
            self.release()
            self._held = None

    def release(self) -> None:
        """Record and send what :meth:`held` holds so far, now (an alarm at its deadline,
        raised in the middle of a held pass, does not wait for the pass)."""
        held = self._held
        if held is not None and (held[0] or held[1]):
            self._held = ([], [])
            self._d.store.record(*held)
            self._d.wake_writer()

    def alarms(self, outgoing: list[Outgoing]) -> None:
        d = self._d
        events = [o.event for o in outgoing]
        messages: list[tuple[str, bytes, int, bool]] = []
        for o in outgoing:
            messages.append(
                (d.topics.alarm(o.event.room), o.event.model_dump_json().encode(), 1, False)
            )
            messages.extend(
                (d.topics.notify(n.recipient), n.model_dump_json().encode(), 1, False)
                for n in o.notifications
            )
        if not d.use_broker:
            messages = []
        if self._held is not None:
            self._held[0].extend(events)
            self._held[1].extend(messages)
        else:
            d.store.record(events, messages)
            d.wake_writer()
        for extra in d.extra_outputs:
            extra.alarms(outgoing)

    def room_event(self, message: RoomEventMessage) -> None:
        d = self._d
        if d.use_broker:
            d.store.enqueue(d.topics.event(message.room), message.model_dump_json().encode())
            d.wake_writer()
        for extra in d.extra_outputs:
            extra.room_event(message)

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        d = self._d
        if d.use_broker:
            for m in messages:
                d.store.enqueue(d.topics.timer_event(m.room), m.model_dump_json().encode())
            d.wake_writer()
        for extra in d.extra_outputs:
            extra.timer_events(messages)

    def timer(self, message: TimerMessage) -> None:
        d = self._d
        if d.link is not None:
            payload = message.model_dump_json().encode()
            d.link.publish_retained(d.topics.timer(message.room), payload)
        for extra in d.extra_outputs:
            extra.timer(message)

    def state(self, message: RoomStateMessage) -> None:
        d = self._d
        if d.link is not None:
            d.link.publish_retained(
                d.topics.state(message.room), message.model_dump_json().encode()
            )
        for extra in d.extra_outputs:
            extra.state(message)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups: what actually went wrong."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


class Daemon:
    def __init__(
        self,
        *,
        config: Config,
        clock: Clock,
        use_broker: bool = True,
        extra_outputs: list[RoomOutput] | None = None,
        state_path: Path | None = None,
        broker: BrokerEndpoint | None = None,
        subscribe_feeds: bool = True,
    ) -> None:
        self.config = config
        self.clock = clock
        self.topics = Topics(config.site.id)
        self.extra_outputs = list(extra_outputs or [])
        self.use_broker = use_broker
        self.broker = broker or BrokerEndpoint.from_config(config.broker)
        self._state_path = state_path or config.daemon.state_dir / STORE_FILE
        self.counters: Counter[str] = Counter()
        self.store: GuardedAlarmStore
        self.link: MqttLink | None = None
        self.pipelines: dict[str, RoomPipeline] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started: float | None = None
        self.serial: list[SerialPortBinding] = []
        self._stack = contextlib.AsyncExitStack()
        #: False for replay: feeds come from the recording, never from the broker.
        self.subscribe_feeds = subscribe_feeds
        self.ingest: FeedIngest
        #: Why the daemon stopped, when shared infrastructure failed ("" otherwise).
        self.failure = ""
        self.commands = CommandDesk(
            clock=clock,
            reply=self._send_reply,
            display_clients=config.daemon.display_clients,
            counters=self.counters,
        )
        # Rooms' next deadlines: a heap of (time, n, room) with stale entries left in it
        # (the current one is in _due_at), the time the deadline task sleeps until, and
        # the event that wakes it when an earlier deadline appears.
        self._due_heap: list[tuple[float, int, str]] = []
        self._due_at: dict[str, float] = {}
        self._due_n = itertools.count()
        self._due_target = float("inf")
        #: The monotonic time the deadline timer is armed for: the drain and the ticker run
        #: the due rooms themselves when they pass it mid-slice (see _due_now).
        self.due_mono = float("inf")
        self._due_wake = asyncio.Event()
        self._due_error: Exception | None = None
        #: The live inbound path: the bounded queue between the MQTT reader and the
        #: ingest, and the input lag per room (plain attributes, for metrics).
        self.inbound = InboundQueue(capacity=config.daemon.inbound_queue_max)
        self.lag = InputLag()
        #: Feed topics seen -> (room, feed), for this daemon's rooms and feeds only.
        self._feed_routes: dict[bytes, tuple[str, str]] = {}
        self.overloaded: set[str] = set()
        self._shed_seen: Counter[tuple[str, str]] = Counter()
        self._shed_total_judged = 0  # shed_total when the overload was last judged
        #: Work time of the ticker's passes over every room, and the monotonic time the
        #: last pass ended: the health check and the systemd watchdog judge by it.
        self.tick_time = WorkTime()
        self.last_tick_mono: float | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        cfg = self.config
        self.store = GuardedAlarmStore(AlarmStore(self._state_path))
        self._store_alarmed = False
        self.recovery_store = RecoveryStore.in_state_dir(self._state_path.parent)
        self._started = self.clock.now()
        self.output = output = Dispatcher(self)
        self.ingest = FeedIngest(
            pipelines=self.pipelines,
            max_payload_bytes=cfg.daemon.max_payload_bytes,
            counters=self.counters,
        )
        for room_id, room in cfg.rooms.items():
            self.pipelines[room_id] = RoomPipeline(
                site=cfg.site.id,
                room=room_id,
                config=room,
                daemon=cfg.daemon,
                clock=self.clock,
                output=output,
                next_seq=self.store.next_seq(room_id),
                recovery_store=self.recovery_store,
            )
        for room_id, pipeline in self.pipelines.items():
            stale = self.store.open_alarms(room_id)
            if stale:
                output.alarms(pipeline.engine.close_stale(stale, self.clock.now()))
            pipeline.on_deadline = self._deadline_moved
            pipeline.refresh_deadline()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._stack = contextlib.AsyncExitStack()
        for room_id, pipeline in self.pipelines.items():
            for binding in serial_bindings(
                room=room_id, config=cfg.rooms[room_id], pipeline=pipeline, clock=self.clock
            ):
                self.serial.append(binding)
                await self._stack.enter_async_context(binding.feed)
        if self.use_broker:
            self.link = MqttLink(
                endpoint=self.broker,
                client_id=f"roommon-{cfg.site.id}-{cfg.daemon.instance}",
                store=self.store,
                clock=self.clock,
                # Commands on the control connection, feeds on a connection of their own.
                subscriptions=self.topics.daemon_filters(list(self.pipelines), feeds=False),
                feed_subscriptions=[self.topics.feed_filter(r) for r in self.pipelines]
                if self.subscribe_feeds
                else [],
                on_feed_state=self._feed_connection,
                on_message=self.handle_message,
                on_feed_messages=self.handle_feed_messages,
                will_topic=self.topics.status(cfg.daemon.instance),
                will_payload=self.status_payload("offline", "connection lost"),
                online=lambda: self.status_payload("online"),
                on_connected=self._refresh_retained,
            )
            await self.link.__aenter__()
        self._tasks = [
            self._tg.create_task(self._ticker(), name="roommon-ticker"),
            self._tg.create_task(self._heartbeat(), name="roommon-heartbeat"),
            self._tg.create_task(self._deadlines(), name="roommon-deadlines"),
            self._tg.create_task(self._drain(), name="roommon-inbound"),
        ]
        log.info("daemon_started", site=cfg.site.id, rooms=list(cfg.rooms), broker=self.use_broker)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop every task; say goodbye (status offline, with the reason of a failure).

        A task that fails (the broker link's, the ticker's) cancels the block
        of the ``async with``, which brings us here; its exception is collected,
        logged, published as the reason of the offline status, and raised as
        :class:`DaemonFailedError`: never a silent death.
        """
        errors: list[BaseException] = []
        for t in self._tasks:
            t.cancel()
        assert self._tg is not None
        # The block's own exception (a caller's bug, a test's assertion) is not a task's
        # failure: it passes through unchanged. Only a cancellation is handed on, so the
        # TaskGroup can tell one it caused (a task failed) from one from outside.
        cancel = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        passed: tuple[type[BaseException] | None, BaseException | None, TracebackType | None] = (
            (exc_type, exc, tb) if cancel else (None, None, None)
        )
        try:
            await self._tg.__aexit__(*passed)
        except BaseExceptionGroup as eg:
            errors.extend(eg.exceptions)
        except asyncio.CancelledError:
            pass  # an outside cancellation (re-raised on return), or the link's TaskGroup's
        link_ok = self.link is None or self.link.healthy
        if not errors and link_ok:
            with contextlib.suppress(StoreError):
                for pipeline in self.pipelines.values():
                    pipeline.publish_state(force=True)
            if self.link is not None:
                await self.link.goodbye(self.status_payload("offline", "shutdown"))
        if self.link is not None:
            try:
                await self.link.__aexit__(*passed)
            except BaseExceptionGroup as eg:
                errors.extend(eg.exceptions)
            except asyncio.CancelledError:
                pass
        await self._stack.aclose()
        # The same failure of both broker connections (a TLS file gone) is said once.
        unique = {f"{type(leaf).__name__}: {leaf}": leaf for e in errors for leaf in _leaves(e)}
        errors = list(unique.values())
        if errors:
            self.failure = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
            for e in errors:
                log.error("daemon_failed", error=f"{type(e).__name__}: {e}", exc_info=e)
            if self.link is not None:
                await self.link.last_word(self.status_payload("offline", f"failed: {self.failure}"))
        with contextlib.suppress(StoreError):
            self.store.close()
            self.recovery_store.close()
        log.info("daemon_stopped", site=self.config.site.id, failure=self.failure or None)
        if errors:
            raise DaemonFailedError(self.failure) from errors[0]

    def engine_seq(self, room: str) -> int:
        """Sequence number of the newest alarm event of a room."""
        return self.pipelines[room].engine.last_seq

    def _refresh_retained(self) -> None:
        """After each (re)connect: every room's state again, freshly stamped.

        The broker may have lost its retained messages (a crash without persistence)
        or hold old ones; a display subscribing now must not wait for a change.
        """
        for pipeline in self.pipelines.values():
            with contextlib.suppress(StoreError), pipeline.guard("refresh_state"):
                pipeline.publish_state(force=True)

    def _feed_connection(self, up: bool, reason: str) -> None:
        """The feed connection was lost (or is back after a loss): every room's feeds that
        come over MQTT (not a serial port) are disconnected, a technical alarm like any
        lost feed transport (``feed.disconnected``)."""
        for room_id, pipeline in self.pipelines.items():
            for name, feed in self.config.rooms[room_id].feeds.items():
                if feed.serial is None:
                    pipeline.transport_state(name, up=up, reason=reason)

    def wake_writer(self) -> None:
        if self.link is not None:
            self.link.outbox_changed()

    # ------------------------------------------------------------------ status

    def status_payload(self, status: str, reason: str = "") -> bytes:
        now = self.clock.now()
        store_error = self._store_failure()
        msg = StatusMessage(
            site=self.config.site.id,
            instance=self.config.daemon.instance,
            status=status,
            reason=reason,
            version=__version__,
            t=now,
            time=iso(now),
            started=self._started,
            heartbeat_s=self.config.daemon.heartbeat_s,
            rooms=sorted(self.config.rooms),
            outbox_pending=self.store.pending_count(),
            durable=not store_error,
            store_error=store_error,
            counters=dict(self.counters),
            input_lag_s=round(max(self.lag.lag_s, self.inbound.waited(self.clock.monotonic())), 3),
            inbound_queued=self.inbound.queued,
            inbound_high_water=self.inbound.high_water,
            shed={f"{room}/{feed}": n for (room, feed), n in sorted(self.inbound.shed.items())},
            overloaded=sorted(self.overloaded),
            serial={
                f"{b.pipeline.room}:{b.port.port}": {
                    "connected": b.feed.connected,
                    "protocol": b.port.protocol,
                    **b.driver.counters.snapshot(),
                }
                for b in self.serial
            },
        )
        return msg.model_dump_json().encode()

    def _store_failure(self) -> str:
        """Why a store cannot be written ("" when the alarm and recovery stores both can)."""
        recovery = sorted({p.recovery.save_failure for p in self.pipelines.values()} - {""})
        return "; ".join(filter(None, [self.store.failure, *recovery]))

    def _store_health(self) -> None:
        """Retry a store that cannot be written; while it cannot, every room's alarm says so."""
        if self.store.degraded:
            self.store.retry()
        now = self.clock.now()
        for pipeline in self.pipelines.values():
            if pipeline.recovery.save_failure:
                with pipeline.guard("store_health"):
                    pipeline.recovery.retry(now)
        failure = self._store_failure()
        down = bool(failure)
        if down == self._store_alarmed:
            return
        self._store_alarmed = down
        for pipeline in self.pipelines.values():
            report = ConditionReport(
                room=pipeline.room,
                feed="",
                check="store",
                spec=STORE_UNWRITABLE,
                active=down,
                t=now,
                message=f"{STORE_UNWRITABLE.description} ({failure})" if down else "",
                origin=DataOrigin.LIVE,
            )
            with pipeline.guard("store_health"):
                pipeline.external_conditions([report])
        if self.link is not None:  # the status says it at once, not at the next heartbeat
            self.link.publish_retained(
                self.topics.status(self.config.daemon.instance),
                self.status_payload("online"),
                first=True,
            )

    async def _heartbeat(self) -> None:
        topic = self.topics.status(self.config.daemon.instance)
        while True:
            if self.link is not None:
                self.link.publish_retained(topic, self.status_payload("online"), first=True)
            await self.clock.sleep(self.config.daemon.heartbeat_s)

    async def _ticker(self) -> None:
        period = self.config.daemon.tick_s
        next_at = self.clock.monotonic()
        pipelines = list(self.pipelines.values())
        while True:
            started = work_clock()
            work = 0.0
            for binding in self.serial:
                binding.tick()
            # First: a pass over many rooms of a busy daemon takes long, and the overload
            # alarm must not wait for its end.
            self._overload()
            i = 0
            while i < len(pipelines):
                # the alarms of a slice's rooms (a feed lost everywhere) in one transaction
                with self.output.held():
                    while i < len(pipelines) and work_clock() - started <= SLICE_S:
                        pipelines[i].tick()
                        i += 1
                        if self.clock.monotonic() >= self.due_mono:  # see _due_now
                            self._due_now()
                if i < len(pipelines):  # let the writer and the readers in
                    work += work_clock() - started
                    await asyncio.sleep(0)
                    started = work_clock()
            self._store_health()
            self.tick_time.add(work + work_clock() - started)
            self.last_tick_mono = self.clock.monotonic()
            next_at += period
            await self.clock.sleep_until(next_at)

    def _deadline_moved(self, pipeline: RoomPipeline) -> None:
        t = pipeline.deadline
        if t is None:
            self._due_at.pop(pipeline.room, None)
            return
        self._due_at[pipeline.room] = t
        heapq.heappush(self._due_heap, (t, next(self._due_n), pipeline.room))
        if t < self._due_target:
            self._due_wake.set()

    def _next_due(self) -> float | None:
        heap = self._due_heap
        while heap and self._due_at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # stale: that room's deadline moved since
        return heap[0][0] if heap else None

    async def _deadlines(self) -> None:
        """Run each room's time-based rules at its deadline (see :meth:`RoomPipeline.due`):
        a timer on the clock for the earliest deadline, re-armed when an earlier one
        appears; repeat.

        The 1 s ticker still runs everything else; this task is what makes a condition
        delay end in an alarm at its deadline, not up to a tick later. The rooms run in
        the timer's own callback, not in this task: a task would resume a turn of the
        event loop later, and a turn of a busy daemon is a slice of input (at 300 rooms
        each turn added tens of ms to an alarm). The alarm's publish goes on the wire in
        that same callback (:meth:`MqttLink.outbox_changed`).
        """
        timer: Cancellable | None = None
        try:
            while True:
                self._due_wake.clear()
                if self._due_error is not None:
                    raise self._due_error
                t = self._next_due()
                now = self.clock.now()
                if t is not None and t <= now:
                    self._run_due(now)
                    await asyncio.sleep(0)  # let the reader and the writer in between
                    continue
                if timer is not None:
                    timer.cancel()
                    timer = None
                self._due_target = float("inf") if t is None else t
                if t is not None:
                    mono = self.clock.monotonic() + (t - now)
                    self.due_mono = mono
                    timer = self.clock.call_at(mono, self._due_now)
                await self._due_wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    def _due_now(self) -> None:
        """The timer of the earliest deadline: run the rooms that are due, in this turn.

        Also called by the drain and the ticker when they pass :attr:`due_mono` in the
        middle of a slice: the loop runs a due timer only after everything that became
        ready before it (a slice of input, a slice of the ticker, the readers), which
        made an alarm at its deadline wait up to two such turns."""
        self._due_target = self.due_mono = float("inf")
        try:
            self._run_due(self.clock.now())
            self.output.release()
        except Exception as exc:  # noqa: BLE001 (a supervisor: the deadline task raises it)
            self._due_error = exc
        self._due_wake.set()

    def _run_due(self, now: float) -> None:
        """Every room whose deadline is at or before ``now``, once each."""
        fired: list[RoomPipeline] = []
        while (t := self._next_due()) is not None and t <= now:
            _, _, room = heapq.heappop(self._due_heap)
            del self._due_at[room]
            pipeline = self.pipelines[room]
            pipeline.due()
            fired.append(pipeline)
        for pipeline in fired:
            if pipeline.deadline is not None and pipeline.deadline <= now:
                # Nothing fell due although the deadline said so: leave it to the next tick
                # rather than spin (the periodic tick evaluates every rule anyway).
                log.warning("deadline_not_due", room=pipeline.room, deadline=pipeline.deadline)
                self._due_at.pop(pipeline.room, None)

    # ------------------------------------------------------------------ inbound

    def handle_message(self, message: InboundMessage) -> None:
        """Route one inbound MQTT message to its room (each room entry is guarded)."""
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else b""
        parsed = self.topics.parse_room_topic(topic)
        if parsed is None:
            self.counters["unroutable"] += 1
            return
        room_id, rest = parsed
        if len(rest) == 2 and rest[0] == "feed":
            if self.subscribe_feeds:
                self._queue_feed(Inbound(room_id, rest[1], payload, self.clock.monotonic()))
            else:
                self.counters["live_feed_ignored"] += 1
            return
        pipeline = self.pipelines.get(room_id)
        if pipeline is None:
            self.counters["unknown_room"] += 1
            log.warning("message_unknown_room", topic=topic)
            return
        if len(rest) == 2 and rest[0] == "command":
            self.handle_command(pipeline, rest[1], payload)
        else:
            self.counters["unroutable"] += 1

    def handle_feed_messages(self, messages: list[tuple[bytes, bytes]]) -> None:
        """One read of the feed connection: each message into the bounded queue for its
        room and feed (routed by the topics seen before), all with the read's time."""
        mono = self.clock.monotonic()
        routes, queue = self._feed_routes, self._queue_feed
        for topic, payload in messages:
            route = routes.get(topic) or self._feed_route(topic)
            if route is not None:
                queue(Inbound(route[0], route[1], payload, mono))

    def _queue_feed(self, item: Inbound) -> None:
        """Into the bounded queue; a message shed to make room is counted against its feed,
        so the skip it leaves in the feed's count is known as the daemon's, not a seq gap."""
        old = self.inbound.put(item)
        if old is not None and (shed_in := self.pipelines.get(old.room)) is not None:
            shed_in.shed(old.feed)

    def _feed_route(self, topic: bytes) -> tuple[str, str] | None:
        """(room, feed) of a feed topic not routed before, remembered if both are this
        daemon's (the cache holds no more than its rooms' feeds); None (counted) if it is
        no feed topic of the site."""
        parsed = self.topics.parse_room_topic(topic.decode(errors="replace"))
        if parsed is None or len(parsed[1]) != 2 or parsed[1][0] != "feed":
            self.counters["unroutable"] += 1
            return None
        room, (_, feed) = parsed
        pipeline = self.pipelines.get(room)
        if pipeline is not None and feed in pipeline.config.feeds:
            self._feed_routes[topic] = (room, feed)
        return room, feed

    async def _drain(self) -> None:
        """Feed messages from the bounded queue to their rooms, noting each one's input lag."""
        queue, ingest, clock, lag = self.inbound, self.ingest, self.clock, self.lag
        limit = self.config.daemon.overload_lag_s
        while True:
            await queue.ready.wait()
            until = work_clock() + SLICE_S
            worst = 0.0
            while work_clock() < until and (item := queue.pop()) is not None:
                if ingest.payload(item.room, item.feed, item.payload) == "accepted":
                    now, mono = clock.now(), clock.monotonic()
                    behind = lag.sample(
                        item.room,
                        item.feed,
                        offset=now - ingest.last_sample_t,
                        waited=mono - item.received,
                        mono=mono,
                    )
                    if behind > worst:
                        worst = behind
                    if mono >= self.due_mono:  # a deadline passed meanwhile: its alarm now
                        self._due_now()
            # The onset of an overload is not left to the next tick, which an overloaded
            # daemon reaches late: the first shed message, a queue wait past the limit, or
            # data processed later than the limit (a daemon whose reading falls behind
            # keeps the backlog in the socket and the broker, not in its queue) raises
            # daemon.overloaded now (the tick judges it from then on).
            if not self.overloaded and (
                queue.shed_total != self._shed_total_judged
                or worst > limit
                or queue.waited(clock.monotonic()) > limit
            ):
                self._overload()
            await asyncio.sleep(0)

    def _overload(self) -> None:
        """Once a tick (and at an overload's onset, from the drain): each room whose input
        lag passed ``overload_lag_s``, or whose feed messages were shed, has
        ``daemon.overloaded``; it clears when it has caught up."""
        started = work_clock()
        by_room = self.lag.roll()
        # What waits in the queue is behind too, in every room, processed or not (a drain
        # that is stuck, or far behind, processes nothing that would show its lag).
        queued = self.inbound.waited(self.clock.monotonic())
        shed_now: Counter[str] = Counter()
        for (room, _feed), n in self.inbound.shed.items():
            new = n - self._shed_seen[(room, _feed)]
            if new:
                shed_now[room] += new
        self._shed_seen = Counter(self.inbound.shed)
        self._shed_total_judged = self.inbound.shed_total
        now = self.clock.now()
        changed: dict[str, list[str]] = {"raised": [], "cleared": [], "": []}
        rooms = list(self.pipelines.items())
        for first in range(0, len(rooms), OVERLOAD_CHUNK):
            # a transaction and a write per chunk: the first rooms' alarms go out at once
            with self.output.held():
                for room, pipeline in rooms[first : first + OVERLOAD_CHUNK]:
                    behind = max(by_room.get(room, 0.0), queued)
                    change = self._room_overload(pipeline, behind, shed_now.get(room, 0), now)
                    changed[change].append(room)
        raised, cleared = changed["raised"], changed["cleared"]
        if raised:
            log.warning(
                "daemon_overloaded",
                rooms=raised,
                overloaded=len(self.overloaded),
                lag_s=round(self.lag.lag_s, 3),
                queued=self.inbound.queued,
                shed=self.inbound.shed_total,
                work_ms=round(1000 * (work_clock() - started), 1),
            )
        if cleared and not self.overloaded:
            log.info("daemon_caught_up", lag_s=round(self.lag.lag_s, 3))
        if (raised or cleared) and self.link is not None:  # the status says it at once
            self.link.publish_retained(
                self.topics.status(self.config.daemon.instance),
                self.status_payload("online"),
                first=True,
            )

    def _room_overload(self, pipeline: RoomPipeline, behind: float, shed: int, now: float) -> str:
        """Report one room's daemon.overloaded: "raised", "cleared" or "" (no change)."""
        limit = self.config.daemon.overload_lag_s
        room = pipeline.room
        active = behind > limit or shed > 0
        if not active and room not in self.overloaded:
            return ""
        parts = [f"input {behind:.1f} s behind real time (limit {limit:g} s)"]
        if shed:
            parts.append(f"{shed} feed messages shed in the last tick")
        report = ConditionReport(
            room=room,
            feed="",
            check="daemon",
            spec=DAEMON_OVERLOADED,
            active=active,
            t=now,
            value=round(behind, 3),
            limit=limit,
            message="; ".join(parts) if active else "",
            origin=DataOrigin.LIVE,
        )
        with pipeline.guard("overload"):
            pipeline.external_conditions([report])
        if active and room not in self.overloaded:
            self.overloaded.add(room)
            return "raised"
        if not active:
            self.overloaded.discard(room)
            return "cleared"
        return ""

    def handle_command(self, pipeline: RoomPipeline, client: str, payload: bytes) -> CommandReply:
        """Apply one command from ``client`` and reply (see :class:`CommandDesk`)."""
        return self.commands.handle(pipeline, client, payload)

    def command_seen(self, room: str, client: str, cmd_id: str) -> bool:
        """The daemon has applied (and answered) the command ``cmd_id`` of ``client``."""
        return self.commands.seen(room, client, cmd_id)

    def _send_reply(self, reply: CommandReply) -> None:
        if self.link is not None:
            topic = self.topics.reply(reply.room, reply.client)
            self.store.enqueue(topic, reply.model_dump_json().encode())
            self.wake_writer()
