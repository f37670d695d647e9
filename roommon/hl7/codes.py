"""The codes table: which MDC (IEEE 11073-10101) code and unit each observation is sent with.

Every observation roommon reports over HL7 has one :class:`ObservationCode`:
its OBX-3 code, its OBX-6 unit as an MDC unit code with the UCUM unit as the
alternate identifier, and where it sits in the containment tree (the VMD and
channel ordinals of OBX-4). Where MDC has no term (the cement injection
peak pressure, the procedure phase, the recovery events) a local code of the
coding system ``99RMN`` is used; docs/hl7.md lists the table. A site can
override or extend any entry from its configuration (``[hl7.codes.NAME]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

#: HL7 table 0396: "99zzz" is a locally defined coding system.
LOCAL_SYSTEM: Final = "99RMN"


class ObservationCode(BaseModel):
    """How one roommon observation is coded in OBX-3/OBX-4/OBX-6."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    code: str = Field(description="OBX-3.1: numeric MDC code (or a local code).")
    name: str = Field(description="OBX-3.2: the reference id, e.g. MDC_ECG_HEART_RATE.")
    system: str = Field(default="MDC", description="OBX-3.3: MDC, or 99RMN for local codes.")
    unit_code: str = Field(default="", description="OBX-6.1: MDC unit code; empty: no unit.")
    unit_name: str = Field(default="", description="OBX-6.2: MDC unit reference id.")
    ucum: str = Field(default="", description="OBX-6.4/6.5: the UCUM unit.")
    vmd: int = Field(ge=0, le=99, description="OBX-4 VMD ordinal (the instrument group).")
    channel: int = Field(default=1, ge=0, le=99, description="OBX-4 channel ordinal.")
    metric: int = Field(ge=1, le=99, description="OBX-4 metric ordinal within the channel.")
    method: Literal["", "AMEAS", "MMEAS", "ACALC", "MCALC", "ASET", "MSET"] = Field(
        default="",
        description="OBX-17 observation method: AMEAS auto-measurement, ACALC "
        "auto-calculation, ... (coding system MDC); empty: not sent (workflow states).",
    )
    availability: Literal["", "continuous", "episodic"] = Field(
        default="",
        description="OBX-17 repetition telling periodic from aperiodic data: continuous "
        "69123 MDC_OBS_CTS, episodic 69124 MDC_OBS_NONCTS; empty: not sent.",
    )

    @property
    def sub_id(self) -> str:
        return f"1.{self.vmd}.{self.channel}.{self.metric}"

    @property
    def observation_method(self) -> str:
        """OBX-17: the method (``AMEAS^auto-measurement^MDC``) and, repeated, whether the
        measurement is continuous or episodic (``69123^MDC_OBS_CTS^MDC``); or empty."""
        parts = [f"{self.method}^{METHODS[self.method]}^MDC"] if self.method else []
        if self.availability:
            parts.append(AVAILABILITY[self.availability])
        return "~".join(parts)


#: OBX-17 metric availability: periodic versus aperiodic data (docs/hl7.md: [TF-2 A.1]).
AVAILABILITY: Final[Mapping[str, str]] = {
    "continuous": "69123^MDC_OBS_CTS^MDC",
    "episodic": "69124^MDC_OBS_NONCTS^MDC",
}

#: OBX-17 observation methods, coding system MDC (docs/hl7.md, "What was checked": [SDPi-DEC]).
METHODS: Final[Mapping[str, str]] = {
    "AMEAS": "auto-measurement",
    "MMEAS": "manual-measurement",
    "ACALC": "auto-calculation",
    "MCALC": "manual-calculation",
    "ASET": "auto-setting",
    "MSET": "manual-setting",
}


def _mdc(
    code: int,
    name: str,
    unit: tuple[int, str, str] | None,
    vmd: int,
    metric: int,
    availability: Literal["continuous", "episodic"] = "continuous",
) -> ObservationCode:
    unit_code, unit_name, ucum = unit if unit is not None else (0, "", "")
    return ObservationCode(
        code=str(code),
        name=name,
        unit_code=str(unit_code) if unit else "",
        unit_name=unit_name,
        ucum=ucum,
        vmd=vmd,
        metric=metric,
        method="AMEAS",  # every MDC-coded vital is measured by the bedside device
        availability=availability,
    )


