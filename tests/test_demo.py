"""The demo room: the README's first command, in-process and optionally to a real broker."""

from __future__ import annotations

import re

import pytest

from roommon.cli import main
from roommon.testing import MosquittoBroker, MqttCollector


def test_demo_plays_the_scripted_room_and_prints_its_alarms(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--speed", "0", "--minutes", "10"]) == 0
    out = capsys.readouterr().out
    assert "Not a medical device" in out
    raised = {line.split()[4] for line in out.splitlines() if "ALARM RAISED" in line}
    assert {"spo2.desat", "cement.over_pressure", "ecg.tachy", "spo2.probe_off",
            "nibp.hypotension", "ecg.leads_off"} <= raised
    assert "EVENT cement.injection_ended" in out
    assert "TIMER started" in out
    assert " -> " not in out  # simulated data pages nobody
    assert "Alarm burden of this run" in out


def schema_for(topic: str) -> str:
    parts = topic.split("/")
    if parts[3] == "notify":
        return "notify"
    if parts[3] == "status":
        return "status"
    tail = "/".join(parts[4:])
    return {"alarm": "alarm_event", "state": "room_state", "event": "room_event",
            "timer": "timer", "timer/event": "timer_event"}[tail]


@pytest.mark.broker
async def test_demo_also_publishes_to_a_broker_and_every_payload_validates(
    broker: MosquittoBroker,
) -> None:
    import asyncio
    import json

    import jsonschema

    from roommon.wire.registry import SCHEMA_DIR

    validators = {
        p.name.removesuffix(".schema.json"): jsonschema.Draft202012Validator(
            json.loads(p.read_text())
        )
        for p in SCHEMA_DIR.glob("*.schema.json")
    }
    async with MqttCollector(broker.port, ["roommon/v1/demo/#"]) as c:
        code = await asyncio.to_thread(
            main, ["demo", "--speed", "0", "--minutes", "12", "--broker", broker.url]
        )
        assert code == 0
        msgs = await c.wait_for(
            lambda ms: any(m.topic.endswith("/status/demo") and m.json()["status"] == "offline"
                           for m in ms))
    topics = {schema_for(m.topic) for m in msgs}
    assert {"alarm_event", "room_state", "room_event", "timer", "timer_event", "status"} <= topics
    for m in msgs:
        validators[schema_for(m.topic)].validate(m.json())
    # Payloads keep exact epoch numbers and carry ISO 8601 UTC beside them.
    from roommon.core.clock import iso

    alarm_events = [m.json() for m in msgs if m.topic.endswith("/alarm")]
    assert alarm_events
    assert all(a["since_time"] == iso(a["since"]) for a in alarm_events)
    timers = [m.json() for m in msgs if m.topic.endswith("/timer")]
    confirmed = [t for t in timers if t.get("confirmed") is not None]
    assert all(t["confirmed_time"] == iso(t["confirmed"]) for t in confirmed)
    assert all(t["first_started_time"] == iso(t["first_started"]) for t in timers
               if t.get("first_started") is not None)
    state = [m.json() for m in msgs if m.topic.endswith("/state")][-1]
    assert state["phase_since_time"] == iso(state["phase_since"])
    assert state["feeds"]["ekg"]["received"] > 100
    assert state["measurements"]["heart_rate"]["value"] == pytest.approx(78, abs=3)
    status = [m.json() for m in msgs if m.topic.endswith("/status/demo")][-1]
    assert (status["status"], status["reason"]) == ("offline", "shutdown")
    # simulated data: the alarms are on the room's topic, never on a recipient's
    assert not any("/notify/" in m.topic for m in msgs)


def test_demo_narrative_agrees_with_what_the_checks_detect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every injection the script announces is one the cement check counts, the operator's
    "cement mixed" reaches the daemon, and the back-dated start is not called late."""
    assert main(["demo", "--speed", "0", "--minutes", "8"]) == 0
    out = capsys.readouterr().out
    announced = [
        line for line in out.splitlines() if re.search(r"SCRIPT .*injection( \d+)? starts", line)
    ]
    counted = [line for line in out.splitlines() if "EVENT cement.injection_started" in line]
    assert len(announced) == len(counted) == 1
    assert "EVENT cement.mixed" in out
    assert "cement.no_mix_time" not in out
    assert "TIMER started" in out
    assert "(late)" not in out


def test_demo_to_a_broker_that_is_down_warns_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from roommon.testing import free_port

    url = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["demo", "--speed", "0", "--minutes", "1", "--broker", url]) == 1
    captured = capsys.readouterr()
    assert f"broker {url} cannot be reached" in captured.err
    assert f"broker {url} was never reached: nothing was published" in captured.err
    assert "Alarm burden of this run" in captured.out  # the room still ran to its end


def test_demo_console_reads_as_text_with_units_and_clock_times(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--speed", "0", "--minutes", "8"]) == 0
    out = capsys.readouterr().out
    over = next(line for line in out.splitlines() if "RAISED" in line and "over_pressure" in line)
    assert re.search(r"\[cement\] .*pressure.*: \d+ kPa \(limit 3200 kPa\)$", over), over
    assert re.search(r"ALARM RAISED +MEDIUM spo2.desat +\[spo2\] SpO2 below the low limit: "
                     r"\d+ % \(limit 90 %\)", out)
    ended = next(line for line in out.splitlines() if "EVENT cement.injection_ended" in line)
    # clock times, not epoch floats; the peak rounded with its unit
    assert re.search(r"started \d\d:\d\d:\d\d, .*peak \d+ kPa$", ended), ended
    assert "/h)" not in out  # 8 minutes are too short for a rate
    assert re.search(r"Times are \w+\.\n", out)  # the zone the console's clock times are in


def test_ctrl_c_ends_the_demo_cleanly_with_its_summary_so_far() -> None:
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "roommon", "demo", "--speed", "20", "--minutes", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("roommon demo: ")
        while "EVENT phase.changed" not in proc.stdout.readline():  # the room is running
            assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "roommon demo: interrupted" in out
    assert "Alarm burden of this run:" in out
