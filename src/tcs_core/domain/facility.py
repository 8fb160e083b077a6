"""Stations and facilities: the facts the provincial KPIs count, each change with an effective date."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.domain import event

from tcs_core.domain.base import TcsAggregate, as_date, as_uuid
from tcs_core.domain.values import Condition, FacilityKind, StationKind
from tcs_core.errors import InvalidTransition, ValidationError

__all__ = ["Facility", "Station"]


class _Dated(TcsAggregate):
    """Common rule: changes are effective on dates that never go back in time."""

    if TYPE_CHECKING:  # declared for mypy only: eventsourcing reads class annotations as fields
        last_change: date
        closed: date | None

    def _check(self, effective: date, what: str) -> date:
        effective = as_date(effective)
        if self.closed is not None:
            raise InvalidTransition(f"{what} closed on {self.closed.isoformat()}")
        if effective < self.last_change:
            raise InvalidTransition(
                f"{what}: change effective {effective.isoformat()} precedes the last change "
                f"({self.last_change.isoformat()})"
            )
        return effective


class Station(_Dated):
    """A commune radio station (đài truyền thanh cấp xã) as a facility: wired, FM or IP."""

    TOPIC = "tcs.station"

    @event("Created", topic="tcs.station.registered")
    def __init__(
        self,
        *,
        name: str,
        area_id: UUID,
        kind: StationKind,
        commissioned_year: int,
        condition: Condition,
        reaches_villages: bool,
        effective: date,
        actor: str,
    ) -> None:
        self.name = name
        self.area_id = as_uuid(area_id)
        self.kind = StationKind(kind)
        self.commissioned_year = commissioned_year
        self.condition = Condition(condition)
        self.reaches_villages = reaches_villages
        self.registered_on = self.last_change = as_date(effective)
        self.converted_on: date | None = None
        self.closed: date | None = None

    def _normalise(self) -> None:
        self.kind = StationKind(self.kind)
        self.condition = Condition(self.condition)
        self.area_id = as_uuid(self.area_id)

    @staticmethod
    def check_year(year: int) -> int:
        """A commissioning year must be plausible."""
        if not isinstance(year, int) or not (1945 <= year <= 2100):
            raise ValidationError("commissioned_year", "must be a year between 1945 and 2100")
        return year

    def change_condition(
        self, condition: Condition, reaches_villages: bool, effective: date, actor: str
    ) -> None:
        """Record the station's assessed condition and whether it reaches every village."""
        self._condition_changed(
            condition=Condition(condition),
            reaches_villages=bool(reaches_villages),
            effective=self._check(effective, f"station {self.name}"),
            actor=actor,
        )

    def convert_to_ip(self, effective: date, actor: str) -> None:
        """Record the conversion of a wired/FM station to IP (the plans' conversion indicator)."""
        if self.kind is StationKind.IP:
            raise InvalidTransition(f"station {self.name} is already an IP station")
        self._converted(effective=self._check(effective, f"station {self.name}"), actor=actor)

    def close(self, effective: date, actor: str) -> None:
        """Take the station out of service."""
        self._closed(effective=self._check(effective, f"station {self.name}"), actor=actor)

    @event("ConditionChanged", topic="tcs.station.condition_changed")
    def _condition_changed(
        self, condition: Condition, reaches_villages: bool, effective: date, actor: str
    ) -> None:
        self.condition = Condition(condition)
        self.reaches_villages = reaches_villages
        self.last_change = as_date(effective)

    @event("ConvertedToIp", topic="tcs.station.converted_to_ip")
    def _converted(self, effective: date, actor: str) -> None:
        self.kind = StationKind.IP
        self.converted_on = self.last_change = as_date(effective)

    @event("Closed", topic="tcs.station.closed")
    def _closed(self, effective: date, actor: str) -> None:
        self.closed = self.last_change = as_date(effective)


class Facility(_Dated):
    """A commune website, public e-board, large district board or the provincial source system."""

    TOPIC = "tcs.facility"

    @event("Created", topic="tcs.facility.established")
    def __init__(
        self, *, name: str, kind: FacilityKind, area_id: UUID, effective: date, actor: str
    ) -> None:
        self.name = name
        self.kind = FacilityKind(kind)
        self.area_id = as_uuid(area_id)
        self.established_on = self.last_change = as_date(effective)
        self.connected_on: date | None = None
        self.closed: date | None = None

    def _normalise(self) -> None:
        self.kind = FacilityKind(self.kind)
        self.area_id = as_uuid(self.area_id)

    def connect(self, effective: date, actor: str) -> None:
        """Record the connection to the provincial source information system."""
        if self.connected_on is not None:
            raise InvalidTransition(f"facility {self.name} is already connected")
        self._connected(effective=self._check(effective, f"facility {self.name}"), actor=actor)

    def close(self, effective: date, actor: str) -> None:
        """Record that the facility stopped operating."""
        self._closed(effective=self._check(effective, f"facility {self.name}"), actor=actor)

    @event("Connected", topic="tcs.facility.connected")
    def _connected(self, effective: date, actor: str) -> None:
        self.connected_on = self.last_change = as_date(effective)

    @event("Closed", topic="tcs.facility.closed")
    def _closed(self, effective: date, actor: str) -> None:
        self.closed = self.last_change = as_date(effective)
