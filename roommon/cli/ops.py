"""What ``roommon run`` adds around a daemon to run as a service: the metrics and health
endpoint (``[metrics]``, off by default) and the systemd notify protocol (only under
systemd). Imported only by ``run``: aiohttp and prometheus_client load only when the
config enables the endpoint (docs/operations.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roommon.config import Config
    from roommon.runtime.daemon import Daemon
    from roommon.runtime.metrics import DaemonMetrics


def metrics_output(config: Config) -> DaemonMetrics | None:
    """The daemon's metrics (an extra output, made before the daemon), when enabled."""
    if not config.metrics.enabled:
        return None
    from roommon.runtime.metrics import DaemonMetrics

    return DaemonMetrics()


@contextlib.asynccontextmanager
async def operations(daemon: Daemon, metrics: DaemonMetrics | None) -> AsyncIterator[None]:
    """Serve ``/metrics`` and ``/healthz`` (when enabled), then tell systemd the daemon is
    ready; on the way out, ``STOPPING=1`` first."""
    from roommon.runtime.health import daemon_health
    from roommon.runtime.systemd import SystemdNotifier

    async with contextlib.AsyncExitStack() as stack:
        if metrics is not None:
            from roommon.web.ops import OpsServer

            metrics.attach(daemon)
            cfg = daemon.config.metrics
            await stack.enter_async_context(
                OpsServer(
                    registry=metrics.registry,
                    health=lambda: daemon_health(daemon),
                    host=cfg.host,
                    port=cfg.port,
                )
            )
        await stack.enter_async_context(SystemdNotifier(daemon=daemon, clock=daemon.clock))
        yield
