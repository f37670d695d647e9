"""Broker flap (issue 11): the broker stopped and started every few seconds for a minute.

SIGTERM and SIGKILL alternately, a persistent Mosquitto, a real daemon, two
gateways publishing SpO2 readings that raise and clear alarms (QoS 1), two
nurses sending QoS 1 commands, a display subscribed to the alarms with a
persistent session (:mod:`roommon.testing.flap`). Prints what was sent and
what arrived, and how far behind each broker return the daemon reconnected,
against its bound ``reconnect_max_s + keepalive_s``; exits 1 on any problem
(an alarm event lost or out of order, a command unanswered or applied twice,
a late reconnect). ``--duration`` seconds (default 60). The timings are
wall-clock on a shared machine: noisy under contention, the bound is what
matters.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roommon.core.clock import RealClock  # noqa: E402
from roommon.core.logs import configure  # noqa: E402
from roommon.testing.flap import broker_flap  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of flapping")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configure(clock=RealClock(), level="error", json=False)
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # paho's "pending publish calls"
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # aiomqtt's closed-socket noise
    with tempfile.TemporaryDirectory(prefix="roommon-flap-") as state:
        report = asyncio.run(
            broker_flap(state_dir=pathlib.Path(state), duration_s=args.duration, seed=args.seed)
        )
    print("\n".join(report.lines()))
    problems = report.problems()
    for p in problems:
        print(f"  PROBLEM: {p}")
    print(f"  result: {'OK' if not problems else 'FAILED'}")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
