"""What a room reports besides its checks' physiology, and the room's configured checks.

Kept apart from :mod:`roommon.room.pipeline` (which imports the alarm engine,
the recovery service and the payload models) so that ``check-config`` can list
every condition a room can report (:mod:`roommon.runtime.preflight`) without
loading the machinery that raises them.
"""

from __future__ import annotations

from roommon.checks import CHECKS
from roommon.checks.base import Check, FeedView
from roommon.config import RoomConfig
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority

#: An unexpected exception escaped one of the room's own steps (not a check's).
ROOM_FAILED = ConditionSpec(
    code="room.failed",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.HIGH,
    latching=True,
    description="roommon failed while processing this room: its alarms cannot be trusted",
)

CHECK_FAILED = ConditionSpec(
    code="check.failed",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.HIGH,
    description="A check raised an unexpected error; its alarms cannot be trusted",
)

#: Conditions the room itself reports (not a check's, not a feed's).
ROOM_CONDITIONS = (ROOM_FAILED, CHECK_FAILED)


def build_checks(room: str, config: RoomConfig) -> list[Check]:
    """The room's configured checks, each given views of the feeds of the kinds it wants."""
    checks = []
    for check_name, raw in config.checks.items():
        cls = CHECKS[check_name]
        settings = cls.settings_model.model_validate(raw)
        wanted = cls.needs | cls.optional
        views = {
            n: FeedView(name=n, kind=f.kind, fs=f.fs, unit=f.effective_unit)
            for n, f in config.feeds.items()
            if f.kind in wanted
        }
        checks.append(cls(room=room, settings=settings, feeds=views))
    return checks
