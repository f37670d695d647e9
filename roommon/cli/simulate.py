"""``roommon simulate``: simulated bedside devices driving a real daemon, for commissioning.

Stands where the room's devices and gateways stand, outside the daemon: it
produces the same inputs they do, on the same paths, so a deployment (broker,
ACLs, serial cabling, config) can be tested end to end without a patient.

* **MQTT mode** (``--config FILE --room ROOM``): a
  :class:`~simulators.room.RoomSimulator` for the room's feeds with transport
  ``mqtt`` publishes each feed's chunks and readings on
  ``roommon/v1/SITE/ROOM/feed/FEED`` as the documented JSON payloads (origin
  ``simulated``), one simulated second at a time. Across a broker outage the
  publisher reports on stderr, reconnects with capped backoff and resends what
  it could not publish, in order (store and forward, as a device gateway
  does); a broker that refuses the connection ends the run with status 1.
* **Record mode** (``--from RECORD [--config FILE --room ROOM]``): a WFDB or
  EDF/EDF+ record's signals as the room's MQTT feeds (docs/records.md),
  looping, origin ``simulated``, paced like MQTT mode.
* **Serial mode** (``--protocol P --port PATH | --pty``): the byte format of
  one device (``simulators.serial_devices``) written to a real serial port or
  to the master end of a pseudo-terminal whose slave path is printed first
  (``pty: /dev/pts/N``) for ``roommon run`` to open. A port that closes or is
  unplugged ends the run with status 1.

Both modes are paced by a :class:`~roommon.core.clock.Clock` at ``--speed`` times
real time (0: as fast as the receiver takes it) and print one summary line
per simulated minute. Exit status: 0 done, 1 runtime failure, 2 bad usage or
configuration (the ConfigError lines are printed as by ``check-config``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TextIO

from roommon.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    broker_target,
    cancel_on_stop,
    exit_status,
    load_or_report,
    non_negative,
    positive,
    run_until_signal,
)
from roommon.core.clock import Clock, RealClock
from roommon.core.errors import RoommonError, UsageError
from roommon.core.model import (
    DataOrigin,
    SignalKind,
    WaveformChunk,
)
from roommon.transports.publisher import FeedPublisher, PublisherError
from roommon.wire.commands import CommandPayload
from roommon.wire.payloads import encode_reading, encode_waveform
from roommon.wire.topics import Topics
from simulators.device_line import DeviceLine, DeviceLineError
from simulators.device_streams import RM1_KINDS, device_streams
from simulators.pacing import Pacer
from simulators.room import Action, RoomSimulator, kyphoplasty_script

PROG: Final = "roommon simulate"
SCRIPTS: Final[dict[str, Callable[[], list[Action]]]] = {
    "kyphoplasty": kyphoplasty_script,
    "none": list,
}
PROTOCOLS: Final = ("masimo_ascii", "nonin_fmt2", "roommon_line")


class SimulateError(RoommonError):
    """The run cannot go on (broker refusal, port gone); the message is for a person."""


def _clock_time(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _minute_ended(before_s: float, after_s: float) -> bool:
    return math.floor(after_s / 60.0 + 1e-9) > math.floor(before_s / 60.0 + 1e-9)


# --------------------------------------------------------------------------- MQTT mode


async def simulate_mqtt(args: argparse.Namespace, *, clock: Clock, out: TextIO, err: TextIO) -> int:
    """MQTT mode: a simulated room's mqtt feeds published to the broker; the exit status."""
    config = load_or_report(args.config, err)
    if config is None:
        return EXIT_USAGE
    room_id = args.room
    if room_id is None:
        if len(config.rooms) != 1:
            raise UsageError(f"--room is needed: {args.config} has rooms {', '.join(config.rooms)}")
        room_id = next(iter(config.rooms))
    room = config.rooms.get(room_id)
    if room is None:
        raise UsageError(f"{args.config}: no room {room_id!r} (rooms: {', '.join(config.rooms)})")
    mqtt_feeds = {n: f for n, f in room.feeds.items() if f.transport == "mqtt"}
    if not mqtt_feeds:
        raise UsageError(f"{args.config}: room {room_id!r} has no feed with transport 'mqtt'")
    target = broker_target(config, args.broker)
    # The simulator drives the first feed of each kind it is given: give it only
    # the MQTT feeds, so a serial feed of the same kind does not take the data.
    sim = RoomSimulator(
        room=room_id,
        config=room.model_copy(update={"feeds": mqtt_feeds}),
        t0=clock.now(),
        seed=args.seed,
        script=SCRIPTS[args.script](),
    )
    kinds_seen: dict[SignalKind, str] = {}
    for name, feed in mqtt_feeds.items():
        first = kinds_seen.setdefault(feed.kind, name)
        if first != name:
            print(
                f"{PROG}: feed {name!r} gets no data: one feed per kind is simulated "
                f"({feed.kind} goes to {first!r})",
                file=err,
            )
    topics = Topics(config.site.id)
    speed = "as fast as possible" if args.speed == 0 else f"{args.speed:g}x real time"
    print(
        f"{PROG}: room {room_id} of site {config.site.id}: feeds "
        f"{', '.join(sorted(kinds_seen.values()))} -> {target.url} at {speed}, "
        f"script {args.script}; origin 'simulated'. Not a medical device.",
        file=out,
        flush=True,
    )
    steps = None if args.seconds is None else math.ceil(args.seconds - 1e-9)
    totals = _Tally()
    minute = _Tally()
    client_id = f"roommon-simulate-{room_id}-{os.getpid()}"
    async with FeedPublisher(
        target=target,
        client_id=client_id,
        qos=args.qos,
        clock=clock,
        err=err,
    ) as publisher:
        pacer = Pacer(clock=clock, speed=args.speed, step_s=1.0, catch_up=True)
        played = 0
        done = 0
        try:
            while steps is None or done < steps:
                # A device sends a chunk once its last sample is taken: at the step's end.
                await pacer.wait()
                for sample in sim.step(1.0):
                    topic = topics.feed(room_id, sample.feed)
                    if isinstance(sample, WaveformChunk):
                        await publisher.publish(topic, encode_waveform(sample))
                        minute.chunks += 1
                    else:
                        await publisher.publish(topic, encode_reading(sample))
                        minute.readings += 1
                for action in sim.take_commands():
                    # The operator's button (``cement_mixed``...), published as a display
                    # would, under this client's own id (the broker's ACL pattern).
                    command = CommandPayload.model_validate(
                        {"v": 1, "id": f"sim-{done}-{action}", "room": room_id, "action": action}
                    )
                    await publisher.publish(
                        topics.command(room_id, client_id), command.model_dump_json().encode()
                    )
                    minute.commands += 1
                minute.actions.extend(sim.events[played:])
                played = len(sim.events)
                minute.seconds += 1
                done += 1
                if done % 60 == 0:
                    print(minute.mqtt_line(done), file=out, flush=True)
                    totals.absorb(minute)
                    minute = _Tally()
        finally:
            totals.absorb(minute)
            print(
                f"{PROG}: {totals.seconds} simulated s: {totals.chunks} chunks, "
                f"{totals.readings} readings, {len(totals.actions)} script actions, "
                f"{totals.commands} operator commands; "
                f"{publisher.outages} broker outage(s)",
                file=out,
                flush=True,
            )
    return EXIT_OK


