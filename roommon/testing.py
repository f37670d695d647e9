"""Fakes and rigs shipped for tests (ours and users'): a real Mosquitto broker
on a free loopback port, an MQTT collector, and an alarm-capturing room output.

Nothing here is mocked: the broker is the ``mosquitto`` binary, the collector a
real MQTT client. Only loopback addresses are ever used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt

from roommon.alerts.engine import Outgoing
from roommon.clock import RealClock
from roommon.payloads import AlarmEventMessage, RoomEventMessage, RoomStateMessage
from roommon.recovery.messages import TimerEventMessage, TimerMessage

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class MosquittoBroker:
    """A private mosquitto on 127.0.0.1:<free port> that tests can kill and restart."""

    def __init__(self, *, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            raise RuntimeError("the mosquitto binary is needed (Debian package 'mosquitto')")
        self.binary = binary
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="roommon-mosquitto-"))
        self.conf = self._dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def start(self, *, timeout: float = 10.0) -> None:
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        clock = RealClock()
        deadline = clock.monotonic() + timeout
        while clock.monotonic() < deadline:  # wait for a real resource: the listening socket
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a goodbye, as in a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._release()

    def _release(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._release()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(slots=True)
class MqttCollector:
    """Subscribes to topic filters on the test broker and keeps everything it gets."""

    port: int
    filters: list[str]
    client_id: str = "roommon-test-collector"
    messages: list[Received] = field(default_factory=list)
    _client: aiomqtt.Client | None = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Condition | None = None

    async def __aenter__(self) -> Self:
        self._changed = asyncio.Condition()
        self._client = aiomqtt.Client(
            LOOPBACK,
            self.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=2,
        )
        await self._client.__aenter__()
        for f in self.filters:
            await self._client.subscribe(f, qos=1)
        self._task = asyncio.create_task(self._run(), name="collector")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        assert self._client is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def _run(self) -> None:
        assert self._client is not None
        assert self._changed is not None
        async for m in self._client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else b""
            self.messages.append(Received(str(m.topic), payload, bool(m.retain)))
            async with self._changed:
                self._changed.notify_all()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=qos)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], *, within: float = 10.0
    ) -> list[Received]:
        """Wait until ``predicate(messages)`` holds (``within`` is only a safety net)."""
        assert self._changed is not None
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self.messages))
        return self.messages


class CaptureOutput:
    """A RoomOutput that keeps everything a pipeline publishes, for assertions."""

    def __init__(self) -> None:
        self.outgoing: list[Outgoing] = []
        self.room_events: list[RoomEventMessage] = []
        self.states: list[RoomStateMessage] = []
        self.timer_messages: list[TimerEventMessage] = []
        self.timers: list[TimerMessage] = []
        self._changed: asyncio.Event | None = None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[CaptureOutput], bool], *, within: float = 10.0
    ) -> None:
        """Wait until ``predicate(self)`` holds (``within`` is only a safety net)."""
        async with asyncio.timeout(within):
            while not predicate(self):
                self._changed = asyncio.Event()
                await self._changed.wait()

    @property
    def events(self) -> list[AlarmEventMessage]:
        return [o.event for o in self.outgoing]

    def alarms(self, outgoing: list[Outgoing]) -> None:
        self.outgoing.extend(outgoing)
        self._notify()

    def room_event(self, message: RoomEventMessage) -> None:
        self.room_events.append(message)
        self._notify()

    def state(self, message: RoomStateMessage) -> None:
        self.states.append(message)
        self._notify()

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        self.timer_messages.extend(messages)
        self._notify()

    def timer(self, message: TimerMessage) -> None:
        self.timers.append(message)
        self._notify()

    def transitions(self, code: str | None = None) -> list[tuple[str, str]]:
        return [(e.code, e.transition) for e in self.events if code is None or e.code == code]


class PtyDevice:
    """A bedside device on a real pseudo-terminal, reached through a by-id style symlink.

    The simulator writes to the master end; the daemon opens ``link``, which
    points at the slave. :meth:`unplug` closes the master (reads on the slave
    then fail with EIO, as when a USB adapter is pulled); :meth:`replug` makes
    a new pty and swaps the link atomically, as udev does when it comes back.
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = self.slave = -1
        self._old: list[int] = []
        self.replug()

    def replug(self) -> None:
        if self.slave >= 0:
            self._old.append(self.slave)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        tmp.replace(self.link)

    def unplug(self) -> None:
        os.close(self.master)
        self.master = -1

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def close(self) -> None:
        for fd in (self.master, self.slave, *self._old):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1
        self._old.clear()


