"""The one reconnect pacing: capped exponential backoff with jitter, waited on the clock.

Every connection that retries (the daemon's broker link, serial ports, the
recorder, the simulator's publisher, the timers view, HL7 receivers) uses
:class:`Backoff`, so they all follow the same rule and a test on the virtual
clock sees no retry until the clock moves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from roommon.core.clock import Clock


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """``initial_s * 2**attempt``, at most ``cap_s``, times 1 ± ``jitter``.

    Jitter spreads the retries of many clients after a broker restart (and of
    several feeds on one USB hub), so they do not come back in lockstep.
    """

    initial_s: float = 0.5
    cap_s: float = 10.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s:
            raise ValueError(f"need 0 < initial_s <= cap_s, got {self.initial_s}, {self.cap_s}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.cap_s, self.initial_s * 2.0 ** min(attempt, 60))
        # Never above the cap: a configured maximum is a promise to the operator.
        return min(self.cap_s, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))

    async def wait(self, attempt: int, clock: Clock, rng: random.Random) -> float:
        """Sleep the delay of ``attempt`` on ``clock``; return it."""
        seconds = self.delay(attempt, rng)
        await clock.sleep(seconds)
        return seconds
