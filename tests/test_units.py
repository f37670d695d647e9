"""The one formatting of numbers, durations and clock times for people (roommon.core.units)."""

from __future__ import annotations

import math
import time

import pytest

from roommon.core import units


def test_values_at_clinical_precision_with_units() -> None:
    assert units.alarm_value("nibp.hypotension", 86.8733) == "87 mmHg"
    assert units.alarm_value("cement.over_pressure", 3625.521741538273) == "3626 kPa"
    assert units.alarm_value("spo2.desat", 86.2) == "86 %"
    assert units.alarm_value("ecg.tachy", 150.4) == "150 bpm"
    assert units.alarm_value("recovery.check_overdue", 5.0115) == "5.0 min"
    assert units.alarm_value("ecg.asystole", 4.24) == "4.2 s"
    assert units.alarm_value("cement.past_working_time", 905.0) == "0:15:05"
    assert units.alarm_value("ecg.leads_off", None) == "--"
    assert units.value(math.nan, "mmHg") == "--"
    assert units.value(-0.001, "mmHg") == "0 mmHg"


def test_durations_read_h_mm_ss() -> None:
    assert units.duration(10799.0) == "2:59:59"
    assert units.duration(-61) == "-0:01:01"
    assert units.duration(0.2) == "0:00:00"


def test_clock_times_local_with_zone_or_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        t = 1_796_148_515.35  # 2026-12-01 ... UTC, winter: CET is UTC+1
        assert units.clock(t, utc=True).endswith(" UTC")
        utc_h = int(units.clock(t, utc=True)[:2])
        assert units.clock(t) == f"{(utc_h + 1) % 24:02d}{units.clock(t, utc=True)[2:8]} CET"
        assert units.date_time(t, utc=True).startswith("2026-")
        assert units.clock(t, seconds=False, with_zone=False) == units.clock(t)[:5]
    finally:
        monkeypatch.undo()  # the process's own zone back, for the tests after this one
        time.tzset()


def test_a_rate_per_hour_is_not_extrapolated_from_a_tiny_span() -> None:
    assert units.per_hour(2, 0.02) == "2 in 0:01:12, too short for a rate"
    assert units.per_hour(12, 2.0) == "6.0/h"
