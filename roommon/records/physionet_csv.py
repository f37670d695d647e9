"""PhysioNet's CSV form of a record (the BIDMC PPG and Respiration Dataset's).

Beside the WFDB and EDF readers, with the same result (:class:`Record`): a
record ``NAME`` is the files ``NAME_Signals.csv`` (a ``Time [s]`` column, then
one column per waveform at one rate) and, when present, ``NAME_Numerics.csv``
(a ``Time [s]`` column, then the bedside monitor's own numerics, once a
second); ``NAME_Fix.txt`` (age, sex, source record) is not needed. The path
may be given as ``NAME`` or as any of those files. Columns are found by their
header names (their order differs from record to record); ``NaN`` is a
missing value.

The CSV form has no units, so the units are the dataset's documented ones
(:data:`SIGNAL_UNITS`, :data:`NUMERIC_UNITS`): every waveform is in
normalised units (0-1), the numerics in bpm, breaths/min and %. ``PLETH`` is
a plethysmogram in arbitrary units and maps to the ``pleth`` feed as is. The
ECG leads (``II``, ``V``, ``AVR``...) and arterial pressures (``ABP``,
``ART``) are normalised too, **not mV or mmHg**: they are left out (said so
in the output), and a ``--map II=ecg`` is refused for its unit, never
rescaled by a guess. The record has no start time (MIMIC II's
dates are shifted into the future): the replay starts at
:data:`~roommon.records.record.DEFAULT_START_EPOCH`.

Errors are :class:`RecordError` naming the file (and line or column).
"""

from __future__ import annotations

import pathlib
from typing import Final

import numpy as np

from roommon.core.model import CANONICAL_UNITS, FloatArray, SignalKind
from roommon.records.mapping import NAME_RULES
from roommon.records.record import DEFAULT_START_EPOCH, Record, RecordError, RecordSignal

SIGNALS_SUFFIX: Final = "_Signals.csv"
NUMERICS_SUFFIX: Final = "_Numerics.csv"
FIX_SUFFIX: Final = "_Fix.txt"
SUFFIXES: Final = (SIGNALS_SUFFIX, NUMERICS_SUFFIX, FIX_SUFFIX)
TIME_COLUMN: Final = "Time [s]"

#: The unit of every waveform column of the CSV form (the dataset says: normalised 0-1).
NORMALISED: Final = "NU"
#: Feed kinds whose unit is physical: a normalised column named like one of them is held
#: back (left out unless ``--map`` names it, and then refused for its unit).
PHYSICAL_KINDS: Final = frozenset({SignalKind.ECG, SignalKind.ABP})
#: Units of the numerics columns, as the dataset documents them (upper-case name -> unit).
NUMERIC_UNITS: Final[dict[str, str]] = {
    "HR": "bpm",
    "PULSE": "bpm",
    "RESP": "breaths/min",
    "SPO2": "%",
}


def csv_base(path: pathlib.Path) -> pathlib.Path | None:
    """``NAME`` of a CSV-form record given as ``NAME`` or one of its files; None otherwise."""
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    if path.with_name(name + SIGNALS_SUFFIX).is_file():
        return path
    return None


def read_csv_record(path: pathlib.Path) -> Record:
    """The waveforms and numerics of a CSV-form record (``NAME`` or one of its files)."""
    base = csv_base(path)
    if base is None:
        raise RecordError(f"{path}: not a PhysioNet CSV record (no {path.name}{SIGNALS_SUFFIX})")
    signals_file = base.with_name(base.name + SIGNALS_SUFFIX)
    if not signals_file.is_file():
        raise RecordError(f"{signals_file}: signal file of record {base} is missing")
    names, t, columns = _read_table(signals_file)
    fs = _rate(signals_file, t)
    signals = tuple(
        RecordSignal(
            name=name,
            unit=NORMALISED,
            fs=fs,
            samples=col,
            unmapped_reason=_held_back(name),
        )
        for name, col in zip(names, columns, strict=True)
    )
    numerics: tuple[RecordSignal, ...] = ()
    numerics_file = base.with_name(base.name + NUMERICS_SUFFIX)
    if numerics_file.is_file():
        n_names, n_t, n_columns = _read_table(numerics_file)
        n_fs = _rate(numerics_file, n_t)
        numerics = tuple(
            RecordSignal(
                name=name, unit=NUMERIC_UNITS.get(name.upper(), ""), fs=n_fs, samples=col
            )
            for name, col in zip(n_names, n_columns, strict=True)
        )
    return Record(
        path=str(base),
        signals=signals,
        start_epoch=DEFAULT_START_EPOCH,
        reference=None,
        numerics=numerics,
    )


def _held_back(name: str) -> str:
    """Why a normalised column is left out: it is named like a feed of physical unit."""
    kind = next((k for rule, k in NAME_RULES if rule.fullmatch(name.strip())), None)
    if kind not in PHYSICAL_KINDS:
        return ""
    return f"normalised 0-1 units, not {CANONICAL_UNITS[kind]}"


def _read_table(path: pathlib.Path) -> tuple[list[str], FloatArray, list[FloatArray]]:
    """Header names (without the time column), the time column and the value columns."""
    try:
        with path.open(encoding="ascii") as f:
            header = f.readline()
            try:
                data = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
            except ValueError as exc:  # numpy names the line and the bad value
                raise RecordError(f"{path}: unreadable row ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: not an ASCII CSV file") from exc
    except OSError as exc:
        raise RecordError(f"{path}: {exc.strerror}") from exc
    names = [h.strip() for h in header.strip().split(",")]
    if not names or names[0] != TIME_COLUMN:
        raise RecordError(f"{path}: first column must be {TIME_COLUMN!r}, not {names[0]!r}")
    if len(set(names)) != len(names) or any(not n for n in names):
        raise RecordError(f"{path}: column names must be unique and non-empty ({names})")
    if data.shape[0] < 2:
        raise RecordError(f"{path}: fewer than two rows of samples")
    if data.shape[1] != len(names):
        raise RecordError(
            f"{path}: {data.shape[1]} values a row but {len(names)} columns in the header"
        )
    return names[1:], data[:, 0], [np.ascontiguousarray(data[:, i]) for i in range(1, len(names))]


def _rate(path: pathlib.Path, t: FloatArray) -> float:
    """The sample rate of a uniformly sampled time column; RecordError if it is not.

    The dataset writes times with five significant digits (``100.02`` for 100.016 s), so
    the rate comes from the whole span and each time may be off by that rounding.
    """
    n = t.shape[0]
    span = float(t[-1] - t[0])
    steps = np.diff(t)
    if not np.isfinite(span) or span <= 0 or float(np.min(steps)) < 0:
        raise RecordError(f"{path}: the {TIME_COLUMN!r} column is not increasing")
    fs = float((n - 1) / span)
    if abs(fs - round(fs)) < 1e-3 * fs:
        fs = float(round(fs))
    expected = t[0] + np.arange(n) / fs
    tolerance = np.maximum(0.5 / fs, 5e-5 * np.abs(t)) + 1e-9
    off = np.abs(t - expected)
    if bool(np.any(off > tolerance)):
        i = int(np.argmax(off > tolerance))
        raise RecordError(
            f"{path}: the {TIME_COLUMN!r} column is not sampled at one rate "
            f"(row {i + 2}: {t[i]:g} s, expected {expected[i]:g} s at {fs:g} Hz)"
        )
    return float(fs)
