"""In-memory read models, kept current from the events the application records.

Each projection declares the event topics it reads. On start the application replays only those
topics from the notification log (so a store full of dispatch outcomes does not slow the area index
down); afterwards every saved event is applied as soon as its transaction commits.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any
from uuid import UUID

import attrs
import pytz

from tcs_core.domain.base import as_date, as_uuid
from tcs_core.domain.values import (
    DEFAULT_ZONE,
    AreaKind,
    Channel,
    DeviceKind,
    DeviceStatus,
    Permission,
    Role,
    RoleGrant,
)
from tcs_core.errors import UnknownArea

__all__ = [
    "AreaIndex",
    "AreaVersion",
    "BroadcastIndex",
    "BroadcastView",
    "DeviceIndex",
    "DeviceView",
    "DiscoveredView",
    "DiscoveryIndex",
    "DispatchIndex",
    "PrincipalIndex",
    "PrincipalView",
    "Projection",
    "local_date",
]


def local_date(at: date | datetime, zone: str = DEFAULT_ZONE) -> date:
    """The calendar date of ``at`` in ``zone`` (effective dates are local calendar dates)."""
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("datetime must carry a time zone")
        return at.astimezone(pytz.timezone(zone)).date()
    return at


class Projection:
    """Base of the read models: apply events by topic."""

    topics: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changes = 0  # bumped on every applied event: lets readers cache derived answers
        self._handlers = {t: getattr(self, "on_" + t.rsplit(".", 1)[1]) for t in self.topics}

    def apply(self, topic: str, event: Any) -> None:
        """Apply one domain event whose stored topic is ``topic`` (others are ignored)."""
        handler = self._handlers.get(topic)
        if handler is not None:
            with self.lock:
                handler(event)
                self.changes += 1

    # Checkpoints (tcs_core.checkpoints) pickle the state: everything but the lock and handlers.
    def __getstate__(self) -> dict[str, Any]:
        with self.lock:
            return {k: v for k, v in self.__dict__.items() if k not in ("lock", "_handlers")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()
        self._handlers = {t: getattr(self, "on_" + t.rsplit(".", 1)[1]) for t in self.topics}

    def restore(self, other: Projection) -> None:
        """Take ``other``'s state in place (a checkpoint loaded into this live object)."""
        if type(other) is not type(self):
            raise TypeError(f"cannot restore a {type(self).__name__} from {type(other).__name__}")
        with self.lock:
            self.__dict__.update(other.__getstate__())


# ----------------------------------------------------------------------------------------------
# Areas
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class AreaVersion:
    """What an area was over ``[valid_from, valid_to)`` (``valid_to`` None: still so)."""

    area_id: UUID
    code: str
    name: str
    kind: AreaKind
    parent_id: UUID | None
    valid_from: date
    valid_to: date | None

    def valid_at(self, day: date) -> bool:
        """True if this version describes the area on ``day``."""
        return self.valid_from <= day and (self.valid_to is None or day < self.valid_to)


