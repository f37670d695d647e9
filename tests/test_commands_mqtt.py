"""Operator commands through a real broker: valid ones act, invalid ones get a reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.runtime.daemon import Daemon
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.wire.registry import SCHEMA_DIR

pytestmark = pytest.mark.broker

T0 = 1_767_225_600.0
BASE = "roommon/v1/s"


@pytest.fixture
async def daemon(broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Daemon]:
    room = {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
        "checks": {
            "numeric_limits": {
                "rules": [{"kind": "spo2", "field": "spo2", "below": 90, "priority": "medium"}]
            }
        },
        "escalation": {"notify": ["nurse"], "medium": [{"after_s": 600, "to": "charge"}]},
    }
    latching = {**room, "alarms": {"limit.spo2_low": {"latching": True}}}
    cfg = parse_config(
        {
            "site": {"id": "s"},
            "broker": {"port": broker.port},
            "daemon": {"state_dir": str(tmp_path)},
            "rooms": {"r1": room, "r2": latching},
        }
    )
    async with Daemon(config=cfg, clock=RealClock()) as d:
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        yield d


def reply_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        json.loads((SCHEMA_DIR / "command_reply.schema.json").read_text())
    )


async def send(c: MqttCollector, room: str, client: str, body: Any) -> dict[str, Any]:
    """Publish a command as ``client`` and wait for its reply."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    before = len(c.on(f"{BASE}/{room}/reply/{client}"))
    await c.publish(f"{BASE}/{room}/command/{client}", payload)
    msgs = await c.wait_for(
        lambda ms: len([m for m in ms if m.topic == f"{BASE}/{room}/reply/{client}"]) > before
    )
    reply: dict[str, Any] = [m for m in msgs if m.topic == f"{BASE}/{room}/reply/{client}"][
        -1
    ].json()
    reply_validator().validate(reply)
    return reply


async def raise_desat(c: MqttCollector, room: str = "r1") -> dict[str, Any]:
    await c.publish(
        f"{BASE}/{room}/feed/spo2",
        json.dumps({"v": 1, "kind": "spo2", "seq": 1, "t": T0, "values": {"spo2": 84}}).encode(),
    )
    msgs = await c.wait_for(lambda ms: any(m.topic == f"{BASE}/{room}/alarm" for m in ms))
    event: dict[str, Any] = next(m for m in msgs if m.topic == f"{BASE}/{room}/alarm").json()
    return event


def events(ms: list[Received], room: str = "r1") -> list[dict[str, Any]]:
    return [m.json() for m in ms if m.topic == f"{BASE}/{room}/alarm"]


