"""The hot path's decoder of feed payloads: msgspec structs that mirror the contract's models.

Every feed message is decoded once; with pydantic (:class:`~roommon.wire.payloads.
WaveformPayload`, :class:`~roommon.wire.payloads.ReadingPayload`) that costs about
7.6 µs for a 50-sample EKG chunk, with msgspec about 1.1 µs (``bench/input_cost.py``
prints both). The pydantic models stay the contract: the JSON Schemas are generated
from them and they give every rejection its reason. This module only ever *accepts*:
a payload it takes is one the models take, with the same values (tests/test_fast_feed.py
checks that with hypothesis); anything else (a wrong type, a bound, an unknown field,
the non-standard ``NaN`` of a bad sample, bad JSON) returns ``None`` and
:func:`~roommon.wire.payloads.decode_feed` hands the payload to the models, which
accept it or say why not.

Why it agrees with the models: both refuse unknown fields; msgspec is strict about
JSON types as the models are (no ``"95"`` for 95, no ``true`` for 1 or for the
version, JSON integers do pass as floats), and the bounds are the models'. msgspec
refuses ``NaN``, ``Infinity`` and numbers too large for a float (``1e400``), so every
float it returns is finite, which is what the models' ``allow_inf_nan=False`` asks
(samples, which may be NaN, then take the models' path: rare, a device's bad sample).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from roommon.core.model import DataOrigin, SignalKind

_Epoch = Annotated[float, msgspec.Meta(gt=946_684_800.0, lt=4_102_444_800.0)]
_Seq = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]


class FastWaveform(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """:class:`~roommon.wire.payloads.WaveformPayload`, field for field."""

    v: Literal[1]
    kind: SignalKind
    seq: _Seq
    t0: _Epoch
    fs: Annotated[float, msgspec.Meta(gt=0, le=2000)]
    unit: str
    n: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    origin: DataOrigin = DataOrigin.LIVE
    encoding: Literal["json", "i16le-b64", "f32le-b64"] = "json"
    samples: Annotated[list[float], msgspec.Meta(max_length=100_000)] | None = None
    data: Annotated[str, msgspec.Meta(max_length=600_000)] | None = None
    gain: float = 1.0
    offset: float = 0.0


class FastReading(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """:class:`~roommon.wire.payloads.ReadingPayload`, field for field."""

    v: Literal[1]
    kind: SignalKind
    seq: _Seq
    t: _Epoch
    values: dict[str, float | None]
    origin: DataOrigin = DataOrigin.LIVE
    flags: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=40)]], msgspec.Meta(max_length=32)
    ] = msgspec.field(default_factory=list)


_WAVEFORM = msgspec.json.Decoder(FastWaveform)
_READING = msgspec.json.Decoder(FastReading)
#: Refusals: bad JSON, a value the types or bounds refuse (ValidationError is a
#: DecodeError), and a string that is not UTF-8 (msgspec raises that one as it is).
_REFUSED = (msgspec.DecodeError, UnicodeDecodeError)


def waveform(payload: bytes) -> FastWaveform | None:
    """The payload as a waveform chunk if the contract surely accepts it, else ``None``."""
    try:
        return _WAVEFORM.decode(payload)
    except _REFUSED:  # the models decide
        return None


def reading(payload: bytes) -> FastReading | None:
    """The payload as a numeric reading if the contract surely accepts it, else ``None``."""
    try:
        return _READING.decode(payload)
    except _REFUSED:  # the models decide
        return None
