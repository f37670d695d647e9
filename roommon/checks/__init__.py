"""Check registry: the name used in a room's ``[rooms.ROOM.checks.NAME]`` table -> class.

Adding a check is adding one module and one line here.
"""

from __future__ import annotations

from roommon.checks.abp import AbpCheck
from roommon.checks.base import Check
from roommon.checks.cement import CementCheck
from roommon.checks.ecg import EcgCheck
from roommon.checks.nibp import NibpCheck
from roommon.checks.numeric_limits import NumericLimitsCheck
from roommon.checks.spo2 import SpO2Check

CHECKS: dict[str, type[Check]] = {
    EcgCheck.name: EcgCheck,
    SpO2Check.name: SpO2Check,
    NibpCheck.name: NibpCheck,
    AbpCheck.name: AbpCheck,
    CementCheck.name: CementCheck,
    NumericLimitsCheck.name: NumericLimitsCheck,
}
