"""Outcome-recording and dispatch-start throughput: the tcs-core domain path vs raw eventsourcing.

For each store (a SQLite file in a temporary directory, POPO in memory) and in ONE run, this
measures

* the **domain path**: a ``SourceSystem`` with a minimal setup made through the public API
  (bootstrap admin, one area, one approver, one approved broadcast), ``--dispatches`` Dispatches
  over ``--devices`` devices each, outcomes recorded ``--batch`` at a time with
  ``Dispatch.record_outcomes([DeliveryOutcome, ...], SYSTEM)`` + ``app.save(dispatch)``; the
  ``DeliveryOutcome`` values are constructed inside the timed loop, as an engine would;
* the **raw path**: a plain ``eventsourcing.domain.Aggregate`` with one event carrying the same
  batch of ``[device_hex, status, iso_time, reason]`` rows (built inside the timed loop from the
  same device UUIDs and timestamps, time formatted per row as the domain does), saved by a plain
  ``eventsourcing.application.Application`` on the same kind of store (its own SQLite file);

and, as a second table, the dispatch-start rate (``--start-devices`` devices per Dispatch,
``--start-batch`` Dispatches per ``save()``): domain (``SourceSystem.new_dispatch`` +
``save_in_batches``) vs raw (plain aggregate carrying the device ids, same batching).

Domain and raw rounds are interleaved (domain, raw, raw, domain, ...) so both paths see the same
machine. Each timed section reads two clocks: wall time (what the rates are) and this process's
CPU time, whose domain/raw ratio does not move when other processes take the CPU (on a busy
2-core machine the wall-time ratio can swing by tens of percent between runs; the CPU ratio
stays within a few). Best and median over the rounds are reported for both.

``--profile`` adds where the time goes: microseconds of CPU per outcome in each phase (building
the DeliveryOutcome values, ``Dispatch.record_outcomes``, ``app.save``) against the raw path's
phases, then a cProfile (or ``--profiler pyinstrument``) listing of one domain round.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from tcs_core.app import SYSTEM, SourceSystem
from tcs_core.config import Settings
from tcs_core.domain.broadcast import Broadcast
from tcs_core.domain.values import (
    DeliveryOutcome,
    OutcomeStatus,
    ScheduleSpec,
    SpeechContent,
    Targets,
)

# The same outcome mix on both paths: 90 % delivered, 5 % failed, 5 % retryable.
MIX: tuple[tuple[OutcomeStatus, str], ...] = (
    (OutcomeStatus.FAILED, "timeout"),
    (OutcomeStatus.RETRYABLE, "device busy"),
    *((OutcomeStatus.DELIVERED, "") for _ in range(18)),
)
# Plain-string twin of MIX for the raw path (the raw path never touches tcs-core types).
RAW_MIX: tuple[tuple[str, str], ...] = tuple((s.value, r) for s, r in MIX)

AREA = "79"
FIRST_OCCURRENCE = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------------------------
# The raw baseline: plain eventsourcing, same payload shape
# ----------------------------------------------------------------------------------------------


class RawDispatch(Aggregate):
    """A plain aggregate with the same created payload and one batched outcomes event."""

    @event("Started")
    def __init__(self, device_ids: list[str], actor: str) -> None:
        self.device_ids = device_ids
        self.outcomes: dict[str, tuple[str, str, str]] = {}

    @event("OutcomesRecorded")
    def record_outcomes(self, rows: list[list[str]], actor: str) -> None:
        # The same state update as Dispatch._outcomes_recorded: keeping state is not overhead.
        outcomes = self.outcomes
        for key, status, at, reason in rows:
            outcomes[key] = (status, at, reason)


class RawApp(Application[UUID]):
    """A plain eventsourcing application (no projections, no snapshots)."""

    name = "raw"


# ----------------------------------------------------------------------------------------------
# Stores and apps
# ----------------------------------------------------------------------------------------------


def _settings(store: str, tmp: str, label: str) -> Settings:
    if store == "sqlite":
        return Settings.sqlite(os.path.join(tmp, f"{label}-{uuid.uuid4().hex[:8]}.sqlite"))
    return Settings.in_memory()


def make_domain_app(store: str, tmp: str) -> tuple[SourceSystem, Broadcast]:
    """A SourceSystem with one admin, one approver, one area and one approved broadcast."""
    app = SourceSystem(_settings(store, tmp, "domain"))
    app.bootstrap_admin("admin")
    app.create_area(AREA, "Hồ Chí Minh", "province", parent=None, effective=date(2025, 7, 1),
                    actor="admin")
    app.create_principal("approver", grants=[("approver", AREA)], actor="admin")
    bid = app.draft_broadcast(
        "Bản tin",
        category="other",
        content={"audio": SpeechContent("Xin chào bà con")},
        targets=Targets([AREA], ["audio"]),
        schedule=ScheduleSpec.recurring("0 * * * *"),
        actor="admin",
    )
    app.submit_broadcast(bid, "admin")
    app.approve_broadcast(bid, "approver")
    return app, app.broadcast(bid)


def make_raw_app(store: str, tmp: str) -> RawApp:
    """A plain Application on the same kind of store (its own SQLite file)."""
    return RawApp(env=_settings(store, tmp, "raw").eventsourcing_env())


# ----------------------------------------------------------------------------------------------
# Timed work
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    devices: int
    batch: int
    dispatches: int
    start_dispatches: int
    start_devices: int
    start_batch: int


@dataclass(frozen=True)
class Timing:
    """One timed section: wall and CPU seconds, items (outcomes or dispatches) and events."""

    wall: float
    cpu: float
    items: int
    events: int


class Clock:
    """Wall and process-CPU time read together."""

    def __init__(self) -> None:
        gc.collect()  # start each section with the same (empty) garbage
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self, items: int, events: int) -> Timing:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return Timing(wall, max(cpu, 1e-9), items, events)


def _chunks(seq: list[UUID], size: int) -> Iterator[list[UUID]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _device_sets(sz: Sizes) -> list[list[UUID]]:
    return [[uuid.uuid4() for _ in range(sz.start_devices)] for _ in range(sz.start_dispatches)]


class Occurrences:
    """Distinct occurrences (so distinct dispatch ids) across every round of a domain app."""

    def __init__(self) -> None:
        self._n = itertools.count()

    def next(self) -> datetime:
        return FIRST_OCCURRENCE + timedelta(minutes=next(self._n))


def domain_outcomes(
    app: SourceSystem, broadcast: Broadcast, occ: Occurrences, devices: list[UUID], sz: Sizes
) -> Timing:
    """Record every device's outcome in ``sz.dispatches`` new dispatches, ``sz.batch`` a time."""
    dispatches = [app.new_dispatch(broadcast, occ.next(), devices) for _ in range(sz.dispatches)]
    app.save(*dispatches)  # setup, not timed
    mix, n_mix = MIX, len(MIX)
    outcomes = events = 0
    clock = Clock()
    for d in dispatches:
        for chunk in _chunks(devices, sz.batch):
            at = datetime.now(UTC)
            batch = []
            for i, dev in enumerate(chunk):
                status, reason = mix[i % n_mix]
                batch.append(DeliveryOutcome(dev, status, at, reason))
            d.record_outcomes(batch, SYSTEM)
            app.save(d)
            outcomes += len(batch)
            events += 1
    return clock.stop(outcomes, events)


