"""Record replay throughput (issue 17): a 30-minute two-lead 360 Hz record through a room.

``roommon replay mitdb/100`` in-process, end to end: reading the WFDB record,
mapping, encoding the one-second chunks as feed payloads, the daemon's ingest
path, the room pipeline with the EKG check on both leads, the SQLite alarm log
and the audit against the reference beats. Imports (scipy, wfdb) are warmed
first: they are paid once per process, not per record. Target: >= 500x real
time on one core. Prints the median of three runs and the replay's own line;
the target is judged on the process's CPU time (one core's work, whatever else
the machine runs), with the wall time beside it.
"""

from __future__ import annotations

import asyncio
import io
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roommon.cli import build_parser  # noqa: E402
from roommon.cli.replay import replay  # noqa: E402
from roommon.core.clock import RealClock  # noqa: E402
from roommon.core.logs import configure  # noqa: E402
from roommon.records.physionet import record_path  # noqa: E402

TARGET = 500.0
RUNS = 3


def run_once(argv: list[str]) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, output) of one replay."""
    args = build_parser(argv).parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    status = asyncio.run(replay(args, out=out, err=err))
    cpu, took = time.process_time() - c0, time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"replay failed ({status}): {err.getvalue()}")
    return cpu, took, out.getvalue()


def main() -> None:
    configure(clock=RealClock(), level="error", json=False)
    rec = str(record_path("mitdb", "100"))
    run_once(["replay", rec, "--to", "20"])  # warm the imports (scipy, wfdb)
    argv = ["replay", rec]
    times, walls = [], []
    text = ""
    for _ in range(RUNS):
        cpu, took, text = run_once(argv)
        times.append(cpu)
        walls.append(took)
    line = next(x for x in text.splitlines() if "recorded s in" in x)
    beats = [x.strip() for x in text.splitlines() if x.strip().startswith("beats ")]
    recorded = float(line.split(" recorded s")[0].rsplit(" ", 1)[1])
    median = statistics.median(times)
    ratio = recorded / median
    print(f"record: {rec} (2 x MLII/V5 at 360 Hz)")
    print(f"replay: {line.split('roommon replay: ')[1]}")
    print("\n".join(beats))
    print(
        f"end to end (read, map, encode, daemon, audit): median {median:.2f} CPU s of {RUNS} "
        f"(wall {statistics.median(walls):.2f} s) for {recorded:.0f} s of record = "
        f"{ratio:.0f}x real time on one core "
        f"(target >= {TARGET:.0f}x): {'OK' if ratio >= TARGET else 'BELOW TARGET'}"
    )


if __name__ == "__main__":
    main()
