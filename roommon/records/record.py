"""A recorded patient record in physical units, and its reference annotations.

What the WFDB, EDF and PhysioNet CSV readers (:mod:`roommon.records.wfdb_files`,
:mod:`roommon.records.edf`, :mod:`roommon.records.physionet_csv`) return,
independent of the file format: each signal with its name, unit and own sample
rate, a monitor's numerics where the record has them, the record's start time, and
the annotations made by people (beats, rhythm episodes) that a replay scores
the room's alarms against (:mod:`roommon.runtime.audit`).

Errors are :class:`RecordError` (a :class:`~roommon.core.errors.UsageError`:
the CLI prints its one line and exits 2), naming the file or signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np

from roommon.core.errors import UsageError
from roommon.core.model import FloatArray

#: Start time given to a record whose header has none (MIT-BIH's), or one before
#: :data:`EARLIEST_EPOCH` (MIMIC's 1994): 2020-01-01T00:00:00Z. roommon's feed payloads
#: refuse times before 2000 (a device clock that was never set).
DEFAULT_START_EPOCH: Final = 1_577_836_800.0
EARLIEST_EPOCH: Final = 978_307_200.0  # 2001-01-01T00:00:00Z


def start_epoch(epoch: float | None) -> float:
    """The UTC time a record is replayed from: its own, unless missing or before 2001."""
    return epoch if epoch is not None and epoch >= EARLIEST_EPOCH else DEFAULT_START_EPOCH


#: WFDB beat annotation symbols (the 19 beat labels of ``wfdb``'s label table).
BEAT_SYMBOLS: Final = frozenset("NLRBAaJSVrFejnE/fQ?")


class RecordError(UsageError):
    """A record that cannot be read or mapped as asked; the message names the file or signal."""


@dataclass(frozen=True, slots=True)
class RecordSignal:
    """One signal of a record: physical values (NaN where the record has none)."""

    name: str
    unit: str
    fs: float
    samples: FloatArray
    #: Why the reader leaves this signal out unless ``--map`` names it (then its unit is
    #: judged as any other's); empty: mapped by its name as usual.
    unmapped_reason: str = ""

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[0] / self.fs)


@dataclass(frozen=True, slots=True)
class Episode:
    """An annotated stretch: ``label`` as written (``VT``, ``VFL``, ``ASYS``...), seconds
    from the record's start; ``end_s`` is where the next rhythm (or the record) begins."""

    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Reference:
    """A record's reference annotations. ``beats_s``: annotated beats (seconds from the
    start; empty when the record has no beat annotations), outside flutter episodes."""

    source: str
    beats_s: FloatArray = field(default_factory=lambda: np.zeros(0))
    episodes: tuple[Episode, ...] = ()

    @property
    def has_beats(self) -> bool:
        return bool(self.beats_s.shape[0] > 0)


@dataclass(frozen=True, slots=True)
class Record:
    """A whole record as read from its files."""

    path: str
    signals: tuple[RecordSignal, ...]
    start_epoch: float
    reference: Reference | None = None
    #: A monitor's own numerics (SpO2, pulse rate...), each a series at its own rate
    #: (:func:`roommon.records.mapping.map_numerics` maps them to numeric feeds).
    numerics: tuple[RecordSignal, ...] = ()

    @property
    def duration_s(self) -> float:
        return max((s.duration_s for s in self.signals), default=0.0)


def episodes_from_rhythm_marks(marks: list[tuple[float, str]], *, end_s: float) -> list[Episode]:
    """Rhythm-change marks ``(t, "(VT")`` as episodes, each lasting to the next mark."""
    out: list[Episode] = []
    ordered = sorted(marks)
    for i, (t, label) in enumerate(ordered):
        stop = ordered[i + 1][0] if i + 1 < len(ordered) else end_s
        name = label.strip().strip("\x00").lstrip("(").strip()
        if name and stop > t:
            out.append(Episode(label=name, start_s=t, end_s=stop))
    return out
