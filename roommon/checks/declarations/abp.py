"""What the abp check is, without its implementation: settings, conditions, needs.

Read by the config and ``check-config`` (which must not load numpy or the
signal code); :mod:`roommon.checks.abp` implements it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from roommon.checks.base import CheckDeclaration, CheckSettings
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority
from roommon.core.model import SignalKind


class AbpSettings(CheckSettings):
    """Per-room arterial-line limits and line-quality thresholds."""

    systolic_low_mmhg: float = Field(
        90.0,
        gt=0,
        description="Hypotension below this systolic (same default as NIBP: usual adult "
        "definition, Philips IntelliVue ABPs low default 90).",
    )
    systolic_high_mmhg: float = Field(
        160.0,
        gt=0,
        description="Hypertension above this systolic (common adult monitor default 160).",
    )
    mean_low_mmhg: float = Field(
        65.0,
        gt=0,
        description="Mean arterial pressure below this: 65 mmHg, the perioperative "
        "threshold below which organ injury becomes more likely.",
    )
    mean_high_mmhg: float = Field(
        110.0, gt=0, description="Mean above this (common adult monitor default 110)."
    )
    average_beats: int = Field(
        4, ge=1, description="Limits are judged on the median of this many recent beats."
    )
    disconnect_mean_mmhg: float = Field(
        10.0,
        description="Block mean below this is a disconnected line or a transducer open "
        "to air (reads ~0 mmHg; no living patient has a mean this low).",
    )
    damped_fraction: float = Field(
        0.4,
        gt=0,
        lt=1,
        description="Damped line: pulse pressure below this fraction of its reference "
        "(median of recent good beats). Over-damping typically halves it or worse.",
    )
    flat_pulse_pressure_mmhg: float = Field(
        4.0,
        ge=0,
        description="Pulse pressure below this at a physiological mean is a flat trace "
        "(no pulsatility reaching the transducer), whatever the reference.",
    )
    reference_beats: int = Field(
        30, ge=3, description="Good beats whose median pulse pressure is the damping reference."
    )
    min_prominence_mmhg: float = Field(
        3.0,
        gt=0,
        description="A beat must rise at least this much above its surroundings "
        "(rejects noise and small reflections on a flat trace).",
    )
    analysis_block_s: float = Field(
        4.0,
        gt=0,
        description="Analysis block: latency of ABP conditions versus per-call overhead. "
        "Beats are also final only 2 s after their peak.",
    )

    @model_validator(mode="after")
    def _limits_ordered(self) -> AbpSettings:
        if self.systolic_low_mmhg >= self.systolic_high_mmhg:
            raise ValueError("systolic_low_mmhg must be below systolic_high_mmhg")
        if self.mean_low_mmhg >= self.mean_high_mmhg:
            raise ValueError("mean_low_mmhg must be below mean_high_mmhg")
        return self


HYPOTENSION = ConditionSpec(
    code="abp.hypotension",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="Arterial systolic below the low limit",
    delay_s=5.0,
)
HYPERTENSION = ConditionSpec(
    code="abp.hypertension",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="Arterial systolic above the high limit",
    delay_s=5.0,
)
MAP_LOW = ConditionSpec(
    code="abp.map_low",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="Mean arterial pressure below the low limit",
    delay_s=5.0,
)
MAP_HIGH = ConditionSpec(
    code="abp.map_high",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.LOW,
    description="Mean arterial pressure above the high limit",
    delay_s=5.0,
)
DAMPED = ConditionSpec(
    code="abp.damped",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="Arterial line damped or flat: pressures unreliable",
    delay_s=5.0,
)
DISCONNECTED = ConditionSpec(
    code="abp.disconnected",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.HIGH,
    description="Arterial line disconnected or open to air",
)


ABP = CheckDeclaration(
    name="abp",
    needs=frozenset({SignalKind.ABP}),
    window_s=10.0,
    settings_model=AbpSettings,
    conditions=(HYPOTENSION, HYPERTENSION, MAP_LOW, MAP_HIGH, DAMPED, DISCONNECTED),
    implementation="roommon.checks.abp:AbpCheck",
)
