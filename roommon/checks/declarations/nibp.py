"""What the nibp check is, without its implementation: settings, conditions, needs.

Read by the config and ``check-config`` (which must not load numpy or the
signal code); :mod:`roommon.checks.nibp` implements it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from roommon.checks.base import CheckDeclaration, CheckSettings
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority
from roommon.core.model import SignalKind


class NibpSettings(CheckSettings):
    """Per-room NIBP limits and cycle."""

    systolic_low_mmhg: float = Field(
        90.0,
        gt=0,
        description="Hypotension below this systolic. Default: the usual adult "
        "hypotension definition and common monitor default (e.g. Philips IntelliVue "
        "NBPs low limit 90).",
    )
    systolic_high_mmhg: float = Field(
        160.0,
        gt=0,
        description="Hypertension above this systolic. Default: common adult monitor "
        "default (e.g. Philips IntelliVue NBPs high limit 160).",
    )
    mean_low_mmhg: float = Field(
        65.0,
        gt=0,
        description="Mean arterial pressure below this is alarmed. Default: 65 mmHg, the "
        "threshold below which perioperative organ injury becomes more likely.",
    )
    mean_high_mmhg: float = Field(
        110.0,
        gt=0,
        description="Mean arterial pressure above this is alarmed. Default: common adult "
        "monitor default (e.g. Philips IntelliVue NBPm high limit 110).",
    )
    cycle_s: float = Field(
        300.0,
        gt=0,
        description="Automatic cuff cycle. Default: 5 min, the usual intraoperative "
        "interval (ASA standard: at least every 5 minutes).",
    )
    overdue_margin_s: float = Field(
        60.0,
        ge=0,
        description="Grace after a cycle before 'NIBP overdue': a measurement itself "
        "takes 30-60 s and may be repeated by the cuff.",
    )

    @model_validator(mode="after")
    def _limits_ordered(self) -> NibpSettings:
        if self.systolic_low_mmhg >= self.systolic_high_mmhg:
            raise ValueError("systolic_low_mmhg must be below systolic_high_mmhg")
        if self.mean_low_mmhg >= self.mean_high_mmhg:
            raise ValueError("mean_low_mmhg must be below mean_high_mmhg")
        return self


HYPOTENSION = ConditionSpec(
    code="nibp.hypotension",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="NIBP systolic below the low limit",
)
HYPERTENSION = ConditionSpec(
    code="nibp.hypertension",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="NIBP systolic above the high limit",
)
MAP_LOW = ConditionSpec(
    code="nibp.map_low",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="NIBP mean arterial pressure below the low limit",
)
MAP_HIGH = ConditionSpec(
    code="nibp.map_high",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.LOW,
    description="NIBP mean arterial pressure above the high limit",
)
OVERDUE = ConditionSpec(
    code="nibp.overdue",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="No NIBP reading within the configured cycle plus margin",
)


NIBP = CheckDeclaration(
    name="nibp",
    needs=frozenset({SignalKind.NIBP}),
    settings_model=NibpSettings,
    conditions=(HYPOTENSION, HYPERTENSION, MAP_LOW, MAP_HIGH, OVERDUE),
    implementation="roommon.checks.nibp:NibpCheck",
)
