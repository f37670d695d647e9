"""The light commands stay light: what ``--version`` and ``check-config`` import (issue 10).

The start-up times themselves are measured by ``bench/startup.py``; these tests
guard the cause of the cost: a config check must not import numpy, scipy or
any check's signal code, and the check registry must answer for a check
without importing its implementation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from roommon.checks import CHECKS
from roommon.checks.base import CheckSettings
from roommon.config import load_config
from roommon.core.conditions import Priority
from roommon.room.conditions import build_checks, declared_conditions

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "example-room.toml"
HEAVY = ("numpy", "scipy", "aiohttp", "aiomqtt", "matplotlib", "roommon.checks.ecg")


def _modules_after(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter has loaded after ``roommon ARGV`` (which must succeed)."""
    code = (
        "import json, sys\n"
        "from roommon.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as stop:\n"  # argparse's --version
        "    rc = stop.code or 0\n"
        "print(json.dumps([rc, sorted(sys.modules)]))\n"
    )
    env = {**os.environ, "ROOMMON_MQTT_USERNAME": "u", "ROOMMON_MQTT_PASSWORD": "p"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    rc, modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert rc == 0, done.stderr
    return set(modules)


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["check-config", str(EXAMPLE)], ["checks"]],
    ids=["version", "check-config", "checks"],
)
def test_light_commands_import_no_numerics_and_no_check_implementation(argv: list[str]) -> None:
    loaded = _modules_after(argv)
    assert not [m for m in HEAVY if m in loaded]


def test_version_does_not_even_import_pydantic() -> None:
    assert "pydantic" not in _modules_after(["--version"])


def test_each_declaration_loads_the_implementation_that_carries_it() -> None:
    for decl in CHECKS.declarations():
        cls = CHECKS[decl.name]
        assert cls.declaration is decl
        assert (cls.name, cls.needs, cls.optional, cls.settings_model, cls.conditions) == (
            decl.name,
            decl.needs,
            decl.optional,
            decl.settings_model,
            decl.conditions,
        )
        assert cls.window_s == decl.window_s


def test_declared_conditions_are_those_the_running_checks_report() -> None:
    """check-config's list of a room's conditions matches the instantiated checks' list."""
    cfg = load_config(EXAMPLE)
    for room_id, room in cfg.rooms.items():
        running = {s.code for c in build_checks(room_id, room) for s in c.condition_specs()}
        assert {s.code for s in declared_conditions(room)} == running


def test_rule_driven_conditions_follow_the_settings() -> None:
    decl = CHECKS.declared("numeric_limits")
    assert decl is not None
    settings: CheckSettings = decl.settings_model.model_validate(
        {"rules": [{"kind": "spo2", "field": "spo2", "below": 85, "priority": "high"}]}
    )
    (spec,) = decl.condition_specs(settings)
    assert (spec.code, spec.priority) == ("limit.spo2_low", Priority.HIGH)


def test_membership_and_declarations_do_not_import_implementations() -> None:
    code = (
        "import sys\n"
        "from roommon.checks import CHECKS\n"
        "assert 'ecg' in CHECKS and 'nosuch' not in CHECKS\n"
        "assert sorted(CHECKS) == sorted(d.name for d in CHECKS.declarations())\n"
        "assert CHECKS.declared('spo2').settings_model.model_validate({}).desat_pct > 0\n"
        "import json\n"
        "names = [m for m in sys.modules if m.startswith(('numpy', 'roommon.checks.'))]\n"
        "print(json.dumps(sorted(names)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(done.stdout)
    assert [m for m in loaded if not m.startswith("roommon.checks.declarations")] == [
        "roommon.checks.base"
    ]
