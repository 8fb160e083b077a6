"""Realistic workloads run on a virtual clock: a national day of broadcasts in seconds.

``national_day`` seeds a store with the 3,321 communes of 2025, speakers and boards in every
commune, 10,000 approved broadcasts drawn from ~50 schedule patterns, a few one-shots and one
emergency at 10:00; ``run`` drives the scheduler over it with an in-memory transport and returns a
summary. The seeding uses the public API in bulk as the system actor (loaders and imports are
trusted system work); the broadcasts still go through draft → submit → approve by two people.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs
import pytz

from tcs_core.app import SYSTEM, SourceSystem
from tcs_core.domain.broadcast import Broadcast
from tcs_core.domain.values import (
    DEFAULT_ZONE,
    AreaKind,
    BoardContent,
    Category,
    Channel,
    Preemption,
    Priority,
    ScheduleSpec,
    SpeechContent,
    Targets,
)
from tcs_core.loaders import load_2025
from tcs_core.memory import MemoryTransport
from tcs_core.scheduler import Scheduler, SchedulerConfig, VirtualClock

__all__ = ["PATTERNS", "Summary", "Workload", "national_day", "run"]

# ~50 distinct (cron, zone) patterns, the shapes vendors' schedules take: morning and evening
# bulletins, weekday-only programmes, weekly and monthly items, several times a day.
PATTERNS: tuple[str, ...] = tuple(
    [f"{m} {h} * * *" for h in (5, 6, 11, 17, 18) for m in (0, 15, 30, 45)]
    + [f"{m} {h} * * 1-5" for h in (6, 17) for m in (0, 30)]
    + [f"0 {h} * * 1,3,5" for h in (7, 19)]
    + [f"30 {h} * * 6,0" for h in (7, 16)]
    + ["0 6,11,17 * * *", "30 5,17 * * *", "0 7 1 * *", "0 7 15 * *", "0 19 * * 0"]
    + [f"{m} 20 * * *" for m in (0, 20, 40)]
    + ["15 6 * * 2,4", "45 16 * * 1-6", "0 12 * * *", "10 18 * * *", "50 5 * * *"]
    + ["0 9 * * 1", "0 14 * * 3", "0 15 * * 5", "20 6 * * *", "40 17 * * *"]
    + ["55 9 * * *", "50 9 * * 1-5"]  # playing when the 10:00 emergency cuts in
    + ["0 5 * * 1-5", "30 11 * * 6,0", "15 19 * * *", "45 20 * * 5"]
)


@attrs.frozen
class Workload:
    """What ``national_day`` seeded: the virtual start and end, and the emergency's id."""

    start: datetime
    end: datetime
    broadcasts: int
    devices: int
    communes: int
    emergency_id: Any


@attrs.frozen
class Summary:
    """What a run did."""

    dispatches: int
    deliveries: int
    delivered: int
    failed: int
    preemptions: int
    misfires: int
    events_written: int
    transactions: int
    wall_s: float
    virtual_hours: float

    def as_dict(self) -> dict[str, Any]:
        """The figures as a plain dict (for JSON and tables)."""
        return attrs.asdict(self)


