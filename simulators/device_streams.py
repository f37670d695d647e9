"""Simulated device byte streams: what each bedside protocol's device would send.

Each stream turns one simulated second of the room simulator into the bytes
of its protocol (roommon line protocol, Masimo ASCII, Nonin format 2), so
the daemon's real drivers read them as they read a real device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from roommon.core.errors import UsageError
from roommon.core.model import (
    CANONICAL_UNITS,
    FloatArray,
    NumericReading,
    SignalKind,
)
from roommon.drivers.masimo import EXCEPTION_BITS as MASIMO_EXC
from roommon.drivers.nonin import FRAME_LEN, FRAMES_PER_PACKET, FS_HZ, STATUS_SNSD
from simulators.abp import ArterialPressureSimulator
from simulators.cement import CementPressureSimulator
from simulators.ecg import EcgSimulator
from simulators.nibp import NibpSimulator
from simulators.pleth import PlethSimulator
from simulators.serial_devices import (
    encode_masimo_line,
    encode_nonin_packet,
    encode_rm1_numeric,
    encode_rm1_waveform,
)

#: Signals the roommon line protocol simulator can send.
RM1_KINDS: Final = ("ecg", "cement_pressure", "nibp", "abp", "pleth")


class DeviceStream(Protocol):
    """One device output stream: the frames complete by a simulated time."""

    @property
    def period_s(self) -> float:
        """Simulated seconds between frames (the loop's tick is the shortest)."""
        ...

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        """Every frame whose last sample is taken by ``elapsed_s`` into the run."""
        ...


#: Sample rate of each roommon_line waveform kind unless ``--kind KIND:FS``;
#: the rates the protocol document suggests (docs/serial-protocol.md, section 8).
RM1_DEFAULT_FS: Final[dict[SignalKind, float]] = {
    SignalKind.ECG: 250.0,
    SignalKind.ABP: 125.0,
    SignalKind.CEMENT_PRESSURE: 50.0,
    SignalKind.PLETH: 100.0,
}
RM1_DECIMALS: Final[dict[SignalKind, int]] = {
    SignalKind.ECG: 3,
    SignalKind.PLETH: 3,
    SignalKind.ABP: 1,
    SignalKind.CEMENT_PRESSURE: 1,
}
#: Frames carry 100 ms of samples: the document's "under 100 ms where the data
#: feeds alarms", and 10 frames a second keep a stale feed noticed fast.
RM1_FRAME_S: Final = 0.1
_EPS: Final = 1e-9


@dataclass(slots=True, kw_only=True)
class Rm1WaveformStream:
    """``W`` frames of one waveform kind from a sample generator."""

    device_id: str
    kind: SignalKind
    fs: float
    generate: Callable[[int], FloatArray]
    before_frame: Callable[[float], None] | None = None
    frame_samples: int = 0
    seq: int = 0

    def __post_init__(self) -> None:
        if self.frame_samples <= 0:
            self.frame_samples = min(256, max(1, round(self.fs * RM1_FRAME_S)))

    @property
    def period_s(self) -> float:
        return self.frame_samples / self.fs

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        out: list[bytes] = []
        while (self.seq + 1) * self.period_s <= elapsed_s + _EPS:
            if self.before_frame is not None:
                self.before_frame(self.seq * self.period_s)
            out.append(
                encode_rm1_waveform(
                    device_id=self.device_id,
                    seq=self.seq,
                    kind=self.kind.value,
                    unit=CANONICAL_UNITS[self.kind],
                    fs=self.fs,
                    samples=self.generate(self.frame_samples),
                    decimals=RM1_DECIMALS[self.kind],
                )
            )
            self.seq += 1
        return out


@dataclass(slots=True, kw_only=True)
class Rm1NibpStream:
    """``N`` frames of an NIBP unit: one per completed cuff measurement."""

    device_id: str
    nibp: NibpSimulator
    seq: int = 0

    @property
    def period_s(self) -> float:
        return 1.0

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        out: list[bytes] = []
        for r in self.nibp.readings_until(elapsed_s + _EPS):
            out.append(
                encode_rm1_numeric(
                    device_id=self.device_id,
                    seq=self.seq,
                    kind="nibp",
                    values=r.values,
                    flags=r.flags,
                    decimals=0,
                )
            )
            self.seq += 1
        return out


class InjectionProfile:
    """Drives a cement simulator through repeating injections, as a hand injector does.

    Each cycle of :attr:`CYCLE_S`: rest, inject, pause, resume, stop, rest; so
    a commissioning run sees injection start, pressure plateau and end events.
    """

    CYCLE_S: Final = 120.0
    STEPS: Final = ((10.0, "inject"), (40.0, "pause"), (50.0, "inject"), (80.0, "pause"))

    __slots__ = ("_done", "_sim")

    def __init__(self, sim: CementPressureSimulator) -> None:
        self._sim = sim
        self._done = 0

    def __call__(self, elapsed_s: float) -> None:
        while True:
            cycle, i = divmod(self._done, len(self.STEPS))
            at_s, action = self.STEPS[i]
            if cycle * self.CYCLE_S + at_s > elapsed_s + _EPS:
                return
            if action == "inject":
                self._sim.inject(level_kpa=1700.0)
            else:
                self._sim.pause()
            self._done += 1


MASIMO_SENSOR_OFF: Final = next(b for b, name in MASIMO_EXC.items() if name == "sensor_off")


@dataclass(slots=True, kw_only=True)
class MasimoStream:
    """A Radical-7's ASCII 1 output: one line per second of the oximeter's numerics."""

    pleth: PlethSimulator
    t0: float

    @property
    def period_s(self) -> float:
        return 1.0

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        return [
            encode_masimo_line(
                t=r.t,
                spo2=r.values["spo2"],
                pulse_rate=r.values["pulse_rate"],
                perfusion_index=r.values["perfusion_index"],
                exceptions=MASIMO_SENSOR_OFF if "sensor_off" in r.flags else 0,
            )
            for r in self.pleth.readings_until(self.t0 + elapsed_s + _EPS)
        ]


@dataclass(slots=True, kw_only=True)
class NoninStream:
    """A Nonin format 2 oximeter: a 25-frame packet (8-bit pleth, SpO2, HR) every 1/3 s.

    Frames are returned one by one (5 bytes each), so frame counts are the protocol's.
    """

    pleth: PlethSimulator
    t0: float
    packets: int = 0
    latest: NumericReading | None = None

    @property
    def period_s(self) -> float:
        return FRAMES_PER_PACKET / FS_HZ

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        out: list[bytes] = []
        while (self.packets + 1) * self.period_s <= elapsed_s + _EPS:
            t_end = self.t0 + (self.packets + 1) * self.period_s
            wave = self.pleth.next_samples(FRAMES_PER_PACKET)
            for r in self.pleth.readings_until(t_end):
                self.latest = r
            # The normalised pleth (about 0..1 per pulse) on the device's 8-bit scale.
            raw = np.clip(np.round(60.0 + 150.0 * wave), 0, 255).astype(np.int64)
            if self.latest is None:
                spo2, rate, status = self.pleth.spo2, self.pleth.rate_bpm, 0
            else:
                off = "sensor_off" in self.latest.flags
                spo2 = self.latest.values["spo2"]
                rate = self.latest.values["pulse_rate"]
                status = STATUS_SNSD if off else 0
            packet = encode_nonin_packet(pleth=raw, spo2=spo2, pulse_rate=rate, status=status)
            out.extend(packet[i : i + FRAME_LEN] for i in range(0, len(packet), FRAME_LEN))
            self.packets += 1
        return out


def parse_kind(text: str) -> tuple[SignalKind, float | None]:
    """``KIND`` or ``KIND:FS`` of ``--kind`` (roommon_line)."""
    name, _, fs_text = text.partition(":")
    if name not in RM1_KINDS:
        raise UsageError(f"--kind: {name!r} is not one of {', '.join(RM1_KINDS)}")
    kind = SignalKind(name)
    if not fs_text:
        return kind, None
    if not kind.is_waveform:
        raise UsageError(f"--kind {text}: {kind} readings take no sample rate")
    try:
        fs = float(fs_text)
    except ValueError:
        raise UsageError(f"--kind {text}: {fs_text!r} is not a sample rate") from None
    if not 0 < fs <= 5000 or not math.isfinite(fs):
        raise UsageError(f"--kind {text}: the sample rate must be in (0, 5000] Hz")
    return kind, fs


def device_streams(
    *, protocol: str, kinds: Sequence[str], device_id: str, seed: int, t0: float
) -> list[DeviceStream]:
    """The output streams of the simulated device speaking ``protocol``."""
    if protocol == "masimo_ascii":
        return [MasimoStream(pleth=PlethSimulator(seed=seed, t0=t0), t0=t0)]
    if protocol == "nonin_fmt2":
        return [NoninStream(pleth=PlethSimulator(fs=FS_HZ, seed=seed, t0=t0), t0=t0)]
    streams: list[DeviceStream] = []
    seen: set[SignalKind] = set()
    for i, text in enumerate(kinds or ["ecg"]):
        kind, fs_arg = parse_kind(text)
        if kind in seen:
            raise UsageError(f"--kind {kind} given twice")
        seen.add(kind)
        s = seed + i
        if kind == SignalKind.NIBP:
            nibp = NibpSimulator(cycle_s=60.0, t0=0.0, seed=s)
            streams.append(Rm1NibpStream(device_id=device_id, nibp=nibp))
            continue
        fs = fs_arg or RM1_DEFAULT_FS[kind]
        before: Callable[[float], None] | None = None
        generate: Callable[[int], FloatArray]
        if kind == SignalKind.ECG:
            generate = EcgSimulator(fs=fs, seed=s).next_chunk
        elif kind == SignalKind.ABP:
            generate = ArterialPressureSimulator(fs=fs, seed=s, t0=t0).next_samples
        elif kind == SignalKind.PLETH:
            generate = PlethSimulator(fs=fs, seed=s, t0=t0).next_samples
        else:
            cement = CementPressureSimulator(fs=fs, seed=s, t0=t0)
            generate, before = cement.next_samples, InjectionProfile(cement)
        streams.append(
            Rm1WaveformStream(
                device_id=device_id, kind=kind, fs=fs, generate=generate, before_frame=before
            )
        )
    return streams


#: pyserial flushes the input queue just after opening a port; the first bytes
#: wait this long after a reader appears so that flush cannot cut a frame.
