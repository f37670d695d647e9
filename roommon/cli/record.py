"""``roommon record``: a site's device feeds from the broker into an MCAP file.

Stands beside the daemon as one more MQTT subscriber. It moves messages,
never meaning: every payload on the site's feed topics (with ``--all`` every
``roommon/v1/SITE/#`` topic) goes byte for byte into an MCAP file, one channel
per topic, stamped with the receive time (``log_time``) and the payload's own
time (``publish_time``). Broker outages are survived (reported on stderr and
on the ``_roommon/recorder`` channel); the file is flushed every
:data:`~roommon.transports.mcap_files.FLUSH_S` so a killed recorder leaves a
file readable up to the last flush, and SIGINT/SIGTERM finish it with summary
and index. Exit: 0 done, 1 broker refused or unreachable at start, 2 bad
usage, configuration or file, or an empty recording (nothing arrived: the file is
kept, as it holds the recorder's link notes, and a warning says so).

While it runs it shows the messages recorded per topic: on a terminal a live
table (rich), otherwise one line every :data:`LIVE_S` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TextIO

from roommon import __version__
from roommon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    broker_target,
    exit_status,
    load_or_report,
    positive,
    run_until_signal,
)
from roommon.config import Config
from roommon.core import units
from roommon.core.clock import Clock, RealClock, iso
from roommon.core.errors import UsageError
from roommon.core.log import get_logger
from roommon.core.logs import configure
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.mcap_files import FLUSH_S, ChannelDescriber, McapRecording, RecordingError
from roommon.transports.subscriber import FeedRecorder, RecorderError
from roommon.wire import registry
from roommon.wire.topics import Topics

log = get_logger(__name__)

RECORD_DESCRIPTION: Final = (
    "Record a site's device feeds (with --all: every roommon topic of the site) from the "
    "MQTT broker into an MCAP file, one channel per topic, until --seconds or SIGINT/SIGTERM, "
    "showing the messages per topic as they come. Exit 0 done, 1 broker refused or "
    "unreachable at start, or nothing recorded (the empty file is kept), 2 bad usage, "
    "config or file."
)

#: Period of the live counts when the output is not a terminal (a log, a pipe).
LIVE_S: Final = 10.0


def topic_schema(topic: str, *, site: str, config: Config) -> str | None:
    """Name of the schema of a topic's payloads (feed kinds from the config)."""
    parsed = Topics(site).parse_room_topic(topic)
    kind = None
    if parsed is not None and len(parsed[1]) == 2 and parsed[1][0] == "feed":
        room = config.rooms.get(parsed[0])
        feed = room.feeds.get(parsed[1][1]) if room is not None else None
        kind = feed.kind if feed is not None else None
    return registry.topic_schema(topic, site=site, feed_kind=kind)


def _feed_metadata(topic: str, *, site: str, config: Config) -> dict[str, str]:
    """Channel metadata of a feed topic: what the config said the feed carries."""
    parsed = Topics(site).parse_room_topic(topic)
    if parsed is None:
        return {}
    room_id, rest = parsed
    if len(rest) != 2 or rest[0] not in ("feed", "command"):
        return {}
    if rest[0] == "command":
        return {"room": room_id, "client": rest[1], "schemas": "command recovery_command"}
    meta = {"room": room_id, "feed": rest[1]}
    room = config.rooms.get(room_id)
    feed = room.feeds.get(rest[1]) if room is not None else None
    if feed is not None:
        meta |= {"kind": feed.kind.value, "unit": feed.effective_unit, "fs": repr(feed.fs)}
    return meta


def channel_describer(site: str, config: Config) -> ChannelDescriber:
    """What the config says each topic carries: its schema and, for feeds, kind, unit, rate."""

    def describe(topic: str) -> tuple[str | None, dict[str, str]]:
        return topic_schema(topic, site=site, config=config), _feed_metadata(
            topic, site=site, config=config
        )

    return describe


def _parse_rooms(text: str | None, config: Config, config_path: str) -> list[str] | None:
    if text is None:
        return None
    rooms = [r.strip() for r in text.split(",") if r.strip()]
    if not rooms:
        raise UsageError("--rooms: give room ids separated by commas")
    unknown = [r for r in rooms if r not in config.rooms]
    if unknown:
        raise UsageError(
            f"--rooms: {', '.join(unknown)} not in {config_path} (rooms: {', '.join(config.rooms)})"
        )
    return rooms


