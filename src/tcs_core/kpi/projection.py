"""The KPI projection: a timeline per station, facility, device, feedback item and dispatch.

``KpiProjection`` reads the application's notification log (only its own topics) and keeps what
an as-of query needs, so that "the indicators of Bình Định as of 14/12/2024" is a few dictionary
walks and binary searches, never a replay:

- **areas**: its own ``AreaIndex`` (the structure through time) and the sorted list of dates on
  which the structure changed, so that every day between two changes shares one cached
  "structure epoch" (see ``tcs_core.kpi.engine``);
- **stations**: per station the dates of its changes and its state after each (kind, condition,
  reach, closed); the state on a day is a ``bisect``;
- **facilities**: established / connected / closed dates (each happens once, in that order);
- **feedback**: received instant and the first instant it was answered or closed;
- **devices**: per device the instants of its status transitions; per area, all its devices
  merged into one step function with running totals of device-seconds online and observed
  (``AreaUptime``, rebuilt when one of them changed), so the availability of an area over any
  window is two binary searches;
- **dispatches**: per occurrence the targeted devices and their outcomes, and per area a daily
  ``Ledger`` (the occurrence's local day) of deliveries targeted / delivered / on time, airings
  targeted / aired, airtime and airings per category, with running totals.

Areas are referred to by small integer keys (``key``) in the hot loops: ints hash in C, UUIDs in
Python.

Catching up: ``catch_up(app)`` reads the notification log from ``position + 1`` with the
projection's topics, in batches, and records the position it reached. It works the same on
every store eventsourcing offers (POPO, SQLite, PostgreSQL): on SQLite this is one indexed
``SELECT ... WHERE id >= ? AND topic IN (...) ORDER BY id LIMIT ?`` per batch, so a projection
rebuilt from scratch reads the file once, and a warm one reads only what was written since.
``until=`` stops at a position: the indicators *as known* when the log ended there (e.g. what
the report filed on 14/12 showed), while ``as_of`` dates pick the *effective* time.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytz

from tcs_core.domain.values import DEFAULT_ZONE, Category
from tcs_core.projections import AreaIndex, Projection

if TYPE_CHECKING:
    from eventsourcing.persistence import Mapper, Notification

    from tcs_core.app import SourceSystem

__all__ = [
    "DeviceTimeline",
    "DispatchRecord",
    "FacilityRecord",
    "FeedbackRecord",
    "KpiProjection",
    "StationState",
    "StationTimeline",
]

# Device kinds that are not equipment of the system: an SMS subscriber is a citizen's phone,
# so its status never counts towards device availability.
_NOT_EQUIPMENT = frozenset({"sms_subscriber"})

# Station states are tuples (kind, condition, reaches_villages, closed).
StationState = tuple[str, str, bool, bool]

_WIRED_FM = frozenset({"wired", "fm"})
_FINAL = frozenset({"delivered", "failed"})


# ------------------------------------------------------------------------------------------
# Decoding helpers: a field may arrive typed (a live domain event, the transcoder) or raw
# (plain JSON of the transcoder's {"_type_", "_data_"} form, the fast path for hot topics).
# ------------------------------------------------------------------------------------------


_UNIX_DAY = date(1970, 1, 1).toordinal()


def _raw(value: Any) -> Any:
    if type(value) is dict and "_data_" in value:
        return value["_data_"]
    return value


def _epoch(value: Any) -> int:
    """Whole seconds since the epoch of an aware instant (datetime or ISO string)."""
    value = _raw(value)
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(value)
    return int(value.timestamp())


def _ordinal(value: Any) -> int:
    """Proleptic ordinal of a date (date or ISO string)."""
    value = _raw(value)
    if isinstance(value, datetime):
        return value.date().toordinal()
    if isinstance(value, date):
        return value.toordinal()
    return date.fromisoformat(value).toordinal()


def _sqlite_fast_path(app: SourceSystem) -> bool:
    """True when the store is eventsourcing's SQLite recorder with plain JSON events."""
    try:
        from eventsourcing.sqlite import SQLiteApplicationRecorder
    except ImportError:  # pragma: no cover - eventsourcing always ships it
        return False
    mapper = app.mapper
    return (
        isinstance(app.recorder, SQLiteApplicationRecorder)
        and getattr(mapper, "cipher", None) is None
        and getattr(mapper, "compressor", None) is None
        and isinstance(getattr(app.recorder, "events_table_name", None), str)
    )


def _received(rec: FeedbackRecord) -> int:
    return rec.received


class _Fields:
    """Attribute access over a decoded event's fields (what ``AreaIndex`` handlers expect)."""

    def __init__(self, originator_id: UUID, fields: Mapping[str, Any]) -> None:
        self.__dict__.update(fields)
        self.originator_id = originator_id


# ------------------------------------------------------------------------------------------
# Records
# ------------------------------------------------------------------------------------------


