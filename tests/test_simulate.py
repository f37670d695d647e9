"""``roommon simulate`` against real parts: a Mosquitto broker, a daemon, pseudo-terminals.

MQTT mode publishes to a private broker and a collector checks every payload
with the daemon's own decoder; an in-process daemon on the same broker must
take every simulated feed without a reject. Serial mode runs as a real
process (``python -m roommon simulate --pty``), and the printed pty is read
with the transport and driver the daemon uses.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import signal
import sys
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from roommon.cli import build_parser, main
from roommon.cli.simulate import simulate
from roommon.config import Config, parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.model import DataOrigin, FloatArray, NumericReading, SignalKind, WaveformChunk
from roommon.drivers import DRIVERS, DriverSample
from roommon.runtime.daemon import Daemon
from roommon.testing import CaptureOutput, MosquittoBroker, MqttCollector, Pty, free_port
from roommon.transports.backoff import Backoff
from roommon.transports.serial import LinkState, SerialFeed
from roommon.wire.payloads import decode_feed
from simulators.device_streams import device_streams
from simulators.pacing import Pacer

ROOT = Path(__file__).resolve().parents[1]
SITE = "simsite"
FEEDS = f"roommon/v1/{SITE}/r1/feed"
TIMEOUT = 10.0  # safety net only; every wait ends on an event well before it

MQTT_FEEDS: dict[str, dict[str, Any]] = {
    "ekg": {"kind": "ecg", "fs": 250.0},
    "pleth": {"kind": "pleth", "fs": 75.0},
    "spo2": {"kind": "spo2"},
    "nibp": {"kind": "nibp"},
    "art": {"kind": "abp", "fs": 125.0},
    "cement": {"kind": "cement_pressure", "fs": 50.0, "required": False},
}


def write_config(
    tmp_path: Path, port: int, *, serial_feed: bool = True, extra: str = ""
) -> Path:
    feeds = "".join(
        f"[rooms.r1.feeds.{name}]\n"
        + "".join(
            f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}\n"
            for k, v in spec.items()
        )
        for name, spec in MQTT_FEEDS.items()
    )
    if serial_feed:  # same kind as an MQTT feed: must not take its data
        feeds += (
            "[rooms.r1.feeds.ekg_serial]\nkind = 'ecg'\nfs = 250.0\ntransport = 'serial'\n"
            "serial = { port = '/dev/roommon-no-such-port', protocol = 'roommon_line' }\n"
        )
    path = tmp_path / "room.toml"
    path.write_text(
        f"[site]\nid = '{SITE}'\n"
        f"[broker]\nhost = '127.0.0.1'\nport = {port}\n"
        "reconnect_initial_s = 0.05\nreconnect_max_s = 0.3\n"
        f"[daemon]\nstate_dir = '{tmp_path / 'state'}'\ntick_s = 0.1\n"
        f"{feeds}{extra}"
    )
    return path


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["simulate", *argv])


async def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await simulate(parse(*argv), clock=RealClock(), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def decode_all(
    messages: list[Any], config: Config
) -> dict[str, list[WaveformChunk | NumericReading]]:
    room = config.rooms["r1"]
    got: dict[str, list[WaveformChunk | NumericReading]] = defaultdict(list)
    for m in messages:
        feed = m.topic.rsplit("/", 1)[1]
        fc = room.feeds[feed]
        got[feed].append(
            decode_feed(
                m.payload,
                room="r1",
                feed=feed,
                kind=fc.kind,
                unit=fc.effective_unit,
                fs=fc.fs,
                max_bytes=config.daemon.max_payload_bytes,
            )
        )
    return got


def expected_counts(seconds: int) -> dict[str, int]:
    """Chunks are one second long; SpO2 comes once a second from t0 + 1; NIBP from t0 on,
    once a minute."""
    counts = dict.fromkeys(MQTT_FEEDS, seconds)
    counts["nibp"] = 1 + seconds // 60
    return counts


def assert_streams(got: dict[str, list[WaveformChunk | NumericReading]]) -> None:
    for feed, samples in got.items():
        seqs = [s.seq for s in samples]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), feed
        assert all(s.origin is DataOrigin.SIMULATED for s in samples)
        chunks = [s for s in samples if isinstance(s, WaveformChunk)]
        for a, b in itertools.pairwise(chunks):
            assert b.t0 == pytest.approx(a.t0 + len(a.samples) / a.fs, abs=1e-6), feed


# --------------------------------------------------------------------------- MQTT mode

@pytest.mark.broker
async def test_mqtt_every_feed_decodes_in_order(broker: MosquittoBroker, tmp_path: Path) -> None:
    path = write_config(tmp_path, broker.port)
    config = parse_config(tomllib.loads(path.read_text()))
    want = expected_counts(5)
    async with MqttCollector(broker.port, [f"{FEEDS}/#"]) as c:
        t_start = RealClock().now()
        status, out, err = await run(
            "--config", str(path), "--room", "r1", "--speed", "0", "--seconds", "5"
        )
        assert (status, err) == (0, "")
        msgs = await c.wait_for(lambda ms: len(ms) >= sum(want.values()), within=TIMEOUT)
    got = decode_all(msgs, config)
    assert {f: len(s) for f, s in got.items()} == want  # nothing on the serial feed
    assert_streams(got)
    ekg = [s for s in got["ekg"] if isinstance(s, WaveformChunk)]
    assert all(len(s.samples) == 250 for s in ekg)
    assert ekg[0].t0 == pytest.approx(t_start, abs=2.0)  # simulated time starts at "now"
    spo2 = [r for r in got["spo2"] if isinstance(r, NumericReading)]
    assert [r.t for r in spo2] == [ekg[0].t0 + k for k in range(1, 6)]
    assert "5 simulated s: 20 chunks, 6 readings" in out


@pytest.mark.broker
async def test_daemon_takes_every_simulated_feed(broker: MosquittoBroker, tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        broker.port,
        serial_feed=False,
        extra="[rooms.r1.checks.ecg]\n[rooms.r1.checks.spo2]\n[rooms.r1.checks.cement]\n",
    )
    config = parse_config(tomllib.loads(path.read_text()))
    capture = CaptureOutput()
    seconds = 4
    want = expected_counts(seconds)
    async with Daemon(config=config, clock=RealClock(), extra_outputs=[capture]) as daemon:
        assert daemon.link is not None
        async with asyncio.timeout(TIMEOUT):
            await daemon.link.connected.wait()
        status, _, err = await run(
            "--config", str(path), "--speed", "0", "--seconds", str(seconds), "--script", "none"
        )
        assert (status, err) == (0, "")
        feeds = daemon.pipelines["r1"].feeds
        await capture.wait_for(
            lambda _: all(feeds[f].received == n for f, n in want.items()), within=TIMEOUT
        )
        assert {f: dict(feeds[f].rejected) for f in want} == {f: {} for f in want}
        assert {f: feeds[f].gaps for f in want} == dict.fromkeys(want, 0)
        assert daemon.counters["feed_rejected"] == 0
        assert daemon.counters["feed_accepted"] == sum(want.values())


@pytest.mark.broker
async def test_mqtt_survives_a_broker_restart(broker: MosquittoBroker, tmp_path: Path) -> None:
    path = write_config(tmp_path, broker.port)
    argv = ("--config", str(path), "--speed", "40", "--seconds", "30", "--script", "none")
    async with MqttCollector(broker.port, [f"{FEEDS}/ekg"], client_id="before") as c:
        task = asyncio.create_task(run(*argv))
        await c.wait_for(lambda ms: len(ms) >= 2, within=TIMEOUT)
    broker.kill()
    broker.start()
    async with MqttCollector(broker.port, [f"{FEEDS}/ekg"], client_id="after") as c:
        msgs = await c.wait_for(
            lambda ms: any(m.json()["seq"] == 30 for m in ms), within=TIMEOUT
        )
        status, out, err = await asyncio.wait_for(task, TIMEOUT)
    assert status == 0
    assert "lost" in err
    assert "reconnected" in err
    seqs = [m.json()["seq"] for m in msgs]
    # Held during the outage and resent in order; a copy whose PUBACK died with the
    # broker may repeat, nothing is skipped.
    assert sorted(set(seqs)) == list(range(seqs[0], 31))
    assert "1 broker outage(s)" in out


@pytest.mark.broker
async def test_broker_refusing_is_exit_1(broker: MosquittoBroker, tmp_path: Path) -> None:
    broker.stop()
    conf = broker.conf.read_text()
    broker.conf.write_text(conf.replace("allow_anonymous true", "allow_anonymous false"))
    broker.start()
    path = write_config(tmp_path, broker.port)
    status, _, err = await run("--config", str(path), "--seconds", "1")
    assert status == 1
    assert "refused the connection" in err
    assert "authori" in err.lower()


async def test_no_broker_is_exit_1(tmp_path: Path) -> None:
    path = write_config(tmp_path, free_port())
    status, _, err = await run("--config", str(path), "--seconds", "1")
    assert status == 1
    assert "cannot be reached" in err


async def test_bad_config_prints_problems_and_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1883, extra="[rooms.r1.feeds.bad]\nkind = 'ecg'\n")
    status, out, err = await run("--config", str(path), "--seconds", "1")
    assert status == 2
    assert f"{path}: rooms.r1.feeds.bad.fs: a ecg waveform feed needs a sample rate > 0" in err
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "{cfg}", "--room", "nope"], "no room 'nope' (rooms: r1)"),
        (["--config", "{cfg}", "--broker", "http://x:1"], "--broker: expected mqtt://"),
        (["--config", "{cfg}", "--pty"], "give --config FILE"),
        (["--config", "{cfg}", "--protocol", "nonin_fmt2", "--pty"], "either --config"),
        (["--seconds", "3"], "give --config FILE"),
        (["--protocol", "nonin_fmt2"], "exactly one of --port PATH and --pty"),
        (["--protocol", "masimo_ascii", "--pty", "--kind", "ecg"], "--kind is for"),
        (["--protocol", "roommon_line", "--pty", "--kind", "spo2"], "'spo2' is not one of"),
        (["--protocol", "roommon_line", "--pty", "--kind", "nibp:100"], "take no sample rate"),
        (["--protocol", "roommon_line", "--pty", "--kind", "ecg", "--kind", "ecg"], "twice"),
        (["--protocol", "roommon_line", "--pty", "--device-id", "a,b"], "--device-id"),
    ],
)
async def test_usage_errors_exit_2(tmp_path: Path, argv: list[str], message: str) -> None:
    cfg = str(write_config(tmp_path, 1883))
    status, out, err = await run(*(a.replace("{cfg}", cfg) for a in argv))
    assert status == 2
    assert message in err
    assert "pty:" not in out  # nothing was opened


def test_argparse_rejects_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--speed", "-1"], ["--seconds", "0"], ["--protocol", "modbus"]):
        with pytest.raises(SystemExit) as exc:
            main(["simulate", *argv])
        assert exc.value.code == 2
    assert "must be >= 0" in capsys.readouterr().err


async def test_pacer_holds_speed_and_restarts_after_a_stall() -> None:
    clock = VirtualClock()
    pacer = Pacer(clock=clock, speed=4.0, step_s=1.0, catch_up=False)
    steps = 0

    async def run_steps(n: int) -> None:
        nonlocal steps
        for _ in range(n):
            await pacer.wait()
            steps += 1

    task = asyncio.create_task(run_steps(100))
    await clock.advance(1.0)  # 4 simulated seconds per real second
    assert steps == 4
    await clock.advance(0.1)
    assert steps == 4
    task.cancel()
    # A stall of 3 s: without catch-up the step due comes now, the next one an
    # interval later (no burst of the missed steps).
    await clock.advance(3.0)
    task = asyncio.create_task(run_steps(100))
    await clock.settle()
    assert steps == 5
    await clock.advance(0.24)
    assert steps == 5
    await clock.advance(0.02)
    assert steps == 6
    task.cancel()

    catching = Pacer(clock=clock, speed=4.0, step_s=1.0, catch_up=True)
    await clock.advance(1.0)
    woke = 0
    for _ in range(4):  # a whole real second behind: four steps at once
        await catching.wait()
        woke += 1
    assert woke == 4


# --------------------------------------------------------------------------- serial mode


class Reader:
    """The daemon's serial input: SerialFeed + the protocol's driver, samples kept."""

    def __init__(self, protocol: str) -> None:
        self.driver = DRIVERS[protocol](
            room="r1", feed="dev", origin=DataOrigin.LIVE, clock=RealClock()
        )
        self.samples: list[DriverSample] = []
        self.states: list[LinkState] = []
        self.changed = asyncio.Event()

    def sink(self, sample: DriverSample) -> None:
        self.samples.append(sample)
        self.changed.set()

    def on_state(self, state: LinkState) -> None:
        self.states.append(state)
        self.changed.set()

    async def until(self, predicate: Any) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def start_pty_simulator(*argv: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roommon", "simulate", "--pty", *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(TIMEOUT):
        first = (await proc.stdout.readline()).decode()
    assert first.startswith("pty: /dev/pts/"), first
    return proc, first.removeprefix("pty: ").strip()


@pytest.mark.parametrize(
    ("protocol", "extra", "kinds", "spo2_readings"),
    [
        ("masimo_ascii", [], {SignalKind.SPO2}, 3),  # one line a second
        ("nonin_fmt2", [], {SignalKind.PLETH, SignalKind.SPO2}, 9),  # one per 1/3 s packet
        (
            "roommon_line",
            [f"--kind={k}" for k in ("ecg", "cement_pressure", "nibp", "abp:125", "pleth")],
            {
                SignalKind.ECG,
                SignalKind.CEMENT_PRESSURE,
                SignalKind.NIBP,
                SignalKind.ABP,
                SignalKind.PLETH,
            },
            0,
        ),
    ],
)
async def test_pty_frames_decode_without_rejects(
    protocol: str, extra: list[str], kinds: set[SignalKind], spo2_readings: int
) -> None:
    proc, path = await start_pty_simulator(
        "--protocol", protocol, "--speed", "0", "--seconds", "3", *extra
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        reader = Reader(protocol)
        feed = SerialFeed(
            port=path,
            driver=reader.driver,
            sink=reader.sink,
            clock=RealClock(),
            backoff=Backoff(initial_s=0.02, cap_s=0.1),
            on_state=reader.on_state,
        )
        async with feed:
            async with asyncio.timeout(TIMEOUT):
                rest = (await proc.stdout.read()).decode()
                err = (await proc.stderr.read()).decode()
                status = await proc.wait()
            assert (status, err) == (0, "")
            total = rest.strip().splitlines()[-1]
            frames = int(total.split(" frames,")[0].rsplit(" ", 1)[1])
            await reader.until(lambda: reader.driver.counters.frames_good >= frames)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    c = reader.driver.counters
    assert c.frames_good == frames > 0
    assert (dict(c.frames_bad), dict(c.fields_bad), c.bytes_discarded) == ({}, {}, 0)
    assert {s.kind for s in reader.samples} == kinds
    readings = [s for s in reader.samples if isinstance(s, NumericReading)]
    spo2 = [r.values["spo2"] for r in readings if r.kind == SignalKind.SPO2]
    assert len(spo2) == spo2_readings
    assert all(90 <= v <= 100 for v in spo2)  # the simulated patient's 98 %, read back


@pytest.fixture
def host_pty() -> Iterator[Pty]:
    """A pty whose slave plays a real serial device path."""
    p = Pty()
    yield p
    p.close()


async def test_port_unplugged_is_exit_1(host_pty: Pty) -> None:
    master, path = host_pty.master, host_pty.path
    task = asyncio.create_task(run("--protocol", "roommon_line", "--port", path, "--speed", "0"))
    loop = asyncio.get_running_loop()
    got = bytearray()
    enough = asyncio.Event()

    def readable() -> None:
        got.extend(os.read(master, 4096))
        if got.count(b"\r\n") >= 5:
            enough.set()

    loop.add_reader(master, readable)
    try:
        async with asyncio.timeout(TIMEOUT):
            await enough.wait()
    finally:
        loop.remove_reader(master)
    assert got.startswith(b"$RM1,ROOMMON-SIM,0,W,ecg,mV,250,")
    host_pty.unplug()  # the cable is pulled
    status, _, err = await asyncio.wait_for(task, TIMEOUT)
    assert status == 1
    assert f"serial port {path} closed or unplugged" in err


async def test_missing_port_is_exit_1(tmp_path: Path) -> None:
    status, _, err = await run(
        "--protocol", "masimo_ascii", "--port", str(tmp_path / "ttyUSB9"), "--seconds", "1"
    )
    assert status == 1
    assert "cannot open serial port" in err


async def test_daemon_reads_the_simulated_serial_device(tmp_path: Path) -> None:
    """What `roommon run` does with `serial.port = "/dev/pts/N"`: every frame taken."""
    proc, path = await start_pty_simulator(
        "--protocol", "roommon_line", "--kind", "ecg", "--kind", "nibp",
        "--speed", "0", "--seconds", "2",
    )
    try:
        port = {"port": path, "protocol": "roommon_line", "baudrate": 115200}
        config = parse_config(
            {
                "site": {"id": SITE},
                "daemon": {"state_dir": str(tmp_path / "state"), "tick_s": 0.1},
                "rooms": {
                    "r1": {
                        "feeds": {
                            "ekg": {"kind": "ecg", "fs": 250, "transport": "serial",
                                    "serial": port},
                            "nibp": {"kind": "nibp", "transport": "serial", "serial": port},
                        }
                    }
                },
            }
        )
        capture = CaptureOutput()
        async with Daemon(
            config=config, clock=RealClock(), use_broker=False, extra_outputs=[capture]
        ) as daemon:
            feeds = daemon.pipelines["r1"].feeds
            await capture.wait_for(
                lambda _: (feeds["ekg"].received, feeds["nibp"].received) == (20, 1),
                within=TIMEOUT,
            )
            async with asyncio.timeout(TIMEOUT):
                assert await proc.wait() == 0
            counters = daemon.serial[0].driver.counters
            assert counters.frames_good == 21
            assert (dict(counters.frames_bad), counters.bytes_discarded) == ({}, 0)
            assert (dict(feeds["ekg"].rejected), dict(feeds["nibp"].rejected)) == ({}, {})
            assert feeds["ekg"].gaps == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.mark.parametrize(
    ("speed", "gone"), [("0", "gone; waiting"), ("50", "gone; frames are lost")]
)
async def test_pty_reader_may_leave_and_come_back(speed: str, gone: str) -> None:
    """A daemon restart: the device goes on (or, at speed 0, waits) and the new reader
    decodes clean frames."""
    proc, path = await start_pty_simulator("--protocol", "roommon_line", "--speed", speed)
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        for visit in range(2):
            reader = Reader("roommon_line")
            async with SerialFeed(
                port=path, driver=reader.driver, sink=reader.sink, clock=RealClock()
            ):
                await reader.until(lambda r=reader: r.driver.counters.frames_good >= 10)
                # Before leaving: leaving itself cuts the frame in flight ("truncated").
                bad = dict(reader.driver.counters.frames_bad)
            assert (bad, reader.samples[0].kind) == ({}, SignalKind.ECG)
            async with asyncio.timeout(TIMEOUT):
                if visit == 1:
                    back = (await proc.stderr.readline()).decode()
                    assert back.endswith("back; writing\n")
                line = (await proc.stderr.readline()).decode()
            assert gone in line
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            out = (await proc.stdout.read()).decode()
            assert await proc.wait() == 0
        if speed != "0":
            lost = int(out.rsplit(" frames lost", 1)[0].rsplit(" ", 1)[1])
            assert lost > 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def test_cement_stream_plays_repeating_injections() -> None:
    """roommon_line cement frames follow the injection profile: rest, inject, pause, resume."""
    (stream,) = device_streams(
        protocol="roommon_line", kinds=["cement_pressure"], device_id="CEM1", seed=3, t0=0.0
    )
    driver = DRIVERS["roommon_line"](
        room="r1", feed="cement", origin=DataOrigin.LIVE, clock=VirtualClock()
    )
    chunks = [
        s for s in driver.feed(b"".join(stream.frames_until(250.0)))
        if isinstance(s, WaveformChunk)
    ]
    assert driver.counters.frames_good == len(chunks) == 2500  # 0.1 s frames at 50 Hz
    level = np.array([float(np.median(c.samples)) for c in chunks])

    def at(t0: float, t1: float) -> FloatArray:
        return level[round(t0 * 10) : round(t1 * 10)]

    for cycle in (0.0, 120.0):
        assert np.all(np.abs(at(cycle, cycle + 10)) < 100)  # at rest
        assert np.all(at(cycle + 15, cycle + 40) > 1400)  # plateau near 1.7 MPa
        assert np.all(np.abs(at(cycle + 44, cycle + 50)) < 100)  # paused
        assert np.all(at(cycle + 55, cycle + 80) > 1400)  # resumed
        assert np.all(np.abs(at(cycle + 85, cycle + 120)) < 100)  # done


@pytest.mark.broker
async def test_mqtt_minute_summaries_and_script(broker: MosquittoBroker, tmp_path: Path) -> None:
    path = write_config(tmp_path, broker.port)
    async with MqttCollector(broker.port, [f"{FEEDS}/spo2"]) as c:
        status, out, _ = await run(
            "--config", str(path), "--speed", "0", "--seconds", "125", "--script", "kyphoplasty"
        )
        msgs = await c.wait_for(lambda ms: len(ms) >= 125, within=TIMEOUT)
    assert status == 0
    lines = out.splitlines()
    assert lines[1] == (
        "[00:01:00 simulated] sent 240 chunks, 62 readings; "
        "script: operator presses 'cement mixed'"
    )
    assert lines[2] == (
        "[00:02:00 simulated] sent 240 chunks, 61 readings; script: patient desaturates to 86 %"
    )
    assert lines[3].endswith("125 simulated s: 500 chunks, 128 readings, 2 script actions, "
                             "1 operator commands; 0 broker outage(s)")
    spo2 = [m.json()["values"]["spo2"] for m in msgs]
    assert min(spo2[:99]) >= 96
    assert max(spo2[-10:]) <= 88  # the scripted desaturation reached the wire


@pytest.mark.broker
async def test_kyphoplasty_script_sends_cement_mixed_and_the_daemon_takes_it(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """As in the demo, the operator's "cement mixed" goes to the daemon, so the cement
    check's working-time clock runs and cement.no_mix_time is not raised."""
    path = write_config(
        tmp_path, broker.port, serial_feed=False, extra="[rooms.r1.checks.cement]\n"
    )
    config = parse_config(tomllib.loads(path.read_text()))
    capture = CaptureOutput()
    async with Daemon(config=config, clock=RealClock(), extra_outputs=[capture]) as daemon:
        assert daemon.link is not None
        async with asyncio.timeout(TIMEOUT):
            await daemon.link.connected.wait()
        async with MqttCollector(broker.port, [f"roommon/v1/{SITE}/r1/command/#"]) as c:
            status, _, err = await run(
                "--config", str(path), "--speed", "0", "--seconds", "8", "--qos", "1"
            )
            assert (status, err) == (0, "")
            msgs = await c.wait_for(lambda ms: len(ms) >= 1, within=TIMEOUT)
        assert [m.json()["action"] for m in msgs] == ["cement_mixed"]
        await capture.wait_for(
            lambda cap: any(e.name == "cement.mixed" for e in cap.room_events), within=TIMEOUT
        )
