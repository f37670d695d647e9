"""Driver for the roommon line protocol, version 1 (``protocol = "roommon_line"``).

For devices with no standard output of their own (cement-injection pressure
transducers, an EKG front end, an NIBP unit, an arterial line). The protocol is
specified in ``docs/serial-protocol.md``; this module is its reference
receiver and the golden tests there are its tests. Sits between the serial
transport (bytes) and the room pipeline (samples).

Frame (one ASCII line)::

    $RM1,<device_id>,<seq>,W,<kind>,<unit>,<fs>,<s1>;<s2>;...*<CRC16>\\r\\n
    $RM1,<device_id>,<seq>,N,<kind>,<flags>,<name>=<v>;...*<CRC16>\\r\\n

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over the bytes
between ``$`` and ``*``, as four hex digits.
"""

from __future__ import annotations

import binascii
import math
import re
from typing import Final

import numpy as np

from roommon.core.clock import Clock
from roommon.core.errors import ProtocolError
from roommon.core.model import (
    CANONICAL_UNITS,
    NUMERIC_FIELDS,
    DataOrigin,
    NumericReading,
    SignalKind,
    WaveformChunk,
)
from roommon.drivers.base import DriverSample, LineDriver

PROTOCOL_VERSION: Final = 1
SEQ_MODULUS: Final = 65536
MAX_SAMPLES: Final = 256
MAX_FS: Final = 5000.0
MAX_LINE: Final = 4096

