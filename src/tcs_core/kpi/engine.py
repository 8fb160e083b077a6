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
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from uuid import UUID

import attrs

from tcs_core.checkpoints import Checkpoint
from tcs_core.domain.values import AreaKind
from tcs_core.errors import UnknownArea, ValidationError
from tcs_core.kpi.indicators import INDICATORS, Indicator, IndicatorKind, indicator
from tcs_core.kpi.periods import ND09_ANNUAL, AnnualWindow, Period
from tcs_core.kpi.projection import (
    AIRED,
    AIRINGS_TARGETED,
    AIRTIME,
    CATEGORIES,
    ON_TIME,
    TARGETED,
    KpiProjection,
)
from tcs_core.projections import AreaVersion

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
# Where a fact counts: (located key, chain of keys, unit key, district key, province key).
Place = tuple[int, frozenset[int], int, int, int]
SplitRule = Literal["primary", "fractional"]
_TOWN_PREFIXES = ("thành phố", "thị xã", "quận")


# ------------------------------------------------------------------------------------------
# The structure on one day
# ------------------------------------------------------------------------------------------


class Structure:
    """The area structure on ``day`` (shared by every day until the next structural change).

    Answers, for any area, where its territory lies on that day (itself, or its primary
    successor), its commune / district / province, and which units lie within a scope. The
    by-id maps serve re-attribution and the planner; the hot loops of the indicators use the
    projection's integer area keys (``place``), which hash in C.
    """

    def __init__(self, proj: KpiProjection, day: date) -> None:
        self.day = day
        self.areas = proj.areas
        self.ids = proj.area_ids
        self.keys = proj.area_keys
        self.versions: dict[UUID, AreaVersion] = {v.area_id: v for v in proj.areas.all_at(day)}
        self.chain: dict[UUID, tuple[UUID, ...]] = {}  # ancestors, nearest first
        for aid in self.versions:
            self._chain(aid)
        self.commune_of: dict[UUID, UUID | None] = {}
        self.district_of: dict[UUID, UUID | None] = {}
        self.province_of: dict[UUID, UUID | None] = {}
        # Integer side: key -> version, key -> (self and ancestors), units per scope key.
        key = proj.key
        self.kversions: dict[int, AreaVersion] = {}
        self.kchain: dict[int, frozenset[int]] = {}
        self.kcommune: dict[int, int] = {}
        self.kdistrict: dict[int, int] = {}
        self.kprovince: dict[int, int] = {}
        self.communes_in: defaultdict[int | None, list[int]] = defaultdict(list)
        self.districts_in: defaultdict[int | None, list[int]] = defaultdict(list)
        self.provinces_in: defaultdict[int | None, list[int]] = defaultdict(list)
        versions = self.versions
        for aid, v in sorted(versions.items(), key=lambda kv: kv[1].code):
            line = (aid, *self.chain[aid])
            commune = next((a for a in line if versions[a].kind.is_commune_level), None)
            district = next((a for a in line if versions[a].kind is AreaKind.DISTRICT), None)
            province = next((a for a in line if versions[a].kind is AreaKind.PROVINCE), None)
            self.commune_of[aid] = commune
            self.district_of[aid] = district
            self.province_of[aid] = province
            k = key(aid)
            klines = tuple(key(a) for a in line)
            self.kversions[k] = v
            self.kchain[k] = frozenset(klines)
            self.kcommune[k] = -1 if commune is None else key(commune)
            self.kdistrict[k] = -1 if district is None else key(district)
            self.kprovince[k] = -1 if province is None else key(province)
            if v.kind.is_commune_level:
                target = self.communes_in
            elif v.kind is AreaKind.DISTRICT:
                target = self.districts_in
            elif v.kind is AreaKind.PROVINCE:
                target = self.provinces_in
            else:
                continue
            target[None].append(k)
            for a in klines:
                target[a].append(k)
        self._located: dict[UUID, UUID | None] = {}
        self._places: dict[int, Place | None] = {}
        self._split: dict[tuple[int | None, bool], list[int]] = {}

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

    def place(self, k: int) -> Place | None:
        """Where a fact recorded against area key ``k`` counts on this day: (located key, its
        chain of keys, unit key, district key, province key); None if nowhere. The unit is the
        commune, or the located area itself when it lies above communes; -1 means none."""
        try:
            return self._places[k]
        except KeyError:
            pass
        found: Place | None = None
        if k >= 0:
            located = self.locate(self.ids[k])
            if located is not None:
                lk = self.keys[located]
                commune = self.kcommune[lk]
                found = (
                    lk,
                    self.kchain[lk],
                    lk if commune < 0 else commune,
                    self.kdistrict[lk],
                    self.kprovince[lk],
                )
        self._places[k] = found
        return found

    def within(self, area_id: UUID | None, scope: UUID | None) -> bool:
        """True if ``area_id`` (existing on this day) is ``scope`` or lies below it."""
        if scope is None:
            return True
        if area_id is None:
            return False
        return area_id == scope or scope in self.chain.get(area_id, ())

    def communes(self, scope: int | None, urban: bool | None = None) -> list[int]:
        """Keys of the commune-level units within ``scope`` (a key; None: everywhere): all,
        urban (wards, towns) or the others."""
        units = self.communes_in.get(scope, [])
        if urban is None:
            return units
        found = self._split.get((scope, urban))
        if found is None:
            kv = self.kversions
            found = self._split[(scope, urban)] = [c for c in units if kv[c].kind.is_urban is urban]
        return found

    def is_town(self, district: int) -> bool:
        """A district-level town or city (thị xã, thành phố, quận) rather than a huyện."""
        return self.kversions[district].name.lower().startswith(_TOWN_PREFIXES)


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
        s = cache[epoch] = Structure(proj, day)
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

    __slots__ = (
        "_groups",
        "_hits",
        "_ids",
        "_parts",
        "_scale",
        "_units",
        "breakdown",
        "denominator",
        "indicator",
        "numerator",
    )

    def __init__(
        self,
        indicator: Indicator,
        numerator: Number,
        denominator: Number,
        parts: tuple[Part, ...] | None = (),
        breakdown: Mapping[str, int] | None = None,
        *,
        units: Sequence[int] = (),
        hits: Mapping[int, Number] | None = None,
        ids: Sequence[UUID] = (),
        scale: int = 1,
        groups: Mapping[int, Sequence[Number]] | None = None,
    ) -> None:
        self.indicator = indicator
        self.numerator = numerator
        self.denominator = denominator
        self.breakdown: Mapping[str, int] = dict(breakdown or {})
        self._parts = parts
        self._units = units
        self._hits = hits
        self._ids = ids
        self._scale = scale
        self._groups = groups

    @classmethod
    def per_unit(
        cls,
        indicator: Indicator,
        units: Sequence[int],
        hits: Mapping[int, Number],
        ids: Sequence[UUID],
        *,
        scale: int = 1,
    ) -> IndicatorValue:
        """One part per unit key (denominator 1, numerator ``hits[unit] / scale`` or 0);
        ``ids`` turns the projection's area keys back into area ids."""
        total: Number = sum(hits.values(), 0)
        if scale != 1:
            total = Fraction(total, scale)
        return cls(indicator, total, len(units), None, units=units, hits=hits, ids=ids, scale=scale)

    @classmethod
    def grouped(
        cls, indicator: Indicator, groups: Mapping[int, Sequence[Number]], ids: Sequence[UUID]
    ) -> IndicatorValue:
        """One part per unit key of ``groups`` ((numerator, denominator); key -1: no area)."""
        num: Number = sum((g[0] for g in groups.values()), 0)
        den: Number = sum((g[1] for g in groups.values()), 0)
        return cls(indicator, num, den, None, ids=ids, groups=groups)

    @property
    def parts(self) -> tuple[Part, ...]:
        """The contributions the numerator and denominator sum (see ``Part``)."""
        if self._parts is None and self._groups is not None:
            ids = self._ids
            self._parts = tuple(
                Part(None if k < 0 else ids[k], g[0], g[1]) for k, g in self._groups.items()
            )
        if self._parts is None:
            hits, ids, scale = self._hits or {}, self._ids, self._scale
            self._parts = tuple(
                Part(ids[u], Fraction(hits.get(u, 0), scale) if scale != 1 else hits.get(u, 0), 1)
                for u in self._units
            )
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
        """True if the parts add up to the value's numerator and denominator (all do)."""
        return True

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
        scope: int | None,
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
        self.ids = proj.area_ids
        self.fleet: list[tuple[int, int]] | None = None
        self.ledger: dict[int, list[int]] | None = None

    def unit(self, k: int) -> int | None:
        """The unit key a fact recorded against area key ``k`` counts for if it lies within
        the scope (-1: no area, only when the scope is everywhere); None: outside the scope."""
        if k < 0:
            return -1 if self.scope is None else None
        p = self.s.place(k)
        if p is None or (self.scope is not None and self.scope not in p[1]):
            return None
        return p[2]

    def communes(self, urban: bool | None = None) -> list[int]:
        return self.s.communes(self.scope, urban)


