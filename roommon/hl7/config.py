"""The ``[hl7]`` section: receivers, what goes to each, who we are, the codes table.

Validated at load like the rest of :mod:`roommon.config` (which embeds this
section); a bad value fails the start with its field path.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roommon.core.ids import Identifier
from roommon.hl7.codes import ObservationCode

MessageKind = Literal["pcd01", "pcd04"]
_EUI64 = re.compile(r"^[0-9A-F]{16}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ReceiverConfig(_Section):
    """One HL7 receiver (an interface engine, an EMR gateway, an alarm manager)."""

    host: str = Field(description="Host name or address of the receiver's MLLP listener.")
    port: int = Field(ge=1, le=65535, description="Its TCP port.")
    tls: bool = Field(default=False, description="MLLP over TLS.")
    ca_file: Path | None = Field(default=None, description="CA bundle for TLS; else system CAs.")
    server_hostname: str | None = Field(
        default=None, description="Name to check the receiver's certificate against (TLS)."
    )
    application: str = Field(default="", description="MSH-5 receiving application.")
    facility: str = Field(default="", description="MSH-6 receiving facility.")
    rooms: list[Identifier] = Field(
        default_factory=list, description="Rooms whose messages go here; empty: every room."
    )
    messages: list[MessageKind] = Field(
        default_factory=lambda: list(get_args(MessageKind)),
        min_length=1,
        description="pcd01: vitals, events, recovery (ORU^R01); pcd04: alarms (ORU^R40).",
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="Seconds to wait for the TCP connection."
    )
    ack_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="Wait this long for the ACK, then reconnect."
    )
    retry_initial_s: float = Field(default=1.0, gt=0, description="First retry delay; doubles.")
    retry_max_s: float = Field(default=60.0, gt=0, description="Cap on the retry delay.")
    reject_alarm_after: int = Field(
        default=3,
        ge=1,
        description="This many AE/AR answers within reject_window_s raise the technical "
        "alarm hl7.rejected in the receiver's rooms.",
    )
    reject_window_s: float = Field(
        default=3600.0, gt=0, description="Seconds over which reject_alarm_after counts."
    )

    def serves(self, room: str, kind: MessageKind) -> bool:
        return kind in self.messages and (not self.rooms or room in self.rooms)


class LocationConfig(_Section):
    """PV1-3 of a room's messages (defaults: point of care and room = the room id)."""

    point_of_care: str = Field(default="", description="PV1-3.1; default: the room id.")
    room: str = Field(default="", description="PV1-3.2; default: the room id.")
    bed: str = Field(default="", description="PV1-3.3.")
    facility: str = Field(default="", description="Default: the sending facility.")


class Hl7Config(_Section):
    sending_application: str = Field(default="ROOMMON", min_length=1, description="MSH-3.1.")
    sending_facility: str = Field(
        default="", description="MSH-4; default: the site id. Also PV1-3.4 by default."
    )
    device_eui64: str | None = Field(
        default=None,
        description="EUI-64 (16 hex digits) of this roommon instance as a device, in MSH-3.2 "
        "and OBX-18; default: derived from the site and instance ids.",
    )
    processing_id: Literal["P", "T", "D"] = Field(
        default="P", description="MSH-11: production, training or debugging."
    )
    acm_profile_oid: Literal[
        "1.3.6.1.4.1.19376.1.6.4.4",
        "1.3.6.1.4.1.19376.1.6.1.4.1",
        "1.3.6.1.4.1.19376.1.6.4.4.1",
    ] = Field(
        default="1.3.6.1.4.1.19376.1.6.4.4",
        description="MSH-21.3 of PCD-04 (ACM) messages: PCD implementations send all three "
        "forms and the Technical Framework's MSH-21 table could not be read (docs/hl7.md); "
        "send what the receiving engine expects.",
    )
    period_s: float = Field(
        default=60.0, ge=5, le=3600, description="Seconds between periodic vitals reports."
    )
    on_nibp: bool = Field(default=True, description="Also report vitals on each NIBP reading.")
    receivers: dict[Identifier, ReceiverConfig] = Field(
        min_length=1, description="MLLP peers (interface engines) by name."
    )
    locations: dict[Identifier, LocationConfig] = Field(
        default_factory=dict, description="Per room PV1-3; rooms not listed use their id."
    )
    codes: dict[str, ObservationCode] = Field(
        default_factory=dict, description="Overrides or additions to the codes table by name."
    )

    @field_validator("device_eui64")
    @classmethod
    def _eui64(cls, value: str | None) -> str | None:
        if value is not None and not _EUI64.match(value):
            raise ValueError("must be 16 upper-case hexadecimal digits")
        return value

    @model_validator(mode="after")
    def _retry(self) -> Hl7Config:
        for name, r in self.receivers.items():
            if r.retry_initial_s > r.retry_max_s:
                raise ValueError(f"receivers: {name}: retry_initial_s exceeds retry_max_s")
        return self

    def eui64(self, site: str, instance: str) -> str:
        if self.device_eui64 is not None:
            return self.device_eui64
        return hashlib.sha256(f"roommon/{site}/{instance}".encode()).hexdigest()[:16].upper()
