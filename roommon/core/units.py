"""Numbers, clock times and durations as a person reads them: the one formatting of roommon.

The console of ``demo`` and ``replay``, log messages and the CLI tables all
format through here, so a blood pressure reads ``87 mmHg`` everywhere and a
bed rest ``2:00:00``. Payloads never go through this module: they keep their
exact numbers (and ISO 8601 UTC times beside epoch floats).

Standard library only (start-up of ``roommon alarms`` and ``timers`` stays cheap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

#: Decimals shown per unit: the precision a clinician reads the value at.
PRECISION: Final[dict[str, int]] = {
    "mmHg": 0,
    "%": 0,
    "bpm": 0,
    "kPa": 0,
    "mV": 2,
    "Hz": 1,
    "min": 1,
    "s": 1,
}

#: Unit of the ``value`` and ``limit`` an alarm condition carries, by condition code;
#: codes not here carry no value or a plain count. Seconds read as durations.
CODE_UNITS: Final[dict[str, str]] = {
    **dict.fromkeys(
        (
            "abp.hypertension",
            "abp.hypotension",
            "abp.map_high",
            "abp.map_low",
            "abp.damped",
            "nibp.hypertension",
            "nibp.hypotension",
            "nibp.map_high",
            "nibp.map_low",
        ),
        "mmHg",
    ),
    **dict.fromkeys(("spo2.desat", "spo2.desat_critical", "spo2.low_perfusion"), "%"),
    **dict.fromkeys(
        (
            "ecg.tachy",
            "ecg.tachy_extreme",
            "ecg.brady",
            "ecg.brady_extreme",
            "ecg.vt",
            "spo2.pr_ecg_mismatch",
        ),
        "bpm",
    ),
    **dict.fromkeys(("cement.over_pressure", "cement.rising_to_max", "cement.sudden_drop"), "kPa"),
    **dict.fromkeys(
        (
            "ecg.asystole",
            "nibp.overdue",
            "cement.past_working_time",
            "cement.early_injection",
            "cement.no_mix_time",
        ),
        "s",
    ),
    "recovery.check_overdue": "min",
}


def value(x: float | None, unit: str = "") -> str:
    """``x`` rounded to its unit's clinical precision, with the unit (``"87 mmHg"``);
    seconds of 60 or more as ``h:mm:ss``; ``"--"`` for no value or not a number."""
    if x is None or not math.isfinite(x):
        return "--"
    if unit == "s" and abs(x) >= 60:
        return duration(x)
    decimals = PRECISION.get(unit, 1 if abs(x) < 100 else 0)
    text = f"{x:.{decimals}f}"
    if text in ("-0", "-0.0", "-0.00"):
        text = text[1:]
    if not unit:
        return text
    return f"{text} {unit}" if unit != "%" else f"{text} %"


def alarm_value(code: str, x: float | None) -> str:
    """An alarm's value or limit with the unit of its condition code."""
    return value(x, CODE_UNITS.get(code, ""))


def duration(seconds: float) -> str:
    """``h:mm:ss`` (``-`` in front when negative): 10799.0 s reads ``2:59:59``."""
    if not math.isfinite(seconds):
        return "--"
    s = round(abs(seconds))
    sign = "-" if seconds < 0 and s else ""
    return f"{sign}{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _dt(t: float, *, utc: bool) -> datetime:
    dt = datetime.fromtimestamp(t, tz=UTC)
    return dt if utc else dt.astimezone()


def zone(t: float, *, utc: bool = False) -> str:
    """The name of the zone times are shown in (``"UTC"``, ``"CET"``...)."""
    return "UTC" if utc else (_dt(t, utc=False).tzname() or "local")


def clock(t: float, *, utc: bool = False, seconds: bool = True, with_zone: bool = True) -> str:
    """A clock time, local unless ``utc``: ``"14:03:07 CET"``."""
    text = _dt(t, utc=utc).strftime("%H:%M:%S" if seconds else "%H:%M")
    return f"{text} {zone(t, utc=utc)}" if with_zone else text


def date_time(t: float, *, utc: bool = False, with_zone: bool = True) -> str:
    """Date and clock time, local unless ``utc``: ``"2026-12-01 14:03:07 CET"``."""
    text = _dt(t, utc=utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text} {zone(t, utc=utc)}" if with_zone else text


def datum(key: str, v: object, *, utc: bool = False) -> str:
    """One datum of a room event for a person, judged by its key's suffix: ``*_t`` epoch
    times as clock times, ``*_kpa`` pressures and ``*_s`` durations with their units."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if key.endswith("_t") or key in ("t", "since"):
        return clock(float(v), utc=utc, with_zone=False)
    if key.endswith("_kpa"):
        return value(float(v), "kPa")
    if key.endswith("_s"):
        return value(float(v), "s")
    return value(float(v)) if isinstance(v, float) else str(v)


def data(items: Mapping[str, object], *, utc: bool = False) -> str:
    """A room event's data for a person: ``"injection 1, started 14:03:07, peak 3626 kPa"``."""
    return ", ".join(
        f"{k.removesuffix('_t').removesuffix('_kpa')} {datum(k, v, utc=utc)}"
        for k, v in items.items()
        if k != "by"
    )


#: Below this span a count is not turned into a rate: 2 alarms in 0.02 h are not 100/h.
MIN_RATE_HOURS: Final = 0.5


def per_hour(count: int, hours: float) -> str:
    """``"12.0/h"``, or the plain count and span when the span is too short for a rate."""
    if hours >= MIN_RATE_HOURS:
        return f"{count / hours:.1f}/h"
    return f"{count} in {duration(hours * 3600)}, too short for a rate"
