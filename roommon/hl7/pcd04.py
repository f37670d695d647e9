"""PCD-04 (ACM, Report Alert): one ``ORU^R40`` per alarm transition.

Pure builder from :class:`~roommon.wire.payloads.AlarmEventMessage`. The OBR
carries the alarm's identity (OBR-3, constant over the alarm's life; OBR-2
the identity of this one event) and the OBX facets, each with the sub-id of
the alarm's source plus a facet number: 1 the alarm (the MDC event term:
``MDC_EVT_LO_VAL_LT_LIM`` / ``MDC_EVT_HI`` for a value past its limit, else
``MDC_EVT_ALARM``; roommon's condition as the alternate code; its text; OBX-8
with the side of the limit, the priority and the kind), 2 its source (the
observation with its value, unit and limit), 3 the event phase, 4 the alarm
state, 5 the inactivation state (with who acknowledged it). Priority and kind
are only in facet 1's OBX-8: the ACM supplement (Rev. 1.3, 3.Z.7) says they
are not repeated in other facets. docs/hl7.md says what was checked where.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from roommon.hl7.codes import LOCAL_SYSTEM, MDS, CodesTable, ObservationCode
from roommon.hl7.er7 import components, escape, message
from roommon.hl7.segments import (
    PROFILE_PCD04,
    Envelope,
    coded,
    equipment,
    mds_obx,
    msh_segment,
    number,
    obr_segment,
    obx_segment,
    pid_segment,
    pv1_segment,
    unit,
)
from roommon.wire.payloads import AlarmEventMessage

MESSAGE_TYPE = "ORU^R40^ORU_R40"
ALARM_SERVICE: Final = ("196616", "MDC_EVT_ALARM", "MDC")

#: roommon transition -> ACM event phase (MDC_ATTR_EVENT_PHASE).
EVENT_PHASE: Final[Mapping[str, str]] = {
    "raised": "start",
    "acknowledged": "update",
    "latched": "update",
    "priority_changed": "update",
    "escalated": "escalate",
    "deescalated": "deescalate",
    "cleared": "end",
    "reset": "reset",
}
#: roommon alarm state -> ACM alarm state (MDC_ATTR_ALARM_STATE).
ALARM_STATE: Final[Mapping[str, str]] = {
    "active": "active",
    "acknowledged": "active",
    "latched": "latched",
    "cleared": "inactive",
}
PRIORITY: Final[Mapping[str, str]] = {"high": "PH", "medium": "PM", "low": "PL"}
ALERT_TYPE: Final[Mapping[str, str]] = {"physiological": "SP", "technical": "ST"}

#: Condition code -> the measurement (codes-table name) it watches; facet 2 names it.
ALARM_SOURCES: Final[Mapping[str, str]] = {
    "spo2.desat": "spo2",
    "spo2.desat_critical": "spo2",
    "spo2.low_perfusion": "perfusion_index",
    "spo2.pr_ecg_mismatch": "pulse_rate",
    "ecg.brady": "heart_rate",
    "ecg.tachy": "heart_rate",
    "ecg.brady_extreme": "heart_rate",
    "ecg.tachy_extreme": "heart_rate",
    "ecg.asystole": "heart_rate",
    "nibp.hypotension": "nibp_systolic",
    "nibp.hypertension": "nibp_systolic",
    "nibp.map_low": "nibp_mean",
    "nibp.map_high": "nibp_mean",
    "abp.hypotension": "abp_systolic",
    "abp.hypertension": "abp_systolic",
    "abp.map_low": "abp_mean",
    "abp.map_high": "abp_mean",
    "cement.over_pressure": "cement_peak_pressure",
}


#: Reading field of a ``numeric_limits`` rule (``limit.FIELD_low``) -> measurement name.
_LIMIT_FIELDS: Final[Mapping[str, str]] = {
    "spo2": "spo2",
    "pulse_rate": "pulse_rate",
    "perfusion_index": "perfusion_index",
    "systolic": "nibp_systolic",
    "diastolic": "nibp_diastolic",
    "mean": "nibp_mean",
}


def _source(event: AlarmEventMessage, codes: CodesTable) -> ObservationCode | None:
    name = ALARM_SOURCES.get(event.code)
    if name is None and event.code.startswith("limit."):
        field, _, _side = event.code.removeprefix("limit.").rpartition("_")
        name = _LIMIT_FIELDS.get(field)
    return codes.get(name) if name is not None else None


def _alert_code(side: str, codes: CodesTable) -> ObservationCode:
    """Facet 1's OBX-3: the threshold event term when the source's value is past its limit."""
    if side == "L":
        return codes["event_low"]
    if side == "H":
        return codes["event_high"]
    return codes["alarm"]


def limit_flags(event: AlarmEventMessage) -> tuple[str, str]:
    """OBX-7 and the HL7 table 0078 flag: which side of its limit the value is."""
    if event.value is None or event.limit is None:
        return "", ""
    if event.value < event.limit:
        return f">{number(event.limit)}", "L"
    return f"<{number(event.limit)}", "H"


def build(env: Envelope, event: AlarmEventMessage, codes: CodesTable) -> str:
    """One ORU^R40 for one alarm transition."""
    sender = env.sender
    source = _source(event, codes)
    base = source.sub_id if source is not None else "1.0.0.0"
    gear = equipment(sender)
    at = event.t
    reference, side = limit_flags(event)
    flags = [f for f in (side, PRIORITY[event.priority], ALERT_TYPE[event.kind]) if f]
    alarm = _alert_code(side if source is not None else "", codes)
    text = event.message or event.code
    facets = [
        obx_segment(
            2,
            identifier=coded(alarm, alternate=(event.code, event.code, LOCAL_SYSTEM)),
            sub_id=f"{base}.1",
            value_type="ST",
            value=escape(text),
            flags=flags,
            observed=at,
            equipment_id=gear,
        )
    ]
    if source is not None and event.value is not None:
        facets.append(
            obx_segment(
                3,
                identifier=coded(source),
                sub_id=f"{base}.2",
                value_type="NM",
                value=number(event.value),
                units=unit(source),
                reference_range=reference,
                observed=at,
                equipment_id=gear,
            )
        )
    else:
        facets.append(
            obx_segment(
                3,
                identifier=coded(codes["alert_source"]),
                sub_id=f"{base}.2",
                value_type="ST",
                value=escape(event.feed or event.check),
                observed=at,
                equipment_id=gear,
            )
        )
    inactivation = "alert-acknowledged" if event.state == "acknowledged" else "enabled"
    if event.state != "acknowledged" and not event.audible and event.state != "cleared":
        inactivation = "audio-paused"
    actor = components(escape(event.actor)) if event.actor else ""
    for n, (name, value, observer) in enumerate(
        (
            ("event_phase", EVENT_PHASE[event.transition], ""),
            ("alarm_state", ALARM_STATE[event.state], ""),
            ("inactivation_state", inactivation, actor),
        ),
        start=3,
    ):
        facets.append(
            obx_segment(
                n + 1,
                identifier=coded(codes[name]),
                sub_id=f"{base}.{n}",
                value_type="ST",
                value=value,
                observed=at,
                observer=observer,
                equipment_id=gear,
            )
        )
    ended = event.t if event.transition in ("cleared", "reset") else None
    segments = [
        msh_segment(
            env,
            message_type=MESSAGE_TYPE,
            profile=(*PROFILE_PCD04[:2], sender.acm_profile_oid, PROFILE_PCD04[3]),
        ),
        pid_segment(env.patient),
        pv1_segment(env.location),
        obr_segment(
            sender,
            placer=event.event_id,
            filler=event.alarm_id,
            service=ALARM_SERVICE,
            start=event.since,
            end=ended,
        ),
        mds_obx(sender, codes.get("mds") or MDS),
        *facets,
    ]
    return message(segments)
