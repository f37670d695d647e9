"""Recovery store: exact restore mid-recovery, missed events once, history, SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from roommon.core.clock import VirtualClock
from roommon.recovery.messages import event_message
from roommon.recovery.plan import RecoveryPlan
from roommon.recovery.store import CommandRecord, RecoveryStore
from roommon.recovery.timer import RecoveryTimer, TimerEvent

PLAN = RecoveryPlan()


async def test_restore_mid_recovery_same_deadlines_missed_events_once(tmp_path: Path) -> None:
    clock = VirtualClock()
    store = RecoveryStore.in_state_dir(tmp_path)
    timer = RecoveryTimer(room="or1")
    other = RecoveryTimer(room="or2")  # an idle room is restored too
    s = clock.now()
    store.save(timer, timer.injection_ended(at=s, now=s, plan=PLAN, injection=1), at=s)
    store.save(other, [], at=s)
    published: list[TimerEvent] = []
    for _ in range(40):  # 40 min of ticks, nurse doing checks 1 and 2 on time
        await clock.advance(60)
        now = clock.now()
        ev = timer.advance(now)
        for e in list(ev):
            if e.kind == "check_due":
                ev += timer.check_done(check_no=e.check_no, at=now, by="nurse")
        published += ev
        store.save(timer, ev, at=now)
    cmd_events = timer.extend(seconds=600, reason="slow to wake", by="dr-b", at=clock.now())
    store.save(
        timer,
        cmd_events,
        at=clock.now(),
        command=CommandRecord(
            room="or1",
            t=clock.now(),
            by="dr-b",
            action="recovery_extend",
            fields={"seconds": 600, "reason": "slow to wake"},
            recovery_id=timer.recovery_id,
        ),
    )
    published += cmd_events
    deadlines = timer.deadlines()
    saved_seq = timer.seq
    store.close()

    # The daemon is down for 75 minutes: checks 3, 4 and 5 fall due and go overdue.
    await clock.advance(75 * 60)
    store = RecoveryStore.in_state_dir(tmp_path)
    restored = store.load_all()
    assert set(restored) == {"or1", "or2"}
    assert restored["or2"].state == "idle"
    back = restored["or1"]
    assert back.deadlines() == deadlines  # identical floats, not approximately
    assert back.seq == saved_seq
    assert back.state == "confirmed"
    missed = back.advance(clock.now())
    assert [(e.kind, e.check_no) for e in missed] == [
        ("check_due", 3),
        ("check_overdue", 3),
        ("check_due", 4),
        ("check_overdue", 4),
        ("check_due", 5),
        ("check_overdue", 5),
    ]
    assert missed[0].t == s + 2700
    assert all(e.emitted == clock.now() for e in missed)
    assert all(event_message("clinic", "or1", e).late for e in missed)
    assert missed[0].seq == saved_seq + 1
    store.save(back, missed, at=clock.now())
    assert back.advance(clock.now()) == []  # nothing twice
    assert back.overdue_outstanding() == {3, 4, 5}

    # A third start sees the same state again: nothing re-emitted after it was saved.
    store.close()
    store = RecoveryStore.in_state_dir(tmp_path)
    assert store.load_all()["or1"].advance(clock.now()) == []

    history = store.history(room="or1")
    events = [h for h in history if h.entry == "event"]
    assert [h.seq for h in events] == list(range(1, back.seq + 1))
    assert [h.kind for h in events].count("check_due") == 5
    commands = store.history(room="or1", entry="command")
    assert [(c.kind, c.actor, c.outcome) for c in commands] == [("recovery_extend", "dr-b", "ok")]
    assert commands[0].data["fields"]["seconds"] == 600
    store.close()


def test_refused_command_is_logged_and_history_is_append_only(tmp_path: Path) -> None:
    with RecoveryStore(tmp_path / "r.sqlite3") as store:
        store.log_command(
            CommandRecord(
                room="or1",
                t=1_767_225_600.0,
                by="nurse",
                action="check_done",
                fields={"check_no": 3},
                outcome="no_recovery",
                detail="no recovery has been started in this room",
            )
        )
        (entry,) = store.history()
        assert (entry.kind, entry.check_no, entry.outcome) == ("check_done", 3, "no_recovery")
    db = sqlite3.connect(tmp_path / "r.sqlite3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM history")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE history SET outcome = 'ok'")
    db.close()


def test_saving_the_same_events_twice_keeps_one_copy(tmp_path: Path) -> None:
    t0 = 1_767_225_600.0
    with RecoveryStore(tmp_path / "r.sqlite3") as store:
        timer = RecoveryTimer(room="or1")
        ev = timer.start(at=t0, now=t0, plan=PLAN)
        store.save(timer, ev, at=t0)
        store.save(timer, ev, at=t0)
        assert [h.kind for h in store.history()] == ["started"]


_WRITER = textwrap.dedent(
    """
    import sys
    from roommon.recovery.plan import RecoveryPlan
    from roommon.recovery.timer import RecoveryTimer
    from roommon.recovery.store import RecoveryStore

    store = RecoveryStore(sys.argv[1])
    timer = RecoveryTimer(room="or1")
    t0 = 1_767_225_600.0
    store.save(timer, timer.start(at=t0, now=t0, plan=RecoveryPlan()), at=t0)
    for minute in range(1, 61):
        now = t0 + 60 * minute
        store.save(timer, timer.advance(now), at=now)
        print(minute, timer.seq, repr(timer.deadlines()["target"]), flush=True)
    sys.stdin.read()  # hold the database open until killed
    """
)


def test_state_survives_sigkill_of_the_writer(tmp_path: Path) -> None:
    db = tmp_path / "recovery.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        last = line
        if line.startswith("60 "):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.stdin is not None
    proc.stdin.close()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    _, seq, target = last.split()
    with RecoveryStore(db) as store:
        timer = store.load_all()["or1"]
        assert timer.seq == int(seq)
        assert repr(timer.deadlines()["target"]) == target
        # Checks 1-4 fell due within the hour; 1-3 went overdue: all saved before the kill.
        kinds = [h.kind for h in store.history()]
        assert kinds.count("check_due") == 4
        assert kinds.count("check_overdue") == 3
        assert len(kinds) == int(seq)
