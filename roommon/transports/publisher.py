"""A store-and-forward MQTT publisher that survives broker outages, in order.

Used by ``roommon simulate`` (as a device gateway would publish); built on the
one client factory and the one backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from types import TracebackType
from typing import Final, Self, TextIO

import aiomqtt

from roommon.core.clock import Clock
from roommon.core.errors import RoommonError
from roommon.transports.broker import RETRYABLE_CONNACK, BrokerEndpoint, connack_code

#: A QoS 1 publish normally completes in milliseconds; aiomqtt does not wake a
#: publish whose connection dropped, so this bounds how long a lost PUBACK holds us.
PUBLISH_TIMEOUT_S: Final = 2.0


class PublisherError(RoommonError):
    """The publisher cannot go on (the broker refused the connection)."""


class FeedPublisher:
    """One MQTT connection publishing feed payloads in order, surviving broker outages.

    ``async with`` connects once (any failure there is a :class:`PublisherError`:
    a wrong address or credentials should stop the run, not spin). Afterwards
    :meth:`publish` never drops a payload: when the broker goes away it reports
    on ``err``, reconnects with capped, jittered backoff on the clock and
    publishes the payload again. A payload whose PUBACK was lost with the
    connection may so arrive twice (the daemon rejects the copy as
    ``duplicate``); none is lost. A CONNACK refusal on a reconnect (credentials
    revoked) is final too.
    """

    def __init__(
        self,
        *,
        target: BrokerEndpoint,
        client_id: str,
        qos: int,
        clock: Clock,
        err: TextIO,
        rng: random.Random | None = None,
        name: str = "roommon simulate",
    ) -> None:
        self._name = name
        self._target = target
        self._client_id = client_id
        self._qos = qos
        self._clock = clock
        self._err = err
        self._rng = rng or random.Random()
        self._client: aiomqtt.Client | None = None
        self.published = 0
        self.outages = 0

    async def __aenter__(self) -> Self:
        try:
            self._client = await self._connect()
        except aiomqtt.MqttError as exc:
            raise PublisherError(self._refusal(exc)) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._disconnect()

    def _refusal(self, exc: aiomqtt.MqttError) -> str:
        code = connack_code(exc)
        what = "refused the connection" if code is not None else "cannot be reached"
        return f"broker {self._target.url} {what}: {exc}"

    async def _connect(self) -> aiomqtt.Client:
        client = self._target.client(identifier=self._client_id)
        await client.__aenter__()
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        # A half-dead connection may never acknowledge the DISCONNECT; don't wait on it.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(1.0):
                await client.__aexit__(None, None, None)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish, waiting through broker outages; raises only :class:`PublisherError`."""
        while True:
            if self._client is None:
                await self._reconnect()
            assert self._client is not None
            try:
                await self._client.publish(topic, payload, qos=self._qos, timeout=PUBLISH_TIMEOUT_S)
            except aiomqtt.MqttError as exc:
                self.outages += 1
                print(
                    f"{self._name}: broker {self._target.url} lost ({exc}); "
                    "holding data and reconnecting",
                    file=self._err,
                    flush=True,
                )
                await self._disconnect()
                continue
            self.published += 1
            return

    async def _reconnect(self) -> None:
        t = self._target
        started = self._clock.monotonic()
        attempt = 0
        backoff = t.backoff()
        while True:
            await backoff.wait(attempt, self._clock, self._rng)
            attempt += 1
            try:
                self._client = await self._connect()
            except aiomqtt.MqttError as exc:
                code = connack_code(exc)
                if code is not None and code not in RETRYABLE_CONNACK:
                    raise PublisherError(self._refusal(exc)) from exc
                continue
            took = self._clock.monotonic() - started
            print(
                f"{self._name}: broker {t.url} reconnected after {attempt} attempt(s), "
                f"{took:.1f} s; resending held data",
                file=self._err,
                flush=True,
            )
            return