@dataclass(slots=True)
class _Tally:
    seconds: int = 0
    chunks: int = 0
    readings: int = 0
    commands: int = 0
    frames: int = 0
    nbytes: int = 0
    dropped: int = 0
    actions: list[str] = field(default_factory=list)

    def absorb(self, other: _Tally) -> None:
        self.seconds += other.seconds
        self.chunks += other.chunks
        self.readings += other.readings
        self.commands += other.commands
        self.frames += other.frames
        self.nbytes += other.nbytes
        self.dropped += other.dropped
        self.actions.extend(other.actions)

    def mqtt_line(self, at_s: float) -> str:
        script = "; ".join(self.actions) if self.actions else "-"
        return (
            f"[{_clock_time(at_s)} simulated] sent {self.chunks} chunks, "
            f"{self.readings} readings; script: {script}"
        )

    def serial_line(self, at_s: float) -> str:
        return (
            f"[{_clock_time(at_s)} simulated] wrote {self.frames} frames, "
            f"{self.nbytes} bytes" + (f"; {self.dropped} lost, no reader" if self.dropped else "")
        )


async def simulate_serial(
    args: argparse.Namespace, *, clock: Clock, out: TextIO, err: TextIO
) -> int:
    """Serial mode: one device's byte stream to a port or a pty; the exit status."""
    if (args.port is None) == (not args.pty):
        raise UsageError("serial mode needs exactly one of --port PATH and --pty")
    if args.kind and args.protocol != "roommon_line":
        raise UsageError(f"--kind is for --protocol roommon_line, not {args.protocol}")
    if not 1 <= len(args.device_id) <= 32 or not all(
        c.isascii() and (c.isalnum() or c in "_.-") for c in args.device_id
    ):
        raise UsageError("--device-id: 1-32 of A-Z a-z 0-9 _ . -")
    # Build (and so validate --kind) before opening anything.
    device_streams(
        protocol=args.protocol, kinds=args.kind or [], device_id=args.device_id, seed=0, t0=0.0
    )
    if args.pty:
        line = DeviceLine.open_pty()
        print(f"pty: {line.name}", file=out, flush=True)
    else:
        baud = args.baudrate or (115200 if args.protocol == "roommon_line" else 9600)
        line = DeviceLine.open_port(args.port, baudrate=baud)
    try:
        speed = "as fast as the reader takes it" if args.speed == 0 else f"{args.speed:g}x"
        what = f" ({', '.join(args.kind or ['ecg'])})" if args.protocol == "roommon_line" else ""
        print(
            f"{PROG}: {args.protocol}{what} on {line.name} at {speed}; "
            "simulated device. Not a medical device.",
            file=out,
            flush=True,
        )
        if not line.reader_attached():
            print(f"{PROG}: waiting for a reader to open {line.name}", file=out, flush=True)
        await line.wait_for_reader(clock)
        return await _write_device(args, line=line, clock=clock, out=out, err=err)
    finally:
        line.close()


