"""NIBP check: limit alarms on cuff readings, and "NIBP overdue".

Data flow: the room pipeline passes each decoded NIBP reading (systolic,
diastolic, mean in mmHg; a field the cuff could not measure is NaN) to
:meth:`NibpCheck.on_reading`, and calls :meth:`NibpCheck.on_tick` about once a
second with the clock's time. A reading is a discrete event, so each one sets
the limit conditions directly; a NaN field leaves its conditions as they were
(an unmeasured value is never compared to a limit). "Overdue" is judged on the
clock: no reading within the configured cycle plus a margin, counted from the
last reading (or from the first tick, if none came yet).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from roommon.checks.base import (
    Check,
    CheckContext,
    CheckSettings,
    ConditionMemory,
    FeedView,
    Measurement,
)
from roommon.checks.declarations.nibp import (
    HYPERTENSION,
    HYPOTENSION,
    MAP_HIGH,
    MAP_LOW,
    NIBP,
    OVERDUE,
    NibpSettings,
)
from roommon.core.conditions import ConditionSpec
from roommon.core.log import get_logger
from roommon.core.model import NumericReading, SignalKind

log = get_logger(__name__)


_FIELDS = ("systolic", "diastolic", "mean")


class NibpCheck(Check, declaration=NIBP):
    """Cuff blood-pressure limits and a missing-reading watchdog."""

    def __init__(
        self, *, room: str, settings: CheckSettings, feeds: Mapping[str, FeedView]
    ) -> None:
        super().__init__(room=room, settings=settings, feeds=feeds)
        assert isinstance(settings, NibpSettings)
        self.cfg = settings
        nibp_feeds = [f.name for f in self.feeds.values() if f.kind is SignalKind.NIBP]
        self._last_t: dict[str, float] = dict.fromkeys(nibp_feeds, math.nan)
        self._conditions = ConditionMemory()

    def _report(
        self,
        ctx: CheckContext,
        spec: ConditionSpec,
        feed: str,
        active: bool,
        t: float,
        value: float | None = None,
        limit: float | None = None,
    ) -> None:
        self._conditions.report(ctx, spec, feed=feed, active=active, t=t, value=value, limit=limit)

    def on_reading(self, reading: NumericReading, ctx: CheckContext) -> None:
        if reading.kind is not SignalKind.NIBP:
            return
        cfg = self.cfg
        feed, t = reading.feed, reading.t
        self._last_t[feed] = t
        self._report(ctx, OVERDUE, feed, False, t)
        sys_ = reading.get("systolic")
        mean = reading.get("mean")
        # NaN (not measured) must not clear or raise anything: isfinite guards both.
        if math.isfinite(sys_):
            low, high = cfg.systolic_low_mmhg, cfg.systolic_high_mmhg
            self._report(ctx, HYPOTENSION, feed, sys_ < low, t, value=sys_, limit=low)
            self._report(ctx, HYPERTENSION, feed, sys_ > high, t, value=sys_, limit=high)
        if math.isfinite(mean):
            low, high = cfg.mean_low_mmhg, cfg.mean_high_mmhg
            self._report(ctx, MAP_LOW, feed, mean < low, t, value=mean, limit=low)
            self._report(ctx, MAP_HIGH, feed, mean > high, t, value=mean, limit=high)
        for name in _FIELDS:
            v = reading.get(name)
            if math.isfinite(v):
                ctx.measure(Measurement(name=f"nibp_{name}", value=v, unit="mmHg", t=t, feed=feed))

    def on_tick(self, now: float, ctx: CheckContext) -> None:
        due = self.cfg.cycle_s + self.cfg.overdue_margin_s
        for feed, last in self._last_t.items():
            if math.isnan(last):
                # Nothing received yet: the watchdog starts at the first tick.
                self._last_t[feed] = last = now
            late = now - last
            if late > due and not self._conditions.is_active(feed, OVERDUE.code):
                log.warning("nibp_overdue", room=self.room, feed=feed, seconds=late)
            self._report(ctx, OVERDUE, feed, late > due, now, value=late, limit=due)
