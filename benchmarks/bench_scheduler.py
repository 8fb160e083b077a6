"""Scheduler throughput: tcs-core's engine next to APScheduler 4 and APScheduler 3, in ONE run.

**P1 – a burst**: ``--p1-n`` one-shot schedules due in the same second, on SQLite (a file in a
temporary directory).

* tcs-core: a ``SourceSystem`` on SQLite with one province, ``--p1-communes`` communes and one
  speaker each (``MemoryTransport("memory")``); ``--p1-n`` approved one-shot broadcasts at the same
  instant T are seeded in bulk (not timed). ``Scheduler.start()`` (which marks them all scheduled,
  one write) is timed and printed on its own; the P1 figure is the time of ``run_until(T)`` from
  ``T - 1 s``: firing, saving every Dispatch through the group-commit writer, offering the items
  to the lanes and delivering what can play now. Persisted dispatches are counted in the store
  (``tcs.dispatch.started`` notifications). The time to settle the burst (``run_until(T + 1 h)``
  and ``stop()``: outcomes and completions recorded) is printed as well.
* APScheduler 4 (4.0.0a6): ``SQLAlchemyDataStore`` on a SQLite file (aiosqlite), one
  ``DateTrigger`` schedule per job, all due at one instant, added before the scheduler starts (not
  timed); timed from ``start_in_background()`` until the trivial job has run for every schedule.
  It fires ~60/s, so the default is ``--aps4-p1-n 1000`` (the n used is printed).
* APScheduler 3: ``BackgroundScheduler`` + ``SQLAlchemyJobStore`` on a SQLite file, ``date`` jobs
  all due at one instant, inserted in one transaction while the scheduler is paused (not timed);
  timed from ``resume()`` until every job has run.

**P2 – the national day**: ``simulation.national_day(app, schedules=--p2-schedules)`` then
``simulation.run(app, workload)`` on SQLite and on POPO (``Summary.wall_s``; seeding printed, not
timed). APScheduler 4 with its memory store runs one trivial job per (occurrence, target device)
of the same seeded broadcasts (computed with ``tcs_core.schedule.occurrences`` and
``SourceSystem.resolve_targets``); it has no virtual clock, so the jobs are all due immediately
(a compressed timeline) and at most ``--p2-aps4-sample`` of them are run, the time being
extrapolated linearly to the full count (said so in the output).

The APScheduler parts run in subprocesses (APScheduler 3 and 4 share a distribution name):
``--aps4-python`` (default: this interpreter) and ``--aps3-python`` (default
``/tmp/venv-aps3/bin/python``). A missing peer prints how to install it instead of a figure.
For both peers every job is a distinct trivial function call and the task's
``max_running_jobs`` is lifted (APScheduler 4 defaults to 1 per task, which would serialise
them): the peers get their best case.

``--profile`` prints where tcs-core spends its time (cProfile of the event-loop thread and of the
group-commit writer thread) for P1 and for P2 on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

P1_GOAL = 10_000  # dispatches/s persisted on SQLite
P2_GOAL_S = 60.0  # wall seconds for the national day on SQLite
P1_T = datetime(2030, 1, 7, 1, 0, tzinfo=UTC)  # 08:00 in Vietnam, a Monday
APS3_PY = "/tmp/venv-aps3/bin/python"
APS4_INSTALL = (
    f"{sys.executable} -m pip install 'apscheduler==4.0.0a6' 'sqlalchemy[asyncio]>=2' "
    "aiosqlite sniffio"
)
APS3_INSTALL = (
    "python3 -m venv /tmp/venv-aps3 && "
    "/tmp/venv-aps3/bin/pip install 'apscheduler>=3.10,<4' 'sqlalchemy>=2'"
)
WORKER_TIMEOUT_S = 600


# ----------------------------------------------------------------------------------------------
# Peer workers: run in a subprocess with the peer's interpreter; stdlib + apscheduler only
# ----------------------------------------------------------------------------------------------

_count = 0
_target = 0
_done: Any = None  # asyncio.Event (APScheduler 4) or threading.Event (APScheduler 3)
_lock = threading.Lock()


def _job_async() -> None:
    """The trivial job for APScheduler 4 (runs on the event loop)."""
    global _count
    _count += 1
    if _count >= _target:
        _done.set()


def _job_thread() -> None:
    """The trivial job for APScheduler 3 (runs in its thread pool)."""
    global _count
    with _lock:
        _count += 1
        if _count >= _target:
            _done.set()


def _peer_version(major: str) -> str | None:
    """The installed APScheduler version if its major is ``major``, else a reason."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("apscheduler")
    except PackageNotFoundError:
        return None
    return v if v.startswith(f"{major}.") else f"wrong:{v}"


