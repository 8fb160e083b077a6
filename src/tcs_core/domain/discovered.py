"""Devices found on the network (zeroconf) that wait for an administrator's decision.

Discovery never registers a device by itself: an advertisement is unauthenticated, so what it
says is recorded as a *pending* ``DiscoveredDevice`` and becomes a ``Device`` only when an admin
over the chosen area accepts it (``SourceSystem.accept_discovered``).

``DiscoveredService`` is the validated content of one advertisement (service name, type, address
and TXT records); ``DiscoveredService.from_txt`` builds it from what a zeroconf browser resolved
and says which TXT record is wrong, and why, when it cannot. This module has no network code
(that is ``tcs_core.discovery``), so the application can use it without the zeroconf package.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs
from eventsourcing.domain import event

from tcs_core.domain.base import TcsAggregate, as_uuid, stable_id
from tcs_core.domain.device import _SECRET_NAME
from tcs_core.domain.values import Channel, DeviceKind, as_utc
from tcs_core.errors import InvalidTransition, ValidationError

__all__ = [
    "TXT_VERSION",
    "DiscoveredDevice",
    "DiscoveredService",
    "DiscoveryRecord",
    "DiscoveryStatus",
    "RecordOutcome",
    "discovered_id",
    "normalise_service_type",
]

#: The version of the TXT record layout described in docs/discovery.md (``txtvers=1``).
TXT_VERSION = "1"

# RFC 6763 §7 / RFC 6335: "_name._tcp" or "_name._udp", the name 1-15 letters, digits, hyphens.
_SERVICE_TYPE = re.compile(r"^_[a-z0-9](?:[a-z0-9-]{0,13}[a-z0-9])?\._(?:tcp|udp)\.local\.$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_MAX_ADDRESS = 512
# TXT keys this layout gives a meaning to; any other (non-secret) key is kept as a property.
_KNOWN_KEYS = frozenset({"txtvers", "kind", "channel", "address", "name", "model", "transport"})


def normalise_service_type(value: str) -> str:
    """``_tcs-board._tcp`` or ``_tcs-board._tcp.local.`` → ``_tcs-board._tcp.local.``."""
    if not isinstance(value, str):
        raise ValidationError("service_type", "give a service type such as '_tcs-board._tcp'")
    text = value.strip().lower()
    if not text.endswith("."):
        text += "."
    if not text.endswith(".local."):
        text += "local."
    if not _SERVICE_TYPE.fullmatch(text):
        raise ValidationError(
            "service_type",
            f"{value!r} is not a DNS-SD service type: use '_name._tcp' or '_name._udp' "
            "with a name of 1-15 letters, digits or hyphens (e.g. '_tcs-board._tcp')",
        )
    return text


def discovered_id(service_name: str) -> UUID:
    """Deterministic id: one pending entry per advertised service instance (DNS names ignore
    case), so two browsers that see the same advertisement record it once."""
    return stable_id("discovered", service_name.lower())


class DiscoveryStatus(enum.StrEnum):
    """Where a discovered device stands: waiting, registered, or turned down."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RecordOutcome(enum.StrEnum):
    """What ``record_discovered`` did with an advertisement."""

    NEW = "new"  # a new pending entry
    UPDATED = "updated"  # seen before; what it advertises changed (recorded)
    UNCHANGED = "unchanged"  # seen before, nothing new: nothing recorded
    KNOWN = "known"  # a registered device already has this transport and address


@attrs.frozen
class DiscoveryRecord:
    """The answer of ``record_discovered``."""

    discovered_id: UUID | None
    outcome: RecordOutcome
    device_id: UUID | None = None


def _txt_text(key: str, value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"txt.{key}", "is not UTF-8 text") from None


def _clean(field: str, value: str, max_len: int, *, required: bool = True) -> str:
    text = value.strip()
    if required and not text:
        raise ValidationError(field, "must not be empty")
    if len(text) > max_len:
        raise ValidationError(field, f"is {len(text)} characters long; at most {max_len}")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValidationError(field, "must not contain control characters")
    return text


