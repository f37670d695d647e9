"""The payload contract: every message on every topic, as pydantic models.

Inbound feed payloads are decoded here into the data model; anything that does
not parse or validate raises :class:`~roommon.core.errors.ProtocolError` naming what
was wrong. Outbound messages are built from these models, and the JSON
Schemas in ``roommon/wire/schemas/`` (documented in docs/topics.md) are generated
from them: ``python -m roommon.wire.payloads`` rewrites them, and a test fails when
a committed schema and its model drift apart.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from roommon.core.errors import ProtocolError
from roommon.core.model import (
    NUMERIC_FIELDS,
    WAVEFORM_KINDS,
    DataOrigin,
    NumericReading,
    SignalKind,
    WaveformChunk,
)
from roommon.core.phases import PhaseName
from roommon.wire import fast_feed
from roommon.wire.fast_feed import FastReading, FastWaveform

#: A feed's declared sample rate may differ from the configured one by this
#: fraction (device crystal tolerance) before the payload is refused.
FS_TOLERANCE = 0.01

Epoch = Annotated[float, Field(gt=946_684_800.0, lt=4_102_444_800.0, description="UTC epoch s")]

if TYPE_CHECKING:
    import numpy as np


def _not_bool(value: object) -> object:
    # A Literal matches by equality, and True == 1: strict mode does not cover it.
    if isinstance(value, bool):
        raise PydanticCustomError("literal_error", "Input should be 1, not a boolean")
    return value


#: The ``v`` field of an inbound payload: the JSON number 1 (``true`` is not 1).
ContractVersion = Annotated[Literal[1], BeforeValidator(_not_bool)]


class _Strict(BaseModel):
    # strict: a number is a JSON number, never a string or a bool ("95" or true as
    # an SpO2 would otherwise be read as 95 % or 1 %); JSON integers still pass as floats.
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, frozen=True, strict=True, defer_build=True
    )


# --------------------------------------------------------------------------- inbound


class WaveformPayload(_Strict):
    """A chunk of a waveform feed (topic ``.../feed/FEED`` of a waveform feed)."""

    v: ContractVersion = Field(description="Payload contract version.")
    kind: SignalKind = Field(description="Must match the feed's configured kind.")
    seq: int = Field(ge=0, lt=2**53, description="Device chunk sequence number.")
    t0: Epoch = Field(description="UTC epoch seconds of the first sample.")
    fs: float = Field(gt=0, le=2000, description="Sample rate in Hz.")
    unit: str = Field(description="Unit of the samples; must match the feed's unit.")
    n: int = Field(ge=1, le=100_000, description="Number of samples in the chunk.")
    origin: DataOrigin = Field(default=DataOrigin.LIVE)
    encoding: Literal["json", "i16le-b64", "f32le-b64"] = Field(
        default="json",
        description="'json': samples in 'samples'; otherwise little-endian int16 or "
        "float32 values, base64 in 'data', scaled by 'gain' then shifted by 'offset'.",
    )
    samples: list[Annotated[float, Field(allow_inf_nan=True)]] | None = Field(
        default=None,
        max_length=100_000,
        description="NaN or Infinity (non-standard JSON) marks a bad sample: it is cut "
        "out of the chunk, the samples around it are kept.",
    )
    data: str | None = Field(default=None, max_length=600_000)
    gain: float = Field(default=1.0, description="Physical value = raw * gain + offset.")
    offset: float = 0.0


class ReadingPayload(_Strict):
    """A numeric reading (NIBP result, SpO2 value...) on a numeric feed's topic."""

    v: ContractVersion
    kind: SignalKind
    seq: int = Field(ge=0, lt=2**53)
    t: Epoch = Field(description="UTC epoch seconds of the measurement.")
    values: dict[str, float | None] = Field(
        description="Field -> value; null means the device reports it unavailable."
    )
    origin: DataOrigin = Field(default=DataOrigin.LIVE)
    flags: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=32, description="Device technical states."
    )


_M = TypeVar("_M", bound=BaseModel)


def _validation_reason(exc: ValidationError) -> ProtocolError:
    errs = exc.errors(include_url=False)
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(payload)"
    if first["type"] in {"json_invalid", "json_type"}:
        return ProtocolError("bad_json", first["msg"])
    if first["type"] == "finite_number":
        return ProtocolError("non_finite", f"{loc}: value is NaN or infinite")
    if first["type"] == "extra_forbidden":
        return ProtocolError("unknown_field", f"{loc}: unknown field")
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return ProtocolError("invalid", f"{loc}: {first['msg']}{got_type(first)}{more}")


