"""The wall display in a real headless Chromium, against a real broker, a real daemon
process and simulated feeds.

One broker, one daemon, one display service and one browser for the whole module;
the tests run in file order and build on each other like a shift at the site: a
simulated desaturation, its acknowledgement by a signed-in nurse, an action
without a session, a recovery with a check, then the daemon killed and the
broker stopped. Nothing waits on the wall clock: every wait is for a condition
(Playwright's ``expect`` or the MQTT collector), the timeouts are safety nets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.testing import (
    CHROMIUM_ARGS,
    MosquittoBroker,
    MqttCollector,
    Received,
    chromium_executable,
)
from roommon.web.auth import set_account
from roommon.web.service import DisplayService

pytestmark = [pytest.mark.broker, pytest.mark.asyncio(loop_scope="module")]

SITE = "s"
BASE = f"roommon/v1/{SITE}/r1"
USER, PASSWORD = "nurse_kim", "correct horse"
DISPLAY_CLIENT = "roommon-display-s"
CONFIG = """
[site]
id = "s"
[broker]
host = "127.0.0.1"
port = {port}
reconnect_initial_s = 0.1
reconnect_max_s = 0.5
[daemon]
state_dir = "{state}"
tick_s = 0.5
heartbeat_s = 1.0
display_clients = ["roommon-display-s"]
[rooms.r1]
name = "Procedure room 1"
[rooms.r1.feeds.spo2]
kind = "spo2"
stale_s = 3600
[rooms.r1.feeds.cement]
kind = "cement_pressure"
fs = 50
required = false
stale_s = 3600
[rooms.r1.checks.spo2]
[rooms.r1.checks.cement]
end_after_s = 2.0
[rooms.r1.checks.numeric_limits]
rules = [{{ kind = "spo2", field = "pulse_rate", above = 120, priority = "low" }}]
[rooms.r1.alarms."spo2.desat"]
delay_s = 1
[rooms.r1.alarms."cement.no_mix_time"]
enabled = false
[rooms.r1.recovery.default]
min_bed_rest_s = 600
target_s = 1200
checks = [{{ every_s = 300, until_s = 1200 }}]
grace_s = 300
confirm_s = 1
[rooms.r2]
name = "Procedure room 2"
[rooms.r2.feeds.cement]
kind = "cement_pressure"
fs = 50
required = false
stale_s = 3600
[rooms.r2.checks.cement]
end_after_s = 2.0
[rooms.r2.alarms."cement.no_mix_time"]
enabled = false
[rooms.r2.recovery.default]
min_bed_rest_s = 600
target_s = 1200
checks = [{{ every_s = 1, until_s = 1200 }}]
grace_s = 1
confirm_s = 1
"""
TIMEOUT_MS = 15_000


@dataclass
class Rig:
    broker: MosquittoBroker
    daemon: subprocess.Popen[bytes]
    service: DisplayService
    collector: MqttCollector
    browser: Browser
    wall: BrowserContext  # the wall display: nobody signed in
    nurse: BrowserContext  # the nurse's screen
    overview: Page
    room: Page
    state_dir: Path
    feeder: Feeder


class Feeder:
    """A simulated oximeter: one reading every half second at the value the test sets."""

    def __init__(self, collector: MqttCollector) -> None:
        self.spo2 = 97.0
        self.pulse_rate = 72.0
        self._collector = collector
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="oximeter")

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        clock = RealClock()
        while True:
            self._seq += 1
            payload = {"v": 1, "kind": "spo2", "seq": self._seq, "t": clock.now(),
                       "values": {"spo2": self.spo2, "pulse_rate": self.pulse_rate},
                       "origin": "simulated"}
            with contextlib.suppress(aiomqtt.MqttError):  # the broker is stopped at the end
                await self._collector.publish(f"{BASE}/feed/spo2", json.dumps(payload).encode())
            await clock.sleep(0.5)  # the device's own rate, not a wait for a condition


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "roommon", "run", "--config", str(config)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@pytest.fixture(scope="module")
def broker_m() -> Iterator[MosquittoBroker]:
    b = MosquittoBroker()
    b.start()
    try:
        yield b
    finally:
        b.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(broker_m: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Rig]:
    tmp = tmp_path_factory.mktemp("display")
    text = CONFIG.format(port=broker_m.port, state=tmp / "state")
    (tmp / "site.toml").write_text(text)
    users = tmp / "users"
    set_account(users, USER, PASSWORD)
    daemon = start_daemon(tmp / "site.toml", tmp / "daemon.log")
    config = parse_config(tomllib.loads(text), source="site.toml")
    service = DisplayService(
        config=config, users=users, host="127.0.0.1", port=0, clock=RealClock(),
        client_id=DISPLAY_CLIENT,
    )
    try:
        async with (
            MqttCollector(broker_m.port, [f"{BASE}/#", f"roommon/v1/{SITE}/status/+"]) as c,
            service,
            async_playwright() as pw,
        ):
            await c.wait_for(lambda ms: any(
                "/status/" in m.topic and m.json()["status"] == "online" for m in ms), within=30)
            browser = await pw.chromium.launch(
                executable_path=chromium_executable(), args=list(CHROMIUM_ARGS)
            )
            wall = await browser.new_context(timezone_id="UTC", viewport={"width": 1280,
                                                                           "height": 800})
            nurse = await browser.new_context(timezone_id="UTC", viewport={"width": 1280,
                                                                            "height": 900})
            overview = await wall.new_page()
            room = await nurse.new_page()
            await overview.goto(f"{service.url}/")
            await room.goto(f"{service.url}/room/r1")
            feeder = Feeder(c)
            feeder.start()
            try:
                yield Rig(broker_m, daemon, service, c, browser, wall, nurse, overview, room,
                          tmp / "state", feeder)
            finally:
                await feeder.stop()
                await browser.close()
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait()


def tile(page: Page) -> Any:
    return page.locator('.tile[data-room="r1"]')


async def test_a_simulated_desaturation_shows_on_the_overview_and_room_page_in_yellow(
    rig: Rig,
) -> None:
    rig.feeder.spo2 = 87.0  # below the 90 % low limit, above the 85 % critical one
    t = tile(rig.overview)
    await expect(t).to_have_attribute("data-priority", "medium", timeout=TIMEOUT_MS)
    await expect(t.locator("[data-alarm-text]")).to_have_text("SpO2 below the low limit")
    line = t.locator(".alarmline")
    await expect(line).to_have_class(re.compile(r"prio-medium.*flash-medium"))
    style = await line.evaluate(
        "e => { const s = getComputedStyle(e); return [s.animationDuration, "
        "getComputedStyle(e.parentElement).borderTopColor]; }"
    )
    assert style == ["1.667s", "rgb(242, 197, 0)"]  # ~0.6 Hz, IEC medium yellow
    await expect(t.locator(".origin")).to_have_text("SIMULATED DATA")
    await expect(t.locator('[data-num="spo2"] .value')).to_have_text("87")
    row = rig.room.locator('#alarm-list tr[data-priority="medium"]')
    await expect(row.locator("[data-alarm-text]")).to_contain_text("SpO2 below the low limit",
                                                                    timeout=TIMEOUT_MS)
    await expect(row.locator(".pill")).to_have_css("background-color", "rgb(242, 197, 0)")


async def test_sound_says_it_is_off_until_enabled_then_plays_the_medium_pattern(
    rig: Rig,
) -> None:
    page = rig.room
    banner = page.locator('[data-banner="sound"]')
    await expect(banner).to_contain_text("Sound is OFF on this screen")
    await expect(page.locator("body")).to_have_attribute("data-playing", "medium")
    assert await page.locator("body").get_attribute("data-bursts") is None  # silent so far
    await banner.locator("button").click()  # the gesture a browser needs before sound
    await expect(page.locator("body")).to_have_attribute("data-sound", "on", timeout=TIMEOUT_MS)
    await expect(banner).to_have_count(0)
    await expect(page.locator("body")).to_have_attribute("data-bursts", "1", timeout=TIMEOUT_MS)
    await expect(page.locator("body")).to_have_attribute("data-pattern", "medium:3")


async def test_the_highest_audible_priority_sounds_its_own_pattern(rig: Rig) -> None:
    """IEC 60601-1-8 bursts: high 10 pulses, medium 3, low 2; a higher priority at once."""
    body = rig.room.locator("body")
    await expect(body).to_have_attribute("data-sound", "on")  # enabled by the test above
    rig.feeder.pulse_rate = 130.0  # a low-priority limit: medium still the highest audible
    row = rig.room.locator('#alarm-list tr[data-priority="low"]')
    await expect(row).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(body).to_have_attribute("data-playing", "medium")
    rig.feeder.spo2 = 80.0  # below the critical limit: a high-priority alarm
    await expect(body).to_have_attribute("data-playing", "high", timeout=TIMEOUT_MS)
    await expect(body).to_have_attribute("data-pattern", "high:10")
    rig.feeder.spo2 = 97.0  # both desaturation alarms end: only the low one is left
    await expect(body).to_have_attribute("data-playing", "low", timeout=TIMEOUT_MS)
    await expect(body).to_have_attribute("data-pattern", "low:2")
    rig.feeder.pulse_rate, rig.feeder.spo2 = 72.0, 87.0  # back to the shift's desaturation
    await expect(row).to_have_count(0, timeout=TIMEOUT_MS)
    await expect(body).to_have_attribute("data-playing", "medium", timeout=TIMEOUT_MS)
    await expect(rig.room.locator("button[data-ack]")).to_have_count(1)


async def test_an_action_without_a_session_is_refused(rig: Rig) -> None:
    await expect(rig.room.locator("button[data-ack]")).to_be_disabled()
    alarm_id = await rig.room.locator("button[data-ack]").get_attribute("data-ack")
    url = f"{rig.service.url}/api/command"
    body = {"room": "r1", "action": "acknowledge", "alarm_id": alarm_id}
    refused = await rig.wall.request.post(url, data=body)
    assert refused.status == 401
    assert "sign in" in (await refused.json())["error"]
    # the daemon, too, takes an actor only from the display's client id
    await rig.collector.publish(
        f"{BASE}/command/intruder",
        json.dumps({"v": 1, "id": "x1", "room": "r1", "action": "acknowledge",
                    "alarm_id": alarm_id, "actor": USER}).encode(),
    )
    ms = await rig.collector.wait_for(lambda ms: bool(ms_on(ms, f"{BASE}/reply/intruder")))
    reply = ms_on(ms, f"{BASE}/reply/intruder")[0].json()
    assert (reply["ok"], reply["reason"]) == (False, "not_allowed")
    assert rig.service.app.commands_sent == 0
    await expect(tile(rig.overview).locator(".alarmline")).to_have_attribute(
        "data-alarm-state", "active")


def ms_on(ms: list[Received], topic: str) -> list[Received]:
    return [m for m in ms if m.topic == topic]


async def sign_in(page: Page) -> None:
    form = page.locator("form[data-signin]")
    await form.locator('input[name="user"]').fill(USER)
    await form.locator('input[name="password"]').fill(PASSWORD)
    await form.locator("button").click()
    await expect(page.locator("[data-user]")).to_have_text(USER, timeout=TIMEOUT_MS)


async def test_acknowledging_from_the_page_shows_everywhere_and_logs_the_nurse(
    rig: Rig,
) -> None:
    page = rig.room
    await sign_in(page)
    # with a session but without the page's CSRF token, the same request is refused
    stale = await rig.nurse.request.post(
        f"{rig.service.url}/api/command", data={"room": "r1", "action": "audio_pause"}
    )
    assert stale.status == 403
    ack = page.locator("button[data-ack]")
    alarm_id = await ack.get_attribute("data-ack")
    await ack.click()
    await expect(page.locator("#notice")).to_have_attribute("data-ok", "true",
                                                            timeout=TIMEOUT_MS)
    await expect(page.locator(f'#alarm-list tr[data-alarm-id="{alarm_id}"]')).to_have_attribute(
        "data-alarm-state", "acknowledged", timeout=TIMEOUT_MS)
    line = tile(rig.overview).locator(".alarmline")
    await expect(line).to_have_attribute("data-alarm-state", "acknowledged", timeout=TIMEOUT_MS)
    await expect(line.locator("[data-astate]")).to_contain_text("acknowledged")
    await expect(page.locator("body")).to_have_attribute("data-playing", "none")  # sound stops
    with sqlite3.connect(f"file:{rig.state_dir / 'roommon.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT actor FROM alarm_log WHERE alarm_id = ? AND transition = 'acknowledged'",
            (alarm_id,),
        ).fetchall()
    assert rows == [(USER,)]
    # audio pause from the page: every tile says so, with the time left
    await page.locator("button[data-audio-pause]").click()
    await expect(line.locator("[data-astate]")).to_contain_text(
        re.compile(r"audio paused, \d+:\d\d left"), timeout=TIMEOUT_MS)


ORANGE_DRAWN = """() => { const c = document.getElementById('cement-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] > 120 && d[i+2] < 110) n++;
  return n > 200; }"""


def timer_of(ms: list[Received]) -> dict[str, Any] | None:
    timers = ms_on(ms, f"{BASE}/timer")
    return timers[-1].json() if timers else None


async def inject(rig: Rig, room: str) -> None:
    """One injection that ended just now, as the cement pump's feed reports it."""
    now = RealClock().now()
    levels = [0.0] * 2 + [1500.0] * 4 + [0.0] * 6
    for i, level in enumerate(levels):
        chunk = {"v": 1, "kind": "cement_pressure", "seq": i + 1, "t0": now - 12 + i, "fs": 50,
                 "unit": "kPa", "n": 50, "samples": [level] * 50, "origin": "simulated"}
        await rig.collector.publish(f"roommon/v1/{SITE}/{room}/feed/cement",
                                    json.dumps(chunk).encode())


async def test_a_nurse_records_a_check_and_the_timer_advances_and_countdowns_match(
    rig: Rig,
) -> None:
    await inject(rig, "r1")

    def running(ms: list[Received]) -> bool:
        t = timer_of(ms)
        return t is not None and t["state"] in ("unconfirmed", "confirmed")

    ms = await rig.collector.wait_for(running, within=30)
    timer = timer_of(ms)
    assert timer is not None
    # the room page shows r1, so the display follows its waveform feeds: the injection's curve
    await rig.room.wait_for_function(ORANGE_DRAWN, timeout=TIMEOUT_MS)
    station = await rig.nurse.new_page()
    await station.goto(f"{rig.service.url}/recovery")
    card = station.locator('.rcard[data-room="r1"]')
    minimum = card.locator('[data-countdown="minimum"]')
    await expect(minimum).to_have_attribute("data-epoch", str(timer["min_deadline"]),
                                            timeout=TIMEOUT_MS)
    for name, key in (("minimum", "min_deadline"), ("target", "target_deadline")):
        shown = card.locator(f'[data-countdown="{name}"]')
        at = datetime.fromtimestamp(timer[key], tz=UTC).strftime("%H:%M")
        await expect(shown.locator("[data-at]")).to_have_text(at)
        left = await shown.locator("[data-left]").inner_text()
        minutes, seconds = (int(x) for x in left.split(":"))
        # shown each second from the deadline and the service's clock (a loaded machine
        # may delay the page's redraw by a second or two)
        assert abs(minutes * 60 + seconds - (timer[key] - RealClock().now())) <= 5
    await card.locator('select[data-field="check_no"]').select_option("1")
    await card.locator('input[data-field="note"]').fill("legs warm, no pain")
    await card.locator('button[data-act="check_done"]').click()
    await expect(station.locator("#notice")).to_have_attribute("data-ok", "true",
                                                               timeout=TIMEOUT_MS)
    await expect(card.locator('tr[data-check="1"]')).to_have_attribute("data-status", "done",
                                                                        timeout=TIMEOUT_MS)
    await expect(card.locator('tr[data-check="1"] [data-done-by]')).to_have_text(USER)
    await expect(card.locator("[data-next-check]")).to_have_attribute("data-next-check", "2")

    def advanced(ms: list[Received]) -> bool:
        t = timer_of(ms)
        return t is not None and t["next_check"] is not None and t["next_check"]["no"] == 2

    ms = await rig.collector.wait_for(advanced, within=20)
    done = timer_of(ms)
    assert done is not None
    check = done["checks"][0]
    assert (check["status"], check["done_by"], check["note"]) == (
        "done", USER, "legs warm, no pain")
    # the room's measurements at that moment were recorded (SpO2 87 %, or unknown if the
    # oximeter's readings were late on a loaded machine)
    assert check["vitals"] is not None
    assert check["vitals"]["spo2"] in (87.0, None)
    with sqlite3.connect(f"file:{rig.state_dir / 'recovery.sqlite3'}?mode=ro", uri=True) as db:
        actors = db.execute(
            "SELECT actor FROM history WHERE kind = 'check_done' AND entry = 'event'"
        ).fetchall()
    assert actors == [(USER,)]

    # a second room whose first check goes overdue: it moves to the top, in red
    await inject(rig, "r2")
    r2 = station.locator('.rcard[data-room="r2"]')
    await expect(r2).to_have_class(re.compile("is-overdue"), timeout=TIMEOUT_MS)
    await expect(r2.locator("[data-overdue]").first).to_contain_text("OVERDUE")
    await expect(station.locator(".rcard").first).to_have_attribute("data-room", "r2")
    await expect(station.locator(".rcard").nth(1)).to_have_attribute("data-room", "r1")
    overdue = rig.overview.locator('.tile[data-room="r2"] .recovery .overdue').first
    await expect(overdue).to_have_css("background-color", "rgb(224, 32, 27)")
    await station.close()


async def test_killing_the_daemon_shows_the_offline_banner(rig: Rig) -> None:
    banner = rig.overview.locator('[data-banner="offline"]')
    await expect(banner).to_have_count(0)
    rig.daemon.send_signal(signal.SIGKILL)
    rig.daemon.wait()
    await expect(banner).to_have_text(
        "roommon offline: these rooms are not monitored: Procedure room 1, Procedure room 2",
        timeout=TIMEOUT_MS,
    )
    await expect(rig.room.locator('[data-banner="offline"]')).to_be_visible()
    await expect(tile(rig.overview).locator('[data-num="spo2"]')).to_have_class(
        re.compile("stale"))


async def test_stopping_the_broker_shows_the_connection_banner(rig: Rig) -> None:
    banner = rig.overview.locator('[data-banner="broker"]')
    await expect(banner).to_have_count(0)
    rig.broker.stop()
    await expect(banner).to_contain_text("No connection to the broker", timeout=TIMEOUT_MS)
    await expect(banner).to_contain_text("last update")
    await expect(rig.room.locator('[data-banner="broker"]')).to_be_visible()
