"""The demo room behind ``roommon demo``: one simulated procedure room, in-process,
on the virtual clock, optionally with its wall display.

No broker and no hardware: the room simulator's samples go straight into the
same :class:`~roommon.runtime.daemon.Daemon` pipeline the real daemon runs, and alarms,
room events and vitals are printed readably. ``--speed N`` runs N times faster
than real time (0: as fast as possible); ``--broker mqtt://HOST:PORT`` also
publishes everything to that broker, exactly as ``roommon run`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import TextIO

from roommon.cli.console import ConsoleOutput, print_burden, vitals_line
from roommon.config import Config, parse_config
from roommon.core import units
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.errors import CommandError
from roommon.room.pipeline import RoomOutput
from roommon.runtime.daemon import Daemon
from roommon.transports.broker import parse_broker_url
from roommon.web.app import DisplayApp, DisplayServer
from roommon.web.auth import Sessions, set_account
from roommon.web.local import DaemonCommands, DisplayOutput
from roommon.web.site import SiteView
from roommon.wire.commands import CommandPayload
from roommon.wire.timer import NurseCommand
from simulators.room import RoomSimulator, kyphoplasty_script

DEMO_DISPLAY_CLIENT = "roommon-display-demo"

DEMO_CONFIG = """
[site]
id = "demo"
name = "roommon demo site"

[daemon]
instance = "demo"
display_clients = ["roommon-display-demo"]

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


def demo_config(state_dir: Path, broker: str | None) -> Config:
    data = tomllib.loads(DEMO_CONFIG)
    data["daemon"]["state_dir"] = str(state_dir)
    if broker is not None:
        host, port, tls = parse_broker_url(broker)
        data["broker"] = {"host": host, "port": port, "tls": tls}
    return parse_config(data, source="<embedded demo config>")


DEMO_USER, DEMO_PASSWORD = "demo", "roommon-demo"