class AreaIndex(Projection):
    """The area structure through time: code lookups, subtrees and ancestors at any date."""

    topics = (
        "tcs.area.created",
        "tcs.area.renamed",
        "tcs.area.moved",
        "tcs.area.merged_into",
        "tcs.area.split_into",
        "tcs.area.dissolved",
    )

    def __init__(self, zone: str = DEFAULT_ZONE) -> None:
        super().__init__()
        self.zone = zone
        self._versions: dict[UUID, list[AreaVersion]] = {}
        self._by_code: dict[str, list[UUID]] = defaultdict(list)
        self._children: dict[UUID | None, set[UUID]] = defaultdict(set)
        self._successors: dict[UUID, tuple[UUID, ...]] = {}
        self._ended_on: dict[UUID, date] = {}

    # -- event handlers ------------------------------------------------------------------------

    def on_created(self, e: Any) -> None:
        aid = e.originator_id
        parent = None if e.parent_id is None else as_uuid(e.parent_id)
        v = AreaVersion(aid, e.code, e.name, AreaKind(e.kind), parent, as_date(e.effective), None)
        self._versions[aid] = [v]
        self._by_code[e.code].append(aid)
        self._children[parent].add(aid)

    def _change(self, aid: UUID, effective: date, **changes: Any) -> None:
        versions = self._versions[aid]
        current = versions[-1]
        if current.valid_from == effective:
            versions[-1] = attrs.evolve(current, **changes)
        else:
            versions[-1] = attrs.evolve(current, valid_to=effective)
            versions.append(attrs.evolve(current, valid_from=effective, **changes))

    def on_renamed(self, e: Any) -> None:
        self._change(e.originator_id, as_date(e.effective), name=e.name)

    def on_moved(self, e: Any) -> None:
        parent = None if e.parent_id is None else as_uuid(e.parent_id)
        self._change(e.originator_id, as_date(e.effective), parent_id=parent)
        self._children[parent].add(e.originator_id)

    def _end(self, aid: UUID, effective: date, successors: Iterable[Any]) -> None:
        versions = self._versions[aid]
        if versions[-1].valid_from == effective:
            versions.pop()  # the area existed for no full day in this shape
            if versions:
                versions[-1] = attrs.evolve(versions[-1], valid_to=effective)
        else:
            versions[-1] = attrs.evolve(versions[-1], valid_to=effective)
        self._successors[aid] = tuple(as_uuid(s) for s in successors)
        self._ended_on[aid] = effective

    def on_merged_into(self, e: Any) -> None:
        self._end(e.originator_id, as_date(e.effective), (e.target_id,))

    def on_split_into(self, e: Any) -> None:
        self._end(e.originator_id, as_date(e.effective), e.target_ids)

    def on_dissolved(self, e: Any) -> None:
        self._end(e.originator_id, as_date(e.effective), ())

    # -- queries -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._versions)

    def day(self, at: date | datetime) -> date:
        """The local date used for structure lookups at ``at``."""
        return local_date(at, self.zone)

    def version_at(self, area_id: UUID, at: date | datetime) -> AreaVersion | None:
        """The area as it was on ``at``, or None if it did not exist then."""
        day = self.day(at)
        for v in reversed(self._versions.get(area_id, ())):
            if v.valid_at(day):
                return v
        return None

    def history(self, area_id: UUID) -> tuple[AreaVersion, ...]:
        """Every version of the area, oldest first."""
        return tuple(self._versions.get(area_id, ()))

    def exists(self, area_id: UUID) -> bool:
        """True if the area was ever created."""
        return area_id in self._versions

    def resolve(self, code: str, at: date | datetime) -> AreaVersion:
        """The area that held ``code`` on ``at``; UnknownArea says when the code was valid."""
        day = self.day(at)
        with self.lock:
            for aid in reversed(self._by_code.get(code, ())):
                v = self.version_at(aid, day)
                if v is not None and v.code == code:
                    return v
            spans = [
                f"{v.name} {v.valid_from.isoformat()}–{v.valid_to.isoformat() if v.valid_to else ''}"
                for aid in self._by_code.get(code, ())
                for v in self._versions[aid][:1] + self._versions[aid][-1:]
            ]
        hint = f"; the code was held by: {'; '.join(dict.fromkeys(spans))}" if spans else ""
        raise UnknownArea(f"no area has code {code!r} on {day.isoformat()}{hint}")

    def children(self, area_id: UUID | None, at: date | datetime) -> list[AreaVersion]:
        """Direct children of ``area_id`` on ``at`` (None: the roots), sorted by code."""
        day = self.day(at)
        out = []
        for cid in self._children.get(area_id, ()):
            v = self.version_at(cid, day)
            if v is not None and v.parent_id == area_id:
                out.append(v)
        return sorted(out, key=lambda v: v.code)

    def subtree(self, area_id: UUID, at: date | datetime) -> list[AreaVersion]:
        """The area and all its descendants on ``at`` (pre-order, children sorted by code)."""
        day = self.day(at)
        with self.lock:
            root = self.version_at(area_id, day)
            if root is None:
                return []
            out: list[AreaVersion] = []
            stack = [root]
            while stack:
                v = stack.pop()
                out.append(v)
                stack.extend(reversed(self.children(v.area_id, day)))
            return out

    def ancestors(self, area_id: UUID, at: date | datetime) -> list[AreaVersion]:
        """Parent, grandparent, ... of the area on ``at`` (nearest first)."""
        day = self.day(at)
        out: list[AreaVersion] = []
        with self.lock:
            v = self.version_at(area_id, day)
            seen = {area_id}
            while v is not None and v.parent_id is not None and v.parent_id not in seen:
                seen.add(v.parent_id)
                v = self.version_at(v.parent_id, day)
                if v is not None:
                    out.append(v)
        return out

    def is_within(self, area_id: UUID, ancestor_id: UUID, at: date | datetime) -> bool:
        """True if ``area_id`` is ``ancestor_id`` or lies below it on ``at``."""
        if area_id == ancestor_id:
            return self.version_at(area_id, at) is not None
        return any(a.area_id == ancestor_id for a in self.ancestors(area_id, at))

    def successors(self, area_id: UUID, at: date | datetime | None = None) -> list[AreaVersion]:
        """The areas that took over ``area_id``'s territory and exist on ``at`` (default: latest).

        Follows merges and splits transitively; an area that still exists is its own successor.
        """
        out: dict[UUID, AreaVersion] = {}
        stack, seen = [area_id], set()
        day = None if at is None else self.day(at)
        with self.lock:
            while stack:
                aid = stack.pop()
                if aid in seen:
                    continue
                seen.add(aid)
                # Follow an ending only if it happened by the query date.
                if aid in self._successors and (day is None or self._ended_on[aid] <= day):
                    stack.extend(self._successors[aid])
                    continue
                versions = self._versions.get(aid)
                if not versions:
                    continue
                v = versions[-1] if at is None else self.version_at(aid, at)
                if v is not None:
                    out[aid] = v
        return sorted(out.values(), key=lambda v: v.code)

    def all_at(self, at: date | datetime, kind: AreaKind | None = None) -> Iterator[AreaVersion]:
        """Every area that exists on ``at`` (optionally of one kind)."""
        day = self.day(at)
        with self.lock:
            ids = list(self._versions)
        for aid in ids:
            v = self.version_at(aid, day)
            if v is not None and (kind is None or v.kind is kind):
                yield v


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------


