"""Citizen feedback (ý kiến phản ánh): received, assigned, answered, closed, with a due date."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid4

from eventsourcing.domain import event

from tcs_core.domain.base import TcsAggregate, as_date, as_uuid, stable_id
from tcs_core.domain.values import FeedbackChannel, FeedbackStatus
from tcs_core.errors import InvalidTransition

__all__ = ["Feedback"]


class Feedback(TcsAggregate):
    """One item of citizen feedback; ``source_ref`` (e.g. an SMS message id) makes intake idempotent."""

    TOPIC = "tcs.feedback"

    @staticmethod
    def create_id(source_ref: str | None) -> UUID:
        return uuid4() if source_ref is None else stable_id("feedback", source_ref)

    @event("Created", topic="tcs.feedback.received")
    def __init__(
        self,
        *,
        channel: FeedbackChannel,
        area_id: UUID | None,
        sender_ref: str,
        text: str,
        received_at: datetime,
        due: date,
        source_ref: str | None,
        actor: str,
    ) -> None:
        self.channel = FeedbackChannel(channel)
        self.area_id = None if area_id is None else as_uuid(area_id)
        self.sender_ref = sender_ref
        self.text = text
        self.received_at = received_at
        self.due = as_date(due)
        self.source_ref = source_ref
        self.status = FeedbackStatus.RECEIVED
        self.assignee: str | None = None
        self.answer: str | None = None
        self.answered_at: datetime | None = None
        self.closed_at: datetime | None = None

    def _normalise(self) -> None:
        self.channel = FeedbackChannel(self.channel)
        self.status = FeedbackStatus(self.status)

    def assign(self, assignee: str, actor: str) -> None:
        """Hand the item to a principal to handle."""
        if self.status in (FeedbackStatus.ANSWERED, FeedbackStatus.CLOSED):
            raise InvalidTransition(f"feedback {self.id} is already {self.status.value}")
        self._assigned(assignee=assignee, actor=actor)

    def respond(self, text: str, at: datetime, actor: str) -> None:
        """Record the answer given to the citizen."""
        if self.status is FeedbackStatus.CLOSED:
            raise InvalidTransition(f"feedback {self.id} is closed")
        self._answered(text=text, at=at, actor=actor)

    def close(self, at: datetime, actor: str) -> None:
        """Close the item (handled)."""
        if self.status is FeedbackStatus.CLOSED:
            raise InvalidTransition(f"feedback {self.id} is already closed")
        self._closed(at=at, actor=actor)

    @event("Assigned", topic="tcs.feedback.assigned")
    def _assigned(self, assignee: str, actor: str) -> None:
        self.assignee = assignee
        self.status = FeedbackStatus.ASSIGNED

    @event("Answered", topic="tcs.feedback.answered")
    def _answered(self, text: str, at: datetime, actor: str) -> None:
        self.answer = text
        self.answered_at = at
        self.status = FeedbackStatus.ANSWERED

    @event("Closed", topic="tcs.feedback.closed")
    def _closed(self, at: datetime, actor: str) -> None:
        self.closed_at = at
        self.status = FeedbackStatus.CLOSED
