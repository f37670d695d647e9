"""CPU cost per feed message on the inbound path, alternatives side by side (issue 12 item 3).

The message mix is ``bench/scale.py``'s per-room profile (EKG 250 Hz in 0.2 s
chunks, pleth and cement 100 Hz in 0.25 s chunks, SpO2 1 Hz, NIBP; JSON).

1. **receive**: a real Mosquitto; a raw publisher process sends ``--count``
   messages; this process receives them with aiomqtt and hands each to a
   callback that does nothing. CPU time of this process (``time.process_time``)
   per message, for MQTT 5 and MQTT 3.1.1, each with aiomqtt's message
   iterator (a task and an ``asyncio.wait`` per message: what the daemon did),
   with the iterator draining aiomqtt's queue after each wake, from paho's
   callback, and from it with a read buffer under paho's socket (what
   ``MqttLink._read`` does for the control connection); and with roommon's own
   feed subscriber (``roommon/transports/feed_subscriber.py``: every packet of
   a socket read parsed at once, one handler call per read; what the daemon's
   feed connection uses now).
2. **decode**: ``decode_feed`` alone over the profile's payloads, with the pydantic
   models of the contract alone (before) and with the msgspec decoder in front of
   them (now, ``roommon/wire/fast_feed.py``).
3. **ingest**: the same payloads through ``FeedIngest.payload`` into real room
   pipelines with the scale bench's checks, on a virtual clock advanced at the
   real rate (so the rooms tick): decode + checks + alarm engine + bookkeeping.
   Each run is its own interpreter; the **reference** is the ingest of commit
   ``--reference`` (main as this work began, exported with ``git archive``),
   interleaved run by run with this tree's (and this tree's with the models
   decoder), so the machine's load falls on them alike. ``--profile N`` prints
   the top N cProfile entries of the reference's ingest and of this tree's.

The totals add a receive row and an ingest row; the reference path is MQTT 5
with aiomqtt's iterator plus the reference ingest, and each total's ratio is
against it, within this run.

Each figure is the median of ``--repeat`` runs (CPU time of the process).
The machine is shared with other sessions: absolute figures are noisy.

Run: ``.venv/bin/python bench/input_cost.py [--count 20000] [--repeat 3] [--profile 25]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scale import MSGS_PER_ROOM_S, connect_raw, payload, publish_packet, room_streams, site_config

from roommon.config import parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.logs import configure
from roommon.runtime.ingest import FeedIngest
from roommon.testing import MosquittoBroker

if TYPE_CHECKING:
    from roommon.wire.fast_feed import FastReading, FastWaveform

ROOMS = 20


def mix(rooms: int, seconds: float) -> list[tuple[str, str, bytes, float]]:
    """(room, feed, payload, time offset) of ``seconds`` of the profile for ``rooms`` rooms,
    in time order."""
    out = []
    t0 = 1_767_225_600.0
    for r in range(rooms):
        room = f"room{r:04d}"
        for s in room_streams(room):
            feed = s.topic.decode().rsplit("/", 1)[1]
            k = 1
            while k * s.period <= seconds or (s.period > seconds and k == 1):
                t = min(k * s.period, seconds) + r * 0.001
                out.append((room, feed, payload(s, t0 + t, False), t))
                k += 1
    out.sort(key=lambda m: m[3])
    return out


# ---------------------------------------------------------------------- receive


def run_blast(args: argparse.Namespace) -> None:
    msgs = mix(ROOMS, 60.0)
    packets = [publish_packet(f"roommon/v1/bench/{r}/feed/{f}".encode(), p) for r, f, p, _ in msgs]
    sock = connect_raw(args.port, "bench-input-blast")
    sent = 0
    while sent < args.count:
        n = min(500, args.count - sent)
        sock.sendall(b"".join(packets[(sent + i) % len(packets)] for i in range(n)))
        sent += n
        time.sleep(0.01)  # ~50k msg/s at most: the broker must not drop for a slow reader
    sock.sendall(b"\xe0\x00")
    sock.close()


async def receive(
    port: int,
    count: int,
    *,
    mqtt311: bool,
    drain: bool,
    direct: bool = False,
    buffered: bool = False,
) -> float:
    """CPU seconds per message for receiving ``count`` messages: with aiomqtt's iterator,
    with it draining the queue after each wake (``drain``), or from paho's callback
    (``direct``: what ``MqttLink._read`` does now)."""
    import aiomqtt

    from roommon.transports.broker import BrokerEndpoint

    endpoint = BrokerEndpoint(host="127.0.0.1", port=port)
    got = 0
    done = asyncio.Event()
    cpu0 = 0.0

    def handle(_m: aiomqtt.Message) -> None:
        nonlocal got, cpu0
        got += 1
        if got == 1:
            cpu0 = time.process_time()
        if got == count:
            done.set()

    async with endpoint.client(identifier="bench-input-recv", mqtt311=mqtt311) as client:
        await client.subscribe("roommon/v1/bench/+/feed/+", qos=0)

        async def read() -> None:
            if direct:

                def on_paho(_c: Any, _u: Any, m: Any) -> None:
                    handle(m)

                client._client.on_message = on_paho
                if buffered:
                    from roommon.transports.read_buffer import ReadBuffer

                    client._client._sock = ReadBuffer(client._client._sock)
                await asyncio.Event().wait()
            queue = client._queue
            async for m in client.messages:
                handle(m)
                if drain:
                    while not queue.empty():
                        handle(queue.get_nowait())

        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(read())
            blaster = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "blast", "--port", str(port), "--count", str(count)
            )
            try:
                async with asyncio.timeout(120):
                    await done.wait()
            finally:
                reader.cancel()
                await blaster.wait()
    return (time.process_time() - cpu0) / max(1, count - 1)


async def receive_feed_subscriber(port: int, count: int, *, mqtt311: bool) -> float:
    """CPU seconds per message for receiving ``count`` messages with roommon's own feed
    subscriber (what the daemon's feed connection uses now): a read's messages at once."""
    from roommon.transports.broker import BrokerEndpoint
    from roommon.transports.feed_subscriber import FeedSubscriber, Messages

    endpoint = BrokerEndpoint(
        host="127.0.0.1", port=port, feed_protocol="3.1.1" if mqtt311 else "5"
    )
    got = 0
    done = asyncio.Event()
    cpu0 = 0.0

    def handle(messages: Messages) -> None:
        nonlocal got, cpu0
        if got == 0:
            cpu0 = time.process_time()
        got += len(messages)
        if got >= count:
            done.set()

    async with FeedSubscriber(endpoint, client_id="bench-input-recv", on_messages=handle) as sub:
        await sub.subscribe(["roommon/v1/bench/+/feed/+"], qos=0)
        blaster = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "blast", "--port", str(port), "--count", str(count)
        )
        try:
            async with asyncio.timeout(120):
                await done.wait()
        finally:
            await blaster.wait()
    return (time.process_time() - cpu0) / max(1, count - 1)


# ---------------------------------------------------------------------- ingest

#: The reference ingest: main as this work began (issue 12 item 3's "before" figures were
#: measured on it), run from ``git archive`` of that commit in its own interpreter.
REFERENCE_REV = "693569d"

#: A fresh interpreter measuring one ingest: roommon from TREE (or this tree), then the
#: figure (µs per message) on the last line of its output.
INGEST_RUN = """\
import importlib.machinery, sys
tree = {tree!r}
if tree:
    sys.path.insert(0, tree)
    sys.meta_path.insert(0, importlib.machinery.PathFinder)  # before the editable install
sys.path.insert(0, {bench!r})
import asyncio, input_cost
print(asyncio.run(input_cost.ingest_once({seconds!r}, decoder={decoder!r}, profile={profile!r})))
"""


def ingest_in_process(
    tree: Path | None, seconds: float, *, decoder: str = "now", profile: int = 0
) -> tuple[float, str]:
    """µs per message of one ingest run in a fresh interpreter (roommon from ``tree``, else
    this tree), and whatever it printed before the figure (a profile)."""
    code = INGEST_RUN.format(
        tree=str(tree or ""),
        bench=str(Path(__file__).resolve().parent),
        seconds=seconds,
        decoder=decoder,
        profile=profile,
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode:
        raise RuntimeError(f"ingest run failed:\n{done.stderr[-3000:]}")
    *before, figure = done.stdout.strip().splitlines()
    return float(figure), "\n".join(before)


def reference_tree(rev: str, into: Path) -> Path | None:
    """``roommon/`` of commit ``rev``, exported under ``into``; None without git."""
    root = Path(__file__).resolve().parents[1]
    try:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", rev, "roommon"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def ingest_once(seconds: float, *, decoder: str, profile: int) -> float:
    """One ingest measurement after a warm-up; ``decoder="models"``: the contract's pydantic
    models alone, as before the msgspec decoder; ``profile``: print the top entries."""
    configure(clock=RealClock(), level="info", json=True)  # as `roommon run` logs
    if decoder == "models":
        from roommon.wire import fast_feed

        fast_feed.waveform = _no_waveform
        fast_feed.reading = _no_reading
    msgs = mix(ROOMS, seconds)
    await ingest_cost(msgs[: len(msgs) // 4], decode_only=False)  # warm-up: lazy imports, caches
    if not profile:
        return 1e6 * await ingest_cost(msgs, decode_only=False)
    prof = cProfile.Profile()
    prof.enable()
    figure = await ingest_cost(msgs, decode_only=False)
    prof.disable()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(profile)
    return 1e6 * figure


def _no_waveform(payload: bytes) -> FastWaveform | None:
    """A fast decoder that takes nothing: every payload goes to the pydantic models."""
    return None


def _no_reading(payload: bytes) -> FastReading | None:
    """A fast decoder that takes nothing: every payload goes to the pydantic models."""
    return None


async def ingest_cost(msgs: list[tuple[str, str, bytes, float]], *, decode_only: bool) -> float:
    """CPU seconds per message through the ingest (and the rooms, unless ``decode_only``)."""
    from roommon.core.model import SignalKind
    from roommon.room.pipeline import RoomPipeline
    from roommon.testing import CaptureOutput
    from roommon.wire.payloads import decode_feed

    raw = tomllib.loads(site_config(1883, Path("/tmp/roommon-bench-unused"), ROOMS, None))
    cfg = parse_config(raw)
    clock = VirtualClock()
    out = CaptureOutput()
    pipelines = {
        r: RoomPipeline(site="bench", room=r, config=c, daemon=cfg.daemon, clock=clock, output=out)
        for r, c in cfg.rooms.items()
    }
    if decode_only:
        feeds = {(r, n): f for r, c in cfg.rooms.items() for n, f in c.feeds.items()}
        cpu0 = time.process_time()
        for room, feed, body, _ in msgs:
            f = feeds[(room, feed)]
            decode_feed(
                body,
                room=room,
                feed=feed,
                kind=SignalKind(f.kind),
                unit=f.effective_unit,
                fs=f.fs,
                max_bytes=cfg.daemon.max_payload_bytes,
            )
        return (time.process_time() - cpu0) / len(msgs)
    ingest = FeedIngest(pipelines=pipelines, max_payload_bytes=262144, counters=Counter())
    tick_at = 1.0
    # The whole loop is timed (moving the virtual clock costs next to nothing): two
    # process_time() calls per message cost about 1 µs, as much as some steps measured.
    cpu0 = time.process_time()
    for room, feed, body, t in msgs:
        if t >= tick_at:  # the rooms' once-a-second tick, on the virtual clock
            await clock.advance(tick_at - clock.monotonic())
            for p in pipelines.values():
                p.tick()
            tick_at += 1.0
        ingest.payload(room, feed, body)
    return (time.process_time() - cpu0) / len(msgs)


# ---------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    configure(clock=RealClock(), level="info", json=True)  # as `roommon run` logs
    print(
        f"input cost per feed message ({MSGS_PER_ROOM_S:.0f} messages/s per room), median of "
        f"{args.repeat}; shared 2-core machine: absolute figures are noisy",
        flush=True,
    )
    broker = MosquittoBroker()
    broker.start()
    rows: dict[str, float] = {}
    try:
        for name, v311, how in (
            ("receive MQTT 5, aiomqtt iterator (before)", False, "iterator"),
            ("receive MQTT 5, iterator + drain", False, "drain"),
            ("receive MQTT 5, paho callback", False, "direct"),
            ("receive MQTT 5, paho callback + read buffer", False, "buffered"),
            ("receive MQTT 3.1.1, aiomqtt iterator", True, "iterator"),
            ("receive MQTT 3.1.1, iterator + drain", True, "drain"),
            ("receive MQTT 3.1.1, paho callback", True, "direct"),
            ("receive MQTT 3.1.1, paho callback + read buffer", True, "buffered"),
        ):
            runs = [
                await receive(
                    broker.port,
                    args.count,
                    mqtt311=v311,
                    drain=how == "drain",
                    direct=how in ("direct", "buffered"),
                    buffered=how == "buffered",
                )
                for _ in range(args.repeat)
            ]
            rows[name] = statistics.median(runs)
            print(f"  {name:48s} {1e6 * rows[name]:7.1f} us/message", flush=True)
        for name, v311 in (
            ("receive MQTT 5, roommon feed subscriber", False),
            ("receive MQTT 3.1.1, roommon feed subscriber (now)", True),
        ):
            runs = [
                await receive_feed_subscriber(broker.port, args.count, mqtt311=v311)
                for _ in range(args.repeat)
            ]
            rows[name] = statistics.median(runs)
            print(f"  {name:48s} {1e6 * rows[name]:7.1f} us/message", flush=True)
    finally:
        broker.close()
    from roommon.wire import fast_feed  # not at the top: a reference tree may have none

    msgs = mix(ROOMS, args.seconds)
    await ingest_cost(msgs[: len(msgs) // 4], decode_only=True)  # warm-up
    for name, decoder in (
        ("decode: pydantic models alone (before)", "models"),
        ("decode: msgspec, models for the rest (now)", "now"),
    ):
        runs = []
        for _ in range(args.repeat):
            saved = fast_feed.waveform, fast_feed.reading
            if decoder == "models":
                fast_feed.waveform, fast_feed.reading = _no_waveform, _no_reading
            try:
                runs.append(await ingest_cost(msgs, decode_only=True))
            finally:
                fast_feed.waveform, fast_feed.reading = saved
        rows[name] = statistics.median(runs)
        print(f"  {name:48s} {1e6 * rows[name]:7.1f} us/message", flush=True)
    with tempfile.TemporaryDirectory(prefix="roommon-ref-") as tmp:
        ref = reference_tree(args.reference, Path(tmp))
        ingests: list[tuple[str, Path | None, str]] = [
            ("ingest: this tree, models decoder", None, "models"),
            ("ingest: this tree (now)", None, "now"),
        ]
        if ref is None:
            print(f"  (no git: the reference ingest of {args.reference} is not measured)")
        else:
            ingests.insert(0, (f"ingest: {args.reference} (reference)", ref, "now"))
        runs_of: dict[str, list[float]] = {name: [] for name, _, _ in ingests}
        for _ in range(args.repeat):  # interleaved: the machine's load falls on all alike
            for name, tree, decoder in ingests:
                runs_of[name].append(ingest_in_process(tree, args.seconds, decoder=decoder)[0])
        for name, _, _ in ingests:
            rows[name] = statistics.median(runs_of[name]) / 1e6
            print(f"  {name:48s} {1e6 * rows[name]:7.1f} us/message", flush=True)
        if args.profile:
            for name, tree, decoder in ingests[:: len(ingests) - 1]:
                _, text = ingest_in_process(
                    tree, args.seconds, decoder=decoder, profile=args.profile
                )
                print(f"\nprofile of {name} (cProfile, top {args.profile} by own time):\n{text}")
    ref_ingest = rows.get(f"ingest: {args.reference} (reference)")
    if ref_ingest is None:
        return
    reference = rows["receive MQTT 5, aiomqtt iterator (before)"] + ref_ingest
    print(
        f"  {'reference: MQTT 5 iterator + ' + args.reference + ' ingest':48s} "
        f"{1e6 * reference:7.1f} us/message",
        flush=True,
    )
    paho5 = "receive MQTT 5, paho callback + read buffer"
    paho311 = "receive MQTT 3.1.1, paho callback + read buffer"
    own5 = "receive MQTT 5, roommon feed subscriber"
    own311 = "receive MQTT 3.1.1, roommon feed subscriber (now)"
    for label, recv, ingest in (
        ("MQTT 5, paho callback + buffer", paho5, "now"),
        ("MQTT 3.1.1, paho callback + buffer", paho311, "now"),
        ("MQTT 5, feed subscriber", own5, "now"),
        ("MQTT 3.1.1, feed subscriber (now)", own311, "now"),
        ("MQTT 3.1.1, feed subscriber", own311, "models"),
    ):
        row = "ingest: this tree (now)" if ingest == "now" else "ingest: this tree, models decoder"
        total = rows[recv] + rows[row]
        decoder = "" if ingest == "now" else ", models decoder"
        print(
            f"  total {label + decoder:46s} {1e6 * total:7.1f} us/message: "
            f"x{reference / total:.2f} against the reference",
            flush=True,
        )


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="role")
    b = sub.add_parser("blast")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--count", type=int, required=True)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="Profile seconds to ingest.")
    ap.add_argument(
        "--reference", default=REFERENCE_REV, help="Commit whose ingest is the reference."
    )
    ap.add_argument(
        "--profile", type=int, default=0, help="Print this many top cProfile entries of ingest."
    )
    args = ap.parse_args()
    if args.role == "blast":
        run_blast(args)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
