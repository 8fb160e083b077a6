"""Cluster throughput: P1 on PostgreSQL with 1, 2 and 4 worker processes, beside single-process
SQLite, in ONE run.

**P1** (as in ``bench_scheduler.py``): ``--n`` one-shot broadcasts (10,000) due in the same
second, to ``--communes`` communes with one speaker each, seeded in bulk before timing.

* **SQLite, one process** (the reference): ``bench_scheduler.p1_tcs``: a ``Scheduler`` on a
  virtual clock, timed over ``run_until(T)`` from ``T - 1 s`` (fire, save every Dispatch through
  the group-commit writer, offer the items to the lanes).
* **PostgreSQL, one process, same method** (``--skip-inprocess`` to leave out): the engine
  alone on PostgreSQL, no leases, to separate the store's cost from the cluster's.
* **PostgreSQL cluster, N workers** (``--workers 1,2,4``): a fresh schema per N, seeded, then N
  ``tcs worker`` processes (``python -m tcs_core.cli worker``) on one clock that reaches T ``--lead``
  seconds after they are launched (an ``AcceleratedClock`` at speed 1 with its start set
  back). Each worker leases its share of ``--partitions`` partitions and takes its broadcasts
  before T (checked: the run says so if a worker was not ready). The figure is
  ``n / (t_all - T)``: ``t_all`` is the wall time when the store holds all ``n``
  ``tcs.dispatch.started`` events (polled every 20 ms); so it covers firing, the fence check,
  saving, and reaching PostgreSQL, for the whole cluster.

The machine's load (``os.getloadavg``) is printed before each part: on a shared machine the
figures swing; with 2 cores, 4 workers cannot run 4 times as fast.

Needs PostgreSQL at ``--dsn`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_scheduler import P1_T, _p1_seed, p1_tcs

DSN = "postgresql://postgres@127.0.0.1:5432/test"
STARTED = "tcs.dispatch.started"


def _load() -> str:
    try:
        a, b, c = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{a:.2f} {b:.2f} {c:.2f}"


def _settings(dsn: str, schema: str) -> Any:
    from tcs_core.config import Settings

    return Settings.postgres(dsn, postgres_schema=schema, postgres_pool_size=4)


def _admin(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


def _seeded_schema(dsn: str, n: int, communes: int) -> tuple[str, float]:
    from tcs_core.app import SourceSystem

    schema = f"bench_cluster_{uuid.uuid4().hex[:10]}"
    with _admin(dsn) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    t0 = time.perf_counter()
    app = SourceSystem(_settings(dsn, schema))
    try:
        _p1_seed(app, n, communes)
    finally:
        app.close()
    return schema, time.perf_counter() - t0


def _drop(dsn: str, schema: str) -> None:
    with _admin(dsn) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _started(conn: Any, schema: str) -> int:
    row = conn.execute(
        f'SELECT count(*) FROM "{schema}".tcs_events WHERE topic = %s', [STARTED]
    ).fetchone()
    return int(row[0])


def _inprocess_pg(dsn: str, n: int, communes: int) -> dict[str, Any]:
    """bench_scheduler's P1 method, on PostgreSQL."""
    from tcs_core.app import SourceSystem
    from tcs_core.memory import MemoryTransport
    from tcs_core.scheduler import Scheduler, VirtualClock

    schema, seed_s = _seeded_schema(dsn, n, communes)
    try:
        app = SourceSystem(_settings(dsn, schema))

        async def run() -> dict[str, Any]:
            sch = Scheduler(
                app, [MemoryTransport("memory")], VirtualClock(P1_T - timedelta(seconds=1))
            )
            t0 = time.perf_counter()
            await sch.start()
            start_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await sch.run_until(P1_T)
            fire_s = time.perf_counter() - t0
            await sch.run_until(P1_T + timedelta(hours=1))
            await sch.stop()
            return {"start_s": start_s, "fire_s": fire_s, "dispatches": sch.stats.dispatches}

        out = asyncio.run(run())
        with _admin(dsn) as conn:
            out["persisted"] = _started(conn, schema)
        app.close()
    finally:
        _drop(dsn, schema)
    out["seed_s"] = seed_s
    return out


