"""``roommon alarms``: the alarm log as a table, and alarm-burden figures per room.

Times are local with their zone (``--utc``: UTC); physiological rows show the
value and the limit with their units; ``--origin`` keeps live, simulated or
replayed alarms apart. A burden rate per hour is given only over a span long
enough for one (:data:`roommon.core.units.MIN_RATE_HOURS`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from roommon.cli.common import EXIT_USAGE, load_or_report
from roommon.core import units
from roommon.core.clock import RealClock

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from roommon.wire.payloads import AlarmEventMessage

#: Width the table is laid out for when the output is not a terminal (a file, a pipe):
#: wide enough that no row wraps, so the columns stay straight.
PIPE_WIDTH = 220


def _table_console(out: TextIO) -> Console:
    from rich.console import Console  # lazily: rich loads only when there is a table

    return Console(
        file=out, width=None if out.isatty() else PIPE_WIDTH, highlight=False, markup=False
    )


def print_alarms(
    db: Path,
    *,
    room: str | None = None,
    since: float | None = None,
    priority: str | None = None,
    kind: str | None = None,
    origin: str | None = None,
    utc: bool = False,
    out: TextIO | None = None,
) -> int:
    stream = out if out is not None else sys.stdout
    if not db.exists():
        print(f"{db}: no alarm log here", flush=True)
        return 2
    from roommon.alerts.store import AlarmStore, burden

    store = AlarmStore(db)
    try:
        events = store.events(room=room, since=since, priority=priority, kind=kind)
    finally:
        store.close()
    if origin is not None:
        events = [e for e in events if e.origin == origin]
    console = _table_console(stream)
    if not events:
        console.print("no alarms" + _filters(room, since, priority, kind, origin, utc))
        return 0
    console.print(_events_table(events, utc=utc))
    console.print()
    from rich.table import Table

    t = Table(
        title="Alarm burden (each alarm counted once; self-cleared = cleared unacknowledged "
        "within 10 s of being raised)",
        title_justify="left",
    )
    for name in ("room", "alarms", "span", "rate", "acknowledged", "median ack", "self-cleared"):
        t.add_column(name, justify="left" if name in ("room", "rate") else "right", no_wrap=True)
    for b in burden(events):
        med = units.value(b.median_ack_s, "s") if b.median_ack_s is not None else "-"
        t.add_row(
            b.room,
            str(b.alarms),
            units.duration(b.hours * 3600),
            units.per_hour(b.alarms, b.hours),
            f"{b.share_acknowledged:.0%}",
            med,
            f"{b.share_self_cleared:.0%}",
        )
    console.print(t)
    return 0


def _filters(
    room: str | None,
    since: float | None,
    priority: str | None,
    kind: str | None,
    origin: str | None,
    utc: bool,
) -> str:
    parts = [f"room {room}"] if room else []
    if since is not None:
        parts.append(f"since {units.date_time(since, utc=utc)}")
    parts += [x for x in (priority, kind, origin) if x]
    return f" ({', '.join(parts)})" if parts else ""


def _events_table(events: list[AlarmEventMessage], *, utc: bool) -> Table:
    from rich.table import Table

    zone = units.zone(events[0].t, utc=utc)
    t = Table(title=f"Alarm log, times in {zone}", title_justify="left")
    for name, right in (
        (f"time ({zone})", False),
        ("room", False),
        ("seq", True),
        ("transition", False),
        ("prio", False),
        ("kind", False),
        ("code", False),
        ("feed", False),
        ("value", True),
        ("limit", True),
        ("origin", False),
        ("alarm", False),
    ):
        t.add_column(name, justify="right" if right else "left", no_wrap=name != "alarm")
    from rich.text import Text

    for e in events:
        cells = (
            units.date_time(e.t, utc=utc, with_zone=False),
            e.room,
            str(e.seq),
            e.transition,
            e.priority,
            e.kind,
            e.code,
            e.feed,
            units.alarm_value(e.code, e.value) if e.value is not None else "",
            units.alarm_value(e.code, e.limit) if e.limit is not None else "",
            e.origin,
            e.message + (f" [by {e.actor}]" if e.actor else ""),
        )
        t.add_row(*(Text(c) for c in cells))  # plain text: "[by n1]" is not rich markup
    return t


def _parse_since(text: str) -> float:
    spans = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in spans and text[:-1].replace(".", "", 1).isdigit():
        return RealClock().now() - float(text[:-1]) * spans[text[-1]]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--since: {text!r} is neither an ISO time nor a span like 2h"
        ) from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "alarms",
        help="list logged alarm events and alarm-burden figures",
        description="List the alarm log and the alarm burden per room, times in local time "
        "with the zone (--utc: UTC). Exit 0, 2 bad usage or no alarm log.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", "-c", help="daemon config file (its state_dir holds the log)")
    src.add_argument("--db", help="path to roommon.sqlite3")
    p.add_argument("--room", help="only this room")
    p.add_argument(
        "--since",
        type=_parse_since,
        help="ISO time (UTC unless it has an offset) or span like 30m, 2h, 7d",
    )
    p.add_argument("--priority", choices=["low", "medium", "high"], help="only this priority")
    p.add_argument("--kind", choices=["physiological", "technical"], help="only this kind")
    p.add_argument(
        "--origin",
        choices=["live", "simulated", "replayed"],
        help="only alarms from live, simulated or replayed data (default: all)",
    )
    p.add_argument("--utc", action="store_true", help="show times in UTC, not local time")
    p.set_defaults(func=run_alarms)


def run_alarms(args: argparse.Namespace) -> int:
    if args.db is None:
        config = load_or_report(args.config, sys.stderr)
        if config is None:
            return EXIT_USAGE
        db = config.daemon.state_dir / "roommon.sqlite3"
    else:
        db = Path(args.db)
    return print_alarms(
        db,
        room=args.room,
        since=args.since,
        priority=args.priority,
        kind=args.kind,
        origin=args.origin,
        utc=args.utc,
    )
