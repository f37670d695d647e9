"""Words for people: alarm condition codes and command refusals in plain language.

The alarm texts come from the checks' own condition declarations (the same
ones ``roommon checks`` prints), so a new check's alarms get their words with
no edit here.
"""

from __future__ import annotations

from functools import cache

from roommon.checks import CHECKS
from roommon.recovery.conditions import RECOVERY_CHECK_OVERDUE, RECOVERY_CLOCK_JUMP
from roommon.room.conditions import FEED_CONDITIONS
from roommon.room.pipeline import CHECK_FAILED

#: Command refusal tokens (docs/topics.md) -> what the person is told.
REFUSALS: dict[str, str] = {
    "malformed": "the command was not understood",
    "wrong_room": "the command was meant for another room",
    "unknown_alarm": "that alarm is no longer active",
    "unknown_feed": "that feed does not exist in this room",
    "not_allowed": "this is not allowed now",
    "no_recovery": "no recovery is running in this room",
    "already_done": "that was already done",
    "unknown_check": "there is no such check",
    "bad_value": "a value is out of range",
    "timeout": "roommon did not answer: the command may not have been applied",
    "no_broker": "no connection to the broker: nothing was sent",
}


@cache
def alarm_texts() -> dict[str, str]:
    """Condition code -> description, for every check and feed condition."""
    extra = (*FEED_CONDITIONS, CHECK_FAILED, RECOVERY_CHECK_OVERDUE, RECOVERY_CLOCK_JUMP)
    texts = {spec.code: spec.description for spec in extra}
    for check in CHECKS.declarations():
        texts.update({spec.code: spec.description for spec in check.conditions})
    return texts


def alarm_text(code: str) -> str:
    return alarm_texts().get(code) or code.replace(".", ": ").replace("_", " ")


def refusal_text(reason: str, detail: str) -> str:
    words = REFUSALS.get(reason, reason.replace("_", " "))
    return f"{words} ({detail})" if detail else words
