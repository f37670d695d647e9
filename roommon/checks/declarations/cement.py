"""What the cement check is, without its implementation: settings, conditions, needs.

Read by the config and ``check-config`` (which must not load numpy or the
signal code); :mod:`roommon.checks.cement` implements it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from roommon.checks.base import CheckDeclaration, CheckSettings
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority
from roommon.core.model import SignalKind


class CementSettings(CheckSettings):
    """Per-room (per cement product) settings of the cement-injection check."""

    max_pressure_kpa: float = Field(
        3200.0,
        gt=0,
        description="Over-pressure limit. Default: published maximum injection pressure "
        "in patients, about 3.2 MPa (mean peak about 1.7 MPa).",
    )
    over_pressure_clear_kpa: float = Field(
        100.0,
        ge=0,
        description="Over-pressure clears only this far below the limit (hysteresis "
        "against chatter; about 3 % of the default limit).",
    )
    inject_on_kpa: float = Field(
        200.0,
        gt=0,
        description="Segment mean above this starts 'injecting'. Well above transducer "
        "zero drift, well below the ~1.7 MPa typical injection pressure.",
    )
    inject_off_kpa: float = Field(
        100.0,
        ge=0,
        description="Segment mean below this stops 'injecting' (half of inject_on_kpa, "
        "hysteresis).",
    )
    end_after_s: float = Field(
        60.0,
        gt=0,
        description="No injection for this long after the last one: injection ended "
        "(the recovery timer starts). Longer than a typical pause to reload a cannula.",
    )
    drop_fraction: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Sudden drop: pressure falls by more than this fraction of its "
        "recent maximum within drop_window_s while the injection goes on. A 30 % "
        "fall in a second is far outside the slow rise of curing cement.",
    )
    drop_window_s: float = Field(
        1.0, gt=0, description="Time within which the fall must happen (see drop_fraction)."
    )
    drop_reference_hold_s: float = Field(
        2.0,
        gt=0,
        description="A fall is measured from a level the pressure held for at least this "
        "long (the highest such level ending within drop_window_s), so a spike shorter "
        "than this (a blocked cannula, a hard turn of the screw: the simulator's and "
        "demo's spikes last 0.6-1.5 s) cannot become the reference and its return to "
        "the plateau is not a drop. A leak falls from the injection plateau, held for "
        "seconds; 2 s of it is enough, even shortly after the ramp.",
    )
    drop_confirm_s: float = Field(
        1.0,
        gt=0,
        description="The lower level must hold this long (not falling by drop_fraction "
        "again, not back to rest): an operator's stop relaxes to rest, a leak holds a "
        "lower pressure. Adds this much latency to the drop alarm.",
    )
    drop_min_reference_kpa: float = Field(
        500.0,
        gt=0,
        description="Falls are judged only from a recent maximum at least this high: "
        "fluctuation at low pressure is not a leak signature.",
    )
    drop_hold_s: float = Field(
        5.0,
        gt=0,
        description="How long a detected drop is reported present (the alarm latches).",
    )
    trend_window_s: float = Field(
        5.0, gt=0, description="Window of the least-squares pressure slope for the rising trend."
    )
    rising_horizon_s: float = Field(
        10.0,
        gt=0,
        description="Rising trend alarm when the slope would reach max_pressure_kpa "
        "within this time: a warning a few pushes ahead.",
    )
    rising_min_fraction: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="The rising trend is only judged above this fraction of "
        "max_pressure_kpa (early ramps are steep and harmless).",
    )
    working_time_s: float = Field(
        900.0,
        gt=0,
        description="Injection after this many seconds from 'cement mixed' is past the "
        "working time. Default: 15 min, the upper end of the published 4-15 min "
        "injectable window; set per cement product and room temperature.",
    )
    min_dough_time_s: float = Field(
        240.0,
        ge=0,
        description="Injection earlier than this after mixing uses low-viscosity cement, "
        "which leaks more. Default: 4 min, the lower end of the published window.",
    )
    segment_s: float = Field(
        0.25,
        gt=0,
        description="Averaging segment for phase, drop and trend: smooths the "
        "hand-screw ripple while resolving a one-second drop.",
    )
    analysis_block_s: float = Field(
        2.0,
        gt=0,
        description="Block length of the segment analysis: the latency of phase, drop "
        "and trend detection versus per-call overhead. Over-pressure is not delayed.",
    )

    @model_validator(mode="after")
    def _levels_ordered(self) -> CementSettings:
        if self.inject_off_kpa > self.inject_on_kpa:
            raise ValueError("inject_off_kpa must not exceed inject_on_kpa")
        if self.over_pressure_clear_kpa >= self.max_pressure_kpa:
            raise ValueError("over_pressure_clear_kpa must be below max_pressure_kpa")
        return self


OVER_PRESSURE = ConditionSpec(
    code="cement.over_pressure",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="Cement injection pressure above the configured maximum",
)
SUDDEN_DROP = ConditionSpec(
    code="cement.sudden_drop",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="Sudden pressure drop during injection: possible cement leakage",
    latching=True,
)
RISING_TO_MAX = ConditionSpec(
    code="cement.rising_to_max",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="Injection pressure rising towards the configured maximum",
)
PAST_WORKING_TIME = ConditionSpec(
    code="cement.past_working_time",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="Injection continuing past the cement's working time",
)
EARLY_INJECTION = ConditionSpec(
    code="cement.early_injection",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.LOW,
    description="Injection before the cement's minimum dough time (low viscosity leaks more)",
)
NO_MIX_TIME = ConditionSpec(
    code="cement.no_mix_time",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="Injection without a 'cement mixed' time: working time cannot be checked",
)


CEMENT = CheckDeclaration(
    name="cement",
    needs=frozenset({SignalKind.CEMENT_PRESSURE}),
    window_s=10.0,
    settings_model=CementSettings,
    conditions=(
        OVER_PRESSURE,
        SUDDEN_DROP,
        RISING_TO_MAX,
        PAST_WORKING_TIME,
        EARLY_INJECTION,
        NO_MIX_TIME,
    ),
    implementation="roommon.checks.cement:CementCheck",
)
