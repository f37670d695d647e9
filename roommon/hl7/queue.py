"""The durable HL7 queue: every message waits here, in order, until its receiver accepts it.

It lives in the daemon's SQLite database (``roommon.sqlite3``, beside the MQTT
outbox) in its own table: the MQTT writer drains every row of ``outbox``,
and HL7 rows go to other peers with other acknowledgements. A row is written
in one transaction with its final control id (MSH-10) before anything tries
to send it; ``AA`` deletes it; ``AE``/``AR`` keep it as ``rejected`` with the
receiver's answer, for the log and for a person to look at; nothing else
removes a row, so a receiver outage or a daemon crash delays delivery and
loses nothing. The current patient of each room is kept here too, and the
seq of each room's last alarm event queued, so that events the alarm log
has but the queue missed (a crash between the two commits) are queued at
the next start, in order, before any new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from roommon.core.sqlite import connect, transaction
from roommon.hl7.segments import Patient

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hl7_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    room TEXT NOT NULL,
    kind TEXT NOT NULL,
    control_id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    ack_code TEXT,
    ack_text TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS hl7_queue_next ON hl7_queue (receiver, status, id);
CREATE TABLE IF NOT EXISTS hl7_progress (
    room TEXT PRIMARY KEY,
    alarm_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hl7_patient (
    room TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    authority TEXT NOT NULL,
    id_type TEXT NOT NULL,
    t REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: int
    receiver: str
    room: str
    kind: str
    control_id: str
    payload: str
    attempts: int


class Hl7Queue:
    def __init__(self, path: Path | str, *, control_prefix: str) -> None:
        self._db = connect(path, _SCHEMA)
        self._prefix = control_prefix

    def close(self) -> None:
        self._db.close()

    def enqueue(
        self,
        *,
        room: str,
        kind: str,
        now: float,
        builds: Mapping[str, Callable[[str], str]],
        alarm_seq: int | None = None,
    ) -> list[str]:
        """Add one message per receiver (``builds``: receiver -> ``build(control_id)``) in
        one transaction; with ``alarm_seq``, also record that the room's alarm events up to
        that seq are queued. Returns the control ids."""
        ids = []
        with transaction(self._db) as db:
            for receiver, build in builds.items():
                cur = db.execute(
                    "INSERT INTO hl7_queue (receiver, room, kind, control_id, payload, created) "
                    "VALUES (?, ?, ?, '', '', ?) RETURNING id",
                    (receiver, room, kind, now),
                )
                row_id = int(cur.fetchone()[0])
                control_id = f"{self._prefix}{row_id}"
                db.execute(
                    "UPDATE hl7_queue SET control_id = ?, payload = ? WHERE id = ?",
                    (control_id, build(control_id), row_id),
                )
                ids.append(control_id)
            if alarm_seq is not None:
                self._progress(db, room, alarm_seq)
        return ids

    @staticmethod
    def _progress(db: sqlite3.Connection, room: str, seq: int) -> None:
        db.execute(
            "INSERT INTO hl7_progress (room, alarm_seq) VALUES (?, ?) ON CONFLICT (room) "
            "DO UPDATE SET alarm_seq = MAX(alarm_seq, excluded.alarm_seq)",
            (room, seq),
        )

    def alarm_seq(self, room: str) -> int | None:
        """Seq of the room's last alarm event queued for HL7 (None: never)."""
        row = self._db.execute(
            "SELECT alarm_seq FROM hl7_progress WHERE room = ?", (room,)
        ).fetchone()
        return None if row is None else int(row[0])

    def set_alarm_seq(self, room: str, seq: int) -> None:
        with transaction(self._db) as db:
            self._progress(db, room, seq)

    def next(self, receiver: str) -> QueuedMessage | None:
        row = self._db.execute(
            "SELECT id, receiver, room, kind, control_id, payload, attempts FROM hl7_queue "
            "WHERE receiver = ? AND status = 'pending' ORDER BY id LIMIT 1",
            (receiver,),
        ).fetchone()
        return QueuedMessage(*row) if row else None

    def attempted(self, row_id: int) -> None:
        self._db.execute("UPDATE hl7_queue SET attempts = attempts + 1 WHERE id = ?", (row_id,))

    def accepted(self, row_id: int) -> None:
        self._db.execute("DELETE FROM hl7_queue WHERE id = ?", (row_id,))

    def rejected(self, row_id: int, *, code: str, text: str, now: float) -> None:
        self._db.execute(
            "UPDATE hl7_queue SET status = 'rejected', ack_code = ?, ack_text = ?, done_at = ? "
            "WHERE id = ?",
            (code, text, now, row_id),
        )

    def pending_count(self, receiver: str | None = None) -> int:
        args: tuple[str, ...] = ()
        if receiver is None:
            sql = "SELECT COUNT(*) FROM hl7_queue WHERE status = 'pending'"
        else:
            sql = "SELECT COUNT(*) FROM hl7_queue WHERE status = 'pending' AND receiver = ?"
            args = (receiver,)
        return int(self._db.execute(sql, args).fetchone()[0])

    def oldest_pending(self, receiver: str) -> float | None:
        """Creation time (UTC epoch) of the receiver's oldest pending message."""
        row = self._db.execute(
            "SELECT MIN(created) FROM hl7_queue WHERE receiver = ? AND status = 'pending'",
            (receiver,),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def rejected_rows(self, receiver: str) -> list[tuple[str, str, str]]:
        """(control id, ack code, receiver's text) of every rejected message, oldest first."""
        rows = self._db.execute(
            "SELECT control_id, ack_code, ack_text FROM hl7_queue "
            "WHERE receiver = ? AND status = 'rejected' ORDER BY id",
            (receiver,),
        ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    # ------------------------------------------------------------------ patients

    def set_patient(self, room: str, patient: Patient | None, now: float) -> None:
        if patient is None:
            self._db.execute("DELETE FROM hl7_patient WHERE room = ?", (room,))
            return
        self._db.execute(
            "INSERT INTO hl7_patient (room, patient_id, authority, id_type, t) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (room) DO UPDATE SET "
            "patient_id = excluded.patient_id, authority = excluded.authority, "
            "id_type = excluded.id_type, t = excluded.t",
            (room, patient.id, patient.authority, patient.id_type, now),
        )

    def patients(self) -> dict[str, Patient]:
        rows = self._db.execute("SELECT room, patient_id, authority, id_type FROM hl7_patient")
        return {r: Patient(id=i, authority=a, id_type=t) for r, i, a, t in rows.fetchall()}
