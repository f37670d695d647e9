"""WFDB records (PhysioNet's format): header, signal files and reference annotations.

Read with the ``wfdb`` package (the ``roommon[physionet]`` extra), imported on
first use; its exceptions are converted here into :class:`RecordError` lines
naming the file. Multi-rate records (MIMIC: ECG 500 Hz, ABP 125 Hz) keep each
signal's own rate. Annotations come from the ``atr`` annotator when present:

* beats: the 19 WFDB beat symbols, outside ventricular flutter ``[``..``]``;
* episodes: rhythm changes (``+`` with aux ``(VT``, ``(VF``, ``(ASYS``...), each
  lasting to the next rhythm change, and the flutter stretches ``[``..``]``
  (label ``VFL``).
"""

from __future__ import annotations

import datetime as dt
import pathlib

import numpy as np

from roommon.records.record import (
    BEAT_SYMBOLS,
    Episode,
    Record,
    RecordError,
    RecordSignal,
    Reference,
    episodes_from_rhythm_marks,
    start_epoch,
)

_SIGNAL_SUFFIXES = (".dat", ".mat")


def record_base(path: pathlib.Path) -> pathlib.Path:
    """The record path without extension; RecordError when there is no header."""
    base = path.with_suffix("") if path.suffix in (".hea", *_SIGNAL_SUFFIXES, ".atr") else path
    header = base.with_suffix(".hea")
    if not header.is_file():
        raise RecordError(f"{header}: no such WFDB header")
    return base


def _signal_files(base: pathlib.Path) -> list[pathlib.Path]:
    files: list[pathlib.Path] = []
    lines = [
        line.split()
        for line in base.with_suffix(".hea").read_text(errors="replace").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    # The first line describes the record; one line per signal follows (multi-segment
    # records name segment headers instead, which wfdb itself checks).
    for parts in lines[1:]:
        if "/" in parts[0] or not parts[0].lower().endswith(_SIGNAL_SUFFIXES):
            continue
        name = base.parent / parts[0]
        if name not in files:
            files.append(name)
    return files


def read_wfdb(path: pathlib.Path, *, annotator: str = "atr") -> Record:
    """Every signal of a WFDB record in physical units, with its ``annotator`` reference."""
    try:
        import wfdb
    except ImportError as exc:  # optional extra
        raise RecordError(
            f"{path}: reading WFDB records needs the wfdb package (pip install roommon[physionet])"
        ) from exc
    base = record_base(path)
    for f in _signal_files(base):
        if not f.is_file():
            raise RecordError(f"{f}: signal file of {base.with_suffix('.hea')} is missing")
    try:
        rec = wfdb.rdrecord(str(base), smooth_frames=False)
    except Exception as exc:  # wfdb raises bare ValueError/OSError/IndexError; converted here
        raise RecordError(f"{base.with_suffix('.hea')}: unreadable WFDB record ({exc})") from exc
    fs = float(rec.fs)
    signals = []
    for i, name in enumerate(rec.sig_name):
        samples = np.asarray(rec.e_p_signal[i], dtype=np.float64)
        spf = int(rec.samps_per_frame[i])
        unit = str(rec.units[i]) if rec.units is not None else "mV"
        signals.append(RecordSignal(name=str(name), unit=unit, fs=fs * spf, samples=samples))
    start = None
    if rec.base_time is not None and rec.base_date is not None:
        start = dt.datetime.combine(rec.base_date, rec.base_time, tzinfo=dt.UTC).timestamp()
    duration = int(rec.sig_len) / fs
    reference = None
    if base.with_suffix(f".{annotator}").is_file():
        reference = _reference(base, annotator, fs=fs, duration_s=duration)
    return Record(
        path=str(base), signals=tuple(signals), start_epoch=start_epoch(start), reference=reference
    )


def _reference(base: pathlib.Path, annotator: str, *, fs: float, duration_s: float) -> Reference:
    import wfdb

    source = f"{base}.{annotator}"
    try:
        ann = wfdb.rdann(str(base), annotator)
    except Exception as exc:  # as above: wfdb's own exceptions, converted at this edge
        raise RecordError(f"{source}: unreadable annotation file ({exc})") from exc
    ann_fs = float(ann.fs) if ann.fs else fs
    beats: list[int] = []
    marks: list[tuple[float, str]] = []
    flutter: list[Episode] = []
    flutter_start: float | None = None
    aux = ann.aux_note if ann.aux_note is not None else [""] * len(ann.symbol)
    for sample, symbol, note in zip(ann.sample.tolist(), ann.symbol, aux, strict=True):
        t = sample / ann_fs
        if symbol == "[":
            flutter_start = t
        elif symbol == "]":
            if flutter_start is not None:
                flutter.append(Episode(label="VFL", start_s=flutter_start, end_s=t))
            flutter_start = None
        elif symbol == "+" and note.strip("\x00").strip().startswith("("):
            marks.append((t, note))
        elif symbol in BEAT_SYMBOLS and flutter_start is None:
            beats.append(sample)
    if flutter_start is not None:
        flutter.append(Episode(label="VFL", start_s=flutter_start, end_s=duration_s))
    episodes = episodes_from_rhythm_marks(marks, end_s=duration_s) + flutter
    episodes.sort(key=lambda e: (e.start_s, e.label))
    return Reference(
        source=source,
        beats_s=np.asarray(beats, dtype=np.float64) / ann_fs,
        episodes=tuple(episodes),
    )
