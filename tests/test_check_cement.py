"""Cement-injection check: scenario tests on sample time, and chunking invariance.

Every scenario streams the cement simulator through the check the way the room
pipeline does (``on_chunk`` per chunk, ``on_tick`` on the clock) and asserts on the raw
condition reports and room events the check produced.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from roommon.checks.base import FeedView
from roommon.checks.cement import CementCheck
from roommon.checks.declarations.cement import CementSettings
from roommon.core.events import CementMixed
from roommon.core.model import SignalKind, WaveformChunk
from roommon.testing.checks import CheckHarness
from simulators.cement import CementPressureSimulator

FS = 100.0


class Run(CheckHarness[CementCheck]):
    def feed(self, chunks: list[WaveformChunk]) -> None:
        for c in chunks:
            self.chunk(c)


def make_run(**overrides: float) -> Run:
    cfg = CementSettings(**overrides)
    feeds = {"cement": FeedView("cement", SignalKind.CEMENT_PRESSURE, FS, "kPa")}
    return Run(CementCheck(room="or1", settings=cfg, feeds=feeds))


def test_defaults_cite_their_source() -> None:
    for name, f in CementSettings.model_fields.items():
        assert f.description, name
    assert CementSettings().max_pressure_kpa == 3200.0  # ~3.2 MPa published maximum


def test_inverted_injection_levels_are_refused() -> None:
    with pytest.raises(ValidationError, match="inject_off_kpa"):
        CementSettings(inject_on_kpa=100.0, inject_off_kpa=150.0)


def test_pressure_spike_raises_over_pressure_and_clears() -> None:
    sim = CementPressureSimulator(fs=FS, seed=1)
    run = make_run()
    run.feed(sim.seconds(5))
    sim.inject(level_kpa=1700.0)
    run.feed(sim.seconds(10))
    assert run.onsets("cement.over_pressure") == []
    t_spike = sim.t
    sim.spike(peak_kpa=3800.0, duration_s=0.6)
    run.feed(sim.seconds(5))
    onsets = run.onsets("cement.over_pressure")
    assert len(onsets) == 1
    assert t_spike < onsets[0] < t_spike + 0.6
    assert not run.active("cement.over_pressure")  # cleared once the spike passed
    rep = next(r for r in run.reports if r.spec.code == "cement.over_pressure")
    assert rep.value is not None
    assert rep.value > 3200.0
    assert rep.limit == 3200.0


def test_sudden_drop_during_injection_is_reported_but_a_normal_pause_is_not() -> None:
    sim = CementPressureSimulator(fs=FS, seed=2)
    run = make_run()
    sim.inject(level_kpa=1700.0)
    run.feed(sim.seconds(12))
    sim.pause()  # the operator stops pushing: pressure relaxes to rest
    run.feed(sim.seconds(8))
    assert run.onsets("cement.sudden_drop") == []
    sim.inject(level_kpa=1700.0)
    run.feed(sim.seconds(10))
    t_drop = sim.t
    sim.drop(fraction=0.5, fall_s=0.3)  # leak: pressure halves, injection goes on
    run.feed(sim.seconds(10))
    onsets = run.onsets("cement.sudden_drop")
    assert len(onsets) == 1
    assert t_drop < onsets[0] <= t_drop + 1.5
    assert not run.active("cement.sudden_drop")  # raw condition ends; the engine latches


@pytest.mark.parametrize(
    ("fs", "seed", "spike_s"),
    [(50.0, 1, 1.5), (50.0, 2, 0.6), (100.0, 3, 1.5), (100.0, 4, 1.8), (50.0, 5, 1.0)],
)
def test_spike_returning_to_the_plateau_is_not_a_drop(fs: float, seed: int, spike_s: float) -> None:
    # The demo's injector spike: 3.6 MPa for 1.5 s during a 1.7 MPa plateau. Its
    # return to the plateau is a fall of ~50 % within a second, but from a level
    # held for less than drop_reference_hold_s (2 s): over-pressure, not a leak.
    sim = CementPressureSimulator(fs=fs, seed=seed)
    run = make_run()
    sim.inject(level_kpa=1700.0)
    run.feed(sim.seconds(15))
    t_spike = sim.t
    sim.spike(peak_kpa=3600.0, duration_s=spike_s)
    run.feed(sim.seconds(10))
    over = run.onsets("cement.over_pressure")
    assert len(over) == 1
    assert t_spike < over[0] < t_spike + spike_s
    assert run.onsets("cement.sudden_drop") == []
    # A real leak from the same plateau is still found within drop_window_s (1 s),
    # give or take one 0.25 s segment.
    t_drop = sim.t
    sim.drop(fraction=0.5, fall_s=0.3)
    run.feed(sim.seconds(10))
    onsets = run.onsets("cement.sudden_drop")
    assert len(onsets) == 1
    assert t_drop < onsets[0] <= t_drop + 1.0 + 0.25


def test_leak_right_after_a_spike_is_still_a_drop() -> None:
    sim = CementPressureSimulator(fs=50.0, seed=6)
    run = make_run()
    sim.inject(level_kpa=1700.0)
    run.feed(sim.seconds(15))
    sim.spike(peak_kpa=3600.0, duration_s=1.5)
    run.feed(sim.seconds(3))
    t_drop = sim.t
    sim.drop(fraction=0.5, fall_s=0.3)
    run.feed(sim.seconds(10))
    onsets = run.onsets("cement.sudden_drop")
    assert len(onsets) == 1
    assert t_drop < onsets[0] <= t_drop + 1.25


def test_rising_trend_warns_before_the_maximum() -> None:
    sim = CementPressureSimulator(fs=FS, seed=3, cure_rate_kpa_s=120.0)
    run = make_run()
    sim.inject(level_kpa=1500.0, ramp_s=3.0)
    run.feed(sim.seconds(30))  # curing fast: ~1500 -> ~5000 kPa
    rising = run.onsets("cement.rising_to_max")
    over = run.onsets("cement.over_pressure")
    assert rising
    assert over
    assert rising[0] < over[0] - 5.0  # a warning several seconds ahead


def test_steady_plateau_raises_nothing() -> None:
    sim = CementPressureSimulator(fs=FS, seed=4)
    run = make_run()
    run.event(CementMixed(t=sim.t - 300.0, feed="command", by="test"))
    sim.inject(level_kpa=1700.0)
    run.feed(sim.seconds(60))
    assert [r for r in run.reports if r.active] == []


def test_injection_past_working_time() -> None:
    sim = CementPressureSimulator(fs=FS, seed=5)
    run = make_run(working_time_s=600.0)
    run.event(CementMixed(t=sim.t, feed="command", by="test"))
    run.feed(sim.seconds(300))
    sim.inject()
    run.feed(sim.seconds(20))  # 5 min after mixing: fine
    sim.pause()
    run.feed(sim.seconds(275))
    assert run.onsets("cement.past_working_time") == []
    sim.inject()
    run.feed(sim.seconds(20))  # minute ~10: past the 600 s working time
    onsets = run.onsets("cement.past_working_time")
    assert len(onsets) == 1
    rep = next(r for r in run.reports if r.spec.code == "cement.past_working_time")
    assert rep.value is not None
    assert rep.value > 600.0
    sim.pause()
    run.feed(sim.seconds(5))
    assert not run.active("cement.past_working_time")


def test_early_injection_and_missing_mix_time() -> None:
    sim = CementPressureSimulator(fs=FS, seed=6)
    run = make_run()
    sim.inject()
    run.feed(sim.seconds(10))
    assert run.active("cement.no_mix_time")
    run.event(CementMixed(t=sim.t - 30.0, feed="command", by="test"))
    run.feed(sim.seconds(4))
    assert not run.active("cement.no_mix_time")
    assert run.active("cement.early_injection")  # 30 s after mixing < 240 s dough time


def test_injection_ended_is_published_once_per_injection() -> None:
    sim = CementPressureSimulator(fs=FS, seed=7)
    run = make_run(end_after_s=60.0)
    run.feed(sim.seconds(10))
    for _ in range(2):  # two injections, each with a short pause in the middle
        sim.inject()
        run.feed(sim.seconds(20))
        sim.pause()
        run.feed(sim.seconds(20))  # a pause shorter than end_after_s
        sim.inject()
        run.feed(sim.seconds(20))
        sim.pause()
        run.feed(sim.seconds(90))  # long enough: the injection ended
    assert len(run.named("cement.injection_started")) == 2
    ended = run.named("cement.injection_ended")
    assert [e.data()["injection"] for e in ended] == [1, 2]
    for e in ended:
        assert e.data()["last_injecting_t"] + 60.0 == pytest.approx(e.t)
        assert 1600.0 < e.data()["peak_kpa"] < 2000.0
    phases = [e.data()["phase"] for e in run.named("cement.phase")]
    assert phases == ["injecting", "paused", "injecting", "paused", "ended"] * 2
    # and the clock does not end it a second time
    run.tick(sim.t + 600.0)
    assert len(run.named("cement.injection_ended")) == 2


def test_clock_ends_injection_when_the_feed_falls_silent() -> None:
    sim = CementPressureSimulator(fs=FS, seed=8)
    run = make_run(end_after_s=60.0)
    sim.inject()
    run.feed(sim.seconds(20))
    sim.pause()
    run.feed(sim.seconds(10))  # then the transducer is unplugged
    run.tick(sim.t + 30.0)
    assert run.named("cement.injection_ended") == []
    run.tick(sim.t + 80.0)
    ended = run.named("cement.injection_ended")
    assert len(ended) == 1
    assert ended[0].t == pytest.approx(ended[0].data()["last_injecting_t"] + 60.0)


def test_peak_pressure_measurement() -> None:
    sim = CementPressureSimulator(fs=FS, seed=9)
    run = make_run()
    sim.inject(level_kpa=2000.0)
    run.feed(sim.seconds(15))
    peaks = [m.value for m in run.measurements if m.name == "cement_peak_pressure"]
    assert peaks == sorted(peaks)
    assert 1950.0 < peaks[-1] < 2300.0


def _scenario() -> list[WaveformChunk]:
    sim = CementPressureSimulator(fs=50.0, seed=11)
    out = sim.seconds(3)
    sim.inject(level_kpa=1700.0)
    out += sim.seconds(8)
    sim.spike(peak_kpa=3500.0)
    out += sim.seconds(4)
    sim.drop(fraction=0.5)
    out += sim.seconds(4)
    sim.pause()
    out += sim.seconds(70)
    return out


SCENARIO = np.concatenate([c.samples for c in _scenario()])
T0 = _scenario()[0].t0


def _run_chunked(sizes: list[int]) -> Run:
    run = make_run()
    run.check.on_event(CementMixed(t=T0 - 300.0, feed="command", by="test"), run.ctx)
    i, k, seq = 0, 0, 0
    chunks = []
    while i < len(SCENARIO):
        n = sizes[k % len(sizes)]
        seq += 1
        chunks.append(
            WaveformChunk(
                room="or1",
                feed="cement",
                kind=SignalKind.CEMENT_PRESSURE,
                unit="kPa",
                fs=50.0,
                t0=T0 + i / 50.0,
                samples=SCENARIO[i : i + n],
                seq=seq,
            )
        )
        i += n
        k += 1
    run.feed(chunks)
    return run


REFERENCE = _run_chunked([50])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=8))
def test_any_chunking_gives_the_same_result(sizes: list[int]) -> None:
    run = _run_chunked(sizes)

    def summary(r: Run) -> list[tuple[str, bool, float]]:
        return [(c.spec.code, c.active, round(c.t, 6)) for c in r.reports]

    assert summary(run) == summary(REFERENCE)
    assert [(e.name, round(e.t, 6)) for e in run.events] == [
        (e.name, round(e.t, 6)) for e in REFERENCE.events
    ]
    codes = {c.spec.code for c in REFERENCE.reports if c.active}
    assert {"cement.over_pressure", "cement.sudden_drop"} <= codes
