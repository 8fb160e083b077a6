"""Partition leases in PostgreSQL: a lease table with heartbeats and expiry.

Why a lease table and not advisory locks: an advisory lock is released when the *server* notices
that the holder's session died, and the holder has no way to know when that is. A worker cut off
from the database by a network fault could keep firing while the server has already released its
lock to another worker (split brain), or the lock could stay held for minutes while the server
waits for TCP to time out. A lease row carries an expiry written with the server's clock; the
holder counts its own deadline from *before* it sent the renewal (minus a safety margin), so it
always stops firing before any other worker can see the lease as expired, whatever happens to
its connection. Expired leases are taken over by the next heartbeat of another worker.

Tables (in the deployment's schema, next to eventsourcing's):

- ``tcs_cluster_meta``: the partition count every worker must agree on;
- ``tcs_cluster_workers``: one row per worker, renewed each heartbeat (liveness, the notification
  log position it has processed, counters);
- ``tcs_cluster_leases``: one row per partition: owner, expiry, epoch (bumped on each takeover).

Every statement runs on its own (autocommit), so a connection that dies mid-way never leaves a
transaction holding row locks.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from tcs_core.cluster.partitions import MAX_PARTITIONS, assign
from tcs_core.config import Settings
from tcs_core.errors import ValidationError

__all__ = ["ClusterConfig", "Heartbeat", "LeaseStore", "connect"]


@attrs.frozen
class ClusterConfig:
    """Partitioning and lease timing (seconds of wall time)."""

    partitions: int = 16
    lease_ttl_s: float = 10.0
    renew_s: float = 2.0
    safety_s: float = 1.0  # a holder stops this long before its lease can expire elsewhere
    refresh_s: float = 0.5  # how often a worker reads the notification log

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.partitions, int) or not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ValidationError("partitions", f"must be a whole number 1 … {MAX_PARTITIONS}")
        if self.renew_s <= 0 or self.safety_s <= 0 or self.refresh_s <= 0:
            raise ValidationError("cluster", "renew_s, safety_s and refresh_s must be positive")
        if self.lease_ttl_s < 2 * self.renew_s + self.safety_s:
            raise ValidationError(
                "lease_ttl_s", "must be at least twice renew_s plus safety_s (missed renewals)"
            )


@attrs.frozen
class Heartbeat:
    """What one heartbeat learned."""

    held: frozenset[int]  # leases this worker holds now (renewed or acquired)
    acquired: frozenset[int]  # of which newly acquired
    hand_over: frozenset[int]  # held, but assigned to another live worker: give them up
    live: tuple[str, ...]  # live workers, sorted


def connect(settings: Settings, *, timeout_s: float = 5.0) -> Any:
    """A psycopg connection (autocommit) to the store of ``settings`` (PostgreSQL only).

    Keepalives and ``tcp_user_timeout`` make a dead network path fail instead of hanging."""
    if settings.persistence != "postgres":
        raise ValidationError("persistence", "cluster mode needs PostgreSQL (postgres_dsn)")
    import psycopg

    env = settings.eventsourcing_env()
    ms = int(timeout_s * 1000)
    return psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
        autocommit=True,
        connect_timeout=max(1, int(timeout_s)),
        keepalives=1,
        keepalives_idle=max(1, int(timeout_s)),
        keepalives_interval=1,
        keepalives_count=3,
        tcp_user_timeout=ms,
        options=f"-c statement_timeout={ms} -c lock_timeout={ms}",
        application_name="tcs-cluster",
    )


class LeaseStore:
    """The SQL of leases and membership (one instance per worker; not thread-safe)."""

    def __init__(self, settings: Settings, config: ClusterConfig) -> None:
        from psycopg import sql

        self.settings = settings
        self.config = config
        schema = settings.postgres_schema or "public"
        self.schema = schema
        self._sql = sql

        def table(name: str) -> Any:
            return sql.Identifier(schema, name)

        self.meta = table("tcs_cluster_meta")
        self.workers = table("tcs_cluster_workers")
        self.leases = table("tcs_cluster_leases")
        self.events = table("tcs_events")  # eventsourcing's table for the application "tcs"

    def _q(self, text: str) -> Any:
        return self._sql.SQL(text).format(
            meta=self.meta,
            workers=self.workers,
            leases=self.leases,
            events=self.events,
            schema=self._sql.Identifier(self.schema),
        )

    # -- set-up ----------------------------------------------------------------------------------

    def ensure(self, conn: Any) -> None:
        """Create the schema and tables if missing; refuse a different partition count."""
        q = self._q
        with conn.transaction():
            # One creator at a time (workers starting together).
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('tcs_cluster_setup'))")
            conn.execute(q("CREATE SCHEMA IF NOT EXISTS {schema}"))
            conn.execute(q("CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text)"))
            conn.execute(
                q(
                    "CREATE TABLE IF NOT EXISTS {workers} ("
                    " worker_id text PRIMARY KEY, host text, pid integer,"
                    " started_at timestamptz NOT NULL DEFAULT now(),"
                    " heartbeat_at timestamptz NOT NULL, expires_at timestamptz NOT NULL,"
                    " position bigint NOT NULL DEFAULT 0, info jsonb NOT NULL DEFAULT '{{}}')"
                )
            )
            conn.execute(
                q(
                    "CREATE TABLE IF NOT EXISTS {leases} ("
                    " partition integer PRIMARY KEY, owner text, expires_at timestamptz,"
                    " acquired_at timestamptz, epoch bigint NOT NULL DEFAULT 0)"
                )
            )
            conn.execute(
                q(
                    "INSERT INTO {meta} (key, value) VALUES ('partitions', %s) ON CONFLICT DO NOTHING"
                ),
                [str(self.config.partitions)],
            )
            row = conn.execute(q("SELECT value FROM {meta} WHERE key = 'partitions'")).fetchone()
            existing = int(row[0])
            if existing != self.config.partitions:
                raise ValidationError(
                    "partitions",
                    f"this cluster has {existing} partitions; start every worker with "
                    f"--partitions {existing}",
                )
            conn.execute(
                q(
                    "INSERT INTO {leases} (partition) SELECT generate_series(0, %s - 1)"
                    " ON CONFLICT DO NOTHING"
                ),
                [self.config.partitions],
            )

    # -- the heartbeat -------------------------------------------------------------------------

    def heartbeat(
        self,
        conn: Any,
        worker_id: str,
        *,
        position: int = 0,
        info: Mapping[str, Any] | None = None,
        release: Sequence[int] = (),
    ) -> Heartbeat:
        """Renew this worker's row and leases, release ``release``, and take the free or expired
        partitions the assignment gives it."""
        from psycopg.types.json import Jsonb

        q = self._q
        ttl = self.config.lease_ttl_s
        conn.execute(
            q(
                "INSERT INTO {workers} (worker_id, host, pid, heartbeat_at, expires_at, position,"
                " info) VALUES (%s, %s, %s, now(), now() + make_interval(secs => %s), %s, %s)"
                " ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(),"
                " expires_at = EXCLUDED.expires_at, position = EXCLUDED.position,"
                " info = EXCLUDED.info"
            ),
            [worker_id, socket.gethostname(), os.getpid(), ttl, position, Jsonb(dict(info or {}))],
        )
        if release:
            conn.execute(
                q(
                    "UPDATE {leases} SET owner = NULL, expires_at = now()"
                    " WHERE owner = %s AND partition = ANY(%s)"
                ),
                [worker_id, list(release)],
            )
        live = tuple(
            r[0]
            for r in conn.execute(
                q("SELECT worker_id FROM {workers} WHERE expires_at > now() ORDER BY worker_id")
            )
        )
        owners = dict(
            conn.execute(
                q(
                    "SELECT partition, owner FROM {leases} WHERE owner IS NOT NULL AND expires_at > now()"
                )
            ).fetchall()
        )
        plan = assign(self.config.partitions, live, owners)
        mine = {p for p, w in plan.items() if w == worker_id}
        renewed = {
            r[0]
            for r in conn.execute(
                q(
                    "UPDATE {leases} SET expires_at = now() + make_interval(secs => %s)"
                    " WHERE owner = %s RETURNING partition"
                ),
                [ttl, worker_id],
            )
        }
        want = sorted(mine - renewed)
        acquired: set[int] = set()
        if want:
            acquired = {
                r[0]
                for r in conn.execute(
                    q(
                        "UPDATE {leases} SET owner = %s, acquired_at = now(), epoch = epoch + 1,"
                        " expires_at = now() + make_interval(secs => %s)"
                        " WHERE partition = ANY(%s) AND (owner IS NULL OR expires_at <= now())"
                        " RETURNING partition"
                    ),
                    [worker_id, ttl, want],
                )
            }
        held = frozenset(renewed | acquired)
        return Heartbeat(held, frozenset(acquired), held - mine, live)

    def leave(self, conn: Any, worker_id: str) -> None:
        """Give up every lease and the membership row (a graceful stop: others take over at
        their next heartbeat instead of waiting for the leases to expire)."""
        q = self._q
        conn.execute(
            q("UPDATE {leases} SET owner = NULL, expires_at = now() WHERE owner = %s"),
            [worker_id],
        )
        conn.execute(q("DELETE FROM {workers} WHERE worker_id = %s"), [worker_id])

    # -- reading -------------------------------------------------------------------------------

    def read(self, conn: Any) -> tuple[int, int, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """(partitions, head of the notification log, worker rows, lease rows), for status."""
        q = self._q

        def exists(table: str) -> bool:
            found = conn.execute(
                "SELECT to_regclass(%s)", [f'"{self.schema}"."{table}"']
            ).fetchone()
            return found is not None and found[0] is not None

        head = 0
        if exists("tcs_events"):
            row = conn.execute(q("SELECT coalesce(max(notification_id), 0) FROM {events}"))
            head = int(row.fetchone()[0])
        if not exists("tcs_cluster_meta"):  # no worker has joined yet
            return 0, head, [], []
        row = conn.execute(q("SELECT value FROM {meta} WHERE key = 'partitions'")).fetchone()
        partitions = int(row[0]) if row else 0
        workers = conn.execute(
            q(
                "SELECT worker_id, host, pid, extract(epoch FROM now() - heartbeat_at),"
                " expires_at > now(), position, info, started_at FROM {workers} ORDER BY worker_id"
            )
        ).fetchall()
        leases = conn.execute(
            q(
                "SELECT partition, owner, extract(epoch FROM expires_at - now()), epoch"
                " FROM {leases} ORDER BY partition"
            )
        ).fetchall()
        return partitions, head, workers, leases
