"""Fault isolation: one room's failure is that room's alarm; shared infrastructure fails loudly.

Real Mosquitto, real SQLite. A room is broken from inside (a test-only check
that raises on every chunk and tick, and the room's own steps made to raise);
the other room must keep monitoring. A failing broker link ends with a
retained ``offline`` status carrying the reason and a non-zero exit, never a
silent death; a store that cannot be written is the technical alarm
``store.unwritable`` while the daemon stays online (issue 11, item 1).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from roommon.alerts.store import AlarmStore
from roommon.checks import CHECKS
from roommon.cli import main
from roommon.config import Config, load_config, parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.model import DataOrigin
from roommon.runtime.daemon import Daemon
from roommon.runtime.ingest import FeedIngest, Outcome
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.testing.checks import ProbeCheck
from roommon.testing.logs import capture_logs
from roommon.transports.mqtt import MqttLink

pytestmark = pytest.mark.broker

SITE = "s"
T0 = 1_767_225_600.0
DESAT_DELAY_S = 5.0


def room(*, broken: bool) -> dict[str, Any]:
    checks: dict[str, Any] = {
        "numeric_limits": {
            "rules": [{"kind": "spo2", "field": "spo2", "below": 90, "delay_s": DESAT_DELAY_S}]
        }
    }
    if broken:
        checks["probe"] = {"fail_on_chunk": True, "fail_on_tick": True}
    return {
        "feeds": {
            "ekg": {"kind": "ecg", "fs": 250, "stale_s": 1e6},
            "spo2": {"kind": "spo2", "stale_s": 1e6},
        },
        "checks": checks,
    }


def two_rooms(port: int, state: Path) -> Config:
    return parse_config(
        {
            "site": {"id": SITE},
            "broker": {"port": port, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.5},
            "daemon": {"state_dir": str(state)},
            "rooms": {"r1": room(broken=True), "r2": room(broken=False)},
        }
    )


def reading(seq: int, spo2: float) -> bytes:
    body = {"v": 1, "kind": "spo2", "seq": seq, "t": T0 + seq, "values": {"spo2": spo2}}
    return json.dumps(body).encode()


def chunk(seq: int) -> bytes:
    body = {
        "v": 1,
        "kind": "ecg",
        "seq": seq,
        "t0": T0 + seq,
        "fs": 250,
        "unit": "mV",
        "n": 250,
        "samples": [0.01 * (i % 50) for i in range(250)],
    }
    return json.dumps(body).encode()


def alarms(ms: list[Received], room: str, code: str, transition: str = "raised") -> list[Any]:
    return [
        m.json()
        for m in ms
        if m.topic == f"roommon/v1/{SITE}/{room}/alarm"
        and m.json()["code"] == code
        and m.json()["transition"] == transition
    ]


async def test_a_failing_room_raises_room_failed_and_the_other_room_still_alarms_on_time(
    broker: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CHECKS, ProbeCheck.name, ProbeCheck)
    clock = VirtualClock(start=T0)
    processed: dict[tuple[str, str], asyncio.Event] = {}

    real_payload = FeedIngest.payload

    def traced(
        self: FeedIngest, room_id: str, feed: str, payload: bytes, **kw: DataOrigin | None
    ) -> Outcome:
        """The real ingest, telling the test when a message has been through it."""
        outcome = real_payload(self, room_id, feed, payload, **kw)
        processed.setdefault((room_id, feed), asyncio.Event()).set()
        return outcome

    monkeypatch.setattr(FeedIngest, "payload", traced)

    async def through(c: MqttCollector, room_id: str, feed: str, payload: bytes) -> None:
        processed.setdefault((room_id, feed), asyncio.Event()).clear()
        await c.publish(f"roommon/v1/{SITE}/{room_id}/feed/{feed}", payload)
        async with asyncio.timeout(10):
            await processed[room_id, feed].wait()

    # Subscribed before the daemon starts: the probe already fails on its first tick.
    with capture_logs() as logs:
        async with MqttCollector(broker.port, [f"roommon/v1/{SITE}/+/alarm"]) as c:
            config = two_rooms(broker.port, tmp_path / "state")
            async with Daemon(config=config, clock=clock) as daemon:
                link = daemon.link
                assert link is not None
                async with asyncio.timeout(10):
                    await link.connected.wait()
                broken = daemon.pipelines["r1"]

                def boom(*_: object, **__: object) -> Any:
                    raise RuntimeError("injected bug in the room's own code")

                # Beyond the probe check's failures (contained per check), the room's own
                # steps fail too: recording a device reading (ingest) and the alarm tick.
                monkeypatch.setattr(broken, "_record_reading", boom)
                monkeypatch.setattr(broken.engine, "tick", boom)

                for r in ("r1", "r2"):
                    await through(c, r, "ekg", chunk(1))
                    await through(c, r, "spo2", reading(1, 97))
                got = await c.wait_for(lambda ms: bool(alarms(ms, "r1", "room.failed")))
                failed = alarms(got, "r1", "room.failed")[0]
                assert failed["priority"] == "high"
                assert failed["kind"] == "technical"
                assert "cannot be trusted" in failed["message"]

                onset = clock.now()
                for r in ("r1", "r2"):
                    await through(c, r, "spo2", reading(2, 82))
                for _ in range(int(DESAT_DELAY_S) + 1):  # the ticker runs every second
                    await clock.advance(1.0)
                got = await c.wait_for(lambda ms: bool(alarms(ms, "r2", "limit.spo2_low")))
                desat = alarms(got, "r2", "limit.spo2_low")[0]
                assert DESAT_DELAY_S <= desat["t"] - onset <= DESAT_DELAY_S + 1.0
                await through(c, "r2", "spo2", reading(3, 97))  # the daemon still takes input
                await c.wait_for(lambda ms: bool(alarms(ms, "r1", "check.failed")))

                assert broken.failures >= 2  # ingest and tick both failed, and were contained
                assert alarms(got, "r2", "room.failed") == []
                assert daemon.pipelines["r2"].failures == 0
                assert link.healthy
                assert link.connected.is_set()

    failures = logs.named("room_failed")
    assert {f["room"] for f in failures} == {"r1"}
    assert {f["entry"] for f in failures} >= {"ingest", "tick"}
    assert all(f.get("exc_info") for f in failures)  # logged with the traceback


def run_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "room.toml"
    path.write_text(
        f"""