async def _write_device(
    args: argparse.Namespace, *, line: DeviceLine, clock: Clock, out: TextIO, err: TextIO
) -> int:
    streams = device_streams(
        protocol=args.protocol,
        kinds=args.kind or [],
        device_id=args.device_id,
        seed=args.seed,
        t0=clock.now(),
    )
    tick = min(s.period_s for s in streams)
    ticks = None if args.seconds is None else math.ceil(args.seconds / tick - 1e-6)
    totals, minute = _Tally(), _Tally()
    pacer = Pacer(clock=clock, speed=args.speed, step_s=tick, catch_up=False)
    k = 0
    attached = True
    try:
        while ticks is None or k < ticks:
            if args.speed == 0 and not line.reader_attached():
                # "As fast as the reader takes it" with no reader: wait for one
                # rather than race through simulated time into the void.
                print(f"{PROG}: reader of {line.name} gone; waiting for one", file=err, flush=True)
                await line.wait_for_reader(clock)
                print(f"{PROG}: reader of {line.name} back; writing", file=err, flush=True)
            await pacer.wait()
            k += 1
            elapsed = k * tick
            frames = [f for stream in streams for f in stream.frames_until(elapsed)]
            if frames:
                data = b"".join(frames)
                written = await line.write(data)
                if written:
                    minute.frames += len(frames)
                    minute.nbytes += len(data)
                else:
                    minute.dropped += len(frames)
                if written != attached and args.speed > 0:
                    attached = written
                    state = "back; writing" if written else "gone; frames are lost until it returns"
                    print(f"{PROG}: reader of {line.name} {state}", file=err, flush=True)
            if _minute_ended((k - 1) * tick, elapsed):
                print(minute.serial_line(elapsed), file=out, flush=True)
                totals.absorb(minute)
                minute = _Tally()
        left = await line.drain(clock=clock)
        if left:
            print(f"{PROG}: {left} bytes were never read from {line.name}", file=err)
    finally:
        totals.absorb(minute)
        print(
            f"{PROG}: {k * tick:.1f} simulated s: {totals.frames} frames, "
            f"{totals.nbytes} bytes written, {totals.dropped} frames lost with no reader",
            file=out,
            flush=True,
        )
    return EXIT_OK


# --------------------------------------------------------------------------- record mode


