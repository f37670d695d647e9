"""Feed data integrity through a real broker: bad samples, forged sequence numbers.

Issue 11, defect 10: a NaN sample in an ``f32le-b64`` chunk rejected the whole
chunk, where docs/topics.md promises the bad samples are cut out and the good
ones around them kept. Defect 8: one valid reading with ``"seq":
9007199254740991`` locked the feed out: every real reading after it was
refused ``out_of_order`` until the device restarted at 0.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from roommon.checks import CHECKS
from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.runtime.daemon import Daemon
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.testing.checks import ProbeCheck

pytestmark = pytest.mark.broker

T0 = 1_767_225_600.0
BASE = "roommon/v1/s/r1"


@pytest.fixture
async def daemon(
    broker: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Daemon]:
    monkeypatch.setitem(CHECKS, ProbeCheck.name, ProbeCheck)
    cfg = parse_config(
        {
            "site": {"id": "s"},
            "broker": {"port": broker.port},
            "daemon": {"state_dir": str(tmp_path)},
            "rooms": {
                "r1": {
                    "feeds": {
                        "ekg": {"kind": "ecg", "fs": 250, "stale_s": 1e6},
                        "spo2": {"kind": "spo2", "stale_s": 1e6},
                    },
                    "checks": {
                        "probe": {},
                        "numeric_limits": {
                            "rules": [{"kind": "spo2", "field": "spo2", "below": 90}]
                        },
                    },
                }
            },
        }
    )
    async with Daemon(config=cfg, clock=RealClock()) as d:
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        yield d


def f32_chunk(seq: int, samples: np.ndarray[Any, np.dtype[np.float64]]) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "kind": "ecg",
            "seq": seq,
            "t0": T0 + seq,
            "fs": 250,
            "unit": "mV",
            "n": len(samples),
            "encoding": "f32le-b64",
            "data": base64.b64encode(samples.astype("<f4").tobytes()).decode(),
        }
    ).encode()


def received(n: int) -> Any:
    def settled(ms: list[Received]) -> bool:
        states = [m.json() for m in ms if m.topic == f"{BASE}/state"]
        return bool(states) and states[-1]["feeds"]["ekg"]["received"] == n

    return settled


async def test_nan_and_inf_samples_are_cut_out_in_every_encoding(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    f32 = np.linspace(-1, 1, 250)
    f32[10:15] = np.nan
    f32[100] = np.inf
    f32[101] = -np.inf
    as_json = np.linspace(0, 1, 250)
    as_json[120] = np.nan  # Python's json writes NaN: non-standard JSON, as devices send it
    json_body = json.dumps(
        {
            "v": 1,
            "kind": "ecg",
            "seq": 2,
            "t0": T0 + 2,
            "fs": 250,
            "unit": "mV",
            "n": 250,
            "samples": [float(x) for x in as_json],
        }
    )
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        await c.publish(f"{BASE}/feed/ekg", f32_chunk(1, f32))
        await c.publish(f"{BASE}/feed/ekg", json_body.encode())
        msgs = await c.wait_for(received(2))
        alarms = await c.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/alarm" and m.json()["code"] == "feed.bad_samples" for m in ms
            )
        )
    state = [m.json() for m in msgs if m.topic == f"{BASE}/state"][-1]
    assert state["feeds"]["ekg"]["rejected"] == {}
    assert state["feeds"]["ekg"]["bad_samples"] == 8
    probe = daemon.pipelines["r1"].checks[0]
    assert isinstance(probe, ProbeCheck)
    good_f32 = np.delete(f32, [10, 11, 12, 13, 14, 100, 101]).astype("<f4").astype(np.float64)
    good_json = np.delete(as_json, 120)
    np.testing.assert_array_equal(probe.samples(), np.concatenate([good_f32, good_json]))
    # the pieces keep their time: the run after the NaNs starts 15 samples in
    pieces = [c for c in probe.chunks if c.seq == 1]
    assert [round(p.t0 - (T0 + 1), 6) for p in pieces] == [0.0, 0.06, 0.408]
    raised = [m.json() for m in alarms if m.topic == f"{BASE}/alarm"]
    assert [(a["code"], a["priority"]) for a in raised] == [("feed.bad_samples", "low")]


def reading(seq: int, spo2: float) -> bytes:
    return json.dumps(
        {"v": 1, "kind": "spo2", "seq": seq, "t": T0 + seq % 1000, "values": {"spo2": spo2}}
    ).encode()


def spo2_state(n_received: int) -> Any:
    def settled(ms: list[Received]) -> bool:
        states = [m.json() for m in ms if m.topic == f"{BASE}/state"]
        return bool(states) and states[-1]["feeds"]["spo2"]["received"] == n_received

    return settled


FORGED = 2**53 - 1  # 9007199254740991: valid by the schema, far beyond any device's count


async def test_one_forged_seq_never_locks_the_feed_out(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    feed = daemon.pipelines["r1"].feeds["spo2"]
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        await c.publish(f"{BASE}/feed/spo2", reading(1, 97))
        await c.publish(f"{BASE}/feed/spo2", reading(2, 97))
        await c.publish(f"{BASE}/feed/spo2", reading(FORGED, 70))  # plausible, forged
        for seq in range(3, 8):  # the device goes on counting
            await c.publish(f"{BASE}/feed/spo2", reading(seq, 96))
        msgs = await c.wait_for(spo2_state(7))
    state = [m.json() for m in msgs if m.topic == f"{BASE}/state"][-1]
    assert state["feeds"]["spo2"]["rejected"] == {"seq_jump": 1}
    assert state["measurements"]["spo2"]["value"] == 96  # never the forged 70
    assert feed.last_seq == 7
    codes = [m.json()["code"] for m in msgs if m.topic == f"{BASE}/alarm"]
    assert "limit.spo2_low" not in codes  # the forged value never reached the check
    assert "feed.bad_payload" in codes


async def test_a_confirmed_forgery_still_gives_the_feed_back_to_its_device(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    """Two forged payloads in a row confirm each other; the real device's run behind
    them takes the feed back after a few payloads instead of never."""
    feed = daemon.pipelines["r1"].feeds["spo2"]
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        await c.publish(f"{BASE}/feed/spo2", reading(1, 97))
        await c.publish(f"{BASE}/feed/spo2", reading(FORGED - 1, 97))
        await c.publish(f"{BASE}/feed/spo2", reading(FORGED, 97))
        for seq in range(2, 12):
            await c.publish(f"{BASE}/feed/spo2", reading(seq, 85 if seq == 11 else 96))
        msgs = await c.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/alarm" and m.json()["code"] == "limit.spo2_low" for m in ms
            )
        )
    assert feed.last_seq == 11
    assert feed.rejected == {"out_of_order": 2}
    assert feed.received == 1 + 2 + 8  # the two forged ones, then the device from seq 4
    alarms = [m.json() for m in msgs if m.topic == f"{BASE}/alarm"]
    low = next(a for a in alarms if a["code"] == "limit.spo2_low")
    assert low["value"] == 85
    assert {"feed.seq_gap", "feed.bad_payload"} <= {a["code"] for a in alarms}
