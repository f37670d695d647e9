"""Masimo Radical ASCII 1 output: golden lines from public sources, flags, fuzz."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roommon.core.clock import VirtualClock
from roommon.core.model import DataOrigin, NumericReading, SignalKind
from roommon.drivers import DRIVERS, MasimoAsciiDriver
from roommon.testing.drivers import balanced
from simulators.serial_devices import encode_masimo_line

NOW = 1_767_225_600.0

# Example lines as given in the MD PnP OpenICE Radical driver (poxrad_discrete.h).
RADICAL7 = (
    b"12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% "
    b"SPCO=01.0% SPMET=00.5% DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820\r\n"
)
RADICAL5 = b"09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n"
# The line format of the roommon issue, with unavailable SpCO/SpMet/DESAT.
RADICAL7_DASHES = (
    b"07/15/25 14:30:05 SN=0000012345 SPO2=098% BPM=072 PI=02.50% SPCO=--.-% "
    b"SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
)


def make() -> MasimoAsciiDriver:
    return MasimoAsciiDriver(
        room="or2", feed="spo2", origin=DataOrigin.LIVE, clock=VirtualClock(start=NOW)
    )


def one(d: MasimoAsciiDriver, data: bytes) -> NumericReading:
    [reading] = d.feed(data)
    assert isinstance(reading, NumericReading)
    return reading


def test_registry_names_the_driver() -> None:
    assert DRIVERS["masimo_ascii"] is MasimoAsciiDriver


def test_golden_radical7_line() -> None:
    d = make()
    r = one(d, RADICAL7)
    assert r.room == "or2"
    assert r.feed == "spo2"
    assert r.kind is SignalKind.SPO2
    assert r.t == NOW
    assert r.values == {"spo2": 98.0, "pulse_rate": 240.0, "perfusion_index": 20.0}
    # EXC=000820: 0x800 "Masimo SET" (informational) + 0x020 "Sensor Off".
    assert r.flags == {"sensor_off"}
    assert d.counters.frames_good == 1
    assert d.counters.fields_bad == {}
    assert balanced(d)


def test_golden_radical5_line_short_hex_fields() -> None:
    d = make()
    r = one(d, RADICAL5)
    assert r.values == {"spo2": 97.0, "pulse_rate": 64.0, "perfusion_index": 11.82}
    # ALARM=20: alarm silenced; EXC=800: Masimo SET only.
    assert r.flags == {"device_alarm_silenced"}


def test_golden_dashes_are_nan_not_zero() -> None:
    d = make()
    r = one(d, RADICAL7_DASHES)
    assert r.values == {"spo2": 98.0, "pulse_rate": 72.0, "perfusion_index": 2.5}
    r2 = one(
        d,
        b"07/15/25 14:30:06 SN=0000012345 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% "
        b"SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000001\r\n",
    )
    assert all(math.isnan(v) for v in r2.values.values())
    assert r2.flags == {"no_sensor"}
    assert r2.seq == r.seq + 1


@pytest.mark.parametrize(
    ("exc", "alarm", "flags"),
    [
        (0x000004, 0, {"low_perfusion"}),
        (0x000008, 0, {"searching"}),
        (0x000400, 0, {"low_signal_iq"}),
        (0x000021, 0, {"no_sensor", "sensor_off"}),
        (0x001000, 0x0040, {"no_cable", "low_battery"}),
        (0, 0x0012, {"device_alarm_spo2_low", "device_alarm_active"}),
    ],
)
def test_exception_and_alarm_bits_map_to_flags(exc: int, alarm: int, flags: set[str]) -> None:
    line = encode_masimo_line(
        t=NOW, spo2=95, pulse_rate=80, perfusion_index=1.2, alarm=alarm, exceptions=exc
    )
    assert one(make(), line).flags == flags


def test_unknown_field_and_reserved_bit_counted_rest_kept() -> None:
    d = make()
    line = encode_masimo_line(
        t=NOW, spo2=93, pulse_rate=61, perfusion_index=0.4, exceptions=0x800200, extra="SPHB=13.2"
    )
    r = one(d, line)
    assert r.values == {"spo2": 93.0, "pulse_rate": 61.0, "perfusion_index": 0.4}
    assert d.counters.fields_bad == {"unknown_field": 1, "unknown_bit": 1}
    assert d.counters.frames_good == 1


def test_malformed_value_is_nan_and_counted() -> None:
    d = make()
    r = one(d, b"07/15/25 14:30:05 SPO2=9X8% BPM=072 PI=02.50% ALARM=00G0 EXC=000000\r\n")
    assert math.isnan(r.values["spo2"])
    assert r.values["pulse_rate"] == 72.0
    assert d.counters.fields_bad == {"bad_field": 2}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"07/15/25 14:30:05 SN=1 ALARM=0000 EXC=000000\r\n", "bad_format"),
        (b"07/15/25 14:30:05 SPO2=0\x8598% BPM=072\r\n", "bad_format"),
        (b"07/15/25 14:30:05 SPO2=098% " + b"X=1 " * 200 + b"\r\n", "too_long"),
    ],
)
def test_bad_lines_rejected_next_line_kept(line: bytes, reason: str) -> None:
    d = make()
    out = d.feed(line + RADICAL7)
    assert d.counters.frames_bad == {reason: 1}
    assert len(out) == 1
    assert balanced(d)


def test_half_line_after_plug_in_is_discarded() -> None:
    d = make()
    out = d.feed(b"=072 PI=02.50% ALARM=0000 EXC=000000\r\n" + RADICAL7)
    assert len(out) == 1
    assert d.counters.frames_bad == {}
    assert d.counters.bytes_discarded == 38


# ---------------------------------------------------------------- fuzz

reading_st = st.tuples(
    st.one_of(st.just(math.nan), st.integers(0, 100).map(float)),
    st.one_of(st.just(math.nan), st.integers(0, 300).map(float)),
    st.one_of(st.just(math.nan), st.integers(2, 2000).map(lambda v: v / 100)),
    st.integers(0, 0x3FFF),
    st.integers(0, 0x7FFFFF),
)


def _lines(readings: list[tuple[float, float, float, int, int]]) -> list[bytes]:
    return [
        encode_masimo_line(
            t=NOW + i, spo2=s, pulse_rate=p, perfusion_index=pi, alarm=a & ~0x80, exceptions=e
        )
        for i, (s, p, pi, a, e) in enumerate(readings)
    ]


def _values(out: Sequence[object]) -> list[tuple[float, ...]]:
    res = []
    for r in out:
        assert isinstance(r, NumericReading)
        res.append(tuple(r.values[k] for k in ("spo2", "pulse_rate", "perfusion_index")))
    return res


def _same(a: Sequence[tuple[float, ...]], b: Sequence[tuple[float, ...]]) -> bool:
    return len(a) == len(b) and all(
        all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(p, q, strict=True))
        for p, q in zip(a, b, strict=True)
    )


@settings(max_examples=150, deadline=None)
@given(
    readings=st.lists(reading_st, min_size=1, max_size=6),
    garbage=st.lists(st.binary(max_size=80), min_size=6, max_size=6),
)
def test_fuzz_garbage_between_lines_loses_no_line(
    readings: list[tuple[float, float, float, int, int]], garbage: list[bytes]
) -> None:
    lines = _lines(readings)
    d = make()
    out = d.feed(b"".join(g + line for g, line in zip(garbage, lines, strict=False)))
    expected = [(s, p, pi) for s, p, pi, _, _ in readings]
    assert _same(_values(out), expected)
    assert balanced(d)


@settings(max_examples=100, deadline=None)
@given(readings=st.lists(reading_st, min_size=2, max_size=6), victim=st.integers(0, 5),
       cut=st.integers(1, 200))
def test_fuzz_truncated_line_costs_only_itself(
    readings: list[tuple[float, float, float, int, int]], victim: int, cut: int
) -> None:
    lines = _lines(readings)
    victim %= len(lines)
    lines[victim] = lines[victim][: cut % (len(lines[victim]) - 2)]
    d = make()
    out = d.feed(b"".join(lines))
    expected = [(s, p, pi) for i, (s, p, pi, _, _) in enumerate(readings) if i != victim]
    assert _same(_values(out), expected)
    assert balanced(d)


@settings(max_examples=100, deadline=None)
@given(readings=st.lists(reading_st, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 10**6)))
def test_fuzz_chunking_does_not_change_result(
    readings: list[tuple[float, float, float, int, int]], cuts: list[int]
) -> None:
    stream = b"".join(_lines(readings))
    bounds = sorted({0, len(stream), *[c % (len(stream) + 1) for c in cuts]})
    d1, d2 = make(), make()
    whole = d1.feed(stream)
    pieces = [s for a, b in itertools.pairwise(bounds) for s in d2.feed(stream[a:b])]
    assert _same(_values(pieces), _values(whole))
    assert [r.flags for r in pieces if isinstance(r, NumericReading)] == [
        r.flags for r in whole if isinstance(r, NumericReading)
    ]
    assert d1.counters.snapshot() == d2.counters.snapshot()
