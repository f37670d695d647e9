"""Driver for Nonin pulse oximeters, serial data format 2 (``protocol = "nonin_fmt2"``).

Sits between the serial transport (bytes) and the room pipeline: 5-byte frames
in, a pleth :class:`~roommon.core.model.WaveformChunk` (75 Hz, 8-bit, unit "au")
and an SpO2 :class:`~roommon.core.model.NumericReading` per packet out.

Why format 2 and not format 7: format 2 is the one supported by every Nonin
OEM module and the 9560/3150/Xpod family alike, and it is the format that
public open-source receivers implement and publish captured frames for, so
the field layout below can be checked against independent sources. Format 7
differs only in carrying a 16-bit pleth without the START byte; the status
bits and packet layout are the same, so a ``nonin_fmt7`` driver would be a
small subclass of this one once a capture is available to test it against.

Sources (Nonin "OEM III Module Specification and Technical Information",
"Serial Data Format #2"; also in the WristOx2 3150 OEM specification, and as
implemented by the Pufferfish ventilator firmware ``Driver/Serial/Nonin`` and
diozero ``NoninPulseOx`` ``DataFormat2*Serialiser``, which includes frames
captured from a real device):

* 9600 baud, 8N1; 75 frames per second; 25 frames form a packet (1/3 s).
* Frame: ``0x01`` START, STATUS, PLETH (8-bit), data byte, CHK where
  CHK = (byte1 + byte2 + byte3 + byte4) mod 256.
* STATUS: bit7 always 1; bit6 SNSD sensor disconnect; bit5 ARTF artefact;
  bit4 OOT out of track; bit3 SNSA sensor alarm; bits2-1 perfusion
  (01 green/high, 11 yellow/marginal, 10 red/low; only during a pulse);
  bit0 SYNC, set on frame 1 of each packet only.
* Data byte by frame of the packet (1-based): 1 HR MSB (bits1-0 = HR bits
  8-7), 2 HR LSB (bits6-0), 3 SpO2 (bits6-0), 4 firmware revision, 6-7 timer,
  8 STAT2 (bit0 low battery), 9 SpO2-D, 10 SpO2 fast, 11 SpO2 beat-to-beat,
  14-15 E-HR, 16 E-SpO2, 17 E-SpO2-D, 20-21 HR-D, 22-23 E-HR-D; others
  reserved. Missing data is sent as HR 511 and SpO2 127 (become NaN here).

The driver reports the 4-beat averaged values of frames 1-3 (the ones the
specification gives "for recording purposes"): they react faster than the
display values, and smoothing for display is the UI's business.

Resynchronisation: in lock, a frame is expected right where the last one
ended; any misfit loses lock (counted once as a bad frame). Out of lock, a
candidate frame is only accepted when the five bytes after it are a valid
frame too, so a stray ``0x01`` in noise that happens to checksum (1 in 512)
cannot capture the parser and eat the first real frame.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from roommon.core.clock import Clock
from roommon.core.model import DataOrigin, NumericReading, SignalKind, WaveformChunk
from roommon.drivers.base import Driver, DriverSample

NONIN_START: Final = 0x01
FRAME_LEN: Final = 5
FRAMES_PER_PACKET: Final = 25
FS_HZ: Final = 75.0

STATUS_ALWAYS: Final = 0x80
STATUS_SNSD: Final = 0x40
STATUS_ARTF: Final = 0x20
STATUS_OOT: Final = 0x10
STATUS_SNSA: Final = 0x08
STATUS_PERFUSION: Final = 0x06
PERFUSION_GREEN: Final = 0x02
PERFUSION_RED: Final = 0x04
PERFUSION_YELLOW: Final = 0x06
STATUS_SYNC: Final = 0x01

STAT2_LOW_BATTERY: Final = 0x01
HR_MISSING: Final = 511
SPO2_MISSING: Final = 127

# Technical flags per status bit.
_STATUS_FLAGS: Final = (
    (STATUS_SNSD, "no_sensor"),
    (STATUS_ARTF, "artifact"),
    (STATUS_OOT, "out_of_track"),
    (STATUS_SNSA, "sensor_alarm"),
)
_PERFUSION_FLAGS: Final = {PERFUSION_RED: "low_perfusion", PERFUSION_YELLOW: "marginal_perfusion"}

_SLOT_HR_MSB, _SLOT_HR_LSB, _SLOT_SPO2, _SLOT_STAT2 = 0, 1, 2, 7


def _frame_ok(frame: bytes | bytearray) -> bool:
    return (
        frame[0] == NONIN_START
        and frame[1] & STATUS_ALWAYS != 0
        and (frame[0] + frame[1] + frame[2] + frame[3]) & 0xFF == frame[4]
    )


class NoninFormat2Driver(Driver):
    """Receiver for Nonin serial data format 2 on one feed."""

    protocol = "nonin_fmt2"

    def __init__(self, *, room: str, feed: str, origin: DataOrigin, clock: Clock) -> None:
        super().__init__(room=room, feed=feed, origin=origin, clock=clock)
        self._locked = False
        self._pleth: list[int] = []
        self._slots: list[int | None] = [None] * FRAMES_PER_PACKET
        self._position: int | None = None  # index in the packet, None until a SYNC
        self._packet_flags: set[str] = set()
        self._chunk_seq = 0
        self._reading_seq = 0
        self._gap = False

    def _reset_state(self) -> None:
        self._lose_lock()

    def _parse(self) -> list[DriverSample]:
        out: list[DriverSample] = []
        buf = self._buf
        while True:
            if self._locked:
                if len(buf) < FRAME_LEN:
                    return out
                if _frame_ok(buf[:FRAME_LEN]):
                    self._take_frame(out)
                    continue
                if buf[0] != NONIN_START:
                    reason = "lost_sync"
                elif buf[1] & STATUS_ALWAYS == 0:
                    reason = "bad_status"
                else:
                    reason = "bad_checksum"
                self._reject(reason, f"frame {bytes(buf[:FRAME_LEN]).hex()}")
                out.extend(self._flush_run())
                self._lose_lock()
                self._discard(1)
                continue
            # Hunting: skip to the next START byte.
            start = buf.find(NONIN_START)
            if start < 0:
                self._discard(len(buf))
                return out
            if start:
                self._discard(start)
            if len(buf) < 2 * FRAME_LEN:
                return out
            if _frame_ok(buf[:FRAME_LEN]) and _frame_ok(buf[FRAME_LEN : 2 * FRAME_LEN]):
                self._locked = True
                self._take_frame(out)
            else:
                self._discard(1)

    def _lose_lock(self) -> None:
        self._locked = False
        self._position = None
        self._slots = [None] * FRAMES_PER_PACKET
        self._packet_flags = set()
        self._gap = True

    def _take_frame(self, out: list[DriverSample]) -> None:
        status, pleth, data = self._buf[1], self._buf[2], self._buf[3]
        self._accept(FRAME_LEN)
        if status & STATUS_SYNC:
            out.extend(self._flush_run())
            self._position = 0
            self._slots = [None] * FRAMES_PER_PACKET
            self._packet_flags = set()
        elif self._position is not None:
            self._position += 1
            if self._position >= FRAMES_PER_PACKET:
                # The device skipped a SYNC: the packet layout is unknown until the next one.
                self._reject_field("missing_sync", f"frame {self._position + 1} of a packet")
                self._position = None
        self._pleth.append(pleth)
        for bit, flag in _STATUS_FLAGS:
            if status & bit:
                self._packet_flags.add(flag)
        perfusion_flag = _PERFUSION_FLAGS.get(status & STATUS_PERFUSION)
        if perfusion_flag is not None:
            self._packet_flags.add(perfusion_flag)
        if self._position is None:
            return
        self._slots[self._position] = data
        if self._position == FRAMES_PER_PACKET - 1:
            out.extend(self._flush_run())
            reading = self._packet_reading()
            if reading is not None:
                out.append(reading)
            self._position = None

    def _flush_run(self) -> list[DriverSample]:
        """Emit the pleth samples received since the last chunk as one chunk."""
        if not self._pleth:
            return []
        if self._gap:
            # Skip one sequence number so gap detection downstream sees the loss.
            self._chunk_seq += 1
            self._gap = False
        samples = np.array(self._pleth, dtype=np.float64)
        self._pleth = []
        chunk = WaveformChunk(
            room=self.room,
            feed=self.feed_name,
            kind=SignalKind.PLETH,
            unit="au",
            fs=FS_HZ,
            t0=self.clock.now() - len(samples) / FS_HZ,
            samples=samples,
            seq=self._chunk_seq,
            origin=self.origin,
        )
        self._chunk_seq += 1
        return [chunk]

    def _packet_reading(self) -> NumericReading | None:
        slots = self._slots
        hr_msb, hr_lsb, spo2_b, stat2 = (
            slots[_SLOT_HR_MSB],
            slots[_SLOT_HR_LSB],
            slots[_SLOT_SPO2],
            slots[_SLOT_STAT2],
        )
        if hr_msb is None or hr_lsb is None or spo2_b is None:
            return None
        hr = ((hr_msb & 0x03) << 7) | (hr_lsb & 0x7F)
        spo2 = spo2_b & 0x7F
        flags = set(self._packet_flags)
        if stat2 is not None and stat2 & STAT2_LOW_BATTERY:
            flags.add("low_battery")
        reading = NumericReading(
            room=self.room,
            feed=self.feed_name,
            kind=SignalKind.SPO2,
            t=self.clock.now(),
            values={
                "spo2": float("nan") if spo2 == SPO2_MISSING else float(spo2),
                "pulse_rate": float("nan") if hr == HR_MISSING else float(hr),
                "perfusion_index": float("nan"),  # format 2 carries no PI
            },
            seq=self._reading_seq,
            origin=self.origin,
            flags=frozenset(flags),
        )
        self._reading_seq += 1
        return reading
