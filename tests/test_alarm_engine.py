"""Alarm engine lifecycle rules, one by one, on explicit times."""

from __future__ import annotations

from typing import Any

import pytest

from roommon.alerts.engine import Outgoing, RoomAlarms
from roommon.config import parse_config
from roommon.core.conditions import AlarmKind, ConditionReport, ConditionSpec, Priority
from roommon.core.errors import CommandError
from roommon.core.model import DataOrigin

T0 = 1_767_225_600.0

DESAT = ConditionSpec(
    code="spo2.desat",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="desat",
    delay_s=15.0,
    clear_delay_s=5.0,
)
ASYS = ConditionSpec(
    code="ecg.asystole",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="asystole",
)
LEAK = ConditionSpec(
    code="cement.sudden_drop",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.HIGH,
    description="drop",
    latching=True,
)
PROBE = ConditionSpec(
    code="spo2.probe_off", kind=AlarmKind.TECHNICAL, priority=Priority.LOW, description="probe off"
)


def engine(**room: Any) -> RoomAlarms:
    data = {
        "site": {"id": "s"},
        "rooms": {
            "r1": {"feeds": {"spo2": {"kind": "spo2"}, "ekg": {"kind": "ecg", "fs": 250}}, **room}
        },
    }
    cfg = parse_config(data)
    counter = iter(range(1, 10_000))
    return RoomAlarms(
        site="s", room="r1", config=cfg.rooms["r1"], new_id=lambda: f"a{next(counter)}"
    )


def rep(
    spec: ConditionSpec,
    active: bool,
    t: float,
    feed: str = "spo2",
    origin: DataOrigin = DataOrigin.LIVE,
    value: float | None = None,
) -> ConditionReport:
    return ConditionReport(
        room="r1",
        feed=feed,
        check=spec.code.split(".")[0],
        spec=spec,
        active=active,
        t=t,
        value=value,
        origin=origin,
    )


def transitions(out: list[Outgoing]) -> list[tuple[str, str]]:
    return [(o.event.code, o.event.transition) for o in out]


def run(e: RoomAlarms, until: float, start: float = 0.0) -> list[Outgoing]:
    out: list[Outgoing] = []
    t = start
    while t <= until:
        out += e.tick(T0 + t)
        t += 1.0
    return out


def test_condition_delay_holds_the_alarm_back() -> None:
    e = engine()
    assert e.report(rep(DESAT, True, T0), T0) == []
    assert run(e, 14) == []
    out = e.tick(T0 + 15)
    assert transitions(out) == [("spo2.desat", "raised")]
    assert out[0].event.since == T0 + 15


def test_condition_shorter_than_delay_is_never_an_alarm() -> None:
    e = engine()
    e.report(rep(DESAT, True, T0), T0)
    run(e, 10)
    assert e.report(rep(DESAT, False, T0 + 11), T0 + 11) == []
    assert run(e, 60, start=11) == []
    assert e.alarms() == []


def test_clear_delay_is_hysteresis_in_time() -> None:
    e = engine()
    e.report(rep(ASYS, True, T0, feed="ekg"), T0)
    e.report(rep(DESAT, True, T0), T0)
    run(e, 20)
    e.report(rep(DESAT, False, T0 + 21), T0 + 21)
    # back within the 5 s clear delay: same alarm, no clear, no new raise
    e.report(rep(DESAT, True, T0 + 23), T0 + 23)
    assert transitions(run(e, 40, start=21)) == []
    e.report(rep(DESAT, False, T0 + 41), T0 + 41)
    out = run(e, 50, start=41)
    assert transitions(out) == [("spo2.desat", "cleared")]
    assert out[0].event.t == T0 + 46


def test_repeated_reports_are_one_alarm() -> None:
    e = engine()
    out: list[Outgoing] = []
    for i in range(100):
        out += e.report(rep(ASYS, True, T0 + i * 0.1, feed="ekg"), T0 + i * 0.1)
    out += run(e, 30)
    assert transitions(out) == [("ecg.asystole", "raised")]
    assert len(e.alarms()) == 1


def test_latching_alarm_stays_until_reset() -> None:
    e = engine()
    out = e.report(rep(LEAK, True, T0, feed="spo2"), T0)
    out += e.report(rep(LEAK, False, T0 + 2, feed="spo2"), T0 + 2)
    assert transitions(out) == [("cement.sudden_drop", "raised"), ("cement.sudden_drop", "latched")]
    assert [a.state for a in e.alarms()] == ["latched"]
    assert e.audible(e.alarms()[0], T0 + 3)  # a latched alarm still signals until acknowledged
    out = e.reset(e.alarms()[0].alarm_id, T0 + 10, actor="nurse")
    assert transitions(out) == [("cement.sudden_drop", "reset")]
    assert out[0].event.actor == "nurse"
    assert e.alarms() == []


