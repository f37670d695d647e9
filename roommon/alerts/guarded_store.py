"""The alarm store as the daemon uses it: a full disk is an alarm, not the end.

Wraps :class:`~roommon.alerts.store.AlarmStore` (and is the daemon's MQTT
outbox). While SQLite accepts writes nothing changes: events are logged and
queued durably before they are published. When a write fails (disk full,
read-only, I/O error: a :class:`~roommon.core.errors.StoreError`) the store
becomes **not durable** instead of stopping the daemon:

* events, notifications and replies are kept in memory, in order, and the
  link publishes them from there (live delivery goes on; a daemon crash now
  would lose what only memory holds);
* outbox rows the broker acknowledges while the store cannot record it are
  remembered in memory, so nothing is sent twice in a loop;
* :attr:`degraded` says so; the daemon raises the high-priority technical
  alarm :data:`STORE_UNWRITABLE` for every room and shows ``durable: false``
  in its status, and calls :meth:`retry` about once a second;
* when a retry succeeds, the events held in memory are written to the alarm
  log with the seqs they were published with (a seq is never given twice),
  the rows not yet delivered move to the durable outbox (a row in flight may
  then be delivered twice: subscribers dedupe on ``event_id``), and the
  store is durable again;
* a crash while not durable loses from the log what only memory held, but
  not the seqs: the next start continues above the seqs the store reserved
  (:data:`~roommon.alerts.store.SEQ_BLOCK` ahead), so subscribers see a gap,
  never a seq given to a second event.

Reads (``next_seq``, ``open_alarms``, the alarm log) go to SQLite directly:
they work on a full disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from roommon.alerts.faults import STORE_UNWRITABLE as STORE_UNWRITABLE
from roommon.alerts.store import AlarmStore, OutboxRow
from roommon.core.errors import StoreError
from roommon.core.log import get_logger
from roommon.wire.payloads import AlarmEventMessage

log = get_logger(__name__)


#: Ids of rows held in memory start here: above any SQLite rowid roommon will reach,
#: so the link's ``id`` order stays the publication order.
MEMORY_IDS = 1 << 62


@dataclass(slots=True)
class _MemoryRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    acked_at: float | None = None

    def row(self) -> OutboxRow:
        return OutboxRow(self.id, self.topic, self.payload, self.qos, self.retain)


class GuardedAlarmStore:
    """An :class:`AlarmStore` that degrades to memory when it cannot be written."""

    def __init__(self, store: AlarmStore) -> None:
        self.store = store
        #: The last write failure while not durable ("" while durable).
        self.failure = ""
        self._log: list[AlarmEventMessage] = []  # events not yet in the alarm log
        self._rows: list[_MemoryRow] = []  # outbox rows held in memory, in order
        self._next_id = MEMORY_IDS
        self._acked: dict[int, float] = {}  # SQLite rows acknowledged, not yet recorded
        self.failures = 0  # writes that failed, in total
        #: How often rows held in memory moved to SQLite (:meth:`retry`), taking new, lower
        #: ids: a reader of the outbox that goes on "after the last id it sent" must start
        #: again from the oldest pending row.
        self.renumbered = 0
        if store.open_write_error:  # opened on a full (or read-only) disk: start not durable
            self._degrade(StoreError(store.open_write_error))

    @property
    def degraded(self) -> bool:
        return bool(self.failure)

    def _degrade(self, exc: StoreError) -> None:
        self.failures += 1
        if not self.failure:
            log.error("store_unwritable", path=str(self.store.path), error=str(exc))
        self.failure = str(exc)

    # ------------------------------------------------------------------ writing

    def record(
        self,
        events: Iterable[AlarmEventMessage],
        messages: Iterable[tuple[str, bytes, int, bool]],
    ) -> None:
        events, messages = list(events), list(messages)
        if not self.degraded:
            try:
                self.store.record(events, messages)
            except StoreError as exc:
                self._degrade(exc)
            else:
                return
        self._log.extend(events)
        for topic, payload, qos, retain in messages:
            self._rows.append(_MemoryRow(self._next_id, topic, payload, qos, retain))
            self._next_id += 1

    def enqueue(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.record((), [(topic, payload, qos, retain)])

    def retry(self) -> bool:
        """Write what memory holds to SQLite; True when the store is durable (again)."""
        if not self.degraded:
            return True
        unsent = [r for r in self._rows if r.acked_at is None]
        try:
            self.store.probe()  # also when memory holds nothing: writable is shown by a write
            self.store.record(self._log, [(r.topic, r.payload, r.qos, r.retain) for r in unsent])
        except StoreError as exc:
            self.failure = str(exc)
            self.failures += 1
            return False
        if self._acked:
            try:
                self.store.acknowledged(list(self._acked), at=max(self._acked.values()))
            except StoreError:
                pass  # they are recorded next time; still pending rows merely go out again
            else:
                self._acked.clear()
        log.info(
            "store_writable_again",
            path=str(self.store.path),
            events=len(self._log),
            rows=len(unsent),
        )
        self._log.clear()
        self._rows.clear()
        self.renumbered += 1
        self.failure = ""
        return True

    # ------------------------------------------------------------------ outbox

    def pending(self, limit: int = 100, *, after_id: int = 0) -> list[OutboxRow]:
        rows: list[OutboxRow] = []
        if after_id < MEMORY_IDS:
            try:
                stored = self.store.pending(limit + len(self._acked), after_id=after_id)
            except StoreError as exc:  # cannot even read: what memory holds still goes out
                self._degrade(exc)
                stored = []
            rows = [r for r in stored if r.id not in self._acked][:limit]
        rows += [
            r.row() for r in self._rows if r.acked_at is None and r.id > after_id
        ][: limit - len(rows)]
        return rows

    def pending_count(self) -> int:
        try:
            stored = self.store.pending_count()
        except StoreError:
            stored = 0
        memory = sum(1 for r in self._rows if r.acked_at is None)
        return max(0, stored - len(self._acked)) + memory

    def acknowledged(self, ids: list[int], *, at: float) -> None:
        stored = [i for i in ids if i < MEMORY_IDS]
        wanted = set(ids)
        for r in self._rows:
            if r.id in wanted:
                r.acked_at = at
        if not stored:
            return
        if not self.degraded:
            try:
                self.store.acknowledged(stored, at=at)
            except StoreError as exc:
                self._degrade(exc)
            else:
                return
        self._acked.update(dict.fromkeys(stored, at))

    def recently_acknowledged(self, since: float) -> list[OutboxRow]:
        try:
            rows = self.store.recently_acknowledged(since)
        except StoreError:
            rows = []
        if self._acked:
            recent = {i for i, at in self._acked.items() if at >= since}
            try:
                extra = self.store.pending(len(self._acked) + 100)
            except StoreError:
                extra = []
            rows = sorted([*rows, *(r for r in extra if r.id in recent)], key=lambda r: r.id)
        rows += [r.row() for r in self._rows if r.acked_at is not None and r.acked_at >= since]
        return rows

    def forget_acknowledged(self, before: float) -> None:
        self._rows = [r for r in self._rows if r.acked_at is None or r.acked_at >= before]
        if self.degraded:
            return  # SQLite is not written while not durable; retry() comes first
        try:
            self.store.forget_acknowledged(before)
        except StoreError as exc:
            self._degrade(exc)

    # ------------------------------------------------------------------ reads

    def next_seq(self, room: str) -> int:
        seq = self.store.next_seq(room)
        last = self.store.last_logged_seq(room)
        if seq > last + 1:
            log.warning(
                "seq_continues_above_reservation",
                room=room,
                last_logged=last,
                next_seq=seq,
                why="the last run did not shut down cleanly: events after the last one logged "
                "may have been published from memory and are not in the log",
            )
        return seq

    def open_alarms(self, room: str) -> list[AlarmEventMessage]:
        return self.store.open_alarms(room)

    def events(
        self,
        *,
        room: str | None = None,
        since: float | None = None,
        priority: str | None = None,
        kind: str | None = None,
    ) -> list[AlarmEventMessage]:
        """The alarm log (what SQLite holds: not the events only memory holds)."""
        return self.store.events(room=room, since=since, priority=priority, kind=kind)

    def close(self) -> None:
        """Close; only a durable store gives back the seqs it reserved but did not use."""
        self.store.close(release_seqs=not self.degraded)
