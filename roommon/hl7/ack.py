"""Reading what a receiver answers: original-mode ``ACK``, and ACM's ``ORA^R41`` (PCD-05).

A receiver answers each message with an ``ACK`` whose MSA-1 is AA (accepted),
AE (error) or AR (rejected), MSA-2 the control id it answers. An Alarm
Manager may answer a PCD-04 report with ``ORA^R41`` instead (the ACM
acknowledgement carrying the same MSA), and may also send ``ORA^R41``
dissemination status reports of its own (PCD-05: alert delivered, read,
accepted...), which carry no MSA; :func:`parse_reply` tells the two apart
and :func:`ack` builds the original-mode ACK roommon sends back to those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from roommon.core.errors import ProtocolError
from roommon.hl7.er7 import Segment, components, dtm, escape, message, msh, segment, split

AckCode = Literal["AA", "AE", "AR", "CA", "CE", "CR"]
_CODES: dict[str, AckCode] = {c: c for c in get_args(AckCode)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One message received on a sender connection."""

    message_type: str  # MSH-9.1^9.2, e.g. "ACK^R01", "ORA^R41"
    control_id: str  # MSH-10 of the reply itself
    ack_code: AckCode | None  # MSA-1; None: a status report, not an acknowledgement
    acknowledges: str  # MSA-2: the control id it answers ("" without MSA)
    text: str  # MSA-3 / ERR-8: what the receiver says
    alarm_id: str = ""  # OBR-3.1 of an ORA^R41 status report
    status: str = ""  # PRT-4 (or OBX-5) of a status report: "Delivered", "Read"...

    @property
    def accepted(self) -> bool:
        return self.ack_code in ("AA", "CA")


def parse_reply(text: str) -> Reply:
    """Parse a receiver's message; raise ProtocolError when it is neither ACK nor ORA."""
    segments = split(text)
    head = segments[0]
    msg_type = "^".join(p for p in head.field(9).split("^")[:2] if p)
    if not msg_type.startswith(("ACK", "ORA")):
        raise ProtocolError("unexpected_message", f"MSH-9 is {msg_type!r}, not ACK or ORA")
    by_name: dict[str, Segment] = {}
    for s in segments:
        by_name.setdefault(s.name, s)
    msa = by_name.get("MSA")
    err = by_name.get("ERR")
    code: AckCode | None = None
    acknowledges = text_ = ""
    if msa is not None:
        raw = msa.field(1)
        if raw not in _CODES:
            known = ", ".join(sorted(_CODES))
            raise ProtocolError("bad_ack", f"MSA-1 is {raw!r}, not one of {known}")
        code = _CODES[raw]
        acknowledges = msa.field(2)
        text_ = msa.field(3)
    elif msg_type.startswith("ACK"):
        raise ProtocolError("bad_ack", "ACK without an MSA segment")
    if err is not None and not text_:
        text_ = err.field(8) or err.component(3, 2)
    obr = by_name.get("OBR")
    prt = by_name.get("PRT")
    return Reply(
        message_type=msg_type,
        control_id=head.field(10),
        ack_code=code,
        acknowledges=acknowledges,
        text=text_,
        alarm_id=obr.component(3, 1) if obr is not None else "",
        status=prt.field(4) if prt is not None else "",
    )


def ack(reply: Reply, *, application: str, facility: str, now: float, control_id: str) -> str:
    """The original-mode ACK (AA) roommon sends for a status report it received."""
    trigger = reply.message_type.split("^")[1] if "^" in reply.message_type else ""
    return message(
        [
            msh(
                {
                    3: escape(application),
                    4: escape(facility),
                    7: dtm(now),
                    9: components("ACK", trigger, "ACK"),
                    10: escape(control_id),
                    11: "P",
                    12: "2.6",
                }
            ),
            segment("MSA", ["AA", escape(reply.control_id)]),
        ]
    )