@attrs.define
class DeviceView:
    """What the scheduler needs to know about a device, kept current."""

    device_id: UUID
    name: str
    kind: DeviceKind
    area_id: UUID
    transport: str
    address: str
    channels: tuple[Channel, ...]
    groups: tuple[str, ...]
    status: DeviceStatus = DeviceStatus.UNKNOWN
    active: bool = True
    settings: dict[str, str] = attrs.field(factory=dict)  # secrets stay env:NAME references


class DeviceIndex(Projection):
    """Devices by id, by area and by address, maintained incrementally for target resolution
    and for matching what comes in (an SMS from a number, an advertised board) to a device."""

    topics = (
        "tcs.device.registered",
        "tcs.device.configured",
        "tcs.device.moved",
        "tcs.device.status_changed",
        "tcs.device.decommissioned",
    )

    def __init__(self) -> None:
        super().__init__()
        self._devices: dict[UUID, DeviceView] = {}
        self._by_area: dict[UUID, set[UUID]] = defaultdict(set)
        # Active devices only: an address is reused once its device is decommissioned.
        self._by_address: dict[str, set[UUID]] = defaultdict(set)

    def on_registered(self, e: Any) -> None:
        d = DeviceView(
            e.originator_id,
            e.name,
            DeviceKind(e.kind),
            as_uuid(e.area_id),
            e.transport,
            e.address,
            tuple(Channel(c) for c in e.channels),
            tuple(e.groups),
        )
        d.settings = dict(e.settings)
        self._devices[d.device_id] = d
        self._by_area[d.area_id].add(d.device_id)
        self._by_address[d.address].add(d.device_id)

    def on_configured(self, e: Any) -> None:
        d = self._devices[e.originator_id]
        if d.active and e.address != d.address:
            self._unindex_address(d)
            self._by_address[e.address].add(d.device_id)
        d.address = e.address
        d.settings = dict(e.settings)
        d.channels = tuple(Channel(c) for c in e.channels)
        d.groups = tuple(e.groups)

    def on_moved(self, e: Any) -> None:
        d = self._devices[e.originator_id]
        self._by_area[d.area_id].discard(d.device_id)
        d.area_id = as_uuid(e.area_id)
        self._by_area[d.area_id].add(d.device_id)

    def on_status_changed(self, e: Any) -> None:
        self._devices[e.originator_id].status = DeviceStatus(e.status)

    def on_decommissioned(self, e: Any) -> None:
        d = self._devices[e.originator_id]
        d.active = False
        self._by_area[d.area_id].discard(d.device_id)
        self._unindex_address(d)

    def _unindex_address(self, d: DeviceView) -> None:
        ids = self._by_address.get(d.address)
        if ids is not None:
            ids.discard(d.device_id)
            if not ids:
                del self._by_address[d.address]

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, device_id: UUID) -> DeviceView | None:
        """The device's current view, if registered."""
        return self._devices.get(device_id)

    def in_areas(self, area_ids: Iterable[UUID]) -> list[DeviceView]:
        """Active devices attached to any of the areas."""
        with self.lock:
            return [self._devices[d] for a in area_ids for d in self._by_area.get(a, ())]

    def at_address(self, address: str) -> list[DeviceView]:
        """Active devices whose address is exactly ``address`` (any transport or kind)."""
        with self.lock:
            return [self._devices[d] for d in self._by_address.get(address, ())]

    def all(self) -> list[DeviceView]:
        """Every device ever registered (decommissioned ones have ``active`` False)."""
        with self.lock:
            return list(self._devices.values())


