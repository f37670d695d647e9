"""Start-up cost of the light commands (issue 10): wall time per run, and what they import.

``roommon --version``, ``check-config``, ``alarms`` and ``timers --once``
should start in under 0.5 s on the 2-core reference machine and never import
scipy. ``timers`` reads from a Mosquitto this script starts on a free
loopback port. Prints the median of several runs and the heaviest imports.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roommon.testing import MosquittoBroker  # noqa: E402

RUNS = 7
#: The example config names its broker credentials' variables; check-config insists they are set.
ENV = {**os.environ, "ROOMMON_MQTT_USERNAME": "bench", "ROOMMON_MQTT_PASSWORD": "bench"}
TARGET_S = 0.5


def timed(argv: list[str]) -> tuple[float, bool]:
    """Median wall seconds of ``python -m roommon ARGV``, and whether scipy was imported."""
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "roommon", *argv], capture_output=True, check=False, env=ENV
        )
        times.append(time.perf_counter() - t0)
        if argv[0] != "timers" and done.returncode != 0:
            raise SystemExit(f"roommon {' '.join(argv)} failed: {done.stderr.decode()[:200]}")
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "roommon", *argv],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    ).stderr
    return statistics.median(times), "| scipy\n" in trace or " scipy.signal" in trace


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = pathlib.Path(tmp) / "roommon.sqlite3"
        from roommon.alerts.store import AlarmStore

        AlarmStore(db).close()
        broker = MosquittoBroker()
        broker.start()
        try:
            commands = {
                "--version": ["--version"],
                "check-config": ["check-config", str(ROOT / "config" / "example-room.toml")],
                "alarms": ["alarms", "--db", str(db)],
                "timers --once": [
                    "timers",
                    "--broker",
                    f"mqtt://127.0.0.1:{broker.port}",
                    "--site",
                    "b",
                    "--once",
                    "--wait",
                    "0.05",
                ],
            }
            base, _ = timed(["--help"])
            print(f"python + roommon.cli import, `roommon --help`: {base * 1000:.0f} ms")
            print(f"{'command':16} {'median wall':>12} {'scipy':>6}  target {TARGET_S:g} s")
            for name, argv in commands.items():
                wall, scipy = timed(argv)
                verdict = "ok" if wall < TARGET_S and not scipy else "MISSED"
                print(f"{name:16} {wall * 1000:>9.0f} ms {'yes' if scipy else 'no':>6}  {verdict}")
        finally:
            broker.close()


if __name__ == "__main__":
    main()
