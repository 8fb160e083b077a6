"""Schedules: occurrences of a ScheduleSpec, the vendor schedule forms, clash detection.

Pure functions, no I/O. A cron wall time fires when the zone's clock first reaches it (once in a
repeated hour, at the end of a skipped one); when day of month and day of week are both restricted
a day matches if either does. ``docs/schedules.md`` has the details and examples.
"""

from __future__ import annotations

from tcs_core.schedule.clash import Item, Schedulable, clashes
from tcs_core.schedule.forms import (
    daily,
    monthly,
    once,
    parse_time,
    repeat,
    several_times_a_day,
    weekly,
)
from tcs_core.schedule.recurrence import (
    CacheStats,
    RecurrenceCache,
    default_cache,
    next_occurrence,
    occurrences,
    wall_to_utc,
)

__all__ = [
    "CacheStats",
    "Item",
    "RecurrenceCache",
    "Schedulable",
    "clashes",
    "daily",
    "default_cache",
    "monthly",
    "next_occurrence",
    "occurrences",
    "once",
    "parse_time",
    "repeat",
    "several_times_a_day",
    "wall_to_utc",
    "weekly",
]
