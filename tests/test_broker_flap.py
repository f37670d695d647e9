"""The broker stopped and started every few seconds (SIGTERM and SIGKILL alternately).

Gateways publish, nurses send QoS 1 commands, a display subscribes with a
persistent session: no alarm event is lost or out of order, every command is
applied once and answered (one reply; copies byte-identical), and the daemon
reconnects within ``reconnect_max_s + keepalive_s`` of every broker return.
The full minute of issue 11 is ``bench/broker_flap.py``; here
``ROOMMON_FLAP_S`` seconds (default 15).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roommon.testing.flap import broker_flap

pytestmark = pytest.mark.broker

DURATION_S = float(os.environ.get("ROOMMON_FLAP_S", "15"))


@pytest.mark.timeout(DURATION_S + 180)
async def test_nothing_is_lost_while_the_broker_flaps(tmp_path: Path) -> None:
    report = await broker_flap(state_dir=tmp_path, duration_s=DURATION_S)
    print("\n".join(report.lines()))
    assert report.problems() == []
    assert report.kills >= 1
    assert report.stops >= 1
    assert sum(report.events.values()) > 0
    assert report.commands > 0
