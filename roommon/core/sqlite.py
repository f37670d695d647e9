"""SQLite as roommon's stores use it: WAL, NORMAL sync, explicit immediate transactions.

WAL with ``synchronous=NORMAL``: a committed transaction survives the
process being killed (SIGKILL, a crash); only a power cut can lose the last
transactions before a checkpoint, and FULL would cost an fsync per alarm.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path | str, schema: str) -> sqlite3.Connection:
    """Open (creating folders and tables as needed) a database in autocommit mode."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
