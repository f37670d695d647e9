"""The demo's wall display in headless Chromium, and the screenshots in docs/.

The demo room runs in-process on its virtual clock (no broker), its display
served by the same process. The test steps the script to a desaturation, to
the cement over-pressure of the second injection and into recovery, checks
what each page shows, and photographs the overview, the room page during the
alarm and the nurses' station (into ``docs/`` when ``ROOMMON_SCREENSHOTS=docs``,
else into the test's temporary folder). Before a photograph the demo runs a few
simulated seconds at 4x real time, as ``roommon demo --speed 4`` would, so the
sweeps have something to draw: that is pacing the demo, not waiting for a result.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from roommon.cli.demo_room import DEMO_PASSWORD, DEMO_USER, DemoRun
from roommon.core.clock import RealClock
from roommon.testing import CHROMIUM_ARGS, chromium_executable

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 15_000


async def run_until(
    run: DemoRun, done: Callable[[], bool], *, paced_from: int, limit: int = 700
) -> None:
    """Step the demo until ``done()``; from second ``paced_from`` at 4x real time."""
    real = RealClock()
    while not done():
        assert run.second < limit, "the demo script never got there"
        await run.step()
        if run.second >= paced_from:
            await real.sleep(0.25)


def alarm_active(run: DemoRun, code: str) -> bool:
    summaries = run.daemon.pipelines["proc1"].engine.summaries(run.clock.now())
    return any(a.code == code and a.state == "active" for a in summaries)


async def drawn_fraction(page: Page, selector: str) -> float:
    """Share of a canvas's pixels that are not black (something was drawn)."""
    value = await page.locator(selector).evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i+1] + d[i+2] > 60) n++;"
        " return n / (d.length / 4); }"
    )
    return float(value)


async def test_demo_display_overview_room_alarm_and_nurses_station(tmp_path: Path) -> None:
    shots = ROOT / "docs" if os.environ.get("ROOMMON_SCREENSHOTS") == "docs" else tmp_path
    async with async_playwright() as pw:
        async with DemoRun(state_dir=tmp_path, broker=None, seed=1, out=io.StringIO(),
                           display=("127.0.0.1", 0)) as run:
            assert run.display is not None
            url = run.display.url
            browser = await pw.chromium.launch(
                executable_path=chromium_executable(), args=list(CHROMIUM_ARGS)
            )
            context = await browser.new_context(viewport={"width": 1280, "height": 860})
            overview, room = await context.new_page(), await context.new_page()
            await overview.goto(f"{url}/")
            await room.set_viewport_size({"width": 1280, "height": 1110})  # the whole wall
            await room.goto(f"{url}/room/proc1")
            tile = overview.locator('.tile[data-room="proc1"]')
            await expect(tile).to_be_visible(timeout=TIMEOUT_MS)

            # the scripted desaturation to 86 %: medium, yellow, in words
            await run_until(run, lambda: alarm_active(run, "spo2.desat"), paced_from=700)
            await expect(tile).to_have_attribute("data-priority", "medium", timeout=TIMEOUT_MS)
            await expect(tile.locator("[data-alarm-text]")).to_have_text("SpO2 below the low limit")
            await expect(tile.locator(".origin")).to_have_text("SIMULATED DATA")

            # the pressure spike of the second injection: high, red, on the room page
            await run_until(run, lambda: alarm_active(run, "cement.over_pressure"), paced_from=372)
            row = room.locator('#alarm-list tr[data-priority="high"]')
            await expect(row.locator("[data-alarm-text]")).to_contain_text(
                "Cement injection pressure above the configured maximum", timeout=TIMEOUT_MS)
            await expect(row.locator(".pill")).to_have_css("background-color", "rgb(224, 32, 27)")
            await expect(tile).to_have_attribute("data-priority", "high")
            await expect(room.locator("[data-injections]")).to_have_text("1")
            assert await drawn_fraction(room, "#ekg-canvas") > 0.005
            assert await drawn_fraction(room, "#cement-canvas") > 0.005
            await room.screenshot(path=str(shots / "display-room-alarm.png"))
            await overview.screenshot(path=str(shots / "display-overview.png"))

            # recovery: the nurses' station, signed in
            timer_on = run.daemon.pipelines["proc1"].recovery.timer
            await run_until(
                run, lambda: bool(timer_on.running) and run.second > 490, paced_from=486
            )
            station = await context.new_page()
            await station.goto(f"{url}/recovery")
            form = station.locator("form[data-signin]")
            await form.locator('input[name="user"]').fill(DEMO_USER)
            await form.locator('input[name="password"]').fill(DEMO_PASSWORD)
            await form.locator("button").click()
            await expect(station.locator("[data-user]")).to_have_text(DEMO_USER)
            card = station.locator('.rcard[data-room="proc1"]')
            await expect(card.locator('[data-countdown="minimum"] [data-left]')).to_be_visible(
                timeout=TIMEOUT_MS)
            timer = run.daemon.pipelines["proc1"].recovery.snapshot(run.clock.now())
            assert timer.min_deadline is not None
            await expect(card.locator('[data-countdown="minimum"]')).to_have_attribute(
                "data-epoch", repr(timer.min_deadline))
            await station.screenshot(path=str(shots / "display-recovery.png"))

            # alarm recall: the over-pressure's strip, 10 s before to 5 s after its onset
            row = room.locator("#alarm-history tr[data-recall]").filter(
                has_text="Cement injection pressure above the configured maximum")
            await row.first.click()
            recall = room.locator("#recall")
            await expect(recall).to_be_visible(timeout=TIMEOUT_MS)
            await expect(recall.locator("h3")).to_contain_text("10 s before, 5 s after")
            assert await drawn_fraction(room, '#recall canvas[data-recall-feed="ekg"]') > 0.002
            assert await drawn_fraction(room, '#recall canvas[data-recall-feed="cement"]') > 0.002

        # the demo (and its display service) gone: every open page says so
        await expect(station.locator('[data-banner="service"]')).to_contain_text(
            "No connection to the display service", timeout=TIMEOUT_MS)
        await expect(overview.locator('[data-banner="service"]')).to_be_visible()
        await browser.close()
    for name in ("display-overview.png", "display-room-alarm.png", "display-recovery.png"):
        assert (shots / name).stat().st_size > 10_000

