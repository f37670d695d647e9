"""The hot path's msgspec decoder accepts only what the payload contract accepts, with the
same values; everything else goes to the contract's models, which say why not."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roommon.core.errors import ProtocolError
from roommon.core.model import DataOrigin, NumericReading, SignalKind, WaveformChunk
from roommon.wire import fast_feed
from roommon.wire.payloads import (
    ReadingPayload,
    WaveformPayload,
    decode_feed,
    encode_reading,
    encode_waveform,
)

T0 = 1_767_225_600.0
#: The contract's epoch bounds (exclusive) and the nearest times inside them.
EPOCH_BOUNDS = [946_684_800.0, 946_684_800.001, 4_102_444_799.999, 4_102_444_800.0]


def contract(model: type[WaveformPayload | ReadingPayload], payload: bytes) -> Any:
    """What the contract's model makes of ``payload``: its fields, or None if it refuses."""
    try:
        return model.model_validate_json(payload).model_dump()
    except ValueError:
        return None


def assert_agrees(payload: bytes) -> bool:
    """The fast decoders take ``payload`` only if the contract does, with equal fields.
    True when the waveform or reading decoder took it."""
    took = False
    for fast, model in ((fast_feed.waveform, WaveformPayload), (fast_feed.reading, ReadingPayload)):
        got = fast(payload)
        if got is None:
            continue
        took = True
        assert msgspec.structs.asdict(got) == contract(model, payload), payload
    return took


# -------------------------------------------------------------- strategies

floats_any: st.SearchStrategy[Any] = st.floats(allow_nan=True, allow_infinity=True)
numbers: st.SearchStrategy[Any] = (
    st.integers(-(2**70), 2**70) | floats_any | st.sampled_from([0, -0.0, 1e308, 1e-320])
)
junk: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.text(max_size=4) | st.just([]) | st.just({})
)


Field = tuple[st.SearchStrategy[Any], tuple[Any, ...]]


def field(good: st.SearchStrategy[Any], *wrong: Any) -> Field:
    """A field's valid values, and wrong ones (just past a bound, of a near type)."""
    return good, wrong


def bad(f: Field) -> st.SearchStrategy[Any]:
    """A wrong value of the field: one of its own, or any number or other JSON value."""
    return st.sampled_from(f[1]) | numbers | junk


@st.composite
def objects(
    draw: st.DrawFn, fields: dict[str, Field], required: set[str], *, valid: bool = False
) -> dict[str, Any]:
    """A valid JSON object of ``fields`` (optional ones present or not), or (unless
    ``valid``) one with one or two things wrong: a field's value, a required field
    missing, an unknown field."""
    obj = {k: draw(good) for k, (good, _) in fields.items() if k in required or draw(st.booleans())}
    how = (
        "valid"
        if valid
        else draw(st.sampled_from(["valid", "bad", "two bad", "missing", "unknown"]))
    )
    wrong = sorted(draw(st.sets(st.sampled_from(sorted(fields)), min_size=1, max_size=2)))
    for name in wrong[: {"bad": 1, "two bad": 2}.get(how, 0)]:
        obj[name] = draw(bad(fields[name]))
    if how == "missing":
        obj.pop(draw(st.sampled_from(sorted(required))))
    if how == "unknown":
        obj[draw(st.sampled_from(["extra", "t", "t0", "values", "samples"]))] = draw(junk | numbers)
    return obj


WAVEFORM_FIELDS: dict[str, Field] = {
    "v": field(st.just(1), 1.0, True, 2, "1", None, 0),
    "kind": field(st.sampled_from(["ecg", "pleth", "abp", "cement_pressure"]), "", "ECG", "x"),
    "seq": field(st.integers(0, 2**53 - 1), 2**53, -1, 1.5, 3.0, "3", True, 2**64),
    "t0": field(
        st.floats(1e9, 4e9) | st.sampled_from(EPOCH_BOUNDS[1:3]),
        EPOCH_BOUNDS[0],
        EPOCH_BOUNDS[3],
        5e9,
        "1767225600",
    ),
    "fs": field(st.floats(0.001, 2000) | st.sampled_from([250, 2000]), 0, -1, 2000.000001, "250"),
    "unit": field(st.sampled_from(["mV", "au", "kPa"]), 1, None, ["mV"]),
    "n": field(st.integers(1, 100_000), 0, 100_001, 1.0, "1", True),
    "origin": field(st.sampled_from([o.value for o in DataOrigin]), "LIVE", "x", 0),
    "encoding": field(st.sampled_from(["json", "i16le-b64", "f32le-b64"]), "JSON", "x", ""),
    "samples": field(
        st.lists(st.floats(-1e6, 1e6) | st.integers(-1000, 1000), max_size=6),
        [1, "2"],
        [True],
        [None],
        [[1]],
        [1e308, 1e-320],
        {"0": 1},
    ),
    "data": field(st.text(max_size=8) | st.none(), "A" * 600_001, ["AAAA"]),
    "gain": field(st.floats(-1e6, 1e6) | st.integers(-9, 9), "1", True, [1]),
    "offset": field(st.floats(-1e6, 1e6), "0", False, {}),
}
WAVEFORM_REQUIRED = {"v", "kind", "seq", "t0", "fs", "unit", "n"}

