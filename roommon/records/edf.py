"""EDF and EDF+ files (European Data Format, what monitors and gateways export).

A small parser of our own (the format is a fixed ASCII header and 16-bit
little-endian data records; see https://www.edfplus.info/specs/): signals in
physical units (``(digital - dmin) * (pmax - pmin) / (dmax - dmin) + pmin``),
each at its own rate (samples per data record / record duration). EDF+
"EDF Annotations" signals are read as time-stamped annotation lists (TALs):
an annotation whose text is a rhythm label (``(VT``, ``VF``...) starts an
episode lasting its duration or, without one, to the next rhythm label; a
text that is a WFDB beat symbol (``N``, ``V``...) is a reference beat.

A file shorter than its header says (a truncated copy) is a
:class:`RecordError` naming the file, never a silent shorter record.
Discontinuous EDF+ (``EDF+D``) files are refused: roommon replays one
continuous stretch.
"""

from __future__ import annotations

import calendar
import pathlib
import re
from typing import Final

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

ANNOTATION_LABEL: Final = "EDF Annotations"
_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*?)\x14\x00", re.DOTALL)


def _field(raw: bytes, start: int, width: int) -> str:
    return raw[start : start + width].decode("ascii", errors="replace").strip()


def _num(text: str, what: str, path: pathlib.Path) -> float:
    try:
        return float(text)
    except ValueError:
        raise RecordError(f"{path}: header field {what} is {text!r}, not a number") from None


def _start_epoch(date: str, time: str) -> float | None:
    try:
        d, m, y = (int(x) for x in date.split("."))
        hh, mm, ss = (int(x) for x in time.split("."))
    except ValueError:
        return None
    # EDF's two-digit year: 85..99 are 1985..1999, 00..84 are 2000..2084 (the spec's rule).
    year = 1900 + y if y >= 85 else 2000 + y
    try:
        return float(calendar.timegm((year, m, d, hh, mm, ss, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def read_edf(path: pathlib.Path) -> Record:
    """Every ordinary signal of an EDF/EDF+ file in physical units, with its annotations."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"{path}: cannot read EDF file ({exc.strerror})") from exc
    if len(raw) < 256:
        raise RecordError(f"{path}: truncated EDF file: {len(raw)} bytes, no full header")
    header_bytes = int(_num(_field(raw, 184, 8), "header bytes", path))
    reserved = _field(raw, 192, 44)
    n_records = int(_num(_field(raw, 236, 8), "number of data records", path))
    record_s = _num(_field(raw, 244, 8), "data record duration", path)
    ns = int(_num(_field(raw, 252, 4), "number of signals", path))
    if ns <= 0 or header_bytes != 256 * (ns + 1):
        raise RecordError(f"{path}: not an EDF file (header of {header_bytes} bytes, {ns} signals)")
    if len(raw) < header_bytes:
        raise RecordError(
            f"{path}: truncated EDF file: {len(raw)} bytes, header needs {header_bytes}"
        )
    if reserved.startswith("EDF+D"):
        raise RecordError(f"{path}: discontinuous EDF+ (EDF+D) is not supported")
    if record_s <= 0:
        raise RecordError(f"{path}: data record duration {record_s} (no signal data)")

    def column(offset: int, width: int) -> list[str]:
        base = 256 + offset * ns
        return [_field(raw, base + i * width, width) for i in range(ns)]

    labels = column(0, 16)
    units = column(16 + 80, 8)
    pmin = [_num(x, "physical minimum", path) for x in column(16 + 80 + 8, 8)]
    pmax = [_num(x, "physical maximum", path) for x in column(16 + 80 + 16, 8)]
    dmin = [_num(x, "digital minimum", path) for x in column(16 + 80 + 24, 8)]
    dmax = [_num(x, "digital maximum", path) for x in column(16 + 80 + 32, 8)]
    nsamp = [int(_num(x, "samples per record", path)) for x in column(16 + 80 + 40 + 80, 8)]
    per_record = sum(nsamp)
    data = raw[header_bytes:]
    record_bytes = 2 * per_record
    available = len(data) // record_bytes
    if n_records < 0:  # -1: unknown (recording still running when copied)
        n_records = available
    if available < n_records:
        raise RecordError(
            f"{path}: truncated EDF file: {len(data)} data bytes, header says "
            f"{n_records} records of {record_bytes} bytes"
        )
    digital = np.frombuffer(data, dtype="<i2", count=n_records * per_record).reshape(
        n_records, per_record
    )
    signals: list[RecordSignal] = []
    annotations: list[bytes] = []
    offset = 0
    for i, label in enumerate(labels):
        block = digital[:, offset : offset + nsamp[i]]
        offset += nsamp[i]
        if label == ANNOTATION_LABEL:
            annotations.append(block.tobytes())
            continue
        if dmax[i] == dmin[i] or pmax[i] == pmin[i]:
            raise RecordError(f"{path}: signal {label!r} has an empty physical or digital range")
        gain = (pmax[i] - pmin[i]) / (dmax[i] - dmin[i])
        physical = (block.reshape(-1).astype(np.float64) - dmin[i]) * gain + pmin[i]
        signals.append(
            RecordSignal(name=label, unit=units[i], fs=nsamp[i] / record_s, samples=physical)
        )
    start = start_epoch(_start_epoch(_field(raw, 168, 8), _field(raw, 176, 8)))
    duration = n_records * record_s
    reference = _reference(annotations, path=path, duration_s=duration)
    return Record(path=str(path), signals=tuple(signals), start_epoch=start, reference=reference)


def _reference(blocks: list[bytes], *, path: pathlib.Path, duration_s: float) -> Reference | None:
    """Beats and episodes from the TALs of the annotation signals; None when there are none
    (the first TAL of each data record only stamps its time, with empty text)."""
    beats: list[float] = []
    marks: list[tuple[float, str]] = []
    episodes: list[Episode] = []
    for block in blocks:
        for m in _TAL.finditer(block):
            onset = float(m.group(1))
            duration = float(m.group(2)) if m.group(2) else None
            for text in m.group(3).split(b"\x14"):
                label = text.decode("utf-8", errors="replace").strip()
                if not label:
                    continue
                if label in BEAT_SYMBOLS:
                    beats.append(onset)
                elif duration is not None and duration > 0:
                    episodes.append(
                        Episode(label=label.lstrip("("), start_s=onset, end_s=onset + duration)
                    )
                elif label.startswith("("):
                    marks.append((onset, label))
    if not beats and not marks and not episodes:
        return None
    episodes += episodes_from_rhythm_marks(marks, end_s=duration_s)
    episodes.sort(key=lambda e: (e.start_s, e.label))
    return Reference(
        source=f"{path} (EDF+ annotations)",
        beats_s=np.asarray(sorted(beats), dtype=np.float64),
        episodes=tuple(episodes),
    )
