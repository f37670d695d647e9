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


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "checks",
        help="list every check: feeds, alarms, settings and defaults",
        description="List every check: the feeds it needs, the alarms it can raise with "
        "their defaults, and its settings. Exit 0.",
    )
    p.set_defaults(func=run_checks)


def run_checks(args: argparse.Namespace) -> int:
    del args
    print(describe())
    return 0
