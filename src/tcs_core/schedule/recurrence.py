"""Occurrences of a :class:`~tcs_core.domain.values.ScheduleSpec`, as aware UTC instants.

Pure functions and one in-memory cache; no I/O.

**Wall times to instants (the DST policy).** A cron expression names *wall times* in the spec's
zone. Each wall time fires at the first instant at which the zone's clock shows that wall time or a
later one. So:

- a wall time that happens twice (the repeated hour when clocks fall back) fires **once**, at the
  first of the two instants (02:30 on 2026-10-25 in Europe/Berlin fires at 00:30 UTC only);
- a wall time that never happens (the hour skipped when clocks spring forward) fires at the
  **first valid instant after the gap** (02:30 on 2026-03-29 in Europe/Berlin fires at 03:00
  local, 01:00 UTC). Several wall times that fall into one gap, or a gap wall time and the wall
  time that ends the gap, fire once together.

croniter alone does otherwise (with an aware start it fires twice in a repeated hour), so croniter
is only asked for *wall times* and the mapping to instants is done here with pytz.

**Day of month and day of week.** When both fields are restricted -- neither is ``*`` or ``?`` -- a
day matches if *either* matches (croniter's default OR, as in POSIX and classic Vixie cron:
``0 9 13 * 5`` fires on every 13th and on every Friday). When one of them is ``*``, only the other
one counts. A field such as ``*/2`` or ``1-31`` is restricted (Vixie's implementation treats a
field that merely *starts* with ``*`` as unrestricted -- the "cron bug" -- and this module does
not; croniter agrees except when one field lists every value and the other holds a ``*`` step,
e.g. ``0 9 1-31 * */2``, which croniter reads as an AND: here it fires every day).

**Shared computation.** Each distinct ``(cron, zone)`` is computed once: a :class:`RecurrenceCache`
keeps, per key, a sorted run of upcoming instants extended on demand, and every schedule with that
key reads from it. :func:`next_occurrence` and :func:`occurrences` use :data:`default_cache` unless
given another.

Plain expressions (numbers, names, ``*``, ``?``, lists, ranges, steps; 5 fields, or 6 with seconds
last, or 7 with a year) are expanded by ``croniter.expand`` and walked here, day by day, which is
several times faster than croniter's iterator. Expressions using ``L``, ``W`` or ``#`` are walked by
croniter itself (on naive wall times, so DST never enters its arithmetic); how those combine with
the other day field is croniter's rule.

pytz's compiled zone data lists DST transitions up to 2037 only; instants after that use the last
listed offset.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import attrs
import pytz
from croniter import CroniterBadDateError, croniter

from tcs_core.domain.values import ScheduleKind, ScheduleSpec, as_utc, cron_parts
from tcs_core.errors import ValidationError

__all__ = [
    "CacheStats",
    "RecurrenceCache",
    "default_cache",
    "next_occurrence",
    "occurrences",
    "wall_to_utc",
]

_DAY: Final = timedelta(days=1)
_TICK: Final = timedelta(microseconds=1)
# Any instant whose local wall time falls on a given day lies within this far of that day (UTC
# offsets range from -12:00 to +14:00); used to decide whether a day is clear of transitions.
_REACH: Final = timedelta(hours=16)
# How far before the start the wall-time walk begins, so that wall times skipped by a gap just
# before the start (which fire at the end of the gap) are not missed. Gaps are at most a day.
_MARGIN: Final = timedelta(days=2)
# A plain expression that has not matched in this many years never will (400 years is a full
# Gregorian cycle); croniter's own limit for the other expressions is 50 years.
_MAX_BARREN_YEARS: Final = 400


# --------------------------------------------------------------------------------------------
# Zones: wall time -> instant
# --------------------------------------------------------------------------------------------


class _Zone:
    """A pytz zone with the DST policy: a wall time fires when the clock first reaches it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tz: Any = pytz.timezone(name)
        # Naive UTC instants at which the offset changes (pytz DstTzInfo); none for fixed zones.
        found: list[datetime] | None = getattr(self.tz, "_utc_transition_times", None)
        self.transitions: list[datetime] = list(found) if found else []
        self._day_offsets: dict[date, timedelta | None] = {}

    def offset_at(self, naive_utc: datetime) -> timedelta:
        """UTC offset of the zone at a naive UTC instant."""
        offset: timedelta | None = (
            naive_utc.replace(tzinfo=pytz.utc).astimezone(self.tz).utcoffset()
        )
        assert offset is not None
        return offset

    def day_offset(self, day: date) -> timedelta | None:
        """The one offset that maps every wall time of ``day``, or None near a transition."""
        try:
            return self._day_offsets[day]
        except KeyError:
            pass
        start = datetime.combine(day, time())
        lo, hi = start - _REACH, start + _DAY + _REACH
        i = bisect.bisect_right(self.transitions, lo)
        near = i < len(self.transitions) and self.transitions[i] <= hi
        offset = None if near else self.offset_at(start)
        if len(self._day_offsets) > 4096:
            self._day_offsets.clear()
        self._day_offsets[day] = offset
        return offset

    def to_utc(self, wall: datetime) -> datetime:
        """The instant at which naive local ``wall`` fires under the DST policy (aware UTC)."""
        offset = self.day_offset(wall.date())
        if offset is not None:
            return (wall - offset).replace(tzinfo=UTC)
        try:
            return self._utc(self.tz.localize(wall, is_dst=None))
        except pytz.AmbiguousTimeError:
            # Happens twice: the first of the two instants.
            return min(
                self._utc(self.tz.localize(wall, is_dst=True)),
                self._utc(self.tz.localize(wall, is_dst=False)),
            )
        except pytz.NonExistentTimeError:
            return self._gap_end(wall)

    @staticmethod
    def _utc(aware: datetime) -> datetime:
        return aware.astimezone(UTC)

    def _gap_end(self, wall: datetime) -> datetime:
        """The transition that skips ``wall``: the first valid instant after the gap."""
        lo = bisect.bisect_left(self.transitions, wall - _REACH - _DAY)
        hi = bisect.bisect_right(self.transitions, wall + _REACH + _DAY)
        for moment in self.transitions[lo:hi]:
            before = moment + self.offset_at(moment - _TICK)
            after = moment + self.offset_at(moment)
            if before <= wall < after:
                return moment.replace(tzinfo=UTC)
        raise AssertionError(f"no transition skips {wall} in {self.name}")  # pragma: no cover


