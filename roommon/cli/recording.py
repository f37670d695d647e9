"""``roommon record`` and ``roommon replay``: device feeds to an MCAP file and back.

Where this sits in the data flow:

* **record** stands beside the daemon as one more MQTT subscriber. It moves
  messages, never meaning: every payload on the site's feed topics (with
  ``--all`` every ``roommon/v1/SITE/#`` topic) goes byte for byte into an MCAP
  file, one channel per topic, stamped with the receive time of a
  :class:`~roommon.core.clock.Clock` (``log_time``) and the payload's own time
  (``publish_time``). Broker outages are survived (reconnect with capped,
  jittered backoff; reported on stderr and as messages on the
  ``_roommon/recorder`` channel); the file is flushed every
  :data:`FLUSH_S` so a killed recorder leaves a file readable up to the last
  flush, and SIGINT/SIGTERM finish it with summary and index.
* **replay** is a transport in front of a real :class:`~roommon.runtime.daemon.Daemon`:
  the file's feed messages, in log-time order, are decoded as the daemon
  decodes MQTT payloads, marked origin ``replayed`` and handed to the room
  pipelines on a :class:`~roommon.core.clock.VirtualClock` that is advanced to each
  message's log time first, so alarm delays, feed-silence detection, recovery
  timers and the daemon's ticker see the time they saw live.

The file format is documented in docs/recording.md. Exit status of both
commands: 0 done, 1 runtime failure (broker refused or unreachable at start),
2 bad usage, configuration, file, or a recording that does not fit the config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import struct
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self, TextIO

import aiomqtt
import structlog
from mcap.exceptions import McapError
from mcap.reader import SeekingReader
from mcap.records import Channel, Message, Metadata, Schema
from mcap.stream_reader import StreamReader
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import Writer

from roommon import __version__
from roommon.alerts.store import burden
from roommon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    RETRYABLE_CONNACK,
    broker_target,
    connack_code,
    load_or_report,
    non_negative,
    positive,
)
from roommon.cli.demo import ConsoleOutput
from roommon.config import Config
from roommon.core.clock import Clock, RealClock, VirtualClock, iso
from roommon.core.errors import FeedError, RoommonError, UsageError
from roommon.core.ids import validate_identifier
from roommon.core.logs import configure
from roommon.core.model import DataOrigin
from roommon.room.pipeline import RoomOutput
from roommon.runtime.daemon import Daemon
from roommon.transports.broker import BrokerEndpoint, parse_broker_url
from roommon.wire import registry
from roommon.wire.payloads import FS_TOLERANCE
from roommon.wire.topics import PREFIX, Topics

log = structlog.get_logger(__name__)


#: Seconds between flushes of the MCAP writer: each flush closes a chunk, so a
#: recorder killed without a goodbye loses at most this much of the recording.
FLUSH_S: Final = 2.0
#: Channel of the recorder's own connection events (not an MQTT topic).
RECORDER_TOPIC: Final = "_roommon/recorder"
#: MCAP metadata record names.
META_RECORDING: Final = "roommon.recording"
META_END: Final = "roommon.recording.end"
#: MQTT 5 session expiry: a reconnect within this keeps the broker-side session,
#: so QoS 1 messages sent while only our connection was down are not lost.
SESSION_EXPIRY_S: Final = 60
#: Where no payload time is found, and for sanity: payload times outside this
#: epoch range (2000..2100, as the payload contract) are not taken as publish time.
_EPOCH_RANGE: Final = (946_684_800.0, 4_102_444_800.0)


class RecordingError(FeedError):
    """A recording file cannot be read or written; the message is for a person."""


class RecorderError(RoommonError):
    """The recorder cannot go on (the broker refused or could not be reached at start)."""


# --------------------------------------------------------------------------- file: writing


def _ns(t: float) -> int:
    return round(t * 1e9)


def topic_schema(topic: str, *, site: str, config: Config) -> str | None:
    """Name of the schema of a topic's payloads (feed kinds from the config)."""
    parsed = Topics(site).parse_room_topic(topic)
    kind = None
    if parsed is not None and len(parsed[1]) == 2 and parsed[1][0] == "feed":
        room = config.rooms.get(parsed[0])
        feed = room.feeds.get(parsed[1][1]) if room is not None else None
        kind = feed.kind if feed is not None else None
    return registry.topic_schema(topic, site=site, feed_kind=kind)


