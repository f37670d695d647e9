"""MLLP (HL7's Minimal Lower Layer Protocol) client: one TCP (optionally TLS) connection.

A transport only moves blocks: ``<VT> message <FS><CR>`` out, the same framing
in. It knows nothing of what the blocks mean (the HL7 output reads the
acknowledgements). :class:`MllpConnection` is an async context manager for
one connection; every wait (connect, write, reply) is bounded on the
injected clock, and every failure is mapped here, once, to
:class:`MllpError` (connection: retry later) or
:class:`~roommon.core.errors.ProtocolError` (a peer that does not speak MLLP).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

from roommon.core.clock import Clock
from roommon.core.errors import FeedError, ProtocolError

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
#: A reply larger than this is not an acknowledgement; the connection is dropped.
MAX_BLOCK = 1024 * 1024

T = TypeVar("T")


class MllpError(FeedError):
    """The connection to a receiver failed (refused, reset, timed out); retry later."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def frame(payload: bytes) -> bytes:
    return START_BLOCK + payload + END_BLOCK


async def within(clock: Clock, seconds: float, work: Awaitable[T], *, what: str) -> T:
    """``await work``, or raise MllpError("timeout") after ``seconds`` on ``clock``.

    Both helper tasks are finished (done or cancelled and awaited) before this
    returns, also when the caller is cancelled.
    """
    task = asyncio.ensure_future(work)
    dog = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({task, dog}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        dog.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, dog, return_exceptions=True)
    if task.cancelled():
        raise MllpError("timeout", f"no {what} within {seconds} s")
    return task.result()


@dataclass(frozen=True, slots=True, kw_only=True)
class MllpEndpoint:
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None


class MllpConnection:
    """One open connection to a receiver; ``send`` a block, ``receive`` the next one."""

    def __init__(self, endpoint: MllpEndpoint, *, clock: Clock, timeout_s: float) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._timeout = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Self:
        ep = self._endpoint
        try:
            self._reader, self._writer = await within(
                self._clock,
                self._timeout,
                asyncio.open_connection(
                    ep.host,
                    ep.port,
                    ssl=ep.tls,
                    server_hostname=ep.server_hostname if ep.tls else None,
                    limit=MAX_BLOCK,
                ),
                what="connection",
            )
        except OSError as exc:  # refused, unreachable, TLS handshake failure
            raise MllpError("connect_failed", f"{ep.host}:{ep.port}: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, MllpError):  # the peer is gone either way
            await within(self._clock, self._timeout, writer.wait_closed(), what="close")

    async def send(self, payload: bytes) -> None:
        if self._writer is None:
            raise MllpError("closed", "connection is not open")
        try:
            self._writer.write(frame(payload))
            await within(self._clock, self._timeout, self._writer.drain(), what="write")
        except (OSError, RuntimeError) as exc:
            raise MllpError("write_failed", str(exc)) from exc

    async def receive(self, timeout_s: float | None = None) -> bytes:
        """The next block's content; MllpError on timeout or a closed connection."""
        if self._reader is None:
            raise MllpError("closed", "connection is not open")
        wait = self._timeout if timeout_s is None else timeout_s
        try:
            block = await within(self._clock, wait, self._reader.readuntil(END_BLOCK), what="reply")
        except asyncio.IncompleteReadError as exc:
            raise MllpError("closed_by_peer", "connection closed before a whole block") from exc
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("oversized", f"reply block over {MAX_BLOCK} bytes") from exc
        except OSError as exc:
            raise MllpError("read_failed", str(exc)) from exc
        start = block.find(START_BLOCK)
        if start < 0:
            raise ProtocolError("bad_frame", "reply block has no <VT> start byte")
        return block[start + 1 : -len(END_BLOCK)]
