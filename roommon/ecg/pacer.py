"""Pacemaker pulses: found in the ECG and blanked before QRS detection.

Sits in the EKG check in front of the QRS detector and the VF analyser. A pacer
pulse (IEC 60601-2-27: 0.1-2 ms wide, 2-700 mV at the skin) reaches a sampled
ECG as one or two samples far off the line through their neighbours, with
smooth signal either side; a QRS, however narrow, rises and falls over tens
of milliseconds. Left in, the QRS detector counts a pulse as a beat: pacing
without capture (the pacemaker firing into an arrested heart) would show a rate
instead of asystole, and a dual-chamber pacemaker's atrial pulse would be one
more "beat" before each QRS.

Test, at every sample ``i`` (``w`` = the widest pulse, 4 ms in samples, at least
one; ``k = w + 1``):

- deviation ``d = |x[i] - (x[i-k] + x[i+k]) / 2|`` of at least ``min_mv`` (0.2 mV);
- at least ``SHARPNESS`` (8) times the signal's own movement just before it,
  the larger of ``|x[i-k] - x[i-2k]|`` and ``|x[i-k] - x[i-3k]|`` (after it
  comes the pulse's recharge, so only the side before is judged);
- narrow: ``k`` samples either side the signal is back within a quarter of the
  height over ``x[i-3k]`` (an R wave, however narrow, is still half up there),
  which also tells a pulse from a step of the baseline.

Samples within ``w`` of a pulse are replaced by the last sample before them
(sample and hold, as monitors blank pacer pulses), so the QRS a captured pulse
starts is left as it was. A pulse riding on the steep part of a QRS is not found
and need not be: the QRS is there. On the shared non-paced MIT-BIH records a few
sharp artefacts per half hour are blanked; over all 26 records one detection
moved (203) and one was added (104, paced).

Only at ``MIN_FS`` (300 Hz) and above; below that, and where the front end
removes pacer pulses itself (most monitor front ends detect them at kHz rates),
the check's ``pacer_rejection`` does nothing or is turned off.

The output is the input held back by ``delay`` samples (``3k + w``: 19 ms at
360 Hz) with the same sample indices, so decisions never depend on chunking:
each needs ``3k`` samples after the sample it concerns.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from roommon.core.model import FloatArray

PULSE_MAX_S: Final = 0.004
SHARPNESS: Final = 8.0
MIN_MV: Final = 0.2
#: Below this sample rate a pulse cannot be told from a narrow R wave (at 250 Hz the
#: test looks 8-24 ms either side, where a sharp R wave can already be back at its
#: base; at 128 Hz a whole QRS fits): the filter is not used, and pacer pulses must
#: be removed by the front end.
MIN_FS: Final = 300.0


class PacerFilter:
    """Streaming pacer-pulse blanking for one ECG channel (mV)."""

    __slots__ = (
        "_decided",
        "_h0",
        "_held",
        "_hist",
        "_k",
        "_last_pulse",
        "_min_mv",
        "_out",
        "_runs",
        "_w",
        "pulses",
    )

    def __init__(self, *, fs: float, min_mv: float = MIN_MV) -> None:
        self._w = max(1, round(PULSE_MAX_S * fs))
        self._k = self._w + 1
        self._min_mv = min_mv
        self._hist: FloatArray = np.zeros(0)  # raw samples from absolute index _h0
        self._runs: list[tuple[int, int]] = []  # [start, end) to blank, absolute indices
        self._h0 = 0
        self._decided = 3 * self._k  # next sample index to test
        self._out = 0  # samples output so far
        self._held = np.nan  # last unblanked sample output
        self.pulses = 0  # pacer pulses found so far
        self._last_pulse = -(10**9)  # sample index where the last was found

    @property
    def delay(self) -> int:
        """Samples the output lags the input by."""
        return 3 * self._k + self._w

    def flush(self) -> FloatArray:
        """The samples still held back, as if the record ended here (the last are not tested)."""
        return self._emit(self._h0 + self._hist.shape[0])

    def process(self, x: FloatArray) -> FloatArray:
        """Feed consecutive samples; return the next samples, pulses blanked."""
        k, w = self._k, self._w
        if np.count_nonzero(np.isfinite(x)) != x.shape[0]:
            x = np.where(np.isfinite(x), x, np.nan)  # inf - inf would warn; NaN tests False
        self._hist = h = np.concatenate((self._hist, x))
        end = self._h0 + h.shape[0]
        lo, hi = self._decided - self._h0, h.shape[0] - 3 * k  # test these (hist indices)
        if hi > lo:
            c = h[lo:hi]
            dev = np.abs(c - 0.5 * (h[lo - k : hi - k] + h[lo + k : hi + k]))
            cand = (dev >= self._min_mv).nonzero()[0]  # few: R peaks, pulses, artefact
            if cand.shape[0]:
                i = cand + lo
                ci, left, right, base = h[i], h[i - k], h[i + k], h[i - 3 * k]
                up = ci - base  # height over the signal before it
                # Only the signal before a pulse is judged smooth: after it comes the
                # pulse's recharge (up to a quarter of it, decaying over milliseconds).
                side = np.maximum(np.abs(left - h[i - 2 * k]), np.abs(left - base))
                # Narrow: k samples to either side it is back within a quarter of its
                # height (an R wave, however narrow, is still half up), and it goes
                # back down: a pulse, not a step of the baseline.
                up2 = 0.75 * up * up
                ok = (
                    (dev[cand] >= SHARPNESS * side)
                    & (up * (ci - left) >= up2)
                    & (up * (ci - right) >= up2)
                )
                found = i[ok] + self._h0
                if found.shape[0]:
                    self._mark(found)
            self._decided = end - 3 * k
        # Marks are final up to the last tested sample less the pulse half-width.
        seg = self._emit(min(max(self._out, self._decided - w), end))
        keep = min(self._decided - 3 * k, self._out) - self._h0
        if keep > 0:
            self._hist = self._hist[keep:]
            self._h0 += keep
        return seg

    def _mark(self, found: npt.NDArray[np.int64]) -> None:
        """Blank ``w`` around each sample found (absolute indices, increasing)."""
        k, w = self._k, self._w
        # A pulse over two samples is found at both: count pulses, not samples.
        self.pulses += int(np.count_nonzero(np.diff(found, prepend=self._last_pulse) > k))
        self._last_pulse = int(found[-1])
        runs = self._runs
        for j in found.tolist():
            a, b = max(j - w, 0), j + w + 1
            if runs and a <= runs[-1][1]:
                runs[-1] = (runs[-1][0], max(b, runs[-1][1]))
            else:
                runs.append((a, b))

    def _emit(self, out_end: int) -> FloatArray:
        start = self._out
        seg = self._hist[start - self._h0 : out_end - self._h0]
        runs = self._runs
        if runs and runs[0][0] < out_end:
            seg = seg.copy()
            rest: list[tuple[int, int]] = []
            held = self._held
            for a, b in runs:
                if a >= out_end:
                    rest.append((a, b))
                    continue
                lo, hi = max(a, start), min(b, out_end)
                if lo > start:
                    held = float(seg[lo - 1 - start])  # just before the run: not blanked
                seg[lo - start : hi - start] = held
                if b > out_end:
                    rest.append((a, b))
            self._runs = rest
        if seg.shape[0]:
            self._held = float(seg[-1])
        self._out = out_end
        return seg