def raw_outcomes(app: RawApp, devices: list[UUID], sz: Sizes) -> Timing:
    """The same work with plain rows on a plain aggregate."""
    aggs = [RawDispatch([d.hex for d in devices], "system") for _ in range(sz.dispatches)]
    app.save(*aggs)  # setup, not timed
    mix, n_mix = RAW_MIX, len(RAW_MIX)
    outcomes = events = 0
    clock = Clock()
    for a in aggs:
        for chunk in _chunks(devices, sz.batch):
            at = datetime.now(UTC)
            rows = []
            for i, dev in enumerate(chunk):
                status, reason = mix[i % n_mix]
                rows.append([dev.hex, status, at.isoformat(), reason])  # per row, as the domain
            a.record_outcomes(rows, "system")
            app.save(a)
            outcomes += len(rows)
            events += 1
    return clock.stop(outcomes, events)


def domain_batch_outcomes(
    app: SourceSystem, broadcast: Broadcast, occ: Occurrences, devices: list[UUID], sz: Sizes
) -> Timing:
    """Uniform batches ("these devices accepted it at t") through ``Dispatch.record_batch``."""
    dispatches = [app.new_dispatch(broadcast, occ.next(), devices) for _ in range(sz.dispatches)]
    app.save(*dispatches)  # setup, not timed
    outcomes = events = 0
    clock = Clock()
    for d in dispatches:
        for chunk in _chunks(devices, sz.batch):
            d.record_batch(chunk, OutcomeStatus.DELIVERED, datetime.now(UTC), SYSTEM)
            app.save(d)
            outcomes += len(chunk)
            events += 1
    return clock.stop(outcomes, events)


