"""The recovery timer's conditions, apart from the timer: ``check-config`` lists them cheaply."""

from __future__ import annotations

from roommon.core.conditions import AlarmKind, ConditionSpec, Priority

RECOVERY_CHECK_OVERDUE = ConditionSpec(
    code="recovery.check_overdue",
    kind=AlarmKind.TECHNICAL,  # a care-process alarm, not a physiological reading
    priority=Priority.MEDIUM,
    description="A scheduled recovery check is overdue (due time plus grace passed, not done).",
)
RECOVERY_CLOCK_JUMP = ConditionSpec(
    code="recovery.clock_jump",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    # Latching: the jump is an instant, but the bed-rest times it distorted need
    # a human look, so the alarm stays until someone resets it.
    latching=True,
    description="The wall clock jumped during a recovery; bed-rest times may be off by the jump.",
)

#: Every condition the recovery timer reports.
RECOVERY_CONDITIONS = (RECOVERY_CHECK_OVERDUE, RECOVERY_CLOCK_JUMP)
