"""``roommon replay``: a recording's feeds through a real daemon on a virtual clock.

An MCAP recording (docs/recording.md) or a WFDB/EDF record (docs/records.md:
signals mapped to a room's feeds, with ``--config`` or a config made from the
record, and an alarm audit against its reference annotations). Alarms, room
and timer events are printed as they happen, then the alarm burden. Data is
marked replayed. Exit: 0 done, 2 bad usage, configuration, file, or a
recording that does not fit the config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import numpy as np

from roommon.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    cancel_on_stop,
    exit_status,
    load_or_report,
    non_negative,
    positive,
    run_until_signal,
)
from roommon.config import Config
from roommon.core import units
from roommon.core.clock import Clock, RealClock, VirtualClock
from roommon.core.errors import UsageError
from roommon.core.log import get_logger
from roommon.core.logs import configure
from roommon.core.model import FloatArray
from roommon.transports.broker import parse_broker_url

if TYPE_CHECKING:
    from roommon.cli.console import ConsoleOutput
    from roommon.room.pipeline import RoomOutput
    from roommon.runtime.daemon import Daemon
    from roommon.runtime.replay import ChunkMessage, ReplayStats
    from roommon.transports.mcap_files import RecordedMessage
    from roommon.wire.payloads import AlarmEventMessage


log = get_logger(__name__)

REPLAY_DESCRIPTION: Final = (
    "Replay a recording's feeds through a real daemon on a virtual clock starting at the "
    "recording's time: alarms, room and timer events are printed as they happen, then the "
    "alarm burden. Data is marked replayed (never routed to recipients unless "
    "escalation.route_simulated). A WFDB record or EDF/EDF+ file is mapped to a room's feeds "
    "(--config, or a config made from the record) and, when annotated, audited: alarms "
    "against its reference episodes, beats against its reference beats (docs/records.md). "
    "On a terminal a progress bar shows the recorded time reached and the ETA. "
    "Exit 0 done, 2 bad usage, config or file, or a recording that does not fit the config."
)


async def replay(
    args: argparse.Namespace,
    *,
    out: TextIO,
    err: TextIO,
    outputs: Sequence[RoomOutput] = (),
    pacer: Clock | None = None,
) -> int:
    """``roommon replay``: the exit status. ``outputs`` also receive everything the
    replay daemon publishes (for embedding and tests)."""
    from roommon.runtime.replay import check_fit, replay_config
    from roommon.transports.mcap_files import RecordingError, open_recording, to_ns

    try:
        if args.broker is not None:
            parse_broker_url(args.broker)  # a bad address is said before anything is read
        if args.from_s is not None and args.to_s is not None and args.to_s <= args.from_s:
            raise UsageError("--to must be after --from")
        if not is_mcap(args.file):
            return await _replay_record(args, out=out, err=err, outputs=outputs, pacer=pacer)
        if args.config is None:
            raise UsageError(
                "an MCAP recording needs --config (the room config it was recorded for)"
            )
        for flag, value in (
            ("--map", args.map),
            ("--write-config", args.write_config),
            ("--json", args.json),
            ("--room", args.room),
        ):
            if value:
                raise UsageError(f"{flag} is for WFDB/EDF records, not MCAP recordings")
        config = load_or_report(args.config, err)
        if config is None:
            return EXIT_USAGE
        try:
            rec = open_recording(args.file)
        except RecordingError as exc:
            raise UsageError(str(exc)) from exc
        site, rooms = check_fit(rec, config, args.config)
        run_config = replay_config(config, rooms=rooms, broker=args.broker, as_site=args.as_site)
        if rec.start_ns is None:
            raise UsageError(f"{rec.path}: the recording holds no messages")
        start_ns = rec.start_ns + (to_ns(args.from_s) if args.from_s is not None else 0)
        end_ns = rec.start_ns + to_ns(args.to_s) if args.to_s is not None else None
        with contextlib.closing(rec.messages(start_ns=start_ns, end_ns=end_ns)) as window:
            first = next(window, None)
        if first is None:
            raise UsageError(f"{rec.path}: no messages between --from and --to")
        with contextlib.ExitStack() as stack:
            if args.state_dir is not None:
                state_dir = _make_dir(args.state_dir)
            else:
                state_dir = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="roommon-replay-"))
                )
            state = (
                "complete" if rec.complete else "unfinished (recorder killed?): read up to its cut"
            )
            await _replay_run(
                rec.messages(start_ns=first.log_ns, end_ns=end_ns),
                header=f"{rec.path} ({state})",
                config=run_config,
                site=site,
                start_ns=first.log_ns,
                total_s=((end_ns or rec.end_ns or first.log_ns) - first.log_ns) / 1e9,
                state_dir=state_dir,
                speed=args.speed,
                broker=args.broker,
                out=out,
                outputs=outputs,
                pacer=pacer or RealClock(),
                on_recorder_event=True,
            )
            return EXIT_OK
    except (UsageError, RecordingError) as exc:
        what = "error: " if isinstance(exc, UsageError) else ""
        print(f"roommon replay: {what}{exc}", file=err)
        return exit_status(exc)


def is_mcap(path: str) -> bool:
    """MCAP recordings by name or by magic; anything else is a WFDB/EDF record."""
    if path.lower().endswith(".mcap"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(5) == b"\x89MCAP"
    except OSError:
        return False


async def _replay_record(
    args: argparse.Namespace,
    *,
    out: TextIO,
    err: TextIO,
    outputs: Sequence[RoomOutput],
    pacer: Clock | None,
) -> int:
    """A WFDB/EDF record through a replay daemon, then its alarm audit (when annotated)."""
    from roommon.checks.ecg import EcgCheck
    from roommon.config import parse_config
    from roommon.records.mapping import map_numerics, map_signals, parse_map
    from roommon.records.reader import open_record
    from roommon.runtime import record_feeds
    from roommon.runtime.replay import replay_config

    overrides = parse_map(args.map or [])
    record = open_record(args.file)
    if args.json is not None and record.reference is None:
        raise UsageError(f"--json {args.json}: {record.path} has no reference annotations")
    mapped, left_out = map_signals(record.signals, overrides)
    numerics, numerics_out = map_numerics(record.numerics, overrides)
    if args.config is not None:
        if args.write_config is not None:
            raise UsageError("--write-config writes the config made from the record: drop --config")
        config = load_or_report(args.config, err)
        if config is None:
            return EXIT_USAGE
        config_path = args.config
    else:
        data = record_feeds.default_config_data(mapped, numerics)
        config = parse_config(data, source="<config made from the record>")
        config_path = "<config made from the record>"
        if args.write_config is not None:
            _write_text("--write-config", args.write_config, record_feeds.config_toml(data))
    plan = record_feeds.plan_record(
        record,
        mapped,
        left_out,
        config=config,
        room=args.room,
        config_path=config_path,
        from_s=args.from_s,
        to_s=args.to_s,
        numerics=numerics,
    )
    run_config = replay_config(
        plan.config, rooms=[plan.room], broker=args.broker, as_site=args.as_site
    )
    for fp in plan.feeds:
        print(
            f"roommon replay: signal {fp.signal!r} -> feed {plan.room}/{fp.feed} "
            f"({fp.kind}, {fp.fs:g} Hz, {fp.unit})",
            file=out,
        )
    for rp in plan.readings:
        for field, name in rp.signals.items():
            print(
                f"roommon replay: numeric {name!r} -> feed {plan.room}/{rp.feed} "
                f"({rp.kind} {field})",
                file=out,
            )
    held = {s.name: s.unmapped_reason for s in record.signals if s.unmapped_reason}
    for name in plan.left_out:
        why = held.get(name, "no feed for it")
        print(f"roommon replay: signal {name!r} left out ({why})", file=out)
    for name in numerics_out:
        print(f"roommon replay: numeric {name!r} left out (no feed for it)", file=out)
    beats: dict[str, tuple[FloatArray, float]] = {}
    taps: list[EcgCheck] = []

    def on_start(daemon: Daemon) -> None:
        for check in daemon.pipelines[plan.room].checks:
            if isinstance(check, EcgCheck):
                check.beat_log = {}
                taps.append(check)

    def on_end(daemon: Daemon) -> None:
        rates = {fp.feed: fp.fs for fp in plan.feeds}
        for check in taps:
            for feed, parts in (check.beat_log or {}).items():
                beats[feed] = (np.concatenate(parts), rates[feed])

    with contextlib.ExitStack() as stack:
        if args.state_dir is not None:
            state_dir = _make_dir(args.state_dir)
        else:
            state_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="roommon-replay-"))
            )
        messages = record_feeds.record_messages(plan)
        first = next(messages)  # the plan has at least one sample of one feed
        events = await _replay_run(
            itertools.chain([first], messages),
            header=f"record {record.path} ({plan.from_s:g}-{plan.to_s:g} s)",
            config=run_config,
            site=plan.config.site.id,
            start_ns=first.log_ns,
            total_s=plan.to_s - plan.from_s,
            state_dir=state_dir,
            speed=args.speed,
            broker=args.broker,
            out=out,
            outputs=outputs,
            pacer=pacer or RealClock(),
            on_start=on_start,
            on_end=on_end,
        )
    if record.reference is None:
        print("No reference annotations in the record: no alarm audit.", file=out)
        return EXIT_OK
    from roommon.runtime.audit import audit

    result = audit(
        record.reference,
        events,
        record_start_epoch=record.start_epoch,
        from_s=plan.from_s,
        to_s=plan.to_s,
        beats=beats,
    )
    print("\n".join(result.lines()), file=out)
    if args.json is not None:
        doc = {"record": record.path, **result.as_dict()}
        _write_text("--json", args.json, json.dumps(doc, indent=2) + "\n")
    out.flush()
    return EXIT_OK


def _write_text(flag: str, path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror}") from exc


def _make_dir(path: str) -> Path:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


async def _replay_run(
    messages: Iterable[RecordedMessage | ChunkMessage],
    *,
    header: str,
    config: Config,
    site: str,
    start_ns: int,
    total_s: float,
    state_dir: Path,
    speed: float,
    broker: str | None,
    out: TextIO,
    outputs: Sequence[RoomOutput],
    pacer: Clock,
    on_recorder_event: bool = False,
    on_start: Callable[[Daemon], None] | None = None,
    on_end: Callable[[Daemon], None] | None = None,
) -> list[AlarmEventMessage]:
    """Run ``messages`` through a replay daemon, print what happens and the summary;
    the replay's alarm log. ``on_start``/``on_end`` see the daemon before and after."""
    from roommon.cli.console import ConsoleOutput, ReplayProgress, print_burden

    clock = VirtualClock(start=start_ns / 1e9)
    console = ConsoleOutput(clock, out)
    pace = "as fast as possible" if speed == 0 else f"{speed:g}x real time"
    print(
        f"roommon replay: {header} from {units.date_time(start_ns / 1e9)} "
        f"(times below in {units.zone(start_ns / 1e9)}), rooms "
        f"{', '.join(config.rooms)}, {pace}"
        + (f", publishing to {broker} as site {config.site.id}" if broker else "")
        + "; data marked replayed. Not a medical device.",
        file=out,
        flush=True,
    )
    wall = pacer.monotonic()
    progress = (
        ReplayProgress(out, start_t=start_ns / 1e9, total_s=total_s) if out.isatty() else None
    )
    with contextlib.ExitStack() as bar:
        if progress is not None:
            console.printer = bar.enter_context(progress).print
        stats, events, feeds = await _run_daemon(
            messages,
            config=config,
            site=site,
            clock=clock,
            console=console,
            state_dir=state_dir,
            speed=speed,
            broker=broker,
            outputs=outputs,
            pacer=pacer,
            on_recorder_event=on_recorder_event,
            on_start=on_start,
            on_end=on_end,
            on_progress=progress.update if progress is not None else None,
        )
    console.printer = None
    took = pacer.monotonic() - wall
    raised = Counter(e.code for e in events if e.transition == "raised")
    ratio = f"{stats.virtual_s / took:.0f}x" if took > 0 else "-"
    print(
        f"\nroommon replay: {stats.messages} messages ({stats.feed_messages} feed payloads: "
        f"{stats.accepted} accepted, {sum(stats.rejected.values())} rejected"
        + (f" {dict(stats.rejected)}" if stats.rejected else "")
        + (f", {sum(stats.unknown.values())} for unconfigured feeds" if stats.unknown else "")
        + f"), {units.duration(stats.virtual_s)} recorded in {took:.2f} s ({ratio})",
        file=out,
    )
    for feed, (received, rejected) in sorted(feeds.items()):
        bad = f", rejected {rejected}" if rejected else ""
        print(f"  feed {feed}: {received} payloads{bad}", file=out)
    print(
        "Alarms raised: "
        + (", ".join(f"{code} x{n}" for code, n in sorted(raised.items())) or "none"),
        file=out,
    )
    print_burden(
        events,
        hours=max(stats.virtual_s, 60.0) / 3600,
        title="Alarm burden of this replay:",
        out=out,
    )
    out.flush()
    return events



