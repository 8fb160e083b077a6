"""The durable send journal: one row per idempotency key, written *before* the gateway is asked
and updated with its answer; delivery reports land in it too.

States of a key:

- ``pending``: written before the request went out; the answer is not (yet) recorded. After a
  crash this is the *ambiguous* state: the gateway may or may not have the message.
- ``accepted``: the gateway took it (its message id, if it gave one, is ``remote_id``).
- ``refused``: the gateway refused it for good (bad number, bad credentials...).
- ``retry``: the gateway answered that it did not take it (throttled, 5xx, down): sending again
  cannot make a duplicate.

SQLite in WAL mode, one short transaction per change. ``synchronous=NORMAL`` (the default)
survives a crash or kill of the process; ``full`` also survives a power cut, at an fsync per write.
Several processes may share the file (the sender and a separate receiver, say).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "Journal", "Receipt"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (
    key TEXT PRIMARY KEY,
    dispatch TEXT NOT NULL,
    device TEXT NOT NULL,
    number TEXT NOT NULL,
    gateway TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    answered_at REAL,
    remote_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL,
    remote_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    recorded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS receipts_key ON receipts (key);
CREATE INDEX IF NOT EXISTS receipts_unrecorded ON receipts (recorded) WHERE recorded = 0;
"""


@dataclass(frozen=True)
class Entry:
    """One key's row."""

    key: str
    dispatch: str
    device: str
    number: str
    gateway: str
    state: str
    attempts: int
    submitted_at: float
    answered_at: float | None
    remote_id: str
    reason: str


@dataclass(frozen=True)
class Receipt:
    """A delivery report as stored: ``status`` is one of the Dispatch receipt statuses."""

    seq: int
    key: str
    status: str
    at: float
    remote_id: str
    detail: str


class Journal:
    """The journal file (``":memory:"`` for a journal that does not survive the process)."""

    def __init__(self, path: str | Path, *, synchronous: str = "normal") -> None:
        if synchronous.lower() not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- sends -----------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """The row of ``key``, if it was ever submitted."""
        with self._lock:
            row = self._db.execute("SELECT * FROM sends WHERE key = ?", (key,)).fetchone()
        return None if row is None else Entry(*row)

    def begin(self, key: str, *, dispatch: str, device: str, number: str, gateway: str) -> None:
        """Mark ``key`` pending just before the request goes out (durable when this returns)."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO sends (key, dispatch, device, number, gateway, state, attempts,"
                " submitted_at) VALUES (?, ?, ?, ?, ?, 'pending', 1, ?) ON CONFLICT(key) DO"
                " UPDATE SET state = 'pending', attempts = attempts + 1, submitted_at = ?,"
                " answered_at = NULL",
                (key, dispatch, device, number, gateway, now, now),
            )

    def apply(
        self,
        claims: list[tuple[str, str, str, str, str]],
        answers: list[tuple[str, str, str, str]],
    ) -> list[bool]:
        """One transaction (group commit): new ``pending`` rows for ``claims`` (key, dispatch,
        device, number, gateway), then ``answers`` (key, state, remote id, reason). Per claim:
        True if the row is new, False if the key was there already (left untouched)."""
        now = time.time()
        fresh = []
        with self._tx() as db:
            for claim in claims:
                cur = db.execute(
                    "INSERT OR IGNORE INTO sends (key, dispatch, device, number, gateway, state,"
                    " attempts, submitted_at) VALUES (?, ?, ?, ?, ?, 'pending', 1, ?)",
                    (*claim, now),
                )
                fresh.append(cur.rowcount == 1)
            if answers:
                db.executemany(
                    "UPDATE sends SET state = ?, remote_id = ?, reason = ?, answered_at = ?"
                    " WHERE key = ?",
                    [(state, rid, why, now, key) for key, state, rid, why in answers],
                )
        return fresh

    def finish(self, key: str, state: str, remote_id: str = "", reason: str = "") -> None:
        """Record the gateway's answer: ``accepted``, ``refused`` or ``retry``."""
        if state not in ("accepted", "refused", "retry"):
            raise ValueError(f"unknown journal state {state!r}")
        with self._tx() as db:
            db.execute(
                "UPDATE sends SET state = ?, remote_id = ?, reason = ?, answered_at = ?"
                " WHERE key = ?",
                (state, remote_id, reason, time.time(), key),
            )

    def count(self, state: str | None = None, device: str | None = None) -> int:
        """Rows in a state (and of a device), or all rows."""
        sql, args = "SELECT COUNT(*) FROM sends WHERE 1 = 1", list[str]()
        if state is not None:
            sql, args = sql + " AND state = ?", [*args, state]
        if device is not None:
            sql, args = sql + " AND device = ?", [*args, device]
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def pending(self) -> list[Entry]:
        """Keys whose answer was never recorded (ambiguous after a crash)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM sends WHERE state = 'pending'").fetchall()
        return [Entry(*r) for r in rows]

    def prune(self, older_than_s: float) -> int:
        """Forget keys answered more than ``older_than_s`` ago (and their recorded reports); a
        dispatch older than that is never resumed. Pending keys are kept. How many keys went."""
        cutoff = time.time() - older_than_s
        with self._tx() as db:
            gone = [
                r[0]
                for r in db.execute(
                    "SELECT key FROM sends WHERE state != 'pending' AND answered_at < ?", (cutoff,)
                )
            ]
            db.executemany("DELETE FROM sends WHERE key = ?", [(k,) for k in gone])
            db.executemany(
                "DELETE FROM receipts WHERE key = ? AND recorded = 1", [(k,) for k in gone]
            )
        return len(gone)

    # -- receipts --------------------------------------------------------------------------------

    def add_receipt(self, key: str, status: str, remote_id: str = "", detail: str = "") -> int:
        """Store a delivery report (durable when this returns); its sequence number."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO receipts (key, status, at, remote_id, detail) VALUES (?, ?, ?, ?, ?)",
                (key, status, time.time(), remote_id, detail),
            )
            seq = int(cur.lastrowid or 0)
        return seq

    def receipts(self, key: str) -> list[Receipt]:
        """The delivery reports of ``key``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, status, at, remote_id, detail FROM receipts WHERE key = ?"
                " ORDER BY seq",
                (key,),
            ).fetchall()
        return [Receipt(*r) for r in rows]

    def unrecorded(self, limit: int = 5000) -> list[Receipt]:
        """Reports not yet handed to the Dispatch (after a crash, or a failed hand-over)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, status, at, remote_id, detail FROM receipts WHERE recorded = 0"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [Receipt(*r) for r in rows]

    def mark_recorded(self, seqs: list[int]) -> None:
        """The Dispatch has these reports."""
        if not seqs:
            return
        with self._tx() as db:
            db.executemany("UPDATE receipts SET recorded = 1 WHERE seq = ?", [(s,) for s in seqs])
