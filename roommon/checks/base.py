"""What every check is: declared needs, a window, typed settings, declared conditions.

A check sees only samples (chunks and readings from its room's feeds) and the
clock's ticks; it writes results into a :class:`CheckContext`: condition
reports for the alarm engine, measurements for the room state (heart rate,
SpO2...), and room events (``cement.injection_ended``...). It never talks to a
transport or to the alarm engine.
"""

from __future__ import annotations

import abc
import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from roommon.core.conditions import ConditionReport, ConditionSpec
from roommon.core.events import RoomEvent
from roommon.core.model import DataOrigin, NumericReading, SignalKind, WaveformChunk


class CheckSettings(BaseModel):
    """Base for every check's settings model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckDeclaration:
    """What the rest of roommon may know of a check without importing its implementation.

    The config, ``check-config`` and the display's texts read declarations
    (``roommon/checks/declarations/``): settings model, needed feed kinds and
    condition specs. Only a running room imports the implementation (numpy, the
    signal code), through :meth:`load`. An implementation takes its class
    attributes from its declaration (``class SpO2Check(Check, declaration=SPO2)``),
    so the two cannot disagree.
    """

    name: str
    needs: frozenset[SignalKind]
    settings_model: type[CheckSettings]
    conditions: tuple[ConditionSpec, ...] = ()
    optional: frozenset[SignalKind] = frozenset()
    window_s: float = 0.0
    #: ``"module:Class"`` of the implementation.
    implementation: str
    #: Conditions that follow from the settings (rule-driven checks), besides ``conditions``.
    rule_conditions: Callable[[Any], tuple[ConditionSpec, ...]] | None = None

    def condition_specs(self, settings: CheckSettings) -> tuple[ConditionSpec, ...]:
        """Every condition a check with these settings can report."""
        if self.rule_conditions is None:
            return self.conditions
        return self.conditions + self.rule_conditions(settings)

    def load(self) -> type[Check]:
        """Import the implementation (the first call costs numpy and the signal code)."""
        module, _, attr = self.implementation.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Check) and cls.name == self.name):
            raise TypeError(f"{self.implementation} is not the {self.name!r} check")
        return cls

    @classmethod
    def of(cls, check: type[Check]) -> CheckDeclaration:
        """The declaration of a check class defined without one (tests' probe checks)."""
        declared: CheckDeclaration | None = getattr(check, "declaration", None)
        if declared is not None and declared.name == check.name:
            return declared
        return cls(
            name=check.name,
            needs=check.needs,
            settings_model=check.settings_model,
            conditions=check.conditions,
            optional=check.optional,
            window_s=check.window_s,
            implementation=f"{check.__module__}:{check.__qualname__}",
        )


@dataclass(frozen=True, slots=True)
class FeedView:
    """What a check may know about one of its room's feeds."""

    name: str
    kind: SignalKind
    fs: float  # expected sample rate (0 for numeric feeds)
    unit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """A derived value for the room state, e.g. heart rate from the EKG."""

    name: str  # "heart_rate"
    value: float
    unit: str
    t: float
    feed: str
    reliable: bool = True
    label: str | None = None  # a categorical value (e.g. the EKG rhythm); value is NaN then


class CheckContext:
    """Collects what a check reports during one call; the pipeline drains it."""

    __slots__ = ("_check", "_room", "conditions", "events", "measurements", "origin")

    def __init__(self, *, room: str, check: str, origin: DataOrigin = DataOrigin.LIVE) -> None:
        self._room = room
        self._check = check
        #: Origin of the data behind this call; reports inherit it unless they say otherwise,
        #: so simulated data can never raise a "live" alarm by a check forgetting to pass it.
        self.origin = origin
        self.conditions: list[ConditionReport] = []
        self.measurements: list[Measurement] = []
        self.events: list[RoomEvent] = []

    def condition(
        self,
        spec: ConditionSpec,
        active: bool,
        *,
        t: float,
        feed: str,
        value: float | None = None,
        limit: float | None = None,
        message: str = "",
        origin: DataOrigin | None = None,
    ) -> None:
        self.conditions.append(
            ConditionReport(
                room=self._room,
                feed=feed,
                check=self._check,
                spec=spec,
                active=active,
                t=t,
                value=value,
                limit=limit,
                message=message,
                origin=origin or self.origin,
            )
        )

    def measure(self, m: Measurement) -> None:
        self.measurements.append(m)

    def event(self, e: RoomEvent) -> None:
        if e.origin is not self.origin and e.origin is DataOrigin.LIVE:
            e = replace(e, origin=self.origin)
        self.events.append(e)

    def drain(self) -> tuple[list[ConditionReport], list[Measurement], list[RoomEvent]]:
        out = (self.conditions, self.measurements, self.events)
        self.conditions, self.measurements, self.events = [], [], []
        return out


class ConditionMemory:
    """What a check last reported per (feed, condition code); it reports only changes.

    Checks evaluate their conditions on every block; the engine needs a report
    only when presence changes (repeats are harmless but cost a call each).
    """

    __slots__ = ("_active",)

    def __init__(self) -> None:
        self._active: dict[tuple[str, str], bool] = {}

    def is_active(self, feed: str, code: str) -> bool:
        return self._active.get((feed, code), False)

    def report(
        self,
        ctx: CheckContext,
        spec: ConditionSpec,
        *,
        feed: str,
        active: bool,
        t: float,
        value: float | None = None,
        limit: float | None = None,
    ) -> bool:
        """Report ``spec`` on ``feed`` if its presence changed; True when it did."""
        key = (feed, spec.code)
        if self._active.get(key, False) == active:
            return False
        self._active[key] = active
        if value is not None and not math.isfinite(value):
            value = None  # a NaN is "no value", not a number to show next to an alarm
        ctx.condition(spec, active, t=t, feed=feed, value=value, limit=limit)
        return True


class Check(abc.ABC):
    """Base class of every check.

    Subclasses set the class attributes and implement whichever hooks they
    need. ``feeds`` holds the room's feeds of the kinds in ``needs`` and
    ``optional``; the pipeline routes only those feeds' samples to the check.
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[SignalKind]]
    optional: ClassVar[frozenset[SignalKind]] = frozenset()
    window_s: ClassVar[float] = 0.0
    settings_model: ClassVar[type[CheckSettings]]
    conditions: ClassVar[tuple[ConditionSpec, ...]]
    declaration: ClassVar[CheckDeclaration | None] = None

    def __init_subclass__(cls, *, declaration: CheckDeclaration | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if declaration is not None:
            cls.declaration = declaration
            cls.name = declaration.name
            cls.needs = declaration.needs
            cls.optional = declaration.optional
            cls.window_s = declaration.window_s
            cls.settings_model = declaration.settings_model
            cls.conditions = declaration.conditions

    def __init__(
        self, *, room: str, settings: CheckSettings, feeds: Mapping[str, FeedView]
    ) -> None:
        self.room = room
        self.settings = settings
        self.feeds = dict(feeds)

    def condition_specs(self) -> tuple[ConditionSpec, ...]:
        """Conditions this instance can report (rule-driven checks extend the class list)."""
        if self.declaration is None:
            return self.conditions
        return self.declaration.condition_specs(self.settings)

    def on_chunk(self, chunk: WaveformChunk, ctx: CheckContext) -> None:  # noqa: B027 - optional hook
        """New samples of a waveform feed (already in the ring buffer)."""

    def on_reading(self, reading: NumericReading, ctx: CheckContext) -> None:  # noqa: B027
        """A new numeric reading."""

    def on_tick(self, now: float, ctx: CheckContext) -> None:  # noqa: B027
        """Called about once a second with the clock's UTC time."""

    def on_event(self, event: RoomEvent, ctx: CheckContext) -> None:  # noqa: B027
        """A room event (from another check or an operator command)."""

    def on_measurement(self, m: Measurement, ctx: CheckContext) -> None:  # noqa: B027
        """A measurement made by another check of the room (e.g. EKG heart rate)."""
