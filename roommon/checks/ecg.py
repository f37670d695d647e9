"""EKG check: heart rate, VF, VT, asystole, brady/tachycardia, rhythm, technical conditions.

Data flow: the room pipeline passes each ECG chunk (mV) to :meth:`EcgCheck.on_chunk`
and calls :meth:`EcgCheck.on_tick` about once a second. Per feed the check runs
a :class:`~roommon.ecg.pacer.PacerFilter` (pacemaker pulses blanked, at 300 Hz
and above, unless ``pacer_rejection`` is off) in front of a streaming
:class:`~roommon.ecg.qrs.QrsDetector`, a
:class:`~roommon.ecg.vf.VfAnalyser` (VF / flutter from the signal's spectrum
and organisation, not from beats), a :class:`~roommon.ecg.beats.BeatClassifier`
(normal or ventricular, per beat) and a monitor-style
:class:`~roommon.ecg.heart_rate.HeartRate`, judges the signal (flat, at the
rails, noisy, interrupted) and reports *raw* condition presence on change; the
alarm engine applies each :class:`ConditionSpec`'s delay and latching.

Ventricular alarms (high priority, latching: they stay up until reset):

- ``ecg.vf``: the VF analyser's condition (about 3-6 s after onset; its analysis
  bridges gaps of up to 1 s, and is judged through the QRS detector's recovery
  from a gap, not only while the signal is readable), unless beats
  of the patient's own shape come through (two in a row), a regular rhythm of
  them is running, or a VT run explains the oscillation (within 4 s of one).
- ``ecg.vt``: ``vt_beats`` (6) consecutive ventricular beats at a mean rate
  above ``vt_bpm`` (120) and below 250 bpm, either of one shape (each like the
  one before) or, multiform, wide (their median steep-slope width 120-200 ms and
  1.5 times the normal beat's, in a signal the VF analysis does not call VF-like), or,
  shaped like the normal beat, of one shape and suddenly much larger than it (each at
  least 1.3 times the normal template's size, together 1.5 times the five beats before:
  a ventricular rhythm can keep the normal beat's shape in one lead, not its size);
  present until 2 s after the last beat of the run (where the VF analysis sees
  fibrillation, until VF takes over 4 s after it: no rate is shown between the
  two). While it is present the beat classifier keeps its template: sustained VT
  is not adopted as the patient's new normal beat (it would end the condition
  after a dozen beats while the VT went on).

The room state carries ``ecg_rhythm``: ``vf``, ``vt``, ``asystole``,
``bradycardia``, ``tachycardia``, ``normal_rate`` or ``unknown`` (signal unreadable).

Rules:

- While the signal is unreliable (leads off / flat, saturated, noisy, just
  interrupted or carrying NaN/inf) the rate alarms are held back (reported
  inactive), the heart rate is not published, and a technical condition says
  why. The beat history is dropped: beats found in noise are not beats. The
  moment the rate becomes unknown, one ``heart_rate`` measurement with
  ``reliable=False`` (value NaN) says so, and the room state stops showing
  the last rate; the next rate published replaces it, from the fifth beat
  after the history restarted (four intervals).
- Noise is judged every chunk from two features of the last 2 s (see
  ``_noise``): the QRS-band slope between complexes against the clean QRS
  slope (``noise_index``; wide, dull ventricular beats do not lower it), and the
  high-frequency content (15-50 Hz, where muscle artefact lives and an ECG between
  its QRS complexes has next to nothing) against the patient's own level over the
  last 5 minutes (``noise_hf_ratio``).
- Asystole needs a readable signal: a flat line is "leads off", never asystole,
  and a noisy signal is never asystole. Leads off is a flat-line signature (under
  ``flat_mv``, 5 µV peak to peak) or the rails; a quiet but clean baseline is
  signal, so it neither restarts nor clears asystole. The asystole clock counts
  from the last beat or from the moment the signal became readable again,
  whichever is later. VF supersedes asystole.
- A rate alarm (brady, tachy and their extremes) needs the displayed 12-beat mean
  and the interquartile mean of the same intervals to agree that the limit is
  passed: one false or missed beat moves the first by ~8 %, not the second.
- Time to alarm (defaults): asystole is reported once ``asystole_s`` (4 s) of
  signal past the last beat has arrived with no beat pending, so within one
  chunk of 4 s (delay 0). An 80 -> 180 bpm step lifts the 12-beat average over
  140 bpm after about ten fast beats (~3.5 s) plus the detector's ~0.4 s; with
  the 2 s delay of ``ecg.tachy`` the alarm sounds about 6 s after the step (< 8 s).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from roommon.checks.base import (
    Check,
    CheckContext,
    CheckSettings,
    ConditionMemory,
    FeedView,
    Measurement,
)
from roommon.checks.declarations.ecg import (
    ASYSTOLE,
    BAD_SAMPLES,
    BRADY,
    BRADY_EXTREME,
    ECG,
    GAP,
    LEADS_OFF,
    NOISY,
    SATURATED,
    TACHY,
    TACHY_EXTREME,
    VF,
    VT,
    EcgSettings,
)
from roommon.core.conditions import ConditionSpec
from roommon.core.log import get_logger
from roommon.core.model import FloatArray, SignalKind, WaveformChunk
from roommon.ecg.beats import BeatClassifier
from roommon.ecg.heart_rate import HeartRate
from roommon.ecg.pacer import MIN_FS as PACER_MIN_FS
from roommon.ecg.pacer import PacerFilter
from roommon.ecg.qrs import QrsDetector
from roommon.ecg.vf import VfAnalyser

log = get_logger(__name__)

# ndarray.sum() is this, behind a Python wrapper that costs ~0.4 µs a call.
_sum = np.add.reduce


_RATE_SPECS = (BRADY, TACHY, BRADY_EXTREME, TACHY_EXTREME)
STUCK_MIN_MV = 0.5
VT_SIMILAR = 0.7  # correlation of consecutive beats of one VT run
# A run of differently shaped ventricular beats is VT too where they are wide: their
# median steep-slope width at least VT_WIDE_S (a QRS of 120 ms or more is the
# classic mark of a ventricular origin) and VT_WIDER times the normal beat's, at most
# VT_WIDE_MAX_S (the cut is 250 ms: a steep slope across all of it is noise).
VT_WIDE_S = 0.12
VT_WIDE_MAX_S = 0.2
VT_WIDER = 1.5
# A run of beats of the normal beat's shape can be VT too: a ventricular rhythm whose
# complexes, in this lead, keep the shape of the normal beat but not its size (a new
# QRS axis). Six fast beats of one shape (each like the one before, VT_SIMILAR), each
# at least VT_LARGER times the normal template's size (RMS of the 1-30 Hz cut) and,
# together, VT_ONSET times the size of the VT_BEFORE beats before them (a sudden
# change, as a ventricular focus taking over is; a rate-related change, or a template
# learnt on small beats, is gradual or lasting). The correlation is blind to size.
VT_LARGER = 1.3
VT_ONSET = 1.5
VT_BEFORE = 5
VT_MAX_BPM = 250.0  # faster "beats" are flutter waves: VF's business
VT_HOLD_S = 2.0  # a VT run's condition lasts this long past its last fast ventricular beat
# ... and VF is not declared sooner than this after it (the 4 s VF windows still hold
# the run's beats); where the VF analysis sees fibrillation, VT lasts until then.
VF_AFTER_VT_S = 4.0
# Missing signal up to this long is bridged in the VF analysis (see VfAnalyser.bridge):
# a quarter of its 4 s window. Longer, the analysis starts over.
VF_BRIDGE_S = 1.0
# After the beat history restarts (start, noise, a gap) the rate is shown again from
# the fifth beat: four intervals, the least the heart-rate rule averages. One or two
# intervals right after noise are as often split by a last noise "beat" as not.
RATE_MIN_BEATS = 5
# High-frequency noise feature (see _noise): its own reference is the 10th percentile
# of the last HF_HISTORY seconds' values, leaving out the newest HF_RECENT; no verdict
# before HF_MIN_HISTORY seconds; never below HF_FLOOR of the QRS amplitude at
# HF_FLOOR_FS. The second difference of the ECG's own (band-limited) content shrinks
# with the square of the sample rate, so the floor is scaled by (HF_FLOOR_FS / fs)^2:
# at 128 Hz a quiet but quantised clean ECG reads as high as muscle noise does at 360.
# Wide, dull ventricular beats among the detector's last eight pull its median QRS slope
# down, and with it the noise index's reference: a fast run after them read as noise
# (mitdb 203). While the last eight beats include ventricular ones, noise is judged
# against at least the median slope of the normal-shaped beats of the last NORMAL_REF_S
# seconds.
NORMAL_REF_S = 5.0
HF_HISTORY = 300
HF_RECENT = 5
HF_MIN_HISTORY = 30
HF_FLOOR = 0.01
HF_FLOOR_FS = 360.0
# Above this many times its own level, short of noisy, the signal is doubtful: the rate
# is the interquartile mean of the intervals, which one false beat hardly moves (clean
# MIT-BIH seconds pass 2 in about 4 % of seconds, where it and the mean agree).
HF_DOUBTFUL = 2.0


@dataclass(slots=True)
class _FeedState:
    """Everything the check knows about one ECG feed."""

    fs: float
    detector: QrsDetector
    vf: VfAnalyser
    classifier: BeatClassifier
    vent_run: list[float] = field(default_factory=list)  # times of consecutive V beats
    vent_width: list[float] = field(default_factory=list)  # their widths (s)
    vent_alike: int = 0  # beats at the run's end each shaped like the one before
    vt_since_beat: float = math.nan  # last beat of a VT run
    sized: deque[tuple[float, float, float]] = field(default_factory=deque)  # (t, size, like)
    organised_until: float = -math.inf  # a regular rhythm of normal-shaped beats was seen
    normal_beat_t: float = -math.inf  # the last of two beats in a row of the normal shape
    last_normal: bool = False  # the last beat had the normal shape
    vf_on: bool = False  # VF was reported present at the last evaluation
    vf_offset: int = 0  # the VF analysis's sample index of the detector's sample 0
    vf_judgeable: bool = True  # not flat (leads off), saturated or noisy
    beat_times: deque[float] = field(default_factory=lambda: deque(maxlen=4))
    hr: HeartRate = field(default_factory=HeartRate)
    t_base: float = math.nan  # time of the detector's sample 0
    t_end: float = math.nan  # time just after the newest sample
    last_seq: int | None = None
    recent: FloatArray = field(default_factory=lambda: np.zeros(0))
    deriv: FloatArray = field(default_factory=lambda: np.zeros(0))
    ref_slope: float = 0.0  # QRS slope seen on clean signal
    normal_slopes: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=8))
    vent_recent: deque[bool] = field(default_factory=lambda: deque(maxlen=8))  # V verdicts
    readable_since: float = math.nan  # start of the current readable stretch
    last_beat: float = math.nan
    trouble_until: float = -math.inf  # recovery after a gap / bad samples
    gap_until: float = -math.inf
    bad_until: float = -math.inf
    noisy: bool = False
    noise_level: float = math.inf  # the last noise index (unknown: infinite)
    baseline: float = math.nan  # mean level of the last full second
    jump_until: float = -math.inf  # a baseline jump: noisy until then
    conditions: ConditionMemory = field(default_factory=ConditionMemory)
    # per sample rate, computed once
    second_n: int = 0  # samples in one second
    full_n: int = 0  # a second is judged when at least this many are finite
    keep_n: int = 0  # samples of signal and slope kept (2 s)
    noise_n: int = 0  # the noise index needs this many (1.5 s)
    latency_s: float = 0.0  # the detector's (it depends on the sample rate only)
    # last conditions reported by _judge and _evaluate (they report on change only)
    judged: tuple[bool, ...] = ()
    rated: tuple[bool, ...] = ()
    rate_shown: bool = False  # the last heart_rate published was a value
    rhythm: str = ""  # the last ecg_rhythm published
    hf_hist: deque[float] = field(default_factory=lambda: deque(maxlen=HF_HISTORY))
    hf_noisy: bool = False  # the high-frequency feature alone says noisy
    band_noisy: bool = False  # the in-band feature alone says noisy
    hf_next_t: float = -math.inf  # when the next value joins hf_hist
    hf_floor: float = 0.0  # HF feature floor, share of the QRS amplitude at this rate
    hf_level: float = 1.0  # HF feature over its own level (floored as the limit is)
    hf_base: float = -1.0  # the HF feature's own level (negative: not known yet)
    hf_count: int = 0  # values that joined hf_hist
    pacer: PacerFilter | None = None  # pacer-pulse blanking (None: the front end does it)


def _percentile(a: FloatArray, q: float, *, overwrite: bool = False) -> float:
    """``np.percentile(a, q)`` (linear method) by one partial sort.

    np.percentile costs ~30 µs per call in argument handling, as much as the
    rest of a 1 s chunk's work at 128 Hz; this gives the same value.
    """
    n = len(a)
    pos = (n - 1) * (q / 100.0)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    # np.partition is this copy and the in-place partition, plus ~1 µs; ``overwrite``:
    # ``a`` is the caller's scratch, partitioned in place.
    p = a if overwrite else a.copy()
    p.partition((lo, hi))
    x0: float = p.item(lo)
    x1: float = p.item(hi)
    frac = pos - lo
    diff = x1 - x0
    # numpy's lerp: from the nearer end, so the result is exact at the ends
    return x1 - diff * (1.0 - frac) if frac >= 0.5 else x0 + diff * frac


class EcgCheck(Check, declaration=ECG):
    """Heart rate and rhythm alarms from one or more EKG leads."""

    def __init__(
        self, *, room: str, settings: CheckSettings, feeds: Mapping[str, FeedView]
    ) -> None:
        super().__init__(room=room, settings=settings, feeds=feeds)
        assert isinstance(settings, EcgSettings)
        self.cfg = settings
        self._state: dict[str, _FeedState] = {}
        #: Off (None) in the daemon. A record replay sets it to ``{}`` to collect every
        #: beat the detector confirms, per feed (UTC seconds), to score them afterwards.
        self.beat_log: dict[str, list[FloatArray]] | None = None

    # ------------------------------------------------------------------ hooks

    def on_chunk(self, chunk: WaveformChunk, ctx: CheckContext) -> None:
        if chunk.kind is not SignalKind.ECG or chunk.samples.shape[0] == 0:
            return
        st = self._state.get(chunk.feed)
        if st is None or st.fs != chunk.fs:
            st = self._new_state(chunk)
        elif self._interrupted(st, chunk):
            self._restart(st, chunk, ctx)
        st.last_seq = chunk.seq
        x = chunk.samples
        finite = np.isfinite(x)
        t_end = chunk.t_end
        if np.count_nonzero(finite) != x.shape[0]:
            st.bad_until = st.trouble_until = t_end + self.cfg.recovery_s
            log.warning("ecg_bad_samples", room=self.room, feed=chunk.feed, seq=chunk.seq)
            x_kept = np.where(finite, x, np.nan)
        else:
            x_kept = x
        # Pacer pulses blanked (the same sample indices, a few samples later).
        xd = x_kept if st.pacer is None else st.pacer.process(x_kept)
        beats = st.detector.process(xd)
        if self.beat_log is not None and beats.shape[0]:
            self.beat_log.setdefault(chunk.feed, []).append(st.t_base + beats / st.fs)
        # The VF analysis keeps the raw signal: its windows end at fixed sample
        # positions, and a delayed input would analyse each a chunk later.
        st.vf.process(x if x_kept is x else np.where(finite, x, 0.0))
        st.t_end = t_end
        self._keep_recent(st, x_kept, st.detector.last_slope)
        readable = self._judge(st, chunk.feed, ctx)
        if readable:
            for b in beats.tolist():
                t = st.t_base + b / st.fs
                st.last_beat = t
                st.hr.add_beat(t)
                self._classify(st, b, t)
            if beats.shape[0] and st.noise_level < 0.5 * self.cfg.noise_index:
                # The reference follows the QRS slope of clean signal only: beats
                # found in noise are as steep as the noise, and would hide it.
                st.ref_slope = st.detector.qrs_slope
        else:
            self._end_run(st)
            st.sized.clear()
        self._evaluate(st, chunk.feed, ctx, publish=bool(beats.shape[0]))

    def on_tick(self, now: float, ctx: CheckContext) -> None:
        # Judged on the data's own time: a stalled feed is the pipeline's
        # "feed silent", not asystole.
        for feed, st in self._state.items():
            if not math.isnan(st.t_end):
                self._evaluate(st, feed, ctx, publish=True)

    # -------------------------------------------------------------- internals

    def _classify(self, st: _FeedState, b: int, t: float) -> None:
        """Beat shape, and the VT rule over the run of ventricular beats it ends or extends."""
        if st.classifier.learning and (st.vf.vf_like or st.vf.present):
            # The template is the patient's own beat, never a fibrillation wave (a
            # record or a restart in VF): the beats collected so far are dropped, and
            # this one has no shape verdict (it is neither normal nor ventricular).
            st.classifier.reset()
            st.beat_times.append(t)
            st.last_normal = False
            self._end_run(st)
            st.sized.clear()
            return
        # While a VT run goes on its beats are not the patient's new normal beat.
        in_vt = t - st.vt_since_beat < VT_HOLD_S
        ventricular = st.classifier.classify(
            st.vf.filtered, b + st.vf_offset - st.vf.filtered_start, adopt=not in_vt
        )
        bt = st.beat_times
        bt.append(t)
        if (
            len(bt) == 4
            and st.classifier.last_corr >= 0.9
            and min(bt[1] - bt[0], bt[2] - bt[1], bt[3] - bt[2]) > 0.4
            and max(bt[1] - bt[0], bt[2] - bt[1], bt[3] - bt[2])
            < 1.15 * min(bt[1] - bt[0], bt[2] - bt[1], bt[3] - bt[2])
        ):
            # Regular beats of the patient's own shape under 150 bpm: an organised
            # rhythm (a paced or bundle-branch rhythm can look "busy" to the VF analysis).
            st.organised_until = t + 2.0
        if ventricular is None:
            st.sized.clear()
        else:
            self._larger_run(st, t)
        st.vent_recent.append(bool(ventricular))
        normal = not ventricular and st.classifier.last_corr >= 0.9
        if normal and st.noise_level < 0.5 * self.cfg.noise_index:
            i = b - (st.detector.samples_seen - st.deriv.shape[0])
            h = st.second_n // 12
            if h <= i < st.deriv.shape[0] - h:
                around = st.deriv[i - h : i + h + 1]  # its max: argmax costs less than max
                st.normal_slopes.append((t, around.item(around.argmax())))
        if normal and st.last_normal:
            st.normal_beat_t = t  # two in a row: one can match by chance in VF
        st.last_normal = normal
        if not ventricular:
            self._end_run(st)
            return
        run, widths, cl = st.vent_run, st.vent_width, st.classifier
        # A run of monomorphic VT is one shape again and again; "beats" of noise, each
        # shaped differently, are not a run, unless they are wide as ventricular
        # beats are: multiform VT changes its shape from beat to beat (vfdb 423).
        st.vent_alike = st.vent_alike + 1 if run and cl.last_like_previous >= VT_SIMILAR else 1
        run.append(t)
        widths.append(cl.last_width)
        k = self.cfg.vt_beats
        if len(run) > k:
            del run[0], widths[0]
        if len(run) == k:
            rate = 60.0 * (k - 1) / max(run[-1] - run[0], 1e-6)
            one_shape = st.vent_alike >= k
            # Where the VF analysis sees fibrillation, differently shaped waves are VF;
            # where the steep slope fills the whole cut (no QRS is that wide: it is
            # noise, whose slope is steep everywhere), they are not beats to count.
            mid_width = sorted(widths)[(k - 1) // 2]
            wide_from = max(VT_WIDE_S, VT_WIDER * cl.template_width)
            fibrillating = st.vf.vf_like or st.vf.present
            wide = wide_from <= mid_width <= VT_WIDE_MAX_S and not fibrillating
            if self.cfg.vt_bpm < rate < VT_MAX_BPM and (one_shape or wide):
                st.vt_since_beat = t

    def _larger_run(self, st: _FeedState, t: float) -> None:
        """VT as a sudden run of fast beats of one shape, much larger than normal."""
        cl, sized, k = st.classifier, st.sized, self.cfg.vt_beats
        sized.append((t, cl.last_size, cl.last_like_previous))
        if len(sized) > k + VT_BEFORE:
            sized.popleft()
        if len(sized) < k + VT_BEFORE:
            return
        beats = list(sized)
        run, before = beats[VT_BEFORE:], beats[:VT_BEFORE]
        rate = 60.0 * (k - 1) / max(run[-1][0] - run[0][0], 1e-6)
        if not self.cfg.vt_bpm < rate < VT_MAX_BPM:
            return
        if any(size < VT_LARGER for _, size, _ in run):
            return
        if any(like < VT_SIMILAR for _, _, like in run[1:]):
            return
        sizes = sorted(size for _, size, _ in run)
        earlier = sorted(size for _, size, _ in before)
        if sizes[(k - 1) // 2] >= VT_ONSET * earlier[(VT_BEFORE - 1) // 2]:
            st.vt_since_beat = t

    @staticmethod
    def _end_run(st: _FeedState) -> None:
        st.vent_run.clear()
        st.vent_width.clear()
        st.vent_alike = 0

    def _pacer(self, fs: float) -> PacerFilter | None:
        return PacerFilter(fs=fs) if self.cfg.pacer_rejection and fs >= PACER_MIN_FS else None

    def _new_state(self, chunk: WaveformChunk) -> _FeedState:
        fs = chunk.fs
        st = _FeedState(
            fs=fs,
            detector=QrsDetector(fs=fs),
            vf=VfAnalyser(fs=fs),
            classifier=BeatClassifier(fs=fs),
        )
        st.second_n = round(fs)
        st.full_n = round(0.9 * fs)
        st.keep_n = round(2.0 * fs)
        st.noise_n = round(1.5 * fs)
        st.hf_floor = HF_FLOOR * (HF_FLOOR_FS / fs) ** 2
        st.pacer = self._pacer(fs)
        st.latency_s = st.detector.latency_s + (st.pacer.delay / fs if st.pacer else 0.0)
        st.t_base = chunk.t0
        st.readable_since = chunk.t0
        self._state[chunk.feed] = st
        return st

    def _interrupted(self, st: _FeedState, chunk: WaveformChunk) -> bool:
        seq_gap = st.last_seq is not None and chunk.seq not in (st.last_seq, st.last_seq + 1)
        time_gap = abs(chunk.t0 - st.t_end) > 1.5 / st.fs
        return seq_gap or time_gap

    def _restart(self, st: _FeedState, chunk: WaveformChunk, ctx: CheckContext) -> None:
        """Samples are missing: indices no longer map to time, so start the analysis over."""
        log.warning(
            "ecg_signal_gap",
            room=self.room,
            feed=chunk.feed,
            seq=chunk.seq,
            last_seq=st.last_seq,
            missing_s=chunk.t0 - st.t_end,
        )
        st.detector = QrsDetector(fs=st.fs)
        st.pacer = self._pacer(st.fs)
        # The VF analysis bridges a short gap rather than wait a whole window of new
        # signal: a defibrillator's shock leaves a few missing samples in a VF that
        # goes on (cudb cu19), and its alarm must not wait 6 s more for each.
        missing = chunk.t0 - st.t_end
        finite = np.flatnonzero(np.isfinite(chunk.samples))
        if 0.0 <= missing <= VF_BRIDGE_S and finite.shape[0]:
            st.vf.bridge(round(missing * st.fs), chunk.samples.item(finite.item(0)))
        else:
            st.vf = VfAnalyser(fs=st.fs)
        st.vf_offset = st.vf.samples_seen
        st.classifier = BeatClassifier(fs=st.fs)
        st.sized.clear()
        st.normal_slopes.clear()
        st.vent_recent.clear()
        self._end_run(st)
        st.vt_since_beat = math.nan
        st.t_base = chunk.t0
        st.hr.reset()
        st.recent = np.zeros(0)
        st.deriv = np.zeros(0)
        st.last_beat = math.nan
        st.gap_until = st.trouble_until = chunk.t0 + self.cfg.recovery_s
        st.readable_since = chunk.t0

    def _keep_recent(self, st: _FeedState, x: FloatArray, slope: FloatArray) -> None:
        """The last 2 s of signal and of the detector's absolute slope."""
        keep = st.keep_n
        st.recent = np.concatenate((st.recent, x))[-keep:]
        st.deriv = np.concatenate((st.deriv, slope))[-keep:]

    def _judge(self, st: _FeedState, feed: str, ctx: CheckContext) -> bool:
        """Technical conditions from the last seconds of signal; True when readable."""
        cfg, t = self.cfg, st.t_end
        second = st.recent[-st.second_n :]
        # argmax finds a NaN first if there is one: only then filter them out
        # (ndarray.max/min and the filter cost ~1 µs each, per chunk).
        hi: float = second.item(second.argmax())
        if math.isnan(hi):
            second = second[np.isfinite(second)]
            if second.shape[0]:
                hi = second.item(second.argmax())
        full = second.shape[0] >= st.full_n
        saturated = flat = False
        if full:
            lo: float = second.item(second.argmin())
            n = second.shape[0]
            rail = 0.98 * cfg.rail_mv
            spread = hi - lo
            clipped = 0.0
            # Clipping pins samples at one value, the second's extreme. A signal
            # that moves is never saturated for where its baseline sits: an offset
            # beyond the nominal rail is not clipping. A small quiet signal, quantised
            # to a few ADC steps, sits at its extremes all the time: it is clipped
            # only where those extremes are at the rail.
            at_rail = hi >= rail or lo <= -rail
            if spread > STUCK_MIN_MV or at_rail:
                at_extreme = (second == hi) | (second == lo)
                if spread <= STUCK_MIN_MV:
                    at_extreme &= np.abs(second) >= rail
                clipped = np.count_nonzero(at_extreme) / n
            saturated = clipped >= cfg.saturated_fraction
            flat = not saturated and spread < cfg.flat_mv
        noisy = self._noise(st, full and not flat and not saturated)
        if full:
            # The baseline leaping by millivolts within a second is an electrode or
            # the amplifier recovering from an overload, never the heart: while it
            # settles the QRS may vanish, and that is not asystole.
            level = float(_sum(second)) / second.shape[0]
            if abs(level - st.baseline) > cfg.baseline_jump_mv:
                st.jump_until = t + cfg.recovery_s
            st.baseline = level
            if t < st.jump_until:
                noisy = True
        if noisy and (st.vf.vf_like or st.vf.present):
            # VF and flutter are busy everywhere, as noise is; the VF analysis tells
            # them apart (noise is broadband, VF a 2.5-10 Hz oscillation).
            noisy = st.noisy = st.band_noisy = False
        # These five are reported here only, and only on change: skip when none changed.
        judged = (flat, saturated, noisy, t < st.gap_until, t < st.bad_until)
        if judged != st.judged:
            st.judged = judged
            self._report(ctx, st, feed, LEADS_OFF, flat, t)
            self._report(ctx, st, feed, SATURATED, saturated, t)
            self._report(ctx, st, feed, NOISY, noisy, t)
            self._report(ctx, st, feed, GAP, judged[3], t)
            self._report(ctx, st, feed, BAD_SAMPLES, judged[4], t)
        st.vf_judgeable = not (flat or saturated or noisy)
        readable = not (flat or saturated or noisy or t < st.trouble_until)
        if not readable:
            if not math.isnan(st.readable_since):
                st.hr.reset()  # beats found in a bad signal are not beats
            st.readable_since = math.nan
        elif math.isnan(st.readable_since):
            st.readable_since = t
        return readable

    def _noise(self, st: _FeedState, judgeable: bool) -> bool:
        """Signal quality of the last 2 s from two features; True when noisy.

        - **in-band**: the 20th percentile of the QRS-band (5-15 Hz) slope against
          the clean QRS slope. A clean ECG is still between complexes; broadband
          noise, baseline jumps and motion fill the gaps with QRS-like slope.
        - **high-frequency**: the median absolute second difference of the raw
          signal, which weighs the spectrum by f²: muscle artefact has most of its
          energy at 15-50 Hz and reaches there, where an ECG between its QRS
          complexes has next to none. Absolute levels differ between patients and
          leads as much as noise does, so it is judged against its own 10th
          percentile over the last 5 minutes: noisy above ``noise_hf_ratio``
          (3) times that, and above 1 % of the QRS amplitude (at 360 Hz; see
          HF_FLOOR_FS). On the shared MIT-BIH records clean seconds exceed 3
          times in about 0.4 % of seconds; nstdb muscle noise at 6 dB SNR in a
          quarter, at 0 dB in more than half. Above ``HF_DOUBTFUL`` (2) times,
          the signal is doubtful and the rate is the intervals' interquartile mean.

        Either feature says noisy; each leaves at two thirds of its limit.
        """
        if not judgeable or st.deriv.shape[0] < st.noise_n:
            return st.noisy if judgeable else False
        ref = st.ref_slope if st.ref_slope > 0 else st.detector.qrs_slope
        if ref <= 0:
            return st.noisy
        p20 = _percentile(st.deriv, 20.0)
        index = p20 / ref
        st.noise_level = index
        if any(st.vent_recent):
            # Not lowered by wide, dull ventricular beats (see NORMAL_REF_S). The
            # reference itself, and the noise level that gates its updates, stay as
            # they are: only the verdict is taken against the normal beats' slope.
            ns = [v for tb, v in st.normal_slopes if tb > st.t_end - NORMAL_REF_S]
            if len(ns) >= 2:
                index = p20 / max(ref, sorted(ns)[len(ns) // 2])
        # Hysteresis, each feature on its own: enter above the limit, leave below two
        # thirds of it. (After an artefact the HF feature saw, the in-band one is not
        # held at two thirds, where a fast wide rhythm that never rests reads.)
        limit = self.cfg.noise_index * (2.0 / 3.0 if st.band_noisy else 1.0)
        x = st.recent
        hf = _percentile(np.abs(x[2:] - 2.0 * x[1:-1] + x[:-2]), 50.0, overwrite=True)
        hist = st.hf_hist
        hf_noisy = False
        st.hf_level = 1.0
        if math.isfinite(hf):
            amp = st.detector.qrs_amplitude_mv
            base = st.hf_base
            if base >= 0 and amp > 0:
                lim = max(self.cfg.noise_hf_ratio * base, st.hf_floor * amp)
                hf_noisy = hf > lim * (2.0 / 3.0 if st.hf_noisy else 1.0)
                st.hf_level = hf / max(base, st.hf_floor * amp / self.cfg.noise_hf_ratio)
            if st.t_end >= st.hf_next_t:  # one value per second, however chunked
                hist.append(hf)
                st.hf_next_t = st.t_end + 1.0 - 0.5 / st.fs
                st.hf_count += 1
                # The reference moves slowly: renewed every HF_RECENT seconds.
                if len(hist) >= HF_MIN_HISTORY and st.hf_count % HF_RECENT == 0:
                    n = len(hist) - HF_RECENT
                    st.hf_base = _percentile(np.fromiter(hist, float, n), 10.0)
        st.hf_noisy = hf_noisy
        st.band_noisy = index > limit
        st.noisy = st.band_noisy or hf_noisy
        return st.noisy

    def _evaluate(self, st: _FeedState, feed: str, ctx: CheckContext, *, publish: bool) -> None:
        cfg, t = self.cfg, st.t_end
        readable = not math.isnan(st.readable_since)
        since_vt = t - st.vt_since_beat
        # A run of one-shaped ventricular beats under 250 bpm is VT, even where the
        # VF analysis (4 s windows) also sees a sustained oscillation in it; faster,
        # or shapeless, is VF.
        # VF begins on a VF-like window and holds between VF-like windows (VF changes
        # its form from second to second), but never while beats of the patient's own
        # shape come through: in VF there are none.
        # VF is judged through the recovery from a gap or bad samples too: its
        # analysis goes on across them (see _restart), the QRS detector's does not.
        fibrillation = (
            st.vf_judgeable
            and st.vf.present
            and (st.vf.vf_like or st.vf_on)
            and not t - st.normal_beat_t < 1.5
            and t > st.organised_until
        )
        vf = fibrillation and not since_vt <= VF_AFTER_VT_S  # NaN: no VT yet
        st.vf_on = vf
        # VT gives way to VF once the VF windows no longer hold its beats; until then
        # it stays VT, so that no rate is shown between the two (mitdb 207's flutter).
        vt = readable and (since_vt < VT_HOLD_S or (fibrillation and since_vt <= VF_AFTER_VT_S))
        asystole = False
        if readable and not vf:
            since = (
                st.readable_since
                if math.isnan(st.last_beat)
                else max(st.last_beat, st.readable_since)
            )
            quiet = t - since
            # A beat being confirmed may postpone asystole by the detector's latency, no more.
            asystole = quiet >= cfg.asystole_s and (
                not st.detector.beat_pending or quiet >= cfg.asystole_s + st.latency_s
            )
        # Beats are confirmed up to the detector's latency after the R peak: the
        # interval still open is only known to be that much shorter.
        robust = st.hf_level > HF_DOUBTFUL
        rate = (
            st.hr.rate(t - st.latency_s, robust=robust)
            if readable and not (asystole or vf) and st.hr.beat_count >= RATE_MIN_BEATS
            else None
        )
        if asystole:
            rate = 0.0
        judged = rate is not None and not asystole
        r = rate if rate is not None else math.nan
        if judged and not cfg.brady_bpm <= r <= cfg.tachy_bpm:
            # A rate alarm needs the mean and the interquartile mean of the intervals
            # to agree that the limit is passed: one false beat (a T wave, an
            # artefact) splits an interval and lifts the mean of twelve by ~8 %, one
            # missed beat merges two and lowers it; the interquartile mean moves
            # with a real change of rate as soon as the mean does (sooner, after a step).
            other = st.hr.rate(t - st.latency_s, robust=not robust)
            if other is not None:
                r = max(r, other) if r < cfg.brady_bpm else min(r, other)
            if r > cfg.tachy_bpm:
                # ... and with an interval split by an extra detection joined again.
                unsplit = st.hr.unsplit_rate(t - st.latency_s)
                if unsplit is not None:
                    r = min(r, unsplit)
        # These five are reported here only, and only on change: skip when none changed
        # (the values and limits below go with a change).
        rated = (
            asystole,
            vf,
            vt,
            judged and r < cfg.brady_bpm,
            judged and r > cfg.tachy_bpm,
            judged and r < cfg.brady_extreme_bpm,
            judged and r > cfg.tachy_extreme_bpm,
        )
        if rated != st.rated:
            st.rated = rated
            self._report(
                ctx,
                st,
                feed,
                ASYSTOLE,
                asystole,
                t,
                value=t - st.last_beat if not math.isnan(st.last_beat) else None,
                limit=cfg.asystole_s,
            )
            self._report(ctx, st, feed, VF, vf, t)
            self._report(ctx, st, feed, VT, vt, t, r, cfg.vt_bpm)
            self._report(ctx, st, feed, BRADY, rated[3], t, r, cfg.brady_bpm)
            self._report(ctx, st, feed, TACHY, rated[4], t, r, cfg.tachy_bpm)
            self._report(ctx, st, feed, BRADY_EXTREME, rated[5], t, r, cfg.brady_extreme_bpm)
            self._report(ctx, st, feed, TACHY_EXTREME, rated[6], t, r, cfg.tachy_extreme_bpm)
        if vf:
            rhythm = "vf"
        elif vt:
            rhythm = "vt"
        elif asystole:
            rhythm = "asystole"
        elif not judged:
            rhythm = "unknown"
        elif r < cfg.brady_bpm:
            rhythm = "bradycardia"
        elif r > cfg.tachy_bpm:
            rhythm = "tachycardia"
        else:
            rhythm = "normal_rate"
        if rhythm != st.rhythm:
            st.rhythm = rhythm
            # Categorical: the label is the value (reliable=False keeps "value" null).
            ctx.measure(
                Measurement(
                    name="ecg_rhythm",
                    value=math.nan,
                    unit="",
                    t=t,
                    feed=feed,
                    reliable=False,
                    label=rhythm,
                )
            )
        if rate is not None:
            if publish:
                ctx.measure(Measurement(name="heart_rate", value=rate, unit="bpm", t=t, feed=feed))
                st.rate_shown = True
        elif st.rate_shown:
            # The rate just became unknown: say so at once, so the room state stops
            # showing the last value (it shows "--" until a rate is published again).
            ctx.measure(
                Measurement(
                    name="heart_rate", value=math.nan, unit="bpm", t=t, feed=feed, reliable=False
                )
            )
            st.rate_shown = False

    def _report(
        self,
        ctx: CheckContext,
        st: _FeedState,
        feed: str,
        spec: ConditionSpec,
        active: bool,
        t: float,
        value: float | None = None,
        limit: float | None = None,
    ) -> None:
        st.conditions.report(ctx, spec, feed=feed, active=active, t=t, value=value, limit=limit)
