"""``cluster_status``: the workers, who owns each partition, and how far behind the log each is."""

from __future__ import annotations

import json
from typing import Any

import attrs

from tcs_core.cluster.leases import ClusterConfig, LeaseStore, connect
from tcs_core.config import Settings
from tcs_core.i18n import message

__all__ = ["ClusterStatus", "PartitionStatus", "WorkerStatus", "cluster_status", "render_status"]


@attrs.frozen
class WorkerStatus:
    """One worker as its last heartbeat described it."""

    worker_id: str
    host: str
    pid: int
    alive: bool
    heartbeat_age_s: float
    partitions: tuple[int, ...]  # leases it holds now (by the lease table)
    position: int  # the notification log position its projections have processed
    lag: int  # events recorded after that position
    dispatches: int
    duplicates: int  # occurrences it found already fired by another worker


@attrs.frozen
class PartitionStatus:
    """One partition's lease."""

    partition: int
    owner: str | None  # None: free, or its lease has expired
    expires_in_s: float | None
    epoch: int  # takeovers so far


@attrs.frozen
class ClusterStatus:
    """The cluster as the lease table and the notification log show it."""

    partitions: int
    head: int  # the newest notification id
    workers: tuple[WorkerStatus, ...]
    leases: tuple[PartitionStatus, ...]

    @property
    def unowned(self) -> tuple[int, ...]:
        """Partitions no live worker holds (their occurrences wait for a takeover)."""
        return tuple(x.partition for x in self.leases if x.owner is None)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return {
            **attrs.asdict(self, recurse=True),
            "unowned": list(self.unowned),
        }


def cluster_status(settings: Settings) -> ClusterStatus:
    """Read the cluster's state from the store of ``settings`` (PostgreSQL)."""
    store = LeaseStore(settings, ClusterConfig())
    conn = connect(settings)
    try:
        partitions, head, worker_rows, lease_rows = store.read(conn)
    finally:
        conn.close()
    leases = tuple(
        PartitionStatus(
            int(p),
            owner if owner is not None and left is not None and float(left) > 0 else None,
            float(left) if left is not None and owner is not None else None,
            int(epoch),
        )
        for p, owner, left, epoch in lease_rows
    )
    held: dict[str, list[int]] = {}
    for x in leases:
        if x.owner is not None:
            held.setdefault(x.owner, []).append(x.partition)
    workers = tuple(
        WorkerStatus(
            str(wid),
            str(host or ""),
            int(pid or 0),
            bool(alive),
            round(float(age), 3),
            tuple(held.get(str(wid), [])),
            int(position),
            max(0, head - int(position)),
            int((info or {}).get("dispatches", 0)),
            int((info or {}).get("duplicates", 0)),
        )
        for wid, host, pid, age, alive, position, info, _started in worker_rows
    )
    return ClusterStatus(partitions, head, workers, leases)


_TEXT = {
    "title": {"vi": "Cụm bộ lập lịch", "en": "Scheduler cluster"},
    "summary": {
        "vi": "{p} phân vùng, nhật ký sự kiện đến #{head}; {live} tiến trình đang sống; "
        "phân vùng chưa có chủ: {free}",
        "en": "{p} partitions, event log at #{head}; {live} live workers; unowned: {free}",
    },
    "head": {
        "vi": "tiến trình  máy  pid  sống  nhịp(s)  phân vùng  vị trí  trễ  lượt phát  trùng",
        "en": "worker  host  pid  alive  beat(s)  partitions  position  lag  dispatches  dup",
    },
    "yes": {"vi": "có", "en": "yes"},
    "no": {"vi": "không", "en": "no"},
    "none": {"vi": "không", "en": "none"},
    "empty": {
        "vi": "chưa có tiến trình nào tham gia cụm (chạy: tcs worker)",
        "en": "no worker has joined yet (run: tcs worker)",
    },
}


def _t(key: str, lang: str, **kw: Any) -> str:
    return message(_TEXT, key, lang, **kw)


def render_status(status: ClusterStatus, fmt: str = "table", lang: str = "vi") -> str:
    """The status as a text table (Vietnamese or English) or as JSON."""
    if fmt == "json":
        return json.dumps(status.as_dict(), ensure_ascii=False, indent=2)
    live = sum(1 for w in status.workers if w.alive)
    free = ", ".join(map(str, status.unowned)) or _t("none", lang)
    lines = [
        _t("title", lang),
        _t("summary", lang, p=status.partitions, head=status.head, live=live, free=free),
    ]
    if not status.workers:
        lines.append(_t("empty", lang))
        return "\n".join(lines) + "\n"
    rows = [tuple(_t("head", lang).split("  "))]
    for w in status.workers:
        rows.append(
            (
                w.worker_id,
                w.host,
                str(w.pid),
                _t("yes" if w.alive else "no", lang),
                f"{w.heartbeat_age_s:.1f}",
                ",".join(map(str, w.partitions)) or "-",
                str(w.position),
                str(w.lag),
                str(w.dispatches),
                str(w.duplicates),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(lines) + "\n"
