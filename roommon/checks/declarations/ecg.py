"""What the ecg check is, without its implementation: settings, conditions, needs.

Read by the config and ``check-config`` (which must not load numpy or the
signal code); :mod:`roommon.checks.ecg` implements it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from roommon.checks.base import CheckDeclaration, CheckSettings
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority
from roommon.core.model import SignalKind


class EcgSettings(CheckSettings):
    """Per-room EKG alarm limits and signal-quality thresholds."""

    asystole_s: float = Field(
        4.0, gt=0, description="No QRS for this long is asystole (IEC 60601-2-27 style default)."
    )
    brady_bpm: float = Field(40.0, gt=0, description="Bradycardia below this rate (medium).")
    tachy_bpm: float = Field(140.0, gt=0, description="Tachycardia above this rate (medium).")
    brady_extreme_bpm: float = Field(
        20.0, gt=0, description="Extreme bradycardia below this rate (high priority)."
    )
    tachy_extreme_bpm: float = Field(
        160.0, gt=0, description="Extreme tachycardia above this rate (high priority)."
    )
    flat_mv: float = Field(
        0.005,
        gt=0,
        description="Peak-to-peak below this over the last second is a flat line (leads "
        "off): a disconnected input sits still to within an ADC step or two, whereas a "
        "quiet but connected asystole still moves by 10 µV or more. Anything above is "
        "signal, and a quiet clean baseline is asystole, not leads off.",
    )
    rail_mv: float = Field(
        5.0,
        gt=0,
        description="Front-end rail: a quiet signal pinned at 98 % of this or more is "
        "saturated (a moving signal is saturated only when clipped: samples pinned at "
        "its extreme value; a DC offset alone is not saturation). "
        "Default: the ±5 mV input range IEC 60601-2-27 asks of monitors.",
    )
    saturated_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Share of the last second clipped (pinned at its extreme value, "
        "or at the rail) that makes the signal saturated.",
    )
    noise_index: float = Field(
        0.12,
        gt=0,
        description="Noise when the 20th percentile of the filtered slope over 2 s "
        "exceeds this share of the clean QRS slope: a clean ECG is quiet between QRS "
        "complexes (the shared PhysioNet records stay below 0.095).",
    )
    noise_hf_ratio: float = Field(
        3.0,
        gt=1,
        description="Noise also when the high-frequency content (median absolute second "
        "difference over 2 s) exceeds this many times its own 10th percentile over the "
        "last 5 minutes (and 1 % of the QRS amplitude at 360 Hz): muscle artefact. Clean "
        "MIT-BIH seconds pass 3 in about 0.4 % of seconds.",
    )
    pacer_rejection: bool = Field(
        True,
        description="Find pacemaker pulses in the EKG (one or two samples far off the line "
        "through their neighbours, at most 4 ms wide) and blank them before QRS "
        "detection, so that pacing without capture is asystole, not a rate, and a "
        "pacemaker's pulse is never a beat of its own. Only at 300 Hz and above (below, "
        "a pulse cannot be told from a sharp R wave: the front end must remove them); "
        "turn off where the front end removes pacer pulses itself.",
    )
    vt_beats: int = Field(
        6,
        ge=3,
        description="Ventricular tachycardia: at least this many consecutive ventricular "
        "beats (wide, or shaped unlike the patient's normal beat, or of one shape and "
        "suddenly much larger than the normal beat, as when a ventricular focus near "
        "the conduction system takes over) ...",
    )
    vt_bpm: float = Field(
        120.0,
        gt=0,
        description="... at a rate above this (mean over the run). Default after the "
        "6-beats-above-120 rule many monitors ship; 100 is the textbook VT rate.",
    )
    baseline_jump_mv: float = Field(
        0.8,
        gt=0,
        description="The mean level of one second differing from the last by more than "
        "this is artefact (electrode, amplifier recovering from overload): the signal "
        "counts as noisy until recovery_s after the last jump.",
    )
    recovery_s: float = Field(
        3.0,
        ge=0,
        description="After a gap or bad samples, the rate stays unreliable this long "
        "(the detector re-learns its thresholds).",
    )

    @model_validator(mode="after")
    def _limits_ordered(self) -> EcgSettings:
        if not self.brady_extreme_bpm < self.brady_bpm < self.tachy_bpm < self.tachy_extreme_bpm:
            raise ValueError("need brady_extreme_bpm < brady_bpm < tachy_bpm < tachy_extreme_bpm")
        return self


ASYSTOLE = ConditionSpec(
    code="ecg.asystole",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="No QRS complex for the asystole interval",
)
BRADY = ConditionSpec(
    code="ecg.brady",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="Heart rate below the bradycardia limit",
    delay_s=2.0,
)
TACHY = ConditionSpec(
    code="ecg.tachy",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="Heart rate above the tachycardia limit",
    delay_s=2.0,
)
BRADY_EXTREME = ConditionSpec(
    code="ecg.brady_extreme",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="Heart rate below the extreme bradycardia limit",
    delay_s=1.0,
)
TACHY_EXTREME = ConditionSpec(
    code="ecg.tachy_extreme",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="Heart rate above the extreme tachycardia limit",
    delay_s=1.0,
)
LEADS_OFF = ConditionSpec(
    code="ecg.leads_off",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="EKG flat line: leads off or cable disconnected",
)
SATURATED = ConditionSpec(
    code="ecg.saturated",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.MEDIUM,
    description="EKG signal at the amplifier's rails",
)
NOISY = ConditionSpec(
    code="ecg.noisy",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="EKG too noisy: heart rate unreliable, rate alarms held back",
    clear_delay_s=2.0,
)
GAP = ConditionSpec(
    code="ecg.gap",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="EKG signal interrupted: analysis restarting",
)
BAD_SAMPLES = ConditionSpec(
    code="ecg.bad_samples",
    kind=AlarmKind.TECHNICAL,
    priority=Priority.LOW,
    description="EKG samples NaN or infinite reached the analysis",
)

VF = ConditionSpec(
    code="ecg.vf",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="Ventricular fibrillation or flutter",
    latching=True,
)
VT = ConditionSpec(
    code="ecg.vt",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="Ventricular tachycardia: a run of fast ventricular beats",
    latching=True,
)


ECG = CheckDeclaration(
    name="ecg",
    needs=frozenset({SignalKind.ECG}),
    settings_model=EcgSettings,
    conditions=(
        ASYSTOLE,
        VF,
        VT,
        BRADY,
        TACHY,
        BRADY_EXTREME,
        TACHY_EXTREME,
        LEADS_OFF,
        SATURATED,
        NOISY,
        GAP,
        BAD_SAMPLES,
    ),
    implementation="roommon.checks.ecg:EcgCheck",
)
