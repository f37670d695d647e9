"""The display's three targets (issue 13), in a real broker, display service and headless Chromium.

1. latency: an alarm event published as the daemon publishes it (the moment it
   leaves for the broker) until the tile's colour has changed and been painted
   in the browser (MutationObserver on the tile, then the next animation frame;
   both stamps on the same machine's wall clock). Target p99 <= 250 ms.
2. frames: an overview of 30 rooms (room states every second, as busy rooms
   publish) with one room's page open drawing its EKG, pleth and cement curve
   from live waveforms. Reported: the animation-frame interval (60 fps is
   16.7 ms), each frame's main-thread time (animation callbacks, style, layout,
   paint) and the page's own drawing per frame. Target: median frame time <= 16 ms.
3. cpu: ``roommon display`` as its own process following 100 rooms, each with
   EKG 250 Hz, pleth 75 Hz and cement 50 Hz in 0.25 s chunks, SpO2 1 Hz and a
   room state every second, with one WebSocket client (an overview) connected.
   CPU time of the display process from /proc over 30 s. Target < 20 % of a core.

Run: ``.venv/bin/python bench/display.py [latency|frames|cpu ...]``. Loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import numpy as np
from playwright.async_api import Page, async_playwright

from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.testing import CHROMIUM_ARGS, MosquittoBroker, chromium_executable, free_port
from roommon.web.auth import set_account
from roommon.web.service import DisplayService

SITE = "bench"
BASE = f"roommon/v1/{SITE}"


def site_config(port: int, rooms: int, waves: bool) -> str:
    lines = [f'[site]\nid = "{SITE}"\n[broker]\nhost = "127.0.0.1"\nport = {port}\n']
    for i in range(rooms):
        r = f"room{i:03d}"
        lines.append(f'[rooms.{r}]\nname = "Room {i + 1}"\n[rooms.{r}.feeds.spo2]\nkind = "spo2"\n')
        if waves:
            lines.append(
                f'[rooms.{r}.feeds.ekg]\nkind = "ecg"\nfs = 250\n'
                f'[rooms.{r}.feeds.pleth]\nkind = "pleth"\nfs = 75\n'
                f'[rooms.{r}.feeds.cement]\nkind = "cement_pressure"\nfs = 50\n'
            )
        lines.append(f"[rooms.{r}.checks.spo2]\n")
    return "".join(lines)


def state(room: str, t: float, priority: str = "none", alarms: list[Any] | None = None,
          spo2: float = 97.0) -> bytes:
    return json.dumps({
        "v": 1, "site": SITE, "room": room, "name": room, "t": t, "time": "", "seq": 0,
        "phase": "procedure", "phase_since": t - 600, "audio_paused_until": None,
        "alarm_paused": {}, "highest_priority": priority, "alarms": alarms or [],
        "feeds": {"spo2": {"status": "ok", "last_seen": t, "received": 1, "rejected": {},
                           "bad_samples": 0}},
        "measurements": {
            "spo2": {"value": spo2, "unit": "%", "t": t, "feed": "spo2"},
            "heart_rate": {"value": 72.0, "unit": "bpm", "t": t, "feed": "ekg"},
            "pulse_rate": {"value": 72.0, "unit": "bpm", "t": t, "feed": "spo2"},
            "nibp_systolic": {"value": 121.0, "unit": "mmHg", "t": t - 60, "feed": "nibp"},
            "nibp_diastolic": {"value": 74.0, "unit": "mmHg", "t": t - 60, "feed": "nibp"},
            "nibp_mean": {"value": 90.0, "unit": "mmHg", "t": t - 60, "feed": "nibp"},
        },
    }).encode()


def status(t: float, rooms: list[str]) -> bytes:
    return json.dumps({"v": 1, "site": SITE, "instance": "main", "status": "online",
                       "version": "bench", "t": t, "time": "", "started": t, "heartbeat_s": 5.0,
                       "rooms": rooms}).encode()


def alarm(room: str, n: int, transition: str, t: float) -> bytes:
    return json.dumps({
        "v": 1, "event_id": f"e{n}-{transition}", "seq": n, "site": SITE, "room": room,
        "alarm_id": f"a{n}", "condition": f"{room}/spo2/spo2.desat_critical",
        "code": "spo2.desat_critical", "check": "spo2", "feed": "spo2",
        "kind": "physiological", "priority": "high", "transition": transition,
        "state": "active" if transition == "raised" else "cleared",
        "audible": transition == "raised", "escalation_level": 0, "value": 80.0,
        "limit": 85.0, "message": "", "origin": "live", "t": t, "time": "", "since": t,
        "actor": None,
    }).encode()


class WaveTemplates:
    """Feed payloads of one room, formatted per chunk (the publisher must stay cheap)."""

    def __init__(self, seconds: float = 0.25) -> None:
        self.seconds = seconds
        rng = np.random.default_rng(1)
        self.templates = {}
        for feed, kind, fs, unit in (("ekg", "ecg", 250, "mV"), ("pleth", "pleth", 75, "au"),
                                     ("cement", "cement_pressure", 50, "kPa")):
            n = round(fs * seconds)
            t = np.arange(n) / fs
            if kind == "ecg":
                x = np.exp(-(((t % 0.8) - 0.1) ** 2) / 0.0002) + 0.05 * rng.standard_normal(n)
            elif kind == "pleth":
                x = 0.5 + 0.5 * np.sin(2 * np.pi * 1.2 * t)
            else:
                x = 1500 + 50 * rng.standard_normal(n)
            samples = ",".join(f"{v:.4f}" for v in x)
            head = f'{{"v":1,"kind":"{kind}","seq":%d,"t0":%.4f,"fs":{fs},"unit":"{unit}",'
            self.templates[feed] = head + f'"n":{n},"origin":"simulated","samples":[{samples}]}}'


    def payloads(self, seq: int, t0: float) -> list[tuple[str, bytes]]:
        return [(f, (tpl % (seq, t0)).encode()) for f, tpl in self.templates.items()]


SENT = [0]  # messages published by feed_rooms


async def feed_rooms(port: int, rooms: list[str], *, waves: list[str], seconds: float,
                     ready: asyncio.Event | None = None) -> None:
    """Publish as a daemon and devices would: states each second, waveforms in 0.25 s chunks."""
    clock = RealClock()
    tpl = WaveTemplates()
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-feed-{os.getpid()}") as c:
        start = clock.monotonic()
        step = 0
        while clock.monotonic() - start < seconds:
            now = clock.now()
            if step % 4 == 0:
                await c.publish(f"{BASE}/status/main", status(now, rooms), qos=1, retain=True)
                for r in rooms:
                    await c.publish(f"{BASE}/{r}/state", state(r, now), qos=0, retain=True)
                    reading = {"v": 1, "kind": "spo2", "seq": step + 1, "t": now,
                               "values": {"spo2": 97.0}, "origin": "simulated"}
                    await c.publish(f"{BASE}/{r}/feed/spo2", json.dumps(reading), qos=0)
                    SENT[0] += 2
            for r in waves:
                for feed, payload in tpl.payloads(step, now - tpl.seconds):
                    await c.publish(f"{BASE}/{r}/feed/{feed}", payload, qos=0)
                    SENT[0] += 1
            if ready is not None:
                ready.set()
            step += 1
            await clock.sleep_until(start + step * tpl.seconds)


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


# ---------------------------------------------------------------- 1. latency

OBSERVE = """
() => {
  window.__changes = [];
  const tile = document.querySelector('.tile[data-room="room000"]');
  let last = tile.dataset.priority;
  new MutationObserver(() => {
    const p = tile.dataset.priority;
    if (p === last) return;  // re-set to the same value: not a colour change
    last = p;
    requestAnimationFrame(
      () => window.__changes.push([p, performance.timeOrigin + performance.now()]));
  }).observe(tile, { attributes: true, attributeFilter: ["data-priority"] });
}
"""


async def bench_latency(rounds: int = 150) -> None:
    broker = MosquittoBroker()
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="roommon-bench-"))
    try:
        text = site_config(broker.port, 30, waves=False)
        users = tmp / "users"
        set_account(users, "bench", "bench-password")
        cfg = parse_config(tomllib.loads(text), source="bench")
        rooms = sorted(cfg.rooms)
        async with (
            DisplayService(config=cfg, users=users, host="127.0.0.1", port=0,
                           clock=RealClock()) as service,
            async_playwright() as pw,
            aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-daemon") as daemon,
        ):
            now = time.time()
            await daemon.publish(f"{BASE}/status/main", status(now, rooms), qos=1, retain=True)
            for r in rooms:
                await daemon.publish(f"{BASE}/{r}/state", state(r, now), qos=1, retain=True)
            browser = await pw.chromium.launch(executable_path=chromium_executable(),
                                               args=list(CHROMIUM_ARGS))
            page = await browser.new_page(viewport={"width": 1600, "height": 1000}, bypass_csp=True)
            await page.goto(f"{service.url}/")
            await page.wait_for_selector('.tile[data-room="room029"]')
            await page.evaluate(OBSERVE)
            sent: list[tuple[str, float]] = []
            for n in range(1, rounds + 1):
                for transition, want in (("raised", "high"), ("cleared", "none")):
                    t = time.time()
                    await daemon.publish(f"{BASE}/room000/alarm", alarm("room000", n, transition,
                                                                        t), qos=1)
                    sent.append((want, t))
                    await page.wait_for_function(f"window.__changes.length >= {len(sent)}")
                    await asyncio.sleep(0.05)
            changes = await page.evaluate("window.__changes")
            await browser.close()
        lat = [(c[1] / 1000.0 - s[1]) * 1000.0 for s, c in zip(sent, changes, strict=True)
               if s[0] == c[0]]
        assert len(lat) == len(sent), "a tile change was missed or out of order"
        print(f"latency alarm event -> tile colour painted: n={len(lat)} "
              f"median {statistics.median(lat):.1f} ms, p95 {percentile(lat, 95):.1f} ms, "
              f"p99 {percentile(lat, 99):.1f} ms, max {max(lat):.1f} ms (target p99 <= 250 ms)")
    finally:
        broker.close()


# ---------------------------------------------------------------- 2. frames

FRAMES = """
async (ms) => {
  // interval between frames, and each frame's main-thread time: from the start of its
  // animation callbacks (the page's own drawing runs there) to the first task after its
  // style, layout and paint (a message posted from the callback runs after the frame)
  const dt = [], busy = [];
  let last = null;
  const ch = new MessageChannel();
  let started = null;
  ch.port1.onmessage = () => { if (started !== null) busy.push(performance.now() - started); };
  await new Promise((done) => {
    const t0 = performance.now();
    function f(t) {
      if (last !== null) dt.push(t - last);
      last = t; started = performance.now(); ch.port2.postMessage(0);
      if (t - t0 < ms) requestAnimationFrame(f); else done();
    }
    requestAnimationFrame(f);
  });
  return [dt, busy];
}
"""
WORK = """
() => {
  window.__work = [];
  const orig = Sweep.prototype.draw;
  Sweep.prototype.draw = function (now) { const t = performance.now(); orig.call(this, now);
    window.__work.push(performance.now() - t); };
}
"""

async def frame_stats(page: Page, seconds: float) -> tuple[list[float], list[float]]:
    dt, busy = await page.evaluate(FRAMES, seconds * 1000)
    return [float(x) for x in dt], [float(x) for x in busy]


async def bench_frames(seconds: float = 10.0) -> None:
    broker = MosquittoBroker()
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="roommon-bench-"))
    try:
        text = site_config(broker.port, 30, waves=True)
        users = tmp / "users"
        set_account(users, "bench", "bench-password")
        cfg = parse_config(tomllib.loads(text), source="bench")
        rooms = sorted(cfg.rooms)
        async with (
            DisplayService(config=cfg, users=users, host="127.0.0.1", port=0,
                           clock=RealClock()) as service,
            async_playwright() as pw,
            asyncio.TaskGroup() as tg,
        ):
            ready = asyncio.Event()
            feeder = tg.create_task(feed_rooms(broker.port, rooms, waves=["room000"],
                                               seconds=seconds * 3 + 20, ready=ready))
            await ready.wait()
            browser = await pw.chromium.launch(executable_path=chromium_executable(),
                                               args=list(CHROMIUM_ARGS))
            overview = await (await browser.new_context(
                viewport={"width": 1920, "height": 1080}, bypass_csp=True)).new_page()
            room = await (await browser.new_context(
                viewport={"width": 1920, "height": 1080}, bypass_csp=True)).new_page()
            await overview.goto(f"{service.url}/")
            await room.goto(f"{service.url}/room/room000")
            await overview.wait_for_selector('.tile[data-room="room029"]')
            await room.wait_for_function("sweeps.ecg && sweeps.ecg.chunks.length > 4")
            await room.evaluate(WORK)
            (room_dt, room_busy), (overview_dt, overview_busy) = await asyncio.gather(
                frame_stats(room, seconds), frame_stats(overview, seconds)
            )
            work = [float(x) for x in await room.evaluate("window.__work")]
            render = [float(x) for x in await overview.evaluate(
                "(() => { const t = []; for (let i = 0; i < 50; i++) {"
                " const s = performance.now(); renderOverview(); t.push(performance.now() - s); }"
                " return t; })()")]
            tiles = await overview.locator(".tile").count()
            await browser.close()
            feeder.cancel()
        print(f"frames, room page with EKG/pleth/cement (overview of {tiles} rooms open "
              f"beside it), {seconds:g} s: frame interval median "
              f"{statistics.median(room_dt):.1f} ms, p95 {percentile(room_dt, 95):.1f} ms "
              f"({len(room_dt) / seconds:.0f} fps); frame time (main thread, callbacks to "
              f"after paint) median {statistics.median(room_busy):.1f} ms, p99 "
              f"{percentile(room_busy, 99):.1f} ms; sweep drawing per frame median "
              f"{statistics.median(work):.2f} ms, p99 {percentile(work, 99):.2f} ms")
        print(f"frames, overview of {tiles} rooms: frame interval median "
              f"{statistics.median(overview_dt):.1f} ms, p95 {percentile(overview_dt, 95):.1f} ms"
              f" ({len(overview_dt) / seconds:.0f} fps); frame time median "
              f"{statistics.median(overview_busy):.1f} ms, p99 {percentile(overview_busy, 99):.1f}"
              f" ms; full re-render of all tiles median "
              f"{statistics.median(render):.2f} ms (target median frame time <= 16 ms)")
    finally:
        broker.close()


# ---------------------------------------------------------------- 3. cpu


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_cpu(rooms_n: int = 100, seconds: float = 30.0) -> None:
    await cpu_run(rooms_n, seconds, waves="shown", pages=4)
    await cpu_run(rooms_n, seconds, waves="all", pages=4)


async def cpu_run(rooms_n: int, seconds: float, *, waves: str, pages: int) -> None:
    broker = MosquittoBroker()
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="roommon-bench-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        (tmp / "site.toml").write_text(site_config(broker.port, rooms_n, waves=True))
        set_account(tmp / "users", "bench", "bench-password")
        port = free_port()
        proc = subprocess.Popen(  # noqa: ASYNC220 - a bench, started once before measuring
            [sys.executable, "-m", "roommon", "display", "--config", str(tmp / "site.toml"),
             "--users", str(tmp / "users"), "--listen", f"127.0.0.1:{port}",
             "--log-level", "warning", "--waves", waves],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # "roommon display: URL" once it listens
        rooms = [f"room{i:03d}" for i in range(rooms_n)]
        received = 0

        async def page(room: str | None) -> None:
            nonlocal received
            async with aiohttp.ClientSession() as http, http.ws_connect(
                f"http://127.0.0.1:{port}/ws", max_msg_size=0
            ) as ws:
                if room is not None:
                    await ws.send_str(json.dumps({"watch": room}))
                async for _ in ws:
                    received += 1

        async with asyncio.TaskGroup() as tg:
            clients = [tg.create_task(page(None))]
            clients += [tg.create_task(page(rooms[i])) for i in range(pages)]
            ready = asyncio.Event()
            feeder = tg.create_task(feed_rooms(broker.port, rooms, waves=rooms,
                                               seconds=seconds + 10, ready=ready))
            await ready.wait()
            await asyncio.sleep(5)  # warm-up: retained states, first chunks
            c0, t0, r0, f0 = cpu_seconds(proc.pid), time.monotonic(), received, SENT[0]
            await asyncio.sleep(seconds)
            c1, t1, r1 = cpu_seconds(proc.pid), time.monotonic(), received
            feeds_sent = [SENT[0] - f0]
            feeder.cancel()
            for c in clients:
                c.cancel()
        share = (c1 - c0) / (t1 - t0)
        print(f"cpu, roommon display --waves {waves} following {rooms_n} rooms (each: EKG, "
              f"pleth, cement chunks at 4/s, SpO2 and state at 1/s; {feeds_sent[0] / seconds:.0f}"
              f" MQTT messages/s offered), an overview and {pages} room pages "
              f"({(r1 - r0) / (t1 - t0):.0f} WebSocket messages/s): {share:.1%} of a core over "
              f"{t1 - t0:.0f} s (target < 20 %)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        broker.close()


async def main(which: list[str]) -> None:
    for name in which or ["latency", "frames", "cpu"]:
        await {"latency": bench_latency, "frames": bench_frames, "cpu": bench_cpu}[name]()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