def got_type(err: Any) -> str:
    """`` (got a JSON string)`` for a type error: what was sent instead, never coerced."""
    if not str(err["type"]).endswith("_type"):
        return ""
    value = err.get("input")
    shown = json.dumps(value) if isinstance(value, str | int | float | bool) else ""
    shown = f" {shown[:24]}" if shown else ""
    return f" (got the JSON {_json_type(value)}{shown})"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _samples(p: WaveformPayload | FastWaveform) -> np.ndarray[Any, np.dtype[np.float64]]:
    import numpy as np

    if p.encoding == "json":
        if p.samples is None or p.data is not None:
            raise ProtocolError("invalid", "encoding 'json' needs 'samples' and no 'data'")
        arr = np.asarray(p.samples, dtype=np.float64)
    else:
        if p.data is None or p.samples is not None:
            raise ProtocolError("invalid", f"encoding {p.encoding!r} needs 'data' and no 'samples'")
        try:
            raw = base64.b64decode(p.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("invalid", f"data: not base64 ({exc})") from exc
        dtype, name = ("<i2", "int16") if p.encoding == "i16le-b64" else ("<f4", "float32")
        if len(raw) % np.dtype(dtype).itemsize:
            raise ProtocolError(
                "sample_count", f"data: {len(raw)} bytes is not a whole number of {name} samples"
            )
        with np.errstate(over="ignore", invalid="ignore"):  # inf*0 is a bad sample, not a warning
            arr = np.frombuffer(raw, dtype=dtype).astype(np.float64) * p.gain + p.offset
    if len(arr) != p.n:
        raise ProtocolError("sample_count", f"n is {p.n} but {len(arr)} samples were sent")
    # NaN/inf samples (a float32 NaN, a JSON NaN, an overflow of gain) stay in: the
    # room cuts them out as bad samples and keeps the good ones (docs/topics.md).
    return arr


def check_waveform_fits(
    got_kind: SignalKind,
    got_unit: str,
    got_fs: float,
    *,
    kind: SignalKind,
    unit: str,
    fs: float,
    source: str = "payload",
) -> None:
    """ProtocolError unless a waveform's kind, unit and rate are its feed's (payload,
    typed chunk or serial frame alike: the one rule of every ingest path). The rate
    may differ from the configured one by :data:`FS_TOLERANCE`; nothing is resampled
    or converted."""
    if got_kind != kind:
        raise ProtocolError("wrong_kind", f"kind: feed carries {kind}, {source} says {got_kind}")
    if got_unit != unit:
        raise ProtocolError("wrong_unit", f"unit: feed is in {unit!r}, {source} says {got_unit!r}")
    if abs(got_fs - fs) > FS_TOLERANCE * fs:
        raise ProtocolError("wrong_rate", f"fs: feed is {fs:g} Hz, {source} says {got_fs:g} Hz")


def _validated(model: type[_M], payload: bytes) -> _M:
    """``payload`` validated by the contract's ``model``, or the ProtocolError saying why not."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        raise _validation_reason(exc) from exc


def decode_feed(
    payload: bytes,
    *,
    room: str,
    feed: str,
    kind: SignalKind,
    unit: str,
    fs: float,
    max_bytes: int,
) -> WaveformChunk | NumericReading:
    """Decode one feed payload for a configured feed, or raise ProtocolError.

    The fast decoder (:mod:`roommon.wire.fast_feed`) takes what the contract surely
    accepts; whatever it does not take, the contract's models judge (and name the reason).
    """
    if len(payload) > max_bytes:
        raise ProtocolError("oversized", f"{len(payload)} bytes exceeds the {max_bytes} limit")
    if kind in WAVEFORM_KINDS:
        return decode_waveform(payload, room, feed, kind, unit, fs)
    return decode_reading(payload, room, feed, kind)


def decode_waveform(
    payload: bytes, room: str, feed: str, kind: SignalKind, unit: str, fs: float
) -> WaveformChunk:
    """:func:`decode_feed` of a waveform feed's payload (its size already checked):
    positional, for the ingest's hot path."""
    wp: WaveformPayload | FastWaveform | None = fast_feed.waveform(payload)
    if wp is None:
        wp = _validated(WaveformPayload, payload)
    if wp.kind is not kind or wp.unit != unit or abs(wp.fs - fs) > FS_TOLERANCE * fs:
        check_waveform_fits(wp.kind, wp.unit, wp.fs, kind=kind, unit=unit, fs=fs)
    return WaveformChunk(
        room=room,
        feed=feed,
        kind=kind,
        unit=unit,
        fs=fs,
        t0=wp.t0,
        samples=_samples(wp),
        seq=wp.seq,
        origin=wp.origin,
    )


def decode_reading(payload: bytes, room: str, feed: str, kind: SignalKind) -> NumericReading:
    """:func:`decode_feed` of a numeric feed's payload (its size already checked)."""
    rp: ReadingPayload | FastReading | None = fast_feed.reading(payload)
    if rp is None:
        rp = _validated(ReadingPayload, payload)
    if rp.kind != kind:
        raise ProtocolError("wrong_kind", f"kind: feed carries {kind}, payload says {rp.kind}")
    fields = NUMERIC_FIELDS[kind]
    values: dict[str, float] = {}
    for name, value in rp.values.items():
        spec = fields.get(name)
        if spec is None:
            known = ", ".join(fields)
            raise ProtocolError("unknown_field", f"values.{name}: not a {kind} field ({known})")
        _, lo, hi = spec
        if value is not None and not lo <= value <= hi:
            raise ProtocolError(
                "out_of_range", f"values.{name}: {value} outside the physical range {lo}..{hi}"
            )
        values[name] = math.nan if value is None else value
    if not values:
        raise ProtocolError("invalid", "values: no fields")
    return NumericReading(
        room=room,
        feed=feed,
        kind=kind,
        t=rp.t,
        values=values,
        seq=rp.seq,
        origin=rp.origin,
        flags=frozenset(rp.flags),
    )


def encode_waveform(chunk: WaveformChunk) -> bytes:
    """The JSON feed payload of a chunk (used by simulators and tests)."""
    return json.dumps(
        {
            "v": 1,
            "kind": chunk.kind.value,
            "seq": chunk.seq,
            "t0": chunk.t0,
            "fs": chunk.fs,
            "unit": chunk.unit,
            "n": len(chunk.samples),
            "origin": chunk.origin.value,
            "samples": [round(float(x), 5) for x in chunk.samples],
        },
        separators=(",", ":"),
    ).encode()


def encode_reading(reading: NumericReading) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "kind": reading.kind.value,
            "seq": reading.seq,
            "t": reading.t,
            "values": {k: (None if math.isnan(x) else x) for k, x in reading.values.items()},
            "origin": reading.origin.value,
            "flags": sorted(reading.flags),
        },
        separators=(",", ":"),
    ).encode()