class StationTimeline:
    """A station's states through time: ``ords[i]`` is the day (ordinal) ``states[i]`` began."""

    __slots__ = (
        "area_id",
        "area_key",
        "commissioned_year",
        "converted",
        "id",
        "name",
        "ords",
        "states",
    )

    def __init__(
        self,
        station_id: UUID,
        name: str,
        area_id: UUID,
        commissioned_year: int,
        day: int,
        state: StationState,
    ) -> None:
        self.id = station_id
        self.name = name
        self.area_id = area_id
        self.area_key = -1  # the projection's integer key of the area (see KpiProjection.key)
        self.commissioned_year = commissioned_year
        self.ords: list[int] = [day]
        self.states: list[StationState] = [state]
        self.converted: int | None = None  # day (ordinal) of the conversion to IP

    def change(self, day: int, state: StationState) -> None:
        """Record the state from ``day`` on (days never go back: the aggregate enforces it)."""
        if day == self.ords[-1]:
            self.states[-1] = state
        elif day > self.ords[-1]:
            self.ords.append(day)
            self.states.append(state)
        else:  # not produced by the aggregate; keep the timeline sorted anyway
            i = bisect_right(self.ords, day)
            self.ords.insert(i, day)
            self.states.insert(i, state)

    def at(self, day: int) -> StationState | None:
        """The state on ``day`` (ordinal), or None if not registered yet."""
        i = bisect_right(self.ords, day) - 1
        return self.states[i] if i >= 0 else None

    def was_wired_or_fm(self, day: int) -> bool:
        """True if, on ``day``, the station existed, was wired or FM, and was not closed."""
        s = self.at(day)
        return s is not None and s[0] in _WIRED_FM and not s[3]

    def serves_villages(self, day: int) -> bool:
        """True if, on ``day``, the station worked down to the villages (radio_coverage)."""
        s = self.at(day)
        return s is not None and not s[3] and s[1] != "broken" and s[2]


class FacilityRecord:
    """A website, e-board, district board or source system: its dates as day ordinals."""

    __slots__ = (
        "area_id",
        "area_key",
        "closed",
        "connected",
        "established",
        "id",
        "kind",
        "name",
    )

    def __init__(
        self, facility_id: UUID, name: str, kind: str, area_id: UUID, established: int
    ) -> None:
        self.id = facility_id
        self.name = name
        self.kind = kind
        self.area_id = area_id
        self.area_key = -1  # the projection's integer key of the area (see KpiProjection.key)
        self.established = established
        self.connected: int | None = None
        self.closed: int | None = None

    def active(self, day: int) -> bool:
        """Established by ``day`` and not closed on or before it."""
        return self.established <= day and (self.closed is None or day < self.closed)

    def connected_on(self, day: int) -> bool:
        """Active and connected to the provincial source system on ``day``."""
        return self.active(day) and self.connected is not None and self.connected <= day


class FeedbackRecord:
    """A feedback item: where, when received, when first answered or closed (epoch seconds)."""

    __slots__ = ("area_id", "area_key", "handled", "id", "received")

    def __init__(self, feedback_id: UUID, area_id: UUID | None, received: int) -> None:
        self.id = feedback_id
        self.area_id = area_id
        self.area_key = -1  # the projection's integer key of the area (see KpiProjection.key)
        self.received = received
        self.handled: int | None = None


class DeviceTimeline:
    """A device's status transitions with running totals (seconds online / observed)."""

    __slots__ = (
        "_dirty",
        "area_id",
        "area_key",
        "channels",
        "cum_obs",
        "cum_on",
        "id",
        "kind",
        "name",
        "obs",
        "on",
        "times",
    )

    def __init__(
        self, device_id: UUID, name: str, kind: str, area_id: UUID, channels: tuple[str, ...]
    ) -> None:
        self.id = device_id
        self.name = name
        self.kind = kind
        self.area_id = area_id
        self.area_key = -1  # the projection's integer key of the area (see KpiProjection.key)
        self.channels = channels
        self.times: list[int] = []
        self.on: list[bool] = []
        self.obs: list[bool] = []
        self.cum_on: list[int] = []
        self.cum_obs: list[int] = []
        self._dirty = False

    def transition(self, at: int, online: bool, observed: bool) -> None:
        """Record a status from ``at`` (epoch seconds) on."""
        times = self.times
        if not times or at >= times[-1]:
            if times and at == times[-1]:
                self.on[-1], self.obs[-1] = online, observed
                self._dirty = True
                return
            if not self._dirty:
                if times:
                    span = at - times[-1]
                    self.cum_on.append(self.cum_on[-1] + (span if self.on[-1] else 0))
                    self.cum_obs.append(self.cum_obs[-1] + (span if self.obs[-1] else 0))
                else:
                    self.cum_on.append(0)
                    self.cum_obs.append(0)
            times.append(at)
            self.on.append(online)
            self.obs.append(observed)
            return
        i = bisect_right(times, at)  # out of order: insert and rebuild the totals lazily
        times.insert(i, at)
        self.on.insert(i, online)
        self.obs.insert(i, observed)
        self._dirty = True

    def _rebuild(self) -> None:
        on = obs = 0
        self.cum_on, self.cum_obs = [0], [0]
        for i in range(1, len(self.times)):
            span = self.times[i] - self.times[i - 1]
            on += span if self.on[i - 1] else 0
            obs += span if self.obs[i - 1] else 0
            self.cum_on.append(on)
            self.cum_obs.append(obs)
        self._dirty = False

    def seconds(self, start: int, end: int) -> tuple[int, int]:
        """(seconds online, seconds observed) within ``[start, end)``."""
        if self._dirty:
            self._rebuild()
        times = self.times
        if not times or end <= start or end <= times[0]:
            return 0, 0
        i = bisect_right(times, start) - 1
        j = bisect_right(times, end) - 1
        if i < 0:
            on_a = obs_a = 0
        else:
            d = start - times[i]
            on_a = self.cum_on[i] + (d if self.on[i] else 0)
            obs_a = self.cum_obs[i] + (d if self.obs[i] else 0)
        d = end - times[j]
        on_b = self.cum_on[j] + (d if self.on[j] else 0)
        obs_b = self.cum_obs[j] + (d if self.obs[j] else 0)
        return on_b - on_a, obs_b - obs_a


