"""SpO2 check on real pleth (issue 17): the 26 bidmc records replayed through a room.

``roommon replay bidmc/bidmc_NN`` in-process for each shared record (PLETH at 125 Hz and
the bedside monitor's SpO2 and pulse-rate numerics, PhysioNet's CSV form), with the
config made from the record (default SpO2 limits). Per record it prints how often the
room showed a fresh pulse rate from roommon's own pleth analysis, how often that rate
was within 5 bpm of the monitor's, the median difference, whether the SpO2 shown was
the monitor's, the replay speed, and the alarms raised. The monitor's numbers are a
monitor's outputs, not a reference: a disagreement is a question, not a verdict.
"""

from __future__ import annotations

import asyncio
import io
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roommon.cli import build_parser  # noqa: E402
from roommon.cli.replay import replay  # noqa: E402
from roommon.core.clock import RealClock  # noqa: E402
from roommon.core.logs import configure  # noqa: E402
from roommon.records.physionet import record_path  # noqa: E402
from roommon.records.physionet_csv import read_csv_record  # noqa: E402
from roommon.records.record import DEFAULT_START_EPOCH  # noqa: E402
from roommon.testing import CaptureOutput  # noqa: E402

RECORDS = [f"bidmc_{n:02d}" for n in range(1, 27)]
FRESH_S = 10.0
CLOSE_BPM = 5.0


def run(rec: pathlib.Path) -> tuple[float, CaptureOutput]:
    capture = CaptureOutput()
    args = build_parser().parse_args(["replay", str(rec)])
    t0 = time.perf_counter()
    status = asyncio.run(replay(args, out=io.StringIO(), err=io.StringIO(), outputs=[capture]))
    if status != 0:
        raise SystemExit(f"replay of {rec} failed ({status})")
    return time.perf_counter() - t0, capture


def main() -> None:
    configure(clock=RealClock(), level="error", json=False)
    run(record_path("bidmc", RECORDS[0], download=False))  # warm the imports
    print(
        f"{'record':9} {'pleth PR shown':>14} {'within 5 bpm':>12} {'median |d|':>10} "
        f"{'SpO2 = monitor':>14} {'speed':>7}  alarms raised"
    )
    shown_all: list[float] = []
    close_all: list[float] = []
    for name in RECORDS:
        rec = record_path("bidmc", name, download=False)
        took, capture = run(rec)
        numerics = {s.name: s.samples for s in read_csv_record(rec).numerics}
        pulse, spo2 = numerics["PULSE"], numerics["SpO2"]
        states = [
            s for s in capture.states if 10 <= round(s.t - DEFAULT_START_EPOCH) < pulse.shape[0]
        ]
        diffs = []
        spo2_same = spo2_n = 0
        for s in states:
            k = round(s.t - DEFAULT_START_EPOCH)
            m = s.measurements.get("pulse_rate")
            fresh = m is not None and m.feed == "pleth" and s.t - m.t <= FRESH_S
            if fresh and m is not None and m.value is not None and np.isfinite(pulse[k]):
                diffs.append(abs(m.value - float(pulse[k])))
            q = s.measurements.get("spo2")
            if q is not None and q.value is not None:
                spo2_n += 1
                spo2_same += abs(q.value - float(spo2[round(q.t - DEFAULT_START_EPOCH)])) <= 1.0
        shown = len(diffs) / max(1, len(states))
        close = float(np.mean(np.asarray(diffs) <= CLOSE_BPM)) if diffs else 0.0
        median = statistics.median(diffs) if diffs else float("nan")
        raised = sorted({e.code for e in capture.events if e.transition == "raised"})
        shown_all.append(shown)
        close_all.append(close)
        print(
            f"{name:9} {shown:14.0%} {close:12.0%} {median:10.1f} "
            f"{spo2_same / max(1, spo2_n):14.0%} {480.0 / took:6.0f}x  {', '.join(raised) or '-'}"
        )
    print(
        f"median over {len(RECORDS)} records: pleth PR shown {statistics.median(shown_all):.0%}, "
        f"within {CLOSE_BPM:g} bpm {statistics.median(close_all):.0%}; "
        f"records with >= 90 % within: {sum(c >= 0.9 for c in close_all)}/{len(RECORDS)}. "
        "Speed figures are noisy on a shared machine."
    )


if __name__ == "__main__":
    main()