# --------------------------------------------------------------------------- outbound


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


Transition = Literal[
    "raised",
    "acknowledged",
    "latched",
    "cleared",
    "reset",
    "escalated",
    "deescalated",
    "priority_changed",
]
AlarmState = Literal["active", "acknowledged", "latched", "cleared"]


class AlarmEventMessage(_Out):
    """One transition of one alarm (topic ``.../ROOM/alarm``, QoS 1)."""

    v: Literal[1] = 1
    event_id: str = Field(description="Unique id of this event; subscribers dedupe on it.")
    seq: int = Field(ge=1, description="Per-room event sequence number, gap-free.")
    site: str
    room: str
    alarm_id: str = Field(description="Stable id of the alarm occurrence.")
    condition: str = Field(description="Stable condition identity ROOM/FEED/CODE.")
    code: str
    check: str
    feed: str
    kind: Literal["physiological", "technical"]
    priority: Literal["low", "medium", "high"]
    transition: Transition
    state: AlarmState
    audible: bool = Field(description="Whether the alarm signal sounds after this event.")
    escalation_level: int = Field(ge=0, description="0: not escalated.")
    value: float | None = None
    limit: float | None = None
    message: str = Field(
        default="",
        description="For a person: the check's words, else the condition's description.",
    )
    origin: Literal["live", "simulated", "replayed"]
    t: float = Field(description="UTC epoch seconds of the transition.")
    time: str = Field(description="Same instant, ISO 8601 UTC.")
    since: float = Field(description="UTC epoch seconds when the alarm was raised.")
    since_time: str | None = Field(default=None, description="Same instant, ISO 8601 UTC.")
    actor: str | None = Field(default=None, description="Client id behind a command.")