# ----------------------------------------------------------------------------------------------
# Discovered devices (zeroconf): pending until an admin accepts or rejects them
# ----------------------------------------------------------------------------------------------


@attrs.define
class DiscoveredView:
    """A discovered device as an admin reviews it: what it advertises and where it stands."""

    discovered_id: UUID
    service_name: str
    service_type: str
    transport: str
    kind: DeviceKind
    channels: tuple[Channel, ...]
    address: str
    name: str
    host: str
    port: int
    model: str
    properties: dict[str, str]
    discovered_at: datetime
    updated_at: datetime
    status: str = "pending"  # pending, accepted, rejected (DiscoveryStatus values)
    device_id: UUID | None = None
    area_id: UUID | None = None
    decided_by: str = ""
    reason: str = ""


class DiscoveryIndex(Projection):
    """Discovered devices by id, service name and (transport, address); ``pending()`` lists the
    ones waiting for an admin."""

    topics = (
        "tcs.device.discovered",
        "tcs.device.rediscovered",
        "tcs.device.discovery_accepted",
        "tcs.device.discovery_rejected",
    )

    def __init__(self) -> None:
        super().__init__()
        self._views: dict[UUID, DiscoveredView] = {}
        self._by_service: dict[str, UUID] = {}
        self._by_address: dict[tuple[str, str], UUID] = {}

    def _index(self, v: DiscoveredView) -> None:
        self._by_service[v.service_name.lower()] = v.discovered_id
        self._by_address[(v.transport, v.address)] = v.discovered_id

    def on_discovered(self, e: Any) -> None:
        v = DiscoveredView(
            e.originator_id,
            e.service_name,
            e.service_type,
            e.transport,
            DeviceKind(e.kind),
            tuple(Channel(c) for c in e.channels),
            e.address,
            e.name,
            e.host,
            int(e.port),
            e.model,
            dict(e.properties),
            e.at,
            e.at,
        )
        self._views[v.discovered_id] = v
        self._index(v)

    def on_rediscovered(self, e: Any) -> None:
        v = self._views[e.originator_id]
        v.service_name, v.service_type, v.transport = e.service_name, e.service_type, e.transport
        v.kind, v.channels = DeviceKind(e.kind), tuple(Channel(c) for c in e.channels)
        v.address, v.name, v.host, v.port = e.address, e.name, e.host, int(e.port)
        v.model, v.properties, v.updated_at = e.model, dict(e.properties), e.at
        self._index(v)

    def on_discovery_accepted(self, e: Any) -> None:
        v = self._views[e.originator_id]
        v.status, v.decided_by = "accepted", e.actor
        v.device_id, v.area_id = as_uuid(e.device_id), as_uuid(e.area_id)

    def on_discovery_rejected(self, e: Any) -> None:
        v = self._views[e.originator_id]
        v.status, v.decided_by, v.reason = "rejected", e.actor, e.reason

    def __len__(self) -> int:
        return len(self._views)

    def get(self, discovered_id: UUID) -> DiscoveredView | None:
        """The entry, if any."""
        return self._views.get(discovered_id)

    def by_service(self, service_name: str) -> DiscoveredView | None:
        """The entry recorded for that DNS-SD instance name (any case), if any."""
        found = self._by_service.get(service_name.lower())
        return None if found is None else self._views.get(found)

    def by_address(self, transport: str, address: str) -> DiscoveredView | None:
        """The entry whose device has that transport and address, if any."""
        found = self._by_address.get((transport, address))
        return None if found is None else self._views.get(found)

    def pending(self) -> list[DiscoveredView]:
        """Entries waiting for an admin, oldest first."""
        with self.lock:
            views = [v for v in self._views.values() if v.status == "pending"]
        return sorted(views, key=lambda v: (v.discovered_at, v.service_name))

    def all(self) -> list[DiscoveredView]:
        """Every entry ever recorded, oldest first."""
        with self.lock:
            return sorted(self._views.values(), key=lambda v: (v.discovered_at, v.service_name))


