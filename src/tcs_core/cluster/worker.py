"""A cluster worker: the existing ``Scheduler``, restricted to the partitions this worker leases.

Three threads of control, each with one job:

- the **lease thread** renews this worker's leases every ``renew_s`` on a connection of its own
  and takes the partitions the assignment gives it; it never blocks the event loop, and a hang
  there cannot stretch a lease: ownership is a local deadline counted from *before* the last
  renewal was sent, minus a safety margin;
- the **event loop** runs the scheduler and reconciles every 0.1 s: a partition whose lease was
  lost (deadline passed, or renewed by someone else) is dropped at once; one to hand over to a
  newcomer is fenced, its outcomes flushed, then dropped and released; one gained is rebuilt from
  the store (``Scheduler.adopt``) with the misfire policy for what was missed; the notification
  log is read every ``refresh_s`` so the projections follow the other workers' writes;
- the scheduler's **writer thread** asks ``may_fire`` just before each Dispatch is saved: the
  fence. A Dispatch another worker saved first (two workers overlapping during a takeover) fails
  alone with ``DispatchExists``: someone else fired it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TextIO
from uuid import UUID

from eventsourcing.persistence import PersistenceError

from tcs_core.app import SourceSystem
from tcs_core.cluster.leases import ClusterConfig, Heartbeat, LeaseStore, connect
from tcs_core.cluster.partitions import partition_of
from tcs_core.config import Settings
from tcs_core.scheduler import Clock, Scheduler, SchedulerConfig
from tcs_core.transport import Transport

__all__ = ["Worker"]

log = logging.getLogger("tcs_core.cluster")
_TICK_S = 0.1


class Worker:
    """One scheduler process of a cluster sharing a PostgreSQL store."""

    def __init__(
        self,
        settings: Settings,
        transports: Iterable[Transport],
        *,
        config: ClusterConfig | None = None,
        clock: Clock | None = None,
        scheduler_config: SchedulerConfig | None = None,
        worker_id: str | None = None,
        events: TextIO | None = None,
        log_fires: bool = False,
    ) -> None:
        self.settings = settings
        self.config = config or ClusterConfig()
        self.transports = list(transports)
        self.clock = clock
        self.scheduler_config = scheduler_config
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.app: SourceSystem | None = None
        self.scheduler: Scheduler | None = None
        self._events = events
        self._log_fires = log_fires and events is not None  # one line per Dispatch: tests only
        self._events_lock = threading.Lock()
        self._lock = threading.Lock()
        # Written by the lease thread, read everywhere (replaced whole, never mutated).
        self._leased: frozenset[int] = frozenset()
        self._hand_over: frozenset[int] = frozenset()
        self._deadline = 0.0  # time.monotonic() until which the leases are certainly ours
        self._released: set[int] = set()  # handed over by the loop: release in the database
        # Written by the event loop only: partitions whose state the scheduler has rebuilt.
        self._active: frozenset[int] = frozenset()
        self._stopping = threading.Event()
        self._stop_requested: asyncio.Event | None = None
        self._lease_thread: threading.Thread | None = None
        self._store = LeaseStore(settings, self.config)
        self._store_errors_seen = 0
        self.heartbeats = 0
        self.heartbeat_failures = 0

    # -- ownership (the scheduler's Ownership protocol) ---------------------------------------

    def partition(self, broadcast_id: UUID) -> int:
        """The partition of a broadcast in this cluster."""
        return partition_of(broadcast_id, self.config.partitions)

    def owns(self, broadcast_id: UUID) -> bool:
        """Whether this worker may fire ``broadcast_id`` now."""
        p = partition_of(broadcast_id, self.config.partitions)
        return (
            p in self._active
            and p in self._leased
            and p not in self._hand_over
            and time.monotonic() < self._deadline
        )

    def may_fire(self, broadcast_id: UUID, occurrence: datetime) -> bool:
        """The fence, asked in the writer thread just before a Dispatch is saved."""
        ok = self.owns(broadcast_id)
        if ok and self._log_fires:
            self._emit(
                "fire",
                partition=self.partition(broadcast_id),
                broadcast=broadcast_id.hex,
                occurrence=occurrence.isoformat(),
            )
        return ok

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions this worker is firing now."""
        if time.monotonic() >= self._deadline:
            return frozenset()
        return self._active & self._leased - self._hand_over

    # -- events (JSON lines, for tests and operators) ------------------------------------------

    def _emit(self, kind: str, **fields: Any) -> None:
        if self._events is None:
            return
        line = json.dumps({"t": time.time(), "worker": self.worker_id, "ev": kind, **fields})
        with self._events_lock:
            self._events.write(line + "\n")
            self._events.flush()

    # -- the lease thread ----------------------------------------------------------------------

    def _lease_loop(self) -> None:
        conn: Any = None
        ttl = self.config.lease_ttl_s
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                if conn is None:
                    conn = connect(self.settings, timeout_s=max(1.0, self.config.renew_s))
                with self._lock:
                    release = sorted(self._released)
                hb = self._store.heartbeat(
                    conn,
                    self.worker_id,
                    position=self._position(),
                    info=self._info(),
                    release=release,
                )
                self._apply_heartbeat(hb, started + ttl - self.config.safety_s, release)
            except Exception as exc:  # the deadline passes by itself: the loop fences
                self.heartbeat_failures += 1
                log.warning("lease heartbeat failed: %s", exc)
                self._emit("heartbeat_failed", reason=f"{type(exc).__name__}: {exc}"[:200])
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            wait = self.config.renew_s - (time.monotonic() - started)
            self._stopping.wait(max(0.05, wait))
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _apply_heartbeat(self, hb: Heartbeat, deadline: float, released: list[int]) -> None:
        with self._lock:
            self._released.difference_update(released)
            self._leased = hb.held
            self._hand_over = hb.hand_over
            self._deadline = deadline
        self.heartbeats += 1
        if hb.acquired:
            self._emit("leased", partitions=sorted(hb.acquired), live=list(hb.live))

    def _position(self) -> int:
        return self.app.position if self.app is not None else 0

    def _info(self) -> dict[str, Any]:
        s = self.scheduler.stats if self.scheduler is not None else None
        w = self.scheduler.writer if self.scheduler is not None else None
        return {
            "partitions": sorted(self.partitions),
            "dispatches": s.dispatches if s else 0,
            "duplicates": s.duplicates if s else 0,
            "fenced": s.fenced if s else 0,
            "deliveries": s.deliveries if s else 0,
            "store_errors": s.store_errors if s else 0,
            "transactions": w.transactions if w else 0,
            "conflicts": w.conflicts if w else 0,
        }

    # -- the event loop ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask ``run`` to stop gracefully (safe from a signal handler on the loop)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def run(self, until: Callable[[], bool] | None = None) -> None:
        """Join the cluster and schedule until ``request_stop`` (or ``until()`` is true)."""
        self._stop_requested = asyncio.Event()
        conn = await asyncio.to_thread(connect, self.settings)
        try:
            await asyncio.to_thread(self._store.ensure, conn)
        finally:
            conn.close()
        self.app = await asyncio.to_thread(self._open_store)
        self.scheduler = Scheduler(
            self.app, self.transports, self.clock, self.scheduler_config, ownership=self
        )
        await self.scheduler.start()  # owns nothing yet: partitions arrive with their leases
        self._emit("started", partitions=self.config.partitions)
        self._lease_thread = threading.Thread(
            target=self._lease_loop, name="tcs-lease", daemon=True
        )
        self._lease_thread.start()
        refresher: asyncio.Future[None] | None = None
        changer: asyncio.Task[None] | None = None
        next_refresh = time.monotonic()
        try:
            while not self._stop_requested.is_set() and not (until and until()):
                # The fence never waits for the database: a hung refresh or rebuild cannot
                # delay dropping a partition whose lease ran out.
                self._fence()
                if changer is None or changer.done():
                    changer = asyncio.create_task(self._transitions())
                if (refresher is None or refresher.done()) and time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self.config.refresh_s
                    refresher = asyncio.ensure_future(asyncio.to_thread(self._refresh))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), _TICK_S)
        finally:
            if changer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(changer, self.config.lease_ttl_s)
            await self._shutdown()

    def _open_store(self) -> SourceSystem:
        """Open the application, trying again for a while if the store fails to answer (a
        database that is restarting as the workers start; set-up races between workers are
        retried by ``SourceSystem`` itself)."""
        for attempt in range(6):
            try:
                return SourceSystem(self.settings)
            except PersistenceError as exc:
                if attempt == 5:
                    raise
                log.warning("opening the store failed (%s); trying again", exc)
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _refresh(self) -> None:
        assert self.app is not None
        try:
            self.app.refresh()
        except Exception as exc:  # the database is away: the leases will say so
            log.warning("could not read the notification log: %s", exc)

    def _lease_view(self) -> tuple[frozenset[int], frozenset[int], bool]:
        with self._lock:
            leased, hand_over, deadline = self._leased, self._hand_over, self._deadline
        return leased, hand_over, time.monotonic() < deadline

    def _fence(self) -> None:
        """Drop at once every partition whose lease is no longer certainly ours."""
        assert self.scheduler is not None
        leased, _, valid = self._lease_view()
        if self.scheduler.stats.store_errors != self._store_errors_seen:
            # A Dispatch could not be saved (not a conflict): rebuild what we own from the store
            # rather than trust our timers, so the occurrence is fired again (or found fired).
            self._store_errors_seen = self.scheduler.stats.store_errors
            self._drop(self._active, "store_error")
        lost = self._active - (leased if valid else frozenset())
        if lost:
            self._drop(lost, "lost" if not valid else "taken")

    async def _transitions(self) -> None:
        """Hand partitions over to newcomers and rebuild the ones gained."""
        assert self.scheduler is not None
        sch = self.scheduler
        leased, hand_over, valid = self._lease_view()
        if not valid:
            return
        handing = self._active & hand_over
        if handing:
            self._active = self._active - handing  # fenced at once; then flush and let go
            with contextlib.suppress(Exception):
                await sch.flush()
            self._drop(handing, "handed_over", already_fenced=True)
            with self._lock:
                self._released |= handing
        gained = (leased - hand_over) - self._active
        if not gained:
            return
        self._active = self._active | gained
        which = self._selector(gained)
        try:
            planned = await sch.adopt(which)
        except Exception as exc:  # the store is away: try again at the next tick
            log.warning("could not rebuild partitions %s: %s", sorted(gained), exc)
            self._active = self._active - gained
            sch.drop(which)
            return
        # The projections and plans are long-lived: keep the cyclic GC from walking them again
        # and again in the middle of a burst (it halved P1's rate on a 10,000-broadcast store).
        gc.freeze()
        self._emit(
            "acquired", partitions=sorted(gained), planned=planned, position=self._position()
        )

    def _selector(self, partitions: frozenset[int]) -> Callable[[UUID], bool]:
        n = self.config.partitions
        return lambda bid: partition_of(bid, n) in partitions

    def _drop(self, partitions: frozenset[int], why: str, already_fenced: bool = False) -> None:
        assert self.scheduler is not None
        if not already_fenced:
            self._active = self._active - partitions
        dropped = self.scheduler.drop(self._selector(partitions))
        self._emit("dropped", partitions=sorted(partitions), why=why, plans=dropped)

    async def _shutdown(self) -> None:
        sch = self.scheduler
        self._emit("stopping", **self._info())
        if sch is not None:
            with contextlib.suppress(Exception):
                await sch.flush()
            self._drop(self._active, "stopping")
            with contextlib.suppress(Exception):
                await sch.stop()
        self._stopping.set()
        if self._lease_thread is not None:
            await asyncio.to_thread(self._lease_thread.join, self.config.lease_ttl_s)
        try:
            conn = await asyncio.to_thread(connect, self.settings)
            try:
                await asyncio.to_thread(self._store.leave, conn, self.worker_id)
            finally:
                conn.close()
        except Exception as exc:  # the leases expire by themselves
            log.warning("could not leave the cluster cleanly: %s", exc)
        if self.app is not None:
            with contextlib.suppress(Exception):
                self.app.close()
        self._emit("stopped")
