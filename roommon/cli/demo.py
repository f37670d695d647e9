"""``roommon demo``: one simulated procedure room, in-process, on the virtual clock.

No broker and no hardware: the room simulator's samples go straight into the
same daemon pipeline the real daemon runs, and alarms, room events and vitals
are printed readably (:mod:`roommon.cli.demo_room`). ``--speed N`` runs N times
faster than real time (0: as fast as possible); ``--broker mqtt://HOST:PORT``
also publishes everything to that broker, exactly as ``roommon run`` would;
``--display HOST:PORT`` also serves the wall display for the room.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from roommon.cli.common import cancel_on_stop, non_negative, positive, run_until_signal
from roommon.cli.display import parse_listen
from roommon.core.clock import RealClock
from roommon.core.logs import configure
from roommon.transports.broker import parse_broker_url


def run_demo(
    *,
    speed: float,
    minutes: float,
    broker: str | None,
    seed: int,
    out: TextIO | None = None,
    display: tuple[str, int] | None = None,
) -> int:
    stream = out or sys.stdout
    configure(clock=RealClock(), level="error", json=False)
    from roommon.cli.demo_room import run_room  # the daemon, checks, scipy: on first use

    return run_until_signal(
        lambda stop: cancel_on_stop(
            run_room(
                speed=speed, minutes=minutes, broker=broker, seed=seed, out=stream, display=display
            ),
            stop,
        )
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run a simulated procedure room in-process",
        description="Run a scripted kyphoplasty room in-process on the virtual clock (no "
        "broker, no hardware) and print alarms, events and vitals. Exit 0, 2 bad usage.",
    )
    p.add_argument(
        "--speed", type=non_negative, default=20.0, help="virtual-clock speed-up (0: max)"
    )
    p.add_argument("--minutes", type=positive, default=10.0, help="simulated minutes to run")
    p.add_argument(
        "--broker", default=None, help="also publish everything to mqtt[s]://HOST[:PORT]"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed of the simulated patient")
    p.add_argument(
        "--display",
        type=parse_listen,
        default=None,
        metavar="HOST:PORT",
        help="also serve the wall display there (then the room goes on until Ctrl-C)",
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.broker is not None:
        parse_broker_url(args.broker)  # a malformed address is a usage error, before anything runs
    return run_demo(
        speed=args.speed,
        minutes=args.minutes,
        broker=args.broker,
        seed=args.seed,
        display=args.display,
    )