def national_day(
    app: SourceSystem,
    *,
    day: date = date(2026, 3, 2),
    schedules: int = 10_000,
    speakers: int = 10,
    boards: int = 2,
    province_share: float = 0.01,
    seed: int = 0,
) -> Workload:
    """Seed the national-day workload into an empty ``app`` (areas, devices, broadcasts)."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible workload, not a secret)
    zone = pytz.timezone(DEFAULT_ZONE)
    start = zone.localize(datetime.combine(day, datetime.min.time())).astimezone(UTC)
    load_2025(app)
    at = datetime.combine(day, datetime.min.time())
    communes = [v for v in app.areas.all_at(at.date()) if v.kind.is_commune_level]
    provinces = [v for v in app.areas.all_at(at.date()) if v.kind is AreaKind.PROVINCE]
    communes.sort(key=lambda v: v.code)
    provinces.sort(key=lambda v: v.code)
    if app.principals.get("sim.operator") is None:
        if not len(app.principals):
            app.bootstrap_admin("admin")
        app.create_principal(
            "sim.operator", grants=[("operator", None)], actor=SYSTEM, permissions=["emergency"]
        )
        app.create_principal(
            "sim.approver", grants=[("approver", None)], actor=SYSTEM, permissions=["emergency"]
        )
    devices = []
    for c in communes:
        for i in range(speakers):
            devices.append(
                {
                    "name": f"Loa {c.code}-{i + 1}",
                    "kind": "ip_speaker",
                    "area": c.code,
                    "transport": "memory",
                    "address": f"mem:{c.code}/{i}",
                    "channels": ["audio"],
                }
            )
        for i in range(boards):
            devices.append(
                {
                    "name": f"Bảng {c.code}-{i + 1}",
                    "kind": "board",
                    "area": c.code,
                    "transport": "memory",
                    "address": f"mem:{c.code}/b{i}",
                    "channels": ["board"],
                }
            )
    app.register_devices(devices, actor=SYSTEM)

    valid_from = start - timedelta(days=1)
    valid_until = start + timedelta(days=2)
    new: list[Broadcast] = []

    def add(
        title: str,
        area: Any,
        spec: ScheduleSpec,
        priority: Priority,
        channel: Channel,
        category: Category,
    ) -> Broadcast:
        content: dict[Channel, Any] = (
            {Channel.AUDIO: SpeechContent(title)}
            if channel is Channel.AUDIO
            else {Channel.BOARD: BoardContent(title)}
        )
        b = Broadcast(
            title=title,
            category=category,
            priority=priority,
            content=content,
            targets=Targets(areas=[area.code], channels=[channel]),
            target_area_ids=[area.area_id],
            schedule=spec,
            preemption=Preemption.for_priority(priority),
            actor="sim.operator",
        )
        b.submit("sim.operator")
        b.approve("sim.approver")
        new.append(b)
        return b

    for n in range(schedules):
        area = rng.choice(provinces) if rng.random() < province_share else rng.choice(communes)
        spec = ScheduleSpec.recurring(
            rng.choice(PATTERNS),
            valid_from=valid_from,
            valid_until=valid_until,
            duration_s=rng.choice((300, 600, 900)),
        )
        add(
            f"Bản tin thường kỳ số {n + 1}",
            area,
            spec,
            Priority.PRIORITY if rng.random() < 0.05 else Priority.NORMAL,
            Channel.AUDIO if rng.random() < 0.85 else Channel.BOARD,
            rng.choice([Category.POLICY_LAW, Category.LOCAL_GOVERNMENT, Category.KNOWLEDGE]),
        )
    for n in range(20):
        when = start + timedelta(hours=rng.uniform(6, 21))
        add(
            f"Thông báo đột xuất số {n + 1}",
            rng.choice(communes),
            ScheduleSpec.once(when, duration_s=300),
            Priority.PRIORITY,
            Channel.AUDIO,
            Category.LOCAL_GOVERNMENT,
        )
    gia_lai = next(p for p in provinces if p.code == "52")
    # Gia Lai relays the provincial programme (tiếp sóng đài tỉnh) every morning 09:55-10:10:
    # the 10:00 emergency cuts into it on every speaker of the province.
    add(
        "Tiếp sóng chương trình phát thanh của Đài tỉnh Gia Lai",
        gia_lai,
        ScheduleSpec.recurring(
            "55 9 * * *", valid_from=valid_from, valid_until=valid_until, duration_s=900
        ),
        Priority.NORMAL,
        Channel.AUDIO,
        Category.LOCAL_GOVERNMENT,
    )
    emergency = add(
        "Cảnh báo bão khẩn cấp: người dân không ra khơi, gia cố nhà cửa.",
        gia_lai,
        ScheduleSpec.once(start + timedelta(hours=10), duration_s=600),
        Priority.EMERGENCY,
        Channel.AUDIO,
        Category.DISASTER,
    )
    app.save_in_batches(new, 2000)
    return Workload(
        start, start + timedelta(hours=24), len(new), len(devices), len(communes), emergency.id
    )


async def run(
    app: SourceSystem,
    workload: Workload,
    *,
    hours: float = 24,
    progress: Callable[[float, Scheduler], None] | None = None,
    config: SchedulerConfig | None = None,
) -> tuple[Summary, Scheduler, MemoryTransport]:
    """Run the scheduler over the workload on a virtual clock; report what it did."""
    transport = MemoryTransport("memory")
    clock = VirtualClock(workload.start)
    scheduler = Scheduler(app, [transport], clock, config)
    t0 = time.perf_counter()
    await scheduler.start()
    steps = max(1, int(hours * 4))
    for i in range(1, steps + 1):
        await scheduler.run_until(workload.start + timedelta(hours=hours * i / steps))
        if progress is not None:
            progress(i / steps, scheduler)
    await scheduler.stop()
    wall = time.perf_counter() - t0
    assert scheduler.writer is not None
    s = scheduler.stats
    summary = Summary(
        s.dispatches,
        s.deliveries,
        s.delivered,
        s.failed,
        s.preemptions,
        s.misfires,
        scheduler.writer.events_written,
        scheduler.writer.transactions,
        wall,
        hours,
    )
    return summary, scheduler, transport
