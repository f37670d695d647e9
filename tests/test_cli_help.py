"""Every argument of every subcommand has help text, and every subcommand's help says
its exit codes (walked from the real parser, so a new argument without help fails here)."""

from __future__ import annotations

import argparse
import re

from roommon.cli import COMMANDS, build_parser


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_argument_of_every_subcommand_has_help() -> None:
    parsers = subcommands()
    assert set(parsers) == set(COMMANDS)
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, p in parsers.items()
        for action in p._actions
        if not isinstance(action, argparse._HelpAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert missing == []


def test_every_subcommand_says_its_exit_codes() -> None:
    silent = [
        name
        for name, p in subcommands().items()
        if not re.search(r"\bExit\b.*\b0\b", p.format_help(), flags=re.DOTALL)
    ]
    assert silent == []
