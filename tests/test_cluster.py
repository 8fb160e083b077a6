"""Cluster mode on PostgreSQL: partitions, leases, failover, exactly-once, no split brain.

The process tests start real ``tcs worker`` processes (``python -m tcs_core.cluster.cli worker``)
on one PostgreSQL schema, sharing an accelerated clock (a start instant, a wall epoch and a speed
factor), kill them with SIGKILL at random moments, and check in the event store that every
occurrence was dispatched exactly once. Each worker writes its events (leases acquired, partitions
dropped, every firing that passed the fence) as JSON lines to a file the test reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
import pytest

from tcs_core.app import SourceSystem
from tcs_core.cli import main as tcs_main
from tcs_core.cluster import (
    ClusterConfig,
    assign,
    cluster_status,
    partition_of,
    render_status,
)
from tcs_core.config import Settings
from tcs_core.domain.values import ScheduleSpec, SpeechContent, Targets
from tcs_core.errors import ValidationError
from tcs_core.memory import MemoryTransport
from tcs_core.schedule import next_occurrence
from tcs_core.scheduler import Scheduler, VirtualClock
from tcs_core.transport import delivery_key

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
STARTED = "tcs.dispatch.started"
PARTITIONS = 8
TTL_S = 6.0
RENEW_S = 1.0
SPEED = 60.0  # a virtual minute per wall second
COMMUNES = 4
MARGIN_S = 3.0  # takeover: lease time + one renewal + this (a loaded 2-core machine)
TAKEOVER_LIMIT_S = 15.0  # the bound
EFF = date(2025, 7, 1)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_admin_connect() -> Any:
    """A psycopg connection to the test database, or skip (with the reason) if unavailable."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401  (eventsourcing.postgres needs it)
    except ImportError as exc:
        pytest.skip(f"psycopg / psycopg_pool not installed: {exc}")
    try:
        return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_DSN}: {exc}".strip())


@pytest.fixture
def pg() -> Iterator[Settings]:
    """Settings on a fresh schema of the test database; the schema is dropped afterwards."""
    conn = _pg_admin_connect()
    schema = f"tcs_cluster_{uuid.uuid4().hex[:10]}"
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield Settings.postgres(PG_DSN, postgres_schema=schema, postgres_pool_size=2)
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _seed(settings: Settings, broadcasts: int, cron: str = "* * * * *") -> list[UUID]:
    """A province, communes with one speaker each, and approved recurring broadcasts."""
    with SourceSystem(settings) as app:
        app.bootstrap_admin("admin")
        app.create_area("79", "Hồ Chí Minh", "province", parent=None, effective=EFF, actor="admin")
        codes = [f"79{i:03d}" for i in range(1, COMMUNES + 1)]
        for i, code in enumerate(codes):
            app.create_area(code, f"Xã {i}", "commune", parent="79", effective=EFF, actor="admin")
            app.register_device(
                f"Loa {code}",
                "ip_speaker",
                area=code,
                transport="memory",
                address=f"mem:{code}",
                channels=["audio"],
                actor="admin",
            )
        app.create_principal("op", grants=[("operator", "79")], actor="admin")
        app.create_principal("ap", grants=[("approver", "79")], actor="admin")
        out = []
        for i in range(broadcasts):
            bid = app.draft_broadcast(
                f"Bản tin {i}",
                category="local_government",
                content={"audio": SpeechContent(f"Bản tin {i}")},
                targets=Targets([codes[i % COMMUNES]], ["audio"]),
                schedule=ScheduleSpec.recurring(cron, duration_s=1, misfire_grace_s=3600),
                actor="op",
            )
            app.submit_broadcast(bid, "op")
            app.approve_broadcast(bid, "ap")
            out.append(bid)
        return out


def _dispatched(settings: Settings) -> tuple[Counter[UUID], dict[UUID, list[datetime]]]:
    """(started events per dispatch id, occurrences per broadcast) as stored."""
    with SourceSystem(settings) as app:
        per_id: Counter[UUID] = Counter()
        per_broadcast: dict[UUID, list[datetime]] = {}
        start = 1
        while True:
            batch = app.recorder.select_notifications(start, 5000, topics=[STARTED])
            if not batch:
                break
            for n in batch:
                e: Any = app.mapper.to_domain_event(n)
                per_id[n.originator_id] += 1
                per_broadcast.setdefault(UUID(str(e.broadcast_id)), []).append(e.occurrence)
            start = batch[-1].id + 1
        return per_id, per_broadcast


