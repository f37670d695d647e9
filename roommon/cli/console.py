"""The console renderer shared by ``demo`` and ``replay``: alarm, event, timer and vitals
lines as a person wants to read them, and the alarm-burden summary."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TextIO

from roommon.alerts.engine import Outgoing
from roommon.alerts.store import burden
from roommon.core import units
from roommon.core.clock import Clock
from roommon.wire.payloads import AlarmEventMessage, RoomEventMessage, RoomStateMessage
from roommon.wire.timer import TimerEventMessage, TimerMessage

_COLOURS = {"high": "\033[1;31m", "medium": "\033[1;33m", "low": "\033[36m"}
_RESET = "\033[0m"


class ConsoleOutput:
    """Prints alarms and room events as a person wants to read them."""

    def __init__(
        self,
        clock: Clock,
        out: TextIO,
        *,
        utc: bool = False,
        printer: Callable[[str], None] | None = None,
    ) -> None:
        self._clock = clock
        self._out = out
        self._utc = utc
        self.printer = printer  # a progress bar's console, while one is shown
        self._colour = out.isatty()
        self.checks_due: list[tuple[float, int]] = []  # (due time, check number)

    def line(self, text: str, priority: str | None = None) -> None:
        t = units.clock(self._clock.now(), utc=self._utc, with_zone=False)
        if self._colour and priority in _COLOURS:
            text = f"{_COLOURS[priority]}{text}{_RESET}"
        if self.printer is not None:
            self.printer(f"{t}  {text}")
        else:
            print(f"{t}  {text}", file=self._out, flush=True)

    def alarms(self, outgoing: list[Outgoing]) -> None:
        for o in outgoing:
            e = o.event
            value = f": {units.alarm_value(e.code, e.value)}" if e.value is not None else ""
            limit = f" (limit {units.alarm_value(e.code, e.limit)})" if e.limit is not None else ""
            who = (
                f" -> {', '.join(n.recipient for n in o.notifications)}" if o.notifications else ""
            )
            text = e.message or e.code
            self.line(
                f"ALARM {e.transition.upper():12} {e.priority.upper():6} {e.code:26} "
                f"[{e.feed}] {text}{value}{limit}{who}",
                e.priority,
            )

    def room_event(self, message: RoomEventMessage) -> None:
        if message.name != "cement.phase":
            data = units.data(message.data, utc=self._utc)
            self.line(f"EVENT {message.name} {data}".rstrip())

    def state(self, message: RoomStateMessage) -> None:
        del message  # vitals are printed on a timer, not on every state change

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        for m in messages:
            if m.event == "check_due" and m.check_no is not None:
                self.checks_due.append((m.t, m.check_no))
            check = f" {m.check_no}" if m.check_no else ""
            late = f" (noticed {units.duration(m.emitted - m.t)} late)" if m.late else ""
            self.line(f"TIMER {m.event}{check}{late} {m.reason}".rstrip())

    def timer(self, message: TimerMessage) -> None:
        del message  # the timer's state is shown with the vitals


def vitals_line(state: RoomStateMessage) -> str:
    m = state.measurements

    def v(name: str, fmt: str = "{:.0f}") -> str:
        x = m.get(name)
        return fmt.format(x.value) if x is not None and x.value is not None else "--"

    return (
        f"VITALS HR {v('heart_rate')}  SpO2 {v('spo2')}%  PR {v('pulse_rate')}  "
        f"NIBP {v('nibp_systolic')}/{v('nibp_diastolic')} ({v('nibp_mean')})  "
        f"cement {v('cement_pressure')} kPa  alarms {len(state.alarms)}  phase {state.phase}"
    )


def print_burden(
    events: Iterable[AlarmEventMessage], *, hours: float, title: str, out: TextIO
) -> None:
    """The alarm burden per room of a run of ``hours``; says so when there were no alarms."""
    rows = burden(events, hours=hours)
    print(f"\n{title}", file=out)
    if not rows:
        print("  no alarms", file=out)
    for b in rows:
        med = units.value(b.median_ack_s, "s") if b.median_ack_s is not None else "-"
        print(
            f"  {b.room}: {b.alarms} alarms ({units.per_hour(b.alarms, b.hours)}), acknowledged "
            f"{b.share_acknowledged:.0%}, median time to acknowledge {med}, "
            f"self-cleared within 10 s {b.share_self_cleared:.0%}",
            file=out,
        )


class ReplayProgress:
    """A rich progress bar of a replay on a terminal: recorded time reached (as a clock
    time and of the whole), share done and the wall-clock ETA. Console lines go through
    :meth:`print` so they scroll above the bar instead of tearing it."""

    def __init__(self, out: TextIO, *, start_t: float, total_s: float, utc: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._start_t = start_t
        self._utc = utc
        self._last = -1.0
        self.console = Console(file=out, force_terminal=True)
        self._progress = Progress(
            TextColumn("replay"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[sim]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(
            "replay", total=max(total_s, 1e-9), sim=self._sim(0.0, total_s)
        )
        self._total = total_s

    def _sim(self, at_s: float, total_s: float) -> str:
        when = units.clock(self._start_t + at_s, utc=self._utc)
        return f"simulated {when} ({units.duration(at_s)} of {units.duration(total_s)})"

    def __enter__(self) -> ReplayProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.update(self._total)
        self._progress.stop()

    def update(self, at_s: float) -> None:
        if at_s - self._last < 1.0 and at_s < self._total:
            return  # one update per recorded second is plenty
        self._last = at_s
        self._progress.update(
            self._task, completed=min(at_s, self._total), sim=self._sim(at_s, self._total)
        )

    def print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
