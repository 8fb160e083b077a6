"""The conversion planner: which wired/FM stations to convert to IP first, and how many per year.

Bình Định's plan (II.1.a) converts "trước đối với những đài hư hỏng, xuống cấp, hết khấu hao
(trên 5 năm)": broken stations first, then degraded ones, then those older than five years, then
the rest; within a group the oldest first (then by name, so the order is stable).

``plan_conversions`` ranks the stations of a plan's area still wired or FM on the as-of date, and
projects the conversion indicators year by year against the plan's targets: for each year, how
many conversions are needed to meet both the cumulative target (``ip_conversion``, a percentage
of the baseline fleet or a count) and the yearly one (``ip_conversion_annual``, e.g. "≥ 25% per
year" or Chư Prông's counts), and which stations they would be.
"""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction

import attrs

from tcs_core.kpi.engine import Kpis, structure_on
from tcs_core.kpi.periods import Period
from tcs_core.kpi.plans import Plan, Target
from tcs_core.kpi.report import plan_scope

__all__ = [
    "ConversionPlan",
    "RankedStation",
    "YearNeed",
    "plan_conversions",
    "render_conversions",
    "required_count",
]

GROUPS = {
    0: ("hư hỏng", "broken"),
    1: ("xuống cấp", "degraded"),
    2: ("hết khấu hao (trên 5 năm)", "older than 5 years"),
    3: ("còn lại", "the rest"),
}


@attrs.frozen
class RankedStation:
    """A wired/FM station in the conversion queue."""

    rank: int
    station_id: object
    name: str
    area_code: str
    area_name: str
    kind: str
    condition: str
    commissioned_year: int
    age: int
    group: int

    def reason(self, lang: str = "vi") -> str:
        """Why it is where it is in the queue."""
        return GROUPS[self.group][0 if lang == "vi" else 1]


@attrs.frozen
class YearNeed:
    """One year of the projection."""

    year: int
    period: Period
    target: Target | None  # cumulative (ip_conversion)
    annual_target: Target | None  # within the year (ip_conversion_annual)
    converted_before: int  # baseline stations converted before the year's window
    converted_so_far: int  # converted within the year's window up to the as-of date
    needed: int  # further conversions the year needs (from the as-of date on)
    cumulative: int  # baseline stations converted by the end of the year, if done
    projected: float | None  # the ip_conversion value (%) at the end of the year
    stations: tuple[RankedStation, ...]  # the next stations in the queue to convert
    short: int  # conversions the queue cannot provide (targets out of reach)


@attrs.frozen
class ConversionPlan:
    """The ranked queue and the year-by-year projection."""

    plan: Plan
    as_of: date
    baseline: int  # wired/FM stations at the baseline
    converted: int  # of which converted by the as-of date
    queue: tuple[RankedStation, ...]
    years: tuple[YearNeed, ...]


def required_count(target: Target | None, denominator: int) -> int:
    """The smallest numerator meeting ``target`` over ``denominator`` (0 without a target)."""
    if target is None:
        return 0
    if not target.percent:
        n = int(target.amount)
        return n + 1 if target.op == ">" else n
    exact = target.amount * denominator / 100
    if target.op == ">":
        return math.floor(exact) + 1
    return math.ceil(exact)


def plan_conversions(kpis: Kpis, plan: Plan, as_of: date) -> ConversionPlan:
    """Rank the plan area's wired/FM stations and project the conversions the targets need."""
    kpis.refresh()
    proj = kpis.projection
    scope, day = plan_scope(kpis, plan, as_of)
    baseline = min(plan.baseline, day).toordinal()
    with proj.lock:
        structure = structure_on(proj, day)
        mine = []
        for st in proj.stations.values():
            if not st.was_wired_or_fm(baseline):
                continue
            located = structure.locate(st.area_id)
            if located is None or not structure.within(located, scope):
                continue
            mine.append((st, located))
    d = day.toordinal()
    converted = [st for st, _ in mine if st.converted is not None and st.converted <= d]
    waiting = []
    for st, located in mine:
        state = st.at(d)
        if state is None or state[0] == "ip" or state[3]:
            continue
        age = day.year - st.commissioned_year
        group = 0 if state[1] == "broken" else 1 if state[1] == "degraded" else 2 if age > 5 else 3
        v = structure.versions[located]
        waiting.append((group, st.commissioned_year, st.name, st, v, state, age))
    waiting.sort(key=lambda w: (w[0], w[1], w[2]))
    queue = tuple(
        RankedStation(
            i + 1,
            st.id,
            st.name,
            v.code,
            v.name,
            state[0],
            state[1],
            st.commissioned_year,
            age,
            group,
        )
        for i, (group, _, _, st, v, state, age) in enumerate(waiting)
    )
    total = len(mine)
    cum_target = plan.target("ip_conversion")
    annual = plan.target("ip_conversion_annual")
    years: list[YearNeed] = []
    cum = len(converted)
    taken = 0
    current = True
    for year in plan.years:
        period = plan.period(year)
        if period.end < day:
            continue
        if current and period.start <= day:
            first = period.start.toordinal()
            before = sum(1 for st in converted if st.converted is not None and st.converted < first)
        else:
            before = cum
        current = False
        so_far = cum - before
        t_cum = cum_target.for_year(year) if cum_target else None
        t_year = annual.for_year(year) if annual else None
        need = max(
            required_count(t_cum, total) - cum,
            required_count(t_year, total) - so_far,
            0,
        )
        take = min(need, len(queue) - taken)
        picked = queue[taken : taken + take]
        taken += take
        cum += take
        years.append(
            YearNeed(
                year,
                period,
                t_cum,
                t_year,
                before,
                so_far,
                need,
                cum,
                float(Fraction(cum * 100, total)) if total else None,
                picked,
                need - take,
            )
        )
    return ConversionPlan(plan, day, total, len(converted), queue, tuple(years))


