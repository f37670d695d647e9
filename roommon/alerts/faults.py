"""Names of the alarm store's file and of its fault, importable without the store.

``check-config`` (:mod:`roommon.runtime.preflight`) needs both, and loads
neither SQLite nor the payload models for them.
"""

from __future__ import annotations

from roommon.core.conditions import AlarmKind, ConditionSpec, Priority

#: The alarm store's file name in the daemon's state dir.
STORE_FILE = "roommon.sqlite3"

STORE_UNWRITABLE = ConditionSpec(
    code="store.unwritable",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.HIGH,
    description="roommon cannot write its alarm store (disk full, read-only, I/O error): "
    "alarms are still published but not kept; a restart now would lose them",
)

DAEMON_OVERLOADED = ConditionSpec(
    code="daemon.overloaded",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.HIGH,
    clear_delay_s=5.0,
    description="roommon is behind real time with this room's input (or shed some of it): "
    "its alarms come late",
)
