"""Heart rate as a bedside monitor reports it, from detected beat times.

Sits between the QRS detector and the EKG check's measurements and rate alarms.

Rule (documented default, after the averaging monitors use and IEC 60601-2-27
asks manufacturers to disclose): the rate is 60 over the mean of the most
recent R-R intervals, taking up to ``max_intervals`` (12) of them but no more
than fit into the last ``span_s`` (8) seconds of intervals, and never fewer than
``min_intervals`` (4) when that many exist. So at 180 bpm twelve intervals
(4 s) are averaged, at 60 bpm eight, at 30 bpm four (8 s): long intervals make
the average respond in seconds rather than half a minute.

While the beat stream pauses, the interval still open (from the last beat to
``now``) counts as the newest interval as soon as it is longer than the
current mean, so the displayed rate falls during a pause instead of freezing.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

# Two intervals in a row, each under SPLIT_SHORT of the median and together within
# SPLIT_SUM of it, are one interval split by an extra detection (a T wave, an artefact):
# a premature beat is followed by a long interval, not a second short one. A couplet
# of early premature beats (each under 60 % of the cycle, adding up to about one) is
# joined too: the tachycardia decision, the only user, then counts one beat short.
SPLIT_SHORT: Final = 0.6
SPLIT_SUM: Final = 0.2


class HeartRate:
    """Rolling monitor-style heart rate; feed beat times, read :meth:`rate`."""

    __slots__ = ("_beats", "_chosen", "_max_intervals", "_mean", "_min_intervals", "_span_s")

    def __init__(
        self, *, max_intervals: int = 12, min_intervals: int = 4, span_s: float = 8.0
    ) -> None:
        if not 1 <= min_intervals <= max_intervals:
            raise ValueError("need 1 <= min_intervals <= max_intervals")
        self._max_intervals = max_intervals
        self._min_intervals = min_intervals
        self._span_s = span_s
        self._beats: deque[float] = deque(maxlen=max_intervals + 1)
        # intervals() and their mean, kept from one beat to the next: the rate is
        # read at least once a second per feed, beats come about as often.
        self._chosen: list[float] | None = None
        self._mean = 0.0

    @property
    def last_beat(self) -> float | None:
        return self._beats[-1] if self._beats else None

    @property
    def beat_count(self) -> int:
        return len(self._beats)

    def add_beat(self, t: float) -> None:
        """A beat at time ``t`` (seconds, any epoch); out-of-order beats are ignored."""
        if self._beats and t <= self._beats[-1]:
            return
        self._beats.append(t)
        self._chosen = None

    def reset(self) -> None:
        """Forget the history (e.g. after a gap in the signal)."""
        self._beats.clear()
        self._chosen = None

    def intervals(self) -> list[float]:
        """The R-R intervals the rate is averaged over, newest first."""
        return list(self._intervals())

    def _intervals(self) -> list[float]:
        if self._chosen is None:
            chosen = self._choose()
            self._chosen = chosen
            if chosen:
                self._mean = sum(chosen) / len(chosen)
        return self._chosen

    def _choose(self) -> list[float]:
        b = list(self._beats)
        rr = [b[i] - b[i - 1] for i in range(len(b) - 1, 0, -1)]
        chosen: list[float] = []
        total = 0.0
        for x in rr:
            if len(chosen) >= self._min_intervals and total + x > self._span_s:
                break
            chosen.append(x)
            total += x
        return chosen

    def rate(self, now: float | None = None, *, robust: bool = False) -> float | None:
        """Heart rate in bpm, or None before two beats.

        ``robust``: 60 over the interquartile mean of the same intervals (the
        middle half, sorted) instead of their mean, for a signal of doubtful
        quality: one false beat splits one interval into two short ones and moves
        the mean of ten by about 10 %, the interquartile mean hardly. For a
        regular rhythm, bigeminy (short, long, short, long) and the spread of
        atrial fibrillation the two agree to a few percent.
        """
        rr, mean = self._window(now)
        if not rr:
            return None
        if robust and len(rr) >= 4:
            q = len(rr) // 4
            mid = sorted(rr)[q : len(rr) - q]
            return 60.0 * len(mid) / sum(mid)
        return 60.0 / mean

    def unsplit_rate(self, now: float | None = None) -> float | None:
        """Like :meth:`rate`, with any interval split by an extra detection joined again.

        For the tachycardia decision: one extra "beat" in an irregular rhythm just
        under the limit lifts both the mean and the interquartile mean over it
        (cudb cu19: 136 bpm shown as 148); joined, the split pair is one interval.
        """
        rr, _ = self._window(now)
        if not rr:
            return None
        med = sorted(rr)[len(rr) // 2]
        short = SPLIT_SHORT * med
        joined: list[float] = []
        i = 0
        while i < len(rr):
            a = rr[i]
            b = rr[i + 1] if i + 1 < len(rr) else math.inf
            if a < short and b < short and abs(a + b - med) <= SPLIT_SUM * med:
                joined.append(a + b)
                i += 2
            else:
                joined.append(a)
                i += 1
        return 60.0 * len(joined) / sum(joined)

    def _window(self, now: float | None) -> tuple[list[float], float]:
        """The intervals the rate is read from at ``now``, and their mean."""
        rr = self._intervals()
        mean = self._mean
        if rr and now is not None and self._beats:
            open_rr = now - self._beats[-1]
            if open_rr > mean:
                rr = [open_rr, *rr[: max(len(rr) - 1, 1)]]
                mean = sum(rr) / len(rr)
        return rr, mean
