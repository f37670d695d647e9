"""Nonin serial data format 2: golden frames captured from a real device, status flags, fuzz."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roommon.core.clock import VirtualClock
from roommon.core.model import DataOrigin, NumericReading, SignalKind, WaveformChunk
from roommon.drivers import DRIVERS, NoninFormat2Driver
from roommon.drivers.base import DriverSample
from roommon.drivers.nonin import FS_HZ
from roommon.testing.drivers import balanced
from simulators.serial_devices import encode_nonin_packet, nonin_frame, synthetic_pleth

NOW = 1_767_225_600.0

# 30 frames captured from a Nonin 9560 in data format 2, published in the comments
# of diozero NoninPulseOx DataFormat2FrameSerialiser.java. Frame 5 (status 0x81)
# carries SYNC; frames 5..29 form one complete packet, frame 30 starts the next.
CAPTURE = bytes.fromhex(
    "01804900CA 0180464A11 01804400C5 01804300C4 01814300C5 0180434A0E 0180436024"
    "0180439458 01804300C4 01804100C2 01803E17D6 01803C04C1 018039601A 0180366017"
    "0180356016 01803400B5 01803400B5 01803400B5 0180354A00 0180366017 0180376018"
    "01803A00BB 01804000C1 01804A00CB 0180574A22 01806900EA 01807C4A47 0180900011"
    "0180A10022 0181AF0031".replace(" ", "")
)


def make() -> NoninFormat2Driver:
    return NoninFormat2Driver(
        room="or3", feed="pleth", origin=DataOrigin.LIVE, clock=VirtualClock(start=NOW)
    )


def test_registry_names_the_driver() -> None:
    assert DRIVERS["nonin_fmt2"] is NoninFormat2Driver


def test_capture_checksums_are_modulo_256_sums() -> None:
    for i in range(0, len(CAPTURE), 5):
        f = CAPTURE[i : i + 5]
        assert sum(f[:4]) % 256 == f[4]


def test_golden_capture_decodes_field_by_field() -> None:
    d = make()
    out = d.feed(CAPTURE)
    head, packet, reading = out
    assert isinstance(head, WaveformChunk)
    # The 4 frames before the first SYNC are the tail of an earlier packet.
    np.testing.assert_array_equal(head.samples, [0x49, 0x46, 0x44, 0x43])
    assert isinstance(packet, WaveformChunk)
    assert packet.kind is SignalKind.PLETH
    assert packet.unit == "au"
    assert packet.fs == FS_HZ == 75.0
    assert packet.seq == head.seq + 1
    assert len(packet.samples) == 25
    assert packet.samples[0] == 0x43
    assert packet.samples[-1] == 0xA1
    assert packet.t0 == pytest.approx(NOW - 25 / 75)
    assert isinstance(reading, NumericReading)
    assert reading.kind is SignalKind.SPO2
    # Frame 1 HR MSB 0x00, frame 2 HR LSB 0x4A -> 74 bpm; frame 3 SpO2 0x60 -> 96 %.
    assert reading.values["pulse_rate"] == 74.0
    assert reading.values["spo2"] == 96.0
    assert math.isnan(reading.values["perfusion_index"])
    assert reading.flags == frozenset()
    assert reading.t == NOW
    assert d.counters.frames_good == 30
    assert d.counters.frames_bad == {}
    assert d.pending_bytes == 0
    assert balanced(d)


def test_hr_above_127_uses_the_msb_frame() -> None:
    out = make().feed(encode_nonin_packet(pleth=[100] * 25, spo2=88, pulse_rate=203) * 2)
    readings = [s for s in out if isinstance(s, NumericReading)]
    assert [r.values["pulse_rate"] for r in readings] == [203.0, 203.0]


def test_missing_codes_become_nan() -> None:
    out = make().feed(
        encode_nonin_packet(pleth=[0] * 25, spo2=math.nan, pulse_rate=math.nan, status=0x40)
    )
    [reading] = [s for s in out if isinstance(s, NumericReading)]
    assert math.isnan(reading.values["spo2"])
    assert math.isnan(reading.values["pulse_rate"])
    assert reading.flags == {"no_sensor"}


@pytest.mark.parametrize(
    ("status", "low_battery", "flags"),
    [
        (0x20, False, {"artifact"}),
        (0x10, False, {"out_of_track"}),
        (0x08, False, {"sensor_alarm"}),
        (0x04, False, {"low_perfusion"}),
        (0x06, False, {"marginal_perfusion"}),
        (0x02, False, set()),  # green perfusion: good signal
        (0x30, True, {"artifact", "out_of_track", "low_battery"}),
    ],
)
def test_status_bits_map_to_flags(status: int, low_battery: bool, flags: set[str]) -> None:
    out = make().feed(
        encode_nonin_packet(pleth=[9] * 25, spo2=97, pulse_rate=60, status=status,
                            low_battery=low_battery)
    )
    [reading] = [s for s in out if isinstance(s, NumericReading)]
    assert reading.flags == flags


def test_bad_checksum_in_lock_counted_once_and_next_packet_decoded() -> None:
    d = make()
    p0 = encode_nonin_packet(pleth=list(range(25)), spo2=95, pulse_rate=70)
    bad = bytearray(encode_nonin_packet(pleth=list(range(25)), spo2=95, pulse_rate=71))
    bad[5 * 10 + 4] ^= 0xFF  # checksum of frame 11
    p2 = encode_nonin_packet(pleth=list(range(25)), spo2=94, pulse_rate=72)
    out = d.feed(p0 + bytes(bad) + p2)
    readings = [s for s in out if isinstance(s, NumericReading)]
    assert [r.values["pulse_rate"] for r in readings] == [70.0, 72.0]
    assert d.counters.frames_bad == {"bad_checksum": 1}
    chunks = [s for s in out if isinstance(s, WaveformChunk)]
    # 10 good frames of the damaged packet are kept as a short chunk, then a seq gap.
    assert [len(c.samples) for c in chunks] == [25, 10, 14, 25]
    assert [c.seq for c in chunks] == [0, 1, 3, 4]
    assert balanced(d)


def test_reset_drops_partial_frame_and_packet() -> None:
    d = make()
    data = encode_nonin_packet(pleth=[1] * 25, spo2=95, pulse_rate=70)
    d.feed(data[:33])
    d.reset()
    assert d.counters.frames_bad == {"truncated": 1}
    assert balanced(d)
    out = d.feed(data)
    assert any(isinstance(s, NumericReading) for s in out)


# ---------------------------------------------------------------- fuzz

packet_st = st.tuples(
    st.lists(st.integers(0, 255), min_size=25, max_size=25),
    st.one_of(st.just(math.nan), st.integers(0, 100).map(float)),
    st.one_of(st.just(math.nan), st.integers(0, 300).map(float)),
    st.sampled_from([0, 0x02, 0x04, 0x06, 0x10, 0x20, 0x40]),
)


def _packets(specs: list[tuple[list[int], float, float, int]]) -> list[bytes]:
    return [
        encode_nonin_packet(pleth=p, spo2=s, pulse_rate=hr, status=stat)
        for p, s, hr, stat in specs
    ]


def _summary(out: list[DriverSample]) -> tuple[list[float], list[tuple[float, float]]]:
    pleth: list[float] = []
    readings = []
    for s in out:
        if isinstance(s, WaveformChunk):
            pleth.extend(s.samples.tolist())
        else:
            readings.append((s.values["spo2"], s.values["pulse_rate"]))
    return pleth, readings


def _nan_eq(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return len(a) == len(b) and all(
        all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(p, q, strict=True))
        for p, q in zip(a, b, strict=True)
    )


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(packet_st, min_size=1, max_size=4),
    garbage=st.lists(st.binary(max_size=40), min_size=4, max_size=4),
)
def test_fuzz_garbage_between_packets_loses_no_packet(
    specs: list[tuple[list[int], float, float, int]], garbage: list[bytes]
) -> None:
    packets = _packets(specs)
    d = make()
    out = d.feed(b"".join(g + p for g, p in zip(garbage, packets, strict=False)))
    pleth, readings = _summary(out)
    # Every packet's 25 samples arrive (garbage never forms two valid frames in a row).
    assert pleth[-25 * len(specs) :] == [float(v) for s in specs for v in s[0]]
    assert _nan_eq(readings, [(s, hr) for _, s, hr, _ in specs])
    assert balanced(d)


@settings(max_examples=100, deadline=None)
@given(
    specs=st.lists(packet_st, min_size=3, max_size=3),
    frame=st.integers(0, 23),
    keep=st.integers(1, 4),
    flip=st.booleans(),
)
def test_fuzz_damaged_frame_costs_at_most_its_packet(
    specs: list[tuple[list[int], float, float, int]], frame: int, keep: int, flip: bool
) -> None:
    packets = _packets(specs)
    damaged = bytearray(packets[1])
    at = frame * 5
    if flip:
        damaged[at + 4] ^= 0x5A  # checksum no longer matches
    else:
        del damaged[at + keep : at + 5]  # frame cut short
    d = make()
    out = d.feed(packets[0] + bytes(damaged) + packets[2])
    pleth, readings = _summary(out)
    assert pleth[:25] == [float(v) for v in specs[0][0]]
    assert pleth[-25:] == [float(v) for v in specs[2][0]]
    assert _nan_eq([readings[0], readings[-1]], [specs[0][1:3], specs[2][1:3]])
    assert sum(d.counters.frames_bad.values()) >= 1
    assert balanced(d)


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(packet_st, min_size=1, max_size=3), cuts=st.lists(st.integers(0, 10**6)))
def test_fuzz_chunking_does_not_change_result(
    specs: list[tuple[list[int], float, float, int]], cuts: list[int]
) -> None:
    stream = b"".join(_packets(specs))
    bounds = sorted({0, len(stream), *[c % (len(stream) + 1) for c in cuts]})
    d1, d2 = make(), make()
    whole = d1.feed(stream)
    pieces = [s for a, b in itertools.pairwise(bounds) for s in d2.feed(stream[a:b])]
    assert _summary(pieces)[0] == _summary(whole)[0]
    assert _nan_eq(_summary(pieces)[1], _summary(whole)[1])
    assert [getattr(s, "seq", None) for s in pieces] == [getattr(s, "seq", None) for s in whole]
    assert d1.counters.snapshot() == d2.counters.snapshot()


def test_simulated_pleth_round_trips() -> None:
    pleth = synthetic_pleth(75, fs=FS_HZ, pulse_rate=72)
    stream = b"".join(
        encode_nonin_packet(pleth=pleth[i : i + 25], spo2=97, pulse_rate=72) for i in (0, 25, 50)
    )
    samples, readings = _summary(make().feed(stream))
    assert samples == pleth.astype(float).tolist()
    assert readings == [(97.0, 72.0)] * 3


def test_single_frame_helper_matches_spec() -> None:
    assert nonin_frame(0x81, 0x43, 0x00) == bytes.fromhex("01814300C5")
