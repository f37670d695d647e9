"""Room events: typed facts that one part of a room tells the others.

A check (or an operator command) emits an event; the room pipeline hands it
to the phase workflow, the recovery timer and the other checks, and publishes
it on ``.../ROOM/event``. Consumers match on the class, never on a name
string; :attr:`RoomEvent.name` and :meth:`RoomEvent.data` exist only for the
published payload (whose contract is unchanged).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from roommon.core.model import DataOrigin
from roommon.core.phases import Phase


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomEvent:
    """Base of every room event: when, from which feed ("" for the room), data origin."""

    name: ClassVar[str] = "event"
    t: float
    feed: str = ""
    origin: DataOrigin = DataOrigin.LIVE

    def data(self) -> dict[str, Any]:
        """The event's own fields, as published in the payload's ``data``."""
        skip = {"t", "feed", "origin"}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CementMixed(RoomEvent):
    """Cement was mixed (operator command); the cement working-time clock starts."""

    name: ClassVar[str] = "cement.mixed"
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionStarted(RoomEvent):
    name: ClassVar[str] = "cement.injection_started"
    injection: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionEnded(RoomEvent):
    """An injection ended; ``t`` is when the end was detected, ``last_injecting_t`` when
    cement last went in (the recovery timer starts from the latter)."""

    name: ClassVar[str] = "cement.injection_ended"
    injection: int
    started_t: float
    last_injecting_t: float
    peak_kpa: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CementPhaseChanged(RoomEvent):
    """The cement check's own injection state (idle, injecting, paused, ended)."""

    name: ClassVar[str] = "cement.phase"
    phase: str
    previous: str
    injection: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseChanged(RoomEvent):
    """The room's procedure phase changed."""

    name: ClassVar[str] = "phase.changed"
    before: Phase
    after: Phase

    def data(self) -> dict[str, Any]:
        return {"from": self.before.value, "to": self.after.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientSet(RoomEvent):
    """An operator named the room's current patient (the identifier HL7 messages carry)."""

    name: ClassVar[str] = "patient.set"
    patient_id: str
    authority: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientCleared(RoomEvent):
    """An operator ended the room's patient association."""

    name: ClassVar[str] = "patient.cleared"
    by: str
