"""The scheduler: approved broadcasts in, Dispatches and deliveries out.

- One timer entry per active schedule (never one per device) in a heap keyed by the next instant.
- At an instant: resolve the targets *as of that instant* (area subtree → devices), create the
  Dispatch (deterministic id, so a second worker or a restart cannot fire it twice), then offer an
  item to each device's lane. The event store is not touched per device: Dispatches are saved by
  the group-commit writer, outcomes in batches.
- Lanes: one item at a time per device. ``emergency`` items whose preemption says ``cut_in=now``
  stop what plays (which is then resumed, restarted or dropped as *its* preemption says); higher
  priority goes ahead of lower; equal ``priority`` items follow the commune's clash rule.
- Misfires: an occurrence later than its grace period is missed; missed recurrences are coalesced
  into one firing or skipped, per schedule.
- Recovery: everything is rebuilt from the event store on start. Dispatches started but not
  completed are resumed for devices without a final outcome, with the same idempotency keys.
- The clock is a parameter: a ``VirtualClock`` is stepped with ``run_until`` (a day in seconds).
- Cluster mode: an ``Ownership`` says which broadcasts this scheduler may fire (the partitions its
  worker leases). It is asked again at the instant of firing and, as a fence, in the writer thread
  just before a Dispatch is saved; ``adopt`` rebuilds a gained partition from the store and
  ``drop`` forgets a lost one. A Dispatch another worker saved first is "someone else fired it".
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import attrs

from tcs_core.app import SYSTEM, SourceSystem
from tcs_core.domain.broadcast import Broadcast
from tcs_core.domain.dispatch import Dispatch
from tcs_core.domain.values import (
    Channel,
    ContentVariant,
    CutIn,
    DeliveryOutcome,
    Interrupted,
    OutcomeStatus,
    Preemption,
    Priority,
    ScheduleKind,
    ScheduleSpec,
    Targets,
)
from tcs_core.errors import AlreadyExists, DispatchExists, TcsError, ValidationError
from tcs_core.projections import BroadcastView, DeviceView
from tcs_core.schedule import next_occurrence
from tcs_core.scheduler.clock import Clock, RealClock
from tcs_core.scheduler.writer import GroupCommitWriter
from tcs_core.transport import (
    DeliveryContext,
    DeviceTarget,
    Outcome,
    Transport,
    TransportRegistry,
    delivery_key,
)

__all__ = ["ClashRule", "Ownership", "Scheduler", "SchedulerConfig", "SchedulerStats"]

log = logging.getLogger("tcs_core.scheduler")
_DELIVERABLE = ("approved", "scheduled", "expired")
_TINY = timedelta(microseconds=1)


class Ownership(Protocol):
    """Which broadcasts a scheduler may fire (cluster mode: the partitions its worker leases).

    ``owns`` is asked on the event loop (planning, firing, lanes); ``may_fire`` is asked in the
    writer thread just before a Dispatch is saved, the last moment a lost lease can stop it."""

    def owns(self, broadcast_id: UUID) -> bool:
        """Whether this scheduler may plan and fire ``broadcast_id`` now."""
        ...

    def may_fire(self, broadcast_id: UUID, occurrence: datetime) -> bool:
        """Whether the Dispatch of this occurrence may be saved now (the fence)."""
        ...


class _Fenced(Exception):
    """The worker lost the broadcast's partition before the Dispatch was saved."""


# Attempts to write outcomes when other writers keep saving the same Dispatch.
_RECORD_ATTEMPTS = 20


class ClashRule(enum.StrEnum):
    """How a commune orders two ``priority`` items that clash (TT 39/2020: the commune decides)."""

    FIRST_COME = "first_come"
    LATEST_FIRST = "latest_first"


@attrs.frozen
class SchedulerConfig:
    """Tuning and policy; every field has a sane default."""

    outcome_batch: int = 500
    outcome_flush_s: float = 0.25
    retry_base_s: float = 2.0
    retry_cap_s: float = 60.0
    max_attempts: int = 8
    writer_batch: int = 5000
    clash_rules: Mapping[UUID, ClashRule] = attrs.field(factory=dict)
    default_clash_rule: ClashRule = ClashRule.FIRST_COME

    def __attrs_post_init__(self) -> None:
        if self.outcome_batch < 1 or self.writer_batch < 1 or self.max_attempts < 1:
            raise ValidationError("scheduler", "batch sizes and attempts must be at least 1")
        if self.retry_base_s <= 0 or self.retry_cap_s < self.retry_base_s:
            raise ValidationError("scheduler", "need 0 < retry_base_s <= retry_cap_s")


