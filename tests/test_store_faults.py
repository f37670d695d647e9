"""A store that cannot be written is an alarm, not the end (issue 11 defect 1, item 1).

Real SQLite reaching its limit (``PRAGMA max_page_count``: "database or disk is
full"), a real Mosquitto: alarms keep being published live from memory, every
room gets the high-priority technical alarm ``store.unwritable``, the status
says ``durable: false``; when the store takes writes again, what memory held is
written to the alarm log with the seqs it was published with, and the alarm
clears. No seq is given twice, none is skipped.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from roommon.alerts.guarded_store import GuardedAlarmStore
from roommon.alerts.store import AlarmStore
from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.core.sqlite import connect
from roommon.runtime.daemon import Daemon
from roommon.testing import MosquittoBroker, MqttCollector, Received
from roommon.wire.payloads import AlarmEventMessage

pytestmark = pytest.mark.broker

T0 = 1_767_225_600.0
SITE = "s"
ROOMS = ("r1", "r2")


def reading(seq: int, spo2: float) -> bytes:
    body = {"v": 1, "kind": "spo2", "seq": seq, "t": T0 + seq, "values": {"spo2": spo2}}
    return json.dumps(body).encode()


def small_pages(path: Path) -> None:
    """Create the store's database with 512-byte pages: an alarm event (~800 bytes of
    JSON) then always needs new (overflow) pages, so a database that may not grow
    refuses every event, as a full disk does."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 512")
    db.execute("PRAGMA user_version = 1")  # writes the header: the page size is fixed
    db.close()


def fill(db: sqlite3.Connection) -> None:
    """Let the database grow no further: the disk is full."""
    assert int(db.execute("PRAGMA freelist_count").fetchone()[0]) == 0
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    db.execute(f"PRAGMA max_page_count = {pages}")


def store_db(daemon: Daemon) -> sqlite3.Connection:
    store: AlarmStore = daemon.store.store
    return store._db


def events(ms: list[Received], room: str) -> list[dict[str, Any]]:
    return [m.json() for m in ms if m.topic == f"roommon/v1/{SITE}/{room}/alarm"]


def has(code: str, transition: str, rooms: tuple[str, ...] = ROOMS) -> Any:
    def seen(ms: list[Received]) -> bool:
        return all(
            any(e["code"] == code and e["transition"] == transition for e in events(ms, r))
            for r in rooms
        )

    return seen


def statuses(ms: list[Received]) -> list[dict[str, Any]]:
    return [m.json() for m in ms if m.topic == f"roommon/v1/{SITE}/status/main"]


@pytest.fixture
async def daemon(
    broker: MosquittoBroker, tmp_path: Path
) -> AsyncIterator[tuple[Daemon, VirtualClock]]:
    room = {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
        "checks": {
            "numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}
        },
    }
    cfg = parse_config(
        {
            "site": {"id": SITE},
            "broker": {"port": broker.port},
            "daemon": {"state_dir": str(tmp_path), "heartbeat_s": 60},
            "rooms": dict.fromkeys(ROOMS, room),
        }
    )
    small_pages(tmp_path / "roommon.sqlite3")
    clock = VirtualClock(start=T0)
    async with Daemon(config=cfg, clock=clock) as d:
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        yield d, clock


async def test_a_full_store_raises_store_unwritable_alarms_go_on_and_durability_resumes(
    broker: MosquittoBroker, daemon: tuple[Daemon, VirtualClock]
) -> None:
    d, clock = daemon
    feed = f"roommon/v1/{SITE}/r1/feed/spo2"
    async with MqttCollector(broker.port, [f"roommon/v1/{SITE}/#"]) as c:
        await c.publish(feed, reading(1, 97))
        fill(store_db(d))
        await c.publish(feed, reading(2, 80))  # its alarm event cannot be stored
        await c.wait_for(has("limit.spo2_low", "raised", ("r1",)))  # published all the same
        assert d.store.degraded
        await clock.advance(1.0)  # the ticker notices, retries, and alarms every room
        msgs = await c.wait_for(has("store.unwritable", "raised"))
        await c.wait_for(lambda ms: any(not s["durable"] for s in statuses(ms)))
        for r in ROOMS:
            alarm = next(e for e in events(msgs, r) if e["code"] == "store.unwritable")
            assert (alarm["priority"], alarm["kind"]) == ("high", "technical")
            assert "full" in alarm["message"]
        await c.publish(feed, reading(3, 97))  # clears the desaturation, still from memory
        await c.wait_for(has("limit.spo2_low", "cleared", ("r1",)))
        await clock.advance(1.0)  # still full: still not durable, nothing lost
        assert d.store.degraded

        store_db(d).execute("PRAGMA max_page_count = 1000000")  # space again
        await clock.advance(1.0)
        msgs = await c.wait_for(has("store.unwritable", "cleared"))
        msgs = await c.wait_for(lambda ms: statuses(ms)[-1]["durable"] if statuses(ms) else False)
        assert not d.store.degraded
        await c.publish(feed, reading(4, 82))  # durable again
        msgs = await c.wait_for(
            lambda ms: len([e for e in events(ms, "r1") if e["code"] == "limit.spo2_low"]) == 3
        )
    assert statuses(msgs)[-1]["store_error"] == ""
    for r in ROOMS:
        published = {e["event_id"]: e for e in events(msgs, r)}  # dedupe on event_id
        seqs = sorted(e["seq"] for e in published.values())
        assert seqs == list(range(1, len(seqs) + 1)), (r, seqs)  # none twice, none skipped
        logged = d.store.events(room=r)
        assert [e.seq for e in logged] == seqs  # memory's events reached the log, same seqs
        assert {e.event_id for e in logged} == set(published)


