"""Hypothesis properties of the KPIs over random histories of the sample province.

A history is a list of dated facts: stations (registered, re-assessed, converted, closed),
facilities (established, connected, closed), device status transitions, feedback (received,
answered), dispatches (occurrences and delivery outcomes). Every event has an effective time: a
date (stations, facilities) or an instant (devices, feedback, dispatches). "Events effective
after D" are those whose date is after D or whose instant is at or after the local midnight that
ends D.

Properties:

- every ratio indicator lies in [0, 100] %;
- **as of D depends only on events effective on or before D**: appending events effective after
  D does not change any numerator or denominator as of D;
- **monotone in the events it sees**: for additive histories (registrations of working stations,
  conversions, facilities established and connected; nothing closed or degraded), a projection
  that has seen more of the log (``catch_up(until=p)`` for a larger ``p``) never reports a
  smaller numerator, and, over one area structure, a later as-of date never reports a smaller
  numerator with the same denominator;
- re-attribution to the 2025 areas conserves every additive numerator and denominator (both
  split rules, province and commune level);
- a projection caught up in several steps equals one rebuilt at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from tcs_core import Settings
from tcs_core.domain.base import TcsAggregate
from tcs_core.domain.broadcast import Broadcast
from tcs_core.domain.device import Device
from tcs_core.domain.dispatch import Dispatch
from tcs_core.domain.facility import Facility, Station
from tcs_core.domain.feedback import Feedback
from tcs_core.domain.values import (
    Category,
    Channel,
    Condition,
    DeliveryOutcome,
    DeviceKind,
    DeviceStatus,
    FacilityKind,
    FeedbackChannel,
    Preemption,
    Priority,
    ScheduleSpec,
    SpeechContent,
    StationKind,
    Targets,
)
from tcs_core.kpi import IndicatorKind, KpiProjection, Kpis, evaluate
from tcs_core.kpi.example import build_sample_province
from tcs_core.testing.fixtures import make_source_system

ICT = timezone(timedelta(hours=7))
LEGACY_LAST = date(2025, 6, 30)
COMMUNES = ("X1", "X2", "T3", "W1", "W2")
LEGACY_ONLY = {"X1", "T3", "D1", "D2"}
BASE = datetime(2024, 11, 1, tzinfo=ICT)
A = "admin"

Op = tuple[datetime, int, Callable[[], TcsAggregate | None]]


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(), ICT)


# ------------------------------------------------------------------------------------------
# Strategies: facts as plain data
# ------------------------------------------------------------------------------------------


def _area_and_day(codes: tuple[str, ...], around: date | None = None) -> Any:
    """An area code and a day it exists on; near ``around`` (±60 days) when given."""

    def days_for(code: str) -> Any:
        first, last = date(2019, 1, 1), LEGACY_LAST if code in LEGACY_ONLY else date(2027, 6, 30)
        anywhere = st.dates(first, last)
        if around is None:
            return anywhere
        edges = [d for d in (around - timedelta(days=1), around, around + timedelta(days=1))]
        edges = [d for d in edges if first <= d <= last]
        lo, hi = max(first, around - timedelta(days=60)), min(last, around + timedelta(days=30))
        near_by = st.dates(lo, hi) if lo <= hi else anywhere
        before_baseline = st.dates(first, date(2020, 12, 31))
        return near_by | (st.sampled_from(edges) if edges else anywhere) | before_baseline

    return st.sampled_from(codes).flatmap(lambda c: st.tuples(st.just(c), days_for(c)))


CHANGE = st.tuples(
    st.integers(0, 2) | st.integers(0, 700),
    st.sampled_from(["good", "degraded", "broken", "convert", "close"]),
    st.booleans(),
)
ADDITIVE_CHANGE = st.tuples(
    st.integers(0, 2) | st.integers(0, 700), st.just("convert"), st.just(True)
)


def stations(additive: bool = False, around: date | None = None) -> Any:
    change = ADDITIVE_CHANGE if additive else CHANGE
    if around is not None:  # changes also on days near ``around``, and on its edges
        days_near = _area_and_day(("X2",), around).map(lambda cd: cd[1])
        change = (
            st.tuples(
                days_near, st.sampled_from(["good", "broken", "convert", "close"]), st.booleans()
            )
            | change
        )
    return st.tuples(
        st.just("station"),
        _area_and_day(COMMUNES, around),
        st.sampled_from(["wired", "fm", "ip"]),
        st.just("good") if additive else st.sampled_from(["good", "degraded", "broken"]),
        st.just(True) if additive else st.booleans(),
        st.lists(change, max_size=3),
    )


def facilities(additive: bool = False, around: date | None = None) -> Any:
    never = st.none()
    later: Any = st.none() | st.integers(0, 900)  # days after being established, or a day
    if around is not None:
        later = later | _area_and_day(("X2",), around).map(lambda cd: cd[1])
    return st.one_of(
        st.tuples(
            st.just("facility"),
            _area_and_day(COMMUNES, around),
            st.sampled_from(["website", "eboard"]),
            never,
            never if additive else later,
        ),
        st.tuples(
            st.just("facility"),
            _area_and_day(("D1", "D2"), around),
            st.just("district_board"),
            later,
            never if additive else later,
        ),
        st.tuples(
            st.just("facility"),
            _area_and_day(("P9",), around),
            st.just("source_system"),
            never,
            never if additive else later,
        ),
    )


MINUTES = st.integers(0, 2 * 365 * 24 * 60)


def instant_facts(minutes: Any) -> Any:
    """Device transitions, feedback and dispatches at instants drawn from ``minutes``."""
    transitions = st.tuples(
        st.just("device"),
        st.integers(0, 2),
        st.lists(
            st.tuples(minutes, st.sampled_from(["online", "offline", "fault", "maintenance"])),
            max_size=6,
        ),
    )
    feedback = st.tuples(
        st.just("feedback"),
        st.sampled_from((*COMMUNES, None)),
        minutes,
        st.none() | st.integers(0, 60 * 24 * 3),
    )
    dispatches = st.tuples(
        st.just("dispatch"),
        st.tuples(minutes, st.integers(0, 59)).map(lambda ms: ms[0] * 60 + ms[1]),
        st.lists(
            st.tuples(
                st.sampled_from(["delivered", "failed", "none"]),
                st.integers(0, 120) | st.integers(0, 60 * 60 * 6),  # seconds after the occurrence
            ),
            min_size=3,
            max_size=3,
        ),
    )
    return st.one_of(transitions, feedback, dispatches)


def histories(minutes: Any = MINUTES, around: date | None = None) -> Any:
    """Random histories; instants drawn from ``minutes`` (after BASE), days near ``around``."""
    return st.tuples(
        st.lists(stations(around=around), max_size=4),
        st.lists(facilities(around=around), max_size=4),
        st.lists(instant_facts(minutes), min_size=1, max_size=8),
    ).map(lambda parts: [*parts[0], *parts[1], *parts[2]])


def near(day: date) -> Any:
    """Minutes after BASE within three days before the end of ``day`` and a day after it."""
    end = int((midnight(day + timedelta(days=1)) - BASE).total_seconds() // 60)
    return (
        st.integers(max(0, end - 3 * 24 * 60), max(0, end + 24 * 60))
        | st.integers(max(0, end - 5), max(0, end + 1))
        | st.just(max(0, end - 1))  # the last minute of the day
    )


additive_histories = st.lists(st.one_of(stations(True), facilities(True)), max_size=12)
days = st.dates(date(2019, 1, 1), date(2027, 6, 30))
recent_days = st.dates(date(2024, 10, 1), date(2026, 12, 31))


# ------------------------------------------------------------------------------------------
# Facts → dated operations on aggregates
# ------------------------------------------------------------------------------------------


class World:
    """The sample province, three devices and an approved broadcast; facts become dated ops."""

    def __init__(self) -> None:
        self.app = make_source_system(Settings.in_memory())
        build_sample_province(self.app)
        self.ids = {
            code: self.app.areas.resolve(code, date(2020, 1, 1)).area_id
            for code in ("P9", "D1", "D2", *COMMUNES)
        }
        self.devices = [
            Device(
                name=f"Loa {code}",
                kind=DeviceKind.IP_SPEAKER,
                area_id=self.ids[code],
                transport="simulated",
                address=f"sim://{code}",
                settings={},
                channels=[Channel.AUDIO],
                groups=[],
                actor=A,
            )
            for code in ("X1", "X2", "W2")
        ]
        self.broadcast = Broadcast(
            title="Bản tin",
            category=Category.HEALTH,
            priority=Priority.NORMAL,
            content={Channel.AUDIO: SpeechContent("Bản tin.")},
            targets=Targets(areas=["P9"], channels=["audio"]),
            target_area_ids=[self.ids["P9"]],
            schedule=ScheduleSpec.recurring("0 6 * * *", duration_s=600),
            preemption=Preemption.for_priority(Priority.NORMAL),
            actor="editor",
        )
        self.broadcast.submit("editor")
        self.broadcast.approve("approver")
        self.app.save(self.broadcast, *self.devices)
        self.seq = 0

    def ops(self, facts: list[Any]) -> list[Op]:
        out: list[Op] = []
        occurrences: set[int] = set()

        def add(at: datetime, fn: Callable[[], TcsAggregate | None]) -> None:
            self.seq += 1
            out.append((at, self.seq, fn))

        for fact in facts:
            kind = fact[0]
            if kind == "station":
                self._station(fact, add)
            elif kind == "facility":
                self._facility(fact, add)
            elif kind == "device":
                _, index, steps = fact
                dev = self.devices[index]
                for minutes, status in sorted(steps):
                    at = BASE + timedelta(minutes=minutes)

                    def step(dev: Device = dev, status: str = status, at: datetime = at) -> Device:
                        dev.set_status(DeviceStatus(status), f"{status}@{at}", at, A)
                        return dev

                    add(at, step)
            elif kind == "feedback":
                self._feedback(fact, add)
            elif kind == "dispatch":
                _, seconds, outcomes = fact
                if seconds in occurrences:
                    continue
                occurrences.add(seconds)
                self._dispatch(seconds, outcomes, add)
        return sorted(out, key=lambda o: (o[0], o[1]))

    def _station(self, fact: Any, add: Callable[..., None]) -> None:
        _, (code, day), kind, condition, reaches, changes = fact
        holder: list[Station] = []

        def create() -> Station:
            holder.append(
                Station(
                    name=f"Đài {code}",
                    area_id=self.ids[code],
                    kind=StationKind(kind),
                    commissioned_year=2010,
                    condition=Condition(condition),
                    reaches_villages=reaches,
                    effective=day,
                    actor=A,
                )
            )
            return holder[0]

        add(midnight(day), create)
        current, ip, closed = day, kind == "ip", False
        for step, what, reach in changes:
            if closed or (what == "convert" and ip):
                continue
            # A step is a number of days after the previous change, or a day (not before it).
            current = (
                max(current, step) if isinstance(step, date) else current + timedelta(days=step)
            )
            ip = ip or what == "convert"
            closed = what == "close"

            def change(when: date = current, what: str = what, reach: bool = reach) -> Station:
                s = holder[0]
                if what == "convert":
                    s.convert_to_ip(when, A)
                elif what == "close":
                    s.close(when, A)
                else:
                    s.change_condition(Condition(what), reach, when, A)
                return s

            add(midnight(current), change)

    def _facility(self, fact: Any, add: Callable[..., None]) -> None:
        _, (code, day), kind, connect, close = fact
        holder: list[Facility] = []

        def create() -> Facility:
            holder.append(
                Facility(
                    name=f"{kind} {code}",
                    kind=FacilityKind(kind),
                    area_id=self.ids[code],
                    effective=day,
                    actor=A,
                )
            )
            return holder[0]

        add(midnight(day), create)

        def when(step: int | date) -> date:
            return max(day, step) if isinstance(step, date) else day + timedelta(days=step)

        on = None
        if connect is not None:
            on = when(connect)
            add(midnight(on), lambda on=on: _do(holder[0], "connect", on))
        if close is not None:
            off = max(when(close), on or day)
            add(midnight(off), lambda off=off: _do(holder[0], "close", off))

    def _feedback(self, fact: Any, add: Callable[..., None]) -> None:
        _, code, minutes, answer_after = fact
        received = BASE + timedelta(minutes=minutes)
        holder: list[Feedback] = []
        area = self.ids[code] if code is not None else None

        def create() -> Feedback:
            self.seq += 1
            holder.append(
                Feedback(
                    channel=FeedbackChannel.SMS,
                    area_id=area,
                    sender_ref="0900",
                    text="Ý kiến",
                    received_at=received,
                    due=received.date(),
                    source_ref=f"fb-{self.seq}-{minutes}",
                    actor=A,
                )
            )
            return holder[0]

        add(received, create)
        if answer_after is not None:
            at = received + timedelta(minutes=answer_after)

            def answer() -> Feedback:
                holder[0].respond("Đã xử lý", at, A)
                return holder[0]

            add(at, answer)

    def _dispatch(self, seconds: int, outcomes: Any, add: Callable[..., None]) -> None:
        occ = BASE + timedelta(seconds=seconds)
        holder: list[Dispatch] = []

        def start() -> Dispatch:
            holder.append(
                Dispatch(
                    **Dispatch.start_args(
                        self.broadcast.id, occ, Priority.NORMAL, [d.id for d in self.devices]
                    ),
                    actor="system",
                )
            )
            return holder[0]

        add(occ, start)
        for dev, (status, delay) in zip(self.devices, outcomes, strict=True):
            if status == "none":
                continue
            at = occ + timedelta(seconds=delay)

            def record(dev_id: UUID = dev.id, status: str = status, at: datetime = at) -> Dispatch:
                reason = "" if status == "delivered" else "offline"
                holder[0].record_outcomes([DeliveryOutcome(dev_id, status, at, reason)], "system")
                return holder[0]

            add(at, record)

    def run(self, ops: list[Op]) -> None:
        """Apply the ops in order and save what they touched, in one go."""
        touched: dict[int, TcsAggregate] = {}
        for _, _, fn in ops:
            agg = fn()
            if agg is not None:
                touched[id(agg)] = agg
        pending = [a for a in touched.values() if a.pending_events]
        if pending:
            self.app.save(*pending)


def _do(f: Facility, what: str, on: date) -> Facility:
    if what == "connect":
        f.connect(on, A)
    else:
        f.close(on, A)
    return f


def snapshot(kpis: Kpis | KpiProjection, day: date, scope: UUID) -> dict[str, Any]:
    """Every indicator's numerator, denominator and breakdown as of ``day``."""
    ev = kpis.as_of(scope, day) if isinstance(kpis, Kpis) else evaluate(kpis, scope, day)
    return {
        iv.indicator.id: (iv.numerator, iv.denominator, tuple(iv.breakdown.items())) for iv in ev
    }