def _local(
    code: str,
    name: str,
    unit: tuple[int, str, str] | None,
    vmd: int,
    metric: int,
    method: Literal["", "AMEAS", "ACALC"] = "",
    availability: Literal["", "episodic"] = "",
) -> ObservationCode:
    unit_code, unit_name, ucum = unit if unit is not None else (0, "", "")
    return ObservationCode(
        code=code,
        name=name,
        system=LOCAL_SYSTEM,
        unit_code=str(unit_code) if unit else "",
        unit_name=unit_name,
        ucum=ucum,
        vmd=vmd,
        metric=metric,
        method=method,
        availability=availability,
    )


# MDC unit codes (partition 4, dimensions)
BPM: Final = (264864, "MDC_DIM_BEAT_PER_MIN", "/min")
PERCENT: Final = (262688, "MDC_DIM_PERCENT", "%")
MMHG: Final = (266016, "MDC_DIM_MMHG", "mm[Hg]")
KPA: Final = (265987, "MDC_DIM_KILO_PASCAL", "kPa")
SECONDS: Final = (264320, "MDC_DIM_SEC", "s")

#: Measured per reading (NIBP cycle, cement injection), not continuously.
EPISODIC: Final = "episodic"

# VMD ordinals of OBX-4: one per instrument group of the room.
VMD_ECG, VMD_PULSOX, VMD_NIBP, VMD_ABP, VMD_CEMENT, VMD_PROCEDURE = 1, 2, 3, 4, 5, 6

#: The device (MDS) observation that heads every PCD-01 and PCD-04 report
#: (69965: every public PCD example message read agrees; docs/hl7.md, "What was checked").
MDS: Final = ObservationCode(
    code="69965",
    name="MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS",
    vmd=0,
    channel=0,
    metric=1,
)

#: roommon measurement name (as in the room state) -> its code.
DEFAULT_CODES: Final[Mapping[str, ObservationCode]] = {
    "heart_rate": _mdc(147842, "MDC_ECG_HEART_RATE", BPM, VMD_ECG, 1),
    "spo2": _mdc(150456, "MDC_PULS_OXIM_SAT_O2", PERCENT, VMD_PULSOX, 1),
    "pulse_rate": _mdc(149530, "MDC_PULS_OXIM_PULS_RATE", BPM, VMD_PULSOX, 2),
    # 150488 is MDC_BLD_PERF_INDEX (the perfusion index in %, as pulse oximeters send it in
    # PCD-01); MDC_PULS_OXIM_PERF_REL is another term, 150448 (docs/hl7.md, "What was checked")
    "perfusion_index": _mdc(150488, "MDC_BLD_PERF_INDEX", PERCENT, VMD_PULSOX, 3),
    "nibp_systolic": _mdc(150021, "MDC_PRESS_BLD_NONINV_SYS", MMHG, VMD_NIBP, 1, EPISODIC),
    "nibp_diastolic": _mdc(150022, "MDC_PRESS_BLD_NONINV_DIA", MMHG, VMD_NIBP, 2, EPISODIC),
    "nibp_mean": _mdc(150023, "MDC_PRESS_BLD_NONINV_MEAN", MMHG, VMD_NIBP, 3, EPISODIC),
    "abp_systolic": _mdc(150033, "MDC_PRESS_BLD_ART_SYS", MMHG, VMD_ABP, 1),
    "abp_diastolic": _mdc(150034, "MDC_PRESS_BLD_ART_DIA", MMHG, VMD_ABP, 2),
    "abp_mean": _mdc(150035, "MDC_PRESS_BLD_ART_MEAN", MMHG, VMD_ABP, 3),
    "abp_pulse_rate": _mdc(149522, "MDC_BLD_PULS_RATE_INV", BPM, VMD_ABP, 4),
    # No MDC term describes the peak pressure of a bone-cement injection.
    "cement_peak_pressure": _local(
        "RMN_CEMENT_INJ_PRESS_PEAK",
        "cement injection peak pressure",
        KPA,
        VMD_CEMENT,
        1,
        "AMEAS",
        EPISODIC,
    ),
    "procedure_phase": _local("RMN_PROC_PHASE", "procedure phase", None, VMD_PROCEDURE, 1),
    "recovery_event": _local("RMN_RECOVERY_EVENT", "recovery timer event", None, VMD_PROCEDURE, 2),
    "recovery_check": _local("RMN_RECOVERY_CHECK", "recovery check number", None, VMD_PROCEDURE, 3),
    "cement_injection": _local(
        "RMN_CEMENT_INJ_NUMBER", "cement injection number", None, VMD_CEMENT, 2
    ),
    "cement_injection_duration": _local(
        "RMN_CEMENT_INJ_DURATION",
        "cement injection duration",
        SECONDS,
        VMD_CEMENT,
        3,
        "ACALC",
        EPISODIC,
    ),
}