def _sum_parts(
    ind: Indicator, parts: Iterable[Part], breakdown: Mapping[str, int] | None = None
) -> IndicatorValue:
    parts = tuple(parts)
    num: Number = sum((p.numerator for p in parts), 0)
    den: Number = sum((p.denominator for p in parts), 0)
    return IndicatorValue(ind, num, den, parts, breakdown)


def _grouped(ctx: _Context, ind: Indicator, items: Mapping[int, list[Number]]) -> IndicatorValue:
    return IndicatorValue.grouped(ind, items, ctx.ids)


def _add(acc: dict[int, list[Number]], unit: int, n: Number, d: Number) -> None:
    c = acc.get(unit)
    if c is None:
        acc[unit] = [n, d]
    else:
        c[0] += n
        c[1] += d


def _per_unit(
    ctx: _Context, name: str, units: list[int], hits: Mapping[int, Number]
) -> IndicatorValue:
    return IndicatorValue.per_unit(indicator(name), units, hits, ctx.ids)


def _radio_coverage(ctx: _Context) -> IndicatorValue:
    units = ctx.communes()
    wanted = set(units)
    covered: dict[int, Number] = {}
    place, day = ctx.s.place, ctx.day
    for st in ctx.proj.stations.values():
        if st.serves_villages(day):
            p = place(st.area_key)
            if p is not None and p[2] in wanted:
                covered[p[2]] = 1
    return _per_unit(ctx, "radio_coverage", units, covered)


