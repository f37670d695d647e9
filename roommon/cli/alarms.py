"""``roommon alarms``: the alarm log as a table, and alarm-burden figures per room."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from roommon.alerts.store import AlarmStore, burden
from roommon.cli.common import EXIT_USAGE, load_or_report
from roommon.core.clock import RealClock, iso


def print_alarms(
    db: Path,
    *,
    room: str | None = None,
    since: float | None = None,
    priority: str | None = None,
    kind: str | None = None,
) -> int:
    if not db.exists():
        print(f"{db}: no alarm log here", flush=True)
        return 2
    store = AlarmStore(db)
    try:
        events = store.events(room=room, since=since, priority=priority, kind=kind)
    finally:
        store.close()
    print(
        f"{'time (UTC)':24} {'room':10} {'seq':>5} {'transition':12} {'prio':6} "
        f"{'kind':13} {'code':24} {'feed':10} {'origin':9} message"
    )
    for e in events:
        print(
            f"{iso(e.t):24} {e.room:10} {e.seq:>5} {e.transition:12} {e.priority:6} {e.kind:13} "
            f"{e.code:24} {e.feed:10} {e.origin:9} {e.message}"
            + (f" [by {e.actor}]" if e.actor else "")
        )
    print()
    print(
        "Alarm burden (each alarm counted once; self-cleared = cleared unacknowledged "
        "within 10 s of being raised, i.e. condition delay + 10 s):"
    )
    print(
        f"{'room':10} {'alarms':>7} {'hours':>7} {'per hour':>9} {'acked':>7} "
        f"{'median ack':>11} {'self-cleared':>13}"
    )
    for b in burden(events):
        med = f"{b.median_ack_s:.1f} s" if b.median_ack_s is not None else "-"
        print(
            f"{b.room:10} {b.alarms:>7} {b.hours:>7.2f} {b.per_hour:>9.1f} "
            f"{b.share_acknowledged:>7.0%} {med:>11} {b.share_self_cleared:>13.0%}"
        )
    return 0


def _parse_since(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return RealClock().now() - float(text[:-1]) * units[text[-1]]
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
        description="List the alarm log and the alarm burden per room. "
        "Exit 0, 2 bad usage or no alarm log.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", "-c", help="daemon config file (its state_dir holds the log)")
    src.add_argument("--db", help="path to roommon.sqlite3")
    p.add_argument("--room", help="only this room")
    p.add_argument("--since", type=_parse_since, help="ISO time or span like 30m, 2h, 7d")
    p.add_argument("--priority", choices=["low", "medium", "high"], help="only this priority")
    p.add_argument("--kind", choices=["physiological", "technical"], help="only this kind")
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
        db, room=args.room, since=args.since, priority=args.priority, kind=args.kind
    )
