"""Command line of roommon.

Commands: run, check-config, demo, checks, alarms, timers, simulate, record, replay,
ecg-beats, display, display-user.

Exit codes: 0 success, 2 bad configuration or usage, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from roommon import __version__
from roommon.clock import RealClock
from roommon.commandline import EXIT_OK, EXIT_USAGE, load_or_report
from roommon.config import Config
from roommon.web.service import parse_listen

EXIT_CONFIG = EXIT_USAGE


def _load_or_report(path: str) -> Config | None:
    return load_or_report(path, sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load_or_report(args.file)
    if config is None:
        return EXIT_CONFIG
    feeds = sum(len(r.feeds) for r in config.rooms.values())
    checks = sum(len(r.checks) for r in config.rooms.values())
    print(
        f"{args.file}: ok: site {config.site.id}, {len(config.rooms)} room(s), "
        f"{feeds} feed(s), {checks} check(s), broker {config.broker.host}:{config.broker.port}"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from roommon.daemon import Daemon
    from roommon.logs import configure

    config = _load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    clock = RealClock()
    configure(clock=clock, level=args.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Daemon(config=config, clock=clock):
            await stop.wait()

    asyncio.run(main())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from roommon.demo import run_demo

    return run_demo(
        speed=args.speed,
        minutes=args.minutes,
        broker=args.broker,
        seed=args.seed,
        display=args.display,
    )


def _parse_since(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return RealClock().now() - float(text[:-1]) * units[text[-1]]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--since: {text!r} is neither an ISO time nor a span like 2h"
        ) from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def cmd_alarms(args: argparse.Namespace) -> int:
    from roommon.alerts.report import print_alarms

    if args.db is None:
        config = _load_or_report(args.config)
        if config is None:
            return EXIT_CONFIG
        db = config.daemon.state_dir / "roommon.sqlite3"
    else:
        db = Path(args.db)
    return print_alarms(
        db, room=args.room, since=args.since, priority=args.priority, kind=args.kind
    )


def cmd_checks(args: argparse.Namespace) -> int:
    from roommon.checks.catalogue import describe

    del args
    print(describe())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roommon",
        description="Procedure-room monitoring daemon. Not a certified medical device.",
    )
    parser.add_argument("--version", action="version", version=f"roommon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", "-c", required=True)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run a simulated procedure room in-process")
    p.add_argument("--speed", type=float, default=20.0, help="virtual-clock speed-up (0: max)")
    p.add_argument("--minutes", type=float, default=10.0, help="simulated minutes to run")
    p.add_argument("--broker", default=None, help="also publish to mqtt://HOST:PORT")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--display",
        type=parse_listen,
        default=None,
        metavar="HOST:PORT",
        help="also serve the wall display there (then the room goes on until Ctrl-C)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("checks", help="list every check: feeds, alarms, settings and defaults")
    p.set_defaults(func=cmd_checks)

    p = sub.add_parser("alarms", help="list logged alarm events and alarm-burden figures")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", "-c")
    src.add_argument("--db", help="path to roommon.sqlite3")
    p.add_argument("--room")
    p.add_argument("--since", type=_parse_since, help="ISO time or span like 30m, 2h, 7d")
    p.add_argument("--priority", choices=["low", "medium", "high"])
    p.add_argument("--kind", choices=["physiological", "technical"])
    p.set_defaults(func=cmd_alarms)

    from roommon.ecg import offline as ecg_offline

    ecg_offline.add_parser(sub)

    from roommon.recovery import view as recovery_view

    recovery_view.add_parser(sub)

    from roommon import recording, simulate

    simulate.add_parser(sub)
    recording.add_parser(sub)

    from roommon.web import service as display_service

    display_service.add_parser(sub)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