_zones: dict[str, _Zone] = {}
_zones_lock = threading.Lock()


def _zone(name: str) -> _Zone:
    zone = _zones.get(name)
    if zone is None:
        with _zones_lock:
            zone = _zones.setdefault(name, _Zone(name))
    return zone


def wall_to_utc(zone: str, wall: datetime) -> datetime:
    """Instant (aware UTC) at which a naive local wall time in ``zone`` fires, per the DST policy.

    A wall time that happens twice maps to the first of its two instants; one that never happens
    maps to the first valid instant after the gap.
    """
    if wall.tzinfo is not None:
        raise ValidationError("wall", "a wall time is naive: the zone is given apart")
    return _zone(zone).to_utc(wall)


# --------------------------------------------------------------------------------------------
# Wall times named by a cron expression
# --------------------------------------------------------------------------------------------

_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NAMES: Final = re.compile(
    r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|sun|mon|tue|wed|thu|fri|sat"
)
_PLAIN: Final = re.compile(r"^[0-9*?,/\-]+$")
_MINUTE, _HOUR, _DOM, _MONTH, _DOW, _SECOND, _YEAR = range(7)


@attrs.frozen
class _Plain:
    """The expanded fields of a plain expression (no ``L``, ``W``, ``#``, ``H``)."""

    times: tuple[time, ...]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # cron numbering: 0 = Sunday
    years: frozenset[int] | None
    day_or: bool

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.doms
        dow = (day.isoweekday() % 7) in self.dows
        return (dom or dow) if self.day_or else (dom and dow)


_EQUAL_RANGE: Final = re.compile(r"^([0-9a-z]+)-([0-9a-z]+)(/\d+)?$")


def _single(element: str) -> str:
    """``5-5`` and ``5-5/2`` → ``5``: a range whose ends are equal holds that one value."""
    match = _EQUAL_RANGE.match(element)
    if match is None:
        return element
    low, high = match.group(1), match.group(2)
    if low == high or (low.isdigit() and high.isdigit() and int(low) == int(high)):
        return low
    return element


def _fields(expr: str) -> list[str]:
    """The fields of ``expr``, lower case, aliases expanded, equal ranges made single values.

    croniter 7 reads a range with equal ends (``5-5``, ``jan-jan``) as the *whole* cycle, so
    ``0 6-6 * * *`` would fire every hour; classic cron reads it as the one value, and so does
    this module.
    """
    text = expr.strip().lower()
    fields = _ALIASES.get(text, text).split()
    return [",".join(_single(e) for e in f.split(",")) for f in fields]