def raw_uniform_outcomes(app: RawApp, devices: list[UUID], sz: Sizes) -> Timing:
    """The same uniform batches as plain rows on a plain aggregate."""
    aggs = [RawDispatch([d.hex for d in devices], "system") for _ in range(sz.dispatches)]
    app.save(*aggs)  # setup, not timed
    outcomes = events = 0
    clock = Clock()
    for a in aggs:
        for chunk in _chunks(devices, sz.batch):
            at = datetime.now(UTC).isoformat()
            a.record_outcomes([[dev.hex, "delivered", at, ""] for dev in chunk], "system")
            app.save(a)
            outcomes += len(chunk)
            events += 1
    return clock.stop(outcomes, events)


def domain_starts(
    app: SourceSystem, broadcast: Broadcast, occ: Occurrences, sz: Sizes
) -> Timing:
    """Start ``sz.start_dispatches`` dispatches, ``sz.start_batch`` per save()."""
    device_sets = _device_sets(sz)
    occurrences = [occ.next() for _ in range(sz.start_dispatches)]
    clock = Clock()
    n = app.save_in_batches(
        (
            app.new_dispatch(broadcast, o, devs)
            for o, devs in zip(occurrences, device_sets, strict=True)
        ),
        size=sz.start_batch,
    )
    return clock.stop(n, n)


def raw_starts(app: RawApp, sz: Sizes) -> Timing:
    """The same with the plain aggregate (device ids as hex, like the domain's)."""
    device_sets = _device_sets(sz)
    clock = Clock()
    n = 0
    it = (RawDispatch([d.hex for d in devs], "system") for devs in device_sets)
    while chunk := list(itertools.islice(it, sz.start_batch)):
        app.save(*chunk)
        n += len(chunk)
    return clock.stop(n, n)


# ----------------------------------------------------------------------------------------------
# Rounds and report
# ----------------------------------------------------------------------------------------------


@dataclass
class Series:
    """Timings of one (store, path, measure) over the rounds."""

    runs: list[Timing] = field(default_factory=list)

    def rates(self, cpu: bool = False) -> list[float]:
        return [t.items / (t.cpu if cpu else t.wall) for t in self.runs]

    def best(self, cpu: bool = False) -> float:
        return max(self.rates(cpu))

    def median(self, cpu: bool = False) -> float:
        return statistics.median(self.rates(cpu))

    def best_events(self) -> float:
        return max(t.events / t.wall for t in self.runs)


