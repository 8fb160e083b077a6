"""P4: concurrent unicast G.711 streams from one process: how late the 20 ms frame clock ticks.

Three measurements, in this order, in the same run and process:

1. raw UDP send rate: a tight loop of ``socket.sendto`` of one 172-byte RTP-sized packet for
   ``--raw-seconds`` (the ceiling: packets/s, and the streams that rate would carry at 50 pkt/s);
2. bare frame clock, for each N: an asyncio loop ticking every 20 ms that sends N prebuilt
   packets per tick and nothing else (no RTP state, no SIP);
3. SipTransport, for each N: N simulated speakers (examples/simulated_speaker.py, in a child
   process, idle while measured) each answer a real SIP call (INVITE / 200 / ACK through the
   transport's UDP socket, dialogs, call records, idempotency keys), then N RTP streams run on
   the transport's single frame clock: seq, timestamp, SSRC, marker, the item's pre-encoded
   PCMU sliced per tick.

Every RTP packet goes to one UDP socket on 127.0.0.1 that nobody reads (the speakers' SDP
answers point there), so receiving costs this process nothing; the kernel drops what does not
fit. For 2 and 3: tick lateness (actual tick start - scheduled start) p50 / p99 / max over
``--seconds`` once all N streams are up, CPU (process time / wall time over the window), ticks
skipped, and packets/s actually sent; for 3 also the CPU time of one tick's work (p50: the
headroom left in each 20 ms on a core of one's own).

Run from the repository root (takes about 2 minutes)::

    python benchmarks/bench_sip.py
    python benchmarks/bench_sip.py --streams 1000 3000 --seconds 10
    python benchmarks/bench_sip.py --pin 0          # pin the process to CPU 0 ("one core")
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import hashlib
import io
import math
import os
import socket
import statistics
import struct
import sys
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]

from tcs_core.domain.values import AudioContent, Channel, DeviceKind  # noqa: E402
from tcs_core.testing.conformance import make_context  # noqa: E402
from tcs_core.transport import DeviceTarget, Limits  # noqa: E402
from transports.sip import SipTransport  # noqa: E402

TICK = 0.020
PACKET = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1234) + b"\xff" * 160


@dataclass
class Row:
    what: str
    streams: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu: float
    skipped: int
    pps: float
    note: str = ""


def black_hole() -> socket.socket:
    """A UDP socket that is never read (the kernel drops what its small buffer cannot hold)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("127.0.0.1", 0))
    return s


def raw_send_rate(dest: tuple[str, int], seconds: float) -> float:
    """Packets/s of a bare sendto loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sendto = sock.sendto
    n = 0
    end = time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < end:
        for _ in range(1000):
            sendto(PACKET, dest)
        n += 1000
    rate = n / (time.perf_counter() - began)
    sock.close()
    return rate


def percentiles(lateness: Sequence[float]) -> tuple[float, float, float]:
    data = sorted(lateness)
    if not data:
        return 0.0, 0.0, 0.0
    p99 = data[min(len(data) - 1, int(0.99 * len(data)))]
    return statistics.median(data) * 1000, p99 * 1000, data[-1] * 1000


async def bare_clock(n: int, dest: tuple[str, int], seconds: float) -> Row:
    """A frame clock that only sends n packets per tick."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sendto = sock.sendto
    lateness: list[float] = []
    skipped = sent = 0
    next_at = loop.time() + TICK
    end = next_at + seconds
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while next_at < end:
        delay = next_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = loop.time() - next_at
        if late > 2 * TICK:
            skip = int(late / TICK)
            skipped += skip
            next_at += skip * TICK
        lateness.append(late)
        for _ in range(n):
            try:
                sendto(PACKET, dest)
                sent += 1
            except BlockingIOError:
                pass
        next_at += TICK
    wall = time.perf_counter() - wall0
    cpu = (time.process_time() - cpu0) / wall
    sock.close()
    p50, p99, mx = percentiles(lateness)
    return Row("bare frame clock", n, p50, p99, mx, cpu, skipped, sent / wall)


def tone(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / 8000)))
                for i in range(8000)
            )
            * int(seconds)
        )
    return buf.getvalue()


