"""What the server keeps besides the ``SourceSystem``: an id index, helpers to read and authorise.

``ServerIndex`` lists what the core has no listing for (stations, facilities, feedback, every
broadcast, dispatches by broadcast). It reads the notification log by topic, incrementally, the
same way the core's projections do; details always come from the aggregates themselves.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import attrs

from tcs_core import AreaVersion, PermissionDenied, Role, SourceSystem
from tcs_core.scheduler import Scheduler

from .auth import CredentialStore, RateLimiter
from .config import ServerConfig

__all__ = ["ServerIndex", "State"]


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


class ServerIndex:
    """Ids by kind (in the order recorded), with their area, kept current from the log."""

    TOPICS = (
        "tcs.station.registered",
        "tcs.facility.established",
        "tcs.feedback.received",
        "tcs.broadcast.drafted",
        "tcs.dispatch.started",
    )

    def __init__(self) -> None:
        self.position = 0
        self.lock = threading.Lock()
        self.stations: dict[UUID, UUID] = {}  # id -> area id
        self.facilities: dict[UUID, UUID] = {}
        self.feedback: dict[UUID, UUID | None] = {}
        self.broadcasts: list[UUID] = []
        self.dispatches: dict[UUID, list[tuple[datetime, UUID]]] = defaultdict(list)

    def refresh(self, app: SourceSystem) -> None:
        """Apply what was recorded since the last look."""
        with self.lock:
            while True:
                batch = app.recorder.select_notifications(
                    start=self.position + 1, limit=2000, topics=self.TOPICS
                )
                if not batch:
                    break
                for n in batch:
                    self._apply(n.topic, app.mapper.to_domain_event(n))
                self.position = batch[-1].id

    def _apply(self, topic: str, e: Any) -> None:
        oid = e.originator_id
        if topic == "tcs.station.registered":
            self.stations[oid] = _uuid(e.area_id)
        elif topic == "tcs.facility.established":
            self.facilities[oid] = _uuid(e.area_id)
        elif topic == "tcs.feedback.received":
            self.feedback[oid] = None if e.area_id is None else _uuid(e.area_id)
        elif topic == "tcs.broadcast.drafted":
            self.broadcasts.append(oid)
        elif topic == "tcs.dispatch.started":
            occ = e.occurrence
            if isinstance(occ, str):
                occ = datetime.fromisoformat(occ)
            self.dispatches[_uuid(e.broadcast_id)].append((occ, oid))


@attrs.define
class State:
    """Everything a request handler needs."""

    system: SourceSystem
    config: ServerConfig
    creds: CredentialStore
    scheduler: Scheduler | None = None
    index: ServerIndex = attrs.field(factory=ServerIndex)
    login_limiter: RateLimiter | None = None
    token_limiter: RateLimiter | None = None
    bad_token_limiter: RateLimiter | None = None
    extras: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        c = self.config
        self.login_limiter = RateLimiter(c.login_burst, c.login_rate)
        self.token_limiter = RateLimiter(c.token_burst, c.token_rate)
        self.bad_token_limiter = RateLimiter(c.bad_token_burst, c.bad_token_rate)

    # -- reading ------------------------------------------------------------------------------

    def today(self) -> date:
        """Today in the deployment's zone."""
        return self.system.areas.day(datetime.now(UTC))

    def area_ref(self, area_id: UUID | None, at: date | None = None) -> dict[str, str] | None:
        """``{"id", "code", "name"}`` of an area as it was on ``at`` (default today; falls back
        to its last version if it no longer exists)."""
        if area_id is None:
            return None
        v = self.system.areas.version_at(area_id, at or self.today())
        if v is None:
            history = self.system.areas.history(area_id)
            if not history:
                return None
            v = history[-1]
        return {"id": str(v.area_id), "code": v.code, "name": v.name}

    def area_json(self, v: AreaVersion) -> dict[str, Any]:
        """An area version as the API shows it."""
        return {
            "id": str(v.area_id),
            "code": v.code,
            "name": v.name,
            "kind": v.kind.value,
            "parent": self.area_ref(v.parent_id, v.valid_from),
            "valid_from": v.valid_from.isoformat(),
            "valid_to": v.valid_to.isoformat() if v.valid_to else None,
        }

    # -- authorisation ------------------------------------------------------------------------

    def can(self, user: str, role: Role, areas: Iterable[UUID | None]) -> bool:
        """The core's ``authorise`` as a yes/no (read paths filter rather than refuse)."""
        try:
            self.system.authorise(user, role, list(areas))
        except PermissionDenied:
            return False
        return True

    def scope(self, user: str, role: Role = Role.VIEWER) -> list[UUID] | None:
        """The area ids whose subtrees ``user`` holds ``role`` over (None: every area)."""
        p = self.system.principals.get(user)
        if p is None or p.disabled:
            return []
        out: list[UUID] = []
        for g in p.roles_over(role):
            if g.area_id is None:
                return None
            out.append(g.area_id)
        return out

    def reaches(self, user: str, area_ids: Iterable[UUID], within: set[UUID] | None = None) -> bool:
        """True if a broadcast to ``area_ids`` concerns ``user``: a target lies in an area the
        user views (optionally also in ``within``), or contains one (a province-wide bulletin
        airs in every commune)."""
        targets = list(area_ids)
        scope = self.scope(user)
        day = self.today()
        areas = self.system.areas
        for t in targets:
            inside = scope is None or any(areas.is_within(t, g, day) for g in scope)
            if inside and (within is None or t in within):
                return True
            above = scope is not None and any(areas.is_within(g, t, day) for g in scope)
            if above and (within is None or any(areas.is_within(w, t, day) for w in within)):
                return True
        return False

    def visible_areas(self, user: str, code: str | None) -> set[UUID] | None:
        """Area ids a listing covers: the subtree of ``code`` (the user must be a viewer there),
        or every subtree the user views (None: no restriction)."""
        app = self.system
        day = self.today()
        if code is not None:
            v = app.area(code)
            app.authorise(user, Role.VIEWER, [v.area_id])
            return {a.area_id for a in app.areas.subtree(v.area_id, day)}
        scope = self.scope(user)
        if scope is None:
            return None
        out: set[UUID] = set()
        for aid in scope:
            out.update(a.area_id for a in app.areas.subtree(aid, day))
        return out
