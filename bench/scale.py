"""How many rooms one daemon process sustains in real time, with alarm latency (issue 12 item 7).

Everything real and separate, on loopback: its own Mosquitto on a free port;
publisher processes sending the issue's per-room profile at the real rate
(EKG 250 Hz in 0.2 s chunks, pleth and cement pressure 100 Hz in 0.25 s
chunks, SpO2 at 1 Hz, NIBP every 5 min: 14 messages and 450 samples per second
per room, JSON samples, QoS 0), each message with its own seq and the time of
its data; ``roommon run`` as its own process; and an outside subscriber
(this process) taking alarms and the daemon's status.

The publishers send raw MQTT 3.1.1 PUBLISH packets whose sample text is
precomputed (only seq and time are formatted per message), so they cost far
less than the daemon and do not limit the figure; their own lateness is
reported and a trial whose publishers fell behind is marked so.

A trial at N rooms passes when, over ``--duration`` seconds after a warm-up:
the status's input lag stays under ``--max-lag`` s, nothing is shed or
rejected, at most 0.1 % of what was published is missing from the daemon's
``feed_accepted``, every injected step alarmed and its p99 latency is under
``--max-p99`` s. N doubles until a trial fails, then bisects.

Alarm latency: in a few rooms SpO2 steps from 97 % to 80 %; the room's rule
``limit.bench_step`` has a condition delay of ``STEP_DELAY_S``. Latency is
when the alarm reached the outside subscriber minus (when the publisher sent
the first low reading + the delay).

Also measured in the same run: the broker's own relay ceiling (Mosquitto to
one raw subscriber, same payloads, as fast as it goes), printed as a ratio;
an overload trial at twice the sustained N (time to ``daemon.overloaded``,
RSS, shed counts); and a cProfile of the daemon at the sustained N (top
entries by own time).

Run: ``.venv/bin/python bench/scale.py [--duration 60] [--start 25] [--max-rooms 800]``.
The machine is shared: figures are lower and noisier than on an idle one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from roommon.testing import MosquittoBroker

SITE = "bench"
BASE = f"roommon/v1/{SITE}"
STEP_DELAY_S = 3.0
WARMUP_S = 4.0
STEP_ROOMS = 8

#: (feed, kind, fs, chunk seconds, unit); numerics have fs 0.
WAVES = (
    ("ekg", "ecg", 250.0, 0.2, "mV"),
    ("pleth", "pleth", 100.0, 0.25, "au"),
    ("cement", "cement_pressure", 100.0, 0.25, "kPa"),
)
NUMERICS = (("spo2", "spo2", 1.0), ("nibp", "nibp", 300.0))
MSGS_PER_ROOM_S = sum(1 / c for *_, c, _ in WAVES) + sum(1 / p for *_, p in NUMERICS)


# ---------------------------------------------------------------------- raw MQTT 3.1.1


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_raw(port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    body = _str(b"MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + _str(client_id.encode())
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    ack = sock.recv(4)
    if len(ack) < 4 or ack[0] != 0x20 or ack[3] != 0:
        raise RuntimeError(f"CONNACK refused: {ack!r}")
    return sock


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    body = _str(topic) + payload
    return b"\x30" + _varint(len(body)) + body


def subscribe_raw(sock: socket.socket, topic: str) -> None:
    body = (1).to_bytes(2, "big") + _str(topic.encode()) + b"\x00"
    sock.sendall(b"\x82" + _varint(len(body)) + body)


# ---------------------------------------------------------------------- payloads


def _wave_cycle(kind: str, fs: float, n: int) -> list[bytes]:
    """Sample text of one 8 s cycle of chunks (a whole number of beats at 75 bpm)."""
    t = np.arange(int(8 * fs)) / fs
    phase = (t * 75 / 60) % 1.0
    if kind == "ecg":
        x = 1.1 * np.exp(-(((phase - 0.3) / 0.012) ** 2)) + 0.15 * np.sin(2 * np.pi * phase)
    elif kind == "pleth":
        x = 1.0 + np.sin(2 * np.pi * phase) + 0.3 * np.sin(4 * np.pi * phase)
    else:
        x = 2.0 + 0.5 * np.sin(2 * np.pi * 0.1 * t)
    x = x + np.random.default_rng(1).normal(0, 0.01, len(x))
    return [
        ("[" + ",".join(f"{v:.3f}" for v in x[i : i + n]) + "]").encode()
        for i in range(0, len(x), n)
    ]


@dataclass
class Stream:
    topic: bytes
    period: float
    head: bytes  # payload up to the seq field
    cycle: list[bytes] = field(default_factory=list)  # waveform sample texts
    kind: str = ""
    seq: int = 0


def room_streams(room: str) -> list[Stream]:
    out = []
    for feed, kind, fs, chunk_s, unit in WAVES:
        n = round(fs * chunk_s)
        head = f'{{"v":1,"kind":"{kind}","fs":{fs:g},"unit":"{unit}","n":{n},'.encode()
        out.append(
            Stream(
                topic=f"{BASE}/{room}/feed/{feed}".encode(),
                period=chunk_s,
                head=head,
                cycle=_wave_cycle(kind, fs, n),
                kind=kind,
            )
        )
    for feed, kind, period in NUMERICS:
        out.append(
            Stream(
                topic=f"{BASE}/{room}/feed/{feed}".encode(),
                period=period,
                head=f'{{"v":1,"kind":"{kind}",'.encode(),
                kind=kind,
            )
        )
    return out


def payload(s: Stream, t_end: float, low: bool) -> bytes:
    s.seq += 1
    if s.cycle:
        samples = s.cycle[s.seq % len(s.cycle)]
        return b'%s"seq":%d,"t0":%.4f,"samples":%s}' % (s.head, s.seq, t_end - s.period, samples)
    if s.kind == "spo2":
        values = b'{"spo2":%d,"pulse_rate":75,"perfusion_index":3.0}' % (80 if low else 97)
    else:
        values = b'{"systolic":120,"diastolic":80,"mean":93}'
    return b'%s"seq":%d,"t":%.4f,"values":%s}' % (s.head, s.seq, t_end, values)


# ---------------------------------------------------------------------- publisher process


def run_publisher(args: argparse.Namespace) -> None:
    """One publisher process: rooms [first, last) at the real rate from ``start`` (wall)."""
    rooms = [f"room{i:04d}" for i in range(args.first, args.last)]
    steps: dict[str, tuple[float, float]] = {
        r: (a, b) for r, a, b in json.loads(args.steps) if r in set(rooms)
    }
    streams: list[tuple[str, Stream]] = [(r, s) for r in rooms for s in room_streams(r)]
    rng = np.random.default_rng(args.first)
    periods = np.array([s.period for _, s in streams])
    # spread rooms over each period; NIBP's first reading within the first second
    phase = rng.uniform(0, 1, len(streams)) * np.minimum(periods, 1.0)
    sock = connect_raw(args.port, f"bench-pub-{args.first}")
    mono0 = time.monotonic() + (args.t0 - time.time())
    wall0 = args.t0
    due = mono0 + phase + np.where(periods > 1.0, 0.0, periods)  # first chunk after one period
    end = mono0 + args.run_s
    sent, late_max, step_sent = 0, 0.0, {}
    while True:
        now = time.monotonic()
        if now >= end:
            break
        idx = np.nonzero(due <= now)[0]
        if len(idx):
            if now > mono0 + 1.0:  # not the start-up of this process
                late_max = max(late_max, now - float(due[idx].min()))
            packets = []
            for i in idx:
                room, s = streams[i]
                t_end = wall0 + (float(due[i]) - mono0)
                low = False
                if s.kind == "spo2" and room in steps:
                    a, b = steps[room]
                    low = a <= t_end - wall0 < b
                    if low and room not in step_sent:
                        step_sent[room] = time.time()
                packets.append(publish_packet(s.topic, payload(s, t_end, low)))
            sock.sendall(b"".join(packets))
            sent += len(packets)
            due[idx] += periods[idx]
        # a 10 ms pace: what fell due meanwhile goes out together (at most 10 ms late)
        time.sleep(max(0.0, min(0.01 - (time.monotonic() - now), float(due.min()) - now)))
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    print(json.dumps({"sent": sent, "late_max": late_max, "step_sent": step_sent}))


# ---------------------------------------------------------------------- broker ceiling


def run_blaster(args: argparse.Namespace) -> None:
    """Publish the same payload mix as fast as possible for ``run_s`` seconds."""
    streams = room_streams("room0000") * 20
    packets = [publish_packet(s.topic, payload(s, time.time(), False)) for s in streams] * 10
    blob = b"".join(packets)
    sock = connect_raw(args.port, "bench-blaster")
    end = time.monotonic() + args.run_s
    sent = 0
    while time.monotonic() < end:
        sock.sendall(blob)
        sent += len(packets)
    sock.sendall(b"\xe0\x00")
    sock.close()
    print(json.dumps({"sent": sent}))


def run_counter(args: argparse.Namespace) -> None:
    """A raw subscriber counting PUBLISH packets per second (the broker's relay rate)."""
    sock = connect_raw(args.port, "bench-counter")
    subscribe_raw(sock, f"{BASE}/+/feed/+")
    buf = b""
    counts: list[int] = []
    n = 0
    sock.settimeout(1.0)
    print("ready", flush=True)
    tick = time.monotonic() + 1.0
    deadline = time.monotonic() + args.run_s
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            data = b""
        buf += data
        i = 0
        while True:  # walk the packets in the buffer
            if len(buf) - i < 2:
                break
            mult, length, j = 1, 0, i + 1
            while j < len(buf):
                b = buf[j]
                length += (b & 0x7F) * mult
                mult *= 128
                j += 1
                if not b & 0x80:
                    break
            else:
                break
            if j + length > len(buf):
                break
            if buf[i] & 0xF0 == 0x30:
                n += 1
            i = j + length
        buf = buf[i:]
        if time.monotonic() >= tick:
            counts.append(n)
            n = 0
            tick += 1.0
    print(json.dumps({"per_s": counts}))


def daemon_log(path: str) -> Any:
    """Where the daemon's log goes: nowhere, or appended to ``path``."""
    return open(path or os.devnull, "ab")


def spawn(cmd: list[str], *, out: Any = subprocess.PIPE, err: Any = None) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stdout=out, stderr=err, text=True)


