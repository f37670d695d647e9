"""Which reader a record path needs: EDF/EDF+ by extension, PhysioNet's CSV form by its
``NAME_Signals.csv`` file, else a WFDB record."""

from __future__ import annotations

import pathlib

from roommon.records.edf import read_edf
from roommon.records.physionet_csv import csv_base, read_csv_record
from roommon.records.record import Record
from roommon.records.wfdb_files import read_wfdb

EDF_SUFFIXES = (".edf", ".rec")


def open_record(path: str) -> Record:
    """Read a WFDB record (``.hea`` path, with or without extension), an EDF/EDF+ file or a
    CSV-form record (``NAME``, ``NAME_Signals.csv``...)."""
    p = pathlib.Path(path)
    if p.suffix.lower() in EDF_SUFFIXES:
        return read_edf(p)
    if csv_base(p) is not None:
        return read_csv_record(p)
    return read_wfdb(p)
