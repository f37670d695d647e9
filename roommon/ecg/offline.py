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


def match_beats(
    reference: IntArray,
    detected: IntArray,
    *,
    fs: float,
    window_s: float = MATCH_WINDOW_S,
    start_s: float = 0.0,
) -> MatchResult:
    """One-to-one matching of detections to reference beats within ``window_s``.

    Each reference beat takes the nearest unused detection within the window,
    in time order (the usual EC57-style pairing, one loop per beat). With
    ``start_s`` (EC57: :data:`EC57_START_S`), beats and detections before it are
    paired but not counted: the first minutes are the detector's learning period.
    """
    window = window_s * fs
    det = np.sort(detected)
    used = np.zeros(det.shape[0], dtype=bool)
    pos = np.searchsorted(det, reference)
    start = start_s * fs
    tp = fn = 0
    for r, p in zip(reference.tolist(), pos.tolist(), strict=True):
        best = -1
        best_d = window + 1.0
        for j in (p - 1, p, p + 1):
            if 0 <= j < det.shape[0] and not used[j]:
                dist = abs(int(det[j]) - r)
                if dist <= window and dist < best_d:
                    best, best_d = j, dist
        if best >= 0:
            used[best] = True
        if r >= start:
            if best >= 0:
                tp += 1
            else:
                fn += 1
    fp = int(np.count_nonzero(~used & (det >= start)))
    return MatchResult(tp, fn, fp)