class AreaUptime:
    """The devices of one area together: how many were online / observed from each instant on,
    with running totals of device-seconds, so any window costs two binary searches."""

    __slots__ = ("_memo", "cum_obs", "cum_on", "n_obs", "n_on", "times")

    def __init__(self, devices: Iterable[DeviceTimeline]) -> None:
        changes: dict[int, list[int]] = {}
        for d in devices:
            on = obs = False
            for t, now_on, now_obs in zip(d.times, d.on, d.obs, strict=True):
                c = changes.setdefault(t, [0, 0])
                c[0] += int(now_on) - int(on)
                c[1] += int(now_obs) - int(obs)
                on, obs = now_on, now_obs
        self.times: list[int] = sorted(changes)
        self.n_on: list[int] = []
        self.n_obs: list[int] = []
        self.cum_on: list[int] = []
        self.cum_obs: list[int] = []
        self._memo: tuple[int, int, tuple[int, int]] = (0, 0, (0, 0))
        level_on = level_obs = total_on = total_obs = 0
        previous = None
        for t in self.times:
            if previous is not None:
                total_on += (t - previous) * level_on
                total_obs += (t - previous) * level_obs
            c = changes[t]
            level_on += c[0]
            level_obs += c[1]
            self.n_on.append(level_on)
            self.n_obs.append(level_obs)
            self.cum_on.append(total_on)
            self.cum_obs.append(total_obs)
            previous = t

    def seconds(self, start: int, end: int) -> tuple[int, int]:
        """(device-seconds online, device-seconds observed) within ``[start, end)``."""
        memo = self._memo
        if memo[0] == start and memo[1] == end:
            return memo[2]
        result = self._seconds(start, end)
        self._memo = (start, end, result)
        return result

    def _seconds(self, start: int, end: int) -> tuple[int, int]:
        times = self.times
        if not times or end <= start or end <= times[0]:
            return 0, 0
        i = bisect_right(times, start) - 1
        j = bisect_right(times, end) - 1
        if i < 0:
            on_a = obs_a = 0
        else:
            d = start - times[i]
            on_a = self.cum_on[i] + d * self.n_on[i]
            obs_a = self.cum_obs[i] + d * self.n_obs[i]
        d = end - times[j]
        return (
            self.cum_on[j] + d * self.n_on[j] - on_a,
            self.cum_obs[j] + d * self.n_obs[j] - obs_a,
        )


class DispatchRecord:
    """One occurrence: its broadcast, instant, and per device ``[status, at, reason, area key]``."""

    __slots__ = (
        "aired",
        "areas",
        "broadcast_id",
        "category",
        "day",
        "duration",
        "id",
        "index",
        "occurrence",
        "rows",
    )

    def __init__(
        self, dispatch_id: UUID, index: int, broadcast_id: UUID, occurrence: int, day: int
    ) -> None:
        self.id = dispatch_id
        self.index = index
        self.broadcast_id = broadcast_id
        self.occurrence = occurrence
        self.day = day
        self.rows: dict[str, list[Any]] = {}
        self.areas: tuple[int, ...] = ()  # area keys of the targeted devices (-1: unknown)
        self.aired: dict[int, int] = {}  # area key -> first delivery there (epoch seconds)
        self.duration = 300  # the broadcast's duration (s) and category when dispatched
        self.category = "other"


#: Columns of the per-area daily ledger of dispatches (see ``Ledger``).
TARGETED, DELIVERED, ON_TIME, AIRINGS_TARGETED, AIRED, AIRTIME = range(6)
CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
_CATEGORY_COLUMN = {c: 6 + i for i, c in enumerate(CATEGORIES)}
LEDGER_WIDTH = 6 + len(CATEGORIES)


