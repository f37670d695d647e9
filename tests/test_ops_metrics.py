"""Metrics and health over HTTP (issue 14 item 1): a daemon fed through a real Mosquitto,
its /metrics scraped and parsed with prometheus_client's own parser, its /healthz turning
503 when the broker goes away and when the alarm store cannot be written (real SQLite
refusing to grow, as in tests/test_store_faults.py)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.core.errors import UsageError
from roommon.runtime.daemon import Daemon
from roommon.runtime.health import daemon_health
from roommon.runtime.metrics import DaemonMetrics
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.web.ops import OpsServer

pytestmark = pytest.mark.broker

T0 = 1_767_225_600.0
SITE = "s"
BASE = f"roommon/v1/{SITE}"

OPERATIONS_DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def reading(seq: int, spo2: float) -> bytes:
    body = {"v": 1, "kind": "spo2", "seq": seq, "t": T0 + seq, "values": {"spo2": spo2}}
    return json.dumps(body).encode()


def desat(m: Received) -> bool:
    return m.topic == f"{BASE}/r1/alarm" and m.json()["code"] == "limit.spo2_low"


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(ss: Samples, name: str, **labels: str) -> float | None:
    return ss.get((name, tuple(sorted(labels.items()))))


@dataclass
class Rig:
    daemon: Daemon
    clock: VirtualClock
    server: OpsServer
    http: aiohttp.ClientSession

    async def scrape(self) -> Samples:
        async with self.http.get(f"{self.server.url}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            return samples(await r.text())

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.server.url}/healthz") as r:
            body: dict[str, Any] = await r.json()
            return r.status, body

    async def scrape_until(self, ok: Callable[[Samples], bool], within: float = 10.0) -> Samples:
        """Scrape until ``ok`` holds: the daemon counts what the broker delivers, a little later."""
        async with asyncio.timeout(within):
            while not ok(ss := await self.scrape()):  # noqa: ASYNC110 - each scrape is I/O
                await asyncio.sleep(0)
        return ss

    async def health_until(
        self, ok: Callable[[int, dict[str, Any]], bool], within: float = 10.0
    ) -> tuple[int, dict[str, Any]]:
        async with asyncio.timeout(within):
            while not ok(*(h := await self.healthz())):
                await self.clock.advance(0.5)  # the ticker's store retries, the link's backoff
        return h


def small_pages(path: Path) -> None:
    """512-byte pages: an alarm event then needs new pages (tests/test_store_faults.py)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 512")
    db.execute("PRAGMA user_version = 1")
    db.close()


@pytest.fixture
async def rig(broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Rig]:
    room = {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}, "ekg": {"kind": "ecg", "fs": 250}},
        "checks": {
            "numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}
        },
    }
    cfg = parse_config(
        {
            "site": {"id": SITE},
            "broker": {"port": broker.port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.2},
            "daemon": {"state_dir": str(tmp_path), "heartbeat_s": 60},
            "metrics": {"enabled": True, "port": 0},
            "rooms": {"r1": room, "r2": room},
        }
    )
    small_pages(tmp_path / "roommon.sqlite3")
    clock = VirtualClock(start=T0)
    metrics = DaemonMetrics()
    async with Daemon(config=cfg, clock=clock, extra_outputs=[metrics]) as d:
        metrics.attach(d)
        server = OpsServer(
            registry=metrics.registry,
            health=lambda: daemon_health(d),
            host=cfg.metrics.host,
            port=cfg.metrics.port,
        )
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        async with server, aiohttp.ClientSession() as http:
            yield Rig(d, clock, server, http)


