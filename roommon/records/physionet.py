"""Where PhysioNet reference records come from, and how one ECG channel is read.

Sits outside the live data flow: tests, the offline ``ecg-beats`` command and the
benchmarks use it to feed real recordings through the same streaming code the
daemon runs. Records are looked up, in order, in

1. ``$ROOMMON_PHYSIONET_DIR/<db>/<record>``,
2. ``<repo root>/../shared/data/physionet/<db>/<record>`` (the read-only shared copy),
3. ``~/.cache/roommon/physionet/<db>/<record>``, downloading it there with wfdb
   when it is missing.

``wfdb`` is an optional extra (``roommon[physionet]``), so it is imported only
inside the functions that need it.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Final

import numpy as np

from roommon.core.log import get_logger
from roommon.core.model import FloatArray

log = get_logger(__name__)

ENV_VAR: Final = "ROOMMON_PHYSIONET_DIR"
REPO_ROOT: Final = pathlib.Path(__file__).resolve().parents[2]
SHARED_DIR: Final = REPO_ROOT.parent / "shared" / "data" / "physionet"
CACHE_DIR: Final = pathlib.Path.home() / ".cache" / "roommon" / "physionet"

# Files that make a record usable: a header and at least one signal file.
_SIGNAL_SUFFIXES: Final = (".dat", ".mat")


def search_dirs() -> list[pathlib.Path]:
    """The folders searched for records, most specific first."""
    dirs: list[pathlib.Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(pathlib.Path(env).expanduser())
    dirs.append(SHARED_DIR)
    dirs.append(CACHE_DIR)
    return dirs


def _present(base: pathlib.Path) -> bool:
    return (
        base.with_suffix(".hea").is_file()
        or base.with_suffix(".csv").is_file()
        or base.with_name(base.name + "_Signals.csv").is_file()  # PhysioNet's CSV form (bidmc)
    )


def record_path(db: str, record: str, *, download: bool = True) -> pathlib.Path:
    """Path (without extension) of ``record`` of PhysioNet database ``db``.

    Looks in :func:`search_dirs`; when absent everywhere and ``download`` is
    true, fetches the record's files from PhysioNet into the cache. Raises
    ``FileNotFoundError`` when the record cannot be found or fetched.
    """
    for d in search_dirs():
        base = d / db / record
        if _present(base):
            return base
    if not download:
        raise FileNotFoundError(f"PhysioNet record {db}/{record} not found in {search_dirs()}")
    return _download(db, record)


def _download(db: str, record: str) -> pathlib.Path:
    import wfdb  # optional extra; only needed when a record is missing locally

    target = CACHE_DIR / db
    target.mkdir(parents=True, exist_ok=True)
    log.info("physionet_download", db=db, record=record, target=str(target))
    try:
        wfdb.dl_database(db, dl_dir=str(target), records=[record], annotators="all")
    except Exception as exc:  # wfdb raises bare HTTP/OS errors; converted at this edge
        raise FileNotFoundError(f"could not download PhysioNet record {db}/{record}") from exc
    base = target / record
    if not _present(base):
        raise FileNotFoundError(f"download of PhysioNet record {db}/{record} gave no header")
    return base


def annotated_records(folder: pathlib.Path, *, annotator: str = "atr") -> list[pathlib.Path]:
    """Every WFDB record under ``folder`` (recursively) with an ``annotator`` file.

    Returned as paths without extension, sorted, so a benchmark's order is stable.
    """
    out = []
    for ann in sorted(folder.rglob(f"*.{annotator}")):
        base = ann.with_suffix("")
        if base.with_suffix(".hea").is_file():
            out.append(base)
    return out


@dataclass(frozen=True, slots=True)
class EcgSignal:
    """One channel of a recording, in physical units (mV for ECG)."""

    samples: FloatArray
    fs: float
    name: str


def read_channel(path: pathlib.Path | str, *, channel: int = 0) -> EcgSignal:
    """Read one channel of a WFDB record (or an EC13-style one-column CSV at 720 Hz).

    Multi-rate records (e.g. MIMIC's 500 Hz ECG with 125 Hz pressure) are read
    frame by frame so the channel keeps its own sample rate. Missing samples
    (NaN in wfdb's physical signal) are kept as NaN: callers decide what a gap is.
    """
    path = pathlib.Path(path)
    csv = path.with_suffix(".csv") if path.suffix != ".csv" else path
    if csv.is_file() and not path.with_suffix(".hea").is_file():
        # AAMI EC13 test waveforms as shipped by dtw-python: one mV value per line,
        # 720 Hz (their documented rate; the file carries no timestamps).
        data = np.loadtxt(csv, dtype=np.float64, ndmin=1)
        return EcgSignal(samples=data, fs=720.0, name=csv.stem)

    import wfdb  # optional extra

    rec = wfdb.rdrecord(str(path), smooth_frames=False, channels=[channel])
    spf = int(rec.samps_per_frame[0])
    samples = np.asarray(rec.e_p_signal[0], dtype=np.float64)
    return EcgSignal(samples=samples, fs=float(rec.fs) * spf, name=str(rec.sig_name[0]))
