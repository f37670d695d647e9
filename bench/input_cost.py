"""CPU cost per feed message on the inbound path, alternatives side by side (issue 12 item 3).

The message mix is ``bench/scale.py``'s per-room profile (EKG 250 Hz in 0.2 s
chunks, pleth and cement 100 Hz in 0.25 s chunks, SpO2 1 Hz, NIBP; JSON).

1. **receive**: a real Mosquitto; a raw publisher process sends ``--count``
   messages; this process receives them with aiomqtt and hands each to a
   callback that does nothing. CPU time of this process (``time.process_time``)
   per message, for MQTT 5 and MQTT 3.1.1, each with aiomqtt's message
   iterator (a task and an ``asyncio.wait`` per message: what the daemon did)
   and with the iterator draining aiomqtt's queue after each wake (what
   ``MqttLink._read`` does now).
2. **ingest**: the same payloads through ``FeedIngest.payload`` into real room
   pipelines with the scale bench's checks, on a virtual clock advanced at the
   real rate (so the rooms tick): decode alone (``decode_feed``: the pydantic
   models of the contract), and decode + checks + alarm engine + bookkeeping.

Each figure is the median of ``--repeat`` runs; ratios are within this run.
The machine is shared with other sessions: absolute figures are noisy.

Run: ``.venv/bin/python bench/input_cost.py [--count 20000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from scale import MSGS_PER_ROOM_S, connect_raw, payload, publish_packet, room_streams, site_config

from roommon.config import parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.logs import configure
from roommon.runtime.ingest import FeedIngest
from roommon.testing import MosquittoBroker

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


# ---------------------------------------------------------------------- ingest


async def ingest_cost(msgs: list[tuple[str, str, bytes, float]], *, decode_only: bool) -> float:
    """CPU seconds per message through the ingest (and the rooms, unless ``decode_only``)."""
    from roommon.core.model import SignalKind
    from roommon.room.pipeline import RoomPipeline
    from roommon.testing import CaptureOutput
    from roommon.wire.payloads import decode_feed

    raw = tomllib.loads(site_config(1883, Path("/tmp/roommon-bench-unused"), ROOMS, 2.0))
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
    cpu = 0.0
    tick_at = 1.0
    for room, feed, body, t in msgs:
        if t >= tick_at:  # the rooms' once-a-second tick, on the virtual clock
            await clock.advance(tick_at - clock.monotonic())
            c0 = time.process_time()
            for p in pipelines.values():
                p.tick()
            cpu += time.process_time() - c0
            tick_at += 1.0
        c0 = time.process_time()
        ingest.payload(room, feed, body)
        cpu += time.process_time() - c0
    return cpu / len(msgs)


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
            ("receive MQTT 5, paho callback + read buffer (now)", False, "buffered"),
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
    finally:
        broker.close()
    msgs = mix(ROOMS, args.seconds)
    await ingest_cost(msgs[: len(msgs) // 4], decode_only=False)  # warm-up: lazy imports, caches
    for name, decode_only in (
        ("decode (pydantic, the contract)", True),
        ("ingest: decode + rooms", False),
    ):
        runs = [await ingest_cost(msgs, decode_only=decode_only) for _ in range(args.repeat)]
        rows[name] = statistics.median(runs)
        print(f"  {name:48s} {1e6 * rows[name]:7.1f} us/message", flush=True)
    before = rows["receive MQTT 5, aiomqtt iterator (before)"] + rows["ingest: decode + rooms"]
    for label, recv in (
        ("MQTT 5, callback + buffer", "receive MQTT 5, paho callback + read buffer (now)"),
        ("MQTT 3.1.1, callback + buffer", "receive MQTT 3.1.1, paho callback + read buffer"),
    ):
        total = rows[recv] + rows["ingest: decode + rooms"]
        print(
            f"  total with {label:20s} {1e6 * total:7.1f} us/message vs "
            f"{1e6 * before:.1f} with MQTT 5 + iterator: x{before / total:.2f}",
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
    args = ap.parse_args()
    if args.role == "blast":
        run_blast(args)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
