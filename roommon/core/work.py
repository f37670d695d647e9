"""How long a piece of work took: tick passes and check calls, for the metrics.

This is the one reading of the process's performance counter, and it never
decides anything: logic waits and timestamps go through the
:class:`~roommon.core.clock.Clock`. Work takes real time even on a virtual
clock, so it is measured here, not with the clock.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

#: Seconds on the performance counter (only differences mean anything).
work_clock = time.perf_counter

#: Upper bounds (seconds) of the work-time histogram buckets: a check call on one chunk
#: takes tens of microseconds to milliseconds, a tick pass over many rooms up to a tick.
WORK_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


@dataclass(slots=True)
class WorkTime:
    """Count, total and histogram of one kind of work's durations."""

    count: int = 0
    seconds: float = 0.0
    #: Seconds the most recent one took.
    last_s: float = 0.0
    #: Per bucket of :data:`WORK_BUCKETS` (and one more: above the last), not cumulative.
    buckets: list[int] = field(default_factory=lambda: [0] * (len(WORK_BUCKETS) + 1))

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.last_s = seconds
        self.buckets[bisect.bisect_left(WORK_BUCKETS, seconds)] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus histogram buckets: (upper bound, count at or below it), then +Inf."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(WORK_BUCKETS, self.buckets, strict=False):
            running += n
            out.append((repr(bound), running))
        out.append(("+Inf", self.count))
        return out
