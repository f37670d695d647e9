"""Nurse commands: parsing, each refusal reason, and refusals changing nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from roommon.core.errors import CommandError
from roommon.recovery.messages import apply_command
from roommon.recovery.plan import RecoveryPlan
from roommon.recovery.timer import RecoveryTimer
from roommon.wire.timer import RECOVERY_ACTIONS, NurseCommand, parse_nurse_command

T0 = 1_767_225_600.0
PLAN = RecoveryPlan()
VITALS = {"heart_rate": 72.0, "spo2": 97.0, "nibp_sys": None}


def cmd(action: str, **fields: Any) -> NurseCommand:
    body = {"v": 1, "id": "c1", "room": "or1", "action": action, **fields}
    return NurseCommand.model_validate(body)


def running(confirmed: bool = True) -> RecoveryTimer:
    timer = RecoveryTimer(room="or1")
    timer.injection_ended(at=T0, now=T0, plan=PLAN)
    if confirmed:
        timer.confirm(at=T0 + 60, by="nurse")
    return timer


def payload(**fields: Any) -> bytes:
    return json.dumps({"v": 1, "id": "c1", "room": "or1", **fields}).encode()


def test_actions_are_the_documented_five() -> None:
    assert {
        "recovery_confirm",
        "check_done",
        "recovery_extend",
        "recovery_end",
        "recovery_cancel",
    } == RECOVERY_ACTIONS


@pytest.mark.parametrize(
    ("fields", "reason", "where"),
    [
        ({"action": "recovery_extend", "seconds": -5}, "bad_value", "seconds"),
        ({"action": "recovery_extend", "seconds": 10 * 86400}, "bad_value", "seconds"),
        ({"action": "check_done", "check_no": 0}, "bad_value", "check_no"),
        ({"action": "check_done", "check_no": "two"}, "bad_value", "check_no"),
        ({"action": "recovery_reboot"}, "malformed", "action"),
        ({"action": "check_done", "colour": "red"}, "malformed", "colour"),
    ],
)
def test_parse_refusals(fields: dict[str, Any], reason: str, where: str) -> None:
    with pytest.raises(CommandError) as exc:
        parse_nurse_command(payload(**fields), room="or1")
    assert exc.value.reason == reason
    assert exc.value.detail.startswith(where)


def test_parse_wrong_room_and_bad_json() -> None:
    with pytest.raises(CommandError, match="wrong_room"):
        parse_nurse_command(payload(action="recovery_confirm"), room="or2")
    with pytest.raises(CommandError, match="malformed"):
        parse_nurse_command(b"{not json", room="or1")
    ok = parse_nurse_command(payload(action="check_done", check_no=2, vitals=True), room="or1")
    assert (ok.check_no, ok.vitals) == (2, True)


def _ended() -> RecoveryTimer:
    timer = running()
    timer.end_early(reason="transfer", by="nurse", at=T0 + 600)
    return timer


def _interrupted() -> RecoveryTimer:
    timer = running(confirmed=False)
    timer.injection_started(at=T0 + 300, now=T0 + 300)
    return timer


def _target_reached() -> RecoveryTimer:
    timer = running()
    timer.advance(T0 + 10800)
    assert timer.state == "target_reached"
    return timer


def _check1_done() -> RecoveryTimer:
    timer = running()
    timer.check_done(check_no=1, at=T0 + 900, by="nurse")
    return timer


Case = tuple[Callable[[], RecoveryTimer], NurseCommand, float, str]

CASES: dict[str, Case] = {
    "confirm without recovery": (
        lambda: RecoveryTimer(room="or1"),
        cmd("recovery_confirm"),
        T0,
        "no_recovery",
    ),
    "check on ended recovery": (_ended, cmd("check_done", check_no=2), T0 + 1800, "no_recovery"),
    "confirm twice": (running, cmd("recovery_confirm"), T0 + 100, "already_done"),
    "check done twice": (_check1_done, cmd("check_done", check_no=1), T0 + 1000, "already_done"),
    "end after end": (_ended, cmd("recovery_end", reason="again"), T0 + 700, "already_done"),
    "cancel after end": (_ended, cmd("recovery_cancel"), T0 + 700, "already_done"),
    "unknown check": (running, cmd("check_done", check_no=99), T0 + 900, "unknown_check"),
    "check too early": (running, cmd("check_done", check_no=3), T0 + 900, "not_allowed"),
    "check while injecting": (_interrupted, cmd("check_done"), T0 + 900, "not_allowed"),
    "confirm while injecting": (_interrupted, cmd("recovery_confirm"), T0 + 400, "not_allowed"),
    "extend after target": (
        _target_reached,
        cmd("recovery_extend", seconds=600, reason="pain"),
        T0 + 10900,
        "not_allowed",
    ),
    "vitals with none available": (
        running,
        cmd("check_done", check_no=1, vitals=True),
        T0 + 900,
        "not_allowed",
    ),
    "extend without reason": (
        running,
        cmd("recovery_extend", seconds=600),
        T0 + 900,
        "bad_value",
    ),
    "extend without seconds": (
        running,
        cmd("recovery_extend", reason="pain"),
        T0 + 900,
        "bad_value",
    ),
    "extend beyond a day": (
        running,
        cmd("recovery_extend", seconds=80000, reason="pain"),
        T0 + 900,
        "bad_value",
    ),
    "end without reason": (running, cmd("recovery_end", reason="  "), T0 + 900, "bad_value"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_refusal_reason_and_nothing_changes(name: str) -> None:
    build, command, now, reason = CASES[name]
    timer = build()
    before, seq = timer.to_json(), timer.seq
    with pytest.raises(CommandError) as exc:
        apply_command(timer, command, now=now, by="nurse-anna", vitals=None)
    assert exc.value.reason == reason
    assert exc.value.detail
    # Not even the deadlines that fell due before the command were consumed.
    assert timer.to_json() == before
    assert timer.seq == seq


def test_accepted_commands_and_vitals_snapshot() -> None:
    timer = running(confirmed=False)
    ev = apply_command(timer, cmd("recovery_confirm"), now=T0 + 100, by="nurse-anna")
    assert [(e.kind, e.actor) for e in ev] == [("confirmed", "nurse-anna")]
    ev = apply_command(
        timer,
        cmd("check_done", vitals=True, note="neuro intact, legs move"),
        now=T0 + 960,
        by="nurse-anna",
        vitals=VITALS,
    )
    assert [(e.kind, e.check_no) for e in ev] == [("check_due", 1), ("check_done", 1)]
    assert ev[1].data["vitals"] == VITALS
    assert ev[1].data["late_s"] == 60
    snap = timer.snapshot(site="clinic", now=T0 + 960)
    assert snap.checks[0].vitals == VITALS
    assert snap.checks[0].note == "neuro intact, legs move"
    assert snap.checks[0].done_by == "nurse-anna"
    # Without the flag, measurements offered by the daemon are not recorded.
    ev = apply_command(
        timer, cmd("check_done", check_no=2), now=T0 + 1800, by="nurse-b", vitals=VITALS
    )
    assert "vitals" not in ev[-1].data
    ev = apply_command(
        timer,
        cmd("recovery_extend", seconds=900, reason="drowsy"),
        now=T0 + 2000,
        by="dr-b",
    )
    assert ev[-1].kind == "extended"
    assert ev[-1].data["target"] == T0 + 10800 + 900
    ev = apply_command(timer, cmd("recovery_cancel"), now=T0 + 2100, by="dr-b")
    assert (ev[-1].kind, ev[-1].reason) == ("ended", "cancelled")
    assert timer.state == "ended"