def test_rows_delivered_while_not_durable_are_not_sent_again_and_order_is_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    small_pages(path)
    g = GuardedAlarmStore(AlarmStore(path))
    big = b"x" * 800  # needs overflow pages: refused once the database may not grow
    g.enqueue("t/1", big)  # durable
    g.enqueue("t/2", big)
    fill(g.store._db)
    g.enqueue("t/3", big)  # memory
    assert g.degraded
    assert "full" in g.failure
    rows = g.pending(10)
    assert [r.topic for r in rows] == ["t/1", "t/2", "t/3"]  # stored first, then memory
    g.acknowledged([rows[0].id, rows[2].id], at=5.0)  # the broker has t/1 and t/3
    assert [r.topic for r in g.pending(10)] == ["t/2"]  # neither is sent again
    assert g.pending_count() == 1
    assert [r.topic for r in g.recently_acknowledged(0.0)] == ["t/1", "t/3"]
    g.enqueue("t/4", big)
    assert not g.retry()  # still full
    g.store._db.execute("PRAGMA max_page_count = 1000000")
    assert g.retry()
    assert not g.degraded
    assert [r.topic for r in g.pending(10)] == ["t/2", "t/4"]  # t/3 was delivered already
    assert [r.topic for r in g.store.pending(10)] == ["t/2", "t/4"]  # and it is all durable
    g.close()


def event(room: str, seq: int) -> AlarmEventMessage:
    return AlarmEventMessage(
        event_id=f"{room}-{seq}", seq=seq, site=SITE, room=room, alarm_id=f"a-{seq}",
        condition=f"{room}/spo2/limit.spo2_low", code="limit.spo2_low", check="numeric_limits",
        feed="spo2", kind="physiological", priority="medium", transition="raised",
        state="active", audible=True, escalation_level=0, origin="live", t=T0 + seq,
        time="", since=T0 + seq,
    )


def test_a_crash_while_not_durable_never_gives_a_seq_twice(tmp_path: Path) -> None:
    """Events published from memory and lost from the log by a crash keep their seqs:
    the next start continues above the store's reservation, a gap, never a repeat."""
    path = tmp_path / "store.sqlite3"
    small_pages(path)
    g = GuardedAlarmStore(AlarmStore(path))
    assert g.next_seq("r1") == 1
    g.record([event("r1", 1), event("r1", 2)], [])  # durable
    fill(g.store._db)
    g.record([event("r1", 3), event("r1", 4)], [])  # published from memory only
    assert g.degraded
    AlarmStore(path).close()  # a reader (roommon alarms) meanwhile gives nothing back
    g.store._db.close()  # the daemon is killed: what memory held is gone
    restarted = GuardedAlarmStore(AlarmStore(path))
    assert [e.seq for e in restarted.events(room="r1")] == [1, 2]
    assert restarted.next_seq("r1") > 4  # 3 and 4 were published: never given again
    assert restarted.next_seq("r2") == 1  # a room with no events has nothing to skip
    restarted.close()


def test_a_clean_shutdown_gives_the_reserved_seqs_back(tmp_path: Path) -> None:
    g = GuardedAlarmStore(AlarmStore(tmp_path / "store.sqlite3"))
    g.record([event("r1", 1), event("r1", 2)], [])
    g.close()
    again = GuardedAlarmStore(AlarmStore(tmp_path / "store.sqlite3"))
    assert again.next_seq("r1") == 3  # no gap after a clean stop
    again.record([event("r1", 3)], [])
    again.store._db.close()  # a crash (while durable) this time
    third = GuardedAlarmStore(AlarmStore(tmp_path / "store.sqlite3"))
    assert third.next_seq("r1") > 4  # a gap: the sign of a crash; still never a repeat
    third.close()