@attrs.define
class SchedulerStats:
    """Counters for summaries and benchmarks."""

    dispatches: int = 0
    duplicates: int = 0
    deliveries: int = 0
    delivered: int = 0
    failed: int = 0
    retries: int = 0
    preemptions: int = 0
    misfires: int = 0
    coalesced: int = 0
    resumed_dispatches: int = 0
    expired_items: int = 0
    unmatched: int = 0
    store_errors: int = 0  # Dispatches that could not be saved (not conflicts)
    fenced: int = 0  # firings stopped because the partition's lease was lost (cluster mode)


@attrs.define
class _Plan:
    broadcast_id: UUID
    spec: ScheduleSpec
    priority: Priority
    preemption: Preemption
    content: dict[Channel, ContentVariant]
    targets: Targets
    area_ids: tuple[UUID, ...]
    cursor: datetime  # occurrences strictly after this are still to come
    gen: int = 0


@attrs.define(eq=False)
class _Item:
    dispatch_id: UUID
    broadcast_id: UUID
    device: DeviceView
    content: ContentVariant
    priority: Priority
    preemption: Preemption
    occurrence: datetime
    duration_s: float
    deadline: datetime
    seq: int
    remaining_s: float
    attempt: int = 1
    plays: int = 0  # how many times it started (resumptions get fresh keys)
    recorded: bool = False  # a final outcome was recorded for this device
    resumed: bool = False  # offered again after a restart

    @property
    def rank(self) -> int:
        return self.priority.rank


@attrs.define(eq=False)
class _Lane:
    device_id: UUID
    current: _Item | None = None
    ends_at: datetime | None = None
    queue: list[tuple[int, int, _Item]] = attrs.field(factory=list)
    gen: int = 0


@attrs.define(eq=False)
class _Open:
    """A dispatch this process is delivering."""

    dispatch: Dispatch
    remaining: int  # devices without a final outcome
    buffer: list[DeliveryOutcome] = attrs.field(factory=list)
    preempted: dict[UUID, list[UUID]] = attrs.field(factory=dict)  # by dispatch → devices


def _saving(aggregate: Dispatch) -> Any:
    """A writer command that saves one new aggregate."""

    def command() -> Sequence[Dispatch]:
        return [aggregate]

    return command


def _saving_if(aggregate: Dispatch, ownership: Ownership) -> Any:
    """As ``_saving``, but only while the worker still holds the broadcast's partition."""

    def command() -> Sequence[Dispatch]:
        if not ownership.may_fire(aggregate.broadcast_id, aggregate.occurrence):
            raise _Fenced(aggregate.id)
        return [aggregate]

    return command


