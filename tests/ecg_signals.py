"""Synthetic EKG signal parts for the EKG tests."""

from __future__ import annotations

import numpy as np


def pacer_pulse(
    fs: float, phase: float, amp_mv: float = 4.0, width_s: float = 0.0005
) -> np.ndarray:
    """A pacemaker pulse and its recharge as a sampler sees it: each sample the mean of
    its period (``phase``: where in the first sample period the pulse starts, 0..1)."""
    over = 64
    n = round(0.02 * fs) * over
    t = np.arange(n) / (fs * over) - phase / fs
    pulse = np.where((t >= 0) & (t < width_s), amp_mv, 0.0)
    recharge = np.where(t >= width_s, -0.05 * amp_mv * np.exp(-(t - width_s) / 0.004), 0.0)
    return np.asarray((pulse + recharge).reshape(-1, over).mean(axis=1))
