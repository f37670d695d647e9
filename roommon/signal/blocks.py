"""Fixed-size blocks out of arbitrarily chunked samples.

Devices and transports chunk waveforms however they like (1 s, 40 ms, one
odd-sized chunk after a reconnect). Checks analyse fixed blocks instead, for
two reasons: (1) the analysis of a block then depends only on the samples, so
any chunking gives the same result, bit for bit; (2) per-call overhead is paid
once per block, not once per tiny chunk, which is what keeps checks above
millions of samples per second at 50-125 Hz.

Sample times are ``t_origin + index / fs``, counted from the first sample after
a (re)start, so they too do not depend on how the sender computed each chunk's
``t0``. A chunk whose ``t0`` is off by more than half a sample period from the
expected time is a gap (or an overlap): the partial block is dropped and
counting restarts, and the consumer is told so it can drop carried state.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from roommon.core.model import FloatArray

BlockSink = Callable[[FloatArray, float, bool], None]
"""``sink(block, t_first_sample, restarted)``; ``block`` is only valid during the call."""


class BlockAssembler:
    """Turns chunks into fixed blocks of ``block_n`` samples."""

    __slots__ = (
        "_buf",
        "_expected_t0",
        "_fill",
        "_index",
        "_restart",
        "_t_origin",
        "block_n",
        "fs",
    )

    def __init__(self, *, block_n: int, fs: float) -> None:
        if block_n <= 0 or fs <= 0:
            raise ValueError("block_n and fs must be positive")
        self.block_n = block_n
        self.fs = fs
        self._buf = np.empty(block_n, dtype=np.float64)
        self._fill = 0
        self._index = 0  # samples since the time origin
        self._t_origin = float("nan")
        self._expected_t0 = float("nan")
        self._restart = True

    @property
    def t_next(self) -> float:
        """Time of the next expected sample (NaN before the first chunk)."""
        return self._expected_t0

    def push(self, samples: FloatArray, t0: float, sink: BlockSink) -> None:
        n = len(samples)
        if n == 0:
            return
        fs = self.fs
        # NaN compares False, so the first chunk also takes this branch.
        if not abs(t0 - self._expected_t0) <= 0.5 / fs:
            self._t_origin = t0
            self._index = 0
            self._fill = 0
            self._restart = True
        self._index += n
        self._expected_t0 = self._t_origin + self._index / fs
        fill = self._fill
        bn = self.block_n
        if fill + n < bn:  # the common case for small chunks: one copy, no block
            self._buf[fill : fill + n] = samples
            self._fill = fill + n
            return
        pos = 0
        # index (since origin) of the first sample of the block being filled
        first = self._index - n - fill
        if fill:
            take = bn - fill
            self._buf[fill:] = samples[:take]
            pos = take
            self._emit(self._buf, first, sink)
            first += bn
        while n - pos >= bn:
            self._emit(samples[pos : pos + bn], first, sink)
            pos += bn
            first += bn
        rest = n - pos
        if rest:
            self._buf[:rest] = samples[pos:]
        self._fill = rest

    def _emit(self, block: FloatArray, first: int, sink: BlockSink) -> None:
        restarted = self._restart
        self._restart = False
        sink(block, self._t_origin + first / self.fs, restarted)