def test_reset_refused_while_condition_present() -> None:
    e = engine()
    e.report(rep(LEAK, True, T0), T0)
    alarm = e.alarms()[0]
    with pytest.raises(CommandError) as err:
        e.reset(alarm.alarm_id, T0 + 1, actor="nurse")
    assert err.value.reason == "not_allowed"
    assert alarm.state == "active"


def test_acknowledge_silences_and_then_clear() -> None:
    e = engine()
    e.report(rep(ASYS, True, T0, feed="ekg"), T0)
    alarm = e.alarms()[0]
    out = e.acknowledge(alarm.alarm_id, T0 + 3, actor="dr-a")
    assert transitions(out) == [("ecg.asystole", "acknowledged")]
    assert out[0].event.audible is False
    assert out[0].event.state == "acknowledged"
    with pytest.raises(CommandError) as err:
        e.acknowledge(alarm.alarm_id, T0 + 4, actor="dr-a")
    assert err.value.reason == "not_allowed"
    out = e.report(rep(ASYS, False, T0 + 5, feed="ekg"), T0 + 5)
    assert transitions(out) == [("ecg.asystole", "cleared")]


def test_unknown_alarm_is_refused() -> None:
    e = engine()
    with pytest.raises(CommandError) as err:
        e.acknowledge("nope", T0, actor="x")
    assert err.value.reason == "unknown_alarm"


def test_audio_pause_expires_and_new_higher_priority_alarm_still_sounds() -> None:
    e = engine(audio_pause_s=120)
    e.report(rep(PROBE, True, T0), T0)
    probe = e.alarms()[0]
    assert e.audible(probe, T0)
    e.pause_audio(T0 + 1)
    assert not e.audible(probe, T0 + 2)
    # a new alarm of higher priority during the pause still sounds
    out = e.report(rep(ASYS, True, T0 + 10, feed="ekg"), T0 + 10)
    assert out[0].event.audible is True
    asys = e.find(out[0].event.alarm_id)
    assert asys is not None
    assert e.audible(asys, T0 + 11)
    # a new alarm of the paused level does not
    low2 = ConditionSpec(
        code="ecg.noisy", kind=AlarmKind.TECHNICAL, priority=Priority.LOW, description="noisy"
    )
    out = e.report(rep(low2, True, T0 + 12, feed="ekg"), T0 + 12)
    assert out[0].event.audible is False
    # the pause expires after 120 s
    assert not e.audible(probe, T0 + 120)
    e.tick(T0 + 121)
    assert e.audio_paused_until is None
    assert e.audible(probe, T0 + 121)


def test_alarm_pause_of_a_feed_holds_its_alarms_until_expiry() -> None:
    e = engine()
    e.pause_alarms(T0, scope="spo2", duration_s=60)
    assert e.report(rep(PROBE, True, T0 + 1), T0 + 1) == []
    assert run(e, 59, start=1) == []
    # another feed is not paused
    assert transitions(e.report(rep(ASYS, True, T0 + 5, feed="ekg"), T0 + 5)) == [
        ("ecg.asystole", "raised")
    ]
    out = e.tick(T0 + 60)
    assert transitions(out) == [("spo2.probe_off", "raised")]
    with pytest.raises(CommandError) as err:
        e.pause_alarms(T0, scope="spo2", duration_s=3600)
    assert err.value.reason == "not_allowed"
    with pytest.raises(CommandError) as err:
        e.pause_alarms(T0, scope="nosuch", duration_s=10)
    assert err.value.reason == "unknown_feed"


ESCALATION = {
    "notify": ["nurse"],
    "medium": [{"after_s": 60, "to": "charge"}],
    "high": [{"after_s": 20, "to": "charge"}, {"after_s": 60, "to": "anaesthetist"}],
}