async def test_metrics_move_with_the_traffic(broker: MosquittoBroker, rig: Rig) -> None:
    ss = await rig.scrape()
    assert value(ss, "roommon_feed_messages_accepted_total", room="r1", feed="spo2") == 0
    assert value(ss, "roommon_feed_last_sample_age_seconds", room="r1", feed="spo2") is None
    assert value(ss, "roommon_broker_connected") == 1
    assert value(ss, "roommon_broker_connects_total") == 1
    assert value(ss, "roommon_store_writable") == 1
    for p in ("low", "medium", "high"):
        assert value(ss, "roommon_alarms_active", room="r1", priority=p, kind="physiological") == 0

    feed = f"{BASE}/r1/feed/spo2"
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        for seq in (1, 2, 3):
            await c.publish(feed, reading(seq, 97))
        await c.publish(feed, b"{not json")
        await c.publish(feed, json.dumps({"v": 1, "kind": "spo2", "seq": 9}).encode())
        await c.publish(f"{BASE}/r1/feed/nosuch", reading(1, 97))
        ss = await rig.scrape_until(
            lambda ss: value(ss, "roommon_daemon_messages_total", outcome="unknown_feed") == 1
            and value(ss, "roommon_feed_messages_accepted_total", room="r1", feed="spo2") == 3
        )
        rejected = {
            labels: n
            for (name, labels), n in ss.items()
            if name == "roommon_feed_messages_rejected_total"
        }
        assert sum(rejected.values()) == 2, rejected
        reasons = {dict(labels)["reason"] for labels in rejected}
        assert reasons == {"bad_json", "invalid"}, reasons
        assert all(dict(labels)["feed"] == "spo2" for labels in rejected)
        assert value(ss, "roommon_feed_messages_accepted_total", room="r2", feed="spo2") == 0
        assert value(ss, "roommon_daemon_messages_total", outcome="feed_accepted") == 3
        assert value(ss, "roommon_daemon_messages_total", outcome="feed_rejected") == 2
        assert value(ss, "roommon_feed_last_sample_age_seconds", room="r1", feed="spo2") == 0

        await c.publish(feed, reading(4, 80))  # desaturation: limit.spo2_low raised at once
        msgs = await c.wait_for(lambda ms: any(desat(m) for m in ms))
        alarm = next(m for m in msgs if desat(m)).json()
        labels = {"room": "r1", "code": "limit.spo2_low", "priority": alarm["priority"]}
        ss = await rig.scrape_until(
            lambda ss: value(ss, "roommon_alarms_raised_total", **labels, origin="live") == 1
        )
        assert (
            value(
                ss,
                "roommon_alarms_active",
                room="r1",
                priority=alarm["priority"],
                kind="physiological",
            )
            == 1
        )

        ticks = value(ss, "roommon_tick_seconds_count") or 0
        await rig.clock.advance(30.0)  # 30 s until the nurse acknowledges
        command = {"v": 1, "id": "a1", "room": "r1", "action": "acknowledge"}
        command["alarm_id"] = alarm["alarm_id"]
        await c.publish(f"{BASE}/r1/command/nurse", json.dumps(command).encode())
        ack = {"room": "r1", "priority": alarm["priority"]}
        ss = await rig.scrape_until(
            lambda ss: value(ss, "roommon_alarm_acknowledge_seconds_count", **ack) == 1
        )
    assert value(ss, "roommon_alarm_acknowledge_seconds_sum", **ack) == 30.0
    assert value(ss, "roommon_alarm_acknowledge_seconds_bucket", **ack, le="20.0") == 0
    assert value(ss, "roommon_alarm_acknowledge_seconds_bucket", **ack, le="30.0") == 1
    assert value(ss, "roommon_daemon_messages_total", outcome="commands_ok") == 1
    assert (value(ss, "roommon_tick_seconds_count") or 0) >= ticks + 30
    assert (value(ss, "roommon_tick_seconds_sum") or 0) > 0
    # one call per reading: numeric_limits has no on_tick, so the ticks do not call it
    assert value(ss, "roommon_check_seconds_count", room="r1", check="numeric_limits") == 4
    assert value(ss, "roommon_tick_seconds_bucket", le="+Inf") == value(
        ss, "roommon_tick_seconds_count"
    )
    assert (value(ss, "roommon_tick_seconds_bucket", le="2.5") or 0) >= ticks + 30
    assert value(ss, "roommon_feed_last_sample_age_seconds", room="r1", feed="spo2") == 30.0
    assert value(ss, "roommon_outbox_depth") is not None
    status, body = await rig.healthz()
    assert (status, body["healthy"], body["problems"]) == (200, True, [])
    assert value(ss, "roommon_healthy") == 1


