"""MCAP recording files: writing the feeds (one JSON channel per topic) and reading them back.

Moves bytes only: a payload is written as received and read back as written;
what a topic carries is given by the caller (``describe``). The file format
is documented in docs/recording.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections import Counter
from collections.abc import Callable, Generator
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from mcap.exceptions import McapError
from mcap.reader import SeekingReader
from mcap.records import Channel, Message, Metadata, Schema
from mcap.stream_reader import StreamReader
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import Writer

from roommon import __version__
from roommon.core.clock import iso
from roommon.core.errors import FeedError
from roommon.core.log import get_logger
from roommon.wire import registry
from roommon.wire.topics import PREFIX

log = get_logger(__name__)

#: Seconds between flushes of the MCAP writer: each flush closes a chunk, so a
#: recorder killed without a goodbye loses at most this much of the recording.
FLUSH_S: Final = 2.0
#: Channel of the recorder's own connection events (not an MQTT topic).
RECORDER_TOPIC: Final = "_roommon/recorder"
#: MCAP metadata record names.
META_RECORDING: Final = "roommon.recording"
META_END: Final = "roommon.recording.end"
#: Where no payload time is found, and for sanity: payload times outside this
#: epoch range (2000..2100, as the payload contract) are not taken as publish time.
_EPOCH_RANGE: Final = (946_684_800.0, 4_102_444_800.0)


class RecordingError(FeedError):
    """A recording file cannot be read or written; the message is for a person."""


#: topic -> (schema name or None, channel metadata): what the caller knows of a topic.
ChannelDescriber = Callable[[str], tuple[str | None, dict[str, str]]]


def to_ns(t: float) -> int:
    return round(t * 1e9)


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

    def __init__(
        self, *, path: Path, info: dict[str, str], describe: ChannelDescriber | None = None
    ) -> None:
        self.path = path
        self._describe = describe or (lambda _topic: (None, {}))
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
        name, metadata = self._describe(topic)
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
            metadata=metadata,
        )
        self._channels[topic] = cid
        return cid

    def write(self, topic: str, payload: bytes, *, received: float) -> None:
        """Add one message received at ``received`` (epoch s of the recorder's clock)."""
        assert self._writer is not None, "write outside the recording's context"
        # Log times never go back: a wall-clock step back (NTP) must not reorder
        # messages in a replay, which reads them in log-time order.
        log_ns = max(to_ns(received), self._last_ns)
        self._last_ns = log_ns
        own = payload_time(payload)
        cid = self._channel(topic)
        self._seq[cid] += 1
        self._writer.add_message(
            channel_id=cid,
            log_time=log_ns,
            data=payload,
            publish_time=log_ns if own is None else to_ns(own),
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
    end_ns: int | None = None  # log time of the last message

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
    stats = summary.statistics
    start = stats.message_start_time if stats.message_count else None
    end = stats.message_end_time if stats.message_count else None
    return RecordingFile(p, True, channels, metadata, start, end_ns=end)


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
        end_ns=messages[-1].log_ns if messages else None,
    )
