"""Module loggers that load structlog on first use, not at import.

Every module logs through ``log = get_logger(__name__)``. structlog (and,
where it is installed, the rich library it pulls in) is imported when a
module first logs, so a command that logs nothing (``--version``,
``check-config``) does not pay for it. The configuration is structlog's own
(:func:`roommon.core.logs.configure`, or structlog's defaults), looked up at
each call, so tests that reconfigure structlog see their configuration.
"""

from __future__ import annotations

from typing import Any


class _LazyLogger:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        import structlog

        return getattr(structlog.get_logger(self._name), method)


def get_logger(name: str) -> Any:
    """The structlog logger of module ``name`` (``log.info("event_name", key=value)``)."""
    return _LazyLogger(name)
