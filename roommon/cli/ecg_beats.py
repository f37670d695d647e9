"""``roommon ecg-beats``: the streaming QRS detector over one channel of a WFDB record."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ecg-beats`` on the main CLI's subparsers; handler in ``func``."""
    p = subparsers.add_parser(
        "ecg-beats",
        help="print the detected beats of a WFDB record, one sample index per line",
        description=(
            "Run the streaming QRS detector over one channel of a WFDB record "
            "(path without extension) and print each detected R peak's sample index."
        ),
    )
    _add_arguments(p)
    p.set_defaults(func=run_ecg_beats)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("record", help="WFDB record path without extension")
    p.add_argument("--channel", type=int, default=0, help="signal number (default 0)")
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=1.0,
        help="feed the detector in chunks of this many seconds (default 1.0)",
    )


def run_ecg_beats(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Handler of ``roommon ecg-beats``; returns the process exit status."""
    stream = out if out is not None else sys.stdout
    if args.chunk_seconds <= 0:
        print("ecg-beats: --chunk-seconds must be positive", file=sys.stderr)
        return 2
    from roommon.ecg.offline import detect_record

    try:
        beats = detect_record(args.record, channel=args.channel, chunk_seconds=args.chunk_seconds)
    except (OSError, ValueError, IndexError) as exc:
        print(f"ecg-beats: {args.record}: {exc}", file=sys.stderr)
        return 1
    stream.write("".join(f"{b}\n" for b in beats.tolist()))
    return 0
