"""``roommon demo``: one simulated procedure room, in-process, on the virtual clock.

No broker and no hardware: the room simulator's samples go straight into the
same :class:`~roommon.daemon.Daemon` pipeline the real daemon runs, and alarms,
room events and vitals are printed readably. ``--speed N`` runs N times faster
than real time (0: as fast as possible); ``--broker mqtt://HOST:PORT`` also
publishes everything to that broker, exactly as ``roommon run`` would.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from roommon.alerts.commands import CommandPayload
from roommon.alerts.engine import Outgoing
from roommon.alerts.store import burden
from roommon.clock import RealClock, VirtualClock, iso
from roommon.config import Config, parse_config
from roommon.daemon import Daemon
from roommon.errors import CommandError
from roommon.logs import configure
from roommon.payloads import RoomEventMessage, RoomStateMessage
from roommon.recovery.messages import NurseCommand, TimerEventMessage, TimerMessage
from simulators.room import RoomSimulator, kyphoplasty_script

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

_COLOURS = {"high": "\033[1;31m", "medium": "\033[1;33m", "low": "\033[36m"}
_RESET = "\033[0m"


def demo_config(state_dir: Path, broker: str | None) -> Config:
    data = tomllib.loads(DEMO_CONFIG)
    data["daemon"]["state_dir"] = str(state_dir)
    if broker is not None:
        url = urlparse(broker)
        data["broker"] = {"host": url.hostname or "127.0.0.1", "port": url.port or 1883}
    return parse_config(data, source="<embedded demo config>")


class ConsoleOutput:
    """Prints alarms and room events as a person wants to read them."""

    def __init__(self, clock: VirtualClock, out: TextIO) -> None:
        self._clock = clock
        self._out = out
        self._colour = out.isatty()
        self.checks_due: list[tuple[float, int]] = []  # (due time, check number)

    def line(self, text: str, priority: str | None = None) -> None:
        t = iso(self._clock.now())[11:19]
        if self._colour and priority in _COLOURS:
            text = f"{_COLOURS[priority]}{text}{_RESET}"
        print(f"{t}  {text}", file=self._out, flush=True)

    def alarms(self, outgoing: list[Outgoing]) -> None:
        for o in outgoing:
            e = o.event
            value = f" value {e.value:g}" if e.value is not None else ""
            limit = f" limit {e.limit:g}" if e.limit is not None else ""
            who = (
                f" -> {', '.join(n.recipient for n in o.notifications)}" if o.notifications else ""
            )
            self.line(
                f"ALARM {e.transition.upper():12} {e.priority.upper():6} {e.code:26} "
                f"[{e.feed}]{value}{limit} {e.message}{who}",
                e.priority,
            )

    def room_event(self, message: RoomEventMessage) -> None:
        if message.name != "cement.phase":
            data = ", ".join(f"{k}={v}" for k, v in message.data.items() if k != "by")
            self.line(f"EVENT {message.name} {data}")

    def state(self, message: RoomStateMessage) -> None:
        del message  # vitals are printed on a timer, not on every state change

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        for m in messages:
            if m.event == "check_due" and m.check_no is not None:
                self.checks_due.append((m.t, m.check_no))
            check = f" {m.check_no}" if m.check_no else ""
            late = " (late)" if m.late else ""
            self.line(f"TIMER {m.event}{check}{late} {m.reason}".rstrip())

    def timer(self, message: TimerMessage) -> None:
        del message  # the timer's state is shown with the vitals


def _vitals(state: RoomStateMessage) -> str:
    m = state.measurements

    def v(name: str, fmt: str = "{:.0f}") -> str:
        x = m.get(name)
        return fmt.format(x.value) if x is not None and x.value is not None else "--"

    return (
        f"VITALS HR {v('heart_rate')}  SpO2 {v('spo2')}%  PR {v('pulse_rate')}  "
        f"NIBP {v('nibp_systolic')}/{v('nibp_diastolic')} ({v('nibp_mean')})  "
        f"cement {v('cement_pressure')} kPa  alarms {len(state.alarms)}  phase {state.phase}"
    )


async def _run(*, speed: float, minutes: float, broker: str | None, seed: int, out: TextIO) -> int:
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
                            NurseCommand(v=1, id=f"check{n}", room="proc1", action="check_done",
                                         check_no=n, vitals=True),
                            client="demo-nurse",
                        )
                    except CommandError as err:
                        console.line(f"COMMAND refused: {err}")
                await clock.advance(1.0)
                if second % 30 == 29:
                    console.line(_vitals(pipeline.state_message()))
                if speed > 0:
                    await real.sleep(1.0 / speed)
            events = daemon.store.events()
        print("\nAlarm burden of this run:", file=out)
        for b in burden(events, hours=minutes / 60):
            med = f"{b.median_ack_s:.0f} s" if b.median_ack_s is not None else "-"
            print(
                f"  {b.room}: {b.alarms} alarms ({b.per_hour:.0f}/h), acknowledged "
                f"{b.share_acknowledged:.0%}, median time to acknowledge {med}, "
                f"self-cleared within 10 s {b.share_self_cleared:.0%}",
                file=out,
            )
    return 0


def run_demo(
    *, speed: float, minutes: float, broker: str | None, seed: int, out: TextIO | None = None
) -> int:
    stream = out or sys.stdout
    configure(clock=RealClock(), level="error", json=False)
    return asyncio.run(_run(speed=speed, minutes=minutes, broker=broker, seed=seed, out=stream))
