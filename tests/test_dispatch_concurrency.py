"""Exactly-once dispatch starts under concurrency: threads, processes, SQLite and PostgreSQL.

Two workers fire the same (broadcast, occurrence) at the same moment (released together by a
barrier). The dispatch id is deterministic, so both build the same aggregate; the event store's
uniqueness on (originator id, version 1) must let exactly one ``start_dispatch`` succeed and make
the other raise ``DispatchExists``, leaving exactly one ``tcs.dispatch.started`` event per id.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tcs_core.app import SourceSystem
from tcs_core.config import Settings
from tcs_core.domain.dispatch import dispatch_id
from tcs_core.domain.values import ScheduleSpec, SpeechContent, Targets
from tcs_core.errors import DispatchExists

AREA = "79"
FIRST = datetime(2030, 5, 1, 6, 0, tzinfo=UTC)
ROUNDS = 20  # occurrences raced per test
WAIT_S = 60.0  # barrier / join timeout: a hang fails the test instead of blocking the suite
STARTED = "tcs.dispatch.started"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
WON, LOST = "won", "lost"


# --------------------------------------------------------------------------- helpers


def _occurrence(i: int) -> datetime:
    return FIRST + timedelta(hours=i)


def _devices(i: int) -> list[UUID]:
    """The devices of round ``i`` (deterministic, so every worker sends the same list)."""
    return [uuid.uuid5(uuid.NAMESPACE_OID, f"device-{i}-{k}") for k in range(3)]


def _prepare(settings: Settings) -> UUID:
    """Create the store with an admin, an area, an approver and one approved broadcast."""
    app = SourceSystem(settings)
    try:
        app.bootstrap_admin("admin")
        app.create_area(
            AREA, "Hồ Chí Minh", "province", parent=None, effective=date(2025, 7, 1), actor="admin"
        )
        app.create_principal("boss", grants=[("approver", AREA)], actor="admin")
        bid = app.draft_broadcast(
            "Bản tin sáng",
            category="local_government",
            content={"audio": SpeechContent("Bản tin sáng")},
            targets=Targets([AREA], ["audio"]),
            schedule=ScheduleSpec.recurring("0 * * * *"),
            actor="admin",
        )
        app.submit_broadcast(bid, "admin")
        app.approve_broadcast(bid, "boss")
        return bid
    finally:
        app.close()


def _attempt(app: SourceSystem, bid: UUID, i: int) -> tuple[str, UUID | None]:
    """Start round ``i``'s occurrence: (WON, id) or (LOST, None) on DispatchExists."""
    try:
        return WON, app.start_dispatch(bid, _occurrence(i), _devices(i))
    except DispatchExists:
        return LOST, None


def _check_store(settings: Settings, bid: UUID, results: list[list[tuple[str, Any]]]) -> None:
    """Exactly one winner per round, with the right id, and one started event per id."""
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        outcomes = sorted((a[0], b[0]))
        assert outcomes == [LOST, WON], f"round {i}: {a} / {b}"
        won_id = a[1] if a[0] == WON else b[1]
        assert won_id == dispatch_id(bid, _occurrence(i))
    app = SourceSystem(settings)
    try:
        started = Counter(
            n.originator_id
            for n in app.recorder.select_notifications(1, 1_000_000, topics=[STARTED])
        )
        expected = {dispatch_id(bid, _occurrence(i)) for i in range(ROUNDS)}
        assert set(started) == expected
        assert all(c == 1 for c in started.values()), started
        for i in range(ROUNDS):
            d = app.dispatch_of(bid, _occurrence(i))
            assert d is not None
            assert d.version == 1
            assert d.device_ids == tuple(x.hex for x in _devices(i))
            events = app.recorder.select_events(d.id)
            assert [e.topic for e in events] == [STARTED]
    finally:
        app.close()


def _race_threads(
    make_apps: Callable[[], tuple[SourceSystem, SourceSystem]], bid: UUID
) -> list[list[tuple[str, Any]]]:
    """Two threads, each racing ``ROUNDS`` occurrences on its app; returns each thread's results."""
    apps = make_apps()
    barrier = threading.Barrier(2, timeout=WAIT_S)
    results: list[list[tuple[str, Any]]] = [[], []]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(ROUNDS):
                barrier.wait()
                results[k].append(_attempt(apps[k], bid, i))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    try:
        assert not any(t.is_alive() for t in threads), "a worker thread hung"
        if errors:
            raise errors[0]
    finally:
        for app in {id(a): a for a in apps}.values():
            app.close()
    return results