async def _aps4_run(n: int, store: str, tmp: str) -> dict[str, Any]:
    global _target, _done
    from apscheduler import AsyncScheduler, TaskDefaults
    from apscheduler.triggers.date import DateTrigger

    if store == "sqlite":
        from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore

        data_store: Any = SQLAlchemyDataStore(f"sqlite+aiosqlite:///{tmp}/aps4.sqlite")
    else:
        from apscheduler.datastores.memory import MemoryDataStore

        data_store = MemoryDataStore()
    _target, _done = n, asyncio.Event()
    defaults = TaskDefaults(max_running_jobs=None)
    async with AsyncScheduler(data_store, task_defaults=defaults, cleanup_interval=None) as s:
        due = datetime.now(UTC)
        t0 = time.perf_counter()
        for _ in range(n):
            await s.add_schedule(_job_async, DateTrigger(due), misfire_grace_time=None)
        add_s = time.perf_counter() - t0
        gc.collect()
        t0 = time.perf_counter()
        await s.start_in_background()
        await _done.wait()
        run_s = time.perf_counter() - t0
        await s.stop()
    return {"n": n, "ran": _count, "add_s": add_s, "run_s": run_s}


def _aps3_run(n: int, tmp: str) -> dict[str, Any]:
    global _target, _done
    import pickle

    from apscheduler.job import Job
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.util import datetime_to_utc_timestamp

    _target, _done = n, threading.Event()
    store = SQLAlchemyJobStore(url=f"sqlite:///{tmp}/aps3.sqlite")
    s = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    s.start(paused=True)
    due = datetime.now(UTC)
    t0 = time.perf_counter()
    # One transaction for all rows (add_job would commit, and fsync, once per job): the same
    # rows SQLAlchemyJobStore.add_job writes.
    rows = []
    for _ in range(n):
        job = Job(
            s,
            func=_job_thread,
            trigger=DateTrigger(due, timezone=UTC),
            executor="default",
            args=(),
            kwargs={},
            name="job",
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1,
            next_run_time=due,
        )
        rows.append(
            {
                "id": job.id,
                "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                "job_state": pickle.dumps(job.__getstate__(), store.pickle_protocol),
            }
        )
    with store.engine.begin() as conn:
        conn.execute(store.jobs_t.insert(), rows)
    add_s = time.perf_counter() - t0
    gc.collect()
    t0 = time.perf_counter()
    s.resume()
    finished = _done.wait(WORKER_TIMEOUT_S - 60)
    run_s = time.perf_counter() - t0
    s.shutdown(wait=False)
    return {"n": n, "ran": _count, "add_s": add_s, "run_s": run_s, "finished": finished}


def worker(kind: str, n: int) -> None:
    """Entry point of a peer subprocess: prints one JSON line."""
    import logging

    logging.disable(logging.CRITICAL)
    major = "3" if kind == "aps3-p1" else "4"
    v = _peer_version(major)
    if v is None or v.startswith("wrong:"):
        found = "none" if v is None else v.removeprefix("wrong:")
        print(json.dumps({"missing": f"apscheduler {major}.x (this interpreter has: {found})"}))
        return
    try:
        if major == "4":
            import aiosqlite  # noqa: F401  (the SQLite driver for the async engine)
            import greenlet  # noqa: F401  (SQLAlchemy's asyncio needs it)
            import sniffio  # noqa: F401  (4.0.0a6 imports it, newer anyio no longer pulls it)
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        print(json.dumps({"missing": str(exc)}))
        return
    with tempfile.TemporaryDirectory(prefix="bench-sched-peer-") as tmp:
        if kind == "aps4-p1":
            out = asyncio.run(_aps4_run(n, "sqlite", tmp))
        elif kind == "aps4-mem":
            out = asyncio.run(_aps4_run(n, "memory", tmp))
        else:
            out = _aps3_run(n, tmp)
    out["version"] = v
    print(json.dumps(out))


