"""A harness that drives one check as the room pipeline does and keeps what it reports.

``CheckHarness(check)`` calls the check's hooks with a fresh
:class:`~roommon.checks.base.CheckContext` and collects the condition reports,
measurements and room events; the query helpers answer what tests ask of
them (is a condition active now, when did it start, how long did it last).
:class:`ProbeCheck` is a check for tests of the pipeline itself: it keeps what
it is given and fails when told to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Generic, TypeVar

import numpy as np

from roommon.checks.base import Check, CheckContext, CheckSettings, FeedView, Measurement
from roommon.core.conditions import ConditionReport, ConditionSpec
from roommon.core.events import RoomEvent
from roommon.core.model import FloatArray, NumericReading, SignalKind, WaveformChunk

C = TypeVar("C", bound=Check)


class CheckHarness(Generic[C]):
    def __init__(self, check: C, *, room: str = "or1") -> None:
        self.check = check
        self.ctx = CheckContext(room=room, check=check.name)
        self.reports: list[ConditionReport] = []
        self.measurements: list[Measurement] = []
        self.events: list[RoomEvent] = []

    # ------------------------------------------------------------------ driving

    def chunk(self, chunk: WaveformChunk) -> None:
        self.check.on_chunk(chunk, self.ctx)
        self.drain()

    def reading(self, reading: NumericReading) -> None:
        self.check.on_reading(reading, self.ctx)
        self.drain()

    def measurement(self, m: Measurement) -> None:
        self.check.on_measurement(m, self.ctx)
        self.drain()

    def event(self, e: RoomEvent) -> None:
        self.check.on_event(e, self.ctx)
        self.drain()

    def tick(self, now: float) -> None:
        self.check.on_tick(now, self.ctx)
        self.drain()

    def drain(self) -> None:
        reports, measurements, events = self.ctx.drain()
        self.reports += reports
        self.measurements += measurements
        self.events += events

    # ------------------------------------------------------------------ queries

    def active(self, code: str) -> bool:
        """The condition's latest report says present."""
        reps = [r for r in self.reports if r.spec.code == code]
        return bool(reps) and reps[-1].active

    def onsets(self, code: str) -> list[float]:
        return [r.t for r in self.reports if r.spec.code == code and r.active]

    def durations(self, code: str, *, until: float) -> list[float]:
        """Length of each stretch the raw condition was present (the last one up to ``until``)."""
        out: list[float] = []
        start: float | None = None
        for r in self.reports:
            if r.spec.code != code:
                continue
            if r.active and start is None:
                start = r.t
            elif not r.active and start is not None:
                out.append(r.t - start)
                start = None
        if start is not None:
            out.append(until - start)
        return out

    def values(self, name: str) -> list[float]:
        return [m.value for m in self.measurements if m.name == name]

    def named(self, name: str) -> list[RoomEvent]:
        return [e for e in self.events if e.name == name]


class ProbeSettings(CheckSettings):
    fail_on_chunk: bool = False
    fail_on_tick: bool = False


class ProbeCheck(Check):
    """A test-only check: keeps every sample it is given and raises when told to.

    Register it for a test with ``monkeypatch.setitem(CHECKS, ProbeCheck.name,
    ProbeCheck)``; a room's ``[checks.probe]`` table then runs it.
    """

    name: ClassVar[str] = "probe"
    needs: ClassVar[frozenset[SignalKind]] = frozenset(SignalKind)
    settings_model: ClassVar[type[CheckSettings]] = ProbeSettings
    conditions: ClassVar[tuple[ConditionSpec, ...]] = ()

    def __init__(
        self, *, room: str, settings: CheckSettings, feeds: Mapping[str, FeedView]
    ) -> None:
        super().__init__(room=room, settings=settings, feeds=feeds)
        assert isinstance(settings, ProbeSettings)
        self.cfg = settings
        self.chunks: list[WaveformChunk] = []

    def on_chunk(self, chunk: WaveformChunk, ctx: CheckContext) -> None:
        self.chunks.append(chunk)
        if self.cfg.fail_on_chunk:
            raise RuntimeError("probe check told to fail on every chunk")

    def on_tick(self, now: float, ctx: CheckContext) -> None:
        if self.cfg.fail_on_tick:
            raise RuntimeError("probe check told to fail on every tick")

    def samples(self) -> FloatArray:
        return np.concatenate([c.samples for c in self.chunks]) if self.chunks else np.empty(0)
