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
import asyncio
import contextlib
import fcntl
import math
import os
import random
import select
import struct
import sys
import termios
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Protocol, Self, TextIO

import aiomqtt
import numpy as np
import serial

from roommon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    broker_target,
    cancel_on_stop,
    load_or_report,
    non_negative,
    positive,
    run_until_signal,
)
from roommon.core.clock import Clock, RealClock
from roommon.core.errors import RoommonError, UsageError
from roommon.core.model import (
    CANONICAL_UNITS,
    FloatArray,
    NumericReading,
    SignalKind,
    WaveformChunk,
)
from roommon.drivers.masimo import EXCEPTION_BITS as MASIMO_EXC
from roommon.drivers.nonin import FRAME_LEN, FRAMES_PER_PACKET, FS_HZ, STATUS_SNSD
from roommon.transports.broker import RETRYABLE_CONNACK, BrokerEndpoint, connack_code
from roommon.wire.payloads import encode_reading, encode_waveform
from roommon.wire.topics import Topics
from simulators.abp import ArterialPressureSimulator
from simulators.cement import CementPressureSimulator
from simulators.ecg import EcgSimulator
from simulators.nibp import NibpSimulator
from simulators.pleth import PlethSimulator
from simulators.room import Action, RoomSimulator, kyphoplasty_script
from simulators.serial_devices import (
    encode_masimo_line,
    encode_nonin_packet,
    encode_rm1_numeric,
    encode_rm1_waveform,
    write_all,
)

PROG: Final = "roommon simulate"
SCRIPTS: Final[dict[str, Callable[[], list[Action]]]] = {
    "kyphoplasty": kyphoplasty_script,
    "none": list,
}
PROTOCOLS: Final = ("masimo_ascii", "nonin_fmt2", "roommon_line")
RM1_KINDS: Final = ("ecg", "cement_pressure", "nibp", "abp", "pleth")

#: A QoS 1 publish normally completes in milliseconds; aiomqtt does not wake a
#: publish whose connection dropped, so this bounds how long a lost PUBACK holds us.
PUBLISH_TIMEOUT_S: Final = 2.0


class SimulateError(RoommonError):
    """The run cannot go on (broker refusal, port gone); the message is for a person."""


# --------------------------------------------------------------------------- pacing


class Pacer:
    """Deadlines for consecutive simulated steps at ``speed`` x real time on ``clock``.

    Deadlines are absolute (``start + k * step / speed``) so the pace does not
    drift. ``catch_up`` decides what a stall (a broker outage, a receiver
    reading slower than the device writes) means: with it, the missed steps
    are then produced as fast as possible, keeping simulated time locked to
    the clock (right when the data carries its own time stamps, as MQTT
    payloads do); without it, the pace restarts from now (right when the
    receiver stamps data on arrival, as serial hosts do, where a burst would
    squeeze time).
    """

    __slots__ = ("_catch_up", "_clock", "_next", "_step", "speed")

    def __init__(self, *, clock: Clock, speed: float, step_s: float, catch_up: bool) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        self.speed = speed
        self._clock = clock
        self._step = step_s
        self._catch_up = catch_up
        self._next = clock.monotonic()

    async def wait(self) -> None:
        """Wait until the end of the next step (only a yield at speed 0)."""
        if self.speed == 0:
            await self._clock.sleep(0)
            return
        interval = self._step / self.speed
        self._next += interval
        now = self._clock.monotonic()
        if not self._catch_up and now - self._next > interval:
            self._next = now
        await self._clock.sleep_until(self._next)


