"""The driver interface: one device's byte framing in, typed samples out.

Data flow: a transport (:mod:`roommon.transports.serial`) moves raw bytes and
calls :meth:`Driver.feed` with whatever arrived; the driver keeps the bytes of
an unfinished frame, cuts complete frames, rejects bad ones with a reason and
turns good ones into :class:`~roommon.core.model.WaveformChunk` /
:class:`~roommon.core.model.NumericReading` for the room pipeline. Drivers judge
framing and field syntax only; whether a value is alarming is the checks' job.

Every driver obeys the same accounting, so the daemon status can show it and
the tests can prove it::

    bytes_received == bytes_in_good_frames + bytes_discarded + pending_bytes

A rejected frame's bytes count as discarded; so do bytes skipped while hunting
for the start of the next frame after garbage.
"""

from __future__ import annotations

import abc
import re
from collections import Counter
from dataclasses import dataclass, field

from roommon.core.clock import Clock
from roommon.core.errors import ProtocolError
from roommon.core.log import get_logger
from roommon.core.model import DataOrigin, NumericReading, WaveformChunk

log = get_logger(__name__)

DriverSample = WaveformChunk | NumericReading

# A garbage flood can produce thousands of rejects a second; one warning per
# reason per interval is enough for a human, the counters keep the exact tally.
REJECT_LOG_INTERVAL_S = 10.0


@dataclass(slots=True)
class DriverCounters:
    """Exact tallies of one feed's byte stream; shown in the daemon status.

    ``frames_bad`` and ``fields_bad`` map a short stable reason token
    (``bad_checksum``, ``too_long``, ``unknown_field``...) to a count.
    ``fields_bad`` counts fields rejected inside a frame that was otherwise
    good (the frame's other values are kept). ``reconnects`` is kept by the
    transport.
    """

    bytes_received: int = 0
    bytes_in_good_frames: int = 0
    bytes_discarded: int = 0
    frames_good: int = 0
    frames_bad: Counter[str] = field(default_factory=Counter)
    fields_bad: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0

    def snapshot(self) -> dict[str, object]:
        """A plain-data copy for status reports."""
        return {
            "bytes_received": self.bytes_received,
            "bytes_in_good_frames": self.bytes_in_good_frames,
            "bytes_discarded": self.bytes_discarded,
            "frames_good": self.frames_good,
            "frames_bad": dict(self.frames_bad),
            "fields_bad": dict(self.fields_bad),
            "reconnects": self.reconnects,
        }


class _RejectLog:
    """Logs rejects at most once per reason per interval, with the count skipped."""

    __slots__ = ("_clock", "_last", "_suppressed")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def __call__(self, event: str, *, reason: str, detail: str, **context: object) -> None:
        now = self._clock.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < REJECT_LOG_INTERVAL_S:
            self._suppressed[reason] += 1
            return
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        log.warning(event, reason=reason, detail=detail, suppressed=suppressed, **context)


class Driver(abc.ABC):
    """Incremental parser for one device protocol on one feed.

    ``feed`` never raises, whatever the bytes: bad frames are counted and
    logged, and parsing resumes at the next frame start.
    """

    #: Name used in the config file (``protocol = "..."``); see ``DRIVERS``.
    protocol: str = ""

    def __init__(self, *, room: str, feed: str, origin: DataOrigin, clock: Clock) -> None:
        self.room = room
        self.feed_name = feed
        self.origin = origin
        self.clock = clock
        self.counters = DriverCounters()
        self._buf = bytearray()
        self._log_reject = _RejectLog(clock)

    @property
    def pending_bytes(self) -> int:
        """Bytes held for an unfinished frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[DriverSample]:
        """Take newly arrived bytes; return the samples of every frame they complete."""
        self.counters.bytes_received += len(data)
        self._buf += data
        return self._parse()

    def reset(self) -> None:
        """Forget a half-received frame (the link dropped); its bytes count as discarded."""
        if self._buf:
            self._reject("truncated", f"{len(self._buf)} bytes pending when the link dropped")
            self._discard(len(self._buf))
        self._reset_state()

    @abc.abstractmethod
    def _parse(self) -> list[DriverSample]:
        """Consume as much of ``self._buf`` as forms complete frames."""

    def _reset_state(self) -> None:  # noqa: B027  (optional hook, empty on purpose)
        """Drop per-stream state (packet position...) after a link drop."""

    # -- accounting helpers used by the concrete drivers -------------------

    def _discard(self, n: int) -> None:
        del self._buf[:n]
        self.counters.bytes_discarded += n

    def _accept(self, n: int) -> None:
        del self._buf[:n]
        self.counters.bytes_in_good_frames += n
        self.counters.frames_good += 1

    def _reject(self, reason: str, detail: str) -> None:
        self.counters.frames_bad[reason] += 1
        self._log_reject(
            "serial_frame_rejected",
            reason=reason,
            detail=detail,
            room=self.room,
            feed=self.feed_name,
            protocol=self.protocol,
        )

    def _reject_field(self, reason: str, detail: str) -> None:
        self.counters.fields_bad[reason] += 1
        self._log_reject(
            "serial_field_rejected",
            reason=reason,
            detail=detail,
            room=self.room,
            feed=self.feed_name,
            protocol=self.protocol,
        )


class LineDriver(Driver):
    """A driver for protocols of text lines ending in LF (CR LF on the wire).

    Subclasses say what a frame start looks like (``START``) and decode one
    line. Bytes before the last frame start on a line are garbage from before
    a resync (a half line after plugging in, noise) and are discarded without
    costing the frame after them.
    """

    #: Pattern of the beginning of a frame.
    START: re.Pattern[bytes]
    #: Longest legal frame including CR LF; longer runs are cut as ``too_long``.
    MAX_LINE: int = 512

    def _parse(self) -> list[DriverSample]:
        out: list[DriverSample] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                self._bound_pending()
                return out
            line = bytes(self._buf[: end + 1])
            start = self._last_start(line)
            if start is None:
                # Only garbage (or an empty line): no frame began here.
                self._discard(end + 1)
                continue
            if start:
                self._discard(start)
                line = line[start:]
            if len(line) > self.MAX_LINE:
                self._reject("too_long", f"{len(line)} bytes")
                self._discard(len(line))
                continue
            try:
                samples = self._decode_line(line.rstrip(b"\r\n"))
            except ProtocolError as exc:
                self._reject(exc.reason, exc.detail)
                self._discard(len(line))
                continue
            self._accept(len(line))
            out.extend(samples)

    def _last_start(self, data: bytes) -> int | None:
        last: int | None = None
        for m in self.START.finditer(data):
            last = m.start()
        return last

    def _bound_pending(self) -> None:
        """Keep an unterminated run from growing without limit."""
        if len(self._buf) <= self.MAX_LINE:
            return
        start = self._last_start(bytes(self._buf))
        if start is None:
            # Keep a tail that may be the first bytes of a frame start.
            self._discard(len(self._buf) - 32)
            return
        if start:
            self._discard(start)
        if len(self._buf) > self.MAX_LINE:
            self._reject("too_long", f"more than {self.MAX_LINE} bytes without a line end")
            self._discard(len(self._buf))

    @abc.abstractmethod
    def _decode_line(self, line: bytes) -> list[DriverSample]:
        """Decode one line (without CR LF) or raise :class:`ProtocolError`."""
