"""P3: an emergency overlay to N simulated boards, from approval to every board showing it.

Two processes, so the boards do not share the scheduler's core (the machine has two):

- this process: a ``SourceSystem`` (in memory), the ``Scheduler`` on a ``RealClock``, the
  ``BoardTransport`` and its feed server (``feed_app``);
- a peer process (this script with ``--role peer``): the simulated board server with N board
  paths (``/b/0`` ... ``/b/N-1``, signatures checked) and, for the pull run, N ``PullBoard``
  clients each holding an event stream to the feed.

Four measurements, in this order, in the same run:

1. raw push: a bare aiohttp client (same connection pool size as the transport) POSTs a small
   JSON body to N paths of the peer (a bare handler that records the arrival time);
2. tcs push: an emergency approved for "now" reaches N push boards; latency = the time the
   board accepted the overlay - the time ``approve_broadcast`` was called;
3. raw SSE: a bare aiohttp SSE server here writes one event to N clients of the peer;
4. tcs pull: an emergency reaches N pull boards over their event streams (then their proofs of
   play close the deliveries; that time is printed too).

Run from the repository root::

    python benchmarks/bench_board.py                  # 5,000 boards
    python benchmarks/bench_board.py --boards 10000   # the stretch goal
    python benchmarks/bench_board.py --modes push     # push only (or pull)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

KEY_ENV = "BENCH_BOARD_KEY"
KEY = "khoá-đo-hiệu-năng-bảng-tin"
ALERT = "KHẨN CẤP: lũ quét, bà con di chuyển lên vùng cao ngay!"


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the peer process ----------------------------------------------------------------------------


def _first(times: dict[str, float], prefix: str) -> float | None:
    """The time of the item of one dispatch (keys start with the dispatch id in hex)."""
    return next((t for k, t in times.items() if k.startswith(prefix)), None)


async def peer_main(n: int, freeze: bool) -> None:
    """Serve N boards; run N SSE clients on request; answer commands on stdin (JSON lines)."""
    from simulated_board import Board, PullBoard, board_app

    _raise_fd_limit()
    key = KEY.encode()
    boards = [Board(i, key, nonce_capacity=64) for i in range(n)]
    app = board_app(boards)
    raw_times: list[float | None] = [None] * n

    async def raw(request: web.Request) -> web.Response:
        i = int(request.match_info["n"])
        await request.read()
        raw_times[i] = time.time()
        return web.json_response({"ok": True})

    app.router.add_post("/raw/{n}", raw)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    _quiet(freeze)
    print(json.dumps({"port": port}), flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    )
    requests = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    pullers: list[PullBoard] = []
    tasks: list[asyncio.Task[None]] = []
    raw_sse: list[float | None] = []

    async def raw_client(i: int, url: str, ready: asyncio.Event, count: list[int]) -> None:
        async with session.get(url) as resp:
            count[0] += 1
            if count[0] == n:
                ready.set()
            async for line in resp.content:
                if line.startswith(b"data:"):
                    raw_sse[i] = time.time()
                    return

    def reply(doc: Any) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        what = cmd["cmd"]
        if what == "raw_times":
            reply([t for t in raw_times])
        elif what == "push_times":  # when each board showed the item of that dispatch
            prefix = cmd["dispatch"]
            reply([_first(b.shown, prefix) for b in boards])
        elif what == "raw_sse":
            raw_sse[:] = [None] * n
            ready, count = asyncio.Event(), [0]
            for i in range(n):
                tasks.append(asyncio.create_task(raw_client(i, cmd["url"], ready, count)))
                if i % 250 == 249:
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(ready.wait(), 120)
            reply({"connected": count[0]})
        elif what == "raw_sse_times":
            reply(raw_sse)
        elif what == "subscribe":
            began = time.time()
            for i, board_id in enumerate(cmd["ids"]):
                p = PullBoard(
                    cmd["url"],
                    UUID(board_id),
                    key,
                    Board(i, key),
                    events=True,
                    report_delay_s=3.0 + (i % 1000) / 500,  # after the measurement, spread
                    session=session,
                    requests=requests,
                )
                pullers.append(p)
                tasks.append(asyncio.create_task(p.listen()))
                if i % 250 == 249:
                    await asyncio.sleep(0.05)
            for p in pullers:
                await asyncio.wait_for(p.connected.wait(), 120)
            while any(p.polls == 0 for p in pullers):  # each fetched its feed once (on hello)
                await asyncio.sleep(0.05)
            connected_s = time.time() - began
            await asyncio.sleep(1.0)  # quiet before the measurement
            _quiet(freeze)
            reply({"connected": len(pullers), "s": round(connected_s, 2)})
        elif what == "pull_times":
            prefix = cmd["dispatch"]
            reply([_first(p.overlay_received, prefix) for p in pullers])
        elif what == "wait":  # until all N arrived (checked here, so the wait costs nothing)
            began = time.time()
            while time.time() - began < cmd["limit"]:
                if cmd["what"] == "pull":
                    got = sum(
                        _first(p.overlay_received, cmd["dispatch"]) is not None for p in pullers
                    )
                else:
                    got = sum(t is not None for t in raw_sse)
                if got >= n:
                    break
                await asyncio.sleep(0.01)
            reply({"waited": time.time() - began})
        elif what == "stop_clients":
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks.clear()
            reply({"stopped": True})
        elif what == "quit":
            reply({"bye": True})
            break
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
    await requests.close()
    await runner.cleanup()


# -- the scheduler process -----------------------------------------------------------------------


def _calibrate() -> float:
    """Seconds for a fixed pure-Python loop: compare machines (and moments) by it."""
    began = time.perf_counter()
    x = 0
    for i in range(2_000_000):
        x += i
    return time.perf_counter() - began


class Peer:
    """The peer process and its command channel."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.port = 0

    @classmethod
    async def start(cls, n: int, freeze: bool) -> Peer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--role",
            "peer",
            "--boards",
            str(n),
            *([] if freeze else ["--no-gc-freeze"]),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**26,
        )
        peer = cls(proc)
        first = await peer._read()
        peer.port = int(first["port"])
        return peer

    async def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the peer process ended")
        return json.loads(line)

    async def ask(self, doc: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(doc) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._read()

    def cpu(self) -> float:
        """CPU seconds the peer process has used."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return float("nan")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ask({"cmd": "quit"}), 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 10)
        if self.proc.returncode is None:
            self.proc.kill()


def _stats(latencies: Sequence[float | None], t0: float) -> dict[str, Any]:
    got = sorted(t - t0 for t in latencies if t is not None)
    if not got:
        return {"n": 0, "missing": len(latencies)}
    q = statistics.quantiles(got, n=100, method="inclusive") if len(got) > 1 else got * 99
    return {
        "n": len(got),
        "missing": len(latencies) - len(got),
        "p50": statistics.median(got),
        "p99": q[98],
        "max": got[-1],
        "min": got[0],
    }


def _province(n: int, base: str, modes: Sequence[str]) -> tuple[Any, dict[str, list[UUID]]]:
    from tcs_core import Settings, SourceSystem

    app = SourceSystem(Settings.in_memory())
    app.bootstrap_admin("admin")
    day = date(2020, 1, 1)
    app.create_area("P", "Tỉnh Thử", "province", parent=None, effective=day, actor="admin")
    for code in modes:
        app.create_area(
            code.upper(), f"Xã {code}", "commune", parent="P", effective=day, actor="admin"
        )
    for who, role in (("op", "operator"), ("ap", "approver")):
        app.create_principal(who, grants=[(role, "P")], permissions=["emergency"], actor="admin")
    ids: dict[str, list[UUID]] = {}
    for mode in modes:
        specs = [
            {
                "name": f"Bảng {mode} {i}",
                "kind": "board",
                "area": mode.upper(),
                "transport": "board",
                "address": f"{base}/b/{i}" if mode == "push" else "pull:",
                "channels": ["board"],
                "settings": {"key": f"env:{KEY_ENV}", "mode": mode, "poll_interval_s": "300"},
            }
            for i in range(n)
        ]
        ids[mode] = app.register_devices(specs, actor="admin")
    return app, ids


async def _emergency(app: Any, area: str) -> tuple[str, float]:
    """Draft and submit an emergency for now, then approve it; the id (hex) of the dispatch it
    will make, and the time of the approval."""
    from tcs_core import (
        BoardContent,
        Category,
        Channel,
        Priority,
        ScheduleSpec,
        Targets,
        dispatch_id,
    )

    at = datetime.now(UTC)
    b = app.draft_broadcast(
        f"Cảnh báo {area}",
        category=Category.LOCAL_GOVERNMENT,
        priority=Priority.EMERGENCY,
        content={Channel.BOARD: BoardContent(ALERT)},
        targets=Targets(areas=(area,), channels=["board"]),
        schedule=ScheduleSpec.once(at, duration_s=600),
        actor="op",
    )
    app.submit_broadcast(b, "op")
    await asyncio.sleep(0.3)  # the engine sees draft and submission before the approval
    t0 = time.time()
    app.approve_broadcast(b, "ap")
    return dispatch_id(b, at).hex, t0


def _quiet(freeze: bool) -> None:
    """Before a measured phase: collect, then freeze what exists (the province, the open
    streams) so that GC passes during the burst scan only the burst's own objects. A server
    would do the same once after start-up; ``--no-gc-freeze`` shows the difference."""
    if freeze:
        gc.collect()
        gc.freeze()


def _used(cpu: tuple[float, float], peer: Peer) -> dict[str, float]:
    return {"cpu_here_s": time.process_time() - cpu[0], "cpu_peer_s": peer.cpu() - cpu[1]}


async def _until_shown(peer: Peer, what: str, limit_s: float, dispatch: str = "") -> float:
    """Wait until all N boards of the peer have the event."""
    began = time.time()
    await peer.ask({"cmd": "wait", "what": what, "limit": limit_s, "dispatch": dispatch})
    return time.time() - began


async def _transport_alone(
    app: Any, transport: Any, device_ids: Sequence[UUID], peer: Peer
) -> tuple[str, float, dict[str, float]]:
    """The same emergency through ``transport.deliver`` for every board at once, no engine:
    what the transport and the network cost by themselves."""
    from datetime import timedelta
    from uuid import uuid4

    from tcs_core import BoardContent, Channel, Preemption, Priority
    from tcs_core.transport import DeliveryContext, DeviceTarget, delivery_key

    targets = []
    for x in device_ids:
        v = app.devices.get(x)
        targets.append(
            DeviceTarget(x, v.name, v.kind, v.address, dict(v.settings), (Channel.BOARD,))
        )
    now = datetime.now(UTC)
    emergency = Priority.EMERGENCY
    context = DeliveryContext(
        uuid4(),
        uuid4(),
        now,
        emergency,
        Preemption.for_priority(emergency),
        600.0,
        now + timedelta(minutes=10),
    )
    content = BoardContent(ALERT)
    cpu = time.process_time(), peer.cpu()
    t0 = time.time()
    calls = [
        transport.deliver(t, content, delivery_key(context.dispatch_id, t.device_id), context)
        for t in targets
    ]
    done = asyncio.gather(*calls)
    if targets and targets[0].address.startswith("http"):
        await done
        used = _used(cpu, peer)
    else:  # pull: the deliveries wait for proofs of play; measure until every board has it
        await _until_shown(peer, "pull", 60, context.dispatch_id.hex)
        used = _used(cpu, peer)
        await done
    return context.dispatch_id.hex, t0, used


async def _until(predicate: Any, limit_s: float) -> float:
    began = time.time()
    while not predicate():
        if time.time() - began > limit_s:
            break
        await asyncio.sleep(0.01)
    return time.time() - began


async def bench(
    n: int, modes: Sequence[str], connections: int, freeze: bool = True
) -> dict[str, Any]:
    from tcs_core.scheduler import RealClock, Scheduler
    from transports.board import AppSettings, BoardTransport, feed_app

    _raise_fd_limit()
    os.environ[KEY_ENV] = KEY
    results: dict[str, Any] = {"boards": n, "calibration_s": _calibrate(), "gc_freeze": freeze}
    peer = await Peer.start(n, freeze)
    base = f"http://127.0.0.1:{peer.port}"
    try:
        if "push" in modes:
            # 1. raw push
            body = json.dumps({"type": "overlay", "id": "x" * 70, "text": ALERT}).encode()
            for warm_up in (True, False):  # a small untimed round first: the peer warms up
                conn = aiohttp.TCPConnector(limit=connections, limit_per_host=0)
                async with aiohttp.ClientSession(connector=conn) as s:

                    async def post(i: int) -> None:
                        async with s.post(f"{base}/raw/{i}", data=body) as r:
                            await r.read()

                    _quiet(freeze)
                    cpu = time.process_time(), peer.cpu()
                    t0 = time.time()
                    await asyncio.gather(*(post(i) for i in range(min(n, 500) if warm_up else n)))
                    client_s = time.time() - t0
                    used = _used(cpu, peer)
            results["raw_push"] = {
                **_stats(await peer.ask({"cmd": "raw_times"}), t0),
                "all_answered_s": client_s,
                **used,
            }

        setup = time.time()
        app, ids = _province(n, base, modes)
        results["setup_s"] = time.time() - setup
        transport = BoardTransport(
            settings=AppSettings(app),
            max_connections=connections,
            play_wait_s=10.0,
        )
        scheduler = Scheduler(app, [transport], RealClock())
        feed_runner: web.AppRunner | None = None
        await scheduler.start()
        try:
            if "push" in modes:
                # 2. tcs push
                _quiet(freeze)
                before = scheduler.stats.delivered + scheduler.stats.failed
                cpu = time.process_time(), peer.cpu()
                dispatch, t0 = await _emergency(app, "PUSH")
                done = await _until(
                    lambda: scheduler.stats.delivered + scheduler.stats.failed - before >= n, 120
                )
                used = _used(cpu, peer)
                times = await peer.ask({"cmd": "push_times", "dispatch": dispatch})
                results["tcs_push"] = {
                    **_stats(times, t0),
                    "outcomes_s": done,
                    "delivered": scheduler.stats.delivered - before,
                    **used,
                }
                # 2b. the transport alone, without the engine
                _quiet(freeze)
                dispatch, t0, used = await _transport_alone(app, transport, ids["push"], peer)
                times = await peer.ask({"cmd": "push_times", "dispatch": dispatch})
                results["alone_push"] = {**_stats(times, t0), **used}

            if "pull" in modes:
                # 3. raw SSE
                responses: list[web.StreamResponse] = []
                release = asyncio.Event()

                async def sse(request: web.Request) -> web.StreamResponse:
                    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                    await resp.prepare(request)
                    responses.append(resp)
                    await release.wait()
                    return resp

                raw_app = web.Application()
                raw_app.router.add_get("/sse", sse)
                raw_runner = web.AppRunner(raw_app, access_log=None, shutdown_timeout=1.0)
                await raw_runner.setup()
                raw_site = web.TCPSite(raw_runner, "127.0.0.1", 0, backlog=4096)
                await raw_site.start()
                raw_port = next(a[1] for a in raw_runner.addresses if isinstance(a, tuple))
                await peer.ask({"cmd": "raw_sse", "url": f"http://127.0.0.1:{raw_port}/sse"})
                await _until(lambda: len(responses) >= n, 60)
                event = b"event: overlay\ndata: " + json.dumps({"text": ALERT}).encode() + b"\n\n"
                _quiet(freeze)
                cpu = time.process_time(), peer.cpu()
                t0 = time.time()
                for r in responses:
                    await r.write(event)
                fan_out = time.time() - t0
                await _until_shown(peer, "raw_sse", 60)
                used = _used(cpu, peer)
                results["raw_sse"] = {
                    **_stats(await peer.ask({"cmd": "raw_sse_times"}), t0),
                    "written_s": fan_out,
                    **used,
                }
                await peer.ask({"cmd": "stop_clients"})
                release.set()
                await raw_runner.cleanup()

                # 4. tcs pull
                feed_runner = web.AppRunner(
                    feed_app(transport), access_log=None, shutdown_timeout=1.0
                )
                await feed_runner.setup()
                site = web.TCPSite(feed_runner, "127.0.0.1", 0, backlog=4096)
                await site.start()
                feed_port = next(a[1] for a in feed_runner.addresses if isinstance(a, tuple))
                connected = await peer.ask(
                    {
                        "cmd": "subscribe",
                        "url": f"http://127.0.0.1:{feed_port}",
                        "ids": [str(x) for x in ids["pull"]],
                    }
                )
                results["pull_connect_s"] = connected["s"]
                _quiet(freeze)
                before = scheduler.stats.delivered + scheduler.stats.failed
                cpu = time.process_time(), peer.cpu()
                dispatch, t0 = await _emergency(app, "PULL")
                shown = await _until_shown(peer, "pull", 60, dispatch)
                used = _used(cpu, peer)
                done = await _until(
                    lambda: scheduler.stats.delivered + scheduler.stats.failed - before >= n, 120
                )
                times = await peer.ask({"cmd": "pull_times", "dispatch": dispatch})
                results["tcs_pull"] = {
                    **_stats(times, t0),
                    "played_outcomes_s": done + shown,
                    "delivered": scheduler.stats.delivered - before,
                    **used,
                }
                # 4b. the transport alone, without the engine
                _quiet(freeze)
                dispatch, t0, used = await _transport_alone(app, transport, ids["pull"], peer)
                times = await peer.ask({"cmd": "pull_times", "dispatch": dispatch})
                results["alone_pull"] = {**_stats(times, t0), **used}
                await peer.ask({"cmd": "stop_clients"})
        finally:
            await scheduler.stop()
            if feed_runner is not None:
                await feed_runner.cleanup()
            app.close()
    finally:
        await peer.stop()
    return results


def _row(label: str, s: dict[str, Any] | None) -> str:
    if not s or not s.get("n"):
        return f"{label:<42} (no data)"
    miss = f"  ({s['missing']} missing)" if s["missing"] else ""
    return (
        f"{label:<42} {s['p50']:>6.3f} {s['p99']:>6.3f} {s['max']:>6.3f}"
        f"  {s.get('cpu_here_s', 0):>6.2f} {s.get('cpu_peer_s', 0):>6.2f}{miss}"
    )


def report(r: dict[str, Any]) -> None:
    """Print the figures."""
    n = r["boards"]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nP3: emergency overlay to {n:,} simulated boards; boards and subscribers in a second "
        f"process\nmachine: {os.cpu_count()} cores, load average {load} at the end, "
        f"calibration loop {r['calibration_s']:.3f} s (lower is faster); "
        f"gc.freeze() before each phase: {'yes' if r['gc_freeze'] else 'no'}"
    )
    print(
        f"{'seconds from start (tcs: from approval)':<42} {'p50':>6} {'p99':>6} {'max':>6}"
        f"  {'CPU s: here':>6} {'boards':>6}"
    )
    if "raw_push" in r:
        print(_row("raw push: bare aiohttp client, N paths", r["raw_push"]))
        print(_row("tcs push: approval -> board shows overlay", r["tcs_push"]))
        print(_row("  board transport alone (no engine)", r["alone_push"]))
    if "raw_sse" in r:
        print(_row("raw SSE: bare server, N clients", r["raw_sse"]))
        print(_row("tcs pull: approval -> overlay event at board", r["tcs_pull"]))
        print(_row("  board transport alone (no engine)", r["alone_pull"]))
    notes = [f"{n:,} devices per mode registered in {r['setup_s']:.1f} s"]
    if "tcs_push" in r:
        t = r["tcs_push"]
        notes.append(f"push: {t['delivered']:,} delivered outcomes after {t['outcomes_s']:.2f} s")
    if "tcs_pull" in r:
        t = r["tcs_pull"]
        notes.append(
            f"pull: {r['pull_connect_s']:.1f} s to connect {n:,} event streams; "
            f"{t['delivered']:,} deliveries closed by proof of play after "
            f"{t['played_outcomes_s']:.1f} s (boards report 3-5 s after showing)"
        )
    for note in notes:
        print(f"  {note}")
    for key, label in (("tcs_push", "push"), ("tcs_pull", "pull")):
        if key in r and r[key].get("n"):
            ok = r[key]["p99"] < 1.0 and not r[key]["missing"]
            verdict = "met" if ok else "NOT met"
            print(f"goal p99 < 1 s ({label}, {n:,} boards): {verdict}, p99 {r[key]['p99']:.3f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--boards", type=int, default=5000)
    p.add_argument("--modes", default="push,pull", help="push, pull or push,pull")
    p.add_argument("--connections", type=int, default=512, help="HTTP connection pool size")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    p.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="do not gc.freeze() after the set-up (every GC pass then scans the whole province)",
    )
    p.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "peer":
        asyncio.run(peer_main(args.boards, not args.no_gc_freeze))
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    result = asyncio.run(bench(args.boards, modes, args.connections, not args.no_gc_freeze))
    report(result)
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