async def test_acknowledge_and_audio_pause_succeed_and_are_attributed(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        alarm = await raise_desat(c)
        r = await send(
            c,
            "r1",
            "nurse-station-1",
            {
                "v": 1,
                "id": "c1",
                "room": "r1",
                "action": "acknowledge",
                "alarm_id": alarm["alarm_id"],
            },
        )
        assert (r["ok"], r["reason"], r["id"], r["client"]) == (True, "ok", "c1", "nurse-station-1")
        ms = await c.wait_for(lambda ms: any(e["transition"] == "acknowledged" for e in events(ms)))
        ack = next(e for e in events(ms) if e["transition"] == "acknowledged")
        assert (ack["actor"], ack["audible"], ack["state"]) == (
            "nurse-station-1",
            False,
            "acknowledged",
        )
        r = await send(
            c, "r1", "nurse-station-1", {"v": 1, "id": "c2", "room": "r1", "action": "audio_pause"}
        )
        assert r["ok"]
        assert "audio paused until" in r["detail"]
    assert daemon.pipelines["r1"].engine.audio_paused_until is not None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"v": 1, "id": "x1", "room": "r1", "action": "acknowledge", "alarm_id": "nope"},
            "unknown_alarm",
        ),
        (
            {"v": 1, "id": "x2", "room": "r2", "action": "acknowledge", "alarm_id": "ALARM"},
            "wrong_room",
        ),
        (b"{this is not json", "malformed"),
        ({"v": 1, "id": "x3", "room": "r1", "action": "self_destruct"}, "malformed"),
        ({"v": 1, "id": "x4", "room": "r1", "action": "acknowledge"}, "malformed"),
        ({"v": 1, "id": "x5", "room": "r1", "action": "reset", "alarm_id": "ALARM"}, "not_allowed"),
        (
            {
                "v": 1,
                "id": "x6",
                "room": "r1",
                "action": "alarm_pause",
                "feed": "spo2",
                "duration_s": 3600,
            },
            "not_allowed",
        ),
        (
            {
                "v": 1,
                "id": "x7",
                "room": "r1",
                "action": "alarm_pause",
                "feed": "bogus",
                "duration_s": 60,
            },
            "unknown_feed",
        ),
        # Strictly typed: no string or boolean is read as a number (issue 11, defect 9).
        (
            {"v": 1, "id": "x8", "room": "r1", "action": "audio_pause", "duration_s": "60"},
            "malformed",
        ),
        (
            {"v": 1, "id": "x9", "room": "r1", "action": "audio_pause", "duration_s": True},
            "malformed",
        ),
        (
            {
                "v": 1,
                "id": "x10",
                "room": "r1",
                "action": "alarm_pause",
                "feed": "spo2",
                "duration_s": "60",
            },
            "malformed",
        ),
        ({"v": True, "id": "x11", "room": "r1", "action": "audio_pause"}, "malformed"),
        ({"v": 1, "id": "x12", "room": "r1", "action": "check_done", "check_no": "1"}, "bad_value"),
        ({"v": 1, "id": "x13", "room": "r1", "action": "check_done", "vitals": 1}, "bad_value"),
    ],
)
async def test_invalid_commands_get_a_reason_and_change_nothing(
    broker: MosquittoBroker, daemon: Daemon, body: Any, reason: str
) -> None:
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        alarm = await raise_desat(c)
        if isinstance(body, dict) and body.get("alarm_id") == "ALARM":
            body = {**body, "alarm_id": alarm["alarm_id"]}
        engine = daemon.pipelines["r1"].engine
        before = [(a.alarm_id, a.state, a.acknowledged) for a in engine.alarms()]
        seq_before = engine.last_seq
        r = await send(c, "r1", "tablet-7", body)
        assert (r["ok"], r["reason"]) == (False, reason)
        assert r["detail"]
        assert [(a.alarm_id, a.state, a.acknowledged) for a in engine.alarms()] == before
        assert engine.last_seq == seq_before
        assert engine.alarm_paused == {}
        assert engine.audio_paused_until is None
        if isinstance(body, dict) and isinstance(body.get("duration_s"), str | bool):
            assert r["detail"].startswith("duration_s: ")
    assert daemon.counters["commands_refused"] == 1


