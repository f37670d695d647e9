"""The display service without a browser: accounts, sessions and CSRF over real HTTP,
the daemon's trust in a display's actor, the view's recall strips and health."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from roommon.config import Config, parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.errors import ConfigError
from roommon.runtime.daemon import Daemon
from roommon.testing import CaptureOutput, MosquittoBroker, MqttCollector
from roommon.web.app import DisplayApp, DisplayServer
from roommon.web.auth import MAX_FAILURES, Sessions, read_accounts, set_account, verify_password
from roommon.web.local import DaemonCommands, DisplayOutput
from roommon.web.mqtt_source import decode_wave
from roommon.web.service import DisplayService
from roommon.web.site import SiteView

CONFIG = """
[site]
id = "s"
[daemon]
state_dir = "{state}"
display_clients = ["disp"]
[rooms.r1.feeds.ekg]
kind = "ecg"
fs = 250
[rooms.r1.checks.ecg]
"""


def config(tmp: Path) -> Config:
    return parse_config(tomllib.loads(CONFIG.format(state=tmp / "state")), source="t.toml")


# ---------------------------------------------------------------- accounts and sessions


def test_accounts_file_stores_scrypt_hashes_and_names_a_bad_line(tmp_path: Path) -> None:
    users = tmp_path / "users"
    set_account(users, "kim", "long enough")
    set_account(users, "kim", "changed pass")  # replaces, never duplicates
    accounts = read_accounts(users)
    assert list(accounts) == ["kim"]
    assert accounts["kim"].startswith("scrypt$16384$8$1$")
    assert "changed pass" not in users.read_text()
    assert verify_password("changed pass", accounts["kim"])
    assert not verify_password("long enough", accounts["kim"])
    assert users.stat().st_mode & 0o077 == 0
    users.write_text(users.read_text() + "bob plaintext\n")
    with pytest.raises(ConfigError, match="line 3: expected 'NAME scrypt"):
        read_accounts(users)
    with pytest.raises(ConfigError, match="at least 8"):
        set_account(tmp_path / "u2", "kim", "short")


async def test_sessions_expire_when_idle_and_lock_after_repeated_failures(tmp_path: Path) -> None:
    users = tmp_path / "users"
    set_account(users, "kim", "long enough")
    clock = VirtualClock()
    sessions = Sessions(accounts=users, clock=clock, idle_s=60, max_s=600)
    s = sessions.sign_in("kim", "long enough")
    assert s is not None
    assert sessions.get(s.token) is s
    assert Sessions.csrf_ok(s, s.csrf)
    assert not Sessions.csrf_ok(s, "x")
    assert not (
        Sessions.csrf_ok(s, None))
    for _ in range(10):  # used every 59 s: alive until the 600 s maximum (590 s here)
        await clock.advance(59)
        assert sessions.get(s.token) is s
    await clock.advance(59)
    assert sessions.get(s.token) is None  # past max_s
    s2 = sessions.sign_in("kim", "long enough")
    assert s2 is not None
    await clock.advance(61)
    assert sessions.get(s2.token) is None  # idle
    for _ in range(MAX_FAILURES):
        assert sessions.sign_in("kim", "wrong") is None
    assert sessions.sign_in("kim", "long enough") is None  # locked
    await clock.advance(61)
    assert sessions.sign_in("kim", "long enough") is not None
    assert sessions.sign_in("nobody", "long enough") is None


# ---------------------------------------------------------------- HTTP with an in-process daemon


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, CaptureOutput, VirtualClock]]:
    cfg = config(tmp_path)
    clock = VirtualClock()
    capture = CaptureOutput()
    view = SiteView(site="s", clock=clock, config=cfg)
    users = tmp_path / "users"
    set_account(users, "kim", "long enough")
    async with Daemon(config=cfg, clock=clock, use_broker=False,
                      extra_outputs=[capture, DisplayOutput(view)]) as daemon:
        app = DisplayApp(view=view, commands=DaemonCommands(daemon, client_id="disp"),
                         sessions=Sessions(accounts=users, clock=clock, idle_s=60), wall=clock)
        async with DisplayServer(app=app, host="127.0.0.1", port=0) as server:
            yield server.url, capture, clock


async def test_an_action_needs_a_session_its_csrf_token_and_the_same_origin(
    served: tuple[str, CaptureOutput, VirtualClock],
) -> None:
    url, _capture, clock = served
    mixed = {"room": "r1", "action": "acknowledge", "alarm_id": "nope"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{url}/api/command", json=mixed) as r:
            assert r.status == 401
        async with http.post(f"{url}/api/login", json={"user": "kim", "password": "bad"}) as r:
            assert r.status == 401
        async with http.post(f"{url}/api/login", data="user=kim&password=long+enough") as r:
            assert r.status == 415  # a cross-site form cannot sign anybody in
        async with http.post(f"{url}/api/login",
                             json={"user": "kim", "password": "long enough"}) as r:
            assert r.status == 200
            csrf = (await r.json())["csrf"]
            assert "HttpOnly" in r.headers["Set-Cookie"]
            assert "SameSite=Strict" in r.headers["Set-Cookie"]
        async with http.post(f"{url}/api/command", json=mixed) as r:
            assert r.status == 403
        async with http.post(f"{url}/api/command", json=mixed,
                             headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}) as r:
            assert r.status == 403
        async with http.post(f"{url}/api/command", json=mixed,
                             headers={"X-CSRF-Token": csrf}) as r:
            body = await r.json()
        # the daemon answered: refused, in words
        assert (body["ok"], body["reason"]) == (False, "unknown_alarm")
        assert body["text"].startswith("that alarm is no longer active")
        async with http.post(f"{url}/api/command",
                             json={"room": "r1", "action": "phase_set", "phase": "idle"},
                             headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 400  # not a page action
        await clock.advance(61)
        async with http.post(f"{url}/api/command", json=mixed,
                             headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 401  # the session expired


async def test_the_daemon_takes_an_actor_only_from_a_display_client(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    capture = CaptureOutput()
    async with Daemon(config=cfg, clock=VirtualClock(), use_broker=False,
                      extra_outputs=[capture]) as daemon:
        pipeline = daemon.pipelines["r1"]

        def send(client: str, **extra: Any) -> Any:
            payload = {"v": 1, "id": "c1", "room": "r1", "action": "cement_mixed", **extra}
            return daemon.handle_command(pipeline, client, json.dumps(payload).encode())

        assert send("disp", actor="kim").ok
        assert capture.room_events[-1].data == {"by": "kim"}
        other = send("someone", actor="kim")
        assert (other.ok, other.reason) == (False, "not_allowed")
        assert "display_clients" in other.detail
        anonymous = send("disp")
        assert (anonymous.ok, anonymous.reason) == (False, "not_allowed")
        bad = send("disp", actor="kim/../x")
        assert (bad.ok, bad.reason) == (False, "malformed")
        assert send("someone").ok
        assert capture.room_events[-1].data == {"by": "someone"}


# ---------------------------------------------------------------- the view


def test_an_alarm_keeps_the_strip_from_10_s_before_to_5_s_after_its_onset() -> None:
    clock = VirtualClock()
    view = SiteView(site="s", clock=clock)
    pushed: list[dict[str, Any]] = []
    view.listeners.append(pushed.append)
    t0 = clock.now()
    ramp = np.arange(250 * 40, dtype=np.float64) / 250.0  # the value is its own time offset
    onset = t0 + 20.0
    for second in range(40):
        if second == 21:
            view.on_alarm({"room": "r1", "alarm_id": "a1", "code": "ecg.tachy", "priority":
                           "medium", "transition": "raised", "since": onset, "state": "active",
                           "origin": "live"})
        view.on_wave(room="r1", feed="ekg", kind="ecg", fs=250.0, t0=t0 + second,
                     samples=ramp[second * 250:(second + 1) * 250], origin="live")
        if second == 23:
            assert "a1" not in view.recalls  # 5 s after the onset are not in yet
    strip = view.recalls["a1"]
    assert strip["text"] == "Heart rate above the tachycardia limit"
    ekg = strip["feeds"]["ekg"]
    assert ekg["t0"] == pytest.approx(onset - 10.0)
    assert len(ekg["samples"]) == 15 * 250
    assert ekg["samples"][0] == pytest.approx(10.0, abs=1e-3)
    assert ekg["samples"][-1] == pytest.approx(25.0 - 1 / 250, abs=1e-3)
    assert {"type": "recall", "room": "r1", "alarm_id": "a1"} in pushed


async def test_health_names_the_rooms_of_a_dead_or_silent_daemon() -> None:
    clock = VirtualClock()
    view = SiteView(site="s", clock=clock)
    view.on_state({"room": "r1", "name": "Room 1", "alarms": []})
    status = {"instance": "main", "status": "online", "t": clock.now(), "heartbeat_s": 5.0,
              "rooms": ["r1"]}
    view.on_status(status)
    assert view.health()["unmonitored"] == []
    await clock.advance(16)
    assert view.health()["unmonitored"] == ["r1"]  # older than three heartbeats
    view.on_status({**status, "t": clock.now()})
    assert view.health()["unmonitored"] == []
    view.on_status({**status, "status": "offline", "t": clock.now()})
    assert view.health()["unmonitored"] == ["r1"]


def test_waveform_payloads_decode_in_every_documented_encoding() -> None:
    raw = np.array([-2, 0, 3], dtype="<i2").tobytes()
    kind, fs, t0, x = decode_wave({"kind": "ecg", "fs": 250, "t0": 1e9, "encoding": "i16le-b64",
                                   "data": base64.b64encode(raw).decode(), "gain": 0.5,
                                   "offset": 1.0})
    assert (kind, fs, t0, x.tolist()) == ("ecg", 250.0, 1e9, [0.0, 1.0, 2.5])
    assert decode_wave({"kind": "pleth", "fs": 75, "t0": 1e9, "samples": [1, 2]})[3].tolist() == [
        1.0, 2.0]
    with pytest.raises(ValueError, match="base64"):
        decode_wave({"kind": "ecg", "fs": 250, "t0": 1e9, "encoding": "f32le-b64", "data": "!"})


def test_display_commands_refuse_a_bad_accounts_file_and_a_short_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from roommon.cli import main

    bad = tmp_path / "users"
    bad.write_text("kim plaintext\n")
    site = Path(__file__).resolve().parents[1] / "config" / "example-room.toml"
    assert main(["display", "--config", str(site), "--users", str(bad)]) == 2
    assert "line 1: expected 'NAME scrypt" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["display-user", "--users", str(tmp_path / "u2"), "kim"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough\n"))
    assert main(["display-user", "--users", str(tmp_path / "u2"), "kim"]) == 0
    assert verify_password("long enough", read_accounts(tmp_path / "u2")["kim"])


@pytest.mark.broker
async def test_by_default_recall_covers_a_room_no_page_shows(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A central station recalls the strip of any bed's alarm, watched or not: the service
    follows every room's waveforms by default (bench/display.py measures the cost)."""
    text = CONFIG.format(state=tmp_path / "state") + f"[broker]\nport = {broker.port}\n"
    cfg = parse_config(tomllib.loads(text), source="t.toml")
    set_account(tmp_path / "users", "kim", "correct horse")
    clock = RealClock()
    service = DisplayService(config=cfg, users=tmp_path / "users", host="127.0.0.1", port=0,
                             clock=clock)
    base = "roommon/v1/s/r1"
    pushed = asyncio.Event()  # the view tells its pages (and this test) what changed
    service.view.listeners.append(lambda _message: pushed.set())

    async def until(done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):  # a safety net: the wait is for the view's push
            while not done():
                pushed.clear()
                await pushed.wait()

    async with service, MqttCollector(broker.port, []) as c:
        await until(lambda: service.view.link_connected)
        onset = clock.now()
        await c.publish(f"{base}/alarm", json.dumps(
            {"room": "r1", "alarm_id": "a1", "code": "ecg.tachy", "priority": "medium",
             "transition": "raised", "since": onset, "state": "active",
             "origin": "live"}).encode())
        for second in range(-12, 7):  # nobody watches r1: no page is open at all
            chunk = {"v": 1, "kind": "ecg", "seq": second + 13, "t0": onset + second,
                     "fs": 250, "unit": "mV", "n": 250, "samples": [0.1] * 250}
            await c.publish(f"{base}/feed/ekg", json.dumps(chunk).encode())
        await until(lambda: "a1" in service.view.recalls)
    assert len(service.view.recalls["a1"]["feeds"]["ekg"]["samples"]) == 15 * 250
