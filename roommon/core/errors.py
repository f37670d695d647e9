"""The one exception family of roommon.

Low-level errors (OSError, json, pydantic, paho) are converted at the edge into
one of these categories and chained with ``from``. Retry decisions follow the
class: a :class:`FeedError` is retried by a supervisor, a :class:`ProtocolError`
rejects one payload or frame and the stream goes on, a :class:`ConfigError`
stops the start-up.
"""

from __future__ import annotations


class RoommonError(Exception):
    """Root of every error roommon raises on purpose."""


class ConfigError(RoommonError):
    """A configuration file or value is invalid.

    ``problems`` holds one ``(field_path, message)`` pair per problem so the
    CLI can print one line each.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{path}: {msg}" for path, msg in problems)
        super().__init__(f"{source}: {lines}")

    def lines(self) -> list[str]:
        return [f"{self.source}: {path}: {msg}" for path, msg in self.problems]


class FeedError(RoommonError):
    """A transport (broker connection, serial port, replay file) failed; retryable."""


class ProtocolError(RoommonError):
    """One payload or frame could not be understood; it is rejected, the stream goes on.

    ``reason`` is a short stable token used as a counter label
    (``bad_json``, ``bad_checksum``, ...); ``detail`` says what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class CommandError(RoommonError):
    """An operator command is refused; ``reason`` is sent back to the sender."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class UsageError(RoommonError):
    """A command line that cannot be run as given (the CLI exits 2); the message is for a person."""


class StoreError(RoommonError):
    """The durable state store (SQLite) cannot be read or written.

    Shared infrastructure, not one room's fault: a room's guard lets it pass to
    the daemon, which turns it into its status and exit code.
    """


class StoreOpenError(StoreError):
    """A store cannot be opened at all (missing or unusable state dir, a file that is not
    a database): a start-up problem of the installation, reported like a config error."""


class DaemonFailedError(RoommonError):
    """The daemon stopped because shared infrastructure failed (the reason is the message)."""
