"""What the metrics cost: per-call work timing in the room pipeline, and one scrape.

1. A room pipeline (EKG 250 Hz with the EKG check, SpO2 1 Hz with the SpO2 and
   limit checks, ticked each second) fed ten virtual minutes, with the work timing
   of every check call and tick pass (``roommon/core/work.py``) as shipped, and
   with it switched off (the timing calls replaced by no-ops) in the same run:
   alternating rounds, the fastest of each, and their ratio (the overhead); and the robust
   figure: the cost of timing one check call alone, times the calls the room
   made, as a share of the room's work.
2. One ``/metrics`` scrape body (``generate_latest``) of a daemon with 20 rooms of
   6 feeds and 5 checks each, in milliseconds (Prometheus scrapes every 15 s or so).

Figures on a shared machine are noisy: the ratio of interleaved rounds is the
number to read. Run: ``.venv/bin/python bench/ops_overhead.py``.
"""

from __future__ import annotations

import asyncio
import gc
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from roommon.config import parse_config
from roommon.core import work
from roommon.core.clock import VirtualClock
from roommon.core.model import NumericReading, SignalKind, WaveformChunk
from roommon.room import pipeline as pipeline_module
from roommon.room.pipeline import RoomPipeline
from roommon.testing import CaptureOutput

ROUNDS = 8


def room_config(state_dir: str = "var", rooms: int = 1) -> Any:
    room = {
        "feeds": {
            "ekg": {"kind": "ecg", "fs": 250},
            "spo2": {"kind": "spo2"},
            "pleth": {"kind": "pleth", "fs": 75},
            "nibp": {"kind": "nibp"},
            "abp": {"kind": "abp", "fs": 125, "required": False},
            "cement": {"kind": "cement_pressure", "fs": 50, "required": False},
        },
        "checks": {
            "ecg": {},
            "spo2": {},
            "nibp": {},
            "cement": {},
            "numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]},
        },
    }
    return parse_config(
        {
            "site": {"id": "b"},
            "daemon": {"state_dir": state_dir},
            "rooms": {f"r{i}": room for i in range(1, rooms + 1)},
        }
    )


CALLS: list[int] = []


async def ten_minutes() -> float:
    clock = VirtualClock()
    cfg = room_config()
    p = RoomPipeline(
        site="b",
        room="r1",
        config=cfg.rooms["r1"],
        daemon=cfg.daemon,
        clock=clock,
        output=CaptureOutput(),
    )
    rng = np.random.default_rng(1)
    ekg = [rng.normal(0, 0.05, 250) for _ in range(600)]
    wall = time.perf_counter()
    for seq in range(600):
        p.ingest(
            NumericReading(
                room="r1",
                feed="spo2",
                kind=SignalKind.SPO2,
                t=clock.now(),
                values={"spo2": 97.0},
                seq=seq,
            )
        )
        p.ingest(
            WaveformChunk(
                room="r1",
                feed="ekg",
                kind=SignalKind.ECG,
                unit="mV",
                fs=250.0,
                t0=clock.now(),
                samples=ekg[seq],
                seq=seq,
            )
        )
        await clock.advance(1.0)
        p.tick()
    took = time.perf_counter() - wall
    CALLS.append(sum(w.count for w in p.check_time.values()))
    return took


_ADD = work.WorkTime.add


def _no_add(self: work.WorkTime, seconds: float) -> None:
    pass


def _timing(on: bool) -> None:
    """Work timing as shipped, or its calls replaced by no-ops."""
    clock = time.perf_counter if on else (lambda: 0.0)
    pipeline_module.work_clock = clock  # type: ignore[attr-defined]
    work.WorkTime.add = _ADD if on else _no_add  # type: ignore[method-assign]


async def scrape_ms() -> float:
    from prometheus_client import generate_latest

    from roommon.runtime.daemon import Daemon
    from roommon.runtime.metrics import DaemonMetrics

    with tempfile.TemporaryDirectory() as tmp:
        cfg = room_config(tmp, rooms=20)
        metrics = DaemonMetrics()
        clock = VirtualClock()
        async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[metrics]) as d:
            metrics.attach(d)
            await clock.advance(2.0)
            took = []
            for _ in range(20):
                t0 = time.perf_counter()
                body = generate_latest(metrics.registry)
                took.append(time.perf_counter() - t0)
            lines = len(body.splitlines())
            print(f"scrape body: {len(body)} bytes, {lines} lines")
            return statistics.median(took) * 1000


def main() -> None:
    from roommon.core.clock import RealClock
    from roommon.core.logs import configure

    configure(clock=RealClock(), level="error", json=False)
    asyncio.run(ten_minutes())  # warm-up (imports, first-call costs)
    on: list[float] = []
    off: list[float] = []
    for i in range(ROUNDS):
        # Alternate which goes first (the second run of a pair is slower in an A/A test
        # here: garbage of the first), and collect garbage before each run.
        for timed in (True, False) if i % 2 else (False, True):
            _timing(timed)
            gc.collect()
            (on if timed else off).append(asyncio.run(ten_minutes()))
    a, b = min(off), min(on)  # the fastest round: least disturbed by other processes
    print(f"room pipeline, 10 virtual minutes, work timing off: {a:6.3f} s (fastest of {ROUNDS})")
    print(f"room pipeline, 10 virtual minutes, work timing on:  {b:6.3f} s")
    print(f"overhead of the work timing: {100 * (b / a - 1):+.1f} % (ratio {b / a:.3f})")
    w = work.WorkTime()
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        started = work.work_clock()
        w.add(work.work_clock() - started)
    per_call = (time.perf_counter() - t0) / n
    calls = max(CALLS)
    share = 100 * calls * per_call / b
    print(
        f"work timing of one check call (2 clock reads + add): {per_call * 1e9:.0f} ns; "
        f"{calls} calls in 10 virtual minutes: {share:.2f} % of the room's work"
    )
    ms = asyncio.run(scrape_ms())
    print(f"one /metrics scrape, 20 rooms x 6 feeds: {ms:.1f} ms (median of 20)")


if __name__ == "__main__":
    main()