async def simulate_record(
    args: argparse.Namespace, *, clock: Clock, out: TextIO, err: TextIO
) -> int:
    """``--from RECORD``: a WFDB/EDF record's signals as a room's MQTT feeds, looping."""
    from roommon.config import parse_config
    from roommon.records.mapping import map_numerics, map_signals, parse_map
    from roommon.records.reader import open_record
    from roommon.runtime import record_feeds

    overrides = parse_map(args.map or [])
    record = open_record(args.from_record)
    mapped, left_out = map_signals(record.signals, overrides)
    numerics, numerics_out = map_numerics(record.numerics, overrides)
    left_out = [*left_out, *numerics_out]
    if args.config is not None:
        config = load_or_report(args.config, err)
        if config is None:
            return EXIT_USAGE
        config_path = args.config
    else:
        config_path = "<config made from the record>"
        config = parse_config(
            record_feeds.default_config_data(mapped, numerics), source=config_path
        )
    # Only the room's MQTT feeds are the simulator's to feed (serial ones have their device).
    rooms = {
        rid: r.model_copy(
            update={"feeds": {n: f for n, f in r.feeds.items() if f.transport == "mqtt"}}
        )
        for rid, r in config.rooms.items()
    }
    plan = record_feeds.plan_record(
        record,
        mapped,
        left_out,
        config=config.model_copy(update={"rooms": rooms}),
        room=args.room,
        config_path=config_path,
        from_s=None,
        to_s=None,
        numerics=numerics,
    )
    target = broker_target(config, args.broker)
    topics = Topics(config.site.id)
    speed = "as fast as possible" if args.speed == 0 else f"{args.speed:g}x real time"
    feeds = ", ".join(
        [f"{fp.signal}->{fp.feed} ({fp.fs:g} Hz)" for fp in plan.feeds]
        + [f"{'+'.join(rp.signals.values())}->{rp.feed} (readings)" for rp in plan.readings]
    )
    print(
        f"{PROG}: record {record.path} ({record.duration_s:.0f} s, looping) as room "
        f"{plan.room} of site {config.site.id}: {feeds} -> {target.url} at {speed}; "
        "origin 'simulated'. Not a medical device.",
        file=out,
        flush=True,
    )
    for name in plan.left_out:
        print(f"{PROG}: signal {name!r} left out (no mqtt feed for it)", file=out, flush=True)
    length = plan.to_s - plan.from_s
    per_pass = max(
        [math.ceil(fp.samples.shape[0] / max(1, round(fp.fs))) for fp in plan.feeds]
        + [rp.t_s.shape[0] for rp in plan.readings]
    )
    steps = None if args.seconds is None else math.ceil(args.seconds - 1e-9)
    totals, minute = _Tally(), _Tally()
    t_start = clock.now()
    async with FeedPublisher(
        target=target,
        client_id=f"roommon-simulate-{plan.room}-{os.getpid()}",
        qos=args.qos,
        clock=clock,
        err=err,
    ) as publisher:
        pacer = Pacer(clock=clock, speed=args.speed, step_s=1.0, catch_up=True)
        done = 0
        loop = 0
        try:
            while True:
                pending = record_feeds.chunks(
                    plan,
                    origin=DataOrigin.SIMULATED,
                    t0=t_start + loop * length,
                    seq0=1 + loop * per_pass,
                )
                values = record_feeds.readings(
                    plan,
                    origin=DataOrigin.SIMULATED,
                    t0=t_start + loop * length,
                    seq0=1 + loop * per_pass,
                )
                chunk = next(pending, None)
                reading = next(values, None)
                while (chunk is not None or reading is not None) and (
                    steps is None or done < steps
                ):
                    # A device sends a chunk once its last sample is taken: at the step's end.
                    await pacer.wait()
                    done += 1
                    now = t_start + done
                    while chunk is not None and chunk.t_end <= now + 1e-6:
                        topic = topics.feed(plan.room, chunk.feed)
                        await publisher.publish(topic, encode_waveform(chunk))
                        minute.chunks += 1
                        chunk = next(pending, None)
                    # the monitor's numerics, as its own device sends them: when measured
                    while reading is not None and reading.t <= now + 1e-6:
                        topic = topics.feed(plan.room, reading.feed)
                        await publisher.publish(topic, encode_reading(reading))
                        minute.readings += 1
                        reading = next(values, None)
                    minute.seconds += 1
                    if _minute_ended(done - 1, done):
                        print(minute.mqtt_line(done), file=out, flush=True)
                        totals.absorb(minute)
                        minute = _Tally()
                if steps is not None and done >= steps:
                    break
                loop += 1
        finally:
            totals.absorb(minute)
            print(
                f"{PROG}: {done} simulated s ({loop} full passes of the record): "
                f"{totals.chunks} chunks and {totals.readings} readings published",
                file=out,
                flush=True,
            )
    return EXIT_OK


# --------------------------------------------------------------------------- CLI


