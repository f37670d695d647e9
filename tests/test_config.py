"""Configuration: the example is valid, and every broken file names the exact field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roommon.cli import main
from roommon.config import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "example-room.toml"

GOOD = """
[site]
id = "s1"
[rooms.r1.feeds.ekg]
kind = "ecg"
fs = 250
"""


def test_example_config_is_valid_and_has_the_four_feeds() -> None:
    cfg = load_config(EXAMPLE)
    kinds = {f.kind.value for f in cfg.rooms["proc1"].feeds.values()}
    assert {"ecg", "nibp", "spo2", "pleth", "cement_pressure"} <= kinds


def test_check_config_prints_one_line_summary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOMMON_MQTT_USERNAME", "roommon")  # check-config wants them set
    monkeypatch.setenv("ROOMMON_MQTT_PASSWORD", "s3cret")
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith(f"{EXAMPLE}: ok: site stmarys, 1 room(s)")


BROKEN = [
    ('[site]\nid = "a/b"\n[rooms.r1.feeds.ekg]\nkind="ecg"\nfs=250\n', "site.id", "'/'"),
    ('[site]\nid = "s"\n[rooms."r#1".feeds.ekg]\nkind="ecg"\nfs=250\n', "rooms.r#1.[key]", "'#'"),
    (
        '[site]\nid = "s"\n[rooms.r1.feeds."e+"]\nkind="ecg"\nfs=250\n',
        "rooms.r1.feeds.e+.[key]",
        "'+'",
    ),
    (GOOD + "[broker]\nport = 0\n", "broker.port", "greater than or equal to 1"),
    (GOOD + '[broker]\npassword = "hunter2"\n', "broker.password", "unknown field"),
    (GOOD.replace("fs = 250", "fs = 0"), "rooms.r1.feeds.ekg.fs", "sample rate > 0"),
    (GOOD.replace('kind = "ecg"', 'kind = "eeg"'), "rooms.r1.feeds.ekg.kind", "Input should be"),
    (GOOD + 'unit = "uV"\n', "rooms.r1.feeds.ekg.unit", "carried in 'mV'"),
    (GOOD + "[rooms.r1.checks.nosuch]\n", "rooms.r1.checks.nosuch", "unknown check"),
    (
        GOOD + "[rooms.r1.checks.ecg]\nasystole_s = -1\n",
        "rooms.r1.checks.ecg.asystole_s",
        "greater than",
    ),
    (GOOD + "[rooms.r1.checks.spo2]\n", "rooms.r1.checks.spo2", "needs a feed of kind spo2"),
    (
        GOOD + '[rooms.r1.alarms."ecg.tachy"]\ndelay_s = "soon"\n',
        "rooms.r1.alarms.ecg.tachy.delay_s",
        "valid number",
    ),
    (
        GOOD + '[rooms.r1.escalation]\nhigh = [{after_s = 20, to = "a/b"}]\n',
        "rooms.r1.escalation.high.0.to",
        "'/'",
    ),
    ('[site]\nid = "s"\n', "rooms", "Field required"),
    ('[site]\nid = "s"\n[rooms.r1]\n', "rooms.r1.feeds", "Field required"),
    ("[site\n", "(toml)", "Expected ']'"),
]


@pytest.mark.parametrize(("text", "path", "message"), BROKEN)
def test_broken_config_names_file_field_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, path: str, message: str
) -> None:
    f = tmp_path / "room.toml"
    f.write_text(text)
    assert main(["check-config", str(f)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith(f"{f}: {path}: ") and message in line for line in lines), lines


def test_all_problems_of_a_file_are_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "room.toml"
    f.write_text(
        '[site]\nid = "a b"\n[broker]\nport = 99999\n[rooms.r1.feeds.ekg]\nkind = "ecg"\n'
        "[rooms.r1.checks.nosuch]\n"
    )
    assert main(["check-config", str(f)]) == 2
    err = capsys.readouterr().err
    for path in ("site.id", "broker.port", "rooms.r1.feeds.ekg.fs", "rooms.r1.checks.nosuch"):
        assert f"{f}: {path}: " in err


def test_run_refuses_a_bad_config_the_same_way(tmp_path: Path) -> None:
    f = tmp_path / "room.toml"
    f.write_text('[site]\nid = "a/b"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "roommon", "run", "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{f}: site.id: " in proc.stderr


def test_missing_file_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "/nonexistent/roommon.toml"]) == 2
    assert "/nonexistent/roommon.toml: (file): cannot read" in capsys.readouterr().err


def test_credentials_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = tmp_path / "room.toml"
    f.write_text(GOOD + '[broker]\nusername_env = "RM_USER"\npassword_env = "RM_PASS"\n')
    monkeypatch.setenv("RM_USER", "roommon")
    monkeypatch.setenv("RM_PASS", "s3cret")
    assert load_config(f).broker.credentials() == ("roommon", "s3cret")


def test_checks_command_lists_every_check_with_its_alarms_and_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from roommon.checks import CHECKS

    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    for name, cls in CHECKS.items():
        assert f"[{name}]" in out
        for spec in cls.conditions:
            assert spec.code in out
        for field in cls.settings_model.model_fields:
            assert f"    {field} = " in out
    assert "feed.silent" in out


def test_a_relative_state_dir_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    relative = folder / "rel.toml"
    relative.write_text(
        '[site]\nid = "s"\n[daemon]\nstate_dir = "state"\n'
        '[rooms.r1.feeds.spo2]\nkind = "spo2"\n'
    )
    default = folder / "default.toml"
    default.write_text('[site]\nid = "s"\n[rooms.r1.feeds.spo2]\nkind = "spo2"\n')
    monkeypatch.chdir(tmp_path)  # somewhere else than the config's folder
    assert load_config(relative).daemon.state_dir == folder / "state"
    assert load_config(default).daemon.state_dir == folder / "var"
    assert load_config("etc/rel.toml").daemon.state_dir == folder / "state"


def test_checks_with_config_shows_each_rooms_checks_as_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "room.toml"
    f.write_text(GOOD + "[rooms.r1.checks.ecg]\nasystole_s = 6.0\n")
    assert main(["checks", "--config", str(f)]) == 0
    out = capsys.readouterr().out.split(f"As configured in {f}:")[1]
    assert "Room r1:" in out
    assert "[ecg]  feeds: ekg" in out
    assert "asystole_s = 6.0   (set in the config; default 4.0)" in out
    (tmp_path / "bad.toml").write_text("[site]\n")
    assert main(["checks", "--config", str(tmp_path / "bad.toml")]) == 2
