"""HL7 out, end to end: simulated feeds -> real Mosquitto -> daemon -> MLLP -> a real peer.

The peer is python-hl7's asyncio MLLP server (roommon.testing.MllpPeer), not
roommon code; every message it receives is validated against the HL7 v2.6
structures with hl7apy. The daemon, the HL7 output and the simulator share
one virtual clock, advanced by the test; waits are on real events.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hl7
import pytest

from roommon.cli import build_parser
from roommon.cli.simulate import simulate
from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.runtime.daemon import Daemon
from roommon.runtime.hl7_output import Hl7Output
from roommon.testing import CaptureOutput, MllpPeer, MosquittoBroker, MqttCollector
from roommon.wire.payloads import RoomStateMessage
from tests.hl7_support import validate_v26

pytestmark = pytest.mark.broker

SITE = "hsite"
TIMEOUT = 10.0  # safety net only

#: OBX-3.2 -> room state measurement name (the vitals of the codes table).
VITAL_CODES = {
    "MDC_ECG_HEART_RATE": "heart_rate",
    "MDC_PULS_OXIM_SAT_O2": "spo2",
    "MDC_PULS_OXIM_PULS_RATE": "pulse_rate",
    "MDC_BLD_PERF_INDEX": "perfusion_index",
    "MDC_PRESS_BLD_NONINV_SYS": "nibp_systolic",
    "MDC_PRESS_BLD_NONINV_DIA": "nibp_diastolic",
    "MDC_PRESS_BLD_NONINV_MEAN": "nibp_mean",
    "MDC_PRESS_BLD_ART_SYS": "abp_systolic",
    "MDC_PRESS_BLD_ART_DIA": "abp_diastolic",
    "MDC_PRESS_BLD_ART_MEAN": "abp_mean",
    "MDC_BLD_PULS_RATE_INV": "abp_pulse_rate",
}


def config_dict(broker_port: int, peer_port: int, state: Path) -> dict[str, Any]:
    return {
        "site": {"id": SITE},
        "broker": {"port": broker_port, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.3},
        "daemon": {"state_dir": str(state), "tick_s": 1.0},
        "rooms": {
            "r1": {
                "feeds": {
                    "ekg": {"kind": "ecg", "fs": 250.0},
                    "pleth": {"kind": "pleth", "fs": 75.0},
                    "spo2": {"kind": "spo2"},
                    "nibp": {"kind": "nibp"},
                    "art": {"kind": "abp", "fs": 125.0},
                    "cement": {"kind": "cement_pressure", "fs": 50.0, "required": False},
                },
                "checks": {
                    "ecg": {},
                    "numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 99.5}]},
                },
            }
        },
        "hl7": {
            "sending_facility": "HOSP_A",
            "period_s": 20.0,
            "receivers": {
                "engine": {
                    "host": "127.0.0.1",
                    "port": peer_port,
                    "application": "MIRTH",
                    "facility": "HOSP_A",
                    "retry_initial_s": 0.5,
                    "retry_max_s": 2.0,
                }
            },
            "locations": {"r1": {"point_of_care": "OR", "room": "KYPHO1", "bed": "1"}},
        },
    }


def segments(text: str, name: str) -> list[list[str]]:
    return [s.split("|") for s in text.split("\r") if s.startswith(name + "|")]


def msh9(text: str) -> str:
    return segments(text, "MSH")[0][8]


async def step(clock: VirtualClock, seconds: int, done: Callable[[], bool]) -> None:
    """Advance the shared clock second by second; after each, wait for the feeds to land."""
    for _ in range(seconds):
        await clock.advance(1.0)
        async with asyncio.timeout(TIMEOUT):
            while not done():  # noqa: ASYNC110 - a daemon counter; yields, never sleeps
                await asyncio.sleep(0)


async def test_simulated_room_reaches_a_real_hl7_peer(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    clock = VirtualClock()
    capture = CaptureOutput()
    async with MllpPeer() as peer:
        cfg = parse_config(config_dict(broker.port, peer.port, tmp_path / "state"))
        path = tmp_path / "room.toml"
        path.write_text(  # the simulator reads the same room from a file
            f"[site]\nid = '{SITE}'\n[broker]\nport = {broker.port}\n"
            + "".join(
                f"[rooms.r1.feeds.{n}]\n"
                + "".join(f"{k} = {json.dumps(v)}\n" for k, v in f.items())
                for n, f in config_dict(0, 0, tmp_path)["rooms"]["r1"]["feeds"].items()
            )
        )
        async with (
            Hl7Output(config=cfg, clock=clock) as out,
            Daemon(config=cfg, clock=clock, extra_outputs=[capture, out]) as daemon,
            MqttCollector(broker.port, [f"roommon/v1/{SITE}/r1/reply/#"]) as mqtt,
        ):
            out.attach(daemon.pipelines)
            assert daemon.link is not None
            async with asyncio.timeout(TIMEOUT):
                await daemon.link.connected.wait()
            # the patient is set by the documented room command (docs/hl7.md)
            await mqtt.publish(
                f"roommon/v1/{SITE}/r1/command/desk1",
                json.dumps(
                    {
                        "v": 1,
                        "id": "p1",
                        "room": "r1",
                        "action": "patient_set",
                        "patient_id": "MRN-000123",
                        "patient_authority": "HOSP_A",
                    }
                ).encode(),
            )
            await mqtt.wait_for(lambda ms: len(ms) == 1)
            assert json.loads(mqtt.messages[0].payload)["ok"] is True
            args = build_parser().parse_args(
                [
                    "simulate",
                    "--config",
                    str(path),
                    "--speed",
                    "1",
                    "--seconds",
                    "45",
                    "--script",
                    "none",
                ]
            )
            sleepers = clock.pending
            sim = asyncio.create_task(
                simulate(args, clock=clock, out=io.StringIO(), err=io.StringIO())
            )
            # connected to the broker (in real time) and waiting for its first second
            async with asyncio.timeout(TIMEOUT):
                while clock.pending == sleepers:  # noqa: ASYNC110 - as in step()
                    await asyncio.sleep(0)
            feeds = daemon.pipelines["r1"].feeds
            for k in range(1, 46):
                await step(clock, 1, lambda k=k: feeds["ekg"].received >= k)  # type: ignore[misc]
            async with asyncio.timeout(TIMEOUT):
                assert await sim == 0
            assert feeds["ekg"].received == 45
            # the limit alarm is up: acknowledge it like a nurse's display would
            alarm = next(e for e in capture.events if e.code == "limit.spo2_low")
            await mqtt.publish(
                f"roommon/v1/{SITE}/r1/command/desk1",
                json.dumps(
                    {
                        "v": 1,
                        "id": "a1",
                        "room": "r1",
                        "action": "acknowledge",
                        "alarm_id": alarm.alarm_id,
                    }
                ).encode(),
            )
            await mqtt.wait_for(lambda ms: len(ms) == 2)
            await step(clock, 2, lambda: out.queue.pending_count() == 0)
            await peer.wait_for(lambda _: out.queue.pending_count() == 0)
            received = list(peer.messages)
            states = list(capture.states)

    assert received, "nothing reached the peer"
    assert out.receivers["engine"].counters["accepted"] == len(received)
    ids = [int(c.rsplit("-", 1)[1]) for c in peer.control_ids()]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)

    for text in received:
        validate_v26(text)  # every message: structure, data types, required fields
        assert hl7.parse(text)  # and the peer's own parser read it
        pid = segments(text, "PID")[0]
        assert pid[3] == "MRN-000123^^^HOSP_A^MR"
        assert segments(text, "PV1")[0][3] == "OR^KYPHO1^1^HOSP_A"

    # PCD-01 vitals reports (periodic every 20 s and on each NIBP reading): every OBX value
    # is the room state's value of that measurement, at that measurement's time.
    vitals = [
        t for t in received if msh9(t) == "ORU^R01^ORU_R01" and any(c in t for c in VITAL_CODES)
    ]
    assert len(vitals) == 3  # the NIBP reading at the first second, periodic at 20 s and 40 s
    assert out.counters["nibp_reports"] == 1
    assert out.counters["periodic_reports"] == 2
    for text in vitals:
        values = {}
        for obx in segments(text, "OBX"):
            name = VITAL_CODES.get(obx[3].split("^")[1])
            if name is not None:
                values[name] = None if obx[11] == "X" else float(obx[5])
        assert any(matches(values, s) for s in states), values
    spo2_values = {v for t in vitals for v in re_values(t, "MDC_PULS_OXIM_SAT_O2")}
    assert spo2_values
    assert all(90 <= v <= 100 for v in spo2_values)

    # PCD-04: the alarm raised, then acknowledged, as two reports in order
    alerts = [t for t in received if msh9(t) == "ORU^R40^ORU_R40"]
    mine = [t for t in alerts if f"|{alarm.alarm_id}^" in t]
    phases = [facet(t, "MDC_ATTR_EVENT_PHASE") for t in mine]
    inact = [facet(t, "MDC_ATTR_ALARM_INACTIVATION_STATE") for t in mine]
    assert phases == ["start", "update"]
    assert inact == ["enabled", "alert-acknowledged"]
    # priority and kind in facet 1's OBX-8 and as the alert priority and type facets 6 and 7
    assert [segments(t, "OBX")[1][8] for t in mine] == ["L~PM~SP", "L~PM~SP"]
    assert [facet(t, "MDC_ATTR_ALARM_PRIORITY") for t in mine] == ["PM", "PM"]
    assert [facet(t, "MDC_ATTR_ALERT_TYPE") for t in mine] == ["SP", "SP"]
    source = next(o for o in segments(mine[0], "OBX") if o[3].startswith("150456^"))
    assert float(source[5]) == alarm.value
    assert source[7] == ">99.5"


def matches(values: dict[str, float | None], state: RoomStateMessage) -> bool:
    want = {n: m.value for n, m in state.measurements.items() if n in VITAL_CODES.values()}
    if set(want) != set(values):
        return False
    return all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 0.0005)
        for n in want
        for a, b in [(want[n], values[n])]
    )


def re_values(text: str, code: str) -> list[float]:
    return [float(o[5]) for o in segments(text, "OBX") if f"^{code}^" in o[3] and o[5]]


def facet(text: str, name: str) -> str:
    return next(o[5] for o in segments(text, "OBX") if f"^{name}^" in o[3])


def spawn_daemon(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "roommon", "run", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def test_roommon_run_builds_the_hl7_output_from_the_config(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The real command line: ``roommon run`` with an [hl7] section sends to the peer."""
    async with MllpPeer() as peer:
        path = tmp_path / "site.toml"
        path.write_text(
            f"[site]\nid = '{SITE}'\n[broker]\nport = {broker.port}\n"
            f"[daemon]\nstate_dir = '{tmp_path / 'state'}'\nheartbeat_s = 1.0\n"
            "[rooms.r1.feeds.spo2]\nkind = 'spo2'\n"
            f"[hl7]\n[hl7.receivers.engine]\nhost = '127.0.0.1'\nport = {peer.port}\n"
        )
        proc = spawn_daemon(path, tmp_path / "daemon.log")
        try:
            status = f"roommon/v1/{SITE}/status/main"
            async with MqttCollector(broker.port, [status]) as c:
                await c.wait_for(lambda ms: any(m.json()["status"] == "online" for m in ms))
                reading = {
                    "v": 1,
                    "kind": "spo2",
                    "seq": 1,
                    "t": 1_767_225_600.0,
                    "values": {"spo2": 97.0},
                }
                await c.publish(f"roommon/v1/{SITE}/r1/feed/spo2", json.dumps(reading).encode())
                # data arrives: the room leaves idle, and the new phase is reported (PCD-01)
                await peer.wait_for(lambda ms: any("|patient_connected|" in m for m in ms))
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = next(m for m in peer.messages if "|patient_connected|" in m)
    validate_v26(text, location_only=True)
    assert segments(text, "PV1")[0][3] == f"r1^r1^^{SITE}"
