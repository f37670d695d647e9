"""Capture roommon's structured log events in a test, as dicts (event name first, context keys).

A thin layer over :func:`structlog.testing.capture_logs` that also keeps the
exception of ``log.exception(...)`` calls, so a test can assert that a failure
was logged with its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger


class LogCapture:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        entry = dict(event)
        entry.setdefault("log_level", method)
        self.entries.append(entry)
        raise structlog.DropEvent

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("event") == event]


@contextmanager
def capture_logs() -> Iterator[LogCapture]:
    """Every structlog event inside the block goes to the capture (and nowhere else)."""
    capture = LogCapture()
    old = structlog.get_config()
    structlog.configure(processors=[capture], cache_logger_on_first_use=False)
    try:
        yield capture
    finally:
        structlog.configure(**old)
