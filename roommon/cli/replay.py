"""``roommon replay``: a recording's feeds through a real daemon on a virtual clock.

Alarms, room and timer events are printed as they happen, then the alarm
burden. Data is marked replayed. Exit: 0 done, 2 bad usage, configuration,
file, or a recording that does not fit the config.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import structlog

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
from roommon.core.clock import Clock, RealClock, VirtualClock, iso
from roommon.core.errors import UsageError
from roommon.core.logs import configure
from roommon.transports.broker import parse_broker_url

if TYPE_CHECKING:
    from roommon.room.pipeline import RoomOutput
    from roommon.transports.mcap_files import RecordingFile


log = structlog.get_logger(__name__)

REPLAY_DESCRIPTION: Final = (
    "Replay a recording's feeds through a real daemon on a virtual clock starting at the "
    "recording's time: alarms, room and timer events are printed as they happen, then the "
    "alarm burden. Data is marked replayed (never routed to recipients unless "
    "escalation.route_simulated). Exit 0 done, 2 bad usage, config or file, or a recording "
    "that does not fit the config."
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
        config = load_or_report(args.config, err)
        if config is None:
            return EXIT_USAGE
        try:
            rec = open_recording(args.file)
        except RecordingError as exc:
            raise UsageError(str(exc)) from exc
        site, rooms = check_fit(rec, config, args.config)
        run_config = replay_config(config, rooms=rooms, broker=args.broker, as_site=args.as_site)
        if args.from_s is not None and args.to_s is not None and args.to_s <= args.from_s:
            raise UsageError("--to must be after --from")
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
            return await _replay_run(
                rec,
                config=run_config,
                site=site,
                start_ns=first.log_ns,
                end_ns=end_ns,
                state_dir=state_dir,
                speed=args.speed,
                broker=args.broker,
                out=out,
                outputs=outputs,
                pacer=pacer or RealClock(),
            )
    except (UsageError, RecordingError) as exc:
        what = "error: " if isinstance(exc, UsageError) else ""
        print(f"roommon replay: {what}{exc}", file=err)
        return exit_status(exc)


def _make_dir(path: str) -> Path:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


async def _replay_run(
    rec: RecordingFile,
    *,
    config: Config,
    site: str,
    start_ns: int,
    end_ns: int | None,
    state_dir: Path,
    speed: float,
    broker: str | None,
    out: TextIO,
    outputs: Sequence[RoomOutput],
    pacer: Clock,
) -> int:
    from roommon.cli.console import ConsoleOutput, print_burden
    from roommon.runtime.daemon import Daemon
    from roommon.runtime.replay import replay_messages

    clock = VirtualClock(start=start_ns / 1e9)
    console = ConsoleOutput(clock, out)
    pace = "as fast as possible" if speed == 0 else f"{speed:g}x real time"
    state = "complete" if rec.complete else "unfinished (recorder killed?): read up to its cut"
    print(
        f"roommon replay: {rec.path} ({state}) from {iso(start_ns / 1e9)}, rooms "
        f"{', '.join(config.rooms)}, {pace}"
        + (f", publishing to {broker} as site {config.site.id}" if broker else "")
        + "; data marked replayed. Not a medical device.",
        file=out,
        flush=True,
    )
    wall = pacer.monotonic()
    async with Daemon(
        config=config,
        subscribe_feeds=False,
        clock=clock,
        use_broker=broker is not None,
        extra_outputs=[console, *outputs],
        state_path=state_dir / "roommon.sqlite3",
    ) as daemon:
        stats = await replay_messages(
            daemon=daemon,
            clock=clock,
            messages=rec.messages(start_ns=start_ns, end_ns=end_ns),
            site=site,
            speed=speed,
            pacer=pacer,
            on_recorder_event=console.line,
        )
        events = daemon.store.events()
        feeds = {
            f"{room}/{name}": (f.received, dict(f.rejected))
            for room, p in daemon.pipelines.items()
            for name, f in p.feeds.items()
        }
    took = pacer.monotonic() - wall
    raised = Counter(e.code for e in events if e.transition == "raised")
    ratio = f"{stats.virtual_s / took:.0f}x" if took > 0 else "-"
    print(
        f"\nroommon replay: {stats.messages} messages ({stats.feed_messages} feed payloads: "
        f"{stats.accepted} accepted, {sum(stats.rejected.values())} rejected"
        + (f" {dict(stats.rejected)}" if stats.rejected else "")
        + (f", {sum(stats.unknown.values())} for unconfigured feeds" if stats.unknown else "")
        + f"), {stats.virtual_s:.1f} recorded s in {took:.2f} s ({ratio})",
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
    return EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``replay`` on the main CLI's subparsers; handler in ``func``."""
    p = subparsers.add_parser(
        "replay",
        help="replay a recording through a daemon on a virtual clock",
        description=REPLAY_DESCRIPTION,
    )
    p.add_argument("file", help="MCAP recording")
    p.add_argument("--config", "-c", required=True, help="roommon config file (TOML)")
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
