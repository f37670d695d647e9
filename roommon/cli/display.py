"""``roommon display``: the wall display and the nurses' station (web), until SIGINT/SIGTERM.

Follows the site's broker (read-only but for its own command topic) and serves
the pages on ``--listen`` (default 127.0.0.1:8090). Its MQTT client id,
``--client-id`` (default ``roommon-display-SITE``), must be in the daemon's
``daemon.display_clients`` for its commands to be accepted; docs/display.md
has the broker ACL that makes that id the display's alone.

Exit: 0 stopped by a signal, 1 cannot listen, 2 bad usage, config or accounts file.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from roommon.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_or_report, run_until_signal


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "display",
        help="serve the wall display and nurses' station (web)",
        description="Serve the site overview, room wall displays and nurses' station from the "
        "broker. Exit 0 stopped, 1 cannot listen, 2 bad usage, config or accounts file.",
    )
    p.add_argument("--config", "-c", required=True, help="site config file (TOML)")
    p.add_argument("--users", required=True, help="accounts file (roommon display-user)")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8090), help="HOST:PORT")
    p.add_argument("--broker", default=None, help="mqtt[s]://HOST[:PORT] instead of the config's")
    p.add_argument("--client-id", default=None, help="MQTT client id (daemon.display_clients)")
    p.add_argument(
        "--waves",
        choices=["all", "shown"],
        default="all",
        help="follow every room's waveforms (default: alarm recall for every room), or only "
        "those of the rooms a page shows (less CPU on very large sites)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level written (default info)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    from roommon.core.clock import RealClock
    from roommon.core.logs import configure
    from roommon.web.auth import read_accounts
    from roommon.web.service import DisplayService

    users = Path(args.users)
    read_accounts(users)  # a bad accounts file: ConfigError, exit 2, before anything runs
    clock = RealClock()
    configure(clock=clock, level=args.log_level)
    host, port = args.listen
    service = DisplayService(
        config=config,
        users=users,
        host=host,
        port=port,
        clock=clock,
        broker=args.broker,
        client_id=args.client_id,
        waves=args.waves,
    )

    async def main(stop: asyncio.Event) -> int:
        async with service:
            print(f"roommon display: {service.url}/ (site {config.site.id})", flush=True)
            await stop.wait()
        return EXIT_OK

    try:
        return run_until_signal(main)
    except OSError as exc:
        print(f"roommon display: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
