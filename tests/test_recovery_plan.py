"""Recovery plans: defaults, the check schedule, validation with field paths."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from roommon.recovery.plan import CheckSegment, RecoveryConfig, RecoveryPlan


def test_defaults_are_the_documented_order() -> None:
    plan = RecoveryPlan()
    assert (plan.min_bed_rest_s, plan.target_s, plan.grace_s, plan.confirm_s) == (
        7200,
        10800,
        300,
        1800,
    )
    minutes = [o / 60 for o in plan.check_offsets(plan.target_s)]
    assert minutes == [15, 30, 45, 60, 90, 120, 150, 180]


def test_schedule_continues_at_the_last_interval_and_is_prefix_stable() -> None:
    plan = RecoveryPlan(
        min_bed_rest_s=3600,
        target_s=5400,
        checks=[CheckSegment(every_s=600, until_s=1800), CheckSegment(every_s=1200, until_s=3000)],
    )
    base = list(plan.check_offsets(plan.target_s))
    assert base == [600, 1200, 1800, 3000, 4200, 5400]
    longer = list(plan.check_offsets(plan.target_s + 2400))
    assert longer[: len(base)] == base
    assert longer[len(base) :] == [6600, 7800]
    # A segment whose length is not a multiple of its interval: no check at its end.
    odd = RecoveryPlan(checks=[CheckSegment(every_s=700, until_s=1800)])
    assert list(odd.check_offsets(3000)) == [700, 1400, 2500]


def test_config_picks_the_plan_of_the_procedure() -> None:
    cfg = RecoveryConfig.model_validate(
        {"procedures": {"vertebroplasty": {"min_bed_rest_s": 3600, "target_s": 7200}}}
    )
    assert cfg.plan_for("vertebroplasty").target_s == 7200
    assert cfg.plan_for("kyphoplasty") == cfg.default == RecoveryPlan()
    assert cfg.plan_for(None) == cfg.default


def _errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as exc:
        RecoveryConfig.model_validate(data)
    return [
        (".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.value.errors(include_url=False)
    ]


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (
            {"procedures": {"kypho": {"min_bed_rest_s": 7200, "target_s": 3600}}},
            "procedures.kypho",
            "target_s: 3600 s is shorter than min_bed_rest_s 7200 s",
        ),
        ({"default": {"grace_s": -1}}, "default.grace_s", "greater than or equal to 0"),
        ({"default": {"target_s": 1e9}}, "default.target_s", "less than or equal to 86400"),
        (
            {
                "default": {
                    "checks": [{"every_s": 900, "until_s": 3600}, {"every_s": 60, "until_s": 3600}]
                }
            },
            "default",
            "checks: segment 1 ends at 3600 s, not after the previous segment's end 3600 s",
        ),
        (
            {"default": {"checks": [{"every_s": 4000, "until_s": 3600}]}},
            "default",
            "checks: segment 0 is 3600 s long, shorter than its interval every_s 4000 s",
        ),
        ({"default": {"checks": []}}, "default", "checks: at least one segment is needed"),
        ({"default": {"grace": 60}}, "default.grace", "Extra inputs are not permitted"),
        ({"procedures": {"bad/name": {}}}, "procedures.bad/name.[key]", "only letters"),
        ({"default": {"confirm_s": float("inf")}}, "default.confirm_s", "finite number"),
    ],
)
def test_validation_names_the_field(data: dict[str, Any], path: str, message: str) -> None:
    problems = _errors(data)
    assert any(p == path and message in m for p, m in problems), problems