class DemoRun:
    """The demo room, one simulated second per :meth:`step` (tests and screenshots drive it).

    With ``display`` (HOST, PORT) the wall display serves the room in-process:
    its view follows the daemon's output and the simulated samples, and its
    commands go to the daemon's own command handler under the display's client
    id, with the signed-in user (``demo`` / ``roommon-demo``) as the actor.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        broker: str | None,
        seed: int,
        out: TextIO,
        display: tuple[str, int] | None = None,
    ) -> None:
        self.clock = VirtualClock(start=RealClock().now())
        self.console = ConsoleOutput(self.clock, out)
        self.config = demo_config(state_dir, broker)
        self.sim = RoomSimulator(
            room="proc1",
            config=self.config.rooms["proc1"],
            t0=self.clock.now(),
            seed=seed,
            script=kyphoplasty_script(),
        )
        self.second = 0
        self._shown = 0
        self._broker = broker
        self._display_at = display
        self._state_dir = state_dir
        self._stack = contextlib.AsyncExitStack()
        self.display: DisplayServer | None = None
        self.display_output: DisplayOutput | None = None
        self.daemon: Daemon

    async def __aenter__(self) -> DemoRun:
        extra: list[RoomOutput] = [self.console]
        view: SiteView | None = None
        if self._display_at is not None:
            view = SiteView(site=self.config.site.id, clock=self.clock, config=self.config)
            view.set_link(True, "in-process daemon")
            self.display_output = DisplayOutput(view)
            extra.append(self.display_output)
        self.daemon = await self._stack.enter_async_context(
            Daemon(
                config=self.config,
                clock=self.clock,
                use_broker=self._broker is not None,
                extra_outputs=extra,
            )
        )
        if view is not None and self._display_at is not None:
            users = self._state_dir / "display-users"
            set_account(users, DEMO_USER, DEMO_PASSWORD)
            app = DisplayApp(
                view=view,
                commands=DaemonCommands(self.daemon, client_id=DEMO_DISPLAY_CLIENT),
                sessions=Sessions(accounts=users, clock=RealClock()),
                wall=RealClock(),
                title="roommon demo",
            )
            host, port = self._display_at
            self.display = await self._stack.enter_async_context(
                DisplayServer(app=app, host=host, port=port)
            )
            self._status()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def _status(self) -> None:
        if self.display_output is not None:
            self.display_output.status(self.daemon.status_payload("online"))

    async def step(self) -> None:
        """One simulated second: operator, simulator, nurse, clock."""
        console, pipeline, second = self.console, self.daemon.pipelines["proc1"], self.second
        samples = self.sim.step(1.0)
        for label in self.sim.events[self._shown :]:
            console.line(f"SCRIPT {label}")
        self._shown = len(self.sim.events)
        for action in self.sim.take_commands():  # the operator's button, as in a real room
            command = CommandPayload.model_validate(
                {"v": 1, "id": f"script-{second}-{action}", "room": "proc1", "action": action}
            )
            try:
                pipeline.command(command, client="demo-operator")
            except CommandError as err:
                console.line(f"COMMAND refused: {err}")
        for sample in samples:
            pipeline.ingest(sample)
            if self.display_output is not None:
                self.display_output.sample(sample)
        # the ward nurse does each recovery check a minute and a half after it is due
        while console.checks_due and self.clock.now() - console.checks_due[0][0] >= 90:
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
        await self.clock.advance(1.0)
        if second % 30 == 29:
            console.line(vitals_line(pipeline.state_message()))
        if second % 5 == 4:
            self._status()
        self.second += 1


async def run_room(
    *,
    speed: float,
    minutes: float,
    broker: str | None,
    seed: int,
    out: TextIO,
    display: tuple[str, int] | None = None,
) -> int:
    with tempfile.TemporaryDirectory(prefix="roommon-demo-") as tmp:
        print(
            f"roommon demo: {minutes:g} simulated minutes at {speed:g}x "
            f"({'broker ' + broker if broker else 'no broker'}); "
            "simulated data: nothing is paged. Not a medical device. "
            f"Times are {units.zone(RealClock().now())}.",
            file=out,
        )
        real = RealClock()
        async with DemoRun(
            state_dir=Path(tmp), broker=broker, seed=seed, out=out, display=display
        ) as run:
            if run.display is not None:
                print(
                    f"wall display: {run.display.url}/  (nurses' station {run.display.url}"
                    f"/recovery; sign in as {DEMO_USER} / {DEMO_PASSWORD}; Ctrl-C ends)",
                    file=out,
                    flush=True,
                )
            reached = await _broker_reached(run, broker, out)
            try:
                for _ in range(round(minutes * 60)):
                    await run.step()
                    if speed > 0:
                        await real.sleep(1.0 / speed)
                if run.display is not None:
                    print(
                        "script done; the room goes on in real time for the display "
                        "(Ctrl-C ends)",
                        file=out,
                        flush=True,
                    )
                    while True:
                        await run.step()
                        await real.sleep(1.0)
            except asyncio.CancelledError:
                # Ctrl-C (via cancel_on_stop): the room stops here and the burden so far is
                # printed as at the end of a full run, not left as a traceback.
                _uncancel()
                print("\nroommon demo: interrupted", file=out, flush=True)
            events = run.daemon.store.events()
            link = run.daemon.link
            reached = reached or (link is not None and link.connects > 0)
            minutes = run.second / 60
        print_burden(events, hours=minutes / 60, title="Alarm burden of this run:", out=out)
    if not reached:
        print(
            f"roommon demo: warning: broker {broker} was never reached: nothing was published",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


def _uncancel() -> None:
    """A cancellation taken as "stop here" is done with: later timeouts work as usual."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


#: How long the demo waits for its ``--broker`` before it says the broker is down.
BROKER_WAIT_S = 3.0


async def _broker_reached(run: DemoRun, broker: str | None, out: TextIO) -> bool:
    """With ``--broker``: wait (on the wall clock, at most :data:`BROKER_WAIT_S`) for the
    link, and warn when it is not up; the room runs either way. True without a broker."""
    link = run.daemon.link
    if broker is None or link is None:
        return True
    try:
        await asyncio.wait_for(link.connected.wait(), BROKER_WAIT_S)
    except TimeoutError:
        print(
            f"roommon demo: warning: broker {broker} cannot be reached; the room runs "
            "without it and the demo will exit 1 unless it comes up",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True