def run_peer(python: str, kind: str, n: int, install: str) -> dict[str, Any]:
    """Run a peer worker; never raises: a problem comes back as {"error": ...}."""
    if not Path(python).exists():
        return {"error": f"not installed: no interpreter {python}; {install}"}
    cmd = [python, os.path.abspath(__file__), "--_worker", kind, "--_n", str(n)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s (n={n}); try a smaller n"}
    except OSError as exc:
        return {"error": f"could not run {python}: {exc}"}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if "ModuleNotFoundError" in tail or "ImportError" in tail:
            return {"error": f"not installed: {tail}; {install}"}
        return {"error": f"failed (exit {proc.returncode}): {tail}"}
    out: dict[str, Any] = json.loads(lines[-1])
    if "missing" in out:
        return {"error": f"not installed: {out['missing']}; {install}"}
    if out.get("ran", 0) < out.get("n", 0):
        out["error"] = f"only {out['ran']} of {out['n']} jobs ran"
    return out


# ----------------------------------------------------------------------------------------------
# Profiling the tcs-core side (event loop thread + group-commit writer thread)
# ----------------------------------------------------------------------------------------------


class Profiler:
    """cProfile of this thread and of the GroupCommitWriter threads, only inside ``with``.

    The writer is profiled per committed batch (its ``_commit``), so that work queued before the
    ``with`` block (e.g. by ``start()``) is left out."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.main = cProfile.Profile()
        self.writer = cProfile.Profile()
        self.active = False
        self._orig: Any = None
        if enabled:
            from tcs_core.scheduler.writer import GroupCommitWriter

            orig = self._orig = GroupCommitWriter._commit
            me = self

            def _commit(writer: Any, batch: Any) -> None:
                if not me.active:
                    orig(writer, batch)
                    return
                me.writer.enable()
                try:
                    orig(writer, batch)
                finally:
                    me.writer.disable()

            GroupCommitWriter._commit = _commit  # type: ignore[method-assign]

    def __enter__(self) -> Profiler:
        if self.enabled:
            self.active = True
            self.main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.main.disable()
            self.active = False

    def close(self) -> None:
        if self.enabled and self._orig is not None:
            from tcs_core.scheduler.writer import GroupCommitWriter

            GroupCommitWriter._commit = self._orig  # type: ignore[method-assign]
            self._orig = None

    def report(self, title: str, top: int = 25) -> None:
        self.close()
        if not self.enabled:
            return
        for name, prof in (("event-loop thread", self.main), ("writer thread", self.writer)):
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf)
            if not stats.stats:  # type: ignore[attr-defined]
                continue
            stats.sort_stats("tottime").print_stats(top)
            print(f"\n--- profile {title}: {name}, by own time ---")
            print(_trim(buf.getvalue()))
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
            print(f"--- profile {title}: {name}, by cumulative time ---")
            print(_trim(buf.getvalue()))


def _trim(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, x in enumerate(lines) if "ncalls" in x), 0)
    return "\n".join(lines[start:])


# ----------------------------------------------------------------------------------------------
# tcs-core, P1
# ----------------------------------------------------------------------------------------------


def _p1_seed(app: Any, n: int, communes: int) -> None:
    from tcs_core.domain.broadcast import Broadcast
    from tcs_core.domain.values import (
        Category,
        Channel,
        Preemption,
        Priority,
        ScheduleSpec,
        SpeechContent,
        Targets,
    )

    eff = date(2025, 7, 1)
    app.bootstrap_admin("admin")
    app.create_area("79", "Hồ Chí Minh", "province", parent=None, effective=eff, actor="admin")
    codes = [f"79{i + 1:03d}" for i in range(communes)]
    for i, code in enumerate(codes):
        app.create_area(code, f"Xã {i + 1}", "commune", parent="79", effective=eff, actor="admin")
    app.create_principal("p1.operator", grants=[("operator", "79")], actor="admin")
    app.create_principal("p1.approver", grants=[("approver", "79")], actor="admin")
    app.register_devices(
        [
            {
                "name": f"Loa {code}",
                "kind": "ip_speaker",
                "area": code,
                "transport": "memory",
                "address": f"mem:{code}",
                "channels": ["audio"],
            }
            for code in codes
        ],
        actor="admin",
    )
    area_ids = [app.area(code, P1_T).area_id for code in codes]
    spec = ScheduleSpec.once(P1_T, duration_s=300)
    new = []
    for i in range(n):
        k = i % communes
        b = Broadcast(
            title=f"Thông báo số {i + 1}",
            category=Category.LOCAL_GOVERNMENT,
            priority=Priority.NORMAL,
            content={Channel.AUDIO: SpeechContent(f"Thông báo số {i + 1}")},
            targets=Targets(areas=[codes[k]], channels=[Channel.AUDIO]),
            target_area_ids=[area_ids[k]],
            schedule=spec,
            preemption=Preemption.for_priority(Priority.NORMAL),
            actor="p1.operator",
        )
        b.submit("p1.operator")
        b.approve("p1.approver")
        new.append(b)
    app.save_in_batches(new, 2000)


def _count_topic(app: Any, topic: str) -> int:
    n, start = 0, 1
    while True:
        batch = app.recorder.select_notifications(start, 5000, topics=[topic])
        if not batch:
            return n
        n += len(batch)
        start = batch[-1].id + 1


async def _p1_tcs_async(app: Any, prof: Profiler) -> dict[str, Any]:
    from tcs_core.memory import MemoryTransport
    from tcs_core.scheduler import Scheduler, VirtualClock

    transport = MemoryTransport("memory")
    sch = Scheduler(app, [transport], VirtualClock(P1_T - timedelta(seconds=1)))
    gc.collect()
    t0 = time.perf_counter()
    await sch.start()
    start_s = time.perf_counter() - t0
    gc.collect()
    with prof:
        t0 = time.perf_counter()
        await sch.run_until(P1_T)
        fire_s = time.perf_counter() - t0
    persisted = _count_topic(app, "tcs.dispatch.started")
    assert sch.writer is not None
    tx_fire = sch.writer.transactions
    t0 = time.perf_counter()
    await sch.run_until(P1_T + timedelta(hours=1))
    await sch.stop()
    settle_s = time.perf_counter() - t0
    s = sch.stats
    return {
        "start_s": start_s,
        "fire_s": fire_s,
        "persisted": persisted,
        "dispatches": s.dispatches,
        "tx_fire": tx_fire,
        "settle_s": settle_s,
        "delivered": s.delivered,
        "failed": s.failed,
        "completed": _count_topic(app, "tcs.dispatch.completed"),
        "transactions": sch.writer.transactions,
        "events": sch.writer.events_written,
    }


def p1_tcs(n: int, communes: int, profile: bool) -> dict[str, Any]:
    from tcs_core.app import SourceSystem
    from tcs_core.config import Settings

    with tempfile.TemporaryDirectory(prefix="bench-sched-p1-") as tmp:
        app = SourceSystem(Settings.sqlite(os.path.join(tmp, "p1.sqlite")))
        t0 = time.perf_counter()
        _p1_seed(app, n, communes)
        seed_s = time.perf_counter() - t0
        prof = Profiler(profile)
        out = asyncio.run(_p1_tcs_async(app, prof))
        out["seed_s"] = seed_s
        out["n"] = n
        prof.report("P1 tcs-core run_until(T)")
        app.close()
    return out


# ----------------------------------------------------------------------------------------------
# tcs-core, P2
# ----------------------------------------------------------------------------------------------


def device_occurrences(app: Any, start: datetime, end: datetime) -> Counter[datetime]:
    """(instant → number of target devices) over [start, end) for every live broadcast."""
    from tcs_core.schedule import occurrences

    per_instant: Counter[datetime] = Counter()
    for view in app.broadcasts.live():
        f = view.fields
        for occ in occurrences(f["schedule"], start, end):
            devices, _ = app.resolve_targets(f["targets"], f["target_area_ids"], occ)
            per_instant[occ] += len(devices)
    return per_instant


def p2_tcs(store: str, schedules: int, profile: bool, count: bool) -> dict[str, Any]:
    from tcs_core import simulation
    from tcs_core.app import SourceSystem
    from tcs_core.config import Settings

    with tempfile.TemporaryDirectory(prefix="bench-sched-p2-") as tmp:
        settings = (
            Settings.sqlite(os.path.join(tmp, "p2.sqlite"))
            if store == "sqlite"
            else Settings.in_memory()
        )
        app = SourceSystem(settings)
        t0 = time.perf_counter()
        workload = simulation.national_day(app, schedules=schedules)
        seed_s = time.perf_counter() - t0
        out: dict[str, Any] = {
            "seed_s": seed_s,
            "broadcasts": workload.broadcasts,
            "devices": workload.devices,
        }
        if count:
            t0 = time.perf_counter()
            per_instant = device_occurrences(app, workload.start, workload.end)
            out["device_occurrences"] = sum(per_instant.values())
            out["instants"] = len(per_instant)
            out["largest_burst"] = max(per_instant.values(), default=0)
            out["count_s"] = time.perf_counter() - t0
        gc.collect()
        prof = Profiler(profile)
        with prof:
            summary, _, _ = asyncio.run(simulation.run(app, workload))
        prof.report(f"P2 tcs-core national day ({store})")
        out.update(summary.as_dict())
        app.close()
    return out


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _load() -> str:
    try:
        a, b, c = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{a:.2f} {b:.2f} {c:.2f}"


def _rate(n: float, s: float) -> str:
    return f"{n / s:,.0f}" if s > 0 else "-"


def _table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
    )
    print(fmt(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r))


def _peer_row(name: str, res: dict[str, Any] | None, what: str) -> tuple[str, ...]:
    if res is None:
        return (name, "-", "-", "skipped (--skip-peers)", "-")
    if "error" in res and "run_s" not in res:
        short = "not installed" if res["error"].startswith("not installed") else "failed"
        return (name, "-", "-", f"{short} (see below)", "-")
    return (
        f"APScheduler {res.get('version', '')}".strip(),
        f"{res['n']:,}",
        f"{res['run_s']:.2f}",
        _rate(res["ran"], res["run_s"])
        + f" {what}"
        + (f" ({res['error']})" if "error" in res else ""),
        "-",
    )


def _ratio(tcs_rate: float, res: dict[str, Any] | None) -> str:
    if not res or "run_s" not in res or res["run_s"] <= 0 or not res.get("ran"):
        return "n/a"
    r = tcs_rate / (res["ran"] / res["run_s"])
    return f"{r:.2f}x" if r < 10 else f"{r:,.0f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p1-n", type=int, default=10_000, help="tcs-core P1 schedules (10,000)")
    ap.add_argument("--p1-communes", type=int, default=5, help="communes (one speaker each)")
    ap.add_argument(
        "--aps4-p1-n",
        type=int,
        default=1_000,
        help="APScheduler 4 P1 schedules (1,000: it fires ~60/s on SQLite)",
    )
    ap.add_argument("--aps3-p1-n", type=int, default=None, help="APScheduler 3 P1 jobs (--p1-n)")
    ap.add_argument("--p2-schedules", type=int, default=10_000, help="national-day schedules")
    ap.add_argument(
        "--p2-aps4-sample",
        type=int,
        default=20_000,
        help="at most this many APScheduler 4 jobs are run; the rest extrapolated",
    )
    ap.add_argument("--skip-p2", action="store_true", help="only P1")
    ap.add_argument("--skip-peers", action="store_true", help="tcs-core only")
    ap.add_argument("--aps4-python", default=sys.executable, help="interpreter with APScheduler 4")
    ap.add_argument("--aps3-python", default=APS3_PY, help="interpreter with APScheduler 3")
    ap.add_argument("--profile", action="store_true", help="cProfile the tcs-core runs")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        worker(args._worker, args._n)
        return 0

    from importlib.metadata import version

    t_all = time.perf_counter()
    print(f"bench_scheduler.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPU(s)")
    print(f"tcs-core {version('tcs-core')}, eventsourcing {version('eventsourcing')}")
    print(f"load average at start (1/5/15 min): {_load()}")

    # ---- P1 ----------------------------------------------------------------------------------
    n = args.p1_n
    print(f"\n== P1: {n:,} schedules due in the same second, SQLite file ==")
    tcs = p1_tcs(n, args.p1_communes, args.profile)
    aps4 = aps3 = None
    if not args.skip_peers:
        aps4 = run_peer(args.aps4_python, "aps4-p1", args.aps4_p1_n, APS4_INSTALL)
        aps3 = run_peer(args.aps3_python, "aps3-p1", args.aps3_p1_n or n, APS3_INSTALL)
    tcs_rate = tcs["persisted"] / tcs["fire_s"] if tcs["fire_s"] > 0 else 0.0
    _table(
        [
            (
                "tcs-core run_until(T)",
                f"{n:,}",
                f"{tcs['fire_s']:.2f}",
                f"{tcs_rate:,.0f} dispatches/s persisted",
                f"{tcs['persisted']:,}",
            ),
            _peer_row("APScheduler 4", aps4, "fires/s (SQLAlchemyDataStore)"),
            _peer_row("APScheduler 3", aps3, "fires/s (SQLAlchemyJobStore)"),
        ],
        ("P1 (SQLite)", "n", "seconds", "rate", "persisted"),
    )
    print(
        f"tcs-core: seeding {tcs['seed_s']:.1f} s (not timed); start() {tcs['start_s']:.2f} s "
        f"(marks the {n:,} approved broadcasts scheduled); {tcs['tx_fire']} writer "
        f"transactions up to T; settling to T+1h + stop() {tcs['settle_s']:.2f} s "
        f"({tcs['delivered']:,} delivered, {tcs['failed']:,} failed: {args.p1_communes} "
        f"speakers play one item at a time; {tcs['completed']:,} dispatches completed)"
    )
    for name, res in (("APScheduler 4", aps4), ("APScheduler 3", aps3)):
        if res and "error" in res:
            print(f"{name}: {res['error']}")
        if res and "add_s" in res:
            print(
                f"{name}: n = {res['n']:,}; adding the schedules took {res['add_s']:.1f} s "
                "(not timed)"
            )
    print(f"ratio tcs/APS4: {_ratio(tcs_rate, aps4)}   ratio tcs/APS3: {_ratio(tcs_rate, aps3)}")
    verdict = "MET" if tcs_rate >= P1_GOAL and tcs["persisted"] == n else "MISSED"
    print(f"goal P1 >= {P1_GOAL:,} dispatches/s persisted on SQLite: {verdict}")

    # ---- P2 ----------------------------------------------------------------------------------
    if not args.skip_p2:
        k = args.p2_schedules
        print(f"\n== P2: the national day, {k:,} schedules, virtual clock over 24 h ==")
        sq = p2_tcs("sqlite", k, args.profile, count=not args.skip_peers)
        po = p2_tcs("popo", k, False, count=False)
        mem = None
        big_n = sq.get("device_occurrences", 0)
        if not args.skip_peers and big_n:
            sample = min(big_n, args.p2_aps4_sample)
            mem = run_peer(args.aps4_python, "aps4-mem", sample, APS4_INSTALL)
        rows = [
            (
                f"tcs-core {s} store",
                f"{r['seed_s']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['dispatches']:,}",
                f"{r['deliveries']:,}",
                f"{r['events_written']:,}",
            )
            for s, r in (("SQLite", sq), ("POPO", po))
        ]
        if args.skip_peers:
            rows.append(("APScheduler 4 memory", "-", "-", "-", "skipped (--skip-peers)", "-"))
        elif mem is None or "run_s" not in mem:
            rows.append(("APScheduler 4 memory", "-", "-", "-", "(see below)", "-"))
        else:
            est = mem["run_s"] * big_n / mem["ran"]
            mark = "" if mem["n"] >= big_n else " (extrap.)"
            rows.append(
                (
                    f"APScheduler {mem['version']} memory",
                    "-",
                    f"{est:.1f}{mark}",
                    "-",
                    f"{big_n:,} jobs",
                    "-",
                )
            )
        _table(rows, ("P2", "seed s", "wall s", "dispatches", "deliveries", "events"))
        print(
            f"tcs-core: {sq['broadcasts']:,} broadcasts over {sq['devices']:,} devices; "
            f"SQLite {sq['transactions']:,} writer transactions, POPO {po['transactions']:,}"
        )
        if "device_occurrences" in sq:
            print(
                f"same day for APScheduler 4: {big_n:,} (occurrence, device) jobs at "
                f"{sq['instants']:,} instants, largest burst {sq['largest_burst']:,} "
                f"(counted in {sq['count_s']:.1f} s)"
            )
        if not args.skip_peers and (mem is None or "run_s" not in mem):
            print(f"APScheduler 4: {mem['error'] if mem else 'no device-occurrences counted'}")
        if mem and "run_s" in mem:
            est = mem["run_s"] * big_n / mem["ran"]
            how = (
                f"EXTRAPOLATED linearly from {mem['ran']:,} jobs run in {mem['run_s']:.2f} s"
                if mem["n"] < big_n
                else f"all {big_n:,} jobs run"
            )
            print(
                f"APScheduler 4 memory store, all due at once, trivial jobs: {how} "
                f"({_rate(mem['ran'], mem['run_s'])} jobs/s; adding them {mem['add_s']:.1f} s, "
                "not timed)"
            )
            print(
                f"ratio APS4 memory / tcs-core SQLite wall: {est / sq['wall_s']:.2f}x;  "
                f"APS4 memory / tcs-core POPO: {est / po['wall_s']:.2f}x"
            )
        verdict = "MET" if sq["wall_s"] < P2_GOAL_S else "MISSED"
        print(f"goal P2 < {P2_GOAL_S:.0f} s wall on SQLite: {verdict} ({sq['wall_s']:.1f} s)")

    print(f"\nload average at end (1/5/15 min): {_load()}")
    print(f"whole run: {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
