"""``roommon display`` and ``roommon display-user``: the web display as a service.

``roommon display --config SITE.toml --users USERS`` follows the site's
broker (read-only but for its own command topic) and serves the pages on
``--listen`` (default 127.0.0.1:8090). Its MQTT client id, ``--client-id``
(default ``roommon-display-SITE``), must be listed in the daemon's
``daemon.display_clients`` for its commands to be accepted: see
docs/display.md for the broker ACL that makes that id the display's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import signal
import sys
from pathlib import Path
from typing import Literal

from roommon.clock import Clock, RealClock
from roommon.commandline import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    broker_target,
    load_or_report,
)
from roommon.config import Config
from roommon.errors import ConfigError
from roommon.web.app import DisplayApp, DisplayServer
from roommon.web.auth import Sessions, read_accounts, set_account
from roommon.web.mqtt_source import MqttSource
from roommon.web.site import SiteView


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--listen: expected HOST:PORT, got {text!r}")
    return host, int(port)


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
        waves: Literal["shown", "all"] = "shown",
    ) -> None:
        self.view = SiteView(site=config.site.id, clock=clock, config=config)
        self.source = MqttSource(
            target=broker_target(config, broker),
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


def cmd_display(args: argparse.Namespace) -> int:
    from roommon.logs import configure

    config = load_or_report(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    users = Path(args.users)
    try:
        read_accounts(users)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    clock = RealClock()
    configure(clock=clock, level=args.log_level)
    host, port = args.listen

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with DisplayService(
            config=config, users=users, host=host, port=port, clock=clock,
            broker=args.broker, client_id=args.client_id, waves=args.waves,
        ) as service:
            print(f"roommon display: {service.url}/ (site {config.site.id})", flush=True)
            await stop.wait()

    try:
        asyncio.run(main())
    except UsageError as exc:
        print(f"roommon display: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"roommon display: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_display_user(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("roommon display-user: the passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        set_account(Path(args.users), args.name, password)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.users}: {args.name} set")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("display", help="serve the wall display and nurses' station (web)")
    p.add_argument("--config", "-c", required=True)
    p.add_argument("--users", required=True, help="accounts file (roommon display-user)")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8090), help="HOST:PORT")
    p.add_argument("--broker", default=None, help="mqtt://HOST:PORT instead of the config's")
    p.add_argument("--client-id", default=None, help="MQTT client id (daemon.display_clients)")
    p.add_argument(
        "--waves",
        choices=["shown", "all"],
        default="shown",
        help="follow the waveforms of the rooms a page shows (default), or of every room "
        "(alarm recall for every room, more CPU)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_display)

    p = sub.add_parser("display-user", help="add or change a display account (password on stdin)")
    p.add_argument("--users", required=True, help="accounts file, kept outside the config")
    p.add_argument("name")
    p.set_defaults(func=cmd_display_user)
