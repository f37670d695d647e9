"""An MQTT subscription that survives broker outages, handing every message to a sink.

Used by ``roommon record``; built on the one client factory
(:class:`~roommon.transports.broker.BrokerEndpoint`) and the one backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self, TextIO

import aiomqtt

from roommon.core.clock import Clock
from roommon.core.errors import RoommonError
from roommon.core.log import get_logger
from roommon.transports.broker import RETRYABLE_CONNACK, BrokerEndpoint, connack_code

log = get_logger(__name__)

#: MQTT 5 session expiry: a reconnect within this keeps the broker-side session,
#: so QoS 1 messages sent while only our connection was down are not lost.
SESSION_EXPIRY_S: Final = 60


class RecorderError(RoommonError):
    """The recorder cannot go on (the broker refused or could not be reached at start)."""


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
        if self.connects == 0:
            # A fresh session at start: a connection with clean start ends what a
            # previous run left; the session proper then starts without clean start,
            # the only kind Mosquitto 2.0 keeps across its own restart.
            async with self._target.client(identifier=self._client_id, clean_start=True):
                pass
        client = self._target.client(
            identifier=self._client_id,
            # Resume the broker's session after our own connection drops (the
            # broker queued QoS 1 messages meanwhile).
            clean_start=False,
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
