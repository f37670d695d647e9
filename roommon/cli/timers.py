"""``roommon timers``: the nurses' terminal view of every room's recovery, read from the broker.

A subscriber like any nurse station: it reads the retained
:class:`~roommon.recovery.messages.TimerMessage` of every room
(``roommon/v1/SITE/+/timer``) and never talks to the daemon otherwise.
Remaining times are computed from the absolute deadlines and this machine's
clock, so the view keeps counting down between messages, and it says so when
the last message of a room is old (the daemon may be down).

``--once`` prints one snapshot and exits once the broker has delivered the
retained messages. MQTT marks no end of the retained set, so the view
publishes a probe message to a topic of its own after subscribing: the broker
delivers in order on one connection, so the probe coming back means every
retained timer is in. If the broker's ACL refuses the probe, ``--wait``
seconds bound the wait instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import aiomqtt
from pydantic import ValidationError

from roommon.core.clock import Clock, RealClock
from roommon.core.errors import ConfigError, UsageError
from roommon.core.log import get_logger
from roommon.transports.broker import BrokerEndpoint, parse_broker_url
from roommon.wire.timer import TimerMessage
from roommon.wire.topics import PREFIX, Topics

log = get_logger(__name__)

#: A room's timer message older than this is flagged: the daemon publishes on
#: every change and at least every few seconds while a recovery runs.
STALE_AFTER_S = 30.0
REFRESH_S = 1.0

_RED, _YELLOW, _BOLD, _RESET = "\x1b[31;1m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
_CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimersSource:
    """The broker to read and the site whose rooms to show."""

    broker: BrokerEndpoint
    site: str


# --------------------------------------------------------------------------- rendering


def _hms(seconds: float) -> str:
    s = round(abs(seconds))
    return f"{'-' if seconds < 0 else ''}{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _clock_time(t: float, *, utc: bool) -> str:
    dt = datetime.fromtimestamp(t, tz=UTC)
    return (dt if utc else dt.astimezone()).strftime("%H:%M")


def render(
    timers: Mapping[str, TimerMessage], now: float, *, utc: bool = False, color: bool = False
) -> str:
    """Every room's recovery as text, as of ``now`` (times as HH:MM, local unless ``utc``)."""

    def paint(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    def hhmm(t: float) -> str:
        return _clock_time(t, utc=utc)

    zone = "UTC" if utc else "local time"
    lines = [f"Recovery timers at {hhmm(now)} ({zone}), {len(timers)} room(s)"]
    if not timers:
        lines.append("  no room has published a timer yet")
    for room in sorted(timers):
        m = timers[room]
        head = f"{room}: {m.state.upper().replace('_', ' ')}"
        if m.procedure:
            head += f" ({m.procedure})"
        if now - m.t > STALE_AFTER_S:
            head += paint(f"  [last update {_hms(now - m.t)} ago]", _YELLOW)
        lines.append(paint(head, _BOLD))
        if m.state == "idle" or m.started is None:
            continue
        if m.ended is not None:
            how = {"target": "target reached", "early": "ended early", "cancelled": "cancelled"}
            who = f" by {m.ended.by}" if m.ended.by else ""
            why = f": {m.ended.detail}" if m.ended.detail else ""
            lines.append(f"  {how[m.ended.reason]} at {hhmm(m.ended.t)}{who}{why}")
            continue
        lines.append(
            f"  started {hhmm(m.started)} (injections: {m.injections}, restarts: {m.restarts})"
            + ("" if m.confirmed is not None else "  NOT CONFIRMED")
        )
        if m.state == "interrupted":
            lines.append("  injection in progress: the wait restarts when it ends")
            continue
        if m.min_deadline is not None:
            left = m.min_deadline - now
            state = "reached" if left <= 0 else f"in {_hms(left)}"
            lines.append(f"  minimum bed rest {hhmm(m.min_deadline)}  {state}")
        if m.target_deadline is not None:
            left = m.target_deadline - now
            state = "reached" if left <= 0 else f"in {_hms(left)}"
            ext = f"  (extended {_hms(m.extended_s)})" if m.extended_s else ""
            lines.append(f"  target           {hhmm(m.target_deadline)}  {state}{ext}")
        overdue = [
            c
            for c in m.checks
            if c.status != "done" and (c.status == "overdue" or c.overdue_at <= now)
        ]
        upcoming = [c for c in m.checks if c.status != "done" and c not in overdue]
        if upcoming:
            c = upcoming[0]
            when = "DUE NOW" if c.due <= now else f"in {_hms(c.due - now)}"
            lines.append(f"  next check #{c.no} at {hhmm(c.due)}  {when}")
        elif not overdue:
            lines.append("  all checks done")
        for c in overdue:
            lines.append(
                paint(f"  OVERDUE check #{c.no} due {hhmm(c.due)}, {_hms(now - c.due)} ago", _RED)
            )
        done = [c for c in m.checks if c.status == "done"]
        if done:
            last = done[-1]
            by = f" by {last.done_by}" if last.done_by else ""
            assert last.done_t is not None
            lines.append(
                f"  checks done {len(done)}/{len(m.checks)}, last #{last.no} "
                f"at {hhmm(last.done_t)}{by}"
            )
        for a in m.alarms:
            text = f"  alarm {a.priority.upper()} {a.code} since {hhmm(a.since)}"
            lines.append(paint(text, _RED if a.priority == "high" else _YELLOW))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- broker


def _apply(timers: dict[str, TimerMessage], topic: str, payload: bytes, site: str) -> bool:
    """Update ``timers`` from one message; True when something changed."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{PREFIX}/{site}" or parts[4] != "timer":
        return False
    room = parts[3]
    if not payload:  # an empty retained message clears the room's timer
        return timers.pop(room, None) is not None
    try:
        msg = TimerMessage.model_validate_json(payload)
    except ValidationError as exc:
        log.warning("timer_message_rejected", room=room, error=str(exc.errors()[0]["msg"]))
        return False
    timers[room] = msg
    return True


async def watch(
    source: TimersSource,
    *,
    clock: Clock,
    out: TextIO,
    once: bool,
    wait_s: float = 3.0,
    utc: bool = False,
    color: bool = False,
    live_tty: bool = False,
) -> int:
    """Subscribe and render; with ``once``, render one snapshot and return."""
    timers: dict[str, TimerMessage] = {}
    client_id = f"roommon-timers-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    broker, site = source.broker, source.site
    # Under the account's name when there is one: the shipped ACL lets an account write
    # only its own probe (config/mosquitto/roommon.acl), and its client id IS its name.
    probe = f"{PREFIX}/{site}/_view/{broker.username or client_id}"
    backoff = broker.backoff()
    rng = random.Random()
    attempt = 0
    while True:
        try:
            async with broker.client(identifier=client_id) as client:
                attempt = 0
                await client.subscribe(Topics(site).timer_filter(), qos=1)
                if once:
                    await client.subscribe(probe, qos=1)
                    await client.publish(probe, b"", qos=1)
                    await _until_probe(client, timers, site, probe, wait_s)
                    out.write(render(timers, clock.now(), utc=utc, color=color))
                    out.flush()
                    return 0
                await _live(client, timers, site, clock, out, utc, color, live_tty)
        except aiomqtt.MqttError as exc:
            if once:
                print(f"roommon timers: broker {broker.url}: {exc}", file=sys.stderr)
                return 1
            delay = backoff.delay(attempt, rng)
            attempt += 1
            out.write(f"broker {broker.url} unreachable ({exc}); retrying in {delay:.1f} s\n")
            out.flush()
            await clock.sleep(delay)


async def _until_probe(
    client: aiomqtt.Client, timers: dict[str, TimerMessage], site: str, probe: str, wait_s: float
) -> None:
    try:
        async with asyncio.timeout(wait_s):
            async for m in client.messages:
                if str(m.topic) == probe:
                    return
                payload = m.payload if isinstance(m.payload, bytes) else b""
                _apply(timers, str(m.topic), payload, site)
    except TimeoutError:
        log.info("timers_probe_not_returned", wait_s=wait_s)  # e.g. the ACL refused it


async def _live(
    client: aiomqtt.Client,
    timers: dict[str, TimerMessage],
    site: str,
    clock: Clock,
    out: TextIO,
    utc: bool,
    color: bool,
    tty: bool,
) -> None:
    changed = asyncio.Event()

    async def read() -> None:
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else b""
            if _apply(timers, str(m.topic), payload, site):
                changed.set()

    async def draw() -> None:
        # On a terminal: redraw every second so the countdowns move. Otherwise
        # (a log, a pipe): print a block when a timer changes, and once a minute.
        quiet = 0.0
        while True:
            if tty:
                out.write(_CLEAR + render(timers, clock.now(), utc=utc, color=color))
                out.flush()
                await clock.sleep(REFRESH_S)
                continue
            if changed.is_set() or quiet >= 60.0:
                changed.clear()
                quiet = 0.0
                out.write(render(timers, clock.now(), utc=utc) + "\n")
                out.flush()
            await clock.sleep(REFRESH_S)
            quiet += REFRESH_S

    async with asyncio.TaskGroup() as tg:
        tg.create_task(read(), name="timers-read")
        tg.create_task(draw(), name="timers-draw")


# --------------------------------------------------------------------------- command line


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``timers`` on the main CLI's subparsers; handler in ``func``."""
    p = subparsers.add_parser(
        "timers",
        help="show every room's recovery timer live, from the broker",
        description="Show every room's recovery: remaining time to the minimum and the "
        "target bed rest, the next check and overdue checks, refreshed every second.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", "-c", help="daemon config file (broker, credentials, site)")
    src.add_argument("--broker", help="broker URL, e.g. mqtt://127.0.0.1:1883 (needs --site)")
    p.add_argument("--site", help="site id (default: the config's)")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument(
        "--wait",
        type=float,
        default=3.0,
        help="with --once: longest wait for the retained timers (default 3 s)",
    )
    p.add_argument("--utc", action="store_true", help="show times in UTC, not local time")
    p.set_defaults(func=run_timers)


def _source(args: argparse.Namespace) -> TimersSource:
    """The broker and site to read; UsageError or ConfigError when they cannot be known."""
    if args.config is not None:
        from roommon.config import load_config

        config = load_config(args.config)
        broker = BrokerEndpoint.from_config(config.broker)
        return TimersSource(broker=broker, site=args.site or config.site.id)
    host, port, tls = parse_broker_url(args.broker)
    if not args.site:
        raise UsageError("--site: required with --broker")
    return TimersSource(broker=BrokerEndpoint(host=host, port=port, tls=tls), site=args.site)


def run_timers(
    args: argparse.Namespace, *, out: TextIO | None = None, clock: Clock | None = None
) -> int:
    """Handler of ``roommon timers``; returns the process exit status (2: bad usage)."""
    stream = out if out is not None else sys.stdout
    try:
        source = _source(args)
    except ConfigError as err:
        print("\n".join(err.lines()), file=sys.stderr)
        return 2
    except UsageError as err:
        print(f"roommon timers: {err}", file=sys.stderr)
        return 2
    tty = stream.isatty()
    coro = watch(
        source,
        clock=clock or RealClock(),
        out=stream,
        once=args.once,
        wait_s=args.wait,
        utc=args.utc,
        color=tty,
        live_tty=tty,
    )
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        return 0
