"""The engine that turns approved broadcasts into Dispatches and deliveries."""

from tcs_core.scheduler.clock import Clock, RealClock, VirtualClock
from tcs_core.scheduler.engine import ClashRule, Scheduler, SchedulerConfig, SchedulerStats
from tcs_core.scheduler.writer import GroupCommitWriter

__all__ = [
    "ClashRule",
    "Clock",
    "GroupCommitWriter",
    "RealClock",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStats",
    "VirtualClock",
]
