"""EKG signal processing: streaming QRS detection and monitor-style heart rate.

Used by the EKG check (:mod:`roommon.checks.ecg`), which turns beats into
measurements and alarm conditions, and by the offline validation command.
"""

from roommon.ecg.heart_rate import HeartRate
from roommon.ecg.qrs import QrsDetector

__all__ = ["HeartRate", "QrsDetector"]
