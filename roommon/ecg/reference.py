"""Reference annotations of a PhysioNet record, read the way the EKG alarms are scored.

Outside the live data flow: the alarm benchmark (``bench/ecg_alarms.py``) and the
record tests use it to know where the annotators put beats, ventricular
fibrillation / flutter, ventricular tachycardia and noise.

What counts (README of the shared PhysioNet folder):

- beats: the 19 WFDB beat symbols, ventricular flutter episodes excluded;
- ventricular fibrillation / flutter: ``[`` .. ``]`` (a ``[`` without ``]`` lasts
  to the end) and the rhythm labels ``(VF``, ``(VFIB``, ``(VFL``;
- ventricular tachycardia: the rhythm label ``(VT``, and runs of consecutive
  ventricular beats (``V``, ``r``, ``E``) from the beat labels;
- noise on channel 0: ``~`` annotations whose subtype flags signal 0 as noisy
  or unreadable (bits 0 and 4), and the rhythm label ``(NOISE``.

A rhythm label lasts to the next one, except that the rhythm before a ``(NOISE``
label continues through it (vfdb's convention: the noise ends at the next label,
the rhythm does not change under it), so a VF episode with noise in it is one
episode, and VF alarms during its noisy part are not false.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from roommon.ecg.offline import BEAT_SYMBOLS
from roommon.ecg.qrs import IntArray

VENTRICULAR_BEATS: Final = frozenset("VrE")
VF_RHYTHMS: Final = frozenset({"(VF", "(VFIB", "(VFL"})
VT_RHYTHMS: Final = frozenset({"(VT"})
NOISE_RHYTHMS: Final = frozenset({"(NOISE"})

Span = tuple[float, float]


@dataclass(slots=True)
class Reference:
    """One record's annotations, times in seconds from the record's start."""

    fs: float
    duration_s: float
    beats: IntArray  # sample indices, flutter excluded
    symbols: list[str]  # one per beat
    vf: list[Span] = field(default_factory=list)
    vt_rhythm: list[Span] = field(default_factory=list)
    noise: list[Span] = field(default_factory=list)
    rhythms: list[tuple[float, str]] = field(default_factory=list)  # (start, label)

    @property
    def has_beats(self) -> bool:
        return bool(self.beats.shape[0] > 0)

    def ventricular_runs(self, *, min_beats: int, min_bpm: float = 0.0) -> list[Span]:
        """Runs of ``min_beats``+ consecutive ventricular beats, mean rate above ``min_bpm``.

        The span is from the first to the last beat of the run.
        """
        out: list[Span] = []
        i, n = 0, len(self.symbols)
        t = self.beats / self.fs
        while i < n:
            if self.symbols[i] not in VENTRICULAR_BEATS:
                i += 1
                continue
            j = i
            while j + 1 < n and self.symbols[j + 1] in VENTRICULAR_BEATS:
                j += 1
            k = j - i + 1
            if k >= min_beats:
                rate = 60.0 * (k - 1) / (t[j] - t[i]) if t[j] > t[i] else 0.0
                if rate > min_bpm:
                    out.append((float(t[i]), float(t[j])))
            i = j + 1
        return out


def _spans_from_rhythms(
    rhythms: list[tuple[float, str]], labels: frozenset[str], end: float
) -> list[Span]:
    out: list[Span] = []
    if labels is not NOISE_RHYTHMS:
        rhythms = underlying_rhythms(rhythms)
    for k, (t0, label) in enumerate(rhythms):
        if label in labels:
            t1 = rhythms[k + 1][0] if k + 1 < len(rhythms) else end
            out.append((t0, t1))
    return out


def underlying_rhythms(rhythms: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The rhythm labels with each ``(NOISE`` replaced by the rhythm it interrupts.

    A ``(NOISE`` before any other label stays (the rhythm under it is unknown);
    consecutive equal labels are merged into the first.
    """
    out: list[tuple[float, str]] = []
    for t, label in rhythms:
        if label in NOISE_RHYTHMS and out:
            continue  # the previous rhythm goes on
        if out and out[-1][1] == label:
            continue
        out.append((t, label))
    return out


def _merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def read_reference(
    record_path: pathlib.Path | str, *, fs: float, n_samples: int, annotator: str = "atr"
) -> Reference:
    """Parse a record's reference annotations (beats, VF, VT rhythm, noise)."""
    import wfdb  # optional extra

    ann = wfdb.rdann(str(record_path), annotator)
    end = n_samples / fs
    beats: list[int] = []
    symbols: list[str] = []
    vf: list[Span] = []
    noise: list[Span] = []
    rhythms: list[tuple[float, str]] = []
    vf_start: float | None = None
    noise_start: float | None = None
    aux = ann.aux_note if ann.aux_note is not None else [""] * len(ann.symbol)
    subtypes = ann.subtype if ann.subtype is not None else np.zeros(len(ann.symbol), dtype=int)
    for sample, symbol, note, sub in zip(
        ann.sample.tolist(), ann.symbol, aux, np.asarray(subtypes).tolist(), strict=True
    ):
        t = sample / fs
        if symbol == "[":
            vf_start = t
        elif symbol == "]":
            if vf_start is not None:
                vf.append((vf_start, t))
            vf_start = None
        elif symbol == "~":
            noisy0 = (int(sub) & 0x11) != 0
            if noisy0 and noise_start is None:
                noise_start = t
            elif not noisy0 and noise_start is not None:
                noise.append((noise_start, t))
                noise_start = None
        elif symbol == "+":
            label = (note or "").strip("\x00").strip()
            if label:
                rhythms.append((t, label))
        elif symbol in BEAT_SYMBOLS and vf_start is None:
            beats.append(int(sample))
            symbols.append(symbol)
    if vf_start is not None:
        vf.append((vf_start, end))
    if noise_start is not None:
        noise.append((noise_start, end))
    vf += _spans_from_rhythms(rhythms, VF_RHYTHMS, end)
    noise += _spans_from_rhythms(rhythms, NOISE_RHYTHMS, end)
    return Reference(
        fs=fs,
        duration_s=end,
        beats=np.asarray(beats, dtype=np.int64),
        symbols=symbols,
        vf=_merge(vf),
        vt_rhythm=_merge(_spans_from_rhythms(rhythms, VT_RHYTHMS, end)),
        noise=_merge(noise),
        rhythms=rhythms,
    )
