"""Durable alarm outbox and alarm log, in one SQLite database.

Every alarm event is written to the log and, with its notifications, to the
outbox in one transaction before anyone tries to publish it. The publisher
marks outbox rows acknowledged only after the broker's QoS 1 PUBACK, so a
broker outage or a daemon crash delays delivery but loses nothing; delivery
is in row order, hence in order per room.

A PUBACK says the broker has the message, not that subscribers do: a broker
that crashes right after acknowledging can take undelivered copies with it.
So acknowledged rows are kept for a redelivery window, and after an
unexpected disconnect the rows acknowledged within that window before it are
sent again, first and in order. Subscribers dedupe on ``event_id``; the
price of never losing an event is the occasional duplicate.

A seq is never given to two events, even across a crash while the store
could not be written (when events are published from memory before they are
logged, :mod:`roommon.alerts.guarded_store`): every write that logs an event
also keeps a reservation :data:`SEQ_BLOCK` seqs ahead of it, and a start after
a run that did not shut down cleanly continues above the reservation. The
subscribers then see a gap in ``seq``: the honest sign that events may be
missing from the log. A clean shutdown gives the unused reservation back.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from roommon.alerts.faults import STORE_FILE as STORE_FILE
from roommon.core.errors import StoreError
from roommon.core.log import get_logger
from roommon.core.sqlite import connect, transaction
from roommon.wire.payloads import AlarmEventMessage

log = get_logger(__name__)

#: Seqs reserved ahead of the last one logged, per room: a daemon that cannot write its
#: store may publish this many events of a room from memory before a seq could repeat.
SEQ_BLOCK = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    acked_at REAL  -- monotonic time of the PUBACK; NULL while pending
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (acked_at, id);
CREATE TABLE IF NOT EXISTS alarm_log (
    seq INTEGER NOT NULL,
    room TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    alarm_id TEXT NOT NULL,
    code TEXT NOT NULL,
    feed TEXT NOT NULL,
    kind TEXT NOT NULL,
    priority TEXT NOT NULL,
    transition TEXT NOT NULL,
    origin TEXT NOT NULL,
    t REAL NOT NULL,
    since REAL NOT NULL,
    actor TEXT,
    payload TEXT NOT NULL,
    PRIMARY KEY (room, seq)
);
CREATE INDEX IF NOT EXISTS alarm_log_t ON alarm_log (t);
-- Per room, the highest seq this store has let the daemon use: the next start
-- continues above it unless the last run shut down cleanly (see next_seq).
CREATE TABLE IF NOT EXISTS seq_reserved (
    room TEXT PRIMARY KEY,
    upto INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_log_alarm ON alarm_log (alarm_id);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class AlarmStore:
    """Outbox + alarm log. Open with :meth:`open`, close with :meth:`close`."""

    #: Outbox rows keep their ids here (see :attr:`GuardedAlarmStore.renumbered`).
    renumbered = 0

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = connect(path, _SCHEMA)
        #: Why the first write (at open) failed: opened, but not writable (a full disk).
        self.open_write_error = ""
        # Acknowledgement times are monotonic readings of the previous process: meaningless
        # now, and the redelivery they guard against concerns a connection that is gone.
        self._stale: frozenset[int] = frozenset()
        try:
            self._db.execute("DELETE FROM outbox WHERE acked_at IS NOT NULL")
        except StoreError as exc:  # readable but full or read-only: the caller decides
            self.open_write_error = str(exc)
            # Left in place they must not count as acknowledged by this process.
            rows = self._db.execute("SELECT id FROM outbox WHERE acked_at IS NOT NULL")
            self._stale = frozenset(i for (i,) in rows.fetchall())
        self._reserved = self._load_reserved()

    def close(self, *, release_seqs: bool = False) -> None:
        """Close. The daemon's clean shutdown passes ``release_seqs=True``: it gives back the
        seqs reserved but not used, so the next start continues right after the last event
        logged. Readers (``roommon alarms``, the HL7 catch-up) never do: the daemon may be
        running on the same file (see :mod:`roommon.alerts.guarded_store`)."""
        if release_seqs:
            try:
                self._release_seqs()
            except StoreError as exc:  # the next start merely continues above the reservation
                log.warning("seq_release_failed", path=str(self.path), error=str(exc))
        self._db.close()

    def _release_seqs(self) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE seq_reserved SET upto = COALESCE("
                "(SELECT MAX(seq) FROM alarm_log WHERE room = seq_reserved.room), 0)"
            )
        self._reserved = self._load_reserved()

    def _load_reserved(self) -> dict[str, int]:
        rows = self._db.execute("SELECT room, upto FROM seq_reserved").fetchall()
        return {room: int(upto) for room, upto in rows}

    # ------------------------------------------------------------------ writing

    def record(
        self,
        events: Iterable[AlarmEventMessage],
        messages: Iterable[tuple[str, bytes, int, bool]],
    ) -> None:
        """Log ``events`` and queue ``messages`` (topic, payload, qos, retain) atomically."""
        with transaction(self._db) as db:
            db.executemany(
                "INSERT INTO alarm_log (seq, room, event_id, alarm_id, code, feed, kind, priority,"
                " transition, origin, t, since, actor, payload)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        e.seq,
                        e.room,
                        e.event_id,
                        e.alarm_id,
                        e.code,
                        e.feed,
                        e.kind,
                        e.priority,
                        e.transition,
                        e.origin,
                        e.t,
                        e.since,
                        e.actor,
                        e.model_dump_json(),
                    )
                    for e in events
                ],
            )
            db.executemany(
                "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?,?,?,?)",
                [(t, p, q, int(r)) for t, p, q, r in messages],
            )
            reserve: dict[str, int] = {}
            for e in events:
                held = max(self._reserved.get(e.room, 0), reserve.get(e.room, 0))
                if e.seq + SEQ_BLOCK // 2 > held:  # always at least half a block ahead
                    reserve[e.room] = e.seq + SEQ_BLOCK
            if reserve:  # once every SEQ_BLOCK / 2 events of a room, not once per event
                db.executemany(
                    "INSERT INTO seq_reserved (room, upto) VALUES (?, ?)"
                    " ON CONFLICT (room) DO UPDATE SET upto = excluded.upto",
                    list(reserve.items()),
                )
        self._reserved.update(reserve)

    def probe(self) -> None:
        """A write that changes nothing (the header's user_version, rewritten): raises
        StoreError while the database cannot be written, and drops stale acknowledgements
        the open could not."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        self._db.execute(f"PRAGMA user_version = {int(version)}")
        if self.open_write_error:
            self._db.execute("DELETE FROM outbox WHERE acked_at IS NOT NULL")
            self.open_write_error, self._stale = "", frozenset()

    def enqueue(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.record((), [(topic, payload, qos, retain)])

    # ------------------------------------------------------------------ outbox

    def pending(self, limit: int = 100, *, after_id: int = 0) -> list[OutboxRow]:
        """Rows not yet acknowledged by the broker, oldest first."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM outbox"
            " WHERE acked_at IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [OutboxRow(i, t, bytes(p), q, bool(r)) for i, t, p, q, r in rows]

    def acknowledged(self, ids: list[int], *, at: float) -> None:
        self._db.executemany("UPDATE outbox SET acked_at = ? WHERE id = ?", [(at, i) for i in ids])

    def recently_acknowledged(self, since: float) -> list[OutboxRow]:
        """Rows acknowledged at or after ``since`` (monotonic), oldest first."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM outbox"
            " WHERE acked_at IS NOT NULL AND acked_at >= ? ORDER BY id",
            (since,),
        ).fetchall()
        return [
            OutboxRow(i, t, bytes(p), q, bool(r)) for i, t, p, q, r in rows if i not in self._stale
        ]

    def forget_acknowledged(self, before: float) -> None:
        self._db.execute(
            "DELETE FROM outbox WHERE acked_at IS NOT NULL AND acked_at < ?", (before,)
        )
        if self._stale:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in self._stale])
            self._stale = frozenset()

    def pending_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ log

    def next_seq(self, room: str) -> int:
        """The room's next seq: after its last event logged and after its reservation (which
        a clean shutdown gave back, so only a crash leaves a gap)."""
        return max(self.last_logged_seq(room), self._reserved.get(room, 0)) + 1

    def last_logged_seq(self, room: str) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM alarm_log WHERE room = ?", (room,)).fetchone()
        return int(row[0] or 0)

    def open_alarms(self, room: str) -> list[AlarmEventMessage]:
        """The last event of each alarm of ``room`` that was never cleared or reset."""
        rows = self._db.execute(
            "SELECT payload FROM alarm_log AS a WHERE room = ? AND seq = (SELECT MAX(seq)"
            " FROM alarm_log AS b WHERE b.room = a.room AND b.alarm_id = a.alarm_id)"
            " AND transition NOT IN ('cleared', 'reset') ORDER BY seq",
            (room,),
        ).fetchall()
        return [AlarmEventMessage.model_validate_json(p) for (p,) in rows]

    def events(
        self,
        *,
        room: str | None = None,
        since: float | None = None,
        priority: str | None = None,
        kind: str | None = None,
    ) -> list[AlarmEventMessage]:
        where: list[str] = []
        args: list[str | float] = []
        for col, val in (("room", room), ("priority", priority), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if since is not None:
            where.append("t >= ?")
            args.append(since)
        sql = "SELECT payload FROM alarm_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY t, room, seq"
        return [AlarmEventMessage.model_validate_json(p) for (p,) in self._db.execute(sql, args)]


@dataclass(frozen=True, slots=True)
class Burden:
    """Alarm-burden figures of one room over a period."""

    room: str
    alarms: int
    hours: float
    per_hour: float
    share_acknowledged: float
    median_ack_s: float | None
    share_self_cleared: float  # cleared unacknowledged within delay + 10 s of raising


#: Seconds after raising within which an alarm that clears by itself counts as
#: likely non-actionable (the issue's proxy: condition delay plus 10 s; the
#: delay is already spent before raising, so 10 s after raising).
SELF_CLEAR_WINDOW_S = 10.0


def burden(events: Iterable[AlarmEventMessage], *, hours: float | None = None) -> list[Burden]:
    """Compute burden per room from logged events (each alarm counted once)."""
    by_room: dict[str, dict[str, list[AlarmEventMessage]]] = {}
    for e in events:
        by_room.setdefault(e.room, {}).setdefault(e.alarm_id, []).append(e)
    out = []
    for room, alarms in sorted(by_room.items()):
        raised = {a: evs for a, evs in alarms.items() if any(e.transition == "raised" for e in evs)}
        n = len(raised)
        ts = [e.t for evs in alarms.values() for e in evs]
        span_h = hours if hours is not None else max((max(ts) - min(ts)) / 3600.0, 1 / 60)
        acked, ack_delays, self_cleared = 0, [], 0
        for evs in raised.values():
            since = evs[0].since
            ack = next((e for e in evs if e.transition == "acknowledged"), None)
            if ack is not None:
                acked += 1
                ack_delays.append(ack.t - since)
            clear = next((e for e in evs if e.transition == "cleared"), None)
            if ack is None and clear is not None and clear.t - since <= SELF_CLEAR_WINDOW_S:
                self_cleared += 1
        out.append(
            Burden(
                room=room,
                alarms=n,
                hours=span_h,
                per_hour=n / span_h,
                share_acknowledged=acked / n if n else 0.0,
                median_ack_s=statistics.median(ack_delays) if ack_delays else None,
                share_self_cleared=self_cleared / n if n else 0.0,
            )
        )
    return out