def _conversion(ctx: _Context, annual: bool) -> IndicatorValue:
    lo = ctx.first if annual else -1
    hi = ctx.last
    if ctx.fleet is None:  # the baseline wired/FM stations in scope: (unit, conversion day)
        ctx.fleet = []
        for st in ctx.proj.stations.values():
            if st.was_wired_or_fm(ctx.baseline):
                unit = ctx.unit(st.area_key)
                if unit is not None:
                    ctx.fleet.append((unit, -1 if st.converted is None else st.converted))
    acc: dict[int, list[Number]] = {}
    for unit, converted in ctx.fleet:
        _add(acc, unit, int(lo <= converted <= hi and converted >= 0), 1)
    return _grouped(ctx, indicator("ip_conversion_annual" if annual else "ip_conversion"), acc)


def _has_facility(ctx: _Context, name: str, kind: str, urban: bool) -> IndicatorValue:
    units = ctx.communes(urban)
    wanted = set(units)
    hits: dict[int, Number] = {}
    place, day = ctx.s.place, ctx.day
    for f in ctx.proj.facilities_by_kind.get(kind, ()):
        if f.active(day):
            p = place(f.area_key)
            if p is not None and p[2] in wanted:
                hits[p[2]] = 1
    return _per_unit(ctx, name, units, hits)


