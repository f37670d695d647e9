"""The daemon's feed-only MQTT connection: a subscriber that parses every packet of a read at once.

The feed connection only subscribes and receives (QoS 0 and 1 feed data, see
:class:`~roommon.transports.mqtt.MqttLink`), at thousands of messages a
second, so its cost per message is most of the daemon's input cost. paho
(under aiomqtt) reads a packet with a ``recv`` for its type, one per length
byte and one for the rest, builds a message object and (in MQTT 5) a
properties object for each, and aiomqtt wakes for each packet; even with a
read buffer under paho's socket and its callback called directly that is
10 µs of CPU per message in 3.1.1 and 23 µs in MQTT 5, against about 1-2 µs
here (``bench/input_cost.py`` prints all side by side). This module is only
what that connection needs, in three layers:

* :class:`PacketParser`: bytes in, packets out, no I/O (a read's complete
  packets at once; a partial one is kept for the next read). What is not MQTT
  (a length of more than four bytes, a PUBLISH whose topic runs past its end,
  QoS 3, a QoS 2 message on a QoS 1 subscription) is a
  :class:`MalformedPacketError`: the stream cannot be trusted from there on,
  so the connection is dropped (counted, logged, reconnected by the link).
* :class:`_FeedProtocol`: the ``asyncio.Protocol`` that gives each read to
  the parser, hands the read's messages to the handler in one call, and
  writes the read's PUBACKs in one write.
* :class:`FeedSubscriber`: one connection as an async context manager:
  TCP or TLS (the endpoint's context), CONNECT (client id, user name and
  password, clean or persistent session; MQTT 3.1.1 or 5 with a session
  expiry), CONNACK, SUBSCRIBE/SUBACK, PINGREQ every keepalive (no answer within
  a keepalive: the connection is lost), DISCONNECT on leaving. Reconnecting
  (with the endpoint's backoff, and failover) is the link's business.

Every failure of the connection is a :class:`FeedConnectionError` (a
:class:`~roommon.core.errors.FeedError`) whose message says what happened;
a TLS context that does not load is the endpoint's
:class:`~roommon.transports.broker.BrokerTlsError`, which ends the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import struct
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Final, Self, TypeVar

from roommon.core.clock import Clock, RealClock
from roommon.core.errors import FeedError
from roommon.core.log import get_logger
from roommon.transports.broker import BrokerEndpoint, connect

log = get_logger(__name__)

_T = TypeVar("_T")

#: One read's messages: (topic as the broker sent it, payload).
Messages = list[tuple[bytes, bytes]]
MessagesHandler = Callable[[Messages], None]

CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBACK: Final = 9
PINGRESP: Final = 13
DISCONNECT: Final = 14

_PINGREQ: Final = b"\xc0\x00"
_DISCONNECT: Final = b"\xe0\x00"
_PUBACK = struct.Struct(">BBH")

#: MQTT 3.1.1 CONNACK return codes, in words.
CONNACK_311: Final = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
#: Filters per SUBSCRIBE packet: several hundred rooms' filters are not one huge packet.
SUBSCRIBE_BATCH = 100


class FeedConnectionError(FeedError):
    """The feed connection could not be made, was refused, or was lost; the message says
    which and why."""


class MalformedPacketError(FeedConnectionError):
    """The broker sent bytes that are not a valid MQTT packet (the message says what is
    wrong, naming the packet type); the connection is dropped. ``parsed``: the read's
    packets before it, as :meth:`PacketParser.feed` returns them."""

    parsed: tuple[Messages, list[int], list[tuple[int, int, bytes]]] = ([], [], [])


# ---------------------------------------------------------------------- bytes -> packets


def _varint(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """A variable byte integer at ``pos``: (value, position after it), or (-1, pos) when
    the bytes up to ``end`` do not hold all of it yet."""
    value = 0
    for i in range(4):
        if pos + i >= end:
            return -1, pos
        b = buf[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return value, pos + i + 1
    raise MalformedPacketError(f"{what}: a variable length integer longer than four bytes")


class PacketParser:
    """Splits the byte stream from the broker into packets.

    :meth:`feed` takes a read's bytes and returns its complete packets: the
    PUBLISH packets as (topic, payload), the packet ids of the QoS 1 ones (to
    be acknowledged), and every other packet as (type, flags, body). Slices of
    the read, no copy per byte.
    """

    __slots__ = ("_buf", "_v5")

    def __init__(self, *, v5: bool) -> None:
        self._v5 = v5
        self._buf = b""

    @property
    def buffered(self) -> int:
        """Bytes of a packet not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> tuple[Messages, list[int], list[tuple[int, int, bytes]]]:
        """The complete packets of the bytes so far; MalformedPacketError (with the packets
        before it) at the first one that is not MQTT."""
        buf = self._buf + data if self._buf else data
        messages: Messages = []
        acks: list[int] = []
        control: list[tuple[int, int, bytes]] = []
        try:
            pos = self._packets(buf, messages, acks, control)
        except MalformedPacketError as exc:
            exc.parsed = (messages, acks, control)
            self._buf = b""
            raise
        self._buf = buf[pos:] if pos < len(buf) else b""
        return messages, acks, control

    def _packets(
        self,
        buf: bytes,
        messages: Messages,
        acks: list[int],
        control: list[tuple[int, int, bytes]],
    ) -> int:
        """Parse ``buf``'s complete packets into the lists; the position after the last."""
        n = len(buf)
        pos = 0
        v5 = self._v5
        while n - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1]
            start = pos + 2
            if length >= 0x80:
                length, start = _varint(buf, pos + 1, n, f"packet type {first >> 4}")
                if length < 0:
                    break
            end = start + length
            if end > n:
                break
            if first >> 4 == PUBLISH:
                if length < 2:
                    raise MalformedPacketError(f"PUBLISH of {length} bytes (no topic length)")
                p = start + 2 + ((buf[start] << 8) | buf[start + 1])
                topic_end = p
                qos = (first >> 1) & 3
                if qos:
                    if qos != 1:
                        raise MalformedPacketError(
                            f"PUBLISH with QoS {qos} (subscribed with QoS 1 at most)"
                        )
                    if p + 2 > end:
                        raise MalformedPacketError(
                            f"PUBLISH of {length} bytes whose topic and packet id run past its end"
                        )
                    acks.append((buf[p] << 8) | buf[p + 1])
                    p += 2
                if v5 and p < end:
                    plen, p = _varint(buf, p, end, "PUBLISH properties")
                    p = end + 1 if plen < 0 else p + plen
                if p > end:
                    raise MalformedPacketError(
                        f"PUBLISH of {length} bytes whose topic, packet id or properties "
                        "run past its end"
                    )
                messages.append((buf[start + 2 : topic_end], buf[p:end]))
            else:
                control.append((first >> 4, first & 0x0F, buf[start:end]))
            pos = end
        return pos


