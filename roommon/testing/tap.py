"""A loopback relay in front of a real broker that can corrupt what one client receives.

Mosquitto never sends a malformed packet, so to see what a client does with
one, :class:`BrokerTap` relays every connection to the broker byte for byte
and, on :meth:`BrokerTap.inject`, writes given bytes into the stream towards
the clients whose CONNECT carried a given client id (as if the broker had
sent them). Everything else is the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from roommon.testing.broker import LOOPBACK


class BrokerTap:
    """``async with BrokerTap(broker_port) as tap``: clients connect to ``tap.port``."""

    def __init__(self, broker_port: int) -> None:
        self._broker_port = broker_port
        self._server: asyncio.Server | None = None
        #: Client id -> the writers towards that client's open connections.
        self._to_client: dict[str, list[asyncio.StreamWriter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Connections relayed so far, per client id.
        self.connections: dict[str, int] = {}
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._relay, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writers in self._to_client.values():
            for w in writers:
                w.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        await self._server.wait_closed()

    def inject(self, client_id: str, data: bytes) -> int:
        """Write ``data`` to every open connection of ``client_id``; how many there were."""
        writers = [w for w in self._to_client.get(client_id, []) if not w.is_closing()]
        for w in writers:
            w.write(data)
        return len(writers)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self._broker_port)
        try:
            first = await reader.read(65536)  # the CONNECT (a client sends it alone, first)
            client_id = _client_id(first)
            self.connections[client_id] = self.connections.get(client_id, 0) + 1
            self._to_client.setdefault(client_id, []).append(writer)
            up_writer.write(first)
            down = asyncio.create_task(_pipe(up_reader, writer))
            self._tasks.add(down)
            try:
                await _pipe(reader, up_writer)
            finally:
                down.cancel()
                self._tasks.discard(down)
                self._to_client[client_id].remove(writer)
        finally:
            for w in (writer, up_writer):
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


def _client_id(connect: bytes) -> str:
    """The client id of an MQTT 3.1.1 or 5 CONNECT packet ("" if it is none)."""
    try:
        pos = 1
        while connect[pos] & 0x80:  # remaining length
            pos += 1
        pos += 1
        pos += 2 + int.from_bytes(connect[pos : pos + 2], "big")  # protocol name
        version = connect[pos]
        pos += 4  # version, flags, keepalive
        if version == 5:
            plen, shift = 0, 0
            while True:
                b = connect[pos]
                pos += 1
                plen |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            pos += plen
        n = int.from_bytes(connect[pos : pos + 2], "big")
        return connect[pos + 2 : pos + 2 + n].decode()
    except (IndexError, UnicodeDecodeError):
        return ""