def run_store(store: str, sz: Sizes, rounds: int, tmp: str) -> dict[str, Series]:
    """Interleave domain and raw rounds on one store; returns the series by key."""
    app, broadcast = make_domain_app(store, tmp)
    raw = make_raw_app(store, tmp)
    occ = Occurrences()
    devices = [uuid.uuid4() for _ in range(sz.devices)]
    keys = ("out-domain", "out-raw", "batch-domain", "batch-raw", "start-domain", "start-raw")
    out = {k: Series() for k in keys}
    # One untimed warm-up of each path (imports, statement caches, WAL switch).
    warm = Sizes(min(sz.devices, 2 * sz.batch), sz.batch, 1, min(sz.start_batch, 100),
                 sz.start_devices, sz.start_batch)
    domain_outcomes(app, broadcast, occ, devices[: warm.devices], warm)
    raw_outcomes(raw, devices[: warm.devices], warm)
    domain_batch_outcomes(app, broadcast, occ, devices[: warm.devices], warm)
    raw_uniform_outcomes(raw, devices[: warm.devices], warm)
    domain_starts(app, broadcast, occ, warm)
    raw_starts(raw, warm)
    for r in range(rounds):
        pair: list[tuple[str, Callable[[], Timing]]] = [
            ("out-domain", lambda: domain_outcomes(app, broadcast, occ, devices, sz)),
            ("out-raw", lambda: raw_outcomes(raw, devices, sz)),
        ]
        batches: list[tuple[str, Callable[[], Timing]]] = [
            ("batch-domain", lambda: domain_batch_outcomes(app, broadcast, occ, devices, sz)),
            ("batch-raw", lambda: raw_uniform_outcomes(raw, devices, sz)),
        ]
        starts: list[tuple[str, Callable[[], Timing]]] = [
            ("start-domain", lambda: domain_starts(app, broadcast, occ, sz)),
            ("start-raw", lambda: raw_starts(raw, sz)),
        ]
        if r % 2:  # alternate which path goes first
            pair.reverse()
            batches.reverse()
            starts.reverse()
        for key, fn in (*pair, *batches, *starts):
            out[key].runs.append(fn())
        last = {k: s.rates()[-1] for k, s in out.items()}
        print(
            f"  {store} round {r + 1}/{rounds}: outcomes/s domain {last['out-domain']:,.0f} "
            f"raw {last['out-raw']:,.0f}; dispatches started/s domain "
            f"{last['start-domain']:,.0f} raw {last['start-raw']:,.0f}",
            flush=True,
        )
    app.close()
    raw.close()
    return out


def _pct(a: float, b: float) -> str:
    return f"{a / b:.0%}"


