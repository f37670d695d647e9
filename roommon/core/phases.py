"""The procedure-phase vocabulary: the one list of what a room can be doing.

Used by the phase state machine (:mod:`roommon.room.workflow`), the alarm
profiles (config and alarm engine), the ``phase_set`` command and the room
state payload; everything else derives its names from :class:`Phase`.
"""

from __future__ import annotations

import enum
from typing import Literal, get_args


class Phase(enum.StrEnum):
    IDLE = "idle"
    PATIENT_CONNECTED = "patient_connected"
    PROCEDURE = "procedure"
    CEMENT_INJECTION = "cement_injection"
    RECOVERY = "recovery"
    READY_FOR_DISCHARGE = "ready_for_discharge"


#: The same names as a ``Literal`` for payload models (JSON Schema ``enum``).
PhaseName = Literal[
    "idle", "patient_connected", "procedure", "cement_injection", "recovery", "ready_for_discharge"
]

if {p.value for p in Phase} != set(get_args(PhaseName)):  # pragma: no cover - import-time guard
    raise AssertionError("PhaseName and Phase disagree")

#: Longest recovery plan (and so longest extension) anyone may configure, seconds.
MAX_PLAN_S = 24 * 3600.0
