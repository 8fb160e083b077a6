"""The Dispatch aggregate: one occurrence of one broadcast, fanned out to a resolved device set.

Its id is ``uuid5(broadcast_id, occurrence.isoformat())`` with the occurrence in UTC, so two workers
that fire the same occurrence create the same aggregate and the event store lets exactly one win.
Outcomes are recorded in batches (one event per batch, not per device) as compact rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs
from eventsourcing.domain import event

from tcs_core.domain.base import TcsAggregate, as_uuid
from tcs_core.domain.values import DeliveryOutcome, OutcomeStatus, Priority, as_utc
from tcs_core.errors import InvalidTransition, ValidationError

__all__ = ["RECEIPT_STATUSES", "DeliveryReceipt", "Dispatch", "dispatch_id"]

_FINAL = frozenset({OutcomeStatus.DELIVERED.value, OutcomeStatus.FAILED.value})
# Enum member -> plain str; ``member.value`` is a descriptor call, ~5x slower than this lookup.
_STATUS_TEXT: dict[OutcomeStatus, str] = {s: s.value for s in OutcomeStatus}


#: Statuses a far end's delivery receipt (an SMS delivery report, say) can carry, with their rank:
#: a receipt never replaces one of higher rank (reports arrive out of order), and rank 3 is final.
RECEIPT_STATUSES: Mapping[str, int] = {
    "accepted": 1,  # the network (SMSC) took the message
    "buffered": 2,  # the network holds it (handset off, out of coverage)
    "delivered": 3,  # the handset got it
    "failed": 3,  # undeliverable
    "rejected": 3,  # the network refused it
    "expired": 3,  # validity ran out before delivery
}


def _receipt_status(value: str) -> str:
    value = str(value)
    if value not in RECEIPT_STATUSES:
        raise ValidationError(
            "receipt.status", f"{value!r} is not one of {', '.join(RECEIPT_STATUSES)}"
        )
    return value


def _receipt_at(value: datetime) -> datetime:
    return as_utc(value, "receipt.at")


@attrs.frozen
class DeliveryReceipt:
    """What the far end reported later about one delivery (e.g. an SMS delivery report)."""

    device_id: UUID = attrs.field(converter=as_uuid)
    status: str = attrs.field(converter=_receipt_status)
    at: datetime = attrs.field(converter=_receipt_at)
    remote_id: str = ""
    detail: str = ""


def dispatch_id(broadcast_id: UUID, occurrence: datetime) -> UUID:
    """Deterministic id of the dispatch of ``broadcast_id`` at ``occurrence`` (any zone)."""
    return uuid.uuid5(broadcast_id, as_utc(occurrence, "occurrence").isoformat())


class Dispatch(TcsAggregate):
    """The fan-out of one occurrence; rows are ``[device hex, status, ISO time, reason]``."""

    TOPIC = "tcs.dispatch"

    @staticmethod
    def create_id(broadcast_id: UUID, occurrence: datetime) -> UUID:
        return dispatch_id(broadcast_id, occurrence)

    @event("Created", topic="tcs.dispatch.started")
    def __init__(
        self,
        *,
        broadcast_id: UUID,
        occurrence: datetime,
        priority: Priority,
        device_ids: list[str],
        unmatched: list[str],
        actor: str,
    ) -> None:
        self.broadcast_id = as_uuid(broadcast_id)
        self.occurrence = occurrence
        self.priority = Priority(priority)
        self.device_ids = tuple(device_ids)
        self._members = frozenset(self.device_ids)
        self.unmatched = tuple(unmatched)
        self.outcomes: dict[str, tuple[str, str, str]] = {}
        self.preempted: dict[str, str] = {}
        self.completed_at: datetime | None = None
        self.receipts: dict[str, tuple[str, str, str, str]] = {}

    def _normalise(self) -> None:
        self.priority = Priority(self.priority)
        self.device_ids = tuple(self.device_ids)
        self._members = frozenset(self.device_ids)
        self.unmatched = tuple(self.unmatched)
        self.outcomes = {k: (v[0], v[1], v[2]) for k, v in self.outcomes.items()}
        # A snapshot stores tuples as JSON lists; receipts were added after outcomes (and were
        # missed here until the replay property drove them).
        self.receipts = {
            k: (v[0], v[1], v[2], v[3]) for k, v in getattr(self, "receipts", {}).items()
        }

    @staticmethod
    def start_args(
        broadcast_id: UUID,
        occurrence: datetime,
        priority: Priority,
        device_ids: Iterable[UUID],
        unmatched: Iterable[UUID] = (),
    ) -> dict[str, Any]:
        """Validated keyword arguments for ``Dispatch(...)``."""
        ids = [d.hex for d in device_ids]
        if len(set(ids)) != len(ids):
            raise ValidationError("device_ids", "a device appears twice in the dispatch")
        return {
            "broadcast_id": broadcast_id,
            "occurrence": as_utc(occurrence, "occurrence"),
            "priority": Priority(priority),
            "device_ids": ids,
            "unmatched": sorted(d.hex for d in unmatched),
        }

    # -- commands -----------------------------------------------------------------------------

    def record_outcomes(self, outcomes: Sequence[DeliveryOutcome], actor: str) -> None:
        """Record a batch of outcomes as one event; final outcomes (delivered/failed) are final."""
        keys = [o.device_id.hex for o in outcomes]
        self._check_batch(keys)
        text = _STATUS_TEXT
        rows = [
            [k, text[o.status], o.at.isoformat(), o.reason]
            for k, o in zip(keys, outcomes, strict=True)
        ]
        self._outcomes_recorded(rows=rows, actor=actor)

    def record_batch(
        self,
        device_ids: Sequence[UUID],
        status: OutcomeStatus | str,
        at: datetime,
        actor: str,
        reason: str = "",
    ) -> None:
        """Record one outcome for many devices (the usual shape of a transport's acknowledgements:
        "these devices accepted the item at ``at``") as one event, with the same rules."""
        st = OutcomeStatus(status)
        if st is not OutcomeStatus.DELIVERED and not reason:
            raise ValidationError("reason", "a failed or retryable outcome needs a reason")
        keys = [d.hex for d in device_ids]
        self._check_batch(keys)
        when, text = as_utc(at, "at").isoformat(), st.value
        self._outcomes_recorded(rows=[[k, text, when, reason] for k in keys], actor=actor)

    def _check_batch(self, keys: list[str]) -> None:
        """Every device belongs to the dispatch, appears once, and has no final outcome yet.
        Set operations run in C: the common case costs no Python-level work per device."""
        if self.completed_at is not None:
            raise InvalidTransition(f"dispatch {self.id} is completed")
        if not keys:
            raise ValidationError("outcomes", "a batch needs at least one outcome")
        members = self._members
        if not members.issuperset(keys):
            bad = next(k for k in keys if k not in members)
            raise InvalidTransition(f"device {UUID(bad)} is not part of dispatch {self.id}")
        if len(set(keys)) != len(keys):
            seen: set[str] = set()
            for k in keys:
                if k in seen:
                    raise ValidationError("outcomes", f"device {UUID(k)} appears twice in a batch")
                seen.add(k)
        current = self.outcomes
        again = current.keys() & keys if current else ()
        for k in again:  # devices reported before (retries): usually none
            if current[k][0] in _FINAL:
                raise InvalidTransition(
                    f"device {UUID(k)} already has a final outcome ({current[k][0]}) in "
                    f"dispatch {self.id}; a delivered item is never delivered twice"
                )

    def preempt(self, device_ids: Iterable[UUID], by: UUID, actor: str) -> None:
        """Record that a higher-priority dispatch cut this one off on the given devices."""
        keys = [d.hex for d in device_ids]
        unknown = [k for k in keys if k not in self._members]
        if unknown:
            raise InvalidTransition(f"devices {unknown} are not part of dispatch {self.id}")
        self._preempted(device_ids=keys, by=by, actor=actor)

    def complete(self, at: datetime, actor: str) -> None:
        """Close the dispatch; devices without a final outcome stay counted as undelivered."""
        if self.completed_at is not None:
            raise InvalidTransition(f"dispatch {self.id} is already completed")
        self._completed(at=as_utc(at, "at"), actor=actor)

    def record_receipts(self, receipts: Sequence[DeliveryReceipt], actor: str) -> int:
        """Record delivery receipts as one event; allowed after completion (reports come late).

        A receipt that would not change what is known (a duplicate, or one of lower rank than
        the receipt already held, or anything after a final one) is skipped; returns how many
        were recorded (0: no event)."""
        if not receipts:
            raise ValidationError("receipts", "give at least one receipt")
        rows: dict[str, list[str]] = {}
        for r in receipts:
            key = r.device_id.hex
            if key not in self._members:
                raise InvalidTransition(f"device {r.device_id} is not part of dispatch {self.id}")
            held = rows[key][1] if key in rows else self.receipts.get(key, ("",))[0]
            if held:
                rank, held_rank = RECEIPT_STATUSES[r.status], RECEIPT_STATUSES[held]
                if held_rank == 3 or rank < held_rank or held == r.status:
                    continue
            rows[key] = [key, r.status, r.at.isoformat(), r.remote_id, r.detail]
        if rows:
            self._receipts_recorded(rows=list(rows.values()), actor=actor)
        return len(rows)

    # -- queries ------------------------------------------------------------------------------

    def receipt(self, device_id: UUID) -> DeliveryReceipt | None:
        """The receipt that counts for a device (highest rank, first final), if any."""
        row = self.receipts.get(device_id.hex)
        if row is None:
            return None
        return DeliveryReceipt(device_id, row[0], datetime.fromisoformat(row[1]), row[2], row[3])

    def receipt_counts(self) -> dict[str, int]:
        """Number of devices per receipt status, plus ``none`` (no receipt yet)."""
        out = dict.fromkeys(RECEIPT_STATUSES, 0)
        for row in self.receipts.values():
            out[row[0]] += 1
        out["none"] = len(self.device_ids) - len(self.receipts)
        return out

    def outcome(self, device_id: UUID) -> DeliveryOutcome | None:
        """The latest outcome recorded for a device, if any."""
        row = self.outcomes.get(device_id.hex)
        if row is None:
            return None
        return DeliveryOutcome(device_id, row[0], row[1], row[2])

    def pending(self) -> list[UUID]:
        """Devices with no final outcome yet (what a restart must re-deliver)."""
        return [
            UUID(k)
            for k in self.device_ids
            if k not in self.outcomes or self.outcomes[k][0] not in _FINAL
        ]

    def counts(self) -> dict[str, int]:
        """Number of devices per latest outcome status, plus ``pending``."""
        out = {s.value: 0 for s in OutcomeStatus}
        for status, _, _ in self.outcomes.values():
            out[status] += 1
        out["pending"] = len(self.device_ids) - len(self.outcomes)
        return out

    # -- events -------------------------------------------------------------------------------

    @event("OutcomesRecorded", topic="tcs.dispatch.outcomes_recorded")
    def _outcomes_recorded(self, rows: list[list[str]], actor: str) -> None:
        outcomes = self.outcomes
        for key, status, at, reason in rows:
            outcomes[key] = (status, at, reason)

    @event("Preempted", topic="tcs.dispatch.preempted")
    def _preempted(self, device_ids: list[str], by: UUID, actor: str) -> None:
        by_hex = as_uuid(by).hex
        for k in device_ids:
            self.preempted[k] = by_hex

    @event("ReceiptsRecorded", topic="tcs.dispatch.receipts_recorded")
    def _receipts_recorded(self, rows: list[list[str]], actor: str) -> None:
        for key, status, at, remote_id, detail in rows:
            self.receipts[key] = (status, at, remote_id, detail)

    @event("Completed", topic="tcs.dispatch.completed")
    def _completed(self, at: datetime, actor: str) -> None:
        self.completed_at = at