def _cluster(
    dsn: str, n: int, communes: int, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    """N worker processes; the P1 instant arrives ``lead`` seconds after launch."""
    schema, seed_s = _seeded_schema(dsn, n, communes)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "TCS_PERSISTENCE": "postgres",
        "TCS_POSTGRES_DSN": dsn,
        "TCS_POSTGRES_SCHEMA": schema,
        "TCS_POSTGRES_POOL_SIZE": "4",
    }
    epoch = time.time()
    t_fire = epoch + args.lead  # the wall instant the clocks reach P1_T
    start = P1_T - timedelta(seconds=args.lead)
    try:
        for k in range(workers):
            cmd = [
                sys.executable,
                "-m",
                "tcs_core.cli",
                "--lang",
                "en",
                "worker",
                "--partitions",
                str(args.partitions),
                "--worker-id",
                f"bench-{k}",
                "--events",
                str(tmp / f"w{k}.jsonl"),
                "--lease-ttl",
                "10",
                "--renew",
                "2",
                "--speed",
                "1",
                "--clock-start",
                start.isoformat(),
                "--clock-epoch",
                repr(epoch),
            ]
            log = open(tmp / f"w{k}.log", "wb")  # noqa: SIM115 (closed with the process)
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        # Ready = every partition rebuilt by its worker (the broadcasts taken and planned).
        ready_at = None
        with _admin(dsn) as conn:
            while time.time() < t_fire + args.timeout:
                if ready_at is None:
                    # Every worker's events, in time order: a partition handed over is dropped
                    # by one worker before the other acquires it, which file order would lose.
                    events = []
                    for k in range(workers):
                        f = tmp / f"w{k}.jsonl"
                        if f.exists():
                            events += [json.loads(x) for x in f.read_text().splitlines() if x]
                    adopted: set[int] = set()
                    last = 0.0
                    for e in sorted(events, key=lambda e: e["t"]):
                        if e["ev"] == "acquired":
                            adopted |= set(e["partitions"])
                            last = e["t"]
                        elif e["ev"] == "dropped":
                            adopted -= set(e["partitions"])
                    if len(adopted) == args.partitions:
                        ready_at = last
                if time.time() >= t_fire:
                    if _started(conn, schema) >= n:
                        done_at = time.time()
                        break
                    time.sleep(0.02)
                else:
                    time.sleep(0.1)
            else:
                raise RuntimeError(f"the cluster did not persist {n} dispatches in time ({tmp})")
            persisted = _started(conn, schema)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        _drop(dsn, schema)
    return {
        "workers": workers,
        "seed_s": seed_s,
        "ready_before_s": (t_fire - ready_at) if ready_at else None,
        "fire_s": done_at - t_fire,
        "persisted": persisted,
        "logs": str(tmp),
    }


def _rate(n: float, s: float) -> str:
    return f"{n / s:,.0f}" if s > 0 else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="P1 schedules (10,000)")
    ap.add_argument("--communes", type=int, default=5, help="communes, one speaker each")
    ap.add_argument("--workers", default="1,2,4", help="worker counts (1,2,4)")
    ap.add_argument("--partitions", type=int, default=16, help="partitions (16)")
    # Workers are ready about 10 s after launch on the 10,000-broadcast store; 60 s leaves room
    # for a loaded machine (the run says so if a partition was not ready at T).
    ap.add_argument("--lead", type=float, default=60.0, help="seconds from launch to T (60)")
    ap.add_argument("--timeout", type=float, default=300.0, help="give up after T + this")
    ap.add_argument("--dsn", default=DSN, help="PostgreSQL (database for throwaway schemas)")
    ap.add_argument("--skip-sqlite", action="store_true", help="leave out the SQLite reference")
    ap.add_argument("--skip-inprocess", action="store_true", help="leave out in-process PG")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    n = args.n
    print(f"bench_cluster.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPU(s)")
    with contextlib.suppress(Exception), _admin(args.dsn) as conn:
        print(conn.execute("SELECT version()").fetchone()[0].split(",")[0])
    print(f"\n== P1: {n:,} one-shot schedules due in the same second, {args.communes} communes ==")
    rows: list[tuple[str, ...]] = []
    if not args.skip_sqlite:
        print(f"[load {_load()}] SQLite, one process ...", flush=True)
        r = p1_tcs(n, args.communes, False)
        rows.append(
            (
                "SQLite, 1 process (reference)",
                f"{r['fire_s']:.2f}",
                _rate(n, r["fire_s"]),
                f"{r['persisted']:,}",
                "-",
            )
        )
    if not args.skip_inprocess:
        print(f"[load {_load()}] PostgreSQL, one process, no leases ...", flush=True)
        r = _inprocess_pg(args.dsn, n, args.communes)
        rows.append(
            (
                "PostgreSQL, 1 process, no cluster",
                f"{r['fire_s']:.2f}",
                _rate(n, r["fire_s"]),
                f"{r['persisted']:,}",
                "-",
            )
        )
    for w in counts:
        print(f"[load {_load()}] PostgreSQL cluster, {w} worker(s) ...", flush=True)
        r = _cluster(args.dsn, n, args.communes, w, args)
        ready = r["ready_before_s"]
        rows.append(
            (
                f"PostgreSQL cluster, {w} worker(s)",
                f"{r['fire_s']:.2f}",
                _rate(n, r["fire_s"]),
                f"{r['persisted']:,}",
                f"{ready:.1f}" if ready is not None else "NOT READY",
            )
        )
        if ready is None or ready < 0:
            print(f"  warning: not every partition was ready at T; raise --lead ({r['logs']})")
    head = ("P1", "seconds", "dispatches/s", "persisted", "ready before T (s)")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    print()
    for r_ in [head, tuple("-" * w for w in widths), *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r_, widths, strict=True))
            )
        )
    print(f"\nload after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
