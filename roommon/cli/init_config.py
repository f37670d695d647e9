"""``roommon init-config PATH``: write a commented starter config (or the full example).

The texts ship in the package (``roommon/examples/``), so an installed roommon
(``pip install roommon``, no source tree) can start from them. The starter
passes ``check-config`` as written: no credential variables are named until
the broker needs them.

Exit: 0 written, 1 the file cannot be written, 2 bad usage (the file exists
and ``--force`` was not given).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from string import Template

from roommon.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

#: Package data: the starter (a template: ``$state_dir``, ``$path``) and the full example.
STARTER = "starter.toml"
EXAMPLE = "example-room.toml"


def template_text(name: str) -> str:
    """A config text shipped with the package."""
    return (resources.files("roommon") / "examples" / name).read_text(encoding="utf-8")


def toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def starter_text(*, state_dir: str = "var", path: str = "roommon.toml") -> str:
    template = Template(template_text(STARTER))
    return template.substitute(state_dir=toml_string(state_dir), path=path)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "init-config",
        help="write a commented starter config",
        description="Write a commented starter config to PATH (it passes check-config as "
        "written; docs/config.md lists every field). Exit 0 written, 1 cannot write, "
        "2 PATH exists (use --force) or bad usage.",
    )
    p.add_argument("path", help="config file to write (TOML), e.g. /etc/roommon/roommon.toml")
    p.add_argument(
        "--state-dir",
        default="var",
        help="daemon.state_dir to write: the alarm log and outbox (default 'var', beside the "
        "config file; under the systemd unit: /var/lib/roommon)",
    )
    p.add_argument(
        "--example",
        action="store_true",
        help="write the full example (one room, five feeds, every section) instead; it names "
        "broker credential variables that must be set before check-config passes",
    )
    p.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    p.set_defaults(func=run_init_config)


def run_init_config(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"roommon init-config: {path} exists (--force overwrites it)", file=sys.stderr)
        return EXIT_USAGE
    if args.example:
        text = template_text(EXAMPLE)
        if args.state_dir != "var":
            state_dir = f"state_dir = {toml_string(args.state_dir)}"
            text = text.replace('state_dir = "var"', state_dir, 1)
    else:
        text = starter_text(state_dir=args.state_dir, path=str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"roommon init-config: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{path}: written; check it with: roommon check-config {path}")
    return EXIT_OK
