"""Which reader a record path needs: EDF/EDF+ by extension, else a WFDB record."""

from __future__ import annotations

import pathlib

from roommon.records.edf import read_edf
from roommon.records.record import Record
from roommon.records.wfdb_files import read_wfdb

EDF_SUFFIXES = (".edf", ".rec")


def open_record(path: str) -> Record:
    """Read a WFDB record (``.hea`` path, with or without extension) or an EDF/EDF+ file."""
    p = pathlib.Path(path)
    if p.suffix.lower() in EDF_SUFFIXES:
        return read_edf(p)
    return read_wfdb(p)