READING_FIELDS: dict[str, Field] = {
    "v": WAVEFORM_FIELDS["v"],
    "kind": field(st.sampled_from(["spo2", "nibp"]), "SPO2", "x", ""),
    "seq": WAVEFORM_FIELDS["seq"],
    "t": WAVEFORM_FIELDS["t0"],
    "values": field(
        st.dictionaries(
            st.sampled_from(["spo2", "pulse_rate", "systolic", "x"]),
            st.floats(0, 300) | st.integers(0, 300) | st.none(),
            max_size=3,
        ),
        {"spo2": "97"},
        {"spo2": True},
        {"spo2": [97]},
        {"spo2": {}},
        [],
        {"spo2": 1e308},
    ),
    "origin": WAVEFORM_FIELDS["origin"],
    "flags": field(
        st.lists(st.text(max_size=40), max_size=32),
        ["x" * 41],
        ["é" * 41],
        ["a"] * 33,
        [1],
        [None],
        "searching",
    ),
}
READING_REQUIRED = {"v", "kind", "seq", "t", "values"}


# -------------------------------------------------------------- agreement


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects(WAVEFORM_FIELDS, WAVEFORM_REQUIRED) | objects(READING_FIELDS, READING_REQUIRED))
def test_fast_decoders_accept_only_what_the_contract_accepts(obj: dict[str, Any]) -> None:
    assert_agrees(json.dumps(obj, allow_nan=True).encode())


def _each_wrong_value() -> list[Any]:
    return [
        pytest.param(fields, required, name, value, id=f"{kind}.{name}={value!r:.20}")
        for kind, fields, required in (
            ("waveform", WAVEFORM_FIELDS, WAVEFORM_REQUIRED),
            ("reading", READING_FIELDS, READING_REQUIRED),
        )
        for name, (_, wrong) in fields.items()
        for value in wrong
    ]


@pytest.mark.parametrize(("fields", "required", "name", "value"), _each_wrong_value())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_wrong_value_is_left_to_the_contract(
    fields: dict[str, Field], required: set[str], name: str, value: Any, data: st.DataObject
) -> None:
    """Every field in turn, with each of its wrong values in an otherwise valid payload."""
    obj = data.draw(objects(fields, required, valid=True))
    obj[name] = value
    assert_agrees(json.dumps(obj, allow_nan=True).encode())