_START = re.compile(rb"\$RM\d")
_ENVELOPE = re.compile(rb"\$(?P<body>[^$*]*)\*(?P<crc>[0-9A-Fa-f]{4})")
_HEADER = re.compile(
    rb"RM(?P<ver>\d{1,3}),(?P<dev>[A-Za-z0-9_.\-]{1,32}),(?P<seq>\d{1,5}),(?P<type>[A-Z]),(?P<rest>.*)",
    re.DOTALL,
)
_NUMBER = rb"-?\d{1,9}(?:\.\d{1,9})?"
_SAMPLES = re.compile(rb"(?:" + _NUMBER + rb"|-)(?:;(?:" + _NUMBER + rb"|-))*")
_VALUE = re.compile(_NUMBER)
_FS = re.compile(rb"\d{1,5}(?:\.\d{1,6})?")
_FLAG = re.compile(r"[a-z0-9_]{1,32}")
_FIELD_NAME = re.compile(r"[a-z0-9_]{1,32}")


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR."""
    return binascii.crc_hqx(data, 0xFFFF)


class RoommonLineDriver(LineDriver):
    """Receiver for roommon line protocol v1 frames on one feed.

    ``device_id``, when given, is the only device accepted on this port;
    frames from any other id are rejected (``wrong_device``) so a swapped
    cable cannot silently feed another device's values into this feed.
    """

    protocol = "roommon_line"
    START = _START
    MAX_LINE = MAX_LINE

    def __init__(
        self,
        *,
        room: str,
        feed: str,
        origin: DataOrigin,
        clock: Clock,
        device_id: str | None = None,
    ) -> None:
        super().__init__(room=room, feed=feed, origin=origin, clock=clock)
        self.device_id = device_id
        # Per (device, kind) stream: (last raw seq, unwrapped seq).
        self._seq: dict[tuple[str, str], tuple[int, int]] = {}

    def _reset_state(self) -> None:
        # Keep the sequence history: after a replug the device's counter goes on
        # (or restarts), and either way the jump shows as a gap downstream.
        pass

    def _decode_line(self, line: bytes) -> list[DriverSample]:
        env = _ENVELOPE.fullmatch(line)
        if env is None:
            raise ProtocolError("bad_format", f"not $...*XXXX: {line[:40]!r}")
        body = env["body"]
        if crc16_ccitt(body) != int(env["crc"], 16):
            raise ProtocolError(
                "bad_checksum", f"crc {env['crc'].decode()} != {crc16_ccitt(body):04X}"
            )
        head = _HEADER.fullmatch(body)
        if head is None:
            raise ProtocolError("bad_format", f"bad header: {body[:40]!r}")
        if int(head["ver"]) != PROTOCOL_VERSION:
            raise ProtocolError("unsupported_version", f"RM{head['ver'].decode()}")
        device = head["dev"].decode()
        if self.device_id is not None and device != self.device_id:
            raise ProtocolError("wrong_device", f"{device} (expected {self.device_id})")
        raw_seq = int(head["seq"])
        if raw_seq >= SEQ_MODULUS:
            raise ProtocolError("bad_field", f"seq {raw_seq} >= {SEQ_MODULUS}")
        fields = head["rest"].split(b",")
        frame_type = head["type"]
        if frame_type == b"W":
            return [self._waveform(device, raw_seq, fields)]
        if frame_type == b"N":
            return [self._numeric(device, raw_seq, fields)]
        raise ProtocolError("unknown_type", f"frame type {frame_type.decode()}")

    def _kind(self, raw: bytes, *, waveform: bool) -> SignalKind:
        try:
            kind = SignalKind(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError("unknown_kind", repr(raw[:32])) from None
        if kind.is_waveform != waveform:
            raise ProtocolError("unknown_kind", f"{kind} is not a {'W' if waveform else 'N'} kind")
        return kind

    def _waveform(self, device: str, raw_seq: int, fields: list[bytes]) -> WaveformChunk:
        if len(fields) != 4:
            raise ProtocolError("bad_format", f"W frame has {len(fields)} fields after type, not 4")
        raw_kind, raw_unit, raw_fs, raw_samples = fields
        kind = self._kind(raw_kind, waveform=True)
        unit = raw_unit.decode("ascii", errors="replace")
        if unit != CANONICAL_UNITS[kind]:
            raise ProtocolError("bad_unit", f"{kind} in {unit!r}, need {CANONICAL_UNITS[kind]}")
        if _FS.fullmatch(raw_fs) is None:
            raise ProtocolError("bad_field", f"fs {raw_fs[:16]!r}")
        fs = float(raw_fs)
        if not 0.0 < fs <= MAX_FS:
            raise ProtocolError("bad_field", f"fs {fs} outside (0, {MAX_FS}]")
        if _SAMPLES.fullmatch(raw_samples) is None:
            raise ProtocolError("bad_field", f"samples {raw_samples[:40]!r}")
        parts = np.array(raw_samples.split(b";"))
        if len(parts) > MAX_SAMPLES:
            raise ProtocolError("bad_field", f"{len(parts)} samples > {MAX_SAMPLES}")
        samples = np.where(parts == b"-", b"nan", parts).astype(np.float64)
        seq = self._unwrap(device, kind, raw_seq)
        return WaveformChunk(
            room=self.room,
            feed=self.feed_name,
            kind=kind,
            unit=unit,
            fs=fs,
            t0=self.clock.now() - len(samples) / fs,
            samples=samples,
            seq=seq,
            origin=self.origin,
        )

    def _numeric(self, device: str, raw_seq: int, fields: list[bytes]) -> NumericReading:
        if len(fields) != 3:
            raise ProtocolError("bad_format", f"N frame has {len(fields)} fields after type, not 3")
        raw_kind, raw_flags, raw_values = fields
        kind = self._kind(raw_kind, waveform=False)
        flags = self._flags(raw_flags)
        known = NUMERIC_FIELDS[kind]
        values = dict.fromkeys(known, math.nan)
        for item in raw_values.split(b";"):
            name_b, eq, value_b = item.partition(b"=")
            name = name_b.decode("ascii", errors="replace")
            if not eq or _FIELD_NAME.fullmatch(name) is None:
                raise ProtocolError("bad_field", f"not name=value: {item[:32]!r}")
            if name not in known:
                # Ground rule: an unknown field is rejected and counted, the rest kept.
                self._reject_field("unknown_field", f"{kind}.{name}")
                continue
            if value_b == b"-":
                continue  # device says unavailable: stays NaN
            if _VALUE.fullmatch(value_b) is None:
                self._reject_field("bad_field", f"{kind}.{name}={value_b[:16]!r}")
                continue
            values[name] = float(value_b)
        return NumericReading(
            room=self.room,
            feed=self.feed_name,
            kind=kind,
            t=self.clock.now(),
            values=values,
            seq=self._unwrap(device, kind, raw_seq),
            origin=self.origin,
            flags=flags,
        )

    def _flags(self, raw: bytes) -> frozenset[str]:
        if raw == b"-":
            return frozenset()
        text = raw.decode("ascii", errors="replace")
        tokens = text.split("|")
        if not all(_FLAG.fullmatch(t) for t in tokens):
            raise ProtocolError("bad_field", f"flags {text[:40]!r}")
        return frozenset(tokens)

    def _unwrap(self, device: str, kind: SignalKind, raw_seq: int) -> int:
        """Extend the 16-bit wrapping counter to an ever-growing int per stream."""
        key = (device, str(kind))
        prev = self._seq.get(key)
        if prev is None:
            unwrapped = raw_seq
        else:
            last_raw, last_unwrapped = prev
            unwrapped = last_unwrapped + (raw_seq - last_raw) % SEQ_MODULUS
        self._seq[key] = (raw_seq, unwrapped)
        return unwrapped