def scope_of(world: World) -> UUID:
    return world.ids["P9"]


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------


@given(histories(), days)
def test_ratios_stay_within_0_and_100(facts: list[Any], day: date) -> None:
    """Every ratio indicator lies in [0, 100] % (or is undefined), as of any day."""
    w = World()
    w.run(w.ops(facts))
    kpis = Kpis(w.app)
    for d in (day, date(2025, 6, 30), date(2025, 12, 14)):
        for iv in kpis.as_of(scope_of(w), d):
            if iv.indicator.kind is IndicatorKind.RATIO and iv.value is not None:
                assert 0 <= iv.value <= 100, (iv, d)
            assert iv.numerator >= 0 and iv.denominator >= 0


def _check_append_later(facts: list[Any], day: date) -> None:
    w = World()
    ops = w.ops(facts)
    cut = midnight(day + timedelta(days=1))
    w.run([o for o in ops if o[0] < cut])
    kpis = Kpis(w.app)
    before = snapshot(kpis, day, scope_of(w))
    w.run([o for o in ops if o[0] >= cut])
    assert kpis.refresh() >= 0
    assert snapshot(kpis, day, scope_of(w)) == before


@settings(max_examples=100)
@given(st.data())
def test_stock_values_as_of_a_day_ignore_events_appended_later(data: st.DataObject) -> None:
    """Stations and facilities: appending events effective after D changes nothing as of D."""
    day = data.draw(days, label="day")
    facts = data.draw(
        st.tuples(
            st.lists(stations(around=day), min_size=1, max_size=6),
            st.lists(facilities(around=day), max_size=6),
        ).map(lambda p: [*p[0], *p[1]]),
        label="facts",
    )
    _check_append_later(facts, day)


