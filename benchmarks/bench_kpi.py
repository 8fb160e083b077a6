"""P5: KPIs on a national dataset: cold rebuild of the projection and warm as-of queries.

Builds (or reuses, with ``--db``) a store holding the legacy + 2025 structure and five years of
example history for every legacy commune (``tcs_core.kpi.generate_history``: stations,
conversions, facilities, two speakers per commune with their outages, bulletins and feedback),
well over a million events, then measures:

- **cold**: a new ``KpiProjection`` catching up from position 0 (reads and applies every event of
  its topics from the store) plus the first query's structure build;
- **warm**: the full indicator set (all 18 indicators) as of a date, for the whole country and
  for one province, repeated; the best, the median and the worst are printed (the machine is
  shared: the best is the least disturbed);
- **incremental**: catching up after a few hundred new events.

Goal: warm < 200 ms, cold < 10 s. Then, beside the cold figure, a **restart** from a checkpoint
(``tcs_core.checkpoints``): the saved projection loaded and only the tail replayed; and the
application's own indexes opened by replaying the log and from their checkpoint.

    python benchmarks/bench_kpi.py                      # SQLite file in a temporary directory
    python benchmarks/bench_kpi.py --db /tmp/kpi.sqlite # keep (and reuse) the store
    python benchmarks/bench_kpi.py --store popo         # in memory
    python benchmarks/bench_kpi.py --scope 52           # one province only (quick)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import attrs

from tcs_core import Settings, SourceSystem, load_history
from tcs_core.checkpoints import CheckpointStore
from tcs_core.kpi import KpiProjection, evaluate, generate_history
from tcs_core.kpi.engine import structure_on
from tcs_core.testing.fixtures import make_source_system


def _open(args: argparse.Namespace, folder: Path) -> tuple[SourceSystem, bool]:
    if args.store == "popo":
        return make_source_system(Settings.in_memory()), True
    path = Path(args.db) if args.db else folder / "kpi.sqlite"
    fresh = not path.exists()
    settings = Settings.sqlite(path)
    return (make_source_system(settings) if fresh else SourceSystem(settings)), fresh


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=("sqlite", "popo"), default="sqlite")
    p.add_argument("--db", help="SQLite file to create, or reuse if it exists")
    p.add_argument("--scope", default=None, help="area code (legacy) to limit the data to")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--devices", type=int, default=2, help="speakers per commune")
    p.add_argument("--outages", type=float, default=4.5, help="outages per device and year")
    p.add_argument("--bulletins", type=float, default=2.0, help="dispatches per commune and year")
    p.add_argument("--feedback", type=float, default=1.0, help="feedback per commune and year")
    p.add_argument("--rounds", type=int, default=7, help="warm query repetitions")
    p.add_argument("--as-of", type=date.fromisoformat, default=date(2024, 12, 14))
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        app, fresh = _open(args, Path(tmp))
        print(
            f"store: {args.store}; application opened in {time.perf_counter() - t0:.1f} s "
            "(its own projections; not part of the KPI figures)"
        )
        if fresh:
            t0 = time.perf_counter()
            load_history(app)
            print(f"areas (legacy + 2025 reform): {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            h = generate_history(
                app,
                args.scope,
                seed=args.seed,
                start=date(2021, 1, 1),
                end=date(2025, 12, 31),
                devices_per_commune=args.devices,
                outages_per_year=args.outages,
                bulletins_per_year=args.bulletins,
                feedback_per_year=args.feedback,
                batch=500,
            )
            dt = time.perf_counter() - t0
            print(
                f"history: {h.communes:,} communes, {h.stations:,} stations, {h.facilities:,} "
                f"facilities, {h.devices:,} devices, {h.dispatches:,} dispatches, "
                f"{h.feedback:,} feedback items: {h.events:,} events in {dt:.0f} s "
                f"({h.events / dt:,.0f}/s)"
            )
        total = app.recorder.max_notification_id() or 0
        print(f"events in the store: {total:,}")

        gc.collect()
        t0 = time.perf_counter()
        proj = KpiProjection(app.settings.zone)
        applied = proj.catch_up(app)
        t_read = time.perf_counter() - t0
        t1 = time.perf_counter()
        structure_on(proj, args.as_of)
        scope = None if args.scope is None else proj.areas.resolve(args.scope, args.as_of).area_id
        first = evaluate(proj, scope, args.as_of)
        t_first = time.perf_counter() - t1
        cold = t_read + t_first
        print(
            f"cold rebuild: {applied:,} events applied in {t_read:.2f} s "
            f"({applied / t_read:,.0f}/s) + first query {t_first:.2f} s = {cold:.2f} s "
            f"(goal < 10 s: {'met' if cold < 10 else 'NOT met'})"
        )
        print(
            f"  {len(proj.stations):,} stations, {len(proj.facilities):,} facilities, "
            f"{len(proj.devices):,} devices, {sum(len(d.times) for d in proj.devices.values()):,} "
            f"transitions, {len(proj.dispatch_list):,} dispatches, {len(proj.feedback):,} feedback"
        )

        def timed(label: str, scope_code: str | None) -> float:
            sc = None if scope_code is None else proj.areas.resolve(scope_code, args.as_of).area_id
            times = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                evaluate(proj, sc, args.as_of)
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            print(
                f"warm, {label}: best {min(times) * 1000:.0f} ms, median {med * 1000:.0f} ms, "
                f"worst {max(times) * 1000:.0f} ms over {args.rounds} "
                f"(goal < 200 ms: {'met' if med < 0.2 else 'NOT met'})"
            )
            return med

        if args.scope is None:
            timed("whole country, 18 indicators", None)
            timed("one province (52 Bình Định), 18 indicators", "52")
        else:
            timed(f"scope {args.scope}, 18 indicators", args.scope)
        other = date(args.as_of.year - 1, 12, 14)
        t = time.perf_counter()
        evaluate(proj, scope, other)
        print(
            f"another date ({other}), same structure epoch: {(time.perf_counter() - t) * 1000:.0f} ms"
        )

        gen = generate_history(  # a fresh seed: feedback ids derive from it
            app,
            "632" if args.scope is None else args.scope,
            seed=total,
            start=date(2025, 1, 1),
            end=date(2025, 6, 30),
            devices_per_commune=1,
            outages_per_year=2,
            bulletins_per_year=2,
            feedback_per_year=1,
        )
        t = time.perf_counter()
        n = proj.catch_up(app)
        print(
            f"incremental catch-up: {n:,} new events in {(time.perf_counter() - t) * 1000:.0f} ms"
        )
        assert gen.events >= n
        radio = first["radio_coverage"]
        print(f"(radio coverage as of {args.as_of}: {radio.numerator:,}/{radio.denominator:,})")
        if args.store == "sqlite":
            _restarts(app, proj, args, scope)
        app.close()


def _restarts(app: SourceSystem, proj: KpiProjection, args: argparse.Namespace, scope: Any) -> None:
    """A restart from checkpoints (``tcs_core.checkpoints``) beside the cold rebuild above: the
    KPI projection loaded and the tail replayed, and the application's own indexes."""
    settings = app.settings
    store = CheckpointStore(Path(settings.sqlite_path + ".bench-checkpoints"))
    t = time.perf_counter()
    info = store.write("kpi", [proj], position=proj.position, recorder=app.recorder)
    print(
        f"checkpoint written: KPI projection at event {info.position:,}, "
        f"{info.size / 1e6:.0f} MB, in {time.perf_counter() - t:.2f} s"
    )
    gc.collect()
    t0 = time.perf_counter()
    restarted = KpiProjection(settings.zone)
    assert store.restore("kpi", [restarted], recorder=app.recorder) is not None
    t_load = time.perf_counter() - t0
    tail = restarted.catch_up(app)
    t1 = time.perf_counter()
    structure_on(restarted, args.as_of)
    again = evaluate(restarted, scope, args.as_of)
    t_first = time.perf_counter() - t1
    total = time.perf_counter() - t0
    assert (
        again["radio_coverage"].numerator
        == evaluate(proj, scope, args.as_of)["radio_coverage"].numerator
    )
    print(
        f"restart from the checkpoint: load {t_load:.2f} s + tail {tail:,} events + first query "
        f"{t_first:.2f} s = {total:.2f} s (goal < 10 s: {'met' if total < 10 else 'NOT met'})"
    )
    # The application's own indexes: open without, write its checkpoint, open with.
    plain = attrs.evolve(settings, checkpoint_after_events=0)
    with_ckpt = attrs.evolve(
        settings, checkpoint_dir=str(store.directory), checkpoint_after_events=10**9
    )
    gc.collect()
    t = time.perf_counter()
    SourceSystem(plain).close()
    t_plain = time.perf_counter() - t
    writer = SourceSystem(with_ckpt)
    writer.checkpoint()
    writer.close()
    gc.collect()
    t = time.perf_counter()
    reopened = SourceSystem(with_ckpt)
    t_ckpt = time.perf_counter() - t
    assert reopened.loaded_checkpoint is not None
    reopened.close()
    print(
        f"SourceSystem open: replaying the log {t_plain:.1f} s, from its checkpoint {t_ckpt:.1f} s"
    )


if __name__ == "__main__":
    main()
