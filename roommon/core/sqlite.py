"""SQLite as roommon's stores use it: WAL, NORMAL sync, explicit immediate transactions.

WAL with ``synchronous=NORMAL``: a committed transaction survives the
process being killed (SIGKILL, a crash); only a power cut can lose the last
transactions before a checkpoint, and FULL would cost an fsync per alarm.

Errors are mapped here, once: every ``sqlite3.Error`` (disk full, read-only,
I/O error, a file that is not a database) becomes a
:class:`~roommon.core.errors.StoreError` naming the database file, so no
layer above sees a library exception.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from roommon.core.errors import StoreError, StoreOpenError


class _Connection(sqlite3.Connection):
    """A connection whose statements raise StoreError (with the file's path) on failure."""

    store_path = ""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store_path}: {exc}") from exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store_path}: {exc}") from exc

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(sql_script)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store_path}: {exc}") from exc


def connect(path: Path | str, schema: str) -> sqlite3.Connection:
    """Open (creating folders and tables as needed) a database in autocommit mode.

    Raises :class:`StoreOpenError` naming the path and the reason when it cannot.
    """
    name = str(path)
    try:
        if name != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            name, isolation_level=None, check_same_thread=False, factory=_Connection
        )
    except (OSError, sqlite3.Error) as exc:
        raise StoreOpenError(f"cannot open {name}: {exc}") from exc
    assert isinstance(db, _Connection)
    db.store_path = name
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except StoreError as exc:
        db.close()
        raise StoreOpenError(f"cannot open {name}: {exc.__cause__ or exc}") from exc
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    try:
        db.execute("COMMIT")
    except StoreError:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
