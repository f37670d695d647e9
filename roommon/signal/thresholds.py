"""Threshold crossing with hysteresis, vectorised, with the state carried between calls.

A level alarm that clears at the same value it triggers at chatters on noise;
monitors clear a little inside the limit instead. Used by checks for
per-sample limit conditions (cement over-pressure) and per-segment states
(injection running or not).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from roommon.core.model import FloatArray

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]


def hysteresis_state(x: FloatArray, *, on_above: float, off_below: float, state: bool) -> BoolArray:
    """State after each element: on once ``x > on_above``, off once ``x < off_below``.

    Between the two levels the previous state holds; ``state`` is the state
    before ``x[0]``. Requires ``off_below <= on_above``.
    """
    n = len(x)
    marks = np.where(x > on_above, 1, np.where(x < off_below, 0, -1))
    pos = np.where(marks >= 0, np.arange(n), -1)
    last = np.maximum.accumulate(pos) if n else pos
    out = np.where(last >= 0, marks[np.maximum(last, 0)] == 1, state)
    return np.asarray(out, dtype=np.bool_)


def transitions(states: BoolArray, *, before: bool) -> tuple[IntArray, BoolArray]:
    """Indices where ``states`` changes (relative to ``before``) and the new values."""
    prev = np.empty_like(states)
    if len(states):
        prev[0] = before
        prev[1:] = states[:-1]
    idx = np.flatnonzero(states != prev)
    return idx, states[idx]
