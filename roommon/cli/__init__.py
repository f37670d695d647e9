"""Command line of roommon: one module per subcommand, exit codes decided here.

Each subcommand module registers its parser (``add_parser``). :func:`main`
imports only the module of the subcommand being run (``--help`` and
``--version`` import none), so a command starts with what it uses: ``roommon
--version``, ``check-config``, ``alarms`` and ``timers`` never load scipy.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from roommon import __version__
from roommon.cli.common import exit_status
from roommon.core.errors import ConfigError, RoommonError, UsageError

#: Subcommand -> (module of :mod:`roommon.cli`, one-line help), in ``--help`` order.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the daemon"),
    "check-config": ("check_config", "validate a config file"),
    "init-config": ("init_config", "write a commented starter config"),
    "demo": ("demo", "run a simulated procedure room in-process"),
    "checks": ("checks", "list every check: feeds, alarms, settings and defaults"),
    "alarms": ("alarms", "list logged alarm events and alarm-burden figures"),
    "timers": ("timers", "show every room's recovery timer live, from the broker"),
    "simulate": ("simulate", "drive simulated device feeds into a running daemon (MQTT or serial)"),
    "record": ("record", "record device feeds from the broker to an MCAP file"),
    "replay": ("replay", "replay a recording through a daemon on a virtual clock"),
    "ecg-beats": ("ecg_beats", "print the detected beats of a WFDB record"),
    "report": ("report", "write the alarm-burden report (self-contained HTML with plots)"),
    "display": ("display", "serve the wall display and nurses' station (web)"),
    "display-user": ("display_user", "add or change a display account"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser. With ``argv``, only the subcommand it names is fully built
    (the others are listed with their help), so only that module is imported."""
    parser = argparse.ArgumentParser(
        prog="roommon",
        description="Procedure-room monitoring daemon. Not a certified medical device.",
        epilog="Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.",
    )
    parser.add_argument("--version", action="version", version=f"roommon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"roommon.cli.{module}").add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; the roommon errors that reach here become exit codes."""
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(argv).parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as err:
        print("\n".join(err.lines()), file=sys.stderr)
        return exit_status(err)
    except RoommonError as err:
        what = "error: " if isinstance(err, UsageError) else ""
        print(f"roommon {args.command}: {what}{err}", file=sys.stderr)
        return exit_status(err)
    return result