def _table(title: str, unit: str, rows: list[tuple[str, Series, Series]]) -> str:
    """Rows: (store, domain series, raw series)."""
    head = (
        f"{'store':<7}{'path':<8}{unit + '/s best':>19}{unit + '/s median':>21}"
        f"{'events/s best':>15}{'per CPU-s best':>16}"
        f"{'domain/raw wall best|median':>29}{'domain/raw CPU best|median':>28}"
    )
    lines = [title, head, "-" * len(head)]
    for store, dom, raw in rows:
        for path, s in (("domain", dom), ("raw", raw)):
            wall = cpu = ""
            if path == "domain":
                wall = f"{_pct(dom.best(), raw.best())} | {_pct(dom.median(), raw.median())}"
                cpu = (f"{_pct(dom.best(True), raw.best(True))} | "
                       f"{_pct(dom.median(True), raw.median(True))}")
            lines.append(
                f"{store:<7}{path:<8}{s.best():>19,.0f}{s.median():>21,.0f}"
                f"{s.best_events():>15,.0f}{s.best(True):>16,.0f}{wall:>29}{cpu:>28}"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Where the time goes
# ----------------------------------------------------------------------------------------------

PHASES = ("build outcomes", "record_outcomes", "domain save", "raw rows+event", "raw save")


def phase_breakdown(store: str, sz: Sizes, rounds: int, tmp: str) -> None:
    """CPU microseconds per outcome in each phase, domain vs raw (best of ``rounds``)."""
    app, broadcast = make_domain_app(store, tmp)
    raw = make_raw_app(store, tmp)
    occ = Occurrences()
    devices = [uuid.uuid4() for _ in range(sz.devices)]
    clock = time.process_time
    best: dict[str, float] = {}
    for r in range(rounds + 1):  # round 0 warms up and is not counted
        dispatches = [app.new_dispatch(broadcast, occ.next(), devices)
                      for _ in range(sz.dispatches)]
        app.save(*dispatches)
        aggs = [RawDispatch([d.hex for d in devices], "system") for _ in range(sz.dispatches)]
        raw.save(*aggs)
        t = dict.fromkeys(PHASES, 0.0)
        gc.collect()
        for d, a in zip(dispatches, aggs, strict=True):
            for chunk in _chunks(devices, sz.batch):
                t0 = clock()
                at = datetime.now(UTC)
                batch = []
                for i, dev in enumerate(chunk):
                    status, reason = MIX[i % len(MIX)]
                    batch.append(DeliveryOutcome(dev, status, at, reason))
                t1 = clock()
                d.record_outcomes(batch, SYSTEM)
                t2 = clock()
                app.save(d)
                t3 = clock()
                at = datetime.now(UTC)
                rows = []
                for i, dev in enumerate(chunk):
                    st, reason = RAW_MIX[i % len(RAW_MIX)]
                    rows.append([dev.hex, st, at.isoformat(), reason])
                a.record_outcomes(rows, "system")
                t4 = clock()
                raw.save(a)
                t5 = clock()
                for k, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                                 strict=True):
                    t[k] += dt
        if r:
            for k, v in t.items():
                best[k] = min(best.get(k, v), v)
    us = {k: v / (sz.devices * sz.dispatches) * 1e6 for k, v in best.items()}
    dom = us["build outcomes"] + us["record_outcomes"] + us["domain save"]
    rw = us["raw rows+event"] + us["raw save"]
    print(f"\nWhere the time goes ({store}; CPU us per outcome, best of {rounds} rounds):")
    print(f"  domain: build DeliveryOutcome values {us['build outcomes']:.2f} + "
          f"Dispatch.record_outcomes (checks, rows, event) {us['record_outcomes']:.2f} + "
          f"app.save {us['domain save']:.2f} = {dom:.2f}")
    print(f"  raw:    build rows + event {us['raw rows+event']:.2f} + "
          f"app.save {us['raw save']:.2f} = {rw:.2f}")
    print(f"  domain at {rw / dom:.0%} of raw; the domain costs {dom - rw:.2f} us/outcome more")
    app.close()
    raw.close()


