"""Beat-by-beat detection on pulsatile waveforms (pleth, arterial pressure).

Used by the SpO2 and ABP checks after a :class:`~roommon.signal.blocks.BlockAssembler`.
Each block is analysed together with a carried tail of earlier samples;
``scipy.signal.find_peaks`` marks pulse maxima, and a peak is *decided* only
once ``max_ibi_s`` of samples follow it, so its prominence window and the
refractory rule saw all they need. Each decided peak closes one beat, the
cycle from the previous peak to this one:

- ``peak``: the maximum (systolic pressure for ABP),
- ``trough``: the minimum of the cycle, i.e. the trough preceding the peak
  (diastolic pressure for ABP),
- ``mean``: area over the cycle divided by its duration (mean arterial pressure),
- ``ibi``: seconds since the previous peak.

Everything per sample is numpy; Python only runs per block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from roommon.core.model import FloatArray
from roommon.signal.summaries import sum_of

if TYPE_CHECKING:
    from types import ModuleType

IntArray = npt.NDArray[np.intp]

_EMPTY = np.empty(0, dtype=np.float64)


class _Scipy:
    """scipy.signal, imported on first use (a command that runs no check never loads it).

    ``steps`` is find_peaks' own compiled steps. find_peaks spends ~10 µs per call
    validating and unpacking its arguments, as much as the work on an 8 s pleth
    window; the test suite checks that these steps give exactly find_peaks' answer.
    None where a scipy moved them: then the public function is used.
    """

    signal: ModuleType | None = None
    steps: ModuleType | None = None

    @classmethod
    def load(cls) -> ModuleType:
        if cls.signal is None:
            import scipy.signal

            try:
                from scipy.signal import _peak_finding_utils
            except ImportError:  # pragma: no cover
                cls.steps = None
            else:
                cls.steps = _peak_finding_utils
            cls.signal = scipy.signal
        return cls.signal


_min_reduceat = np.minimum.reduceat
_add_reduceat = np.add.reduceat
_count_nonzero = np.count_nonzero


def local_maxima(x: FloatArray, steps: FloatArray) -> IntArray:
    """Indices of the local maxima of ``x`` exactly as ``find_peaks`` finds them.

    ``steps`` is ``x[1:] - x[:-1]`` and ``x`` must be finite. Without two equal
    neighbours (the usual case for a real-valued signal) a maximum is where a
    rise is followed by a fall: three numpy calls, half the fixed cost of the
    compiled step, which handles flat tops (their middle sample, as find_peaks).
    """
    if _count_nonzero(steps) == len(steps):
        up = steps > 0
        found: IntArray = (up[:-1] > up[1:]).nonzero()[0]
        found += 1
        return found
    signal = _Scipy.load()
    if _Scipy.steps is None:  # pragma: no cover
        return signal.find_peaks(x)[0]  # type: ignore[no-any-return]
    return _Scipy.steps._local_maxima_1d(x)[0]  # type: ignore[no-any-return]


def _spaced_peaks(
    x: FloatArray, distance: int, wlen: np.intp, steps: FloatArray | None = None
) -> tuple[IntArray, FloatArray]:
    """Local maxima of ``x`` kept by find_peaks' ``distance`` rule, and their prominences.

    ``steps`` (``x[1:] - x[:-1]``), when given, says ``x`` is finite and lets
    :func:`local_maxima` find the maxima without the compiled step.
    """
    signal = _Scipy.load()
    impl = _Scipy.steps
    if impl is None:  # pragma: no cover
        found, props = signal.find_peaks(x, distance=distance, prominence=0.0, wlen=wlen)
        return found, props["prominences"]
    x = np.ascontiguousarray(x, dtype=np.float64)
    peaks: IntArray = impl._local_maxima_1d(x)[0] if steps is None else local_maxima(x, steps)
    if len(peaks) > 1:
        peaks = peaks[impl._select_by_peak_distance(peaks, x[peaks], distance)]
    prom: FloatArray = impl._peak_prominences(x, peaks, wlen)[0]
    return peaks, prom


def pulse_peaks(
    x: FloatArray, *, distance: int, min_prominence: float, wlen: int
) -> tuple[IntArray, FloatArray]:
    """``find_peaks(x, distance=, prominence=min_prominence, wlen=)``: peaks, prominences."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    steps = x[1:] - x[:-1] if np.isfinite(x).all() else None
    peaks, prom = _spaced_peaks(x, distance, np.intp(wlen), steps)
    keep = prom >= min_prominence
    return peaks[keep], prom[keep]