[site]
id = "{SITE}"

[broker]
port = {port}
reconnect_initial_s = 0.05
reconnect_max_s = 0.5

[daemon]
state_dir = "{tmp_path / "state"}"
tick_s = 0.2

[rooms.r1.feeds.spo2]
kind = "spo2"
stale_s = 0.3
"""
    )
    return path


async def retained_status(port: int) -> dict[str, Any]:
    topic = f"roommon/v1/{SITE}/status/main"
    async with MqttCollector(port, [topic], client_id="status-reader") as c:
        got = await c.wait_for(lambda ms: any(m.topic == topic for m in ms))
    status: dict[str, Any] = next(m for m in got if m.topic == topic).json()
    return status


def _run_daemon(tmp_path: Path, broker: MosquittoBroker, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["run", "--config", str(run_config(tmp_path, broker.port))]) == 1
    return capsys.readouterr().err


def test_an_exception_escaping_the_broker_link_ends_offline_with_its_reason(
    broker: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def broken_flush(self: MqttLink, client: object) -> None:
        raise RuntimeError("injected failure in the broker link")

    monkeypatch.setattr(MqttLink, "_flush_outbox", broken_flush)
    err = _run_daemon(tmp_path, broker, capsys)
    assert "injected failure in the broker link" in err
    status = asyncio.run(retained_status(broker.port))
    assert status["status"] == "offline"
    assert "injected failure in the broker link" in status["reason"]


async def test_a_read_only_store_is_a_technical_alarm_and_the_daemon_stays_online(
    broker: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 item 1: a store that cannot be written no longer ends the daemon (it used
    to go offline); it is the high-priority alarm store.unwritable and the status says
    the alarms are not durable, while they are still published."""
    real_init: Callable[..., None] = AlarmStore.__init__

    def read_only_after_open(self: AlarmStore, path: Path | str) -> None:
        real_init(self, path)
        # Real SQLite refusing every write from now on (as a read-only mount would).
        self._db.execute("PRAGMA query_only = ON")

    monkeypatch.setattr(AlarmStore, "__init__", read_only_after_open)
    cfg = load_config(run_config(tmp_path, broker.port))
    status_topic = f"roommon/v1/{SITE}/status/main"
    alarm_topic = f"roommon/v1/{SITE}/r1/alarm"
    async with (
        Daemon(config=cfg, clock=RealClock()) as d,
        MqttCollector(broker.port, [status_topic, alarm_topic]) as c,
    ):
        # the feed never sends: feed.never_seen after stale_s; its event cannot be stored
        msgs = await c.wait_for(
            lambda ms: any(m.topic == alarm_topic and m.json()["code"] == "store.unwritable"
                           for m in ms)
            and any(m.topic == status_topic and not m.json()["durable"] for m in ms)
        )
        assert d.store.degraded
    codes = {m.json()["code"] for m in msgs if m.topic == alarm_topic}
    assert {"feed.never_seen", "store.unwritable"} <= codes
    status = next(m.json() for m in msgs if m.topic == status_topic and not m.json()["durable"])
    assert status["status"] == "online"
    assert "readonly" in status["store_error"]


MALFORMED = ["127.0.0.1:1", "tcp://127.0.0.1:1883", "mqtt://", "mqtt://h:99999", "127.0.0.1"]


@pytest.mark.parametrize("address", MALFORMED)
@pytest.mark.parametrize("command", ["demo", "run", "simulate", "record", "replay", "timers"])
def test_every_subcommand_refuses_a_malformed_broker_address(
    command: str, address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(run_config(tmp_path, 1883))
    argv = {
        "demo": ["demo", "--speed", "0", "--minutes", "1"],
        "run": ["run", "--config", config],
        "simulate": ["simulate", "--config", config, "--seconds", "1"],
        "record": ["record", "--config", config, "--out", str(tmp_path / "x.mcap")],
        "replay": ["replay", str(tmp_path / "none.mcap"), "--config", config],
        "timers": ["timers", "--site", SITE, "--once"],
    }[command]
    assert main([*argv, "--broker", address]) == 2
    err = capsys.readouterr().err
    assert "--broker" in err
    assert repr(address) in err
    assert not (tmp_path / "x.mcap").exists()