def _process_worker(
    settings: Settings,
    bid: UUID,
    barrier: Any,
    queue: Any,
    k: int,
) -> None:
    """Spawned child: open its own SourceSystem and race every round behind the barrier."""
    out: list[tuple[str, Any]] = []
    try:
        app = SourceSystem(settings)
        try:
            for i in range(ROUNDS):
                barrier.wait(WAIT_S)
                status, did = _attempt(app, bid, i)
                out.append((status, did.hex if did else None))
        finally:
            app.close()
        queue.put((k, out, None))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            barrier.abort()
        queue.put((k, out, f"{type(exc).__name__}: {exc}"))


def _race_processes(settings: Settings, bid: UUID) -> list[list[tuple[str, Any]]]:
    """Two spawned processes, each with its own SourceSystem on the same store."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(settings, bid, barrier, queue, k), daemon=True)
        for k in (0, 1)
    ]
    for p in procs:
        p.start()
    try:
        got = [queue.get(timeout=WAIT_S * 3) for _ in procs]
    finally:
        for p in procs:
            p.join(WAIT_S)
            if p.is_alive():
                p.terminate()
                p.join(5)
    errors = [f"worker {k}: {err}" for k, _, err in got if err]
    assert not errors, errors
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    results: list[list[tuple[str, Any]]] = [[], []]
    for k, out, _ in got:
        results[k] = [(s, UUID(h) if h else None) for s, h in out]
    assert all(len(r) == ROUNDS for r in results)
    return results


# --------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings.sqlite(tmp_path / "tcs.sqlite")


def test_sqlite_two_threads_one_system_start_once(sqlite_settings: Settings) -> None:
    """Two threads sharing one SourceSystem on a SQLite file: per occurrence exactly one
    start_dispatch wins, the other raises DispatchExists, one started event is stored."""
    bid = _prepare(sqlite_settings)

    def one_app() -> tuple[SourceSystem, SourceSystem]:
        app = SourceSystem(sqlite_settings)
        return app, app

    _check_store(sqlite_settings, bid, _race_threads(one_app, bid))


def test_sqlite_two_threads_two_systems_start_once(sqlite_settings: Settings) -> None:
    """Two threads, each with its own SourceSystem on the same SQLite file: exactly one start
    per occurrence, the other gets DispatchExists, one started event is stored."""
    bid = _prepare(sqlite_settings)
    _check_store(
        sqlite_settings,
        bid,
        _race_threads(lambda: (SourceSystem(sqlite_settings), SourceSystem(sqlite_settings)), bid),
    )


def test_sqlite_two_processes_start_once(sqlite_settings: Settings) -> None:
    """Two spawned processes, each with its own SourceSystem on the same SQLite file: exactly
    one start per occurrence; the store holds one started event per dispatch id."""
    bid = _prepare(sqlite_settings)
    _check_store(sqlite_settings, bid, _race_processes(sqlite_settings, bid))


def test_popo_two_threads_one_system_start_once() -> None:
    """Two threads sharing one in-memory SourceSystem: exactly one start per occurrence."""
    app = SourceSystem(Settings.in_memory())
    app.bootstrap_admin("admin")
    app.create_area(
        AREA, "Hồ Chí Minh", "province", parent=None, effective=date(2025, 7, 1), actor="admin"
    )
    app.create_principal("boss", grants=[("approver", AREA)], actor="admin")
    bid = app.draft_broadcast(
        "Bản tin",
        category="other",
        content={"audio": SpeechContent("Bản tin")},
        targets=Targets([AREA], ["audio"]),
        schedule=ScheduleSpec.recurring("0 * * * *"),
        actor="admin",
    )
    app.submit_broadcast(bid, "admin")
    app.approve_broadcast(bid, "boss")
    barrier = threading.Barrier(2, timeout=WAIT_S)
    results: list[list[tuple[str, Any]]] = [[], []]

    def worker(k: int) -> None:
        for i in range(ROUNDS):
            barrier.wait()
            results[k].append(_attempt(app, bid, i))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    assert not any(t.is_alive() for t in threads)
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        assert sorted((a[0], b[0])) == [LOST, WON], f"round {i}"
    started = Counter(
        n.originator_id for n in app.recorder.select_notifications(1, 100_000, topics=[STARTED])
    )
    assert len(started) == ROUNDS
    assert set(started.values()) == {1}


# --------------------------------------------------------------------------- PostgreSQL


def _pg_admin_connect() -> Any:
    """A psycopg connection to the test database, or skip (with the reason) if unavailable."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]' psycopg_pool)")
    try:
        import psycopg_pool  # noqa: F401  (eventsourcing.postgres needs it)
    except ImportError:
        pytest.skip("psycopg_pool is not installed (pip install psycopg_pool)")
    try:
        return psycopg.connect(
            PG_DSN,
            autocommit=True,
            connect_timeout=3,
            password=os.environ.get("TCS_POSTGRES_PASSWORD") or None,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_DSN}: {exc}".strip())


