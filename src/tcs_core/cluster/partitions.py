"""Partitions: which share of the schedules a broadcast belongs to, and who should own each.

A broadcast's partition is a hash of its id (stable across processes and Python versions, unlike
``hash()``), so every worker computes the same answer with no shared table. Partitions are
shared equally (±1) among the live workers, and sticky: a worker keeps what it holds up to its
share, so a worker joining or leaving moves only the partitions it must.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from uuid import UUID

from tcs_core.errors import ValidationError

__all__ = ["MAX_PARTITIONS", "assign", "partition_of"]

#: More partitions than this only cost lease rows and heartbeat work.
MAX_PARTITIONS = 4096


def partition_of(broadcast_id: UUID, partitions: int) -> int:
    """The partition (``0 … partitions-1``) of a broadcast."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValidationError("partitions", f"must be between 1 and {MAX_PARTITIONS}")
    digest = hashlib.blake2b(broadcast_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def assign(
    partitions: int, workers: Sequence[str], owners: Mapping[int, str] | None = None
) -> dict[int, str]:
    """Which live worker should own each partition: equal shares (±1), sticky.

    Each worker's share is ``partitions // n`` (the first ``partitions % n`` workers in id order
    get one more). A worker keeps the partitions it holds now (``owners``), up to its share; the
    rest go, in partition order, to the workers still below theirs. A pure function of the
    membership and the current owners, so every worker computes the same answer, and a worker
    joining or leaving moves only the partitions it must."""
    live = sorted(set(workers))
    if not live:
        return {}
    n = len(live)
    quota = {w: partitions // n + (1 if i < partitions % n else 0) for i, w in enumerate(live)}
    out: dict[int, str] = {}
    for p, w in sorted((owners or {}).items()):
        if w in quota and quota[w] > 0 and 0 <= p < partitions:
            out[p] = w
            quota[w] -= 1
    room = iter([w for w in live for _ in range(quota[w])])
    for p in range(partitions):
        if p not in out:
            out[p] = next(room)
    return out
