"""Wall time of whole scenarios on the virtual clock (the timings that used to sit in tests).

* a room pipeline fed ten virtual minutes (SpO2 1 Hz + EKG 250 Hz, ticked each second),
  with a desaturation raised and cleared;
* the demo's whole procedure and three-hour recovery (``roommon demo --minutes 200
  --speed 0``: a real daemon, no broker), in-process.

Prints the wall time and how many times faster than real time each ran.
"""

from __future__ import annotations

import asyncio
import io
import pathlib
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.core.model import NumericReading, SignalKind, WaveformChunk
from roommon.room.pipeline import RoomPipeline
from roommon.testing import CaptureOutput


def room() -> Any:
    return parse_config(
        {
            "site": {"id": "b"},
            "rooms": {
                "r1": {
                    "feeds": {"ekg": {"kind": "ecg", "fs": 250}, "spo2": {"kind": "spo2"}},
                    "checks": {
                        "numeric_limits": {
                            "rules": [{"kind": "spo2", "field": "spo2", "below": 90, "delay_s": 15}]
                        }
                    },
                }
            },
        }
    )


async def ten_minutes() -> float:
    clock = VirtualClock()
    cfg = room()
    out = CaptureOutput()
    p = RoomPipeline(
        site="b", room="r1", config=cfg.rooms["r1"], daemon=cfg.daemon, clock=clock, output=out
    )
    values = [97.0] * 200 + [84.0] * 100 + [97.0] * 300
    wall = time.perf_counter()
    for seq, v in enumerate(values):
        p.ingest(
            NumericReading(
                room="r1",
                feed="spo2",
                kind=SignalKind.SPO2,
                t=clock.now(),
                values={"spo2": v},
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
                samples=np.zeros(250),
                seq=seq,
            )
        )
        await clock.advance(1.0)
        p.tick()
    took = time.perf_counter() - wall
    assert [t for _, t in out.transitions("limit.spo2_low")] == ["raised", "cleared"]
    return took


def whole_procedure() -> float:
    from roommon.cli.demo import run_demo

    wall = time.perf_counter()
    assert run_demo(speed=0, minutes=200, broker=None, seed=1, out=io.StringIO()) == 0
    return time.perf_counter() - wall


def main() -> None:
    from roommon.core.clock import RealClock
    from roommon.core.logs import configure

    configure(clock=RealClock(), level="error", json=False)
    took = asyncio.run(ten_minutes())
    print(f"room pipeline, 10 virtual minutes:        {took:6.2f} s wall  ({600 / took:6.0f}x)")
    took = whole_procedure()
    print(f"demo procedure + 3 h recovery (200 min):  {took:6.2f} s wall  ({12000 / took:6.0f}x)")


if __name__ == "__main__":
    main()