def render_conversions(cp: ConversionPlan, fmt: str = "table", lang: str = "vi") -> str:
    """The conversion plan as a terminal table or JSON."""
    import io
    import json

    vi = lang == "vi"
    if fmt == "json":
        return json.dumps(
            {
                "plan": cp.plan.id,
                "as_of": cp.as_of.isoformat(),
                "baseline_stations": cp.baseline,
                "converted": cp.converted,
                "years": [
                    {
                        "year": y.year,
                        "target": None if y.target is None else y.target.text,
                        "annual_target": None if y.annual_target is None else y.annual_target.text,
                        "converted_before": y.converted_before,
                        "converted_so_far": y.converted_so_far,
                        "needed": y.needed,
                        "cumulative": y.cumulative,
                        "projected": None if y.projected is None else round(y.projected, 2),
                        "short": y.short,
                        "stations": [s.name for s in y.stations],
                    }
                    for y in cp.years
                ],
                "queue": [
                    {
                        "rank": s.rank,
                        "name": s.name,
                        "area": s.area_code,
                        "kind": s.kind,
                        "condition": s.condition,
                        "commissioned_year": s.commissioned_year,
                        "reason": s.reason(lang),
                    }
                    for s in cp.queue
                ],
            },
            ensure_ascii=False,
            indent=2,
        )
    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), width=160, highlight=False, markup=False)
    console.print(
        ("Đài có dây/FM tại thời điểm gốc: " if vi else "Wired/FM stations at the baseline: ")
        + f"{cp.baseline}; "
        + ("đã chuyển đổi: " if vi else "converted: ")
        + f"{cp.converted} ({cp.as_of:%d/%m/%Y})"
    )
    years = Table(title="Nhu cầu chuyển đổi theo năm" if vi else "Conversions needed per year")
    for c in (
        ("Năm", "Year"),
        ("Chỉ tiêu lũy kế", "Cumulative target"),
        ("Chỉ tiêu trong năm", "Yearly target"),
        ("Cần chuyển đổi", "Needed"),
        ("Lũy kế", "Cumulative"),
        ("Tỷ lệ dự kiến", "Projected"),
        ("Thiếu", "Short"),
    ):
        years.add_column(c[0] if vi else c[1])
    for y in cp.years:
        years.add_row(
            str(y.year),
            "" if y.target is None else y.target.label(lang),
            "" if y.annual_target is None else y.annual_target.label(lang),
            str(y.needed),
            str(y.cumulative),
            "—" if y.projected is None else f"{y.projected:.1f}%",
            str(y.short) if y.short else "",
            style="red" if y.short else "",
        )
    console.print(years)
    queue = Table(title="Thứ tự ưu tiên chuyển đổi" if vi else "Conversion order")
    for c in (
        ("STT", "#"),
        ("Đài", "Station"),
        ("Xã", "Commune"),
        ("Loại", "Kind"),
        ("Tình trạng", "Condition"),
        ("Năm đưa vào sử dụng", "Commissioned"),
        ("Lý do ưu tiên", "Reason"),
    ):
        queue.add_column(c[0] if vi else c[1])
    for s in cp.queue:
        queue.add_row(
            str(s.rank),
            s.name,
            f"{s.area_code} {s.area_name}",
            s.kind,
            s.condition,
            str(s.commissioned_year),
            s.reason(lang),
        )
    console.print(queue)
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()