@pytest.fixture
def pg_settings() -> Iterator[Settings]:
    """Settings on a fresh schema of the test database; the schema is dropped afterwards.

    eventsourcing reads the schema from POSTGRES_SCHEMA (``Settings.postgres_schema``) but does
    not create it; it creates its tables and types in it on first use (CREATE_TABLE defaults to
    yes).
    """
    conn = _pg_admin_connect()
    schema = f"tcs_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield Settings.postgres(PG_DSN, postgres_schema=schema, postgres_pool_size=2)
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.postgres
def test_postgres_two_threads_one_system_start_once(pg_settings: Settings) -> None:
    """Two threads sharing one SourceSystem on PostgreSQL: exactly one start per occurrence,
    DispatchExists for the other, one started event per id."""
    bid = _prepare(pg_settings)

    def one_app() -> tuple[SourceSystem, SourceSystem]:
        app = SourceSystem(pg_settings)
        return app, app

    _check_store(pg_settings, bid, _race_threads(one_app, bid))


@pytest.mark.postgres
def test_postgres_two_threads_two_systems_start_once(pg_settings: Settings) -> None:
    """Two threads, each with its own SourceSystem on the same PostgreSQL schema: exactly one
    start per occurrence, one started event per id."""
    bid = _prepare(pg_settings)
    _check_store(
        pg_settings,
        bid,
        _race_threads(lambda: (SourceSystem(pg_settings), SourceSystem(pg_settings)), bid),
    )


@pytest.mark.postgres
def test_postgres_two_processes_start_once(pg_settings: Settings) -> None:
    """Two spawned processes, each with its own SourceSystem on the same PostgreSQL schema:
    exactly one start per occurrence; one started event per id in the store."""
    bid = _prepare(pg_settings)
    _check_store(pg_settings, bid, _race_processes(pg_settings, bid))


# --------------------------------------------------------------------------- first open


def test_sqlite_concurrent_first_open_of_a_new_file(tmp_path: Path) -> None:
    """Three workers opening a brand-new SQLite file at the same moment all get a SourceSystem
    (two scheduler workers booting together on a fresh deployment must not crash)."""
    errors: list[str] = []
    for trial in range(150):
        settings = Settings.sqlite(tmp_path / f"fresh-{trial}.sqlite")
        barrier = threading.Barrier(3, timeout=WAIT_S)

        def open_it(s: Settings = settings, b: threading.Barrier = barrier) -> None:
            try:
                b.wait()
                SourceSystem(s).close()
            except Exception as exc:  # collected for the assertion below
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=open_it, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
    assert not errors, f"{len(errors)} of 450 opens failed, e.g. {errors[0]}"


@pytest.mark.postgres
@pytest.mark.parametrize("tables", ["fresh schema", "tables exist"])
def test_postgres_many_processes_open_one_store_at_once(pg_settings: Settings, tables: str) -> None:
    """Six SourceSystems (each its own sessions, as six processes would have) opening one
    PostgreSQL schema at the same instant all open: the race on eventsourcing's CREATE TYPE /
    CREATE OR REPLACE FUNCTION ("tuple concurrently updated") is retried, not raised."""
    if tables == "tables exist":
        SourceSystem(pg_settings).close()

    def open_store(barrier: threading.Barrier, apps: list[SourceSystem], errors: list[str]) -> None:
        try:
            barrier.wait(WAIT_S)
            apps.append(SourceSystem(pg_settings))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    for _ in range(3):
        barrier = threading.Barrier(6)
        apps: list[SourceSystem] = []
        errors: list[str] = []
        threads = [
            threading.Thread(target=open_store, args=(barrier, apps, errors)) for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S * 2)
        for app in apps:
            app.close()
        assert not errors, errors
        assert len(apps) == 6
