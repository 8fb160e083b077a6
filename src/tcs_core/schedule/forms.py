"""The schedule forms vendor systems offer, as constructors of :class:`ScheduleSpec`.

Once; daily; several times a day; weekly on chosen weekdays; monthly on chosen days; a repeat count
with a gap. Every form takes the same keywords: ``zone`` (a zone name, default Asia/Ho_Chi_Minh),
``valid_from`` / ``valid_until`` (aware datetimes: the validity window, ``valid_until`` exclusive),
``exceptions`` (local dates with no occurrence), ``duration_s``, ``misfire_grace_s`` and
``coalesce``. Bad input raises :class:`~tcs_core.errors.ValidationError` naming the field.

Times of day are ``"HH:MM"`` strings (or :class:`datetime.time` values). One cron expression is a
grid of hours × minutes (06:00 and 17:00 form one); times that do not (06:00 and 11:30) become a
union of expressions, ``"0 6 * * * | 30 11 * * *"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from tcs_core.domain.values import DEFAULT_ZONE, ScheduleKind, ScheduleSpec, as_utc
from tcs_core.errors import ValidationError

__all__ = [
    "daily",
    "monthly",
    "once",
    "parse_time",
    "repeat",
    "several_times_a_day",
    "weekly",
]

_HHMM: Final = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
_WEEKDAYS: Final = {
    name: i
    for i, names in enumerate(
        [
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ]
    )
    for name in names
}
MAX_REPEAT: Final = 10_000
"""Most occurrences a :func:`repeat` schedule may list."""

TimeOfDay = str | time
Weekday = int | str


def parse_time(value: TimeOfDay, field: str = "times") -> tuple[int, int]:
    """``"HH:MM"`` (or a ``time`` on a whole minute) → ``(hour, minute)``, validated."""
    if isinstance(value, time):
        if value.second or value.microsecond or value.tzinfo is not None:
            raise ValidationError(field, f"{value} must be a whole minute with no time zone")
        return value.hour, value.minute
    if not isinstance(value, str):
        raise ValidationError(field, f"expected 'HH:MM', got {type(value).__name__}")
    match = _HHMM.match(value)
    if match is None:
        raise ValidationError(field, f"{value!r} is not a time of day; write it as 'HH:MM'")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23:
        raise ValidationError(field, f"{value!r}: the hour must be 00 to 23")
    if minute > 59:
        raise ValidationError(field, f"{value!r}: the minutes must be 00 to 59")
    return hour, minute


def _join(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in sorted(set(values)))


def _crons(times: Sequence[TimeOfDay], rest: str) -> str:
    """A cron schedule firing at exactly ``times`` on the days ``rest`` (the last three fields)
    names: one expression when the times form an hours × minutes grid, else a union."""
    return " | ".join(f"{fields} {rest}" for fields in _time_fields(times))


def _time_fields(times: Sequence[TimeOfDay]) -> list[str]:
    """Minute and hour fields naming exactly ``times`` each day: one pair for a grid, else one
    per group of hours sharing the same minutes."""
    if isinstance(times, str | time) or not times:
        raise ValidationError("times", "give a non-empty list of 'HH:MM' times")
    pairs = {parse_time(t) for t in times}
    hours = sorted({h for h, _ in pairs})
    minutes = sorted({m for _, m in pairs})
    if len(pairs) == len(hours) * len(minutes):
        return [f"{_join(minutes)} {_join(hours)}"]
    # Not a grid: group the hours by their set of minutes, one expression per group.
    groups: dict[tuple[int, ...], list[int]] = {}
    for hour in hours:
        groups.setdefault(tuple(sorted(m for h, m in pairs if h == hour)), []).append(hour)
    return [f"{_join(mins)} {_join(hrs)}" for mins, hrs in groups.items()]


def _spec(
    cron: str,
    zone: str,
    valid_from: datetime | None,
    valid_until: datetime | None,
    exceptions: Iterable[date | str],
    duration_s: int,
    misfire_grace_s: int,
    coalesce: bool,
) -> ScheduleSpec:
    return ScheduleSpec(
        ScheduleKind.CRON,
        cron=cron,
        zone=zone,
        valid_from=valid_from,
        valid_until=valid_until,
        exceptions=tuple(exceptions),
        duration_s=duration_s,
        misfire_grace_s=misfire_grace_s,
        coalesce=coalesce,
    )


def daily(
    times: Sequence[TimeOfDay],
    *,
    zone: str = DEFAULT_ZONE,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    exceptions: Iterable[date | str] = (),
    duration_s: int = 300,
    misfire_grace_s: int = 300,
    coalesce: bool = True,
) -> ScheduleSpec:
    """Every day at each of ``times`` (local wall times in ``zone``)."""
    return _spec(
        _crons(times, "* * *"),
        zone,
        valid_from,
        valid_until,
        exceptions,
        duration_s,
        misfire_grace_s,
        coalesce,
    )


def several_times_a_day(
    times: Sequence[TimeOfDay],
    *,
    zone: str = DEFAULT_ZONE,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    exceptions: Iterable[date | str] = (),
    duration_s: int = 300,
    misfire_grace_s: int = 300,
    coalesce: bool = True,
) -> ScheduleSpec:
    """The vendors' "several start times per day": the same as :func:`daily`."""
    return daily(
        times,
        zone=zone,
        valid_from=valid_from,
        valid_until=valid_until,
        exceptions=exceptions,
        duration_s=duration_s,
        misfire_grace_s=misfire_grace_s,
        coalesce=coalesce,
    )