def _plain(expr: str) -> _Plain | None:
    """Expand ``expr`` if it is plain, else None (croniter walks it)."""
    fields = _fields(expr)
    if not all(_PLAIN.match(_NAMES.sub("0", f)) for f in fields):
        return None
    expanded, nth = croniter.expand(" ".join(fields))
    if nth:  # pragma: no cover - '#' is not plain
        return None

    def values(index: int, full: range) -> frozenset[int]:
        got = expanded[index]
        return frozenset(full) if got == ["*"] else frozenset(int(v) for v in got)

    minutes = sorted(values(_MINUTE, range(60)))
    hours = sorted(values(_HOUR, range(24)))
    seconds = sorted(values(_SECOND, range(60))) if len(expanded) > _SECOND else [0]
    years = (
        values(_YEAR, range(1970, 2100))
        if len(expanded) > _YEAR and expanded[_YEAR] != ["*"]
        else None
    )
    star = ("*", "?")
    return _Plain(
        times=tuple(time(h, m, s) for h in hours for m in minutes for s in seconds),
        doms=values(_DOM, range(1, 32)),
        months=values(_MONTH, range(1, 13)),
        dows=frozenset(d % 7 for d in values(_DOW, range(7))),
        years=years,
        day_or=fields[_DOM] not in star and fields[_DOW] not in star,
    )


def _plain_days(fields: _Plain, first: date) -> Iterator[date]:
    """Days from ``first`` on whose date matches a plain expression, in order."""
    day = first
    last_match_year = day.year
    year_set = fields.years
    while True:
        if day.year - last_match_year > _MAX_BARREN_YEARS:
            return
        if year_set is not None and day.year not in year_set:
            later = sorted(y for y in year_set if y > day.year)
            if not later:
                return
            day = date(later[0], 1, 1)
            continue
        if day.month not in fields.months:
            if day.year == date.max.year and day.month == 12:
                return
            day = _next_month(day)
            continue
        if fields.day_matches(day):
            last_match_year = day.year
            yield day
        if day == date.max:
            return
        day += _DAY


def _plain_walls(fields: _Plain, first: datetime) -> Iterator[datetime]:
    """Wall times named by a plain expression, from naive ``first`` on, in order."""
    for day in _plain_days(fields, first.date()):
        for tod in fields.times:
            wall = datetime.combine(day, tod)
            if wall >= first:
                yield wall


def _plain_instants(fields: _Plain, zone: _Zone, first: date) -> Iterator[datetime]:
    """Instants of a plain expression's wall times from day ``first`` on (may repeat)."""
    deltas = [timedelta(hours=t.hour, minutes=t.minute, seconds=t.second) for t in fields.times]
    for day in _plain_days(fields, first):
        offset = zone.day_offset(day)
        if offset is None:  # a transition is near: map each wall time by the policy
            for tod in fields.times:
                yield zone.to_utc(datetime.combine(day, tod))
        else:
            midnight = datetime.combine(day, time(), UTC) - offset
            for delta in deltas:
                yield midnight + delta


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def _croniter_walls(expr: str, first: datetime) -> Iterator[datetime]:
    """Wall times from croniter's own iterator (naive, so no DST), from ``first`` on."""
    it = croniter(" ".join(_fields(expr)), first - _TICK, ret_type=datetime, day_or=True)
    while True:
        try:
            wall: datetime = it.get_next(datetime)
        except (CroniterBadDateError, OverflowError):
            return
        yield wall


def _instants(expr: str, zone_name: str, start: datetime) -> Iterator[datetime]:
    """Instants (aware UTC, strictly increasing) named by ``expr`` in the zone, from ``start``."""
    zone = _zone(zone_name)
    first = start.astimezone(zone.tz).replace(tzinfo=None) - _MARGIN
    plain = _plain(expr)
    raw = (
        _plain_instants(plain, zone, first.date())
        if plain is not None
        else (zone.to_utc(wall) for wall in _croniter_walls(expr, first))
    )
    previous: datetime | None = None
    for instant in raw:
        # The DST policy maps wall times monotonically, so equal instants are adjacent.
        if instant < start or instant == previous:
            continue
        previous = instant
        yield instant


# --------------------------------------------------------------------------------------------
# The shared cache
# --------------------------------------------------------------------------------------------