class NotifyMessage(_Out):
    """An alarm routed to a recipient (topic ``roommon/v1/SITE/notify/RECIPIENT``, QoS 1)."""

    v: Literal[1] = 1
    recipient: str
    reason: Literal["new", "escalation", "deescalation"]
    level: int = Field(ge=0)
    event: AlarmEventMessage


class AlarmSummary(_Out):
    alarm_id: str
    condition: str
    code: str
    feed: str
    kind: Literal["physiological", "technical"]
    priority: Literal["low", "medium", "high"]
    state: AlarmState
    audible: bool
    since: float
    value: float | None = None
    limit: float | None = None
    message: str = ""
    origin: Literal["live", "simulated", "replayed"]
    escalation_level: int = 0


class FeedStatus(_Out):
    status: Literal["ok", "silent", "never_seen"]
    last_seen: float | None = Field(description="UTC epoch of the last good data.")
    received: int = Field(ge=0, description="Good payloads/frames.")
    rejected: dict[str, int] = Field(description="Rejected payloads by reason.")
    bad_samples: int = Field(ge=0)


class MeasurementValue(_Out):
    value: float | None
    unit: str
    t: float
    feed: str
    label: str | None = Field(
        default=None,
        description="A categorical measurement's value, e.g. ecg_rhythm: vf, vt, asystole, "
        "bradycardia, tachycardia, normal_rate or unknown (value is null then).",
    )


class RoomStateMessage(_Out):
    """Retained snapshot of a room (topic ``.../ROOM/state``)."""

    v: Literal[1] = 1
    site: str
    room: str
    name: str
    t: float
    time: str
    seq: int = Field(ge=0, description="Last alarm event seq of this room.")
    phase: PhaseName = Field(description="Procedure phase; selects the alarm profile.")
    phase_since: float = Field(description="UTC epoch seconds when the phase began.")
    phase_since_time: str | None = Field(default=None, description="Same instant, ISO 8601 UTC.")
    audio_paused_until: float | None
    alarm_paused: dict[str, float] = Field(
        description="Feed (or '*' for the room) -> UTC epoch when the pause ends."
    )
    highest_priority: Literal["none", "low", "medium", "high"]
    alarms: list[AlarmSummary]
    feeds: dict[str, FeedStatus]
    measurements: dict[str, MeasurementValue]


class StatusMessage(_Out):
    """Retained daemon status and heartbeat (topic ``roommon/v1/SITE/status/INSTANCE``).

    Also the MQTT last will (with ``status: "offline"``). A display treats the
    daemon as dead when the status is offline or ``t`` is older than three
    ``heartbeat_s``.
    """

    v: Literal[1] = 1
    site: str
    instance: str
    status: Literal["online", "offline"]
    reason: str = ""
    version: str
    t: float
    time: str
    started: float | None
    heartbeat_s: float
    rooms: list[str]
    outbox_pending: int = Field(ge=0, description="Alarm events not yet delivered.")
    durable: bool = Field(
        default=True,
        description="False while the alarm store cannot be written: alarms are published "
        "from memory and a restart would lose them (alarm store.unwritable).",
    )
    store_error: str = Field(default="", description="Why the store cannot be written.")
    counters: dict[str, int] = Field(default_factory=dict)
    input_lag_s: float = Field(
        default=0.0,
        description="Worst input lag of the last tick, seconds: now minus a feed sample's time "
        "(or minus when it was received). Above daemon.overload_lag_s: daemon.overloaded.",
    )
    inbound_queued: int = Field(default=0, ge=0, description="Feed messages waiting now.")
    inbound_high_water: int = Field(
        default=0,
        ge=0,
        description="Most feed messages ever waiting at once (queue bound: "
        "daemon.inbound_queue_max).",
    )
    shed: dict[str, int] = Field(
        default_factory=dict,
        description="Feed messages shed because the inbound queue was full, by ROOM/FEED.",
    )
    overloaded: list[str] = Field(
        default_factory=list, description="Rooms with the alarm daemon.overloaded now."
    )
    serial: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per serial port: connected, protocol, bytes and frames good/bad by "
        "reason, bytes discarded in resync, reconnects.",
    )


class RoomEventMessage(_Out):
    """A detected room event (topic ``.../ROOM/event``, QoS 1), e.g. cement.injection_ended."""

    v: Literal[1] = 1
    site: str
    room: str
    name: str
    feed: str
    t: float
    time: str
    origin: Literal["live", "simulated", "replayed"]
    data: dict[str, Any] = Field(default_factory=dict)
