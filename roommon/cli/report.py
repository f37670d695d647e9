"""``roommon report``: the alarm-burden report an alarm-management committee asks for.

Two sources:

* ``--config FILE [--since 7d]``: the alarm log of the config's ``state_dir``:
  alarms per hour by priority, per condition code and per room, the ones that
  cleared by themselves within 10 s (alarm-fatigue candidates), time to
  acknowledge.
* ``--from-recording FILE --config FILE``: the recording replayed through a
  daemon on a virtual clock (as ``roommon replay``), then the same figures of
  the replay's alarms plus, read back from the recording, the waveform strip
  around the onset of each high-priority alarm and each cement injection's
  pressure curve with its limit and peak.

The output is one self-contained HTML file (:mod:`roommon.cli.report_html`):
plots are inlined PNGs, no external asset. matplotlib is imported only here,
when a report is made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from roommon.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, exit_status, load_or_report
from roommon.core.errors import RoommonError, UsageError

if TYPE_CHECKING:
    from roommon.alerts.engine import Outgoing
    from roommon.config import Config
    from roommon.core.model import FloatArray, NumericReading, WaveformChunk
    from roommon.transports.mcap_files import RecordingFile
    from roommon.wire.payloads import AlarmEventMessage, RoomEventMessage, RoomStateMessage
    from roommon.wire.timer import TimerEventMessage, TimerMessage

#: Seconds of waveform shown before and after a high-priority alarm's onset.
STRIP_HALF_S: Final = 10.0
#: Seconds of pressure shown before an injection's start and after its last push.
INJECTION_MARGIN_S: Final = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Strip:
    """The waveform of one feed around one high-priority alarm's onset."""

    alarm: AlarmEventMessage
    feed: str
    unit: str
    t: FloatArray  # epoch seconds of each sample
    y: FloatArray


@dataclass(frozen=True, slots=True, kw_only=True)
class Injection:
    """One cement injection's pressure curve, as the cement check reported it."""

    room: str
    feed: str
    number: int
    started_t: float
    last_injecting_t: float
    peak_kpa: float
    limit_kpa: float
    t: FloatArray
    y: FloatArray


@dataclass(slots=True, kw_only=True)
class ReportData:
    """Everything the HTML page shows."""

    source: str
    events: list[AlarmEventMessage]
    strips: list[Strip] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    has_samples: bool = False  # from a recording: strips and curves can be shown
    notes: list[str] = field(default_factory=list)
    utc: bool = False


class _Collector:
    """A room output keeping the replay's alarm and room events."""

    def __init__(self) -> None:
        self.alarm_events: list[AlarmEventMessage] = []
        self.room_events: list[RoomEventMessage] = []

    def alarms(self, outgoing: list[Outgoing]) -> None:
        self.alarm_events.extend(o.event for o in outgoing)

    def room_event(self, message: RoomEventMessage) -> None:
        self.room_events.append(message)

    def state(self, message: RoomStateMessage) -> None:
        del message

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        del messages

    def timer(self, message: TimerMessage) -> None:
        del message


# --------------------------------------------------------------------------- sources


def from_alarm_log(config: Config, *, since: float | None, utc: bool) -> ReportData:
    """The report of the config's alarm log (since ``since``)."""
    from roommon.alerts.store import AlarmStore

    db = config.daemon.state_dir / "roommon.sqlite3"
    if not db.exists():
        raise UsageError(f"{db}: no alarm log here")
    store = AlarmStore(db)
    try:
        events = store.events(since=since)
    finally:
        store.close()
    return ReportData(
        source=f"alarm log {db}",
        events=events,
        notes=["Waveform strips and injection curves need --from-recording: "
               "the alarm log holds no samples."],
        utc=utc,
    )


