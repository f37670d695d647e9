"""Preallocated numpy ring buffer for one waveform feed.

Holds the last ``capacity`` samples; writes are one or two slice copies per
chunk, never a Python loop per sample. Time is tracked for the newest sample
so a window can be mapped back to absolute time.
"""

from __future__ import annotations

import math

import numpy as np

from roommon.core.model import FloatArray


class RingBuffer:
    __slots__ = ("_buf", "_cap", "_t_end", "fs", "total")

    def __init__(self, *, capacity: int, fs: float) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._cap = capacity
        self._buf = np.zeros(capacity, dtype=np.float64)
        self.fs = fs
        self.total = 0  # samples ever written
        self._t_end = math.nan  # time just after the newest sample

    @property
    def capacity(self) -> int:
        return self._cap

    def __len__(self) -> int:
        return min(self.total, self._cap)

    @property
    def t_end(self) -> float:
        return self._t_end

    def extend(self, samples: FloatArray, *, t_end: float | None = None) -> None:
        n = len(samples)
        if n == 0:
            return
        if n >= self._cap:
            self._buf[:] = samples[-self._cap :]
        else:
            start = self.total % self._cap
            first = min(n, self._cap - start)
            self._buf[start : start + first] = samples[:first]
            if first < n:
                self._buf[: n - first] = samples[first:]
        self.total += n
        if t_end is not None:
            self._t_end = t_end
        elif not math.isnan(self._t_end):
            self._t_end += n / self.fs

    def latest(self, n: int) -> FloatArray:
        """The newest ``min(n, len(self))`` samples, oldest first (a copy)."""
        n = min(n, len(self))
        if n == 0:
            return np.empty(0, dtype=np.float64)
        end = self.total % self._cap
        start = end - n
        if start >= 0:
            return self._buf[start:end].copy()
        return np.concatenate((self._buf[start:], self._buf[:end]))

    def window(self, seconds: float) -> FloatArray:
        return self.latest(round(seconds * self.fs))
