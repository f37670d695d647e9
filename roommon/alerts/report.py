"""``roommon alarms``: the alarm log as a table, and alarm-burden figures per room."""

from __future__ import annotations

from pathlib import Path

from roommon.alerts.store import AlarmStore, burden
from roommon.core.clock import iso


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
