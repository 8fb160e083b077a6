"""Shared machinery of the aggregates: the base class, the snapshot type, deterministic ids."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, BaseAggregate, Snapshot
from eventsourcing.utils import register_topic

__all__ = ["NAMESPACE", "TcsAggregate", "TcsSnapshot", "as_date", "as_uuid", "stable_id"]

# Fixed namespace for every deterministic id tcs-core derives (uuid5). Never change it: ids of
# stored aggregates (areas, principals, dispatches) are derived from it.
NAMESPACE = UUID("6f1d3c52-2b8e-5d8a-9a39-7c0e1b6a4c10")


def stable_id(kind: str, *parts: str) -> UUID:
    """A deterministic id: the same parts always give the same aggregate id."""
    return uuid.uuid5(NAMESPACE, "/".join((kind, *parts)))


def as_uuid(value: UUID | str) -> UUID:
    """Accept a UUID or its string forms (replayed events carry hex strings)."""
    return value if isinstance(value, UUID) else UUID(value)


def as_date(value: date | str) -> date:
    """Accept a date, a datetime (its date part) or an ISO string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value)
    return value


class TcsSnapshot(Snapshot):
    """Snapshot that normalises the restored state (see ``TcsAggregate._normalise``)."""

    TOPIC = "tcs.snapshot"

    def mutate(self, _: None) -> BaseAggregate[UUID]:
        aggregate = super().mutate(_)
        normalise = getattr(aggregate, "_normalise", None)
        if normalise is not None:
            normalise()
        return aggregate


register_topic(TcsSnapshot.TOPIC, TcsSnapshot)


class TcsAggregate(Aggregate):
    """Base of every tcs-core aggregate.

    ``_normalise`` runs after an aggregate is restored from a snapshot: JSON returns enum members as
    plain strings and tuples as lists, and the state must look exactly as it did live.
    """

    Snapshot = TcsSnapshot

    def _normalise(self) -> None:
        """Restore value types after a snapshot; subclasses override."""


def norm_str_tuple(values: Any) -> tuple[str, ...]:
    """Lists from JSON back to tuples of strings."""
    return tuple(str(x) for x in values)
