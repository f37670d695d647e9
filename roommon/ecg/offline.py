"""Offline validation: the streaming detector run over a recorded file.

Not part of the live data flow, but it runs the same :class:`QrsDetector` code
path chunk by chunk as the daemon does, so results on PhysioNet records speak
for the live detector. Provides the ``roommon ecg-beats RECORD`` command
(:func:`add_parser` / :func:`run_ecg_beats`) and the reference-annotation
helpers the benchmark and tests score against.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Final

import numpy as np

from roommon.core.model import FloatArray
from roommon.ecg.pacer import MIN_FS as PACER_MIN_FS
from roommon.ecg.pacer import PacerFilter
from roommon.ecg.qrs import IntArray, QrsDetector
from roommon.records.physionet import read_channel

#: wfdb's beat annotation symbols (``wfdb.io.annotation.ann_label_table`` beats).
BEAT_SYMBOLS: Final = frozenset("NLRBAaJSVrFejnE/fQ?")
MATCH_WINDOW_S: Final = 0.150


def detect_samples(
    samples: FloatArray, *, fs: float, chunk_seconds: float = 1.0, pacer_rejection: bool = True
) -> IntArray:
    """Feed ``samples`` to a fresh detector in chunks of ``chunk_seconds``; all beats.

    Pacer pulses are blanked first (:class:`~roommon.ecg.pacer.PacerFilter`), as the
    EKG check does with its default ``pacer_rejection``.
    """
    det = QrsDetector(fs=fs)
    pacer = PacerFilter(fs=fs) if pacer_rejection and fs >= PACER_MIN_FS else None
    step = max(1, round(chunk_seconds * fs))
    parts = []
    for i in range(0, samples.shape[0], step):
        x = samples[i : i + step]
        parts.append(det.process(x if pacer is None else pacer.process(x)))
    if pacer is not None:
        parts.append(det.process(pacer.flush()))
    parts.append(det.flush())
    return np.concatenate(parts).astype(np.int64)


def detect_record(
    record_path: pathlib.Path | str, channel: int = 0, chunk_seconds: float = 1.0
) -> IntArray:
    """R-peak sample indices of one channel of a WFDB record, streamed chunk by chunk."""
    sig = read_channel(record_path, channel=channel)
    return detect_samples(sig.samples, fs=sig.fs, chunk_seconds=chunk_seconds)


def reference_beats(record_path: pathlib.Path | str, *, annotator: str = "atr") -> IntArray:
    """Annotated beats of a record, without those inside ventricular flutter episodes.

    Flutter waves have no QRS complexes to detect; the EC57 convention excludes
    the ``[`` ... ``]`` episodes from beat-by-beat scoring.
    """
    return _read_reference(record_path, annotator)[0]


def reference_vf(
    record_path: pathlib.Path | str, *, annotator: str = "atr"
) -> list[tuple[int, int]]:
    """Sample spans of the annotated ventricular flutter / fibrillation episodes (``[`` .. ``]``).

    A ``[`` without ``]`` lasts to the end of the record (the span ends at the
    largest int64). As WFDB's ``bxb`` does, detections inside these spans are not
    scored (:func:`outside`): there is no QRS there to be right or wrong about.
    """
    return _read_reference(record_path, annotator)[1]


def _read_reference(
    record_path: pathlib.Path | str, annotator: str
) -> tuple[IntArray, list[tuple[int, int]]]:
    import wfdb  # optional extra

    ann = wfdb.rdann(str(record_path), annotator)
    keep: list[int] = []
    spans: list[tuple[int, int]] = []
    vf_start: int | None = None
    for sample, symbol in zip(ann.sample.tolist(), ann.symbol, strict=True):
        if symbol == "[":
            vf_start = int(sample) if vf_start is None else vf_start
        elif symbol == "]":
            if vf_start is not None:
                spans.append((vf_start, int(sample)))
            vf_start = None
        elif symbol in BEAT_SYMBOLS and vf_start is None:
            keep.append(int(sample))
    if vf_start is not None:
        spans.append((vf_start, int(np.iinfo(np.int64).max)))
    return np.asarray(keep, dtype=np.int64), spans


def outside(detected: IntArray, spans: list[tuple[int, int]]) -> IntArray:
    """The detections outside the given sample spans (reference VF episodes)."""
    keep = np.ones(detected.shape[0], dtype=bool)
    for a, b in spans:
        keep &= (detected < a) | (detected > b)
    return detected[keep]


@dataclass(frozen=True, slots=True)
class MatchResult:
    true_pos: int
    false_neg: int
    false_pos: int

    @property
    def sensitivity(self) -> float:
        total = self.true_pos + self.false_neg
        return self.true_pos / total if total else 1.0

    @property
    def positive_predictivity(self) -> float:
        total = self.true_pos + self.false_pos
        return self.true_pos / total if total else 1.0

    def __add__(self, other: MatchResult) -> MatchResult:
        return MatchResult(
            self.true_pos + other.true_pos,
            self.false_neg + other.false_neg,
            self.false_pos + other.false_pos,
        )


#: EC57's learning period: ``bxb`` compares beats from 5 minutes into a record.
EC57_START_S: Final = 300.0

_PAST_END: Final = 1 << 62  # a time after every annotation (bxb's ``huge_time``)


def _in_spans(t: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= t <= b for a, b in spans)


def match_beats(
    reference: IntArray,
    detected: IntArray,
    *,
    fs: float,
    window_s: float = MATCH_WINDOW_S,
    start_s: float = 0.0,
    vf: list[tuple[int, int]] | None = None,
) -> MatchResult:
    """Beat-by-beat comparison of detections with reference beats, as WFDB's ``bxb``.

    A port of the pairing rules of ``bxb`` (WFDB 10.5, the reference
    implementation of ANSI/AAMI EC38 / EC57, which the standards require): the
    two annotation streams are walked in time order; the earlier of the current
    reference beat ``T`` and detection ``t`` is paired with the other when they
    are at most ``window_s`` apart (150 ms) and the other is not a better match
    for the next annotation of the first stream (bxb's 2002 criterion); an
    unpaired reference beat is a false negative, an unpaired detection a false
    positive, except inside a reference ventricular flutter / fibrillation
    episode (``vf``: sample spans, ends included, e.g. :func:`reference_vf`),
    where bxb does not count it. ``reference`` must already leave out the beats
    inside those episodes (:func:`reference_beats` does; bxb skips everything
    between ``[`` and ``]``).

    ``start_s`` is bxb's ``-f``: reference beats before it are not compared, and
    of the detections before it only the last one may pair with the first
    reference beat after it; a detection within the window after ``start_s``
    that matches nothing better is dropped uncounted. EC57's standard start is
    :data:`EC57_START_S` (bxb's default); 0 scores the whole record.

    Test-annotated shutdown and the reference's unreadable (``~`` shutdown)
    stretches change nothing here: bxb still counts a detection there as a false
    positive (its ``X`` row enters the QRS +P) and a missed beat as a false
    negative. One deliberate difference: bxb remembers only the last two VF
    episodes, so after an episode with no ``]`` that follows another, it counts
    detections as false positives; here every episode counts, as EC57 says.
    """
    dt = int(window_s * fs + 0.5)  # bxb: strtim(".15"), samples rounded
    start = int(start_s * fs + 0.5)
    spans = vf or []
    refs = [*np.sort(np.asarray(reference, dtype=np.int64)).tolist(), _PAST_END, _PAST_END]
    dets = [*np.sort(np.asarray(detected, dtype=np.int64)).tolist(), _PAST_END, _PAST_END]
    tp = fn = fp = 0
    # i: index of the current reference beat T (refs[i + 1] is T'), j likewise of t.
    i = j = 0
    if start > 0:
        i = int(np.searchsorted(refs[:-2], start, side="left"))
        j = int(np.searchsorted(dets[:-2], start, side="left"))  # t' of bxb
        big_t = refs[i]
        t = dets[j - 1] if j > 0 else 0  # the learning period's last detection
        if big_t - t < abs(big_t - dets[j]) and big_t - t <= dt:
            tp += 1
            i += 1
        elif dets[j] - start <= dt and abs(big_t - dets[j + 1]) < abs(big_t - dets[j]):
            j += 1  # dropped uncounted
    while refs[i] != _PAST_END or dets[j] != _PAST_END:
        big_t, big_t_next = refs[i], refs[i + 1]
        t, t_next = dets[j], dets[j + 1]
        if t < big_t:
            if big_t - t <= dt and (
                big_t - t < abs(big_t - t_next) or abs(big_t_next - t_next) < abs(big_t - t_next)
            ):
                tp += 1
                i += 1
                j += 1
            else:
                if not _in_spans(t, spans):
                    fp += 1
                j += 1
        elif t - big_t <= dt and (
            t - big_t < abs(t - big_t_next) or abs(t_next - big_t_next) < abs(t - big_t_next)
        ):
            tp += 1
            i += 1
            j += 1
        else:
            fn += 1
            i += 1
    return MatchResult(tp, fn, fp)
