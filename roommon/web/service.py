"""The web display following a broker: view, MQTT source and web server together.

``roommon display`` (:mod:`roommon.cli.display`) runs it.

``roommon display --config SITE.toml --users USERS`` follows the site's
broker (read-only but for its own command topic) and serves the pages on
``--listen`` (default 127.0.0.1:8090). Its MQTT client id, ``--client-id``
(default ``roommon-display-SITE``), must be listed in the daemon's
``daemon.display_clients`` for its commands to be accepted: see
docs/display.md for the broker ACL that makes that id the display's alone.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

from roommon.config import Config
from roommon.core.clock import Clock
from roommon.transports.broker import BrokerEndpoint
from roommon.web.app import DisplayApp, DisplayServer
from roommon.web.auth import Sessions
from roommon.web.mqtt_source import MqttSource
from roommon.web.site import SiteView


def display_client_id(site: str) -> str:
    return f"roommon-display-{site}"


class DisplayService:
    """The display following a broker: view, MQTT source and web server, nested."""

    def __init__(
        self,
        *,
        config: Config,
        users: Path,
        host: str,
        port: int,
        clock: Clock,
        broker: str | None = None,
        client_id: str | None = None,
        session_idle_s: float = 900.0,
        waves: Literal["shown", "all"] = "all",
    ) -> None:
        self.view = SiteView(site=config.site.id, clock=clock, config=config)
        self.source = MqttSource(
            target=BrokerEndpoint.from_config(config.broker, url=broker),
            site=config.site.id,
            client_id=client_id or display_client_id(config.site.id),
            view=self.view,
            clock=clock,
            config=config,
            waves=waves,
        )
        self.sessions = Sessions(accounts=users, clock=clock, idle_s=session_idle_s)
        self.app = DisplayApp(
            view=self.view, commands=self.source, sessions=self.sessions, wall=clock
        )
        self.server = DisplayServer(app=self.app, host=host, port=port)
        self._stack = contextlib.AsyncExitStack()

    @property
    def url(self) -> str:
        return self.server.url

    async def __aenter__(self) -> DisplayService:
        await self._stack.enter_async_context(self.source)
        await self._stack.enter_async_context(self.server)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