async def broker_ceiling(port: int, seconds: float) -> float:
    me = [sys.executable, __file__]
    counter = spawn([*me, "counter", "--port", str(port), "--run-s", str(seconds + 2)])
    assert counter.stdout is not None
    await asyncio.to_thread(counter.stdout.readline)  # "ready"
    blaster = spawn(
        [*me, "blaster", "--port", str(port), "--run-s", str(seconds)], out=subprocess.DEVNULL
    )
    out, _ = await asyncio.to_thread(counter.communicate)
    blaster.wait()
    per_s = [c for c in json.loads(out.splitlines()[-1])["per_s"] if c > 0]
    return statistics.median(per_s[1:-1] or per_s) if per_s else 0.0


# ---------------------------------------------------------------------- daemon process


def site_config(
    port: int, state: Path, rooms: int, lag_limit: float | None, protocol: str = "5"
) -> str:
    lag = "" if lag_limit is None else f"overload_lag_s = {lag_limit}\n"
    lines = [
        f'[site]\nid = "{SITE}"\n[broker]\nhost = "127.0.0.1"\nport = {port}\n'
        + ("" if protocol == "5" else f'protocol = "{protocol}"\n')
        + f'[daemon]\nstate_dir = "{state}"\nheartbeat_s = 1.0\n{lag}'
    ]
    for i in range(rooms):
        r = f"rooms.room{i:04d}"
        lines.append(
            f'[{r}.feeds.ekg]\nkind = "ecg"\nfs = 250\n'
            f'[{r}.feeds.pleth]\nkind = "pleth"\nfs = 100\n'
            f'[{r}.feeds.cement]\nkind = "cement_pressure"\nfs = 100\nrequired = false\n'
            f'[{r}.feeds.spo2]\nkind = "spo2"\n'
            f'[{r}.feeds.nibp]\nkind = "nibp"\nstale_s = 900\n'
            f"[{r}.checks.ecg]\n[{r}.checks.spo2]\n[{r}.checks.nibp]\n[{r}.checks.cement]\n"
            f"[{r}.checks.numeric_limits]\nrules = [{{ kind = \"spo2\", field = \"spo2\", "
            f'below = 88, priority = "high", delay_s = {STEP_DELAY_S}, name = "bench_step" }}]\n'
        )
    return "".join(lines)