class Ledger:
    """Per day (ordinal, the occurrence's local day) counters of one area, with lazy running
    totals: deliveries targeted / delivered / on time (dispatch × device), airings targeted /
    aired (dispatch × area), airtime seconds, and airings per category (NĐ 49/2024)."""

    __slots__ = ("_cum", "_days", "_memo", "counts")

    def __init__(self) -> None:
        self.counts: dict[int, list[int]] = {}
        self._days: list[int] | None = None
        self._cum: list[list[int]] = []
        self._memo: tuple[int, int, list[int]] | None = None

    def add(self, day: int, column: int, amount: int = 1) -> None:
        c = self.counts.get(day)
        if c is None:
            c = self.counts[day] = [0] * LEDGER_WIDTH
        c[column] += amount
        self._days = None
        self._memo = None

    def between(self, first: int, last: int) -> list[int]:
        """Totals over the days ``first`` to ``last`` (ordinals, both included). The last
        answer is remembered until the ledger changes; do not modify the list returned."""
        memo = self._memo
        if memo is not None and memo[0] == first and memo[1] == last:
            return memo[2]
        if self._days is None:
            self._days = sorted(self.counts)
            total = [0] * LEDGER_WIDTH
            self._cum = [total]
            for day in self._days:
                total = [a + b for a, b in zip(total, self.counts[day], strict=True)]
                self._cum.append(total)
        i = bisect_right(self._days, first - 1)
        j = bisect_right(self._days, last)
        if i == j:
            result = [0] * LEDGER_WIDTH
        else:
            a, b = self._cum[i], self._cum[j]
            result = [y - x for x, y in zip(a, b, strict=True)]
        self._memo = (first, last, result)
        return result


# ------------------------------------------------------------------------------------------
# The projection
# ------------------------------------------------------------------------------------------

_STATION = (
    "tcs.station.registered",
    "tcs.station.condition_changed",
    "tcs.station.converted_to_ip",
    "tcs.station.closed",
)
_FACILITY = ("tcs.facility.established", "tcs.facility.connected", "tcs.facility.closed")
_FEEDBACK = ("tcs.feedback.received", "tcs.feedback.answered", "tcs.feedback.closed")
_DEVICE = (
    "tcs.device.status_changed",  # by far the most frequent: first, for the POPO topic filter
    "tcs.device.registered",
    "tcs.device.moved",
    "tcs.device.configured",
    "tcs.device.decommissioned",
)
_BROADCAST = ("tcs.broadcast.drafted", "tcs.broadcast.revised")
_DISPATCH = ("tcs.dispatch.outcomes_recorded", "tcs.dispatch.started")
# Topics decoded as plain JSON (no transcoder hooks): the handlers read every field through
# ``_raw`` / ``_epoch`` / ``_ordinal`` / ``_uuid``, which accept both forms. Only the area events
# go through the transcoder, because ``AreaIndex`` expects typed values.
_RAW_TOPICS = frozenset((*_STATION, *_FACILITY, *_FEEDBACK, *_DEVICE, *_BROADCAST, *_DISPATCH))

Handler = Callable[[UUID, Mapping[str, Any]], None]


