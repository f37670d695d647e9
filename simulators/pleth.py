"""Pulse oximeter simulator: pleth waveform chunks plus SpO2 numerics.

The pleth is normalised (a good pulse is about 1.0 peak to peak): a fast
systolic upstroke, a slower decay with a dicrotic wave, a little respiratory
baseline wander and noise; optionally the respiratory modulation of pulse
amplitude and of the beat rate (respiratory sinus arrhythmia) that real
plethysmograms show. Controls: SpO2 level, pulse rate, probe off (flat
or saturated trace), low perfusion (smaller pulses, low perfusion index) and
motion-artefact bursts. Numerics come once a second from
:meth:`PlethSimulator.readings_until` with the device flags a real oximeter
raises (``sensor_off``) unless told not to, so tests can check the waveform
path on its own.

Deterministic: same seed and same control calls, same samples.
"""

from __future__ import annotations

import math

import numpy as np

from roommon.core.model import DataOrigin, FloatArray, NumericReading, SignalKind, WaveformChunk


class PlethSimulator:
    def __init__(
        self,
        *,
        fs: float = 100.0,
        seed: int = 0,
        t0: float = 1_767_225_600.0,
        room: str = "demo",
        pleth_feed: str = "pleth",
        spo2_feed: str = "spo2",
        rate_bpm: float = 72.0,
        spo2: float = 98.0,
        noise: float = 0.01,
        breathing_hz: float = 0.25,
        baseline_wander: float = 0.1,
        amplitude_modulation: float = 0.0,
        rate_modulation: float = 0.0,
    ) -> None:
        """``amplitude_modulation`` and ``rate_modulation`` are the fractions by which
        breathing (at ``breathing_hz``) swings the pulse amplitude and the beat rate;
        ``baseline_wander`` is the breathing's additive swing, relative to the amplitude."""
        self.fs = fs
        self.t0 = t0
        self.room = room
        self.pleth_feed = pleth_feed
        self.spo2_feed = spo2_feed
        self.rate_bpm = rate_bpm
        self.spo2 = spo2
        self.noise = noise
        self.breathing_hz = breathing_hz
        self.baseline_wander = baseline_wander
        self.amplitude_modulation = amplitude_modulation
        self.rate_modulation = rate_modulation
        self.amplitude = 1.0
        self.perfusion_index = 3.0
        self._rng = np.random.default_rng(seed)
        self._index = 0
        self._phase = 0.0  # beat phase (cycles) at the next sample
        self._seq = 0
        self._reading_seq = 0
        self._next_reading_t = t0 + 1.0
        self._probe_off: str | None = None  # None, "flat" or "saturated"
        self._flag_probe_off = True
        self._motion_until = -1  # sample index where the motion burst ends
        self._motion_amp = 0.0

    @property
    def t(self) -> float:
        return self.t0 + self._index / self.fs

    # -- controls -------------------------------------------------------------

    def set_spo2(self, value: float) -> None:
        self.spo2 = value

    def set_rate(self, bpm: float) -> None:
        self.rate_bpm = bpm

    def probe_off(self, *, mode: str = "flat", device_flag: bool = True) -> None:
        """Probe falls off: ``flat`` trace or ``saturated`` (pinned at the rail)."""
        if mode not in ("flat", "saturated"):
            raise ValueError(f"unknown probe-off mode {mode!r}")
        self._probe_off = mode
        self._flag_probe_off = device_flag

    def probe_on(self) -> None:
        self._probe_off = None

    def low_perfusion(self, *, amplitude: float = 0.05, perfusion_index: float = 0.15) -> None:
        self.amplitude = amplitude
        self.perfusion_index = perfusion_index

    def normal_perfusion(self) -> None:
        self.amplitude = 1.0
        self.perfusion_index = 3.0

    def motion(self, *, seconds: float, amplitude: float = 4.0) -> None:
        """A burst of motion artefact lasting ``seconds`` from the next sample."""
        self._motion_until = self._index + round(seconds * self.fs)
        self._motion_amp = amplitude

    # -- streaming ------------------------------------------------------------

    def next_samples(self, n: int) -> FloatArray:
        fs = self.fs
        idx = self._index + np.arange(n)
        if self._probe_off is not None:
            self._index += n
            self._phase += n * self.rate_bpm / 60.0 / fs
            level = 0.0 if self._probe_off == "flat" else 4.0
            return np.full(n, level)
        step = self.rate_bpm / 60.0 / fs  # cycles per sample
        breath = np.sin(2 * math.pi * self.breathing_hz * idx / fs)
        if self.rate_modulation:
            inc = step * (1.0 + self.rate_modulation * breath)
            phase = self._phase + np.cumsum(inc) - inc
            self._phase = float(phase[-1] + inc[-1]) % 1.0
        else:
            phase = self._phase + np.arange(n) * step
            self._phase = float(phase[-1] + step) % 1.0
        u = phase % 1.0
        # systolic wave at 0.2 of the cycle, dicrotic wave at 0.5
        shape = np.exp(-(((u - 0.2) / 0.09) ** 2)) + 0.35 * np.exp(-(((u - 0.5) / 0.1) ** 2))
        if self.amplitude_modulation:
            shape *= 1.0 + self.amplitude_modulation * breath
        x: FloatArray = self.amplitude * shape
        x += self.baseline_wander * self.amplitude * breath  # breathing
        x += self._rng.normal(0.0, self.noise, n)
        if self._motion_until > self._index:
            m = idx < self._motion_until
            k = int(m.sum())
            walk = np.cumsum(self._rng.normal(0.0, self._motion_amp / 3.0, k))
            jerk = self._motion_amp * np.sin(2 * math.pi * 1.7 * idx[:k] / fs + 0.3 * walk)
            x[:k] += jerk + 0.2 * walk
        self._index += n
        return x

    def next_chunk(self, n: int) -> WaveformChunk:
        t0 = self.t
        samples = self.next_samples(n)
        self._seq += 1
        return WaveformChunk(
            room=self.room,
            feed=self.pleth_feed,
            kind=SignalKind.PLETH,
            unit="au",
            fs=self.fs,
            t0=t0,
            samples=samples,
            seq=self._seq,
            origin=DataOrigin.SIMULATED,
        )

    def readings_until(self, t: float) -> list[NumericReading]:
        """One SpO2 reading per second up to time ``t``."""
        out: list[NumericReading] = []
        while self._next_reading_t <= t:
            out.append(self._reading(self._next_reading_t))
            self._next_reading_t += 1.0
        return out

    def _reading(self, t: float) -> NumericReading:
        flags: set[str] = set()
        if self._probe_off is not None:
            values = {"spo2": math.nan, "pulse_rate": math.nan, "perfusion_index": math.nan}
            if self._flag_probe_off:
                flags.add("sensor_off")
        else:
            spo2 = min(100.0, self.spo2 + float(self._rng.normal(0.0, 0.3)))
            values = {
                "spo2": round(spo2),
                "pulse_rate": round(self.rate_bpm),
                "perfusion_index": self.perfusion_index,
            }
        self._reading_seq += 1
        return NumericReading(
            room=self.room,
            feed=self.spo2_feed,
            kind=SignalKind.SPO2,
            t=t,
            values=values,
            seq=self._reading_seq,
            origin=DataOrigin.SIMULATED,
            flags=frozenset(flags),
        )
