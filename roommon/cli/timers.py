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
import io
import os
import random
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import aiomqtt
from pydantic import ValidationError

from roommon.core import units
from roommon.core.clock import Clock, RealClock
from roommon.core.errors import ConfigError, UsageError
from roommon.core.log import get_logger
from roommon.transports.broker import BrokerEndpoint, parse_broker_url
from roommon.wire.timer import TimerMessage
from roommon.wire.topics import PREFIX, Topics

if TYPE_CHECKING:
    from roommon.wire.payloads import StatusMessage

log = get_logger(__name__)

#: A room's timer message older than this is flagged: the daemon publishes on
#: every change and at least every few seconds while a recovery runs.
STALE_AFTER_S = 30.0
REFRESH_S = 1.0
#: A daemon whose status is older than this many heartbeats is taken as gone (as the
#: displays do, see StatusMessage).
HEARTBEATS_MISSED = 3

_RED, _YELLOW, _BOLD = "bold red", "yellow", "bold"  # rich styles


@dataclass(frozen=True, slots=True, kw_only=True)
class TimersSource:
    """The broker to read and the site whose rooms to show."""

    broker: BrokerEndpoint
    site: str


# --------------------------------------------------------------------------- rendering


_hms = units.duration


def _clock_time(t: float, *, utc: bool) -> str:
    return units.clock(t, utc=utc, seconds=False, with_zone=False)


def unsupervised(
    room: str, statuses: Mapping[str, StatusMessage], now: float, *, utc: bool = False
) -> str | None:
    """Why no daemon is watching ``room``'s recovery now, or None when one is: its status
    is online and no older than :data:`HEARTBEATS_MISSED` heartbeats."""
    mine = [s for s in statuses.values() if room in s.rooms]
    if not mine:
        return "no daemon status for this room on the broker"
    live = [s for s in mine if s.status == "online"]
    for s in live:
        if now - s.t <= HEARTBEATS_MISSED * s.heartbeat_s:
            return None
    if live:
        s = max(live, key=lambda m: m.t)
        return f"no heartbeat from daemon {s.instance} for {_hms(now - s.t)}"
    s = max(mine, key=lambda m: m.t)
    why = f" ({s.reason})" if s.reason else ""
    return f"daemon {s.instance} offline since {_clock_time(s.t, utc=utc)}{why}"


def render(
    timers: Mapping[str, TimerMessage],
    now: float,
    *,
    utc: bool = False,
    color: bool = False,
    statuses: Mapping[str, StatusMessage] | None = None,
) -> str:
    """Every room's recovery as text, as of ``now`` (times as HH:MM, local unless ``utc``).

    With ``statuses`` (the daemons' retained status by instance), a running recovery
    no daemon is watching is shown as NOT SUPERVISED, without countdowns: nobody
    would raise its overdue checks. With ``color``, terminal colours (rich's).
    """
    text = render_markup(timers, now, utc=utc, statuses=statuses, markup=color)
    if not color:
        return text
    from rich.console import Console
    from rich.text import Text

    buf = io.StringIO()
    Console(file=buf, force_terminal=True, color_system="standard", width=10_000).print(
        Text.from_markup(text), end=""
    )
    return buf.getvalue()


def render_markup(
    timers: Mapping[str, TimerMessage],
    now: float,
    *,
    utc: bool = False,
    statuses: Mapping[str, StatusMessage] | None = None,
    markup: bool = True,
) -> str:
    """:func:`render`'s text, styled with rich markup when ``markup``."""
    def plain(text: str) -> str:
        if not markup:
            return text
        from rich.markup import escape

        return escape(text)

    def paint(text: str, style: str) -> str:
        return f"[{style}]{plain(text)}[/]" if markup else text

    def hhmm(t: float) -> str:
        return _clock_time(t, utc=utc)

    zone = units.zone(now, utc=utc)
    lines = [plain(f"Recovery timers at {hhmm(now)} ({zone}), {len(timers)} room(s)")]
    if not timers:
        lines.append(plain("  no room has published a timer yet"))
    for room in sorted(timers):
        m = timers[room]
        head = f"{room}: {m.state.upper().replace('_', ' ')}"
        if m.procedure:
            head += f" ({m.procedure})"
        stale = f"  [last update {_hms(now - m.t)} ago]" if now - m.t > STALE_AFTER_S else ""
        lines.append(paint(head, _BOLD) + (paint(stale, _YELLOW) if stale else ""))
        if m.state == "idle" or m.started is None:
            continue
        gone = None if statuses is None or m.ended is not None else unsupervised(
            room, statuses, now, utc=utc
        )
        if gone is not None:
            lines.append(
                paint(f"  NOT SUPERVISED: {gone}; no alarm will be raised for this recovery", _RED)
            )
        if m.ended is not None:
            how = {"target": "target reached", "early": "ended early", "cancelled": "cancelled"}
            who = f" by {m.ended.by}" if m.ended.by else ""
            why = f": {m.ended.detail}" if m.ended.detail else ""
            lines.append(plain(f"  {how[m.ended.reason]} at {hhmm(m.ended.t)}{who}{why}"))
            continue
        lines.append(
            plain(
                f"  started {hhmm(m.started)} (injections: {m.injections}, "
                f"restarts: {m.restarts})" + ("" if m.confirmed is not None else "  NOT CONFIRMED")
            )
        )
        if m.state == "interrupted":
            lines.append(plain("  injection in progress: the wait restarts when it ends"))
            continue
        def countdown(left: float, gone: str | None = gone) -> str:
            if gone is not None:
                return "reached" if left <= 0 else "(not supervised)"
            return "reached" if left <= 0 else f"in {_hms(left)}"

        if m.min_deadline is not None:
            state = countdown(m.min_deadline - now)
            lines.append(plain(f"  minimum bed rest {hhmm(m.min_deadline)}  {state}"))
        if m.target_deadline is not None:
            state = countdown(m.target_deadline - now)
            ext = f"  (extended {_hms(m.extended_s)})" if m.extended_s else ""
            lines.append(plain(f"  target           {hhmm(m.target_deadline)}  {state}{ext}"))
        overdue = [
            c
            for c in m.checks
            if c.status != "done" and (c.status == "overdue" or c.overdue_at <= now)
        ]
        upcoming = [c for c in m.checks if c.status != "done" and c not in overdue]
        if upcoming:
            c = upcoming[0]
            when = "DUE NOW" if c.due <= now else f"in {_hms(c.due - now)}"
            lines.append(plain(f"  next check #{c.no} at {hhmm(c.due)}  {when}"))
        elif not overdue:
            lines.append(plain("  all checks done"))
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
                plain(
                    f"  checks done {len(done)}/{len(m.checks)}, last #{last.no} "
                    f"at {hhmm(last.done_t)}{by}"
                )
            )
        for a in m.alarms:
            feed = f" [{a.feed}]" if a.feed else ""
            what = a.message or a.code
            text = f"  alarm {a.priority.upper()}{feed} {what} ({a.code}) since {hhmm(a.since)}"
            lines.append(paint(text, _RED if a.priority == "high" else _YELLOW))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- broker


