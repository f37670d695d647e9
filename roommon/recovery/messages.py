"""Recovery timer events and commands, to and from the wire models of :mod:`roommon.wire.timer`.

:func:`event_message` turns a :class:`~roommon.recovery.timer.TimerEvent` into
its payload with a stable id; :func:`apply_command` validates a nurse command
against a timer and applies it; a refusal is a
:class:`~roommon.core.errors.CommandError` whose reason goes back to the sender,
and the timer is left unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from roommon.core.errors import CommandError
from roommon.wire.timer import NurseCommand, TimerEventMessage

if TYPE_CHECKING:
    from roommon.recovery.timer import RecoveryTimer, TimerEvent

#: Namespace of the deterministic event ids (uuid5), so an event re-emitted
#: after a crash carries the id it had the first time and subscribers dedupe it.
EVENT_ID_NAMESPACE = uuid.UUID("6f0d5a7e-3c1b-4e0f-9a57-2b8f4c1d9e61")


#: A deadline noticed this long after it fell due was missed (daemon down, clock jump).
LATE_AFTER_S = 5.0

#: The events that fall due at a deadline the timer set itself; only these can be
#: noticed late. The others (``started``, ``restarted``, ``interrupted``, a nurse's
#: command) are stamped with the time of their cause: a recovery starts at the end
#: of the last injection, which the cement check can only know ``end_after_s``
#: (60 s) later, and that back-dating is by design, not lateness.
DEADLINE_KINDS: frozenset[str] = frozenset(
    {"check_due", "check_overdue", "min_reached", "target_reached"}
)


def noticed_late(event: TimerEvent) -> bool:
    """True when a deadline (or an automatic confirmation) was noticed more than
    :data:`LATE_AFTER_S` after it fell due: the daemon was down or the clock jumped."""
    deadline = event.kind in DEADLINE_KINDS or (
        event.kind == "confirmed" and bool(event.data.get("auto"))
    )
    return deadline and event.emitted - event.t > LATE_AFTER_S


def event_message(site: str, room: str, event: TimerEvent) -> TimerEventMessage:
    from roommon.core.clock import iso

    key = f"{site}/{room}/{event.recovery_id}/{event.seq}/{event.kind}"
    return TimerEventMessage(
        event_id=str(uuid.uuid5(EVENT_ID_NAMESPACE, key)),
        seq=event.seq,
        site=site,
        room=room,
        recovery_id=event.recovery_id,
        generation=event.generation,
        event=event.kind,
        t=event.t,
        time=iso(event.t),
        emitted=event.emitted,
        late=noticed_late(event),
        check_no=event.check_no,
        actor=event.actor,
        reason=event.reason,
        data=dict(event.data),
    )


def apply_command(
    timer: RecoveryTimer,
    command: NurseCommand,
    *,
    now: float,
    by: str,
    vitals: Mapping[str, float | None] | None = None,
) -> list[TimerEvent]:
    """Apply a validated nurse command at ``now`` on behalf of client ``by``.

    ``vitals`` are the room's current measurements (name -> value); they are
    recorded with a check only when the command asks for them. Returns the
    events (including any deadline that fell due before the command); raises
    :class:`CommandError` and changes nothing when the command is refused.
    """
    action = command.action
    if action == "recovery_confirm":
        return timer.confirm(at=now, by=by)
    if action == "check_done":
        if command.vitals and vitals is None:
            raise CommandError("not_allowed", "vitals: no measurements are available")
        return timer.check_done(
            check_no=command.check_no,
            at=now,
            by=by,
            vitals=dict(vitals) if command.vitals and vitals is not None else None,
            note=command.note,
        )
    if action == "recovery_extend":
        if command.seconds is None:
            raise CommandError("bad_value", "seconds: required for recovery_extend")
        return timer.extend(seconds=command.seconds, reason=command.reason, by=by, at=now)
    if action == "recovery_end":
        return timer.end_early(reason=command.reason, by=by, at=now)
    if action == "recovery_cancel":
        return timer.cancel(reason=command.reason, by=by, at=now)
    raise CommandError(
        "malformed", f"action: unknown recovery action {action!r}"
    )  # pragma: no cover
