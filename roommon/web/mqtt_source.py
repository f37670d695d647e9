"""The display's broker connection: the site's topics in, a signed-in user's commands out.

Read-only except for one thing: commands, published on
``.../ROOM/command/CLIENT`` under the display's own client id (the only topic
its broker ACL lets it write, docs/display.md), each carrying the signed-in
user as ``actor``; the daemon's reply arrives on ``.../ROOM/reply/CLIENT``
and is matched by command id. The connection is supervised like the
daemon's: connect, subscribe, read until it fails, wait a capped jittered
backoff on the clock, again; the view is told when the link goes up or down,
so every page can say so.

Waveform feeds are followed for every room (``waves="all"``, the default: alarm
recall then covers every room; with the receive path of
:mod:`roommon.transports.receive` that is about 10 % of a core at 100 rooms,
bench/display.py), or only for the rooms some page shows (``waves="shown"``: a
room's feeds are subscribed while a page watches it). Numeric feeds are always
followed: they say whether a room's data are simulated or replayed.

Payloads are parsed here (the edge) and handed to the
:class:`~roommon.web.site.SiteView` as dicts; one that does not parse is
counted, logged and skipped. The daemon has already judged every feed
payload; the display only needs what it draws.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import uuid
from types import TracebackType
from typing import Any, Literal, Self

import aiomqtt
import numpy as np

from roommon.config import Config
from roommon.core.clock import Clock
from roommon.core.log import get_logger
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.receive import InboundMessage, receive
from roommon.web.site import Message, SiteView, wave_kind
from roommon.wire.topics import PREFIX, Topics

log = get_logger(__name__)

REPLY_TIMEOUT_S = 5.0
_DTYPES = {"i16le-b64": "<i2", "f32le-b64": "<f4"}


def decode_wave(raw: Message) -> tuple[str, float, float, np.ndarray[Any, np.dtype[Any]]]:
    """(kind, fs, t0, samples) of a waveform feed payload; ValueError naming what is wrong."""
    try:
        kind, fs, t0 = str(raw["kind"]), float(raw["fs"]), float(raw["t0"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"kind, fs and t0 are needed: {exc}") from exc
    encoding = raw.get("encoding", "json")
    if encoding == "json":
        samples = np.asarray(raw.get("samples"), dtype=np.float64)
    elif encoding in _DTYPES:
        try:
            data = base64.b64decode(str(raw.get("data", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"data: not base64 ({exc})") from exc
        gain, offset = float(raw.get("gain", 1.0)), float(raw.get("offset", 0.0))
        dtype = np.dtype(_DTYPES[encoding])
        usable = len(data) - len(data) % dtype.itemsize
        samples = np.frombuffer(data[:usable], dtype=dtype).astype(np.float64) * gain + offset
    else:
        raise ValueError(f"encoding: unknown {encoding!r}")
    if samples.ndim != 1 or not 0 < fs <= 2000:
        raise ValueError("samples must be a list and fs in 0..2000")
    return kind, fs, t0, samples


class MqttSource:
    """Async context manager: the display's supervised, read-mostly broker connection."""

    def __init__(
        self,
        *,
        target: BrokerEndpoint,
        site: str,
        client_id: str,
        view: SiteView,
        clock: Clock,
        config: Config | None = None,
        waves: Literal["shown", "all"] = "all",
        rng: random.Random | None = None,
    ) -> None:
        self._target = target
        self._topics = Topics(site)
        self.client_id = client_id
        self._view = view
        self._clock = clock
        self._rng = rng or random.Random()
        self._client: aiomqtt.Client | None = None
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._base = f"{PREFIX}/{site}"
        self.connects = 0
        self._waves = waves if config is not None else "all"
        self._wave_feeds: dict[str, list[str]] = {}  # room -> its waveform feeds
        self._reading_feeds: list[str] = []  # topics of every numeric feed
        for room_id, room in config.rooms.items() if config is not None else []:
            for name, feed in room.feeds.items():
                if feed.kind.is_waveform:
                    self._wave_feeds.setdefault(room_id, []).append(name)
                else:
                    self._reading_feeds.append(self._topics.feed(room_id, name))
        self._shown: set[str] = set()
        self._shown_changed = asyncio.Event()
        view.watch_listeners.append(self._on_shown)

    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._supervise(), name="display-mqtt")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        assert self._task is not None
        self._task.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)

    def subscriptions(self) -> list[str]:
        """What the display always follows; waveforms of shown rooms come and go."""
        b = self._base
        feeds = [f"{b}/+/feed/+"] if self._waves == "all" else self._reading_feeds
        return [
            f"{b}/+/alarm",
            f"{b}/+/state",
            f"{b}/+/event",
            f"{b}/+/timer",
            f"{b}/+/timer/event",
            *feeds,
            f"{b}/status/+",
            f"{b}/+/reply/{self.client_id}",
        ]

    def _on_shown(self, rooms: set[str]) -> None:
        self._shown = set(rooms)
        self._shown_changed.set()

    def wave_topics(self) -> set[str]:
        if self._waves == "all":
            return set()
        return {
            self._topics.feed(room, feed)
            for room in self._shown
            for feed in self._wave_feeds.get(room, [])
        }

    async def _follow_shown(self, client: aiomqtt.Client) -> None:
        """Follow the waveform feeds of the rooms some page shows, and only those."""
        followed: set[str] = set()
        while True:
            self._shown_changed.clear()
            wanted = self.wave_topics()
            for topic in sorted(wanted - followed):
                await client.subscribe(topic, qos=0)
            for topic in sorted(followed - wanted):
                await client.unsubscribe(topic)
            followed = wanted
            await self._shown_changed.wait()

    async def _read(self, client: aiomqtt.Client) -> None:
        """Every message to :meth:`handle`, from paho's own callback (no task per message:
        roommon.transports.receive); returns by raising when the connection ends."""
        handle = self.handle

        def on_message(message: InboundMessage) -> None:
            try:
                handle(str(message.topic), message.payload)
            except Exception:  # supervisor (STYLE rule 6): inside paho's read, never raise
                log.exception("display_message_failed", topic=str(message.topic))

        await receive(client, on_message)

    async def _supervise(self) -> None:
        attempt = 0
        t = self._target
        while True:
            try:
                # 3.1.1: the display needs no v5 feature, and paho builds a v5
                # properties object for every message (a third of the CPU at 100 rooms)
                async with t.client(identifier=self.client_id, mqtt311=True) as client:
                    for topic in self.subscriptions():
                        await client.subscribe(topic, qos=1)
                    self._client = client
                    self.connects += 1
                    attempt = 0
                    self._view.set_link(True)
                    log.info("display_mqtt_connected", host=t.host, port=t.port)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._read(client), name="display-mqtt-reader")
                        tg.create_task(self._follow_shown(client), name="display-mqtt-waves")
            except* aiomqtt.MqttError as eg:
                log.warning(
                    "display_mqtt_disconnected",
                    broker=t.url,
                    error="; ".join(str(e) for e in eg.exceptions),
                )
            finally:
                self._client = None
                self._view.set_link(False)
            await t.backoff().wait(attempt, self._clock, self._rng)
            attempt += 1

    # ------------------------------------------------------------------ inbound

    def handle(self, topic: str, payload: object) -> None:
        """Route one message to the view; never raises on bad input."""
        if not isinstance(payload, bytes | bytearray):
            self._view.bad_message(topic, "payload is not bytes")
            return
        try:
            raw = json.loads(payload)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            self._route(topic, raw)
        except (ValueError, KeyError, TypeError) as exc:
            self._view.bad_message(topic, str(exc))

    def _route(self, topic: str, raw: Message) -> None:
        rest = topic[len(self._base) + 1 :].split("/")
        view = self._view
        if rest[0] == "status" and len(rest) == 2:
            view.on_status(raw)
            return
        room, what = rest[0], rest[1:]
        if what == ["alarm"]:
            view.on_alarm(raw)
        elif what == ["state"]:
            view.on_state(raw)
        elif what == ["event"]:
            view.on_room_event(raw)
        elif what == ["timer"]:
            view.on_timer(raw)
        elif what == ["timer", "event"]:
            view.on_timer_event(raw)
        elif len(what) == 2 and what[0] == "feed":
            origin = str(raw.get("origin", "live"))
            if wave_kind(str(raw.get("kind"))):
                kind, fs, t0, samples = decode_wave(raw)
                view.on_wave(
                    room=room,
                    feed=what[1],
                    kind=kind,
                    fs=fs,
                    t0=t0,
                    samples=samples,
                    origin=origin,
                )
            else:
                view.on_reading(room, origin)
        elif len(what) == 2 and what[0] == "reply":
            future = self._waiting.get(str(raw.get("id")))
            if future is not None and not future.done():
                future.set_result(raw)

    # ------------------------------------------------------------------ commands

    async def command(self, room: str, command: Message, *, actor: str) -> Message:
        """Publish one command for ``actor`` and wait for the daemon's reply."""
        client = self._client
        cmd_id = f"d-{uuid.uuid4().hex[:12]}"
        if client is None:
            return {"ok": False, "reason": "no_broker", "detail": "", "id": cmd_id}
        payload = {**command, "v": 1, "id": cmd_id, "room": room, "actor": actor}
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[cmd_id] = future
        try:
            await client.publish(
                self._topics.command(room, self.client_id), json.dumps(payload), qos=1
            )
            async with asyncio.TaskGroup() as tg:
                timeout = tg.create_task(self._clock.sleep(REPLY_TIMEOUT_S), name="reply-timeout")
                future.add_done_callback(lambda _: timeout.cancel())
            if not future.done():
                return {"ok": False, "reason": "timeout", "detail": "", "id": cmd_id}
            return future.result()
        except aiomqtt.MqttError as exc:
            return {"ok": False, "reason": "no_broker", "detail": str(exc), "id": cmd_id}
        finally:
            self._waiting.pop(cmd_id, None)
