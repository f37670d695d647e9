"""PCD-04 (ACM, Report Alert): one ``ORU^R40`` per alarm transition.

Pure builder from :class:`~roommon.wire.payloads.AlarmEventMessage`. The OBR
carries the alarm's identity (OBR-3, constant over the alarm's life; OBR-2
the identity of this one event; OBR-7 the time of this report) and the OBX
facets, each with the sub-id of the alarm's source plus a facet number, in the
order IHE PCD TF-2 gives them: 1 event identification, 2 source
identification, 3 event phase, 4 alert state, 5 inactivation state, 6 alert
priority, 7 alert type.

Facet 1 of a physiological alert is ST: OBX-3 its MDC event term (the
threshold term when the source value is past its limit, a specific term such as
``MDC_EVT_ECG_ASYSTOLE``, else ``MDC_EVT_ALARM``) with roommon's condition code
as the alternate, OBX-5 the alarm text. Facet 1 of a technical alert is CWE:
OBX-3 ``MDC_EVT_ALARM``, OBX-5 the technical event's code (MDC where it has one,
roommon's code in 99RMN otherwise) with the text as its original text. Facet 2
is the source observation with its value and limit (physiological) or
``MDC_ATTR_ALERT_SOURCE`` naming it as a CWE (technical). docs/hl7.md says what
was checked against what.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from roommon.hl7.codes import ALERT_EVENTS, LOCAL_SYSTEM, MDS, CodesTable, ObservationCode
from roommon.hl7.er7 import components, escape, message
from roommon.hl7.segments import (
    PROFILE_PCD04,
    Envelope,
    coded,
    equipment,
    local_coded,
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


#: Technical alerts: the measurement whose sensor or signal the condition is about, by the
#: condition code's prefix (facet 2 names it; no value is sent for a technical source).
_TECHNICAL_SOURCES: Final[Mapping[str, str]] = {
    "ecg": "heart_rate",
    "spo2": "spo2",
    "nibp": "nibp_systolic",
    "abp": "abp_systolic",
    "cement": "cement_peak_pressure",
}


def _source(event: AlarmEventMessage, codes: CodesTable) -> ObservationCode | None:
    name = ALARM_SOURCES.get(event.code)
    if name is None and event.code.startswith("limit."):
        field, _, _side = event.code.removeprefix("limit.").rpartition("_")
        name = _LIMIT_FIELDS.get(field)
    if name is None and event.kind == "technical":
        name = _TECHNICAL_SOURCES.get(event.code.partition(".")[0])
    return codes.get(name) if name is not None else None


def _event_term(event: AlarmEventMessage, side: str, codes: CodesTable) -> ObservationCode | None:
    """The MDC event term of this alert, or None when MDC has none (roommon's code is sent)."""
    specific = ALERT_EVENTS.get(event.code)
    if specific is not None:
        return codes[specific]
    if side == "L":
        return codes["event_low"]
    if side == "H":
        return codes["event_high"]
    return None


def limit_flags(event: AlarmEventMessage) -> tuple[str, str]:
    """OBX-7 and the HL7 table 0078 flag: which side of its limit the value is."""
    if event.value is None or event.limit is None:
        return "", ""
    if event.value < event.limit:
        return f">{number(event.limit)}", "L"
    return f"<{number(event.limit)}", "H"


def _identification(
    event: AlarmEventMessage, term: ObservationCode | None, codes: CodesTable
) -> tuple[str, str, str]:
    """Facet 1: OBX-2, OBX-3, OBX-5."""
    text = event.message or event.code
    local = (event.code, event.code, LOCAL_SYSTEM)
    if event.kind == "technical":
        value = (
            coded(term, alternate=local, original_text=text)
            if term is not None
            else local_coded(event.code, text)
        )
        return "CWE", coded(codes["alarm"]), value
    return "ST", coded(term or codes["alarm"], alternate=local), escape(text)


def _source_facet(
    event: AlarmEventMessage, source: ObservationCode | None, codes: CodesTable, reference: str
) -> tuple[str, str, str, str, str, str]:
    """Facet 2: OBX-2, OBX-3, OBX-5, OBX-6, OBX-7, OBX-11."""
    if event.kind == "physiological" and source is not None:
        if event.value is not None:
            return "NM", coded(source), number(event.value), unit(source), reference, "R"
        return "", coded(source), "", "", reference, "X"  # the observation has no value now
    named = source or codes.get("mds") or MDS
    value = coded(named, original_text=event.feed or event.check)
    return "CWE", coded(codes["alert_source"]), value, "", "", "R"


def build(env: Envelope, event: AlarmEventMessage, codes: CodesTable) -> str:
    """One ORU^R40 for one alarm transition."""
    sender = env.sender
    source = _source(event, codes)
    base = source.sub_id if source is not None else "1.0.0.0"
    gear = equipment(sender)
    at = event.t
    reference, side = limit_flags(event)
    side = side if source is not None else ""
    flags = [f for f in (side, PRIORITY[event.priority], ALERT_TYPE[event.kind]) if f]
    term = _event_term(event, side, codes)
    id_type, id_code, id_value = _identification(event, term, codes)
    facets = [
        obx_segment(
            2,
            identifier=id_code,
            sub_id=f"{base}.1",
            value_type=id_type,
            value=id_value,
            flags=flags,
            observed=at,
            equipment_id=gear,
        )
    ]
    src_type, src_code, src_value, src_unit, src_range, src_status = _source_facet(
        event, source, codes, reference
    )
    facets.append(
        obx_segment(
            3,
            identifier=src_code,
            sub_id=f"{base}.2",
            value_type=src_type,
            value=src_value,
            units=src_unit,
            reference_range=src_range,
            status=src_status,
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
            ("alarm_priority", PRIORITY[event.priority], ""),
            ("alert_type", ALERT_TYPE[event.kind], ""),
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
            start=event.t,
        ),
        mds_obx(sender, codes.get("mds") or MDS),
        *facets,
    ]
    return message(segments)