class KpiProjection(Projection):
    """Timelines of everything the indicators count; see the module docstring.

    Feed it either with ``catch_up(app)`` (reads the notification log from ``position``) or,
    live, with ``apply(topic, domain_event)``; not both on the same instance, or events would
    be applied twice.
    """

    topics = (
        *_DEVICE,
        *_DISPATCH,
        *AreaIndex.topics,
        *_STATION,
        *_FACILITY,
        *_FEEDBACK,
        *_BROADCAST,
    )

    def __init__(
        self, zone: str = DEFAULT_ZONE, on_time_within: timedelta = timedelta(seconds=60)
    ) -> None:
        # Not Projection.__init__: it maps handlers by the topic's last word, and several
        # aggregates share last words here ("closed", "registered"). Same attributes, though.
        self.lock = threading.RLock()
        self.changes = 0
        self.zone = zone
        self._tz = pytz.timezone(zone)
        self.on_time_within_s = int(on_time_within.total_seconds())
        self.position = 0
        self.areas = AreaIndex(zone)
        self.structure_dates: list[int] = []  # sorted ordinals of area changes
        self.structure_changes = 0
        self.stations: dict[UUID, StationTimeline] = {}
        self.facilities: dict[UUID, FacilityRecord] = {}
        self.feedback: dict[UUID, FeedbackRecord] = {}
        self.devices: dict[UUID, DeviceTimeline] = {}
        self._device_by_hex: dict[str, DeviceTimeline] = {}
        self.broadcasts: dict[UUID, tuple[str, str, int]] = {}  # title, category, duration_s
        self.dispatches: dict[UUID, DispatchRecord] = {}
        self.dispatch_list: list[DispatchRecord] = []
        self._dispatch_sorted: list[tuple[int, int]] | None = []  # (occurrence, index)
        # Areas by small integer keys: the engine's hot loops hash ints (in C), not UUIDs.
        self._ids: dict[str, UUID] = {}  # parsed id texts (areas, broadcasts)
        self._offsets: dict[int, int] = {}  # UTC hour -> the zone's offset then (seconds)
        self.area_keys: dict[UUID, int] = {}
        self.area_ids: list[UUID] = []
        # Per area key (-1: a device of no known area): the daily ledger of dispatches, and the
        # airings whose first delivery came on a later day than the occurrence.
        self.ledgers: defaultdict[int, Ledger] = defaultdict(Ledger)
        self.late_airings: list[tuple[int, int]] = []  # (dispatch index, area key)
        self.facilities_by_kind: defaultdict[str, list[FacilityRecord]] = defaultdict(list)
        self.devices_by_area: defaultdict[int, list[DeviceTimeline]] = defaultdict(list)
        self._uptime: dict[int, AreaUptime] = {}
        self.uptime_dirty: set[int] = set()  # area keys whose devices changed since built
        self._feedback_sorted: list[FeedbackRecord] | None = []
        self._handlers_by_topic = self._handler_table()

    def _handler_table(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
            "tcs.station.registered": self._station_registered,
            "tcs.station.condition_changed": self._station_condition,
            "tcs.station.converted_to_ip": self._station_converted,
            "tcs.station.closed": self._station_closed,
            "tcs.facility.established": self._facility_established,
            "tcs.facility.connected": self._facility_connected,
            "tcs.facility.closed": self._facility_closed,
            "tcs.feedback.received": self._feedback_received,
            "tcs.feedback.answered": self._feedback_handled,
            "tcs.feedback.closed": self._feedback_handled,
            "tcs.device.registered": self._device_registered,
            "tcs.device.moved": self._device_moved,
            "tcs.device.configured": self._device_configured,
            "tcs.device.status_changed": self._device_status,
            "tcs.device.decommissioned": self._device_decommissioned,
            "tcs.broadcast.drafted": self._broadcast_fields,
            "tcs.broadcast.revised": self._broadcast_fields,
            "tcs.dispatch.started": self._dispatch_started,
            "tcs.dispatch.outcomes_recorded": self._dispatch_outcomes,
        }
        for topic in AreaIndex.topics:
            handlers[topic] = self._area_event(topic)
        missing = set(self.topics) - set(handlers)
        assert not missing, missing
        return handlers

    # Checkpoints (tcs_core.checkpoints) pickle the state: everything but the lock and handlers.
    def __getstate__(self) -> dict[str, Any]:
        with self.lock:
            skip = ("lock", "_handlers_by_topic")
            return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()
        self._handlers_by_topic = self._handler_table()

    # -- feeding -------------------------------------------------------------------------------

    def apply(self, topic: str, event: Any) -> None:
        """Apply one live domain event whose stored topic is ``topic`` (others are ignored)."""
        handler = self._handlers_by_topic.get(topic)
        if handler is not None:
            with self.lock:
                handler(event.originator_id, vars(event))
                self.changes += 1

    def catch_up(self, app: SourceSystem, until: int | None = None, batch: int = 10_000) -> int:
        """Apply the events recorded since ``position`` (up to ``until``); returns how many.

        On the embedded SQLite store (eventsourcing's ``SQLiteApplicationRecorder``, events
        neither compressed nor encrypted) the log is read with one plain query per batch and
        the frequent device transitions are parsed without building event objects; any other
        store goes through ``select_notifications`` and the mapper. Both give the same state.
        """
        recorder = app.recorder
        top = recorder.max_notification_id() or 0
        if until is not None:
            top = min(top, until)
        with self.lock:
            if self.position >= top:
                return 0
            if _sqlite_fast_path(app):
                applied = self._catch_up_sqlite(app, top, batch)
            else:
                applied = self._catch_up_generic(app, top, batch)
            self.position = max(self.position, top)
            self.changes += applied
        return applied

    def _catch_up_generic(self, app: SourceSystem, top: int, batch: int) -> int:
        recorder = app.recorder
        decode = self._decoder(app.mapper)
        handlers = self._handlers_by_topic
        topics = list(self.topics)
        applied = 0
        while self.position < top:
            notes = recorder.select_notifications(
                self.position + 1, batch, stop=top, topics=topics, inclusive_of_start=True
            )
            if not notes:
                break
            for n in notes:
                oid = n.originator_id
                handlers[n.topic](oid if isinstance(oid, UUID) else UUID(oid), decode(n))
            applied += len(notes)
            self.position = notes[-1].id
        return applied

    def _catch_up_sqlite(self, app: SourceSystem, top: int, batch: int) -> int:
        recorder: Any = app.recorder
        table = recorder.events_table_name
        topics = list(self.topics)
        # The table name is the recorder's own; the topics are bound parameters.
        marks = ",".join("?" * len(topics))
        sql = f"SELECT rowid, originator_id, topic, state FROM {table} WHERE rowid>? AND rowid<=? AND topic IN ({marks}) ORDER BY rowid LIMIT ?"  # noqa: S608, E501
        handlers = self._handlers_by_topic
        transcode = app.mapper.transcoder.decode
        loads = json.loads
        raw_topics = _RAW_TOPICS
        status_topic = "tcs.device.status_changed"
        devices = self.devices
        fromisoformat = datetime.fromisoformat
        by_text: dict[str, DeviceTimeline] = {}
        dirty_add = self.uptime_dirty.add  # str keys hash in C; UUIDs hash in Python
        uuids: dict[str, UUID] = {}
        applied = 0
        while self.position < top:
            with recorder.datastore.transaction(commit=False) as c:
                cursor = c.sqlite_cursor
                cursor.row_factory = None  # plain tuples
                cursor.execute(sql, [self.position, top, *topics, batch])
                rows = cursor.fetchall()
            if not rows:
                break
            for _, oid, topic, state in rows:
                if topic == status_topic:
                    # '..."status":"online","reason":"...","at":{..."_data_":"<ISO>"},...'; a
                    # quote inside a JSON string is escaped, so these markers are unambiguous.
                    i = state.find(b'"status":"')
                    k = state.find(b'"at":{"_type_":"datetime_iso","_data_":"', i)
                    if i >= 0 and k >= 0:
                        status = state[i + 10 : state.find(b'"', i + 10)]
                        at_text = state[k + 40 : state.find(b'"', k + 40)]
                        at = int(fromisoformat(at_text.decode()).timestamp())
                        online = status == b"online"
                        observed = status not in (b"unknown", b"maintenance")
                        dev = by_text.get(oid)
                        if dev is None:
                            dev = by_text[oid] = devices[UUID(oid)]
                        dirty_add(dev.area_key)
                        times = dev.times
                        if times and at > times[-1]:  # the usual case: append, totals later
                            times.append(at)
                            dev.on.append(online)
                            dev.obs.append(observed)
                            dev._dirty = True
                        else:
                            dev.transition(at, online, observed)
                        continue
                uid = uuids.get(oid)
                if uid is None:
                    uid = uuids[oid] = UUID(oid)
                fields = loads(state) if topic in raw_topics else transcode(state)
                handlers[topic](uid, fields)
            applied += len(rows)
            self.position = rows[-1][0]
        return applied

    def _decoder(self, mapper: Mapper[UUID]) -> Callable[[Notification], Mapping[str, Any]]:
        plain = (
            getattr(mapper, "cipher", None) is None and getattr(mapper, "compressor", None) is None
        )
        transcoder = mapper.transcoder
        loads = json.loads
        raw_topics = _RAW_TOPICS

        def decode(n: Notification) -> Mapping[str, Any]:
            if plain:
                if n.topic in raw_topics:
                    return loads(n.state)  # type: ignore[no-any-return]
                return transcoder.decode(n.state)  # type: ignore[no-any-return]
            return vars(mapper.to_domain_event(n))

        return decode

    # -- areas ---------------------------------------------------------------------------------

    def _id(self, value: Any) -> UUID:
        """An id field (UUID, hex text, or the transcoder's raw form), parsed once per text."""
        value = _raw(value)
        if isinstance(value, UUID):
            return value
        found = self._ids.get(value)
        if found is None:
            found = self._ids[value] = UUID(value)
        return found

    def key(self, area_id: UUID) -> int:
        """The small integer standing for ``area_id`` (assigned on first sight, never reused)."""
        k = self.area_keys.get(area_id)
        if k is None:
            k = self.area_keys[area_id] = len(self.area_ids)
            self.area_ids.append(area_id)
        return k

    def _area_event(self, topic: str) -> Handler:
        def handle(originator_id: UUID, fields: Mapping[str, Any]) -> None:
            self.areas.apply(topic, _Fields(originator_id, fields))
            day = _ordinal(fields["effective"])
            i = bisect_right(self.structure_dates, day)
            if i == 0 or self.structure_dates[i - 1] != day:
                self.structure_dates.insert(i, day)
            self.structure_changes += 1

        return handle

    # -- stations ------------------------------------------------------------------------------

    def _station_registered(self, sid: UUID, f: Mapping[str, Any]) -> None:
        state: StationState = (
            str(_raw(f["kind"])),
            str(_raw(f["condition"])),
            bool(f["reaches_villages"]),
            False,
        )
        st = self.stations[sid] = StationTimeline(
            sid,
            f["name"],
            self._id(f["area_id"]),
            int(f["commissioned_year"]),
            _ordinal(f["effective"]),
            state,
        )
        st.area_key = self.key(st.area_id)

    def _station_condition(self, sid: UUID, f: Mapping[str, Any]) -> None:
        s = self.stations[sid]
        kind, _, _, closed = s.states[-1]
        s.change(
            _ordinal(f["effective"]),
            (kind, str(_raw(f["condition"])), bool(f["reaches_villages"]), closed),
        )

    def _station_converted(self, sid: UUID, f: Mapping[str, Any]) -> None:
        s = self.stations[sid]
        _, condition, reaches, closed = s.states[-1]
        day = _ordinal(f["effective"])
        s.change(day, ("ip", condition, reaches, closed))
        s.converted = day

    def _station_closed(self, sid: UUID, f: Mapping[str, Any]) -> None:
        s = self.stations[sid]
        kind, condition, reaches, _ = s.states[-1]
        s.change(_ordinal(f["effective"]), (kind, condition, reaches, True))

    # -- facilities ----------------------------------------------------------------------------

    def _facility_established(self, fid: UUID, f: Mapping[str, Any]) -> None:
        rec = self.facilities[fid] = FacilityRecord(
            fid, f["name"], str(_raw(f["kind"])), self._id(f["area_id"]), _ordinal(f["effective"])
        )
        rec.area_key = self.key(rec.area_id)
        self.facilities_by_kind[rec.kind].append(rec)

    def _facility_connected(self, fid: UUID, f: Mapping[str, Any]) -> None:
        self.facilities[fid].connected = _ordinal(f["effective"])

    def _facility_closed(self, fid: UUID, f: Mapping[str, Any]) -> None:
        self.facilities[fid].closed = _ordinal(f["effective"])

    # -- feedback ------------------------------------------------------------------------------

    def _feedback_received(self, fid: UUID, f: Mapping[str, Any]) -> None:
        rec = self.feedback[fid] = FeedbackRecord(
            fid,
            None if _raw(f.get("area_id")) is None else self._id(f["area_id"]),
            _epoch(f["received_at"]),
        )
        rec.area_key = -1 if rec.area_id is None else self.key(rec.area_id)
        ordered = self._feedback_sorted
        if ordered is not None:
            if ordered and rec.received < ordered[-1].received:
                self._feedback_sorted = None
            else:
                ordered.append(rec)

    def _feedback_handled(self, fid: UUID, f: Mapping[str, Any]) -> None:
        rec = self.feedback.get(fid)
        if rec is None:
            return
        at = _epoch(f["at"])
        if rec.handled is None or at < rec.handled:
            rec.handled = at

    # -- devices -------------------------------------------------------------------------------

    def _device_registered(self, did: UUID, f: Mapping[str, Any]) -> None:
        d = DeviceTimeline(
            did,
            f["name"],
            str(_raw(f["kind"])),
            self._id(f["area_id"]),
            tuple(str(_raw(c)) for c in f["channels"]),
        )
        d.area_key = self.key(d.area_id)
        if d.kind not in _NOT_EQUIPMENT:
            self.devices_by_area[d.area_key].append(d)
        self.devices[did] = d
        self._device_by_hex[did.hex] = d

    def _device_moved(self, did: UUID, f: Mapping[str, Any]) -> None:
        d = self.devices[did]
        counted = d.kind not in _NOT_EQUIPMENT
        if counted:
            self.devices_by_area[d.area_key].remove(d)
            self.uptime_dirty.add(d.area_key)
        d.area_id = self._id(f["area_id"])
        d.area_key = self.key(d.area_id)
        if counted:
            self.devices_by_area[d.area_key].append(d)
            self.uptime_dirty.add(d.area_key)

    def _device_configured(self, did: UUID, f: Mapping[str, Any]) -> None:
        self.devices[did].channels = tuple(str(_raw(c)) for c in f["channels"])

    def _device_status(self, did: UUID, f: Mapping[str, Any]) -> None:
        status = _raw(f["status"])
        self.uptime_dirty.add(self.devices[did].area_key)
        self.devices[did].transition(
            _epoch(f["at"]), status == "online", status not in ("unknown", "maintenance")
        )

    def _device_decommissioned(self, did: UUID, f: Mapping[str, Any]) -> None:
        # The event carries no effective instant: the time it was recorded ends the observation.
        self.uptime_dirty.add(self.devices[did].area_key)
        self.devices[did].transition(_epoch(f["timestamp"]), False, False)

    # -- broadcasts and dispatches -------------------------------------------------------------

    def _broadcast_fields(self, bid: UUID, f: Mapping[str, Any]) -> None:
        schedule = f["schedule"]
        duration = getattr(schedule, "duration_s", None)
        if duration is None and isinstance(schedule, Mapping):
            duration = _raw(schedule).get("duration_s", 300)
        self.broadcasts[bid] = (f["title"], str(_raw(f["category"])), int(duration or 300))

    def local_day(self, epoch: int) -> int:
        """The local calendar day (ordinal) of an instant (the zone's offset cached per hour)."""
        hour = epoch // 3600
        offset = self._offsets.get(hour)
        if offset is None:
            local = datetime.fromtimestamp(hour * 3600, self._tz)
            delta = local.utcoffset()
            offset = self._offsets[hour] = int(delta.total_seconds()) if delta else 0
        return (epoch + offset) // 86400 + _UNIX_DAY

    def local_midnight(self, day: date) -> int:
        """Epoch seconds of the local midnight that starts ``day``."""
        naive = datetime(day.year, day.month, day.day)
        return int(self._tz.localize(naive).timestamp())

    def _dispatch_started(self, did: UUID, f: Mapping[str, Any]) -> None:
        occ = _epoch(f["occurrence"])
        rec = DispatchRecord(
            did, len(self.dispatch_list), self._id(f["broadcast_id"]), occ, self.local_day(occ)
        )
        self.dispatches[did] = rec
        self.dispatch_list.append(rec)
        if self._dispatch_sorted is not None:
            if self._dispatch_sorted and occ < self._dispatch_sorted[-1][0]:
                self._dispatch_sorted = None
            else:
                self._dispatch_sorted.append((occ, rec.index))
        per_area: dict[int, int] = defaultdict(int)
        by_hex = self._device_by_hex
        for key in f["device_ids"]:
            dev = by_hex.get(key)
            area = dev.area_key if dev is not None else -1
            rec.rows[key] = [None, None, "", area]
            per_area[area] += 1
        rec.areas = tuple(per_area)
        _, rec.category, rec.duration = self.broadcast_of(rec)
        for area, n in per_area.items():
            ledger = self.ledgers[area]
            ledger.add(rec.day, TARGETED, n)
            ledger.add(rec.day, AIRINGS_TARGETED)

    def _dispatch_outcomes(self, did: UUID, f: Mapping[str, Any]) -> None:
        rec = self.dispatches.get(did)
        if rec is None:
            return
        rows = rec.rows
        window = self.on_time_within_s
        delivered: dict[int, list[int]] = {}
        for key, status, at, reason in f["rows"]:
            row = rows.get(key)
            if row is None or row[0] in _FINAL:
                continue
            t = _epoch(at)
            row[0], row[1], row[2] = status, t, reason
            if status == "delivered":
                c = delivered.get(row[3])
                if c is None:
                    c = delivered[row[3]] = [0, 0, t]
                c[0] += 1
                if t - rec.occurrence <= window:
                    c[1] += 1
                if t < c[2]:
                    c[2] = t
        for area, (n, on_time, first) in delivered.items():
            ledger = self.ledgers[area]
            ledger.add(rec.day, DELIVERED, n)
            if on_time:
                ledger.add(rec.day, ON_TIME, on_time)
            known = rec.aired.get(area)
            if known is None:
                rec.aired[area] = first
                ledger.add(rec.day, AIRED)
                ledger.add(rec.day, AIRTIME, rec.duration)
                ledger.add(rec.day, _CATEGORY_COLUMN.get(rec.category, LEDGER_WIDTH - 1))
                if self.local_day(first) > rec.day:
                    self.late_airings.append((rec.index, area))
            elif first < known:
                rec.aired[area] = first

    # -- queries used by the engine ------------------------------------------------------------

    def uptime(self, area: int) -> AreaUptime:
        """The devices of area key ``area`` together (rebuilt when one of them changed)."""
        found = self._uptime.get(area)
        if found is None or area in self.uptime_dirty:
            found = self._uptime[area] = AreaUptime(self.devices_by_area.get(area, ()))
            self.uptime_dirty.discard(area)
        return found

    def feedback_between(self, start: int, end: int) -> list[FeedbackRecord]:
        """Feedback received in ``[start, end)`` (epoch seconds)."""
        if self._feedback_sorted is None:
            self._feedback_sorted = sorted(self.feedback.values(), key=lambda r: r.received)
        ordered = self._feedback_sorted
        lo = bisect_left(ordered, start, key=_received)
        hi = bisect_left(ordered, end, lo, key=_received)
        return ordered[lo:hi]

    def dispatches_between(self, start: int, end: int) -> Iterable[DispatchRecord]:
        """Dispatches whose occurrence lies in ``[start, end)`` (epoch seconds), in time order."""
        if self._dispatch_sorted is None:
            self._dispatch_sorted = sorted((d.occurrence, d.index) for d in self.dispatch_list)
        ordered = self._dispatch_sorted
        i = bisect_right(ordered, (start, -1))
        for occ, index in ordered[i:]:
            if occ >= end:
                break
            yield self.dispatch_list[index]

    def broadcast_of(self, rec: DispatchRecord) -> tuple[str, str, int]:
        """(title, category, duration in seconds) of the dispatch's broadcast."""
        return self.broadcasts.get(rec.broadcast_id, ("?", "other", 300))

    def device_of_hex(self, key: str) -> DeviceTimeline | None:
        """The device whose id has this hex form."""
        return self._device_by_hex.get(key)
