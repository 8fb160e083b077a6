"""Indicators as of any date, over the area structure of that date, and re-attributed to today's.

**As of a date D** means: the effective facts on or before D (a station's state on D, the
facilities established and not closed by D, the feedback received in the period and handled by
the end of D, device time and deliveries up to the end of D), counted over the areas *as they
were on D*. A fact recorded against an area that no longer exists on D (merged, split) counts in
the area that took over its territory; when several did (a split), in the **primary successor**:
the first of them by code. Each fact therefore counts once, never in two successors.

**Re-attribution** (``reattribute``) moves every contribution of an evaluation (one per counted
commune, district, province, station, feedback item, device...) to the areas of a later date,
e.g. what Bình Định's communes of 2024 contribute to Gia Lai since 1 July 2025. Rule
``"primary"`` (default) gives a split unit wholly to its primary successor; rule
``"fractional"`` shares it equally among its successors (exact fractions). A unit with no
successor (the districts, dissolved in 2025) goes to the successor of its nearest ancestor that
has one. Either way the numerators and denominators are conserved: their sums over the new areas
equal the original ones (``Reattribution.totals``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, NamedTuple
from uuid import UUID

import attrs

from tcs_core.domain.values import AreaKind
from tcs_core.errors import UnknownArea, ValidationError
from tcs_core.kpi.indicators import INDICATORS, Indicator, IndicatorKind, indicator
from tcs_core.kpi.periods import ND09_ANNUAL, AnnualWindow, Period
from tcs_core.kpi.projection import KpiProjection
from tcs_core.projections import AreaIndex, AreaVersion

if TYPE_CHECKING:
    from tcs_core.app import SourceSystem

__all__ = [
    "DEFAULT_BASELINE",
    "AsRunRow",
    "Evaluation",
    "IndicatorValue",
    "Kpis",
    "Part",
    "Reattribution",
    "SplitRule",
    "Structure",
    "evaluate",
    "reattribute",
    "structure_on",
]

#: Baseline of the conversion indicators when none is given: the start of the 2021-2025 strategy
#: (Quyết định 1381/QĐ-BTTTT).
DEFAULT_BASELINE = date(2021, 1, 1)

Number = int | Fraction
SplitRule = Literal["primary", "fractional"]
_TOWN_PREFIXES = ("thành phố", "thị xã", "quận")


# ------------------------------------------------------------------------------------------
# The structure on one day
# ------------------------------------------------------------------------------------------


class Structure:
    """The area structure on ``day`` (shared by every day until the next structural change).

    Answers, for any area id, where its territory lies on that day (itself, or its primary
    successor), its commune / district / province, and which units lie within a scope.
    """

    def __init__(self, areas: AreaIndex, day: date) -> None:
        self.day = day
        self.areas = areas
        self.versions: dict[UUID, AreaVersion] = {v.area_id: v for v in areas.all_at(day)}
        self.chain: dict[UUID, tuple[UUID, ...]] = {}  # ancestors, nearest first
        for aid in self.versions:
            self._chain(aid)
        self.commune_of: dict[UUID, UUID | None] = {}
        self.district_of: dict[UUID, UUID | None] = {}
        self.province_of: dict[UUID, UUID | None] = {}
        self.communes_in: defaultdict[UUID | None, list[UUID]] = defaultdict(list)
        self.districts_in: defaultdict[UUID | None, list[UUID]] = defaultdict(list)
        self.provinces_in: defaultdict[UUID | None, list[UUID]] = defaultdict(list)
        versions = self.versions
        for aid, v in sorted(versions.items(), key=lambda kv: kv[1].code):
            line = (aid, *self.chain[aid])
            self.commune_of[aid] = next(
                (a for a in line if versions[a].kind.is_commune_level), None
            )
            self.district_of[aid] = next(
                (a for a in line if versions[a].kind is AreaKind.DISTRICT), None
            )
            self.province_of[aid] = next(
                (a for a in line if versions[a].kind is AreaKind.PROVINCE), None
            )
            if v.kind.is_commune_level:
                target = self.communes_in
            elif v.kind is AreaKind.DISTRICT:
                target = self.districts_in
            elif v.kind is AreaKind.PROVINCE:
                target = self.provinces_in
            else:
                continue
            target[None].append(aid)
            for a in line:
                target[a].append(aid)
        self._located: dict[UUID, UUID | None] = {}
        self._split: dict[tuple[UUID | None, bool], list[UUID]] = {}

    def _chain(self, aid: UUID) -> tuple[UUID, ...]:
        known = self.chain.get(aid)
        if known is not None:
            return known
        path: list[UUID] = []
        seen = {aid}
        v = self.versions.get(aid)
        while v is not None and v.parent_id is not None and v.parent_id not in seen:
            parent = v.parent_id
            if parent in self.chain:
                path.append(parent)
                path.extend(self.chain[parent])
                break
            seen.add(parent)
            path.append(parent)
            v = self.versions.get(parent)
        result = tuple(a for a in path if a in self.versions)
        self.chain[aid] = result
        return result

    def locate(self, area_id: UUID) -> UUID | None:
        """The area holding ``area_id``'s territory on this day: itself if it exists, else its
        primary successor (first by code); None if it does not exist yet or left no successor."""
        if area_id in self.versions:
            return area_id
        try:
            return self._located[area_id]
        except KeyError:
            pass
        successors = [
            s for s in self.areas.successors(area_id, self.day) if s.area_id in self.versions
        ]
        found = successors[0].area_id if successors else None
        self._located[area_id] = found
        return found

    def within(self, area_id: UUID | None, scope: UUID | None) -> bool:
        """True if ``area_id`` (existing on this day) is ``scope`` or lies below it."""
        if scope is None:
            return True
        if area_id is None:
            return False
        return area_id == scope or scope in self.chain.get(area_id, ())

    def unit_of(self, area_id: UUID | None) -> UUID | None:
        """The commune of an area, or the area itself when it lies above communes."""
        if area_id is None:
            return None
        commune = self.commune_of.get(area_id)
        return commune if commune is not None else area_id

    def communes(self, scope: UUID | None, urban: bool | None = None) -> list[UUID]:
        """Commune-level units within ``scope``: all, urban (wards, towns) or the others."""
        units = self.communes_in.get(scope, [])
        if urban is None:
            return units
        key = (scope, urban)
        found = self._split.get(key)
        if found is None:
            versions = self.versions
            found = self._split[key] = [c for c in units if versions[c].kind.is_urban is urban]
        return found

    def is_town(self, district_id: UUID) -> bool:
        """A district-level town or city (thị xã, thành phố, quận) rather than a huyện."""
        return self.versions[district_id].name.lower().startswith(_TOWN_PREFIXES)


def structure_on(proj: KpiProjection, day: date) -> Structure:
    """The structure on ``day``, cached per structure epoch (days between two area changes)."""
    cache: dict[int, Structure] | None = getattr(proj, "_kpi_structures", None)
    version = getattr(proj, "_kpi_structures_version", -1)
    if cache is None or version != proj.structure_changes:
        cache = {}
        proj._kpi_structures = cache  # type: ignore[attr-defined]
        proj._kpi_structures_version = proj.structure_changes  # type: ignore[attr-defined]
    epoch = bisect_right(proj.structure_dates, day.toordinal())
    s = cache.get(epoch)
    if s is None:
        s = cache[epoch] = Structure(proj.areas, day)
    return s


# ------------------------------------------------------------------------------------------
# Values
# ------------------------------------------------------------------------------------------


class Part(NamedTuple):
    """One contribution: ``numerator`` and ``denominator`` counted for ``unit`` (an area id
    valid on the as-of date: a commune, district or province; None if it has no area)."""

    unit: UUID | None
    numerator: Number
    denominator: Number


class IndicatorValue:
    """An indicator's value: numerator, denominator, and the parts they sum.

    ``parts`` (one per counted unit) are built on first use: most callers only want the value.
    """

    __slots__ = ("_hits", "_parts", "_units", "breakdown", "denominator", "indicator", "numerator")

    def __init__(
        self,
        indicator: Indicator,
        numerator: Number,
        denominator: Number,
        parts: tuple[Part, ...] | None = (),
        breakdown: Mapping[str, int] | None = None,
        *,
        units: Sequence[UUID] = (),
        hits: Mapping[UUID, Number] | None = None,
    ) -> None:
        self.indicator = indicator
        self.numerator = numerator
        self.denominator = denominator
        self.breakdown: Mapping[str, int] = dict(breakdown or {})
        self._parts = parts
        self._units = units
        self._hits = hits

    @classmethod
    def per_unit(
        cls, indicator: Indicator, units: Sequence[UUID], hits: Mapping[UUID, Number]
    ) -> IndicatorValue:
        """One part per unit (denominator 1, numerator ``hits[unit]`` or 0)."""
        return cls(indicator, sum(hits.values(), 0), len(units), None, units=units, hits=hits)

    @property
    def parts(self) -> tuple[Part, ...]:
        """The contributions the numerator and denominator sum (see ``Part``)."""
        if self._parts is None:
            hits = self._hits or {}
            self._parts = tuple(Part(u, hits.get(u, 0), 1) for u in self._units)
        return self._parts

    @property
    def exact(self) -> Fraction | None:
        """The value as an exact fraction (a percentage for ratios); None when undefined."""
        kind = self.indicator.kind
        if kind is IndicatorKind.COUNT:
            return Fraction(self.numerator)
        if not self.denominator:
            return None
        scale = 100 if kind is IndicatorKind.RATIO else 1
        return Fraction(self.numerator) * scale / Fraction(self.denominator)

    @property
    def value(self) -> float | None:
        """The value as a float (a percentage for ratios); None when the denominator is 0."""
        exact = self.exact
        return None if exact is None else float(exact)

    @property
    def additive(self) -> bool:
        """True if the parts add up (bulletins aired counts distinct occurrences: it does not)."""
        return self.indicator.id != "bulletins_aired"

    def __repr__(self) -> str:
        return (
            f"IndicatorValue({self.indicator.id}: {self.numerator}/{self.denominator}"
            f" = {self.value})"
        )


@attrs.frozen
class Evaluation:
    """Every requested indicator for one scope, as of one day."""

    scope: AreaVersion | None
    as_of: date
    period: Period
    baseline: date
    values: Mapping[str, IndicatorValue]

    def __getitem__(self, indicator_id: str) -> IndicatorValue:
        return self.values[indicator_id]

    def __iter__(self) -> Iterator[IndicatorValue]:
        return iter(self.values.values())


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------


class _Context:
    def __init__(
        self,
        proj: KpiProjection,
        structure: Structure,
        scope: UUID | None,
        as_of: date,
        period: Period,
        baseline: date,
    ) -> None:
        self.proj = proj
        self.s = structure
        self.scope = scope
        self.as_of = as_of
        self.day = as_of.toordinal()
        self.period = period
        self.baseline = min(baseline, as_of).toordinal()
        self.first = period.start.toordinal()
        self.last = min(period.end, as_of).toordinal()
        self.start_s = proj.local_midnight(period.start)
        # Facts of the period: before end_s. Facts known by the as-of date: before known_s.
        self.end_s = proj.local_midnight(date.fromordinal(self.last) + timedelta(days=1))
        self.known_s = proj.local_midnight(as_of + timedelta(days=1))
        self._areas: dict[UUID | None, UUID | None] = {}

    def place(self, area_id: UUID | None) -> tuple[bool, UUID | None]:
        """(in scope?, unit) of a fact recorded against ``area_id``."""
        if area_id is None:
            return self.scope is None, None
        try:
            located = self._areas[area_id]
        except KeyError:
            located = self._areas[area_id] = self.s.locate(area_id)
        if located is None:
            return False, None
        return self.s.within(located, self.scope), self.s.unit_of(located)

    def communes(self, urban: bool | None = None) -> list[UUID]:
        return self.s.communes(self.scope, urban)


def _sum_parts(
    ind: Indicator, parts: Iterable[Part], breakdown: Mapping[str, int] | None = None
) -> IndicatorValue:
    parts = tuple(parts)
    num: Number = sum((p.numerator for p in parts), 0)
    den: Number = sum((p.denominator for p in parts), 0)
    return IndicatorValue(ind, num, den, parts, breakdown)


def _grouped(items: Iterable[tuple[UUID | None, Number, Number]]) -> tuple[Part, ...]:
    acc: dict[UUID | None, list[Number]] = {}
    for unit, n, d in items:
        c = acc.get(unit)
        if c is None:
            acc[unit] = [n, d]
        else:
            c[0] += n
            c[1] += d
    return tuple(Part(u, n, d) for u, (n, d) in acc.items())


def _radio_coverage(ctx: _Context) -> IndicatorValue:
    units = ctx.communes()
    wanted = set(units)
    covered: dict[UUID, int] = {}
    for st in ctx.proj.stations.values():
        if st.serves_villages(ctx.day):
            commune = ctx.s.commune_of.get(ctx.s.locate(st.area_id) or st.area_id)
            if commune in wanted:
                covered[commune] = 1
    return IndicatorValue.per_unit(indicator("radio_coverage"), units, covered)


def _conversion(ctx: _Context, annual: bool) -> IndicatorValue:
    lo = ctx.first if annual else -1
    items = []
    for st in ctx.proj.stations.values():
        if not st.was_wired_or_fm(ctx.baseline):
            continue
        inside, unit = ctx.place(st.area_id)
        if not inside:
            continue
        done = st.converted is not None and lo <= st.converted <= ctx.last
        items.append((unit, int(done), 1))
    name = "ip_conversion_annual" if annual else "ip_conversion"
    return _sum_parts(indicator(name), _grouped(items))


def _has_facility(ctx: _Context, name: str, kind: str, urban: bool) -> IndicatorValue:
    units = ctx.communes(urban)
    wanted = set(units)
    hits: dict[UUID, int] = {}
    for f in ctx.proj.facilities.values():
        if f.kind == kind and f.active(ctx.day):
            commune = ctx.s.commune_of.get(ctx.s.locate(f.area_id) or f.area_id)
            if commune in wanted:
                hits[commune] = 1
    return IndicatorValue.per_unit(indicator(name), units, hits)


def _eboard_count(ctx: _Context, name: str, urban: bool) -> IndicatorValue:
    units = ctx.communes(urban)
    wanted = set(units)
    hits: dict[UUID, int] = defaultdict(int)
    for f in ctx.proj.facilities.values():
        if f.kind == "eboard" and f.active(ctx.day):
            commune = ctx.s.commune_of.get(ctx.s.locate(f.area_id) or f.area_id)
            if commune in wanted:
                hits[commune] += 1
    return IndicatorValue.per_unit(indicator(name), units, hits)


def _district_boards(ctx: _Context, name: str, town: bool | None) -> IndicatorValue:
    units = [
        d for d in ctx.s.districts_in.get(ctx.scope, []) if town is None or ctx.s.is_town(d) is town
    ]
    wanted = set(units)
    hits: dict[UUID, int] = {}
    for f in ctx.proj.facilities.values():
        if f.kind == "district_board" and f.connected_on(ctx.day):
            district = ctx.s.district_of.get(ctx.s.locate(f.area_id) or f.area_id)
            if district in wanted:
                hits[district] = 1
    return IndicatorValue.per_unit(indicator(name), units, hits)


def _source_system(ctx: _Context) -> IndicatorValue:
    units = ctx.s.provinces_in.get(ctx.scope, [])
    wanted = set(units)
    hits: dict[UUID, int] = {}
    for f in ctx.proj.facilities.values():
        if f.kind == "source_system" and f.active(ctx.day):
            province = ctx.s.province_of.get(ctx.s.locate(f.area_id) or f.area_id)
            if province in wanted:
                hits[province] = 1
    return IndicatorValue.per_unit(indicator("source_system"), units, hits)


def _feedback(ctx: _Context) -> IndicatorValue:
    items = []
    for fb in ctx.proj.feedback.values():
        if not (ctx.start_s <= fb.received < ctx.end_s):
            continue
        inside, unit = ctx.place(fb.area_id)
        if inside:
            items.append((unit, int(fb.handled is not None and fb.handled < ctx.known_s), 1))
    return _sum_parts(indicator("feedback_handled"), _grouped(items))


def _availability(ctx: _Context) -> IndicatorValue:
    items = []
    a, b = ctx.start_s, ctx.end_s
    for dev in ctx.proj.devices.values():
        if not dev.times:
            continue
        inside, unit = ctx.place(dev.area_id)
        if inside:
            on, obs = dev.seconds(a, b)
            if obs:
                items.append((unit, on, obs))
    return _sum_parts(indicator("device_availability"), _grouped(items))


def _on_time(ctx: _Context) -> IndicatorValue:
    proj = ctx.proj
    items = []
    for area, series in proj.deliveries.items():
        inside, unit = ctx.place(area)
        if not inside:
            continue
        targeted, _, on_time = series.between(ctx.first, ctx.last)
        if targeted:
            items.append((unit, on_time, targeted))
    # On-time deliveries of occurrences in the period's last minute that completed after the
    # as-of day: not known yet on that day (only possible when the period ends on it).
    late: dict[UUID | None, int] = defaultdict(int)
    first = max(ctx.start_s, ctx.known_s - proj.on_time_within_s - 1)
    for rec in proj.dispatches_between(first, min(ctx.end_s, ctx.known_s)):
        for status, at, _, area in rec.rows.values():
            if (
                status == "delivered"
                and at >= ctx.known_s
                and at - rec.occurrence <= proj.on_time_within_s
            ):
                late[area] += 1
    for area, n in late.items():
        inside, unit = ctx.place(area)
        if inside:
            items.append((unit, -n, 0))
    return _sum_parts(indicator("on_time_delivery"), _grouped(items))


def _aired(ctx: _Context) -> dict[UUID | None, set[int]]:
    """Per unit, the dispatches aired there in the period and known by the end of the day."""
    proj = ctx.proj
    out: dict[UUID | None, set[int]] = defaultdict(set)
    for area in list(proj.aired):
        inside, unit = ctx.place(area)
        if not inside:
            continue
        for index in proj.aired_in(area, ctx.first, ctx.last):
            if proj.dispatch_list[index].aired[area] < ctx.known_s:
                out[unit].add(index)
    return out


def _airtime(ctx: _Context, aired: Mapping[UUID | None, set[int]]) -> IndicatorValue:
    proj = ctx.proj
    hits: dict[UUID, Number] = {}
    units = ctx.communes()
    wanted = set(units)
    for u, indices in aired.items():
        if u in wanted and indices:
            seconds = sum(proj.broadcast_of(proj.dispatch_list[i])[2] for i in indices)
            hits[u] = Fraction(seconds, 3600)
    return IndicatorValue.per_unit(indicator("airtime_per_commune"), units, hits)


def _bulletins(ctx: _Context, aired: Mapping[UUID | None, set[int]]) -> IndicatorValue:
    proj = ctx.proj
    distinct: set[int] = set().union(*aired.values()) if aired else set()
    by_category: dict[str, int] = defaultdict(int)
    for i in distinct:
        by_category[proj.broadcast_of(proj.dispatch_list[i])[1]] += 1
    targeted = 0
    for rec in proj.dispatches_between(ctx.start_s, ctx.end_s):
        if any(ctx.place(a)[0] for a in rec.areas):
            targeted += 1
    return IndicatorValue(
        indicator("bulletins_aired"), len(distinct), targeted, (), dict(sorted(by_category.items()))
    )


def evaluate(
    proj: KpiProjection,
    scope: UUID | None,
    as_of: date,
    *,
    period: Period | None = None,
    baseline: date = DEFAULT_BASELINE,
    indicators: Iterable[str] | None = None,
    window: AnnualWindow = ND09_ANNUAL,
) -> Evaluation:
    """Compute ``indicators`` (default: all) for the area ``scope`` (None: everywhere) as of
    ``as_of``, over the structure of that day. Flow indicators (feedback, conversions in the
    year, operational ones) count over ``period`` up to ``as_of``; by default the annual window
    that contains ``as_of`` (NĐ 09/2019: 15/12 of the previous year to 14/12)."""
    wanted = list(INDICATORS) if indicators is None else list(indicators)
    for i in wanted:
        indicator(i)  # KeyError naming the known ids
    with proj.lock:
        structure = structure_on(proj, as_of)
        scope_v: AreaVersion | None = None
        if scope is not None:
            scope_v = structure.versions.get(scope)
            if scope_v is None:
                raise UnknownArea(
                    f"area {scope} does not exist on {as_of.isoformat()}; evaluate it on a day "
                    "it existed, or re-attribute to the areas of that day"
                )
        if period is None:
            period = window.period(window.year_of(as_of))
        if period.start > as_of:
            raise ValidationError(
                "period", f"starts ({period.start}) after the as-of date ({as_of})"
            )
        ctx = _Context(proj, structure, scope, as_of, period, baseline)
        out: dict[str, IndicatorValue] = {}
        aired: dict[UUID | None, set[int]] | None = None
        for i in wanted:
            if i in ("airtime_per_commune", "bulletins_aired"):
                if aired is None:
                    aired = _aired(ctx)
                out[i] = (
                    _airtime(ctx, aired) if i == "airtime_per_commune" else _bulletins(ctx, aired)
                )
            else:
                out[i] = _COMPUTE[i](ctx)
    return Evaluation(scope_v, as_of, period, min(baseline, as_of), out)


_COMPUTE = {
    "radio_coverage": _radio_coverage,
    "ip_conversion": lambda c: _conversion(c, annual=False),
    "ip_conversion_annual": lambda c: _conversion(c, annual=True),
    "website_urban": lambda c: _has_facility(c, "website_urban", "website", True),
    "website_rural": lambda c: _has_facility(c, "website_rural", "website", False),
    "eboard_urban": lambda c: _has_facility(c, "eboard_urban", "eboard", True),
    "eboard_rural": lambda c: _has_facility(c, "eboard_rural", "eboard", False),
    "eboard_count_urban": lambda c: _eboard_count(c, "eboard_count_urban", True),
    "eboard_count_rural": lambda c: _eboard_count(c, "eboard_count_rural", False),
    "district_board_connected": lambda c: _district_boards(c, "district_board_connected", None),
    "district_board_connected_town": lambda c: _district_boards(
        c, "district_board_connected_town", True
    ),
    "district_board_connected_rural": lambda c: _district_boards(
        c, "district_board_connected_rural", False
    ),
    "source_system": _source_system,
    "feedback_handled": _feedback,
    "device_availability": _availability,
    "on_time_delivery": _on_time,
}


# ------------------------------------------------------------------------------------------
# Re-attribution
# ------------------------------------------------------------------------------------------


@attrs.frozen
class Reattribution:
    """Contributions moved to the areas of ``to``: per indicator, per area (None: no area),
    the (numerator, denominator) it receives."""

    source: Evaluation
    to: date
    level: AreaKind
    rule: SplitRule
    areas: Mapping[UUID | None, AreaVersion | None]
    values: Mapping[str, Mapping[UUID | None, tuple[Number, Number]]]

    def totals(self, indicator_id: str) -> tuple[Number, Number]:
        """Sum of the numerators and denominators given out (equal to the source's)."""
        cells = self.values[indicator_id].values()
        return sum((n for n, _ in cells), 0), sum((d for _, d in cells), 0)

    def by_code(self, indicator_id: str) -> dict[str, tuple[Number, Number]]:
        """The same, keyed by area code (``"-"`` for no area)."""
        out: dict[str, tuple[Number, Number]] = {}
        for key, cell in self.values[indicator_id].items():
            v = self.areas.get(key)
            out[v.code if v is not None else "-"] = cell
        return out


def reattribute(
    proj: KpiProjection,
    evaluation: Evaluation,
    to: date | None = None,
    *,
    level: AreaKind | str = AreaKind.PROVINCE,
    rule: SplitRule = "primary",
) -> Reattribution:
    """Move ``evaluation``'s contributions to the areas of ``to`` (default: the latest
    structure), grouped at ``level`` (``province`` or ``commune``), splitting by ``rule``."""
    lvl = AreaKind(level)
    if rule not in ("primary", "fractional"):
        raise ValidationError("rule", "give 'primary' or 'fractional'")
    with proj.lock:
        if to is None:
            to = date.fromordinal(max(proj.structure_dates[-1:] or [evaluation.as_of.toordinal()]))
        before = structure_on(proj, evaluation.as_of)
        after = structure_on(proj, to)
        memo: dict[UUID | None, tuple[tuple[UUID | None, Fraction], ...]] = {}

        def targets(unit: UUID | None) -> tuple[tuple[UUID | None, Fraction], ...]:
            if unit in memo:
                return memo[unit]
            result: tuple[tuple[UUID | None, Fraction], ...] = ((None, Fraction(1)),)
            if unit is not None:
                for a in (unit, *before.chain.get(unit, ())):
                    found = [
                        s.area_id
                        for s in proj.areas.successors(a, to)
                        if s.area_id in after.versions
                    ]
                    if found:
                        if rule == "primary":
                            result = ((_group(after, found[0], lvl), Fraction(1)),)
                        else:
                            share = Fraction(1, len(found))
                            result = tuple((_group(after, f, lvl), share) for f in found)
                        break
            memo[unit] = result
            return result

        values: dict[str, dict[UUID | None, tuple[Number, Number]]] = {}
        for iv in evaluation:
            if not iv.additive:
                continue
            cells: dict[UUID | None, list[Number]] = {}
            for part in iv.parts:
                for key, share in targets(part.unit):
                    n = part.numerator * share if share != 1 else part.numerator
                    d = part.denominator * share if share != 1 else part.denominator
                    c = cells.setdefault(key, [0, 0])
                    c[0] += n
                    c[1] += d
            values[iv.indicator.id] = {k: (_tidy(n), _tidy(d)) for k, (n, d) in cells.items()}
        areas = {
            k: (after.versions.get(k) if k is not None else None)
            for cells in values.values()
            for k in cells
        }
    return Reattribution(evaluation, to, lvl, rule, areas, values)


def _tidy(x: Number) -> Number:
    if isinstance(x, Fraction) and x.denominator == 1:
        return int(x)
    return x


def _group(s: Structure, area_id: UUID, level: AreaKind) -> UUID:
    if level is AreaKind.PROVINCE:
        return s.province_of.get(area_id) or area_id
    if level.is_commune_level or level is AreaKind.COMMUNE:
        return s.commune_of.get(area_id) or area_id
    if level is AreaKind.DISTRICT:
        return s.district_of.get(area_id) or s.province_of.get(area_id) or area_id
    return area_id


# ------------------------------------------------------------------------------------------
# As-run log
# ------------------------------------------------------------------------------------------


@attrs.frozen
class AsRunRow:
    """What one device was given to play for one occurrence, and what became of it."""

    occurrence: datetime
    device_id: UUID
    device_name: str
    area_code: str
    area_name: str
    title: str
    category: str
    duration_s: int
    status: str  # delivered, failed, retryable, pending
    at: datetime | None
    reason: str
    dispatch_id: UUID


# ------------------------------------------------------------------------------------------
# The facade
# ------------------------------------------------------------------------------------------


class Kpis:
    """The indicators of one application: a ``KpiProjection`` kept current from its store.

    ``Kpis(app)`` builds the projection by reading the notification log once; every query
    first catches up with what was recorded since (``refresh``), so answers are current.
    """

    def __init__(
        self,
        app: SourceSystem,
        *,
        projection: KpiProjection | None = None,
        on_time_within: timedelta = timedelta(seconds=60),
        auto_refresh: bool = True,
    ) -> None:
        self.app = app
        self.projection = projection or KpiProjection(app.settings.zone, on_time_within)
        self.auto_refresh = auto_refresh
        self.refresh()

    def refresh(self) -> int:
        """Apply the events recorded since the last look; returns how many were applied."""
        return self.projection.catch_up(self.app)

    def _maybe_refresh(self) -> None:
        if self.auto_refresh:
            self.refresh()

    def area(self, code: str, on: date) -> AreaVersion:
        """The area holding ``code`` on ``on`` (codes are reused: always a question of date)."""
        self._maybe_refresh()
        return self.projection.areas.resolve(code, on)

    def as_of(
        self,
        scope: str | UUID | None,
        as_of: date,
        *,
        scope_on: date | None = None,
        period: Period | None = None,
        baseline: date = DEFAULT_BASELINE,
        indicators: Iterable[str] | None = None,
        window: AnnualWindow = ND09_ANNUAL,
    ) -> Evaluation:
        """The indicators of ``scope`` (a code read on ``scope_on``, default ``as_of``; an area
        id; or None for the whole country) as of ``as_of``."""
        self._maybe_refresh()
        if isinstance(scope, str):
            scope = self.projection.areas.resolve(scope, scope_on or as_of).area_id
        return evaluate(
            self.projection,
            scope,
            as_of,
            period=period,
            baseline=baseline,
            indicators=indicators,
            window=window,
        )

    def reattribute(
        self,
        evaluation: Evaluation,
        to: date | None = None,
        *,
        level: AreaKind | str = AreaKind.PROVINCE,
        rule: SplitRule = "primary",
    ) -> Reattribution:
        """``evaluation``'s contributions in the areas of ``to`` (see ``reattribute``)."""
        return reattribute(self.projection, evaluation, to, level=level, rule=rule)

    def asrun(
        self, area: str | UUID, start: date, end: date, *, area_on: date | None = None
    ) -> list[AsRunRow]:
        """What each device within ``area`` was given to play from ``start`` to ``end``
        (local days, both included), with the outcome: the as-run log, oldest first."""
        self._maybe_refresh()
        proj = self.projection
        if end < start:
            raise ValidationError("period", "the end comes before the start")
        if isinstance(area, str):
            area = proj.areas.resolve(area, area_on or end).area_id
        rows: list[AsRunRow] = []
        with proj.lock:
            structure = structure_on(proj, end)
            a, b = proj.local_midnight(start), proj.local_midnight(end + timedelta(days=1))
            for rec in proj.dispatches_between(a, b):
                title, category, duration = proj.broadcast_of(rec)
                occ = datetime.fromtimestamp(rec.occurrence, UTC)
                for key, (status, at, reason, dev_area) in rec.rows.items():
                    located = structure.locate(dev_area) if dev_area is not None else None
                    if located is None or not structure.within(located, area):
                        continue
                    dev = proj.device_of_hex(key)
                    v = structure.versions[located]
                    rows.append(
                        AsRunRow(
                            occ,
                            UUID(key),
                            dev.name if dev else key,
                            v.code,
                            v.name,
                            title,
                            category,
                            duration,
                            status or "pending",
                            None if at is None else datetime.fromtimestamp(at, UTC),
                            reason,
                            rec.id,
                        )
                    )
        return rows
