"""Serial transport: a port's bytes into a driver, with unplug survived.

Data flow: serial port (RS-232, USB adapter, pty) -> :class:`SerialFeed`
(bytes only) -> a :class:`~roommon.drivers.base.Driver` (frames -> samples) ->
the sink (the room pipeline's queue or callback). The transport knows nothing
of the bytes' meaning.

When the port errors or disappears (cable pulled, USB adapter gone) the feed
reports ``disconnected`` at once through ``on_state``, drops the half-received
frame, and keeps reopening the port by path with capped, jittered exponential
backoff, waiting on the clock. When the device returns (often under the same
``/dev/serial/by-id/...`` name) it reports ``connected`` and samples flow
again, without anyone restarting anything. Deciding that a silent feed is a
technical alarm is the room pipeline's job; it has the feed's stale time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Literal, Protocol, Self, TypeVar

import serial
import serial_asyncio_fast

from roommon.core.clock import Clock
from roommon.core.errors import FeedError
from roommon.core.log import get_logger
from roommon.transports.backoff import Backoff

log = get_logger(__name__)

Parity = Literal["N", "E", "O", "M", "S"]
S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class _Counters(Protocol):
    reconnects: int


class FrameDecoder(Protocol[S_co]):
    """What the transport needs of a driver: bytes in, samples out, reset on reconnect.

    Defined here, not imported from the drivers, because a transport moves
    bytes and must not know any device's framing.
    """

    @property
    def protocol(self) -> str: ...

    @property
    def counters(self) -> _Counters: ...

    def feed(self, data: bytes) -> Iterable[S_co]: ...

    def reset(self) -> None: ...


SampleSink = Callable[[S], None] | asyncio.Queue[S]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkState:
    """A change of a serial link's state, as given to ``on_state``."""

    port: str
    connected: bool
    reason: str  # why it disconnected; "" when connected
    t: float  # clock.now() of the change

    @property
    def label(self) -> str:
        return "connected" if self.connected else f"disconnected({self.reason})"


class SerialFeed(Generic[S]):
    """Reads one serial port into one driver for as long as the context is open.

    ``async with SerialFeed(...) as feed:`` starts the read loop as a named task
    in a TaskGroup; leaving the block stops it and closes the port.
    ``feed.counters`` is the driver's counters, with ``reconnects`` kept here.
    """

    def __init__(
        self,
        *,
        port: str,
        driver: FrameDecoder[S],
        sink: SampleSink[S],
        clock: Clock,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: Parity = "N",
        stopbits: float = 1,
        backoff: Backoff | None = None,
        on_state: Callable[[LinkState], None] | None = None,
        rng: random.Random | None = None,
        read_size: int = 4096,
    ) -> None:
        if bytesize not in (5, 6, 7, 8):
            raise ValueError(f"bytesize must be 5-8, got {bytesize}")
        if stopbits not in (1, 1.5, 2):
            raise ValueError(f"stopbits must be 1, 1.5 or 2, got {stopbits}")
        if baudrate <= 0:
            raise ValueError(f"baudrate must be positive, got {baudrate}")
        self.port = port
        self.driver = driver
        self._sink = sink
        self._clock = clock
        self._baudrate = baudrate
        self._bytesize = bytesize
        self._parity = parity
        self._stopbits = stopbits
        self.backoff = backoff or Backoff()
        self._on_state = on_state
        self._rng = rng or random.Random()
        self._read_size = read_size
        self._connected: bool | None = None
        self._ever_connected = False
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def counters(self) -> _Counters:
        return self.driver.counters

    @property
    def connected(self) -> bool:
        return bool(self._connected)

    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._run(), name=f"serial-read:{self.port}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tg is None or self._task is None:
            raise RuntimeError("SerialFeed exited without being entered")
        self._task.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)

    # -- the supervisor loop ------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                reader, writer = await self._open()
            except FeedError as exc:
                self._set_state(connected=False, reason=str(exc))
                await self._clock.sleep(self.backoff.delay(attempt, self._rng))
                attempt += 1
                continue
            attempt = 0
            if self._ever_connected:
                self.counters.reconnects += 1
            self._ever_connected = True
            self._set_state(connected=True, reason="")
            try:
                await self._pump(reader)
            except FeedError as exc:
                # The link is gone: say so first, then tidy up.
                self._set_state(connected=False, reason=str(exc))
            finally:
                self.driver.reset()
                await self._close(writer)
            await self._clock.sleep(self.backoff.delay(0, self._rng))

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await serial_asyncio_fast.open_serial_connection(
                url=self.port,
                baudrate=self._baudrate,
                bytesize=self._bytesize,
                parity=self._parity,
                stopbits=self._stopbits,
            )
        except (OSError, serial.SerialException, ValueError) as exc:
            raise FeedError(f"cannot open {self.port}: {exc}") from exc

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                data = await reader.read(self._read_size)
            except (OSError, serial.SerialException) as exc:
                raise FeedError(f"read failed on {self.port}: {exc}") from exc
            if not data:
                raise FeedError(f"{self.port} closed")
            for sample in self.driver.feed(data):
                if isinstance(self._sink, asyncio.Queue):
                    await self._sink.put(sample)
                else:
                    self._sink(sample)

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        # The close error, if any, is the one already reported as the disconnect.
        with contextlib.suppress(OSError, serial.SerialException):
            await writer.wait_closed()

    def _set_state(self, *, connected: bool, reason: str) -> None:
        if self._connected is connected:
            return
        self._connected = connected
        state = LinkState(port=self.port, connected=connected, reason=reason, t=self._clock.now())
        if connected:
            log.info(
                "serial_connected",
                port=self.port,
                protocol=self.driver.protocol,
                reconnects=self.counters.reconnects,
            )
        else:
            log.warning(
                "serial_disconnected", port=self.port, protocol=self.driver.protocol, reason=reason
            )
        if self._on_state is not None:
            self._on_state(state)
