"""``roommon report``: the alarm-burden report from a replayed recording and from the alarm log,
opened in headless Chromium (Debian's, through Playwright) with its plots present."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from roommon.cli import main
from roommon.cli.demo_room import DEMO_CONFIG
from roommon.config import load_config
from roommon.testing.browser import CHROMIUM_ARGS, chromium_executable
from roommon.transports.mcap_files import McapRecording
from roommon.wire.payloads import encode_reading, encode_waveform
from roommon.wire.topics import Topics
from simulators.room import RoomSimulator, kyphoplasty_script

T0 = 1_767_225_600.0
SECONDS = 480  # the kyphoplasty script's spike (high alarm) at 385 s, injection end seen at 472 s


def write_demo_recording(tmp: Path) -> tuple[Path, Path]:
    """Eight minutes of the demo room's simulated feeds, recorded as the recorder would."""
    from roommon.cli.record import channel_describer
    from roommon.core.model import WaveformChunk

    config_path = tmp / "room.toml"
    config_path.write_text(
        DEMO_CONFIG.replace('instance = "demo"', f'instance = "demo"\nstate_dir = "{tmp}/state"')
    )
    config = load_config(config_path)
    sim = RoomSimulator(room="proc1", config=config.rooms["proc1"], t0=T0, seed=2,
                        script=kyphoplasty_script())
    topics = Topics(config.site.id)
    path = tmp / "demo.mcap"
    info = {"site": config.site.id, "rooms": "proc1"}
    with McapRecording(path=path, info=info,
                       describe=channel_describer(config.site.id, config)) as rec:
        for _ in range(SECONDS):
            for s in sim.step(1.0):
                if isinstance(s, WaveformChunk):
                    payload, at = encode_waveform(s), s.t_end + 0.05
                else:
                    payload, at = encode_reading(s), s.t + 0.05
                rec.write(topics.feed("proc1", s.feed), payload, received=at)
        rec.close(end={"messages": str(rec.messages)})
    return path, config_path


@pytest.fixture(scope="module")
def demo_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_demo_recording(tmp_path_factory.mktemp("report"))


async def test_report_from_a_replayed_recording_opens_in_chromium_with_its_plots(
    tmp_path: Path, demo_recording: tuple[Path, Path]
) -> None:
    import asyncio

    from playwright.async_api import async_playwright

    recording, config = demo_recording
    out = tmp_path / "report.html"
    argv = ["report", "--config", str(config), "--from-recording", str(recording),
            "--out", str(out), "--utc"]
    assert await asyncio.to_thread(main, argv) == 0
    page_html = out.read_text()
    # Self-contained: every image inlined, no stylesheet, script or image fetched.
    assert not re.search(r"<(link|script)\b", page_html)
    assert re.findall(r'src="([^"]{0,22})', page_html) == ["data:image/png;base64,"] * 6
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_executable(), args=list(CHROMIUM_ARGS)
        )
        try:
            page = await browser.new_page()
            fetched: list[str] = []
            page.on("request", lambda r: fetched.append(r.url))
            await page.goto(out.as_uri())
            await page.wait_for_load_state("load")
            sizes = await page.evaluate(
                "Array.from(document.images, i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            headings = await page.evaluate(
                "Array.from(document.querySelectorAll('h2, h3'), h => h.textContent)"
            )
        finally:
            await browser.close()
    assert [u for u in fetched if not u.startswith(("file:", "data:"))] == []
    assert len(sizes) == 6
    assert all(done and w > 0 and h > 0 for done, w, h in sizes)
    assert "Alarms per hour, by priority" in headings
    assert "Self-cleared within 10 s (alarm-fatigue candidates)" in headings
    strip = next(h for h in headings if "cement.over_pressure" in h)  # the high alarm's strip
    assert strip.startswith("2026-01-01 00:06:")
    injection = next(h for h in headings if "injection 1" in h)
    assert re.search(r"peak 3\d{3} kPa, limit 3200 kPa$", injection), injection


def test_report_from_the_alarm_log_since_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_alarm_log import record_hour

    state = tmp_path / "state"
    state.mkdir()
    record_hour(state / "roommon.sqlite3")
    config = tmp_path / "room.toml"
    config.write_text(
        f'[site]\nid = "s"\n[daemon]\nstate_dir = "{state}"\n'
        '[rooms.r1.feeds.spo2]\nkind = "spo2"\n'
    )
    out = tmp_path / "log.html"
    assert main(["report", "--config", str(config), "--since", "2026-01-01T00:00:00",
                 "--out", str(out), "--utc"]) == 0
    page = out.read_text()
    # per hour, per code, per room, self-cleared, time to acknowledge (2 acknowledged)
    assert page.count('src="data:image/png;base64,') == 5
    assert "2 acknowledged; median 0:01:00" in page
    assert "2 of 7 alarms cleared by themselves" in page
    assert "need --from-recording" in page
    assert main(["report", "--config", str(config), "--since", "2027-01-01T00:00:00",
                 "--out", str(out)]) == 0
    assert "<p>no alarms</p>" in out.read_text()
    assert main(["report", "--config", str(config), "--from-recording", str(config),
                 "--since", "1h", "--out", str(out)]) == 2
    assert "--since is for the alarm log" in capsys.readouterr().err
