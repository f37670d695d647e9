"""What the spo2 check is, without its implementation: settings, conditions, needs.

Read by the config and ``check-config`` (which must not load numpy or the
signal code); :mod:`roommon.checks.spo2` implements it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from roommon.checks.base import CheckDeclaration, CheckSettings
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority
from roommon.core.model import SignalKind


class SpO2Settings(CheckSettings):
    """Per-room SpO2 limits and pleth-quality thresholds."""

    desat_pct: float = Field(
        90.0,
        gt=0,
        le=100,
        description="Desaturation below this SpO2. Default: common monitor low limit "
        "(e.g. Philips IntelliVue SpO2 low default 90 %).",
    )
    critical_pct: float = Field(
        85.0,
        gt=0,
        le=100,
        description="Critical desaturation (high priority, shorter delay) below this. "
        "Monitors default their 'desat' limit between 80 and 85 %; 85 % errs early.",
    )
    low_perfusion_index_pct: float = Field(
        0.3,
        ge=0,
        description="Perfusion index below this is low perfusion. Default: ~0.3 %, "
        "below which oximeter accuracy is reported to degrade.",
    )
    pr_ecg_tolerance_bpm: float = Field(
        10.0,
        gt=0,
        description="Pleth pulse rate and EKG heart rate disagree beyond this "
        "(or beyond pr_ecg_tolerance_fraction, whichever is larger). Monitors "
        "specify pulse-rate accuracy of about ±3 bpm; 10 bpm is clearly not noise.",
    )
    pr_ecg_tolerance_fraction: float = Field(
        0.1,
        ge=0,
        description="Relative tolerance of the pulse-rate cross-check (10 % of the EKG rate).",
    )
    rate_max_age_s: float = Field(
        10.0,
        gt=0,
        description="Rates older than this are not compared (a stale EKG rate is not "
        "evidence of a pleth artefact).",
    )
    no_pulse_s: float = Field(
        10.0,
        gt=0,
        description="No pleth pulse for this long (trace not flat) is 'no pulse': "
        "longer than the longest plausible beat-to-beat gap at low rates.",
    )
    flat_ptp_au: float = Field(
        1e-3,
        ge=0,
        description="Pleth peak-to-peak below this (normalised units, a good pulse "
        "~1) over a block is a flat trace, i.e. probe off.",
    )
    flat_fraction: float = Field(
        0.02,
        ge=0,
        description="Or below this fraction of the recent median pulse amplitude "
        "(for devices whose pleth is not normalised).",
    )
    saturated_fraction: float = Field(
        0.3,
        gt=0,
        le=1,
        description="A block with at least this fraction of samples pinned at its "
        "extreme value is a saturated trace (probe off / ambient light).",
    )
    motion_amplitude_cv: float = Field(
        0.45,
        gt=0,
        description="Motion artefact: coefficient of variation of pulse amplitudes "
        "over the recent beats above this (respiration modulates amplitude by ~10-20 %).",
    )
    motion_interval_cv: float = Field(
        0.4,
        gt=0,
        description="Motion artefact: coefficient of variation of beat intervals above "
        "this (atrial fibrillation reaches ~0.2-0.3).",
    )
    motion_ptp_ratio: float = Field(
        3.0,
        gt=1,
        description="Motion artefact: block peak-to-peak above this multiple of the "
        "median pulse amplitude (excursions no pulse produces).",
    )
    max_roughness: float = Field(
        0.5,
        gt=0,
        description="RMS sample-to-sample step above this fraction of the block's "
        "standard deviation means noise, not a pulse (a smooth pulse gives "
        "0.05-0.3, white noise ~1.4).",
    )
    recent_beats: int = Field(
        10,
        ge=3,
        description="Beats kept for pulse rate (median interval) and quality statistics.",
    )
    pr_establish_beats: int = Field(
        6,
        ge=2,
        description="The pleth pulse rate is published (and cross-checked) only once "
        "this many consecutive clean beats have consistent intervals; until then the "
        "rate is unknown ('--'), as an oximeter shows while it searches after probe-on. "
        "Six beats are about 5 s at 72 bpm; a median of fewer intervals is one "
        "mis-detected beat away from a wrong number.",
    )
    pr_interval_tolerance: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Consistent intervals: each within this fraction of their median. "
        "Rejects doubled (dicrotic wave counted, ~0.3-0.7 of the median) and halved "
        "(missed beat, 2x) rhythms; admits breathing-related variation (a few %) and, "
        "within a few windows, atrial fibrillation (coefficient of variation ~0.2-0.3).",
    )
    analysis_block_s: float = Field(
        4.0,
        gt=0,
        description="Pleth analysis block: latency of pleth conditions versus per-call "
        "overhead. Beats are also final only 2 s after their peak.",
    )
    analysis_block_min_samples: int = Field(
        400,
        ge=1,
        description="A block is at least this many samples: the analysis has a fixed cost per "
        "block, so low-rate plethysmograms (75 Hz: 5.3 s blocks) keep the same throughput per "
        "sample as faster ones; at 100 Hz and above the block is analysis_block_s.",
    )

    @model_validator(mode="after")
    def _levels_ordered(self) -> SpO2Settings:
        if self.critical_pct >= self.desat_pct:
            raise ValueError("critical_pct must be below desat_pct")
        if self.pr_establish_beats > self.recent_beats:
            raise ValueError("pr_establish_beats must not exceed recent_beats")
        return self


DESAT = ConditionSpec(
    code="spo2.desat",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="SpO2 below the low limit",
    # monitors offer 0-30 s; about 15 s is a common default
    delay_s=15.0,
    clear_delay_s=2.0,
)
DESAT_CRITICAL = ConditionSpec(
    code="spo2.desat_critical",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="SpO2 below the critical limit",
    delay_s=5.0,
    clear_delay_s=2.0,
)
PROBE_OFF = ConditionSpec(
    code="spo2.probe_off",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="SpO2 probe off or no signal (flat or saturated pleth)",
    delay_s=3.0,
)
NO_PULSE = ConditionSpec(
    code="spo2.no_pulse",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="No pulsatile pleth signal",
)
LOW_PERFUSION = ConditionSpec(
    code="spo2.low_perfusion",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="Low perfusion: SpO2 accuracy reduced",
    delay_s=10.0,
)
MOTION_ARTIFACT = ConditionSpec(
    code="spo2.motion_artifact",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="Motion artefact on the pleth",
    delay_s=5.0,
)
UNRELIABLE_SUSTAINED = ConditionSpec(
    code="spo2.unreliable_sustained",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="SpO2 unreliable for a sustained time: desaturation alarms are held",
    delay_s=30.0,
)
PR_ECG_MISMATCH = ConditionSpec(
    code="spo2.pr_ecg_mismatch",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="Pleth pulse rate disagrees with EKG heart rate (likely artefact)",
    delay_s=10.0,
)


SPO2 = CheckDeclaration(
    name="spo2",
    needs=frozenset({SignalKind.SPO2}),
    optional=frozenset({SignalKind.PLETH}),
    window_s=10.0,
    settings_model=SpO2Settings,
    conditions=(
        DESAT,
        DESAT_CRITICAL,
        PROBE_OFF,
        NO_PULSE,
        LOW_PERFUSION,
        MOTION_ARTIFACT,
        UNRELIABLE_SUSTAINED,
        PR_ECG_MISMATCH,
    ),
    implementation="roommon.checks.spo2:SpO2Check",
)
