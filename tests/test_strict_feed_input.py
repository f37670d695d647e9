"""Feed input through a real broker is strictly typed: nothing is coerced into a number.

Issue 11, defect 9: ``"spo2": true`` was read as 1 % and raised ``limit.spo2_low``;
``"seq": "12"`` and ``"spo2": "95"`` were accepted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.runtime.daemon import Daemon
from roommon.testing import MosquittoBroker, MqttCollector, Received

pytestmark = pytest.mark.broker

T0 = 1_767_225_600.0
BASE = "roommon/v1/s/r1"


@pytest.fixture
async def daemon(broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Daemon]:
    cfg = parse_config(
        {
            "site": {"id": "s"},
            "broker": {"port": broker.port},
            "daemon": {"state_dir": str(tmp_path)},
            "rooms": {
                "r1": {
                    "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
                    "checks": {
                        "numeric_limits": {
                            "rules": [{"kind": "spo2", "field": "spo2", "below": 90}]
                        }
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


def reading(seq: Any, spo2: Any) -> bytes:
    return json.dumps(
        {"v": 1, "kind": "spo2", "seq": seq, "t": T0 + 1, "values": {"spo2": spo2}}
    ).encode()


async def test_strings_and_booleans_are_rejected_and_never_alarm(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        await c.publish(f"{BASE}/feed/spo2", reading(1, True))  # was read as 1 %
        await c.publish(f"{BASE}/feed/spo2", reading(2, "95"))
        await c.publish(f"{BASE}/feed/spo2", reading("12", 96))
        await c.publish(f"{BASE}/feed/spo2", reading(3, 97))  # the good one after them

        def settled(ms: list[Received]) -> bool:
            states = [m.json() for m in ms if m.topic == f"{BASE}/state"]
            return bool(states) and states[-1]["feeds"]["spo2"]["received"] == 1

        msgs = await c.wait_for(settled)
    state = [m.json() for m in msgs if m.topic == f"{BASE}/state"][-1]
    assert state["feeds"]["spo2"]["rejected"] == {"invalid": 3}
    assert state["measurements"]["spo2"]["value"] == 97
    codes = {m.json()["code"] for m in msgs if m.topic == f"{BASE}/alarm"}
    assert "limit.spo2_low" not in codes
    assert codes == {"feed.bad_payload"}
    assert daemon.pipelines["r1"].feeds["spo2"].last_seq == 3