@dataclass(slots=True)
class Beats:
    """Beats closed in one block, as parallel lists (oldest first); treat as read-only.

    Lists, not arrays: a 4 s block closes a handful of beats, and every consumer
    reduces them with Python-level summaries (:mod:`roommon.signal.summaries`)
    or keeps them in short rolling histories, where small numpy arrays cost more
    in per-call overhead than the arithmetic they hold.
    """

    t: Sequence[float]  # time of each beat's peak
    peak: Sequence[float]
    trough: Sequence[float]
    mean: Sequence[float]
    ibi: Sequence[float]  # seconds since the previous beat's peak

    def __len__(self) -> int:
        return len(self.t)

    @property
    def amplitude(self) -> list[float]:
        """Peak minus preceding trough (pulse pressure for ABP)."""
        return [p - t for p, t in zip(self.peak, self.trough, strict=True)]

    @property
    def rate(self) -> list[float]:
        """Instantaneous rate per beat, in beats per minute."""
        return [60.0 / i for i in self.ibi]


NO_BEATS = Beats(t=(), peak=(), trough=(), mean=(), ibi=())


class PulseDetector:
    """Streaming pulse-peak detector over fixed blocks, with carried state.

    ``min_ibi_s`` is the refractory period (shortest beat, i.e. highest rate);
    ``max_ibi_s`` the longest beat that still links two peaks into one beat and
    the lookahead before a peak is final. A peak must stand out from its
    neighbourhood by ``prominence_std`` times the standard deviation of the
    analysed window, and by at least ``min_prominence`` (signal units).

    A pulse wave has a second, smaller hump (the dicrotic wave) that can be a
    local maximum of its own, about a quarter of the pulse amplitude above the
    notch before it. Against the window's standard deviation alone it sits right
    at the threshold, and counted as a beat it halves the interval and doubles the
    rate. So a peak must also reach ``relative_prominence`` of the window's typical
    pulse prominence: the median of the upper half of the prominences found, which
    half the peaks being dicrotic waves cannot pull down. Respiratory variation of
    pulse amplitude (up to ~30 % of the largest beat in hypovolaemia) stays above
    the default of one half.
    """

    __slots__ = (
        "_buf",
        "_carry_len",
        "_carry_n",
        "_carry_start",
        "_decided",
        "_end",
        "_last_peak",
        "_shift",
        "_t_origin",
        "_wlen",
        "block_steps",
        "fs",
        "last_std",
        "lookahead_n",
        "max_ibi_n",
        "min_ibi_n",
        "min_prominence",
        "prominence_std",
        "relative_prominence",
    )

    def __init__(
        self,
        *,
        fs: float,
        min_ibi_s: float = 0.27,
        max_ibi_s: float = 2.0,
        prominence_std: float = 0.8,
        min_prominence: float = 0.0,
        relative_prominence: float = 0.5,
    ) -> None:
        self.fs = fs
        self.min_ibi_n = max(1, round(min_ibi_s * fs))
        self.max_ibi_n = max(self.min_ibi_n + 1, round(max_ibi_s * fs))
        self.lookahead_n = self.max_ibi_n
        self.prominence_std = prominence_std
        self.min_prominence = min_prominence
        self.relative_prominence = relative_prominence
        self.last_std = 0.0
        self._carry_n = self.lookahead_n + self.max_ibi_n + 1
        self._wlen = np.intp(2 * self.max_ibi_n + 1)  # prominence window: max_ibi each side
        #: ``block[1:] - block[:-1]`` of the last block processed (for the caller's own
        #: block statistics: computed here anyway for the local maxima).
        self.block_steps: FloatArray = _EMPTY
        self._buf: FloatArray = _EMPTY
        self.reset(t_origin=0.0)

    def reset(self, *, t_origin: float) -> None:
        """Forget everything (a gap in the feed): the next block starts a new chain."""
        self._t_origin = t_origin
        self._carry_len = 0
        self._shift = 0
        self._carry_start = 0
        self._end = 0  # index (since origin) just after the last sample seen
        self._decided = 0  # peaks before this index are already decided
        self._last_peak = -1  # index of the last decided peak, -1 if none

    def process(self, block: FloatArray, t_first: float, restarted: bool) -> Beats:
        # Runs once per block: at 75 Hz the fixed cost of each numpy call, not the
        # arithmetic on 600 samples, is what counts, so the steps after the peak
        # search are Python arithmetic on a few dozen peaks and a handful of beats.
        if restarted:
            self.reset(t_origin=t_first)
        if self._shift:  # move the carry left by the last block's length
            shift = self._shift
            self._buf[: self._carry_len] = self._buf[shift : shift + self._carry_len]
            self._shift = 0
        # x: the carried tail of earlier samples, then the block, in one buffer
        # reused from block to block (no concatenation, no copy of the carry).
        nc = self._carry_len
        nb = len(block)
        n = nc + nb
        buf = self._buf
        if n > len(buf):
            buf = np.empty(2 * n)
            buf[:nc] = self._buf[:nc]
            self._buf = buf
        x = buf[:n]
        x[nc:] = block
        steps = x[1:] - x[:-1]
        self.block_steps = steps[nc:]
        base = self._carry_start  # index of x[0] since origin
        end = self._end + nb
        self._end = end
        # std_of(x), keeping the sum of squares: a NaN or inf in x shows in it
        squares = float(x.dot(x))
        m = sum_of(x) / n
        self.last_std = std = math.sqrt(max(squares / n - m * m, 0.0))
        lo = self._decided - base
        hi = end - self.lookahead_n - base
        # Keep enough history for the next block: prominence window (max_ibi each
        # side), the lookahead, and the previous peak of the next beat. The move
        # happens at the start of the next block: x stays valid until then.
        keep = min(n, self._carry_n)
        self._shift = n - keep
        self._carry_len = keep
        self._carry_start = end - keep
        if hi <= lo:
            return NO_BEATS
        self._decided = hi + base
        threshold = max(self.min_prominence, self.prominence_std * std)
        if threshold <= 0.0:  # flat window: no pulses
            return NO_BEATS
        found, prom = _spaced_peaks(
            x, self.min_ibi_n, self._wlen, steps if math.isfinite(squares) else None
        )
        # pulse_peaks' prominence filter, then the typical-prominence rule
        peaks: list[int] = found.tolist()
        proms: list[float] = prom.tolist()
        cand = [(p, q) for p, q in zip(peaks, proms, strict=True) if q >= threshold]
        c = len(cand)
        if c > 1:
            # median of the upper half of the prominences
            s = sorted([q for _, q in cand])
            h = c // 2
            u = c - h  # upper half: s[h:]
            mid = h + u // 2
            typical = s[mid] if u % 2 else 0.5 * (s[mid - 1] + s[mid])
            threshold = max(threshold, self.relative_prominence * typical)
        kept = [p for p, q in cand if q >= threshold and lo <= p < hi]
        if not kept:
            return NO_BEATS
        last = self._last_peak - base
        self._last_peak = kept[-1] + base
        if last >= 0:
            if kept[0] - last < self.min_ibi_n:
                del kept[0]
                if not kept:
                    self._last_peak = last + base
                    return NO_BEATS
            kept.insert(0, last)
        if len(kept) < 2:
            return NO_BEATS
        return self._beats(x, kept, base)

    def _beats(self, x: FloatArray, idx: list[int], base: int) -> Beats:
        """The beats closed by consecutive peaks ``idx`` (indices into ``x``)."""
        starts = idx[:-1]
        span = x[: idx[-1]]
        troughs: list[float] = _min_reduceat(span, starts).tolist()
        sums: list[float] = _add_reduceat(span, starts).tolist()
        value = x.item
        fs = self.fs
        t0 = self._t_origin
        max_n = self.max_ibi_n
        t: list[float] = []
        peak: list[float] = []
        trough: list[float] = []
        mean: list[float] = []
        ibi: list[float] = []
        a = idx[0]
        for k in range(len(starts)):
            e = idx[k + 1]
            d = e - a
            if d <= max_n:  # longer is not one beat: no beat closes here
                t.append(t0 + (e + base) / fs)
                peak.append(value(e))
                trough.append(troughs[k])
                mean.append(sums[k] / d)
                ibi.append(d / fs)
            a = e
        return Beats(t=t, peak=peak, trough=trough, mean=mean, ibi=ibi)
