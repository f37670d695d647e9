"""The daemon under systemd (``Type=notify``, ``WatchdogSec=``): ready, status, watchdog, stopping.

:class:`SystemdNotifier` is an async context manager entered once the daemon
is running (store open, rooms built, ticker started): it sends ``READY=1``
with a ``STATUS=`` line, then keeps the status current and, when systemd
asks for a watchdog (``WATCHDOG_USEC``), sends ``WATCHDOG=1`` every half
period **only while the rooms are being processed** (a tick pass over them
ended recently, :func:`~roommon.runtime.health.processing_problem`). A hung
or dead tick loop therefore stops the pings and systemd restarts the
service. A broker that is away or a full disk does not: a restart would not
mend them, and the daemon already alarms them and shows them in
``STATUS=`` and ``/healthz``. Leaving sends ``STOPPING=1``.

Without ``NOTIFY_SOCKET`` (not run by systemd) it does nothing. Its loop
waits on the daemon's clock, so tests drive it on the virtual clock.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self

from roommon.core.clock import Clock
from roommon.core.log import get_logger
from roommon.runtime.health import Health, daemon_health
from roommon.transports.sd_notify import SdNotify, watchdog_seconds

if TYPE_CHECKING:
    from roommon.runtime.daemon import Daemon

log = get_logger(__name__)

#: How often the status line is refreshed when systemd asks for no watchdog.
STATUS_PERIOD_S = 5.0


def status_line(daemon: Daemon, health: Health) -> str:
    """The one-line ``STATUS=`` systemd shows in ``systemctl status``."""
    rooms = len(daemon.pipelines)
    if health.healthy:
        broker = "broker connected" if daemon.link is not None else "no broker"
        return f"{rooms} room{'s' if rooms != 1 else ''} monitored; {broker}; store durable"
    return "degraded: " + "; ".join(health.problems())


class SystemdNotifier:
    """Async context manager: the notify protocol for one running daemon."""

    def __init__(
        self,
        *,
        daemon: Daemon,
        clock: Clock,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self._daemon = daemon
        self._clock = clock
        self._notify = SdNotify.from_env(env)
        #: The watchdog timeout systemd asked for (None: no watchdog).
        self.watchdog_s = watchdog_seconds(env) if self._notify is not None else None
        self._status = ""
        self._withheld = False
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._notify is not None

    async def __aenter__(self) -> Self:
        if self._notify is None:
            return self
        health = daemon_health(self._daemon)
        self._status = status_line(self._daemon, health)
        self._notify.send("READY=1", f"STATUS={self._status}", f"MAINPID={os.getpid()}")
        log.info("systemd_ready", socket=self._notify.name, watchdog_s=self.watchdog_s)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._loop(), name="systemd-notify")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._notify is None:
            return
        assert self._tg is not None
        assert self._task is not None
        self._task.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)
        self._notify.send("STOPPING=1", "STATUS=stopping")
        self._notify.close()

    def beat(self) -> None:
        """One period: the status if it changed, and the watchdog ping if the rooms move."""
        assert self._notify is not None
        health = daemon_health(self._daemon)
        fields: list[str] = []
        status = status_line(self._daemon, health)
        if status != self._status:
            self._status = status
            fields.append(f"STATUS={status}")
        if self.watchdog_s is not None:
            if not health.processing:
                fields.append("WATCHDOG=1")
                self._withheld = False
            elif not self._withheld:
                self._withheld = True
                log.error("systemd_watchdog_withheld", reason=health.processing)
        if fields:
            self._notify.send(*fields)

    async def _loop(self) -> None:
        period = self.watchdog_s / 2 if self.watchdog_s is not None else STATUS_PERIOD_S
        while True:
            await self._clock.sleep(period)
            self.beat()
