"""A WFDB/EDF record as a room's feed chunks, for replay and for the simulator.

Sits between the record readers (:mod:`roommon.records`) and the replay engine
(:mod:`roommon.runtime.replay`): each mapped signal (:mod:`roommon.records.mapping`)
is assigned to a feed of the room, resampled to the feed's configured rate,
cut to the ``--from``/``--to`` window, and sliced into one-second chunks, each
"sent" when its last sample is taken (log time = the chunk's end). The replay
hands them to the daemon's one ingest path
(:class:`~roommon.runtime.ingest.FeedIngest.chunk`: the kind/unit/rate check of
a payload, the same counters, then the room pipeline, which judges every
sample as it does a decoded payload's); the JSON encoding is skipped, as
typed chunks need none. The simulator (``roommon simulate --from``) encodes
the same chunks as the documented payloads and publishes them.

A record's numerics (a monitor's own SpO2 and pulse rate,
:func:`~roommon.records.mapping.map_numerics`) become readings of the room's
numeric feed of their kind, one a second at the record's times, handed over
as the documented reading payloads on the feed's topic, so they take the
daemon's payload path (decoded and judged as a device's) at their time.

Without a config, :func:`default_config` makes one from the record: site
``records``, one room ``rec``, one feed per mapped signal at the signal's own
rate (named after it: ``MLII`` -> ``mlii``), one ``spo2`` feed for SpO2 and
pulse-rate numerics, and the checks of the kinds present (``ecg`` for EKG
leads, ``abp`` for arterial pressure, ``spo2`` for SpO2 numerics, with the
pleth as its waveform when there is one) with their documented defaults.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from roommon.config import Config, parse_config
from roommon.core.model import (
    DataOrigin,
    FloatArray,
    NumericReading,
    SignalKind,
    WaveformChunk,
)
from roommon.records.mapping import MappedNumeric, MappedSignal, resample
from roommon.records.record import Record, RecordError
from roommon.runtime.replay import ChunkMessage
from roommon.transports.mcap_files import RecordedMessage
from roommon.wire.payloads import encode_reading
from roommon.wire.topics import Topics

DEFAULT_SITE: Final = "records"
DEFAULT_ROOM: Final = "rec"
CHUNK_S: Final = 1.0
#: The check run for each feed kind in a config made from a record (documented defaults).
KIND_CHECKS: Final[dict[SignalKind, str]] = {
    SignalKind.ECG: "ecg",
    SignalKind.ABP: "abp",
    SignalKind.SPO2: "spo2",
}


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """One feed of the room and the record samples it gets (feed unit, feed rate, windowed)."""

    feed: str
    signal: str
    kind: SignalKind
    fs: float
    unit: str
    samples: FloatArray


@dataclass(frozen=True, slots=True)
class ReadingPlan:
    """One numeric feed of the room and the record's series for its fields (windowed):
    ``values[field][i]`` at ``t_s[i]`` seconds from the window's start (NaN: none)."""

    feed: str
    kind: SignalKind
    signals: dict[str, str]  # field -> the record's numeric name
    t_s: FloatArray
    values: dict[str, FloatArray]


@dataclass(frozen=True, slots=True)
class RecordPlan:
    """What a replay of a record feeds: which room, which feeds, from when."""

    record: Record
    config: Config
    room: str
    feeds: tuple[FeedPlan, ...]
    start_epoch: float  # UTC time of the window's first sample
    from_s: float  # window, seconds from the record's start
    to_s: float
    left_out: tuple[str, ...]
    readings: tuple[ReadingPlan, ...] = ()

    @property
    def topics(self) -> Topics:
        return Topics(self.config.site.id)


def default_config_data(
    mapped: list[MappedSignal],
    numerics: list[MappedNumeric] | None = None,
    *,
    site: str = DEFAULT_SITE,
    room: str = DEFAULT_ROOM,
) -> dict[str, Any]:
    """The config, as TOML-shaped data, made from a record's mapped signals and numerics."""
    feeds: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    for m in mapped:
        fs = m.signal.fs
        feeds[m.feed] = {"kind": m.kind.value, "fs": float(fs)}
        check = KIND_CHECKS.get(m.kind)
        if check is not None:
            checks[check] = {}
    waveforms = set(feeds)
    for n in numerics or []:
        if n.feed in waveforms:  # a waveform named like the numeric feed: no room for both
            raise RecordError(
                f"signal {n.feed!r} and numeric {n.signal.name!r} both need feed {n.feed!r}: "
                f"give --map '{n.signal.name}=none' or --config"
            )
        feeds.setdefault(n.feed, {"kind": n.kind.value})
    for n in numerics or []:
        check = KIND_CHECKS.get(n.kind)
        if check is not None:
            checks[check] = {}
    return {
        "site": {"id": site, "name": "made from a record by roommon replay"},
        "rooms": {room: {"name": "record replay", "feeds": feeds, "checks": checks}},
    }


