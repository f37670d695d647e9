"""Operator commands on a room's alarms, validated before anything changes.

Commands arrive on ``roommon/v1/SITE/ROOM/command/CLIENT``. The last topic
level is the sender's MQTT client id; with the broker ACL shipped in
docs/topics.md (``pattern write roommon/v1/+/+/command/%c``) a client can only
publish under its own id, so the identity logged with each command is the
broker's word, not the payload's. Every command gets exactly one reply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roommon.core.errors import CommandError
from roommon.core.phases import PhaseName
from roommon.wire.payloads import ContractVersion, got_type

Action = Literal[
    "acknowledge",
    "reset",
    "audio_pause",
    "alarm_pause",
    "cement_mixed",
    "phase_set",
    "patient_set",
    "patient_clear",
]


class CommandPayload(BaseModel):
    """A command (topic ``.../ROOM/command/CLIENT``, QoS 1, not retained)."""

    # strict: "60" or true is not a duration, "3" not a check number (no coercion).
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, frozen=True, strict=True, defer_build=True
    )

    v: ContractVersion
    id: str = Field(min_length=1, max_length=64, description="Sender's id for the reply.")
    room: str = Field(description="Must equal the room in the topic.")
    action: Action
    alarm_id: str | None = Field(default=None, description="For acknowledge and reset.")
    feed: str | None = Field(default=None, description="For alarm_pause: a feed, or all.")
    duration_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="For audio_pause (default: room's) and alarm_pause.",
    )
    reason: str = Field(default="", max_length=200, description="Free text, logged.")
    phase: PhaseName | None = Field(default=None, description="For phase_set: the phase to enter.")
    patient_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,40}$",
        description="For patient_set: the patient identifier sent in HL7 PID-3.",
    )
    patient_authority: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]{0,40}$",
        description="For patient_set: the assigning authority of patient_id (PID-3.4).",
    )


class CommandReply(BaseModel):
    """The answer to one command (topic ``.../ROOM/command/reply/CLIENT``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    v: Literal[1] = 1
    id: str | None = Field(description="The command's id; null if it could not be read.")
    room: str
    client: str
    action: str | None
    ok: bool
    reason: str = Field(description="'ok' or a stable refusal token.")
    detail: str = ""
    t: float


def parse_command(payload: bytes, *, room: str) -> CommandPayload:
    """Validate a command payload against the topic's room, or raise CommandError."""
    try:
        cmd = CommandPayload.model_validate_json(payload)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(payload)"
        raise CommandError("malformed", f"{loc}: {err['msg']}{got_type(err)}") from exc
    if cmd.room != room:
        raise CommandError(
            "wrong_room", f"command names room {cmd.room!r} on room {room!r}'s topic"
        )
    if cmd.action in ("acknowledge", "reset") and not cmd.alarm_id:
        raise CommandError("malformed", f"alarm_id: required for {cmd.action}")
    if cmd.action == "alarm_pause" and cmd.duration_s is None:
        raise CommandError("malformed", "duration_s: required for alarm_pause")
    if cmd.action == "phase_set" and cmd.phase is None:
        raise CommandError("malformed", "phase: required for phase_set")
    if cmd.action == "patient_set" and cmd.patient_id is None:
        raise CommandError("malformed", "patient_id: required for patient_set")
    return cmd