@attrs.frozen
class CacheStats:
    """Counters of a :class:`RecurrenceCache`.

    ``hits``: lookups answered from instants already computed; ``misses``: lookups that had to
    compute; ``keys``: distinct ``(cron, zone)`` held; ``builds``: times a sequence was started
    (once per key unless it was evicted or asked far out of its window); ``computed``: instants
    computed in all.
    """

    hits: int
    misses: int
    keys: int
    builds: int
    computed: int


class _Run:
    """A window of one key's instants: every instant in ``[lo, covered end]`` is in ``items``."""

    __slots__ = ("exhausted", "gen", "items", "lo")

    def __init__(self, lo: datetime, gen: Iterator[datetime]) -> None:
        self.lo = lo
        self.items: list[datetime] = []
        self.gen = gen
        self.exhausted = False


class RecurrenceCache:
    """Instants of each distinct ``(cron, zone)``, computed once and shared by every schedule.

    Per key it keeps a sorted run of instants and the generator that continues it; a lookup past
    the run pulls ``chunk`` more. Runs longer than ``max_per_key`` drop their oldest instants, and
    at most ``max_keys`` keys are kept (least recently used go first). Thread-safe.
    """

    def __init__(self, max_keys: int = 4096, max_per_key: int = 4096, chunk: int = 64) -> None:
        if max_keys < 1 or max_per_key < 2 or chunk < 1:
            raise ValueError("max_keys >= 1, max_per_key >= 2 and chunk >= 1 are required")
        self._max_keys = max_keys
        self._max_per_key = max_per_key
        self._chunk = chunk
        self._runs: OrderedDict[tuple[str, str], _Run] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._builds = self._computed = 0

    def stats(self) -> CacheStats:
        """Current counters."""
        with self._lock:
            return CacheStats(
                self._hits, self._misses, len(self._runs), self._builds, self._computed
            )

    def clear(self) -> None:
        """Forget every key and reset the counters."""
        with self._lock:
            self._runs.clear()
            self._hits = self._misses = self._builds = self._computed = 0

    def take(self, cron: str, zone: str, start: datetime, n: int) -> list[datetime]:
        """The first ``n`` instants at or after ``start`` (fewer only when the sequence ends)."""
        start = as_utc(start, "start")
        with self._lock:
            key = (cron, zone)
            run = self._runs.get(key)
            if run is None or start < run.lo:
                run = self._build(key, start)
                self._misses += 1
            else:
                self._runs.move_to_end(key)
                i = bisect.bisect_left(run.items, start)
                if i + n <= len(run.items) or run.exhausted:
                    self._hits += 1
                    return run.items[i : i + n]
                self._misses += 1
                if run.items and start > run.items[-1] and not self._reach(run, start):
                    run = self._build(key, start)
            i = bisect.bisect_left(run.items, start)
            self._pull(run, i + n - len(run.items) + self._chunk)
            out = run.items[i : i + n]
            self._trim(run)
            return out

    def first_after(self, cron: str, zone: str, after: datetime) -> datetime | None:
        """The first instant strictly after ``after``, or None if the sequence has ended."""
        got = self.take(cron, zone, as_utc(after, "after") + _TICK, 1)
        return got[0] if got else None

    def iter_from(self, cron: str, zone: str, start: datetime) -> Iterator[datetime]:
        """Instants at or after ``start``, in order, read from the cache in batches."""
        size = self._chunk
        while True:
            batch = self.take(cron, zone, start, size)
            yield from batch
            if len(batch) < size:
                return
            start = batch[-1] + _TICK
            size = min(size * 2, self._max_per_key // 2)

    # -- internals (called with the lock held) ----------------------------------------------

    def _build(self, key: tuple[str, str], start: datetime) -> _Run:
        run = _Run(start, _instants(key[0], key[1], start))
        self._runs[key] = run
        self._runs.move_to_end(key)
        self._builds += 1
        while len(self._runs) > self._max_keys:
            self._runs.popitem(last=False)
        return run

    def _pull(self, run: _Run, count: int) -> None:
        if run.exhausted:
            return
        for _ in range(max(count, 0)):
            try:
                run.items.append(next(run.gen))
            except StopIteration:
                run.exhausted = True
                return
            self._computed += 1

    def _reach(self, run: _Run, start: datetime) -> bool:
        """Extend the run towards ``start``; False if that would take over ``max_per_key``."""
        pulled = 0
        while not run.exhausted and run.items[-1] < start:
            if pulled >= self._max_per_key:
                return False
            self._pull(run, self._chunk)
            pulled += self._chunk
            self._trim(run)
        return True

    def _trim(self, run: _Run) -> None:
        if len(run.items) > self._max_per_key:
            del run.items[: len(run.items) - self._max_per_key // 2]
            run.lo = run.items[0]


default_cache: Final = RecurrenceCache()
"""The process-wide cache used when no other is given."""


# --------------------------------------------------------------------------------------------
# Occurrences of a spec
# --------------------------------------------------------------------------------------------


class _Exceptions:
    """Tests whether an instant falls on one of a spec's exception dates (local dates)."""

    def __init__(self, spec: ScheduleSpec) -> None:
        self.dates = frozenset(spec.exceptions)
        # A local date is at most one day off the UTC date: only those need the zone.
        self.near = frozenset(d + k * _DAY for d in self.dates for k in (-1, 0, 1))
        self.tz = _zone(spec.zone).tz if self.dates else None

    def __contains__(self, instant: datetime) -> bool:
        if instant.date() not in self.near:
            return False
        return instant.astimezone(self.tz).date() in self.dates


def _raw(spec: ScheduleSpec, start: datetime, cache: RecurrenceCache) -> Iterator[datetime]:
    """Instants of the spec at or after ``start``, ignoring the window and exceptions."""
    if spec.kind is ScheduleKind.CRON:
        assert spec.cron is not None
        parts = cron_parts(spec.cron)
        if len(parts) == 1:
            return cache.iter_from(parts[0], spec.zone, start)
        # A union: each (expression, zone) is computed (and shared) on its own, then merged.
        merged = heapq.merge(*(cache.iter_from(p, spec.zone, start) for p in parts))
        return (t for t, _ in itertools.groupby(merged))
    instants: Sequence[datetime] = spec.instants
    return iter(instants[bisect.bisect_left(instants, start) :])


def occurrences(
    spec: ScheduleSpec,
    start: datetime,
    end: datetime,
    *,
    cache: RecurrenceCache | None = None,
) -> Iterator[datetime]:
    """Occurrences of ``spec`` (aware UTC, increasing) in ``[start, end)``.

    Only instants within the validity window (``valid_from`` inclusive, ``valid_until``
    exclusive) count, and none on an exception date (a calendar date in the spec's zone, judged
    at the instant the occurrence fires). Cron wall times map to instants by the module's DST
    policy: a repeated wall time fires once (the first time), a skipped one at the end of the gap.
    Naive ``start`` or ``end`` raise :class:`~tcs_core.errors.ValidationError` at once.
    """
    lo = as_utc(start, "start")
    hi = as_utc(end, "end")
    if spec.valid_from is not None:
        lo = max(lo, spec.valid_from)
    if spec.valid_until is not None:
        hi = min(hi, spec.valid_until)
    return _between(spec, lo, hi, cache or default_cache)


def _between(
    spec: ScheduleSpec, lo: datetime, hi: datetime, cache: RecurrenceCache
) -> Iterator[datetime]:
    if hi <= lo:
        return
    excluded = _Exceptions(spec)
    for instant in _raw(spec, lo, cache):
        if instant >= hi:
            return
        if instant not in excluded:
            yield instant


def next_occurrence(
    spec: ScheduleSpec,
    after: datetime,
    *,
    cache: RecurrenceCache | None = None,
) -> datetime | None:
    """The first occurrence of ``spec`` strictly after ``after``, or None if there is none.

    Same rules as :func:`occurrences` (validity window, exception dates, DST policy).
    """
    lo = as_utc(after, "after") + _TICK
    if spec.valid_from is not None:
        lo = max(lo, spec.valid_from)
    if spec.valid_until is not None and lo >= spec.valid_until:
        return None
    cache = cache or default_cache
    if spec.kind is ScheduleKind.CRON and not spec.exceptions:
        assert spec.cron is not None
        firsts = [got[0] for p in cron_parts(spec.cron) if (got := cache.take(p, spec.zone, lo, 1))]
        found = min(firsts) if firsts else None
        if found is None or (spec.valid_until is not None and found >= spec.valid_until):
            return None
        return found
    excluded = _Exceptions(spec)
    for instant in _raw(spec, lo, cache):
        if spec.valid_until is not None and instant >= spec.valid_until:
            return None
        if instant not in excluded:
            return instant
    return None
