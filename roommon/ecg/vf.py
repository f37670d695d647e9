"""Ventricular fibrillation / flutter from the shape of the signal, not from beats.

Sits inside the EKG check next to the QRS detector. During VF there are no QRS
complexes to find, so the detector's beats say little; what does is the signal
itself (the features are the classic ones of the VF detection literature: Kuo &
Dillman's VF filter leakage, Arafat's threshold-crossing sample count, Barro's
spectral analysis):

- **busy**: the share of the window where the band-passed signal is away from
  its baseline by more than a fifth of its (robust) peak. A QRS rhythm spends
  most of its time near the baseline; VF and flutter never do.
- **high-frequency share**: VF's energy lies below 12 Hz; a QRS, muscle
  artefact and most noise carry much of theirs above (limit 15 % of the 1-30 Hz
  power: the non-VF windows that pass the other tests carry 1-2 %, so the
  leakage, not this, is what keeps them out; VF at its onset often carries 5-15 %).
- **dominant frequency**: the spectral peak in 1.5-10 Hz; VF and flutter
  oscillate at 2.5-10 Hz (150-600 per minute).
- **fundamental**: the peak must be the oscillation's own frequency, not a
  harmonic: power at half the peak frequency under 0.3 of the peak's. A train of
  beats (and alternating or bigeminal patterns) shows its fundamental there; VF's
  spectrum has one hump. On the shared records this halves the VF-like windows
  far from any annotated ventricular event and keeps 90 % of those in VF.
- **leakage**: how far the signal is from a sinusoid of its own mean period
  (the VF filter): low for flutter and coarse VF, high for spiky QRS rhythms.
- **amplitude**: a robust peak of at least 0.15 mV (fine VF below that is not
  told apart from a quiet baseline here: that is asystole's business).

Coarse VF is a second way in. Large, irregular fibrillation (often the first
seconds after VT degenerates, or after a shock) is no sinusoid: its leakage is
0.6-0.7 and its spectrum has more than one hump, so the last two tests fail it.
Where the robust peak is at least ``COARSE_AMPLITUDE_MV`` (0.5 mV, about 1 mV
peak to peak: in a smaller signal irregularity is as likely noise riding on a
rhythm), a window with leakage under ``COARSE_LEAK_MAX`` (0.7) is VF-like when
three time-domain measures of disorganisation, independent of the spectrum,
all agree:

- **crossings**: at least ``COARSE_CROSSINGS_HZ`` (8.5) crossings of the
  window's median per second: fragmented activity, not a train of beats (the
  crossing count is what drives Zhang's complexity measure, r = 0.93 with it here);
- **no repetition**: the autocorrelation at any lag of 0.35-1.5 s (a heartbeat)
  under ``COARSE_REPEAT_MAX`` (0.4): a rhythm of beats under noise or tremor
  repeats itself at its beat interval, fibrillation does not (Chen's
  autocorrelation method). Among the windows this tier would otherwise admit far
  from any ventricular event (regular beats with tremor or noise) the median is
  0.82; in annotated VF, 0.37;
- **phase-space fill**: the share of a 40 x 40 grid that the 0.5 s time-delay
  trajectory visits (Amann's TD method) at least ``PHASE_FILL_MIN`` (0.15): VF
  wanders over the plane, a QRS rhythm stays near its baseline.

Such a window counts towards ``persist``, never towards ``persist_strong``.

Each window of ``window_s`` (4 s), every ``step_s`` (1 s) of signal, is VF-like
when all six agree. ``persist`` (3) consecutive VF-like windows make the
condition present, or ``persist_strong`` (2) when both have a leakage under
``LEAK_STRONG`` (0.5; the median of annotated VF is 0.47, of QRS rhythms that
pass the other tests about 0.6): the clearer the oscillation, the sooner it is
believed, so VF is reported about 3-6 s after its onset. It stays present until
``release`` (4) consecutive windows are not VF-like (VF changes its form from
second to second; one window that does not fit is not its end). Thresholds were
set from the distributions of these features over the shared records' annotated
VF / flutter against all other seconds, never fitted to one record.

Windows end at fixed sample positions (multiples of the step from the first
sample), so the result does not depend on how the signal is chunked.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from roommon.core.model import FloatArray
from roommon.ecg.qrs import _Scipy, filter_chunk

BUSY_MIN: Final = 0.45
HF_MAX: Final = 0.15
SUBHARMONIC_MAX: Final = 0.3
LEAK_STRONG: Final = 0.5
LEAK_MAX: Final = 0.6
DOMINANT_MIN_HZ: Final = 2.5
AMPLITUDE_MIN_MV: Final = 0.15
COARSE_AMPLITUDE_MV: Final = 0.5
COARSE_LEAK_MAX: Final = 0.7
COARSE_CROSSINGS_HZ: Final = 8.5
COARSE_REPEAT_MAX: Final = 0.4
PHASE_FILL_MIN: Final = 0.15
PHASE_GRID: Final = 40  # cells per axis of the time-delay plane
PHASE_DELAY_S: Final = 0.5
REPEAT_LAGS_S: Final = (0.35, 1.5)  # heartbeat intervals (40-170 bpm)
# ndarray.sum() is this, behind a Python wrapper that costs ~0.4 µs a call.
_sum = np.add.reduce


class VfAnalyser:
    """Streaming VF / flutter analysis of one ECG channel (mV)."""

    __slots__ = (
        "_a",
        "_b",
        "_band",
        "_buf",
        "_buf_start",
        "_dominant",
        "_freqs",
        "_fs",
        "_hf",
        "_last_x",
        "_n",
        "_next_at",
        "_off",
        "_persist",
        "_persist_strong",
        "_present",
        "_release",
        "_run",
        "_step",
        "_stride",
        "_strong_run",
        "_taper",
        "_win",
        "_zi",
        "_zi_unit",
        "features",
        "vf_like",
    )

    def __init__(
        self,
        *,
        fs: float,
        window_s: float = 4.0,
        step_s: float = 1.0,
        persist: int = 3,
        persist_strong: int = 2,
        release: int = 4,
    ) -> None:
        self._fs = fs
        hi = min(30.0, 0.45 * fs)
        signal = _Scipy.load()  # scipy.signal, loaded by the first check that needs it
        b, a = signal.butter(2, [1.0, hi], btype="bandpass", fs=fs)
        self._b: FloatArray = np.asarray(b, dtype=np.float64)
        self._a: FloatArray = np.asarray(a, dtype=np.float64)
        self._zi: FloatArray = np.zeros(len(self._a) - 1)
        self._zi_unit: FloatArray = signal.lfilter_zi(self._b, self._a)
        self._win = round(window_s * fs)
        self._step = max(1, round(step_s * fs))
        self._persist = persist
        self._persist_strong = persist_strong
        self._strong_run = 0
        self._release = release
        self._off = 0
        self._present = False
        # The 1-30 Hz signal is analysed at about 100 Hz: a third of the work at 360 Hz.
        self._stride = max(1, int(fs // 100.0))
        m = len(range(0, self._win, self._stride))
        self._taper: FloatArray = np.hanning(m)
        f = np.fft.rfftfreq(m, self._stride / fs)
        self._band = (f >= 1.0) & (f < hi)
        self._hf = (f >= 12.0) & (f < hi)
        self._dominant = (f >= 1.5) & (f < 10.0)
        self._freqs = f
        self._buf: FloatArray = np.zeros(0)
        self._buf_start = 0  # absolute index of _buf[0]
        self._n = 0
        self._last_x = 0.0  # the newest input sample (a bridge starts from it)
        self._next_at = self._win
        self._run = 0
        self.vf_like = False  # the newest window
        self.features: tuple[float, ...] = ()

    @property
    def present(self) -> bool:
        """VF: entered after ``persist`` VF-like windows, left after ``release`` others."""
        return self._present

    @property
    def filtered(self) -> FloatArray:
        """The band-passed (1-30 Hz) signal kept, ending at the newest sample."""
        return self._buf

    @property
    def filtered_start(self) -> int:
        """Absolute sample index of ``filtered[0]``."""
        return self._buf_start

    def process(self, x: FloatArray) -> None:
        """Feed finite samples (mV); analyses every window that ends inside them."""
        n = x.shape[0]
        if n == 0:
            return
        if self._n == 0:
            self._zi = self._zi_unit * x.item(0)
        self._last_x = x.item(-1)
        y, self._zi = filter_chunk(self._b, self._a, x, self._zi)
        self._buf = np.concatenate((self._buf, y))
        self._n += n
        while self._next_at <= self._n:
            end = self._next_at - self._buf_start
            self._analyse(self._buf[end - self._win : end : self._stride])
            self._next_at += self._step
        keep = self._win + self._step
        drop = self._buf.shape[0] - keep
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop

    @property
    def samples_seen(self) -> int:
        """Samples analysed so far (bridged ones included): the next sample's index."""
        return self._n

    def bridge(self, n: int, to: float) -> None:
        """Stand in for ``n`` missing samples before one of value ``to`` (mV).

        A straight line from the last sample to the next: VF does not stop while
        a few samples are missing (a defibrillator's shock, a dropped packet), so
        the analysis goes on across the gap instead of waiting a whole window of new
        signal. A line is flat, quiet, one-shaped: it makes its windows look less
        like VF, never more (less busy, less power at VF's frequencies).
        """
        if n <= 0 or self._n == 0:
            return
        self.process(np.linspace(self._last_x, to, n + 2)[1:-1])

    def reset(self) -> None:
        self._run = self._off = self._strong_run = 0
        self._present = self.vf_like = False

    def _analyse(self, seg: FloatArray) -> None:
        n = seg.shape[0]
        xx = seg - _sum(seg) / n  # .mean() costs ~5 µs more per call
        dev = np.abs(xx)
        k = int(0.99 * (n - 1))
        dev.partition(k)  # in place: only its count above a level is used below
        top = dev.item(k)
        if top < AMPLITUDE_MIN_MV:
            self._verdict(False, (0.0, 0.0, 0.0, 1.0, top, 0.0))
            return
        busy = np.count_nonzero(dev > 0.2 * top) / n
        if busy < BUSY_MIN:  # most windows end here: no spectrum needed
            self._verdict(False, (busy, 0.0, 0.0, 1.0, top, 0.0))
            return
        power = np.abs(np.fft.rfft(seg * self._taper)) ** 2
        total = power[self._band].sum() + 1e-12
        hf = power[self._hf].sum() / total
        dom = np.where(self._dominant, power, 0.0)
        f0 = float(self._freqs[int(dom.argmax())])
        ad = np.abs(xx[1:] - xx[:-1]).sum()
        period = max(1, int(math.pi * np.abs(xx).sum() / max(ad, 1e-12) + 0.5))
        if period >= n:
            leak = 1.0
        else:
            a, b = xx[period:], xx[:-period]
            leak = float(np.abs(a + b).sum() / max((np.abs(a) + np.abs(b)).sum(), 1e-12))
        spectral = hf < HF_MAX and f0 >= DOMINANT_MIN_HZ
        coarse = spectral and top >= COARSE_AMPLITUDE_MV and leak < COARSE_LEAK_MAX
        like = False
        sub = 0.0
        if spectral and (leak < LEAK_MAX or coarse):
            i0 = int(dom.argmax())
            h = i0 // 2
            sub = float(power[max(h - 1, 0) : h + 2].max() / max(power.item(i0), 1e-12))
            like = leak < LEAK_MAX and sub < SUBHARMONIC_MAX
        # Coarse VF: large and disorganised, though neither sinusoidal nor one-humped.
        coarse = coarse and not like and self._disorganised(xx)
        self._verdict(like or coarse, (busy, float(hf), f0, leak, top, sub), strong=like)

    def _disorganised(self, xx: FloatArray) -> bool:
        """Fragmented, never repeating at a heartbeat's lag, filling the phase plane."""
        n = xx.shape[0]
        rate = self._fs / self._stride
        above = xx > np.median(xx)
        crossings = np.count_nonzero(above[1:] != above[:-1]) * rate / n
        if crossings < COARSE_CROSSINGS_HZ:
            return False
        g = PHASE_GRID
        d = round(PHASE_DELAY_S * rate)
        cell = np.clip(((xx / np.abs(xx).max() + 1.0) * (0.5 * g)).astype(np.intp), 0, g - 1)
        seen = np.zeros(g * g, dtype=bool)
        seen[cell[d:] * g + cell[:-d]] = True
        if np.count_nonzero(seen) < PHASE_FILL_MIN * g * g:
            return False
        # Linear autocorrelation (zero-padded FFT), each lag over its own overlap.
        spec = np.fft.rfft(xx, 2 * n)
        ac = np.fft.irfft(spec.real**2 + spec.imag**2)[:n]
        lo, hi = int(REPEAT_LAGS_S[0] * rate), int(REPEAT_LAGS_S[1] * rate)
        lags = ac[lo:hi] * (n / np.arange(n - lo, n - hi, -1))
        return bool(lags.max() < COARSE_REPEAT_MAX * ac.item(0))

    def _verdict(self, like: bool, features: tuple[float, ...], *, strong: bool = False) -> None:
        self.vf_like = like
        self.features = features
        if like:
            self._run += 1
            strong = strong and features[3] < LEAK_STRONG
            self._strong_run = self._strong_run + 1 if strong else 0
            self._off = 0
            if self._run >= self._persist or self._strong_run >= self._persist_strong:
                self._present = True
        else:
            self._run = self._strong_run = 0
            self._off += 1
            if self._off >= self._release:
                self._present = False
