"""Streaming QRS detector: ECG samples in (chunk by chunk), R-peak sample indices out.

Sits inside the EKG check (:mod:`roommon.checks.ecg`) and the offline
``ecg-beats`` command; both feed it exactly the same way, so what is validated
offline is what runs live.

Method (Pan & Tompkins 1985, with the decision rules of Hamilton & Tompkins 1986):

1. Band-pass 5-15 Hz and a three-point derivative, one IIR filter whose state
   (``zi``) is carried from chunk to chunk; squared; moving-window integral
   (150 ms) from a running sum over the chunk plus a carried tail.
2. Candidate peaks: local maxima of the integral, merged greedily so that no two
   candidates are closer than 200 ms (the larger wins); in a fast run of alike
   candidates (a tachycardia) a group of merged peaks spans at most 200 ms, so
   that a chain of peaks does not run on into the next complex.
3. Each candidate, in sample order, is a QRS when it is above the adaptive
   threshold ``noise + 0.3125 * (qrs - noise)`` (medians/means of the last eight
   QRS and noise peaks), is past the 200 ms refractory period, is not a T wave
   (within 360 ms of the previous QRS, from its R point or its integral peak,
   whichever is closer, with less than half its steepest slope;
   for a candidate as sharp, slope per mV, as the recent QRS complexes, the
   window shrinks with the rate as the QT interval does; nor the slow end of a
   wide QRS: much duller for its height, no valley in the integral between them),
   and has a raw deflection of at least ``min_qrs_mv``. When no QRS has been
   found for 1.66 mean R-R intervals, the largest candidate since the last QRS
   above half the threshold is taken (search-back). A wide beat (aberrated or
   ventricular premature beat: half as tall, a fifth as steep) past the T-wave
   window is taken at 0.8 of the threshold without waiting for search-back; a
   small candidate whose integral rises to 1.4 times its peak within 250 ms is the
   P wave of the QRS that follows. After ``relearn_s`` (2 s) without a QRS the levels are
   learnt again, from two recent candidates of the old QRS's shape (slope per mV)
   when there are such: a change of gain is then re-learnt down to a tenth of the
   old height, while P waves in a ventricular standstill (rounder, smaller, or
   seen between the old beats already: a gain change shrinks those too) stay
   no beats. A beat over five times the median height of the recent ones, with
   one of its size 1.5-10 s before it, starts the height over (the recent
   "beats" were waves beside a slow rhythm of tall ones); for 1 s after a railed
   stretch or a gap a candidate must be at least 0.4 times as sharp (slope per
   mV) as the recent QRS (an amplifier's recovery curve is not a beat).
4. The reported point is the R peak: the sample of largest absolute deflection
   of the raw signal from its local baseline (median around the QRS) inside the
   window the integral says the QRS occupied, within 150 ms before and 80 ms
   after the steepest filtered slope there. Wide (bundle-branch block, PVC)
   complexes widen the integral's peak, and the window covers them. In a rhythm
   over 150 bpm, a point that falls in the refractory period of the previous R
   gives way to the largest deflection after the steepest slope.

Chunking independence: every decision is taken on absolute sample indices and
only once the signal is known far enough ahead of the index it concerns (a
fixed look-ahead of the merge distance), so any chunking of the same signal
gives the same beats (up to float rounding in the integral, which can move a
beat by at most one sample at an exact tie).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from roommon.core.model import FloatArray


class _Scipy:
    """scipy.signal, imported on first use (a command that runs no check never loads it)."""

    signal: Any = None

    @classmethod
    def load(cls) -> Any:
        if cls.signal is None:
            import scipy.signal

            cls.signal = scipy.signal
        return cls.signal


IntArray = npt.NDArray[np.int64]

MIN_FS: Final = 125.0
MAX_FS: Final = 1000.0

# A QRS is steep: a candidate with less than this share of the recent QRS's median
# steepest slope is a T or P wave or baseline movement, whatever its size.
SLOPE_FLOOR: Final = 0.4
# At search-back (a beat is overdue) a candidate of at least this share of the
# recent R amplitude needs only this share of the slope: wide, slurred ectopic
# beats (PVCs, aberrated APCs) are big but not steep.
SEARCHBACK_AMPLITUDE: Final = 0.3
SEARCHBACK_SLOPE_FLOOR: Final = 0.2
# Re-learning after a sudden amplitude drop accepts beats down to these shares of
# the recent QRS slope and R amplitude, no lower: P waves in a ventricular
# standstill are smaller and flatter still, and must never become "beats".
RELEARN_SLOPE_FLOOR: Final = 0.2
MIN_AMPLITUDE_SHARE: Final = 0.15
# Re-learning after a change of gain starts the floors over from a recent
# candidate as sharp as the old QRS (slope per mV of height at least this share
# of the old QRS's) and at least this share of its height: a gain change keeps
# the QRS's shape, P and T waves are rounder, and P waves in a ventricular
# standstill are also smaller than that (cudb cu31: a twentieth).
RELEARN_SHARPNESS: Final = 0.7
RELEARN_AMPLITUDE: Final = 0.1
# ... unless waves of that size and shape went along with the old QRS complexes
# (BESIDE_MATCHES of the last BESIDE_N candidates rejected between two beats): a
# change of gain shrinks the P and T waves with the QRS, so such waves were not
# there before; the P waves of a complete heart block were, and go on through a
# ventricular standstill (cudb cu35: a tenth of the wide escape beats' height, and
# as sharp for their size).
BESIDE_N: Final = 24
BESIDE_MATCHES: Final = 2
# Two QRS complexes in a row in one lead differ less than sevenfold in height (over
# the shared records, of the detections under 0.15 of the detection before them
# none was an annotated beat, a tall PVC's small successor included; 28 were false):
# a candidate under this share of the last QRS, with no re-learning since, is a
# wave beside it (cudb cu21's slow waves after a shock between tall narrow beats),
# however far the median height has drifted.
LAST_AMPLITUDE_SHARE: Final = 0.15
# For the same reason a QRS more than fivefold the median height of the recent
# beats, with a beat of about its size (half to twice) TALL_RHYTHM_S before it,
# means those recent "beats" were not QRS complexes but the waves beside a slow
# rhythm of tall ones (the P waves of a complete heart block between wide escape
# beats every 2 s, cudb cu35, taken for beats once one slipped in): over the shared
# records no annotated beat was fivefold the median but there. The R amplitude then
# starts over from that QRS, so the floors above (MIN_AMPLITUDE_SHARE,
# LAST_AMPLITUDE_SHARE) reject those waves again. A burst of tall artefacts among
# small beats has no such predecessor, and must not raise the floors over the beats
# (vfdb 423's noise: the beats after it were lost).
HISTORY_AMPLITUDE_SHARE: Final = 0.2
TALL_RHYTHM_S: Final = (1.5, 10.0)
# A wide beat (aberrated premature beat, slurred PVC) is about half as tall as the
# QRS around it and a fifth to a third as steep, so its integral falls just short
# of the threshold and the slope floor rejects it; a P wave, or a T wave past the
# T-wave window, is mostly under a quarter of the QRS height. A candidate past the
# T-wave window, at least this share of the threshold and of the R amplitude, is a
# beat with the search-back slope floor, without waiting 1.66 R-R for search-back
# (aberrated APCs come in pairs inside one long interval, and search-back finds one).
WIDE_VALUE: Final = 0.8
WIDE_AMPLITUDE: Final = 0.35
# A P wave precedes its QRS by 120-250 ms; a tall one (mitdb 108) passes for a beat
# when the integral's peaks are more than the merge distance apart. A candidate
# under 1/1.3 of the recent R height whose integral, within P_WAVE_S, rises to 1.4
# times its own peak is that QRS's P wave (two QRS complexes so close are never
# that unequal: a fast tachycardia's are alike, and an R-on-T beat comes later).
P_WAVE_S: Final = 0.25
P_WAVE_RATIO: Final = 1.3
P_WAVE_VALUE_RATIO: Final = 1.4

# The T wave peaks earlier as the heart rate rises (the QT interval shortens about
# as the square root of the R-R interval, Bazett): T_WAVE_S is its window at
# 60 bpm, and at faster rates the window shrinks so, down to the refractory
# period. A candidate between that shrunk window and T_WAVE_S is still a T wave
# unless it is as sharp as the recent QRS complexes (slope per mV of height at
# least T_WAVE_SHARPNESS of theirs): the T wave is round, an early PVC landing on
# it (mitdb 203, coupled at 340-390 ms in a 100 bpm atrial fibrillation) is not.
T_WAVE_S: Final = 0.360
T_WAVE_SHARPNESS: Final = 0.9
# A wide escape or paced beat can be a sharp notch and then a tall slow hump
# 230-450 ms later (cudb cu35), which passes that test on its height. A candidate in
# the T-wave window under TAIL_DULL of the last QRS's slope per mV, with the integral
# never falling between the two below TAIL_VALLEY of its own peak, is that QRS's end
# (an early PVC is as dull, but the ST segment before it is a valley).
TAIL_DULL: Final = 0.5
TAIL_VALLEY: Final = 0.75
# In a fast rhythm (mean R-R under FAST_RR_S, 150 bpm and over: ventricular
# tachycardia) the complexes are so close that the R point of a wide one, the
# largest deflection around its steepest slope, can fall within the refractory
# period of the previous R point though its energy peak is a full period away;
# the largest deflection after its steepest slope is then taken, if that is past
# the refractory period (cudb cu13's 225 bpm VT lost one beat in four).
FAST_RR_S: Final = 0.400
# Merging chains: a larger integral peak within the merge distance replaces the
# pending candidate and the distance then counts from it, so in a tachycardia whose
# integral never falls between complexes (cudb cu13's 225 bpm VT, mitdb 205) the
# chain swallows every other complex. In a run of FAST_RUN candidates under
# FAST_RR_S apart whose integral peaks are alike (within FAST_RUN_ALIKE of each
# other: one monomorphic rhythm, not QRS and T waves) the merge distance counts
# from the first peak of the group instead.
FAST_RUN: Final = 4
FAST_RUN_ALIKE: Final = 1.5
# Defibrillation, a lead moving to the ADC's limits, a gap held at its last
# value: the signal sits still, far from its baseline. No QRS holds one level for
# RAIL_S (a clipped R peak does for a few samples): a candidate whose window has
# that long a run of identical samples at half its deflection or more is neither
# a beat nor a level to learn from (cudb's shocks: cu17, cu21, cu23, cu27).
RAIL_S: Final = 0.060
# A signal held at the ADC's limit for most of the window has its baseline (the
# median) there; a swing off the limit much taller than the recent QRS is then a
# shock's or a lead's (cudb cu17, cu23: rail to rail, twice the QRS), while a QRS
# rising out of a lead drifted to the limit (mitdb 116) keeps the QRS's height.
RAIL_SWING: Final = 1.5
# An amplifier coming out of saturation (after a shock, a lead reconnected, a gap
# in the data) drifts back to its baseline along a smooth curve over about a
# second, and the band-pass sees its bends. A QRS keeps its shape (slope per mV of
# height) through that; the curve is much duller for its height. So for
# RECOVERY_S after a railed candidate or a non-finite sample, a candidate needs at
# least RECOVERY_SHARPNESS of the recent QRS's slope per mV (cudb's shocks: cu17,
# cu23, cu25, cu27).
RECOVERY_S: Final = 1.0
RECOVERY_SHARPNESS: Final = 0.4
# Search-back takes the largest candidate under the threshold, with lowered floors
# (half the threshold, a fifth of the slope for a tall one): a guess, right for a
# missed wide beat, wrong where the signal between the beats is artefact (the slow
# waves and their ripple after a shock, cudb cu21: true R-R 2-3 s, each search-back
# "beat" a ripple). So a guessed beat tells where a beat was, not what a QRS looks
# like: its slope, R amplitude and slope per mV stay out of the references the
# floors are taken from, else each such guess lowers the floors for the next until
# the ripple passes for the rhythm. After re-learning they do enter:
# the levels are to follow the new QRS there; and so they do for a guess at least
# GUESS_ALIKE as steep as the last beat that entered them: a rhythm changing beat by
# beat (a ventricular tachycardia's complexes shrinking and slurring, vfdb 425),
# which the floors must follow, not a ripple a tenth as steep as the QRS.
GUESS_ALIKE: Final = 0.5
_EMPTY_BEATS: Final[IntArray] = np.empty(0, dtype=np.int64)


# np.median and np.mean spend ~20 and ~8 µs per call on argument handling; the
# detector takes them per candidate (a few per beat) over a few dozen samples or
# eight levels, where that overhead was most of the detector's time.


def _median_of_levels(levels: Iterable[float]) -> float:
    """Median of a few floats (0 if none); equals ``np.median``."""
    s = sorted(levels)
    n = len(s)
    if n == 0:
        return 0.0
    h = n // 2
    return s[h] if n % 2 else (s[h - 1] + s[h]) / 2.0


def _median_of_samples(a: FloatArray) -> float:
    """Median of a non-empty array by partial sort; equals ``np.median``."""
    n = a.shape[0]
    h = n // 2
    p = a.copy()  # np.partition is this copy and the in-place partition, plus ~1 µs
    if n % 2:
        p.partition(h)
        return p.item(h)
    p.partition((h - 1, h))
    return (p.item(h - 1) + p.item(h)) / 2.0


def filter_chunk(
    b: FloatArray, a: FloatArray, x: FloatArray, zi: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``scipy.signal.lfilter(b, a, x, zi=zi)``: one chunk, the filter state carried.

    ``b``, ``a``, ``x`` and ``zi`` are 1-D float64 arrays, ``len(a) > 1`` and
    ``len(zi) == max(len(a), len(b)) - 1`` (what lfilter would check and convert).
    """
    y, zf = _Scipy.load().lfilter(b, a, x, zi=zi)
    return y, zf