DESCRIPTION: Final = (
    "Drive simulated device feeds into a running roommon daemon, the way real devices "
    "would: a room's MQTT feeds from its config (--config, --room), or one serial "
    "device's bytes to a port or a new pseudo-terminal (--protocol, --port | --pty). "
    "Data is marked simulated. Exit 0 done, 1 runtime failure, 2 bad usage or config."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``simulate`` on the main CLI's subparsers; handler in ``func``."""
    p = subparsers.add_parser(
        "simulate",
        help="drive simulated device feeds into a running daemon (MQTT or serial)",
        description=DESCRIPTION,
    )
    _add_arguments(p)
    p.set_defaults(func=run_simulate)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    common = p.add_argument_group("both modes")
    common.add_argument(
        "--speed", type=non_negative, default=1.0, help="N x real time (default 1; 0: no waiting)"
    )
    common.add_argument(
        "--seconds", type=positive, default=None, help="simulated seconds (default: until stopped)"
    )
    common.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")

    mqtt = p.add_argument_group("MQTT mode: a room's mqtt feeds to the broker")
    mqtt.add_argument("--config", "-c", help="roommon config file (TOML)")
    mqtt.add_argument("--room", help="room id (default: the config's only room)")
    mqtt.add_argument("--broker", help="mqtt://HOST:PORT (default: the config's broker)")
    mqtt.add_argument(
        "--script", choices=sorted(SCRIPTS), default="kyphoplasty", help="scripted events"
    )
    mqtt.add_argument("--qos", type=int, choices=(0, 1), default=1, help="feed QoS (default 1)")
    mqtt.add_argument(
        "--from",
        dest="from_record",
        metavar="RECORD",
        help="publish a WFDB/EDF record's signals as the room's feeds, looping (with --config: "
        "its room's mqtt feeds; without: the config made from the record, docs/records.md)",
    )
    mqtt.add_argument(
        "--map",
        action="append",
        metavar="NAME=FEED",
        help="with --from: signal NAME is feed kind FEED (ecg, pleth, abp) or none",
    )

    ser = p.add_argument_group("serial mode: one device's bytes to a serial line")
    ser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="serial mode: the device byte format to write (chooses serial mode)",
    )
    where = ser.add_mutually_exclusive_group()
    where.add_argument("--port", help="serial device to write to (e.g. /dev/ttyUSB0)")
    where.add_argument(
        "--pty", action="store_true", help="create a pseudo-terminal; its path is printed first"
    )
    ser.add_argument(
        "--kind",
        action="append",
        metavar="KIND[:FS]",
        help=f"roommon_line signal, repeatable: {', '.join(RM1_KINDS)} (default ecg)",
    )
    ser.add_argument("--device-id", default="ROOMMON-SIM", help="roommon_line device id")
    ser.add_argument(
        "--baudrate",
        type=int,
        default=None,
        help="--port only (default 115200 for roommon_line, else 9600)",
    )


async def simulate(args: argparse.Namespace, *, clock: Clock, out: TextIO, err: TextIO) -> int:
    """Run the mode the arguments ask for; usage and runtime failures become exit statuses."""
    try:
        if args.protocol is not None and args.config is not None:
            raise UsageError("give either --config (MQTT mode) or --protocol (serial mode)")
        if args.protocol is not None:
            if args.from_record is not None:
                raise UsageError("--from publishes to MQTT: it does not go with --protocol")
            return await simulate_serial(args, clock=clock, out=out, err=err)
        if args.from_record is not None:
            return await simulate_record(args, clock=clock, out=out, err=err)
        serial_only = args.port is not None or args.pty or args.kind
        if args.config is None or serial_only:
            raise UsageError(
                "give --config FILE [--room ROOM] (MQTT mode) or "
                "--protocol P --port PATH|--pty (serial mode)"
            )
        return await simulate_mqtt(args, clock=clock, out=out, err=err)
    except (UsageError, SimulateError, PublisherError, DeviceLineError) as exc:
        what = "error: " if isinstance(exc, UsageError) else ""
        print(f"{PROG}: {what}{exc}", file=err)
        return exit_status(exc)


def run_simulate(args: argparse.Namespace) -> int:
    """Handler of ``roommon simulate``; returns the process exit status."""
    return run_until_signal(
        lambda stop: cancel_on_stop(
            simulate(args, clock=RealClock(), out=sys.stdout, err=sys.stderr), stop
        )
    )
