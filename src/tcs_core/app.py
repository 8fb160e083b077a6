"""The application: commands in, events stored, read models kept current.

``SourceSystem`` is the provincial source information system (Hệ thống thông tin nguồn cấp tỉnh)
as an eventsourcing ``Application``. Every command names its actor, is authorised against the
actor's area-scoped roles, is validated completely, and only then records events, so a rejected
command stores nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.persistence import (
    ApplicationRecorder,
    EventStore,
    IntegrityError,
    JSONTranscoder,
    PersistenceError,
    Recording,
)

from tcs_core import transcodings
from tcs_core.checkpoints import Checkpoint, CheckpointStore
from tcs_core.config import Settings
from tcs_core.domain.area import Area
from tcs_core.domain.base import TcsAggregate, as_date
from tcs_core.domain.broadcast import Broadcast, check_content
from tcs_core.domain.device import Device, LivenessTracker, validate_settings
from tcs_core.domain.discovered import (
    DiscoveredDevice,
    DiscoveredService,
    DiscoveryRecord,
    DiscoveryStatus,
    RecordOutcome,
    discovered_id,
)
from tcs_core.domain.dispatch import DeliveryReceipt, Dispatch, dispatch_id
from tcs_core.domain.facility import Facility, Station
from tcs_core.domain.feedback import Feedback
from tcs_core.domain.principal import Principal, principal_id, validate_username
from tcs_core.domain.values import (
    AreaKind,
    Category,
    Channel,
    Condition,
    ContentVariant,
    DeliveryOutcome,
    DeviceKind,
    DeviceStatus,
    FacilityKind,
    FeedbackChannel,
    OutcomeStatus,
    Permission,
    Preemption,
    Priority,
    Role,
    RoleGrant,
    ScheduleSpec,
    StationKind,
    Targets,
    as_utc,
)
from tcs_core.errors import (
    AlreadyExists,
    DispatchExists,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    UnknownArea,
    ValidationError,
)
from tcs_core.projections import (
    AreaIndex,
    AreaVersion,
    BroadcastIndex,
    DeviceIndex,
    DeviceView,
    DiscoveryIndex,
    DispatchIndex,
    PrincipalIndex,
    Projection,
)

__all__ = ["SYSTEM", "Actor", "SourceSystem", "SystemActor"]

log = logging.getLogger("tcs_core.app")

A = TypeVar("A", bound=TcsAggregate)
T = TypeVar("T")


class SystemActor(str):
    """The library's own processes (loaders, scheduler). Not a username: usernames have no ':'.

    Only code can construct one; an API layer that maps tokens to usernames can never produce it,
    so it cannot be used to skip authorisation.
    """

    __slots__ = ()


SYSTEM = SystemActor("system")
Actor = str


def _now() -> datetime:
    return datetime.now(UTC)


def _prepare_sqlite(path: str, timeout_s: float) -> None:
    """Switch a new SQLite file to WAL once, retrying while another opener holds the lock.

    eventsourcing sets WAL on connect without retrying; several workers opening a brand-new file
    at the same moment would otherwise see "database is locked".
    """
    if ":memory:" in path or "mode=memory" in path:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=timeout_s, uri=True)) as c:
                c.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SourceSystem(Application[UUID]):
    """Areas, devices, stations, facilities, broadcasts, dispatches, feedback and principals."""

    name = "tcs"
    # Snapshots for the long-lived aggregates; a Dispatch lives for one occurrence.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Device: 100,
        Principal: 50,
        Broadcast: 50,
        Station: 50,
        Facility: 50,
    }

    def __init__(self, settings: Settings | None = None, env: Mapping[str, str] | None = None):
        self.settings = settings if settings is not None else Settings()
        es_env = {**self.settings.eventsourcing_env(), **(env or {})}
        self.areas = AreaIndex(self.settings.zone)
        self.devices = DeviceIndex()
        self.principals = PrincipalIndex()
        self.broadcasts = BroadcastIndex()
        self.dispatches = DispatchIndex()
        self.discovered = DiscoveryIndex()  # zeroconf finds, pending an admin's decision
        self._projections: tuple[Projection, ...] = (
            self.areas,
            self.devices,
            self.principals,
            self.broadcasts,
            self.dispatches,
            self.discovered,
        )
        # Which projections read each topic (most events, e.g. outcomes, interest none of them).
        self._readers: dict[str, tuple[Projection, ...]] = {}
        for proj in self._projections:
            for topic in proj.topics:
                self._readers[topic] = (*self._readers.get(topic, ()), proj)
        self.position = 0
        self.checkpoints = CheckpointStore.for_settings(self.settings)
        self.loaded_checkpoint: Checkpoint | None = None  # what this start began from, if any
        self._checkpointed_at = 0  # log position of the checkpoint loaded or written last
        self._projection_lock = threading.RLock()
        self._subtree_cache: dict[tuple[UUID, date], frozenset[UUID]] = {}
        self._subtree_version = -1
        self._days: dict[Any, date] = {}
        if self.settings.persistence == "sqlite":
            _prepare_sqlite(self.settings.sqlite_path, self.settings.sqlite_lock_timeout_s)
        super().__init__(env=es_env)
        with self._projection_lock:
            self._restore_checkpoint()
            self._catch_up_locked()
            self._checkpoint_if_far_behind()

    # -- persistence wiring --------------------------------------------------------------------

    # Processes that open one PostgreSQL store together race on eventsourcing's set-up
    # statements (CREATE TYPE, CREATE TABLE IF NOT EXISTS, CREATE OR REPLACE FUNCTION): "tuple
    # concurrently updated" (XX000), a duplicate catalog key (23505), "already exists" (42P07,
    # 42710). The loser tries again; by then the winner's objects are there.
    _SET_UP_RACES = frozenset({"XX000", "23505", "42P07", "42710"})

    def _set_up(self, make: Callable[[], T]) -> T:
        attempts = 10 if self.settings.persistence == "postgres" else 1
        for attempt in range(attempts):
            try:
                return make()
            except PersistenceError as exc:
                race = getattr(exc.__cause__, "sqlstate", None) in self._SET_UP_RACES
                if not race or attempt == attempts - 1:
                    raise
                log.info("store set-up raced another process (%s); trying again", exc)
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def construct_recorder(self) -> ApplicationRecorder:
        return self._set_up(super().construct_recorder)

    def construct_snapshot_store(self) -> EventStore[UUID]:
        return self._set_up(super().construct_snapshot_store)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcodings.register_all(transcoder)

    def _catch_up(self) -> None:
        """Replay the projections' topics from the notification log (start-up, or other writers)."""
        with self._projection_lock:
            self._catch_up_locked()

    def _catch_up_locked(self) -> None:
        topics = sorted({t for p in self._projections for t in p.topics})
        # Read the head first: an event another process commits after this point is read next
        # time, instead of being skipped when the position jumps to the head below.
        top = self.recorder.max_notification_id() or 0
        while True:
            batch = self.recorder.select_notifications(
                start=self.position + 1,
                limit=5000,
                stop=top,
                topics=topics,
                inclusive_of_start=True,
            )
            if not batch:
                break
            for n in batch:
                event = self.mapper.to_domain_event(n)
                for p in self._readers.get(n.topic, ()):
                    p.apply(n.topic, event)
            # The filtered log skips other topics: the position is the newest id seen overall.
            self.position = max(batch[-1].id, self.position)
        self.position = max(self.position, top)

    # -- checkpoints of the read models (tcs_core.checkpoints) ---------------------------------

    _CHECKPOINT = "source-system"

    def _checkpoint_args(self) -> dict[str, Any]:
        # app.py is in the fingerprint too: it decides which events reach the indexes
        return {"recorder": self.recorder, "code": [SourceSystem], "settings": [self.settings.zone]}

    def _restore_checkpoint(self) -> None:
        """Load the indexes from the deployment's checkpoint, if one is valid here."""
        if self.checkpoints is None:
            return
        info = self.checkpoints.restore(
            self._CHECKPOINT, self._projections, **self._checkpoint_args()
        )
        if info is not None:
            self.position = self._checkpointed_at = info.position
            self.loaded_checkpoint = info

    def checkpoint(self) -> Checkpoint | None:
        """Write a checkpoint of the indexes at the current position now, so the next start
        replays only what comes after; None when checkpoints are off (see ``Settings``)."""
        if self.checkpoints is None:
            return None
        with self._projection_lock:
            info = self.checkpoints.write(
                self._CHECKPOINT,
                self._projections,
                position=self.position,
                **self._checkpoint_args(),
            )
            self._checkpointed_at = info.position
            return info

    def _checkpoint_if_far_behind(self) -> None:
        """Write a checkpoint if the indexes are ``checkpoint_after_events`` or more past the
        last one (at start, after a long replay; at ``close``, after a long run)."""
        threshold = self.settings.checkpoint_after_events
        if self.checkpoints is None or self.position - self._checkpointed_at < threshold:
            return
        with self._projection_lock:
            info = self.checkpoints.write_quietly(
                self._CHECKPOINT,
                self._projections,
                position=self.position,
                **self._checkpoint_args(),
            )
            if info is not None:
                self._checkpointed_at = info.position

    def close(self) -> None:
        """Write a checkpoint if the indexes moved far since the last one, then close the store."""
        self._checkpoint_if_far_behind()
        super().close()

    def refresh(self) -> None:
        """Apply events that other processes have recorded since this one last looked."""
        self._catch_up()

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        with self._projection_lock:
            if recordings and recordings[0].notification.id > self.position + 1:
                # Another process wrote in between: read the gap (and these) from the log, so
                # the projections never skip an event.
                self._catch_up()
                return
            readers = self._readers
            for r in recordings:
                topic = r.notification.topic
                for p in readers.get(topic, ()):
                    p.apply(topic, r.domain_event)
            if recordings:
                self.position = max(self.position, recordings[-1].notification.id)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """As ``Application.save``, minus its runtime-``Protocol`` isinstance checks, which cost
        ~15-40 us per object on Python 3.11; tcs-core saves its own aggregates and events."""
        pe: ProcessingEvent[UUID] = ProcessingEvent()
        for obj in objs:
            if obj is None:
                continue
            if isinstance(obj, Aggregate):
                pe.events.extend(obj.collect_events())
                pe.aggregates[obj.id] = obj
            elif isinstance(obj, DomainEvent):
                pe.events.append(obj)
            else:  # anything else: the library's generic path
                return super().save(*objs, **kwargs)
        pe.saved_kwargs.update(kwargs)
        recordings = self._record(pe)
        self._take_snapshots(pe)
        self._notify(recordings)
        return recordings

    def _get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        try:
            agg: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"no {what} with id {aggregate_id}") from None
        if not isinstance(agg, cls):
            raise NotFound(f"{aggregate_id} is not a {what}")
        return agg

    def _save_new(self, *aggregates: TcsAggregate, what: str) -> None:
        try:
            self.save(*aggregates)
        except IntegrityError:
            raise AlreadyExists(f"{what} already exists") from None

    # -- authorisation -------------------------------------------------------------------------

    def authorise(
        self,
        actor: Actor,
        role: Role,
        area_ids: Iterable[UUID | None],
        *,
        permissions: Iterable[Permission] = (),
        at: date | datetime | None = None,
    ) -> None:
        """Raise PermissionDenied unless ``actor`` holds ``role`` over every area (None: all)."""
        if isinstance(actor, SystemActor):
            return
        p = self.principals.get(actor)
        if p is None:
            raise PermissionDenied(f"unknown principal {actor!r}")
        if p.disabled:
            raise PermissionDenied(f"principal {actor!r} is disabled")
        day = self.areas.day(at if at is not None else _now())
        grants = p.roles_over(role)
        for aid in area_ids:
            if not any(self._covers(g, aid, day) for g in grants):
                where = "every area" if aid is None else self._describe(aid, day)
                raise PermissionDenied(f"{actor} needs the {role.value} role over {where}")
        missing = [x.value for x in permissions if x not in p.permissions]
        if missing:
            raise PermissionDenied(f"{actor} needs the {', '.join(missing)} permission")

    def _covers(self, grant: RoleGrant, area: UUID | None, day: date) -> bool:
        if grant.area_id is None:
            return True
        if area is None:
            return False
        return self.areas.is_within(area, grant.area_id, day)

    def _describe(self, aid: UUID, day: date) -> str:
        v = self.areas.version_at(aid, day)
        return f"area {v.code} ({v.name})" if v else f"area {aid}"

    def _area(self, code: str, at: date | datetime | None = None) -> AreaVersion:
        if not isinstance(code, str) or not code:
            raise ValidationError("area", "give an area code")
        return self.areas.resolve(code, at if at is not None else _now())

    # -- principals ----------------------------------------------------------------------------

    def bootstrap_admin(self, username: str, display_name: str = "") -> UUID:
        """Create the first administrator (admin over every area, both special permissions).

        Refused once any principal exists: after that, admins create principals.
        """
        validate_username(username)
        if len(self.principals):
            raise InvalidTransition("principals exist already; ask an admin to create accounts")
        p = Principal(
            username=username,
            display_name=display_name or username,
            grants=[RoleGrant(Role.ADMIN)],
            permissions=sorted(Permission),
            actor=str(SYSTEM),
        )
        self._save_new(p, what=f"principal {username}")
        return p.id

    def create_principal(
        self,
        username: str,
        *,
        grants: Sequence[tuple[Role | str, str | None]] = (),
        permissions: Iterable[Permission | str] = (),
        display_name: str = "",
        actor: Actor,
    ) -> UUID:
        """Create an account with roles over area codes (None: every area)."""
        validate_username(username)
        role_grants = [self._grant(role, code) for role, code in grants]
        perms = sorted({Permission(x) for x in permissions})
        self.authorise(actor, Role.ADMIN, [g.area_id for g in role_grants] or [None])
        self.authorise(actor, Role.ADMIN, [], permissions=perms)
        if self.principals.get(username) is not None:
            raise AlreadyExists(f"principal {username} already exists")
        p = Principal(
            username=username,
            display_name=display_name or username,
            grants=role_grants,
            permissions=perms,
            actor=actor,
        )
        self._save_new(p, what=f"principal {username}")
        return p.id

    def _grant(self, role: Role | str, code: str | None) -> RoleGrant:
        try:
            r = Role(role)
        except ValueError:
            raise ValidationError(
                "role", f"{role!r} is not one of {[x.value for x in Role]}"
            ) from None
        return RoleGrant(r, None if code is None else self._area(code).area_id)

    def grant_role(self, username: str, role: Role | str, area: str | None, actor: Actor) -> None:
        """Give ``username`` a role over the area subtree ``area`` (None: every area)."""
        g = self._grant(role, area)
        self.authorise(actor, Role.ADMIN, [g.area_id])
        p = self._get(Principal, principal_id(username), "principal")
        p.grant(g, actor)
        self.save(p)

    def revoke_role(self, username: str, role: Role | str, area: str | None, actor: Actor) -> None:
        """Take a role grant away."""
        g = self._grant(role, area)
        self.authorise(actor, Role.ADMIN, [g.area_id])
        p = self._get(Principal, principal_id(username), "principal")
        p.revoke(g, actor)
        self.save(p)

    def allow_permission(self, username: str, permission: Permission | str, actor: Actor) -> None:
        """Give a special permission; only an admin who holds it may give it."""
        perm = Permission(permission)
        self.authorise(actor, Role.ADMIN, [None], permissions=[perm])
        p = self._get(Principal, principal_id(username), "principal")
        p.allow(perm, actor)
        self.save(p)

    def disable_principal(self, username: str, reason: str, actor: Actor) -> None:
        """Disable an account."""
        p = self._get(Principal, principal_id(username), "principal")
        self.authorise(actor, Role.ADMIN, [g.area_id for g in p.grants] or [None])
        p.disable(reason, actor)
        self.save(p)

    # -- areas ---------------------------------------------------------------------------------

    def create_area(
        self,
        code: str,
        name: str,
        kind: AreaKind | str,
        *,
        parent: str | None,
        effective: date,
        actor: Actor,
    ) -> UUID:
        """Create an area under ``parent`` (a code valid on ``effective``; None: a root)."""
        effective = as_date(effective)
        area = self._new_area(code, name, kind, parent, effective, actor)
        self._save_new(area, what=f"area {code} effective {effective.isoformat()}")
        return area.id

    def _new_area(
        self,
        code: str,
        name: str,
        kind: AreaKind | str,
        parent: str | None,
        effective: date,
        actor: Actor,
    ) -> Area:
        if not isinstance(code, str) or not code.strip() or len(code) > 32:
            raise ValidationError("code", "give a code of 1-32 characters")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationError("name", "give a name of 1-200 characters")
        try:
            k = AreaKind(kind)
        except ValueError:
            raise ValidationError(
                "kind", f"{kind!r} is not one of {[x.value for x in AreaKind]}"
            ) from None
        parent_v = None if parent is None else self._area(parent, effective)
        self.authorise(actor, Role.ADMIN, [parent_v.area_id if parent_v else None], at=effective)
        try:
            holder = self.areas.resolve(code, effective)
        except UnknownArea:
            holder = None
        if holder is not None:
            raise AlreadyExists(
                f"code {code} is held by {holder.name} on {effective.isoformat()}; "
                "end that area first (merge, split or dissolve) or pick another code"
            )
        return Area(
            code=code,
            name=name.strip(),
            kind=k,
            parent_id=parent_v.area_id if parent_v else None,
            effective=effective,
            actor=actor,
        )

    def _load_area(self, code: str, at: date) -> Area:
        return self._get(Area, self._area(code, at).area_id, "area")

    def _check_no_children(self, area: Area, effective: date, ending: Iterable[UUID] = ()) -> None:
        """An area cannot end while areas still hang under it: they would fall out of every
        subtree. Move, merge or dissolve them first (with the same effective date); areas that
        end in the same command do not count."""
        skip = set(ending)
        live = [v for v in self.areas.children(area.id, effective) if v.area_id not in skip]
        if live:
            names = ", ".join(f"{v.code} ({v.name})" for v in live[:5])
            more = f" and {len(live) - 5} more" if len(live) > 5 else ""
            raise InvalidTransition(
                f"area {area.code} still has {len(live)} area(s) under it on "
                f"{effective.isoformat()}: {names}{more}; move, merge or dissolve them first"
            )

    def _area_admin(self, area: Area, at: date, actor: Actor) -> None:
        self.authorise(actor, Role.ADMIN, [area.parent_id if area.parent_id else None], at=at)

    def rename_area(self, code: str, name: str, *, effective: date, actor: Actor) -> None:
        """Rename the area holding ``code`` from ``effective`` on."""
        effective = as_date(effective)
        if not name or not name.strip():
            raise ValidationError("name", "must not be empty")
        area = self._load_area(code, effective)
        self._area_admin(area, effective, actor)
        area.rename(name.strip(), effective, actor)
        self.save(area)

    def move_area(self, code: str, parent: str | None, *, effective: date, actor: Actor) -> None:
        """Re-attach the area to ``parent`` from ``effective`` on."""
        effective = as_date(effective)
        area = self._load_area(code, effective)
        new_parent = None if parent is None else self._area(parent, effective).area_id
        if new_parent is not None and self.areas.is_within(new_parent, area.id, effective):
            raise InvalidTransition(f"moving {code} under {parent} would make a cycle")
        self._area_admin(area, effective, actor)
        self.authorise(actor, Role.ADMIN, [new_parent], at=effective)
        area.move(new_parent, effective, actor)
        self.save(area)

    def merge_areas(
        self, codes: Sequence[str], *, into: str, effective: date, actor: Actor
    ) -> None:
        """End each area in ``codes``: its territory joins ``into`` (which must exist then)."""
        effective = as_date(effective)
        if len(set(codes)) != len(codes):
            raise ValidationError("codes", "an area is named twice")
        target = self._area(into, effective)
        areas = [self._load_area(c, effective) for c in codes]
        if not areas:
            raise ValidationError("codes", "name at least one area to merge")
        ending = {a.id for a in areas}
        for a in areas:
            self._area_admin(a, effective, actor)
            self._check_no_children(a, effective, ending)
            a.merge_into(target.area_id, effective, actor)
        self.save(*areas)

    def split_area(self, code: str, *, into: Sequence[str], effective: date, actor: Actor) -> None:
        """End the area: its territory is shared among ``into`` (which must exist then)."""
        effective = as_date(effective)
        if len(set(into)) != len(into):
            raise ValidationError("into", "a successor is named twice")
        targets = tuple(self._area(c, effective).area_id for c in into)
        area = self._load_area(code, effective)
        self._area_admin(area, effective, actor)
        self._check_no_children(area, effective)
        area.split_into(targets, effective, actor)
        self.save(area)

    def dissolve_area(self, code: str, *, effective: date, actor: Actor) -> None:
        """End the area with no successor."""
        effective = as_date(effective)
        area = self._load_area(code, effective)
        self._area_admin(area, effective, actor)
        self._check_no_children(area, effective)
        area.dissolve(effective, actor)
        self.save(area)

    def area(self, code: str, at: date | datetime | None = None) -> AreaVersion:
        """The area holding ``code`` on ``at`` (default: now)."""
        return self._area(code, at)

    def subtree(self, code: str, at: date | datetime | None = None) -> list[AreaVersion]:
        """The area and its descendants on ``at``."""
        at = at if at is not None else _now()
        return self.areas.subtree(self._area(code, at).area_id, at)

    def communes(self, code: str, at: date | datetime | None = None) -> list[AreaVersion]:
        """Commune-level units (xã, phường, thị trấn, đặc khu) within ``code`` on ``at``."""
        return [v for v in self.subtree(code, at) if v.kind.is_commune_level]

    def ancestors(self, code: str, at: date | datetime | None = None) -> list[AreaVersion]:
        """Parent, grandparent, ... of ``code`` on ``at``."""
        at = at if at is not None else _now()
        return self.areas.ancestors(self._area(code, at).area_id, at)

    def successors(
        self, code: str, at: date | datetime, as_of: date | datetime | None = None
    ) -> list[AreaVersion]:
        """Where the territory of the area holding ``code`` on ``at`` lies on ``as_of``."""
        return self.areas.successors(self._area(code, at).area_id, as_of)

    def resolve_targets(
        self, targets: Targets, area_ids: Iterable[UUID], at: date | datetime
    ) -> tuple[list[DeviceView], list[UUID]]:
        """The active devices a broadcast reaches at ``at``: in the subtrees of ``area_ids`` *as
        they are at that instant*, passing the kind and group filters, serving a targeted
        channel. Also returns the devices named by kind that serve none of the channels (they
        are reported, not silently skipped)."""
        day = self._days.get(at) if isinstance(at, datetime) else at
        if day is None:
            day = self.areas.day(at)
            if len(self._days) > 10_000:
                self._days.clear()
            self._days[at] = day  # the zone conversion costs more than the rest of a lookup
        if self._subtree_version != self.areas.changes:
            self._subtree_cache.clear()
            self._subtree_version = self.areas.changes
        areas: set[UUID] = set()
        for aid in area_ids:
            key = (aid, day)
            sub = self._subtree_cache.get(key)
            if sub is None:
                sub = frozenset(v.area_id for v in self.areas.subtree(aid, day))
                self._subtree_cache[key] = sub
            areas |= sub
        kinds, groups, channels = (
            set(targets.device_kinds),
            set(targets.groups),
            set(targets.channels),
        )
        found: list[DeviceView] = []
        unmatched: list[UUID] = []
        for d in self.devices.in_areas(areas):
            if (kinds and d.kind not in kinds) or (groups and not groups & set(d.groups)):
                continue
            if channels & set(d.channels):
                found.append(d)
            elif kinds:
                unmatched.append(d.device_id)
        return found, unmatched

    # -- devices -------------------------------------------------------------------------------

    def register_device(
        self,
        name: str,
        kind: DeviceKind | str,
        *,
        area: str,
        transport: str,
        address: str,
        channels: Iterable[Channel | str],
        settings: Mapping[str, Any] | None = None,
        groups: Iterable[str] = (),
        actor: Actor,
    ) -> UUID:
        """Register a device in an area; secrets in ``settings`` only as ``env:NAME``."""
        if not name or not name.strip():
            raise ValidationError("name", "give the device a name")
        try:
            k = DeviceKind(kind)
            chans = sorted({Channel(c) for c in channels})
        except ValueError as exc:
            raise ValidationError("device", str(exc)) from None
        if not chans:
            raise ValidationError("channels", "a device serves at least one channel")
        if not transport or not address:
            raise ValidationError("transport", "give the transport name and the device address")
        a = self._area(area)
        self.authorise(actor, Role.ADMIN, [a.area_id])
        d = Device(
            name=name.strip(),
            kind=k,
            area_id=a.area_id,
            transport=transport,
            address=address,
            settings=validate_settings(settings or {}),
            channels=chans,
            groups=sorted(set(groups)),
            actor=actor,
        )
        self.save(d)
        return d.id

    def register_devices(
        self, devices: Iterable[Mapping[str, Any]], *, actor: Actor, batch: int = 2000
    ) -> list[UUID]:
        """Register many devices, ``batch`` per transaction; each mapping takes the keyword
        arguments of ``register_device``. All are validated before anything is saved."""
        new: list[Device] = []
        for spec in devices:
            spec = dict(spec)
            try:
                name, kind = spec.pop("name"), DeviceKind(spec.pop("kind"))
                area, transport, address = (
                    spec.pop("area"),
                    spec.pop("transport"),
                    spec.pop("address"),
                )
                chans = sorted({Channel(c) for c in spec.pop("channels")})
            except (KeyError, ValueError) as exc:
                raise ValidationError("devices", f"bad device specification: {exc}") from None
            settings = validate_settings(spec.pop("settings", {}))
            groups = sorted(set(spec.pop("groups", ())))
            if spec:
                raise ValidationError("devices", f"unknown field(s) {sorted(spec)}")
            if not chans or not transport or not address or not str(name).strip():
                raise ValidationError(
                    "devices", f"device {name!r} needs channels, transport, address"
                )
            a = self._area(area)
            self.authorise(actor, Role.ADMIN, [a.area_id])
            new.append(
                Device(
                    name=str(name).strip(),
                    kind=kind,
                    area_id=a.area_id,
                    transport=transport,
                    address=address,
                    settings=settings,
                    channels=chans,
                    groups=groups,
                    actor=actor,
                )
            )
        self.save_in_batches(new, batch)
        return [d.id for d in new]

    def device(self, device_id: UUID) -> Device:
        """The Device aggregate."""
        return self._get(Device, device_id, "device")

    def set_device_status(
        self,
        device_id: UUID,
        status: DeviceStatus | str,
        reason: str = "",
        *,
        at: datetime | None = None,
        actor: Actor = SYSTEM,
    ) -> bool:
        """Record a status transition (online/offline/fault/maintenance); False if unchanged."""
        d = self.device(device_id)
        self.authorise(actor, Role.OPERATOR, [d.area_id])
        try:
            st = DeviceStatus(status)
        except ValueError:
            raise ValidationError("status", f"{status!r} is not a device status") from None
        changed = d.set_status(st, reason, at if at is not None else _now(), actor)
        if changed:
            self.save(d)
        return changed

    def decommission_device(self, device_id: UUID, reason: str, actor: Actor) -> None:
        """Take a device out of service for good."""
        d = self.device(device_id)
        self.authorise(actor, Role.ADMIN, [d.area_id])
        d.decommission(reason, actor)
        self.save(d)

    def liveness_tracker(self, timeout: timedelta = timedelta(minutes=3)) -> LivenessTracker:
        """A tracker that records heartbeat-driven transitions as device status events."""

        def record(device_id: UUID, status: DeviceStatus, reason: str, at: datetime) -> None:
            self.set_device_status(device_id, status, reason, at=at, actor=SYSTEM)

        return LivenessTracker(timeout, record)

    # -- discovered devices (zeroconf) ---------------------------------------------------------

    def _authorise_any_admin(self, actor: Actor) -> None:
        """Pending entries belong to no area yet: an admin over any area may record or reject
        them (accepting needs the admin role over the chosen area)."""
        if isinstance(actor, SystemActor):
            return
        self.authorise(actor, Role.VIEWER, [])  # known and enabled
        p = self.principals.get(actor)
        if p is None or not p.roles_over(Role.ADMIN):
            raise PermissionDenied(f"{actor} needs the admin role over some area")

    def _device_at(self, transport: str, address: str) -> DeviceView | None:
        for d in self.devices.at_address(address):
            if d.transport == transport:
                return d
        return None

    def record_discovered(
        self, found: DiscoveredService, *, at: datetime | None = None, actor: Actor = SYSTEM
    ) -> DiscoveryRecord:
        """Record an advertised device as pending; never registers it.

        The same service instance (or the same transport and address under another name) is
        recorded once: seeing it again records only what changed. A device already registered
        with that transport and address is ``known`` and gets no entry."""
        if not isinstance(found, DiscoveredService):
            raise ValidationError("found", "give a DiscoveredService (see tcs_core.discovery)")
        when = as_utc(at if at is not None else _now(), "at")
        self._authorise_any_admin(actor)
        view = self.discovered.by_service(found.service_name) or self.discovered.by_address(
            found.transport, found.address
        )
        if view is None:
            known = self._device_at(found.transport, found.address)
            if known is not None:
                return DiscoveryRecord(None, RecordOutcome.KNOWN, known.device_id)
            entry = DiscoveredDevice.record(found, when, str(actor))
            try:
                self.save(entry)
                return DiscoveryRecord(entry.id, RecordOutcome.NEW)
            except IntegrityError:  # another browser recorded it first: treat as seen again
                pass
            view_id = discovered_id(found.service_name)
        else:
            view_id = view.discovered_id
        d = self._get(DiscoveredDevice, view_id, "discovered device")
        changed = d.update(found, when, str(actor))
        if changed:
            self.save(d)
        outcome = RecordOutcome.UPDATED if changed else RecordOutcome.UNCHANGED
        return DiscoveryRecord(d.id, outcome, d.device_id)

    def discovered_device(self, discovered_id_: UUID) -> DiscoveredDevice:
        """The DiscoveredDevice aggregate."""
        return self._get(DiscoveredDevice, discovered_id_, "discovered device")

    def accept_discovered(
        self,
        discovered_id_: UUID,
        *,
        area: str,
        actor: Actor,
        name: str | None = None,
        settings: Mapping[str, Any] | None = None,
        groups: Iterable[str] = (),
    ) -> UUID:
        """Register a discovered device in ``area`` (admin over it); returns the device id.

        Idempotent: accepting an accepted entry into the same area returns the same device.
        ``settings`` are the device's settings as in ``register_device`` (secrets only as
        ``env:NAME``: an advertisement never carries them)."""
        d = self.discovered_device(discovered_id_)
        a = self._area(area)
        self.authorise(actor, Role.ADMIN, [a.area_id])
        if d.status is DiscoveryStatus.ACCEPTED:
            if d.area_id == a.area_id and d.device_id is not None:
                return d.device_id
            raise InvalidTransition(
                f"{d.name} was already accepted as device {d.device_id} in another area; "
                "move the device instead"
            )
        label = d.name if name is None else name
        if not label or not label.strip():
            raise ValidationError("name", "give the device a name")
        checked = validate_settings(settings or {})
        clash = self._device_at(d.transport, d.address)
        if clash is not None:
            raise AlreadyExists(
                f"device {clash.name} ({clash.device_id}) already has {d.transport} address "
                f"{d.address}; reject this entry instead"
            )
        device = Device(
            name=label.strip(),
            kind=d.kind,
            area_id=a.area_id,
            transport=d.transport,
            address=d.address,
            settings=checked,
            channels=sorted(d.channels),
            groups=sorted(set(groups)),
            actor=actor,
        )
        d.accept(device.id, a.area_id, actor)
        try:
            self.save(device, d)  # one transaction: never a device without its acceptance
        except IntegrityError:
            again = self.discovered_device(discovered_id_)  # a concurrent accept won
            if again.status is DiscoveryStatus.ACCEPTED and again.area_id == a.area_id:
                return cast(UUID, again.device_id)
            raise AlreadyExists(f"{d.name} was decided concurrently; look again") from None
        return device.id

    def reject_discovered(self, discovered_id_: UUID, reason: str, *, actor: Actor) -> bool:
        """Turn a discovered device down (it stays out of the pending list even when it
        advertises again); False if it already was rejected."""
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            raise ValidationError("reason", "say why, in 1-500 characters")
        d = self.discovered_device(discovered_id_)
        self._authorise_any_admin(actor)
        changed = d.reject(reason.strip(), str(actor))
        if changed:
            self.save(d)
        return changed

    # -- stations and facilities ---------------------------------------------------------------

    def register_station(
        self,
        name: str,
        *,
        area: str,
        kind: StationKind | str,
        commissioned_year: int,
        condition: Condition | str = Condition.GOOD,
        reaches_villages: bool = True,
        effective: date,
        actor: Actor,
    ) -> UUID:
        """Register a commune radio station (wired, FM or IP)."""
        effective = as_date(effective)
        a = self._area(area, effective)
        self.authorise(actor, Role.ADMIN, [a.area_id], at=effective)
        try:
            k, c = StationKind(kind), Condition(condition)
        except ValueError as exc:
            raise ValidationError("station", str(exc)) from None
        s = Station(
            name=name,
            area_id=a.area_id,
            kind=k,
            commissioned_year=Station.check_year(commissioned_year),
            condition=c,
            reaches_villages=bool(reaches_villages),
            effective=effective,
            actor=actor,
        )
        self.save(s)
        return s.id

    def station(self, station_id: UUID) -> Station:
        """The Station aggregate."""
        return self._get(Station, station_id, "station")

    def convert_station(self, station_id: UUID, *, effective: date, actor: Actor) -> None:
        """Record a wired/FM station's conversion to IP."""
        s = self.station(station_id)
        self.authorise(actor, Role.ADMIN, [s.area_id])
        s.convert_to_ip(as_date(effective), actor)
        self.save(s)

    def assess_station(
        self,
        station_id: UUID,
        condition: Condition | str,
        *,
        reaches_villages: bool,
        effective: date,
        actor: Actor,
    ) -> None:
        """Record a station's condition and reach."""
        s = self.station(station_id)
        self.authorise(actor, Role.ADMIN, [s.area_id])
        s.change_condition(Condition(condition), reaches_villages, as_date(effective), actor)
        self.save(s)

    def establish_facility(
        self, name: str, kind: FacilityKind | str, *, area: str, effective: date, actor: Actor
    ) -> UUID:
        """Record a website, e-board, district board or source system."""
        effective = as_date(effective)
        a = self._area(area, effective)
        self.authorise(actor, Role.ADMIN, [a.area_id], at=effective)
        try:
            k = FacilityKind(kind)
        except ValueError as exc:
            raise ValidationError("kind", str(exc)) from None
        f = Facility(name=name, kind=k, area_id=a.area_id, effective=effective, actor=actor)
        self.save(f)
        return f.id

    def facility(self, facility_id: UUID) -> Facility:
        """The Facility aggregate."""
        return self._get(Facility, facility_id, "facility")

    def connect_facility(self, facility_id: UUID, *, effective: date, actor: Actor) -> None:
        """Record a facility's connection to the provincial source system."""
        f = self.facility(facility_id)
        self.authorise(actor, Role.ADMIN, [f.area_id])
        f.connect(as_date(effective), actor)
        self.save(f)

    # -- broadcasts ----------------------------------------------------------------------------

    def _broadcast_fields(
        self,
        title: str,
        category: Category | str,
        priority: Priority | str,
        content: Mapping[Any, ContentVariant],
        targets: Targets,
        schedule: ScheduleSpec,
        preemption: Preemption | None,
    ) -> dict[str, Any]:
        try:
            cat, prio = Category(category), Priority(priority)
        except ValueError as exc:
            raise ValidationError("broadcast", str(exc)) from None
        if not isinstance(targets, Targets):
            raise ValidationError("targets", "give a Targets value")
        if not isinstance(schedule, ScheduleSpec):
            raise ValidationError("schedule", "give a ScheduleSpec value")
        variants = check_content(content, targets)
        area_ids = [self._area(code).area_id for code in targets.areas]
        return {
            "title": Broadcast.check_title(title),
            "category": cat,
            "priority": prio,
            "content": variants,
            "targets": targets,
            "target_area_ids": area_ids,
            "schedule": schedule,
            "preemption": preemption or Preemption.for_priority(prio),
        }

    def draft_broadcast(
        self,
        title: str,
        *,
        category: Category | str,
        priority: Priority | str = Priority.NORMAL,
        content: Mapping[Any, ContentVariant],
        targets: Targets,
        schedule: ScheduleSpec,
        preemption: Preemption | None = None,
        actor: Actor,
    ) -> UUID:
        """Draft a broadcast; the author needs the operator role over every target area."""
        fields = self._broadcast_fields(
            title, category, priority, content, targets, schedule, preemption
        )
        self.authorise(actor, Role.OPERATOR, fields["target_area_ids"])
        b = Broadcast(**fields, actor=actor)
        self.save(b)
        return b.id

    def broadcast(self, broadcast_id: UUID) -> Broadcast:
        """The Broadcast aggregate."""
        return self._get(Broadcast, broadcast_id, "broadcast")

    def revise_broadcast(
        self,
        broadcast_id: UUID,
        *,
        title: str,
        category: Category | str,
        priority: Priority | str,
        content: Mapping[Any, ContentVariant],
        targets: Targets,
        schedule: ScheduleSpec,
        preemption: Preemption | None = None,
        actor: Actor,
    ) -> None:
        """Replace a draft's (or a rejected broadcast's) fields."""
        b = self.broadcast(broadcast_id)
        fields = self._broadcast_fields(
            title, category, priority, content, targets, schedule, preemption
        )
        self.authorise(actor, Role.OPERATOR, [*b.target_area_ids, *fields["target_area_ids"]])
        b.revise(**fields, actor=actor)
        self.save(b)

    def _special(self, b: Broadcast) -> list[Permission]:
        needed = []
        if b.priority is Priority.EMERGENCY:
            needed.append(Permission.EMERGENCY)
        if Channel.SMS in b.targets.channels:
            needed.append(Permission.SMS_SENDER)
        return needed

    def submit_broadcast(self, broadcast_id: UUID, actor: Actor) -> None:
        """Send a draft for approval (emergency and SMS need their permissions)."""
        b = self.broadcast(broadcast_id)
        self.authorise(actor, Role.OPERATOR, b.target_area_ids, permissions=self._special(b))
        b.submit(actor)
        self.save(b)

    def approve_broadcast(self, broadcast_id: UUID, actor: Actor) -> None:
        """Approve: a second person, approver over every target area, with any special permission."""
        b = self.broadcast(broadcast_id)
        self.authorise(actor, Role.APPROVER, b.target_area_ids, permissions=self._special(b))
        b.approve(actor)
        self.save(b)

    def reject_broadcast(self, broadcast_id: UUID, reason: str, actor: Actor) -> None:
        """Send a submitted broadcast back to its author with a reason."""
        b = self.broadcast(broadcast_id)
        self.authorise(actor, Role.APPROVER, b.target_area_ids)
        b.reject(reason, actor)
        self.save(b)

    def cancel_broadcast(self, broadcast_id: UUID, reason: str, actor: Actor) -> None:
        """Withdraw a broadcast; no further occurrence is dispatched."""
        b = self.broadcast(broadcast_id)
        self.authorise(actor, Role.OPERATOR, b.target_area_ids)
        b.cancel(reason, actor)
        self.save(b)

    def mark_scheduled(
        self, broadcast_id: UUID, at: datetime | None = None, actor: Actor = SYSTEM
    ) -> None:
        """Record that the scheduler took the approved broadcast at ``at`` (default: now)."""
        b = self.broadcast(broadcast_id)
        self.authorise(actor, Role.OPERATOR, b.target_area_ids)
        b.mark_scheduled(at if at is not None else _now(), actor)
        self.save(b)

    def expire_broadcast(self, broadcast_id: UUID, actor: Actor = SYSTEM) -> None:
        """Record that the broadcast is past its validity."""
        b = self.broadcast(broadcast_id)
        self.authorise(actor, Role.OPERATOR, b.target_area_ids)
        b.expire(actor)
        self.save(b)

    # -- dispatches ----------------------------------------------------------------------------

    def new_dispatch(
        self,
        broadcast: Broadcast,
        occurrence: datetime,
        device_ids: Iterable[UUID],
        unmatched: Iterable[UUID] = (),
        actor: Actor = SYSTEM,
    ) -> Dispatch:
        """An unsaved Dispatch for one occurrence of a live broadcast (save many at once)."""
        if not broadcast.is_live:
            raise InvalidTransition(
                f"broadcast {broadcast.id} is {broadcast.status.value}; only approved or "
                "scheduled broadcasts are dispatched"
            )
        return Dispatch(
            **Dispatch.start_args(
                broadcast.id, occurrence, broadcast.priority, device_ids, unmatched
            ),
            actor=actor,
        )

    def start_dispatch(
        self,
        broadcast_id: UUID,
        occurrence: datetime,
        device_ids: Iterable[UUID],
        unmatched: Iterable[UUID] = (),
        actor: Actor = SYSTEM,
    ) -> UUID:
        """Durably start the dispatch of one occurrence; DispatchExists if it already started."""
        b = self.broadcast(broadcast_id)
        self.authorise(actor, Role.OPERATOR, b.target_area_ids)
        d = self.new_dispatch(b, occurrence, device_ids, unmatched, actor)
        try:
            self.save(d)
        except IntegrityError:
            raise DispatchExists(
                f"occurrence {as_utc(occurrence).isoformat()} of broadcast {broadcast_id} was "
                f"already dispatched (dispatch {d.id})"
            ) from None
        return d.id

    def dispatch(self, dispatch_id_: UUID) -> Dispatch:
        """The Dispatch aggregate."""
        return self._get(Dispatch, dispatch_id_, "dispatch")

    def dispatch_of(self, broadcast_id: UUID, occurrence: datetime) -> Dispatch | None:
        """The dispatch of that occurrence, if it was started."""
        try:
            return self.dispatch(dispatch_id(broadcast_id, occurrence))
        except NotFound:
            return None

    def record_outcomes(
        self, dispatch_id_: UUID, outcomes: Sequence[DeliveryOutcome], actor: Actor = SYSTEM
    ) -> None:
        """Record a batch of delivery outcomes as one event."""
        d = self.dispatch(dispatch_id_)
        d.record_outcomes(outcomes, str(actor))
        self.save(d)

    def record_batch(
        self,
        dispatch_id_: UUID,
        device_ids: Sequence[UUID],
        status: OutcomeStatus | str,
        at: datetime,
        reason: str = "",
        actor: Actor = SYSTEM,
    ) -> None:
        """Record one outcome for many devices of a dispatch as one event."""
        d = self.dispatch(dispatch_id_)
        d.record_batch(device_ids, status, at, str(actor), reason)
        self.save(d)

    def complete_dispatch(
        self, dispatch_id_: UUID, at: datetime | None = None, actor: Actor = SYSTEM
    ) -> None:
        """Close a dispatch."""
        d = self.dispatch(dispatch_id_)
        d.complete(at if at is not None else _now(), str(actor))
        self.save(d)

    def record_receipts(
        self, dispatch_id_: UUID, receipts: Sequence[DeliveryReceipt], actor: Actor = SYSTEM
    ) -> int:
        """Record delivery receipts (e.g. SMS delivery reports) as one event, also after the
        dispatch completed; returns how many changed what is known (0: nothing stored)."""
        d = self.dispatch(dispatch_id_)
        if not isinstance(actor, SystemActor):
            self.authorise(actor, Role.OPERATOR, self.broadcast(d.broadcast_id).target_area_ids)
        n = d.record_receipts(receipts, str(actor))
        if n:
            self.save(d)
        return n

    def subscriber_area(self, address: str, kind: DeviceKind | str) -> str | None:
        """The code (today) of the area of the active device of ``kind`` at ``address`` (e.g.
        the SMS subscriber with that phone number), or None; matches inbound messages to areas."""
        k = DeviceKind(kind)
        day = self.areas.day(_now())
        for view in self.devices.at_address(address):
            if view.kind == k:
                v = self.areas.version_at(view.area_id, day)
                if v is not None:
                    return v.code
        return None

    # -- feedback ------------------------------------------------------------------------------

    def receive_feedback(
        self,
        text: str,
        *,
        channel: FeedbackChannel | str,
        sender_ref: str,
        area: str | None = None,
        received_at: datetime | None = None,
        due_in: timedelta = timedelta(days=7),
        source_ref: str | None = None,
        actor: Actor = SYSTEM,
    ) -> UUID:
        """Take in a citizen's feedback; the same ``source_ref`` twice is taken in once."""
        if not text or not text.strip() or len(text) > 5000:
            raise ValidationError("text", "feedback text must be 1-5000 characters")
        if not sender_ref:
            raise ValidationError("sender_ref", "say who sent it (a number or account reference)")
        try:
            ch = FeedbackChannel(channel)
        except ValueError as exc:
            raise ValidationError("channel", str(exc)) from None
        at = as_utc(received_at if received_at is not None else _now(), "received_at")
        a = None if area is None else self._area(area, at).area_id
        fb = Feedback(
            channel=ch,
            area_id=a,
            sender_ref=sender_ref,
            text=text.strip(),
            received_at=at,
            due=self.areas.day(at + due_in),
            source_ref=source_ref,
            actor=actor,
        )
        try:
            self.save(fb)
        except IntegrityError:
            if source_ref is None:
                raise
        return fb.id

    def feedback(self, feedback_id: UUID) -> Feedback:
        """The Feedback aggregate."""
        return self._get(Feedback, feedback_id, "feedback")

    def _feedback_scope(self, fb: Feedback) -> list[UUID | None]:
        return [fb.area_id]

    def assign_feedback(self, feedback_id: UUID, assignee: str, actor: Actor) -> None:
        """Hand a feedback item to someone to handle."""
        fb = self.feedback(feedback_id)
        self.authorise(actor, Role.OPERATOR, self._feedback_scope(fb))
        if self.principals.get(assignee) is None:
            raise NotFound(f"no principal {assignee!r}")
        fb.assign(assignee, actor)
        self.save(fb)

    def answer_feedback(self, feedback_id: UUID, text: str, actor: Actor) -> None:
        """Record the answer given to the citizen."""
        if not text or not text.strip():
            raise ValidationError("text", "the answer must not be empty")
        fb = self.feedback(feedback_id)
        self.authorise(actor, Role.OPERATOR, self._feedback_scope(fb))
        fb.respond(text.strip(), _now(), actor)
        self.save(fb)

    def close_feedback(self, feedback_id: UUID, actor: Actor) -> None:
        """Close a handled feedback item."""
        fb = self.feedback(feedback_id)
        self.authorise(actor, Role.OPERATOR, self._feedback_scope(fb))
        fb.close(_now(), actor)
        self.save(fb)

    # -- misc ----------------------------------------------------------------------------------

    def save_in_batches(self, aggregates: Iterable[TcsAggregate], size: int = 1000) -> int:
        """Save aggregates ``size`` per transaction; returns how many were saved."""
        n = 0
        it = iter(aggregates)
        while chunk := list(itertools.islice(it, size)):
            self.save(*chunk)
            n += len(chunk)
        return n

    def aggregate_ids(self) -> list[UUID]:
        """Ids of every aggregate with events in the store (for audits and tests)."""
        seen: dict[UUID, None] = {}
        start = 1
        while True:
            batch = self.recorder.select_notifications(start, 5000)
            if not batch:
                return list(seen)
            for n in batch:
                seen.setdefault(cast(UUID, n.originator_id), None)
            start = batch[-1].id + 1
