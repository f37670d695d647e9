"""SerialFeed over real pseudo-terminals: simulator bytes in, samples out, unplug survived.

The device end is the pty master (a simulator writes to it); SerialFeed opens
the slave by a path that is a symlink, like /dev/serial/by-id/...: an unplug
closes the master (reads on the slave then fail with EIO) and a replug is a new
pty behind the same link name.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from roommon.core.clock import RealClock, VirtualClock
from roommon.core.model import DataOrigin, NumericReading, WaveformChunk
from roommon.drivers import (
    DRIVERS,
    Driver,
    DriverSample,
    MasimoAsciiDriver,
    NoninFormat2Driver,
    RoommonLineDriver,
)
from roommon.testing.pty import Pty
from roommon.transports.backoff import Backoff
from roommon.transports.serial import LinkState, SerialFeed
from simulators.serial_devices import (
    encode_masimo_line,
    encode_nonin_packet,
    encode_rm1_waveform,
    synthetic_pleth,
    write_all,
    write_paced,
)

TIMEOUT = 5.0  # safety net only; every wait ends on an event well before it
FAST = Backoff(initial_s=0.02, cap_s=0.1, jitter=0.2)


@pytest.fixture
def ptys() -> Iterator[list[Pty]]:
    made: list[Pty] = []
    yield made
    for p in made:
        p.close()


def new_pty(ptys: list[Pty], link: Path) -> Pty:
    p = Pty.open()
    ptys.append(p)
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(p.path)
    tmp.replace(link)  # atomic swap, as udev does for a by-id name
    return p


def make_driver(name: str) -> Driver:
    return DRIVERS[name](room="or1", feed="f", origin=DataOrigin.SIMULATED, clock=RealClock())


async def next_state(states: asyncio.Queue[LinkState]) -> LinkState:
    return await asyncio.wait_for(states.get(), TIMEOUT)


async def next_sample(samples: asyncio.Queue[DriverSample]) -> DriverSample:
    return await asyncio.wait_for(samples.get(), TIMEOUT)


def rm1(seq: int) -> bytes:
    return encode_rm1_waveform(
        device_id="CEM01", seq=seq, kind="cement_pressure", unit="kPa", fs=50,
        samples=[100.0 + seq, 101.0 + seq],
    )


async def test_samples_flow_from_simulator_through_pty(tmp_path: Path, ptys: list[Pty]) -> None:
    link = tmp_path / "ttyROOM"
    dev = new_pty(ptys, link)
    samples: asyncio.Queue[DriverSample] = asyncio.Queue()
    states: asyncio.Queue[LinkState] = asyncio.Queue()
    driver = RoommonLineDriver(room="or1", feed="cement", origin=DataOrigin.SIMULATED,
                               clock=RealClock())
    async with SerialFeed(port=str(link), baudrate=115200, driver=driver, sink=samples,
                          clock=RealClock(), backoff=FAST, on_state=states.put_nowait) as feed:
        assert (await next_state(states)).connected
        assert feed.connected
        written = await write_paced(fd=dev.master, frames=[rm1(i) for i in range(5)],
                                    interval_s=0.005, clock=RealClock())
        got = [await next_sample(samples) for _ in range(5)]
    assert [s.seq for s in got] == [0, 1, 2, 3, 4]
    first = got[0]
    assert isinstance(first, WaveformChunk)
    assert first.samples.tolist() == [100.0, 101.0]
    assert first.origin is DataOrigin.SIMULATED
    assert driver.counters.bytes_in_good_frames == written
    assert driver.counters.frames_bad == {}


async def test_unplug_reports_at_once_and_replug_recovers(
    tmp_path: Path, ptys: list[Pty]
) -> None:
    link = tmp_path / "ttyROOM"
    dev = new_pty(ptys, link)
    samples: asyncio.Queue[DriverSample] = asyncio.Queue()
    states: asyncio.Queue[LinkState] = asyncio.Queue()
    clock = RealClock()
    driver = RoommonLineDriver(room="or1", feed="cement", origin=DataOrigin.SIMULATED, clock=clock)
    async with SerialFeed(port=str(link), driver=driver, sink=samples, clock=clock,
                          backoff=FAST, on_state=states.put_nowait, rng=random.Random(7)) as feed:
        assert (await next_state(states)).connected
        await write_all(dev.master, rm1(0) + rm1(1) + b"$RM1,CEM01,2,W,cem")  # half a frame
        assert [(await next_sample(samples)).seq for _ in range(2)] == [0, 1]

        t_unplug = clock.monotonic()
        dev.unplug()
        down = await next_state(states)
        assert not down.connected
        assert down.reason
        assert clock.monotonic() - t_unplug < 1.0  # at once, not after a stale timeout
        assert not feed.connected
        assert driver.counters.frames_bad == {"truncated": 1}  # the half frame, dropped

        # The adapter comes back under the same name.
        dev2 = new_pty(ptys, link)
        up = await next_state(states)
        assert up.connected
        await write_all(dev2.master, rm1(3) + rm1(4))
        assert [(await next_sample(samples)).seq for _ in range(2)] == [3, 4]
        assert feed.counters.reconnects == 1
    c = driver.counters
    assert c.bytes_received == c.bytes_in_good_frames + c.bytes_discarded + driver.pending_bytes


async def test_port_missing_at_start_then_appears(tmp_path: Path, ptys: list[Pty]) -> None:
    link = tmp_path / "ttyROOM"
    samples: asyncio.Queue[DriverSample] = asyncio.Queue()
    states: asyncio.Queue[LinkState] = asyncio.Queue()
    async with SerialFeed(port=str(link), driver=make_driver("roommon_line"), sink=samples,
                          clock=RealClock(), backoff=FAST, on_state=states.put_nowait) as feed:
        first = await next_state(states)
        assert not first.connected
        assert "cannot open" in first.reason
        dev = new_pty(ptys, link)
        assert (await next_state(states)).connected
        await write_all(dev.master, rm1(9))
        assert (await next_sample(samples)).seq == 9
        assert feed.counters.reconnects == 0  # first successful open is not a reconnect


@pytest.mark.parametrize("name", ["masimo_ascii", "nonin_fmt2", "roommon_line"])
async def test_every_simulator_drives_its_driver_over_a_pty(
    name: str, tmp_path: Path, ptys: list[Pty]
) -> None:
    link = tmp_path / "ttyROOM"
    dev = new_pty(ptys, link)
    got: list[DriverSample] = []
    done = asyncio.Event()
    states: asyncio.Queue[LinkState] = asyncio.Queue()
    driver = make_driver(name)

    wanted_readings = 0 if isinstance(driver, RoommonLineDriver) else 3

    def sink(sample: DriverSample) -> None:
        got.append(sample)
        readings = sum(isinstance(s, NumericReading) for s in got)
        if readings >= 3 or (wanted_readings == 0 and len(got) >= 3):
            done.set()

    if isinstance(driver, MasimoAsciiDriver):
        frames = [encode_masimo_line(t=1.7e9 + i, spo2=97, pulse_rate=70 + i,
                                     perfusion_index=2.5) for i in range(3)]
    elif isinstance(driver, NoninFormat2Driver):
        pleth = synthetic_pleth(100, fs=75, pulse_rate=70)
        frames = [encode_nonin_packet(pleth=pleth[i * 25 : i * 25 + 25], spo2=96,
                                      pulse_rate=70 + i) for i in range(4)]
    else:
        frames = [rm1(i) for i in range(3)]
    async with SerialFeed(port=str(link), driver=driver, sink=sink, clock=RealClock(),
                          backoff=FAST, on_state=states.put_nowait):
        assert (await next_state(states)).connected
        await write_paced(fd=dev.master, frames=frames, interval_s=0.005, clock=RealClock())
        await asyncio.wait_for(done.wait(), TIMEOUT)
    readings = [s for s in got if isinstance(s, NumericReading)]
    if isinstance(driver, RoommonLineDriver):
        assert [s.seq for s in got] == [0, 1, 2]
    else:
        assert [r.values["pulse_rate"] for r in readings][:3] == [70.0, 71.0, 72.0]
        assert all(not math.isnan(r.values["spo2"]) for r in readings)
    assert driver.counters.frames_bad == {}


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(initial_s=0.5, cap_s=4.0, jitter=0.25)
    rng = random.Random(1)
    delays = [b.delay(a, rng) for a in range(10)]
    assert 0.375 <= delays[0] <= 0.625
    assert all(3.0 <= d <= 5.0 for d in delays[4:])
    assert len(set(delays[4:])) > 1  # jitter: capped retries do not line up
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=5, cap_s=1)


async def test_retry_waits_on_the_clock(tmp_path: Path, ptys: list[Pty]) -> None:
    """Backoff sleeps go through the injected clock: no retry until it moves."""
    clock = VirtualClock()
    link = tmp_path / "ttyROOM"
    states: asyncio.Queue[LinkState] = asyncio.Queue()
    backoff = Backoff(initial_s=30.0, cap_s=60.0, jitter=0.0)
    async with SerialFeed(port=str(link), driver=make_driver("roommon_line"),
                          sink=lambda s: None, clock=clock, backoff=backoff,
                          on_state=states.put_nowait):
        assert not (await next_state(states)).connected
        new_pty(ptys, link)
        await clock.advance(29.0)
        assert states.empty()  # still waiting out the 30 s backoff
        assert clock.pending == 1
        await clock.advance(1.0)
        up = await next_state(states)
        assert up.connected
        assert up.t == clock.now()
