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

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import find_peaks

from roommon.model import FloatArray
from roommon.signal.summaries import std_of

try:
    # find_peaks' own compiled steps. find_peaks spends ~10 µs per call validating
    # and unpacking its arguments, as much as the work on an 8 s pleth window; the
    # test suite checks that these steps give exactly find_peaks' answer.
    from scipy.signal._peak_finding_utils import (
        _local_maxima_1d,
        _peak_prominences,
        _select_by_peak_distance,
    )
except ImportError:  # pragma: no cover - a scipy that moved them: use the public function
    _local_maxima_1d = None

IntArray = npt.NDArray[np.intp]

_EMPTY = np.empty(0, dtype=np.float64)


def pulse_peaks(
    x: FloatArray, *, distance: int, min_prominence: float, wlen: int
) -> tuple[IntArray, FloatArray]:
    """``find_peaks(x, distance=, prominence=min_prominence, wlen=)``: peaks, prominences."""
    if _local_maxima_1d is None:  # pragma: no cover
        found, props = find_peaks(x, distance=distance, prominence=min_prominence, wlen=wlen)
        return found, props["prominences"]
    x = np.ascontiguousarray(x, dtype=np.float64)
    peaks: IntArray = _local_maxima_1d(x)[0]
    if len(peaks) > 1:
        peaks = peaks[_select_by_peak_distance(peaks, x[peaks], distance)]
    prom: FloatArray = _peak_prominences(x, peaks, np.intp(wlen))[0]
    keep = prom >= min_prominence
    return peaks[keep], prom[keep]


@dataclass(frozen=True, slots=True)
class Beats:
    """Beats closed in one block, as parallel arrays (oldest first)."""

    t: FloatArray  # time of each beat's peak
    peak: FloatArray
    trough: FloatArray
    mean: FloatArray
    ibi: FloatArray  # seconds since the previous beat's peak

    def __len__(self) -> int:
        return len(self.t)

    @property
    def amplitude(self) -> FloatArray:
        """Peak minus preceding trough (pulse pressure for ABP)."""
        return self.peak - self.trough

    @property
    def rate(self) -> FloatArray:
        """Instantaneous rate per beat, in beats per minute."""
        return 60.0 / self.ibi


NO_BEATS = Beats(t=_EMPTY, peak=_EMPTY, trough=_EMPTY, mean=_EMPTY, ibi=_EMPTY)


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
        "_carry",
        "_carry_start",
        "_decided",
        "_end",
        "_last_peak",
        "_t_origin",
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
        self.reset(t_origin=0.0)

    def reset(self, *, t_origin: float) -> None:
        """Forget everything (a gap in the feed): the next block starts a new chain."""
        self._t_origin = t_origin
        self._carry = _EMPTY
        self._carry_start = 0
        self._end = 0  # index (since origin) just after the last sample seen
        self._decided = 0  # peaks before this index are already decided
        self._last_peak = -1  # index of the last decided peak, -1 if none

    def process(self, block: FloatArray, t_first: float, restarted: bool) -> Beats:
        if restarted:
            self.reset(t_origin=t_first)
        x = np.concatenate((self._carry, block)) if len(self._carry) else block
        base = self._carry_start  # index of x[0] since origin
        end = self._end + len(block)
        self._end = end
        std = std_of(x)
        self.last_std = std
        lo = self._decided - base
        hi = end - self.lookahead_n - base
        # Keep enough history for the next block: prominence window (max_ibi each
        # side), the lookahead, and the previous peak of the next beat.
        keep = min(len(x), self.lookahead_n + self.max_ibi_n + 1)
        self._carry = x[-keep:].copy()
        self._carry_start = end - keep
        if hi <= lo:
            return NO_BEATS
        self._decided = hi + base
        threshold = max(self.min_prominence, self.prominence_std * std)
        if threshold <= 0.0:  # flat window: no pulses
            return NO_BEATS
        peaks, prom = pulse_peaks(
            x, distance=self.min_ibi_n, min_prominence=threshold, wlen=2 * self.max_ibi_n + 1
        )
        m = len(prom)
        if m > 1:
            # median of the upper half of the prominences
            s = np.sort(prom)
            h = m // 2
            u = m - h  # upper half: s[h:]
            mid = h + u // 2
            typical = float(s[mid]) if u % 2 else 0.5 * (float(s[mid - 1]) + float(s[mid]))
            threshold = max(threshold, self.relative_prominence * typical)
            peaks = peaks[prom >= threshold]
        peaks = peaks[(peaks >= lo) & (peaks < hi)]
        if len(peaks) == 0:
            return NO_BEATS
        last = self._last_peak - base
        self._last_peak = int(peaks[-1]) + base
        if last >= 0:
            if peaks[0] - last < self.min_ibi_n:
                peaks = peaks[1:]
                if len(peaks) == 0:
                    self._last_peak = last + base
                    return NO_BEATS
            idx = np.concatenate(((last,), peaks))
        else:
            idx = peaks
        if len(idx) < 2:
            return NO_BEATS
        starts = idx[:-1]
        span = x[: idx[-1]]
        n = idx[1:] - starts
        ok = n <= self.max_ibi_n
        trough = np.minimum.reduceat(span, starts)
        mean = np.add.reduceat(span, starts) / n
        ends = idx[1:]
        fs = self.fs
        t = self._t_origin + (ends + base) / fs
        if not ok.all():
            return Beats(
                t=t[ok], peak=x[ends[ok]], trough=trough[ok], mean=mean[ok], ibi=n[ok] / fs
            )
        return Beats(t=t, peak=x[ends], trough=trough, mean=mean, ibi=n / fs)
