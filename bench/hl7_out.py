"""HL7 out: build rate of the PCD-01/PCD-04 builders, and delivery rate over MLLP on loopback.

1. Build: PCD-01 vitals reports and PCD-04 alarm reports per second (pure
   functions, one core).
2. Deliver: N PCD-04 messages queued at once (a backlog after an outage),
   then sent to a local python-hl7 MLLP peer answering AA, one message in
   flight: messages per second from the first send to the last ACK, with
   the SQLite queue's writes included. Traffic goes to 127.0.0.1 only.

No target was set for these (issue 16); the figures say how large a backlog
drains how fast. The delivery figure is bound by the peer: under cProfile
about three quarters of the time is python-hl7 parsing each message on the
receiving side. Run: ``.venv/bin/python bench/hl7_out.py``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path

import structlog

from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.hl7 import pcd01, pcd04
from roommon.hl7.codes import CodesTable
from roommon.hl7.segments import Destination, Envelope, Location, Patient, Sender
from roommon.runtime.hl7_output import Hl7Output
from roommon.testing import MllpPeer
from roommon.wire.payloads import AlarmEventMessage, MeasurementValue, RoomStateMessage

T = 1_767_225_600.0
ENV = Envelope(
    sender=Sender(application="ROOMMON", facility="H", eui64="0012AB34CD56EF78"),
    destination=Destination(application="E", facility="H"),
    control_id="b-1",
    created=T,
    location=Location(point_of_care="OR", room="R1"),
    patient=Patient(id="MRN-1", authority="H"),
)
STATE = RoomStateMessage(
    site="s",
    room="r1",
    name="",
    t=T,
    time="",
    seq=0,
    phase="procedure",
    phase_since=T,
    audio_paused_until=None,
    alarm_paused={},
    highest_priority="none",
    alarms=[],
    feeds={},
    measurements={
        n: MeasurementValue(value=70.0 + i, unit="", t=T, feed="f")
        for i, n in enumerate(
            [
                "heart_rate",
                "spo2",
                "pulse_rate",
                "nibp_systolic",
                "nibp_diastolic",
                "nibp_mean",
                "abp_systolic",
                "abp_diastolic",
                "abp_mean",
                "abp_pulse_rate",
            ]
        )
    },
)
EVENT = AlarmEventMessage(
    event_id="e",
    seq=1,
    site="s",
    room="r1",
    alarm_id="a",
    condition="r1/spo2/spo2.desat",
    code="spo2.desat",
    check="spo2",
    feed="spo2",
    kind="physiological",
    priority="medium",
    transition="raised",
    state="active",
    audible=True,
    escalation_level=0,
    value=86.0,
    limit=90.0,
    message="SpO2 low",
    origin="live",
    t=T,
    time="",
    since=T,
)


def bench_build(n: int = 20_000) -> None:
    codes = CodesTable()
    t0 = time.perf_counter()
    for i in range(n):
        pcd01.build(ENV, report_id=str(i), observations=pcd01.vitals(STATE), codes=codes, start=T)
    t1 = time.perf_counter()
    for _ in range(n):
        pcd04.build(ENV, EVENT, codes)
    t2 = time.perf_counter()
    print(f"build PCD-01 vitals (10 OBX + phase): {n / (t1 - t0):10,.0f} messages/s")
    print(f"build PCD-04 alarm (7 facets):        {n / (t2 - t1):10,.0f} messages/s")


async def bench_deliver(n: int = 2_000) -> None:
    async with MllpPeer() as peer:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = parse_config(
                {
                    "site": {"id": "s"},
                    "daemon": {"state_dir": tmp},
                    "rooms": {"r1": {"feeds": {"spo2": {"kind": "spo2"}}}},
                    "hl7": {
                        "period_s": 3600,
                        "receivers": {"e": {"host": "127.0.0.1", "port": peer.port}},
                    },
                }
            )
            out = Hl7Output(config=cfg, clock=RealClock(), state_path=Path(tmp) / "q.sqlite3")
            async with out:
                from roommon.alerts.engine import Outgoing

                t0 = time.perf_counter()
                out.alarms([Outgoing(event=EVENT) for _ in range(n)])
                t1 = time.perf_counter()
                await peer.wait_for(lambda ms: len(ms) >= n, within=600)
                t2 = time.perf_counter()
    print(f"queue {n} PCD-04 (SQLite, one txn each): {n / (t1 - t0):10,.0f} messages/s")
    print(f"deliver over MLLP, one in flight:       {n / (t2 - t1):10,.0f} messages/s")


def main() -> None:
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    bench_build()
    asyncio.run(bench_deliver())


if __name__ == "__main__":
    main()
