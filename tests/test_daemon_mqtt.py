"""End to end through a real Mosquitto: feeds in, alarms/state/status out, bad input, last will."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from roommon.config import Config, parse_config
from roommon.core.clock import RealClock
from roommon.runtime.daemon import Daemon
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.wire.registry import SCHEMA_DIR

pytestmark = pytest.mark.broker

SITE = "site1"
T0 = 1_767_225_600.0


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return loaded


def validate(name: str, payload: Any) -> None:
    jsonschema.validate(payload, schema(name))


def config_dict(port: int, state_dir: Path) -> dict[str, Any]:
    return {
        "site": {"id": SITE},
        "broker": {
            "host": "127.0.0.1",
            "port": port,
            "reconnect_initial_s": 0.05,
            "reconnect_max_s": 0.5,
        },
        "daemon": {"state_dir": str(state_dir), "heartbeat_s": 1.0},
        "rooms": {
            "r1": {
                "feeds": {
                    "ekg": {"kind": "ecg", "fs": 250},
                    "spo2": {"kind": "spo2"},
                },
                "checks": {
                    "numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}
                },
                "escalation": {"notify": ["nurse1"]},
            }
        },
    }


@pytest.fixture
def config(broker: MosquittoBroker, tmp_path: Path) -> Config:
    return parse_config(config_dict(broker.port, tmp_path / "state"))


@pytest.fixture
async def daemon(config: Config) -> AsyncIterator[Daemon]:
    async with Daemon(config=config, clock=RealClock()) as d:
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        yield d


def reading(seq: int, spo2: float, origin: str = "live") -> bytes:
    return json.dumps(
        {
            "v": 1,
            "kind": "spo2",
            "seq": seq,
            "t": T0 + seq,
            "values": {"spo2": spo2},
            "origin": origin,
        }
    ).encode()


def chunk(seq: int, n: int = 250, **over: Any) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "kind": "ecg",
        "seq": seq,
        "t0": T0 + seq,
        "fs": 250,
        "unit": "mV",
        "n": n,
        "samples": [0.01 * (i % 50) for i in range(n)],
    }
    body.update(over)
    return json.dumps(body).encode()


FEED = f"roommon/v1/{SITE}/r1/feed"


async def test_feed_to_alarm_state_status_and_notify(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    alarm_topic = f"roommon/v1/{SITE}/r1/alarm"
    async with MqttCollector(broker.port, [f"roommon/v1/{SITE}/#"]) as c:
        await c.publish(f"{FEED}/spo2", reading(1, 97))
        await c.publish(f"{FEED}/spo2", reading(2, 82))
        msgs = await c.wait_for(lambda ms: any(m.topic == alarm_topic for m in ms))
        event = next(m for m in msgs if m.topic == alarm_topic).json()
        validate("alarm_event", event)
        assert (event["code"], event["transition"], event["priority"]) == (
            "limit.spo2_low",
            "raised",
            "medium",
        )
        assert (event["value"], event["limit"], event["origin"]) == (82, 90, "live")
        note = await c.wait_for(lambda ms: any(m.topic.endswith("/notify/nurse1") for m in ms))
        n = next(m for m in note if m.topic.endswith("/notify/nurse1")).json()
        validate("notify", n)
        assert n["event"]["event_id"] == event["event_id"]

    # A display connecting later gets the retained state and status.
    async with MqttCollector(
        broker.port,
        [f"roommon/v1/{SITE}/r1/state", f"roommon/v1/{SITE}/status/+"],
        client_id="late-display",
    ) as late:
        # Alarm events go out ahead of room state, so the state that shows the alarm
        # may follow the event by a moment: wait for it (retained, or its live update).
        def state_with_alarm(ms: list[Received]) -> bool:
            states = [m.json() for m in ms if m.topic.endswith("/state")]
            return any(m.retain for m in ms if "/status/" in m.topic) and any(
                s["alarms"] for s in states
            )

        msgs = await late.wait_for(state_with_alarm)
        assert any(m.retain for m in msgs if m.topic.endswith("/state"))
        state = next(m for m in msgs if m.topic.endswith("/state") and m.json()["alarms"]).json()
        validate("room_state", state)
        assert [a["code"] for a in state["alarms"]] == ["limit.spo2_low"]
        assert state["highest_priority"] == "medium"
        assert state["feeds"]["spo2"]["received"] == 2
        status = next(m for m in msgs if "/status/" in m.topic).json()
        validate("status", status)
        assert status["status"] == "online"


async def test_bad_payloads_are_rejected_counted_and_the_feed_goes_on(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    bad = [
        (f"{FEED}/ekg", b"{not json", "bad_json"),
        (f"{FEED}/ekg", chunk(1, fs="fast"), "invalid"),
        (f"{FEED}/ekg", chunk(2).replace(b'"t0": 1767225602.0', b'"t0": NaN'), "non_finite"),
        (f"{FEED}/ekg", chunk(3, n=251, samples=[0.0] * 250), "sample_count"),
        (f"{FEED}/ekg", chunk(4, fs=500), "wrong_rate"),
        (f"{FEED}/ekg", chunk(5, colour="red"), "unknown_field"),
        (f"{FEED}/ekg", chunk(6, n=60000, samples=[0.0] * 60000), "oversized"),
        (
            f"{FEED}/spo2",
            json.dumps(
                {"v": 1, "kind": "spo2", "seq": 1, "t": T0, "values": {"spo2": 97, "glucose": 5}}
            ).encode(),
            "unknown_field",
        ),
        (f"{FEED}/spo2", reading(2, 140), "out_of_range"),
    ]
    state_topic = f"roommon/v1/{SITE}/r1/state"
    async with MqttCollector(broker.port, [state_topic]) as c:
        for topic, payload, _ in bad:
            await c.publish(topic, payload)
        await c.publish(f"{FEED}/nosuchfeed", chunk(0))
        await c.publish(f"{FEED}/ekg", chunk(10))  # good data after all the bad
        await c.publish(f"{FEED}/spo2", reading(3, 97))

        def settled(ms: list[Received]) -> bool:
            states = [m.json() for m in ms if m.topic == state_topic]
            return (
                bool(states)
                and states[-1]["feeds"]["ekg"]["received"] == 1
                and (states[-1]["feeds"]["spo2"]["received"] == 1)
            )

        msgs = await c.wait_for(settled)
    state = [m.json() for m in msgs if m.topic == state_topic][-1]
    validate("room_state", state)
    expected_ekg: dict[str, int] = {}
    expected_spo2: dict[str, int] = {}
    for topic, _, reason in bad:
        target = expected_ekg if topic.endswith("/ekg") else expected_spo2
        target[reason] = target.get(reason, 0) + 1
    assert state["feeds"]["ekg"]["rejected"] == expected_ekg
    assert state["feeds"]["spo2"]["rejected"] == expected_spo2
    assert daemon.counters["unknown_feed"] == 1
    assert daemon.counters["feed_rejected"] == len(bad)
    assert any(a["code"] == "feed.bad_payload" for a in state["alarms"])


def run_daemon_process(config_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (config_path.parent / "daemon.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "roommon", "run", "--config", str(config_path), *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def write_config(tmp_path: Path, port: int) -> Path:
    d = config_dict(port, tmp_path / "state")
    lines = [
        f'[site]\nid = "{SITE}"\n',
        f'[broker]\nhost = "127.0.0.1"\nport = {port}\n',
        f'[daemon]\nstate_dir = "{d["daemon"]["state_dir"]}"\nheartbeat_s = 1.0\n',
        '[rooms.r1.feeds.spo2]\nkind = "spo2"\n',
    ]
    path = tmp_path / "roommon.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize(
    ("sig", "reason"), [(signal.SIGKILL, "connection lost"), (signal.SIGTERM, "shutdown")]
)
async def test_status_goes_offline_when_the_daemon_dies_or_stops(
    broker: MosquittoBroker, tmp_path: Path, sig: signal.Signals, reason: str
) -> None:
    status_topic = f"roommon/v1/{SITE}/status/main"
    proc = run_daemon_process(write_config(tmp_path, broker.port))
    try:
        async with MqttCollector(broker.port, [status_topic]) as c:
            await c.wait_for(lambda ms: any(m.json()["status"] == "online" for m in ms), within=30)
            proc.send_signal(sig)
            msgs = await c.wait_for(
                lambda ms: any(m.json()["status"] == "offline" for m in ms), within=30
            )
        offline = next(m.json() for m in msgs if m.json()["status"] == "offline")
        validate("status", offline)
        assert offline["reason"] == reason
        assert proc.wait(timeout=10) == (-sig if sig == signal.SIGKILL else 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_heartbeat_refreshes_the_retained_status_on_the_daemon_clock(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    from roommon.core.clock import VirtualClock

    clock = VirtualClock()
    cfg = parse_config(config_dict(broker.port, tmp_path / "state"))
    status_topic = f"roommon/v1/{SITE}/status/main"
    async with (
        Daemon(config=cfg, clock=clock) as d,
        MqttCollector(broker.port, [status_topic]) as c,
    ):
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        for beat in range(1, 6):
            await clock.advance(1.0)  # heartbeat_s = 1
            # each beat is retained latest-wins: wait for it before making the next one

            def beats_seen(ms: list[Received], n: int = beat) -> bool:
                return len({m.json()["t"] for m in ms}) > n

            msgs = await c.wait_for(beats_seen)
    beats = sorted({m.json()["t"] for m in msgs})
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(beats))
    for m in msgs:
        validate("status", m.json())


async def test_run_broker_option_takes_the_place_of_the_configs_broker(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    from roommon.testing import free_port

    config = write_config(tmp_path, free_port())  # the config's broker: nothing listens there
    proc = run_daemon_process(config, "--broker", broker.url)
    try:
        async with MqttCollector(broker.port, [f"roommon/v1/{SITE}/status/main"]) as c:
            await c.wait_for(lambda ms: any(m.json()["status"] == "online" for m in ms), within=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, (tmp_path / "daemon.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
