"""The transport plugin contract: everything a device family needs to plug into the engine.

A transport is a plain object handed to the engine (explicit construction). For one device at a
time it can ``deliver`` a content variant, ``preempt`` what the device plays, and ``probe`` its
health. Outcomes are values, never exceptions: the engine turns an exception escaping a transport
into a ``failed`` outcome, but a well-behaved transport never lets one escape.

Every delivery carries an idempotency key (dispatch id + device id), so a retry after a crash can
be recognised by the far end or by the transport.

The entry-point group ``tcs_core.transports`` maps names to factories for the CLI and config files
only; the engine itself takes transport objects.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import attrs

from tcs_core.domain.values import (
    Channel,
    ContentVariant,
    DeviceKind,
    OutcomeStatus,
    Preemption,
    Priority,
)
from tcs_core.errors import NotFound, ValidationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Capability",
    "DeliveryContext",
    "DeviceTarget",
    "Health",
    "Limits",
    "Mode",
    "Outcome",
    "Transport",
    "TransportRegistry",
    "delivery_key",
    "load_transport_factory",
    "resolve_secret",
]

ENTRY_POINT_GROUP = "tcs_core.transports"


class Mode(enum.StrEnum):
    """``live``: the engine calls the device at the instant. ``ahead``: the device gets upcoming
    items within a horizon, plays them itself and reports what it played."""

    LIVE = "live"
    AHEAD = "ahead"


class Capability(enum.StrEnum):
    """What a transport can carry."""

    AUDIO = "audio"
    LIVE = "live"
    TEXT = "text"
    IMAGE = "image"
    SMS = "sms"


@attrs.frozen
class Limits:
    """Limits of a transport. The engine enforces ``concurrency`` (a semaphore per transport) and
    ``timeout_s`` (per call); ``rate_per_s`` is the far end's rate, which the transport honours
    itself (pacing, or ``retryable`` with ``retry_after_s``). Waiting for a slot counts against
    ``timeout_s``."""

    concurrency: int = 100
    rate_per_s: float | None = None
    timeout_s: float = 10.0

    def __attrs_post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValidationError("limits.concurrency", "must be at least 1")
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise ValidationError("limits.rate_per_s", "must be positive")
        if self.timeout_s <= 0:
            raise ValidationError("limits.timeout_s", "must be positive")


@attrs.frozen
class DeviceTarget:
    """What a transport is told about a device (secrets stay ``env:NAME`` references)."""

    device_id: UUID
    name: str
    kind: DeviceKind
    address: str
    settings: Mapping[str, str] = attrs.field(factory=dict)
    channels: tuple[Channel, ...] = ()


@attrs.frozen
class DeliveryContext:
    """Why and how urgently an item goes to a device."""

    dispatch_id: UUID
    broadcast_id: UUID
    occurrence: datetime
    priority: Priority
    preemption: Preemption
    duration_s: float
    deadline: datetime
    attempt: int = 1


@attrs.frozen
class Outcome:
    """The result of one delivery attempt to one device."""

    status: OutcomeStatus = attrs.field(converter=OutcomeStatus)
    reason: str = ""
    retry_after_s: float | None = None
    remote_id: str | None = None

    @classmethod
    def delivered(cls, remote_id: str | None = None, reason: str = "") -> Outcome:
        """The device accepted the item."""
        return cls(OutcomeStatus.DELIVERED, reason, None, remote_id)

    @classmethod
    def failed(cls, reason: str) -> Outcome:
        """Final failure; ``reason`` must let a technician act."""
        return cls(OutcomeStatus.FAILED, reason or "failed (no reason given)")

    @classmethod
    def retryable(cls, reason: str, retry_after_s: float | None = None) -> Outcome:
        """Temporary failure; the engine retries with capped backoff within the item's validity."""
        return cls(OutcomeStatus.RETRYABLE, reason or "temporary failure", retry_after_s)


@attrs.frozen
class Health:
    """A device's health as the transport sees it."""

    ok: bool
    detail: str = ""
    at: datetime | None = None


@runtime_checkable
class Transport(Protocol):
    """What the engine needs of a device family. All methods are coroutines except the data."""

    name: str
    channels: frozenset[Channel]
    capabilities: frozenset[Capability]
    mode: Mode
    limits: Limits

    async def open(self) -> None:
        """Acquire sockets, sessions and the like."""

    async def close(self) -> None:
        """Release everything ``open`` acquired."""

    async def deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        """Start the item on the device (or hand it over); never raise."""
        ...

    async def preempt(self, device: DeviceTarget) -> Outcome:
        """Stop whatever the device plays now (delivered: stopped or nothing was playing)."""
        ...

    async def probe(self, device: DeviceTarget) -> Health:
        """Check the device's health."""
        ...


def delivery_key(dispatch_id: UUID, device_id: UUID) -> str:
    """The idempotency key of one delivery: the same on every retry and after a restart."""
    return f"{dispatch_id.hex}.{device_id.hex}"


def resolve_secret(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Resolve an ``env:NAME`` setting from the environment; a clear error if it is unset."""
    if not value.startswith("env:"):
        return value
    env = os.environ if environ is None else environ
    name = value[4:]
    if name not in env:
        raise ValidationError("settings", f"environment variable {name} is not set")
    return env[name]


class TransportRegistry:
    """Transports by name, as handed to the engine."""

    def __init__(self, transports: Iterable[Transport] = ()) -> None:
        self._by_name: dict[str, Transport] = {}
        for t in transports:
            self.add(t)

    def add(self, transport: Transport) -> None:
        """Register a transport object under its ``name``."""
        if not isinstance(transport, Transport):
            raise ValidationError("transport", f"{transport!r} does not implement Transport")
        if transport.name in self._by_name:
            raise ValidationError("transport", f"a transport named {transport.name!r} exists")
        self._by_name[transport.name] = transport

    def get(self, name: str) -> Transport | None:
        """The transport with that name, if registered."""
        return self._by_name.get(name)

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)


def load_transport_factory(name: str) -> Any:
    """The factory registered under ``name`` in the ``tcs_core.transports`` entry-point group."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise NotFound(
        f"no transport named {name!r} is installed (known: {', '.join(known) or 'none'})"
    )