def config_toml(data: dict[str, Any]) -> str:
    """``data`` of :func:`default_config_data` as a TOML file (tables of scalars only)."""
    lines = ["# made by roommon replay from a record; edit limits under [rooms.ROOM.checks.*]"]

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(float(v)) if isinstance(v, float) else str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(prefix: str, d: dict[str, Any]) -> None:
        plain = {k: v for k, v in d.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if plain or not nested:
            lines.append("")
            lines.append(f"[{prefix}]")
            lines.extend(f"{k} = {scalar(v)}" for k, v in plain.items())
        for k, v in nested.items():
            table(f"{prefix}.{k}", v)

    for key, value in data.items():
        table(key, value)
    return "\n".join(lines) + "\n"


def default_config(mapped: list[MappedSignal]) -> Config:
    return parse_config(default_config_data(mapped), source="<config made from the record>")


def plan_record(
    record: Record,
    mapped: list[MappedSignal],
    left_out: list[str],
    *,
    config: Config,
    room: str | None,
    config_path: str,
    from_s: float | None,
    to_s: float | None,
    numerics: list[MappedNumeric] | None = None,
) -> RecordPlan:
    """Assign the mapped signals to ``room``'s feeds and cut the window; UsageError if none fit.

    A signal goes to the room's feed of its own name (``mlii``) when that feed has
    its kind, else to the next feed of its kind not yet taken; a signal with no
    feed left is left out (and said so). Numerics go to the room's first numeric
    feed of their kind (all fields of a kind to the same feed), or are left out.
    """
    if room is None:
        if len(config.rooms) != 1:
            raise RecordError(
                f"--room is needed: {config_path} has rooms {', '.join(config.rooms)}"
            )
        room = next(iter(config.rooms))
    room_cfg = config.rooms.get(room)
    if room_cfg is None:
        raise RecordError(f"{config_path}: no room {room!r} (rooms: {', '.join(config.rooms)})")
    start = from_s or 0.0
    end = min(to_s, record.duration_s) if to_s is not None else record.duration_s
    if end <= start:
        raise RecordError(
            f"{record.path}: nothing between --from {start:g} s and --to {end:g} s "
            f"(the record lasts {record.duration_s:.1f} s)"
        )
    taken: set[str] = set()
    plans: list[FeedPlan] = []
    skipped = list(left_out)
    for m in mapped:
        feed = m.feed if m.feed in room_cfg.feeds and m.feed not in taken else None
        if feed is not None and room_cfg.feeds[feed].kind is not m.kind:
            feed = None
        if feed is None:
            feed = next(
                (n for n, f in room_cfg.feeds.items() if f.kind is m.kind and n not in taken), None
            )
        if feed is None:
            skipped.append(m.signal.name)
            continue
        taken.add(feed)
        fc = room_cfg.feeds[feed]
        x = resample(m.samples, fs_in=m.signal.fs, fs_out=fc.fs)
        i0, i1 = math.floor(start * fc.fs + 1e-9), math.floor(end * fc.fs + 1e-9)
        plans.append(
            FeedPlan(
                feed=feed,
                signal=m.signal.name,
                kind=m.kind,
                fs=fc.fs,
                unit=fc.effective_unit,
                samples=np.ascontiguousarray(x[i0:i1]),
            )
        )
    readings = _plan_readings(numerics or [], room_cfg.feeds, start, end, skipped)
    if not plans and not readings:
        kinds = ", ".join(sorted({m.kind.value for m in mapped}))
        raise RecordError(
            f"{config_path}: room {room!r} has no feed of kind {kinds} for the record"
        )
    return RecordPlan(
        record=record,
        config=config.model_copy(update={"rooms": {room: room_cfg}}),
        room=room,
        feeds=tuple(plans),
        start_epoch=record.start_epoch + start,
        from_s=start,
        to_s=end,
        left_out=tuple(skipped),
        readings=readings,
    )


def _plan_readings(
    numerics: list[MappedNumeric],
    feeds: dict[str, Any],
    start: float,
    end: float,
    skipped: list[str],
) -> tuple[ReadingPlan, ...]:
    by_feed: dict[str, list[MappedNumeric]] = {}
    for n in numerics:
        feed = next((name for name, f in feeds.items() if f.kind is n.kind), None)
        if feed is None:
            skipped.append(n.signal.name)
            continue
        by_feed.setdefault(feed, []).append(n)
    plans = []
    for feed, parts in by_feed.items():
        fs = parts[0].signal.fs
        if any(p.signal.fs != fs for p in parts):
            raise RecordError(
                f"numerics {', '.join(p.signal.name for p in parts)} of feed {feed!r} are at "
                "different rates"
            )
        n = min(p.values.shape[0] for p in parts)
        t = np.arange(n) / fs
        keep = (t >= start - 1e-9) & (t < end - 1e-9)
        plans.append(
            ReadingPlan(
                feed=feed,
                kind=parts[0].kind,
                signals={p.field: p.signal.name for p in parts},
                t_s=t[keep] - start,
                values={p.field: np.ascontiguousarray(p.values[:n][keep]) for p in parts},
            )
        )
    return tuple(plans)


def readings(
    plan: RecordPlan, *, origin: DataOrigin, t0: float | None = None, seq0: int = 1
) -> Iterator[NumericReading]:
    """The plan's numerics as readings in time order, one per row (a missing value: NaN,
    sent as ``null``: the monitor had none then, as a device says it)."""
    start = plan.start_epoch if t0 is None else t0

    def feed_readings(rp: ReadingPlan, order: int) -> Iterator[tuple[float, int, NumericReading]]:
        seq = seq0
        fields = list(rp.values)
        for i in range(rp.t_s.shape[0]):
            values = {f: float(rp.values[f][i]) for f in fields}
            t = start + float(rp.t_s[i])
            yield (
                t,
                order,
                NumericReading(
                    room=plan.room,
                    feed=rp.feed,
                    kind=rp.kind,
                    t=t,
                    values=values,
                    seq=seq,
                    origin=origin,
                ),
            )
            seq += 1

    streams = [feed_readings(rp, order) for order, rp in enumerate(plan.readings)]
    for _, _, reading in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        yield reading


def chunks(
    plan: RecordPlan, *, origin: DataOrigin, t0: float | None = None, seq0: int = 1
) -> Iterator[WaveformChunk]:
    """The plan's feeds as one-second chunks in send order (by each chunk's end time)."""
    start = plan.start_epoch if t0 is None else t0

    def feed_chunks(fp: FeedPlan, order: int) -> Iterator[tuple[float, int, WaveformChunk]]:
        n = max(1, round(CHUNK_S * fp.fs))
        for k, i in enumerate(range(0, fp.samples.shape[0], n)):
            part = fp.samples[i : i + n]
            c = WaveformChunk(
                room=plan.room,
                feed=fp.feed,
                kind=fp.kind,
                unit=fp.unit,
                fs=fp.fs,
                t0=start + i / fp.fs,
                samples=part,
                seq=seq0 + k,
                origin=origin,
            )
            yield c.t_end, order, c

    streams = [feed_chunks(fp, order) for order, fp in enumerate(plan.feeds)]
    for _, _, chunk in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        yield chunk


def record_messages(plan: RecordPlan) -> Iterator[ChunkMessage | RecordedMessage]:
    """The plan's chunks with their send times (log time = the chunk's end) and its
    numerics as reading payloads at their times, in time order, marked replayed, for
    :func:`roommon.runtime.replay.replay_messages`."""
    topics = plan.topics
    waves: Iterator[ChunkMessage | RecordedMessage] = (
        ChunkMessage(log_ns=round(c.t_end * 1e9), chunk=c)
        for c in chunks(plan, origin=DataOrigin.REPLAYED)
    )
    values: Iterator[ChunkMessage | RecordedMessage] = (
        RecordedMessage(
            topic=topics.feed(r.room, r.feed),
            log_ns=(ns := round(r.t * 1e9)),
            publish_ns=ns,
            data=encode_reading(r),
        )
        for r in readings(plan, origin=DataOrigin.REPLAYED)
    )
    yield from heapq.merge(waves, values, key=lambda m: m.log_ns)