def test_escalation_timing_and_deescalation_on_acknowledge() -> None:
    e = engine(escalation=ESCALATION)
    out = e.report(rep(ASYS, True, T0, feed="ekg"), T0)
    assert [(n.recipient, n.reason) for n in out[0].notifications] == [("nurse", "new")]
    assert run(e, 19) == []
    out = e.tick(T0 + 20)
    assert transitions(out) == [("ecg.asystole", "escalated")]
    assert [(n.recipient, n.level) for n in out[0].notifications] == [("charge", 1)]
    assert run(e, 59, start=21) == []
    out = e.tick(T0 + 60)
    assert [(n.recipient, n.level) for n in out[0].notifications] == [("anaesthetist", 2)]
    out = e.acknowledge(e.alarms()[0].alarm_id, T0 + 70, actor="dr-b")
    assert transitions(out) == [("ecg.asystole", "acknowledged"), ("ecg.asystole", "deescalated")]
    assert sorted(n.recipient for n in out[1].notifications) == ["anaesthetist", "charge"]
    assert all(n.reason == "deescalation" for n in out[1].notifications)
    assert run(e, 300, start=71) == []


def test_medium_escalates_after_60_s() -> None:
    e = engine(escalation=ESCALATION)
    e.report(rep(DESAT, True, T0), T0)
    out = run(e, 200)
    assert [(o.event.transition, o.event.t - T0) for o in out] == [
        ("raised", 15.0),
        ("escalated", 75.0),
    ]


def test_simulated_alarm_is_not_routed_unless_allowed() -> None:
    e = engine(escalation=ESCALATION)
    out = e.report(rep(ASYS, True, T0, feed="ekg", origin=DataOrigin.SIMULATED), T0)
    out += run(e, 300)
    assert transitions(out) == [("ecg.asystole", "raised")]
    assert out[0].event.origin == "simulated"
    assert all(not o.notifications for o in out)

    e = engine(escalation={**ESCALATION, "route_simulated": True})
    out = e.report(rep(ASYS, True, T0, feed="ekg", origin=DataOrigin.REPLAYED), T0)
    out += run(e, 30)
    assert [n.recipient for o in out for n in o.notifications] == ["nurse", "charge"]


def test_room_overrides_delay_priority_latching_and_disable() -> None:
    e = engine(
        alarms={
            "spo2.desat": {"delay_s": 0, "priority": "high", "latching": True},
            "spo2.probe_off": {"enabled": False},
        }
    )
    out = e.report(rep(DESAT, True, T0), T0)
    assert (out[0].event.transition, out[0].event.priority) == ("raised", "high")
    out = e.report(rep(DESAT, False, T0 + 1), T0 + 1)
    out += run(e, 10, start=1)
    assert transitions(out) == [("spo2.desat", "latched")]
    assert e.report(rep(PROBE, True, T0), T0) == []


def test_every_event_has_a_unique_id_and_gap_free_sequence() -> None:
    e = engine(escalation=ESCALATION)
    out: list[Outgoing] = []
    for i in range(50):
        out += e.report(rep(ASYS, i % 2 == 0, T0 + i * 30, feed="ekg"), T0 + i * 30)
        out += run(e, i * 30 + 29, start=i * 30)
    ids = [o.event.event_id for o in out]
    assert len(ids) == len(set(ids))
    assert [o.event.seq for o in out] == list(range(1, len(out) + 1))
    assert e.last_seq == len(out)


def test_latched_alarm_returns_to_active_when_condition_comes_back() -> None:
    e = engine()
    e.report(rep(LEAK, True, T0), T0)
    e.report(rep(LEAK, False, T0 + 1), T0 + 1)
    out = e.report(rep(LEAK, True, T0 + 5), T0 + 5)
    assert transitions(out) == [("cement.sudden_drop", "raised")]
    assert len(e.alarms()) == 1
    assert e.alarms()[0].state == "active"


def test_high_priority_alarms_raised_or_escalated_are_logged_as_warnings() -> None:
    from roommon.testing.logs import capture_logs

    e = engine(escalation=ESCALATION)
    with capture_logs() as logs:
        e.report(rep(ASYS, True, T0, feed="ekg"), T0)
        e.tick(T0 + 20)  # escalated
        e.report(rep(PROBE, True, T0 + 21), T0 + 21)
        e.acknowledge(e.alarms()[0].alarm_id, T0 + 30, actor="dr-b")
    levels = {(x["event"], x["code"]): x["log_level"] for x in logs.entries if "code" in x
              and x["event"].startswith("alarm_")}
    assert levels[("alarm_raised", "ecg.asystole")] == "warning"
    assert levels[("alarm_escalated", "ecg.asystole")] == "warning"
    assert levels[("alarm_acknowledged", "ecg.asystole")] == "info"
    assert levels[("alarm_raised", "spo2.probe_off")] == "info"
