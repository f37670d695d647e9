"""structlog set-up: JSON lines when not on a terminal, readable when on one.

Events are named first (``alarm_raised``) with context as keys (``room``,
``feed``, ``alarm_id``). Timestamps come from the daemon's clock so replayed
and demo runs log the time of the data, not of the machine.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from roommon.core.clock import Clock, iso


class _ClockStamper:
    __slots__ = ("_clock",)

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event["timestamp"] = iso(self._clock.now())
        return event


def configure(*, clock: Clock, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog for the process; ``json=None`` picks by whether stderr is a tty."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _ClockStamper(clock),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