def _check_exactly_once(settings: Settings, broadcasts: list[UUID], cutoff: datetime) -> int:
    """Every occurrence after the broadcast was taken and up to ``cutoff`` has exactly one
    Dispatch; none is stored twice. Returns how many occurrences were checked."""
    per_id, per_broadcast = _dispatched(settings)
    assert per_id and set(per_id.values()) == {1}, "a dispatch was started twice"
    checked = 0
    with SourceSystem(settings) as app:
        for bid in broadcasts:
            view = app.broadcasts.get(bid)
            assert view is not None and view.scheduled_at is not None, f"{bid} was never taken"
            spec = view.fields["schedule"]
            expected = []
            o = next_occurrence(spec, view.scheduled_at - timedelta(microseconds=1))
            while o is not None and o <= cutoff:
                expected.append(o)
                o = next_occurrence(spec, o)
            got = Counter(x for x in per_broadcast.get(bid, []) if x <= cutoff)
            missing = [x for x in expected if got[x] == 0]
            assert not missing, f"broadcast {bid}: occurrences never dispatched: {missing[:5]}"
            assert all(c == 1 for c in got.values()), f"broadcast {bid}: dispatched twice"
            checked += len(expected)
    return checked


# --------------------------------------------------------------------------- worker processes


@attrs.define
class _Proc:
    name: str
    proc: subprocess.Popen[bytes]
    events: Path
    log: Path

    def read_events(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        out = []
        for line in self.events.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by SIGKILL
                out.append(json.loads(line))
        return out


class _Cluster:
    """Worker processes on one schema and one accelerated clock."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings = settings
        self.tmp = tmp
        self.epoch = time.time()
        self.start = datetime.fromtimestamp(self.epoch, UTC)
        self.procs: dict[str, _Proc] = {}
        self.dead: list[_Proc] = []

    def virtual(self, wall: float) -> datetime:
        return self.start + timedelta(seconds=(wall - self.epoch) * SPEED)

    def spawn(self, name: str, port: int = 5432) -> _Proc:
        env = {
            **os.environ,
            "TCS_PERSISTENCE": "postgres",
            "TCS_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:{port}/test",
            "TCS_POSTGRES_SCHEMA": self.settings.postgres_schema or "",
            "TCS_POSTGRES_POOL_SIZE": "2",
        }
        events = self.tmp / f"{name}.jsonl"
        log = self.tmp / f"{name}.log"
        cmd = [
            sys.executable,
            "-m",
            "tcs_core.cli",
            "--lang",
            "en",
            "worker",
            "--partitions",
            str(PARTITIONS),
            "--lease-ttl",
            str(TTL_S),
            "--renew",
            str(RENEW_S),
            "--worker-id",
            name,
            "--events",
            str(events),
            "--log-fires",
            "--speed",
            str(SPEED),
            "--clock-start",
            self.start.isoformat(),
            "--clock-epoch",
            repr(self.epoch),
        ]
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        p = self.procs[name] = _Proc(name, proc, events, log)
        return p

    def kill9(self, name: str) -> float:
        p = self.procs.pop(name)
        p.proc.send_signal(signal.SIGKILL)
        t = time.time()
        p.proc.wait(10)
        self.dead.append(p)
        return t

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.proc.wait(30)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(10)
        for p in [*self.procs.values(), *self.dead]:
            errors = [x for x in p.log.read_text(errors="replace").splitlines() if "Traceback" in x]
            assert not errors, f"{p.name} crashed:\n{p.log.read_text(errors='replace')[-3000:]}"

    def kill_all(self) -> None:
        for p in self.procs.values():
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(10)

    def adopted(self, name: str) -> dict[int, float]:
        """Partition → last wall time worker ``name`` rebuilt it (``acquired`` event)."""
        out: dict[int, float] = {}
        p = self.procs.get(name) or next(x for x in self.dead if x.name == name)
        for e in p.read_events():
            if e["ev"] == "acquired":
                for part in e["partitions"]:
                    out[part] = e["t"]
        return out

    def firing(self, timeout: float = 60.0) -> dict[str, tuple[int, ...]]:
        """Wait until every partition is owned by a live worker with the expected share."""
        deadline = time.monotonic() + timeout
        while True:
            st = cluster_status(self.settings)
            live = {w.worker_id: w.partitions for w in st.workers if w.alive}
            share = Counter(assign(PARTITIONS, sorted(self.procs)).values())
            balanced = set(live) == set(self.procs) and all(len(live[w]) == share[w] for w in live)
            if balanced and not st.unowned:
                adopted = {w: set(self.adopted(w)) for w in live}
                if all(set(live[w]) <= adopted[w] for w in live):
                    return live
            for p in self.procs.values():
                assert p.proc.poll() is None, f"{p.name} exited:\n{p.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"cluster never settled: {render_status(st)}"
            time.sleep(0.2)


@pytest.fixture
def cluster(pg: Settings, tmp_path: Path) -> Iterator[_Cluster]:
    c = _Cluster(pg, tmp_path)
    try:
        yield c
    finally:
        c.kill_all()


def _takeover(c: _Cluster, victim: str, held: tuple[int, ...], killed_at: float) -> float:
    """Seconds from the kill until the last of ``held`` was rebuilt by a survivor."""
    deadline = time.monotonic() + TAKEOVER_LIMIT_S + 20
    while True:
        got: dict[int, float] = {}
        for name in c.procs:
            for part, t in c.adopted(name).items():
                if part in held and t > killed_at:
                    got[part] = min(t, got.get(part, t))
        if set(got) == set(held):
            return max(got.values()) - killed_at
        assert time.monotonic() < deadline, f"{victim}'s partitions {held} not taken over: {got}"
        time.sleep(0.1)


def _run_kills(c: _Cluster, workers: int, kills: int, seed: int) -> list[float]:
    """Start ``workers``, kill -9 one at a random moment ``kills`` times (a fresh worker joins
    after each takeover, and the next kill may come while partitions still move to it);
    return the measured takeover times."""
    rnd = random.Random(seed)
    names = [f"w{i}" for i in range(workers)]
    for n in names:
        c.spawn(n)
    c.firing()
    takeovers = []
    for k in range(kills):
        time.sleep(rnd.uniform(0.2, 3.0))  # a random moment, mid-firing or mid-rebalancing
        victim = rnd.choice(sorted(c.procs))
        held = next(
            (w.partitions for w in cluster_status(c.settings).workers if w.worker_id == victim),
            (),
        )
        killed_at = c.kill9(victim)
        if held:
            takeovers.append(_takeover(c, victim, held, killed_at))
        c.spawn(f"j{k}")  # rebalancing: a worker joins
        if k == kills - 1 or rnd.random() < 0.5:
            c.firing()
    c.firing()
    return takeovers


def _finish(c: _Cluster, broadcasts: list[UUID]) -> int:
    """Let the settled cluster run, stop it gracefully, check the store."""
    time.sleep(4)
    cutoff = c.virtual(time.time() - 3)  # what a loaded machine has certainly fired by now
    c.stop_all()
    return _check_exactly_once(c.settings, broadcasts, cutoff)


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_two_workers_kill9_takeover_exactly_once(cluster: _Cluster) -> None:
    """Two worker processes, one killed with SIGKILL at a random moment: its partitions are
    rebuilt by the survivor within the lease time (measured), and every occurrence of every
    broadcast is dispatched exactly once (checked in the event store)."""
    broadcasts = _seed(cluster.settings, 12)
    takeovers = _run_kills(cluster, workers=2, kills=1, seed=random.randrange(1 << 30))
    checked = _finish(cluster, broadcasts)
    print(f"takeover: {[round(x, 2) for x in takeovers]} s; {checked} occurrences checked")
    assert all(t <= min(TTL_S + RENEW_S + MARGIN_S, TAKEOVER_LIMIT_S) for t in takeovers)
    # at least: start and firing, a kill after 0.2 s, a ~6 s takeover, the 4 s finish
    assert checked >= 12 * 8


@pytest.mark.postgres
@pytest.mark.timeout(150)
def test_three_workers_random_kills_rebalance_exactly_once(cluster: _Cluster) -> None:
    """Three worker processes, SIGKILL twice at random moments with a new worker joining after
    each takeover: every takeover is within the lease time, partitions rebalance to the
    newcomers, and every occurrence is dispatched exactly once."""
    broadcasts = _seed(cluster.settings, 16)
    takeovers = _run_kills(cluster, workers=3, kills=2, seed=random.randrange(1 << 30))
    checked = _finish(cluster, broadcasts)
    print(f"takeovers: {[round(x, 2) for x in takeovers]} s; {checked} occurrences checked")
    assert takeovers and all(
        t <= min(TTL_S + RENEW_S + MARGIN_S, TAKEOVER_LIMIT_S) for t in takeovers
    )
    # The shortest random path (two kills after 0.2 s, ~6 s takeovers, the 4 s finish) covers
    # about 19 virtual minutes of 16 broadcasts: 304 were seen once; 15 minutes is certain.
    assert checked >= 16 * 15


@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_graceful_stop_hands_over_within_two_heartbeats(cluster: _Cluster) -> None:
    """A worker stopped with SIGTERM flushes, releases its leases and leaves: the other worker
    rebuilds its partitions within two heartbeats (not a lease time), its exit code is 0, and
    every occurrence is still dispatched exactly once."""
    broadcasts = _seed(cluster.settings, 8)
    cluster.spawn("a")
    leaving = cluster.spawn("b")
    held = cluster.firing()["b"]
    time.sleep(random.uniform(0.2, 2.0))
    stopped_at = time.time()
    leaving.proc.send_signal(signal.SIGTERM)
    took = _takeover(cluster, "b", held, stopped_at)
    assert leaving.proc.wait(30) == 0
    assert took <= 2 * RENEW_S + MARGIN_S, f"handover took {took:.2f} s"
    cluster.dead.append(cluster.procs.pop("b"))
    checked = _finish(cluster, broadcasts)
    print(f"graceful handover: {took:.2f} s; {checked} occurrences checked")


# --------------------------------------------------------------------------- network fault


class _Proxy:
    """A TCP proxy on 127.0.0.1 to PostgreSQL that can be cut: after ``cut()`` it forwards
    nothing in either direction and keeps every socket open (a silent network partition: the
    worker's calls hang rather than fail)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_at: float | None = None
        self.socks: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_at is not None:  # the partition also swallows new connections
                self.socks.append(client)
                continue
            server = socket.create_connection(self.target)
            self.socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while not self.closed:
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if self.cut_at is None:
                        peer[s].sendall(data)
        except OSError:
            return

    def cut(self) -> float:
        self.cut_at = time.time()
        return self.cut_at

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_network_partition_worker_stops_firing_before_takeover(cluster: _Cluster) -> None:
    """A worker whose path to PostgreSQL goes silent (a TCP proxy that stops forwarding) stops
    firing its partitions before the other worker can take them over: its last firing and its
    own fence both precede the takeover of every partition (no split brain); the takeover comes
    within the lease time; every occurrence is still dispatched exactly once."""
    broadcasts = _seed(cluster.settings, 12)
    proxy = _Proxy(("127.0.0.1", 5432))
    try:
        cluster.spawn("a")
        cut_worker = cluster.spawn("b", port=proxy.port)
        held = cluster.firing()["b"]
        time.sleep(random.uniform(0.5, 2.0))
        cut_at = proxy.cut()
        took = _takeover(cluster, "b", held, cut_at)
        adopted = cluster.adopted("a")
        events = cut_worker.read_events()
        for part in held:
            fires = [e["t"] for e in events if e["ev"] == "fire" and e["partition"] == part]
            fences = [
                e["t"]
                for e in events
                if e["ev"] == "dropped" and part in e["partitions"] and e["t"] > cut_at
            ]
            assert fences, f"b never fenced partition {part}"
            assert fences[0] < adopted[part], "b still held the partition when a took it"
            assert max(fires, default=0) < adopted[part], "b fired after a took it (split brain)"
            assert fences[0] - cut_at <= TTL_S, "b kept the partition longer than its lease"
        assert any(e["ev"] == "fire" for e in events), "b never fired: nothing was tested"
        assert took <= min(TTL_S + RENEW_S + MARGIN_S, TAKEOVER_LIMIT_S)
        # b cannot reach the store: take it out and let a run on alone.
        cluster.kill9("b")
        cutoff = cluster.virtual(time.time() + 2)
        time.sleep(3)
        cluster.stop_all()
        checked = _check_exactly_once(cluster.settings, broadcasts, cutoff)
        print(f"fence→takeover: took {took:.2f} s; {checked} occurrences checked")
    finally:
        proxy.close()


# --------------------------------------------------------------------------- in-process


@pytest.mark.postgres
def test_overlapping_schedulers_treat_dispatch_exists_as_fired_elsewhere(pg: Settings) -> None:
    """Two schedulers on two connections fire the same broadcasts at the same instants (what two
    workers do while they overlap): each occurrence is stored once, the loser counts a duplicate
    and records no error, and between them every device gets every occurrence."""
    broadcasts = _seed(pg, 6, cron="*/5 * * * *")
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    apps = [SourceSystem(pg), SourceSystem(pg)]
    scheds = [Scheduler(a, [MemoryTransport("memory")], VirtualClock(t0)) for a in apps]

    async def run() -> None:
        for s in scheds:
            await s.start()
        await asyncio.gather(*(s.run_until(t0 + timedelta(hours=1)) for s in scheds))
        for s in scheds:
            await s.stop()

    try:
        asyncio.run(run())
    finally:
        for a in apps:
            a.close()
    per_id, per_broadcast = _dispatched(pg)
    assert set(per_id.values()) == {1}
    assert [len(per_broadcast[b]) for b in broadcasts] == [13] * 6, [s.stats for s in scheds]
    assert sum(s.stats.dispatches for s in scheds) == 6 * 13
    assert sum(s.stats.duplicates for s in scheds) > 0
    assert all(s.stats.store_errors == 0 for s in scheds)


@attrs.define
class _Fence:
    """An Ownership that owns everything until ``lost`` is set."""

    lost: bool = False
    asked: int = 0

    def owns(self, broadcast_id: UUID) -> bool:
        return not self.lost

    def may_fire(self, broadcast_id: UUID, occurrence: datetime) -> bool:
        self.asked += 1
        return not self.lost


@pytest.mark.postgres
def test_fence_then_adopt_rebuilds_from_store(pg: Settings) -> None:
    """A scheduler whose ownership is lost fires nothing more (counted as fenced); adopting the
    broadcasts again rebuilds them from the store and fires what was missed meanwhile, within
    the grace, exactly once."""
    broadcasts = _seed(pg, 3, cron="0 * * * *")
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    fence = _Fence()
    app = SourceSystem(pg)
    s = Scheduler(app, [MemoryTransport("memory")], VirtualClock(t0), ownership=fence)

    async def run() -> None:
        await s.start()
        await s.run_until(t0 + timedelta(hours=2, minutes=30))  # 00:00, 01:00, 02:00 fire
        fence.lost = True
        await s.run_until(t0 + timedelta(hours=3, minutes=30))  # 03:00 is fenced
        assert s.drop(lambda _b: True) == 0  # already dropped when the fence was seen
        fence.lost = False
        assert await s.adopt(lambda _b: True) == 3
        await s.run_until(t0 + timedelta(hours=4, minutes=30))  # 03:00 late, then 04:00
        await s.stop()

    try:
        asyncio.run(run())
    finally:
        app.close()
    assert s.stats.fenced == 3
    _, per_broadcast = _dispatched(pg)
    for b in broadcasts:
        assert sorted(x.hour for x in per_broadcast[b]) == [0, 1, 2, 3, 4]


@pytest.mark.postgres
def test_dispatch_saved_first_by_a_stale_owner_is_delivered_by_the_owner(pg: Settings) -> None:
    """When a worker that has since lost the partition saved an occurrence's Dispatch first
    (its write arrived late), the owner's firing meets DispatchExists, counts a duplicate, and
    delivers what the stale worker left unfinished, with the original idempotency keys; the
    dispatch completes and is stored once."""
    (bid,) = _seed(pg, 1, cron="0 * * * *")
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    one = t0 + timedelta(hours=1)
    app, stale = SourceSystem(pg), SourceSystem(pg)
    speakers = MemoryTransport("memory")
    s = Scheduler(app, [speakers], VirtualClock(t0), ownership=_Fence())

    async def run() -> None:
        await s.start()
        await s.run_until(t0 + timedelta(minutes=30))
        device = next(d.device_id for d in stale.devices.all() if d.name == "Loa 79001")
        stale.start_dispatch(bid, one, [device])  # the stale owner's late write
        await s.run_until(one + timedelta(minutes=30))
        await s.stop()

    try:
        asyncio.run(run())
        assert s.stats.duplicates == 1 and s.stats.resumed_dispatches == 1
        d = app.dispatch_of(bid, one)
        assert d is not None and d.completed_at is not None
        assert d.counts()["delivered"] == 1
        keys = {p.key for played in speakers.played.values() for p in played}
        assert delivery_key(d.id, UUID(d.device_ids[0])) in keys
    finally:
        app.close()
        stale.close()
    per_id, _ = _dispatched(pg)
    assert set(per_id.values()) == {1}


# --------------------------------------------------------------------------- pieces


def test_partitions_are_stable_and_balanced() -> None:
    """A broadcast's partition depends on its id only; the assignment gives every live worker
    an equal share (±1) and every worker derives the same one from the same membership."""
    ids = [uuid.uuid4() for _ in range(4000)]
    counts = Counter(partition_of(b, 16) for b in ids)
    assert set(counts) == set(range(16)) and min(counts.values()) > 150
    b = UUID("12345678-1234-5678-1234-567812345678")
    assert partition_of(b, 16) == partition_of(UUID(str(b)), 16)
    a = assign(16, ["w3", "w1", "w2"])
    share = Counter(a.values())
    assert sorted(share.values()) == [5, 5, 6]
    assert a == assign(16, ["w1", "w2", "w3"])
    assert assign(16, []) == {}
    # Sticky: when w2 dies, w1 and w3 keep what they hold and share w2's partitions.
    b2 = assign(16, ["w1", "w3"], {p: w for p, w in a.items() if w != "w2"})
    assert all(b2[p] == w for p, w in a.items() if w != "w2")
    assert sorted(Counter(b2.values()).values()) == [8, 8]
    # A newcomer takes only what the others hold beyond their new share.
    c = assign(16, ["w1", "w3", "w4"], b2)
    moved = [p for p in range(16) if c[p] != b2[p]]
    assert len(moved) == 5 and all(c[p] == "w4" for p in moved)
    with pytest.raises(ValidationError, match="partitions"):
        partition_of(b, 0)


def test_cluster_config_rejects_unsafe_timing() -> None:
    """A lease shorter than two renewals plus the safety margin, or a bad partition count, is
    refused with the field named."""
    with pytest.raises(ValidationError, match="lease_ttl_s"):
        ClusterConfig(lease_ttl_s=3, renew_s=2)
    with pytest.raises(ValidationError, match="partitions"):
        ClusterConfig(partitions=0)


def test_settings_from_env_read_the_postgres_options() -> None:
    """TCS_POSTGRES_SCHEMA / TCS_POSTGRES_POOL_SIZE reach the settings and eventsourcing's
    environment; a bad pool size or schema name is refused with the setting named."""
    s = Settings.from_env(
        {
            "TCS_PERSISTENCE": "postgres",
            "TCS_POSTGRES_DSN": PG_DSN,
            "TCS_POSTGRES_SCHEMA": "tinh_79",
            "TCS_POSTGRES_POOL_SIZE": "7",
        }
    )
    env = s.eventsourcing_env({})
    assert env["POSTGRES_SCHEMA"] == "tinh_79" and env["POSTGRES_POOL_SIZE"] == "7"
    assert env["POSTGRES_CONNECT_TIMEOUT"] == "5"
    with pytest.raises(ValidationError, match="TCS_POSTGRES_POOL_SIZE"):
        Settings.from_env(
            {
                "TCS_PERSISTENCE": "postgres",
                "TCS_POSTGRES_DSN": PG_DSN,
                "TCS_POSTGRES_POOL_SIZE": "many",
            }
        )
    with pytest.raises(ValidationError, match="postgres_schema"):
        Settings.postgres(PG_DSN, postgres_schema='x"; DROP TABLE y; --')


def test_settings_from_toml_read_the_postgres_options(tmp_path: Path) -> None:
    """The ``[persistence]`` table of tcs.toml carries DSN, schema, pool size and timeouts; a
    password in the DSN is refused (it belongs in the environment)."""
    f = tmp_path / "tcs.toml"
    f.write_text(
        '[persistence]\nkind = "postgres"\n'
        f'postgres_dsn = "{PG_DSN}"\npostgres_schema = "tinh_52"\npostgres_pool_size = 9\n'
        "postgres_connect_timeout_s = 3\npostgres_idle_in_transaction_timeout_s = 4\n",
        encoding="utf-8",
    )
    env = Settings.from_toml(f).eventsourcing_env({})
    assert (env["POSTGRES_SCHEMA"], env["POSTGRES_POOL_SIZE"]) == ("tinh_52", "9")
    assert env["POSTGRES_CONNECT_TIMEOUT"] == "3"
    assert env["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"] == "4"
    f.write_text(
        '[persistence]\nkind = "postgres"\n'
        'postgres_dsn = "postgresql://tcs:secret@127.0.0.1/test"\n',
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match="password"):
        Settings.from_toml(f)


def test_cluster_commands_need_postgres(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``worker`` and ``cluster status`` on a SQLite deployment exit 2 with a message naming
    PostgreSQL (in English with --lang en)."""
    monkeypatch.setenv("TCS_PERSISTENCE", "sqlite")
    monkeypatch.setenv("TCS_SQLITE_PATH", str(tmp_path / "x.sqlite"))
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert tcs_main(["--lang", "en", "cluster", "status"]) == 2
    assert "needs PostgreSQL" in err.getvalue()


def test_cluster_commands_say_when_postgres_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker or a status query whose PostgreSQL does not answer exits 1 with one line naming
    the server, not a traceback."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TCS_PERSISTENCE", "postgres")
    monkeypatch.setenv("TCS_POSTGRES_DSN", f"postgresql://postgres@127.0.0.1:{port}/test")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert tcs_main(["--lang", "en", "cluster", "status"]) == 1
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port}/test" in err.getvalue()
    err.truncate(0)
    assert tcs_main(["--lang", "en", "worker"]) == 1
    assert "cannot reach PostgreSQL" in err.getvalue()


@pytest.mark.postgres
def test_status_command_shows_workers_partitions_and_lag(
    pg: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cluster status`` lists the live worker with its partitions and lag behind the log, in
    Vietnamese by default and as JSON; before any worker joined it says how to start one."""
    from tcs_core.cluster import LeaseStore
    from tcs_core.cluster.leases import connect

    _seed(pg, 1)
    monkeypatch.setenv("TCS_PERSISTENCE", "postgres")
    monkeypatch.setenv("TCS_POSTGRES_DSN", PG_DSN)
    monkeypatch.setenv("TCS_POSTGRES_SCHEMA", pg.postgres_schema or "")
    capsys.readouterr()
    assert tcs_main(["cluster", "status"]) == 0
    assert "tcs worker" in capsys.readouterr().out
    config = ClusterConfig(partitions=4)
    store = LeaseStore(pg, config)
    conn = connect(pg)
    try:
        store.ensure(conn)
        hb = store.heartbeat(conn, "w-a", position=3)
        assert hb.held == {0, 1, 2, 3} and hb.acquired == hb.held and hb.live == ("w-a",)
        with pytest.raises(ValidationError, match="4 partitions"):
            LeaseStore(pg, ClusterConfig(partitions=8)).ensure(conn)
    finally:
        conn.close()
    st = cluster_status(pg)
    assert st.partitions == 4 and not st.unowned
    (w,) = st.workers
    assert w.alive and w.partitions == (0, 1, 2, 3) and w.lag == st.head - 3 > 0
    assert tcs_main(["cluster", "status", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["workers"][0]["worker_id"] == "w-a"
    text = render_status(st, lang="vi")
    assert "phân vùng" in text and "w-a" in text


@pytest.mark.postgres
def test_projections_follow_other_writers_without_skipping(pg: Settings) -> None:
    """A worker's projections catch up from PostgreSQL's notification log while another process
    keeps writing: after the writer stops, one more refresh shows every device it registered and
    the reader's position is the log's head (nothing skipped in the race between reading the
    log and moving the position); the KPI projection tracks the same position."""
    from tcs_core.kpi.engine import Kpis

    _seed(pg, 0)
    writer, reader = SourceSystem(pg), SourceSystem(pg)
    stop = threading.Event()
    written = [0]

    def write() -> None:
        while not stop.is_set():
            writer.register_device(
                f"Loa {written[0]}",
                "ip_speaker",
                area="79001",
                transport="memory",
                address=f"mem:x{written[0]}",
                channels=["audio"],
                actor="admin",
            )
            written[0] += 1

    t = threading.Thread(target=write, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            reader.refresh()
    finally:
        stop.set()
        t.join(10)
    reader.refresh()
    assert written[0] > 20
    assert reader.position == writer.recorder.max_notification_id()
    assert len(reader.devices.all()) == len(writer.devices.all()) == COMMUNES + written[0]
    # The KPI projection tracks its own position: caught up to what this worker processed.
    kpis = Kpis(reader, auto_refresh=False)
    assert kpis.projection.position == reader.position
    assert len(kpis.projection.devices) == COMMUNES + written[0]
    writer.close()
    reader.close()
