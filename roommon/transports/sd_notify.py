"""The systemd notify protocol's bytes: datagrams to ``$NOTIFY_SOCKET`` (sd_notify(3)).

A few lines of our own instead of a dependency: one ``AF_UNIX``/``SOCK_DGRAM``
socket, one datagram of newline-separated ``KEY=VALUE`` fields per message.
A socket name starting with ``@`` is in the abstract namespace (a NUL byte
on the wire). What the fields mean for roommon (when it is ready, when the
watchdog may be fed) is :mod:`roommon.runtime.systemd`'s business.

Sending never raises: a notify socket that went away must not stop the
daemon; the failure is logged and ``send`` returns False.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from roommon.core.log import get_logger

log = get_logger(__name__)


def notify_address(name: str) -> str | bytes:
    """The ``sendto`` address of a ``NOTIFY_SOCKET`` value (``@name``: abstract)."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def watchdog_seconds(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """The watchdog timeout systemd asks this process to honour (``WATCHDOG_USEC``), or None.

    ``WATCHDOG_PID``, when set, names the process meant: another's is not ours.
    """
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    try:
        seconds = int(usec) / 1e6
    except ValueError:
        log.warning("watchdog_usec_invalid", value=usec)
        return None
    return seconds if seconds > 0 else None


class SdNotify:
    """One notify socket; :meth:`send` sends one message."""

    __slots__ = ("_address", "_socket", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._address = notify_address(name)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SdNotify | None:
        """The socket systemd gave (``NOTIFY_SOCKET``), or None when not run by systemd."""
        name = env.get("NOTIFY_SOCKET", "")
        if not name or not (name.startswith(("@", "/"))):
            return None
        return cls(name)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; False (logged) when it cannot be sent."""
        data = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            self._socket.sendto(data, self._address)
        except OSError as exc:
            log.warning("sd_notify_failed", socket=self.name, error=str(exc))
            return False
        return True

    def close(self) -> None:
        self._socket.close()
