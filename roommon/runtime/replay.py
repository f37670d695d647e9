"""Replay: a recording's feed messages through a real daemon on a virtual clock.

The file's feed messages, in log-time order, go through the daemon's own
ingest path (:class:`~roommon.runtime.ingest.FeedIngest`, exactly as live MQTT
payloads) marked origin ``replayed``, on a
:class:`~roommon.core.clock.VirtualClock` advanced to each message's log time
first, so alarm delays, feed-silence detection, recovery timers and the
daemon's ticker see the time they saw live.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from roommon.config import Config
from roommon.core.clock import Clock, VirtualClock
from roommon.core.errors import UsageError
from roommon.core.ids import validate_identifier
from roommon.core.log import get_logger
from roommon.core.model import DataOrigin, WaveformChunk
from roommon.runtime.daemon import Daemon
from roommon.transports.broker import parse_broker_url
from roommon.transports.mcap_files import RECORDER_TOPIC, RecordedMessage, RecordingFile
from roommon.wire.payloads import FS_TOLERANCE
from roommon.wire.topics import Topics

log = get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkMessage:
    """A typed feed chunk and the time it was sent (a WFDB/EDF record's, which has no
    payload bytes): ingested by :meth:`FeedIngest.chunk`, checked and counted as payloads are."""

    log_ns: int
    chunk: WaveformChunk


@dataclasses.dataclass(slots=True)
class ReplayStats:
    messages: int = 0
    feed_messages: int = 0
    accepted: int = 0
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)
    unknown: Counter[str] = dataclasses.field(default_factory=Counter)
    recorder_events: int = 0
    virtual_s: float = 0.0


def check_fit(rec: RecordingFile, config: Config, config_path: str) -> tuple[str, list[str]]:
    """The recording's site and rooms to replay; UsageError when it does not fit the config.

    A recorded feed whose kind or rate differs from the configured one would be
    rejected payload by payload; that is a config mismatch, said once.
    """
    site = rec.site()
    if site is None:
        raise UsageError(f"{rec.path}: no roommon feed topics (roommon/v1/SITE/ROOM/feed/FEED)")
    if site != config.site.id:
        raise UsageError(
            f"{rec.path} was recorded at site {site!r}; {config_path} is site {config.site.id!r}"
        )
    topics = Topics(site)
    rooms: set[str] = set()
    missing: list[str] = []
    for topic, meta in sorted(rec.channels.items()):
        parsed = topics.parse_room_topic(topic)
        if parsed is None or len(parsed[1]) != 2 or parsed[1][0] != "feed":
            continue
        room_id, feed_id = parsed[0], parsed[1][1]
        room = config.rooms.get(room_id)
        feed = room.feeds.get(feed_id) if room is not None else None
        if feed is None:
            missing.append(f"{room_id}/{feed_id}")
            continue
        rooms.add(room_id)
        kind, fs = meta.get("kind"), meta.get("fs")
        if kind is not None and kind != feed.kind.value:
            raise UsageError(
                f"{rec.path}: feed {room_id}/{feed_id} was recorded as {kind}; "
                f"{config_path} has it as {feed.kind.value}"
            )
        if fs is not None and feed.kind.is_waveform:
            recorded_fs = float(fs)
            if abs(recorded_fs - feed.fs) > FS_TOLERANCE * feed.fs:
                raise UsageError(
                    f"{rec.path}: feed {room_id}/{feed_id} was recorded at {recorded_fs:g} Hz; "
                    f"{config_path} has {feed.fs:g} Hz"
                )
    if not rooms:
        recorded = ", ".join(missing) or "none"
        raise UsageError(
            f"{rec.path}: none of its feeds ({recorded}) is configured in {config_path}"
        )
    for name in missing:
        log.warning("replay_feed_not_configured", feed=name)
    return site, sorted(rooms)


def replay_config(
    config: Config, *, rooms: list[str], broker: str | None, as_site: str | None
) -> Config:
    """The config the replay daemon runs: the recorded rooms only (a room without data
    would raise never-seen alarms of its own); with a broker, its own site namespace."""
    update: dict[str, Any] = {"rooms": {r: config.rooms[r] for r in rooms}}
    if broker is not None:
        host, port, tls = parse_broker_url(broker)
        update["broker"] = config.broker.model_copy(update={"host": host, "port": port, "tls": tls})
        site = as_site or f"{config.site.id}-replay"
        try:
            validate_identifier(site)
        except ValueError as exc:
            raise UsageError(f"--as-site {site!r}: {exc}") from None
        update["site"] = config.site.model_copy(update={"id": site})
    return config.model_copy(update=update)


def _ingest(daemon: Daemon, topics: Topics, msg: RecordedMessage, stats: ReplayStats) -> None:
    """One recorded feed payload through the daemon's own ingest path, marked replayed."""
    parsed = topics.parse_room_topic(msg.topic)
    if parsed is None or len(parsed[1]) != 2 or parsed[1][0] != "feed":
        return
    stats.feed_messages += 1
    room_id, feed_name = parsed[0], parsed[1][1]
    outcome = daemon.ingest.payload(room_id, feed_name, msg.data, origin=DataOrigin.REPLAYED)
    if outcome == "accepted":
        stats.accepted += 1
    elif outcome == "rejected":
        stats.rejected[daemon.ingest.last_reason] += 1
    else:
        stats.unknown[f"{room_id}/{feed_name}"] += 1