async def test_every_metric_is_documented(rig: Rig) -> None:
    async with rig.http.get(f"{rig.server.url}/metrics") as r:
        families = {f.name for f in text_string_to_metric_families(await r.text())}
    doc = OPERATIONS_DOC.read_text()
    documented = set(re.findall(r"^\| `(roommon_[a-z_]+)`", doc, flags=re.M))
    undocumented = {
        f for f in families if f not in documented and f"{f}_total" not in documented
    }
    assert not undocumented, undocumented
    assert {"roommon_broker_connected", "roommon_alarms_raised"} <= families


async def test_every_daemon_has_its_own_registry(rig: Rig) -> None:
    """A second daemon in the process (tests, shards) registers the same names again:
    the process-global registry would refuse them."""
    other = DaemonMetrics()
    ok = {"room": "r2", "feed": "spo2"}
    assert other.registry.get_sample_value("roommon_feed_ok", ok) is None  # not attached
    other.attach(rig.daemon)
    assert other.registry.get_sample_value("roommon_feed_ok", ok) == 0  # never seen: not ok
    assert value(await rig.scrape(), "roommon_feed_ok", **ok) == 0


async def test_healthz_is_unhealthy_while_the_broker_is_stopped(
    broker: MosquittoBroker, rig: Rig
) -> None:
    await rig.clock.advance(1.0)
    status, body = await rig.healthz()
    assert status == 200, body
    broker.stop()
    status, body = await rig.health_until(lambda s, b: s == 503)
    assert body["healthy"] is False
    assert body["broker"]["ok"] is False
    assert "not connected" in body["broker"]["detail"]
    assert body["store"]["ok"]
    assert body["rooms"]["r1"]["ok"]
    assert any(p.startswith("broker:") for p in body["problems"])
    ss = await rig.scrape()
    assert value(ss, "roommon_broker_connected") == 0
    assert value(ss, "roommon_healthy") == 0
    broker.start()
    await rig.health_until(lambda s, b: s == 200, within=20)
    ss = await rig.scrape()
    assert (value(ss, "roommon_broker_connects_total") or 0) >= 2


async def test_healthz_is_unhealthy_while_the_store_cannot_be_written(
    broker: MosquittoBroker, rig: Rig
) -> None:
    await rig.clock.advance(1.0)
    db: sqlite3.Connection = rig.daemon.store.store._db
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        await c.publish(f"{BASE}/r1/feed/spo2", reading(1, 80))  # its alarm cannot be stored
        _, body = await rig.health_until(lambda s, b: s == 503)
    assert body["store"]["ok"] is False
    assert "full" in body["store"]["detail"]
    assert body["broker"]["ok"]
    assert body["processing"]["ok"]
    ss = await rig.scrape()
    assert value(ss, "roommon_store_writable") == 0
    assert (value(ss, "roommon_store_write_failures_total") or 0) >= 1
    db.execute("PRAGMA max_page_count = 1000000")
    _, body = await rig.health_until(lambda s, b: s == 200)
    assert body["healthy"] is True


async def test_healthz_is_unhealthy_while_the_rooms_are_not_processed(rig: Rig) -> None:
    await rig.clock.advance(1.0)
    assert (await rig.healthz())[0] == 200
    ticker = next(t for t in asyncio.all_tasks() if t.get_name() == "roommon-ticker")
    ticker.cancel()  # the tick loop stops advancing (as a hung loop would)
    await rig.clock.advance(10.0)
    status, body = await rig.healthz()
    assert status == 503
    assert "no pass over the rooms" in body["processing"]["detail"]


async def test_an_address_in_use_is_one_usage_error(rig: Rig) -> None:
    taken = OpsServer(
        registry=DaemonMetrics().registry,
        health=lambda: daemon_health(rig.daemon),
        port=rig.server.port,
    )
    with pytest.raises(UsageError, match=f"metrics: cannot listen on 127.0.0.1:{rig.server.port}"):
        await taken.__aenter__()