def _channels(values: Iterable[Any]) -> tuple[Channel, ...]:
    return tuple(sorted({Channel(c) for c in values}))


def _channel_field(values: Iterable[Any]) -> tuple[Channel, ...]:
    try:
        return _channels([values] if isinstance(values, str) else values)
    except ValueError:
        allowed = [c.value for c in Channel]
        raise ValidationError("channels", f"{values!r}: each must be one of {allowed}") from None


def _kind_field(value: Any) -> DeviceKind:
    try:
        return DeviceKind(value)
    except ValueError:
        allowed = [k.value for k in DeviceKind]
        raise ValidationError("kind", f"{value!r} is not one of {allowed}") from None


def _properties(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


def _expand(template: str, host: str, port: int) -> str:
    """The device address from the TXT ``address`` template (``{host}`` and ``{port}``)."""
    names = set(_PLACEHOLDER.findall(template))
    unknown = names - {"host", "port"}
    if unknown:
        raise ValidationError(
            "txt.address", f"unknown placeholder(s) {sorted(unknown)}: use {{host}} and {{port}}"
        )
    if "host" not in names:
        # The address must point at the machine that answered; an advertisement naming some
        # other machine would let anyone on the LAN steer a registration elsewhere.
        raise ValidationError(
            "txt.address", "must contain {host} (the advertised address is used, never another)"
        )
    shown = f"[{host}]" if ":" in host else host
    return template.replace("{host}", shown).replace("{port}", str(port))


@attrs.frozen
class DiscoveredService:
    """One advertised device, validated: what an admin sees before accepting it.

    ``service_name`` is the full DNS-SD instance name (``Bảng tin chợ._tcs-board._tcp.local.``);
    ``address`` is what the device would be registered with; ``properties`` are the TXT records
    this layout does not interpret (sorted key/value pairs, never secrets).
    """

    service_name: str
    service_type: str = attrs.field(converter=normalise_service_type)
    transport: str
    kind: DeviceKind = attrs.field(converter=_kind_field)
    channels: tuple[Channel, ...] = attrs.field(converter=_channel_field)
    address: str
    name: str
    host: str
    port: int
    model: str = ""
    properties: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_properties)

    def __attrs_post_init__(self) -> None:
        _clean("service_name", self.service_name, 255)
        if not self.service_name.lower().endswith("." + self.service_type):
            raise ValidationError(
                "service_name", f"{self.service_name!r} is not an instance of {self.service_type}"
            )
        _clean("transport", self.transport, 64)
        if not self.channels:
            raise ValidationError("txt.channel", "name at least one channel")
        _clean("address", self.address, _MAX_ADDRESS)
        if any(c.isspace() for c in self.address):
            raise ValidationError("address", "must not contain spaces")
        _clean("name", self.name, 200)
        _clean("host", self.host, 64)
        _clean("model", self.model, 64, required=False)
        if not (0 < self.port < 65536):
            raise ValidationError("port", f"{self.port} is not a port number (1-65535)")
        for key, _ in self.properties:
            if _SECRET_NAME.search(key):
                raise ValidationError(f"txt.{key}", _TXT_IS_PUBLIC)

    @property
    def props(self) -> dict[str, str]:
        """The uninterpreted TXT records as a dict."""
        return dict(self.properties)

    @classmethod
    def from_txt(
        cls,
        *,
        service_name: str,
        service_type: str,
        host: str,
        port: int,
        txt: Mapping[Any, bytes | str | None],  # keys bytes (zeroconf) or str
        transport: str | None = None,
        transport_channels: Iterable[Channel] | None = None,
    ) -> DiscoveredService:
        """Read an advertisement's TXT records (layout in docs/discovery.md).

        ``transport`` is the name of the transport that declared ``service_type`` (a TXT
        ``transport`` record must then agree with it); ``transport_channels`` the channels that
        transport serves (the advertised channels must be among them). Raises ValidationError
        naming the TXT record (``txt.kind``, ``txt.channel``...) and the reason."""
        stype = normalise_service_type(service_type)
        records: dict[str, str] = {}
        for raw_key, raw_value in txt.items():
            key = raw_key.decode("ascii", "replace") if isinstance(raw_key, bytes) else raw_key
            key = key.strip().lower()  # RFC 6763 §6.4: keys are case-insensitive
            if not key:
                continue
            if _SECRET_NAME.search(key):
                raise ValidationError(f"txt.{key}", _TXT_IS_PUBLIC)
            records[key] = _txt_text(key, raw_value)
        version = records.get("txtvers", TXT_VERSION)
        if version != TXT_VERSION:
            raise ValidationError(
                "txt.txtvers", f"layout version {version!r} is not supported (this reads 1)"
            )
        advertised = records.get("transport", "").strip()
        if transport is None:
            if not advertised:
                raise ValidationError("txt.transport", "say which transport drives the device")
            transport = advertised
        elif advertised and advertised != transport:
            raise ValidationError(
                "txt.transport",
                f"{advertised!r} does not match {transport!r}, the transport that declared {stype}",
            )
        raw_kind = records.get("kind", "").strip()
        if not raw_kind:
            raise ValidationError("txt.kind", f"missing; one of {[k.value for k in DeviceKind]}")
        try:
            kind = DeviceKind(raw_kind)
        except ValueError:
            raise ValidationError(
                "txt.kind", f"{raw_kind!r} is not one of {[k.value for k in DeviceKind]}"
            ) from None
        raw_channels = [c.strip() for c in records.get("channel", "").split(",") if c.strip()]
        if not raw_channels:
            raise ValidationError(
                "txt.channel",
                f"missing; one or more of {[c.value for c in Channel]}, comma-separated",
            )
        try:
            channels = _channels(raw_channels)
        except ValueError:
            raise ValidationError(
                "txt.channel",
                f"{records['channel']!r}: each must be one of {[c.value for c in Channel]}",
            ) from None
        if transport_channels is not None:
            allowed = set(transport_channels)
            extra = [c.value for c in channels if c not in allowed]
            if extra:
                raise ValidationError(
                    "txt.channel",
                    f"transport {transport!r} does not serve {extra} "
                    f"(it serves {sorted(c.value for c in allowed)})",
                )
        instance = service_name[: -len(stype) - 1] if service_name.endswith(stype) else ""
        name = records.get("name", "").strip() or instance.replace("\\.", ".")
        address = _expand(records.get("address", "{host}:{port}").strip(), host, port)
        try:
            return cls(
                service_name=service_name,
                service_type=stype,
                transport=transport,
                kind=kind,
                channels=channels,
                address=address,
                name=name,
                host=host,
                port=port,
                model=records.get("model", ""),
                properties={k: v for k, v in records.items() if k not in _KNOWN_KEYS},
            )
        except ValidationError as exc:
            # Name the TXT record when the field came from one.
            if exc.field in ("name", "model", "address"):
                raise ValidationError(f"txt.{exc.field}", exc.reason) from None
            raise

    def event_fields(self) -> dict[str, Any]:
        """Plain values for an event (strings, lists, dicts survive any transcoder)."""
        return {
            "service_name": self.service_name,
            "service_type": self.service_type,
            "transport": self.transport,
            "kind": self.kind.value,
            "channels": [c.value for c in self.channels],
            "address": self.address,
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "model": self.model,
            "properties": dict(self.properties),
        }


