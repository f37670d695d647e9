"""Typed objects that flow through the daemon: samples in, conditions out.

Layering (nothing reaches back up):
transport (bytes/messages) -> driver or payload decoder -> :class:`WaveformChunk` /
:class:`NumericReading` -> room pipeline ring buffers -> checks ->
:class:`ConditionReport` -> alarm engine -> alarm events -> publishers.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]


def __getattr__(name: str) -> Any:
    # numpy loads with the first module that needs an array, not with the vocabulary
    # (a command such as ``roommon alarms`` needs the kinds, never an array).
    if name == "FloatArray":
        import numpy as np
        import numpy.typing as npt

        alias = npt.NDArray[np.float64]
        globals()["FloatArray"] = alias
        return alias
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SignalKind(enum.StrEnum):
    """What a feed carries. Waveform kinds come in chunks, numeric kinds as readings."""

    ECG = "ecg"  # waveform, mV
    PLETH = "pleth"  # waveform, arbitrary units (normalised)
    ABP = "abp"  # invasive arterial pressure waveform, mmHg
    CEMENT_PRESSURE = "cement_pressure"  # cement injection pressure waveform, kPa
    NIBP = "nibp"  # numeric: systolic/diastolic/mean, mmHg
    SPO2 = "spo2"  # numeric: spo2 %, pulse rate bpm, perfusion index %

    @property
    def is_waveform(self) -> bool:
        return self in WAVEFORM_KINDS


WAVEFORM_KINDS: Final = frozenset(
    {SignalKind.ECG, SignalKind.PLETH, SignalKind.ABP, SignalKind.CEMENT_PRESSURE}
)

#: Unit each signal kind is carried in inside roommon. Feeds declare their unit and
#: the decoder refuses a mismatch rather than guessing a conversion.
CANONICAL_UNITS: Final[dict[SignalKind, str]] = {
    SignalKind.ECG: "mV",
    SignalKind.PLETH: "au",
    SignalKind.ABP: "mmHg",
    SignalKind.CEMENT_PRESSURE: "kPa",
    SignalKind.NIBP: "mmHg",
    SignalKind.SPO2: "%",
}

#: Physically possible range of a sample of each waveform kind. Values outside are
#: rejected as bad samples (never passed to checks). Wide on purpose: these catch
#: garbage, not abnormal physiology.
PHYSICAL_RANGE: Final[dict[SignalKind, tuple[float, float]]] = {
    SignalKind.ECG: (-20.0, 20.0),  # mV; skin-surface ECG is a few mV, rails ~±10 mV
    SignalKind.PLETH: (-1e6, 1e6),  # arbitrary device units
    SignalKind.ABP: (-50.0, 400.0),  # mmHg; transducer zero drift can go slightly negative
    SignalKind.CEMENT_PRESSURE: (-200.0, 20_000.0),  # kPa; 20 MPa is far above any syringe
}

#: Named fields of numeric readings, each with its unit and physical range.
NUMERIC_FIELDS: Final[dict[SignalKind, dict[str, tuple[str, float, float]]]] = {
    SignalKind.NIBP: {
        "systolic": ("mmHg", 0.0, 350.0),
        "diastolic": ("mmHg", 0.0, 300.0),
        "mean": ("mmHg", 0.0, 320.0),
    },
    SignalKind.SPO2: {
        "spo2": ("%", 0.0, 100.0),
        "pulse_rate": ("bpm", 0.0, 350.0),
        "perfusion_index": ("%", 0.0, 100.0),
    },
}


class DataOrigin(enum.StrEnum):
    """Where data came from; carried through to every alarm it causes."""

    LIVE = "live"
    SIMULATED = "simulated"
    REPLAYED = "replayed"


@dataclass(frozen=True, slots=True, kw_only=True)
class WaveformChunk:
    """Consecutive samples of one waveform feed.

    ``t0`` is the UTC epoch time of ``samples[0]``; sample ``i`` is at
    ``t0 + i / fs``. ``seq`` is the device's sequence number of this chunk,
    used to detect gaps.
    """

    room: str
    feed: str
    kind: SignalKind
    unit: str
    fs: float
    t0: float
    samples: FloatArray
    seq: int
    origin: DataOrigin = DataOrigin.LIVE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.fs

    @property
    def t_end(self) -> float:
        """Time just after the last sample."""
        return self.t0 + self.duration


@dataclass(frozen=True, slots=True, kw_only=True)
class NumericReading:
    """One reading of a numeric device (an NIBP result, an SpO2 value...).

    ``values`` maps field names of :data:`NUMERIC_FIELDS` to numbers; a field a
    device reports as unavailable is ``NaN`` and is never compared to a limit.
    """

    room: str
    feed: str
    kind: SignalKind
    t: float
    values: dict[str, float]
    seq: int
    origin: DataOrigin = DataOrigin.LIVE
    # device-reported technical states, e.g. {"sensor_off"}; drivers fill it
    flags: frozenset[str] = field(default_factory=frozenset)

    def get(self, name: str) -> float:
        return self.values.get(name, math.nan)


Sample = WaveformChunk | NumericReading
