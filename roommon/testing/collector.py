"""An MQTT subscriber for tests: keeps everything it receives on the given filters."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiomqtt

from roommon.testing.broker import LOOPBACK
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.feed_subscriber import FeedSubscriber


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(slots=True)
class MqttCollector:
    """Subscribes to topic filters on the test broker and keeps everything it gets.

    ``endpoint``: how to connect (TLS, an account) instead of plain MQTT to
    ``port`` on loopback.
    """

    port: int
    filters: list[str]
    client_id: str = "roommon-test-collector"
    endpoint: BrokerEndpoint | None = None
    messages: list[Received] = field(default_factory=list)
    _client: aiomqtt.Client | None = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Condition | None = None
    _probes: set[str] = field(default_factory=set)
    _syncs: int = 0

    async def __aenter__(self) -> Self:
        self._changed = asyncio.Condition()
        endpoint = self.endpoint or BrokerEndpoint(host=LOOPBACK, port=self.port)
        self._client = endpoint.client(identifier=self.client_id, timeout=2)
        await self._client.__aenter__()
        for f in self.filters:
            await self._client.subscribe(f, qos=1)
        self._task = asyncio.create_task(self._run(), name="collector")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        assert self._client is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def _run(self) -> None:
        assert self._client is not None
        assert self._changed is not None
        async for m in self._client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else b""
            self.messages.append(Received(str(m.topic), payload, bool(m.retain)))
            async with self._changed:
                self._changed.notify_all()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=qos)

    async def sync(self, probe: str) -> None:
        """Return once everything the broker routed to this subscriber so far has arrived.

        Publishes a unique message on ``probe`` (a topic this client may write and
        read, not one of its filters) and waits for it: the broker delivers to one
        subscriber in order, so what it routed before is here by then.
        """
        assert self._client is not None
        if probe not in self._probes:
            await self._client.subscribe(probe, qos=1)
            self._probes.add(probe)
        self._syncs += 1
        mark = f"sync-{self._syncs}".encode()
        await self._client.publish(probe, mark, qos=1)
        await self.wait_for(lambda ms: any(m.topic == probe and m.payload == mark for m in ms))
        self.messages[:] = [m for m in self.messages if m.topic != probe]

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], *, within: float = 10.0
    ) -> list[Received]:
        """Wait until ``predicate(messages)`` holds (``within`` is only a safety net)."""
        assert self._changed is not None
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self.messages))
        return self.messages


@contextlib.contextmanager
def stalled_reading(client: aiomqtt.Client | FeedSubscriber | None) -> Iterator[None]:
    """The event loop stops reading ``client``'s socket for the block (a client too busy to
    read: what the broker sends piles up in the socket), then reads it again with the
    callback it had (aiomqtt's, which also drains the read buffer); a feed connection's
    transport pauses its reading."""
    assert client is not None
    if isinstance(client, FeedSubscriber):
        transport = client.transport
        assert transport is not None
        transport.pause_reading()
        try:
            yield
        finally:
            transport.resume_reading()
        return
    sock = client._client.socket()
    assert sock is not None
    loop = asyncio.get_running_loop()
    handle = loop._selector.get_key(sock.fileno()).data[0]  # type: ignore[attr-defined]
    callback, args = handle._callback, handle._args  # (removing the reader cancels it)
    loop.remove_reader(sock.fileno())
    try:
        yield
    finally:
        loop.add_reader(sock.fileno(), callback, *args)
