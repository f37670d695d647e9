"""``roommon check-config``: validate a config file; one summary line, or one line per problem."""

from __future__ import annotations

import argparse
import sys

from roommon.cli.common import EXIT_OK, EXIT_USAGE, load_or_report


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a config file as `roommon run` would. Exit 0 valid (one summary "
        "line), 2 invalid (one line per problem: file, field, reason).",
    )
    p.add_argument("file", help="config file (TOML) to validate")
    p.set_defaults(func=run_check_config)


def run_check_config(args: argparse.Namespace) -> int:
    config = load_or_report(args.file, sys.stderr, preflight=True)
    if config is None:
        return EXIT_USAGE
    feeds = sum(len(r.feeds) for r in config.rooms.values())
    checks = sum(len(r.checks) for r in config.rooms.values())
    print(
        f"{args.file}: ok: site {config.site.id}, {len(config.rooms)} room(s), "
        f"{feeds} feed(s), {checks} check(s), broker {config.broker.host}:{config.broker.port}"
    )
    return EXIT_OK