@settings(max_examples=100)
@given(st.data())
def test_operational_values_as_of_a_day_ignore_events_appended_later(
    data: st.DataObject,
) -> None:
    """Devices, feedback, dispatches: appending events after D changes nothing as of D."""
    day = data.draw(recent_days, label="day")
    facts = data.draw(st.lists(instant_facts(near(day)), min_size=1, max_size=10), label="facts")
    _check_append_later(facts, day)


@given(additive_histories, st.data())
def test_monotone_in_the_events_it_sees(facts: list[Any], data: st.DataObject) -> None:
    """Additive histories: more of the log, or a later day (same structure), never less."""
    w = World()
    start = w.app.recorder.max_notification_id() or 0
    ops = w.ops(facts)
    for op in ops:  # one save per op: each is a position in the log
        w.run([op])
    end = w.app.recorder.max_notification_id() or 0
    day = data.draw(days, label="day")
    positions = sorted(data.draw(st.lists(st.integers(start, end), max_size=4), label="cuts"))
    previous: dict[str, Any] | None = None
    for p in [*positions, end]:
        proj = KpiProjection()
        proj.catch_up(w.app, until=p)
        now = snapshot(proj, day, scope_of(w))
        if previous is not None:
            for key, (num, _, _) in now.items():
                assert num >= previous[key][0], (key, p)
        previous = now
    kpis = Kpis(w.app)
    d1, d2 = sorted(
        data.draw(
            st.lists(st.dates(date(2021, 1, 1), LEGACY_LAST), min_size=2, max_size=2), label="days"
        )
    )
    first, second = snapshot(kpis, d1, scope_of(w)), snapshot(kpis, d2, scope_of(w))
    for key in (
        "radio_coverage",
        "ip_conversion",
        "website_urban",
        "website_rural",
        "eboard_urban",
        "eboard_rural",
        "eboard_count_urban",
        "eboard_count_rural",
        "district_board_connected",
        "source_system",
    ):
        assert first[key][0] <= second[key][0], key
        assert first[key][1] == second[key][1], key