# ----------------------------------------------------------------------------------------------
# Principals
# ----------------------------------------------------------------------------------------------


@attrs.define
class PrincipalView:
    """A principal's current grants and permissions."""

    username: str
    grants: tuple[RoleGrant, ...]
    permissions: frozenset[Permission]
    disabled: bool = False

    def roles_over(self, role: Role) -> list[RoleGrant]:
        """Grants whose role includes ``role``."""
        return [g for g in self.grants if g.role.rank >= role.rank]


class PrincipalIndex(Projection):
    """Principals by username, for authorisation checks without a store round trip."""

    topics = (
        "tcs.principal.created",
        "tcs.principal.granted",
        "tcs.principal.revoked",
        "tcs.principal.allowed",
        "tcs.principal.disallowed",
        "tcs.principal.disabled",
    )

    def __init__(self) -> None:
        super().__init__()
        self._by_id: dict[UUID, PrincipalView] = {}
        self._by_name: dict[str, PrincipalView] = {}

    def on_created(self, e: Any) -> None:
        p = PrincipalView(
            e.username, tuple(e.grants), frozenset(Permission(x) for x in e.permissions)
        )
        self._by_id[e.originator_id] = p
        self._by_name[p.username] = p

    def on_granted(self, e: Any) -> None:
        p = self._by_id[e.originator_id]
        p.grants = (*p.grants, e.grant)

    def on_revoked(self, e: Any) -> None:
        p = self._by_id[e.originator_id]
        p.grants = tuple(g for g in p.grants if g != e.grant)

    def on_allowed(self, e: Any) -> None:
        p = self._by_id[e.originator_id]
        p.permissions = p.permissions | {Permission(e.permission)}

    def on_disallowed(self, e: Any) -> None:
        p = self._by_id[e.originator_id]
        p.permissions = p.permissions - {Permission(e.permission)}

    def on_disabled(self, e: Any) -> None:
        self._by_id[e.originator_id].disabled = True

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, username: str) -> PrincipalView | None:
        """The principal with that username, if any."""
        return self._by_name.get(username)