# ------------------------------------------------------------ EKG record replay


@dataclass(slots=True)
class EcgRoomRun:
    """What a room showed and alarmed while one ECG signal was replayed through it.

    ``shown_rate[k]`` and ``rhythm[k]`` are the room state's ``heart_rate`` value
    (None for "--") and ``ecg_rhythm`` label after second ``k`` of the signal;
    ``events`` are the alarm engine's transitions; times are seconds from the
    signal's start.
    """

    events: list[tuple[float, str, str]]  # (t, code, transition)
    shown_rate: list[float | None]
    rhythm: list[str | None]
    state: RoomStateMessage | None

    def raised(self, code: str) -> list[float]:
        return [t for t, c, tr in self.events if c == code and tr == "raised"]

    def on_spans(self, code: str, end: float) -> list[tuple[float, float]]:
        """Intervals during which ``code`` was alarmed (from raised to cleared or latched)."""
        spans: list[tuple[float, float]] = []
        start: float | None = None
        for t, c, tr in self.events:
            if c != code:
                continue
            if tr == "raised" and start is None:
                start = t
            elif tr in ("cleared", "latched") and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, end))
        return spans


async def replay_ecg_through_room(
    samples: Any,
    *,
    fs: float,
    checks: dict[str, Any] | None = None,
    alarms: dict[str, Any] | None = None,
    chunk_s: float = 1.0,
) -> EcgRoomRun:
    """Feed an ECG signal (mV) through a real room pipeline on a virtual clock.

    Each chunk of ``chunk_s`` arrives as the clock reaches its end, then the room
    ticks, as the daemon does. NaN samples are delivered as they are (the
    pipeline splits them out as bad samples).
    """
    import numpy as np

    from roommon.clock import VirtualClock
    from roommon.config import parse_config
    from roommon.model import SignalKind, WaveformChunk
    from roommon.pipeline import RoomPipeline

    x = np.asarray(samples, dtype=np.float64)
    room: dict[str, Any] = {
        "feeds": {"ekg": {"kind": "ecg", "fs": fs}},
        "checks": {"ecg": dict(checks or {})},
    }
    if alarms:
        room["alarms"] = alarms
    cfg = parse_config({"site": {"id": "site1"}, "rooms": {"r1": room}})
    clock = VirtualClock()
    start = clock.now()
    out = CaptureOutput()
    p = RoomPipeline(
        site="site1", room="r1", config=cfg.rooms["r1"], daemon=cfg.daemon, clock=clock, output=out
    )
    step = max(1, round(chunk_s * fs))
    shown: list[float | None] = []
    rhythm: list[str | None] = []
    next_second = 1.0
    for seq, i in enumerate(range(0, x.shape[0], step)):
        part = x[i : i + step]
        await clock.advance(part.shape[0] / fs)
        p.ingest(
            WaveformChunk(
                room="r1",
                feed="ekg",
                kind=SignalKind.ECG,
                unit="mV",
                fs=fs,
                t0=start + i / fs,
                samples=part,
                seq=seq,
            )
        )
        p.tick()
        while clock.now() - start >= next_second - 1e-9:
            hr = p.measurements.get("heart_rate")
            shown.append(hr.value if hr is not None else None)
            rh = p.measurements.get("ecg_rhythm")
            rhythm.append(rh.label if rh is not None else None)
            next_second += 1.0
    events = [(e.t - start, e.code, str(e.transition)) for e in out.events]
    return EcgRoomRun(events=events, shown_rate=shown, rhythm=rhythm, state=p.state_message())
