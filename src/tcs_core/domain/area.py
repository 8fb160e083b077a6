"""The Area aggregate: an administrative unit whose every change carries an effective date.

Official codes are reused: after the 2025 reform, code ``52`` names Gia Lai where it named Bình Định,
and commune code ``00004`` names the new Ba Đình ward where it named Trúc Bạch. So an area's identity
is ``uuid5(code, effective-from)``, and "which area does code X name on date D" is a query over time
(see ``tcs_core.projections.AreaIndex``).
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from tcs_core.domain.base import TcsAggregate, as_date, as_uuid, stable_id
from tcs_core.domain.values import AreaKind
from tcs_core.errors import InvalidTransition

__all__ = ["Area", "area_id"]


def area_id(code: str, effective: date) -> UUID:
    """Deterministic id of the area that took ``code`` on ``effective``."""
    return stable_id("area", code, as_date(effective).isoformat())


class Area(TcsAggregate):
    """An administrative area (province, district, commune, village, ...)."""

    TOPIC = "tcs.area"

    @staticmethod
    def create_id(code: str, effective: date) -> UUID:
        return area_id(code, effective)

    @event("Created", topic="tcs.area.created")
    def __init__(
        self,
        *,
        code: str,
        name: str,
        kind: AreaKind,
        parent_id: UUID | None,
        effective: date,
        actor: str,
    ) -> None:
        self.code = code
        self.name = name
        self.kind = AreaKind(kind)
        self.parent_id = None if parent_id is None else as_uuid(parent_id)
        self.effective_from = as_date(effective)
        self.last_change = self.effective_from
        self.ended: date | None = None
        self.successor_ids: tuple[UUID, ...] = ()

    def _normalise(self) -> None:
        self.kind = AreaKind(self.kind)
        self.successor_ids = tuple(as_uuid(x) for x in self.successor_ids)

    # -- commands: validate, then record -----------------------------------------------------

    def _check_change(self, effective: date) -> date:
        effective = as_date(effective)
        if self.ended is not None:
            raise InvalidTransition(
                f"area {self.code} ({self.name}) ended on {self.ended.isoformat()}; "
                "it can no longer change"
            )
        if effective < self.last_change:
            raise InvalidTransition(
                f"area {self.code}: a change effective {effective.isoformat()} would precede "
                f"its last change ({self.last_change.isoformat()}); history is append-only"
            )
        return effective

    def rename(self, name: str, effective: date, actor: str) -> None:
        """Give the area a new name from ``effective`` on."""
        self._renamed(name=name, effective=self._check_change(effective), actor=actor)

    def move(self, parent_id: UUID | None, effective: date, actor: str) -> None:
        """Attach the area to a new parent from ``effective`` on."""
        if parent_id == self.id:
            raise InvalidTransition(f"area {self.code} cannot be its own parent")
        self._moved(parent_id=parent_id, effective=self._check_change(effective), actor=actor)

    def merge_into(self, target_id: UUID, effective: date, actor: str) -> None:
        """End the area: its whole territory joins ``target_id``."""
        if target_id == self.id:
            raise InvalidTransition(f"area {self.code} cannot merge into itself")
        self._merged(target_id=target_id, effective=self._check_change(effective), actor=actor)

    def split_into(self, target_ids: tuple[UUID, ...], effective: date, actor: str) -> None:
        """End the area: its territory is shared among ``target_ids``."""
        if not target_ids or self.id in target_ids:
            raise InvalidTransition(f"area {self.code}: a split needs successors other than itself")
        self._split(
            target_ids=list(target_ids), effective=self._check_change(effective), actor=actor
        )

    def dissolve(self, effective: date, actor: str) -> None:
        """End the area with no successor (e.g. districts abolished in 2025)."""
        self._dissolved(effective=self._check_change(effective), actor=actor)

    # -- events -------------------------------------------------------------------------------

    @event("Renamed", topic="tcs.area.renamed")
    def _renamed(self, name: str, effective: date, actor: str) -> None:
        self.name = name
        self.last_change = as_date(effective)

    @event("Moved", topic="tcs.area.moved")
    def _moved(self, parent_id: UUID | None, effective: date, actor: str) -> None:
        self.parent_id = None if parent_id is None else as_uuid(parent_id)
        self.last_change = as_date(effective)

    @event("MergedInto", topic="tcs.area.merged_into")
    def _merged(self, target_id: UUID, effective: date, actor: str) -> None:
        self._end(effective, (as_uuid(target_id),))

    @event("SplitInto", topic="tcs.area.split_into")
    def _split(self, target_ids: list[UUID], effective: date, actor: str) -> None:
        self._end(effective, tuple(as_uuid(x) for x in target_ids))

    @event("Dissolved", topic="tcs.area.dissolved")
    def _dissolved(self, effective: date, actor: str) -> None:
        self._end(effective, ())

    def _end(self, effective: Any, successors: tuple[UUID, ...]) -> None:
        self.ended = self.last_change = as_date(effective)
        self.successor_ids = successors
