"""Payload contract: committed schemas match the models; decoding rejects with reasons."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roommon.core.errors import ProtocolError
from roommon.core.model import SignalKind, WaveformChunk
from roommon.wire.payloads import decode_feed, encode_waveform
from roommon.wire.registry import SCHEMA_DIR, all_models, schema_text

T0 = 1_767_225_600.0


@pytest.mark.parametrize("name", sorted(all_models()))
def test_committed_schema_matches_its_model(name: str) -> None:
    committed = (SCHEMA_DIR / f"{name}.schema.json").read_text()
    assert committed == schema_text(all_models()[name]), (
        f"roommon/wire/schemas/{name}.schema.json is stale: run python -m roommon.wire.registry"
    )


def decode(payload: bytes, kind: SignalKind = SignalKind.ECG) -> Any:
    return decode_feed(
        payload,
        room="r",
        feed="f",
        kind=kind,
        unit="mV" if kind.is_waveform else "%",
        fs=250.0 if kind.is_waveform else 0.0,
        max_bytes=65536,
    )


def test_waveform_roundtrip_json_and_int16() -> None:
    samples = np.sin(np.linspace(0, 6, 250))
    chunk = WaveformChunk(
        room="r", feed="f", kind=SignalKind.ECG, unit="mV", fs=250.0, t0=T0, samples=samples, seq=7
    )
    out = decode(encode_waveform(chunk))
    assert (out.seq, out.t0, out.fs) == (7, T0, 250.0)
    np.testing.assert_allclose(out.samples, samples, atol=1e-5)
    raw = np.round(samples / 0.001).astype("<i2").tobytes()
    compact = {
        "v": 1,
        "kind": "ecg",
        "seq": 8,
        "t0": T0,
        "fs": 250,
        "unit": "mV",
        "n": 250,
        "encoding": "i16le-b64",
        "gain": 0.001,
        "data": base64.b64encode(raw).decode(),
    }
    out = decode(json.dumps(compact).encode())
    np.testing.assert_allclose(out.samples, samples, atol=0.0006)


def test_numeric_null_is_unavailable_not_zero() -> None:
    out = decode(
        json.dumps(
            {"v": 1, "kind": "spo2", "seq": 1, "t": T0, "values": {"spo2": None, "pulse_rate": 71}}
        ).encode(),
        SignalKind.SPO2,
    )
    assert np.isnan(out.values["spo2"])
    assert out.values["pulse_rate"] == 71


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"", "bad_json", ""),
        (b"[1,2]", "invalid", ""),
        (
            b'{"v":1,"kind":"ecg","seq":1,"t0":1767225600,"fs":250,"unit":"mV","n":2,'
            b'"gain":Infinity,"samples":[1,2]}',
            "non_finite",
            "gain",
        ),
        (
            b'{"v":2,"kind":"ecg","seq":1,"t0":1767225600,"fs":250,"unit":"mV","n":1,'
            b'"samples":[1]}',
            "invalid",
            "v:",
        ),
        (
            b'{"v":1,"kind":"ecg","seq":-1,"t0":1767225600,"fs":250,"unit":"mV","n":1,'
            b'"samples":[1]}',
            "invalid",
            "seq:",
        ),
        (
            b'{"v":1,"kind":"ecg","seq":1,"t0":12,"fs":250,"unit":"mV","n":1,"samples":[1]}',
            "invalid",
            "t0:",
        ),
        (
            b'{"v":1,"kind":"pleth","seq":1,"t0":1767225600,"fs":250,"unit":"mV","n":1,'
            b'"samples":[1]}',
            "wrong_kind",
            "kind:",
        ),
        (
            b'{"v":1,"kind":"ecg","seq":1,"t0":1767225600,"fs":250,"unit":"uV","n":1,'
            b'"samples":[1]}',
            "wrong_unit",
            "unit:",
        ),
        (
            b'{"v":1,"kind":"ecg","seq":1,"t0":1767225600,"fs":250,"unit":"mV","n":1,'
            b'"encoding":"i16le-b64","data":"!!"}',
            "invalid",
            "base64",
        ),
        (
            b'{"v":1,"kind":"ecg","seq":1,"t0":1767225600,"fs":250,"unit":"mV","n":1,'
            b'"encoding":"i16le-b64","data":"AAAA"}',
            "sample_count",
            "int16",
        ),
        (
            b'{"v":1,"kind":"ecg","seq":1,"t0":1767225600,"fs":250,"unit":"mV","n":1}',
            "invalid",
            "samples",
        ),
        (b"x" * 70000, "oversized", "70000 bytes"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: str, detail: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(payload)
    assert err.value.reason == reason
    assert detail in err.value.detail


@pytest.mark.parametrize("encoding", ["json", "f32le-b64"])
def test_nan_and_inf_samples_are_decoded_for_the_room_to_cut_out(encoding: str) -> None:
    """Issue 11, defect 10: a bad sample is the room's to cut out, not the chunk's end."""
    samples = np.array([0.5, np.nan, np.inf, -np.inf, 0.25])
    body: dict[str, Any] = {"v": 1, "kind": "ecg", "seq": 1, "t0": T0, "fs": 250, "unit": "mV"}
    body.update(n=5, encoding=encoding)
    if encoding == "json":
        body["samples"] = samples.tolist()
    else:
        body["data"] = base64.b64encode(samples.astype("<f4").tobytes()).decode()
    out = decode(json.dumps(body).encode())
    np.testing.assert_array_equal(out.samples, samples)


READING = {"v": 1, "kind": "spo2", "seq": 12, "t": T0, "values": {"spo2": 95}}
CHUNK = {"v": 1, "kind": "ecg", "seq": 12, "t0": T0, "fs": 250, "unit": "mV", "n": 2}


@pytest.mark.parametrize(
    ("kind", "body", "field", "sent"),
    [
        (SignalKind.SPO2, {**READING, "seq": "12"}, "seq", 'string "12"'),
        (SignalKind.SPO2, {**READING, "values": {"spo2": "95"}}, "values.spo2", 'string "95"'),
        (SignalKind.SPO2, {**READING, "values": {"spo2": True}}, "values.spo2", "boolean true"),
        (SignalKind.SPO2, {**READING, "t": str(T0)}, "t", "string"),
        (SignalKind.SPO2, {**READING, "v": True}, "v", "boolean"),
        (SignalKind.SPO2, {**READING, "seq": 12.5}, "seq", "number 12.5"),
        (SignalKind.ECG, {**CHUNK, "samples": [0.1, True]}, "samples.1", "boolean true"),
        (SignalKind.ECG, {**CHUNK, "samples": [0.1, "0.2"]}, "samples.1", 'string "0.2"'),
        (SignalKind.ECG, {**CHUNK, "fs": "250", "samples": [0.1, 0.2]}, "fs", 'string "250"'),
        (SignalKind.ECG, {**CHUNK, "n": "2", "samples": [0.1, 0.2]}, "n", 'string "2"'),
    ],
)
def test_wrong_json_types_are_refused_never_coerced(
    kind: SignalKind, body: dict[str, Any], field: str, sent: str
) -> None:
    """Issue 11, defect 9: "95" or true is not an SpO2 of 95 % or 1 %."""
    with pytest.raises(ProtocolError) as err:
        decode(json.dumps(body).encode(), kind)
    assert err.value.reason == "invalid"
    assert err.value.detail.startswith(f"{field}: ")
    assert sent in err.value.detail


def test_json_integers_still_pass_as_floats() -> None:
    out = decode(json.dumps({**CHUNK, "samples": [0, 1]}).encode())
    np.testing.assert_array_equal(out.samples, [0.0, 1.0])
    assert decode(json.dumps(READING).encode(), SignalKind.SPO2).values == {"spo2": 95.0}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_only_ever_raise_protocol_error(payload: bytes) -> None:
    for kind in (SignalKind.ECG, SignalKind.SPO2):
        try:
            decode(payload, kind)
        except ProtocolError as err:
            problem = err
        else:
            continue
        assert problem.reason
        assert problem.detail


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "kind",
                "seq",
                "t0",
                "t",
                "fs",
                "unit",
                "n",
                "samples",
                "values",
                "encoding",
                "data",
                "flags",
            ]
        ),
        json_values,
        max_size=10,
    )
)
def test_arbitrary_json_objects_are_decoded_or_rejected(obj: dict[str, Any]) -> None:
    for kind in (SignalKind.ECG, SignalKind.SPO2):
        try:
            decode(json.dumps(obj).encode(), kind)
        except ProtocolError as err:
            problem = err
        else:
            continue
        assert problem.reason in {
            "bad_json",
            "invalid",
            "non_finite",
            "unknown_field",
            "sample_count",
            "wrong_kind",
            "wrong_unit",
            "wrong_rate",
            "out_of_range",
        }
