"""The Broadcast aggregate: content per channel, targets, schedule, and its approval lifecycle.

Rules that need other aggregates (approver's scope, permissions) are checked by the application
before it calls these methods; the aggregate itself guards its own lifecycle and the
"approver is not the author" rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from tcs_core.domain.base import TcsAggregate, as_uuid
from tcs_core.domain.values import (
    BroadcastStatus,
    Category,
    Channel,
    ContentVariant,
    Preemption,
    Priority,
    ScheduleSpec,
    Targets,
    _content_map,
    as_utc,
)
from tcs_core.errors import InvalidTransition, PermissionDenied, ValidationError

__all__ = ["TRANSITIONS", "Broadcast", "check_content"]

S = BroadcastStatus
# Which commands each state allows. Anything else is an InvalidTransition.
TRANSITIONS: dict[BroadcastStatus, frozenset[str]] = {
    S.DRAFTED: frozenset({"revise", "submit", "cancel"}),
    S.SUBMITTED: frozenset({"approve", "reject", "cancel"}),
    S.REJECTED: frozenset({"revise", "cancel"}),
    S.APPROVED: frozenset({"schedule", "cancel", "expire"}),
    S.SCHEDULED: frozenset({"cancel", "expire"}),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}


def check_content(
    content: Mapping[Any, ContentVariant], targets: Targets
) -> dict[Channel, ContentVariant]:
    """Every targeted channel needs a content variant for it; no variant without its channel."""
    variants = _content_map(content)
    missing = [c.value for c in targets.channels if c not in variants]
    if missing:
        raise ValidationError(
            "content", f"no content for targeted channel(s): {', '.join(missing)}"
        )
    extra = [c.value for c in variants if c not in targets.channels]
    if extra:
        raise ValidationError("content", f"content for untargeted channel(s): {', '.join(extra)}")
    return variants


def _check_title(title: str) -> str:
    if not title or not title.strip() or len(title) > 300:
        raise ValidationError("title", "must be 1-300 characters")
    return title.strip()


class Broadcast(TcsAggregate):
    """A bulletin to be aired: drafted → submitted → approved | rejected → scheduled → ..."""

    TOPIC = "tcs.broadcast"

    @event("Created", topic="tcs.broadcast.drafted")
    def __init__(
        self,
        *,
        title: str,
        category: Category,
        priority: Priority,
        content: dict[Channel, ContentVariant],
        targets: Targets,
        target_area_ids: list[UUID],
        schedule: ScheduleSpec,
        preemption: Preemption,
        actor: str,
    ) -> None:
        self._apply_fields(
            title, category, priority, content, targets, target_area_ids, schedule, preemption
        )
        self.author = actor
        # Everyone who wrote the content: none of them may approve it (four-eyes rule).
        self.editors: tuple[str, ...] = (actor,)
        self.status = BroadcastStatus.DRAFTED
        self.submitted_by: str | None = None
        self.approved_by: str | None = None
        self.decided_reason: str | None = None
        self.scheduled_at: datetime | None = None

    def _apply_fields(
        self,
        title: str,
        category: Any,
        priority: Any,
        content: Mapping[Any, ContentVariant],
        targets: Targets,
        target_area_ids: list[Any],
        schedule: ScheduleSpec,
        preemption: Preemption,
    ) -> None:
        self.title = title
        self.category = Category(category)
        self.priority = Priority(priority)
        self.content = _content_map(content)
        self.targets = targets
        self.target_area_ids = tuple(as_uuid(x) for x in target_area_ids)
        self.schedule = schedule
        self.preemption = preemption

    def _normalise(self) -> None:
        self.category = Category(self.category)
        self.priority = Priority(self.priority)
        self.content = _content_map(self.content)
        self.target_area_ids = tuple(as_uuid(x) for x in self.target_area_ids)
        self.status = BroadcastStatus(self.status)
        self.editors = tuple(self.editors)

    @staticmethod
    def check_title(title: str) -> str:
        """Titles are 1-300 characters."""
        return _check_title(title)

    def _allow(self, command: str) -> None:
        if command not in TRANSITIONS[self.status]:
            allowed = ", ".join(sorted(TRANSITIONS[self.status])) or "nothing (final state)"
            raise InvalidTransition(
                f"cannot {command} broadcast {self.id} ({self.title!r}): it is "
                f"{self.status.value}; allowed now: {allowed}"
            )

    # -- commands -----------------------------------------------------------------------------

    def revise(
        self,
        *,
        title: str,
        category: Category,
        priority: Priority,
        content: Mapping[Any, ContentVariant],
        targets: Targets,
        target_area_ids: list[UUID],
        schedule: ScheduleSpec,
        preemption: Preemption,
        actor: str,
    ) -> None:
        """Replace the draft's fields; a rejected broadcast goes back to drafted."""
        self._allow("revise")
        self._revised(
            title=_check_title(title),
            category=Category(category),
            priority=Priority(priority),
            content=check_content(content, targets),
            targets=targets,
            target_area_ids=list(target_area_ids),
            schedule=schedule,
            preemption=preemption,
            actor=actor,
        )

    def submit(self, actor: str) -> None:
        """Send the draft for approval."""
        self._allow("submit")
        self._submitted(actor=actor)

    def approve(self, actor: str) -> None:
        """Approve; the approver may not be the author (four-eyes rule)."""
        self._allow("approve")
        if actor in self.editors:
            what = "drafted" if actor == self.author else "revised"
            raise PermissionDenied(
                f"{actor} {what} broadcast {self.title!r} and cannot approve it: "
                "a second person with approver rights over every target area must approve"
            )
        self._approved(actor=actor)

    def reject(self, reason: str, actor: str) -> None:
        """Send back with a reason."""
        self._allow("reject")
        if not reason or not reason.strip():
            raise ValidationError("reason", "say why the broadcast is rejected")
        self._rejected(reason=reason.strip(), actor=actor)

    def mark_scheduled(self, at: datetime, actor: str) -> None:
        """The scheduler took the approved broadcast at ``at`` (on the scheduler's clock).

        Occurrences from ``at`` minus the misfire grace on are the scheduler's to fire; the
        instant survives restarts, so occurrences missed while it was down are recognised.
        """
        self._allow("schedule")
        self._scheduled(at=as_utc(at, "at"), actor=actor)

    def cancel(self, reason: str, actor: str) -> None:
        """Withdraw the broadcast; no further occurrence is dispatched."""
        self._allow("cancel")
        self._cancelled(reason=reason, actor=actor)

    def expire(self, actor: str) -> None:
        """Mark the broadcast as past its validity."""
        self._allow("expire")
        self._expired(actor=actor)

    @property
    def is_live(self) -> bool:
        """Approved or scheduled: the only states in which occurrences are dispatched."""
        return self.status in (BroadcastStatus.APPROVED, BroadcastStatus.SCHEDULED)

    # -- events -------------------------------------------------------------------------------

    @event("Revised", topic="tcs.broadcast.revised")
    def _revised(
        self,
        title: str,
        category: Category,
        priority: Priority,
        content: dict[Channel, ContentVariant],
        targets: Targets,
        target_area_ids: list[UUID],
        schedule: ScheduleSpec,
        preemption: Preemption,
        actor: str,
    ) -> None:
        self._apply_fields(
            title, category, priority, content, targets, target_area_ids, schedule, preemption
        )
        self.status = BroadcastStatus.DRAFTED
        self.decided_reason = None
        if actor not in self.editors:
            self.editors = (*self.editors, actor)

    @event("Submitted", topic="tcs.broadcast.submitted")
    def _submitted(self, actor: str) -> None:
        self.status = BroadcastStatus.SUBMITTED
        self.submitted_by = actor

    @event("Approved", topic="tcs.broadcast.approved")
    def _approved(self, actor: str) -> None:
        self.status = BroadcastStatus.APPROVED
        self.approved_by = actor

    @event("Rejected", topic="tcs.broadcast.rejected")
    def _rejected(self, reason: str, actor: str) -> None:
        self.status = BroadcastStatus.REJECTED
        self.decided_reason = reason

    @event("Scheduled", topic="tcs.broadcast.scheduled")
    def _scheduled(self, at: datetime, actor: str) -> None:
        self.status = BroadcastStatus.SCHEDULED
        self.scheduled_at = at

    @event("Cancelled", topic="tcs.broadcast.cancelled")
    def _cancelled(self, reason: str, actor: str) -> None:
        self.status = BroadcastStatus.CANCELLED
        self.decided_reason = reason

    @event("Expired", topic="tcs.broadcast.expired")
    def _expired(self, actor: str) -> None:
        self.status = BroadcastStatus.EXPIRED