def _eboard_count(ctx: _Context, name: str, urban: bool) -> IndicatorValue:
    units = ctx.communes(urban)
    wanted = set(units)
    hits: dict[int, Number] = defaultdict(int)
    place, day = ctx.s.place, ctx.day
    for f in ctx.proj.facilities_by_kind.get("eboard", ()):
        if f.active(day):
            p = place(f.area_key)
            if p is not None and p[2] in wanted:
                hits[p[2]] += 1
    return _per_unit(ctx, name, units, hits)


def _district_boards(ctx: _Context, name: str, town: bool | None) -> IndicatorValue:
    s = ctx.s
    units = [d for d in s.districts_in.get(ctx.scope, []) if town is None or s.is_town(d) is town]
    wanted = set(units)
    hits: dict[int, Number] = {}
    for f in ctx.proj.facilities_by_kind.get("district_board", ()):
        if f.connected_on(ctx.day):
            p = s.place(f.area_key)
            if p is not None and p[3] in wanted:
                hits[p[3]] = 1
    return _per_unit(ctx, name, units, hits)


def _source_system(ctx: _Context) -> IndicatorValue:
    units = ctx.s.provinces_in.get(ctx.scope, [])
    wanted = set(units)
    hits: dict[int, Number] = {}
    for f in ctx.proj.facilities_by_kind.get("source_system", ()):
        if f.active(ctx.day):
            p = ctx.s.place(f.area_key)
            if p is not None and p[4] in wanted:
                hits[p[4]] = 1
    return _per_unit(ctx, "source_system", units, hits)


def _feedback(ctx: _Context) -> IndicatorValue:
    acc: dict[int, list[Number]] = {}
    a, b, known = ctx.start_s, ctx.end_s, ctx.known_s
    for fb in ctx.proj.feedback_between(a, b):
        unit = ctx.unit(fb.area_key)
        if unit is not None:
            _add(acc, unit, int(fb.handled is not None and fb.handled < known), 1)
    return _grouped(ctx, indicator("feedback_handled"), acc)


def _availability(ctx: _Context) -> IndicatorValue:
    acc: dict[int, list[Number]] = {}
    a, b = ctx.start_s, ctx.end_s
    proj = ctx.proj
    for area in list(proj.devices_by_area):
        unit = ctx.unit(area)
        if unit is not None:
            on, obs = proj.uptime(area).seconds(a, b)
            if obs:
                _add(acc, unit, on, obs)
    return _grouped(ctx, indicator("device_availability"), acc)


def _ledger(ctx: _Context) -> dict[int, list[int]]:
    """Per unit key, the dispatch ledger summed over the period (see ``Ledger``), counting only
    what was known by the end of the as-of day."""
    if ctx.ledger is not None:
        return ctx.ledger
    proj = ctx.proj
    out: dict[int, list[int]] = {}
    first, last = ctx.first, ctx.last
    for area, ledger in proj.ledgers.items():
        unit = ctx.unit(area)
        if unit is None:
            continue
        row = ledger.between(first, last)
        acc = out.get(unit)
        if acc is None:
            out[unit] = row.copy()
        else:
            for i, v in enumerate(row):
                acc[i] += v
    known = ctx.known_s
    # On-time deliveries of occurrences in the period's last minute that completed after the
    # as-of day: not known yet on that day (only possible when the period ends on it).
    early = max(ctx.start_s, known - proj.on_time_within_s - 1)
    for rec in proj.dispatches_between(early, min(ctx.end_s, known)):
        for status, at, _, area in rec.rows.values():
            if (
                status == "delivered"
                and at >= known
                and at - rec.occurrence <= (proj.on_time_within_s)
            ):
                unit = ctx.unit(area)
                if unit is not None:
                    out[unit][ON_TIME] -= 1
    # Airings first delivered on a later day than their occurrence, after the as-of day.
    for index, area in proj.late_airings:
        rec = proj.dispatch_list[index]
        if first <= rec.day <= last and rec.aired[area] >= known:
            unit = ctx.unit(area)
            if unit is not None:
                row = out[unit]
                row[AIRED] -= 1
                row[AIRTIME] -= rec.duration
                row[6 + CATEGORIES.index(rec.category) if rec.category in CATEGORIES else -1] -= 1
    ctx.ledger = out
    return out


