"""The operations endpoint (aiohttp): ``/metrics`` for Prometheus, ``/healthz`` for probes.

``GET /metrics``: the daemon's own registry in the Prometheus text format
(:class:`~roommon.runtime.metrics.DaemonMetrics`). ``GET /healthz``: 200
with ``{"healthy": true, ...}`` when the broker link, the store and every
room are healthy (:mod:`roommon.runtime.health`), else 503 with the same
body naming what is not. Nothing else is served; there is no
authentication, so the address stays on loopback unless a proxy guards it
(docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from roommon.core.errors import UsageError
from roommon.core.log import get_logger
from roommon.runtime.health import Health

log = get_logger(__name__)


class OpsServer:
    """Async context manager: ``/metrics`` and ``/healthz`` listening on ``host:port``."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        health: Callable[[], Health],
        host: str = "127.0.0.1",
        port: int = 9464,
    ) -> None:
        self._registry = registry
        self._health = health
        self._host = host
        #: The port listened on (the one picked when 0 was asked for).
        self.port = port
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self.app = app

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise UsageError(
                f"metrics: cannot listen on {self._host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("ops_listening", url=self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        health = self._health()
        return web.json_response(
            health.body(),
            status=200 if health.healthy else 503,
            headers={"Cache-Control": "no-cache"},
        )