def _clock_time(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _minute_ended(before_s: float, after_s: float) -> bool:
    return math.floor(after_s / 60.0 + 1e-9) > math.floor(before_s / 60.0 + 1e-9)


# --------------------------------------------------------------------------- MQTT mode


class FeedPublisher:
    """One MQTT connection publishing feed payloads in order, surviving broker outages.

    ``async with`` connects once (any failure there is a :class:`SimulateError`:
    a wrong address or credentials should stop the run, not spin). Afterwards
    :meth:`publish` never drops a payload: when the broker goes away it reports
    on ``err``, reconnects with capped, jittered backoff on the clock and
    publishes the payload again. A payload whose PUBACK was lost with the
    connection may so arrive twice (the daemon rejects the copy as
    ``duplicate``); none is lost. A CONNACK refusal on a reconnect (credentials
    revoked) is final too.
    """

    def __init__(
        self,
        *,
        target: BrokerEndpoint,
        client_id: str,
        qos: int,
        clock: Clock,
        err: TextIO,
        rng: random.Random | None = None,
    ) -> None:
        self._target = target
        self._client_id = client_id
        self._qos = qos
        self._clock = clock
        self._err = err
        self._rng = rng or random.Random()
        self._client: aiomqtt.Client | None = None
        self.published = 0
        self.outages = 0

    async def __aenter__(self) -> Self:
        try:
            self._client = await self._connect()
        except aiomqtt.MqttError as exc:
            raise SimulateError(self._refusal(exc)) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._disconnect()

    def _refusal(self, exc: aiomqtt.MqttError) -> str:
        code = connack_code(exc)
        what = "refused the connection" if code is not None else "cannot be reached"
        return f"broker {self._target.url} {what}: {exc}"

    async def _connect(self) -> aiomqtt.Client:
        client = self._target.client(identifier=self._client_id)
        await client.__aenter__()
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        # A half-dead connection may never acknowledge the DISCONNECT; don't wait on it.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(1.0):
                await client.__aexit__(None, None, None)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish, waiting through broker outages; raises only :class:`SimulateError`."""
        while True:
            if self._client is None:
                await self._reconnect()
            assert self._client is not None
            try:
                await self._client.publish(topic, payload, qos=self._qos, timeout=PUBLISH_TIMEOUT_S)
            except aiomqtt.MqttError as exc:
                self.outages += 1
                print(
                    f"{PROG}: broker {self._target.url} lost ({exc}); "
                    "holding data and reconnecting",
                    file=self._err,
                    flush=True,
                )
                await self._disconnect()
                continue
            self.published += 1
            return

    async def _reconnect(self) -> None:
        t = self._target
        started = self._clock.monotonic()
        attempt = 0
        backoff = t.backoff()
        while True:
            await backoff.wait(attempt, self._clock, self._rng)
            attempt += 1
            try:
                self._client = await self._connect()
            except aiomqtt.MqttError as exc:
                code = connack_code(exc)
                if code is not None and code not in RETRYABLE_CONNACK:
                    raise SimulateError(self._refusal(exc)) from exc
                continue
            took = self._clock.monotonic() - started
            print(
                f"{PROG}: broker {t.url} reconnected after {attempt} attempt(s), "
                f"{took:.1f} s; resending held data",
                file=self._err,
                flush=True,
            )
            return


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
    async with FeedPublisher(
        target=target,
        client_id=f"roommon-simulate-{room_id}-{os.getpid()}",
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
                f"{totals.readings} readings, {len(totals.actions)} script actions; "
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
    frames: int = 0
    nbytes: int = 0
    dropped: int = 0
    actions: list[str] = field(default_factory=list)

    def absorb(self, other: _Tally) -> None:
        self.seconds += other.seconds
        self.chunks += other.chunks
        self.readings += other.readings
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


# --------------------------------------------------------------------------- serial mode


class DeviceStream(Protocol):
    """One device output stream: the frames complete by a simulated time."""

    @property
    def period_s(self) -> float:
        """Simulated seconds between frames (the loop's tick is the shortest)."""
        ...

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        """Every frame whose last sample is taken by ``elapsed_s`` into the run."""
        ...


#: Sample rate of each roommon_line waveform kind unless ``--kind KIND:FS``;
#: the rates the protocol document suggests (docs/serial-protocol.md, section 8).
RM1_DEFAULT_FS: Final[dict[SignalKind, float]] = {
    SignalKind.ECG: 250.0,
    SignalKind.ABP: 125.0,
    SignalKind.CEMENT_PRESSURE: 50.0,
    SignalKind.PLETH: 100.0,
}
RM1_DECIMALS: Final[dict[SignalKind, int]] = {
    SignalKind.ECG: 3,
    SignalKind.PLETH: 3,
    SignalKind.ABP: 1,
    SignalKind.CEMENT_PRESSURE: 1,
}
#: Frames carry 100 ms of samples: the document's "under 100 ms where the data
#: feeds alarms", and 10 frames a second keep a stale feed noticed fast.
RM1_FRAME_S: Final = 0.1
_EPS: Final = 1e-9


@dataclass(slots=True, kw_only=True)
class Rm1WaveformStream:
    """``W`` frames of one waveform kind from a sample generator."""

    device_id: str
    kind: SignalKind
    fs: float
    generate: Callable[[int], FloatArray]
    before_frame: Callable[[float], None] | None = None
    frame_samples: int = 0
    seq: int = 0

    def __post_init__(self) -> None:
        if self.frame_samples <= 0:
            self.frame_samples = min(256, max(1, round(self.fs * RM1_FRAME_S)))

    @property
    def period_s(self) -> float:
        return self.frame_samples / self.fs

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        out: list[bytes] = []
        while (self.seq + 1) * self.period_s <= elapsed_s + _EPS:
            if self.before_frame is not None:
                self.before_frame(self.seq * self.period_s)
            out.append(
                encode_rm1_waveform(
                    device_id=self.device_id,
                    seq=self.seq,
                    kind=self.kind.value,
                    unit=CANONICAL_UNITS[self.kind],
                    fs=self.fs,
                    samples=self.generate(self.frame_samples),
                    decimals=RM1_DECIMALS[self.kind],
                )
            )
            self.seq += 1
        return out


@dataclass(slots=True, kw_only=True)
class Rm1NibpStream:
    """``N`` frames of an NIBP unit: one per completed cuff measurement."""

    device_id: str
    nibp: NibpSimulator
    seq: int = 0

    @property
    def period_s(self) -> float:
        return 1.0

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        out: list[bytes] = []
        for r in self.nibp.readings_until(elapsed_s + _EPS):
            out.append(
                encode_rm1_numeric(
                    device_id=self.device_id,
                    seq=self.seq,
                    kind="nibp",
                    values=r.values,
                    flags=r.flags,
                    decimals=0,
                )
            )
            self.seq += 1
        return out


class InjectionProfile:
    """Drives a cement simulator through repeating injections, as a hand injector does.

    Each cycle of :attr:`CYCLE_S`: rest, inject, pause, resume, stop, rest; so
    a commissioning run sees injection start, pressure plateau and end events.
    """

    CYCLE_S: Final = 120.0
    STEPS: Final = ((10.0, "inject"), (40.0, "pause"), (50.0, "inject"), (80.0, "pause"))

    __slots__ = ("_done", "_sim")

    def __init__(self, sim: CementPressureSimulator) -> None:
        self._sim = sim
        self._done = 0

    def __call__(self, elapsed_s: float) -> None:
        while True:
            cycle, i = divmod(self._done, len(self.STEPS))
            at_s, action = self.STEPS[i]
            if cycle * self.CYCLE_S + at_s > elapsed_s + _EPS:
                return
            if action == "inject":
                self._sim.inject(level_kpa=1700.0)
            else:
                self._sim.pause()
            self._done += 1


MASIMO_SENSOR_OFF: Final = next(b for b, name in MASIMO_EXC.items() if name == "sensor_off")


@dataclass(slots=True, kw_only=True)
class MasimoStream:
    """A Radical-7's ASCII 1 output: one line per second of the oximeter's numerics."""

    pleth: PlethSimulator
    t0: float

    @property
    def period_s(self) -> float:
        return 1.0

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        return [
            encode_masimo_line(
                t=r.t,
                spo2=r.values["spo2"],
                pulse_rate=r.values["pulse_rate"],
                perfusion_index=r.values["perfusion_index"],
                exceptions=MASIMO_SENSOR_OFF if "sensor_off" in r.flags else 0,
            )
            for r in self.pleth.readings_until(self.t0 + elapsed_s + _EPS)
        ]


@dataclass(slots=True, kw_only=True)
class NoninStream:
    """A Nonin format 2 oximeter: a 25-frame packet (8-bit pleth, SpO2, HR) every 1/3 s.

    Frames are returned one by one (5 bytes each), so frame counts are the protocol's.
    """

    pleth: PlethSimulator
    t0: float
    packets: int = 0
    latest: NumericReading | None = None

    @property
    def period_s(self) -> float:
        return FRAMES_PER_PACKET / FS_HZ

    def frames_until(self, elapsed_s: float) -> list[bytes]:
        out: list[bytes] = []
        while (self.packets + 1) * self.period_s <= elapsed_s + _EPS:
            t_end = self.t0 + (self.packets + 1) * self.period_s
            wave = self.pleth.next_samples(FRAMES_PER_PACKET)
            for r in self.pleth.readings_until(t_end):
                self.latest = r
            # The normalised pleth (about 0..1 per pulse) on the device's 8-bit scale.
            raw = np.clip(np.round(60.0 + 150.0 * wave), 0, 255).astype(np.int64)
            if self.latest is None:
                spo2, rate, status = self.pleth.spo2, self.pleth.rate_bpm, 0
            else:
                off = "sensor_off" in self.latest.flags
                spo2 = self.latest.values["spo2"]
                rate = self.latest.values["pulse_rate"]
                status = STATUS_SNSD if off else 0
            packet = encode_nonin_packet(pleth=raw, spo2=spo2, pulse_rate=rate, status=status)
            out.extend(packet[i : i + FRAME_LEN] for i in range(0, len(packet), FRAME_LEN))
            self.packets += 1
        return out


def parse_kind(text: str) -> tuple[SignalKind, float | None]:
    """``KIND`` or ``KIND:FS`` of ``--kind`` (roommon_line)."""
    name, _, fs_text = text.partition(":")
    if name not in RM1_KINDS:
        raise UsageError(f"--kind: {name!r} is not one of {', '.join(RM1_KINDS)}")
    kind = SignalKind(name)
    if not fs_text:
        return kind, None
    if not kind.is_waveform:
        raise UsageError(f"--kind {text}: {kind} readings take no sample rate")
    try:
        fs = float(fs_text)
    except ValueError:
        raise UsageError(f"--kind {text}: {fs_text!r} is not a sample rate") from None
    if not 0 < fs <= 5000 or not math.isfinite(fs):
        raise UsageError(f"--kind {text}: the sample rate must be in (0, 5000] Hz")
    return kind, fs


def device_streams(
    *, protocol: str, kinds: Sequence[str], device_id: str, seed: int, t0: float
) -> list[DeviceStream]:
    """The output streams of the simulated device speaking ``protocol``."""
    if protocol == "masimo_ascii":
        return [MasimoStream(pleth=PlethSimulator(seed=seed, t0=t0), t0=t0)]
    if protocol == "nonin_fmt2":
        return [NoninStream(pleth=PlethSimulator(fs=FS_HZ, seed=seed, t0=t0), t0=t0)]
    streams: list[DeviceStream] = []
    seen: set[SignalKind] = set()
    for i, text in enumerate(kinds or ["ecg"]):
        kind, fs_arg = parse_kind(text)
        if kind in seen:
            raise UsageError(f"--kind {kind} given twice")
        seen.add(kind)
        s = seed + i
        if kind == SignalKind.NIBP:
            nibp = NibpSimulator(cycle_s=60.0, t0=0.0, seed=s)
            streams.append(Rm1NibpStream(device_id=device_id, nibp=nibp))
            continue
        fs = fs_arg or RM1_DEFAULT_FS[kind]
        before: Callable[[float], None] | None = None
        generate: Callable[[int], FloatArray]
        if kind == SignalKind.ECG:
            generate = EcgSimulator(fs=fs, seed=s).next_chunk
        elif kind == SignalKind.ABP:
            generate = ArterialPressureSimulator(fs=fs, seed=s, t0=t0).next_samples
        elif kind == SignalKind.PLETH:
            generate = PlethSimulator(fs=fs, seed=s, t0=t0).next_samples
        else:
            cement = CementPressureSimulator(fs=fs, seed=s, t0=t0)
            generate, before = cement.next_samples, InjectionProfile(cement)
        streams.append(
            Rm1WaveformStream(
                device_id=device_id, kind=kind, fs=fs, generate=generate, before_frame=before
            )
        )
    return streams


#: pyserial flushes the input queue just after opening a port; the first bytes
#: wait this long after a reader appears so that flush cannot cut a frame.
READER_SETTLE_S: Final = 0.1
#: How often the presence of a pty reader is looked at while waiting for one.
READER_POLL_S: Final = 0.05


class DeviceLine:
    """The device end of a serial link: a pty master, or a real port opened with pyserial.

    Writes wait while the line is full, as a receiver reading slowly holds
    back a UART's buffer; an error on the line (the port unplugged or closed)
    is a :class:`SimulateError`. On a pty the run starts once a reader has
    opened the slave end; while no reader has it open the device goes on at
    its pace and its frames are lost (counted), as on a cable with nothing at
    the other end.
    """

    def __init__(self, *, fd: int, name: str, port: serial.Serial | None = None) -> None:
        self.fd = fd
        self.name = name
        self._port = port
        self._poll: select.poll | None = None
        if port is None:
            self._poll = select.poll()
            self._poll.register(fd, select.POLLOUT)

    @classmethod
    def open_pty(cls) -> DeviceLine:
        master, slave = os.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        # Not kept open: the master then shows POLLHUP exactly while nobody has
        # the slave open, which is how a reader is noticed.
        os.close(slave)
        return cls(fd=master, name=name)

    @classmethod
    def open_port(cls, path: str, *, baudrate: int) -> DeviceLine:
        try:
            port = serial.Serial(port=path, baudrate=baudrate, timeout=0, exclusive=True)
        except (OSError, serial.SerialException, ValueError) as exc:
            raise SimulateError(f"cannot open serial port {path}: {exc}") from exc
        return cls(fd=port.fileno(), name=path, port=port)

    def reader_attached(self) -> bool:
        """Whether a receiver has the line open (a real port: always assumed)."""
        if self._poll is None:
            return True
        return not any(ev & select.POLLHUP for _, ev in self._poll.poll(0))

    async def wait_for_reader(self, clock: Clock) -> None:
        while not self.reader_attached():
            await clock.sleep(READER_POLL_S)
        await clock.sleep(READER_SETTLE_S)

    async def write(self, data: bytes) -> bool:
        """Write every byte; False when a pty had no reader (the rest of ``data`` is lost)."""
        try:
            if self._port is not None:
                await write_all(self.fd, data)
                return True
            return await self._write_pty(data)
        except OSError as exc:
            raise SimulateError(
                f"serial port {self.name} closed or unplugged ({exc.strerror or exc})"
            ) from exc

    async def _write_pty(self, data: bytes) -> bool:
        # Not write_all: a reader that leaves while the queue is full leaves the
        # master hung up but never writable, and epoll reports the hang-up as
        # "writable" over and over; each wake-up must look at the reader first.
        os.set_blocking(self.fd, False)
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            if not self.reader_attached():
                return False
            try:
                view = view[os.write(self.fd, view) :]
                continue
            except BlockingIOError:
                pass
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(self.fd, _set_done, ready)
            try:
                await ready
            finally:
                loop.remove_writer(self.fd)
        return True

    async def drain(self, *, clock: Clock, linger_s: float = 5.0) -> int:
        """Before closing: let the reader take what was written; the bytes left unread."""
        if self._port is not None:
            try:
                await asyncio.to_thread(self._port.flush)
            except (OSError, termios.error, serial.SerialException) as exc:
                raise SimulateError(f"serial port {self.name} closed or unplugged ({exc})") from exc
            return 0
        if not self.reader_attached():
            return 0
        # A second descriptor on the slave to see the reader's queue; opening a
        # pty slave without pyserial flushes nothing.
        probe = os.open(self.name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            deadline = clock.monotonic() + linger_s
            quiet = 0
            # Written bytes reach the reader's queue a moment after write() returns,
            # so one empty reading is not proof: ask for two in a row.
            while quiet < 2 and clock.monotonic() < deadline:
                quiet = quiet + 1 if _unread(probe) == 0 else 0
                await clock.sleep(0.02)
            return _unread(probe)
        finally:
            os.close(probe)

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                self._port.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.fd)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _unread(fd: int) -> int:
    raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


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

    ser = p.add_argument_group("serial mode: one device's bytes to a serial line")
    ser.add_argument("--protocol", choices=PROTOCOLS)
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
            return await simulate_serial(args, clock=clock, out=out, err=err)
        serial_only = args.port is not None or args.pty or args.kind
        if args.config is None or serial_only:
            raise UsageError(
                "give --config FILE [--room ROOM] (MQTT mode) or "
                "--protocol P --port PATH|--pty (serial mode)"
            )
        return await simulate_mqtt(args, clock=clock, out=out, err=err)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_USAGE
    except SimulateError as exc:
        print(f"{PROG}: {exc}", file=err)
        return EXIT_FAILURE


def run_simulate(args: argparse.Namespace) -> int:
    """Handler of ``roommon simulate``; returns the process exit status."""
    return run_until_signal(
        lambda stop: cancel_on_stop(
            simulate(args, clock=RealClock(), out=sys.stdout, err=sys.stderr), stop
        )
    )
