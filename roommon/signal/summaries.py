"""Summaries of the short per-beat arrays checks keep (a few to a few dozen values).

``np.median`` costs ~25 µs per call in argument handling alone; on arrays of
ten beats, sorting a Python list and picking the middle is ~50 times cheaper.
These helpers keep per-block Python overhead low enough for the checks'
throughput target. (A Python loop per beat is fine; per sample it is not.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from roommon.core.model import FloatArray

_ones: FloatArray = np.ones(1024)


def sum_of(a: FloatArray) -> float:
    """Sum of a 1-D float64 array as one BLAS dot product with ones.

    ``ndarray.sum`` (and ``np.add.reduce``) cost ~1.3-1.6 µs per call in fixed
    overhead; a dot product ~0.45 µs. The rounding differs from numpy's pairwise
    sum only in the last bits (both accumulate in blocks), far below any
    threshold a check compares a mean or a spread with.
    """
    global _ones
    n = len(a)
    if n > len(_ones):
        _ones = np.ones(2 * n)
    return float(a.dot(_ones[:n]))


def median_of(a: FloatArray | Iterable[float]) -> float:
    """Median of a short array or sequence (NaN if empty)."""
    s: list[float] = sorted(a.tolist() if isinstance(a, np.ndarray) else a)
    n = len(s)
    if n == 0:
        return math.nan
    h = n // 2
    if n % 2:
        return float(s[h])
    return 0.5 * (s[h - 1] + s[h])


def cv_of(a: FloatArray | Sequence[float]) -> float:
    """Coefficient of variation (population std / mean) of a short positive array or sequence."""
    v: Sequence[float] = a.tolist() if isinstance(a, np.ndarray) else a
    n = len(v)
    if n == 0:
        return math.nan
    m = sum(v) / n
    var = max(sum(x * x for x in v) / n - m * m, 0.0)
    return math.sqrt(var) / m if m else math.nan


def std_of(a: FloatArray) -> float:
    """Population standard deviation via one sum and one dot product.

    ``ndarray.std`` spends ~10 µs in Python-level bookkeeping; this is ~1 µs
    (:func:`sum_of`; ``math.sqrt`` without making a numpy scalar).
    The one-pass formula loses precision only when the mean dwarfs the spread
    by ~1e7, far beyond any signal here (ABP: mean ~80, spread ~15 mmHg).
    """
    n = len(a)
    if n == 0:
        return math.nan
    m = sum_of(a) / n
    return math.sqrt(max(float(a.dot(a)) / n - m * m, 0.0))


def roughness(a: FloatArray, steps: FloatArray | None = None) -> tuple[float, float]:
    """RMS sample-to-sample step and standard deviation of ``a`` (zeros if < 2 samples).

    ``steps``, when the caller has them already, is ``a[1:] - a[:-1]``.
    """
    n = len(a)
    if n < 2:
        return 0.0, 0.0
    d = a[1:] - a[:-1] if steps is None else steps
    m = sum_of(a) / n
    std = math.sqrt(max(float(a.dot(a)) / n - m * m, 0.0))
    return math.sqrt(float(d.dot(d)) / (n - 1)), std


def rms_step(a: FloatArray) -> float:
    """Root-mean-square of the sample-to-sample differences (0 for < 2 samples)."""
    if len(a) < 2:
        return 0.0
    d = a[1:] - a[:-1]
    return float(np.sqrt(float(np.dot(d, d)) / len(d)))
