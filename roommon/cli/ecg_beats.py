"""``roommon ecg-beats``: the streaming QRS detector over one channel of a WFDB record.

Prints one line per detected beat: its sample, its time into the record, the RR
interval to the previous beat and the heart rate it gives. With the record's
reference annotations beside it (``RECORD.atr``, or ``--annotator``), also the
sensitivity (Se) and positive predictivity (+P) of the detections against them
(±150 ms, beats in flutter episodes left out, as in EC57).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import TextIO

#: Extensions of a WFDB record's files: ``rec.dat`` or ``rec.hea`` both name ``rec``.
WFDB_EXTENSIONS = frozenset({".hea", ".dat", ".atr", ".qrs", ".ari", ".ecg", ".csv"})


def record_base(path: str) -> pathlib.Path:
    """The record named by ``path`` with or without one of its files' extensions."""
    p = pathlib.Path(path)
    return p.with_suffix("") if p.suffix.lower() in WFDB_EXTENSIONS else p


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ecg-beats`` on the main CLI's subparsers; handler in ``func``."""
    p = subparsers.add_parser(
        "ecg-beats",
        help="print the detected beats of a WFDB record: time, RR interval, heart rate",
        description=(
            "Run the streaming QRS detector over one channel of a WFDB record (path with or "
            "without its .hea/.dat extension) and print each detected beat: sample, time, RR "
            "interval and heart rate; with reference annotations beside the record, also Se "
            "and +P against them. Exit 0 done, 1 the record cannot be read, 2 bad usage."
        ),
    )
    _add_arguments(p)
    p.set_defaults(func=run_ecg_beats)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("record", help="WFDB record path, with or without extension (rec, rec.hea)")
    p.add_argument("--channel", type=int, default=0, help="signal number (default 0)")
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=1.0,
        help="feed the detector in chunks of this many seconds (default 1.0)",
    )
    p.add_argument(
        "--annotator",
        default="atr",
        help="reference annotation file extension to score against (default atr)",
    )
    p.add_argument(
        "--samples",
        action="store_true",
        help="print only each beat's sample index, one per line (for scripts)",
    )


def run_ecg_beats(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Handler of ``roommon ecg-beats``; returns the process exit status."""
    stream = out if out is not None else sys.stdout
    if args.chunk_seconds <= 0:
        print("ecg-beats: --chunk-seconds must be positive", file=sys.stderr)
        return 2
    import numpy as np

    from roommon.core import units
    from roommon.ecg.offline import (
        detect_samples,
        match_beats,
        reference_beats,
        reference_vf,
    )
    from roommon.records.physionet import read_channel

    base = record_base(args.record)
    try:
        sig = read_channel(base, channel=args.channel)
        beats = detect_samples(sig.samples, fs=sig.fs, chunk_seconds=args.chunk_seconds)
    except (OSError, ValueError, IndexError) as exc:
        print(f"ecg-beats: {args.record}: {exc}", file=sys.stderr)
        return 1
    if args.samples:
        stream.write("".join(f"{b}\n" for b in beats.tolist()))
        return 0
    seconds = beats / sig.fs
    rr = np.diff(seconds, prepend=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        hr = 60.0 / rr
    stream.write(f"{'beat':>6} {'sample':>9} {'time':>12} {'RR (s)':>7} {'HR (bpm)':>8}\n")
    lines = []
    for i, (b, t, r, h) in enumerate(
        zip(beats.tolist(), seconds.tolist(), rr.tolist(), hr.tolist(), strict=True), 1
    ):
        rr_text = "-" if i == 1 else f"{r:.3f}"
        hr_text = "-" if i == 1 else units.value(h, "bpm").removesuffix(" bpm")
        whole, ms = divmod(round(t * 1000), 1000)
        clock = f"{units.duration(whole)}.{ms:03d}"
        lines.append(f"{i:>6} {b:>9} {clock:>12} {rr_text:>7} {hr_text:>8}\n")
    stream.write("".join(lines))
    span = units.duration(sig.samples.shape[0] / sig.fs)
    stream.write(f"{len(beats)} beats in {span} ({sig.fs:g} Hz)\n")
    annotations = base.with_name(f"{base.name}.{args.annotator}")
    if annotations.is_file():
        reference = reference_beats(base, annotator=args.annotator)
        # As bxb: detections inside the reference's flutter episodes are not scored.
        vf = reference_vf(base, annotator=args.annotator)
        m = match_beats(reference, np.asarray(beats, dtype=np.int64), fs=sig.fs, vf=vf)
        stream.write(
            f"against {annotations.name} ({reference.shape[0]} reference beats, ±150 ms): "
            f"Se {100 * m.sensitivity:.2f} % (TP {m.true_pos}, FN {m.false_neg}), "
            f"+P {100 * m.positive_predictivity:.2f} % (FP {m.false_pos})\n"
        )
    else:
        stream.write(f"no reference annotations ({annotations.name}): no Se/+P\n")
    return 0
