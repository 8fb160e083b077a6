"""Example data: a realistic, reproducible history of stations, facilities, devices and bulletins.

``generate_history(app, "52", seed=7)`` fills a store (areas already loaded, e.g. with
``load_history``) with five years of what the KPIs count, for every commune of the scope as it was
on ``start``: a radio station per commune (wired, FM or IP; ageing, degrading, converted to IP
year by year, broken and degraded ones first), websites and public e-boards, large district
boards connected to the provincial source system, the source system itself, speakers with
outages (online/offline transitions), bulletins dispatched to each commune's speakers with their
outcomes, and citizen feedback answered or not. The same seed gives the same facts.

It writes aggregates in bulk (``app.save_in_batches``) as the system actor, like the loaders:
imports of historical records are trusted system work. Broadcasts still go through draft →
submit → approve by two different people.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import attrs
import pytz

from tcs_core.domain.base import TcsAggregate
from tcs_core.domain.broadcast import Broadcast
from tcs_core.domain.device import Device
from tcs_core.domain.dispatch import Dispatch
from tcs_core.domain.facility import Facility, Station
from tcs_core.domain.feedback import Feedback
from tcs_core.domain.values import (
    AreaKind,
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
from tcs_core.projections import AreaVersion

if TYPE_CHECKING:
    from tcs_core.app import SourceSystem

__all__ = [
    "SAMPLE_AREAS",
    "SAMPLE_REFORM",
    "SAMPLE_SINCE",
    "ExampleHistory",
    "build_sample_province",
    "generate_history",
]

_ACTOR = "system"
_EDITOR = "example.editor"
_APPROVER = "example.approver"
_CATEGORIES = (
    Category.POLICY_LAW,
    Category.LOCAL_GOVERNMENT,
    Category.HEALTH,
    Category.DISASTER,
    Category.KNOWLEDGE,
    Category.SECURITY,
)


@attrs.frozen
class ExampleHistory:
    """What ``generate_history`` wrote."""

    scope: str | None
    seed: int
    start: date
    end: date
    communes: int
    stations: int
    facilities: int
    devices: int
    broadcasts: int
    dispatches: int
    feedback: int
    events: int


def _day(rng: random.Random, first: date, last: date) -> date:
    span = (last - first).days
    return first + timedelta(days=rng.randint(0, max(span, 0)))


def _instant(rng: random.Random, first: date, last: date, tz: pytz.BaseTzInfo) -> datetime:
    d = _day(rng, first, last)
    local = tz.localize(datetime.combine(d, time(rng.randint(0, 23), rng.randint(0, 59))))
    return local.astimezone(UTC)


def generate_history(
    app: SourceSystem,
    scope: str | None = None,
    *,
    seed: int = 0,
    start: date = date(2021, 1, 1),
    end: date = date(2025, 6, 30),
    on: date | None = None,
    devices_per_commune: int = 2,
    outages_per_year: float = 12.0,
    bulletins_per_year: float = 12.0,
    feedback_per_year: float = 3.0,
    batch: int = 1000,
) -> ExampleHistory:
    """Write a history for the communes of ``scope`` (an area code read on ``on``, default
    ``start``; None: the whole country) from ``start`` to ``end``; see the module docstring."""
    rng = random.Random(seed)  # noqa: S311 (example data, not secrets)
    tz = pytz.timezone(app.settings.zone)
    on = on or start
    areas = app.areas
    if scope is None:
        roots = [v for v in areas.all_at(on) if v.parent_id is None]
    else:
        roots = [areas.resolve(scope, on)]
    everything = [v for r in roots for v in areas.subtree(r.area_id, on)]
    communes = [v for v in everything if v.kind.is_commune_level]
    districts = [v for v in everything if v.kind is AreaKind.DISTRICT]
    provinces = [v for v in everything if v.kind is AreaKind.PROVINCE]
    before = app.recorder.max_notification_id() or 0
    counts = {"stations": 0, "facilities": 0, "devices": 0, "broadcasts": 0, "dispatches": 0}
    counts["feedback"] = 0

    def stations() -> Iterator[TcsAggregate]:
        built: list[Station] = []
        for c in communes:
            if rng.random() > 0.95:
                continue  # a few communes have no station at all
            kind = rng.choices(
                (StationKind.WIRED, StationKind.FM, StationKind.IP), (0.4, 0.4, 0.2)
            )[0]
            commissioned = rng.randint(2003, start.year - 1)
            s = Station(
                name=f"Đài truyền thanh {c.name}",
                area_id=c.area_id,
                kind=kind,
                commissioned_year=commissioned,
                condition=rng.choices(
                    (Condition.GOOD, Condition.DEGRADED, Condition.BROKEN), (0.6, 0.3, 0.1)
                )[0],
                reaches_villages=rng.random() < 0.92,
                # On record since it was commissioned (and at least since the areas exist).
                effective=max(date(commissioned, 1, 1), c.valid_from),
                actor=_ACTOR,
            )
            built.append(s)
        for year in range(start.year, end.year + 1):
            first, last = max(start, date(year, 1, 1)), min(end, date(year, 12, 31))
            if first > last:
                continue
            old = [s for s in built if s.kind is not StationKind.IP]
            # Bình Định's rule, roughly followed: broken, then degraded, then oldest first.
            rank = {Condition.BROKEN: 0, Condition.DEGRADED: 1, Condition.GOOD: 2}
            old.sort(key=lambda s: (rank[s.condition], s.commissioned_year))
            share = rng.uniform(0.12, 0.3)
            for s in old[: round(len(old) * share)]:
                when = max(_day(rng, first, last), s.last_change)
                s.convert_to_ip(when, _ACTOR)
                s.change_condition(Condition.GOOD, True, when, _ACTOR)
            for s in built:
                if s.kind is StationKind.IP or rng.random() > 0.12:
                    continue
                worse = Condition.DEGRADED if s.condition is Condition.GOOD else Condition.BROKEN
                when = max(_day(rng, first, last), s.last_change)
                s.change_condition(worse, s.reaches_villages, when, _ACTOR)
        counts["stations"] = len(built)
        yield from built

    def facilities() -> Iterator[TcsAggregate]:
        n = 0
        first_year = date(start.year - 2, 1, 1)
        for c in communes:
            urban = c.kind.is_urban
            plans = [
                (FacilityKind.WEBSITE, 0.85 if urban else 0.7, "Trang thông tin điện tử"),
                (FacilityKind.EBOARD, 0.6 if urban else 0.3, "Bảng tin điện tử công cộng"),
                (FacilityKind.EBOARD, 0.15 if urban else 0.05, "Bảng tin điện tử công cộng 2"),
            ]
            for kind, p, label in plans:
                if rng.random() < p:
                    f = Facility(
                        name=f"{label} {c.name}",
                        kind=kind,
                        area_id=c.area_id,
                        effective=_day(rng, first_year, end),
                        actor=_ACTOR,
                    )
                    if rng.random() < 0.03:
                        f.close(_day(rng, f.last_change, end), _ACTOR)
                    n += 1
                    yield f
        for d in districts:
            if rng.random() < 0.65:
                f = Facility(
                    name=f"Bảng tin điện tử cỡ lớn {d.name}",
                    kind=FacilityKind.DISTRICT_BOARD,
                    area_id=d.area_id,
                    effective=_day(rng, first_year, end),
                    actor=_ACTOR,
                )
                if rng.random() < 0.8:
                    f.connect(_day(rng, f.last_change, end), _ACTOR)
                n += 1
                yield f
        for prov in provinces:
            if rng.random() < 0.9:
                n += 1
                yield Facility(
                    name=f"Hệ thống thông tin nguồn {prov.name}",
                    kind=FacilityKind.SOURCE_SYSTEM,
                    area_id=prov.area_id,
                    effective=_day(rng, date(2022, 1, 1), date(2023, 12, 31)),
                    actor=_ACTOR,
                )
        counts["facilities"] = n

    speakers: dict[UUID, list[UUID]] = {}

    def devices() -> Iterator[TcsAggregate]:
        t0 = tz.localize(datetime.combine(start, time(6))).astimezone(UTC)
        t_end = tz.localize(datetime.combine(end, time(23, 59))).astimezone(UTC)
        years = (end - start).days / 365.25
        for c in communes:
            ids = speakers.setdefault(c.area_id, [])
            for k in range(devices_per_commune):
                d = Device(
                    name=f"Cụm loa {k + 1} {c.name}",
                    kind=DeviceKind.IP_SPEAKER,
                    area_id=c.area_id,
                    transport="simulated",
                    address=f"sim://{c.code}/{k + 1}",
                    settings={},
                    channels=[Channel.AUDIO],
                    groups=[],
                    actor=_ACTOR,
                )
                ids.append(d.id)
                first_seen = t0 + timedelta(hours=rng.uniform(0, 72))
                d.set_status(DeviceStatus.ONLINE, "heartbeat", first_seen, _ACTOR)
                mean = outages_per_year * years
                how_many = max(0, round(rng.gauss(mean, mean**0.5)))
                outages = sorted(_outage(rng, first_seen, t_end) for _ in range(how_many))
                last = first_seen
                for begin, length in outages:
                    if begin <= last:
                        continue
                    back = begin + length
                    if back >= t_end:
                        break
                    down = DeviceStatus.FAULT if rng.random() < 0.1 else DeviceStatus.OFFLINE
                    d.set_status(down, "no heartbeat", begin, _ACTOR)
                    d.set_status(DeviceStatus.ONLINE, "heartbeat", back, _ACTOR)
                    last = back
                counts["devices"] += 1
                yield d

    def broadcasts_and_dispatches() -> Iterator[TcsAggregate]:
        by_province: dict[UUID, list[Broadcast]] = {}
        province_of: dict[UUID, AreaVersion] = {}
        for c in communes:
            line = [c, *areas.ancestors(c.area_id, on)]
            province_of[c.area_id] = next(
                (a for a in line if a.kind is AreaKind.PROVINCE), line[-1]
            )
        for p in {v.area_id: v for v in province_of.values()}.values():
            made = []
            for i, category in enumerate(_CATEGORIES):
                b = Broadcast(
                    title=f"Bản tin {category.value} số {i + 1} ({p.name})",
                    category=category,
                    priority=Priority.NORMAL,
                    content={Channel.AUDIO: SpeechContent(f"Bản tin {i + 1} của {p.name}.")},
                    targets=Targets(areas=[p.code], channels=[Channel.AUDIO]),
                    target_area_ids=[p.area_id],
                    schedule=ScheduleSpec.recurring(
                        "0 6 * * *", duration_s=rng.choice((300, 600, 900))
                    ),
                    preemption=Preemption.for_priority(Priority.NORMAL),
                    actor=_EDITOR,
                )
                b.submit(_EDITOR)
                b.approve(_APPROVER)
                made.append(b)
                counts["broadcasts"] += 1
                yield b
            by_province[p.area_id] = made
        years = (end - start).days / 365.25
        for index, c in enumerate(communes):
            targets = speakers.get(c.area_id, [])
            if not targets:
                continue
            made = by_province[province_of[c.area_id].area_id]
            n = round(bulletins_per_year * years * rng.uniform(0.6, 1.4))
            days = sorted({_day(rng, start, end) for _ in range(n)})
            for d in days:
                b = rng.choice(made)
                local = datetime.combine(d, time(6)) + timedelta(seconds=index)
                occ = tz.localize(local).astimezone(UTC)
                dispatch = Dispatch(
                    **Dispatch.start_args(b.id, occ, b.priority, targets), actor=_ACTOR
                )
                outcomes = []
                for dev in targets:
                    r = rng.random()
                    if r < 0.9:
                        outcomes.append(
                            DeliveryOutcome(
                                dev, "delivered", occ + timedelta(seconds=rng.randint(0, 40))
                            )
                        )
                    elif r < 0.95:
                        late = occ + timedelta(minutes=rng.randint(2, 40))
                        outcomes.append(DeliveryOutcome(dev, "delivered", late))
                    elif r < 0.99:
                        outcomes.append(DeliveryOutcome(dev, "failed", occ, reason="offline"))
                if outcomes:
                    dispatch.record_outcomes(outcomes, _ACTOR)
                dispatch.complete(occ + timedelta(hours=1), _ACTOR)
                counts["dispatches"] += 1
                yield dispatch

    def feedback() -> Iterator[TcsAggregate]:
        years = (end - start).days / 365.25
        n = 0
        for c in communes:
            for _ in range(round(feedback_per_year * years * rng.uniform(0.5, 1.5))):
                received = _instant(rng, start, end, tz)
                fb = Feedback(
                    channel=rng.choice(tuple(FeedbackChannel)),
                    area_id=c.area_id,
                    sender_ref=f"citizen-{rng.randint(1, 10**6)}",
                    text=f"Ý kiến về loa truyền thanh ở {c.name}",
                    received_at=received,
                    due=(received + timedelta(days=7)).date(),
                    source_ref=f"example-{seed}-{c.code}-{n}",
                    actor=_ACTOR,
                )
                n += 1
                if rng.random() < 0.85:
                    answered = received + timedelta(hours=rng.uniform(1, 24 * 20))
                    fb.respond("Đã tiếp nhận và xử lý.", answered, _ACTOR)
                    if rng.random() < 0.7:
                        fb.close(answered + timedelta(days=1), _ACTOR)
                counts["feedback"] += 1
                yield fb

    for source in (stations, facilities, devices, broadcasts_and_dispatches, feedback):
        app.save_in_batches(source(), batch)
    after = app.recorder.max_notification_id() or 0
    return ExampleHistory(
        scope,
        seed,
        start,
        end,
        len(communes),
        counts["stations"],
        counts["facilities"],
        counts["devices"],
        counts["broadcasts"],
        counts["dispatches"],
        counts["feedback"],
        after - before,
    )


def _outage(rng: random.Random, first: datetime, last: datetime) -> tuple[datetime, timedelta]:
    span = (last - first).total_seconds()
    begin = first + timedelta(seconds=rng.uniform(0, span))
    hours = min(rng.lognormvariate(2.5, 1.2), 24 * 20)  # median ~12 h, sometimes days
    return begin, timedelta(hours=hours)


#: The sample province of ``build_sample_province``: ``(code, name, kind, parent)``, parents first.
SAMPLE_AREAS: tuple[tuple[str, str, AreaKind, str | None], ...] = (
    ("P9", "Tỉnh Mẫu", AreaKind.PROVINCE, None),
    ("D1", "Huyện Núi", AreaKind.DISTRICT, "P9"),
    ("D2", "Thành phố Biển", AreaKind.DISTRICT, "P9"),
    ("X1", "Xã Suối", AreaKind.COMMUNE, "D1"),
    ("X2", "Xã Đồi", AreaKind.COMMUNE, "D1"),
    ("T3", "Thị trấn Núi", AreaKind.TOWNSHIP, "D1"),
    ("W1", "Phường Cảng", AreaKind.WARD, "D2"),
    ("W2", "Phường Chợ", AreaKind.WARD, "D2"),
)
SAMPLE_SINCE = date(2000, 1, 1)
SAMPLE_REFORM = date(2025, 7, 1)


def build_sample_province(app: SourceSystem, actor: str = "admin") -> None:
    """A small three-level province and its two-level reform, for docs and tests::

    P9 Tỉnh Mẫu                      since 2000-01-01
    ├── D1 Huyện Núi                 dissolved 2025-07-01
    │   ├── X1 Xã Suối               merged into X2 on 2025-07-01
    │   ├── X2 Xã Đồi                moved under P9 on 2025-07-01
    │   └── T3 Thị trấn Núi          split into X2 and W1 on 2025-07-01
    └── D2 Thành phố Biển            dissolved 2025-07-01
        ├── W1 Phường Cảng           moved under P9 on 2025-07-01
        └── W2 Phường Chợ            moved under P9 on 2025-07-01
    """
    for code, name, kind, parent in SAMPLE_AREAS:
        app.create_area(code, name, kind, parent=parent, effective=SAMPLE_SINCE, actor=actor)
    r = SAMPLE_REFORM
    app.merge_areas(["X1"], into="X2", effective=r, actor=actor)
    app.split_area("T3", into=["X2", "W1"], effective=r, actor=actor)
    for code in ("X2", "W1", "W2"):
        app.move_area(code, "P9", effective=r, actor=actor)
    app.dissolve_area("D1", effective=r, actor=actor)
    app.dissolve_area("D2", effective=r, actor=actor)
