"""The daemon's one supervised MQTT connection (aiomqtt, MQTT 5).

aiomqtt has no auto-reconnect, so :class:`MqttLink` runs a supervisor loop:
connect (with a last will marking the daemon offline), subscribe, announce
online, then run a reader and a writer as named tasks until the connection
fails; wait the endpoint's :class:`~roommon.transports.backoff.Backoff` on the
clock; repeat. While the broker is away nothing is dropped: QoS 1 messages
wait in a durable :class:`Outbox` (the daemon's SQLite alarm store) and
retained messages (room state, status) keep only their latest value, which is
what a retained topic holds anyway. Inbound messages are handed to a
synchronous callback. The link moves messages; what they mean is the
runtime's business.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self

import aiomqtt

from roommon.core.clock import Clock
from roommon.core.log import get_logger
from roommon.transports.broker import BrokerEndpoint, BrokerTlsError
from roommon.transports.read_buffer import ReadBuffer

log = get_logger(__name__)



class InboundMessage(Protocol):
    """What the message handler is given: a topic (``str()`` of it is the topic name)
    and a payload. paho's own message object on the live path (no aiomqtt copy of it
    per message), an :class:`aiomqtt.Message` elsewhere."""

    @property
    def topic(self) -> object: ...
    @property
    def payload(self) -> object: ...


MessageHandler = Callable[[InboundMessage], None]

#: Messages in flight per round trip (outbox rows, or retained topics); the broker
#: acknowledges them in order.
BATCH = 50


class OutboxRow(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def qos(self) -> int: ...
    @property
    def retain(self) -> bool: ...


class Outbox(Protocol):
    """The durable queue of QoS 1 messages the link drains (see AlarmStore)."""

    def pending(self, limit: int = ..., *, after_id: int = ...) -> Sequence[OutboxRow]: ...
    def pending_count(self) -> int: ...
    def acknowledged(self, ids: list[int], *, at: float) -> None: ...
    def recently_acknowledged(self, since: float) -> Sequence[OutboxRow]: ...
    def forget_acknowledged(self, before: float) -> None: ...


class MqttLink:
    """Async context manager owning the broker connection and its tasks."""

    def __init__(
        self,
        *,
        endpoint: BrokerEndpoint,
        client_id: str,
        store: Outbox,
        clock: Clock,
        subscriptions: list[str],
        on_message: MessageHandler,
        will_topic: str,
        will_payload: bytes,
        online: Callable[[], bytes],
        rng: random.Random | None = None,
        redeliver_s: float = 30.0,
    ) -> None:
        self._endpoint = endpoint
        self._backoff = endpoint.backoff()
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

    @property
    def healthy(self) -> bool:
        """The supervisor is running (connected or reconnecting), not dead of an error."""
        return self._task is not None and not self._task.done()

    async def last_word(self, payload: bytes, *, timeout_s: float = 5.0) -> bool:
        """Publish the retained status ``payload`` after the link itself has died.

        A dead supervisor left the broker with a clean DISCONNECT (no will), so
        the retained status would say online forever: a fresh connection of its
        own says offline instead. True when the broker acknowledged it.
        """
        try:
            async with asyncio.timeout(timeout_s):
                client = self._endpoint.client(identifier=f"{self._client_id}-last-word")
                async with client:
                    await client.publish(self._will.topic, payload, qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError, OSError, BrokerTlsError) as exc:
            log.error("mqtt_last_word_failed", broker=self._endpoint.url, error=str(exc))
            return False
        return True

    # ------------------------------------------------------------------ loops

    async def _supervise(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._endpoint.client(
                    identifier=self._client_id, will=self._will
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
                        broker=self._endpoint.url,
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
                # The link was lost, or the broker refused or could not be reached
                # (``connected`` False): either way the line names the broker.
                log.warning(
                    "mqtt_disconnected",
                    broker=self._endpoint.url,
                    connected=self._client is not None,
                    error=self._endpoint.connect_failure(
                        eg.exceptions, identifier=self._client_id
                    ),
                )
            finally:
                self.connected.clear()
                self._client = None
            if self._closing:
                # aiomqtt may turn the CancelledError of a shutdown into an MqttError
                # while disconnecting; never let that swallow the shutdown.
                raise asyncio.CancelledError
            delay = self._backoff.delay(attempt, self._rng)
            attempt += 1
            log.info(
                "mqtt_reconnect_wait",
                broker=self._endpoint.url,
                seconds=round(delay, 3),
                attempt=attempt,
            )
            await self._clock.sleep(delay)

    async def _read(self, client: aiomqtt.Client) -> None:
        """Hand every inbound message to the handler from paho's own callback.

        aiomqtt's message iterator costs a task and an ``asyncio.wait`` per message
        plus a copy of each message, and lets its (unbounded) queue grow when messages
        come faster than that (``bench/input_cost.py``: about 3x the CPU of this).
        Here paho's ``on_message`` calls the handler directly, inside the socket
        read; the handler only routes (the daemon's own queue is bounded and counts
        what it sheds). paho's socket gets a :class:`ReadBuffer`, so a burst of
        messages costs one ``recv`` and one wake of the loop, not three system calls
        and a wake each. The reader then just waits for the connection to end.
        """
        paho = client._client
        if paho._sock is not None and not isinstance(paho._sock, ReadBuffer):
            paho._sock = ReadBuffer(paho._sock)
        queue = client._queue
        while not queue.empty():  # arrived before this reader started
            self._on_message(queue.get_nowait())
        on_message = self._on_message

        def from_paho(_client: object, _userdata: object, message: InboundMessage) -> None:
            on_message(message)

        paho.on_message = from_paho
        disconnected = client._disconnected
        try:
            await asyncio.shield(disconnected)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever paho or aiomqtt failed with: a lost connection
            raise aiomqtt.MqttError("Disconnected during message iteration") from exc
        raise aiomqtt.MqttError("Disconnected")

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Send what is queued, alarms first.

        The durable outbox (alarm events, notifications, command replies, room and
        timer events) is drained before any retained message, and checked again
        before each batch of retained messages, so an alarm never waits behind room
        state. Retained topics are coalesced (only a topic's newest payload is
        kept) and go out up to :data:`BATCH` at a time in flight, not one round
        trip each.
        """
        while True:
            rows = self._store.pending(BATCH)
            if rows:
                await asyncio.gather(
                    *(client.publish(r.topic, r.payload, qos=r.qos, retain=r.retain) for r in rows)
                )
                now = self._clock.monotonic()
                self._store.acknowledged([r.id for r in rows], at=now)
                self._store.forget_acknowledged(now - self._redeliver_s)
                continue
            if not self._retained:
                return
            batch = list(itertools.islice(self._retained.items(), BATCH))
            await asyncio.gather(
                *(client.publish(topic, payload, qos=1, retain=True) for topic, payload in batch)
            )
            for topic, payload in batch:
                if self._retained.get(topic) is payload:  # not replaced meanwhile
                    del self._retained[topic]

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
