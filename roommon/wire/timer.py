"""The recovery timer's MQTT contract: retained timer state, timer events, nurse commands.

The daemon publishes :class:`TimerMessage` retained on ``roommon/v1/SITE/ROOM/timer``
(what a nurse station shows), every recovery timer event as a
:class:`TimerEventMessage` (QoS 1) on ``roommon/v1/SITE/ROOM/timer/event``, and
accepts :class:`NurseCommand` payloads on the room's command topic
(``roommon/v1/SITE/ROOM/command/CLIENT``, the same topic and reply as the alarm
commands). Building these from a timer, and applying a command to one, is
:mod:`roommon.recovery.messages`' job.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roommon.core.errors import CommandError
from roommon.core.phases import MAX_PLAN_S
from roommon.wire.payloads import AlarmSummary, ContractVersion, got_type

TimerState = Literal["idle", "unconfirmed", "interrupted", "confirmed", "target_reached", "ended"]
EndReason = Literal["target", "early", "cancelled"]
EventKind = Literal[
    "started",
    "restarted",
    "interrupted",
    "confirmed",
    "check_due",
    "check_overdue",
    "check_done",
    "min_reached",
    "target_reached",
    "extended",
    "ended",
    "injection_ignored",
    "clock_jump",
]
CheckStatus = Literal["scheduled", "due", "overdue", "done"]
RecoveryAction = Literal[
    "recovery_confirm", "check_done", "recovery_extend", "recovery_end", "recovery_cancel"
]
RECOVERY_ACTIONS: frozenset[str] = frozenset(get_args(RecoveryAction))


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class CheckInfo(_Out):
    """One scheduled check of the running recovery."""

    no: int = Field(ge=1, description="Check number, 1 = first after the start.")
    due: float = Field(description="UTC epoch seconds when the check is due.")
    due_time: str = Field(description="Same instant, ISO 8601 UTC.")
    overdue_at: float = Field(description="UTC epoch seconds when it becomes overdue.")
    status: CheckStatus
    done_t: float | None = Field(default=None, description="UTC epoch when it was done.")
    done_time: str | None = None
    done_by: str | None = Field(default=None, description="Client id of the nurse.")
    vitals: dict[str, float | None] | None = Field(
        default=None, description="Measurements at the time of the check, if recorded."
    )
    note: str = ""


class ExtensionInfo(_Out):
    t: float = Field(description="UTC epoch seconds of the extension command.")
    time: str
    seconds: float = Field(gt=0)
    reason: str
    by: str


class TimerAlarm(_Out):
    """An active alarm of the room, shown on the timer (abnormal vitals during recovery)."""

    code: str
    priority: Literal["low", "medium", "high"]
    since: float = Field(description="UTC epoch seconds when the alarm was raised.")
    since_time: str | None = Field(default=None, description="Same instant, ISO 8601 UTC.")
    feed: str = Field(default="", description="The feed the alarm is about.")
    message: str = ""

    @classmethod
    def from_summary(cls, summary: AlarmSummary) -> TimerAlarm:
        from roommon.core.clock import iso

        return cls(
            code=summary.code,
            priority=summary.priority,
            since=summary.since,
            since_time=iso(summary.since),
            feed=summary.feed,
            message=summary.message,
        )


class EndInfo(_Out):
    t: float
    time: str
    reason: EndReason
    by: str | None = Field(description="Client id; null when the target ended it.")
    detail: str = ""


class TimerMessage(_Out):
    """Retained recovery timer of a room (topic ``roommon/v1/SITE/ROOM/timer``).

    Deadlines are absolute (UTC epoch and ISO); remaining times are as of
    ``t`` and a display recomputes them from the deadlines and its own clock.
    """

    v: Literal[1] = 1
    site: str
    room: str
    t: float = Field(description="UTC epoch seconds of this snapshot.")
    time: str
    seq: int = Field(ge=0, description="Seq of the room's last timer event.")
    state: TimerState
    recovery_id: str | None = None
    procedure: str | None = None
    started: float | None = Field(
        default=None, description="Start of the wait: end of the last injection (UTC epoch)."
    )
    started_time: str | None = None
    first_started: float | None = Field(
        default=None, description="End of the first injection of this recovery."
    )
    first_started_time: str | None = None
    injections: int = Field(default=0, ge=0, description="Injections seen in this recovery.")
    restarts: int = Field(default=0, ge=0, description="Times a new injection restarted it.")
    confirmed: float | None = Field(default=None, description="UTC epoch of confirmation.")
    confirmed_time: str | None = None
    confirmed_by: str | None = Field(default=None, description="Client id, or 'auto'.")
    auto_confirm_at: float | None = Field(
        default=None, description="When it confirms itself without a new injection."
    )
    auto_confirm_at_time: str | None = None
    min_deadline: float | None = None
    min_deadline_time: str | None = None
    min_remaining_s: float | None = Field(default=None, ge=0)
    min_reached: bool = False
    target_deadline: float | None = Field(default=None, description="Including extensions.")
    target_deadline_time: str | None = None
    target_remaining_s: float | None = Field(default=None, ge=0)
    target_reached: bool = False
    extended_s: float = Field(default=0.0, ge=0, description="Sum of the extensions.")
    next_check: CheckInfo | None = Field(
        default=None, description="Earliest check not done (may already be due or overdue)."
    )
    overdue_checks: list[int] = Field(default_factory=list, description="Overdue, not done.")
    checks: list[CheckInfo] = Field(default_factory=list)
    extensions: list[ExtensionInfo] = Field(default_factory=list)
    alarms: list[TimerAlarm] = Field(default_factory=list)
    ended: EndInfo | None = None


class TimerEventMessage(_Out):
    """One recovery timer event (topic ``roommon/v1/SITE/ROOM/timer/event``, QoS 1)."""

    v: Literal[1] = 1
    event_id: str = Field(description="Unique and stable across re-emission; dedupe on it.")
    seq: int = Field(ge=1, description="Per-room timer event sequence number.")
    site: str
    room: str
    recovery_id: str | None
    generation: int = Field(ge=0, description="Restarts before this event.")
    event: EventKind
    t: float = Field(description="UTC epoch seconds when it happened or fell due.")
    time: str
    emitted: float = Field(description="UTC epoch seconds when the daemon noticed it.")
    late: bool = Field(
        description="A deadline (check due or overdue, minimum or target reached, automatic "
        "confirmation) noticed more than 5 s after it fell due: the daemon was down or the "
        "clock jumped. Never set for events stamped with their cause's time (a recovery "
        "starts at the end of the last injection, known only when the end is detected)."
    )
    check_no: int | None = None
    actor: str | None = Field(default=None, description="Client id behind a command.")
    reason: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class NurseCommand(BaseModel):
    """A recovery command on ``roommon/v1/SITE/ROOM/command/CLIENT`` (QoS 1).

    Same envelope (``v``, ``id``, ``room``, ``action``) and reply as the alarm
    commands; the sender is the topic's client id, never a payload field.
    """

    # strict: "60" or true is not a duration, "3" not a check number (no coercion).
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, frozen=True, strict=True, defer_build=True
    )

    v: ContractVersion
    id: str = Field(min_length=1, max_length=64, description="Sender's id for the reply.")
    room: str = Field(description="Must equal the room in the topic.")
    action: RecoveryAction
    check_no: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="check_done: the check; omitted: the earliest one that may be done now.",
    )
    vitals: bool = Field(
        default=False, description="check_done: record the room's current measurements."
    )
    note: str = Field(default="", max_length=200, description="check_done: free text.")
    seconds: float | None = Field(
        default=None, gt=0, le=MAX_PLAN_S, description="recovery_extend: seconds to add."
    )
    reason: str = Field(
        default="",
        max_length=200,
        description="Required for recovery_extend and recovery_end; logged.",
    )


_VALUE_FIELDS = frozenset({"check_no", "seconds", "vitals"})


def parse_nurse_command(payload: bytes, *, room: str) -> NurseCommand:
    """Validate a recovery command payload against the topic's room, or raise CommandError."""
    try:
        cmd = NurseCommand.model_validate_json(payload)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(payload)"
        reason = "bad_value" if err["loc"] and err["loc"][0] in _VALUE_FIELDS else "malformed"
        raise CommandError(reason, f"{loc}: {err['msg']}{got_type(err)}") from exc
    if cmd.room != room:
        raise CommandError(
            "wrong_room", f"command names room {cmd.room!r} on room {room!r}'s topic"
        )
    return cmd