def _feed_metadata(topic: str, *, site: str, config: Config) -> dict[str, str]:
    """Channel metadata of a feed topic: what the config said the feed carries."""
    parsed = Topics(site).parse_room_topic(topic)
    if parsed is None:
        return {}
    room_id, rest = parsed
    if len(rest) != 2 or rest[0] not in ("feed", "command"):
        return {}
    if rest[0] == "command":
        return {"room": room_id, "client": rest[1], "schemas": "command recovery_command"}
    meta = {"room": room_id, "feed": rest[1]}
    room = config.rooms.get(room_id)
    feed = room.feeds.get(rest[1]) if room is not None else None
    if feed is not None:
        meta |= {"kind": feed.kind.value, "unit": feed.effective_unit, "fs": repr(feed.fs)}
    return meta


def payload_time(payload: bytes) -> float | None:
    """The payload's own time: ``t0`` (first sample of a chunk) or ``t``; None if none."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    for key in ("t0", "t"):
        value = doc.get(key)
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and _EPOCH_RANGE[0] < value < _EPOCH_RANGE[1]
        ):
            return float(value)
    return None


class McapRecording:
    """An MCAP file being written: one JSON channel per topic, counts per topic.

    A context manager; leaving it writes the summary and index (``finish``)
    and closes the file. The file is created, never overwritten.
    """

    def __init__(self, *, path: Path, site: str, config: Config, info: dict[str, str]) -> None:
        self.path = path
        self._site = site
        self._config = config
        self._info = info
        self._file: IO[bytes] | None = None
        self._writer: Writer | None = None
        self._channels: dict[str, int] = {}
        self._schemas: dict[str, int] = {}
        self._last_ns = 0
        self._seq: Counter[int] = Counter()
        self.counts: Counter[str] = Counter()

    def __enter__(self) -> Self:
        try:
            self._file = self.path.open("xb")
        except FileExistsError:
            raise RecordingError(f"{self.path} exists; recordings are never overwritten") from None
        except OSError as exc:
            raise RecordingError(f"cannot create {self.path}: {exc.strerror or exc}") from exc
        self._writer = Writer(self._file)
        self._writer.start(profile="", library=f"roommon {__version__}")
        self._writer.add_metadata(META_RECORDING, self._info)
        self._writer.flush()  # type: ignore[no-untyped-call]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, end: dict[str, str] | None = None) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            if end is not None:
                writer.add_metadata(META_END, end)
            writer.finish()  # type: ignore[no-untyped-call]
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Close and delete the file (a run that recorded nothing)."""
        self.close()
        self.path.unlink(missing_ok=True)

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    def _channel(self, topic: str) -> int:
        cid = self._channels.get(topic)
        if cid is not None:
            return cid
        assert self._writer is not None
        schema_id = 0
        name = topic_schema(topic, site=self._site, config=self._config)
        if name is not None:
            schema_id = self._schemas.get(name, 0)
            if not schema_id:
                data = registry.schema_path(name).read_bytes()
                schema_id = self._writer.register_schema(
                    name=name, encoding=SchemaEncoding.JSONSchema, data=data
                )
                self._schemas[name] = schema_id
        cid = self._writer.register_channel(
            topic=topic,
            message_encoding=MessageEncoding.JSON,
            schema_id=schema_id,
            metadata=_feed_metadata(topic, site=self._site, config=self._config),
        )
        self._channels[topic] = cid
        return cid

    def write(self, topic: str, payload: bytes, *, received: float) -> None:
        """Add one message received at ``received`` (epoch s of the recorder's clock)."""
        assert self._writer is not None, "write outside the recording's context"
        # Log times never go back: a wall-clock step back (NTP) must not reorder
        # messages in a replay, which reads them in log-time order.
        log_ns = max(_ns(received), self._last_ns)
        self._last_ns = log_ns
        own = payload_time(payload)
        cid = self._channel(topic)
        self._seq[cid] += 1
        self._writer.add_message(
            channel_id=cid,
            log_time=log_ns,
            data=payload,
            publish_time=log_ns if own is None else _ns(own),
            sequence=self._seq[cid] % 2**32,
        )
        if topic != RECORDER_TOPIC:
            self.counts[topic] += 1

    def note(self, event: str, *, received: float, **data: str | int | float) -> None:
        """A recorder event (connected, lost...) on :data:`RECORDER_TOPIC`."""
        body = {"event": event, "t": received, "time": iso(received), **data}
        self.write(RECORDER_TOPIC, json.dumps(body).encode(), received=received)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- MQTT side


