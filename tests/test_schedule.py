"""tcs_core.schedule: occurrences, the DST policy, the DOM/DOW rule, forms, the cache, clashes.

The central test checks random cron expressions against an oracle written here from scratch: it
parses nothing (the strategy builds each field's text together with its set of values), finds the
zone's transitions with the standard library's ``zoneinfo`` (not pytz), and fires each matching
wall time when the local clock first reaches it -- the brute-force minute-by-minute walk, done
segment by segment between transitions so a year costs only its matching wall times.
``test_oracle_agrees_with_literal_minute_walk`` checks that shortcut against the literal walk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice, pairwise, takewhile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytz
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tcs_core.domain.values import Priority, ScheduleKind, ScheduleSpec
from tcs_core.errors import ValidationError
from tcs_core.schedule import (
    Item,
    RecurrenceCache,
    clashes,
    daily,
    monthly,
    next_occurrence,
    occurrences,
    once,
    repeat,
    several_times_a_day,
    wall_to_utc,
    weekly,
)
from tcs_core.schedule import recurrence as rec

ROOT = Path(__file__).resolve().parents[1]
ZONES = [
    "Asia/Ho_Chi_Minh",
    "Asia/Bangkok",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "UTC",
]
MINUTE = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def cron_list(cron: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    return list(occurrences(ScheduleSpec.recurring(cron, zone=zone), start, end))


# --------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    """A cron expression's text and, independently, the values each field allows."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0 = Sunday
    dom_star: bool
    dow_star: bool

    def __repr__(self) -> str:
        return f"Cron({self.text!r})"

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.doms
        dow = day.isoweekday() % 7 in self.dows
        if not self.dom_star and not self.dow_star:
            return dom or dow  # both restricted: either matches (OR)
        return dom and dow

    def walls(self, lo: datetime, hi: datetime) -> Iterator[datetime]:
        """Matching naive wall times in [lo, hi), walking local calendar days."""
        day = lo.date()
        while day <= hi.date():
            if self.day_matches(day):
                for h in sorted(self.hours):
                    for m in sorted(self.minutes):
                        wall = datetime.combine(day, time(h, m))
                        if lo <= wall < hi:
                            yield wall
            day += timedelta(days=1)

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and self.day_matches(wall.date())
        )


def offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    got = instant.astimezone(zone).utcoffset()
    assert got is not None
    return got


