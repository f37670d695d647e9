"""Summaries of the short per-beat arrays checks keep (a few to a few dozen values).

``np.median`` costs ~25 µs per call in argument handling alone; on arrays of
ten beats, sorting and picking the middle is ~20 times cheaper. These helpers
keep per-block Python overhead low enough for the checks' throughput target.
"""

from __future__ import annotations

import numpy as np

from roommon.model import FloatArray


def median_of(a: FloatArray) -> float:
    """Median of a short non-empty array (NaN if empty)."""
    n = len(a)
    if n == 0:
        return float("nan")
    s = np.sort(a)
    h = n // 2
    if n % 2:
        return float(s[h])
    return 0.5 * (float(s[h - 1]) + float(s[h]))


def std_of(a: FloatArray) -> float:
    """Population standard deviation via one sum and one dot product.

    ``ndarray.std`` spends ~10 µs in Python-level bookkeeping; this is ~2 µs.
    The one-pass formula loses precision only when the mean dwarfs the spread
    by ~1e7, far beyond any signal here (ABP: mean ~80, spread ~15 mmHg).
    """
    n = len(a)
    if n == 0:
        return float("nan")
    m = float(a.sum()) / n
    return float(np.sqrt(max(float(np.dot(a, a)) / n - m * m, 0.0)))


def rms_step(a: FloatArray) -> float:
    """Root-mean-square of the sample-to-sample differences (0 for < 2 samples)."""
    if len(a) < 2:
        return 0.0
    d = a[1:] - a[:-1]
    return float(np.sqrt(float(np.dot(d, d)) / len(d)))
