"""Shared PhysioNet record fixtures for the EKG tests (via roommon.records.physionet)."""

from __future__ import annotations

import pathlib

import pytest

from roommon.records.physionet import record_path


def physionet_record(db: str, record: str) -> pathlib.Path:
    """Path of a shared record; downloading is not allowed from tests (loopback only)."""
    try:
        return record_path(db, record, download=False)
    except FileNotFoundError as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PhysioNet record {db}/{record} missing: {exc}")
