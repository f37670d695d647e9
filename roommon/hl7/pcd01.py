"""PCD-01 (DEC, Communicate PCD Data): ``ORU^R01`` observation reports.

Pure builders: from the payload models the daemon already publishes over MQTT
(:class:`~roommon.wire.payloads.RoomStateMessage`, :class:`~roommon.wire.payloads.RoomEventMessage`,
:class:`~roommon.wire.timer.TimerEventMessage`) to the observations of
one report, and from those to one ER7 message. One OBR per message; OBX 1 is
the device (MDS), then one OBX per observation in containment order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from roommon.hl7.codes import MDS, VITALS, CodesTable
from roommon.hl7.er7 import escape, message
from roommon.hl7.segments import (
    MONITORING_OF_PATIENT,
    PROFILE_PCD01,
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
from roommon.wire.payloads import RoomEventMessage, RoomStateMessage
from roommon.wire.timer import TimerEventMessage

MESSAGE_TYPE = "ORU^R01^ORU_R01"

#: Recovery timer events reported over PCD-01 (the others are scheduling detail).
RECOVERY_EVENTS = frozenset({"started", "restarted", "check_done", "ended"})


@dataclass(frozen=True, slots=True)
class Observation:
    """One OBX to be: a codes-table name, its value (None: not available) and its time."""

    name: str
    value: float | str | None
    t: float


def vitals(state: RoomStateMessage) -> list[Observation]:
    """The room's current measurements and phase, as the periodic/NIBP report carries them."""
    obs = [
        Observation(name, m.value, m.t)
        for name in VITALS
        if (m := state.measurements.get(name)) is not None
    ]
    obs.append(Observation("procedure_phase", state.phase, state.phase_since))
    return obs


def room_event(msg: RoomEventMessage) -> list[Observation] | None:
    """The observations a room event is reported with, or None when it is not reported."""
    data = msg.data
    if msg.name == "phase.changed" and isinstance(data.get("to"), str):
        return [Observation("procedure_phase", data["to"], msg.t)]
    if msg.name == "cement.injection_ended":
        obs = []
        if isinstance(data.get("injection"), int):
            obs.append(Observation("cement_injection", float(data["injection"]), msg.t))
        if _is_number(data.get("peak_kpa")):
            obs.append(Observation("cement_peak_pressure", float(data["peak_kpa"]), msg.t))
        if _is_number(data.get("started_t")) and _is_number(data.get("last_injecting_t")):
            duration = float(data["last_injecting_t"]) - float(data["started_t"])
            obs.append(Observation("cement_injection_duration", duration, msg.t))
        return obs or None
    return None


def timer_event(msg: TimerEventMessage) -> list[Observation] | None:
    """A recovery start, check done (with the vitals recorded with it) or end."""
    if msg.event not in RECOVERY_EVENTS:
        return None
    obs = [Observation("recovery_event", msg.event, msg.t)]
    if msg.check_no is not None:
        obs.append(Observation("recovery_check", float(msg.check_no), msg.t))
    recorded = msg.data.get("vitals")
    if isinstance(recorded, Mapping):
        obs.extend(_recorded(recorded, msg.t))
    return obs


def _recorded(values: Mapping[str, Any], t: float) -> list[Observation]:
    return [
        Observation(name, float(v) if _is_number(v) else None, t)
        for name in VITALS
        if name in values
        for v in (values[name],)
    ]


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def observation_segments(
    env: Envelope, observations: Sequence[Observation], codes: CodesTable, *, first_set_id: int
) -> list[str]:
    """OBX segments for the observations the codes table knows, in the given order."""
    out = []
    set_id = first_set_id
    for o in observations:
        code = codes.get(o.name)
        if code is None:
            continue
        if o.value is None:
            value_type, value, status = "", "", "X"  # X: cannot be obtained right now
        elif isinstance(o.value, str):
            value_type, value, status = "ST", escape(o.value), "R"
        else:
            value_type, value, status = "NM", number(o.value), "R"
        out.append(
            obx_segment(
                set_id,
                identifier=coded(code),
                sub_id=code.sub_id,
                value_type=value_type,
                value=value,
                units=unit(code),
                status=status,
                observed=o.t,
                method=code.observation_method if o.value is not None else "",
                equipment_id=equipment(env.sender),
            )
        )
        set_id += 1
    return out


def build(
    env: Envelope,
    *,
    report_id: str,
    observations: Sequence[Observation],
    codes: CodesTable,
    start: float,
    end: float | None = None,
) -> str:
    """One ORU^R01: MSH, PID, PV1, one OBR (``report_id`` as placer and filler), OBXs."""
    segments = [
        msh_segment(env, message_type=MESSAGE_TYPE, profile=PROFILE_PCD01),
        pid_segment(env.patient),
        pv1_segment(env.location),
        obr_segment(
            env.sender,
            placer=report_id,
            filler=report_id,
            service=MONITORING_OF_PATIENT,
            start=start,
            end=end,
        ),
        mds_obx(env.sender, codes.get("mds") or MDS),
        *observation_segments(env, observations, codes, first_set_id=2),
    ]
    return message(segments)