def _ingest_chunk(daemon: Daemon, msg: ChunkMessage, stats: ReplayStats) -> None:
    stats.feed_messages += 1
    outcome = daemon.ingest.chunk(msg.chunk, origin=DataOrigin.REPLAYED)
    if outcome == "accepted":
        stats.accepted += 1
    elif outcome == "rejected":
        stats.rejected[daemon.ingest.last_reason] += 1
    else:
        stats.unknown[f"{msg.chunk.room}/{msg.chunk.feed}"] += 1


async def replay_messages(
    *,
    daemon: Daemon,
    clock: VirtualClock,
    messages: Iterable[RecordedMessage | ChunkMessage],
    site: str,
    speed: float,
    pacer: Clock,
    on_recorder_event: Callable[[str], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    stats: ReplayStats | None = None,
) -> ReplayStats:
    """Advance ``clock`` to each message's log time, then ingest it (feeds only).

    ``clock`` must start at the first message's log time. At ``speed`` > 0 the
    virtual clock moves in steps of at most one second, each waited for on
    ``pacer`` so the replay runs ``speed`` times real time. ``on_progress`` is told
    the recorded seconds reached after each message. ``stats`` (given by a caller
    that may cancel the replay) are kept up to date message by message.
    """
    stats = stats if stats is not None else ReplayStats()
    topics = Topics(site)
    t0_ns: int | None = None
    wall0 = pacer.monotonic()
    for msg in messages:
        if t0_ns is None:
            t0_ns = msg.log_ns
        target = (msg.log_ns - t0_ns) / 1e9
        if speed > 0:
            while clock.monotonic() < target:
                step = min(1.0, target - clock.monotonic())
                await pacer.sleep_until(wall0 + (clock.monotonic() + step) / speed)
                await clock.advance(step)
        elif target > clock.monotonic():
            await clock.advance(target - clock.monotonic())
        stats.messages += 1
        stats.virtual_s = clock.monotonic()
        if isinstance(msg, ChunkMessage):
            _ingest_chunk(daemon, msg, stats)
            if on_progress is not None:
                on_progress(target)
            continue
        if msg.topic == RECORDER_TOPIC:
            stats.recorder_events += 1
            if on_recorder_event is not None:
                on_recorder_event(recorder_line(msg.data))
            continue
        _ingest(daemon, topics, msg, stats)
        if on_progress is not None:
            on_progress(target)
    await clock.advance(0)  # let what the last message set off run
    stats.virtual_s = clock.monotonic()
    return stats


def recorder_line(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        return "RECORDER (unreadable event)"
    if not isinstance(doc, dict):
        return "RECORDER (unreadable event)"
    detail = f" {doc['detail']}" if doc.get("detail") else ""
    return f"RECORDER {doc.get('event', '?')} {doc.get('broker', '')}{detail}".rstrip()