def _weekday(value: Any) -> int:
    if isinstance(value, bool):
        raise ValidationError("weekdays", f"{value!r} is not a weekday")
    if isinstance(value, int):
        if not 0 <= value <= 6:
            raise ValidationError(
                "weekdays", f"{value} is not a weekday: use 0 (Monday) to 6 (Sunday)"
            )
        return value
    if isinstance(value, str) and value.strip().lower() in _WEEKDAYS:
        return _WEEKDAYS[value.strip().lower()]
    raise ValidationError(
        "weekdays", f"{value!r} is not a weekday: use 0..6 (0 = Monday) or 'mon'..'sun'"
    )


def weekly(
    weekdays: Sequence[Weekday],
    times: Sequence[TimeOfDay],
    *,
    zone: str = DEFAULT_ZONE,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    exceptions: Iterable[date | str] = (),
    duration_s: int = 300,
    misfire_grace_s: int = 300,
    coalesce: bool = True,
) -> ScheduleSpec:
    """Each of ``weekdays`` (0 = Monday … 6 = Sunday, or ``"mon"`` … ``"sun"``) at ``times``."""
    if isinstance(weekdays, str) or not weekdays:
        raise ValidationError("weekdays", "give a non-empty list of weekdays")
    # Python counts Monday as 0, cron counts Sunday as 0.
    dows = {(_weekday(d) + 1) % 7 for d in weekdays}
    return _spec(
        _crons(times, f"* * {_join(dows)}"),
        zone,
        valid_from,
        valid_until,
        exceptions,
        duration_s,
        misfire_grace_s,
        coalesce,
    )


def monthly(
    days: Sequence[int],
    times: Sequence[TimeOfDay],
    *,
    zone: str = DEFAULT_ZONE,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    exceptions: Iterable[date | str] = (),
    duration_s: int = 300,
    misfire_grace_s: int = 300,
    coalesce: bool = True,
) -> ScheduleSpec:
    """Each of ``days`` of the month (1 to 31) at ``times``; a month without that day skips it."""
    if not days:
        raise ValidationError("days", "give a non-empty list of days of the month")
    for day in days:
        if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 31:
            raise ValidationError("days", f"{day!r} is not a day of the month: use 1 to 31")
    return _spec(
        _crons(times, f"{_join(days)} * *"),
        zone,
        valid_from,
        valid_until,
        exceptions,
        duration_s,
        misfire_grace_s,
        coalesce,
    )


def once(
    at: datetime,
    *,
    zone: str = DEFAULT_ZONE,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    exceptions: Iterable[date | str] = (),
    duration_s: int = 300,
    misfire_grace_s: int = 300,
    coalesce: bool = True,
) -> ScheduleSpec:
    """A single occurrence at the aware instant ``at``."""
    return ScheduleSpec(
        ScheduleKind.ONCE,
        instants=(as_utc(at, "at"),),
        zone=zone,
        valid_from=valid_from,
        valid_until=valid_until,
        exceptions=tuple(exceptions),
        duration_s=duration_s,
        misfire_grace_s=misfire_grace_s,
        coalesce=coalesce,
    )


def repeat(
    start: datetime,
    count: int,
    gap: timedelta,
    *,
    zone: str = DEFAULT_ZONE,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    exceptions: Iterable[date | str] = (),
    duration_s: int = 300,
    misfire_grace_s: int = 300,
    coalesce: bool = True,
) -> ScheduleSpec:
    """``count`` plays, the first at the aware instant ``start``, each ``gap`` after the last start.

    A list schedule. The gap runs from start to start and must be at least ``duration_s``, so the
    plays never overlap one another.
    """
    first = as_utc(start, "start")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPEAT:
        raise ValidationError("count", f"{count!r}: give a count from 1 to {MAX_REPEAT}")
    if not isinstance(gap, timedelta):
        raise ValidationError("gap", f"expected a timedelta, got {type(gap).__name__}")
    if count > 1 and gap < timedelta(seconds=duration_s):
        raise ValidationError(
            "gap",
            f"a gap of {gap.total_seconds():g} s is shorter than the duration of {duration_s} s: "
            "the plays would overlap",
        )
    return ScheduleSpec(
        ScheduleKind.LIST,
        instants=tuple(first + i * gap for i in range(count)),
        zone=zone,
        valid_from=valid_from,
        valid_until=valid_until,
        exceptions=tuple(exceptions),
        duration_s=duration_s,
        misfire_grace_s=misfire_grace_s,
        coalesce=coalesce,
    )
