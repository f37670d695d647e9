"""Check registry: the name used in a room's ``[rooms.ROOM.checks.NAME]`` table -> class.

Adding a check is adding one module and one line here.
"""

from __future__ import annotations

from roommon.checks.base import Check
from roommon.checks.numeric_limits import NumericLimitsCheck

CHECKS: dict[str, type[Check]] = {
    NumericLimitsCheck.name: NumericLimitsCheck,
}
