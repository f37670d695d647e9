"""A broker that keeps falling over: the daemon's link under flapping (issue 11).

:func:`broker_flap` runs a real daemon against a persistent Mosquitto that is
stopped and started every few seconds, SIGTERM and SIGKILL alternately, while
device gateways publish feed readings (QoS 1, store-and-forward) that raise
and clear alarms, nurses send QoS 1 commands (re-sending, with the same id and
bytes, one that has no reply after :data:`RESEND_S`, as a client that wants
an answer does), and a display subscribes to the alarms with a persistent
session. Everything is real: processes, sockets, SQLite; time is the wall
clock, because the broker's outages are.

It returns a :class:`FlapReport`: what was sent, what arrived, how far behind
the broker's return the daemon reconnected each time, and the problems found
(an alarm event missing or out of order, a command unanswered or answered
twice with different replies, a command applied twice, a reconnect later
than ``reconnect_max_s + keepalive_s``). ``tests/test_broker_flap.py`` runs
it for a few seconds, ``bench/broker_flap.py`` for the full minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from roommon.config import Config, parse_config
from roommon.core.clock import RealClock
from roommon.runtime.daemon import Daemon
from roommon.testing.broker import LOOPBACK, MosquittoBroker
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.mqtt import MqttLink
from roommon.transports.publisher import FeedPublisher
from roommon.transports.subscriber import FeedRecorder

SITE: Final = "s"
#: A nurse's client re-sends a command it has no reply to after this long. A SIGKILLed
#: broker can lose a command it acknowledged a moment before (not yet on its disk);
#: across a graceful restart the daemon's persistent session must lose nothing.
RESEND_S: Final = 6.0
KEEPALIVE_S: Final = 3
RECONNECT_MAX_S: Final = 1.0
#: Seconds the broker stays up, then down, between flaps (uniformly drawn).
UP_S: Final = (1.5, 3.0)
DOWN_S: Final = (0.5, 1.5)
#: Every third broker life ends this soon after it accepted the daemon's connection:
#: while the daemon subscribes and re-sends its outbox (issue 11, defect 6).
BRIEF_S: Final = (0.0, 0.05)


async def wait_until(
    predicate: Callable[[], bool], *, within: float = 10.0, step: float = 0.01
) -> None:
    """Poll a condition nothing signals (``within`` is only a safety net)."""
    clock = RealClock()
    async with asyncio.timeout(within):
        while not predicate():
            await clock.sleep(step)


@dataclass(slots=True)
class FlapReport:
    duration_s: float
    rooms: tuple[str, ...]
    stops: int = 0
    kills: int = 0
    #: Seconds from the broker listening again to the daemon's link being up, per restart.
    lags: list[float] = field(default_factory=list)
    #: Brief broker lives, ended while the daemon was starting its session (no lag measured).
    unmeasured: int = 0
    bound_s: float = RECONNECT_MAX_S + KEEPALIVE_S
    events: dict[str, int] = field(default_factory=dict)  # per room, the daemon's last seq
    received: dict[str, list[int]] = field(default_factory=dict)  # first copies, in order
    event_copies: int = 0
    commands: int = 0
    resends: int = 0
    #: Re-sends of a command the daemon never saw although the broker life that
    #: acknowledged it was not SIGKILLed: a command lost by the daemon's session.
    resends_unexplained: int = 0
    #: Re-sends of a command the daemon had answered, with no SIGKILL since: a late reply.
    resends_reply_late: int = 0
    #: Of those: the reply was still in the daemon's outbox (not acknowledged by the broker).
    resends_reply_unsent: int = 0
    replies: dict[str, list[bytes]] = field(default_factory=dict)
    applied: int = 0
    duplicates_seen_by_daemon: int = 0
    readings: int = 0
    #: Seconds from a command's first send to its first reply at the nurse.
    reply_s: list[float] = field(default_factory=list)

    def problems(self) -> list[str]:
        out: list[str] = []
        for room in self.rooms:
            # (events raised after the count was taken, by late data, may follow: ignored)
            want = list(range(1, self.events.get(room, 0) + 1))
            got = [seq for seq in self.received.get(room, []) if seq <= len(want)]
            if sorted(got) != want:
                missing = sorted(set(want) - set(got))
                out.append(f"{room}: alarm events missing at the subscriber: {missing[:20]}")
            elif got != want:
                at = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
                out.append(
                    f"{room}: alarm events out of order at the subscriber: seq "
                    f"{got[max(0, at - 3) : at + 8]} from the {at + 1}th"
                )
        unanswered = self.commands - len(self.replies)
        if unanswered:
            out.append(f"{unanswered} command(s) never answered")
        differing = [i for i, r in self.replies.items() if len(set(r)) > 1]
        if differing:
            out.append(f"command(s) answered twice with different replies: {differing[:10]}")
        if self.resends_unexplained:
            out.append(
                f"{self.resends_unexplained} command(s) never reached the daemon although the "
                "broker that acknowledged them was not SIGKILLed (lost by the daemon's session)"
            )
        if self.applied != self.commands:
            out.append(f"{self.applied} commands applied by the daemon for {self.commands} sent")
        late = [round(lag, 2) for lag in self.lags if lag > self.bound_s]
        if late:
            out.append(f"reconnects later than {self.bound_s} s after the broker's return: {late}")
        if not self.lags:
            out.append("the broker never flapped")
        return out

    @staticmethod
    def _spread(values: list[float]) -> str:
        if not values:
            return "-"
        q = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
        median = statistics.median(values)
        return f"median {median:.2f} s, p90 {q[8]:.2f} s, max {max(values):.2f} s"

    def lines(self) -> list[str]:
        events = sum(self.events.values())
        copies = self.event_copies - events
        reply_copies = sum(len(r) for r in self.replies.values()) - len(self.replies)
        lag = (
            f"max {max(self.lags):.2f} s, median {statistics.median(self.lags):.2f} s"
            if self.lags
            else "-"
        )
        return [
            f"broker flap: {self.duration_s:.0f} s, {self.stops} SIGTERM + {self.kills} SIGKILL",
            f"  feed readings published: {self.readings}",
            f"  alarm events: {events} raised by the daemon, "
            f"{sum(len(v) for v in self.received.values())} received (dedupe on event_id), "
            f"{copies} redelivered copies",
            f"  commands: {self.commands} sent, {len(self.replies)} answered, "
            f"{self.resends} re-sent by the nurses ({self.resends_unexplained} lost by the "
            f"daemon's session; {self.resends_reply_late} answered, the reply late with no "
            "SIGKILL since, "
            f"{self.resends_reply_unsent} of them still in the daemon's outbox), "
            f"{self.duplicates_seen_by_daemon} copies "
            f"recognised by the daemon, {self.applied} applied, {reply_copies} reply copies",
            f"  reply at the nurse after the first send: {self._spread(self.reply_s)}",
            f"  reconnect after the broker's return: {lag} (bound {self.bound_s} s = "
            f"reconnect_max_s + keepalive_s; {self.unmeasured} brief broker lives ended while "
            "the daemon was starting its session)",
        ]


def _config(port: int, state_dir: Path, rooms: tuple[str, ...]) -> Config:
    room = {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
        "checks": {"numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}},
    }
    return parse_config(
        {
            "site": {"id": SITE},
            "broker": {
                "port": port,
                "keepalive_s": KEEPALIVE_S,
                "reconnect_initial_s": 0.2,
                "reconnect_max_s": RECONNECT_MAX_S,
            },
            "daemon": {"state_dir": str(state_dir)},
            "rooms": dict.fromkeys(rooms, room),
        }
    )


async def broker_flap(
    *,
    state_dir: Path,
    duration_s: float,
    rooms: tuple[str, ...] = ("r1", "r2"),
    nurses: int = 2,
    seed: int = 0,
) -> FlapReport:
    """Run the flap for ``duration_s`` (then until everything is delivered); see module doc."""
    broker = MosquittoBroker(persistent=True)
    broker.start()
    try:
        return await _Flap(broker, rooms=rooms, nurses=nurses, seed=seed).run(state_dir, duration_s)
    finally:
        broker.close()


class _Flap:
    """One run: the daemon, its gateways, nurses and display, and the broker's flapping."""

    READING_PERIOD_S: Final = 0.1
    COMMAND_PERIOD_S: Final = 0.5

    def __init__(
        self, broker: MosquittoBroker, *, rooms: tuple[str, ...], nurses: int, seed: int
    ) -> None:
        self.broker = broker
        self.rooms = rooms
        self.nurses = [f"nurse-{n}" for n in range(nurses)]
        self.rng = random.Random(seed)
        self.clock = RealClock()
        self.target = BrokerEndpoint(
            host=LOOPBACK, port=broker.port, reconnect_max_s=RECONNECT_MAX_S
        )
        self.quiet = io.StringIO()  # the gateways' and subscribers' outage lines
        self.alarm_ids: dict[str, set[str]] = defaultdict(set)
        self.received: dict[str, list[int]] = defaultdict(list)
        self.sent: dict[str, tuple[str, bytes, float]] = {}  # id -> topic, payload, last sent
        self.replies: dict[str, list[bytes]] = defaultdict(list)
        self.stop = asyncio.Event()  # the gateways stop, the nurses send nothing new
        self.stop_nurses = False  # the nurses stop re-sending too
        self.kill_times: list[float] = []
        self.life = 0  # broker lives, counted from its first start
        self.life_end: dict[int, str] = {}  # how each ended: "stop" (SIGTERM) or "kill"
        self.accepted_in: dict[str, int] = {}  # command id -> the broker life that took it
        self.first_sent: dict[str, float] = {}
        self.last_seq: dict[str, int] = dict.fromkeys(rooms, 0)  # published by each gateway
        self.report = FlapReport(duration_s=0.0, rooms=rooms)

    async def run(self, state_dir: Path, duration_s: float) -> FlapReport:
        r = self.report
        r.duration_s = duration_s
        cfg = _config(self.broker.port, state_dir, self.rooms)
        async with Daemon(config=cfg, clock=self.clock) as daemon:
            self.daemon = daemon
            link = daemon.link
            assert link is not None
            await asyncio.wait_for(link.connected.wait(), 10)
            display = FeedRecorder(
                target=self.target,
                filters=[f"roommon/v1/{SITE}/+/alarm"],
                sink=self._on_alarm,
                clock=self.clock,
                err=self.quiet,
                client_id="flap-display",
            )
            async with display, asyncio.TaskGroup() as tg:
                gateways = [
                    tg.create_task(self._gateway(room), name=f"flap-gateway-{room}")
                    for room in self.rooms
                ]
                for nurse in self.nurses:
                    tg.create_task(self._nurse(nurse), name=f"flap-{nurse}")
                await self._flap(daemon, duration_s)
                # The gateways stop (nothing new is raised); the nurses re-send until
                # every command has its answer; the display gets what is still on its way.
                self.stop.set()
                for task in gateways:
                    await task
                # every reading the broker acknowledged reaches the daemon, then no more
                # events are raised (each reading raises or clears the room's alarm)
                with contextlib.suppress(TimeoutError):
                    await wait_until(
                        lambda: all(
                            daemon.engine_seq(room) >= self.last_seq[room] for room in self.rooms
                        ),
                        within=30,
                    )
                r.events = {room: daemon.engine_seq(room) for room in self.rooms}
                with contextlib.suppress(TimeoutError):
                    await wait_until(self._complete, within=60)
                r.events = {room: daemon.engine_seq(room) for room in self.rooms}
                self.stop_nurses = True
            r.applied = daemon.counters["commands_ok"] + daemon.counters["commands_refused"]
            r.duplicates_seen_by_daemon = daemon.counters["commands_duplicate"]
        r.received = dict(self.received)
        r.commands = len(self.sent)
        r.replies = dict(self.replies)
        return r

    def _complete(self) -> bool:
        events = all(
            len(self.alarm_ids[room]) >= self.daemon.engine_seq(room) for room in self.rooms
        )
        return events and len(self.replies) == len(self.sent)

    def _reply_pending(self, cmd_id: str) -> bool:
        """The daemon's reply to ``cmd_id`` waits in its outbox (no PUBACK from the broker)."""
        rows = self.daemon.store.pending(100_000)
        needle = b'"id":"%s"' % cmd_id.encode()
        return any(needle in r.payload for r in rows if "/reply/" in r.topic)

    def _on_alarm(self, _topic: str, payload: bytes, _t: float) -> None:
        event = json.loads(payload)
        self.report.event_copies += 1
        if event["event_id"] not in self.alarm_ids[event["room"]]:
            self.alarm_ids[event["room"]].add(event["event_id"])
            self.received[event["room"]].append(event["seq"])

    def _on_reply(self, _topic: str, payload: bytes, _t: float) -> None:
        cmd_id = json.loads(payload)["id"]
        if cmd_id not in self.replies and cmd_id in self.first_sent:
            self.report.reply_s.append(self.clock.monotonic() - self.first_sent[cmd_id])
        self.replies[cmd_id].append(payload)

    async def _flap(self, daemon: Daemon, duration_s: float) -> None:
        """Stop and start the broker until ``duration_s`` is over; time each reconnect.

        Every third broker life is brief: it ends just after the broker accepted
        the daemon's connection, while the daemon subscribes and re-sends its
        outbox (its redelivery), which must not stall it.
        """
        link = daemon.link
        assert link is not None
        end = self.clock.monotonic() + duration_s
        kill = False
        back = self.clock.monotonic()  # the broker is up since
        up_for = self.rng.uniform(*UP_S)
        brief = False
        for flap in itertools.count(1):
            await self.clock.sleep(max(0.0, back + up_for - self.clock.monotonic()))
            if self.clock.monotonic() >= end:
                return
            self.life_end[self.life] = "kill" if kill else "stop"
            if kill:
                self.broker.kill()
                self.kill_times.append(self.clock.monotonic())
                self.report.kills += 1
            else:
                self.broker.stop()
                self.report.stops += 1
            kill = not kill
            await self.clock.sleep(self.rng.uniform(*DOWN_S))
            brief = flap % 3 == 0
            before, accepted = link.connects, link.connacks
            self.broker.start()  # returns once the broker listens
            self.life += 1
            back = self.clock.monotonic()
            if brief:
                with contextlib.suppress(TimeoutError):
                    await wait_until(_accepted_more_than(link, accepted), within=10)
                up_for = self.clock.monotonic() - back + self.rng.uniform(*BRIEF_S)
                self.report.unmeasured += 1
                continue
            up_for = self.rng.uniform(*UP_S)
            await wait_until(_more_than(link, before), within=60)
            self.report.lags.append(self.clock.monotonic() - back)

    async def _gateway(self, room: str) -> None:
        """A device gateway: an SpO2 reading every 0.1 s, alternately below and above 90 %."""
        publisher = FeedPublisher(
            target=self.target,
            client_id=f"flap-gw-{room}",
            qos=1,
            clock=self.clock,
            err=self.quiet,
            name=f"gateway {room}",
        )
        topic = f"roommon/v1/{SITE}/{room}/feed/spo2"
        seq = 0
        async with publisher:
            while not self.stop.is_set():
                seq += 1
                reading = {
                    "v": 1,
                    "kind": "spo2",
                    "seq": seq,
                    "t": self.clock.now(),
                    "values": {"spo2": 80.0 if seq % 2 else 97.0},
                }
                await publisher.publish(topic, json.dumps(reading).encode())
                self.last_seq[room] = seq
                self.report.readings += 1
                await self.clock.sleep(self.READING_PERIOD_S)

    async def _nurse(self, nurse: str) -> None:
        """A nurse's tablet: a command every 0.5 s, re-sent while it has no reply."""
        publisher = FeedPublisher(
            target=self.target,
            client_id=f"flap-{nurse}-cmd",
            qos=1,
            clock=self.clock,
            err=self.quiet,
            name=nurse,
        )
        replies = FeedRecorder(
            target=self.target,
            filters=[f"roommon/v1/{SITE}/+/reply/{nurse}"],
            sink=self._on_reply,
            clock=self.clock,
            err=self.quiet,
            client_id=nurse,
        )
        n = 0
        next_command = self.clock.monotonic()
        async with publisher, replies:
            while not self.stop_nurses:
                now = self.clock.monotonic()
                if not self.stop.is_set() and now >= next_command:
                    n += 1
                    room = self.rooms[n % len(self.rooms)]
                    cmd_id = f"{nurse}-{n}"
                    body = {"v": 1, "id": cmd_id, "room": room, "action": "audio_pause"}
                    topic = f"roommon/v1/{SITE}/{room}/command/{nurse}"
                    payload = json.dumps(body).encode()
                    self.sent[cmd_id] = (topic, payload, now)
                    self.first_sent[cmd_id] = now
                    await publisher.publish(topic, payload)  # holds through an outage
                    self.accepted_in[cmd_id] = self.life
                    self.sent[cmd_id] = (topic, payload, self.clock.monotonic())
                    next_command = now + self.COMMAND_PERIOD_S
                for cmd_id, (topic, payload, at) in list(self.sent.items()):
                    mine = cmd_id.startswith(f"{nurse}-") and cmd_id not in self.replies
                    if mine and self.clock.monotonic() - at >= RESEND_S:
                        self.report.resends += 1
                        room = topic.split("/")[3]
                        if self.daemon.command_seen(room, nurse, cmd_id):
                            if not any(t >= at for t in self.kill_times):
                                self.report.resends_reply_late += 1
                                if self._reply_pending(cmd_id):
                                    self.report.resends_reply_unsent += 1
                        elif self.life_end.get(self.accepted_in[cmd_id]) != "kill":
                            # the broker life that acknowledged it ended gracefully, or
                            # runs still: the daemon's session must have had it
                            self.report.resends_unexplained += 1
                        await publisher.publish(topic, payload)
                        self.accepted_in[cmd_id] = self.life
                        self.sent[cmd_id] = (topic, payload, self.clock.monotonic())
                await self.clock.sleep(0.05)


def _more_than(link: MqttLink, connects: int) -> Callable[[], bool]:
    return lambda: link.connects > connects


def _accepted_more_than(link: MqttLink, connacks: int) -> Callable[[], bool]:
    return lambda: link.connacks > connacks
