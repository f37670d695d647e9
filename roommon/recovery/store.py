"""Durable recovery timers: every room's timer state and an append-only history, in SQLite.

Sits beside the timers: after each operation on a room's
:class:`~roommon.recovery.timer.RecoveryTimer` the daemon calls
:meth:`RecoveryStore.save` with the events it returned (and the command that
caused them, if any). State and history are written in one transaction, so the
saved state and the saved events always agree: an event is in the history if
and only if the saved state counts it as emitted. A timer's persistent state
changes only in operations that return events (a property test holds it to
that), so saving after every non-empty list of events is enough; refused
commands go to :meth:`RecoveryStore.log_command`.

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction
survives the process being killed (SIGKILL, a crash): WAL frames are in the
OS page cache the moment ``COMMIT`` returns. A power cut may lose the last
transactions since the last WAL sync, never corrupt the file; ``FULL`` would
close that gap at the cost of an fsync per save. After a lost save, the
restored timer re-emits the lost events with the same seq and therefore the
same event id (see :func:`roommon.recovery.messages.event_message`).

Ordering with the broker (for the daemon): queue the events for publication
(the alarm outbox) *before* calling :meth:`save`. A crash between the two then
means the events are emitted again on restart (subscribers dedupe on the
stable event id), never that they are saved as emitted but never sent.

The file is the recovery's own (``<state_dir>/recovery.sqlite3``), not the
alarm store's, so either can be inspected or reset without the other.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from roommon.core.log import get_logger
from roommon.core.sqlite import connect, transaction
from roommon.recovery.timer import RecoveryTimer, TimerEvent

log = get_logger(__name__)

FILENAME = "recovery.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS timers (
    room TEXT PRIMARY KEY,
    state TEXT NOT NULL,        -- RecoveryTimer.to_json()
    seq INTEGER NOT NULL,       -- last event seq, for a quick look
    recovery_id TEXT,
    timer_state TEXT NOT NULL,  -- idle, unconfirmed, ... for a quick look
    saved_t REAL NOT NULL       -- UTC epoch of the operation saved
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    entry TEXT NOT NULL CHECK (entry IN ('event', 'command')),
    recovery_id TEXT,
    seq INTEGER,                -- event seq; NULL for commands
    kind TEXT NOT NULL,         -- event kind or command action
    check_no INTEGER,
    t REAL NOT NULL,            -- when it happened / fell due / was commanded
    emitted REAL,               -- events: when the timer noticed
    actor TEXT,                 -- client id behind a command or a command's event
    outcome TEXT,               -- commands: 'ok' or the refusal reason
    data TEXT NOT NULL          -- JSON
);
CREATE UNIQUE INDEX IF NOT EXISTS history_event ON history (room, seq) WHERE entry = 'event';
CREATE INDEX IF NOT EXISTS history_room_t ON history (room, t);
CREATE INDEX IF NOT EXISTS history_recovery ON history (recovery_id);
CREATE TRIGGER IF NOT EXISTS history_no_update BEFORE UPDATE ON history
BEGIN SELECT RAISE(ABORT, 'recovery history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS history_no_delete BEFORE DELETE ON history
BEGIN SELECT RAISE(ABORT, 'recovery history is append-only'); END;
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRecord:
    """One nurse command as received, with its outcome (``ok`` or the refusal reason)."""

    room: str
    t: float
    by: str
    action: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    detail: str = ""
    recovery_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """A row of the history, as read back."""

    id: int
    room: str
    entry: Literal["event", "command"]
    recovery_id: str | None
    seq: int | None
    kind: str
    check_no: int | None
    t: float
    emitted: float | None
    actor: str | None
    outcome: str | None
    data: dict[str, Any]


class RecoveryStore:
    """Timer states and history. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = connect(path, _SCHEMA)

    @classmethod
    def in_state_dir(cls, state_dir: Path | str) -> RecoveryStore:
        return cls(Path(state_dir) / FILENAME)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def save(
        self,
        timer: RecoveryTimer,
        events: Iterable[TimerEvent] = (),
        *,
        at: float,
        command: CommandRecord | None = None,
        commands: Iterable[CommandRecord] = (),
    ) -> None:
        """Save ``timer``'s state, append ``events`` and the commands, in one transaction.

        ``at`` is the time of the operation (kept with the state for a quick
        look). Saving the same events twice keeps one copy (unique room+seq).
        ``commands`` are earlier ones a failed save still holds (they go first).
        """
        with transaction(self._db) as db:
            db.execute(
                "INSERT INTO timers (room, state, seq, recovery_id, timer_state, saved_t)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (room) DO UPDATE SET state = excluded.state,"
                " seq = excluded.seq, recovery_id = excluded.recovery_id,"
                " timer_state = excluded.timer_state, saved_t = excluded.saved_t",
                (timer.room, timer.to_json(), timer.seq, timer.recovery_id, timer.state, at),
            )
            for c in [*commands, *([command] if command is not None else [])]:
                _insert_command(db, c)
            db.executemany(
                "INSERT OR IGNORE INTO history (room, entry, recovery_id, seq, kind, check_no, t,"
                " emitted, actor, outcome, data) VALUES (?,'event',?,?,?,?,?,?,?,NULL,?)",
                [
                    (
                        timer.room,
                        e.recovery_id,
                        e.seq,
                        e.kind,
                        e.check_no,
                        e.t,
                        e.emitted,
                        e.actor,
                        json.dumps(
                            {"reason": e.reason, "generation": e.generation, **e.data},
                            separators=(",", ":"),
                        ),
                    )
                    for e in events
                ],
            )

    def log_command(self, command: CommandRecord) -> None:
        """Append a command that changed nothing (refused) to the history."""
        with transaction(self._db) as db:
            _insert_command(db, command)

    # ------------------------------------------------------------------ reading

    def load_all(self) -> dict[str, RecoveryTimer]:
        """Every room's saved timer, exactly as saved (same deadlines, same flags, same seq)."""
        rows = self._db.execute("SELECT room, state FROM timers ORDER BY room").fetchall()
        timers = {room: RecoveryTimer.from_json(state) for room, state in rows}
        for room, timer in timers.items():
            log.info(
                "recovery_restored",
                room=room,
                state=timer.state,
                recovery_id=timer.recovery_id,
                seq=timer.seq,
            )
        return timers

    def load(self, room: str) -> RecoveryTimer | None:
        row = self._db.execute("SELECT state FROM timers WHERE room = ?", (room,)).fetchone()
        return None if row is None else RecoveryTimer.from_json(row[0])

    def history(
        self,
        *,
        room: str | None = None,
        recovery_id: str | None = None,
        entry: Literal["event", "command"] | None = None,
    ) -> list[HistoryEntry]:
        """History rows in the order they were written."""
        where: list[str] = []
        args: list[str] = []
        for col, val in (("room", room), ("recovery_id", recovery_id), ("entry", entry)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = (
            "SELECT id, room, entry, recovery_id, seq, kind, check_no, t, emitted, actor,"
            " outcome, data FROM history"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        return [
            HistoryEntry(
                id=i,
                room=r,
                entry=en,
                recovery_id=rid,
                seq=seq,
                kind=kind,
                check_no=cn,
                t=t,
                emitted=em,
                actor=actor,
                outcome=outcome,
                data=json.loads(data),
            )
            for i, r, en, rid, seq, kind, cn, t, em, actor, outcome, data in self._db.execute(
                sql, args
            )
        ]


def _insert_command(db: sqlite3.Connection, c: CommandRecord) -> None:
    db.execute(
        "INSERT INTO history (room, entry, recovery_id, seq, kind, check_no, t, emitted, actor,"
        " outcome, data) VALUES (?,'command',?,NULL,?,?,?,NULL,?,?,?)",
        (
            c.room,
            c.recovery_id,
            c.action,
            c.fields.get("check_no") if isinstance(c.fields.get("check_no"), int) else None,
            c.t,
            c.by,
            c.outcome,
            json.dumps({"fields": dict(c.fields), "detail": c.detail}, separators=(",", ":")),
        ),
    )
