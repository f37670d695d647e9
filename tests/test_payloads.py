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
            b'"samples":[1,Infinity]}',
            "non_finite",
            "samples.1",
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
