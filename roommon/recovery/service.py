r"""One room's recovery timer inside the daemon: events in, timer messages and alarms out.

Glue between the room pipeline and the pure :class:`RecoveryTimer`: it picks
the plan, turns timer events into outbound messages, overdue checks and
clock jumps into alarm conditions, and nurse commands into timer operations
(refusals are logged in the recovery history too).

Order matters for "nothing lost": the pipeline queues a change's event
messages in the durable outbox *first* and only then :meth:`commit`\ s the
new timer state. A crash in between re-emits the same events (same stable
ids) after the restart; the opposite order could lose them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from roommon.core.conditions import ConditionReport
from roommon.core.errors import CommandError, StoreError
from roommon.core.events import RoomEvent
from roommon.core.log import get_logger
from roommon.core.model import DataOrigin
from roommon.recovery.conditions import RECOVERY_CLOCK_JUMP
from roommon.recovery.messages import apply_command, event_message
from roommon.recovery.plan import RecoveryConfig
from roommon.recovery.store import CommandRecord, RecoveryStore
from roommon.recovery.timer import (
    CHECK_NAME,
    OverdueEscalation,
    RecoveryTimer,
    TimerEvent,
)
from roommon.wire.payloads import AlarmSummary
from roommon.wire.timer import NurseCommand, TimerAlarm, TimerEventMessage, TimerMessage

log = get_logger(__name__)


class RoomRecovery:
    def __init__(
        self,
        *,
        site: str,
        room: str,
        config: RecoveryConfig,
        store: RecoveryStore,
        procedure: str | None = None,
    ) -> None:
        self.site = site
        self.room = room
        self._config = config
        self._store = store
        self.procedure = procedure
        self.timer = store.load(room) or RecoveryTimer(room=room)
        self._escalation = OverdueEscalation(room=room)
        self._pending_command: CommandRecord | None = None
        #: Why the last save failed ("" while the store takes writes): the timer goes on
        #: from memory, and what it did waits in ``_unsaved`` for the next save.
        self.save_failure = ""
        self._unsaved_events: list[TimerEvent] = []
        self._unsaved_commands: list[CommandRecord] = []

    # ------------------------------------------------------------------ inputs

    def on_room_event(self, event: RoomEvent, now: float) -> list[TimerEvent]:
        return self.timer.on_room_event(event, plan=self._config.plan_for(self.procedure), now=now)

    def tick(self, now: float, monotonic: float) -> list[TimerEvent]:
        return self.timer.advance(now, monotonic)

    def command(
        self,
        cmd: NurseCommand,
        *,
        now: float,
        by: str,
        vitals: Mapping[str, float | None],
    ) -> list[TimerEvent]:
        fields = cmd.model_dump(exclude={"v", "room", "action"}, exclude_defaults=True)
        try:
            events = apply_command(self.timer, cmd, now=now, by=by, vitals=vitals)
        except CommandError as err:
            refused = CommandRecord(
                room=self.room,
                t=now,
                by=by,
                action=cmd.action,
                fields=fields,
                outcome=err.reason,
                detail=err.detail,
                recovery_id=self.timer.recovery_id,
            )
            if self.save_failure:
                self._unsaved_commands.append(refused)
            else:
                try:
                    self._store.log_command(refused)
                except StoreError as exc:
                    self._unsaved_commands.append(refused)
                    self._failed(exc)
            raise
        self._pending_command = CommandRecord(
            room=self.room,
            t=now,
            by=by,
            action=cmd.action,
            fields=fields,
            recovery_id=self.timer.recovery_id,
        )
        return events

    def commit(self, events: list[TimerEvent], now: float) -> None:
        """Persist the timer state after ``events`` (and the command behind them).

        A store that cannot be written (a :class:`StoreError`: disk full, read-only)
        does not stop the timer: its state lives on in memory, what it did is kept for
        the next save, :attr:`save_failure` says why (the daemon's ``store.unwritable``
        alarm), and :meth:`retry` saves it all in one transaction once the store takes
        writes again. A crash meanwhile re-emits the unsaved events on restart with
        the same ids (see :mod:`roommon.recovery.store`).
        """
        command, self._pending_command = self._pending_command, None
        if command is not None:
            self._unsaved_commands.append(command)
        self._unsaved_events += events
        if (self._unsaved_events or self._unsaved_commands) and not self.save_failure:
            self._save(now)

    def retry(self, now: float) -> bool:
        """Save what memory holds; True when the room's timer is durable (again)."""
        return not self.save_failure or self._save(now)

    def _save(self, now: float) -> bool:
        try:
            self._store.save(
                self.timer, self._unsaved_events, at=now, commands=self._unsaved_commands
            )
        except StoreError as exc:
            self._failed(exc)
            return False
        if self.save_failure:
            log.info(
                "recovery_store_writable_again",
                room=self.room,
                events=len(self._unsaved_events),
                commands=len(self._unsaved_commands),
            )
        self.save_failure = ""
        self._unsaved_events, self._unsaved_commands = [], []
        return True

    def _failed(self, exc: StoreError) -> None:
        if not self.save_failure:
            log.error("recovery_store_unwritable", room=self.room, error=str(exc))
        self.save_failure = f"recovery store: {exc}"

    def note_alarms(self, summaries: Iterable[AlarmSummary]) -> None:
        self.timer.note_alarms(
            TimerAlarm.from_summary(s) for s in summaries if s.code.split(".")[0] != CHECK_NAME
        )

    # ------------------------------------------------------------------ outputs

    def conditions(
        self, events: list[TimerEvent], *, now: float, origin: DataOrigin
    ) -> list[ConditionReport]:
        """Overdue checks (on change) and clock jumps (a latching instant) as conditions.

        A clock jump is an alarm only while a recovery runs (its bed-rest times are what
        the jump may have moved); in a room without one it is a timer event, not a
        nuisance alarm (the alarm engine keeps its own delays across the step)."""
        out = self._escalation.reports(self.timer, t=now, origin=origin)
        running = self.timer.state not in ("idle", "ended")
        for e in events:
            if e.kind == "clock_jump" and running:
                for active in (True, False):
                    out.append(
                        ConditionReport(
                            room=self.room,
                            feed="clock",
                            check=CHECK_NAME,
                            spec=RECOVERY_CLOCK_JUMP,
                            active=active,
                            t=now,
                            value=float(e.data.get("jump_s", 0.0)),
                            message=f"wall clock jumped during recovery ({e.reason})",
                            origin=origin,
                        )
                    )
        return out

    def messages(self, events: list[TimerEvent]) -> list[TimerEventMessage]:
        return [event_message(self.site, self.room, e) for e in events]

    def snapshot(self, now: float) -> TimerMessage:
        return self.timer.snapshot(site=self.site, now=now)
