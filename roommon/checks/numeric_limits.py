"""Generic limit check on numeric readings (any field of NIBP or SpO2 feeds).

The simplest physiological check: a reading field above or below a limit is
a condition; it ends only when the value is back past the limit by the rule's
hysteresis (so a value hovering on the limit is one alarm, not a flicker).
The condition delay is the alarm engine's (``delay_s`` of the rule).
"""

from __future__ import annotations

import math

from roommon.checks.base import Check, CheckContext, CheckSettings, FeedView
from roommon.checks.declarations.numeric_limits import (
    NUMERIC_LIMITS,
    NumericLimitsSettings,
    rule_spec,
)
from roommon.core.model import NumericReading


class NumericLimitsCheck(Check, declaration=NUMERIC_LIMITS):
    def __init__(self, *, room: str, settings: CheckSettings, feeds: dict[str, FeedView]) -> None:
        super().__init__(room=room, settings=settings, feeds=feeds)
        assert isinstance(settings, NumericLimitsSettings)
        self._rules = [(rule, rule_spec(rule)) for rule in settings.rules]
        self._active: dict[tuple[str, str], bool] = {}

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
