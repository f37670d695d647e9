"""``roommon display-user``: add or change an account of the web display.

The password is asked twice on a terminal, or read from the first line of
stdin. Accounts live in their own file, never in the site config. Exit 0 set,
2 bad usage (short password, bad name, differing passwords).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from roommon.cli.common import EXIT_OK, EXIT_USAGE


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "display-user",
        help="add or change a display account (password asked, or on stdin)",
        description="Add or change one user of the web display's accounts file. "
        "Exit 0 set, 2 bad usage.",
    )
    p.add_argument("--users", required=True, help="accounts file, kept outside the config")
    p.add_argument("name", help="user name (letters, digits, '-', '_')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from roommon.web.auth import set_account

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("roommon display-user: the passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\n")
    set_account(Path(args.users), args.name, password)  # ConfigError: exit 2
    print(f"{args.users}: {args.name} set")
    return EXIT_OK