@given(
    histories(), st.dates(date(2019, 1, 1), LEGACY_LAST), st.sampled_from(["primary", "fractional"])
)
def test_reattribution_conserves_numerators_and_denominators(
    facts: list[Any], day: date, rule: str
) -> None:
    """Moving a legacy evaluation to the 2025 areas keeps every additive sum."""
    w = World()
    w.run(w.ops(facts))
    kpis = Kpis(w.app)
    ev = kpis.as_of(scope_of(w), day)
    for level in ("province", "commune"):
        for to in (date(2025, 7, 1), None):
            moved = kpis.reattribute(ev, to, level=level, rule=rule)  # type: ignore[arg-type]
            for iv in ev:
                if iv.additive:
                    assert moved.totals(iv.indicator.id) == (iv.numerator, iv.denominator)
            assert None not in moved.values["radio_coverage"]  # every commune has a successor


@given(histories(), st.integers(1, 4), recent_days)
def test_incremental_catch_up_equals_rebuild(facts: list[Any], parts: int, day: date) -> None:
    """Catching up in several steps gives the same values as one rebuild."""
    w = World()
    ops = w.ops(facts)
    kpis = Kpis(w.app)
    size = max(1, len(ops) // parts)
    for i in range(0, len(ops), size):
        w.run(ops[i : i + size])
        kpis.refresh()
    rebuilt = Kpis(w.app)
    assert snapshot(kpis, day, scope_of(w)) == snapshot(rebuilt, day, scope_of(w))
