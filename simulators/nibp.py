"""Non-invasive blood pressure (NIBP) simulator: one cuff reading per cycle.

An automatic cuff measures every ``cycle_s`` (5 min is a common intraoperative
setting). Controls set the blood pressure the next readings show, and stop or
resume sending (a cuff that was switched to manual, a kinked hose): that is
what the "NIBP overdue" alarm is for. Deterministic: readings are pulled by
time with :meth:`NibpSimulator.readings_until`, no clock or sleeping inside.
"""

from __future__ import annotations

import numpy as np

from roommon.core.model import DataOrigin, NumericReading, SignalKind


class NibpSimulator:
    def __init__(
        self,
        *,
        cycle_s: float = 300.0,
        t0: float = 1_767_225_600.0,
        seed: int = 0,
        room: str = "demo",
        feed: str = "nibp",
        jitter_mmhg: float = 3.0,
    ) -> None:
        self.cycle_s = cycle_s
        self.room = room
        self.feed = feed
        self.jitter_mmhg = jitter_mmhg
        self._rng = np.random.default_rng(seed)
        self._next_t = t0  # first reading right at start
        self._seq = 0
        self._sending = True
        self.systolic = 120.0
        self.diastolic = 75.0
        self.mean: float | None = None  # None: computed as dia + (sys - dia) / 3

    def set_pressure(self, *, systolic: float, diastolic: float, mean: float | None = None) -> None:
        self.systolic, self.diastolic, self.mean = systolic, diastolic, mean

    def stop_sending(self) -> None:
        """Cycles go on but no reading is sent (cuff off, manual mode, kinked hose)."""
        self._sending = False

    def resume_sending(self) -> None:
        self._sending = True

    def readings_until(self, t: float) -> list[NumericReading]:
        """Readings of every cycle due up to and including time ``t``."""
        out: list[NumericReading] = []
        while self._next_t <= t:
            if self._sending:
                out.append(self._reading(self._next_t))
            self._next_t += self.cycle_s
        return out

    def _reading(self, t: float) -> NumericReading:
        j = self._rng.normal(0.0, self.jitter_mmhg, 2)
        sys_ = float(self.systolic + j[0])
        dia = float(self.diastolic + j[1])
        mean = self.mean if self.mean is not None else dia + (sys_ - dia) / 3.0
        self._seq += 1
        return NumericReading(
            room=self.room,
            feed=self.feed,
            kind=SignalKind.NIBP,
            t=t,
            values={"systolic": sys_, "diastolic": dia, "mean": float(mean)},
            seq=self._seq,
            origin=DataOrigin.SIMULATED,
        )
