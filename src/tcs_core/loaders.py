"""Load Vietnam's real administrative structure into a ``SourceSystem`` as Area events.

Three loads, all idempotent (area ids are deterministic, existing areas are skipped):

- ``load_2025``: the official 2025 structure (34 provinces, 3,321 communes), effective 2025-07-01;
- ``load_legacy``: the three-level structure before the reform (63 provinces, 696 districts,
  10,035 communes), effective from ``LEGACY_SINCE``;
- ``load_history``: legacy, then the 2025 reform as events (communes merged into or split among
  their successors, districts dissolved, unchanged units moved under their 2025 province), so
  "which communes belonged to Bình Định on 2023-12-31" and "where are they now" are both queries.

The legacy dataset is a snapshot of the structure just before the reform; it carries no history
of earlier changes, so every legacy unit is taken to exist from ``LEGACY_SINCE``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from uuid import UUID

import attrs

from tcs_core import areadata
from tcs_core.app import SYSTEM, Actor, SourceSystem
from tcs_core.domain.area import Area, area_id
from tcs_core.domain.values import AreaKind
from tcs_core.domain.values import Role as _Role
from tcs_core.errors import AlreadyExists, UnknownArea

__all__ = ["LEGACY_SINCE", "REFORM_DATE", "LoadReport", "load_2025", "load_history", "load_legacy"]

LEGACY_SINCE = date(2000, 1, 1)
REFORM_DATE = areadata.REORGANISATION_DATE


@attrs.frozen
class LoadReport:
    """What a load did."""

    created: int = 0
    skipped: int = 0
    changed: int = 0

    def __add__(self, other: LoadReport) -> LoadReport:
        return LoadReport(
            self.created + other.created, self.skipped + other.skipped, self.changed + other.changed
        )


def _create(
    app: SourceSystem,
    records: Iterable[areadata.UnitRecord],
    effective: date,
    actor: Actor,
    skip_codes: frozenset[str] = frozenset(),
) -> LoadReport:
    """Create the records' areas (parents first), skipping those that exist already."""
    ids: dict[str, UUID] = {}
    new: list[Area] = []
    skipped = 0
    for r in records:
        aid = area_id(r.code, effective)
        ids[r.code] = aid
        if r.code in skip_codes:
            continue
        if app.areas.exists(aid):
            skipped += 1
            continue
        parent = None if r.parent_code is None else ids.get(r.parent_code)
        if r.parent_code is not None and parent is None:
            parent = app.areas.resolve(r.parent_code, effective).area_id
        try:
            holder = app.areas.resolve(r.code, effective)
        except UnknownArea:
            holder = None
        if holder is not None:
            raise UnknownArea(
                f"code {r.code} is held by {holder.name} on {effective.isoformat()}; "
                "load the history (legacy + reform) in one go instead of mixing loads"
            )
        new.append(
            Area(
                code=r.code,
                name=r.name,
                kind=AreaKind(r.kind),
                parent_id=parent,
                effective=effective,
                actor=str(actor),
            )
        )
    app.save_in_batches(new, size=2000)
    return LoadReport(created=len(new), skipped=skipped)


def load_2025(app: SourceSystem, actor: Actor = SYSTEM) -> LoadReport:
    """Load the official 2025 structure, effective on the reform date."""
    app.authorise(actor, _Role.ADMIN, [None])
    return _create(app, areadata.structure_2025(), REFORM_DATE, actor)


def load_legacy(app: SourceSystem, actor: Actor = SYSTEM, since: date = LEGACY_SINCE) -> LoadReport:
    """Load the pre-2025 three-level structure, effective from ``since``."""
    app.authorise(actor, _Role.ADMIN, [None])
    return _create(app, areadata.structure_legacy(), since, actor)


def load_history(
    app: SourceSystem, actor: Actor = SYSTEM, since: date = LEGACY_SINCE
) -> LoadReport:
    """Load legacy, then the 2025 reform as events on the reform date.

    Running it again changes nothing. Loading the 2025 structure alone first and the history
    afterwards is refused (the codes would clash); load into a fresh store instead.
    """
    app.authorise(actor, _Role.ADMIN, [None])
    successions = areadata.reorganisation_2025()
    continuing = {s.old_code for s in successions if s.continues}
    # A continuing unit keeps its legacy identity; if it exists under its 2025 identity, the
    # 2025 structure was loaded on its own and the history cannot be laid under it.
    clash = sorted(c for c in continuing if app.areas.exists(area_id(c, REFORM_DATE)))
    if clash:
        raise AlreadyExists(
            f"this store holds the 2025 structure without its history (e.g. code {clash[0]}); "
            "load the history into a fresh store"
        )
    report = load_legacy(app, actor, since)
    eve = REFORM_DATE - timedelta(days=1)
    new_units = {r.code: r for r in areadata.structure_2025()}

    def new_id(code: str) -> UUID:
        return area_id(code, REFORM_DATE)

    ended: list[Area] = []
    changed = 0
    for s in successions:
        old = app.areas.resolve(s.old_code, eve)
        after = app.areas.version_at(old.area_id, REFORM_DATE)
        if after is None or after.valid_from == REFORM_DATE:
            continue  # ended or changed on the reform date: an earlier run applied it
        agg: Area | None = app.repository.get(old.area_id)
        if not isinstance(agg, Area):
            raise TypeError(f"{old.area_id} is not an area")
        if s.continues:
            (code,) = s.new_codes
            unit = new_units[code]
            parent = (
                None
                if unit.parent_code is None
                else _successor_id(unit.parent_code, continuing, since)
            )
            if parent != old.parent_id:
                agg.move(parent, REFORM_DATE, str(actor))
            if unit.name != old.name:
                agg.rename(unit.name, REFORM_DATE, str(actor))
            if agg.pending_events:
                ended.append(agg)
                changed += 1
            continue
        if not s.new_codes:
            agg.dissolve(REFORM_DATE, str(actor))
        elif len(s.new_codes) == 1:
            agg.merge_into(
                _successor_id(s.new_codes[0], continuing, since), REFORM_DATE, str(actor)
            )
        else:
            agg.split_into(
                tuple(_successor_id(c, continuing, since) for c in s.new_codes),
                REFORM_DATE,
                str(actor),
            )
        ended.append(agg)
        changed += 1
    app.save_in_batches(ended, size=2000)
    created = _create_2025_with_continuity(app, new_units, continuing, since, actor)
    return report + created + LoadReport(changed=changed)


def _successor_id(code: str, continuing: set[str], since: date) -> UUID:
    """The id of the 2025 unit with ``code``: a continuing legacy area keeps its own id."""
    return area_id(code, since) if code in continuing else area_id(code, REFORM_DATE)


def _create_2025_with_continuity(
    app: SourceSystem,
    new_units: dict[str, areadata.UnitRecord],
    continuing: set[str],
    since: date,
    actor: Actor,
) -> LoadReport:
    """Create the 2025 units that are not continuations of legacy ones."""
    new: list[Area] = []
    skipped = 0
    for code, r in new_units.items():
        if code in continuing:
            continue
        aid = area_id(code, REFORM_DATE)
        if app.areas.exists(aid):
            skipped += 1
            continue
        parent = None if r.parent_code is None else _successor_id(r.parent_code, continuing, since)
        new.append(
            Area(
                code=code,
                name=r.name,
                kind=AreaKind(r.kind),
                parent_id=parent,
                effective=REFORM_DATE,
                actor=str(actor),
            )
        )
    app.save_in_batches(new, size=2000)
    return LoadReport(created=len(new), skipped=skipped)
