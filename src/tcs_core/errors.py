"""Typed errors raised by tcs-core commands.

Every rejection is raised *before* any event is recorded, so a rejected command leaves no trace in
the event store. Messages are written for the person who issued the command: they say what was
wrong and, where possible, what to do instead.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "DispatchExists",
    "InvalidTransition",
    "NotFound",
    "PermissionDenied",
    "TcsError",
    "UnknownArea",
    "ValidationError",
]


class TcsError(Exception):
    """Base class of every error tcs-core raises on purpose."""


class ValidationError(TcsError, ValueError):
    """A field of a command or a value type is malformed."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class PermissionDenied(TcsError):
    """The actor lacks the role, scope or special permission the command needs."""


class InvalidTransition(TcsError):
    """The command is not allowed in the aggregate's current state."""


class NotFound(TcsError, LookupError):
    """No aggregate answers to the given identifier."""


class UnknownArea(NotFound):
    """No area holds the given code at the given date."""


class AlreadyExists(TcsError):
    """An aggregate with the same identity (code, name, deterministic id) already exists."""


class DispatchExists(AlreadyExists):
    """This occurrence of the broadcast was already dispatched (by this or another worker)."""