MessageSink = Callable[[str, bytes, float], None]
LinkEvent = Callable[[str, str], None]


class FeedRecorder:
    """One MQTT 5 subscription handing every message to a sink, across broker outages.

    ``async with`` connects and subscribes once; a failure there is
    :class:`RecorderError` (a wrong address should stop the run, not spin).
    Afterwards a lost connection is reported on ``err`` and to ``on_link``,
    and the recorder reconnects with capped, jittered backoff on the clock and
    subscribes again; a CONNACK refusal on a reconnect (credentials revoked)
    keeps it retrying but says so.
    """

    def __init__(
        self,
        *,
        target: BrokerEndpoint,
        filters: list[str],
        sink: MessageSink,
        clock: Clock,
        err: TextIO,
        client_id: str,
        on_link: LinkEvent | None = None,
        qos: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        self._target = target
        self._filters = filters
        self._sink = sink
        self._clock = clock
        self._err = err
        self._client_id = client_id
        self._on_link = on_link or (lambda _event, _detail: None)
        self._qos = qos
        self._rng = rng or random.Random()
        self._client: aiomqtt.Client | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.received = 0
        self.connects = 0
        self.outages = 0
        self.connected = False

    async def __aenter__(self) -> Self:
        try:
            await self._connect()
        except aiomqtt.MqttError as exc:
            code = connack_code(exc)
            what = "refused the connection" if code is not None else "cannot be reached"
            raise RecorderError(f"broker {self._target.url} {what}: {exc}") from exc
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._supervise(), name="roommon-record-mqtt")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._tg is not None:
            await self._tg.__aexit__(exc_type, exc, tb)
        await self._disconnect()

    async def wait_for(self, predicate: Callable[[FeedRecorder], bool]) -> None:
        """Wait until ``predicate(self)`` holds (re-checked on every message and link change)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _changed_now(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _connect(self) -> None:
        client = self._target.client(
            identifier=self._client_id,
            # Resume the broker's session after our own connection drops (the
            # broker queued QoS 1 messages meanwhile); a fresh session at start.
            clean_start=self.connects == 0,
            session_expiry_s=SESSION_EXPIRY_S,
        )
        await client.__aenter__()
        try:
            for f in self._filters:
                await client.subscribe(f, qos=self._qos)
        except aiomqtt.MqttError:
            self._client = client
            await self._disconnect()
            raise
        self._client = client
        self.connects += 1
        self.connected = True
        self._on_link("connected", f"subscribed to {' '.join(self._filters)}")
        await self._changed_now()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        # A half-dead connection may never acknowledge the DISCONNECT; don't wait on it.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(1.0):
                await client.__aexit__(None, None, None)

    async def _supervise(self) -> None:
        while True:
            assert self._client is not None
            try:
                async for m in self._client.messages:
                    payload = m.payload if isinstance(m.payload, bytes) else b""
                    self._sink(str(m.topic), payload, self._clock.now())
                    self.received += 1
                    async with self._changed:
                        self._changed.notify_all()
            except aiomqtt.MqttError as exc:
                detail = str(exc)
            else:
                detail = "message stream ended"
            self.connected = False
            self.outages += 1
            lost_at = self._clock.monotonic()
            print(
                f"roommon record: broker {self._target.url} lost ({detail}); reconnecting",
                file=self._err,
                flush=True,
            )
            self._on_link("lost", detail)
            await self._disconnect()
            await self._changed_now()
            await self._reconnect(lost_at)

    async def _reconnect(self, lost_at: float) -> None:
        t = self._target
        backoff = t.backoff()
        attempt = 0
        while True:
            await backoff.wait(attempt, self._clock, self._rng)
            attempt += 1
            try:
                await self._connect()
            except aiomqtt.MqttError as exc:
                code = connack_code(exc)
                if code is not None and code not in RETRYABLE_CONNACK:
                    print(
                        f"roommon record: broker {t.url} refuses the connection ({exc}); "
                        "still retrying",
                        file=self._err,
                        flush=True,
                    )
                continue
            gap = self._clock.monotonic() - lost_at
            print(
                f"roommon record: broker {t.url} back after {attempt} attempt(s), {gap:.1f} s "
                "without data; recording again",
                file=self._err,
                flush=True,
            )
            return


# --------------------------------------------------------------------------- record


def record_filters(*, site: str, rooms: Sequence[str] | None, everything: bool) -> list[str]:
    """Topic filters of a recording: the feeds, or every topic, of all or some rooms."""
    base = f"{PREFIX}/{site}"
    if rooms is None:
        return [f"{base}/#"] if everything else [f"{base}/+/feed/+"]
    if not everything:
        return [f"{base}/{r}/feed/+" for r in rooms]
    # Notifications and daemon status are per site, not per room: kept whole.
    return [*(f"{base}/{r}/#" for r in rooms), f"{base}/notify/+", f"{base}/status/+"]


def _parse_rooms(text: str | None, config: Config, config_path: str) -> list[str] | None:
    if text is None:
        return None
    rooms = [r.strip() for r in text.split(",") if r.strip()]
    if not rooms:
        raise UsageError("--rooms: give room ids separated by commas")
    unknown = [r for r in rooms if r not in config.rooms]
    if unknown:
        raise UsageError(
            f"--rooms: {', '.join(unknown)} not in {config_path} (rooms: {', '.join(config.rooms)})"
        )
    return rooms


RecorderHook = Callable[[FeedRecorder], None]


def _recording_info(
    *,
    site: str,
    rooms: Sequence[str],
    filters: list[str],
    broker: str,
    config_path: str,
    started: float,
) -> dict[str, str]:
    """The ``roommon.cli.recording`` metadata record: what, where from, and how times are kept."""
    return {
        "site": site,
        "rooms": ",".join(rooms),
        "filters": " ".join(filters),
        "broker": broker,
        "config": os.path.abspath(config_path),
        "started": iso(started),
        "roommon_version": __version__,
        "log_time": "receive time of the recorder's clock, UTC epoch ns",
        "publish_time": "payload t0 (waveform chunks) or t, else the log time",
    }


async def record(
    args: argparse.Namespace,
    *,
    clock: Clock,
    out: TextIO,
    err: TextIO,
    stop: asyncio.Event | None = None,
    on_recorder: RecorderHook | None = None,
) -> int:
    """``roommon record``: the exit status. Ends at ``--seconds`` on the clock or when
    ``stop`` is set (the CLI sets it on SIGINT/SIGTERM); ``on_recorder`` sees the
    connected recorder (for embedding and tests)."""
    try:
        config = load_or_report(args.config, err)
        if config is None:
            return EXIT_USAGE
        rooms = _parse_rooms(args.rooms, config, args.config)
        target = broker_target(config, args.broker)
        site = config.site.id
        filters = record_filters(site=site, rooms=rooms, everything=args.all)
        out_path = Path(args.out)
        info = _recording_info(
            site=site,
            rooms=rooms or sorted(config.rooms),
            filters=filters,
            broker=target.url,
            config_path=args.config,
            started=clock.now(),
        )
        stop = stop or asyncio.Event()
        with McapRecording(path=out_path, site=site, config=config, info=info) as rec:
            return await _record_into(
                rec,
                target=target,
                filters=filters,
                seconds=args.seconds,
                clock=clock,
                out=out,
                err=err,
                stop=stop,
                on_recorder=on_recorder,
            )
    except UsageError as exc:
        print(f"roommon record: error: {exc}", file=err)
        return EXIT_USAGE
    except RecordingError as exc:
        print(f"roommon record: {exc}", file=err)
        return EXIT_USAGE
    except RecorderError as exc:
        print(f"roommon record: {exc}", file=err)
        return EXIT_FAILURE


async def _record_into(
    rec: McapRecording,
    *,
    target: BrokerEndpoint,
    filters: list[str],
    seconds: float | None,
    clock: Clock,
    out: TextIO,
    err: TextIO,
    stop: asyncio.Event,
    on_recorder: RecorderHook | None,
) -> int:
    started = clock.monotonic()

    def link(event: str, detail: str) -> None:
        rec.note(event, received=clock.now(), broker=target.url, detail=detail)

    recorder = FeedRecorder(
        target=target,
        filters=filters,
        sink=lambda topic, payload, t: rec.write(topic, payload, received=t),
        clock=clock,
        err=err,
        client_id=f"roommon-record-{os.getpid()}-{random.randrange(1 << 32):08x}",
        on_link=link,
    )
    try:
        async with recorder:
            print(
                f"roommon record: {' '.join(filters)} from {target.url} -> {rec.path}"
                + (f" for {seconds:g} s" if seconds is not None else "; Ctrl-C to stop"),
                file=out,
                flush=True,
            )
            if on_recorder is not None:
                on_recorder(recorder)
            async with asyncio.TaskGroup() as tg:
                flusher = tg.create_task(_flush_every(rec, clock), name="roommon-record-flush")
                timer = None
                if seconds is not None:
                    timer = tg.create_task(
                        _set_after(stop, clock, seconds), name="roommon-record-timer"
                    )
                await stop.wait()
                flusher.cancel()
                if timer is not None:
                    timer.cancel()
    finally:
        took = clock.monotonic() - started
        if recorder.connects == 0:
            # Never connected, nothing recorded: leave no file that would block the
            # next attempt with the same --out (recordings are never overwritten).
            rec.discard()
        else:
            rec.note("stopped", received=clock.now(), broker=target.url, detail="")
            rec.close(
                end={
                    "ended": iso(clock.now()),
                    "messages": str(rec.messages),
                    "outages": str(recorder.outages),
                    "seconds": f"{took:.3f}",
                }
            )
            _print_record_summary(rec, recorder=recorder, took=took, out=out)
    return EXIT_OK


async def _flush_every(rec: McapRecording, clock: Clock) -> None:
    while True:
        await clock.sleep(FLUSH_S)
        rec.flush()


async def _set_after(event: asyncio.Event, clock: Clock, seconds: float) -> None:
    await clock.sleep(seconds)
    event.set()


def _print_record_summary(
    rec: McapRecording, *, recorder: FeedRecorder, took: float, out: TextIO
) -> None:
    size = rec.path.stat().st_size if rec.path.exists() else 0
    print(
        f"roommon record: {rec.messages} messages on {len(rec.counts)} topics in {took:.1f} s, "
        f"{recorder.outages} broker outage(s); {rec.path} ({size} bytes)",
        file=out,
    )
    for topic, n in sorted(rec.counts.items()):
        print(f"  {n:8d}  {topic}", file=out)
    out.flush()


# --------------------------------------------------------------------------- file: reading


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedMessage:
    topic: str
    log_ns: int
    publish_ns: int
    data: bytes


@dataclasses.dataclass(slots=True)
class RecordingFile:
    """What a recording holds: channel metadata by topic, metadata records, the messages.

    ``complete`` is False for a file whose writer never finished (the recorder
    was killed): its messages up to the last flush are read linearly.
    """

    path: Path
    complete: bool
    channels: dict[str, dict[str, str]]
    metadata: dict[str, dict[str, str]]
    start_ns: int | None
    _messages: list[RecordedMessage] | None = None

    def site(self) -> str | None:
        """The site the file was recorded at (metadata, else the topics)."""
        site = self.metadata.get(META_RECORDING, {}).get("site")
        if site:
            return site
        sites = {t.split("/")[2] for t in self.channels if t.startswith(PREFIX + "/")}
        return sites.pop() if len(sites) == 1 else None

    def messages(
        self, *, start_ns: int | None = None, end_ns: int | None = None
    ) -> Generator[RecordedMessage, None, None]:
        """Messages in log-time order (file order among equal log times), ``[start, end)``."""
        if self._messages is not None:
            yield from (
                m
                for m in self._messages
                if (start_ns is None or m.log_ns >= start_ns)
                and (end_ns is None or m.log_ns < end_ns)
            )
            return
        with self.path.open("rb") as f:
            reader = SeekingReader(f)
            try:
                for _schema, channel, message in reader.iter_messages(
                    log_time_order=True, starting_at=start_ns, ending_before=end_ns
                ):
                    yield RecordedMessage(
                        channel.topic, message.log_time, message.publish_time, message.data
                    )
            except (McapError, ValueError, EOFError, struct.error) as exc:
                raise RecordingError(f"{self.path}: damaged MCAP data ({exc})") from exc


def open_recording(path: str | Path) -> RecordingFile:
    """Read a recording's summary (or, for an unfinished file, all of it)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return _read_indexed(p, f)
    except OSError as exc:
        raise RecordingError(f"cannot read {p}: {exc.strerror or exc}") from exc
    except (McapError, ValueError, EOFError, KeyError, IndexError, struct.error) as exc:
        first = _read_magic(p)
        if not first:
            raise RecordingError(f"{p} is not an MCAP file (no MCAP magic at its start)") from exc
        return _read_linear(p)