def transitions(zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """UTC instants in [lo, hi) where the zone's offset changes (hourly scan, then bisection)."""
    found = []
    t = lo.replace(minute=0, second=0, microsecond=0)
    off = offset(zone, t)
    while t < hi:
        nxt = t + timedelta(hours=1)
        if offset(zone, nxt) != off:
            a, b = 0, 3600  # seconds after t: the offset at a is the old one, at b the new one
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (mid, b) if offset(zone, t + timedelta(seconds=mid)) == off else (a, mid)
            found.append(t + timedelta(seconds=b))
            off = offset(zone, nxt)
        t = nxt
    return found


def oracle_instants(cron: Cron, zone_name: str, lo: datetime, hi: datetime) -> list[datetime]:
    """Every instant in [lo, hi) at which the local clock first reaches a matching wall time."""
    zone = ZoneInfo(zone_name)
    walk_lo, walk_hi = lo - timedelta(days=3), hi + timedelta(days=1)
    bounds = [walk_lo, *transitions(zone, walk_lo, walk_hi), walk_hi]
    fired: set[datetime] = set()
    reached: datetime | None = None  # the clock has shown every wall time before this one
    for a, b in pairwise(bounds):
        off = offset(zone, a)
        local_a = (a + off).replace(tzinfo=None)
        local_b = (b + off).replace(tzinfo=None)
        first = local_a if reached is None else reached
        for wall in cron.walls(first, local_b):
            # Walls skipped by a jump forward (wall < local_a) fire when the jump lands, at a.
            fired.add(max(a, (wall - off).replace(tzinfo=UTC)))
        reached = local_b if reached is None else max(reached, local_b)
    return sorted(t for t in fired if lo <= t < hi)


def minute_walk(cron: Cron, zone_name: str, lo: datetime, hi: datetime) -> list[datetime]:
    """The literal brute force: every UTC minute, local clock, fire what it reaches first."""
    zone = ZoneInfo(zone_name)
    out = []
    reached: datetime | None = None
    t = lo
    while t < hi:
        wall = t.astimezone(zone).replace(tzinfo=None)
        if reached is None:
            reached = wall
        fire = False
        while reached <= wall:
            fire = fire or cron.matches(reached)
            reached += MINUTE
        if fire:
            out.append(t)
        t += MINUTE
    return out


def apply_spec_rules(
    instants: list[datetime],
    zone_name: str,
    valid_from: datetime | None,
    valid_until: datetime | None,
    exceptions: set[date],
) -> list[datetime]:
    zone = ZoneInfo(zone_name)
    return [
        t
        for t in instants
        if (valid_from is None or t >= valid_from)
        and (valid_until is None or t < valid_until)
        and t.astimezone(zone).date() not in exceptions
    ]


# --------------------------------------------------------------------------------------------
# Random cron expressions, each field built as (text, values)
# --------------------------------------------------------------------------------------------

MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
Field = tuple[str, frozenset[int]]


def element(lo: int, hi: int, names: dict[int, str] | None = None) -> st.SearchStrategy[Field]:
    """One list element: a value (or its name), a range, or a range with a step."""
    value = st.integers(lo, hi).map(lambda v: (str(v), frozenset({v})))
    if names:
        value = value | st.sampled_from(sorted(names)).map(lambda v: (names[v], frozenset({v})))
    span = st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(sorted)
    ranged = span.map(lambda ab: (f"{ab[0]}-{ab[1]}", frozenset(range(ab[0], ab[1] + 1))))
    stepped = st.tuples(span, st.integers(2, 6)).map(
        lambda x: (f"{x[0][0]}-{x[0][1]}/{x[1]}", frozenset(range(x[0][0], x[0][1] + 1, x[1])))
    )
    return value | ranged | stepped


def field(
    lo: int, hi: int, names: dict[int, str] | None = None, stars: tuple[str, ...] = ("*",)
) -> st.SearchStrategy[Field]:
    everything = frozenset(range(lo, hi + 1))
    listed = st.lists(element(lo, hi, names), min_size=1, max_size=3).map(
        lambda parts: (",".join(p[0] for p in parts), frozenset().union(*(p[1] for p in parts)))
    )
    star = st.sampled_from(stars).map(lambda s: (s, everything))
    star_step = st.integers(2, max(2, (hi - lo) // 2)).map(
        lambda s: (f"*/{s}", frozenset(range(lo, hi + 1, s)))
    )
    full = st.sampled_from([f"{lo}-{hi}", "*/1"]).map(lambda s: (s, everything))
    return st.one_of(listed, listed, star, star_step, full)


@st.composite
def crons(draw: st.DrawFn) -> Cron:
    minute = draw(field(0, 59))
    hour = draw(field(0, 23))
    assume(len(minute[1]) * len(hour[1]) <= 120)  # keeps a year of occurrences small
    dom = draw(field(1, 31, stars=("*", "?")))
    month = draw(field(1, 12, names=dict(enumerate(MONTH_NAMES, 1))))
    dow_text, dow_values = draw(field(0, 7, names=dict(enumerate(DOW_NAMES))))
    text = f"{minute[0]} {hour[0]} {dom[0]} {month[0]} {dow_text}"
    return Cron(
        text,
        minute[1],
        hour[1],
        dom[1],
        month[1],
        frozenset(v % 7 for v in dow_values),  # 7 is Sunday too
        dom_star=dom[0] in ("*", "?"),
        dow_star=dow_text == "*",
    )


@st.composite
def windows(draw: st.DrawFn) -> tuple[datetime, datetime, datetime | None, datetime | None]:
    start = utc(2024, 1, 1) + timedelta(seconds=draw(st.integers(0, 8 * 365 * 86400)))
    end = start + timedelta(days=365)
    valid_from = valid_until = None
    if draw(st.booleans()):
        valid_from = start + timedelta(minutes=draw(st.integers(-60 * 24 * 30, 60 * 24 * 200)))
    if draw(st.booleans()):
        base = valid_from or start
        valid_until = base + timedelta(minutes=draw(st.integers(1, 60 * 24 * 400)))
    return start, end, valid_from, valid_until


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    cron=crons(),
    zone=st.sampled_from(ZONES),
    window=windows(),
    exception_days=st.lists(st.integers(0, 364), max_size=6),
)
def test_occurrences_match_minute_by_minute_oracle(
    cron: Cron,
    zone: str,
    window: tuple[datetime, datetime, datetime | None, datetime | None],
    exception_days: list[int],
) -> None:
    """A year of a random cron expression in a random zone equals the independent oracle's."""
    start, end, valid_from, valid_until = window
    local_start = start.astimezone(ZoneInfo(zone)).date()
    exceptions = {local_start + timedelta(days=d) for d in exception_days}
    spec = ScheduleSpec.recurring(
        cron.text,
        zone=zone,
        valid_from=valid_from,
        valid_until=valid_until,
        exceptions=tuple(exceptions),
    )
    expected = apply_spec_rules(
        oracle_instants(cron, zone, start, end), zone, valid_from, valid_until, exceptions
    )
    got = list(occurrences(spec, start, end, cache=RecurrenceCache()))
    assert got == expected
    # next_occurrence agrees, strictly after each of a few occurrences and before the first.
    for before, after in pairwise([start - timedelta(microseconds=1), *expected[:5]]):
        assert next_occurrence(spec, before) == after


@pytest.mark.parametrize(
    ("cron_text", "zone", "around"),
    [
        ("*/15 * * * *", "Europe/Berlin", utc(2026, 3, 29, 1)),
        ("30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 1)),
        ("0,30 1-3 * * *", "America/New_York", utc(2026, 11, 1, 6)),
        ("15,45 2 * * *", "America/New_York", utc(2026, 3, 8, 7)),
        ("*/10 1-2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),
        ("5,35,50 1 * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 15)),
    ],
)
def test_oracle_agrees_with_literal_minute_walk(
    cron_text: str, zone: str, around: datetime
) -> None:
    """The oracle's segment shortcut equals a literal UTC-minute walk across a DST transition."""
    minute, hour = cron_text.split()[:2]

    def values(text: str, hi: int) -> frozenset[int]:
        out: set[int] = set()
        for part in text.split(","):
            if part.startswith("*/"):
                out |= set(range(0, hi + 1, int(part[2:])))
            elif part == "*":
                out |= set(range(hi + 1))
            elif "-" in part:
                a, b = map(int, part.split("-"))
                out |= set(range(a, b + 1))
            else:
                out.add(int(part))
        return frozenset(out)

    cron = Cron(
        cron_text,
        values(minute, 59),
        values(hour, 23),
        frozenset(range(1, 32)),
        frozenset(range(1, 13)),
        frozenset(range(7)),
        dom_star=True,
        dow_star=True,
    )
    lo, hi = around - timedelta(days=1), around + timedelta(days=1)
    walked = minute_walk(cron, zone, lo, hi)
    assert oracle_instants(cron, zone, lo, hi) == walked
    assert cron_list(cron_text, zone, lo, hi) == walked


# --------------------------------------------------------------------------------------------
# DST policy, explicit examples
# --------------------------------------------------------------------------------------------


def test_berlin_fall_back_repeated_wall_time_fires_once_at_first_instant() -> None:
    """Europe/Berlin 2026-10-25 02:30 happens twice; it fires once, at 00:30 UTC (CEST)."""
    got = cron_list("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert got == [utc(2026, 10, 25, 0, 30)]


def test_berlin_spring_forward_missing_wall_time_fires_at_gap_end() -> None:
    """Europe/Berlin 2026-03-29 02:30 never happens; it fires at 03:00 local = 01:00 UTC."""
    got = cron_list("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    assert got == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]
    assert got[0].astimezone(ZoneInfo("Europe/Berlin")).time() == time(3, 0)


def test_new_york_fall_back_and_spring_forward() -> None:
    """America/New_York: 01:30 on 2026-11-01 fires once (EDT); 02:30 on 2026-03-08 at 03:00 EDT."""
    fall = cron_list("30 1 * * *", "America/New_York", utc(2026, 11, 1), utc(2026, 11, 2))
    assert fall == [utc(2026, 11, 1, 5, 30)]
    spring = cron_list("30 2 * * *", "America/New_York", utc(2026, 3, 8), utc(2026, 3, 9))
    assert spring == [utc(2026, 3, 8, 7)]


def test_lord_howe_half_hour_shift() -> None:
    """Australia/Lord_Howe shifts by 30 minutes: 02:15 skipped fires at 02:30; 01:45 fires once."""
    spring = cron_list("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3), utc(2026, 10, 4))
    assert spring == [utc(2026, 10, 3, 15, 30)]  # 02:30 LHDT (+11:00)
    fall = cron_list("45 1 * * *", "Australia/Lord_Howe", utc(2026, 4, 4), utc(2026, 4, 5))
    assert fall == [utc(2026, 4, 4, 14, 45)]  # the first 01:45, at +11:00


def test_wall_times_in_one_gap_fire_once_together() -> None:
    """02:00, 02:30 and 03:00 on Berlin's spring-forward day all fire once, at 03:00 local."""
    got = cron_list("0,30 2-3 * * *", "Europe/Berlin", utc(2026, 3, 29), utc(2026, 3, 29, 3))
    assert got == [utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)]


def test_ho_chi_minh_has_no_dst() -> None:
    """Asia/Ho_Chi_Minh: 07:00 local is 00:00 UTC on every day of 2026."""
    got = cron_list("0 7 * * *", "Asia/Ho_Chi_Minh", utc(2026, 1, 1), utc(2027, 1, 1))
    assert len(got) == 365
    assert {t.timetz() for t in got} == {time(0, 0, tzinfo=UTC)}


def test_wall_to_utc_applies_the_policy() -> None:
    """wall_to_utc maps repeated walls to the first instant and skipped ones to the gap end."""
    assert wall_to_utc("Europe/Berlin", datetime(2026, 10, 25, 2, 30)) == utc(2026, 10, 25, 0, 30)
    assert wall_to_utc("Europe/Berlin", datetime(2026, 3, 29, 2, 30)) == utc(2026, 3, 29, 1)
    assert wall_to_utc("Asia/Ho_Chi_Minh", datetime(2026, 5, 1, 7)) == utc(2026, 5, 1)
    with pytest.raises(ValidationError):
        wall_to_utc("UTC", utc(2026, 1, 1))


def test_special_syntax_walked_by_croniter_keeps_the_policy() -> None:
    """'#' and 'L' expressions (croniter's walk) get the same DST policy."""
    year = (utc(2026, 1, 1), utc(2027, 1, 1))
    # 29 March 2026 is the fifth Sunday of March, 25 October the fourth of October.
    assert cron_list("30 2 * 3 0#5", "Europe/Berlin", *year) == [utc(2026, 3, 29, 1)]
    assert cron_list("30 2 * 10 0#4", "Europe/Berlin", *year) == [utc(2026, 10, 25, 0, 30)]
    assert cron_list("0 9 L 1-3 *", "UTC", *year) == [
        utc(2026, 1, 31, 9),
        utc(2026, 2, 28, 9),
        utc(2026, 3, 31, 9),
    ]


@pytest.mark.parametrize(
    "cron_text",
    [
        "*/7 3-5 * * *",
        "0 9 13 * 5",
        "15 6,18 1,15 jan-jun mon-fri",
        "0 0 29 2 *",
        "0 12 * * 0,7",
        "5/15 10 1 * *",
        "0 9 */2 * 1",
        "30 2 * * sun",
        "0 6 * * * 30",
    ],
)
def test_plain_walk_agrees_with_croniter(cron_text: str) -> None:
    """The day-by-day walk of plain expressions names the same wall times as croniter's."""
    first, last = datetime(2026, 1, 1), datetime(2032, 1, 1)
    plain = rec._plain(cron_text)
    assert plain is not None

    def head(walls: Iterator[datetime]) -> list[datetime]:
        return list(islice(takewhile(lambda w: w < last, walls), 3000))

    ours = head(rec._plain_walls(plain, first))
    assert ours
    assert ours == head(rec._croniter_walls(cron_text, first))


# --------------------------------------------------------------------------------------------
# Day of month / day of week
# --------------------------------------------------------------------------------------------


def test_dom_and_dow_both_restricted_match_either() -> None:
    """'0 9 13 * 5' fires on every 13th and on every Friday (OR), as classic cron does."""
    got = cron_list("0 9 13 * 5", "UTC", utc(2026, 1, 1), utc(2026, 4, 1))
    days = {t.date() for t in got}
    fridays = {d for d in days if d.weekday() == 4}
    assert len(fridays) == 13
    # 13 February and 13 March 2026 are Fridays anyway; 13 January is a Tuesday.
    assert days == fridays | {date(2026, 1, 13)}


def test_star_day_field_defers_to_the_other() -> None:
    """With day of month '*', only the day of week counts (and the other way round)."""
    fridays = cron_list("0 9 * * 5", "UTC", utc(2026, 1, 1), utc(2026, 4, 1))
    assert all(t.weekday() == 4 for t in fridays) and len(fridays) == 13
    thirteenths = cron_list("0 9 13 * ?", "UTC", utc(2026, 1, 1), utc(2026, 4, 1))
    assert [t.day for t in thirteenths] == [13, 13, 13]


def test_star_step_is_restricted_unlike_vixie_cron_bug() -> None:
    """'*/2' in day of month is restricted: with a day of week it is an OR, not Vixie's AND."""
    got = cron_list("0 9 */2 * 1", "UTC", utc(2026, 6, 1), utc(2026, 7, 1))
    days = {t.day for t in got}
    assert days == set(range(1, 31, 2)) | {1, 8, 15, 22, 29}  # odd days, and Mondays
    every_day = cron_list("0 9 1-31 * */2", "UTC", utc(2026, 6, 1), utc(2026, 7, 1))
    assert len(every_day) == 30


def test_equal_range_is_one_value_unlike_croniter() -> None:
    """'0 6-6 * * *' fires at 06:00 only (croniter 7 alone reads 6-6 as every hour)."""
    got = cron_list("0 6-6 * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 3))
    assert got == [utc(2026, 1, 1, 6), utc(2026, 1, 2, 6)]
    assert cron_list("0 0-0/2 * * mon-mon", "UTC", utc(2026, 1, 1), utc(2026, 1, 13)) == [
        utc(2026, 1, 5),
        utc(2026, 1, 12),
    ]


# --------------------------------------------------------------------------------------------
# Validity window, exceptions, one-shot and list specs
# --------------------------------------------------------------------------------------------


def test_exception_date_is_a_local_date() -> None:
    """An exception removes the day in the spec's zone (06:00 +07 on 2 May is 23:00 UTC 1 May)."""
    spec = daily(["06:00"], exceptions=[date(2026, 5, 2)])
    got = list(occurrences(spec, utc(2026, 4, 30), utc(2026, 5, 4)))
    assert got == [utc(2026, 4, 30, 23), utc(2026, 5, 2, 23), utc(2026, 5, 3, 23)]
    assert next_occurrence(spec, utc(2026, 4, 30, 23)) == utc(2026, 5, 2, 23)


def test_validity_window_from_inclusive_until_exclusive() -> None:
    """valid_from is inclusive, valid_until exclusive; nothing after the window."""
    spec = daily(["07:00"], valid_from=utc(2026, 5, 2), valid_until=utc(2026, 5, 5))
    got = list(occurrences(spec, utc(2026, 4, 1), utc(2026, 6, 1)))
    assert got == [utc(2026, 5, 2), utc(2026, 5, 3), utc(2026, 5, 4)]
    assert next_occurrence(spec, utc(2026, 1, 1)) == utc(2026, 5, 2)
    assert next_occurrence(spec, utc(2026, 5, 4)) is None


def test_one_shot_spec() -> None:
    """A one-shot spec occurs once; next_occurrence is strictly after."""
    at = utc(2026, 9, 2, 1, 30)
    spec = once(at)
    assert list(occurrences(spec, utc(2026, 9, 1), utc(2026, 9, 3))) == [at]
    assert list(occurrences(spec, utc(2026, 9, 3), utc(2026, 9, 4))) == []
    assert list(occurrences(spec, at, at)) == []
    assert next_occurrence(spec, at - timedelta(seconds=1)) == at
    assert next_occurrence(spec, at) is None


def test_list_spec_with_window_and_exceptions() -> None:
    """A list spec yields its instants inside the window, minus exception dates."""
    instants = [utc(2026, 1, d, 2) for d in (1, 2, 3, 4, 5)]
    spec = ScheduleSpec.at_instants(
        instants, valid_until=utc(2026, 1, 5), exceptions=[date(2026, 1, 2)]
    )
    assert list(occurrences(spec, utc(2025, 1, 1), utc(2027, 1, 1))) == [
        instants[0],
        instants[2],
        instants[3],
    ]
    assert next_occurrence(spec, instants[0]) == instants[2]
    assert next_occurrence(spec, instants[3]) is None


def test_naive_bounds_are_rejected_at_once() -> None:
    """occurrences and next_occurrence refuse naive datetimes with a ValidationError."""
    spec = daily(["06:00"])
    with pytest.raises(ValidationError, match="start"):
        occurrences(spec, datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValidationError, match="after"):
        next_occurrence(spec, datetime(2026, 1, 1))


def test_expression_that_never_fires() -> None:
    """'0 0 30 2 *' (30 February) has no occurrence and no next occurrence."""
    spec = ScheduleSpec.recurring("0 0 30 2 *", zone="UTC")
    assert list(occurrences(spec, utc(2026, 1, 1), utc(2030, 1, 1))) == []
    assert next_occurrence(spec, utc(2026, 1, 1)) is None


# --------------------------------------------------------------------------------------------
# Forms
# --------------------------------------------------------------------------------------------


def test_weekly_mon_wed_fri_at_six_and_seventeen() -> None:
    """weekly(Mon/Wed/Fri, 06:00 and 17:00) fires 6 times a week at those local times."""
    spec = weekly([0, "wed", "Friday"], ["06:00", "17:00"])
    assert spec.kind is ScheduleKind.CRON and spec.cron == "0 6,17 * * 1,3,5"
    assert spec == weekly(["mon", "wed", "fri"], ["17:00", "06:00"])
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    got = [
        t.astimezone(zone).replace(tzinfo=None)
        for t in occurrences(spec, utc(2026, 6, 1), utc(2026, 6, 15))
    ]
    assert len(got) == 12
    assert {(t.weekday(), t.hour, t.minute) for t in got} == {
        (d, h, 0) for d in (0, 2, 4) for h in (6, 17)
    }


def test_daily_and_several_times_a_day() -> None:
    """daily takes a grid of times; several_times_a_day is the same form."""
    spec = several_times_a_day(["06:00", "11:00", "17:00"], zone="Asia/Bangkok")
    assert spec == daily(["06:00", "11:00", "17:00"], zone="Asia/Bangkok")
    assert spec.cron == "0 6,11,17 * * *"
    assert len(list(occurrences(spec, utc(2026, 1, 1), utc(2026, 1, 11)))) == 30


def test_monthly_days_skip_short_months() -> None:
    """monthly([1, 15]) fires twice a month; day 31 only in months that have it."""
    twice = monthly([1, 15], ["08:00"], zone="UTC")
    assert len(list(occurrences(twice, utc(2026, 1, 1), utc(2027, 1, 1)))) == 24
    last = monthly([31], ["08:00"], zone="UTC")
    assert len(list(occurrences(last, utc(2026, 1, 1), utc(2027, 1, 1)))) == 7


def test_repeat_count_and_gap() -> None:
    """repeat(start, 3, 20 min) is a list spec of three plays 20 minutes apart."""
    start = utc(2026, 5, 1, 1)
    spec = repeat(start, 3, timedelta(minutes=20), duration_s=600)
    assert spec.kind is ScheduleKind.LIST
    assert list(occurrences(spec, start, start + timedelta(hours=2))) == [
        start,
        start + timedelta(minutes=20),
        start + timedelta(minutes=40),
    ]


@pytest.mark.parametrize(
    ("call", "field", "words"),
    [
        (lambda: daily(["25:00"]), "times", "hour must be 00 to 23"),
        (lambda: daily(["06:60"]), "times", "minutes must be 00 to 59"),
        (lambda: daily(["six"]), "times", "'HH:MM'"),
        (lambda: daily([]), "times", "non-empty"),
        (lambda: daily(["06:00"], zone="Mars/Olympus"), "zone", "unknown time zone"),
        (lambda: weekly([7], ["06:00"]), "weekdays", "0 (Monday) to 6 (Sunday)"),
        (lambda: weekly(["funday"], ["06:00"]), "weekdays", "'mon'..'sun'"),
        (lambda: weekly([True], ["06:00"]), "weekdays", "not a weekday"),
        (lambda: monthly([0], ["06:00"]), "days", "1 to 31"),
        (lambda: monthly([32], ["06:00"]), "days", "1 to 31"),
        (lambda: repeat(utc(2026, 1, 1), 0, timedelta(hours=1)), "count", "1 to"),
        (lambda: repeat(datetime(2026, 1, 1), 2, timedelta(hours=1)), "start", "time zone"),
        (lambda: repeat(utc(2026, 1, 1), 2, timedelta(minutes=1)), "gap", "overlap"),
    ],
)
def test_forms_reject_bad_input_clearly(call: object, field: str, words: str) -> None:
    """Each malformed form input raises ValidationError naming the field and saying why."""
    with pytest.raises(ValidationError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.field == field
    assert words in caught.value.reason


# --------------------------------------------------------------------------------------------
# The shared cache
# --------------------------------------------------------------------------------------------


def test_specs_with_same_cron_and_zone_share_one_computation() -> None:
    """Two schedules with one (cron, zone) cause one build; the second lookup is a hit."""
    cache = RecurrenceCache()
    a = daily(["06:00"], duration_s=60)
    b = daily(["06:00"], duration_s=900, valid_from=utc(2026, 1, 1))
    after = utc(2026, 3, 1)
    assert next_occurrence(a, after, cache=cache) == next_occurrence(b, after, cache=cache)
    stats = cache.stats()
    assert (stats.keys, stats.builds, stats.misses, stats.hits) == (1, 1, 1, 1)
    next_occurrence(daily(["06:00"], zone="Asia/Bangkok"), after, cache=cache)
    assert cache.stats().keys == 2


def test_small_cache_gives_the_same_answers() -> None:
    """Eviction, trimming and backward lookups never change the answers."""
    tiny = RecurrenceCache(max_keys=1, max_per_key=8, chunk=2)
    specs = [
        ScheduleSpec.recurring("*/5 * * * *", zone="Europe/Berlin"),
        ScheduleSpec.recurring("0 2-3 * * *", zone="Europe/Berlin"),
    ]
    lo, hi = utc(2026, 3, 28), utc(2026, 3, 30)
    for spec in specs * 2:
        assert list(occurrences(spec, lo, hi, cache=tiny)) == list(
            occurrences(spec, lo, hi, cache=RecurrenceCache())
        )
    spec = specs[0]
    probes = [utc(2026, 3, 29, 0, 58), utc(2026, 3, 28, 5), utc(2027, 1, 1), utc(2026, 3, 29)]
    for after in probes:
        assert next_occurrence(spec, after, cache=tiny) == next_occurrence(
            spec, after, cache=RecurrenceCache()
        )
    assert tiny.stats().keys == 1


# --------------------------------------------------------------------------------------------
# Clashes
# --------------------------------------------------------------------------------------------


def test_equal_priority_overlap_is_a_clash() -> None:
    """Two normal items whose plays overlap are reported with the instant the later one starts."""
    news = Item("news", daily(["06:00"], duration_s=1800))
    notice = Item("notice", daily(["06:15"], duration_s=300))
    found = clashes([news, notice], utc(2026, 5, 1), utc(2026, 5, 3))
    # 06:15 in Hồ Chí Minh City is 23:15 UTC the day before.
    assert found == [
        (news, notice, utc(2026, 5, 1, 23, 15)),
        (news, notice, utc(2026, 5, 2, 23, 15)),
    ]


def test_different_priority_is_not_a_clash() -> None:
    """A priority item over a normal one preempts it: no clash is reported."""
    news = Item("news", daily(["06:00"], duration_s=1800), Priority.NORMAL)
    storm = Item("storm", daily(["06:15"], duration_s=300), Priority.PRIORITY)
    assert clashes([news, storm], utc(2026, 5, 1), utc(2026, 5, 3)) == []


def test_clash_edges_and_many_items() -> None:
    """Back-to-back plays do not clash, an item never clashes with itself, every pair is found."""
    first = Item("a", daily(["06:00"], duration_s=900))
    after = Item("b", daily(["06:15"], duration_s=900))
    looped = Item("loop", ScheduleSpec.recurring("*/10 * * * *", duration_s=1200))
    assert clashes([first, after], utc(2026, 5, 1), utc(2026, 5, 2)) == []
    assert clashes([looped], utc(2026, 5, 1), utc(2026, 5, 2)) == []
    start = utc(2026, 5, 1, 1)
    many = [Item(i, once(start + timedelta(minutes=i), duration_s=600)) for i in range(50)]
    found = clashes(many, utc(2026, 5, 1), utc(2026, 5, 2))
    expected = {(i, j) for i in range(50) for j in range(i + 1, min(i + 10, 50))}
    assert {(a.id, b.id) for a, b, _ in found} == expected
    assert all(at == b.spec.instants[0] for _, b, at in found)


def test_clash_counts_a_play_that_began_before_the_window() -> None:
    """A play that started before the window and still runs clashes with one inside it."""
    long = Item("long", once(utc(2026, 5, 1, 0, 50), duration_s=1800))
    short = Item("short", once(utc(2026, 5, 1, 1, 5), duration_s=60))
    assert clashes([long, short], utc(2026, 5, 1, 1), utc(2026, 5, 1, 2)) == [
        (long, short, utc(2026, 5, 1, 1, 5))
    ]


# --------------------------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------------------------


def test_docs_examples_run() -> None:
    """The python blocks of docs/schedules.md run top to bottom in one namespace."""
    text = (ROOT / "docs" / "schedules.md").read_text(encoding="utf-8")
    blocks = list(re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M))
    assert blocks
    namespace: dict[str, object] = {}
    for block in blocks:
        padding = "\n" * text[: block.start(1)].count("\n")  # tracebacks show the file's lines
        exec(compile(padding + block.group(1), "docs/schedules.md", "exec"), namespace)


def test_several_times_a_day_that_are_not_a_grid_form_a_union() -> None:
    """06:00 and 11:30 daily is a union of two expressions, firing exactly at those times."""
    spec = daily(["06:00", "11:30"], zone="Asia/Ho_Chi_Minh")
    assert spec.cron == "0 6 * * * | 30 11 * * *"
    start = datetime(2026, 3, 2, tzinfo=UTC)
    got = list(occurrences(spec, start, start + timedelta(days=2)))
    local = [t.astimezone(pytz.timezone("Asia/Ho_Chi_Minh")).strftime("%d %H:%M") for t in got]
    assert local == ["02 11:30", "03 06:00", "03 11:30", "04 06:00"]
    assert next_occurrence(spec, got[0]) == got[1]


def test_union_members_are_shared_in_the_cache() -> None:
    """Each expression of a union is cached on its own, and shared with schedules using it alone."""
    cache = RecurrenceCache()
    union = daily(["06:00", "11:30"], zone="UTC")
    alone = ScheduleSpec.recurring("0 6 * * *", zone="UTC")
    t = datetime(2026, 3, 2, tzinfo=UTC)
    next_occurrence(union, t, cache=cache)
    next_occurrence(alone, t, cache=cache)
    assert cache.stats().keys == 2
