"""Fixed blocks and the streaming pulse detector: chunking invariance, gaps, beat values."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import find_peaks

from roommon.core.model import FloatArray
from roommon.signal.blocks import BlockAssembler
from roommon.signal.pulses import PulseDetector, pulse_peaks
from roommon.signal.summaries import cv_of, median_of, rms_step, roughness, std_of
from roommon.signal.thresholds import hysteresis_state, transitions
from simulators.abp import ArterialPressureSimulator

FS = 125.0
SIGNAL = ArterialPressureSimulator(fs=FS, seed=4, rate_bpm=80.0).next_samples(125 * 40)


def _beats(sizes: list[int]) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    det = PulseDetector(fs=FS, min_prominence=3.0)
    asm = BlockAssembler(block_n=500, fs=FS)
    out = []

    def sink(block: FloatArray, t: float, restarted: bool) -> None:
        out.append(det.process(block, t, restarted))

    i = k = 0
    while i < len(SIGNAL):
        n = sizes[k % len(sizes)]
        asm.push(SIGNAL[i : i + n], 100.0 + i / FS, sink)
        i, k = i + n, k + 1
    return tuple(
        np.concatenate([getattr(b, f) for b in out]) for f in ("t", "peak", "trough", "mean")
    )  # type: ignore[return-value]


REFERENCE = _beats([len(SIGNAL)])


def test_beats_match_the_simulated_pressures() -> None:
    t, peak, trough, mean = REFERENCE
    assert 45 <= len(t) <= 52  # 80 bpm over 40 s, minus the 2 s lookahead and first beat
    np.testing.assert_allclose(np.diff(t), 0.75, atol=0.02)
    assert np.all(np.abs(peak - 120.0) < 3.0)
    assert np.all(np.abs(trough - 75.0) < 3.0)
    assert np.all((mean > trough) & (mean < peak))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=10))
def test_any_chunking_gives_identical_beats(sizes: list[int]) -> None:
    got = _beats(sizes)
    for a, b in zip(got, REFERENCE, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_gap_restarts_the_block_and_the_time_origin() -> None:
    asm = BlockAssembler(block_n=10, fs=10.0)
    seen: list[tuple[float, bool, int]] = []

    def sink(block: FloatArray, t: float, restarted: bool) -> None:
        seen.append((t, restarted, int(block[0])))

    asm.push(np.arange(15.0), 0.0, sink)
    asm.push(np.arange(15.0, 20.0), 1.5, sink)  # continues: t0 as expected
    asm.push(np.arange(100.0, 120.0), 10.0, sink)  # a gap of 8 s
    assert seen == [(0.0, True, 0), (1.0, False, 10), (10.0, True, 100), (11.0, False, 110)]


def test_hysteresis_and_transitions() -> None:
    x = np.array([0.0, 5.0, 11.0, 9.0, 4.0, 3.0, 12.0, 1.0])
    s = hysteresis_state(x, on_above=10.0, off_below=5.0, state=False)
    assert s.tolist() == [False, False, True, True, False, False, True, False]
    idx, new = transitions(s, before=False)
    assert idx.tolist() == [2, 4, 6, 7]
    assert new.tolist() == [True, False, True, False]
    assert hysteresis_state(x[2:4] * 0 + 7.0, on_above=10.0, off_below=5.0, state=True).all()


def test_summaries_match_numpy() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 10):
        a = rng.normal(80.0, 15.0, n)
        assert median_of(a) == float(np.median(a))
        assert abs(std_of(a) - float(a.std())) < 1e-9
    a = rng.normal(0.0, 1.0, 1000)
    assert abs(rms_step(a) - float(np.sqrt(np.mean(np.diff(a) ** 2)))) < 1e-12


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=1, max_value=40),
    st.floats(min_value=0.0, max_value=2.0),
    st.booleans(),
)
def test_pulse_peaks_is_find_peaks(
    seed: int, distance: int, prominence: float, quantised: bool
) -> None:
    # pulse_peaks calls find_peaks' compiled steps directly; it must agree exactly,
    # including on plateaus (quantised device values).
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(0.0, 1.0, 600))
    if quantised:
        x = np.round(x)
    wlen = 2 * distance + 21
    peaks, prom = pulse_peaks(x, distance=distance, min_prominence=prominence, wlen=wlen)
    ref, props = find_peaks(x, distance=distance, prominence=prominence, wlen=wlen)
    assert np.array_equal(peaks, ref)
    assert np.array_equal(prom, props["prominences"])


def test_cv_and_roughness_match_numpy() -> None:
    rng = np.random.default_rng(3)
    for n in (2, 3, 7, 10, 300):
        a = rng.uniform(0.5, 2.0, n)
        assert abs(cv_of(a) - float(a.std() / a.mean())) < 1e-9
        step, spread = roughness(a)
        assert abs(step - float(np.sqrt(np.mean(np.diff(a) ** 2)))) < 1e-9
        assert abs(spread - float(a.std())) < 1e-9