RecorderHook = Callable[[FeedRecorder], None]


def _recording_info(
    *,
    site: str,
    rooms: Sequence[str],
    filters: list[str],
    broker: str,
    config_path: str,
    started: float,
) -> dict[str, str]:
    """The ``roommon.recording`` metadata record: what, where from, and how times are kept."""
    return {
        "site": site,
        "rooms": ",".join(rooms),
        "filters": " ".join(filters),
        "broker": broker,
        "config": os.path.abspath(config_path),
        "started": iso(started),
        "roommon_version": __version__,
        "log_time": "receive time of the recorder's clock, UTC epoch ns",
        "publish_time": "payload t0 (waveform chunks) or t, else the log time",
    }


async def record(
    args: argparse.Namespace,
    *,
    clock: Clock,
    out: TextIO,
    err: TextIO,
    stop: asyncio.Event | None = None,
    on_recorder: RecorderHook | None = None,
) -> int:
    """``roommon record``: the exit status. Ends at ``--seconds`` on the clock or when
    ``stop`` is set (the CLI sets it on SIGINT/SIGTERM); ``on_recorder`` sees the
    connected recorder (for embedding and tests)."""
    try:
        config = load_or_report(args.config, err)
        if config is None:
            return EXIT_USAGE
        rooms = _parse_rooms(args.rooms, config, args.config)
        target = broker_target(config, args.broker)
        site = config.site.id
        filters = Topics(site).recording_filters(rooms, everything=args.all)
        out_path = Path(args.out)
        info = _recording_info(
            site=site,
            rooms=rooms or sorted(config.rooms),
            filters=filters,
            broker=target.url,
            config_path=args.config,
            started=clock.now(),
        )
        stop = stop or asyncio.Event()
        describe = channel_describer(site, config)
        with McapRecording(path=out_path, info=info, describe=describe) as rec:
            return await _record_into(
                rec,
                target=target,
                filters=filters,
                seconds=args.seconds,
                clock=clock,
                out=out,
                err=err,
                stop=stop,
                on_recorder=on_recorder,
            )
    except (UsageError, RecordingError, RecorderError) as exc:
        what = "error: " if isinstance(exc, UsageError) else ""
        print(f"roommon record: {what}{exc}", file=err)
        return exit_status(exc)