async def test_reset_of_a_latched_alarm_after_its_condition_ended(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        alarm = await raise_desat(c, "r2")  # r2 latches limit.spo2_low
        await c.publish(
            f"{BASE}/r2/feed/spo2",
            json.dumps(
                {"v": 1, "kind": "spo2", "seq": 2, "t": T0 + 1, "values": {"spo2": 97}}
            ).encode(),
        )
        await c.wait_for(lambda ms: any(e["transition"] == "latched" for e in events(ms, "r2")))
        r = await send(
            c,
            "r2",
            "nurse-2",
            {"v": 1, "id": "r", "room": "r2", "action": "reset", "alarm_id": alarm["alarm_id"]},
        )
        assert r["ok"], r
        ms = await c.wait_for(lambda ms: any(e["transition"] == "reset" for e in events(ms, "r2")))
        assert [e["transition"] for e in events(ms, "r2")] == ["raised", "latched", "reset"]
    assert daemon.pipelines["r2"].engine.alarms() == []


async def test_simulated_alarms_reach_the_alarm_topic_but_never_recipients(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        await c.publish(
            f"{BASE}/r1/feed/spo2",
            json.dumps(
                {
                    "v": 1,
                    "kind": "spo2",
                    "seq": 1,
                    "t": T0,
                    "values": {"spo2": 84},
                    "origin": "simulated",
                }
            ).encode(),
        )
        ms = await c.wait_for(lambda ms: any(m.topic == f"{BASE}/r1/alarm" for m in ms))
        assert events(ms)[0]["origin"] == "simulated"
        # a live alarm in the other room is routed: once its notification is here, anything
        # the simulated one had been routed would be here too (same connection, in order)
        await raise_desat(c, "r2")
        ms = await c.wait_for(lambda ms: any(m.topic == f"{BASE}/notify/nurse" for m in ms))
    notes = [m.json() for m in ms if "/notify/" in m.topic]
    assert [n["event"]["room"] for n in notes] == ["r2"]


async def test_recovery_commands_through_the_broker(
    broker: MosquittoBroker, daemon: Daemon
) -> None:
    from roommon.core.events import InjectionEnded

    pipeline = daemon.pipelines["r1"]
    now = daemon.clock.now()

    def cmd(i: int, action: str, **fields: Any) -> dict[str, Any]:
        return {"v": 1, "id": f"n{i}", "room": "r1", "action": action, **fields}

    async with MqttCollector(broker.port, [f"{BASE}/#"]) as c:
        r = await send(c, "r1", "ward-1", cmd(1, "check_done", check_no=1))
        assert (r["ok"], r["reason"]) == (False, "no_recovery")
        pipeline.event(InjectionEnded(t=now, feed="cement", injection=1, started_t=now - 60,
                                      last_injecting_t=now - 5, peak_kpa=900.0))
        ms = await c.wait_for(lambda ms: any(m.topic == f"{BASE}/r1/timer"
                                             and m.json()["state"] != "idle" for m in ms))
        timer = [m.json() for m in ms if m.topic == f"{BASE}/r1/timer"][-1]
        assert timer["state"] == "unconfirmed"
        assert timer["min_deadline"] == pytest.approx(now - 5 + 7200)
        refusals = [
            (cmd(2, "check_done", check_no=99), "unknown_check"),
            (cmd(3, "recovery_extend", seconds=-60, reason="x"), "bad_value"),
            (cmd(4, "recovery_extend", seconds=600), "bad_value"),
            (cmd(5, "recovery_end"), "bad_value"),
            (cmd(6, "recovery_confirm", room="r2"), "wrong_room"),
        ]
        state_before = pipeline.recovery.timer.to_json()
        for body, reason in refusals:
            r = await send(c, "r1", "ward-1", body)
            assert (r["ok"], r["reason"]) == (False, reason), (body, r)
        assert pipeline.recovery.timer.to_json() == state_before
        r = await send(c, "r1", "ward-1", cmd(7, "recovery_confirm"))
        assert r["ok"], r
        r = await send(c, "r1", "ward-1", cmd(8, "recovery_extend", seconds=1800,
                                                reason="pain on moving"))
        assert r["ok"], r
        ms = await c.wait_for(lambda ms: any(m.topic == f"{BASE}/r1/timer/event"
                                             and m.json()["event"] == "extended" for m in ms))
    events = [m.json() for m in ms if m.topic == f"{BASE}/r1/timer/event"]
    assert [e["event"] for e in events] == ["started", "confirmed", "extended"]
    assert events[-1]["actor"] == "ward-1"
    history = pipeline.recovery._store.history(room="r1", entry="command")
    # the recovery history records every command that reached the timer; payloads refused
    # before that (negative seconds, wrong room) are in the daemon's command log only
    assert [(h.kind, h.outcome) for h in history] == [
        ("check_done", "no_recovery"), ("check_done", "unknown_check"),
        ("recovery_extend", "bad_value"), ("recovery_end", "bad_value"),
        ("recovery_confirm", "ok"), ("recovery_extend", "ok")]