FROM_OTHER = (
    "import sys, importlib.machinery; sys.path.insert(0, {path!r}); "
    "sys.meta_path.insert(0, importlib.machinery.PathFinder); "
    "import roommon; print('roommon from', roommon.__file__, file=sys.stderr); "
    "from roommon.cli import main; sys.argv[0] = 'roommon'; sys.exit(main())"
)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Trial:
    rooms: int
    duration: float
    msgs_in_s: float = 0.0
    cpu_pct_room: float = 0.0
    cpu_pct: float = 0.0
    rss_mb: float = 0.0
    rss_idle_mb: float = 0.0
    lag_max: float = 0.0
    lag_end: float = 0.0
    no_status: bool = False
    load: float = 0.0  # the machine's 1-minute load average at the end of the trial
    shed: int = 0
    rejected: int = 0
    missing: int = 0
    published: int = 0
    latencies: list[float] = field(default_factory=list)
    #: Of the latency, from the daemon raising the alarm (its event's t) to the subscriber.
    delivery: list[float] = field(default_factory=list)
    steps: int = 0
    publisher_late: float = 0.0
    overloaded_after_s: float | None = None
    #: Alarm events seen at the subscriber during the trial, by code (all transitions).
    events: dict[str, int] = field(default_factory=dict)
    #: Of those, alarms raised once the publishers had started (not the start-up's
    #: feed.never_seen of feeds whose publisher was not running yet), by code.
    raised_loaded: dict[str, int] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)

    def p(self, q: float, delivery: bool = False) -> float:
        xs = self.delivery if delivery else self.latencies
        return float(np.quantile(xs, q)) if xs else float("nan")

    @property
    def ok(self) -> bool:
        return not self.why


