"""What a recovery looks like: bed-rest times and the schedule of checks, from config.

Sits in front of :mod:`roommon.recovery.timer`: a :class:`RecoveryPlan` is
chosen per procedure type (:meth:`RecoveryConfig.plan_for`) when a recovery
starts, and is then copied into the timer's state, so a running recovery keeps
the plan it started with even if the configuration changes and the daemon
restarts (its deadlines must not move).

Default values and where they come from:

* bed rest after the last cement injection: minimum 2 h, target 3 h (the
  issue's defaults; facility protocols range from 1-2 h to 3 h, so both are
  configurable per procedure type);
* checks every 15 min during the first hour and every 30 min after, up to
  the target (a common post-vertebroplasty nursing order for vital signs and
  neurological checks).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field, model_validator

from roommon.core.ids import Identifier
from roommon.core.phases import MAX_PLAN_S

#: No plan may ask for more than a day of bed rest or a longer extension: a
#: value beyond this is a typo (minutes entered as seconds, an extra zero).


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


class CheckSegment(_Section):
    """One stretch of the check schedule: a check every ``every_s`` until ``until_s``.

    Times count from the start of recovery (end of the last injection). A
    segment starts where the previous one ended (the first at 0); its checks
    fall at ``start + every_s``, ``start + 2 * every_s``, ... up to and
    including ``until_s``.
    """

    every_s: float = Field(gt=0, le=MAX_PLAN_S, description="Seconds between checks.")
    until_s: float = Field(
        gt=0, le=MAX_PLAN_S, description="Seconds after the start when this segment ends."
    )


def _default_schedule() -> list[CheckSegment]:
    # q15 min for the first hour, q30 min after, up to the 3 h default target.
    return [CheckSegment(every_s=900, until_s=3600), CheckSegment(every_s=1800, until_s=10800)]


class RecoveryPlan(_Section):
    """Bed-rest times and check schedule of one kind of procedure."""

    min_bed_rest_s: float = Field(
        default=7200.0,
        gt=0,
        le=MAX_PLAN_S,
        description="Minimum bed rest after the last injection (default 2 h: the issue's "
        "minimum; some facilities use 1 h).",
    )
    target_s: float = Field(
        default=10800.0,
        gt=0,
        le=MAX_PLAN_S,
        description="Target bed rest after the last injection (default 3 h: the issue's "
        "target); must be >= min_bed_rest_s. Reaching it ends the recovery once every "
        "check due by then is done.",
    )
    checks: list[CheckSegment] = Field(
        default_factory=_default_schedule,
        max_length=16,
        description="Check schedule as consecutive segments (default: every 15 min for the "
        "first hour, every 30 min after: a common post-vertebroplasty order). After the "
        "last segment, checks continue at its interval up to the (possibly extended) target.",
    )
    grace_s: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="Seconds after a check's due time before it is overdue and escalates "
        "(default 5 min: a third of the shortest default interval, long enough for a nurse "
        "busy with another patient, short enough that a missed check is noticed before the "
        "next one is due).",
    )
    confirm_s: float | None = Field(
        default=1800.0,
        gt=0,
        le=MAX_PLAN_S,
        description="Recovery is 'unconfirmed' until a nurse confirms it or this many "
        "seconds pass after the latest injection ended without a new injection (default "
        "30 min: longer than the working time of one batch of PMMA cement, so every "
        "injection of a multi-level procedure from one mix falls inside it). While "
        "unconfirmed, a new injection restarts the wait; once confirmed, it does not (it "
        "is reported as 'injection_ignored' for a nurse to judge). null: only a nurse "
        "confirms.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RecoveryPlan:
        if self.target_s < self.min_bed_rest_s:
            raise ValueError(
                f"target_s: {self.target_s:g} s is shorter than min_bed_rest_s "
                f"{self.min_bed_rest_s:g} s"
            )
        if not self.checks:
            raise ValueError("checks: at least one segment is needed")
        previous = 0.0
        for i, seg in enumerate(self.checks):
            if seg.until_s <= previous:
                raise ValueError(
                    f"checks: segment {i} ends at {seg.until_s:g} s, not after the previous "
                    f"segment's end {previous:g} s"
                )
            if seg.every_s > seg.until_s - previous:
                raise ValueError(
                    f"checks: segment {i} is {seg.until_s - previous:g} s long, shorter than "
                    f"its interval every_s {seg.every_s:g} s"
                )
            previous = seg.until_s
        return self

    def check_offsets(self, target_s: float) -> Iterator[float]:
        """Seconds after the start of every scheduled check, up to ``target_s`` inclusive.

        The sequence only depends on the plan, so extending the target appends
        checks and never renumbers the existing ones.
        """
        start = 0.0
        for seg in self.checks:
            # Multiply rather than accumulate so 900 * 4 is exactly 3600 and the
            # check at a segment's end is not lost to rounding.
            for k in range(1, math.floor((seg.until_s - start) / seg.every_s + 1e-9) + 1):
                offset = start + k * seg.every_s
                if offset > target_s:
                    return
                yield offset
            start = seg.until_s
        every = self.checks[-1].every_s
        k = 1
        while (offset := start + k * every) <= target_s:
            yield offset
            k += 1


class RecoveryConfig(_Section):
    """Recovery plans of a room (or a site): a default and one per procedure type."""

    default: RecoveryPlan = Field(
        default_factory=RecoveryPlan, description="Plan for procedures without their own."
    )
    procedures: dict[Identifier, RecoveryPlan] = Field(
        default_factory=dict,
        description="Plans by procedure type, e.g. 'vertebroplasty', 'kyphoplasty'.",
    )

    def plan_for(self, procedure: str | None) -> RecoveryPlan:
        """The plan of ``procedure``, or the default one if it has none."""
        if procedure is None:
            return self.default
        return self.procedures.get(procedure, self.default)
