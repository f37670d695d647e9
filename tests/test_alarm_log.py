"""The alarm log in SQLite and ``roommon alarms``: listing, filters and burden figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from roommon.alerts.engine import Outgoing, RoomAlarms
from roommon.alerts.store import AlarmStore, burden
from roommon.cli import main
from roommon.config import parse_config
from roommon.core.conditions import AlarmKind, ConditionReport, ConditionSpec, Priority

T0 = 1_767_225_600.0
DESAT = ConditionSpec(
    code="spo2.desat",
    kind=AlarmKind.PHYSIOLOGICAL,
    priority=Priority.MEDIUM,
    description="d",
    delay_s=15,
)
PROBE = ConditionSpec(
    code="spo2.probe_off", kind=AlarmKind.TECHNICAL, priority=Priority.LOW, description="p"
)


def record_hour(db: Path) -> None:
    """One hour of room r1: 4 desats (2 acked after 30 s and 90 s), 2 short probe-offs."""
    cfg = parse_config(
        {"site": {"id": "s"}, "rooms": {"r1": {"feeds": {"spo2": {"kind": "spo2"}}}}}
    )
    store = AlarmStore(db)
    e = RoomAlarms(site="s", room="r1", config=cfg.rooms["r1"], next_seq=store.next_seq("r1"))

    def rep(spec: ConditionSpec, active: bool, t: float) -> list[Outgoing]:
        r = ConditionReport(room="r1", feed="spo2", check="spo2", spec=spec, active=active, t=t)
        return e.report(r, T0 + t) + e.tick(T0 + t)

    def keep(out: list[Outgoing]) -> None:
        store.record([o.event for o in out], [])

    for i, ack_after in enumerate([30.0, 90.0, None, None]):
        start = i * 900.0
        keep(rep(DESAT, True, start))
        keep(e.tick(T0 + start + 15))
        if ack_after is not None:
            keep(e.acknowledge(e.alarms()[0].alarm_id, T0 + start + 15 + ack_after, actor="n1"))
        keep(rep(DESAT, False, start + 200))
    for start in (100.0, 2000.0):
        keep(rep(PROBE, True, start))
        keep(rep(PROBE, False, start + 4))
    keep(rep(PROBE, True, 3599.0))  # the hour ends with one still active
    store.close(release_seqs=True)  # as the daemon's clean shutdown does


def test_burden_figures(tmp_path: Path) -> None:
    db = tmp_path / "roommon.sqlite3"
    record_hour(db)
    store = AlarmStore(db)
    events = store.events()
    store.close()
    (b,) = burden(events, hours=1.0)
    assert b.alarms == 7
    assert b.per_hour == 7.0
    assert b.share_acknowledged == pytest.approx(2 / 7)
    assert b.median_ack_s == 60.0
    assert b.share_self_cleared == pytest.approx(2 / 7)  # the two 4-second probe-offs


def test_alarms_command_lists_filters_and_summarises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "roommon.sqlite3"
    record_hour(db)
    assert main(["alarms", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.count(" raised ") == 7
    assert "[by n1]" in out
    assert "r1" in out.split("Alarm burden")[1]
    assert main(["alarms", "--db", str(db), "--kind", "technical"]) == 0
    out = capsys.readouterr().out
    listing = out.split("Alarm burden")[0]
    assert "spo2.probe_off" in listing
    assert "spo2.desat" not in listing
    assert (
        main(["alarms", "--db", str(db), "--priority", "medium", "--since", "2026-01-01T00:30:00"])
        == 0
    )
    listing = capsys.readouterr().out.split("Alarm burden")[0]
    assert listing.count(" raised ") == 2  # desats 3 and 4 start at 00:30 and 00:45
    assert main(["alarms", "--db", str(db), "--room", "nosuch"]) == 0
    assert " raised " not in capsys.readouterr().out


def test_sequence_numbers_continue_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "roommon.sqlite3"
    record_hour(db)
    store = AlarmStore(db)
    last = max(e.seq for e in store.events(room="r1"))
    assert store.next_seq("r1") == last + 1
    store.close()


async def test_alarms_left_open_by_a_previous_run_are_closed_at_start(tmp_path: Path) -> None:
    from roommon.core.clock import VirtualClock
    from roommon.core.model import NumericReading, SignalKind
    from roommon.runtime.daemon import Daemon
    from roommon.testing import CaptureOutput

    cfg = parse_config({
        "site": {"id": "s"},
        "daemon": {"state_dir": str(tmp_path)},
        "rooms": {"r1": {
            "feeds": {"spo2": {"kind": "spo2"}},
            "checks": {"numeric_limits": {"rules": [
                {"kind": "spo2", "field": "spo2", "below": 90}]}},
        }},
    })
    clock = VirtualClock()

    def low(seq: int) -> NumericReading:
        return NumericReading(room="r1", feed="spo2", kind=SignalKind.SPO2, t=clock.now(),
                              values={"spo2": 82.0}, seq=seq)

    first = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[first]) as d:
        d.pipelines["r1"].ingest(low(1))
    (old,) = first.events
    assert old.transition == "raised"

    await clock.advance(60)
    second = CaptureOutput()
    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[second]) as d:
        d.pipelines["r1"].ingest(low(1))
        logged = d.store.events(room="r1")
    closed, again = second.events
    assert (closed.alarm_id, closed.transition, closed.seq) == (old.alarm_id, "cleared", 2)
    assert "daemon restart" in closed.message
    assert (again.transition, again.seq) == ("raised", 3)
    assert again.alarm_id != old.alarm_id
    assert [e.seq for e in logged] == [1, 2, 3]


def test_alarms_table_columns_values_origin_filter_zone_and_short_spans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from roommon.core.model import DataOrigin

    cfg = parse_config(
        {"site": {"id": "s"}, "rooms": {"r1": {"feeds": {"spo2": {"kind": "spo2"}}}}}
    )
    db = tmp_path / "roommon.sqlite3"
    store = AlarmStore(db)
    e = RoomAlarms(site="s", room="r1", config=cfg.rooms["r1"], next_seq=store.next_seq("r1"))
    for t, origin in ((0.0, DataOrigin.LIVE), (40.0, DataOrigin.SIMULATED)):
        r = ConditionReport(room="r1", feed="spo2", check="spo2", spec=DESAT, active=True,
                            t=T0 + t, value=86.8733, limit=90.0, origin=origin)
        store.record([o.event for o in e.report(r, T0 + t) + e.tick(T0 + t + 15)], [])
        off = ConditionReport(room="r1", feed="spo2", check="spo2", spec=DESAT, active=False,
                              t=T0 + t + 20, origin=origin)
        store.record([o.event for o in e.report(off, T0 + t + 20) + e.tick(T0 + t + 20)], [])
    store.close()

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert main(["alarms", "--db", str(db)]) == 0
        local = capsys.readouterr().out
        assert main(["alarms", "--db", str(db), "--utc", "--origin", "live"]) == 0
        utc = capsys.readouterr().out
        assert main(["alarms", "--db", str(db), "--origin", "replayed"]) == 0
        nothing = capsys.readouterr().out
    finally:
        monkeypatch.undo()
        time.tzset()
    assert "time (CET)" in local
    assert "2026-01-01 01:00:15" in local  # T0 + 15 s, UTC+1
    assert "time (UTC)" in utc
    assert "2026-01-01 00:00:15" in utc
    rows = [line for line in local.splitlines() if " raised " in line]
    assert len(rows) == 2
    assert all("87 mmHg" not in r and "87 %" in r and "90 %" in r for r in rows)
    assert {"live", "simulated"} <= {w for r in rows for w in r.split()}
    assert sum(" raised " in line for line in utc.splitlines()) == 1  # only the live one
    assert "simulated" not in utc.split("Alarm burden")[0]
    # Every line of the table is as wide as its header: the time column fits its stamps.
    table = [line for line in local.split("Alarm burden")[0].splitlines() if "│" in line]
    assert len({len(line.rstrip()) for line in table}) == 1
    # A minute of alarms is not turned into a rate per hour.
    assert "too short for a rate" in local
    assert "/h" not in local
    assert nothing.strip() == "no alarms (replayed)"