@pytest.mark.parametrize(
    "payload",
    [
        # duplicate keys: the last one counts, for both
        b'{"v":1,"kind":"spo2","seq":"x","seq":3,"t":1767225600,"values":{"spo2":97}}',
        b'{"v":1,"kind":"spo2","seq":3,"seq":"x","t":1767225600,"values":{"spo2":97}}',
        b'{"v":1,"kind":"spo2","seq":3,"t":1767225600,"values":{"spo2":97,"spo2":null}}',
        # whitespace, escapes, a BOM, trailing text, numbers out of a float's range
        b' {"v" : 1 ,"kind":"spo2","seq":3,"t":1767225600,"values":{"spo2":97}}\n\t',
        b'{"v":1,"kind":"\\u0073po2","seq":3,"t":1767225600,"values":{"spo2":97}}',
        b'\xef\xbb\xbf{"v":1,"kind":"spo2","seq":3,"t":1767225600,"values":{"spo2":97}}',
        b'{"v":1,"kind":"spo2","seq":3,"t":1767225600,"values":{"spo2":97}} x',
        b'{"v":1,"kind":"spo2","seq":3,"t":1767225600,"values":{"spo2":1e400}}',
        b'{"v":1,"kind":"spo2","seq":3,"t":1767225600,"values":{"spo2":97},"flags":["\\ud800"]}',
        b'{"v":1,"kind":"spo2","seq":3,"t":1767225600,"values":{"\xff":97}}',
        b'{"v":1,"kind":"ecg","seq":3,"t0":1767225600,"fs":250,"unit":"mV","n":1,"samples":[1e400]}',
        b'{"v":1,"kind":"ecg","seq":3,"t0":1767225600,"fs":250,"unit":"mV","n":1,"samples":[NaN]}',
        b'{"v":1,"kind":"ecg","seq":3,"t0":1767225600,"fs":250,"unit":"mV","n":1,"samples":[1],'
        b'"gain":-Infinity}',
        b'{"v":1,"kind":"ecg","seq":3.0,"t0":1767225600,"fs":250,"unit":"mV","n":1,"samples":[1]}',
        b'{"v":1,"kind":"ecg","seq":3,"t0":1767225600,"fs":250,"unit":"mV","n":1e0,"samples":[1]}',
        b'{"v":1,"kind":"ecg","seq":3,"t0":1767225600,"fs":250,"unit":"mV","n":1,"samples":null}',
        b'{"v":1,"kind":"ecg","seq":18446744073709551616,"t0":1767225600,"fs":250,"unit":"mV",'
        b'"n":1,"samples":[1]}',
    ],
)
def test_edge_payloads_agree_with_the_contract(payload: bytes) -> None:
    assert_agrees(payload)


# -------------------------------------------------------------- the fast path is taken


def test_what_the_project_sends_is_taken_by_the_fast_path() -> None:
    """The encoders' payloads (simulators, tests, the bench's profile) never need pydantic."""
    chunk = WaveformChunk(
        room="r",
        feed="ekg",
        kind=SignalKind.ECG,
        unit="mV",
        fs=250.0,
        t0=T0,
        samples=np.sin(np.linspace(0, 3, 50)),
        seq=9,
        origin=DataOrigin.SIMULATED,
    )
    reading = NumericReading(
        room="r",
        feed="spo2",
        kind=SignalKind.SPO2,
        t=T0,
        values={"spo2": 97.0, "pulse_rate": float("nan")},
        seq=4,
        flags=frozenset({"searching"}),
    )
    i16 = {
        "v": 1,
        "kind": "ecg",
        "seq": 8,
        "t0": T0,
        "fs": 250,
        "unit": "mV",
        "n": 2,
        "encoding": "i16le-b64",
        "gain": 0.001,
        "data": base64.b64encode(b"\x01\x00\xff\xff").decode(),
    }
    for payload in (encode_waveform(chunk), encode_reading(reading), json.dumps(i16).encode()):
        assert assert_agrees(payload), payload


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-10, 10), min_size=1, max_size=300),
    st.integers(0, 2**53 - 1),
    st.floats(946_684_801, 4_102_444_799),
)
def test_every_valid_json_chunk_is_taken_by_the_fast_path(
    samples: list[float], seq: int, t0: float
) -> None:
    body = {"v": 1, "kind": "ecg", "seq": seq, "t0": t0, "fs": 250, "unit": "mV"}
    payload = json.dumps({**body, "n": len(samples), "samples": samples}).encode()
    assert assert_agrees(payload)
    out = decode_feed(
        payload, room="r", feed="f", kind=SignalKind.ECG, unit="mV", fs=250.0, max_bytes=1 << 20
    )
    assert isinstance(out, WaveformChunk)
    np.testing.assert_array_equal(out.samples, np.array(samples, dtype=np.float64))
    assert (out.seq, out.t0) == (seq, t0)


def test_what_the_fast_path_refuses_is_rejected_with_the_contracts_reason() -> None:
    """A payload the fast decoder does not take still gets the models' words for it."""
    bad = b'{"v":1,"kind":"spo2","seq":"12","t":1767225600,"values":{"spo2":95}}'
    assert fast_feed.reading(bad) is None
    with pytest.raises(ProtocolError) as err:
        decode_feed(bad, room="r", feed="f", kind=SignalKind.SPO2, unit="%", fs=0.0, max_bytes=999)
    assert (err.value.reason, err.value.detail) == (
        "invalid",
        'seq: Input should be a valid integer (got the JSON string "12")',
    )