async def trial(
    port: int,
    rooms: int,
    duration: float,
    args: argparse.Namespace,
    *,
    profile: Path | None = None,
) -> Trial:
    res = Trial(rooms=rooms, duration=duration)
    with tempfile.TemporaryDirectory(prefix="roommon-scale-") as tmp:
        cfg = Path(tmp) / "site.toml"
        # a checkout from before overload_lag_s existed: --old-checkout
        lag = None if args.old_checkout else args.max_lag
        cfg.write_text(site_config(port, Path(tmp) / "state", rooms, lag, args.protocol))
        cmd = [sys.executable]
        if profile is not None:
            cmd += ["-m", "cProfile", "-o", str(profile)]
        if args.roommon_from:  # that checkout's roommon package, ahead of the installed one
            # a script file, not -c: cProfile runs a script (it has no -c)
            launcher = Path(tmp) / "roommon_from.py"
            launcher.write_text(FROM_OTHER.format(path=args.roommon_from).replace("; ", "\n"))
            cmd += [str(launcher), "run", "--config", str(cfg)]
        else:
            cmd += ["-m", "roommon", "run", "--config", str(cfg)]
        daemon = spawn(cmd, out=subprocess.DEVNULL, err=daemon_log(args.daemon_log))
        statuses: list[tuple[float, dict[str, Any]]] = []
        online = asyncio.Event()
        alarms: dict[str, float] = {}
        raised_at: dict[str, float] = {}  # the alarm event's own t: when the daemon raised it
        overloaded: list[float] = []
        events: Counter[str] = Counter()
        raised_loaded: Counter[str] = Counter()
        start_at = [float("inf")]  # the publishers' start, once known
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier="bench-watch") as sub:
                await sub.subscribe(f"{BASE}/+/alarm", qos=1)
                await sub.subscribe(f"{BASE}/status/+", qos=1)

                async def watch() -> None:
                    async for m in sub.messages:
                        got = time.time()
                        body = json.loads(m.payload if isinstance(m.payload, bytes) else b"{}")
                        if str(m.topic).endswith("/alarm"):
                            events[body["code"]] += 1
                            if body["transition"] == "raised" and body["t"] >= start_at[0]:
                                raised_loaded[body["code"]] += 1
                            step = body["code"] == "limit.bench_step"
                            if step and body["transition"] == "raised":
                                alarms.setdefault(body["room"], got)
                                raised_at.setdefault(body["room"], body["t"])
                            if body["code"] == "daemon.overloaded":
                                overloaded.append(got)
                        elif body.get("status") == "online":
                            statuses.append((got, body))
                            online.set()

                async with asyncio.TaskGroup() as tg:
                    watcher = tg.create_task(watch())
                    # a daemon starting under cProfile on a loaded machine takes its time
                    async with asyncio.timeout(60 if profile is None else 240):
                        await online.wait()
                    await asyncio.sleep(1.0)
                    res.rss_idle_mb = proc_rss_mb(daemon.pid)
                    start = time.time() + 2.0  # the publishers' processes start meanwhile
                    start_at[0] = start
                    run_s = WARMUP_S + duration
                    every = max(1, rooms // STEP_ROOMS)
                    step_rooms = [f"room{i:04d}" for i in range(0, rooms, every)][:STEP_ROOMS]
                    span = max(0.5, duration - STEP_DELAY_S - 1.5)
                    steps = [
                        (r, WARMUP_S + k * span / len(step_rooms), run_s + 1)
                        for k, r in enumerate(step_rooms)
                    ]
                    res.steps = len(steps)
                    per = -(-rooms // args.publishers)
                    pubs = [
                        spawn(
                            [
                                sys.executable, __file__, "publish", "--port", str(port),
                                "--first", str(a), "--last", str(min(rooms, a + per)),
                                "--t0", repr(start), "--run-s", str(run_s),
                                "--steps", json.dumps(steps),
                            ]
                        )
                        for a in range(0, rooms, per)
                    ]
                    await asyncio.sleep(max(0.0, start + WARMUP_S - time.time()))
                    cpu0, t0 = proc_cpu_s(daemon.pid), time.monotonic()
                    win0 = time.time()
                    rss_max = 0.0
                    while time.time() < start + run_s:
                        rss_max = max(rss_max, proc_rss_mb(daemon.pid))
                        await asyncio.sleep(0.5)
                    cpu1, t1 = proc_cpu_s(daemon.pid), time.monotonic()
                    res.load = os.getloadavg()[0]
                    win1 = time.time()
                    outs = [json.loads((await asyncio.to_thread(p.communicate))[0]) for p in pubs]
                    await asyncio.sleep(2.5)  # the last status after the publishers ended
                    watcher.cancel()
            res.published = sum(o["sent"] for o in outs)
            res.publisher_late = max(o["late_max"] for o in outs)
            step_sent: dict[str, float] = {}
            for o in outs:
                step_sent.update(o["step_sent"])
            res.latencies = [
                alarms[r] - (step_sent[r] + STEP_DELAY_S) for r in step_sent if r in alarms
            ]
            res.delivery = [alarms[r] - raised_at[r] for r in step_sent if r in alarms]
            res.cpu_pct = 100 * (cpu1 - cpu0) / (t1 - t0)
            res.cpu_pct_room = res.cpu_pct / rooms
            res.rss_mb = rss_max
            res.msgs_in_s = rooms * MSGS_PER_ROOM_S
            window = [b for t, b in statuses if win0 <= t <= win1 + 1.0]
            res.no_status = not window
            lags = [b.get("input_lag_s", 0.0) for b in window] or [float("nan")]
            res.lag_max, res.lag_end = max(lags), lags[-1]
            last = statuses[-1][1]
            res.shed = sum(last.get("shed", {}).values())
            res.rejected = last["counters"].get("feed_rejected", 0)
            res.missing = res.published - last["counters"].get("feed_accepted", 0)
            if overloaded:
                res.overloaded_after_s = overloaded[0] - start
            res.events = dict(events.most_common())
            res.raised_loaded = dict(raised_loaded.most_common())
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(daemon.wait, 60)
            except subprocess.TimeoutExpired:
                daemon.kill()
    if res.no_status:
        res.why.append("no status from the daemon while loaded (its output stalled)")
    elif not res.lag_end <= args.max_lag or not res.lag_max <= 4 * args.max_lag:
        res.why.append(f"input lag {res.lag_end:.2f} s at the end, {res.lag_max:.2f} s max")
    if res.shed:
        res.why.append(f"{res.shed} shed")
    if res.rejected:
        res.why.append(f"{res.rejected} rejected")
    if res.missing > 0.001 * res.published:
        res.why.append(f"{res.missing} of {res.published} missing")
    if len(res.latencies) < res.steps:
        res.why.append(f"{res.steps - len(res.latencies)} of {res.steps} step alarms missing")
    elif res.p(0.99) > args.max_p99:
        res.why.append(f"alarm p99 {1000 * res.p(0.99):.0f} ms")
    if res.publisher_late > 1.0:
        res.why.append(f"publisher {res.publisher_late:.2f} s late (publisher-limited)")
    return res


def show(t: Trial) -> None:
    verdict = "ok" if t.ok else "FAIL: " + ", ".join(t.why)
    print(
        f"  N={t.rooms:4d}  in {t.msgs_in_s:7.0f} msg/s  cpu {t.cpu_pct:5.1f} % "
        f"({t.cpu_pct_room:.3f} %/room)  rss {t.rss_mb:6.1f} MB (idle {t.rss_idle_mb:.0f})  "
        f"lag {t.lag_max:5.2f} s  alarm p50 {1000 * t.p(0.5):5.0f} ms "
        f"p99 {1000 * t.p(0.99):5.0f} ms (of which delivery p99 {1000 * t.p(0.99, True):4.0f} ms)"
        f"  pub late {t.publisher_late:.2f} s  load {t.load:.1f}  {verdict}",
        flush=True,
    )


async def trial_twice(port: int, rooms: int, args: argparse.Namespace) -> Trial:
    """A trial, and once more if it failed: one stall of a shared machine is not a limit."""
    t = await trial(port, rooms, args.duration, args)
    show(t)
    if not t.ok:
        t = await trial(port, rooms, args.duration, args)
        print("  (again)", end="")
        show(t)
    return t


async def main(args: argparse.Namespace) -> None:
    broker = MosquittoBroker()
    broker.start()
    try:
        print(
            f"roommon scale bench: {MSGS_PER_ROOM_S:.2f} messages/s per room, "
            f"{args.duration:g} s per trial after {WARMUP_S:g} s warm-up, "
            f"{args.publishers} publisher processes; machine has {os.cpu_count()} cores "
            f"(shared with other sessions: figures are low and noisy)",
            flush=True,
        )
        ceiling = await broker_ceiling(broker.port, 4.0)
        print(f"broker relay ceiling (Mosquitto -> 1 raw subscriber): {ceiling:.0f} msg/s")
        if args.rooms:  # fixed N, no search (quick comparisons)
            for n in (int(x) for x in args.rooms.split(",")):
                prof = None
                if args.profile_fixed:
                    prof = Path(tempfile.mkdtemp(prefix="roommon-scale-prof-")) / "daemon.prof"
                t = await trial(broker.port, n, args.duration, args, profile=prof)
                show(t)
                if prof is not None:
                    pstats.Stats(str(prof)).sort_stats("tottime").print_stats(
                        r"^(?!.*(select.epoll|marshal|_imp\.|builtins.compile|_docscrape|importlib))",
                        args.profile,
                    )
                if t.overloaded_after_s is not None:
                    print(
                        f"    daemon.overloaded after {t.overloaded_after_s:.1f} s, shed {t.shed}, "
                        f"missing {t.missing} of {t.published}, {sum(t.events.values())} alarm "
                        f"events {t.events}; raised under load: {sum(t.raised_loaded.values())} "
                        f"{t.raised_loaded}",
                        flush=True,
                    )
            return
        results: dict[int, Trial] = {}
        n, best, worst = args.start, 0, 0
        while n <= args.max_rooms:
            t = results[n] = await trial_twice(broker.port, n, args)
            if not t.ok:
                worst = n
                break
            best = n
            n *= 2
        while worst and worst - best > max(10, best // 8):
            n = (best + worst) // 2
            t = results[n] = await trial_twice(broker.port, n, args)
            if t.ok:
                best = n
            else:
                worst = n
        if not best:
            print("no N sustained", flush=True)
            return
        b = results[best]
        small = results[min(results)]
        per_room_mb = (
            (b.rss_mb - small.rss_mb) / (best - small.rooms) if best > small.rooms else float("nan")
        )
        print(
            f"\nsustained: N = {best} rooms, {b.msgs_in_s:.0f} msg/s in, daemon CPU "
            f"{b.cpu_pct_room:.3f} % of a core per room, RSS {b.rss_mb:.0f} MB "
            f"({per_room_mb:.2f} MB per added room, N={small.rooms} -> {best}), alarm latency "
            f"after the {STEP_DELAY_S:g} s delay p50 {1000 * b.p(0.5):.0f} ms / p99 "
            f"{1000 * b.p(0.99):.0f} ms; input/broker ceiling = "
            f"{b.msgs_in_s:.0f}/{ceiling:.0f} = {b.msgs_in_s / ceiling:.2f}",
            flush=True,
        )
        print(
            f"projection: at {b.cpu_pct_room:.3f} % of a core per room (process CPU time, which "
            f"contention does not inflate much), one free core would carry about "
            f"{100 / b.cpu_pct_room:.0f} rooms; under this run's load average the daemon got "
            f"only its share of the 2 cores",
            flush=True,
        )
        if args.overload:
            o = await trial(broker.port, 2 * best, args.duration, args)
            print(
                f"overload at 2N = {2 * best}: daemon.overloaded "
                + (
                    f"after {o.overloaded_after_s:.1f} s"
                    if o.overloaded_after_s is not None
                    else "NOT raised"
                )
                + f", RSS max {o.rss_mb:.0f} MB, shed {o.shed}, missing {o.missing} of "
                f"{o.published}, lag max {o.lag_max:.1f} s, {sum(o.events.values())} alarm "
                f"events {o.events}; raised under load: {sum(o.raised_loaded.values())} "
                f"{o.raised_loaded}",
                flush=True,
            )
        if args.profile:
            prof = Path(tempfile.mkdtemp(prefix="roommon-scale-prof-")) / "daemon.prof"
            p = await trial(broker.port, best, max(args.duration, 20.0), args, profile=prof)
            print(f"\nprofile of the daemon at N = {best} (under cProfile, so slower):")
            show(p)
            stats = pstats.Stats(str(prof))
            # the daemon's work, not its wait for the next event or its start-up imports
            stats.sort_stats("tottime").print_stats(
                r"^(?!.*(select.epoll|marshal|_imp\.|builtins.compile|_docscrape|importlib))",
                args.profile,
            )
    finally:
        broker.close()


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="role")
    for role in ("publish", "blaster", "counter"):
        p = sub.add_parser(role)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--run-s", type=float, required=True)
        if role == "publish":
            p.add_argument("--first", type=int, required=True)
            p.add_argument("--last", type=int, required=True)
            p.add_argument("--t0", type=float, required=True)
            p.add_argument("--steps", default="[]")
    ap.add_argument("--duration", type=float, default=10.0, help="Seconds per trial (60: issue).")
    ap.add_argument(
        "--protocol", choices=["5", "3.1.1"], default="5", help="the daemon's MQTT version"
    )
    ap.add_argument("--start", type=int, default=25, help="First N.")
    ap.add_argument("--max-rooms", type=int, default=1600)
    ap.add_argument("--rooms", default="", help="Only trials at these N (comma-separated).")
    ap.add_argument(
        "--profile-fixed", action="store_true", help="With --rooms: profile each of them."
    )
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--max-lag", type=float, default=1.0, help="Input lag bound, seconds.")
    ap.add_argument("--max-p99", type=float, default=0.5, help="Alarm latency p99 bound, s.")
    ap.add_argument("--no-overload", dest="overload", action="store_false")
    ap.add_argument("--profile", type=int, default=25, help="Profile entries (0: no profile).")
    ap.add_argument("--daemon-log", default="", help="Append the daemons' logs to this file.")
    ap.add_argument(
        "--roommon-from",
        default="",
        help="Run the daemon from another checkout's folder holding roommon/ (a before/after "
        "comparison: e.g. `git archive main roommon | tar -x -C /tmp/before`).",
    )
    ap.add_argument(
        "--old-checkout",
        action="store_true",
        help="With --roommon-from: that checkout predates daemon.overload_lag_s (not set).",
    )
    args = ap.parse_args()
    if args.role == "publish":
        run_publisher(args)
    elif args.role == "blaster":
        run_blaster(args)
    elif args.role == "counter":
        run_counter(args)
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main(args))


if __name__ == "__main__":
    cli()
