"""``roommon checks``: what every check needs, watches and can raise, with its defaults.

Generated from the checks' declarations (``roommon/checks/declarations/``:
``needs``, ``optional``, ``window_s``, ``conditions``, the settings model's
fields and their descriptions), so it cannot drift from the code.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roommon.checks.base import CheckDeclaration
    from roommon.config import Config


def describe_check(cls: CheckDeclaration) -> list[str]:
    kinds = ", ".join(sorted(k.value for k in cls.needs)) or "-"
    optional = ", ".join(sorted(k.value for k in cls.optional))
    lines = [
        f"[{cls.name}]  needs: {kinds}"
        + (f"; optional: {optional}" if optional else "")
        + (f"; window {cls.window_s:g} s" if cls.window_s else ""),
        "  alarms:",
    ]
    for spec in cls.conditions:
        extras = []
        if spec.delay_s:
            extras.append(f"delay {spec.delay_s:g} s")
        if spec.clear_delay_s:
            extras.append(f"clear delay {spec.clear_delay_s:g} s")
        if spec.latching:
            extras.append("latching")
        lines.append(
            f"    {spec.code:28} {spec.priority.label:6} {spec.kind.value:13} "
            f"{spec.description}" + (f" ({', '.join(extras)})" if extras else "")
        )
    lines.append("  settings:")
    for name, field in cls.settings_model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"    {name} = {default!r}: {field.description or ''}".rstrip(": "))
    return lines


def describe() -> str:
    from roommon.checks import CHECKS
    from roommon.room.conditions import FEED_CONDITIONS

    out = ["Checks (configure with [rooms.ROOM.checks.NAME]; override alarms by code):", ""]
    for decl in CHECKS.declarations():  # declarations: listing checks never loads numpy
        out += [*describe_check(decl), ""]
    out.append("[feed]  built in, for every feed")
    out.append("  alarms:")
    out += [
        f"    {s.code:28} {s.priority.label:6} {s.kind.value:13} {s.description}"
        for s in FEED_CONDITIONS
    ]
    return "\n".join(out)


def describe_config(config: Config) -> str:
    """Each room's configured checks: their feeds and settings as the config sets them
    (``default ...`` beside a value the config changed) and the room's alarm overrides."""
    from roommon.checks import CHECKS

    out = []
    for room_id, room in config.rooms.items():
        out.append(f"Room {room_id}" + (f" ({room.name})" if room.name else "") + ":")
        if not room.checks:
            out.append("  no checks configured (feeds are still watched: feed.* alarms)")
        for name, raw in room.checks.items():
            cls = CHECKS.declared(name)  # declarations only: no numpy, no signal code
            assert cls is not None  # the config was validated against the registry
            settings = cls.settings_model.model_validate(raw)
            feeds = [f for f, fc in room.feeds.items() if fc.kind in cls.needs | cls.optional]
            out.append(f"  [{name}]  feeds: {', '.join(feeds) or '-'}")
            for field_name, field in cls.settings_model.model_fields.items():
                value = getattr(settings, field_name)
                default = field.get_default(call_default_factory=True)
                set_here = field_name in raw
                changed = f"   (set in the config; default {default!r})" if set_here else ""
                out.append(f"    {field_name} = {value!r}{changed}")
        for code, override in room.alarms.items():
            set_fields = override.model_dump(exclude_unset=True)
            out.append(f"  alarm {code}: " + ", ".join(f"{k}={v}" for k, v in set_fields.items()))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "checks",
        help="list every check: feeds, alarms, settings and defaults",
        description="List every check: the feeds it needs, the alarms it can raise with "
        "their defaults, and its settings; with --config, also each room's checks as that "
        "config sets them. Exit 0, 2 bad usage or configuration.",
    )
    p.add_argument(
        "--config",
        "-c",
        help="also show each room's configured checks and settings from this config file",
    )
    p.set_defaults(func=run_checks)


def run_checks(args: argparse.Namespace) -> int:
    print(describe())
    if args.config is not None:
        import sys

        from roommon.cli.common import EXIT_USAGE, load_or_report

        config = load_or_report(args.config, sys.stderr)
        if config is None:
            return EXIT_USAGE
        print(f"\nAs configured in {args.config}:\n")
        print(describe_config(config), end="")
    return 0