def _read_magic(p: Path) -> bool:
    with p.open("rb") as f:
        return f.read(8) == b"\x89MCAP0\r\n"


def _read_indexed(p: Path, f: IO[bytes]) -> RecordingFile:
    reader = SeekingReader(f)
    summary = reader.get_summary()
    if summary is None or summary.statistics is None:
        raise McapError("no summary section")
    channels = {c.topic: dict(c.metadata) for c in summary.channels.values()}
    metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
    start = summary.statistics.message_start_time if summary.statistics.message_count else None
    return RecordingFile(p, True, channels, metadata, start)


def _read_linear(p: Path) -> RecordingFile:
    channels: dict[int, Channel] = {}
    metadata: dict[str, dict[str, str]] = {}
    messages: list[RecordedMessage] = []
    with p.open("rb") as f:
        try:
            for record in StreamReader(f).records:
                if isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message) and record.channel_id in channels:
                    topic = channels[record.channel_id].topic
                    messages.append(
                        RecordedMessage(topic, record.log_time, record.publish_time, record.data)
                    )
                elif isinstance(record, Metadata):
                    metadata[record.name] = dict(record.metadata)
                elif isinstance(record, Schema):
                    pass
        except (McapError, ValueError, EOFError, struct.error) as exc:
            # The unfinished tail (a chunk cut by the kill) is the expected end.
            log.info("recording_truncated", path=str(p), messages=len(messages), at=str(exc))
    messages.sort(key=lambda m: m.log_ns)  # stable: file order among equal times
    start = messages[0].log_ns if messages else None
    return RecordingFile(
        p,
        False,
        {c.topic: dict(c.metadata) for c in channels.values()},
        metadata,
        start,
        messages,
    )