async def from_recording(path: str, config_path: str, *, utc: bool) -> ReportData:
    """Replay the recording (as ``roommon replay``), then read back the samples around
    its high-priority alarms and its injections."""
    from roommon.cli.replay import add_parser as add_replay
    from roommon.cli.replay import replay
    from roommon.transports.mcap_files import RecordingError, open_recording

    parser = argparse.ArgumentParser(prog="roommon")
    add_replay(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["replay", path, "--config", config_path])
    collector = _Collector()
    out, err = io.StringIO(), io.StringIO()
    status = await replay(args, out=out, err=err, outputs=[collector])
    if status != EXIT_OK:
        raise UsageError(err.getvalue().strip().removeprefix("roommon replay: "))
    config = load_or_report(config_path, io.StringIO())
    assert config is not None  # the replay loaded it
    try:
        rec = open_recording(path)
    except RecordingError as exc:
        raise UsageError(str(exc)) from exc
    data = ReportData(
        source=f"recording {path} (replayed)",
        events=collector.alarm_events,
        has_samples=True,
        utc=utc,
    )
    _read_samples(rec, config, collector.room_events, data)
    return data


def _waveform_feed(config: Config, room: str, feed: str) -> str | None:
    """The feed whose waveform shows an alarm: its own when it is a waveform, else the
    room's first ECG, then pleth, then arterial feed."""
    from roommon.core.model import WAVEFORM_KINDS, SignalKind

    feeds = config.rooms[room].feeds
    if feed in feeds and feeds[feed].kind in WAVEFORM_KINDS:
        return feed
    for kind in (SignalKind.ECG, SignalKind.PLETH, SignalKind.ABP):
        for name, f in feeds.items():
            if f.kind is kind:
                return name
    return None


def _read_samples(
    rec: RecordingFile,
    config: Config,
    room_events: Iterable[RoomEventMessage],
    data: ReportData,
) -> None:
    """One pass over the recording collecting the samples of every window of interest."""
    import numpy as np

    from roommon.core.errors import ProtocolError
    from roommon.core.model import WaveformChunk
    from roommon.wire.topics import Topics

    topics = Topics(rec.site() or config.site.id)
    strips: list[tuple[AlarmEventMessage, str]] = []
    injections = [
        m for m in room_events if m.name == "cement.injection_ended" and m.room in config.rooms
    ]
    # (room, feed) -> [(start, end, slot)]; slots 0.. are strips, then injections.
    windows: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for e in data.events:
        if e.transition != "raised" or e.priority != "high" or e.room not in config.rooms:
            continue
        feed = _waveform_feed(config, e.room, e.feed)
        if feed is None:
            data.notes.append(f"{e.code} at {e.time}: room {e.room} has no waveform feed")
            continue
        windows.setdefault((e.room, feed), []).append(
            (e.since - STRIP_HALF_S, e.since + STRIP_HALF_S, len(strips))
        )
        strips.append((e, feed))
    for k, m in enumerate(injections):
        start, last = float(m.data["started_t"]), float(m.data["last_injecting_t"])
        windows.setdefault((m.room, m.feed), []).append(
            (start - INJECTION_MARGIN_S, last + 2 * INJECTION_MARGIN_S, len(strips) + k)
        )
    parts: list[list[tuple[FloatArray, FloatArray]]] = [
        [] for _ in range(len(strips) + len(injections))
    ]
    for msg in rec.messages():
        parsed = topics.parse_room_topic(msg.topic)
        if parsed is None or len(parsed[1]) != 2 or parsed[1][0] != "feed":
            continue
        key = (parsed[0], parsed[1][1])
        if key not in windows:
            continue
        try:
            sample = _decode(msg.data, key, config)
        except ProtocolError:
            continue  # counted and alarmed by the replay; a gap in the picture here
        if not isinstance(sample, WaveformChunk):
            continue
        t = sample.t0 + np.arange(sample.samples.shape[0]) / sample.fs
        for lo, hi, slot in windows[key]:
            inside = (t >= lo) & (t <= hi)
            if inside.any():
                parts[slot].append((t[inside], sample.samples[inside]))

    def joined(slot: int) -> tuple[FloatArray, FloatArray] | None:
        if not parts[slot]:
            return None
        t = np.concatenate([p[0] for p in parts[slot]])
        y = np.concatenate([p[1] for p in parts[slot]])
        order = np.argsort(t, kind="stable")
        return t[order], y[order]

    for k, (alarm, feed) in enumerate(strips):
        got = joined(k)
        if got is not None:
            unit = config.rooms[alarm.room].feeds[feed].effective_unit
            data.strips.append(Strip(alarm=alarm, feed=feed, unit=unit, t=got[0], y=got[1]))
    for k, m in enumerate(injections):
        got = joined(len(strips) + k)
        if got is None:
            continue
        data.injections.append(
            Injection(
                room=m.room,
                feed=m.feed,
                number=int(m.data.get("injection") or k + 1),
                started_t=float(m.data["started_t"]),
                last_injecting_t=float(m.data["last_injecting_t"]),
                peak_kpa=float(m.data["peak_kpa"]),
                limit_kpa=_cement_limit(config, m.room),
                t=got[0],
                y=got[1],
            )
        )


