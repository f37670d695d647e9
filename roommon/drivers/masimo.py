"""Driver for Masimo Radical-7 / Rad-97 / Rad-8 ASCII serial output (``protocol = "masimo_ascii"``).

Sits between the serial transport (bytes) and the room pipeline: one text line
per second in, one SpO2 :class:`~roommon.core.model.NumericReading` out, with the
device's alarm and exception bits as technical ``flags``.

Sources: Masimo Radical-7 Operator's Manual, "Serial interface" (ASCII 1
output: 9600 baud, 8 data bits, no parity, 1 stop bit, one line per second);
Masimo Rad-8 Operator's Manual section 4 ("ASCII 1" mode, as used by
remkolems/masimo-datacapture); and the MD PnP OpenICE Radical driver
``poxrad_discrete.h``, which gives the example lines and the meaning of every
``ALARM`` and ``EXC`` bit used below. Example (Radical-7)::

    12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0%
    SPMET=00.5% DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820<CR><LF>

(one line on the wire). Radical-5 lines carry fewer fields
(``... SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800``). A value the device
cannot give is filled with ``-`` (``SPO2=---%``, ``PI=--.--%``) and becomes
NaN, never 0. ``ALARM`` (4 hex digits) and ``EXC`` (6 hex digits) are bit
fields.

The line carries the device's local date and time without a time zone, from a
clock nobody sets; readings are stamped with the receiving clock instead.
The format has no checksum: a line with non-printable bytes (line noise) is
rejected whole rather than half-trusted. An unknown field (newer firmware)
is counted and logged (``unknown_field``) and the rest of the line is kept.
"""

from __future__ import annotations

import math
import re
from typing import Final

from roommon.core.errors import ProtocolError
from roommon.core.model import NumericReading, SignalKind
from roommon.drivers.base import DriverSample, LineDriver

# A lookahead, so that overlapping candidates are all found: a cut-off time stamp
# glued to the next line ("...14:30:0" + "07/15/25 ...") must not hide the real one.
_START: Final = re.compile(rb"(?=\d\d/\d\d/\d\d \d\d:\d\d:\d\d)")
_STAMP_LEN: Final = 17
_PRINTABLE: Final = re.compile(rb"[\x20-\x7e\t]*")
_DECIMAL: Final = re.compile(r"\+?\d{1,4}(?:\.\d{1,3})?")
_UNAVAILABLE: Final = re.compile(r"[+-]?[-.]+")
_HEX: Final = re.compile(r"[0-9A-Fa-f]{1,8}")

#: Fields mapped to reading values.
VALUE_FIELDS: Final = {"SPO2": "spo2", "BPM": "pulse_rate", "PI": "perfusion_index"}
#: Fields documented for Radical-5/7 that roommon receives but does not use.
IGNORED_FIELDS: Final = frozenset({"SN", "SPCO", "SPMET", "DESAT", "PIDELTA", "PVI"})

#: ALARM bits (device alarm status). The device's own physiological limit
#: alarms are passed on as ``device_alarm_*`` flags for display; roommon's
#: checks apply their own limits to the values.
ALARM_BITS: Final = {
    0x0001: "device_alarm_spo2_high",
    0x0002: "device_alarm_spo2_low",
    0x0004: "device_alarm_pr_high",
    0x0008: "device_alarm_pr_low",
    0x0010: "device_alarm_active",
    0x0020: "device_alarm_silenced",
    0x0040: "low_battery",
    0x0100: "device_alarm_spco_high",
    0x0200: "device_alarm_spco_low",
    0x0400: "device_alarm_spmet_high",
    0x0800: "device_alarm_spmet_low",
    0x1000: "device_alarm_desat",
    0x2000: "device_alarm_pi_delta",
}

#: EXC bits (exceptions: the device's technical states).
EXCEPTION_BITS: Final = {
    0x000001: "no_sensor",
    0x000002: "sensor_defective",
    0x000004: "low_perfusion",
    0x000008: "searching",
    0x000010: "interference",
    0x000020: "sensor_off",
    0x000040: "ambient_light",
    0x000080: "sensor_unrecognized",
    0x000100: "sensor_incompatible",
    0x000400: "low_signal_iq",
    0x000800: "",  # "Masimo SET" mode indicator: informational, not a fault
    0x001000: "no_cable",
    0x002000: "cable_expired",
    0x004000: "cable_incompatible",
    0x008000: "cable_unrecognized",
    0x010000: "cable_defective",
    0x020000: "sensor_calibrating",
    0x040000: "sensor_expired",
    0x080000: "emitter_temperature",
    0x100000: "sensor_current_limit",
    0x200000: "spco_low_confidence",
    0x400000: "spmet_low_confidence",
}


class MasimoAsciiDriver(LineDriver):
    """Receiver for Masimo ASCII 1 serial output on one feed."""

    protocol = "masimo_ascii"
    START = _START
    MAX_LINE = 512  # a Radical-7 line is ~140 bytes; room for firmware additions

    _seq: int = 0

    def _decode_line(self, line: bytes) -> list[DriverSample]:
        if _PRINTABLE.fullmatch(line) is None:
            raise ProtocolError("bad_format", f"non-printable bytes in {line[:60]!r}")
        tokens = line[_STAMP_LEN:].decode("ascii").split()
        values = dict.fromkeys(VALUE_FIELDS.values(), math.nan)
        flags: set[str] = set()
        seen_vital = False
        pending_name: str | None = None
        for token in tokens:
            if pending_name is not None:
                # "PIDELTA= +5": a value the device spaced away from its name.
                name, value = pending_name, token
                pending_name = None
            else:
                name, eq, value = token.partition("=")
                if not eq:
                    self._reject_field("bad_field", f"no '=' in {token[:32]!r}")
                    continue
                if not value:
                    pending_name = name
                    continue
            if name in VALUE_FIELDS:
                seen_vital = True
                values[VALUE_FIELDS[name]] = self._number(name, value)
            elif name == "ALARM":
                flags |= self._bits(name, value, ALARM_BITS)
            elif name == "EXC":
                flags |= self._bits(name, value, EXCEPTION_BITS)
            elif name not in IGNORED_FIELDS:
                self._reject_field("unknown_field", name[:32])
        if not seen_vital:
            raise ProtocolError("bad_format", f"no SPO2/BPM/PI field in {line[:60]!r}")
        reading = NumericReading(
            room=self.room,
            feed=self.feed_name,
            kind=SignalKind.SPO2,
            t=self.clock.now(),
            values=values,
            seq=self._seq,
            origin=self.origin,
            flags=frozenset(flags),
        )
        self._seq += 1
        return [reading]

    def _number(self, name: str, raw: str) -> float:
        value = raw.rstrip("%")
        if _UNAVAILABLE.fullmatch(value):
            return math.nan
        if _DECIMAL.fullmatch(value) is None:
            self._reject_field("bad_field", f"{name}={raw[:16]}")
            return math.nan
        return float(value)

    def _bits(self, name: str, raw: str, table: dict[int, str]) -> set[str]:
        if _HEX.fullmatch(raw) is None:
            self._reject_field("bad_field", f"{name}={raw[:16]}")
            return set()
        word = int(raw, 16)
        flags = {flag for bit, flag in table.items() if word & bit and flag}
        unknown = word & ~sum(table)
        if unknown:
            self._reject_field("unknown_bit", f"{name} bits {unknown:#x}")
        return flags
