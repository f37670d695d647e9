"""Generic limit check on numeric readings (any field of NIBP or SpO2 feeds).

The simplest physiological check: a reading field above or below a limit is
a condition; it ends only when the value is back past the limit by the rule's
hysteresis (so a value hovering on the limit is one alarm, not a flicker).
The condition delay is the alarm engine's (``delay_s`` of the rule).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from roommon.checks.base import Check, CheckContext, CheckSettings, FeedView
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority
from roommon.core.model import NUMERIC_FIELDS, NumericReading, SignalKind


class LimitRule(CheckSettings):
    kind: Literal["spo2", "nibp"] = Field(description="Feed kind the field belongs to.")
    field: str = Field(description="Reading field, e.g. 'spo2' or 'systolic'.")
    below: float | None = Field(default=None, description="Condition when value < below.")
    above: float | None = Field(default=None, description="Condition when value > above.")
    hysteresis: float = Field(default=0.0, ge=0, description="Margin back past the limit to end.")
    priority: Literal["low", "medium", "high"] = Field(
        default="medium", description="Priority of the limit alarm."
    )
    delay_s: float = Field(default=0.0, ge=0, le=300, description="Condition delay.")
    name: str = Field(default="", description="Code suffix; default FIELD_low / FIELD_high.")

    @model_validator(mode="after")
    def _valid(self) -> LimitRule:
        fields = NUMERIC_FIELDS[SignalKind(self.kind)]
        if self.field not in fields:
            raise ValueError(f"field: {self.kind} readings have no field {self.field!r}")
        if (self.below is None) == (self.above is None):
            raise ValueError("below: give exactly one of 'below' or 'above'")
        return self

    @property
    def code(self) -> str:
        side = "low" if self.below is not None else "high"
        return f"limit.{self.name or f'{self.field}_{side}'}"


class NumericLimitsSettings(CheckSettings):
    rules: list[LimitRule] = Field(default_factory=list, description="Limit rules.")


class NumericLimitsCheck(Check):
    name: ClassVar[str] = "numeric_limits"
    needs: ClassVar[frozenset[SignalKind]] = frozenset()
    optional: ClassVar[frozenset[SignalKind]] = frozenset({SignalKind.SPO2, SignalKind.NIBP})
    settings_model: ClassVar[type[CheckSettings]] = NumericLimitsSettings
    conditions: ClassVar[tuple[ConditionSpec, ...]] = ()

    def __init__(self, *, room: str, settings: CheckSettings, feeds: dict[str, FeedView]) -> None:
        super().__init__(room=room, settings=settings, feeds=feeds)
        assert isinstance(settings, NumericLimitsSettings)
        self._rules = [
            (
                rule,
                ConditionSpec(
                    code=rule.code,
                    kind=AlarmKind.PHYSIOLOGICAL,
                    priority=Priority[rule.priority.upper()],
                    description=f"{rule.field} {'below' if rule.below is not None else 'above'} "
                    f"{rule.below if rule.below is not None else rule.above}",
                    delay_s=rule.delay_s,
                ),
            )
            for rule in settings.rules
        ]
        self._active: dict[tuple[str, str], bool] = {}

    def condition_specs(self) -> tuple[ConditionSpec, ...]:
        return tuple(spec for _, spec in self._rules)

    def on_reading(self, reading: NumericReading, ctx: CheckContext) -> None:
        for rule, spec in self._rules:
            if rule.kind != reading.kind:
                continue
            value = reading.get(rule.field)
            if math.isnan(value):
                continue  # unavailable is a device/technical matter, never a limit breach
            key = (reading.feed, spec.code)
            was = self._active.get(key, False)
            if rule.below is not None:
                limit = rule.below
                now = value < limit if not was else value < limit + rule.hysteresis
            else:
                assert rule.above is not None
                limit = rule.above
                now = value > limit if not was else value > limit - rule.hysteresis
            self._active[key] = now
            ctx.condition(
                spec,
                now,
                t=reading.t,
                feed=reading.feed,
                value=value,
                limit=limit,
                message=f"{rule.field} {value:g} ({'<' if rule.below is not None else '>'}"
                f" {limit:g})",
                origin=reading.origin,
            )
