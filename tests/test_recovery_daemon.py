"""Recovery survives SIGKILL: a real daemon process and a real broker, killed mid-recovery.

The timer is defined by absolute deadlines in the recovery store, so the
restarted daemon keeps every deadline and publishes, once and marked late,
the checks that fell due while it was down. Real time must pass while the
process is dead for that to mean anything, so this test uses a plan measured
in seconds; the clock-jump and multi-hour behaviour run on the virtual clock
elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from roommon.core.clock import RealClock
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.wire.registry import SCHEMA_DIR

pytestmark = pytest.mark.broker

BASE = "roommon/v1/s/r1"
CONFIG = """
[site]
id = "s"
[broker]
host = "127.0.0.1"
port = {port}
reconnect_initial_s = 0.1
[daemon]
state_dir = "{state}"
tick_s = 0.5
[rooms.r1.feeds.cement]
kind = "cement_pressure"
fs = 50
required = false
stale_s = 3600
[rooms.r1.checks.cement]
end_after_s = 2.0
[rooms.r1.recovery.default]
min_bed_rest_s = 30
target_s = 60
checks = [{{ every_s = 2, until_s = 60 }}]
grace_s = 1
confirm_s = 1
"""


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "roommon", "run", "--config", str(config)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    made: list[subprocess.Popen[bytes]] = []
    yield made
    for p in made:
        if p.poll() is None:
            p.kill()
            p.wait()


def cement_chunks(t0: float) -> list[bytes]:
    """2 s idle, 4 s injecting at 1.5 MPa, 6 s idle: one injection that then ends."""
    levels = [0.0] * 2 + [1500.0] * 4 + [0.0] * 6
    return [
        json.dumps({"v": 1, "kind": "cement_pressure", "seq": i + 1, "t0": t0 + i, "fs": 50,
                    "unit": "kPa", "n": 50, "samples": [level] * 50}).encode()
        for i, level in enumerate(levels)
    ]


def timer_events(ms: list[Received]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for m in ms:
        if m.topic == f"{BASE}/timer/event":
            e = m.json()
            if e["event_id"] not in seen:
                seen.add(e["event_id"])
                out.append(e)
    return out


def due(ms: list[Received]) -> set[int]:
    return {e["check_no"] for e in timer_events(ms) if e["event"] == "check_due"}


async def test_sigkill_mid_recovery_keeps_deadlines_and_publishes_missed_checks_once(
    broker: MosquittoBroker, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    config = tmp_path / "roommon.toml"
    config.write_text(CONFIG.format(port=broker.port, state=tmp_path / "state"))
    log = tmp_path / "daemon.log"
    clock = RealClock()
    event_schema = json.loads((SCHEMA_DIR / "timer_event.schema.json").read_text())
    timer_schema = json.loads((SCHEMA_DIR / "timer.schema.json").read_text())
    async with MqttCollector(broker.port, [f"{BASE}/#", "roommon/v1/s/status/+"]) as c:
        procs.append(start(config, log))
        await c.wait_for(lambda ms: any("/status/" in m.topic and m.json()["status"] == "online"
                                        for m in ms), within=30)
        # an injection that ended about now: recovery starts from its end
        for payload in cement_chunks(clock.now() - 8.0):
            await c.publish(f"{BASE}/feed/cement", payload)
        await c.wait_for(lambda ms: {1, 2} <= due(ms), within=30)
        before = [m.json() for m in c.messages if m.topic == f"{BASE}/timer"][-1]
        deadlines = (before["started"], before["min_deadline"], before["target_deadline"])

        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        last_due = max(due(c.messages))
        # dead until three more checks are overdue by more than the "late" rule's 5 s
        down_until = deadlines[0] + 2 * (last_due + 3) + 6.0
        # Real time must pass while the process is dead: that is the point of this test.
        await asyncio.sleep(max(0.0, down_until - clock.now()))
        procs.append(start(config, log))
        missed = set(range(last_due + 1, last_due + 4))
        await c.wait_for(lambda ms: missed <= due(ms), within=30)
        after = [m.json() for m in c.messages if m.topic == f"{BASE}/timer"][-1]

    assert (after["started"], after["min_deadline"], after["target_deadline"]) == deadlines
    jsonschema.validate(after, timer_schema)
    events = timer_events(c.messages)
    for e in events:
        jsonschema.validate(e, event_schema)
    # nothing lost, nothing twice: one gap-free sequence across both processes
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    keys = [(e["event"], e["check_no"]) for e in events]
    assert len(keys) == len(set(keys))
    late = {e["check_no"] for e in events if e["event"] == "check_due" and e["late"]}
    assert missed <= late
    assert [e["event"] for e in events][:1] == ["started"]
