"""NIBP check: limits per reading and the overdue watchdog on a virtual clock."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from roommon.checks.base import CheckContext, FeedView
from roommon.checks.declarations.nibp import NibpSettings
from roommon.checks.nibp import NibpCheck
from roommon.core.clock import VirtualClock
from roommon.core.conditions import ConditionReport
from roommon.core.model import NumericReading, SignalKind
from simulators.nibp import NibpSimulator


class Room:
    """Drives the check like the pipeline: readings as they come, ticks each second."""

    def __init__(self, clock: VirtualClock, sim: NibpSimulator, **cfg: float) -> None:
        self.clock = clock
        self.sim = sim
        feeds = {"nibp": FeedView("nibp", SignalKind.NIBP, 0.0, "mmHg")}
        self.check = NibpCheck(room="or1", settings=NibpSettings(**cfg), feeds=feeds)
        self.ctx = CheckContext(room="or1", check="nibp")
        self.reports: list[ConditionReport] = []

    async def run_for(self, seconds: float) -> None:
        for _ in range(round(seconds)):
            await self.clock.advance(1.0)
            now = self.clock.now()
            for r in self.sim.readings_until(now):
                self.check.on_reading(r, self.ctx)
            self.check.on_tick(now, self.ctx)
            self.reports += self.ctx.drain()[0]

    def active(self, code: str) -> bool:
        reps = [r for r in self.reports if r.spec.code == code]
        return bool(reps) and reps[-1].active

    def onsets(self, code: str) -> list[float]:
        return [r.t for r in self.reports if r.spec.code == code and r.active]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def test_normal_pressure_raises_nothing(clock: VirtualClock) -> None:
    room = Room(clock, NibpSimulator(t0=clock.now()))
    await room.run_for(1800)
    assert [r for r in room.reports if r.active] == []


async def test_hypotension_and_low_map_follow_the_readings(clock: VirtualClock) -> None:
    sim = NibpSimulator(t0=clock.now(), jitter_mmhg=0.0)
    room = Room(clock, sim)
    await room.run_for(10)
    sim.set_pressure(systolic=82.0, diastolic=45.0)  # mean 57
    await room.run_for(300)
    assert room.active("nibp.hypotension")
    assert room.active("nibp.map_low")
    rep = next(r for r in room.reports if r.spec.code == "nibp.hypotension")
    assert rep.value == pytest.approx(82.0)
    assert rep.limit == 90.0
    sim.set_pressure(systolic=118.0, diastolic=70.0)
    await room.run_for(300)
    assert not room.active("nibp.hypotension")
    assert not room.active("nibp.map_low")


async def test_hypertension_with_configured_limit(clock: VirtualClock) -> None:
    sim = NibpSimulator(t0=clock.now(), jitter_mmhg=0.0)
    room = Room(clock, sim, systolic_high_mmhg=140.0)
    sim.set_pressure(systolic=150.0, diastolic=85.0)
    await room.run_for(5)
    assert room.active("nibp.hypertension")
    assert not room.active("nibp.map_high")  # mean 106.7 < 110


async def test_nibp_overdue_after_cycle_plus_margin(clock: VirtualClock) -> None:
    sim = NibpSimulator(t0=clock.now(), cycle_s=300.0)
    room = Room(clock, sim, cycle_s=300.0, overdue_margin_s=60.0)
    await room.run_for(650)  # readings at 0, 300, 600
    assert room.onsets("nibp.overdue") == []
    start = clock.now() - 650.0
    sim.stop_sending()
    await room.run_for(400)
    onsets = room.onsets("nibp.overdue")
    assert len(onsets) == 1
    # last reading at +600 s; overdue at the first tick more than 360 s later
    assert onsets[0] - start == pytest.approx(961.0)
    sim.resume_sending()
    await room.run_for(300)
    assert not room.active("nibp.overdue")


async def test_overdue_without_any_reading_counts_from_start(clock: VirtualClock) -> None:
    sim = NibpSimulator(t0=clock.now())
    sim.stop_sending()
    room = Room(clock, sim)
    await room.run_for(359)
    assert not room.active("nibp.overdue")
    await room.run_for(3)
    assert room.active("nibp.overdue")


def test_unmeasured_field_is_never_compared() -> None:
    check = NibpCheck(room="or1", settings=NibpSettings(), feeds={})
    ctx = CheckContext(room="or1", check="nibp")
    low = NumericReading(
        room="or1",
        feed="nibp",
        kind=SignalKind.NIBP,
        t=1.0,
        seq=1,
        values={"systolic": 80.0, "diastolic": 50.0, "mean": 60.0},
    )
    check.on_reading(low, ctx)
    partial = NumericReading(
        room="or1",
        feed="nibp",
        kind=SignalKind.NIBP,
        t=2.0,
        seq=2,
        values={"systolic": math.nan, "diastolic": math.nan, "mean": 70.0},
    )
    check.on_reading(partial, ctx)
    reps = ctx.drain()[0]
    states = {r.spec.code: r.active for r in reps}
    assert states["nibp.hypotension"] is True  # NaN systolic did not clear it
    assert states["nibp.map_low"] is False  # the measured mean did


def test_limits_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="systolic_low_mmhg"):
        NibpSettings(systolic_low_mmhg=170.0)