def test_a_store_opened_read_only_starts_not_durable_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart on a still-full (here: read-only) disk starts, not durable, instead of
    exiting; acknowledgements a previous run left are not taken for this run's."""
    path = tmp_path / "store.sqlite3"
    first = AlarmStore(path)
    first.enqueue("t/old", b"1")
    first.acknowledged([r.id for r in first.pending()], at=1e9)  # a previous boot's clock
    first.close()
    def read_only(p: Path | str, schema: str) -> sqlite3.Connection:
        db = connect(p, schema)
        db.execute("PRAGMA query_only = ON")  # real SQLite refusing every write
        return db

    monkeypatch.setattr("roommon.alerts.store.connect", read_only)
    g = GuardedAlarmStore(AlarmStore(path))
    assert g.degraded
    assert "readonly" in g.failure
    assert g.recently_acknowledged(0.0) == []
    assert not g.retry()
    g.store._db.execute("PRAGMA query_only = OFF")
    assert g.retry()
    assert g.store._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    g.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MB tmpfs (mounting needs root; the max_page_count test above needs not)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(mount: Path) -> Path:
    filler = mount / "filler"
    with (  # noqa: PT012 - only the full disk ends the loop
        pytest.raises(OSError, match="No space left") as full,
        filler.open("wb") as f,
    ):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    assert full.value.errno == errno.ENOSPC
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
async def test_a_real_full_filesystem_is_store_unwritable_and_space_again_resumes(
    broker: MosquittoBroker, small_disk: Path
) -> None:
    room = {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
        "checks": {
            "numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}
        },
    }
    cfg = parse_config(
        {
            "site": {"id": SITE},
            "broker": {"port": broker.port},
            "daemon": {"state_dir": str(small_disk / "state"), "heartbeat_s": 60},
            "rooms": {"r1": room},
        }
    )
    clock = VirtualClock(start=T0)
    feed = f"roommon/v1/{SITE}/r1/feed/spo2"
    async with (
        Daemon(config=cfg, clock=clock) as d,
        MqttCollector(broker.port, [f"roommon/v1/{SITE}/#"]) as c,
    ):
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        await c.publish(feed, reading(1, 97))
        filler = await asyncio.to_thread(fill_disk, small_disk)
        for seq in range(2, 12):  # alternate raise and clear until a write needs new space
            await c.publish(feed, reading(seq, 80 if seq % 2 == 0 else 97))
        await c.wait_for(lambda ms: len(events(ms, "r1")) >= 10)
        await clock.advance(1.0)
        await c.wait_for(has("store.unwritable", "raised", ("r1",)))
        assert d.store.degraded
        assert "full" in d.store.failure
        await asyncio.to_thread(filler.unlink)
        await clock.advance(1.0)
        msgs = await c.wait_for(has("store.unwritable", "cleared", ("r1",)))
        logged = [e.seq for e in d.store.events(room="r1")]
    published = {e["event_id"]: e for e in events(msgs, "r1")}
    seqs = sorted(e["seq"] for e in published.values())
    assert seqs == list(range(1, len(seqs) + 1))  # none twice, none skipped
    assert logged == seqs  # what memory held while the disk was full reached the log


async def test_a_recovery_store_that_cannot_be_written_is_an_alarm_and_the_timer_goes_on(
    tmp_path: Path,
) -> None:
    """The recovery timer's own store refusing writes: store.unwritable, the timer keeps
    its deadlines from memory, and what it did is saved once the store takes writes."""
    from roommon.core.events import InjectionEnded
    from roommon.testing import CaptureOutput

    cfg = parse_config(
        {
            "site": {"id": SITE},
            "daemon": {"state_dir": str(tmp_path), "tick_s": 1.0},
            "rooms": {
                "r1": {
                    "feeds": {"cement": {"kind": "cement_pressure", "fs": 50, "required": False}},
                    "checks": {"cement": {}},
                    "recovery": {
                        "default": {
                            "min_bed_rest_s": 60,
                            "target_s": 120,
                            "checks": [{"every_s": 10, "until_s": 120}],
                            "grace_s": 5,
                            "confirm_s": 1,
                        }
                    },
                }
            },
        }
    )
    clock = VirtualClock(start=T0)
    out = CaptureOutput()

    def store_alarm(transition: str) -> list[AlarmEventMessage]:
        return [e for e in out.events if e.code == "store.unwritable" and
                e.transition == transition]

    async with Daemon(config=cfg, clock=clock, use_broker=False, extra_outputs=[out]) as d:
        recovery_db: sqlite3.Connection = d.recovery_store._db
        recovery_db.execute("PRAGMA query_only = ON")  # real SQLite refusing every write
        now = clock.now()
        d.pipelines["r1"].event(
            InjectionEnded(t=now, injection=1, started_t=now - 60, last_injecting_t=now,
                           peak_kpa=1500.0)
        )
        await clock.run_for(25)
        kinds = [m.event for m in out.timer_messages]
        assert "started" in kinds
        assert "check_due" in kinds
        (raised,) = store_alarm("raised")
        assert raised.priority == "high"
        assert "recovery store" in raised.message
        assert not json.loads(d.status_payload("online"))["durable"]
        assert d.recovery_store.load("r1") is None  # nothing reached SQLite
        recovery_db.execute("PRAGMA query_only = OFF")  # the disk has space again
        await clock.run_for(3)
        assert store_alarm("cleared")
        saved = d.recovery_store.load("r1")
        assert saved is not None
        assert saved.seq == d.pipelines["r1"].recovery.timer.seq
        assert len(d.recovery_store.history(room="r1", entry="event")) == saved.seq
        assert json.loads(d.status_payload("online"))["durable"]