def _decode(
    payload: bytes, key: tuple[str, str], config: Config
) -> WaveformChunk | NumericReading:
    from roommon.wire.payloads import decode_feed

    fc = config.rooms[key[0]].feeds[key[1]]
    return decode_feed(
        payload,
        room=key[0],
        feed=key[1],
        kind=fc.kind,
        unit=fc.effective_unit,
        fs=fc.fs,
        max_bytes=config.daemon.max_payload_bytes,
    )


def _cement_limit(config: Config, room: str) -> float:
    """The room's over-pressure limit: its cement check's setting, else the default."""
    from roommon.checks import CHECKS

    cls = CHECKS.declared("cement")
    assert cls is not None
    settings = cls.settings_model.model_validate(config.rooms[room].checks.get("cement", {}))
    return float(getattr(settings, "max_pressure_kpa"))  # noqa: B009 - a settings model field


# --------------------------------------------------------------------------- command line


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``report`` on the main CLI's subparsers; handler in ``func``."""
    from roommon.cli.alarms import _parse_since

    p = subparsers.add_parser(
        "report",
        help="write the alarm-burden report (self-contained HTML with plots)",
        description="Write the alarm-burden report as one self-contained HTML file: alarms "
        "per hour by priority, per condition code and per room, alarms that cleared by "
        "themselves within 10 s, time to acknowledge; from a recording also the waveform "
        "around each high-priority alarm and each cement injection's pressure curve. "
        "Exit 0 written, 1 the report could not be made, 2 bad usage, configuration or file.",
    )
    p.add_argument(
        "--config",
        "-c",
        required=True,
        help="roommon config file: its alarm log, or the rooms the recording was made for",
    )
    p.add_argument(
        "--from-recording",
        metavar="FILE",
        help="replay this MCAP recording and report on it (default: the config's alarm log)",
    )
    p.add_argument(
        "--since",
        type=_parse_since,
        help="alarm log: ISO time or span like 24h, 7d (default: the whole log)",
    )
    p.add_argument("--out", "-o", required=True, help="HTML file to write")
    p.add_argument("--utc", action="store_true", help="times in UTC, not local time")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace, *, err: TextIO | None = None) -> int:
    """Handler of ``roommon report``; returns the process exit status."""
    stream = err if err is not None else sys.stderr
    try:
        if args.from_recording is not None:
            if args.since is not None:
                raise UsageError("--since is for the alarm log, not --from-recording")
            from roommon.core.clock import RealClock
            from roommon.core.logs import configure

            configure(clock=RealClock(), level="error", json=False)
            data = asyncio.run(from_recording(args.from_recording, args.config, utc=args.utc))
        else:
            config = load_or_report(args.config, stream)
            if config is None:
                return EXIT_USAGE
            data = from_alarm_log(config, since=args.since, utc=args.utc)
        from roommon.cli.report_html import build_html

        html = build_html(data)
    except RoommonError as exc:
        what = "error: " if isinstance(exc, UsageError) else ""
        print(f"roommon report: {what}{exc}", file=stream)
        return exit_status(exc)
    except ImportError as exc:  # matplotlib is the `report` extra
        print(f"roommon report: {exc.name or exc}: pip install 'roommon[report]'", file=stream)
        return EXIT_FAILURE
    try:
        Path(args.out).write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"roommon report: --out {args.out}: {exc.strerror or exc}", file=stream)
        return EXIT_USAGE
    with contextlib.suppress(OSError):
        size = Path(args.out).stat().st_size
        print(
            f"roommon report: {len(data.events)} alarm events, {len(data.strips)} waveform "
            f"strips, {len(data.injections)} injection curves -> {args.out} ({size} bytes)"
        )
    return EXIT_OK
