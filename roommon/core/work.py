"""How long a piece of work took: tick passes and check calls, for the metrics.

This is the one reading of the process's performance counter, and it never
decides anything: logic waits and timestamps go through the
:class:`~roommon.core.clock.Clock`. Work takes real time even on a virtual
clock, so it is measured here, not with the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: Seconds on the performance counter (only differences mean anything).
work_clock = time.perf_counter


@dataclass(slots=True)
class WorkTime:
    """Count and total seconds of one kind of work (a Prometheus summary's two series)."""

    count: int = 0
    seconds: float = 0.0
    #: Seconds the most recent one took.
    last_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.last_s = seconds
