"""The demo room: the README's first command, in-process and optionally to a real broker."""

from __future__ import annotations

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


@pytest.mark.broker
async def test_demo_also_publishes_to_a_broker(broker: MosquittoBroker) -> None:
    import asyncio

    code = await asyncio.to_thread(
        main, ["demo", "--speed", "0", "--minutes", "2", "--broker", broker.url]
    )
    assert code == 0
    async with MqttCollector(broker.port, ["roommon/v1/demo/#"]) as c:
        msgs = await c.wait_for(lambda ms: {"roommon/v1/demo/proc1/state",
                                            "roommon/v1/demo/status/demo"}
                                <= {m.topic for m in ms})
    state = next(m.json() for m in msgs if m.topic.endswith("/state"))
    assert state["feeds"]["ekg"]["received"] > 100
    assert state["measurements"]["heart_rate"]["value"] == pytest.approx(75, abs=3)
    status = next(m.json() for m in msgs if m.topic.endswith("/status/demo"))
    assert (status["status"], status["reason"]) == ("offline", "shutdown")
