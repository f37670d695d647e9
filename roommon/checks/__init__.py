"""Check registry: the name used in a room's ``[rooms.checks.NAME]`` table -> class.

Adding a check is adding one module and one line here.
"""

from __future__ import annotations

from roommon.checks.base import Check

CHECKS: dict[str, type[Check]] = {}
