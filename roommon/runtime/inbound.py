"""The live inbound path's bounded queue and its lag: how far behind real time the input is.

Between the MQTT reader (which only moves messages) and the feed ingest (which
decodes and runs the rooms) sits :class:`InboundQueue`: bounded, so an
overloaded daemon keeps its memory; when full it sheds the *oldest* message
(the newest data is what an alarm needs), counted per room and feed, never
silently. :class:`InputLag` keeps, per room, the worst input lag seen since
the last tick: now minus the sample's own time, or minus when the message was
received if that is larger. The daemon turns a lag above
``daemon.overload_lag_s``, or shedding, into the technical alarm
``daemon.overloaded`` of that room.

Both are plain objects with plain attributes (``shed``, ``queued``,
``high_water``, ``lag_s``) so a metrics endpoint can read them.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from typing import NamedTuple


class Inbound(NamedTuple):
    room: str
    feed: str
    payload: bytes
    #: ``clock.monotonic()`` when the reader handed it over.
    received: float


class InboundQueue:
    """A bounded FIFO of feed messages; full, it sheds the oldest and counts it."""

    __slots__ = ("_items", "capacity", "high_water", "ready", "shed", "shed_total")

    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Inbound] = deque()
        #: Messages shed, by (room, feed).
        self.shed: Counter[tuple[str, str]] = Counter()
        self.shed_total = 0
        #: Most messages ever waiting at once.
        self.high_water = 0
        #: Set while there is something to take.
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued(self) -> int:
        return len(self._items)

    def put(self, item: Inbound) -> Inbound | None:
        """Queue ``item``; return the message shed to make room for it, if any."""
        items = self._items
        old = None
        if len(items) >= self.capacity:
            old = items.popleft()
            self.shed[(old.room, old.feed)] += 1
            self.shed_total += 1
        items.append(item)
        if len(items) > self.high_water:
            self.high_water = len(items)
        self.ready.set()
        return old

    def waited(self, mono: float) -> float:
        """How long the oldest queued message has waited at ``mono`` (0 when empty): the
        input is at least that far behind, for every room, even if nothing is processed."""
        return mono - self._items[0].received if self._items else 0.0

    def pop(self) -> Inbound | None:
        """The oldest message, or None when there is none."""
        items = self._items
        if not items:
            self.ready.clear()
            return None
        item = items.popleft()
        if not items:
            self.ready.clear()
        return item

    def take(self, limit: int) -> list[Inbound]:
        """Up to ``limit`` of the oldest messages, in order."""
        items = self._items
        n = min(limit, len(items))
        out = [items.popleft() for _ in range(n)]
        if not items:
            self.ready.clear()
        return out


#: How fast a feed's clock baseline creeps up towards its current offset, in seconds
#: per second: a gateway clock stepped back by 10 s stops reading as lag after about
#: 1000 s, while a daemon falling behind (its lag grows far faster) still shows.
BASELINE_CREEP = 0.01


class InputLag:
    """Per room, the largest input lag since :meth:`roll` was last called.

    A sample's lag is ``now - t_sample`` less that feed's *baseline*, the smallest
    such offset seen (creeping up by :data:`BASELINE_CREEP`): a gateway whose clock
    is off by a constant, or data stamped with the times of a recording, does not
    read as lag; data that arrives later and later does. The time the message
    waited in the daemon's own queue counts too, whichever is larger.
    """

    __slots__ = ("_baseline", "_current", "by_room", "lag_s")

    def __init__(self) -> None:
        self._current: dict[str, float] = {}
        self._baseline: dict[tuple[str, str], tuple[float, float]] = {}
        #: Per room, the worst lag of the last completed interval (seconds).
        self.by_room: dict[str, float] = {}
        #: The worst of ``by_room`` (seconds): the status's ``input_lag_s``.
        self.lag_s = 0.0

    def sample(self, room: str, feed: str, *, offset: float, waited: float, mono: float) -> float:
        """Note one accepted sample: ``offset`` = now minus its time, ``waited`` = how long
        it was queued here, ``mono`` = the monotonic clock now. Returns its lag."""
        key = (room, feed)
        base = self._baseline.get(key)
        floor = offset if base is None else base[0] + BASELINE_CREEP * (mono - base[1])
        floor = min(floor, offset)
        self._baseline[key] = (floor, mono)
        lag = max(offset - floor, waited)
        cur = self._current.get(room)
        if cur is None or lag > cur:
            self._current[room] = lag
        return lag

    def roll(self) -> dict[str, float]:
        """End the interval: its per-room worst lags become :attr:`by_room`."""
        self.by_room, self._current = self._current, {}
        self.lag_s = max(self.by_room.values(), default=0.0)
        return self.by_room