def _on_time(ctx: _Context) -> IndicatorValue:
    acc = {u: [row[ON_TIME], row[TARGETED]] for u, row in _ledger(ctx).items() if row[TARGETED]}
    return _grouped(ctx, indicator("on_time_delivery"), acc)  # type: ignore[arg-type]


def _airtime(ctx: _Context) -> IndicatorValue:
    units = ctx.communes()
    wanted = set(units)
    seconds: dict[int, Number] = {
        u: row[AIRTIME] for u, row in _ledger(ctx).items() if u in wanted and row[AIRTIME]
    }
    return IndicatorValue.per_unit(
        indicator("airtime_per_commune"), units, seconds, ctx.ids, scale=3600
    )


def _bulletins(ctx: _Context) -> IndicatorValue:
    ledger = _ledger(ctx)
    acc = {u: [row[AIRED], row[AIRINGS_TARGETED]] for u, row in ledger.items()}
    by_category: dict[str, int] = {}
    for i, name in enumerate(CATEGORIES):
        n = sum(row[6 + i] for row in ledger.values())
        if n:
            by_category[name] = n
    value = _grouped(ctx, indicator("bulletins_aired"), acc)  # type: ignore[arg-type]
    value.breakdown = dict(sorted(by_category.items()))
    return value


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
        scope_key = None if scope is None else proj.key(scope)
        ctx = _Context(proj, structure, scope_key, as_of, period, baseline)
        out: dict[str, IndicatorValue] = {}
        for i in wanted:
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
    "airtime_per_commune": _airtime,
    "bulletins_aired": _bulletins,
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

    ``Kpis(app)`` builds the projection by reading the notification log once (from the
    deployment's checkpoint, if a valid one exists: see ``tcs_core.checkpoints``); every query
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
        self.auto_refresh = auto_refresh
        self.loaded_checkpoint: Checkpoint | None = None  # what the projection began from
        self._checkpoint_name: str | None = None  # None: a projection given by the caller
        if projection is not None:
            self.projection = projection
            self.refresh()
            return
        self.projection = KpiProjection(app.settings.zone, on_time_within)
        self._checkpoint_name = f"kpi-{self.projection.on_time_within_s}s"
        store = app.checkpoints
        if store is not None:
            self.loaded_checkpoint = store.restore(
                self._checkpoint_name, [self.projection], **self._checkpoint_args()
            )
        began = self.projection.position
        self.refresh()
        if store is not None and self.projection.position - began >= (
            app.settings.checkpoint_after_events
        ):
            with self.projection.lock:
                store.write_quietly(
                    self._checkpoint_name,
                    [self.projection],
                    position=self.projection.position,
                    **self._checkpoint_args(),
                )

    def _checkpoint_args(self) -> dict[str, Any]:
        p = self.projection
        return {"recorder": self.app.recorder, "settings": [p.zone, p.on_time_within_s]}

    def checkpoint(self) -> Checkpoint | None:
        """Write the projection's state as the deployment's KPI checkpoint now; None when
        checkpoints are off."""
        store = self.app.checkpoints
        if store is None or self._checkpoint_name is None:
            return None
        with self.projection.lock:
            return store.write(
                self._checkpoint_name,
                [self.projection],
                position=self.projection.position,
                **self._checkpoint_args(),
            )

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
            scope = proj.key(area)
            a, b = proj.local_midnight(start), proj.local_midnight(end + timedelta(days=1))
            for rec in proj.dispatches_between(a, b):
                title, category, duration = proj.broadcast_of(rec)
                occ = datetime.fromtimestamp(rec.occurrence, UTC)
                for key, (status, at, reason, dev_area) in rec.rows.items():
                    p = structure.place(dev_area)
                    if p is None or scope not in p[1]:
                        continue
                    dev = proj.device_of_hex(key)
                    v = structure.kversions[p[0]]
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
