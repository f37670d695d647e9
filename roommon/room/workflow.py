"""Procedure phases of a room: what the room is doing now, and which alarm profile applies.

idle -> patient_connected (first physiological data) -> procedure (cement
mixed, or an operator's ``procedure_start``) -> cement_injection (injection
started) -> procedure (injection ended; more vertebrae may follow) ->
recovery (the recovery timer started) -> ready_for_discharge (the timer
reached its target or a nurse ended it) -> idle (every feed silent for the
room's ``idle_after_s``: the patient was disconnected and has left).
Operators may also set a phase directly (``phase_set``) when detection cannot
know (a procedure without cement monitoring). Each phase may carry an alarm
profile (``[rooms.ROOM.profiles.PHASE]``) that overrides alarm defaults:
cement alarms only matter while cement goes in, recovery may use its own SpO2
delays.
"""

from __future__ import annotations

from roommon.core.events import CementMixed, InjectionEnded, InjectionStarted, RoomEvent
from roommon.core.log import get_logger
from roommon.core.phases import Phase

log = get_logger(__name__)


#: Room event -> phases it moves from -> phase it moves to.
_ON_EVENT: dict[type[RoomEvent], tuple[frozenset[Phase], Phase]] = {
    CementMixed: (
        frozenset({Phase.IDLE, Phase.PATIENT_CONNECTED}),
        Phase.PROCEDURE,
    ),
    InjectionStarted: (
        frozenset({Phase.IDLE, Phase.PATIENT_CONNECTED, Phase.PROCEDURE, Phase.RECOVERY}),
        Phase.CEMENT_INJECTION,
    ),
    InjectionEnded: (frozenset({Phase.CEMENT_INJECTION}), Phase.PROCEDURE),
}

#: Recovery timer event kind -> phase it moves to (from any phase but idle).
_ON_TIMER: dict[str, Phase] = {
    "started": Phase.RECOVERY,
    "restarted": Phase.RECOVERY,
    "target_reached": Phase.READY_FOR_DISCHARGE,
}


class RoomWorkflow:
    """The phase state machine of one room; every change is returned for publishing."""

    __slots__ = ("phase", "room", "since")

    def __init__(self, *, room: str, phase: Phase = Phase.IDLE, since: float = 0.0) -> None:
        self.room = room
        self.phase = phase
        self.since = since

    def _move(self, to: Phase, t: float, cause: str) -> tuple[Phase, Phase] | None:
        if to == self.phase:
            return None
        before, self.phase, self.since = self.phase, to, t
        log.info("phase_changed", room=self.room, frm=before.value, to=to.value, cause=cause)
        return before, to

    def on_data(self, t: float) -> tuple[Phase, Phase] | None:
        if self.phase == Phase.IDLE:
            return self._move(Phase.PATIENT_CONNECTED, t, "data")
        return None

    def on_room_event(self, event: RoomEvent) -> tuple[Phase, Phase] | None:
        rule = _ON_EVENT.get(type(event))
        if rule is None or self.phase not in rule[0]:
            return None
        return self._move(rule[1], event.t, event.name)

    def on_timer(self, kind: str, reason: str, t: float) -> tuple[Phase, Phase] | None:
        if kind == "ended":
            to = Phase.PROCEDURE if reason == "cancelled" else Phase.READY_FOR_DISCHARGE
            return self._move(to, t, f"recovery {reason}")
        to_phase = _ON_TIMER.get(kind)
        if to_phase is None or self.phase == Phase.IDLE:
            return None
        return self._move(to_phase, t, f"recovery {kind}")

    def on_feeds_gone(self, t: float) -> tuple[Phase, Phase] | None:
        """Every feed has been silent for the room's idle time: the patient has left."""
        if self.phase in (Phase.PATIENT_CONNECTED, Phase.READY_FOR_DISCHARGE):
            return self._move(Phase.IDLE, t, "feeds disconnected")
        return None

    def set(self, to: Phase, t: float, by: str) -> tuple[Phase, Phase] | None:
        return self._move(to, t, f"set by {by}")
