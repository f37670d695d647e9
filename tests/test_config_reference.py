"""docs/config.md is generated from the config models and must not drift from them
(issue 14 item 4), as the payload schemas must not drift from the payload models."""

from __future__ import annotations

from pathlib import Path

from roommon.checks import CHECKS
from roommon.cli.config_reference import DOC, main, reference, sections
from roommon.config import Config


def test_the_committed_reference_matches_the_models() -> None:
    """Fix: python -m roommon.cli.config_reference"""
    assert DOC.read_text(encoding="utf-8") == reference()


def test_check_mode_fails_on_a_drifted_file(tmp_path: Path) -> None:
    out = tmp_path / "config.md"
    assert main(["--out", str(out)]) == 0
    assert main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("Period of time-based checks.", "Old text."))
    assert main(["--check", "--out", str(out)]) == 1


def test_every_section_and_check_is_in_the_reference() -> None:
    headings = {s.heading for s in sections(Config)}
    for expected in (
        "site",
        "broker",
        "daemon",
        "metrics",
        "rooms.ROOM",
        "rooms.ROOM.feeds.FEED",
        "rooms.ROOM.feeds.FEED.serial",
        'rooms.ROOM.alarms."CODE"',
        'rooms.ROOM.profiles.PHASE."CODE"',
        "rooms.ROOM.escalation",
        "rooms.ROOM.escalation.high[]",
        "rooms.ROOM.recovery.default",
        "hl7",
        "hl7.receivers.RECEIVER",
    ):
        assert expected in headings, expected
    for name in CHECKS:
        assert f"rooms.ROOM.checks.{name}" in headings, name
    text = reference()
    assert "| `tick_s` | number, > 0, ≤ 5 | 1.0 | s | Period of time-based checks. |" in text
    assert "| `max_pressure_kpa` | number, > 0 | 3200.0 | kPa |" in text


def test_every_field_says_what_it_is() -> None:
    """A field without a description would be a row of the reference that says nothing."""
    missing = [
        f"[{s.heading}] {name}"
        for s in [*sections(Config)]
        for name, f in s.model.model_fields.items()
        if not f.description
    ]
    missing += [name for name, f in Config.model_fields.items() if not f.description]
    assert not missing, missing