# --------------------------------------------------------------------------- replay


@dataclasses.dataclass(slots=True)
class ReplayStats:
    messages: int = 0
    feed_messages: int = 0
    accepted: int = 0
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)
    unknown: Counter[str] = dataclasses.field(default_factory=Counter)
    recorder_events: int = 0
    virtual_s: float = 0.0


def _check_fit(rec: RecordingFile, config: Config, config_path: str) -> tuple[str, list[str]]:
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


def _replay_config(
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


async def replay_messages(
    *,
    daemon: Daemon,
    clock: VirtualClock,
    messages: Iterable[RecordedMessage],
    site: str,
    speed: float,
    pacer: Clock,
    console: ConsoleOutput | None = None,
) -> ReplayStats:
    """Advance ``clock`` to each message's log time, then ingest it (feeds only).

    ``clock`` must start at the first message's log time. At ``speed`` > 0 the
    virtual clock moves in steps of at most one second, each waited for on
    ``pacer`` so the replay runs ``speed`` times real time.
    """
    stats = ReplayStats()
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
        if msg.topic == RECORDER_TOPIC:
            stats.recorder_events += 1
            if console is not None:
                console.line(_recorder_line(msg.data))
            continue
        _ingest(daemon, topics, msg, stats)
    await clock.advance(0)  # let what the last message set off run
    stats.virtual_s = clock.monotonic()
    return stats


def _recorder_line(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        return "RECORDER (unreadable event)"
    if not isinstance(doc, dict):
        return "RECORDER (unreadable event)"
    detail = f" {doc['detail']}" if doc.get("detail") else ""
    return f"RECORDER {doc.get('event', '?')} {doc.get('broker', '')}{detail}".rstrip()


async def replay(
    args: argparse.Namespace,
    *,
    out: TextIO,
    err: TextIO,
    outputs: Sequence[RoomOutput] = (),
    pacer: Clock | None = None,
) -> int:
    """``roommon replay``: the exit status. ``outputs`` also receive everything the
    replay daemon publishes (for embedding and tests)."""
    try:
        config = load_or_report(args.config, err)
        if config is None:
            return EXIT_USAGE
        try:
            rec = open_recording(args.file)
        except RecordingError as exc:
            raise UsageError(str(exc)) from exc
        site, rooms = _check_fit(rec, config, args.config)
        run_config = _replay_config(config, rooms=rooms, broker=args.broker, as_site=args.as_site)
        if args.from_s is not None and args.to_s is not None and args.to_s <= args.from_s:
            raise UsageError("--to must be after --from")
        if rec.start_ns is None:
            raise UsageError(f"{rec.path}: the recording holds no messages")
        start_ns = rec.start_ns + (_ns(args.from_s) if args.from_s is not None else 0)
        end_ns = rec.start_ns + _ns(args.to_s) if args.to_s is not None else None
        with contextlib.closing(rec.messages(start_ns=start_ns, end_ns=end_ns)) as window:
            first = next(window, None)
        if first is None:
            raise UsageError(f"{rec.path}: no messages between --from and --to")
        with contextlib.ExitStack() as stack:
            if args.state_dir is not None:
                state_dir = _make_dir(args.state_dir)
            else:
                state_dir = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="roommon-replay-"))
                )
            return await _replay_run(
                rec,
                config=run_config,
                site=site,
                start_ns=first.log_ns,
                end_ns=end_ns,
                state_dir=state_dir,
                speed=args.speed,
                broker=args.broker,
                out=out,
                outputs=outputs,
                pacer=pacer or RealClock(),
            )
    except UsageError as exc:
        print(f"roommon replay: error: {exc}", file=err)
        return EXIT_USAGE
    except RecordingError as exc:
        print(f"roommon replay: {exc}", file=err)
        return EXIT_USAGE