async def _run_daemon(
    messages: Iterable[RecordedMessage | ChunkMessage],
    *,
    config: Config,
    site: str,
    clock: VirtualClock,
    console: ConsoleOutput,
    state_dir: Path,
    speed: float,
    broker: str | None,
    outputs: Sequence[RoomOutput],
    pacer: Clock,
    on_recorder_event: bool,
    on_start: Callable[[Daemon], None] | None,
    on_end: Callable[[Daemon], None] | None,
    on_progress: Callable[[float], None] | None,
) -> tuple[ReplayStats, list[AlarmEventMessage], dict[str, tuple[int, dict[str, int]]]]:
    """The replay daemon over ``messages``: its stats, alarm log and per-feed counts."""
    from roommon.runtime.daemon import Daemon
    from roommon.runtime.replay import ReplayStats, replay_messages

    stats = ReplayStats()
    async with Daemon(
        config=config,
        subscribe_feeds=False,
        clock=clock,
        use_broker=broker is not None,
        extra_outputs=[console, *outputs],
        state_path=state_dir / "roommon.sqlite3",
    ) as daemon:
        if on_start is not None:
            on_start(daemon)
        try:
            await replay_messages(
                on_progress=on_progress,
                daemon=daemon,
                clock=clock,
                messages=messages,
                site=site,
                speed=speed,
                pacer=pacer,
                on_recorder_event=console.line if on_recorder_event else None,
                stats=stats,
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # taken as "stop here": the daemon's shutdown runs as usual
            # Ctrl-C (SIGINT/SIGTERM, via cancel_on_stop): the replay ends here, and what
            # it did so far is summarised like a finished one, not left as a traceback.
            console.line("roommon replay: interrupted; summary of the replay so far")
        if on_end is not None:
            on_end(daemon)
        events = daemon.store.events()
        feeds = {
            f"{room}/{name}": (f.received, dict(f.rejected))
            for room, p in daemon.pipelines.items()
            for name, f in p.feeds.items()
        }
    return stats, events, feeds


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``replay`` on the main CLI's subparsers; handler in ``func``."""
    p = subparsers.add_parser(
        "replay",
        help="replay a recording through a daemon on a virtual clock",
        description=REPLAY_DESCRIPTION,
    )
    p.add_argument(
        "file",
        help="MCAP recording, WFDB record (.hea, with or without the extension) or EDF/EDF+ file",
    )
    p.add_argument(
        "--config",
        "-c",
        help="roommon config file (TOML); needed for MCAP. For a record, default: a config "
        "made from it (docs/records.md)",
    )
    p.add_argument("--room", help="record: the room of --config it feeds (default: the only one)")
    p.add_argument(
        "--map",
        action="append",
        metavar="NAME=FEED",
        help="record: signal NAME is feed kind FEED (ecg, pleth, abp) or none; repeatable",
    )
    p.add_argument("--write-config", metavar="PATH", help="record: write the config made from it")
    p.add_argument("--json", metavar="FILE", help="record: write the alarm audit as JSON")
    p.add_argument(
        "--speed",
        type=non_negative,
        default=0.0,
        help="N x real time (default 0: as fast as possible)",
    )
    p.add_argument("--broker", help="also publish the daemon's outputs to mqtt://HOST:PORT")
    p.add_argument(
        "--as-site",
        help="site id to publish under with --broker (default SITE-replay, so "
        "live displays and the live daemon's retained topics are not touched)",
    )
    p.add_argument(
        "--from",
        dest="from_s",
        type=non_negative,
        metavar="S",
        help="start S seconds into the recording",
    )
    p.add_argument(
        "--to", dest="to_s", type=positive, metavar="S", help="stop S seconds into the recording"
    )
    p.add_argument("--state-dir", help="keep the replay's alarm log here (default: a temp dir)")
    p.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """Handler of ``roommon replay``; returns the process exit status."""
    configure(clock=RealClock(), level="error", json=False)
    return run_until_signal(
        lambda stop: cancel_on_stop(replay(args, out=sys.stdout, err=sys.stderr), stop)
    )