async def _record_into(
    rec: McapRecording,
    *,
    target: BrokerEndpoint,
    filters: list[str],
    seconds: float | None,
    clock: Clock,
    out: TextIO,
    err: TextIO,
    stop: asyncio.Event,
    on_recorder: RecorderHook | None,
) -> int:
    started = clock.monotonic()

    def link(event: str, detail: str) -> None:
        rec.note(event, received=clock.now(), broker=target.url, detail=detail)

    recorder = FeedRecorder(
        target=target,
        filters=filters,
        sink=lambda topic, payload, t: rec.write(topic, payload, received=t),
        clock=clock,
        err=err,
        client_id=f"roommon-record-{os.getpid()}-{random.randrange(1 << 32):08x}",
        on_link=link,
    )
    try:
        async with recorder:
            print(
                f"roommon record: {' '.join(filters)} from {target.url} -> {rec.path}"
                + (f" for {seconds:g} s" if seconds is not None else "; Ctrl-C to stop"),
                file=out,
                flush=True,
            )
            if on_recorder is not None:
                on_recorder(recorder)
            async with asyncio.TaskGroup() as tg:
                flusher = tg.create_task(_flush_every(rec, clock), name="roommon-record-flush")
                live = tg.create_task(
                    _show_counts(rec, clock, out, started), name="roommon-record-live"
                )
                timer = None
                if seconds is not None:
                    timer = tg.create_task(
                        _set_after(stop, clock, seconds), name="roommon-record-timer"
                    )
                await stop.wait()
                flusher.cancel()
                live.cancel()
                if timer is not None:
                    timer.cancel()
    finally:
        took = clock.monotonic() - started
        if recorder.connects == 0:
            # Never connected, nothing recorded: leave no file that would block the
            # next attempt with the same --out (recordings are never overwritten).
            rec.discard()
        else:
            rec.note("stopped", received=clock.now(), broker=target.url, detail="")
            rec.close(
                end={
                    "ended": iso(clock.now()),
                    "messages": str(rec.messages),
                    "outages": str(recorder.outages),
                    "seconds": f"{took:.3f}",
                }
            )
            _print_record_summary(rec, recorder=recorder, took=took, out=out)
    if rec.messages == 0:
        print(
            f"roommon record: warning: no message arrived on {' '.join(filters)} from "
            f"{target.url}: nothing recorded. {rec.path} is kept (it holds the recorder's link "
            "notes); record again with another --out or delete it.",
            file=err,
            flush=True,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _short(topic: str) -> str:
    """A topic without the ``roommon/v1/SITE/`` everyone shares."""
    return topic.split("/", 3)[3] if topic.count("/") >= 3 else topic


async def _show_counts(rec: McapRecording, clock: Clock, out: TextIO, started: float) -> None:
    """Messages per topic as they come: a live rich table on a terminal, else a line
    every :data:`LIVE_S` seconds of the clock."""
    if not out.isatty():
        while True:
            await clock.sleep(LIVE_S)
            counts = ", ".join(f"{_short(t)} {n}" for t, n in sorted(rec.counts.items()))
            print(
                f"roommon record: {units.duration(clock.monotonic() - started)} "
                f"{rec.messages} messages" + (f": {counts}" if counts else ""),
                file=out,
                flush=True,
            )
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    def table() -> Table:
        t = Table(title=f"recording {units.duration(clock.monotonic() - started)}")
        t.add_column("topic")
        t.add_column("messages", justify="right")
        for topic, n in sorted(rec.counts.items()):
            t.add_row(_short(topic), str(n))
        t.add_row("[bold]all[/bold]", f"[bold]{rec.messages}[/bold]")
        return t

    with Live(table(), console=Console(file=out), auto_refresh=False, transient=True) as view:
        while True:
            await clock.sleep(1.0)
            view.update(table(), refresh=True)


async def _flush_every(rec: McapRecording, clock: Clock) -> None:
    while True:
        await clock.sleep(FLUSH_S)
        rec.flush()


async def _set_after(event: asyncio.Event, clock: Clock, seconds: float) -> None:
    await clock.sleep(seconds)
    event.set()


def _print_record_summary(
    rec: McapRecording, *, recorder: FeedRecorder, took: float, out: TextIO
) -> None:
    size = rec.path.stat().st_size if rec.path.exists() else 0
    print(
        f"roommon record: {rec.messages} messages on {len(rec.counts)} topics in {took:.1f} s, "
        f"{recorder.outages} broker outage(s); {rec.path} ({size} bytes)",
        file=out,
    )
    for topic, n in sorted(rec.counts.items()):
        print(f"  {n:8d}  {topic}", file=out)
    out.flush()


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``record`` on the main CLI's subparsers; handler in ``func``."""
    p = subparsers.add_parser(
        "record",
        help="record device feeds from the broker to an MCAP file",
        description=RECORD_DESCRIPTION,
    )
    p.add_argument("--config", "-c", required=True, help="roommon config file (TOML)")
    p.add_argument("--out", "-o", required=True, help="MCAP file to create (never overwritten)")
    p.add_argument("--broker", help="mqtt[s]://HOST:PORT (default: the config's broker)")
    p.add_argument("--seconds", type=positive, help="stop after this long (default: a signal)")
    p.add_argument("--rooms", help="comma-separated room ids (default: every room)")
    p.add_argument(
        "--all",
        action="store_true",
        help="also alarms, state, events, timers, commands, notifications, status",
    )
    p.set_defaults(func=run_record)


def run_record(args: argparse.Namespace) -> int:
    """Handler of ``roommon record``; returns the process exit status."""
    clock = RealClock()
    configure(clock=clock, level="warning")
    return run_until_signal(
        lambda stop: record(args, clock=clock, out=sys.stdout, err=sys.stderr, stop=stop)
    )
