"""Invasive arterial pressure (ABP) simulator, mmHg, for tests, benchmarks and the demo.

Beat-shaped waveform between a diastolic and a systolic level: a steep upstroke,
a systolic peak, a dicrotic notch and a diastolic run-off, plus a little noise.
Controls: pressure levels, heart rate, an over-damped line (air bubble, clot,
kinked catheter: pulse pressure collapses around an unchanged mean) and a
disconnection (transducer open to air: about 0 mmHg). Deterministic and
streaming: ``next_chunk(n)``.
"""

from __future__ import annotations

import numpy as np

from roommon.core.model import DataOrigin, FloatArray, SignalKind, WaveformChunk


def _beat_shape(u: FloatArray) -> FloatArray:
    """One normalised cycle (0 at end-diastole, 1 at the systolic peak), ``u`` in [0, 1)."""
    up = np.exp(-(((u - 0.14) / 0.075) ** 2))
    dicrotic = 0.35 * np.exp(-(((u - 0.42) / 0.06) ** 2))
    runoff = 0.45 * np.exp(-u / 0.35) * (u > 0.14)
    out: FloatArray = up + dicrotic + runoff
    return out


_GRID = np.linspace(0.0, 1.0, 2001)
_SHAPE = _beat_shape(_GRID)
_LO, _HI = float(_SHAPE.min()), float(_SHAPE.max())


class ArterialPressureSimulator:
    def __init__(
        self,
        *,
        fs: float = 125.0,
        seed: int = 0,
        t0: float = 1_767_225_600.0,
        room: str = "demo",
        feed: str = "abp",
        systolic: float = 120.0,
        diastolic: float = 75.0,
        rate_bpm: float = 72.0,
        noise_mmhg: float = 0.5,
    ) -> None:
        self.fs = fs
        self.t0 = t0
        self.room = room
        self.feed = feed
        self.systolic = systolic
        self.diastolic = diastolic
        self.rate_bpm = rate_bpm
        self.noise_mmhg = noise_mmhg
        self._rng = np.random.default_rng(seed)
        self._index = 0
        self._phase = 0.0
        self._seq = 0
        self._damping = 1.0  # fraction of the pulse pressure that reaches the transducer
        self._disconnected = False

    @property
    def t(self) -> float:
        return self.t0 + self._index / self.fs

    def set_pressure(self, *, systolic: float, diastolic: float) -> None:
        self.systolic, self.diastolic = systolic, diastolic

    def set_rate(self, bpm: float) -> None:
        self.rate_bpm = bpm

    def damp(self, fraction: float = 0.2) -> None:
        """Over-damped line: only ``fraction`` of the pulse pressure is seen."""
        self._damping = fraction

    def undamp(self) -> None:
        self._damping = 1.0

    def disconnect(self) -> None:
        self._disconnected = True

    def reconnect(self) -> None:
        self._disconnected = False

    def next_samples(self, n: int) -> FloatArray:
        step = self.rate_bpm / 60.0 / self.fs
        phase = self._phase + np.arange(n) * step
        self._phase = float(phase[-1] + step) % 1.0
        self._index += n
        noise = self._rng.normal(0.0, self.noise_mmhg, n)
        if self._disconnected:
            out: FloatArray = noise  # open to air: zero with noise
            return out
        shape = (np.interp(phase % 1.0, _GRID, _SHAPE) - _LO) / (_HI - _LO)
        x = self.diastolic + (self.systolic - self.diastolic) * shape
        if self._damping != 1.0:
            mean = self.diastolic + (self.systolic - self.diastolic) * float(
                ((_SHAPE - _LO) / (_HI - _LO)).mean()
            )
            x = mean + self._damping * (x - mean)
        return np.asarray(x + noise, dtype=np.float64)

    def next_chunk(self, n: int) -> WaveformChunk:
        t0 = self.t
        samples = self.next_samples(n)
        self._seq += 1
        return WaveformChunk(
            room=self.room,
            feed=self.feed,
            kind=SignalKind.ABP,
            unit="mmHg",
            fs=self.fs,
            t0=t0,
            samples=samples,
            seq=self._seq,
            origin=DataOrigin.SIMULATED,
        )
