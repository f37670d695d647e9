"""What the numeric_limits check is, without its implementation: settings, conditions, needs.

Read by the config and ``check-config`` (which must not load numpy or the
signal code); :mod:`roommon.checks.numeric_limits` implements it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from roommon.checks.base import CheckDeclaration, CheckSettings
from roommon.core.conditions import AlarmKind, ConditionSpec, Priority
from roommon.core.model import NUMERIC_FIELDS, SignalKind


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


def rule_spec(rule: LimitRule) -> ConditionSpec:
    """The condition one limit rule reports."""
    side, limit = ("below", rule.below) if rule.below is not None else ("above", rule.above)
    return ConditionSpec(
        code=rule.code,
        kind=AlarmKind.PHYSIOLOGICAL,
        priority=Priority[rule.priority.upper()],
        description=f"{rule.field} {side} {limit}",
        delay_s=rule.delay_s,
    )


def rule_specs(settings: NumericLimitsSettings) -> tuple[ConditionSpec, ...]:
    return tuple(rule_spec(rule) for rule in settings.rules)


NUMERIC_LIMITS = CheckDeclaration(
    name="numeric_limits",
    needs=frozenset(),
    optional=frozenset({SignalKind.SPO2, SignalKind.NIBP}),
    settings_model=NumericLimitsSettings,
    conditions=(),
    rule_conditions=rule_specs,
    implementation="roommon.checks.numeric_limits:NumericLimitsCheck",
)
