"""roommon line protocol v1: golden frames from docs/serial-protocol.md, rejects, fuzz."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roommon.core.clock import VirtualClock
from roommon.core.model import DataOrigin, NumericReading, SignalKind, WaveformChunk
from roommon.drivers import DRIVERS, RoommonLineDriver
from roommon.drivers.base import Driver
from roommon.drivers.roommon_line import crc16_ccitt
from roommon.testing.drivers import balanced
from simulators.serial_devices import encode_rm1_numeric, encode_rm1_waveform, rm1_frame

DOC = Path(__file__).resolve().parent.parent / "docs" / "serial-protocol.md"
NOW = 1_767_225_600.0


def make(*, device_id: str | None = None) -> RoommonLineDriver:
    return RoommonLineDriver(
        room="or1", feed="cement", origin=DataOrigin.LIVE, clock=VirtualClock(start=NOW),
        device_id=device_id,
    )


def test_registry_names_the_driver() -> None:
    assert DRIVERS["roommon_line"] is RoommonLineDriver


def test_crc_check_value_and_worked_example() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert crc16_ccitt(b"R") == 0x9B47
    assert crc16_ccitt(b"RM") == 0xECBB
    assert crc16_ccitt(b"RM1") == 0xA1D0
    assert crc16_ccitt(b"RM1,CEM01,42,W,cement_pressure,kPa,100,101.5;102;103.25") == 0x0DB0


def test_doc_golden_lines_match_the_reference_encoder() -> None:
    """The golden block in the document is what the encoder writes, byte for byte."""
    text = DOC.read_text()
    block = text.split("## 10. Golden examples", 1)[1]
    lines = re.findall(r"^(\$RM1.*)\\r\\n$", block, flags=re.M)
    assert len(lines) == 5
    for line in lines:
        body, crc = line[1:].split("*")
        assert rm1_frame(body) == (line + "\r\n").encode()
        assert int(crc, 16) == crc16_ccitt(body.encode())


def test_golden_cement_waveform() -> None:
    d = make()
    [chunk] = d.feed(b"$RM1,CEM01,42,W,cement_pressure,kPa,100,101.5;102;103.25*0DB0\r\n")
    assert isinstance(chunk, WaveformChunk)
    assert chunk.room == "or1"
    assert chunk.feed == "cement"
    assert chunk.kind is SignalKind.CEMENT_PRESSURE
    assert chunk.unit == "kPa"
    assert chunk.fs == 100.0
    assert chunk.seq == 42
    np.testing.assert_array_equal(chunk.samples, [101.5, 102.0, 103.25])
    assert chunk.t0 == pytest.approx(NOW - 0.03)
    assert chunk.origin is DataOrigin.LIVE
    assert d.counters.frames_good == 1
    assert balanced(d)


def test_golden_ecg_with_missing_sample() -> None:
    [chunk] = make().feed(b"$RM1,ECGFE,1200,W,ecg,mV,250,0.012;0.015;-;0.02*2B71\r\n")
    assert isinstance(chunk, WaveformChunk)
    assert chunk.kind is SignalKind.ECG
    assert chunk.fs == 250.0
    assert chunk.seq == 1200
    assert chunk.samples[0] == 0.012
    assert chunk.samples[1] == 0.015
    assert math.isnan(chunk.samples[2])
    assert chunk.samples[3] == 0.02


def test_golden_abp() -> None:
    [chunk] = make().feed(b"$RM1,ABP2,7,W,abp,mmHg,125,81.5;82;83.1;85.6;88*46E4\r\n")
    assert isinstance(chunk, WaveformChunk)
    assert chunk.kind is SignalKind.ABP
    assert chunk.unit == "mmHg"
    np.testing.assert_array_equal(chunk.samples, [81.5, 82.0, 83.1, 85.6, 88.0])


def test_golden_nibp_and_sequence_wrap() -> None:
    d = make()
    out = d.feed(
        b"$RM1,NIBP7,65535,N,nibp,-,systolic=128;diastolic=79;mean=95*8E3B\r\n"
        b"$RM1,NIBP7,0,N,nibp,cuff_leak,systolic=-;diastolic=-;mean=-*6355\r\n"
    )
    first, second = out
    assert isinstance(first, NumericReading)
    assert first.kind is SignalKind.NIBP
    assert first.values == {"systolic": 128.0, "diastolic": 79.0, "mean": 95.0}
    assert first.flags == frozenset()
    assert first.t == NOW
    assert isinstance(second, NumericReading)
    assert second.seq == first.seq + 1  # 65535 -> 0 is the next frame, not a gap
    assert second.flags == {"cuff_leak"}
    assert all(math.isnan(v) for v in second.values.values())


def test_lowercase_crc_and_bare_lf_accepted() -> None:
    [chunk] = make().feed(b"$RM1,CEM01,42,W,cement_pressure,kPa,100,101.5;102;103.25*0db0\n")
    assert isinstance(chunk, WaveformChunk)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"$RM1,CEM01,42,W,cement_pressure,kPa,100,101.5;102;103.25*0DB1\r\n", "bad_checksum"),
        (rm1_frame("RM2,CEM01,42,W,cement_pressure,kPa,100,1"), "unsupported_version"),
        (rm1_frame("RM1,CEM01,42,W,cement_pressure,psi,100,1"), "bad_unit"),
        (rm1_frame("RM1,CEM01,42,W,temperature,C,100,1"), "unknown_kind"),
        (rm1_frame("RM1,CEM01,42,W,nibp,mmHg,100,1"), "unknown_kind"),
        (rm1_frame("RM1,CEM01,42,X,cement_pressure,kPa,100,1"), "unknown_type"),
        (rm1_frame("RM1,CEM01,42,W,cement_pressure,kPa,0,1"), "bad_field"),
        (rm1_frame("RM1,CEM01,42,W,cement_pressure,kPa,100,1;;2"), "bad_field"),
        (rm1_frame("RM1,CEM01,42,W,cement_pressure,kPa,100,1e3"), "bad_field"),
        (rm1_frame("RM1,CEM01,70000,W,cement_pressure,kPa,100,1"), "bad_field"),
        (rm1_frame("RM1,CEM01,1,W,cement_pressure,kPa,100," + ";".join(["1"] * 257)), "bad_field"),
        (rm1_frame("RM1,CEM01,42,W,cement_pressure,kPa,100"), "bad_format"),
        (rm1_frame("RM1,NIBP7,1,N,nibp,Bad Flag,systolic=1"), "bad_field"),
        (b"$RM1,CEM01,42,W,cement_pressure,kPa,100,1\r\n", "bad_format"),
    ],
)
def test_rejects_with_reason_and_keeps_the_next_frame(line: bytes, reason: str) -> None:
    d = make()
    good = encode_rm1_waveform(
        device_id="CEM01", seq=43, kind="cement_pressure", unit="kPa", fs=100, samples=[5.0]
    )
    out = d.feed(line + good)
    assert d.counters.frames_bad == {reason: 1}
    assert [s.seq for s in out] == [43]
    assert d.counters.bytes_discarded == len(line)
    assert balanced(d)


def test_wrong_device_rejected_when_feed_names_its_device() -> None:
    d = make(device_id="CEM01")
    frame = encode_rm1_waveform(
        device_id="CEM02", seq=1, kind="cement_pressure", unit="kPa", fs=100, samples=[5.0]
    )
    assert d.feed(frame) == []
    assert d.counters.frames_bad == {"wrong_device": 1}


def test_unknown_numeric_field_counted_rest_kept() -> None:
    d = make()
    [reading] = d.feed(
        rm1_frame("RM1,NIBP7,3,N,nibp,-,systolic=120;heart_rate=70;diastolic=80;mean=x")
    )
    assert isinstance(reading, NumericReading)
    assert reading.values["systolic"] == 120.0
    assert reading.values["diastolic"] == 80.0
    assert math.isnan(reading.values["mean"])
    assert d.counters.fields_bad == {"unknown_field": 1, "bad_field": 1}
    assert d.counters.frames_good == 1


def test_garbage_before_frame_on_same_line_is_discarded_not_a_bad_frame() -> None:
    d = make()
    garbage = b"\x00\xff$R*zz"
    good = rm1_frame("RM1,CEM01,1,W,cement_pressure,kPa,100,1;2")
    assert len(d.feed(garbage + good)) == 1
    assert d.counters.frames_bad == {}
    assert d.counters.bytes_discarded == len(garbage)


def test_too_long_line_cut_and_stream_recovers() -> None:
    d = make()
    d.feed(b"$RM1," + b"9" * 5000)
    assert d.counters.frames_bad == {"too_long": 1}
    assert d.pending_bytes <= 4096
    out = d.feed(b"\r\n" + rm1_frame("RM1,CEM01,1,W,cement_pressure,kPa,100,1"))
    assert len(out) == 1
    assert balanced(d)


def test_reset_discards_half_frame_as_truncated() -> None:
    d = make()
    d.feed(b"$RM1,CEM01,1,W,cem")
    d.reset()
    assert d.pending_bytes == 0
    assert d.counters.frames_bad == {"truncated": 1}
    assert balanced(d)


# ---------------------------------------------------------------- fuzz

samples_st = st.lists(
    st.floats(min_value=-1000, max_value=10000, allow_nan=False).map(lambda v: round(v, 3)),
    min_size=1,
    max_size=30,
)


def _frames(values: list[list[float]]) -> list[bytes]:
    return [
        encode_rm1_waveform(
            device_id="CEM01", seq=i, kind="cement_pressure", unit="kPa", fs=50, samples=v
        )
        for i, v in enumerate(values)
    ]


def _decode(d: Driver, pieces: list[bytes]) -> list[tuple[int, list[float]]]:
    out = []
    for p in pieces:
        for s in d.feed(p):
            assert isinstance(s, WaveformChunk)
            out.append((s.seq, s.samples.tolist()))
    return out


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(samples_st, min_size=1, max_size=8),
    garbage=st.lists(st.binary(max_size=60), min_size=9, max_size=9),
)
def test_fuzz_garbage_between_frames_loses_no_frame(
    values: list[list[float]], garbage: list[bytes]
) -> None:
    frames = _frames(values)
    # Garbage that ends in a line end cannot glue itself to the next frame's start;
    # garbage that does not is cut off by the next "$RM" on the same line.
    stream = b"".join(g + f for g, f in zip(garbage, frames, strict=False))
    d = make()
    got = _decode(d, [stream])
    assert got == [(i, v) for i, v in enumerate(values)]
    assert d.counters.frames_good == len(frames)
    assert balanced(d)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(samples_st, min_size=2, max_size=8),
    victim=st.integers(0, 7),
    mode=st.sampled_from(["truncate", "flip", "crc"]),
    cut=st.integers(1, 200),
)
def test_fuzz_one_damaged_frame_costs_only_itself(
    values: list[list[float]], victim: int, mode: str, cut: int
) -> None:
    frames = _frames(values)
    victim %= len(frames)
    bad = frames[victim]
    if mode == "truncate":
        bad = bad[: cut % (len(bad) - 2) + 1]  # lost the tail including CR LF
    elif mode == "flip":
        pos = 1 + cut % (len(bad) - 9)  # inside the body
        bad = bad[:pos] + bytes([bad[pos] ^ 0x01]) + bad[pos + 1 :]
    else:
        bad = bad[:-6] + (b"0000" if bad[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
    frames[victim] = bad
    d = make()
    got = _decode(d, [b"".join(frames)])
    expected = [(i, v) for i, v in enumerate(values) if i != victim]
    # A truncated head glues onto the next frame's line, which still starts a fresh
    # "$RM1": only the damaged frame is lost.
    assert got == expected
    assert sum(d.counters.frames_bad.values()) <= 1
    assert balanced(d)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(samples_st, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 10**6)))
def test_fuzz_chunking_does_not_change_result(values: list[list[float]], cuts: list[int]) -> None:
    stream = b"".join(_frames(values))
    bounds = sorted({0, len(stream), *[c % (len(stream) + 1) for c in cuts]})
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    whole = _decode(make(), [stream])
    assert _decode(make(), pieces) == whole == [(i, v) for i, v in enumerate(values)]


def test_numeric_encoder_round_trip() -> None:
    frame = encode_rm1_numeric(
        device_id="NIBP7",
        seq=5,
        kind="nibp",
        values={"systolic": 141.0, "diastolic": math.nan, "mean": 101.0},
        flags={"motion"},
    )
    [reading] = make().feed(frame)
    assert isinstance(reading, NumericReading)
    assert reading.values["systolic"] == 141.0
    assert math.isnan(reading.values["diastolic"])
    assert reading.flags == {"motion"}