class Scheduler:
    """Turns approved broadcasts into Dispatches and deliveries (see the module docstring)."""

    def __init__(
        self,
        app: SourceSystem,
        transports: Iterable[Transport] | TransportRegistry,
        clock: Clock | None = None,
        config: SchedulerConfig | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        self.app = app
        self.ownership = ownership
        self.transports = (
            transports
            if isinstance(transports, TransportRegistry)
            else TransportRegistry(transports)
        )
        self.clock: Clock = clock if clock is not None else RealClock()
        self.config = config or SchedulerConfig()
        self.stats = SchedulerStats()
        self.writer: GroupCommitWriter | None = None
        self._heap: list[tuple[datetime, int, str, Any]] = []
        self._seq = itertools.count()
        self._plans: dict[UUID, _Plan] = {}
        self._lanes: dict[UUID, _Lane] = {}
        self._open: dict[UUID, _Open] = {}
        self._changes: deque[UUID] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._runner: asyncio.Task[None] | None = None
        # Broadcasts loaded by _take, reused to record their expiry without reloading them.
        self._aggregates: dict[UUID, Broadcast] = {}
        self._expiring: list[UUID] = []

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open transports, rebuild from the store, and (on a real clock) start the loop."""
        self._loop = asyncio.get_running_loop()
        self.writer = GroupCommitWriter(self.app, self.config.writer_batch)
        for t in self.transports:
            self._limits[t.name] = asyncio.Semaphore(t.limits.concurrency)
            await t.open()
        self.app.broadcasts.listeners.append(self._on_broadcast_change)
        self.app.refresh()
        await self._rebuild()
        self._running = True
        if not self.clock.virtual:
            self._runner = asyncio.create_task(self._run_real(), name="tcs-scheduler")

    async def stop(self) -> None:
        """Flush outcomes, stop the loop and the writer, close transports. Lanes are dropped:
        a restart resumes unfinished dispatches from the store."""
        self._running = False
        self._wake.set()
        if self._runner is not None:
            await self._runner
            self._runner = None
        await self._drain()
        await self._flush(force=True)
        pending = [b for _, _, kind, ref in self._heap if kind == "expire" for b in ref]
        pending += self._expiring
        if pending and self.writer is not None:
            await self._expire_many(pending)
        if self._on_broadcast_change in self.app.broadcasts.listeners:
            self.app.broadcasts.listeners.remove(self._on_broadcast_change)
        if self.writer is not None:
            self.writer.close()
        for t in self.transports:
            await t.close()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_broadcast_change(self, view: BroadcastView) -> None:
        # Called in whichever thread saved the event: only hand the id over.
        self._changes.append(view.broadcast_id)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def _mine(self, broadcast_id: UUID) -> bool:
        return self.ownership is None or self.ownership.owns(broadcast_id)

    @property
    def pending_timers(self) -> int:
        """Entries in the timer heap (schedules, lane ends and retries)."""
        return len(self._heap)

    # -- rebuild -------------------------------------------------------------------------------

    async def _rebuild(self, which: Callable[[UUID], bool] = lambda _: True) -> None:
        """Plan the broadcasts ``which`` selects (that this scheduler owns) from the read models,
        take the approved ones, and resume their unfinished dispatches."""
        now = self.clock.now()
        to_take = []
        for view in self.app.broadcasts.live():
            bid = view.broadcast_id
            if not which(bid) or not self._mine(bid):
                continue
            if view.status == "approved":
                to_take.append(bid)
            else:
                self._plan(view)
        if to_take:
            await self._take(to_take, now)
        unfinished = [
            (dispatch_id, broadcast_id)
            for dispatch_id, broadcast_id in list(self.app.dispatches.open.items())
            if which(broadcast_id) and self._mine(broadcast_id) and dispatch_id not in self._open
        ]
        # Read them off the event loop: a partition may hold thousands of unfinished dispatches.
        get = self.app.repository.get
        loaded: list[Any] = await asyncio.to_thread(lambda: [get(did) for did, _ in unfinished])
        for (dispatch_id, broadcast_id), d in zip(unfinished, loaded, strict=True):
            if self._mine(broadcast_id) and dispatch_id not in self._open:
                await self._resume(dispatch_id, broadcast_id, now, d)

    async def adopt(self, which: Callable[[UUID], bool]) -> int:
        """Rebuild the broadcasts ``which`` selects from the store and plan them (cluster mode:
        a partition gained). Occurrences missed meanwhile go through the misfire policy, and
        their unfinished dispatches are resumed. Returns how many broadcasts were planned."""
        await asyncio.to_thread(self.app.refresh)
        await self._rebuild(which)
        self._wake.set()
        return sum(1 for bid in self._plans if which(bid))

    def drop(self, which: Callable[[UUID], bool]) -> int:
        """Stop firing the broadcasts ``which`` selects, at once (cluster mode: a partition
        lost). Their timers and unfinished dispatches are forgotten; outcomes not yet written
        are left to the new owner, which resumes those devices with the same idempotency keys.
        Returns how many plans were dropped."""
        dropped = [bid for bid in self._plans if which(bid)]
        for bid in dropped:
            self._plans.pop(bid).gen += 1  # stale heap entries are ignored
        for did, opened in list(self._open.items()):
            if which(opened.dispatch.broadcast_id):
                del self._open[did]
        for bid in [b for b in self._aggregates if which(b)]:
            del self._aggregates[bid]
        return len(dropped)

    async def flush(self) -> None:
        """Write the outcomes buffered so far (e.g. before handing a partition over)."""
        await self._flush()

    async def _take(self, broadcast_ids: Sequence[UUID], at: datetime) -> None:
        """Mark approved broadcasts as scheduled (one transaction) and plan them."""
        assert self.writer is not None

        def command() -> Sequence[Broadcast]:
            out = []
            for bid in broadcast_ids:
                if not self._mine(bid):  # the partition was lost meanwhile (cluster mode)
                    continue
                b: Any = self.app.repository.get(bid)
                if isinstance(b, Broadcast) and b.status.value == "approved":
                    b.mark_scheduled(at, str(SYSTEM))
                    out.append(b)
            return out

        try:
            taken = await self.writer.run(command)
        except AlreadyExists:
            # Another worker took (or changed) one of them meanwhile: see what it recorded, then
            # take whichever are still approved.
            await asyncio.to_thread(self.app.refresh)
            taken = await self.writer.run(command)
        for b in taken:
            if isinstance(b, Broadcast):
                self._aggregates[b.id] = b
        for bid in broadcast_ids:
            view = self.app.broadcasts.get(bid)
            if view is not None and view.status == "scheduled":
                self._plan(view)

    def _plan(self, view: BroadcastView) -> None:
        plan = self._make_plan(view)
        self._plans[view.broadcast_id] = plan
        self._arm(plan)

    def _make_plan(self, view: BroadcastView) -> _Plan:
        f = view.fields
        spec: ScheduleSpec = f["schedule"]
        # Recurrences count from the instant the scheduler took the broadcast; an explicit instant
        # that passed less than its grace before then still fires (an urgent item approved late).
        start = view.scheduled_at or self.clock.now()
        if spec.kind is not ScheduleKind.CRON:
            start -= timedelta(seconds=spec.misfire_grace_s)
        last = self.app.dispatches.last_occurrence.get(view.broadcast_id)
        cursor = max(start - _TINY, last) if last is not None else start - _TINY
        old = self._plans.get(view.broadcast_id)
        return _Plan(
            view.broadcast_id,
            spec,
            Priority(f["priority"]),
            f["preemption"],
            dict(f["content"]),
            f["targets"],
            tuple(f["target_area_ids"]),
            cursor,
            gen=(old.gen + 1) if old else 0,
        )

    def _arm(self, plan: _Plan) -> None:
        nxt = next_occurrence(plan.spec, plan.cursor)
        if nxt is None:
            self._expire(plan)
            return
        heapq.heappush(self._heap, (nxt, next(self._seq), "fire", (plan.broadcast_id, plan.gen)))

    def _expire(self, plan: _Plan) -> None:
        """No occurrence left: record the expiry after this instant's dispatches, in bulk."""
        self._plans.pop(plan.broadcast_id, None)
        if self.writer is not None:
            self._expiring.append(plan.broadcast_id)

    async def _expire_many(self, broadcast_ids: Sequence[UUID]) -> None:
        assert self.writer is not None

        def command(cached: bool) -> Any:
            def run() -> Sequence[Broadcast]:
                out = []
                for bid in broadcast_ids:
                    b: Any = self._aggregates.pop(bid, None) if cached else None
                    if b is None:
                        b = self.app.repository.get(bid)
                    if isinstance(b, Broadcast) and b.is_live:
                        b.expire(str(SYSTEM))
                        out.append(b)
                return out

            return run

        try:
            await self.writer.run(command(True))
        except AlreadyExists:  # a cached copy was stale (changed meanwhile): reload and retry
            await self.writer.run(command(False))

    def _apply_changes(self) -> list[UUID]:
        take: list[UUID] = []
        seen: set[UUID] = set()
        while self._changes:
            bid = self._changes.popleft()
            if bid in seen:  # drafted, submitted, approved before the loop woke: one look
                continue
            seen.add(bid)
            if not self._mine(bid):  # another worker's partition
                plan = self._plans.pop(bid, None)
                if plan is not None:
                    plan.gen += 1
                self._aggregates.pop(bid, None)
                continue
            view = self.app.broadcasts.get(bid)
            if view is None:
                continue
            if view.status != "scheduled":
                self._aggregates.pop(bid, None)  # changed elsewhere: reload when needed
            if view.status == "approved":
                take.append(bid)
            elif (
                view.status == "scheduled" and bid not in self._plans and self.ownership is not None
            ):
                # Taken by the worker that held its partition before (cluster mode): plan it.
                self._plan(view)
            elif view.status in ("cancelled", "expired", "rejected", "drafted", "submitted"):
                plan = self._plans.pop(bid, None)
                if plan is not None:
                    plan.gen += 1  # stale heap entries are ignored
        return take

    # -- the loop ------------------------------------------------------------------------------

    async def _run_real(self) -> None:
        assert isinstance(self.clock, RealClock)
        next_flush = self.clock.now()
        while self._running:
            self._wake.clear()
            take = self._apply_changes()
            if take:
                try:
                    await self._take(take, self.clock.now())
                except Exception:  # the store is away or busy: look again at the next wake-up
                    log.warning("could not take %d approved broadcast(s)", len(take), exc_info=True)
                    self._changes.extend(take)
            now = self.clock.now()
            self._process_due(now)
            if now >= next_flush:
                await self._flush()
                next_flush = now + timedelta(seconds=self.config.outcome_flush_s)
            wake_at = next_flush
            if self._heap and self._heap[0][0] < wake_at:
                wake_at = self._heap[0][0]
            await self.clock.sleep_until(wake_at, self._wake)

    async def run_until(self, end: datetime, *, flush: bool = True) -> None:
        """Step a virtual clock to ``end``, processing every timer on the way, in order.

        ``flush=False`` leaves the last outcomes buffered (tests use it to simulate a crash)."""
        if not self.clock.virtual:
            raise TcsError("run_until needs a VirtualClock; a real clock runs by itself")
        set_time = self.clock.set  # type: ignore[attr-defined]
        while True:
            # Finish everything due at the current instant before time moves on (work spawned
            # by start() or by the last step would otherwise run "later" on the virtual clock).
            await self._drain()
            take = self._apply_changes()
            if take:
                await self._take(take, self.clock.now())
                continue
            if not self._heap or self._heap[0][0] > end:
                break
            set_time(self._heap[0][0])  # never backwards: overdue timers run "now", late
            self._process_due(self.clock.now())
            await self._drain()
            if sum(len(o.buffer) for o in self._open.values()) >= self.config.outcome_batch:
                await self._flush()
        set_time(end)
        await self._drain()
        if flush:
            await self._flush(force=True)

    async def _drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task failed", exc_info=task.exception())

    def _process_due(self, now: datetime) -> None:
        fires: list[tuple[_Plan, list[datetime]]] = []
        while self._heap and self._heap[0][0] <= now:
            t, _, kind, ref = heapq.heappop(self._heap)
            if kind == "fire":
                bid, gen = ref
                plan = self._plans.get(bid)
                if plan is None or plan.gen != gen:
                    continue
                if not self._mine(bid):  # the partition was lost: stop firing it at once
                    self._plans.pop(bid, None)
                    plan.gen += 1
                    self.stats.fenced += 1
                    continue
                occurrences = self._due_occurrences(plan, t, now)
                if occurrences:
                    fires.append((plan, occurrences))
                self._arm(plan)
            elif kind == "lane":
                device_id, gen = ref
                lane = self._lanes.get(device_id)
                if lane is not None and lane.gen == gen:
                    self._lane_next(lane, now)
            elif kind == "retry":
                item: _Item = ref
                self._offer(item, now)
            elif kind == "expire":
                self._spawn(self._expire_many(ref))
        if fires:
            self._spawn(self._fire_all(fires, now))
        if self._expiring:
            # Bookkeeping, off the firing path: recorded a second later, in one transaction.
            heapq.heappush(
                self._heap, (now + timedelta(seconds=1), next(self._seq), "expire", self._expiring)
            )
            self._expiring = []

    def _due_occurrences(self, plan: _Plan, first: datetime, now: datetime) -> list[datetime]:
        """Occurrences up to ``now`` from ``first``, after the misfire policy; moves the cursor."""
        grace = timedelta(seconds=plan.spec.misfire_grace_s)
        on_time: list[datetime] = []
        missed: list[datetime] = []
        o: datetime | None = first
        while o is not None and o <= now:
            (on_time if now - o <= grace else missed).append(o)
            plan.cursor = o
            o = next_occurrence(plan.spec, o)
        if missed:
            self.stats.misfires += len(missed)
            if plan.spec.coalesce and not on_time:
                self.stats.coalesced += len(missed) - 1
                on_time = [missed[-1]]
        return on_time

    # -- firing --------------------------------------------------------------------------------

    def _resolve(self, plan: _Plan, occurrence: datetime) -> tuple[list[DeviceView], list[UUID]]:
        return self.app.resolve_targets(plan.targets, plan.area_ids, occurrence)

    async def _fire_all(self, fires: list[tuple[_Plan, list[datetime]]], now: datetime) -> None:
        assert self.writer is not None
        jobs = []
        for plan, occurrences in fires:
            for occ in occurrences:
                devices, unmatched = self._resolve(plan, occ)
                dispatch = Dispatch(
                    **Dispatch.start_args(
                        plan.broadcast_id,
                        occ,
                        plan.priority,
                        [d.device_id for d in devices],
                        unmatched,
                    ),
                    actor=str(SYSTEM),
                )
                jobs.append((plan, occ, devices, dispatch))
        own = self.ownership
        saving = [_saving(d) if own is None else _saving_if(d, own) for _, _, _, d in jobs]
        results = await self.writer.run_many(saving)
        for (plan, occ, devices, dispatch), result in zip(jobs, results, strict=True):
            if isinstance(result, DispatchExists):  # someone else fired it: not an error
                self.stats.duplicates += 1
                if self.ownership is not None:
                    self._spawn(self._finish_theirs(dispatch.id, plan.broadcast_id))
                continue
            if isinstance(result, _Fenced):
                self.stats.fenced += 1
                continue
            if isinstance(result, BaseException):
                self.stats.store_errors += 1  # a cluster worker re-adopts from the store
                log.error("could not start dispatch %s", dispatch.id, exc_info=result)
                continue
            self.stats.dispatches += 1
            self.stats.unmatched += len(dispatch.unmatched)
            self._open[dispatch.id] = _Open(dispatch, len(devices))
            if not devices:
                self._spawn(self._complete(dispatch.id))
                continue
            self._deliver_to(plan, dispatch, occ, devices, self.clock.now())

    def _deliver_to(
        self,
        plan: _Plan,
        dispatch: Dispatch,
        occurrence: datetime,
        devices: Sequence[DeviceView],
        now: datetime,
        resumed: bool = False,
    ) -> None:
        spec = plan.spec
        deadline = occurrence + timedelta(seconds=max(spec.misfire_grace_s, spec.duration_s))
        if spec.valid_until is not None:
            deadline = min(deadline, spec.valid_until)
        for d in devices:
            content = next((plan.content[c] for c in d.channels if c in plan.content), None)
            if content is None:  # cannot happen for a targeted device; kept as a guard
                continue
            item = _Item(
                dispatch.id,
                plan.broadcast_id,
                d,
                content,
                plan.priority,
                plan.preemption,
                occurrence,
                float(spec.duration_s),
                deadline,
                next(self._seq),
                float(spec.duration_s),
                resumed=resumed,
            )
            self._offer(item, now)

    # -- lanes ---------------------------------------------------------------------------------

    def _lane(self, device_id: UUID) -> _Lane:
        lane = self._lanes.get(device_id)
        if lane is None:
            lane = self._lanes[device_id] = _Lane(device_id)
        return lane

    def _offer(self, item: _Item, now: datetime) -> None:
        if not self._item_still_valid(item, now):
            return
        lane = self._lane(item.device.device_id)
        if lane.current is not None and lane.ends_at is not None and lane.ends_at <= now:
            lane.current = lane.ends_at = None
        cur = lane.current
        if cur is None:
            self._start(lane, item, now)
        elif item.rank > cur.rank and item.preemption.cut_in is CutIn.NOW:
            self._preempt(lane, item, now)
        else:
            self._enqueue(lane, item)

    def _enqueue(self, lane: _Lane, item: _Item) -> None:
        order = item.seq
        if item.priority is Priority.PRIORITY:
            rule = self.config.clash_rules.get(item.device.area_id, self.config.default_clash_rule)
            if rule is ClashRule.LATEST_FIRST:
                order = -item.seq
        heapq.heappush(lane.queue, (-item.rank, order, item))
        if lane.ends_at is not None:
            lane.gen += 1
            heapq.heappush(
                self._heap, (lane.ends_at, next(self._seq), "lane", (lane.device_id, lane.gen))
            )

    def _lane_next(self, lane: _Lane, now: datetime) -> None:
        if lane.ends_at is not None and lane.ends_at > now:
            return
        lane.current = lane.ends_at = None
        while lane.queue:
            _, _, item = heapq.heappop(lane.queue)
            if self._item_still_valid(item, now):
                self._start(lane, item, now)
                return

    def _item_still_valid(self, item: _Item, now: datetime) -> bool:
        if not self._mine(item.broadcast_id):
            return False  # the partition's new owner resumes this device (same key)
        view = self.app.broadcasts.get(item.broadcast_id)
        # Expired means "no further occurrences": items already dispatched still play.
        if view is None or view.status not in _DELIVERABLE:
            status = view.status if view else "gone"
            self._final(item, Outcome.failed(f"not played: the broadcast is {status}"))
            return False
        if now > item.deadline:
            self.stats.expired_items += 1
            why = (
                "the scheduler was down" if item.resumed else "the device was busy with other items"
            )
            self._final(
                item,
                Outcome.failed(
                    f"not played: its validity ended at {item.deadline.isoformat()} ({why})"
                ),
            )
            return False
        return True

    def _start(self, lane: _Lane, item: _Item, now: datetime) -> None:
        lane.current = item
        lane.ends_at = now + timedelta(seconds=item.remaining_s)
        lane.gen += 1
        if lane.queue:
            heapq.heappush(
                self._heap, (lane.ends_at, next(self._seq), "lane", (lane.device_id, lane.gen))
            )
        item.plays += 1
        self._spawn(self._deliver(lane, item, now))

    def _preempt(self, lane: _Lane, item: _Item, now: datetime) -> None:
        cur = lane.current
        assert cur is not None and lane.ends_at is not None
        self.stats.preemptions += 1
        transport = self.transports.get(cur.device.transport)
        if transport is not None:
            self._spawn(self._call_preempt(transport, cur.device))
        opened = self._open.get(cur.dispatch_id)
        if opened is not None:
            opened.preempted.setdefault(item.dispatch_id, []).append(cur.device.device_id)
        policy = cur.preemption.interrupted
        if policy is Interrupted.RESUME:
            cur.remaining_s = max(0.0, (lane.ends_at - now).total_seconds())
        elif policy is Interrupted.RESTART:
            cur.remaining_s = cur.duration_s
        lane.current = lane.ends_at = None
        self._start(lane, item, now)
        if policy is not Interrupted.DROP and cur.remaining_s > 0:
            self._enqueue(lane, cur)

    async def _call_preempt(self, transport: Transport, device: DeviceView) -> None:
        try:
            await asyncio.wait_for(
                transport.preempt(self._target(device)), transport.limits.timeout_s
            )
        except Exception:  # a transport must not break the engine
            log.exception("preempt failed on %s", device.name)

    @staticmethod
    def _target(d: DeviceView) -> DeviceTarget:
        return DeviceTarget(d.device_id, d.name, d.kind, d.address, dict(d.settings), d.channels)

    async def _deliver(self, lane: _Lane, item: _Item, started: datetime) -> None:
        d = item.device
        transport = self.transports.get(d.transport)
        if transport is None:
            self._final(
                item,
                Outcome.failed(
                    f"no transport named {d.transport!r} is registered with the scheduler"
                ),
            )
            self._release(lane, item)
            return
        key = delivery_key(item.dispatch_id, d.device_id)
        if item.plays > 1:
            key = f"{key}.{item.plays}"  # a resumed play is a new play
        context = DeliveryContext(
            item.dispatch_id,
            item.broadcast_id,
            item.occurrence,
            item.priority,
            item.preemption,
            item.remaining_s,
            item.deadline,
            item.attempt,
        )
        self.stats.deliveries += 1
        async with self._limits[transport.name]:
            try:
                async with asyncio.timeout(transport.limits.timeout_s):
                    outcome = await transport.deliver(self._target(d), item.content, key, context)
                if not isinstance(outcome, Outcome):
                    outcome = Outcome.failed(f"transport returned {type(outcome).__name__}")
            except TimeoutError:
                outcome = Outcome.retryable(f"no answer within {transport.limits.timeout_s:g} s")
            except Exception as exc:  # outcomes are values: a raising transport is a failure
                outcome = Outcome.failed(f"transport error: {type(exc).__name__}: {exc}")
        if outcome.status is OutcomeStatus.DELIVERED:
            self._final(item, outcome)
            return
        self._release(lane, item)
        if outcome.status is OutcomeStatus.RETRYABLE:
            self._retry(item, outcome)
        else:
            self._final(item, outcome)

    def _release(self, lane: _Lane, item: _Item) -> None:
        """The item is not playing (failed or to be retried): free the lane for the next one."""
        if lane.current is item:
            now = self.clock.now()
            lane.ends_at = now
            self._lane_next(lane, now)

    def _retry(self, item: _Item, outcome: Outcome) -> None:
        now = self.clock.now()
        delay = outcome.retry_after_s or min(
            self.config.retry_cap_s, self.config.retry_base_s * 2 ** (item.attempt - 1)
        )
        at = now + timedelta(seconds=delay)
        if item.attempt >= self.config.max_attempts or at > item.deadline:
            self._final(
                item, Outcome.failed(f"gave up after {item.attempt} attempt(s): {outcome.reason}")
            )
            return
        self.stats.retries += 1
        self._record(item, outcome)
        item.attempt += 1
        heapq.heappush(self._heap, (at, next(self._seq), "retry", item))
        if not self.clock.virtual:
            self._wake.set()

    def _final(self, item: _Item, outcome: Outcome) -> None:
        if item.recorded:
            return  # a resumed play: the device's outcome was recorded on its first play
        item.recorded = True
        if outcome.status is OutcomeStatus.DELIVERED:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
        self._record(item, outcome)
        opened = self._open.get(item.dispatch_id)
        if opened is not None:
            opened.remaining -= 1

    def _record(self, item: _Item, outcome: Outcome) -> None:
        opened = self._open.get(item.dispatch_id)
        if opened is None:
            return
        reason = outcome.reason
        if outcome.status is not OutcomeStatus.DELIVERED and not reason:
            reason = "no reason given"
        opened.buffer.append(
            DeliveryOutcome(item.device.device_id, outcome.status, self.clock.now(), reason)
        )

    # -- writing outcomes ----------------------------------------------------------------------

    async def _flush(self, force: bool = False) -> None:
        """Write buffered outcomes and preemptions (one event per dispatch per flush)."""
        if self.writer is None:
            return
        jobs = []
        specs = []
        for opened in list(self._open.values()):
            if not opened.buffer and not opened.preempted and not (force and opened.remaining == 0):
                continue
            batch, opened.buffer = opened.buffer, []
            preempted, opened.preempted = opened.preempted, {}
            done = opened.remaining == 0
            specs.append((opened, batch, preempted, done))
            jobs.append(self.writer.run(self._outcome_command(opened, batch, preempted, done)))
            if done:
                self._open.pop(opened.dispatch.id, None)
        if jobs:
            results = await asyncio.gather(*jobs, return_exceptions=True)
            for spec, result in zip(specs, results, strict=True):
                if isinstance(result, AlreadyExists):
                    # Another writer (a worker that held the partition before) recorded on this
                    # dispatch meanwhile: reload it and record again.
                    result = await self._record_again(*spec)
                if isinstance(result, BaseException):
                    log.error("could not record outcomes", exc_info=result)

    async def _record_again(
        self,
        opened: _Open,
        batch: list[DeliveryOutcome],
        preempted: dict[UUID, list[UUID]],
        done: bool,
    ) -> Any:
        """Write outcomes after a version conflict: another writer (an SMS delivery report, a
        worker that held the partition before) saved the same Dispatch meanwhile. Reload it in
        the writer thread, drop what that writer already made final, and write again; repeat
        while conflicts keep coming (bounded), so outcomes are not left for a restart."""
        assert self.writer is not None
        dispatch_id = opened.dispatch.id
        last: BaseException | None = None
        for attempt in range(_RECORD_ATTEMPTS):

            def command() -> Sequence[Dispatch]:
                fresh: Dispatch = self.app.repository.get(dispatch_id)
                opened.dispatch = fresh
                still_open = set(fresh.pending())
                todo = [o for o in batch if o.device_id in still_open]
                if not todo and not preempted and not (done and fresh.completed_at is None):
                    return []
                written: Sequence[Dispatch] = self._outcome_command(opened, todo, preempted, done)()
                return written

            try:
                return await self.writer.run(command)
            except AlreadyExists as exc:
                last = exc
                await asyncio.sleep(0.01 * (attempt + 1))
            except Exception as exc:  # reported by the caller
                return exc
        return last

    def _outcome_command(
        self,
        opened: _Open,
        batch: list[DeliveryOutcome],
        preempted: dict[UUID, list[UUID]],
        done: bool,
    ) -> Any:
        d = opened.dispatch
        at = self.clock.now()

        def command() -> Sequence[Dispatch]:
            latest: dict[UUID, DeliveryOutcome] = {}
            for o in batch:  # several attempts in one flush: the last one counts
                latest[o.device_id] = o
            if latest:
                d.record_outcomes(list(latest.values()), str(SYSTEM))
            for by, devices in preempted.items():
                d.preempt(devices, by, str(SYSTEM))
            if done and d.completed_at is None:
                d.complete(at, str(SYSTEM))
            return [d]

        return command

    async def _complete(self, dispatch_id: UUID) -> None:
        opened = self._open.pop(dispatch_id, None)
        if opened is not None and self.writer is not None:
            await self.writer.run(self._outcome_command(opened, opened.buffer, {}, True))

    # -- recovery ------------------------------------------------------------------------------

    async def _finish_theirs(self, dispatch_id: UUID, broadcast_id: UUID) -> None:
        """Cluster mode: a worker that has since lost this partition saved the Dispatch first
        (only the owner fires, so the other was a stale owner whose write arrived late). It no
        longer delivers for this partition: deliver what it left unfinished."""
        d: Any = await asyncio.to_thread(self.app.repository.get, dispatch_id)
        if self._mine(broadcast_id) and dispatch_id not in self._open:
            await self._resume(dispatch_id, broadcast_id, self.clock.now(), d)

    async def _resume(
        self, dispatch_id: UUID, broadcast_id: UUID, now: datetime, loaded: Any = None
    ) -> None:
        d: Any = loaded if loaded is not None else self.app.repository.get(dispatch_id)
        if not isinstance(d, Dispatch) or d.completed_at is not None:
            return
        pending = d.pending()
        opened = _Open(d, len(pending))
        self._open[dispatch_id] = opened
        self.stats.resumed_dispatches += 1
        view = self.app.broadcasts.get(broadcast_id)
        devices = [self.app.devices.get(x) for x in pending]
        live = [x for x in devices if x is not None and x.active]
        if view is None or view.status not in _DELIVERABLE:
            reason = f"not played: the broadcast is {view.status if view else 'gone'}"
            for x in pending:
                opened.buffer.append(DeliveryOutcome(x, OutcomeStatus.FAILED, now, reason))
            opened.remaining = 0
            return
        # Devices that left meanwhile get a final failure; the rest are offered again, with the
        # same idempotency keys, unless the item expired while the scheduler was down.
        gone = set(pending) - {x.device_id for x in live}
        for x in gone:
            opened.buffer.append(
                DeliveryOutcome(x, OutcomeStatus.FAILED, now, "device decommissioned meanwhile")
            )
            opened.remaining -= 1
        self._deliver_to(self._make_plan(view), d, d.occurrence, live, now, resumed=True)
