"""The Device aggregate (an endpoint the scheduler drives) and the in-memory liveness tracker."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from tcs_core.domain.base import TcsAggregate, as_uuid, norm_str_tuple
from tcs_core.domain.values import Channel, DeviceKind, DeviceStatus, as_utc
from tcs_core.errors import InvalidTransition, ValidationError

__all__ = ["Device", "LivenessTracker", "validate_settings"]

# Setting names that hold credentials. Their values must be references ("env:NAME") so that no
# secret is ever written into an event, a snapshot or a log line.
_SECRET_NAME = re.compile(
    r"(?:^|[_.-])(pass(word|wd|phrase)?|secret|token|(api|auth|private|access|secret)?_?key"
    r"|credentials?|pin)(?:$|[_.-])",
    re.IGNORECASE,
)
_ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")


def validate_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """Check device settings: string values, and secrets only as ``env:VARNAME`` references."""
    out: dict[str, str] = {}
    for name, value in settings.items():
        if not isinstance(name, str) or not name:
            raise ValidationError("settings", f"setting names must be non-empty strings: {name!r}")
        if not isinstance(value, str | int | float | bool):
            raise ValidationError(f"settings.{name}", "values must be strings, numbers or booleans")
        text = str(value)
        if _SECRET_NAME.search(name) and not _ENV_REF.fullmatch(text):
            raise ValidationError(
                f"settings.{name}",
                "looks like a secret: give a reference such as 'env:SPEAKER_PASSWORD' and put "
                "the value in that environment variable",
            )
        out[name] = text
    return out


class Device(TcsAggregate):
    """A speaker, board, gateway or other endpoint, attached to one area."""

    TOPIC = "tcs.device"

    @event("Created", topic="tcs.device.registered")
    def __init__(
        self,
        *,
        name: str,
        kind: DeviceKind,
        area_id: UUID,
        transport: str,
        address: str,
        settings: dict[str, str],
        channels: list[Channel],
        groups: list[str],
        actor: str,
    ) -> None:
        self.name = name
        self.kind = DeviceKind(kind)
        self.area_id = as_uuid(area_id)
        self.transport = transport
        self.address = address
        self.settings = dict(settings)
        self.channels = tuple(Channel(c) for c in channels)
        self.groups = norm_str_tuple(groups)
        self.status = DeviceStatus.UNKNOWN
        self.status_reason = ""
        self.status_since: datetime | None = None
        self.decommissioned = False

    def _normalise(self) -> None:
        self.kind = DeviceKind(self.kind)
        self.channels = tuple(Channel(c) for c in self.channels)
        self.groups = norm_str_tuple(self.groups)
        self.status = DeviceStatus(self.status)
        self.area_id = as_uuid(self.area_id)

    def _check_active(self) -> None:
        if self.decommissioned:
            raise InvalidTransition(f"device {self.name} ({self.id}) is decommissioned")

    def configure(
        self,
        *,
        address: str,
        settings: Mapping[str, Any],
        channels: Iterable[Channel],
        groups: Iterable[str],
        actor: str,
    ) -> None:
        """Replace the device's address, settings, channels and groups."""
        self._check_active()
        self._configured(
            address=address,
            settings=validate_settings(settings),
            channels=sorted(Channel(c) for c in channels),
            groups=sorted(set(groups)),
            actor=actor,
        )

    def move(self, area_id: UUID, actor: str) -> None:
        """Attach the device to another area."""
        self._check_active()
        self._moved(area_id=area_id, actor=actor)

    def set_status(self, status: DeviceStatus, reason: str, at: datetime, actor: str) -> bool:
        """Record a status transition; returns False (and records nothing) if unchanged."""
        self._check_active()
        status = DeviceStatus(status)
        if status is self.status and reason == self.status_reason:
            return False
        self._status_changed(status=status, reason=reason, at=as_utc(at, "at"), actor=actor)
        return True

    def decommission(self, reason: str, actor: str) -> None:
        """Take the device out of service for good."""
        self._check_active()
        self._decommissioned(reason=reason, actor=actor)

    @event("Configured", topic="tcs.device.configured")
    def _configured(
        self,
        address: str,
        settings: dict[str, str],
        channels: list[Channel],
        groups: list[str],
        actor: str,
    ) -> None:
        self.address = address
        self.settings = dict(settings)
        self.channels = tuple(Channel(c) for c in channels)
        self.groups = norm_str_tuple(groups)

    @event("Moved", topic="tcs.device.moved")
    def _moved(self, area_id: UUID, actor: str) -> None:
        self.area_id = as_uuid(area_id)

    @event("StatusChanged", topic="tcs.device.status_changed")
    def _status_changed(self, status: DeviceStatus, reason: str, at: datetime, actor: str) -> None:
        self.status = DeviceStatus(status)
        self.status_reason = reason
        self.status_since = at

    @event("Decommissioned", topic="tcs.device.decommissioned")
    def _decommissioned(self, reason: str, actor: str) -> None:
        self.decommissioned = True
        self.status_reason = reason


TransitionSink = Callable[[UUID, DeviceStatus, str, datetime], None]


class LivenessTracker:
    """Turns heartbeats into online/offline transitions; heartbeats themselves are never events.

    Keeps the last-seen instant of each device in memory. ``heartbeat`` reports a transition to
    online at once; ``sweep(now)`` reports devices unseen for longer than ``timeout`` as offline.
    Transitions go to ``on_transition`` (the application records them as events).
    """

    def __init__(self, timeout: timedelta, on_transition: TransitionSink) -> None:
        if timeout <= timedelta(0):
            raise ValidationError("timeout", "must be positive")
        self.timeout = timeout
        self._on_transition = on_transition
        self._last_seen: dict[UUID, datetime] = {}
        self._online: set[UUID] = set()
        self._lock = threading.Lock()

    def heartbeat(self, device_id: UUID, at: datetime) -> None:
        """Note that the device was seen at ``at``."""
        at = as_utc(at, "at")
        with self._lock:
            previous = self._last_seen.get(device_id)
            if previous is None or at > previous:
                self._last_seen[device_id] = at
            became_online = device_id not in self._online
            self._online.add(device_id)
        if became_online:
            self._on_transition(device_id, DeviceStatus.ONLINE, "heartbeat", at)

    def sweep(self, now: datetime) -> list[UUID]:
        """Report every online device unseen for longer than the timeout as offline."""
        now = as_utc(now, "now")
        with self._lock:
            gone = [d for d in self._online if now - self._last_seen[d] > self.timeout]
            for d in gone:
                self._online.discard(d)
        for d in gone:
            last = self._last_seen[d].isoformat()
            self._on_transition(d, DeviceStatus.OFFLINE, f"no heartbeat since {last}", now)
        return gone

    def last_seen(self, device_id: UUID) -> datetime | None:
        """When the device was last heard from, if ever (since this process started)."""
        return self._last_seen.get(device_id)