# ----------------------------------------------------------------------------------------------
# Broadcasts and dispatches (what the scheduler rebuilds its state from)
# ----------------------------------------------------------------------------------------------


@attrs.define
class BroadcastView:
    """A broadcast's latest fields and status."""

    broadcast_id: UUID
    fields: dict[str, Any]
    status: str
    author: str
    scheduled_at: datetime | None = None


class BroadcastIndex(Projection):
    """Broadcasts by id with their current status; notifies listeners of every change."""

    topics = (
        "tcs.broadcast.drafted",
        "tcs.broadcast.revised",
        "tcs.broadcast.submitted",
        "tcs.broadcast.approved",
        "tcs.broadcast.rejected",
        "tcs.broadcast.scheduled",
        "tcs.broadcast.cancelled",
        "tcs.broadcast.expired",
    )
    _FIELDS = (
        "title",
        "category",
        "priority",
        "content",
        "targets",
        "target_area_ids",
        "schedule",
        "preemption",
    )

    def __init__(self) -> None:
        super().__init__()
        self._views: dict[UUID, BroadcastView] = {}
        self.listeners: list[Any] = []

    def _fields(self, e: Any) -> dict[str, Any]:
        return {f: getattr(e, f) for f in self._FIELDS}

    def _status(self, e: Any, status: str) -> None:
        v = self._views[e.originator_id]
        v.status = status
        for listener in self.listeners:
            listener(v)

    def on_drafted(self, e: Any) -> None:
        self._views[e.originator_id] = BroadcastView(
            e.originator_id, self._fields(e), "drafted", e.actor
        )

    def on_revised(self, e: Any) -> None:
        self._views[e.originator_id].fields = self._fields(e)
        self._status(e, "drafted")

    def on_submitted(self, e: Any) -> None:
        self._status(e, "submitted")

    def on_approved(self, e: Any) -> None:
        self._status(e, "approved")

    def on_rejected(self, e: Any) -> None:
        self._status(e, "rejected")

    def on_scheduled(self, e: Any) -> None:
        self._views[e.originator_id].scheduled_at = getattr(e, "at", None)
        self._status(e, "scheduled")

    def on_cancelled(self, e: Any) -> None:
        self._status(e, "cancelled")

    def on_expired(self, e: Any) -> None:
        self._status(e, "expired")

    def get(self, broadcast_id: UUID) -> BroadcastView | None:
        """The broadcast's view, if drafted."""
        return self._views.get(broadcast_id)

    def live(self) -> list[BroadcastView]:
        """Approved or scheduled broadcasts: the ones the scheduler fires."""
        with self.lock:
            return [v for v in self._views.values() if v.status in ("approved", "scheduled")]

    def __len__(self) -> int:
        return len(self._views)


class DispatchIndex(Projection):
    """Per broadcast, the latest dispatched occurrence; and the dispatches not yet completed."""

    topics = ("tcs.dispatch.started", "tcs.dispatch.completed")

    def __init__(self) -> None:
        super().__init__()
        self.last_occurrence: dict[UUID, datetime] = {}
        self.open: dict[UUID, UUID] = {}  # dispatch id -> broadcast id
        self.started = 0

    def on_started(self, e: Any) -> None:
        b = as_uuid(e.broadcast_id)
        occ = e.occurrence
        last = self.last_occurrence.get(b)
        if last is None or occ > last:
            self.last_occurrence[b] = occ
        self.open[e.originator_id] = b
        self.started += 1

    def on_completed(self, e: Any) -> None:
        self.open.pop(e.originator_id, None)