_TXT_IS_PUBLIC = (
    "TXT records are public and unauthenticated: never advertise a secret (key, password, "
    "token); give it at acceptance as a setting such as key=env:BOARD_KEY"
)


class DiscoveredDevice(TcsAggregate):
    """An advertised device: pending until an admin accepts (registers) or rejects it."""

    TOPIC = "tcs.discovered_device"

    @staticmethod
    def create_id(service_name: str) -> UUID:
        return discovered_id(service_name)

    @event("Created", topic="tcs.device.discovered")
    def __init__(
        self,
        *,
        service_name: str,
        service_type: str,
        transport: str,
        kind: str,
        channels: list[str],
        address: str,
        name: str,
        host: str,
        port: int,
        model: str,
        properties: dict[str, str],
        at: datetime,
        actor: str,
    ) -> None:
        self._set(
            service_name, service_type, transport, kind, channels, address, name, host, port,
            model, properties,
        )  # fmt: skip
        self.discovered_at = at
        self.updated_at = at
        self.status = DiscoveryStatus.PENDING
        self.device_id: UUID | None = None
        self.area_id: UUID | None = None
        self.decided_by = ""
        self.reason = ""

    def _set(
        self,
        service_name: str,
        service_type: str,
        transport: str,
        kind: str,
        channels: list[str],
        address: str,
        name: str,
        host: str,
        port: int,
        model: str,
        properties: dict[str, str],
    ) -> None:
        self.service_name = service_name
        self.service_type = service_type
        self.transport = transport
        self.kind = DeviceKind(kind)
        self.channels = _channels(channels)
        self.address = address
        self.name = name
        self.host = host
        self.port = int(port)
        self.model = model
        self.properties = dict(properties)

    def _normalise(self) -> None:
        self.kind = DeviceKind(self.kind)
        self.channels = _channels(self.channels)
        self.status = DiscoveryStatus(self.status)
        self.device_id = None if self.device_id is None else as_uuid(self.device_id)
        self.area_id = None if self.area_id is None else as_uuid(self.area_id)

    @classmethod
    def record(cls, found: DiscoveredService, at: datetime, actor: str) -> DiscoveredDevice:
        """A new pending entry for ``found``."""
        return cls(**found.event_fields(), at=as_utc(at, "at"), actor=actor)

    def as_service(self) -> DiscoveredService:
        """What the entry currently says, as a value."""
        return DiscoveredService(
            service_name=self.service_name,
            service_type=self.service_type,
            transport=self.transport,
            kind=self.kind,
            channels=self.channels,
            address=self.address,
            name=self.name,
            host=self.host,
            port=self.port,
            model=self.model,
            properties=self.properties,
        )

    def update(self, found: DiscoveredService, at: datetime, actor: str) -> bool:
        """Record a changed advertisement; False (nothing recorded) if nothing changed.

        An accepted entry's device is never touched: a changed address is shown to the admin,
        who reconfigures the device if the change is genuine."""
        if found == self.as_service():
            return False
        self._rediscovered(**found.event_fields(), at=as_utc(at, "at"), actor=actor)
        return True

    def accept(self, device_id: UUID, area_id: UUID, actor: str) -> None:
        """Mark the entry registered as ``device_id`` in ``area_id``."""
        if self.status is DiscoveryStatus.ACCEPTED:
            raise InvalidTransition(f"{self.name} was already accepted as device {self.device_id}")
        self._accepted(device_id=device_id, area_id=area_id, actor=actor)

    def reject(self, reason: str, actor: str) -> bool:
        """Turn the entry down; False if it already was. An accepted one cannot be rejected."""
        if self.status is DiscoveryStatus.ACCEPTED:
            raise InvalidTransition(
                f"{self.name} was accepted as device {self.device_id}; decommission the device "
                "instead"
            )
        if self.status is DiscoveryStatus.REJECTED:
            return False
        self._rejected(reason=reason, actor=actor)
        return True

    @event("Rediscovered", topic="tcs.device.rediscovered")
    def _rediscovered(
        self,
        service_name: str,
        service_type: str,
        transport: str,
        kind: str,
        channels: list[str],
        address: str,
        name: str,
        host: str,
        port: int,
        model: str,
        properties: dict[str, str],
        at: datetime,
        actor: str,
    ) -> None:
        self._set(
            service_name, service_type, transport, kind, channels, address, name, host, port,
            model, properties,
        )  # fmt: skip
        self.updated_at = at

    @event("Accepted", topic="tcs.device.discovery_accepted")
    def _accepted(self, device_id: UUID, area_id: UUID, actor: str) -> None:
        self.status = DiscoveryStatus.ACCEPTED
        self.device_id = as_uuid(device_id)
        self.area_id = as_uuid(area_id)
        self.decided_by = actor

    @event("Rejected", topic="tcs.device.discovery_rejected")
    def _rejected(self, reason: str, actor: str) -> None:
        self.status = DiscoveryStatus.REJECTED
        self.decided_by = actor
        self.reason = reason
