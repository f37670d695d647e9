"""The daemon's supervised MQTT connections: control (aiomqtt; MQTT 5 or 3.1.1) and feeds.

aiomqtt has no auto-reconnect, so :class:`MqttLink` runs a supervisor loop:
connect (with a last will marking the daemon offline), and from that moment
run a reader and a writer as named tasks until the connection fails; wait the
endpoint's :class:`~roommon.transports.backoff.Backoff` on the clock; repeat.

* **Two connections.** The *control* connection carries commands in and
  everything the daemon publishes (alarm outbox, notifications, replies,
  retained state, status). Feed data comes on a second, *feed-only*
  connection with its own client id, session and subscriptions, read by a
  subscriber of its own (:class:`~roommon.transports.feed_subscriber.FeedSubscriber`,
  ``broker.feed_protocol``, 3.1.1 by default), which parses every packet of
  a socket read at once: about 3 µs of CPU per message where paho under
  aiomqtt took 10 (3.1.1) to 23 (MQTT 5) even read through a buffer. The
  broker writes a connection's packets in order, so on one shared connection
  the PUBACK of an alarm queued behind a feed backlog: at twice the
  sustainable load no acknowledgement came within the keepalive, the link
  counted the connection lost and the output stalled. Apart, a feed backlog
  can never delay an alarm. ``connected`` is set while both are up; a lost
  feed connection is reported (``on_feed_state``) so every room's MQTT feeds
  alarm as disconnected, and it reconnects with the same backoff. A
  malformed packet on it drops it (counted in ``feed_malformed``, logged).

* **A persistent session.** The link resumes its broker-side session on every
  reconnect (MQTT 5 clean start false with the endpoint's session expiry;
  3.1.1 clean session false), so QoS 1 commands and feed data published while
  it reconnects are queued by the broker and delivered when it is back. A
  session a previous run left is dropped at the first connection.
* **No stalls.** The reader runs from the CONNACK on, during subscribe, the
  online status and the redelivery, so a lost connection is noticed at once
  (aiomqtt does not wake a publish whose connection dropped: only the reader
  sees it) and messages the broker queued are read while the outbox replays.
  A publish not acknowledged within the keepalive is a lost connection too.
* **Failover.** With several addresses (a broker cluster), a connection lost or
  refused moves to the next address at once; the backoff is waited after a
  whole round. Both connections share the address in use: the first to lose
  a node moves it on, and a connection that fails follows the other to the
  node it is up on, so they stay together where they can (after a failover
  they may end on two nodes of the cluster, which serves both alike).
* **Nothing dropped while away.** QoS 1 messages wait in a durable
  :class:`Outbox` (the daemon's SQLite alarm store); retained messages (room
  state, timers, status) keep only their latest value, and every retained
  topic's latest value is sent again after each reconnect, so a broker that
  lost its retained store (a crash) holds fresh state again at once.

Inbound messages are handed to a synchronous callback. The link moves
messages; what they mean is the runtime's business.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import NamedTuple, Protocol, Self

import aiomqtt
import paho.mqtt.client as paho_mqtt

from roommon.core.clock import Clock, RealClock
from roommon.core.log import get_logger
from roommon.transports.broker import BrokerEndpoint, BrokerTlsError
from roommon.transports.feed_subscriber import (
    FeedConnectionError,
    FeedSubscriber,
    MalformedPacketError,
    Messages,
    MessagesHandler,
)
from roommon.transports.receive import InboundMessage, receive

log = get_logger(__name__)


class FeedMessage(NamedTuple):
    """A feed message for an ``on_message`` handler (topic decoded)."""

    topic: str
    payload: bytes


MessageHandler = Callable[[InboundMessage], None]

#: A lost feed connection that is back (or failed over) within this many seconds is not
#: reported; after it, every room's MQTT feeds are disconnected until it is back.
FEED_LOSS_GRACE_S = 2.0

#: Retained topics in flight per round trip; the broker acknowledges them in order.
BATCH = 50
#: Outbox rows in flight per round trip: under overload a round trip waits for a turn of
#: a busy event loop, and an alarm storm (thousands of feed alarms) must drain in seconds.
OUTBOX_BATCH = 200


class _Ack:
    """Stands in aiomqtt's ``_pending_publishes`` for the Event its own ``publish`` waits
    on: aiomqtt's ``on_publish`` calls :meth:`set` when the PUBACK of ``mid`` arrives."""

    __slots__ = ("_link", "_mid")

    def __init__(self, link: MqttLink, mid: int) -> None:
        self._link = link
        self._mid = mid

    def set(self) -> None:
        self._link._acknowledged(self._mid)


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
    @property
    def renumbered(self) -> int:
        """Changes when pending rows took new ids (lower than some ids given before)."""
        ...

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
        on_connected: Callable[[], None] | None = None,
        feed_subscriptions: Sequence[str] = (),
        on_feed_state: Callable[[bool, str], None] | None = None,
        on_feed_messages: MessagesHandler | None = None,
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
        self._retained: dict[str, bytes] = {}  # waiting to be sent
        self._retained_latest: dict[str, bytes] = {}  # every retained topic's newest payload
        self._retained_first: set[str] = set()  # topics sent ahead of the others
        self._on_connected = on_connected
        self._feed_subscriptions = list(feed_subscriptions)
        self._feed_id = f"{client_id}-feed"
        self._on_feed_state = on_feed_state
        self._feeds_reported_down = False
        self._wake = asyncio.Event()  # the outbox has rows
        self._outbox_lock = asyncio.Lock()
        # Outbox rows on the current control connection: every row up to ``_sent_upto``
        # was written to it (rows go out in id order, once per connection), ``_inflight``
        # (paho message id -> row id) still waits for its PUBACK, ``_acked`` were
        # acknowledged and not yet recorded in the store; ``_acks`` is set by each PUBACK.
        self._sending: aiomqtt.Client | None = None  # the client the outbox loop writes to
        self._sent_upto = 0
        self._renumbered = 0  # the store's renumbered when _sent_upto was last reset
        self._inflight: dict[int, int] = {}
        self._acked: list[int] = []
        self._acks = asyncio.Event()
        #: Outbox rows written to a control connection, in all (a row sent again after a
        #: reconnect counts again).
        self.rows_written = 0
        self._wake_retained = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        #: The feed connection while it is connected (diagnostics and tests).
        self.feed_client: FeedSubscriber | None = None
        self._on_feed_messages = on_feed_messages or self._feed_messages_one_by_one
        #: Feed connections dropped for a malformed packet from the broker.
        self.feed_malformed = 0
        self._control_up = False
        # Without feed subscriptions there is no feed connection: it counts as up.
        self._feeds_up = not self._feed_subscriptions
        #: Set while the daemon is connected: control session up and, if there are feed
        #: subscriptions, the feed connection subscribed.
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()  # set while the connection is down after having been up
        self.connects = 0  # sessions up (subscribed, online said)
        self.connacks = 0  # connections the broker accepted (CONNACK), up or not
        self.disconnects = 0
        self.feed_connects = 0  # feed connections up (subscribed)
        self.feed_disconnects = 0
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._feed_task: asyncio.Task[None] | None = None
        # Reports the feed connection lost once its grace has passed (cancelled if it is back).
        self._feed_grace: asyncio.Task[None] | None = None
        self._closing = False
        # Monotonic time of the last unexpected disconnect not yet followed by a redelivery.
        self._lost_at: float | None = None
        self._redeliver_s = redeliver_s
        self._addresses = endpoint.addresses()
        self._address = 0
        # The address each connection is up on (None while it is down).
        self._control_at: int | None = None
        self._feeds_at: int | None = None
        self._session_fresh = False  # the old session (of a previous run) is dropped
        #: The broker address of the current (or last) connection, and the feed connection's.
        self.url = endpoint.url
        self.feed_url = endpoint.url

    # ------------------------------------------------------------------ API

    def publish_retained(self, topic: str, payload: bytes, *, first: bool = False) -> None:
        """Latest-wins retained message; sent now or on the next connection.

        ``first``: the topic goes out ahead of every other waiting retained topic
        (the daemon's status, which must say "overloaded" while hundreds of room
        states wait), not at the end of the queue where an update re-enters it.
        """
        self._retained[topic] = payload
        self._retained_latest[topic] = payload
        if first:
            self._retained_first.add(topic)
        self._wake_retained.set()

    def outbox_changed(self) -> None:
        """The outbox has new rows: write them to the connection now, in this turn of the
        event loop (see :meth:`_send_rows`), and wake the outbox loop, which records their
        acknowledgements and sends what the window did not take.

        An alarm raised by a busy daemon would otherwise wait for several turns of its
        loop (the outbox loop's wake, its publish tasks, aiomqtt's writer registration),
        each as long as a slice of input: at 300 rooms that was most of the alarm's
        latency. Rows still go out once per connection and in the outbox's order, and
        the outbox stays the durable record: a row is done when its PUBACK is recorded.
        """
        if self.writing:
            assert self._sending is not None
            self._send_rows(self._sending)
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._supervise(), name="mqtt-supervisor")
        if self._feed_subscriptions:
            self._feed_task = self._tg.create_task(
                self._supervise_feeds(), name="mqtt-feed-supervisor"
            )
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
        for task in (self._feed_task, self._feed_grace):
            if task is not None:
                task.cancel()
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
    def writing(self) -> bool:
        """The outbox loop runs on the current control connection: :meth:`outbox_changed`
        writes new rows to it at once."""
        return self._sending is not None and self._sending is self._client

    @property
    def pending_retained(self) -> int:
        """Retained topics whose newest payload the broker has not acknowledged yet."""
        return len(self._retained)

    @property
    def healthy(self) -> bool:
        """The supervisors are running (connected or reconnecting), not dead of an error."""
        tasks = [t for t in (self._task, self._feed_task) if t is not None]
        return bool(tasks) and not any(t.done() for t in tasks)

    async def last_word(self, payload: bytes, *, timeout_s: float = 5.0) -> bool:
        """Publish the retained status ``payload`` after the link itself has died.

        A dead supervisor left the broker with a clean DISCONNECT (no will), so
        the retained status would say online forever: a fresh connection of its
        own says offline instead. True when the broker acknowledged it.
        """
        try:
            async with asyncio.timeout(timeout_s):
                endpoint = self._addresses[self._address]
                client = endpoint.client(identifier=f"{self._client_id}-last-word")
                async with client:
                    await client.publish(self._will.topic, payload, qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError, OSError, BrokerTlsError) as exc:
            log.error("mqtt_last_word_failed", broker=self.url, error=str(exc))
            return False
        return True

    # ------------------------------------------------------------------ loops

    def _client_for(self, endpoint: BrokerEndpoint) -> aiomqtt.Client:
        client = endpoint.client(
            identifier=self._client_id,
            will=self._will,
            clean_start=self._endpoint.session_expiry_s == 0,
            session_expiry_s=self._endpoint.session_expiry_s or None,
            # A publish not acknowledged within the keepalive means the connection is gone.
            timeout=float(self._endpoint.keepalive_s),
        )
        # Both loops' publishes go on the wire at once: paho would hold all but 20 in its own
        # queue (an alarm behind a batch of room state), and aiomqtt would log a warning for
        # every publish beyond 10 in flight (hundreds of lines a second).
        client._client.max_inflight_messages_set(OUTBOX_BATCH + BATCH)
        client.pending_calls_threshold = OUTBOX_BATCH + BATCH
        return client

    def _set_up(self, *, control: bool | None = None, feeds: bool | None = None) -> None:
        if control is not None:
            self._control_up = control
        if feeds is not None:
            self._feeds_up = feeds
        if self._control_up and self._feeds_up:
            self.lost.clear()
            self.connected.set()
        else:
            if self.connected.is_set():
                self.lost.set()
            self.connected.clear()

    async def _next_address(self, failures: int, index: int, *, name: str) -> None:
        """After the ``failures``-th failure in a row of a connection to address ``index``:
        follow the other connection to the node it is up on, or else move the shared
        address on (unless the other connection already did); wait the backoff after a
        whole round of the cluster."""
        other = self._feeds_at if name == "control" else self._control_at
        if other is not None and other != index:
            self._address = other  # follow the other connection to the node it is up on
        elif index == self._address:  # (the other is down, or not yet aware that it is)
            self._address = (index + 1) % len(self._addresses)
        if failures % len(self._addresses):
            return  # another node of the cluster not yet tried in this round
        attempt = failures // len(self._addresses) - 1
        delay = self._backoff.delay(attempt, self._rng)
        log.info(
            "mqtt_reconnect_wait",
            connection=name,
            broker=self._addresses[self._address].url,
            seconds=round(delay, 3),
            attempt=attempt + 1,
        )
        await self._clock.sleep(delay)

    async def _supervise(self) -> None:
        failures = 0
        while True:
            index = self._address
            endpoint = self._addresses[index]
            try:
                if not self._session_fresh:
                    await self._drop_old_session(endpoint, self._client_id)
                    self._session_fresh = True
                async with self._client_for(endpoint) as client:
                    # Known before anything is sent, so a shutdown from here on can
                    # still say goodbye (an "online" must never be the last word).
                    self._client = client
                    self._control_at = index
                    self.url = endpoint.url
                    self.connacks += 1
                    async with asyncio.TaskGroup() as tg:
                        # The reader first: it alone notices a connection lost while
                        # the session starts, and reads what the broker queued for us.
                        tg.create_task(self._read(client), name="mqtt-reader")
                        await self._start_session(client)
                        failures = 0
                        tg.create_task(self._write(client), name="mqtt-writer")
            except* aiomqtt.MqttError as eg:
                self.disconnects += 1
                if self._lost_at is None:
                    self._lost_at = self._clock.monotonic()
                # The link was lost, or the broker refused or could not be reached
                # (``connected`` False): either way the line names the broker.
                connected = self._client is not None
                why = (
                    endpoint.connect_failure(eg.exceptions, identifier=self._client_id)
                    if connected
                    else await endpoint.explain_failure(eg.exceptions, identifier=self._client_id)
                )
                log.warning(
                    "mqtt_disconnected", broker=endpoint.url, connected=connected, error=why
                )
            finally:
                self._set_up(control=False)
                self._client = None
                self._control_at = None
            if self._closing:
                # aiomqtt may turn the CancelledError of a shutdown into an MqttError
                # while disconnecting; never let that swallow the shutdown.
                raise asyncio.CancelledError
            failures += 1
            await self._next_address(failures, index, name="control")

    def _feed_subscriber(self, endpoint: BrokerEndpoint, *, clean: bool = False) -> FeedSubscriber:
        expiry = self._endpoint.session_expiry_s
        return FeedSubscriber(
            endpoint.for_feeds(),
            client_id=self._feed_id,
            on_messages=self._on_feed_messages,
            clean=clean or expiry == 0,
            session_expiry_s=None if clean else expiry or None,
            keepalive_clock=RealClock(),  # the wire's time with a real peer (see FeedSubscriber)
        )

    def _feed_messages_one_by_one(self, messages: Messages) -> None:
        """Without a handler of a read's messages: each to ``on_message``."""
        for topic, payload in messages:
            self._on_message(FeedMessage(topic.decode(errors="replace"), payload))

    async def _supervise_feeds(self) -> None:
        """The feed-only connection (:class:`~roommon.transports.feed_subscriber.FeedSubscriber`,
        not aiomqtt: a tenth of the CPU per message): subscribe to the rooms' feeds and hand
        what comes to the handler, until the connection fails; then the same failover and
        backoff as the control connection. Its session is persistent like the control one's
        (QoS 1 feed data published while it reconnects is kept by the broker)."""
        failures = 0
        fresh = self._endpoint.session_expiry_s == 0
        while True:
            index = self._address
            endpoint = self._addresses[index]
            up = False
            reason = ""
            try:
                if not fresh:
                    async with self._feed_subscriber(endpoint, clean=True):
                        pass  # end the session a previous run left (see _drop_old_session)
                    fresh = True
                async with self._feed_subscriber(endpoint) as client:
                    self.feed_url = endpoint.url
                    self.feed_client = client
                    self._feeds_at = index
                    await client.subscribe(self._feed_subscriptions, qos=1)
                    up = True
                    failures = 0
                    self.feed_connects += 1
                    self._set_up(feeds=True)
                    log.info(
                        "mqtt_feeds_connected",
                        broker=endpoint.url,
                        subscriptions=len(self._feed_subscriptions),
                        protocol=client.protocol_version,
                    )
                    if self._feed_grace is not None:
                        self._feed_grace.cancel()
                        self._feed_grace = None
                    if self._feeds_reported_down:
                        self._feeds_reported_down = False
                        if self._on_feed_state is not None:
                            self._on_feed_state(True, "")
                    await client.wait_closed()
            except FeedConnectionError as exc:
                self.feed_disconnects += 1
                if isinstance(exc, MalformedPacketError):
                    self.feed_malformed += 1
                reason = endpoint.connect_failure([exc], identifier=None)  # (not paho)
                log.warning(
                    "mqtt_feeds_disconnected",
                    broker=endpoint.url,
                    connected=up,
                    error=reason,
                    malformed=isinstance(exc, MalformedPacketError),
                )
            finally:
                self._set_up(feeds=False)
                self.feed_client = None
                self._feeds_at = None
            if self._closing:
                raise asyncio.CancelledError
            if up and self._feed_grace is None and not self._feeds_reported_down:
                assert self._tg is not None
                self._feed_grace = self._tg.create_task(
                    self._report_feeds_down(f"feed connection to {endpoint.url} lost ({reason})"),
                    name="mqtt-feed-loss",
                )
            failures += 1
            await self._next_address(failures, index, name="feeds")

    async def _report_feeds_down(self, reason: str) -> None:
        await self._clock.sleep(FEED_LOSS_GRACE_S)
        self._feed_grace = None
        self._feeds_reported_down = True
        log.warning("mqtt_feeds_lost", grace_s=FEED_LOSS_GRACE_S, reason=reason)
        if self._on_feed_state is not None:
            self._on_feed_state(False, reason)

    async def _drop_old_session(self, endpoint: BrokerEndpoint, identifier: str) -> None:
        """Once per run, before the first session: end what a previous run left.

        The session is resumed on every reconnect of this run, but not from a
        previous run: a command queued while no daemon ran (an audio pause asked
        for an hour ago) must not act now; its sender got no reply. A connection
        with clean start (and no session expiry) ends the old session; the next
        one starts the new session without clean start, which is also the only
        kind Mosquitto 2.0 keeps across its own restart.
        """
        if self._endpoint.session_expiry_s == 0:
            return
        async with endpoint.client(
            identifier=identifier, clean_start=True, timeout=float(endpoint.keepalive_s)
        ):
            pass

    async def _start_session(self, client: aiomqtt.Client) -> None:
        """Subscribe, say online, queue every retained topic again: the link is up."""
        for topic in self._subscriptions:
            await client.subscribe(topic, qos=1)
        await client.publish(self._will.topic, self._online(), qos=1, retain=True)
        # The broker may have lost its retained store (a crash) or hold an old value:
        # send every retained topic's newest payload again (after the outbox).
        for topic, payload in self._retained_latest.items():
            self._retained.setdefault(topic, payload)
        if self._on_connected is not None:
            self._on_connected()
        self._set_up(control=True)
        self.connects += 1
        log.info("mqtt_connected", broker=self.url, outbox=self._store.pending_count())

    async def _read(self, client: aiomqtt.Client) -> None:
        """Hand every inbound message to the handler from paho's own callback, without a
        task per message (:func:`roommon.transports.receive.receive`); the handler only
        routes (the daemon's own queue is bounded and counts what it sheds)."""
        await receive(client, self._on_message)

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Send everything queued, the outbox first (a graceful shutdown's last flush)."""
        await self._flush_outbox(client)
        await self._flush_retained(client)

    def _start_sending(self, client: aiomqtt.Client) -> None:
        """A new control connection: nothing of the outbox is on it yet. Rows in flight on
        the one before are still pending in the store, so they go out again here."""
        self._record_acks()
        self._inflight.clear()
        self._sent_upto = 0
        self._renumbered = self._store.renumbered
        self._sending = client

    def _send_rows(self, client: aiomqtt.Client) -> bool:
        """Write the oldest outbox rows not yet on this connection, as many as the window
        (:data:`OUTBOX_BATCH` in flight) takes, to the socket at once.

        Synchronous: paho queues each PUBLISH and ``loop_write`` sends them now, where
        aiomqtt's ``publish`` would wait a turn of the event loop for its task and
        another for its writer callback. Each PUBACK comes back through aiomqtt's
        ``on_publish`` (its ``_pending_publishes``; aiomqtt is pinned for this, see
        :mod:`roommon.transports.receive`) into :class:`_Ack`. False when paho refused a
        row (the connection is going: the reader reports it; the rows stay pending).
        """
        room = OUTBOX_BATCH - len(self._inflight)
        if room <= 0:
            return True
        busy: set[int] = set()
        if self._store.renumbered != self._renumbered:  # rows moved: from the oldest again,
            self._renumbered = self._store.renumbered  # not the ones on the wire already
            self._sent_upto = 0
            busy = {*self._inflight.values(), *self._acked}
        paho = client._client
        pending = client._pending_publishes
        sent = False
        for r in self._store.pending(room + len(busy), after_id=self._sent_upto):
            if r.id in busy:
                continue
            info = paho.publish(r.topic, r.payload, r.qos, r.retain)
            if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
                return False
            self._sent_upto = max(self._sent_upto, r.id)
            self.rows_written += 1
            sent = True
            if info.is_published():  # QoS 0, or already acknowledged
                self._acked.append(r.id)
                self._acks.set()
            else:
                self._inflight[info.mid] = r.id
                pending[info.mid] = _Ack(self, info.mid)  # type: ignore[assignment]
        if sent:
            try:
                paho.loop_write()
            except OSError as exc:  # as aiomqtt's writer callback: the connection broke
                if not client._disconnected.done():
                    client._disconnected.set_exception(exc)
                return False
            # paho asked aiomqtt to watch the socket for writing when the first PUBLISH
            # was queued; aiomqtt adds that writer with call_soon_threadsafe, so it is
            # registered only after the loop_write above emptied the queue and paho's
            # "unregister" found nothing to remove. Left there, a writable socket calls
            # it on every turn of the loop: the daemon spun at a full core with 10 rooms.
            # This runs after that add_writer (the ready queue is FIFO) and removes it
            # unless paho still has bytes to write (then paho itself removes it later).
            asyncio.get_running_loop().call_soon(self._drop_idle_writer, client)
        return True

    @staticmethod
    def _drop_idle_writer(client: aiomqtt.Client) -> None:
        paho = client._client
        sock = paho.socket()
        if sock is not None and not paho.want_write():
            asyncio.get_running_loop().remove_writer(sock.fileno())

    def _acknowledged(self, mid: int) -> None:
        row = self._inflight.pop(mid, None)
        if row is not None:
            self._acked.append(row)
            self._acks.set()

    def _record_acks(self) -> None:
        if self._acked:
            ids, self._acked = self._acked, []
            now = self._clock.monotonic()
            self._store.acknowledged(ids, at=now)
            self._store.forget_acknowledged(now - self._redeliver_s)

    async def _flush_outbox(self, client: aiomqtt.Client) -> None:
        """Drain the durable outbox (alarm events, notifications, command replies, room and
        timer events), :data:`OUTBOX_BATCH` rows in flight at a time, oldest first, until
        every row is acknowledged (and recorded so). No acknowledgement for a keepalive
        while rows are in flight means the connection is gone."""
        # One flush at a time (the shutdown's last flush and the outbox loop).
        async with self._outbox_lock:
            if self._sending is not client:
                self._start_sending(client)
            while True:
                self._acks.clear()
                self._record_acks()
                if not self._send_rows(client):
                    raise aiomqtt.MqttError("outbox publish refused: the connection is going")
                if not self._inflight and not self._acked:
                    if not self._store.pending(1, after_id=self._sent_upto):
                        return
                    continue
                try:
                    async with asyncio.timeout(float(self._endpoint.keepalive_s)):
                        await self._acks.wait()
                except TimeoutError:
                    raise aiomqtt.MqttError("outbox publish not acknowledged in time") from None

    async def _flush_retained(self, client: aiomqtt.Client) -> None:
        """Send the retained topics' newest payloads (coalesced: only a topic's newest is
        kept), :data:`BATCH` in flight at a time, not one round trip each."""
        while self._retained:
            batch = self._retained_batch()
            await asyncio.gather(
                *(client.publish(topic, payload, qos=1, retain=True) for topic, payload in batch)
            )
            for topic, payload in batch:
                if self._retained.get(topic) is payload:  # not replaced meanwhile
                    del self._retained[topic]

    def _retained_batch(self) -> list[tuple[str, bytes]]:
        """The next :data:`BATCH` retained topics to send: the ``first`` ones, then in order."""
        waiting = self._retained
        first = [(t, waiting[t]) for t in self._retained_first if t in waiting]
        if not first:
            return list(itertools.islice(waiting.items(), BATCH))
        ahead = {t for t, _ in first}
        rest = ((t, p) for t, p in waiting.items() if t not in ahead)
        return first + list(itertools.islice(rest, max(BATCH - len(first), 0)))

    async def _redeliver(self, client: aiomqtt.Client) -> None:
        """After an unexpected disconnect, resend what the broker may have lost."""
        if self._lost_at is None:
            return
        rows = self._store.recently_acknowledged(self._lost_at - self._redeliver_s)
        if rows:
            log.info("mqtt_redeliver", rows=len(rows))
        for i in range(0, len(rows), BATCH):
            batch = rows[i : i + BATCH]
            await asyncio.gather(
                *(client.publish(r.topic, r.payload, qos=r.qos, retain=r.retain) for r in batch)
            )
        # Only now: a connection lost during the redelivery must start it again from the
        # first loss, not from its own (the rows between would never be re-sent).
        self._lost_at = None

    async def _write(self, client: aiomqtt.Client) -> None:
        """Alarms first: the outbox and the retained topics are sent by two loops of their
        own, so an alarm never waits for a batch of room state to be acknowledged (nor
        behind one: it is written to the socket as soon as it is queued)."""
        await self._redeliver(client)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._loop(client, self._wake, self._flush_outbox), name="mqtt-outbox")
            tg.create_task(
                self._loop(client, self._wake_retained, self._flush_retained), name="mqtt-retained"
            )

    @staticmethod
    async def _loop(
        client: aiomqtt.Client,
        wake: asyncio.Event,
        flush: Callable[[aiomqtt.Client], Awaitable[None]],
    ) -> None:
        while True:
            wake.clear()
            await flush(client)
            await wake.wait()