@dataclass(slots=True)
class _Candidate:
    idx: int  # sample index of the integral's peak
    value: float  # integral's value there
    r_idx: int = -1  # R peak (largest raw deflection) belonging to this candidate
    amplitude: float = 0.0  # |deflection| of the R peak from the local baseline
    slope: float = 0.0  # steepest filtered slope in the QRS window
    r_late: int = -1  # largest deflection from the steepest slope on (FAST_RR_S)
    amp_late: float = 0.0  # |deflection| there
    railed: bool = False  # the window holds a long flat stretch away from baseline
    rail_edge: bool = False  # ... or at the window's highest or lowest value
    # Absolute filtered slope from a T-wave window and an integration window before the
    # integral's peak up to it (a view of the history): whether the integral fell
    # between this and an earlier peak, worked out only when that is asked.
    before: FloatArray | None = None


_BAND_FILTERS: dict[float, tuple[FloatArray, FloatArray, FloatArray]] = {}


def _band_filter(fs: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(b, a, zi_unit) of the detector's band-pass for ``fs``, designed once per rate
    (read-only arrays: every detector at that rate shares them)."""
    found = _BAND_FILTERS.get(fs)
    if found is None:
        scipy_signal = _Scipy.load()
        b0, a0 = scipy_signal.butter(2, [5.0, 15.0], btype="bandpass", fs=fs)
        b = np.convolve(b0, [1.0, 0.0, -1.0]) * (fs / 2.0)
        a = np.asarray(a0, dtype=np.float64)
        zi_unit = np.asarray(scipy_signal.lfilter_zi(b, a), dtype=np.float64)
        for arr in (b, a, zi_unit):
            arr.setflags(write=False)
        found = _BAND_FILTERS[fs] = (b, a, zi_unit)
    return found


class QrsDetector:
    """Streaming QRS detector for one ECG channel in mV.

    ``process(samples)`` returns the absolute sample indices (counted from the
    first sample ever given) of the R peaks confirmed by that call, in
    increasing order. A beat is confirmed at most ``latency_s`` after its R
    peak for ordinary beats; beats found by search-back come up to 1.66 R-R
    intervals later. ``flush()`` confirms what the end of a record leaves open.
    """

    __slots__ = (
        "_a",
        "_amp_hist",
        "_amp_med",
        "_b",
        "_base",
        "_baseline_pad",
        "_beat_heights",
        "_beside",
        "_der_hist",
        "_fast",
        "_fast_rr",
        "_fs",
        "_gaps",
        "_group",
        "_hist_len",
        "_last_mwi",
        "_last_qrs",
        "_last_rail",
        "_last_slope",
        "_last_x",
        "_learn_end",
        "_learned",
        "_learning",
        "_max_rr",
        "_merge",
        "_min_qrs_mv",
        "_mwi_tail",
        "_n",
        "_noise_cands",
        "_noise_peaks",
        "_p_wave",
        "_pending",
        "_qrs_end",
        "_qrs_peaks",
        "_qrs_span",
        "_queue",
        "_r_after",
        "_r_before",
        "_rail",
        "_raw_hist",
        "_raw_peaks",
        "_recent_cands",
        "_recovery",
        "_ref",
        "_refractory",
        "_relearn",
        "_relearnt",
        "_rr",
        "_rr_mean_n",
        "_sb_done",
        "_seen_amp",
        "_seen_amp_med",
        "_seen_slope_med",
        "_seen_slopes",
        "_shape_slope",
        "_sharp_hist",
        "_sharp_med",
        "_slope_med",
        "_slopes",
        "_sq_tail",
        "_t_wave",
        "_tall_rhythm",
        "_thr",
        "_win",
        "_zi",
        "_zi_unit",
        "last_deriv",
        "last_slope",
    )

    def __init__(
        self,
        *,
        fs: float,
        min_qrs_mv: float = 0.15,
        learn_s: float = 2.0,
        relearn_s: float = 2.0,
    ) -> None:
        if not MIN_FS <= fs <= MAX_FS:
            raise ValueError(f"sample rate {fs} Hz outside {MIN_FS}..{MAX_FS} Hz")
        self._fs = float(fs)
        self._min_qrs_mv = min_qrs_mv
        # Band-pass 5-15 Hz (QRS energy, above P/T waves and baseline, below EMG)
        # convolved with a centred difference: one small IIR, cheap per chunk.
        # Filter state of a signal that has been at 1 mV for ever (``zi_unit``): scaled by
        # the first sample, a record starting at a DC offset gives no start-up transient
        # (no false "beat" in its first 50 ms). Designed once per sample rate: a check
        # restarts its detector after every gap, and an overloaded daemon that sheds
        # chunks spent a fifth of its time redesigning this filter.
        self._b, self._a, self._zi_unit = _band_filter(self._fs)
        self._zi: FloatArray = np.zeros(max(len(self._a), len(self._b)) - 1)
        self._win = max(2, round(0.150 * self._fs))  # integration window
        self._merge = round(0.200 * self._fs)  # candidate spacing = look-ahead
        self._refractory = round(0.200 * self._fs)
        self._t_wave = round(T_WAVE_S * self._fs)
        self._tall_rhythm = (round(TALL_RHYTHM_S[0] * self._fs), round(TALL_RHYTHM_S[1] * self._fs))
        self._fast_rr = round(FAST_RR_S * self._fs)
        self._rail = round(RAIL_S * self._fs)
        self._recovery = round(RECOVERY_S * self._fs)
        # (first, last) absolute index of the recent runs of non-finite samples.
        self._gaps: deque[tuple[int, int]] = deque(maxlen=16)
        self._last_rail = -self._recovery - 1  # integral peak of the last railed candidate
        self._p_wave = round(P_WAVE_S * self._fs)
        self._r_before = round(0.150 * self._fs)  # R peak search around the steepest slope
        self._r_after = round(0.080 * self._fs)
        # The QRS window ends this long before the integral's peak and spans this long;
        # its baseline is the median of it and this much either side.
        self._qrs_end = round(0.030 * self._fs)
        self._qrs_span = self._win + round(0.060 * self._fs)
        self._baseline_pad = round(0.1 * self._fs)
        self._learn_end = round(learn_s * self._fs)
        self._relearn = round(relearn_s * self._fs)
        self._max_rr = round(5.0 * self._fs)  # longer "intervals" are pauses, not rhythm
        self._sq_tail: FloatArray = np.zeros(self._win)
        self._mwi_tail: FloatArray = np.zeros(2)  # integral at n-2, n-1
        self._n = 0  # samples consumed
        self._last_x = 0.0  # last finite sample, held over NaN/inf
        self._group = 0  # first integral peak merged into the pending candidate
        self._recent_cands: deque[tuple[int, float]] = deque(maxlen=FAST_RUN)
        self._fast: bool | None = None  # _fast_run() of _recent_cands, None when stale
        # History of raw and derivative signals for R localisation (1.5 s).
        self._hist_len = round(1.5 * self._fs)
        self._raw_hist: FloatArray = np.zeros(0)
        self._der_hist: FloatArray = np.zeros(0)
        self._base = 0  # absolute index of _raw_hist[0]
        self.last_deriv: FloatArray = np.zeros(0)  # filtered slope of the last chunk
        self.last_slope: FloatArray = np.zeros(0)  # its absolute value
        self._pending: _Candidate | None = None
        self._queue: deque[_Candidate] = deque()  # confirmed candidates awaiting decision
        # Every local maximum of the integral (before merging) not older than the
        # oldest undecided candidate: what the P-wave rule looks ahead at.
        # One pair of lists (indices, values) per chunk, indices increasing.
        self._raw_peaks: deque[tuple[list[int], list[float]]] = deque()
        self._learning: list[_Candidate] = []
        self._learned = False
        self._qrs_peaks: deque[float] = deque(maxlen=8)
        self._noise_peaks: deque[float] = deque(maxlen=8)
        self._amp_hist: deque[float] = deque(maxlen=8)
        self._amp_med: float | None = None  # its median, None when stale
        # The same two of every beat, search-back guesses included: what the EKG check
        # reads (qrs_amplitude_mv, qrs_slope) for its noise reference.
        self._seen_amp: deque[float] = deque(maxlen=8)
        self._seen_amp_med: float | None = None
        self._seen_slopes: deque[float] = deque(maxlen=8)
        self._seen_slope_med: float | None = None
        # (integral peak, R amplitude) of the accepted beats (HISTORY_AMPLITUDE_SHARE).
        self._beat_heights: deque[tuple[int, float]] = deque(maxlen=32)
        self._rr: deque[int] = deque(maxlen=8)
        self._slopes: deque[float] = deque(maxlen=8)
        # Slope per mV of the accepted beats: their shape, which no gain changes.
        self._sharp_hist: deque[float] = deque(maxlen=8)
        self._sharp_med: float | None = None  # its median, None when stale
        # Derived from the levels above, None when stale (each is recomputed on demand).
        self._thr: float | None = None
        self._slope_med: float | None = None
        self._rr_mean_n: int | None = None
        self._noise_cands: deque[_Candidate] = deque()
        # Candidates rejected inside ordinary R-R intervals (both ends beats, no
        # re-learning between): the P and T waves that went along with the QRS.
        self._beside: deque[_Candidate] = deque(maxlen=BESIDE_N)
        self._relearnt = False  # the levels were learnt again since the last QRS
        self._last_qrs: _Candidate | None = None
        # Index search-back and re-learning count from: the last QRS, or the end
        # of the last (re-)learning when there has been none since.
        self._ref = self._learn_end
        self._last_slope = 0.0
        self._shape_slope = 0.0  # slope of the last beat whose shape entered the references
        self._sb_done = False
        self._last_mwi = 0.0

    # ------------------------------------------------------------------ public

    @property
    def fs(self) -> float:
        return self._fs

    @property
    def samples_seen(self) -> int:
        return self._n

    @property
    def latency_s(self) -> float:
        """Upper bound of the delay from an ordinary R peak to its confirmation."""
        # R peak -> integral peak (window + filter delay, wide QRS) -> merge look-ahead.
        # (A small candidate, one that could be a P wave, waits 50 ms longer: the
        # P-wave rule looks P_WAVE_S past its integral peak, the merge look-ahead
        # 200 ms.)
        return (self._win + self._merge + 2) / self._fs + 0.100

    @property
    def threshold(self) -> float:
        return self._threshold()

    @property
    def beat_pending(self) -> bool:
        """A candidate above the search-back threshold is not decided yet.

        Lets a caller tell "no beat yet" from "a beat is being confirmed" at the
        end of the data, e.g. before declaring asystole.
        """
        half = 0.5 * self._threshold()
        if not self._learned:
            return False
        if self._last_mwi > half:
            return True
        if self._pending is not None and self._pending.value > half:
            return True
        return any(c.value > half for c in self._queue)

    @property
    def qrs_amplitude_mv(self) -> float:
        """Median R deflection (mV) of the recent beats, 0 before the first.

        Of every beat, search-back guesses included (the floors' own reference leaves
        most guesses out, GUESS_ALIKE).
        """
        med = self._seen_amp_med
        if med is None:
            self._seen_amp_med = med = _median_of_levels(self._seen_amp)
        return med

    @property
    def qrs_slope(self) -> float:
        """Median steepest filtered slope of the recent beats (mV/s), 0 before the first
        (of every beat, as ``qrs_amplitude_mv``)."""
        med = self._seen_slope_med
        if med is None:
            self._seen_slope_med = med = _median_of_levels(self._seen_slopes)
        return med

    def _amplitude(self) -> float:
        """Median R deflection of the beats whose shape the floors follow."""
        med = self._amp_med
        if med is None:
            self._amp_med = med = _median_of_levels(self._amp_hist)
        return med

    def process(self, samples: npt.ArrayLike) -> IntArray:
        """Feed consecutive samples (mV); return the R peaks this call confirmed."""
        x = np.asarray(samples, dtype=np.float64)
        n = x.shape[0]
        if n == 0:
            return _EMPTY_BEATS
        finite = np.isfinite(x)
        if np.count_nonzero(finite) != n:
            self._note_gaps(finite)
            x = self._hold_last_finite(x, finite)
        if self._n == 0:
            self._zi = self._zi_unit * x.item(0)
        self._last_x = x.item(-1)
        start = self._n
        d, self._zi = filter_chunk(self._b, self._a, x, self._zi)
        self.last_deriv = d
        # The history keeps the absolute slope: the R peak search wants it, and the
        # T-wave tail test squares it (the same squares as the signed slope's).
        self.last_slope = ad = np.abs(d)
        sq = d * d
        ext = np.concatenate((self._sq_tail, sq))
        csum = ext.cumsum()
        w = self._win
        mwi = (csum[w:] - csum[:-w]) * (1.0 / w)
        if n >= w:
            self._sq_tail = sq[-w:]
        else:
            self._sq_tail = ext[-w:]
        # Local maxima: rising into i, not rising out of it; known for i <= n_total-2.
        m = np.concatenate((self._mwi_tail, mwi))
        mid = m[1:-1]
        peaks = ((mid > m[:-2]) & (mid >= m[2:])).nonzero()[0]
        self._mwi_tail = m[-2:]
        self._last_mwi = m.item(-1)
        self._raw_hist = np.concatenate((self._raw_hist, x))
        self._der_hist = np.concatenate((self._der_hist, ad))
        self._n += n
        out: list[int] = []
        if peaks.shape[0]:
            # m[k] is the integral at absolute index start - 2 + k; mid[j] = m[j+1].
            idxs: list[int] = (peaks + (start - 1)).tolist()
            # amplitude scale: thresholds are ratios of slopes
            values: list[float] = np.sqrt(mid[peaks]).tolist()
            self._raw_peaks.append((idxs, values))
            self._merge_peaks(idxs, values)
        complete = self._n - 2
        if self._pending is not None and complete - self._pending.idx >= self._merge:
            self._confirm(self._pending)
            self._pending = None
        self._trim_history()
        self._decide(self._complete_up_to(), out)
        self._trim_raw_peaks()
        if not out:
            return _EMPTY_BEATS
        return np.asarray(out, dtype=np.int64)

    def flush(self) -> IntArray:
        """Decide everything still open, as if the record ended here."""
        if self._pending is not None:
            self._confirm(self._pending)
            self._pending = None
        out: list[int] = []
        self._decide(self._n - 1, out, final=True)
        return np.asarray(out, dtype=np.int64)

    # --------------------------------------------------------------- internals

    def _hold_last_finite(self, x: FloatArray, finite: npt.NDArray[np.bool_]) -> FloatArray:
        """NaN/inf would poison the filter state for good: hold the last finite value.

        Callers (the EKG check) flag such samples as a technical condition; here
        they only must not break detection of the beats around them.
        """
        pos = np.where(finite, np.arange(x.shape[0]), -1)
        np.maximum.accumulate(pos, out=pos)
        held = np.where(pos >= 0, x[np.maximum(pos, 0)], self._last_x)
        return np.asarray(held, dtype=np.float64)

    def _note_gaps(self, finite: npt.NDArray[np.bool_]) -> None:
        edges = np.flatnonzero(np.diff(np.concatenate(([1], finite.view(np.int8), [1]))))
        for a, b in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            self._gaps.append((self._n + a, self._n + b - 1))

    def _recovering(self, c: _Candidate) -> bool:
        """``c`` is within RECOVERY_S after a railed candidate or a non-finite sample."""
        if 0 < c.idx - self._last_rail <= self._recovery:
            return True
        r = c.r_idx
        return any(a <= r and r - min(b, r) <= self._recovery for a, b in self._gaps)

    def _trim_history(self) -> None:
        # Keep what the open candidate still needs, however large the chunk was.
        keep_from = self._n - self._hist_len
        if self._pending is not None:
            keep_from = min(keep_from, self._pending.idx - self._hist_len // 2)
        drop = keep_from - self._base
        if drop > 0:
            self._raw_hist = self._raw_hist[drop:]
            self._der_hist = self._der_hist[drop:]
            self._base += drop

    def _trim_raw_peaks(self) -> None:
        raw = self._raw_peaks
        if self._learning:
            oldest = self._learning[0].idx
        elif self._queue:
            oldest = self._queue[0].idx
        elif self._pending is not None:
            oldest = self._pending.idx
        else:
            oldest = self._n - 2
        while raw and raw[0][0][-1] <= oldest - self._p_wave:
            raw.popleft()

    def _complete_up_to(self) -> int:
        """Every candidate at or before this index is confirmed."""
        if self._pending is not None:
            return self._pending.idx - 1
        return self._n - 2

    def _merge_peaks(self, idxs: list[int], values: list[float]) -> None:
        """Merge the integral's local maxima, in order, into candidates (see _fast_run).

        The pending candidate holds only its peak until it is confirmed: a larger
        peak within the merge distance takes its place (its fields are overwritten,
        as a new candidate's would be).
        """
        p = self._pending
        group = self._group
        merge = self._merge
        for idx, val in zip(idxs, values, strict=True):
            if p is None:
                p = _Candidate(idx, val)
                group = idx
            elif idx - p.idx <= merge and (idx - group <= merge or not self._fast_run()):
                if val > p.value:
                    p.idx, p.value = idx, val
            else:
                self._confirm(p)
                p = _Candidate(idx, val)
                group = idx
        self._pending = p
        self._group = group

    def _fast_run(self) -> bool:
        """The last candidates are a fast run of alike complexes (FAST_RUN).

        Decided on the candidates alone, before any decision, so that merging does
        not depend on the chunking.
        """
        fast = self._fast
        if fast is None:
            self._fast = fast = self._is_fast_run()
        return fast

    def _is_fast_run(self) -> bool:
        r = self._recent_cands
        if len(r) < FAST_RUN:
            return False
        fast_rr = self._fast_rr
        prev, lo = r[0]
        hi = lo
        for i, v in itertools.islice(r, 1, None):
            if i - prev >= fast_rr:
                return False
            prev = i
            if v < lo:
                lo = v
            elif v > hi:
                hi = v
        return hi <= FAST_RUN_ALIKE * lo

    def _confirm(self, c: _Candidate) -> None:
        """Locate the R peak and slope of a candidate while its samples are in history."""
        self._recent_cands.append((c.idx, c.value))
        self._fast = None
        # The integral peaks at the end of the QRS energy, delayed by the filter.
        end = c.idx - self._qrs_end
        begin = end - self._qrs_span
        lo = max(begin - self._base, 0)
        hi = min(end - self._base, self._raw_hist.shape[0])
        if hi - lo < 2:
            lo, hi = max(hi - 2, 0), max(hi, min(2, self._raw_hist.shape[0]))
        seg = self._raw_hist[lo:hi]
        i0 = c.idx - self._t_wave - self._win + 1 - self._base
        if i0 >= 0:
            c.before = self._der_hist[i0 : c.idx + 1 - self._base]
        if seg.shape[0] == 0:
            c.r_idx, c.amplitude, c.slope = c.idx, 0.0, 0.0
        else:
            pad = self._baseline_pad
            ctx = self._raw_hist[max(lo - pad, 0) : hi + pad]
            dev = np.abs(seg - _median_of_samples(ctx))
            slopes = self._der_hist[lo:hi]
            ks = int(slopes.argmax())
            c.slope = slopes.item(ks)
            # The R peak is the largest deflection near the steepest slope (the
            # filtered slope lags the signal): a T wave or an artefact at the far
            # end of a wide window is not the QRS (mitdb 203's multiform PVCs).
            i0 = max(ks - self._r_before, 0)
            i1 = min(ks + self._r_after, dev.shape[0])
            k = i0 + int(dev[i0:i1].argmax()) if i1 > i0 else int(dev.argmax())
            c.r_idx = self._base + lo + k
            c.amplitude = dev.item(k)
            kl = ks + int(dev[ks:].argmax())
            c.r_late = self._base + lo + kl
            c.amp_late = dev.item(kl)
            c.railed, c.rail_edge = self._railed(seg, dev, c.amplitude)
        self._queue.append(c)

    def _railed(self, seg: FloatArray, dev: FloatArray, amplitude: float) -> tuple[bool, bool]:
        """Whether the window holds a run of RAIL_S identical samples.

        First: half the deflection or more off baseline. Second: at the window's
        extreme (a signal that sits at the ADC's limit for most of the window, as
        in a shock, has its median there, and its swings off the limit are then
        the "deflection"; so has a beat rising out of a lead drifted to the limit).
        """
        n = self._rail
        if amplitude <= 0.0 or seg.shape[0] <= n:
            return False, False
        after = seg[1:]
        same = after == seg[:-1]
        if np.count_nonzero(same) < n:
            return False, False  # both runs are runs of ``same``: none is long enough
        return (
            self._has_run(same & (dev[1:] >= 0.5 * amplitude)),
            self._has_run(same & ((after == seg.max()) | (after == seg.min()))),
        )

    def _has_run(self, flat: npt.NDArray[np.bool_]) -> bool:
        n = self._rail
        if np.count_nonzero(flat) < n:
            return False
        run = np.concatenate(([0], flat.view(np.int8), [0]))
        edges = np.flatnonzero(np.diff(run))
        return bool((edges[1::2] - edges[::2]).max() >= n)

    def _threshold(self) -> float:
        # Read per candidate, and by beat_pending; the levels change per decision.
        thr = self._thr
        if thr is None:
            qrs = _median_of_levels(self._qrs_peaks)
            noise = sum(self._noise_peaks) / len(self._noise_peaks) if self._noise_peaks else 0.0
            self._thr = thr = noise + 0.3125 * (qrs - noise)
        return thr

    def _qrs_like(self, c: _Candidate, *, searchback: bool = False) -> bool:
        """Shape tests besides size: large enough in mV, steep enough, not a T wave."""
        if c.amplitude < max(self._min_qrs_mv, MIN_AMPLITUDE_SHARE * self._amplitude()):
            return False
        floor = SLOPE_FLOOR
        if searchback and c.amplitude >= SEARCHBACK_AMPLITUDE * self._amplitude():
            floor = SEARCHBACK_SLOPE_FLOOR
        if c.slope < floor * self._median_slope():
            return False
        if c.slope < RECOVERY_SHARPNESS * self._qrs_sharpness() * c.amplitude and self._recovering(
            c
        ):
            return False
        last = self._last_qrs
        if last is None:
            return True
        if not self._relearnt and c.amplitude < LAST_AMPLITUDE_SHARE * last.amplitude:
            return False
        gap = min(c.idx - last.idx, c.r_idx - last.r_idx)
        # A T wave: close behind a QRS, much less steep and smaller than it (an early
        # PVC in atrial fibrillation is as big as the QRS before it).
        return (
            gap >= self._t_wave
            or (
                gap >= self._t_wave_at_rate()
                and c.slope >= T_WAVE_SHARPNESS * self._qrs_sharpness() * c.amplitude
            )
            or (
                (c.slope >= 0.5 * last.slope or c.amplitude >= 0.8 * last.amplitude)
                and not self._tail_of(c, last)
            )
        )

    def _tail_of(self, c: _Candidate, last: _Candidate) -> bool:
        """``c`` is the slurred end of the QRS ``last``, not a beat of its own.

        Much duller for its height than ``last`` (slope per mV under TAIL_DULL of its),
        with the integral never falling between them below TAIL_VALLEY of ``c``'s peak:
        one wide complex (cudb cu35's escape beats: a notch, then a tall slow hump that
        peaks 230-450 ms later). An early PVC after a narrow beat is as dull, but an ST
        segment lies between them.
        """
        d = c.before
        j = c.idx - last.idx
        if (
            d is None
            or not 0 < j <= self._t_wave
            or c.slope * last.amplitude >= TAIL_DULL * last.slope * c.amplitude
        ):
            return False
        d = d[self._t_wave - j :]
        w = self._win
        cs = np.concatenate(([0.0], (d * d).cumsum()))
        lowest = float((cs[w:] - cs[:-w]).min()) / w  # the integral from last's peak to c's
        return math.sqrt(max(lowest, 0.0)) >= TAIL_VALLEY * c.value

    def _t_wave_at_rate(self) -> int:
        """The T-wave window shrunk with the rate: T_WAVE_S x sqrt(R-R / 1 s), capped."""
        rr = self._rr_mean()
        if rr is None:
            return self._t_wave
        at_rate = round(T_WAVE_S * math.sqrt(rr / self._fs) * self._fs)
        return max(self._refractory, min(self._t_wave, at_rate))

    def _qrs_sharpness(self) -> float:
        """Median slope per mV of the recent beats (0 before the first)."""
        sharp = self._sharp_med
        if sharp is None:
            self._sharp_med = sharp = _median_of_levels(self._sharp_hist)
        return sharp

    def _median_slope(self) -> float:
        med = self._slope_med
        if med is None:
            self._slope_med = med = _median_of_levels(self._slopes)
        return med

    def _rr_mean(self) -> int | None:
        # Read in every pass of _decide's loop; _rr changes per accepted beat.
        if self._rr_mean_n is None and self._rr:
            self._rr_mean_n = int(sum(self._rr) / len(self._rr))
        return self._rr_mean_n

    def _relearn_period(self) -> int:
        """Samples without a QRS after which the levels are learnt again.

        ``relearn_s`` (2 s), so that after a sudden drop in QRS amplitude beats are
        found again well inside the 4 s asystole limit; in a slow rhythm no sooner
        than 1.8 R-R intervals, so a long but ordinary interval is not a reason.
        """
        rr = self._rr_mean()
        if rr is None:
            return self._relearn
        return max(self._relearn, round(1.8 * rr))

    def _searchback_deadline(self) -> int:
        # Read in every pass of _decide's loop: _rr_mean and _relearn_period inlined.
        rr = self._rr_mean_n if self._rr_mean_n is not None else self._rr_mean()
        if rr is None:
            return self._ref + self._relearn
        relearn = max(self._relearn, round(1.8 * rr))
        if self._sb_done or self._last_qrs is None:
            # No rhythm yet, or search-back already failed: only re-learning remains.
            return self._ref + relearn
        return self._ref + min(round(1.66 * rr), relearn)

    def _followed_by_its_qrs(self, c: _Candidate, final: bool) -> bool | None:
        """Whether ``c`` is a P wave: the integral peaks within P_WAVE_S after it go far higher.

        None until the signal is known that far ahead. Decided on the integral's
        local maxima, before any merging, so the answer does not depend on the
        chunking; it waits 50 ms longer than an ordinary beat, and only for a
        candidate small enough to be a P wave.
        """
        if P_WAVE_RATIO * c.amplitude > self._amplitude():
            return False  # as tall as the recent QRS: no bigger QRS can follow it so soon
        end = c.idx + self._p_wave
        if not final and self._n - 2 < end:
            return None
        bigger = P_WAVE_VALUE_RATIO * c.value
        for idx, val in self._raw_peaks:
            if idx[-1] <= c.idx or idx[0] > end:
                continue
            # the peaks in (c.idx, end]: indices increase
            lo, hi = bisect.bisect_right(idx, c.idx), bisect.bisect_right(idx, end)
            if any(v >= bigger for v in val[lo:hi]):
                return True
        return False

    def _decide(self, complete: int, out: list[int], *, final: bool = False) -> None:
        if not self._learned:
            while self._queue:
                self._learning.append(self._queue.popleft())
            if complete < self._learn_end:
                return
            self._learn()
        while True:
            deadline = self._searchback_deadline()
            nxt = self._queue[0] if self._queue else None
            if (nxt is not None and deadline < nxt.idx) or (nxt is None and deadline <= complete):
                self._search_back(deadline, out)
                continue
            if nxt is None:
                return
            p_wave = self._followed_by_its_qrs(nxt, final)
            if p_wave is None:
                return
            self._queue.popleft()
            self._classify(nxt, out, p_wave=p_wave)

    def _learn(self) -> None:
        """Initial threshold from the first seconds: half the largest candidate."""
        self._learned = True
        cands = self._learning
        self._learning = []
        # Only candidates up to the end of learning: which later ones are already
        # confirmed depends on the chunking.
        early = [c.value for c in cands if c.idx <= self._learn_end]
        if early:
            self._qrs_peaks.append(0.5 * max(early))
            self._thr = None
        # The learning candidates are decided like any other, in order.
        self._queue.extendleft(reversed(cands))

    def _classify(self, c: _Candidate, out: list[int], *, p_wave: bool = False) -> None:
        if c.railed or (c.rail_edge and c.amplitude >= RAIL_SWING * self._amplitude() > 0.0):
            self._last_rail = c.idx
            return  # ADC limits or a gap: no QRS there, and no level to learn from
        last = self._last_qrs
        if last is not None and c.r_idx - last.r_idx < self._refractory:
            rr = self._rr_mean()
            if rr is None or rr >= self._fast_rr or c.r_late - last.r_idx < self._refractory:
                return
            c.r_idx, c.amplitude = c.r_late, c.amp_late
        thr = self._threshold()
        if not p_wave and (
            (c.value > thr and self._qrs_like(c))
            or (
                c.value > WIDE_VALUE * thr
                and c.amplitude >= WIDE_AMPLITUDE * self._amplitude()
                and (last is None or c.r_idx - last.r_idx >= self._t_wave)
                and self._qrs_like(c, searchback=True)
            )
        ):
            self._search_gap(c, thr, out)
            self._accept(c, c.value, out)
        else:
            self._noise_peaks.append(c.value)
            self._thr = None
            self._noise_cands.append(c)
            while len(self._noise_cands) > 64:
                self._noise_cands.popleft()

    def _search_gap(self, c: _Candidate, thr: float, out: list[int]) -> None:
        """Search back inside a long interval that a beat closed before the deadline.

        Search-back proper waits 1.66 mean R-R intervals; when the next ordinary
        QRS comes sooner (an early, small, slurred beat in atrial fibrillation or
        an aberrated premature beat followed by a pause), the skipped beat would be
        lost. So an interval over 1.5 mean R-R is searched the same way, for a
        candidate at least the refractory period from both ends.
        """
        last, rr = self._last_qrs, self._rr_mean()
        if last is None or rr is None or c.idx - last.idx <= 1.5 * rr:
            return
        half = 0.5 * thr
        best: _Candidate | None = None
        for n in self._noise_cands:
            if (
                n.r_idx - last.r_idx >= self._refractory
                and c.r_idx - n.r_idx >= self._refractory
                and n.value > half
                and self._qrs_like(n, searchback=True)
                and (best is None or n.value > best.value)
            ):
                best = n
        if best is None:
            return
        qrs = _median_of_levels(self._qrs_peaks) if self._qrs_peaks else best.value
        self._accept(best, 0.25 * best.value + 0.75 * qrs, out, guessed=True)

    def _accept(self, c: _Candidate, peak: float, out: list[int], *, guessed: bool = False) -> None:
        """``c`` is a QRS; ``guessed``: found by search-back, under the threshold.

        A guessed beat's shape (slope, R amplitude, slope per mV) enters the references
        the floors are taken from only after re-learning or when it is about as steep
        as the last beat that entered them (GUESS_ALIKE).
        """
        last = self._last_qrs
        if last is not None:
            rr = c.idx - last.idx
            if rr < self._max_rr:
                self._rr.append(rr)
                self._rr_mean_n = None
        self._ref = c.idx
        if c.amplitude * HISTORY_AMPLITUDE_SHARE > self._amplitude() > 0.0 and any(
            self._tall_rhythm[0] <= c.idx - i <= self._tall_rhythm[1]
            and 0.5 * c.amplitude <= a <= 2.0 * c.amplitude
            for i, a in self._beat_heights
        ):
            # The recent "beats" were waves beside the QRS (LAST_AMPLITUDE_SHARE):
            # the R amplitude starts over from this one.
            self._amp_hist.clear()
            self._seen_amp.clear()
        self._qrs_peaks.append(peak)
        self._thr = None
        self._beat_heights.append((c.idx, c.amplitude))
        self._last_qrs = c
        self._last_slope = c.slope
        if not guessed or self._relearnt or c.slope >= GUESS_ALIKE * self._shape_slope:
            self._shape_slope = c.slope
            self._amp_hist.append(c.amplitude)
            self._amp_med = None
            self._slopes.append(c.slope)
            self._slope_med = None
            if c.amplitude > 0.0:
                self._sharp_hist.append(c.slope / c.amplitude)
                self._sharp_med = None
        self._seen_amp.append(c.amplitude)
        self._seen_amp_med = None
        self._seen_slopes.append(c.slope)
        self._seen_slope_med = None
        self._sb_done = False
        self._relearnt = False
        if last is not None and c.idx - last.idx < self._relearn_period():
            self._beside.extend(n for n in self._noise_cands if n.idx > last.idx)
        self._noise_cands.clear()
        out.append(c.r_idx)

    def _search_back(self, deadline: int, out: list[int]) -> None:
        ref = self._ref
        relearn = deadline - ref >= self._relearn_period()
        if relearn:
            self._relearn_thresholds(deadline)
        half = 0.5 * self._threshold()
        best: _Candidate | None = None
        for c in self._noise_cands:
            if c.idx > deadline or (
                self._last_qrs is not None and c.r_idx - self._last_qrs.r_idx < self._refractory
            ):
                continue
            if (
                c.value > half
                and self._qrs_like(c, searchback=True)
                and (best is None or c.value > best.value)
            ):
                best = c
        if best is None:
            self._sb_done = True
            if relearn:
                # The next re-learning is a full period later; old R-R are stale.
                self._ref = deadline
                self._rr.clear()
                self._rr_mean_n = None
            return
        # Search-back peaks count less towards the QRS level (Pan-Tompkins).
        qrs = _median_of_levels(self._qrs_peaks) if self._qrs_peaks else best.value
        self._noise_cands = deque(c for c in self._noise_cands if c.idx > best.idx)
        self._accept(best, 0.25 * best.value + 0.75 * qrs, out, guessed=True)

    def _same_shape_pair(self, old_amp: float) -> _Candidate | None:
        """The largest candidate since the last QRS that has a twin of the old QRS's shape."""
        sharp = self._qrs_sharpness()
        if sharp <= 0.0:
            return None
        floor = max(self._min_qrs_mv, RELEARN_AMPLITUDE * old_amp)
        same = [
            c
            for c in self._noise_cands
            if c.amplitude >= floor and c.slope >= RELEARN_SHARPNESS * sharp * c.amplitude
        ]
        best: _Candidate | None = None
        for c in same:
            if best is not None and c.value <= best.value:
                continue
            if self._seen_beside(c, sharp):
                continue
            if any(
                abs(o.r_idx - c.r_idx) >= self._refractory
                and 0.5 * c.amplitude <= o.amplitude <= 2.0 * c.amplitude
                for o in same
            ):
                best = c
        return best

    def _seen_beside(self, c: _Candidate, sharp: float) -> bool:
        """Waves of ``c``'s size and shape were there between the old QRS complexes.

        Then ``c`` is one of them (the P waves of a heart block going on through a
        ventricular standstill, cudb cu35), not the old QRS shrunk by a change of gain:
        a gain change shrinks the P and T waves with it.
        """
        n = 0
        for o in self._beside:
            if (
                0.5 * c.amplitude <= o.amplitude <= 2.0 * c.amplitude
                and o.slope >= RELEARN_SHARPNESS * sharp * o.amplitude
            ):
                n += 1
                if n >= BESIDE_MATCHES:
                    return True
        return False

    def _relearn_thresholds(self, deadline: int) -> None:
        """No QRS for a long time (amplitude change, lead swap): start the levels over."""
        recent = [c for c in self._noise_cands if c.idx > deadline - self._learn_end]
        old = self._median_slope()
        old_amp = self._amplitude()
        self._relearnt = True
        self._qrs_peaks.clear()
        self._noise_peaks.clear()
        if recent:
            self._qrs_peaks.append(0.5 * max(c.value for c in recent))
            # A change of gain keeps the QRS's shape: its slope per mV of height
            # stays what it was. P and T waves are rounder (about half of it), so
            # recent candidates as sharp as the old QRS are that QRS, smaller or
            # larger, and the floors start over from them, however far it shrank.
            # Two of them, of about one size, at least the refractory period
            # apart: a lone artefact in an asystole must not become the new level.
            # The shape reference is the accepted beats' own, never the levels
            # re-learning lowered: else P waves in a long standstill would pass
            # after a few rounds.
            best = self._same_shape_pair(old_amp)
            if best is not None:
                self._amp_hist.clear()
                self._amp_hist.append(best.amplitude)
                self._amp_med = None
                self._slopes.clear()
                self._slopes.append(best.slope)
                self._slope_med = None
                self._seen_amp.clear()
                self._seen_amp.append(best.amplitude)
                self._seen_amp_med = None
                self._seen_slopes.clear()
                self._seen_slopes.append(best.slope)
                self._seen_slope_med = None
            else:
                steepest = max(c.slope for c in recent)
                if steepest < old:
                    level = max(steepest, RELEARN_SLOPE_FLOOR / SLOPE_FLOOR * old)
                    self._slopes.clear()
                    self._slopes.append(level)
                    self._slope_med = None
                if steepest < self.qrs_slope:
                    level = max(steepest, RELEARN_SLOPE_FLOOR / SLOPE_FLOOR * self.qrs_slope)
                    self._seen_slopes.clear()
                    self._seen_slopes.append(level)
                    self._seen_slope_med = None
        self._thr = None
