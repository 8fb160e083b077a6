"""The engine that turns approved broadcasts into Dispatches and deliveries."""

from tcs_core.scheduler.clock import AcceleratedClock, Clock, RealClock, VirtualClock
from tcs_core.scheduler.engine import ClashRule, Scheduler, SchedulerConfig, SchedulerStats
from tcs_core.scheduler.writer import GroupCommitWriter

__all__ = [
    "AcceleratedClock",
    "ClashRule",
    "Clock",
    "GroupCommitWriter",
    "RealClock",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStats",
    "VirtualClock",
]
