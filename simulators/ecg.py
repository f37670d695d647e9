"""Synthetic ECG for tests and the demo: a streaming source of mV samples.

Stands where a patient cable and monitor front end would be: its chunks go into
a :class:`~roommon.core.model.WaveformChunk` (by the demo or a test) and from there
through the same pipeline, detector and EKG check as live data. Each beat is a
sum of Gaussians (P, Q, R, S, T; after McSharry et al. 2003, without their
ODE), placed on a beat schedule driven by a heart-rate setting. Events a monitor
must cope with are switched on and off while streaming: asystole, lead off
(flat line), saturation at the rails, noise bursts, PVCs and wide QRS.

Deterministic for a given seed and sequence of calls. The R-peak sample index
of every beat emitted is kept in :attr:`EcgSimulator.beats` as the ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from roommon.core.model import FloatArray

# (amplitude mV, centre s relative to R, width s) of one normal beat at 1 mV R.
_NORMAL_WAVES: tuple[tuple[float, float, float], ...] = (
    (0.15, -0.20, 0.025),  # P
    (-0.10, -0.028, 0.008),  # Q
    (1.00, 0.0, 0.010),  # R
    (-0.25, 0.028, 0.009),  # S
    (0.30, 0.30, 0.050),  # T (its centre scales with sqrt(R-R), Bazett)
)
# A PVC: no P wave, wide and large QRS, discordant (inverted) T.
_PVC_WAVES: tuple[tuple[float, float, float], ...] = (
    (1.40, 0.0, 0.030),
    (-0.50, 0.070, 0.025),
    (-0.40, 0.34, 0.060),
)
_SUPPORT = (-0.40, 0.75)  # seconds around R that a beat's waves cover


@dataclass(frozen=True, slots=True)
class _Beat:
    r_idx: int
    rr_s: float  # interval that preceded the beat (shapes the T wave)
    pvc: bool
    wide: bool


class EcgSimulator:
    """Streaming synthetic ECG lead in mV.

    ``next_chunk(n)`` returns the next ``n`` samples. Controls act from the next
    chunk on: ``set_rate``, ``asystole``, ``lead_off``, ``noise``, ``saturate``,
    ``wide_qrs`` and ``set_pvc_every``.
    """

    __slots__ = (
        "_amplitude",
        "_asystole",
        "_beat_no",
        "_lead_off",
        "_n",
        "_next_r",
        "_noise",
        "_noise_burst_mv",
        "_noise_mv",
        "_pvc_every",
        "_rail_mv",
        "_rate",
        "_rng",
        "_saturate",
        "_scheduled",
        "_wander_mv",
        "_wide",
        "beats",
        "fs",
    )

    def __init__(
        self,
        *,
        fs: float = 250.0,
        seed: int = 0,
        rate_bpm: float = 75.0,
        amplitude_mv: float = 1.0,
        noise_mv: float = 0.01,
        wander_mv: float = 0.05,
        noise_burst_mv: float = 0.6,
        rail_mv: float = 5.0,
    ) -> None:
        self.fs = float(fs)
        self._rng = np.random.default_rng(seed)
        self._rate = rate_bpm
        self._amplitude = amplitude_mv
        self._noise_mv = noise_mv
        self._wander_mv = wander_mv
        self._noise_burst_mv = noise_burst_mv
        self._rail_mv = rail_mv
        self._n = 0
        self._next_r = round(0.5 * self.fs)  # first beat half a second in
        self._scheduled: list[_Beat] = []
        self._beat_no = 0
        self._pvc_every = 0
        self._wide = False
        self._asystole = False
        self._lead_off = False
        self._noise = False
        self._saturate = False
        self.beats: list[int] = []  # R-peak indices of the beats emitted so far

    # ---------------------------------------------------------------- controls

    @property
    def samples_emitted(self) -> int:
        return self._n

    @property
    def rate_bpm(self) -> float:
        return self._rate

    def set_rate(self, bpm: float) -> None:
        """Heart rate of the beats scheduled from now on (the next beat keeps its time)."""
        if not 10.0 <= bpm <= 350.0:
            raise ValueError(f"rate {bpm} bpm outside 10..350")
        self._rate = bpm

    def asystole(self, on: bool) -> None:
        """No more beats while on; the baseline and its noise go on."""
        if self._asystole and not on:
            self._next_r = self._n + round(0.3 * self.fs)
        self._asystole = on

    def lead_off(self, on: bool) -> None:
        """An electrode off: the front end outputs a constant 0 mV."""
        self._lead_off = on

    def noise(self, on: bool) -> None:
        """Motion/muscle artefact of ``noise_burst_mv`` RMS in the QRS band on top of the ECG."""
        self._noise = on

    def saturate(self, on: bool) -> None:
        """A large offset drives the amplifier to its positive rail (clipped at ``rail_mv``)."""
        self._saturate = on

    def wide_qrs(self, on: bool) -> None:
        """Bundle-branch-block-like beats: QRS three times as wide, notched."""
        self._wide = on

    def set_pvc_every(self, k: int) -> None:
        """Make every ``k``-th beat a premature ventricular complex (0 = none)."""
        if k < 0:
            raise ValueError("k must be >= 0")
        self._pvc_every = k

    # ----------------------------------------------------------------- output

    def next_chunk(self, n: int) -> FloatArray:
        """The next ``n`` samples in mV."""
        if n <= 0:
            return np.zeros(0)
        fs = self.fs
        n0 = self._n
        self._schedule(n0 + n + round(-_SUPPORT[0] * fs) + 1)
        idx = np.arange(n0, n0 + n)
        t = idx / fs
        out = self._wander_mv * (
            np.sin(2 * math.pi * 0.25 * t) + 0.5 * np.sin(2 * math.pi * 0.07 * t + 1.0)
        )
        out += self._rng.normal(0.0, self._noise_mv, n)
        lo_s, hi_s = _SUPPORT
        keep: list[_Beat] = []
        for b in self._scheduled:
            a = max(b.r_idx + round(lo_s * fs), n0)
            e = min(b.r_idx + round(hi_s * fs), n0 + n)
            if a < e:
                out[a - n0 : e - n0] += self._beat_wave(b, (np.arange(a, e) - b.r_idx) / fs)
            if n0 <= b.r_idx < n0 + n:
                self.beats.append(b.r_idx)
            if b.r_idx + round(hi_s * fs) > n0 + n:
                keep.append(b)
        self._scheduled = keep
        if self._noise:
            out += self._burst(n)
        if self._saturate:
            out += 3.0 * self._rail_mv
        if self._lead_off:
            out[:] = 0.0
        np.clip(out, -self._rail_mv, self._rail_mv, out=out)
        self._n += n
        return out

    def generate(self, seconds: float) -> FloatArray:
        """Convenience: the next ``seconds`` of signal in one array."""
        return self.next_chunk(round(seconds * self.fs))

    # -------------------------------------------------------------- internals

    def _schedule(self, until: int) -> None:
        """Place beats whose waves reach into the samples before ``until``."""
        while not self._asystole and self._next_r < until:
            self._beat_no += 1
            rr = 60.0 / self._rate
            pvc = self._pvc_every > 0 and self._beat_no % self._pvc_every == 0
            r_idx = self._next_r
            if pvc:
                # Premature by 35 %, then a compensatory pause: the sinus rhythm resumes.
                r_idx = self._next_r - round(0.35 * rr * self.fs)
            self._scheduled.append(_Beat(r_idx, rr, pvc, self._wide))
            self._next_r += round(rr * self.fs)

    def _beat_wave(self, b: _Beat, t: FloatArray) -> FloatArray:
        waves = _PVC_WAVES if b.pvc else _NORMAL_WAVES
        y = np.zeros_like(t)
        t_scale = math.sqrt(min(max(b.rr_s, 0.25), 2.0))
        for amp, centre, width in waves:
            c, w = centre, width
            if abs(c) > 0.25:  # T wave: closer to the QRS at fast rates
                c *= t_scale
            elif b.wide and not b.pvc:
                c, w = 2.2 * centre, 2.5 * width
            y += amp * np.exp(-0.5 * ((t - c) / w) ** 2)
        if b.wide and not b.pvc:
            y += 0.35 * np.exp(-0.5 * ((t - 0.04) / 0.012) ** 2)  # notched (RSR') complex
        return self._amplitude * y

    def _burst(self, n: int) -> FloatArray:
        """Electrode-motion and muscle artefact: noise in the QRS band (about 3-30 Hz).

        Band-limited on purpose: white noise mostly falls outside the band a QRS
        detector listens to, whereas real motion artefact sits right in it.
        """
        fast = max(1, round(self.fs / 30.0))
        slow = max(fast + 1, round(self.fs / 3.0))
        pad = slow
        white = self._rng.normal(0.0, 1.0, n + 2 * pad)
        low = np.convolve(white, np.ones(fast) / fast, mode="same")
        band = low - np.convolve(low, np.ones(slow) / slow, mode="same")
        band = band[pad : pad + n]
        rms = float(np.sqrt(np.mean(band**2))) or 1.0
        return np.asarray(band * (self._noise_burst_mv / rms), dtype=np.float64)