def _make_dir(path: str) -> Path:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


async def _replay_run(
    rec: RecordingFile,
    *,
    config: Config,
    site: str,
    start_ns: int,
    end_ns: int | None,
    state_dir: Path,
    speed: float,
    broker: str | None,
    out: TextIO,
    outputs: Sequence[RoomOutput],
    pacer: Clock,
) -> int:
    clock = VirtualClock(start=start_ns / 1e9)
    console = ConsoleOutput(clock, out)
    pace = "as fast as possible" if speed == 0 else f"{speed:g}x real time"
    state = "complete" if rec.complete else "unfinished (recorder killed?): read up to its cut"
    print(
        f"roommon replay: {rec.path} ({state}) from {iso(start_ns / 1e9)}, rooms "
        f"{', '.join(config.rooms)}, {pace}"
        + (f", publishing to {broker} as site {config.site.id}" if broker else "")
        + "; data marked replayed. Not a medical device.",
        file=out,
        flush=True,
    )
    wall = pacer.monotonic()
    async with Daemon(
        config=config,
        subscribe_feeds=False,
        clock=clock,
        use_broker=broker is not None,
        extra_outputs=[console, *outputs],
        state_path=state_dir / "roommon.sqlite3",
    ) as daemon:
        stats = await replay_messages(
            daemon=daemon,
            clock=clock,
            messages=rec.messages(start_ns=start_ns, end_ns=end_ns),
            site=site,
            speed=speed,
            pacer=pacer,
            console=console,
        )
        events = daemon.store.events()
        feeds = {
            f"{room}/{name}": (f.received, dict(f.rejected))
            for room, p in daemon.pipelines.items()
            for name, f in p.feeds.items()
        }
    took = pacer.monotonic() - wall
    raised = Counter(e.code for e in events if e.transition == "raised")
    ratio = f"{stats.virtual_s / took:.0f}x" if took > 0 else "-"
    print(
        f"\nroommon replay: {stats.messages} messages ({stats.feed_messages} feed payloads: "
        f"{stats.accepted} accepted, {sum(stats.rejected.values())} rejected"
        + (f" {dict(stats.rejected)}" if stats.rejected else "")
        + (f", {sum(stats.unknown.values())} for unconfigured feeds" if stats.unknown else "")
        + f"), {stats.virtual_s:.1f} recorded s in {took:.2f} s ({ratio})",
        file=out,
    )
    for feed, (received, rejected) in sorted(feeds.items()):
        bad = f", rejected {rejected}" if rejected else ""
        print(f"  feed {feed}: {received} payloads{bad}", file=out)
    print(
        "Alarms raised: "
        + (", ".join(f"{code} x{n}" for code, n in sorted(raised.items())) or "none"),
        file=out,
    )
    print("Alarm burden of this replay:", file=out)
    for b in burden(events, hours=max(stats.virtual_s, 60.0) / 3600):
        med = f"{b.median_ack_s:.0f} s" if b.median_ack_s is not None else "-"
        print(
            f"  {b.room}: {b.alarms} alarms ({b.per_hour:.0f}/h), acknowledged "
            f"{b.share_acknowledged:.0%}, median time to acknowledge {med}, "
            f"self-cleared within 10 s {b.share_self_cleared:.0%}",
            file=out,
        )
    out.flush()
    return EXIT_OK


