"""Benchmark: QRS detection accuracy and throughput of roommon's streaming detector.

For every annotated WFDB record under a folder (default: the shared PhysioNet
folder, recursively), scores the detector as the daemon runs it (fed chunk by
chunk) against the reference beat annotations: sensitivity (Se) and positive
predictivity (+P) with a 150 ms match window, beat annotations only, ventricular
flutter episodes excluded; per record and gross, next to
``wfdb.processing.xqrs_detect`` on the same signals in the same run.

Scored by :func:`roommon.ecg.offline.match_beats`, a port of WFDB's ``bxb``
(the reference implementation EC57 requires): its pairing rules and 150 ms
window; the 19 beat labels are QRS complexes; reference beats inside the
ventricular flutter / fibrillation episodes (``[`` .. ``]``) are skipped and an
unpaired detection there is not counted; segments the reference marks unreadable
(``~``, bxb's "shutdown") are scored like any other (bxb counts a detection there
as false, in its ``X`` row). Records without beat annotations (vfdb: rhythm
labels only) have nothing to score and are skipped. bxb's default start, 5
minutes in (EC57's learning period), is the ``EC57`` columns; the others score
the whole record, start-up included, which is what a monitor switched on at the
bedside faces. Gross figures are given per database group: MIT-BIH (mitdb,
svdb) is what EC57 scores QRS detection on; cudb's beat annotations are a weaker
reference (all beats are labelled N, and cu35 leaves stretches of the same small
complexes it labels elsewhere unlabelled), so its figures are too. Then
throughput in samples per second when fed in 0.1 s and 1 s chunks, next to
xqrs's batch throughput. Channel 0 of each record is used (MLII on mitdb).

Usage: ``python bench/ecg_accuracy.py [FOLDER] [--channel N]``.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from roommon.ecg.offline import (
    EC57_START_S,
    MatchResult,
    detect_samples,
    match_beats,
    reference_beats,
    reference_vf,
)
from roommon.records.physionet import SHARED_DIR, annotated_records, read_channel, search_dirs


def _xqrs(samples: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    from wfdb import processing

    logging.getLogger("wfdb").setLevel(logging.ERROR)
    t = time.perf_counter()
    beats = processing.xqrs_detect(sig=samples, fs=fs, verbose=False)
    return np.asarray(beats, dtype=np.int64), time.perf_counter() - t


def _timed(samples: np.ndarray, fs: float, chunk_s: float) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    beats = detect_samples(samples, fs=fs, chunk_seconds=chunk_s)
    return beats, time.perf_counter() - t


def _pct(x: float) -> str:
    return f"{100.0 * x:7.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = next((d for d in search_dirs() if d.is_dir()), SHARED_DIR)
    ap.add_argument("folder", nargs="?", type=pathlib.Path, default=default)
    ap.add_argument("--channel", type=int, default=0)
    args = ap.parse_args(argv)

    records = annotated_records(args.folder)
    if not records:
        print(f"no annotated records under {args.folder}", file=sys.stderr)
        return 1
    print(f"records: {len(records)} under {args.folder} (channel {args.channel})")
    print(
        f"{'record':<14}{'fs':>6}{'beats':>7} | {'roommon Se':>10}{'+P':>8}{'FN':>5}{'FP':>5}"
        f" | {'EC57 Se':>8}{'+P':>8} | {'xqrs Se':>8}{'+P':>8}{'FN':>5}{'FP':>5}"
    )
    groups = ("mitdb+svdb", "cudb", "other", "all")
    gross = {g: [MatchResult(0, 0, 0), MatchResult(0, 0, 0), MatchResult(0, 0, 0)] for g in groups}
    worst = 1.0
    skipped: list[str] = []
    speed: dict[str, list[float]] = {"0.1 s chunks": [0.0, 0.0], "1 s chunks": [0.0, 0.0]}
    xqrs_time = xqrs_samples = 0.0
    for path in records:
        name = str(path.relative_to(args.folder))
        sig = read_channel(path, channel=args.channel)
        x = np.nan_to_num(sig.samples)  # xqrs needs finite input; ours holds NaN itself
        ours, t1 = _timed(sig.samples, sig.fs, 1.0)
        _, t01 = _timed(sig.samples, sig.fs, 0.1)
        speed["1 s chunks"][0] += x.shape[0]
        speed["1 s chunks"][1] += t1
        speed["0.1 s chunks"][0] += x.shape[0]
        speed["0.1 s chunks"][1] += t01
        ref = reference_beats(path)
        if ref.shape[0] == 0:
            skipped.append(name)
            continue
        vf = reference_vf(path)
        xq, tx = _xqrs(x, sig.fs)
        xqrs_samples += x.shape[0]
        xqrs_time += tx
        m_ours = match_beats(ref, ours, fs=sig.fs, vf=vf)
        m_ec57 = match_beats(ref, ours, fs=sig.fs, start_s=EC57_START_S, vf=vf)
        m_xq = match_beats(ref, xq, fs=sig.fs, vf=vf)
        db = name.split("/")[0]
        group = "mitdb+svdb" if db in ("mitdb", "svdb") else "cudb" if db == "cudb" else "other"
        for g in (group, "all"):
            gross[g][0] += m_ours
            gross[g][1] += m_ec57
            gross[g][2] += m_xq
        worst = min(worst, m_ours.sensitivity, m_ours.positive_predictivity)
        print(
            f"{name:<14}{sig.fs:>6.0f}{ref.shape[0]:>7} | {_pct(m_ours.sensitivity):>10}"
            f"{_pct(m_ours.positive_predictivity):>8}{m_ours.false_neg:>5}{m_ours.false_pos:>5}"
            f" | {_pct(m_ec57.sensitivity):>8}{_pct(m_ec57.positive_predictivity):>8}"
            f" | {_pct(m_xq.sensitivity):>8}{_pct(m_xq.positive_predictivity):>8}"
            f"{m_xq.false_neg:>5}{m_xq.false_pos:>5}"
        )
    for g in groups:
        o, e, q = gross[g]
        total = o.true_pos + o.false_neg
        if not total:
            continue
        print(
            f"{'gross ' + g:<20}{total:>7} | {_pct(o.sensitivity):>10}"
            f"{_pct(o.positive_predictivity):>8}{o.false_neg:>5}{o.false_pos:>5}"
            f" | {_pct(e.sensitivity):>8}{_pct(e.positive_predictivity):>8}"
            f" | {_pct(q.sensitivity):>8}{_pct(q.positive_predictivity):>8}"
            f"{q.false_neg:>5}{q.false_pos:>5}"
        )
    print(f"worst single-record Se or +P (roommon): {_pct(worst).strip()} %")
    if skipped:
        print(f"not scored (no beat annotations): {', '.join(skipped)}")
    print()
    print("throughput (one core, samples per second):")
    for label, (n, t) in speed.items():
        print(f"  roommon streaming, {label:<14}{n / t:>14,.0f}")
    print(f"  xqrs batch (whole record)      {xqrs_samples / xqrs_time:>14,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
