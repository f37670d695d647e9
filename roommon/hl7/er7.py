"""ER7 (pipe-and-hat) encoding: escaping, timestamps, numbers, segments, and reading replies.

The builders compose messages from these pieces; nothing here knows a
message type. Segments end with CR, the only segment terminator HL7 allows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from roommon.core.errors import ProtocolError

FIELD, COMPONENT, REPEAT, ESCAPE, SUBCOMPONENT = "|", "^", "~", "\\", "&"
ENCODING_CHARACTERS = COMPONENT + REPEAT + ESCAPE + SUBCOMPONENT
SEGMENT_END = "\r"

_ESCAPES = {
    ESCAPE: "\\E\\",
    FIELD: "\\F\\",
    COMPONENT: "\\S\\",
    SUBCOMPONENT: "\\T\\",
    REPEAT: "\\R\\",
}


def escape(text: str) -> str:
    """Text as one ER7 value: delimiters escaped, line breaks and controls become spaces."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def components(*parts: str) -> str:
    """Already-escaped components joined with ``^``, trailing empty ones dropped."""
    items = list(parts)
    while items and not items[-1]:
        items.pop()
    return COMPONENT.join(items)


def dtm(t: float) -> str:
    """UTC epoch seconds as an HL7 DTM with milliseconds and the +0000 offset PCD requires."""
    d = datetime.fromtimestamp(t, tz=UTC)
    return d.strftime("%Y%m%d%H%M%S") + f".{d.microsecond // 1000:03d}+0000"


def nm(value: float) -> str:
    """A number as HL7 NM: plain decimal notation (never an exponent), at most 3 decimals."""
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be sent as NM")
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def segment(name: str, fields: Sequence[str]) -> str:
    """``NAME|f1|f2...`` with trailing empty fields dropped (fields are 1-based: fields[0] is 1)."""
    items = list(fields)
    while items and not items[-1]:
        items.pop()
    return FIELD.join([name, *items])


def msh(fields: dict[int, str]) -> str:
    """The MSH segment from its fields by number (MSH-1 and MSH-2 are set here)."""
    last = max(fields)
    values = [fields.get(i, "") for i in range(3, last + 1)]
    return FIELD.join(["MSH", ENCODING_CHARACTERS, *values])


def fields_by_number(values: dict[int, str]) -> list[str]:
    """A segment's fields 1..n from a sparse mapping of field number -> value."""
    if not values:
        return []
    return [values.get(i, "") for i in range(1, max(values) + 1)]


def message(segments: Sequence[str]) -> str:
    return SEGMENT_END.join(segments) + SEGMENT_END


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Segment:
    """One received segment, split into fields (``field(1)`` is the first after the name)."""

    name: str
    values: tuple[str, ...]

    def field(self, n: int) -> str:
        if self.name == "MSH":
            n -= 1  # MSH-1 is the field separator itself, so MSH-n sits at index n-2
        return self.values[n - 1] if 0 < n <= len(self.values) else ""

    def component(self, n: int, c: int) -> str:
        parts = self.field(n).split(COMPONENT)
        return parts[c - 1] if c <= len(parts) else ""


def split(text: str) -> list[Segment]:
    """A received message as segments; raises ProtocolError when it is not ER7 at all."""
    lines = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise ProtocolError("not_hl7", f"reply does not start with an MSH segment: {text[:40]!r}")
    if lines[0][3] != FIELD:
        raise ProtocolError("not_hl7", "reply uses a field separator other than '|'")
    out = []
    for line in lines:
        name, _, rest = line.partition(FIELD)
        out.append(Segment(name, tuple(rest.split(FIELD)) if rest else ()))
    return out