# --------------------------------------------------------------------------- CLI


RECORD_DESCRIPTION: Final = (
    "Record a site's device feeds (with --all: every roommon topic of the site) from the "
    "MQTT broker into an MCAP file, one channel per topic, until --seconds or SIGINT/SIGTERM. "
    "Exit 0 done, 1 broker refused or unreachable at start, 2 bad usage, config or file."
)
REPLAY_DESCRIPTION: Final = (
    "Replay a recording's feeds through a real daemon on a virtual clock starting at the "
    "recording's time: alarms, room and timer events are printed as they happen, then the "
    "alarm burden. Data is marked replayed (never routed to recipients unless "
    "escalation.route_simulated). Exit 0 done, 2 bad usage, config or file, or a recording "
    "that does not fit the config."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``record`` and ``replay`` on the main CLI's subparsers; handlers in ``func``."""
    p = subparsers.add_parser(
        "record",
        help="record device feeds from the broker to an MCAP file",
        description=RECORD_DESCRIPTION,
    )
    p.add_argument("--config", "-c", required=True, help="roommon config file (TOML)")
    p.add_argument("--out", "-o", required=True, help="MCAP file to create (never overwritten)")
    p.add_argument("--broker", help="mqtt[s]://HOST:PORT (default: the config's broker)")
    p.add_argument("--seconds", type=positive, help="stop after this long (default: a signal)")
    p.add_argument("--rooms", help="comma-separated room ids (default: every room)")
    p.add_argument(
        "--all",
        action="store_true",
        help="also alarms, state, events, timers, commands, notifications, status",
    )
    p.set_defaults(func=run_record)

    p = subparsers.add_parser(
        "replay",
        help="replay a recording through a daemon on a virtual clock",
        description=REPLAY_DESCRIPTION,
    )
    p.add_argument("file", help="MCAP recording")
    p.add_argument("--config", "-c", required=True, help="roommon config file (TOML)")
    p.add_argument(
        "--speed",
        type=non_negative,
        default=0.0,
        help="N x real time (default 0: as fast as possible)",
    )
    p.add_argument("--broker", help="also publish the daemon's outputs to mqtt://HOST:PORT")
    p.add_argument(
        "--as-site",
        help="site id to publish under with --broker (default SITE-replay, so "
        "live displays and the live daemon's retained topics are not touched)",
    )
    p.add_argument(
        "--from",
        dest="from_s",
        type=non_negative,
        metavar="S",
        help="start S seconds into the recording",
    )
    p.add_argument(
        "--to", dest="to_s", type=positive, metavar="S", help="stop S seconds into the recording"
    )
    p.add_argument("--state-dir", help="keep the replay's alarm log here (default: a temp dir)")
    p.set_defaults(func=run_replay)


def _run_with_stop(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return asyncio.run(runner())


def run_record(args: argparse.Namespace) -> int:
    """Handler of ``roommon record``; returns the process exit status."""
    clock = RealClock()
    configure(clock=clock, level="warning")
    return _run_with_stop(
        lambda stop: record(args, clock=clock, out=sys.stdout, err=sys.stderr, stop=stop)
    )


def run_replay(args: argparse.Namespace) -> int:
    """Handler of ``roommon replay``; returns the process exit status."""
    configure(clock=RealClock(), level="error", json=False)
    return asyncio.run(replay(args, out=sys.stdout, err=sys.stderr))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m roommon.cli.recording")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