def profile_domain(store: str, sz: Sizes, tmp: str, profiler: str, top: int) -> None:
    """Profile one domain outcomes round and print where the time goes."""
    app, broadcast = make_domain_app(store, tmp)
    occ = Occurrences()
    devices = [uuid.uuid4() for _ in range(sz.devices)]
    domain_outcomes(app, broadcast, occ, devices[: 2 * sz.batch],
                    Sizes(2 * sz.batch, sz.batch, 1, 1, 1, 1))
    print(f"\nProfile of the domain outcomes path ({store}, {profiler}):")
    if profiler == "pyinstrument":
        from pyinstrument import Profiler  # optional: pip install pyinstrument

        p = Profiler(interval=0.0005)
        p.start()
        domain_outcomes(app, broadcast, occ, devices, sz)
        p.stop()
        print(p.output_text(unicode=False, color=False, show_all=False))
    else:
        prof = cProfile.Profile()
        prof.enable()
        domain_outcomes(app, broadcast, occ, devices, sz)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
        print(buf.getvalue())
    app.close()


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Outcomes/s and dispatch starts/s: tcs-core domain path vs raw eventsourcing."
    )
    p.add_argument("--devices", type=int, default=10_000, help="devices per dispatch (N)")
    p.add_argument("--batch", type=int, default=500, help="outcomes per event / save() (B)")
    p.add_argument("--dispatches", type=int, default=6, help="dispatches per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per path")
    p.add_argument("--start-dispatches", type=int, default=4_000,
                   help="dispatches started per round (start-rate table)")
    p.add_argument("--start-devices", type=int, default=10, help="devices per started dispatch")
    p.add_argument("--start-batch", type=int, default=1_000, help="dispatches per save()")
    p.add_argument("--stores", default="sqlite,popo", help="comma-separated: sqlite,popo")
    p.add_argument("--gc", choices=("on", "off"), default="on",
                   help="off: disable the cyclic garbage collector while measuring")
    p.add_argument("--profile", action="store_true",
                   help="also print the per-phase breakdown and a profile of the domain path")
    p.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile")
    p.add_argument("--profile-top", type=int, default=25, help="cProfile rows to print")
    args = p.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if bad := [s for s in stores if s not in ("sqlite", "popo")]:
        p.error(f"unknown store(s) {bad}")
    if min(args.devices, args.batch, args.dispatches, args.rounds, args.start_dispatches,
           args.start_devices, args.start_batch) < 1:
        p.error("sizes must be positive")
    sz = Sizes(args.devices, args.batch, args.dispatches, args.start_dispatches,
               args.start_devices, args.start_batch)
    if args.gc == "off":
        gc.disable()

    print(
        f"python {platform.python_version()}, eventsourcing {version('eventsourcing')}, "
        f"{os.cpu_count()} cpu(s), gc {args.gc}; N={sz.devices} devices/dispatch, "
        f"B={sz.batch} outcomes/event, {sz.dispatches} dispatches/round "
        f"({sz.devices * sz.dispatches:,} outcomes), {args.rounds} rounds; starts: "
        f"{sz.start_dispatches:,} dispatches x {sz.start_devices} devices, "
        f"{sz.start_batch} per save()",
        flush=True,
    )
    t_all = time.perf_counter()
    res: dict[str, dict[str, Series]] = {}
    with tempfile.TemporaryDirectory(prefix="tcs-bench-") as tmp:
        for store in stores:
            res[store] = run_store(store, sz, args.rounds, tmp)
        print()
        print(_table(
            f"Outcomes recorded (N={sz.devices}, B={sz.batch}; goal: domain >= 80% of raw)",
            "outcomes",
            [(s, res[s]["out-domain"], res[s]["out-raw"]) for s in stores],
        ))
        print()
        print(_table(
            f"Uniform batches through Dispatch.record_batch (N={sz.devices}, B={sz.batch}, "
            "all delivered; raw: the same rows)",
            "outcomes",
            [(s, res[s]["batch-domain"], res[s]["batch-raw"]) for s in stores],
        ))
        print()
        print(_table(
            f"Dispatches started ({sz.start_devices} devices each, {sz.start_batch} per save())",
            "dispatches",
            [(s, res[s]["start-domain"], res[s]["start-raw"]) for s in stores],
        ))
        print()
        for s in stores:
            dom, raw = res[s]["out-domain"], res[s]["out-raw"]
            best, med = dom.best() / raw.best(), dom.median() / raw.median()
            verdict = "meets" if best >= 0.8 else "MISSES"
            print(f"{s}: domain outcome path (DeliveryOutcome values, mixed statuses) at "
                  f"{best:.0%} of raw (best rounds; medians {med:.0%}): {verdict} the 80% goal")
            dom, raw = res[s]["batch-domain"], res[s]["batch-raw"]
            best, med = dom.best() / raw.best(), dom.median() / raw.median()
            verdict = "meets" if best >= 0.8 else "MISSES"
            print(f"{s}: domain batch path (record_batch, uniform) at {best:.0%} of raw "
                  f"(best rounds; medians {med:.0%}): {verdict} the 80% goal")
        print(f"total {time.perf_counter() - t_all:.1f} s")
        if args.profile:
            for store in stores:
                phase_breakdown(store, sz, args.rounds, tmp)
            for store in stores:
                profile_domain(store, sz, tmp, args.profiler, args.profile_top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