class _View:
    """What the view knows: each room's timer and each daemon's status (by instance)."""

    def __init__(self) -> None:
        self.timers: dict[str, TimerMessage] = {}
        self.statuses: dict[str, StatusMessage] = {}


def _apply_status(statuses: dict[str, StatusMessage], instance: str, payload: bytes) -> bool:
    if not payload:
        return statuses.pop(instance, None) is not None
    from roommon.wire.payloads import StatusMessage  # with the first status: start-up stays light

    try:
        statuses[instance] = StatusMessage.model_validate_json(payload)
    except ValidationError as exc:
        log.warning("status_message_rejected", instance=instance, error=str(exc.errors()[0]["msg"]))
        return False
    return True


def _apply(view: _View, topic: str, payload: bytes, site: str) -> bool:
    """Update the view from one message; True when something changed."""
    parts = topic.split("/")
    if len(parts) == 5 and "/".join(parts[:4]) == f"{PREFIX}/{site}/status":
        return _apply_status(view.statuses, parts[4], payload)
    timers = view.timers
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
    view = _View()
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
                await client.subscribe(f"{PREFIX}/{site}/status/+", qos=1)
                if once:
                    await client.subscribe(probe, qos=1)
                    await client.publish(probe, b"", qos=1)
                    await _until_probe(client, view, site, probe, wait_s)
                    out.write(_render(view, clock.now(), utc=utc, color=color))
                    out.flush()
                    return 0
                await _live(client, view, site, clock, out, utc, color, live_tty)
        except aiomqtt.MqttError as exc:
            if once:
                print(f"roommon timers: broker {broker.url}: {exc}", file=sys.stderr)
                return 1
            delay = backoff.delay(attempt, rng)
            attempt += 1
            out.write(f"broker {broker.url} unreachable ({exc}); retrying in {delay:.1f} s\n")
            out.flush()
            await clock.sleep(delay)


def _render(view: _View, now: float, *, utc: bool, color: bool = False) -> str:
    return render(view.timers, now, utc=utc, color=color, statuses=view.statuses)


async def _until_probe(
    client: aiomqtt.Client, view: _View, site: str, probe: str, wait_s: float
) -> None:
    try:
        async with asyncio.timeout(wait_s):
            async for m in client.messages:
                if str(m.topic) == probe:
                    return
                payload = m.payload if isinstance(m.payload, bytes) else b""
                _apply(view, str(m.topic), payload, site)
    except TimeoutError:
        log.info("timers_probe_not_returned", wait_s=wait_s)  # e.g. the ACL refused it


async def _live(
    client: aiomqtt.Client,
    view: _View,
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
            if _apply(view, str(m.topic), payload, site):
                changed.set()

    async def draw_live() -> None:
        # On a terminal: a rich live view redrawn every second so the countdowns move.
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        def view_text() -> Text:
            return Text.from_markup(
                render_markup(view.timers, clock.now(), utc=utc, statuses=view.statuses)
            )

        console = Console(file=out)
        with Live(view_text(), console=console, auto_refresh=False, screen=True) as live:
            while True:
                await clock.sleep(REFRESH_S)
                live.update(view_text(), refresh=True)

    async def draw() -> None:
        if tty:
            await draw_live()
            return
        # Not a terminal (a log, a pipe): a block when a timer changes, and once a minute.
        quiet = 0.0
        while True:
            if changed.is_set() or quiet >= 60.0:
                changed.clear()
                quiet = 0.0
                out.write(_render(view, clock.now(), utc=utc) + "\n")
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
        "target bed rest, the next check and overdue checks, refreshed every second. A "
        "recovery whose daemon is offline or silent for three heartbeats is shown as NOT "
        "SUPERVISED. Exit 0 done (--once) or stopped, 1 broker unreachable (--once), "
        "2 bad usage or configuration.",
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
