"""Principals: people and systems that issue commands, with roles scoped to area subtrees."""

from __future__ import annotations

import re
from uuid import UUID

from eventsourcing.domain import event

from tcs_core.domain.base import TcsAggregate, stable_id
from tcs_core.domain.values import Permission, RoleGrant
from tcs_core.errors import InvalidTransition, ValidationError

__all__ = ["Principal", "principal_id", "validate_username"]

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")


def validate_username(name: str) -> str:
    """Usernames are lowercase ASCII (2-64 chars: letters, digits, . _ @ -)."""
    if not isinstance(name, str) or not _USERNAME.fullmatch(name):
        raise ValidationError(
            "username", "use 2-64 lowercase letters, digits or . _ @ - (e.g. 'op.iapia')"
        )
    if name == "system" or name.startswith("system."):
        # Reserved: events by the library's own processes name the actor "system".
        raise ValidationError("username", f"{name!r} is reserved for the system")
    return name


def principal_id(username: str) -> UUID:
    """Deterministic id: one principal per username."""
    return stable_id("principal", username)


class Principal(TcsAggregate):
    """A user or system account; actor names recorded on events are usernames."""

    TOPIC = "tcs.principal"

    @staticmethod
    def create_id(username: str) -> UUID:
        return principal_id(username)

    @event("Created", topic="tcs.principal.created")
    def __init__(
        self,
        *,
        username: str,
        display_name: str,
        grants: list[RoleGrant],
        permissions: list[Permission],
        actor: str,
    ) -> None:
        self.username = username
        self.display_name = display_name
        self.grants = tuple(grants)
        self.permissions = frozenset(Permission(p) for p in permissions)
        self.disabled = False

    def _normalise(self) -> None:
        self.grants = tuple(self.grants)
        self.permissions = frozenset(Permission(p) for p in self.permissions)

    def _check_enabled(self) -> None:
        if self.disabled:
            raise InvalidTransition(f"principal {self.username} is disabled")

    def grant(self, grant: RoleGrant, actor: str) -> None:
        """Add a role over an area subtree."""
        self._check_enabled()
        if grant in self.grants:
            raise InvalidTransition(f"{self.username} already holds {grant.role.value} there")
        self._granted(grant=grant, actor=actor)

    def revoke(self, grant: RoleGrant, actor: str) -> None:
        """Remove a role grant."""
        if grant not in self.grants:
            raise InvalidTransition(f"{self.username} does not hold that grant")
        self._revoked(grant=grant, actor=actor)

    def allow(self, permission: Permission, actor: str) -> None:
        """Give a special permission (emergency, sms_sender)."""
        self._check_enabled()
        permission = Permission(permission)
        if permission in self.permissions:
            raise InvalidTransition(f"{self.username} already has {permission.value}")
        self._allowed(permission=permission, actor=actor)

    def disallow(self, permission: Permission, actor: str) -> None:
        """Withdraw a special permission."""
        permission = Permission(permission)
        if permission not in self.permissions:
            raise InvalidTransition(f"{self.username} does not have {permission.value}")
        self._disallowed(permission=permission, actor=actor)

    def disable(self, reason: str, actor: str) -> None:
        """Disable the account; its past events keep naming it."""
        self._check_enabled()
        self._disabled(reason=reason, actor=actor)

    @event("Granted", topic="tcs.principal.granted")
    def _granted(self, grant: RoleGrant, actor: str) -> None:
        self.grants = (*self.grants, grant)

    @event("Revoked", topic="tcs.principal.revoked")
    def _revoked(self, grant: RoleGrant, actor: str) -> None:
        self.grants = tuple(g for g in self.grants if g != grant)

    @event("Allowed", topic="tcs.principal.allowed")
    def _allowed(self, permission: Permission, actor: str) -> None:
        self.permissions = self.permissions | {Permission(permission)}

    @event("Disallowed", topic="tcs.principal.disallowed")
    def _disallowed(self, permission: Permission, actor: str) -> None:
        self.permissions = self.permissions - {Permission(permission)}

    @event("Disabled", topic="tcs.principal.disabled")
    def _disabled(self, reason: str, actor: str) -> None:
        self.disabled = True