#: Measurements sent in the periodic and NIBP-triggered vitals reports, in OBX order.
VITALS: Final = (
    "heart_rate",
    "spo2",
    "pulse_rate",
    "perfusion_index",
    "nibp_systolic",
    "nibp_diastolic",
    "nibp_mean",
    "abp_systolic",
    "abp_diastolic",
    "abp_mean",
    "abp_pulse_rate",
    "cement_peak_pressure",
)


# PCD-04 (ACM) codes: the event identification facet's event term and the OBX-3 of the other
# facets; overridable like the rest of the table. Context-free MDC codes are partition * 65536 +
# term code (partition 3 = events, 196608). Where each number was verified, and against what, is
# in docs/hl7.md ("What was checked").
def _facet(code: int, name: str) -> ObservationCode:
    return ObservationCode(code=str(code), name=name, vmd=0, channel=0, metric=1)


ALERT_CODES: Final[Mapping[str, ObservationCode]] = {
    # the alert as such: OBR-4 of every PCD-04, OBX-3 of a technical alert's event facet, and
    # the event term of a physiological alert MDC has no specific term for
    "alarm": _facet(196616, "MDC_EVT_ALARM"),
    # a physiological alert's value past its limit: below / above
    "event_low": _facet(196674, "MDC_EVT_LO_VAL_LT_LIM"),
    "event_high": _facet(196650, "MDC_EVT_HI_GT_LIM"),
    # specific events (the codes of ALERT_EVENTS below)
    "event_asystole": _facet(199684, "MDC_EVT_ECG_ASYSTOLE"),  # 3:3076
    # the ventricular rhythms: no event-partition (3) term for VF was found in any source read;
    # both are sent with their ECG rhythm terms of partition 2 (2:16960, 2:17088), as the HL7
    # FHIR ValueSet devicemetric-type lists them (docs/hl7.md, "What was checked")
    "event_vfib": _facet(148032, "MDC_ECG_V_FIB"),
    "event_vtach": _facet(148160, "MDC_ECG_V_TACHY"),
    "event_leads_off": _facet(196882, "MDC_EVT_LEADS_OFF"),  # 3:274
    "event_disconnected": _facet(196630, "MDC_EVT_DISCONN"),  # 3:22
    "event_artifact": _facet(197040, "MDC_EVT_WAVE_ARTIF_ERR"),  # 3:432
    "event_failure": _facet(196646, "MDC_EVT_FAIL"),  # 3:38
    # facets 2-7
    "alert_source": _facet(68480, "MDC_ATTR_ALERT_SOURCE"),
    "event_phase": _facet(68481, "MDC_ATTR_EVENT_PHASE"),
    "alarm_state": _facet(68482, "MDC_ATTR_ALARM_STATE"),
    "inactivation_state": _facet(68483, "MDC_ATTR_ALARM_INACTIVATION_STATE"),
    "alarm_priority": _facet(68484, "MDC_ATTR_ALARM_PRIORITY"),
    "alert_type": _facet(68485, "MDC_ATTR_ALERT_TYPE"),
}

#: roommon condition code -> the codes-table name of its MDC event term. Conditions not listed
#: have no specific MDC term: they are sent with MDC_EVT_ALARM (or the threshold term when the
#: value is past its limit) and roommon's condition code in the local system 99RMN.
ALERT_EVENTS: Final[Mapping[str, str]] = {
    "ecg.asystole": "event_asystole",
    "ecg.vf": "event_vfib",
    "ecg.vt": "event_vtach",
    "ecg.leads_off": "event_leads_off",
    "spo2.probe_off": "event_disconnected",
    "abp.disconnected": "event_disconnected",
    "feed.disconnected": "event_disconnected",
    "ecg.noisy": "event_artifact",
    "spo2.motion_artifact": "event_artifact",
    "room.failed": "event_failure",
    "check.failed": "event_failure",
    "hl7.failed": "event_failure",
    "store.unwritable": "event_failure",
}


class CodesTable:
    """The defaults with a site's overrides applied; looked up by measurement name."""

    __slots__ = ("_codes",)

    def __init__(self, overrides: Mapping[str, ObservationCode] | None = None) -> None:
        self._codes: dict[str, ObservationCode] = {
            **DEFAULT_CODES,
            **ALERT_CODES,
            **(overrides or {}),
        }

    def get(self, name: str) -> ObservationCode | None:
        return self._codes.get(name)

    def __getitem__(self, name: str) -> ObservationCode:
        return self._codes[name]

    def items(self) -> list[tuple[str, ObservationCode]]:
        return list(self._codes.items())
