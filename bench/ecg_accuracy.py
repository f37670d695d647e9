"""Benchmark: QRS detection accuracy and throughput of roommon's streaming detector.

For every annotated WFDB record under a folder (default: the shared PhysioNet
folder, recursively), scores the detector as the daemon runs it (fed chunk by
chunk) against the reference beat annotations: sensitivity (Se) and positive
predictivity (+P) with a 150 ms match window, beat annotations only, ventricular
flutter episodes excluded; per record and gross, next to
``wfdb.processing.xqrs_detect`` on the same signals in the same run. Then
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

from roommon.ecg.offline import MatchResult, detect_samples, match_beats, reference_beats
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
        f" | {'xqrs Se':>8}{'+P':>8}{'FN':>5}{'FP':>5}"
    )
    gross_ours = MatchResult(0, 0, 0)
    gross_xqrs = MatchResult(0, 0, 0)
    worst = 1.0
    speed: dict[str, list[float]] = {"0.1 s chunks": [0.0, 0.0], "1 s chunks": [0.0, 0.0]}
    xqrs_time = xqrs_samples = 0.0
    for path in records:
        sig = read_channel(path, channel=args.channel)
        x = np.nan_to_num(sig.samples)  # xqrs needs finite input; ours holds NaN itself
        ref = reference_beats(path)
        ours, t1 = _timed(sig.samples, sig.fs, 1.0)
        _, t01 = _timed(sig.samples, sig.fs, 0.1)
        speed["1 s chunks"][0] += x.shape[0]
        speed["1 s chunks"][1] += t1
        speed["0.1 s chunks"][0] += x.shape[0]
        speed["0.1 s chunks"][1] += t01
        xq, tx = _xqrs(x, sig.fs)
        xqrs_samples += x.shape[0]
        xqrs_time += tx
        m_ours = match_beats(ref, ours, fs=sig.fs)
        m_xq = match_beats(ref, xq, fs=sig.fs)
        gross_ours += m_ours
        gross_xqrs += m_xq
        worst = min(worst, m_ours.sensitivity, m_ours.positive_predictivity)
        name = str(path.relative_to(args.folder))
        print(
            f"{name:<14}{sig.fs:>6.0f}{ref.shape[0]:>7} | {_pct(m_ours.sensitivity):>10}"
            f"{_pct(m_ours.positive_predictivity):>8}{m_ours.false_neg:>5}{m_ours.false_pos:>5}"
            f" | {_pct(m_xq.sensitivity):>8}{_pct(m_xq.positive_predictivity):>8}"
            f"{m_xq.false_neg:>5}{m_xq.false_pos:>5}"
        )
    total = gross_ours.true_pos + gross_ours.false_neg
    print(
        f"{'gross':<14}{'':>6}{total:>7} | {_pct(gross_ours.sensitivity):>10}"
        f"{_pct(gross_ours.positive_predictivity):>8}{gross_ours.false_neg:>5}"
        f"{gross_ours.false_pos:>5} | {_pct(gross_xqrs.sensitivity):>8}"
        f"{_pct(gross_xqrs.positive_predictivity):>8}{gross_xqrs.false_neg:>5}"
        f"{gross_xqrs.false_pos:>5}"
    )
    print(f"worst single-record Se or +P (roommon): {_pct(worst).strip()} %")
    print()
    print("throughput (one core, samples per second):")
    for label, (n, t) in speed.items():
        print(f"  roommon streaming, {label:<14}{n / t:>14,.0f}")
    print(f"  xqrs batch (whole record)      {xqrs_samples / xqrs_time:>14,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
