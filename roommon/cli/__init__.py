"""Command line of roommon: one module per subcommand, exit codes decided here.

Each subcommand module registers its parser (``add_parser``) with light
imports only and loads what it needs when it runs, so ``roommon --version``,
``check-config``, ``alarms`` and ``timers`` start without scipy.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from roommon import __version__
from roommon.cli.common import EXIT_FAILURE, EXIT_USAGE
from roommon.core.errors import ConfigError, RoommonError, UsageError

#: Subcommand modules of :mod:`roommon.cli`, in the order ``--help`` lists them.
COMMANDS = (
    "run",
    "check_config",
    "demo",
    "checks",
    "alarms",
    "timers",
    "simulate",
    "record",
    "replay",
    "ecg_beats",
    "display",
    "display_user",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roommon",
        description="Procedure-room monitoring daemon. Not a certified medical device.",
        epilog="Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.",
    )
    parser.add_argument("--version", action="version", version=f"roommon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"roommon.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; the roommon errors that reach here become exit codes."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except UsageError as err:
        print(f"roommon {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as err:
        print("\n".join(err.lines()), file=sys.stderr)
        return EXIT_USAGE
    except RoommonError as err:
        print(f"roommon {args.command}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    return result
