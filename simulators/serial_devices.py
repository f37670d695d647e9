"""Simulated serial devices: the exact bytes real devices put on the wire.

Each encoder here is the mirror of one driver in :mod:`roommon.drivers`:
values in, the device's byte format out. The tests feed these bytes to the
drivers (directly or through a real pseudo-terminal), and ``roommon simulate``
/ the demo can drive a serial feed end to end with them. :func:`write_paced`
writes frames to a file descriptor (a pty master, a real serial port) paced by
a :class:`~roommon.core.clock.Clock`.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from roommon.core.clock import Clock
from roommon.drivers.nonin import (
    FRAMES_PER_PACKET,
    NONIN_START,
    STATUS_ALWAYS,
    STATUS_SYNC,
)
from roommon.drivers.roommon_line import SEQ_MODULUS, crc16_ccitt

# --------------------------------------------------------------------------
# roommon line protocol v1 (docs/serial-protocol.md)


def _fmt_number(value: float, decimals: int) -> str:
    if math.isnan(value):
        return "-"
    text = f"{value:.{decimals}f}"
    if decimals:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def rm1_frame(body: str) -> bytes:
    """Wrap a frame body (without ``$`` and ``*``) with its CRC and CR LF."""
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{crc16_ccitt(raw):04X}".encode() + b"\r\n"


def encode_rm1_waveform(
    *,
    device_id: str,
    seq: int,
    kind: str,
    unit: str,
    fs: float,
    samples: Sequence[float] | npt.NDArray[np.float64],
    decimals: int = 3,
) -> bytes:
    """One ``W`` frame; NaN samples are sent as ``-`` (unavailable)."""
    values = ";".join(_fmt_number(float(v), decimals) for v in samples)
    fs_text = _fmt_number(fs, 6)
    return rm1_frame(f"RM1,{device_id},{seq % SEQ_MODULUS},W,{kind},{unit},{fs_text},{values}")


def encode_rm1_numeric(
    *,
    device_id: str,
    seq: int,
    kind: str,
    values: Mapping[str, float],
    flags: Iterable[str] = (),
    decimals: int = 1,
) -> bytes:
    """One ``N`` frame; NaN values are sent as ``-`` (unavailable)."""
    flag_list = sorted(flags)
    flag_text = "|".join(flag_list) if flag_list else "-"
    pairs = ";".join(f"{k}={_fmt_number(v, decimals)}" for k, v in values.items())
    return rm1_frame(f"RM1,{device_id},{seq % SEQ_MODULUS},N,{kind},{flag_text},{pairs}")


# --------------------------------------------------------------------------
# Masimo Radical-7 ASCII serial output (ASCII 1)


def _masimo_int(value: float, width: int) -> str:
    return "-" * width if math.isnan(value) else f"{round(value):0{width}d}"


def encode_masimo_line(
    *,
    t: float,
    spo2: float,
    pulse_rate: float,
    perfusion_index: float,
    alarm: int = 0,
    exceptions: int = 0,
    serial_number: str = "0000012345",
    extra: str = "",
) -> bytes:
    """One Radical-7 line (device local time taken as UTC of ``t``).

    ``extra`` is inserted before ``ALARM=`` to imitate newer firmware that
    adds fields the driver does not know.
    """
    stamp = time.strftime("%m/%d/%y %H:%M:%S", time.gmtime(t))
    pi = "--.--" if math.isnan(perfusion_index) else f"{perfusion_index:05.2f}"
    extra_part = f"{extra} " if extra else ""
    line = (
        f"{stamp} SN={serial_number} SPO2={_masimo_int(spo2, 3)}% "
        f"BPM={_masimo_int(pulse_rate, 3)} PI={pi}% SPCO=--.-% SPMET=--.-% "
        f"DESAT=-- PIDELTA=+-- PVI=--- {extra_part}ALARM={alarm:04X} EXC={exceptions:06X}\r\n"
    )
    return line.encode("ascii")


# --------------------------------------------------------------------------
# Nonin serial data format 2 (OEM III / 9560 / 3150)

# Byte-4 slots of a packet that the encoder fills; the rest are reserved (0).
_HR_MSB, _HR_LSB, _SPO2, _REV, _STAT2 = 0, 1, 2, 3, 7
_SPO2_D, _SPO2_FAST, _SPO2_BB = 8, 9, 10
_EHR_MSB, _EHR_LSB, _ESPO2, _ESPO2_D = 13, 14, 15, 16
_HRD_MSB, _HRD_LSB, _EHRD_MSB, _EHRD_LSB = 19, 20, 21, 22


def nonin_frame(status: int, pleth: int, data: int) -> bytes:
    """One 5-byte frame: START, STATUS, PLETH, data byte, checksum."""
    head = bytes((NONIN_START, status & 0xFF, pleth & 0xFF, data & 0xFF))
    return head + bytes((sum(head) & 0xFF,))


def encode_nonin_packet(
    *,
    pleth: Sequence[int] | npt.NDArray[np.int64],
    spo2: float,
    pulse_rate: float,
    status: int = 0,
    low_battery: bool = False,
    revision: int = 0x4A,
) -> bytes:
    """One 25-frame packet (1/3 s). ``status`` holds the status-byte bits to set
    on every frame (SNSD 0x40, ARTF 0x20, OOT 0x10, SNSA 0x08, perfusion
    0x06/0x04/0x02); NaN SpO2/pulse rate are sent as the "missing" codes."""
    if len(pleth) != FRAMES_PER_PACKET:
        raise ValueError(f"a packet has {FRAMES_PER_PACKET} pleth samples, got {len(pleth)}")
    hr = 511 if math.isnan(pulse_rate) else round(pulse_rate)
    sat = 127 if math.isnan(spo2) else round(spo2)
    data = [0] * FRAMES_PER_PACKET
    for msb, lsb in (
        (_HR_MSB, _HR_LSB),
        (_EHR_MSB, _EHR_LSB),
        (_HRD_MSB, _HRD_LSB),
        (_EHRD_MSB, _EHRD_LSB),
    ):
        data[msb] = (hr >> 7) & 0x03
        data[lsb] = hr & 0x7F
    for slot in (_SPO2, _SPO2_D, _SPO2_FAST, _SPO2_BB, _ESPO2, _ESPO2_D):
        data[slot] = sat & 0x7F
    data[_REV] = revision
    data[_STAT2] = 0x01 if low_battery else 0x00
    out = bytearray()
    for i in range(FRAMES_PER_PACKET):
        st = STATUS_ALWAYS | (status & 0x7E) | (STATUS_SYNC if i == 0 else 0)
        out += nonin_frame(st, int(pleth[i]), data[i])
    return bytes(out)


def synthetic_pleth(
    n: int, *, fs: float, pulse_rate: float, start: int = 0
) -> npt.NDArray[np.int64]:
    """A plausible 8-bit pleth shape (fast upstroke, slow decay) for demos and tests."""
    t = (np.arange(n) + start) / fs
    phase = (t * pulse_rate / 60.0) % 1.0
    wave = np.where(phase < 0.15, phase / 0.15, np.exp(-(phase - 0.15) * 4.0))
    return np.clip(np.round(40 + 180 * wave), 0, 255).astype(np.int64)


# --------------------------------------------------------------------------
# Writing to a serial line / pty


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a non-blocking-capable fd, waiting when it is full."""
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _set_done, ready)
            try:
                await ready
            finally:
                loop.remove_writer(fd)
            continue
        view = view[n:]


async def write_paced(*, fd: int, frames: Iterable[bytes], interval_s: float, clock: Clock) -> int:
    """Write ``frames`` one by one, ``interval_s`` apart on ``clock``; return bytes written.

    The pace is kept against absolute deadlines so it does not drift, the way a
    device's own timer paces its output.
    """
    written = 0
    deadline = clock.monotonic()
    for frame in frames:
        await write_all(fd, frame)
        written += len(frame)
        deadline += interval_s
        await clock.sleep_until(deadline)
    return written