# ---------------------------------------------------------------------- packets -> bytes


def _str(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    n = len(body)
    length = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        length.append(b | 0x80 if n else b)
        if not n:
            return bytes([first]) + bytes(length) + body


def connect_packet(
    *,
    client_id: str,
    keepalive_s: int,
    clean: bool,
    v5: bool,
    username: str | None = None,
    password: str | None = None,
    session_expiry_s: int | None = None,
) -> bytes:
    """A CONNECT packet (MQTT 3.1.1 or 5), without a will."""
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = _str("MQTT") + bytes([5 if v5 else 4, flags]) + keepalive_s.to_bytes(2, "big")
    if v5:
        props = b"" if session_expiry_s is None else b"\x11" + session_expiry_s.to_bytes(4, "big")
        body += _packet(0, props)[1:]  # the properties' length, then the properties
    body += _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return _packet(0x10, body)


def subscribe_packet(packet_id: int, filters: Sequence[str], *, qos: int, v5: bool) -> bytes:
    body = packet_id.to_bytes(2, "big") + (b"\x00" if v5 else b"")
    body += b"".join(_str(f) + bytes([qos]) for f in filters)
    return _packet(0x82, body)


# ---------------------------------------------------------------------- the protocol


class _FeedProtocol(asyncio.Protocol):
    """One connection's bytes: parsed a read at a time, its messages handed over in one
    call, its PUBACKs written in one write."""

    def __init__(self, *, v5: bool, on_messages: MessagesHandler) -> None:
        self._parser = PacketParser(v5=v5)
        self._v5 = v5
        self._on_messages = on_messages
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        #: (session present, return code) of the CONNACK.
        self.connack: asyncio.Future[tuple[bool, int]] = loop.create_future()
        #: Done when the connection has ended: its reason (a FeedConnectionError), or None
        #: when this side closed it.
        self.closed: asyncio.Future[None] = loop.create_future()
        self.subacks: dict[int, asyncio.Future[bytes]] = {}
        #: Something was received since the last PINGREQ.
        self.alive = True
        #: This side is closing the connection (its end is no failure).
        self.leaving = False
        self.messages = 0
        self.reads = 0
        self.pingresps = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.alive = True
        self.reads += 1
        error = None
        try:
            messages, acks, control = self._parser.feed(data)
        except MalformedPacketError as exc:  # what came before it is good
            (messages, acks, control), error = exc.parsed, exc
        if messages:
            self.messages += len(messages)
            self._on_messages(messages)
        if acks:
            assert self.transport is not None
            self.transport.write(b"".join(_PUBACK.pack(0x40, 2, pid) for pid in acks))
        for kind, flags, body in control:
            self._control(kind, flags, body)
        if error is not None:
            self.fail(error)

    def _control(self, kind: int, flags: int, body: bytes) -> None:
        if kind == CONNACK and len(body) >= 2 and not self.connack.done():
            self.connack.set_result((bool(body[0] & 1), body[1]))
        elif kind == SUBACK and len(body) >= 2:
            fut = self.subacks.pop(int.from_bytes(body[:2], "big"), None)
            if fut is None or fut.done():
                self.fail(MalformedPacketError(f"SUBACK for packet id {body[:2].hex()} not sent"))
            else:
                fut.set_result(body[2:])
        elif kind == PINGRESP:
            self.pingresps += 1  # (``alive`` is set by any read)
        elif kind == DISCONNECT and self._v5:
            code = body[0] if body else 0
            self.fail(FeedConnectionError(f"the broker disconnected (reason code {code})"))
        else:
            self.fail(
                MalformedPacketError(
                    f"unexpected packet type {kind} (flags {flags:#x}, {len(body)} bytes)"
                )
            )

    def fail(self, exc: FeedConnectionError) -> None:
        """End the connection with ``exc`` as its reason."""
        if not self.closed.done():
            self.closed.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.leaving and not self.closed.done():
            self.closed.set_result(None)
        elif not self.closed.done():
            why = f": {exc}" if exc is not None else ""
            err = FeedConnectionError(f"connection closed by the broker{why}")
            err.__cause__ = exc
            self.closed.set_exception(err)
        waiting: list[asyncio.Future[tuple[bool, int]] | asyncio.Future[bytes]] = [self.connack]
        for fut in [*waiting, *self.subacks.values()]:
            if not fut.done():
                fut.cancel()


class FeedSubscriber:
    """One feed connection (see module doc): ``async with`` connects and receives until
    the block ends; :meth:`subscribe`, then :meth:`wait_closed` until it fails.

    ``on_messages`` gets each read's messages in one list (topic bytes, payload); it
    must be quick and must not raise (it routes; it does not wait).
    ``keepalive_clock``: the PINGREQ timer's clock. It is the wire's time with a real
    peer (as paho's keepalive is for the control connection), not the daemon's clock,
    which a test may move by minutes in a moment.
    """

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        *,
        client_id: str,
        on_messages: MessagesHandler,
        clean: bool = True,
        session_expiry_s: int | None = None,
        connect_timeout_s: float | None = None,
        keepalive_clock: Clock | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._client_id = client_id
        self._on_messages = on_messages
        self._clean = clean
        self._session_expiry_s = session_expiry_s
        self._v5 = endpoint.feed_protocol == "5" and endpoint.protocol == "5"
        self._timeout = connect_timeout_s or float(endpoint.keepalive_s)
        self._clock = keepalive_clock or RealClock()
        self._ids = itertools.cycle(range(1, 65536))
        self._protocol: _FeedProtocol | None = None
        self._pinger: asyncio.Task[None] | None = None
        #: The CONNACK's session-present flag.
        self.session_present = False

    @property
    def protocol_version(self) -> str:
        return "5" if self._v5 else "3.1.1"

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection's transport (``pause_reading``: tests of a reader too busy to read)."""
        return self._protocol.transport if self._protocol is not None else None

    @property
    def messages(self) -> int:
        """Messages received on this connection."""
        return self._protocol.messages if self._protocol is not None else 0

    async def __aenter__(self) -> Self:
        ep = self._endpoint
        tls = ep.tls_context()  # BrokerTlsError (a file that does not load) goes on up
        where = f"{ep.url}"
        try:
            async with asyncio.timeout(self._timeout):
                proto = _FeedProtocol(v5=self._v5, on_messages=self._on_messages)
                self._protocol = proto
                proto.transport = await connect(proto, ep.host, ep.port, tls)
                assert proto.transport is not None
                proto.transport.write(
                    connect_packet(
                        client_id=self._client_id,
                        keepalive_s=ep.keepalive_s,
                        clean=self._clean,
                        v5=self._v5,
                        username=ep.username,
                        password=ep.password,
                        session_expiry_s=self._session_expiry_s,
                    )
                )
                self.session_present, code = await self._answer(proto.connack)
        except TimeoutError as exc:
            self._abort()
            raise FeedConnectionError(
                f"no CONNACK from {where} within {self._timeout:g} s"
            ) from exc
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, a TLS handshake refused
            self._abort()
            raise FeedConnectionError(f"cannot connect to {where}: {exc}") from exc
        except FeedConnectionError as exc:
            self._abort()
            if tls is None or "[SSL" in str(exc):
                raise
            # In TLS 1.3 a refused client certificate is an alert after the handshake
            # that a reset can overtake: a second connection reads the broker's verdict.
            verdict = await ep.tls_verdict(min(self._timeout, 2.0), ctx=tls)
            if verdict is None:
                raise
            raise FeedConnectionError(f"{exc} ({verdict})") from exc
        except BaseException:
            self._abort()
            raise
        if code:
            self._abort()
            words = CONNACK_311.get(code, "refused") if not self._v5 else "refused"
            raise FeedConnectionError(f"{where} refused the connection: {words} (code {code})")
        self._pinger = asyncio.create_task(self._keepalive(), name="mqtt-feed-keepalive")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        proto = self._protocol
        if proto is not None and proto.transport is not None and not proto.closed.done():
            proto.leaving = True
            proto.transport.write(_DISCONNECT)
            proto.transport.close()
            # TLS closes with a shutdown exchange: wait for it (briefly), never leave the
            # socket to the garbage collector.
            await asyncio.wait((proto.closed,), timeout=1.0)
            if not proto.closed.done():
                proto.transport.abort()
        if proto is not None and proto.closed.done() and not proto.closed.cancelled():
            proto.closed.exception()  # retrieved: no "exception never retrieved" warning

    def _abort(self) -> None:
        proto = self._protocol
        if proto is not None and proto.transport is not None:
            proto.leaving = True
            proto.transport.abort()
            if proto.closed.done() and not proto.closed.cancelled():
                proto.closed.exception()

    async def _answer(self, fut: asyncio.Future[_T]) -> _T:
        """``fut``'s result, or the connection's end as a FeedConnectionError."""
        proto = self._protocol
        assert proto is not None
        await asyncio.wait((fut, proto.closed), return_when=asyncio.FIRST_COMPLETED)
        if fut.done() and not fut.cancelled():
            return fut.result()
        if proto.closed.done():
            proto.closed.result()  # raises the reason
        raise FeedConnectionError("connection closed")

    async def subscribe(self, filters: Iterable[str], *, qos: int = 1) -> None:
        """Subscribe to ``filters``, :data:`SUBSCRIBE_BATCH` per packet, all in flight at
        once; a filter the broker refuses is a FeedConnectionError naming it."""
        proto = self._protocol
        assert proto is not None
        assert proto.transport is not None
        filters = list(filters)
        waiting: list[tuple[list[str], asyncio.Future[bytes]]] = []
        for i in range(0, len(filters), SUBSCRIBE_BATCH):
            batch = filters[i : i + SUBSCRIBE_BATCH]
            pid = next(self._ids)
            fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            proto.subacks[pid] = fut
            proto.transport.write(subscribe_packet(pid, batch, qos=qos, v5=self._v5))
            waiting.append((batch, fut))
        for batch, fut in waiting:
            codes = await self._answer(fut)
            if self._v5 and codes:  # the SUBACK's properties come first
                plen, p = _varint(codes, 0, len(codes), "SUBACK properties")
                codes = codes[p + max(plen, 0) :]
            refused = [f for f, c in zip(batch, codes, strict=False) if c >= 0x80]
            if refused or len(codes) != len(batch):
                raise FeedConnectionError(
                    f"the broker refused the subscription to {', '.join(refused) or batch[0]}"
                )

    async def wait_closed(self) -> None:
        """Until the connection ends: then raise its reason (a FeedConnectionError)."""
        proto = self._protocol
        assert proto is not None
        await asyncio.shield(proto.closed)
        raise FeedConnectionError("connection closed")

    async def _keepalive(self) -> None:
        """A PINGREQ every keepalive; nothing received for a whole keepalive after one:
        the broker is gone (or hung), the connection is dropped."""
        proto = self._protocol
        assert proto is not None
        assert proto.transport is not None
        keepalive = self._endpoint.keepalive_s
        pinged = False
        while True:
            await self._clock.sleep(keepalive)
            if pinged and not proto.alive:
                proto.fail(
                    FeedConnectionError(
                        f"nothing from the broker within the keepalive ({keepalive} s)"
                    )
                )
                return
            proto.alive = False
            proto.transport.write(_PINGREQ)
            pinged = True