async def start_peer(n: int, sink_port: int) -> tuple[asyncio.subprocess.Process, list[str]]:
    """N simulated speakers in a child process (so answering calls does not share our core);
    their SDP answers point at ``sink_port``. Returns the process and the speakers' addresses."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "simulated_speaker.py"),
        "--count",
        str(n),
        "--media-port",
        str(sink_port),
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    addresses = []
    while len(addresses) < n:
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError("the speaker process ended before starting every speaker")
        addresses.append(line.decode().strip())
    return proc, addresses


async def stop_peer(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10):
            # drain what it prints when it stops, so it is not blocked on a full pipe
            assert proc.stdout is not None
            await proc.stdout.read()
            await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def full_transport(n: int, sink_port: int, seconds: float) -> Row:
    """N real SIP calls to simulated speakers, then N streams on the transport's clock."""
    wav = tone(600)  # longer than any set-up plus window: every stream stays up while measured
    content = AudioContent("bench://tone.wav", hashlib.sha256(wav).hexdigest(), 600)

    async def media(_: AudioContent) -> bytes:
        return wav

    proc, addresses = await start_peer(n, sink_port)
    transport = SipTransport(
        local_host="127.0.0.1",
        media=media,
        limits=Limits(concurrency=20_000, timeout_s=60.0),
        answer_timeout_s=50.0,
    )
    await transport.open()
    try:
        devices = [
            DeviceTarget(UUID(int=i + 1), f"Loa {i}", DeviceKind.IP_SPEAKER, a, {},
                         (Channel.AUDIO,))
            for i, a in enumerate(addresses)
        ]  # fmt: skip
        began = time.perf_counter()
        outcomes = await asyncio.gather(
            *(transport.deliver(d, content, f"bench.{i}", make_context(duration_s=600)) for i, d in
              enumerate(devices))
        )  # fmt: skip
        ok = sum(o.status.value == "delivered" for o in outcomes)
        why = collections.Counter(
            o.reason.split(":")[0][-60:] for o in outcomes if o.status.value != "delivered"
        )
        setup = time.perf_counter() - began
        await asyncio.sleep(0.5)  # let the last streams start
        stats = transport.clock_stats
        stats.lateness.clear()
        stats.tick_cpu.clear()
        stats.keep_lateness = True
        skipped0, packets0 = stats.skipped_ticks, stats.packets
        pauses: list[float] = []
        began_gc = [0.0]

        def gc_watch(phase: str, info: dict[str, int]) -> None:
            if info.get("generation") != 2:
                return
            if phase == "start":
                began_gc[0] = time.perf_counter()
            else:
                pauses.append(time.perf_counter() - began_gc[0])

        gc.callbacks.append(gc_watch)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - wall0
        gc.callbacks.remove(gc_watch)
        cpu = (time.process_time() - cpu0) / wall
        stats.keep_lateness = False
        active = len(transport.clock.streams)
        p50, p99, mx = percentiles(stats.lateness)
        retrans = transport.endpoint.retransmissions if transport.endpoint else 0
        note = f"{ok}/{n} calls up in {setup:.1f} s ({retrans} retransmissions)"
        if why:
            note += f" (not up: {why.most_common(2)})"
        note += (
            f", {active} streams active, {stats.dropped} dropped, {len(pauses)} full GCs"
            + (f" (longest {max(pauses) * 1000:.0f} ms)" if pauses else "")
            + f", tick CPU p50 {statistics.median(stats.tick_cpu or [0]) * 1000:.1f} ms"
        )
        return Row(
            "SipTransport",
            n,
            p50,
            p99,
            mx,
            cpu,
            stats.skipped_ticks - skipped0,
            (stats.packets - packets0) / wall,
            note,
        )
    finally:
        await transport.close()
        await stop_peer(proc)


async def main(args: argparse.Namespace) -> None:
    hole = black_hole()
    dest = ("127.0.0.1", hole.getsockname()[1])
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    rate = raw_send_rate(dest, args.raw_seconds)
    print(f"raw UDP sendto: {rate:,.0f} packets/s = {rate / 50:,.0f} streams at 50 packets/s")
    rows: list[Row] = []
    for n in args.streams:
        gc.collect()
        rows.append(await bare_clock(n, dest, args.seconds))
        print(_fmt(rows[-1]), flush=True)
        gc.collect()
        rows.append(await full_transport(n, dest[1], args.seconds))
        print(_fmt(rows[-1]), flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")
    hole.close()
    goal = [r for r in rows if r.what == "SipTransport" and r.p99_ms < 5.0]
    best = max((r.streams for r in goal), default=0)
    print(f"goal: >= 3000 streams with p99 < 5 ms -> largest N meeting it here: {best}")


def _fmt(r: Row) -> str:
    return (
        f"{r.what:17} N={r.streams:5}  lateness p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
        f"max {r.max_ms:7.2f} ms  CPU {r.cpu * 100:5.1f} %  skipped ticks {r.skipped:4}  "
        f"{r.pps:9,.0f} pkt/s  {r.note}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 2000, 3000, 4000])
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring window per run")
    parser.add_argument("--raw-seconds", type=float, default=2.0)
    parser.add_argument("--pin", type=int, default=None, help="pin the process to this CPU")
    a = parser.parse_args()
    if a.pin is not None:
        os.sched_setaffinity(0, {a.pin})
    asyncio.run(main(a))
