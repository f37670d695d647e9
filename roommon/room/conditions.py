"""What a room reports besides its checks' physiology, and the room's configured checks.

Kept apart from :mod:`roommon.room.pipeline` (which imports the alarm engine,
the recovery service and the payload models) so that ``check-config`` can list
every condition a room can report (:mod:`roommon.runtime.preflight`) without
loading the machinery that raises them.
"""

from __future__ import annotations

from collections.abc import Iterator

from roommon.checks import CHECKS
from roommon.checks.base import Check, FeedView
from roommon.config import RoomConfig
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority

#: A feed's own technical conditions (raised by :mod:`roommon.room.feeds`).
SILENT = ConditionSpec(
    code="feed.silent",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="No data from the feed for longer than its stale time",
)
NEVER_SEEN = ConditionSpec(
    code="feed.never_seen",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="A required feed has sent nothing since the daemon started",
)
BAD_PAYLOAD = ConditionSpec(
    code="feed.bad_payload",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="The feed sends payloads or frames that are rejected",
)
BAD_SAMPLES = ConditionSpec(
    code="feed.bad_samples",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="The feed sends NaN, infinite or physically impossible samples",
)
SEQ_GAP = ConditionSpec(
    code="feed.seq_gap",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="Chunks are missing from the feed (sequence numbers skip)",
)
SILENT_OPTIONAL = ConditionSpec(
    code="feed.silent_optional",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="An optional feed is silent or disconnected in a phase that does not need it",
)
DISCONNECTED = ConditionSpec(
    code="feed.disconnected",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="The feed's transport (e.g. serial port) is disconnected",
)
FEED_CONDITIONS = (
    SILENT,
    NEVER_SEEN,
    BAD_PAYLOAD,
    BAD_SAMPLES,
    SEQ_GAP,
    DISCONNECTED,
    SILENT_OPTIONAL,
)

#: An unexpected exception escaped one of the room's own steps (not a check's).
ROOM_FAILED = ConditionSpec(
    code="room.failed",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.HIGH,
    latching=True,
    description="roommon failed while processing this room: its alarms cannot be trusted",
)

#: A check raised an unexpected error. Latching like room.failed: the condition ends once
#: the check has run a minute without failing, the alarm stays until a person resets it.
CHECK_FAILED = ConditionSpec(
    code="check.failed",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.HIGH,
    latching=True,
    description="A check raised an unexpected error; its alarms cannot be trusted",
)

#: Conditions the room itself reports (not a check's, not a feed's).
ROOM_CONDITIONS = (ROOM_FAILED, CHECK_FAILED)


def declared_conditions(config: RoomConfig) -> Iterator[ConditionSpec]:
    """Every condition the room's configured checks can report, without loading them."""
    for check_name, raw in config.checks.items():
        check = CHECKS.declared(check_name)
        if check is None:  # the config's own validation names an unknown check
            continue
        yield from check.condition_specs(check.settings_model.model_validate(raw))


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
