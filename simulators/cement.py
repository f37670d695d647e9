"""Cement-injection pressure simulator (kPa), for tests, benchmarks and the demo.

Produces what a pressure transducer on a vertebroplasty cement cannula shows:
about zero at rest; when injecting, a ramp to a plateau (default 1.7 MPa, the
published mean peak pressure in patients) that creeps up as the PMMA cures,
with the ripple of a hand-screw injector and transducer noise; pauses decay
back to rest. Controls add a short spike or a sudden drop (the signature of
cement finding a path of least resistance, i.e. a leak).

Streaming and deterministic: ``next_chunk(n)`` returns the next ``n`` samples
as a :class:`~roommon.core.model.WaveformChunk`; the same seed and the same
sequence of control calls give the same samples.
"""

from __future__ import annotations

import math

import numpy as np

from roommon.core.model import DataOrigin, FloatArray, SignalKind, WaveformChunk


class CementPressureSimulator:
    """Streaming cement-pressure waveform with injection controls."""

    def __init__(
        self,
        *,
        fs: float = 100.0,
        seed: int = 0,
        t0: float = 1_767_225_600.0,
        room: str = "demo",
        feed: str = "cement",
        noise_kpa: float = 8.0,
        cure_rate_kpa_s: float = 4.0,
        ripple_fraction: float = 0.03,
    ) -> None:
        self.fs = fs
        self.t0 = t0
        self.room = room
        self.feed = feed
        self.noise_kpa = noise_kpa
        self.cure_rate_kpa_s = cure_rate_kpa_s
        self.ripple_fraction = ripple_fraction
        self._rng = np.random.default_rng(seed)
        self._index = 0  # samples produced so far
        self._seq = 0
        self._level = 0.0  # smooth pressure at the next sample
        self._target = 0.0
        self._tau = 1.0
        self._curing = False
        self._spikes: list[tuple[int, int, float]] = []  # (start, length, extra kPa)

    @property
    def t(self) -> float:
        """Time of the next sample."""
        return self.t0 + self._index / self.fs

    @property
    def level(self) -> float:
        return self._level

    # -- controls -------------------------------------------------------------

    def inject(self, *, level_kpa: float = 1700.0, ramp_s: float = 4.0) -> None:
        """Start (or resume) injecting: ramp to ``level_kpa``, then creep up while curing."""
        self._target = level_kpa
        self._tau = max(ramp_s / 3.0, 1.0 / self.fs)  # ~95 % of the ramp done after ramp_s
        self._curing = True

    def pause(self, *, decay_s: float = 1.5) -> None:
        """Stop pushing: pressure relaxes to rest within about ``decay_s``."""
        self._target = 0.0
        self._tau = max(decay_s / 3.0, 1.0 / self.fs)
        self._curing = False

    end = pause

    def spike(self, *, peak_kpa: float, duration_s: float = 0.6) -> None:
        """A brief pressure peak reaching ``peak_kpa`` (e.g. a blocked cannula)."""
        n = max(2, round(duration_s * self.fs))
        self._spikes.append((self._index, n, peak_kpa - self._level))

    def drop(self, *, fraction: float = 0.5, fall_s: float = 0.3) -> None:
        """Sudden fall by ``fraction`` of the current level while injection goes on."""
        self._target = self._level * (1.0 - fraction)
        self._tau = max(fall_s / 3.0, 1.0 / self.fs)

    # -- streaming ------------------------------------------------------------

    def next_samples(self, n: int) -> FloatArray:
        fs = self.fs
        k = np.arange(1, n + 1, dtype=np.float64)
        decay = np.exp(-k / (fs * self._tau))
        target = self._target
        if self._curing:
            # the plateau creeps up as the cement cures
            target_k = target + self.cure_rate_kpa_s * k / fs
            self._target = target + self.cure_rate_kpa_s * n / fs
        else:
            target_k = np.full(n, target)
        level = target_k + (self._level - target) * decay
        self._level = float(level[-1])
        ripple = self.ripple_fraction * level * np.sin(2 * math.pi * 0.7 * (self._index + k) / fs)
        x = level + ripple + self._rng.normal(0.0, self.noise_kpa, n)
        start = self._index
        for s0, length, extra in self._spikes:
            lo, hi = max(s0, start), min(s0 + length, start + n)
            if lo < hi:
                u = (np.arange(lo, hi) - s0 + 0.5) / length
                x[lo - start : hi - start] += extra * np.sin(math.pi * u)
        self._spikes = [s for s in self._spikes if s[0] + s[1] > start + n]
        self._index += n
        return x

    def next_chunk(self, n: int) -> WaveformChunk:
        t0 = self.t
        samples = self.next_samples(n)
        self._seq += 1
        return WaveformChunk(
            room=self.room,
            feed=self.feed,
            kind=SignalKind.CEMENT_PRESSURE,
            unit="kPa",
            fs=self.fs,
            t0=t0,
            samples=samples,
            seq=self._seq,
            origin=DataOrigin.SIMULATED,
        )

    def seconds(self, seconds: float, *, chunk_s: float = 1.0) -> list[WaveformChunk]:
        """The next ``seconds`` of signal in chunks of ``chunk_s``."""
        total = round(seconds * self.fs)
        step = max(1, round(chunk_s * self.fs))
        return [self.next_chunk(min(step, total - i)) for i in range(0, total, step)]
