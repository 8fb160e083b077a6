"""Cluster mode on PostgreSQL: scheduler workers that split the schedules into partitions, hold
them through leases, and take over a dead worker's share within the lease time.

See docs/scaling.md. The pieces:

- ``partition_of`` / ``assign``: a broadcast's partition, and which live worker should own it;
- ``ClusterConfig`` / ``LeaseStore``: partition count and lease timing; the lease table;
- ``Worker``: the ``Scheduler`` restricted to the partitions this worker leases;
- ``cluster_status`` / ``render_status``: workers, partitions and lag behind the event log.
"""

from tcs_core.cluster.leases import ClusterConfig, Heartbeat, LeaseStore
from tcs_core.cluster.partitions import MAX_PARTITIONS, assign, partition_of
from tcs_core.cluster.status import (
    ClusterStatus,
    PartitionStatus,
    WorkerStatus,
    cluster_status,
    render_status,
)
from tcs_core.cluster.worker import Worker

__all__ = [
    "MAX_PARTITIONS",
    "ClusterConfig",
    "ClusterStatus",
    "Heartbeat",
    "LeaseStore",
    "PartitionStatus",
    "Worker",
    "WorkerStatus",
    "assign",
    "cluster_status",
    "partition_of",
    "render_status",
]
