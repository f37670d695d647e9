"""The segments PCD-01 and PCD-04 share: MSH, PID, PV1, OBR and OBX, from typed parts.

Field choices follow the IHE PCD Technical Framework, Vol. 2, appendix B
(common segment descriptions); docs/hl7.md annotates each field.
"""

from __future__ import annotations

from dataclasses import dataclass

from roommon.hl7.codes import LOCAL_SYSTEM, ObservationCode
from roommon.hl7.er7 import (
    REPEAT,
    components,
    dtm,
    escape,
    fields_by_number,
    msh,
    nm,
    segment,
)

HL7_VERSION = "2.6"
#: MSH-21 of PCD-01 (DEC profile, ORU^R01).
PROFILE_PCD01 = ("IHE_PCD_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.1.1.1", "ISO")
#: MSH-21 of PCD-04 (ACM profile, ORU^R40).
PROFILE_PCD04 = ("IHE_PCD_ACM_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.4.4", "ISO")
#: OBR-4 of a PCD-01 report: SNOMED CT "monitoring of patient", as the PCD examples use.
MONITORING_OF_PATIENT = ("182777000", "monitoring of patient", "SCT")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sender:
    """Who sends: MSH-3 (application, with the device's EUI-64) and MSH-4 (facility)."""

    application: str
    facility: str
    eui64: str  # 16 upper-case hex digits: this roommon instance as a device
    processing_id: str = "P"
    acm_profile_oid: str = "1.3.6.1.4.1.19376.1.6.4.4"  # MSH-21.3 of PCD-04 (config)


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """MSH-5 and MSH-6: the receiving application and facility, as the engine expects them."""

    application: str = ""
    facility: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """PV1-3 (PL): point of care ^ room ^ bed ^ facility."""

    point_of_care: str
    room: str
    bed: str = ""
    facility: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Patient:
    """PID-3 (CX): identifier ^^^ assigning authority ^ identifier type."""

    id: str
    authority: str = ""
    id_type: str = "MR"


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """Everything outside the OBR/OBX content of one message."""

    sender: Sender
    destination: Destination
    control_id: str
    created: float  # MSH-7
    location: Location
    patient: Patient | None = None


def msh_segment(env: Envelope, *, message_type: str, profile: tuple[str, ...]) -> str:
    s, d = env.sender, env.destination
    return msh(
        {
            3: components(escape(s.application), s.eui64, "EUI-64"),
            4: escape(s.facility),
            5: escape(d.application),
            6: escape(d.facility),
            7: dtm(env.created),
            9: message_type,
            10: escape(env.control_id),
            11: s.processing_id,
            12: HL7_VERSION,
            15: "AL",  # accept acknowledgement: always (original mode ACK expected)
            16: "NE",  # application acknowledgement: never
            18: "UNICODE UTF-8",
            21: components(*profile),
        }
    )


def pid_segment(patient: Patient | None) -> str:
    if patient is None:
        # Location only (PCD-01 allows it): no identifier, a name of type U (unspecified).
        return segment("PID", fields_by_number({5: "^^^^^^U"}))
    ident = components(escape(patient.id), "", "", escape(patient.authority), patient.id_type)
    return segment("PID", fields_by_number({3: ident, 5: "^^^^^^U"}))


def pv1_segment(loc: Location) -> str:
    place = components(
        escape(loc.point_of_care), escape(loc.room), escape(loc.bed), escape(loc.facility)
    )
    return segment("PV1", fields_by_number({2: "I", 3: place}))


def entity(sender: Sender, ident: str) -> str:
    """An EI naming something of this device: id ^ application ^ EUI-64 ^ EUI-64."""
    return components(escape(ident), escape(sender.application), sender.eui64, "EUI-64")


def equipment(sender: Sender) -> str:
    """OBX-18: the equipment instance identifier (this device's EUI-64)."""
    return components(sender.eui64, "", sender.eui64, "EUI-64")


def obr_segment(
    sender: Sender,
    *,
    placer: str,
    filler: str,
    service: tuple[str, ...],
    start: float,
    end: float | None = None,
) -> str:
    values = {
        1: "1",
        2: entity(sender, placer),
        3: entity(sender, filler),
        4: components(*(escape(x) for x in service)),
        7: dtm(start),
    }
    if end is not None:
        values[8] = dtm(end)
    return segment("OBR", fields_by_number(values))


def coded(
    code: ObservationCode,
    *,
    alternate: tuple[str, str, str] | None = None,
    original_text: str = "",
) -> str:
    """A CWE: code ^ name ^ system, optionally ^ alternate code ^ text ^ system, and CWE-9
    (original text) after the two empty coding-system versions."""
    alt = alternate or ("", "", "")
    parts = [code.code, code.name, code.system, *alt]
    if original_text:
        parts += ["", "", original_text]
    return components(*(escape(x) for x in parts))


def local_coded(code: str, original_text: str = "") -> str:
    """A CWE in roommon's local coding system (99RMN): code ^ code ^ 99RMN [^...^ text]."""
    parts = [code, code, LOCAL_SYSTEM]
    if original_text:
        parts += ["", "", "", "", "", original_text]
    return components(*(escape(x) for x in parts))


def unit(code: ObservationCode) -> str:
    """OBX-6: the MDC unit, with the UCUM unit as the alternate identifier."""
    if not code.unit_code:
        return ""
    return components(code.unit_code, code.unit_name, "MDC", code.ucum, code.ucum, "UCUM")


def obx_segment(
    set_id: int,
    *,
    identifier: str,
    sub_id: str,
    value_type: str = "",
    value: str = "",
    units: str = "",
    reference_range: str = "",
    flags: list[str] | None = None,
    status: str = "R",
    observed: float | None = None,
    observer: str = "",
    method: str = "",
    equipment_id: str = "",
) -> str:
    values = {
        1: str(set_id),
        2: value_type if value else "",
        3: identifier,
        4: sub_id,
        5: value,
        6: units if value else "",
        7: reference_range,
        8: REPEAT.join(flags or []),
        11: status,
        14: dtm(observed) if observed is not None else "",
        16: observer,
        17: method,
        18: equipment_id,
    }
    return segment("OBX", fields_by_number(values))


def mds_obx(sender: Sender, mds: ObservationCode) -> str:
    """The device (MDS) OBX that opens the observations: no value, status X."""
    return obx_segment(
        1,
        identifier=coded(mds),
        sub_id="1.0.0.0",
        status="X",
        equipment_id=equipment(sender),
    )


def number(value: float) -> str:
    return nm(value)
