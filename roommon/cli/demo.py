"""``roommon demo``: one simulated procedure room, in-process, on the virtual clock.

No broker and no hardware: the room simulator's samples go straight into the
same :class:`~roommon.runtime.daemon.Daemon` pipeline the real daemon runs, and alarms,
room events and vitals are printed readably. ``--speed N`` runs N times faster
than real time (0: as fast as possible); ``--broker mqtt://HOST:PORT`` also
publishes everything to that broker, exactly as ``roommon run`` would.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from roommon.cli.common import cancel_on_stop, non_negative, positive, run_until_signal
from roommon.config import Config, parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.errors import CommandError
from roommon.core.logs import configure
from roommon.transports.broker import parse_broker_url

DEMO_CONFIG = """
[site]
id = "demo"
name = "roommon demo site"

[daemon]
instance = "demo"

[rooms.proc1]
name = "Procedure room 1"

[rooms.proc1.feeds.ekg]
kind = "ecg"
fs = 250.0

[rooms.proc1.feeds.pleth]
kind = "pleth"
fs = 75.0

[rooms.proc1.feeds.spo2]
kind = "spo2"

[rooms.proc1.feeds.nibp]
kind = "nibp"

[rooms.proc1.feeds.cement]
kind = "cement_pressure"
fs = 50.0
required = false

[rooms.proc1.checks.ecg]
[rooms.proc1.checks.spo2]
[rooms.proc1.checks.nibp]
cycle_s = 60.0
[rooms.proc1.checks.cement]

[rooms.proc1.escalation]
notify = ["proc1-nurse"]
medium = [{ after_s = 60, to = "charge-nurse" }]
high = [{ after_s = 20, to = "charge-nurse" }]
"""


if TYPE_CHECKING:
    pass


def demo_config(state_dir: Path, broker: str | None) -> Config:
    data = tomllib.loads(DEMO_CONFIG)
    data["daemon"]["state_dir"] = str(state_dir)
    if broker is not None:
        host, port, tls = parse_broker_url(broker)
        data["broker"] = {"host": host, "port": port, "tls": tls}
    return parse_config(data, source="<embedded demo config>")


async def _run(*, speed: float, minutes: float, broker: str | None, seed: int, out: TextIO) -> int:
    from roommon.cli.console import ConsoleOutput, print_burden, vitals_line
    from roommon.runtime.daemon import Daemon
    from roommon.wire.commands import CommandPayload
    from roommon.wire.timer import NurseCommand
    from simulators.room import RoomSimulator, kyphoplasty_script

    clock = VirtualClock(start=RealClock().now())
    console = ConsoleOutput(clock, out)
    with tempfile.TemporaryDirectory(prefix="roommon-demo-") as tmp:
        config = demo_config(Path(tmp), broker)
        sim = RoomSimulator(
            room="proc1",
            config=config.rooms["proc1"],
            t0=clock.now(),
            seed=seed,
            script=kyphoplasty_script(),
        )
        operator = {
            5: CommandPayload(v=1, id="mix", room="proc1", action="cement_mixed"),
        }
        print(
            f"roommon demo: {minutes:g} simulated minutes at {speed:g}x "
            f"({'broker ' + broker if broker else 'no broker'}); "
            "simulated data: nothing is paged. Not a medical device.",
            file=out,
        )
        real = RealClock()
        async with Daemon(
            config=config, clock=clock, use_broker=broker is not None, extra_outputs=[console]
        ) as daemon:
            pipeline = daemon.pipelines["proc1"]
            shown = 0
            for second in range(round(minutes * 60)):
                if second in operator:
                    try:
                        pipeline.command(operator[second], client="demo-operator")
                    except CommandError as err:
                        console.line(f"COMMAND refused: {err}")
                samples = sim.step(1.0)
                for label in sim.events[shown:]:
                    console.line(f"SCRIPT {label}")
                shown = len(sim.events)
                for sample in samples:
                    pipeline.ingest(sample)
                # the ward nurse does each recovery check a minute and a half after it is due
                while console.checks_due and clock.now() - console.checks_due[0][0] >= 90:
                    _, n = console.checks_due.pop(0)
                    try:
                        pipeline.recovery_command(
                            NurseCommand(
                                v=1,
                                id=f"check{n}",
                                room="proc1",
                                action="check_done",
                                check_no=n,
                                vitals=True,
                            ),
                            client="demo-nurse",
                        )
                    except CommandError as err:
                        console.line(f"COMMAND refused: {err}")
                await clock.advance(1.0)
                if second % 30 == 29:
                    console.line(vitals_line(pipeline.state_message()))
                if speed > 0:
                    await real.sleep(1.0 / speed)
            events = daemon.store.events()
        print_burden(events, hours=minutes / 60, title="Alarm burden of this run:", out=out)
    return 0


def run_demo(
    *, speed: float, minutes: float, broker: str | None, seed: int, out: TextIO | None = None
) -> int:
    stream = out or sys.stdout
    configure(clock=RealClock(), level="error", json=False)
    return run_until_signal(
        lambda stop: cancel_on_stop(
            _run(speed=speed, minutes=minutes, broker=broker, seed=seed, out=stream), stop
        )
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run a simulated procedure room in-process",
        description="Run a scripted kyphoplasty room in-process on the virtual clock (no "
        "broker, no hardware) and print alarms, events and vitals. Exit 0, 2 bad usage.",
    )
    p.add_argument(
        "--speed", type=non_negative, default=20.0, help="virtual-clock speed-up (0: max)"
    )
    p.add_argument("--minutes", type=positive, default=10.0, help="simulated minutes to run")
    p.add_argument(
        "--broker", default=None, help="also publish everything to mqtt[s]://HOST[:PORT]"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed of the simulated patient")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.broker is not None:
        parse_broker_url(args.broker)  # a malformed address is a usage error, before anything runs
    return run_demo(speed=args.speed, minutes=args.minutes, broker=args.broker, seed=args.seed)
