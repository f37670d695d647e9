"""The one path by which a feed payload reaches its room: route, decode, count, hand over.

Used by the daemon for live MQTT messages and by replay for recorded ones, so
a recording is decoded exactly as the live feed was. Decoding errors are the
payload's (a :class:`~roommon.core.errors.ProtocolError`, counted and given to
the room as a rejection); anything else the room does with the sample runs
under the room's guard.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Literal, NamedTuple

from roommon.core.errors import ProtocolError
from roommon.core.log import get_logger
from roommon.core.model import WAVEFORM_KINDS, DataOrigin, NumericReading, SignalKind, WaveformChunk
from roommon.room.pipeline import RoomPipeline
from roommon.wire.payloads import check_waveform_fits, decode_reading, decode_waveform

log = get_logger(__name__)

Outcome = Literal["accepted", "rejected", "unknown_room", "unknown_feed"]


class _Route(NamedTuple):
    """What decoding one room's feed needs, looked up once (not per message)."""

    pipeline: RoomPipeline
    kind: SignalKind
    unit: str
    fs: float
    waveform: bool


class FeedIngest:
    """Decodes feed payloads for the rooms it serves and hands them to their pipelines."""

    __slots__ = (
        "_counters",
        "_max_bytes",
        "_pipelines",
        "_routes",
        "last_reason",
        "last_sample_t",
    )

    def __init__(
        self,
        *,
        pipelines: Mapping[str, RoomPipeline],
        max_payload_bytes: int,
        counters: Counter[str],
    ) -> None:
        self._pipelines = pipelines
        self._max_bytes = max_payload_bytes
        self._counters = counters
        # (room, feed) -> its route, for the configured feeds of the rooms served: the
        # pipelines and their configs do not change while the ingest lives.
        self._routes: dict[tuple[str, str], _Route] = {}
        #: The rejection reason of the last ``rejected`` outcome.
        self.last_reason = ""
        #: The sample time (a chunk's end, a reading's time) of the last ``accepted`` one.
        self.last_sample_t = 0.0

    def payload(
        self,
        room_id: str,
        feed_name: str,
        payload: bytes,
        *,
        origin: DataOrigin | None = None,
    ) -> Outcome:
        """One payload of ``room_id``'s feed ``feed_name``; ``origin`` overrides the
        payload's own (replay marks everything ``replayed``)."""
        route = self._routes.get((room_id, feed_name))
        if route is None:
            pipeline = self._pipelines.get(room_id)
            if pipeline is None:
                self._counters["unknown_room"] += 1
                log.warning("message_unknown_room", room=room_id, feed=feed_name)
                return "unknown_room"
            feed = pipeline.config.feeds.get(feed_name)
            if feed is None:
                self._counters["unknown_feed"] += 1
                log.warning("feed_unknown", room=room_id, feed=feed_name, bytes=len(payload))
                return "unknown_feed"
            route = self._routes[(room_id, feed_name)] = _Route(
                pipeline, feed.kind, feed.effective_unit, feed.fs, feed.kind in WAVEFORM_KINDS
            )
        pipeline = route.pipeline
        sample: WaveformChunk | NumericReading
        try:
            if len(payload) > self._max_bytes:
                raise ProtocolError(
                    "oversized", f"{len(payload)} bytes exceeds the {self._max_bytes} limit"
                )
            if route.waveform:
                sample = decode_waveform(
                    payload, room_id, feed_name, route.kind, route.unit, route.fs
                )
            else:
                sample = decode_reading(payload, room_id, feed_name, route.kind)
        except ProtocolError as err:
            self._counters["feed_rejected"] += 1
            self.last_reason = err.reason
            pipeline.reject(feed_name, err)
            return "rejected"
        return self._accept(pipeline, sample, origin)

    def chunk(self, chunk: WaveformChunk, *, origin: DataOrigin | None = None) -> Outcome:
        """A typed chunk (a record replay's: no payload to decode) for its room and feed,
        checked against the feed as a payload is, counted and handed over the same way."""
        pipeline = self._pipelines.get(chunk.room)
        if pipeline is None:
            self._counters["unknown_room"] += 1
            log.warning("message_unknown_room", room=chunk.room, feed=chunk.feed)
            return "unknown_room"
        feed = pipeline.config.feeds.get(chunk.feed)
        if feed is None or not feed.kind.is_waveform:
            self._counters["unknown_feed"] += 1
            log.warning("feed_unknown", room=chunk.room, feed=chunk.feed)
            return "unknown_feed"
        try:
            check_waveform_fits(
                chunk.kind,
                chunk.unit,
                chunk.fs,
                kind=feed.kind,
                unit=feed.effective_unit,
                fs=feed.fs,
            )
        except ProtocolError as err:
            self._counters["feed_rejected"] += 1
            self.last_reason = err.reason
            pipeline.reject(chunk.feed, err)
            return "rejected"
        return self._accept(pipeline, chunk, origin)

    def _accept(
        self,
        pipeline: RoomPipeline,
        sample: WaveformChunk | NumericReading,
        origin: DataOrigin | None,
    ) -> Outcome:
        self._counters["feed_accepted"] += 1
        self.last_sample_t = sample.t_end if isinstance(sample, WaveformChunk) else sample.t
        if origin is not None and sample.origin is not origin:
            sample = dataclasses.replace(sample, origin=origin)
        pipeline.ingest(sample)
        return "accepted"
