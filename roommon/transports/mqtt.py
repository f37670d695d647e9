"""The daemon's one supervised MQTT connection (aiomqtt, MQTT 5).

aiomqtt has no auto-reconnect, so :class:`MqttLink` runs a supervisor loop:
connect (with a last will marking the daemon offline), subscribe, announce
online, then run a reader and a writer as named tasks until the connection
fails; wait a capped, jittered backoff on the clock; repeat. While the broker
is away nothing is dropped: QoS 1 messages wait in the durable SQLite outbox
(:class:`~roommon.alerts.store.AlarmStore`) and retained messages (room state,
status) keep only their latest value, which is what a retained topic holds
anyway. Inbound messages are handed to a synchronous callback.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Self

import aiomqtt
import structlog

from roommon.alerts.store import AlarmStore
from roommon.config import BrokerConfig
from roommon.core.clock import Clock

log = structlog.get_logger(__name__)

MessageHandler = Callable[[aiomqtt.Message], None]

#: Outbox rows published per round trip; the broker acknowledges them in order.
BATCH = 50


def backoff_delay(attempt: int, *, initial: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with "equal jitter": half fixed, half random.

    Half the delay is kept so a flapping broker is not hammered; the random
    half spreads the reconnects of many daemons after a broker restart.
    """
    base = min(cap, initial * (2 ** min(attempt, 30)))
    return float(base / 2 + rng.uniform(0, base / 2))


class MqttLink:
    """Async context manager owning the broker connection and its tasks."""

    def __init__(
        self,
        *,
        config: BrokerConfig,
        client_id: str,
        store: AlarmStore,
        clock: Clock,
        subscriptions: list[str],
        on_message: MessageHandler,
        will_topic: str,
        will_payload: bytes,
        online: Callable[[], bytes],
        rng: random.Random | None = None,
        redeliver_s: float = 30.0,
    ) -> None:
        self._config = config
        self._client_id = client_id
        self._store = store
        self._clock = clock
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._will = aiomqtt.Will(topic=will_topic, payload=will_payload, qos=1, retain=True)
        self._online = online
        self._rng = rng or random.Random()
        self._retained: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()  # set while the connection is down after having been up
        self.connects = 0
        self.disconnects = 0
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Monotonic time of the last unexpected disconnect not yet followed by a redelivery.
        self._lost_at: float | None = None
        self._redeliver_s = redeliver_s

    # ------------------------------------------------------------------ API

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Latest-wins retained message; sent now or on the next connection."""
        self._retained[topic] = payload
        self._wake.set()

    def outbox_changed(self) -> None:
        """Tell the writer that the outbox has new rows."""
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._supervise(), name="mqtt-supervisor")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        assert self._task is not None
        self._closing = True
        self._task.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)

    async def goodbye(self, payload: bytes) -> None:
        """Graceful shutdown: flush what is queued, then mark the daemon offline."""
        client = self._client
        if client is None:
            return
        try:
            async with asyncio.timeout(5):
                await self._flush(client)
                await client.publish(self._will.topic, payload, qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("mqtt_goodbye_failed", error=str(exc))

    # ------------------------------------------------------------------ loops

    def _tls(self) -> ssl.SSLContext | None:
        if not self._config.tls:
            return None
        return ssl.create_default_context(
            cafile=str(self._config.ca_file) if self._config.ca_file else None
        )

    async def _supervise(self) -> None:
        attempt = 0
        user, password = self._config.credentials()
        while True:
            try:
                async with aiomqtt.Client(
                    self._config.host,
                    self._config.port,
                    identifier=self._client_id,
                    username=user,
                    password=password,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    will=self._will,
                    keepalive=self._config.keepalive_s,
                    tls_context=self._tls(),
                    timeout=10,
                ) as client:
                    # Known before anything is sent, so a shutdown from here on can
                    # still say goodbye (an "online" must never be the last word).
                    self._client = client
                    for topic in self._subscriptions:
                        await client.subscribe(topic, qos=1)
                    await client.publish(self._will.topic, self._online(), qos=1, retain=True)
                    await self._redeliver(client)
                    self.lost.clear()
                    self.connected.set()
                    self.connects += 1
                    attempt = 0
                    log.info(
                        "mqtt_connected",
                        host=self._config.host,
                        port=self._config.port,
                        outbox=self._store.pending_count(),
                    )
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._read(client), name="mqtt-reader")
                        tg.create_task(self._write(client), name="mqtt-writer")
            except* aiomqtt.MqttError as eg:
                self.disconnects += 1
                if self._lost_at is None:
                    self._lost_at = self._clock.monotonic()
                if self.connected.is_set():
                    self.lost.set()
                log.warning("mqtt_disconnected", error="; ".join(str(e) for e in eg.exceptions))
            finally:
                self.connected.clear()
                self._client = None
            if self._closing:
                # aiomqtt may turn the CancelledError of a shutdown into an MqttError
                # while disconnecting; never let that swallow the shutdown.
                raise asyncio.CancelledError
            delay = backoff_delay(
                attempt,
                initial=self._config.reconnect_initial_s,
                cap=self._config.reconnect_max_s,
                rng=self._rng,
            )
            attempt += 1
            log.info("mqtt_reconnect_wait", seconds=round(delay, 3), attempt=attempt)
            await self._clock.sleep(delay)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._on_message(message)

    async def _flush(self, client: aiomqtt.Client) -> None:
        while self._retained:
            topic, payload = next(iter(self._retained.items()))
            await client.publish(topic, payload, qos=1, retain=True)
            if self._retained.get(topic) is payload:
                del self._retained[topic]
        while rows := self._store.pending(BATCH):
            await asyncio.gather(
                *(client.publish(r.topic, r.payload, qos=r.qos, retain=r.retain) for r in rows)
            )
            now = self._clock.monotonic()
            self._store.acknowledged([r.id for r in rows], at=now)
            self._store.forget_acknowledged(now - self._redeliver_s)

    async def _redeliver(self, client: aiomqtt.Client) -> None:
        """After an unexpected disconnect, resend what the broker may have lost."""
        if self._lost_at is None:
            return
        rows = self._store.recently_acknowledged(self._lost_at - self._redeliver_s)
        self._lost_at = None
        if rows:
            log.info("mqtt_redeliver", rows=len(rows))
        for i in range(0, len(rows), BATCH):
            batch = rows[i : i + BATCH]
            await asyncio.gather(
                *(client.publish(r.topic, r.payload, qos=r.qos, retain=r.retain) for r in batch)
            )

    async def _write(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            await self._flush(client)
            await self._wake.wait()
