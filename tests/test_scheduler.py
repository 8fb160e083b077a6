"""The scheduler engine on a virtual clock: firing, lanes, misfires, retries, crash recovery."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcs_core import (
    BroadcastStatus,
    Category,
    Channel,
    CutIn,
    DeliveryOutcome,
    Interrupted,
    OutcomeStatus,
    Preemption,
    Priority,
    ScheduleSpec,
    Settings,
    SourceSystem,
    SpeechContent,
    Targets,
)
from tcs_core.memory import MemoryTransport
from tcs_core.schedule import occurrences
from tcs_core.scheduler import ClashRule, Scheduler, SchedulerConfig, VirtualClock
from tcs_core.transport import Outcome

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 07:00 in Hồ Chí Minh City
EFFECTIVE = date(2020, 1, 1)


def make_app(settings_: Settings | None = None) -> SourceSystem:
    """Province P with communes C1, C2; two speakers in C1, one in C2; an operator/approver."""
    app = SourceSystem(settings_ or Settings.in_memory())
    app.bootstrap_admin("admin")
    app.create_area("P", "Tỉnh P", "province", parent=None, effective=EFFECTIVE, actor="admin")
    for c in ("C1", "C2"):
        app.create_area(c, f"Xã {c}", "commune", parent="P", effective=EFFECTIVE, actor="admin")
    app.create_principal("op", grants=[("operator", "P")], permissions=["emergency"], actor="admin")
    app.create_principal("ap", grants=[("approver", "P")], permissions=["emergency"], actor="admin")
    for name, area in (("s1", "C1"), ("s2", "C1"), ("s3", "C2")):
        app.register_device(
            name,
            "ip_speaker",
            area=area,
            transport="memory",
            address=f"mem:{name}",
            channels=["audio"],
            actor="admin",
        )
    return app


def device(app: SourceSystem, name: str) -> UUID:
    return next(d.device_id for d in app.devices.all() if d.name == name)


def broadcast(
    app: SourceSystem,
    spec: ScheduleSpec,
    *,
    areas: tuple[str, ...] = ("P",),
    priority: Priority = Priority.NORMAL,
    preemption: Preemption | None = None,
    approve: bool = True,
) -> UUID:
    b = app.draft_broadcast(
        f"Bản tin {priority.value}",
        category=Category.LOCAL_GOVERNMENT,
        priority=priority,
        content={Channel.AUDIO: SpeechContent("Xin thông báo.")},
        targets=Targets(areas=areas, channels=["audio"]),
        schedule=spec,
        preemption=preemption,
        actor="op",
    )
    if approve:
        app.submit_broadcast(b, "op")
        app.approve_broadcast(b, "ap")
    return b


class Harness:
    """A scheduler over ``app`` with a memory transport, stepped on a virtual clock."""

    def __init__(
        self,
        app: SourceSystem,
        start: datetime = T0,
        config: SchedulerConfig | None = None,
        transport: MemoryTransport | None = None,
    ) -> None:
        self.app = app
        self.transport = transport or MemoryTransport("memory")
        self.clock = VirtualClock(start)
        self.scheduler = Scheduler(app, [self.transport], self.clock, config)

    async def start(self) -> None:
        await self.scheduler.start()

    async def run(self, until: datetime) -> None:
        await self.scheduler.run_until(until)

    async def stop(self) -> None:
        await self.scheduler.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def dispatches_of(app: SourceSystem, b: UUID) -> list[datetime]:
    app.refresh()
    return sorted(
        e.occurrence
        for n in app.recorder.select_notifications(1, 1_000_000, topics=["tcs.dispatch.started"])
        if (e := app.mapper.to_domain_event(n)).broadcast_id == b
    )


def test_fires_once_and_delivers_to_the_subtree() -> None:
    """An approved one-shot fires at its instant, reaches every speaker under P, and completes."""
    app = make_app()
    at = T0 + timedelta(minutes=5)
    b = broadcast(app, ScheduleSpec.once(at, duration_s=60))

    async def go() -> Harness:
        h = Harness(app)
        await h.start()
        await h.run(T0 + timedelta(minutes=4))
        assert app.dispatch_of(b, at) is None
        await h.run(T0 + timedelta(minutes=10))
        await h.stop()
        return h

    h = run(go())
    d = app.dispatch_of(b, at)
    assert d is not None
    assert d.counts()["delivered"] == 3
    assert d.completed_at is not None
    assert h.transport.deliveries == 3
    assert app.broadcast(b).status is BroadcastStatus.EXPIRED  # no occurrence left


def test_unapproved_and_cancelled_broadcasts_never_fire() -> None:
    """Drafts, submitted and cancelled broadcasts get no dispatch."""
    app = make_app()
    at = T0 + timedelta(minutes=5)
    draft = broadcast(app, ScheduleSpec.once(at), approve=False)
    submitted = broadcast(app, ScheduleSpec.once(at), approve=False)
    app.submit_broadcast(submitted, "op")
    cancelled = broadcast(app, ScheduleSpec.once(at))

    async def go() -> None:
        h = Harness(app)
        await h.start()
        await h.run(T0 + timedelta(minutes=1))
        app.cancel_broadcast(cancelled, "nhầm lịch", "op")
        await h.run(T0 + timedelta(minutes=30))
        await h.stop()

    run(go())
    assert dispatches_of(app, draft) == dispatches_of(app, submitted) == []
    assert dispatches_of(app, cancelled) == []


def test_emergency_cuts_in_and_normal_item_resumes() -> None:
    """An emergency preempts the playing normal item at once; the normal item resumes after."""
    app = make_app()
    normal = broadcast(app, ScheduleSpec.once(T0, duration_s=600), areas=("C1",))
    emergency = broadcast(
        app,
        ScheduleSpec.once(T0 + timedelta(minutes=2), duration_s=120),
        areas=("C1",),
        priority=Priority.EMERGENCY,
    )

    async def go() -> Harness:
        h = Harness(app)
        await h.start()
        await h.run(T0 + timedelta(minutes=2))
        s1 = device(app, "s1")
        plays = [p.context.dispatch_id for p in h.transport.played[s1]]
        assert len(plays) == 2  # the emergency started within the same tick
        assert h.transport.preempted[s1] == 1
        await h.run(T0 + timedelta(minutes=30))
        await h.stop()
        return h

    h = run(go())
    s1 = device(app, "s1")
    played = h.transport.played[s1]
    assert [p.context.priority for p in played] == [
        Priority.NORMAL,
        Priority.EMERGENCY,
        Priority.NORMAL,
    ]
    assert played[2].key.endswith(".2")  # the resumed play is a new play
    assert played[2].context.duration_s == pytest.approx(480)  # 8 of 10 minutes were left
    d = app.dispatch_of(normal, T0)
    assert d is not None and set(d.preempted) == {s1.hex, device(app, "s2").hex}
    assert h.scheduler.stats.preemptions == 2
    assert app.dispatch_of(emergency, T0 + timedelta(minutes=2)) is not None


def test_after_current_waits_and_priority_goes_first() -> None:
    """Non-emergency items wait for the current one; a priority item jumps ahead of normal ones."""
    app = make_app()
    first = broadcast(app, ScheduleSpec.once(T0, duration_s=300), areas=("C2",))
    wait = {"duration_s": 300, "misfire_grace_s": 3600}  # may wait up to an hour for the lane
    normal = broadcast(app, ScheduleSpec.once(T0 + timedelta(minutes=1), **wait), areas=("C2",))
    prio = broadcast(
        app,
        ScheduleSpec.once(T0 + timedelta(minutes=2), **wait),
        areas=("C2",),
        priority=Priority.PRIORITY,
    )

    async def go() -> Harness:
        h = Harness(app)
        await h.start()
        await h.run(T0 + timedelta(minutes=30))
        await h.stop()
        return h

    h = run(go())
    order = [p.context.broadcast_id for p in h.transport.played[device(app, "s3")]]
    assert order == [first, prio, normal]
    assert h.transport.preempted[device(app, "s3")] == 0


def test_explicit_cut_in_for_a_priority_item() -> None:
    """Cut-in is data: an emergency marked after_current waits; drop policy loses the rest."""
    app = make_app()
    broadcast(
        app,
        ScheduleSpec.once(T0, duration_s=300),
        areas=("C2",),
        preemption=Preemption(CutIn.AFTER_CURRENT, Interrupted.DROP),
    )
    e = broadcast(
        app,
        ScheduleSpec.once(T0 + timedelta(minutes=1), duration_s=60, misfire_grace_s=3600),
        areas=("C2",),
        priority=Priority.EMERGENCY,
        preemption=Preemption(CutIn.AFTER_CURRENT),
    )

    async def go() -> Harness:
        h = Harness(app)
        await h.start()
        await h.run(T0 + timedelta(minutes=20))
        await h.stop()
        return h

    h = run(go())
    plays = h.transport.played[device(app, "s3")]
    assert [p.context.broadcast_id for p in plays][-1] == e
    assert plays[-1].context.occurrence == T0 + timedelta(minutes=1)
    assert h.transport.preempted[device(app, "s3")] == 0


def test_priority_clash_follows_the_commune_rule() -> None:
    """Two queued priority items: first-come by default, latest-first where the commune says."""
    for rule, expect_latest_first in (
        (ClashRule.FIRST_COME, False),
        (ClashRule.LATEST_FIRST, True),
    ):
        app = make_app()
        broadcast(app, ScheduleSpec.once(T0, duration_s=300), areas=("C2",))
        wait = {"misfire_grace_s": 3600}
        p1 = broadcast(
            app,
            ScheduleSpec.once(T0 + timedelta(minutes=1), **wait),
            areas=("C2",),
            priority=Priority.PRIORITY,
        )
        p2 = broadcast(
            app,
            ScheduleSpec.once(T0 + timedelta(minutes=2), **wait),
            areas=("C2",),
            priority=Priority.PRIORITY,
        )
        cfg = SchedulerConfig(clash_rules={app.area("C2").area_id: rule})

        async def go(cfg: SchedulerConfig = cfg, app: SourceSystem = app) -> Harness:
            h = Harness(app, config=cfg)
            await h.start()
            await h.run(T0 + timedelta(minutes=30))
            await h.stop()
            return h

        h = run(go())
        order = [p.context.broadcast_id for p in h.transport.played[device(app, "s3")]][1:]
        assert order == ([p2, p1] if expect_latest_first else [p1, p2])


def test_retryable_then_delivered_and_bounded_retries() -> None:
    """A busy device is retried with backoff; one that stays busy fails before the deadline."""
    app = make_app()
    busy_until: dict[str, int] = {"s1": 2, "s3": 10_000}
    calls: dict[str, int] = {}

    def script(dev: Any, ctx: Any) -> Outcome | None:
        calls[dev.name] = calls.get(dev.name, 0) + 1
        if calls[dev.name] <= busy_until.get(dev.name, 0):
            return Outcome.retryable("486 Busy Here")
        return None

    b = broadcast(app, ScheduleSpec.once(T0, duration_s=60, misfire_grace_s=120))

    async def go() -> Harness:
        h = Harness(app, transport=MemoryTransport("memory", script=script))
        await h.start()
        await h.run(T0 + timedelta(minutes=10))
        await h.stop()
        return h

    h = run(go())
    d = app.dispatch_of(b, T0)
    assert d is not None
    assert d.outcome(device(app, "s1")).status is OutcomeStatus.DELIVERED  # type: ignore[union-attr]
    failed = d.outcome(device(app, "s3"))
    assert failed is not None and failed.status is OutcomeStatus.FAILED
    assert "gave up" in failed.reason and "486 Busy Here" in failed.reason
    assert h.scheduler.stats.retries >= 2
    assert d.completed_at is not None


def test_raising_or_hanging_transport_is_an_outcome() -> None:
    """A transport that raises or never answers yields failed/retryable outcomes, not a crash."""
    app = make_app()

    def script(dev: Any, ctx: Any) -> Outcome | None:
        if dev.name == "s1":
            raise ConnectionResetError("peer reset")
        return None

    b = broadcast(app, ScheduleSpec.once(T0, duration_s=60))

    async def go() -> None:
        h = Harness(app, transport=MemoryTransport("memory", script=script))
        await h.start()
        await h.run(T0 + timedelta(minutes=10))
        await h.stop()

    run(go())
    d = app.dispatch_of(b, T0)
    assert d is not None
    o = d.outcome(device(app, "s1"))
    assert o is not None and o.status is OutcomeStatus.FAILED
    assert "ConnectionResetError" in o.reason


def test_missed_recurrences_coalesce_or_skip() -> None:
    """After downtime, missed recurrences fire once (coalesce) or not at all (skip)."""
    for coalesce in (True, False):
        app = make_app()
        spec = ScheduleSpec.recurring(
            "*/10 * * * *", zone="UTC", coalesce=coalesce, misfire_grace_s=60, duration_s=30
        )
        b = broadcast(app, spec, areas=("C2",))

        async def go(app: SourceSystem = app) -> None:
            h = Harness(app)
            await h.start()
            await h.run(T0 + timedelta(minutes=5))  # fires 00:00
            await h.stop()
            h2 = Harness(app, start=T0 + timedelta(minutes=45))  # down 00:05-00:45
            await h2.start()
            await h2.run(T0 + timedelta(minutes=55))
            await h2.stop()

        run(go())
        fired = dispatches_of(app, b)
        missed = [T0 + timedelta(minutes=m) for m in (10, 20, 30, 40)]
        expected = [T0] + ([missed[-1]] if coalesce else []) + [T0 + timedelta(minutes=50)]
        assert fired == expected


def test_restart_resumes_only_undelivered_devices(tmp_path: Path) -> None:
    """A dispatch interrupted by a crash is resumed for devices without a final outcome only."""
    db = Settings.sqlite(tmp_path / "tcs.sqlite")
    app = make_app(db)
    b = broadcast(app, ScheduleSpec.once(T0, duration_s=60, misfire_grace_s=600))
    s1, s2, s3 = (device(app, n) for n in ("s1", "s2", "s3"))

    def script(dev: Any, ctx: Any) -> Outcome | None:
        return Outcome.retryable("no route") if dev.name != "s1" else None

    async def first() -> None:
        h = Harness(app, transport=MemoryTransport("memory", script=script))
        await h.start()
        await h.run(T0 + timedelta(seconds=1))
        await h.stop()  # "crash": s2, s3 still pending

    run(first())
    app2 = SourceSystem(db)
    d = app2.dispatch_of(b, T0)
    assert d is not None and set(d.pending()) == {s2, s3}

    async def second() -> MemoryTransport:
        h = Harness(app2, start=T0 + timedelta(minutes=2))
        await h.start()
        await h.run(T0 + timedelta(minutes=5))
        await h.stop()
        return h.transport

    transport = run(second())
    assert set(transport.played) == {s2, s3}
    assert [p.key for p in transport.played[s2]] == [f"{d.id.hex}.{s2.hex}"]
    d = app2.dispatch(d.id)
    assert d.counts()["delivered"] == 3 and d.completed_at is not None
    assert dispatches_of(app2, b) == [T0]
    assert s1 not in transport.played


def test_targets_follow_reorganisation() -> None:
    """A daily broadcast to a province reaches the communes that belong to it on each day."""
    app = make_app()
    app.create_area("Q", "Tỉnh Q", "province", parent=None, effective=EFFECTIVE, actor="admin")
    app.create_area("C9", "Xã C9", "commune", parent="Q", effective=EFFECTIVE, actor="admin")
    app.register_device(
        "s9",
        "ip_speaker",
        area="C9",
        transport="memory",
        address="mem:s9",
        channels=["audio"],
        actor="admin",
    )
    b = broadcast(app, ScheduleSpec.recurring("0 0 * * *", zone="UTC", duration_s=60))
    # C9 moves from Q to P at midnight of day 2.
    app.move_area("C9", "P", effective=date(2026, 3, 3), actor="admin")

    async def go() -> None:
        h = Harness(app, start=T0 - timedelta(minutes=1))
        await h.start()
        await h.run(T0 + timedelta(days=1, minutes=5))
        await h.stop()

    run(go())
    day1, day2 = app.dispatch_of(b, T0), app.dispatch_of(b, T0 + timedelta(days=1))
    assert day1 is not None and day2 is not None
    s9 = device(app, "s9").hex
    assert s9 not in day1.device_ids and s9 in day2.device_ids


# -- the crash property ------------------------------------------------------------------------

CRONS = ["*/7 * * * *", "0,30 * * * *", "15 */2 * * *", "*/20 1-3 * * *", "5 * * * *"]


@st.composite
def workloads(draw: st.DrawFn) -> dict[str, Any]:
    specs = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            specs.append(
                ScheduleSpec.recurring(
                    draw(st.sampled_from(CRONS)),
                    zone="UTC",
                    duration_s=60,
                    misfire_grace_s=draw(st.sampled_from([60, 3600, 86_400])),
                    coalesce=False,
                )
            )
        else:
            minute = draw(st.integers(0, 239))
            specs.append(
                ScheduleSpec.once(
                    T0 + timedelta(minutes=minute), duration_s=60, misfire_grace_s=86_400
                )
            )
    crashes = sorted(set(draw(st.lists(st.integers(1, 239), max_size=4))))
    return {
        "specs": specs,
        "crashes": crashes,
        "abrupt": draw(st.lists(st.booleans(), min_size=len(crashes), max_size=len(crashes))),
        "unapproved": draw(st.integers(0, 2)),  # drafts/submitted that must never fire
        "cancel_at": draw(st.none() | st.integers(1, 239)),  # a recurring one cancelled then
        "emergency_at": draw(st.none() | st.integers(0, 239)),
    }


@settings(
    max_examples=int(os.environ.get("TCS_CRASH_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(workloads())
def test_exactly_once_across_random_crashes(w: dict[str, Any]) -> None:
    """With random crashes (abrupt: buffered outcomes lost) and rebuilds from the store: every
    due occurrence is dispatched exactly once; unapproved and cancelled broadcasts get no
    dispatch (after the cancellation); an emergency cuts in at its instant on its device; and no
    device is left without a final outcome."""
    specs: list[ScheduleSpec] = w["specs"]
    with tempfile.TemporaryDirectory() as tmp:
        db = Settings.sqlite(Path(tmp) / "tcs.sqlite")
        app = make_app(db)
        ids = [broadcast(app, s, areas=("C2",)) for s in specs]
        every7 = ScheduleSpec.recurring("*/7 * * * *", zone="UTC", duration_s=60)
        never = [
            broadcast(app, every7, areas=("C2",), approve=False) for _ in range(w["unapproved"])
        ]
        for b in never[1:]:
            app.submit_broadcast(b, "op")
        cancelled = broadcast(app, every7, areas=("C2",)) if w["cancel_at"] else None
        emergency_at = (
            None if w["emergency_at"] is None else T0 + timedelta(minutes=w["emergency_at"])
        )
        emergency = None
        if emergency_at is not None:
            emergency = broadcast(
                app,
                ScheduleSpec.once(emergency_at, duration_s=60, misfire_grace_s=86_400),
                areas=("C2",),
                priority=Priority.EMERGENCY,
            )
        end = T0 + timedelta(hours=4)
        tail = end + timedelta(minutes=30)  # the last segment runs on so that lanes drain
        crash_at = {
            T0 + timedelta(minutes=c): a for c, a in zip(w["crashes"], w["abrupt"], strict=True)
        }
        cancel_at = None if cancelled is None else T0 + timedelta(minutes=w["cancel_at"])
        bounds = sorted({T0, tail, *crash_at, *([cancel_at] if cancel_at else [])})

        async def segment(a: SourceSystem, start: datetime, stop: datetime, crash: bool) -> None:
            h = Harness(a, start=start)
            await h.start()
            await h.scheduler.run_until(stop, flush=not crash)
            if crash:  # die: lanes and unflushed outcomes are lost, queued commits are not
                assert h.scheduler.writer is not None
                h.scheduler.writer.close()
            else:
                await h.stop()

        for start, stop in itertools.pairwise(bounds):
            run(segment(SourceSystem(db), start, stop, crash_at.get(stop, False)))
            if stop == cancel_at and cancelled is not None:
                SourceSystem(db).cancel_broadcast(cancelled, "thay đổi kế hoạch", "op")
        final = SourceSystem(db)
        for b in never:
            assert dispatches_of(final, b) == [], "an unapproved broadcast was dispatched"
        if cancelled is not None and cancel_at is not None:
            assert all(o <= cancel_at for o in dispatches_of(final, cancelled))
        if emergency is not None and emergency_at is not None:
            assert dispatches_of(final, emergency) == [emergency_at]
            d = final.dispatch_of(emergency, emergency_at)
            assert d is not None
            (o,) = (d.outcome(UUID(k)) for k in d.device_ids)
            assert o is not None and o.status is OutcomeStatus.DELIVERED
            # It cut in at its instant. If the segment it fired in ended in an abrupt crash, its
            # outcome was lost and it was delivered again (same key) at the restart instant.
            # Consecutive abrupt crashes lose it again each time: the last restart counts.
            expected_at = emergency_at
            for b in (b for b in bounds if b >= emergency_at and b != T0):
                if not crash_at.get(b, False):
                    break
                expected_at = b
            assert o.at == expected_at, "the emergency did not cut in at its instant"
        for b, spec in zip(ids, specs, strict=True):
            first = T0 if spec.cron else T0 - timedelta(seconds=spec.misfire_grace_s)
            window = (first, tail + timedelta(seconds=1))
            expected = list(occurrences(spec, *window))
            expected = [o for o in expected if o <= tail]
            fired = dispatches_of(final, b)
            assert fired == sorted(set(fired)), "an occurrence was dispatched twice"
            # No crash gap exceeds a grace here (each segment starts where the last stopped),
            # so every occurrence must fire.
            assert fired == expected
            for occ in (o for o in fired if o <= end):
                d = final.dispatch_of(b, occ)
                assert d is not None
                assert d.completed_at is not None and d.pending() == []
                (outcome,) = (d.outcome(UUID(k)) for k in d.device_ids)
                assert outcome is not None
                # Delivered, unless its validity ended first: the speaker was busy with other
                # items, or its outcome was lost in an abrupt crash and it was then too late.
                assert outcome.status is OutcomeStatus.DELIVERED or (
                    "validity ended" in outcome.reason
                ), outcome.reason


def test_broadcast_approved_while_running_is_taken_once() -> None:
    """A bulletin drafted, submitted and approved while the scheduler runs is taken and fired
    once (three changes seen before the loop wakes are one look, not three takes)."""
    app = make_app()

    async def go() -> Harness:
        h = Harness(app)
        await h.start()
        await h.run(T0)
        b = broadcast(app, ScheduleSpec.once(T0 + timedelta(minutes=1), duration_s=30))
        await h.run(T0 + timedelta(minutes=5))
        await h.stop()
        assert dispatches_of(app, b) == [T0 + timedelta(minutes=1)]
        return h

    h = run(go())
    assert h.scheduler.stats.dispatches == 1


def test_outcomes_survive_another_writer_saving_the_same_dispatch() -> None:
    """When another writer (an SMS delivery report, a former owner) saves the Dispatch between
    the deliveries and the flush, the scheduler reloads and records the rest, keeping the other
    writer's final outcome, and completes the dispatch instead of leaving it for a restart."""
    app = make_app()
    at = T0 + timedelta(minutes=5)
    b = broadcast(app, ScheduleSpec.once(at, duration_s=60))
    h = Harness(app)
    s1 = device(app, "s1")

    async def go() -> None:
        await h.start()
        await h.scheduler.run_until(at + timedelta(minutes=5), flush=False)
        d = app.dispatch_of(b, at)
        assert d is not None and d.pending()  # the outcomes are still buffered
        # The other writer records s1 first (a different final outcome, to tell them apart).
        app.record_outcomes(d.id, [DeliveryOutcome(s1, "failed", at, "reported by a peer")])
        await h.scheduler.run_until(at + timedelta(minutes=6))
        await h.stop()

    run(go())
    d = app.dispatch_of(b, at)
    assert d is not None
    assert d.pending() == []
    assert d.completed_at is not None
    counts = d.counts()
    assert counts["failed"] == 1 and counts["delivered"] == 2
