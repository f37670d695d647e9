"""Property tests: any mix of events, commands, restarts and clock moves never emits an
event twice, never raises anything but CommandError, and a refusal changes nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from roommon.core.errors import CommandError
from roommon.recovery.messages import apply_command
from roommon.recovery.plan import CheckSegment, RecoveryPlan
from roommon.recovery.timer import RecoveryTimer, TimerEvent
from roommon.wire.timer import NurseCommand

T0 = 1_767_225_600.0
# A short plan so random walks reach every milestone: 10 min / 15 min, q2 min then q5 min.
PLAN = RecoveryPlan(
    min_bed_rest_s=600,
    target_s=900,
    checks=[CheckSegment(every_s=120, until_s=360), CheckSegment(every_s=300, until_s=900)],
    grace_s=60,
    confirm_s=240,
)

ops = st.one_of(
    st.tuples(st.just("tick"), st.floats(min_value=0, max_value=400)),
    st.tuples(st.just("wall_jump"), st.floats(min_value=-600, max_value=600)),
    st.tuples(st.just("inject_start"), st.floats(min_value=0, max_value=30)),
    st.tuples(st.just("inject_end"), st.floats(min_value=-60, max_value=30)),
    st.tuples(st.just("restore"), st.just(0.0)),
    st.tuples(
        st.sampled_from(
            ["recovery_confirm", "check_done", "recovery_extend", "recovery_end", "recovery_cancel"]
        ),
        st.floats(min_value=-100, max_value=1000, allow_nan=False),
    ),
    st.tuples(st.just("check_no"), st.integers(min_value=1, max_value=12)),
)


def command(action: str, x: float) -> NurseCommand:
    fields: dict[str, Any] = {}
    if action == "recovery_extend":
        fields = {"seconds": max(x, 1.0), "reason": "r" if x > 100 else ""}
    elif action == "recovery_end":
        fields = {"reason": "transfer" if x > 0 else ""}
    body = {"v": 1, "id": "c", "room": "or1", "action": action, **fields}
    return NurseCommand.model_validate(body)


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=60))
def test_no_event_twice_and_only_command_errors(steps: list[tuple[str, float]]) -> None:
    timer = RecoveryTimer(room="or1")
    wall, mono = T0, 0.0
    events: list[TimerEvent] = []
    refusals: list[str] = []
    for op, x in steps:
        before = timer.to_json()
        count = len(events)
        try:
            if op == "tick":
                wall, mono = wall + x, mono + x
                events += timer.advance(wall, mono)
            elif op == "wall_jump":
                wall += x
                events += timer.advance(wall, mono)
            elif op == "inject_start":
                events += timer.injection_started(at=wall + x, now=wall + x)
            elif op == "inject_end":
                events += timer.injection_ended(at=wall + x, now=wall + max(x, 0.0), plan=PLAN)
            elif op == "restore":
                timer = RecoveryTimer.from_json(timer.to_json())
                assert timer.to_json() == before
            elif op == "check_no":
                events += timer.check_done(check_no=int(x), at=wall, by="n")
            else:
                events += apply_command(timer, command(op, x), now=wall, by="n", vitals={"hr": 70})
        except CommandError as err:
            refusals.append(err.reason)
            assert timer.to_json() == before  # a refusal changes nothing
        if len(events) == count:
            # The daemon saves only when there are events: no silent state change.
            assert timer.to_json() == before
    assert set(refusals) <= {
        "no_recovery",
        "already_done",
        "unknown_check",
        "not_allowed",
        "bad_value",
    }
    keys = Counter(e.once_key for e in events if e.once_key is not None)
    assert [k for k, n in keys.items() if n > 1] == []
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    # Each recovery ends at most once and nothing of it follows its end.
    ended = {e.recovery_id: e.seq for e in events if e.kind == "ended"}
    for e in events:
        if e.recovery_id in ended and e.kind not in ("clock_jump", "started"):
            assert e.seq <= ended[e.recovery_id]
    scheduled = {int(k.removeprefix("check")) for k in timer.deadlines() if k.startswith("check")}
    assert timer.overdue_outstanding() <= scheduled
