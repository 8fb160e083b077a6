"""Property-based tests: aggregates replay identically, values survive the store, areas stay sane.

Driven by ``tcs_core.testing.strategies``; example counts come from the Hypothesis profile
(``HYPOTHESIS_PROFILE``, default ``ci``: 60 examples). SQLite databases live in ``tempfile``
directories made per example, since Hypothesis examples must not share function-scoped fixtures.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
import pytest
from eventsourcing.domain import event
from eventsourcing.persistence import Mapper
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from tcs_core import (
    SYSTEM,
    Area,
    AreaKind,
    Broadcast,
    Channel,
    Device,
    Dispatch,
    Facility,
    Feedback,
    FeedbackStatus,
    Permission,
    Preemption,
    Principal,
    Priority,
    RoleGrant,
    Settings,
    SourceSystem,
    Station,
    StationKind,
)
from tcs_core.domain.area import area_id
from tcs_core.domain.base import TcsAggregate
from tcs_core.domain.broadcast import TRANSITIONS
from tcs_core.domain.device import validate_settings
from tcs_core.domain.discovered import DiscoveredDevice
from tcs_core.domain.principal import principal_id, validate_username
from tcs_core.testing import strategies as tst
from tcs_core.testing.fixtures import (
    ADMIN,
    APPROVER_C1,
    APPROVER_P1,
    OPERATOR_C1,
    SMALL_PROVINCE_AREAS,
    SMALL_PROVINCE_SINCE,
    build_small_province,
    make_settings,
)
from tcs_core.testing.strategies import (
    AreaModel,
    AreaOp,
    BroadcastDraft,
    CreateArea,
    DissolveArea,
    apply_history,
)

PERSISTENCES = ("popo", "sqlite")

CODES = [code for code, *_ in SMALL_PROVINCE_AREAS]
C1_CODES = frozenset({"C1", "V11", "V12"})
PRINCIPALS = (ADMIN, OPERATOR_C1, APPROVER_C1, APPROVER_P1)

# Strategies built once (building them per draw is what makes Hypothesis slow).
DRAFTS = tst.broadcast_drafts(CODES)
SHORT_TEXT = tst.vietnamese_text(1, 6, 120)
REASONS = tst.vietnamese_text(1, 5, 100)
AFTER_SINCE = tst.aware_datetimes(min_value=datetime(2025, 7, 2), max_value=datetime(2032, 1, 1))
GAPS = st.integers(0, 400)
NEW_USERNAMES = tst.usernames().filter(lambda u: u not in PRINCIPALS)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


class TrackingSystem(SourceSystem):
    """A SourceSystem that remembers the in-memory (live) state of every aggregate it saves."""

    name = SourceSystem.name  # same tables and environment as the real application

    def __init__(self, settings: Settings) -> None:
        self.live: dict[UUID, TcsAggregate] = {}
        super().__init__(settings)

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        recordings = super().save(*objs, **kwargs)
        for obj in objs:
            if isinstance(obj, TcsAggregate):
                self.live[obj.id] = obj
        return recordings


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory, in RAM when possible (SQLite's fsyncs dominate on a real disk)."""
    shm = Path("/dev/shm")
    fast = shm.is_dir() and os.access(shm, os.W_OK)
    return tempfile.TemporaryDirectory(prefix="tcs-prop-", dir=shm if fast else None)


@contextmanager
def province(persistence: str) -> Iterator[TrackingSystem]:
    """A TrackingSystem with the admin and the small province, on popo or a temporary SQLite."""
    with scratch_dir() as tmp:
        app = TrackingSystem(make_settings(persistence, tmp))
        try:
            app.bootstrap_admin(ADMIN)
            build_small_province(app)
            yield app
        finally:
            app.close()


def assert_same(a: Any, b: Any, path: str = "value") -> None:
    """Deep equality that also requires equal types (an enum member is not its string)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if attrs.has(type(a)):
        for f in attrs.fields(type(a)):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        keys_b = {k: k for k in b}
        for k, v in a.items():
            assert_same(k, keys_b[k], f"{path} key {k!r}")
            assert_same(v, b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, set | frozenset):
        assert a == b, f"{path}: {a!r} != {b!r}"
        by_value = {x: x for x in b}
        for x in a:
            assert_same(x, by_value[x], f"{path} member {x!r}")
    elif isinstance(a, datetime):
        assert a == b, f"{path}: {a!r} != {b!r}"
        assert a.utcoffset() == b.utcoffset(), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def assert_replays_identically(app: TrackingSystem, aggregate_id: UUID) -> None:
    """Replayed from events, and again from a snapshot, the aggregate equals the live one."""
    live = app.live[aggregate_id]
    what = f"{type(live).__name__} {aggregate_id}"
    replayed = app.repository.get(aggregate_id)
    assert replayed.__dict__ == live.__dict__, f"{what} replayed from events"
    assert_same(live.__dict__, replayed.__dict__, f"{what} (events)")
    app.take_snapshot(aggregate_id)
    restored = app.repository.get(aggregate_id)
    assert restored.__dict__ == live.__dict__, f"{what} restored from a snapshot"
    assert_same(live.__dict__, restored.__dict__, f"{what} (snapshot)")


def later(data: st.DataObject, day: date) -> date:
    """A day on or after ``day`` (effective dates never go back)."""
    return day + timedelta(days=data.draw(GAPS))


def special(b: Broadcast) -> bool:
    """Whether submitting or approving the broadcast needs a special permission."""
    return b.priority is Priority.EMERGENCY or Channel.SMS in b.targets.channels


def author_for(draft: BroadcastDraft) -> str:
    """The least-privileged small-province principal allowed to draft and submit ``draft``."""
    if draft.special_permissions or not set(draft.targets.areas) <= C1_CODES:
        return APPROVER_P1
    return OPERATOR_C1


# ----------------------------------------------------------------------------------------------
# Command drivers: random valid command sequences, one aggregate type each
# ----------------------------------------------------------------------------------------------


def drive_areas(app: TrackingSystem, data: st.DataObject) -> None:
    apply_history(app, data.draw(tst.area_histories(max_initial=5, max_changes=8)), ADMIN)


def drive_device(app: TrackingSystem, data: st.DataObject) -> None:
    draw = data.draw
    did = app.register_device(
        draw(SHORT_TEXT),
        draw(tst.device_kinds()),
        area=draw(st.sampled_from(CODES)),
        transport=draw(st.sampled_from(("ip_speaker", "board_http", "sms_smpp", "sip"))),
        address=draw(st.sampled_from(("10.0.0.7", "sip:loa1@xa.example.vn", "+84912345678"))),
        channels=draw(tst.channel_sets()),
        settings=draw(tst.device_settings()),
        groups=draw(st.lists(tst.group_names(), max_size=3)),
        actor=ADMIN,
    )
    for step in draw(st.lists(st.sampled_from(("status", "configure", "move", "end")), max_size=8)):
        if step == "status":
            app.set_device_status(
                did, draw(tst.device_statuses()), draw(REASONS), at=draw(AFTER_SINCE), actor=ADMIN
            )
        elif step == "configure":
            d = app.device(did)
            d.configure(
                address=draw(st.sampled_from(("10.0.0.8", "10.0.0.9"))),
                settings=draw(tst.device_settings()),
                channels=draw(tst.channel_sets()),
                groups=draw(st.lists(tst.group_names(), max_size=3)),
                actor=ADMIN,
            )
            app.save(d)
        elif step == "move":
            d = app.device(did)
            d.move(app.area(draw(st.sampled_from(CODES))).area_id, ADMIN)
            app.save(d)
        else:
            app.decommission_device(did, draw(REASONS), ADMIN)
            return


def drive_station(app: TrackingSystem, data: st.DataObject) -> None:
    draw = data.draw
    day = later(data, SMALL_PROVINCE_SINCE)
    kind = draw(tst.station_kinds())
    sid = app.register_station(
        draw(SHORT_TEXT),
        area=draw(st.sampled_from(CODES)),
        kind=kind,
        commissioned_year=draw(st.integers(1945, 2100)),
        condition=draw(tst.conditions()),
        reaches_villages=draw(st.booleans()),
        effective=day,
        actor=ADMIN,
    )
    for step in draw(st.lists(st.sampled_from(("assess", "convert", "close")), max_size=6)):
        day = later(data, day)
        if step == "assess":
            app.assess_station(
                sid,
                draw(tst.conditions()),
                reaches_villages=draw(st.booleans()),
                effective=day,
                actor=ADMIN,
            )
        elif step == "convert" and kind is not StationKind.IP:
            app.convert_station(sid, effective=day, actor=ADMIN)
            kind = StationKind.IP
        elif step == "close":
            s = app.station(sid)
            s.close(day, ADMIN)
            app.save(s)
            return


def drive_facility(app: TrackingSystem, data: st.DataObject) -> None:
    draw = data.draw
    day = later(data, SMALL_PROVINCE_SINCE)
    fid = app.establish_facility(
        draw(SHORT_TEXT),
        draw(tst.facility_kinds()),
        area=draw(st.sampled_from(CODES)),
        effective=day,
        actor=ADMIN,
    )
    connected = False
    for step in draw(st.lists(st.sampled_from(("connect", "close")), max_size=4)):
        day = later(data, day)
        if step == "connect" and not connected:
            app.connect_facility(fid, effective=day, actor=ADMIN)
            connected = True
        elif step == "close":
            f = app.facility(fid)
            f.close(day, ADMIN)
            app.save(f)
            return


def drive_broadcast(app: TrackingSystem, data: st.DataObject) -> None:
    draw = data.draw
    draft = draw(DRAFTS)
    bid = app.draft_broadcast(**draft.kwargs(), actor=author_for(draft))
    for _ in range(draw(st.integers(0, 8))):
        b = app.broadcast(bid)
        allowed = sorted(TRANSITIONS[b.status])
        if not allowed:
            return
        command = draw(st.sampled_from(allowed))
        within_c1 = set(b.targets.areas) <= C1_CODES
        if command == "revise":
            new = draw(DRAFTS)
            actor = OPERATOR_C1 if within_c1 and author_for(new) == OPERATOR_C1 else APPROVER_P1
            app.revise_broadcast(bid, **new.kwargs(), actor=actor)
        elif command == "submit":
            actor = OPERATOR_C1 if within_c1 and not special(b) else APPROVER_P1
            app.submit_broadcast(bid, actor)
        elif command == "approve":
            approvers = [ADMIN, APPROVER_P1]
            if within_c1 and not special(b):
                approvers.append(APPROVER_C1)
            # Four-eyes: nobody who wrote the content (author or reviser) may approve it.
            approvers = [a for a in approvers if a not in b.editors]
            if not approvers:
                continue
            app.approve_broadcast(bid, draw(st.sampled_from(approvers)))
        elif command == "reject":
            app.reject_broadcast(bid, draw(REASONS), draw(st.sampled_from((ADMIN, APPROVER_P1))))
        elif command == "cancel":
            app.cancel_broadcast(bid, draw(REASONS), ADMIN)
        elif command == "schedule":
            app.mark_scheduled(bid)
        else:
            app.expire_broadcast(bid)


def drive_dispatch(app: TrackingSystem, data: st.DataObject) -> None:
    draw = data.draw
    draft = draw(DRAFTS)
    bid = app.draft_broadcast(**draft.kwargs(), actor=ADMIN)
    app.submit_broadcast(bid, ADMIN)
    app.approve_broadcast(bid, APPROVER_P1)
    if draw(st.booleans()):
        app.mark_scheduled(bid)
    devices = [
        app.register_device(
            f"Loa {i}",
            "ip_speaker",
            area=draw(st.sampled_from(CODES)),
            transport="ip_speaker",
            address=f"10.0.0.{i}",
            channels=["audio"],
            actor=ADMIN,
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    unmatched = draw(st.lists(st.uuids(), max_size=2, unique=True))
    did = app.start_dispatch(bid, draw(tst.aware_datetimes()), devices, unmatched)
    done: set[UUID] = set()
    steps = ("outcomes", "preempt", "receipts", "complete")
    for step in draw(st.lists(st.sampled_from(steps), max_size=6)):
        if step == "receipts":
            app.record_receipts(did, draw(tst.delivery_receipts(devices, max_size=4)))
        elif step == "outcomes":
            pending = [d for d in devices if d not in done]
            if pending:
                batch = draw(tst.outcome_batches(pending))
                app.record_outcomes(did, batch)
                done.update(o.device_id for o in batch if o.status.is_final)
        elif step == "preempt":
            d = app.dispatch(did)
            cut = draw(st.lists(st.sampled_from(devices), min_size=1, unique=True))
            d.preempt(cut, by=draw(st.uuids()), actor=str(SYSTEM))
            app.save(d)
        else:
            app.complete_dispatch(did, at=draw(tst.aware_datetimes()))
            if draw(st.booleans()):  # delivery reports arrive after completion too
                app.record_receipts(did, draw(tst.delivery_receipts(devices, max_size=4)))
            return


def drive_discovered(app: TrackingSystem, data: st.DataObject) -> None:
    draw = data.draw
    found = draw(tst.discovered_services())
    record = app.record_discovered(found, actor=ADMIN)
    assert record.discovered_id is not None
    for step in draw(st.lists(st.sampled_from(("seen", "changed", "decide")), max_size=4)):
        if step == "seen":
            app.record_discovered(found, actor=ADMIN)
        elif step == "changed":
            found = attrs.evolve(found, model=draw(st.sampled_from(("A1", "B2", "C3"))))
            app.record_discovered(found, actor=ADMIN)
        elif draw(st.booleans()):
            app.accept_discovered(
                record.discovered_id, area=draw(st.sampled_from(CODES)), actor=ADMIN
            )
            return
        else:
            app.reject_discovered(record.discovered_id, draw(REASONS), actor=ADMIN)


def drive_feedback(app: TrackingSystem, data: st.DataObject) -> None:
    draw = data.draw
    area = draw(st.none() | st.sampled_from(CODES))
    fid = app.receive_feedback(
        draw(tst.vietnamese_text(1, 30, 5000)),
        channel=draw(tst.feedback_channels()),
        sender_ref=draw(st.sampled_from(("+84912345678", "zalo:123456", "web:anon"))),
        area=area,
        received_at=draw(AFTER_SINCE),
        due_in=timedelta(days=draw(st.integers(1, 30))),
        source_ref=draw(st.none() | st.uuids().map(str)),
    )
    actors = [ADMIN] if area is None else [ADMIN, APPROVER_P1]
    if area in C1_CODES:
        actors.append(OPERATOR_C1)
    status = FeedbackStatus.RECEIVED
    for step in draw(st.lists(st.sampled_from(("assign", "answer", "close")), max_size=5)):
        actor = draw(st.sampled_from(actors))
        if step == "assign" and status in (FeedbackStatus.RECEIVED, FeedbackStatus.ASSIGNED):
            app.assign_feedback(fid, draw(st.sampled_from(PRINCIPALS)), actor)
            status = FeedbackStatus.ASSIGNED
        elif step == "answer":
            app.answer_feedback(fid, draw(REASONS), actor)
            status = FeedbackStatus.ANSWERED
        elif step == "close":
            app.close_feedback(fid, actor)
            return


def drive_principal(app: TrackingSystem, data: st.DataObject) -> None:
    draw = data.draw
    username = draw(NEW_USERNAMES)
    scope = st.none() | st.sampled_from(CODES)
    app.create_principal(
        username,
        grants=draw(st.lists(st.tuples(tst.roles(), scope), max_size=3)),
        permissions=draw(st.lists(tst.permissions(), unique=True)),
        display_name=draw(SHORT_TEXT),
        actor=ADMIN,
    )
    pid = principal_id(username)
    steps = ("grant", "revoke", "allow", "disallow", "disable")
    for step in draw(st.lists(st.sampled_from(steps), max_size=8)):
        p = app.repository.get(pid)
        assert isinstance(p, Principal)
        if step == "grant" and not p.disabled:
            role, code = draw(tst.roles()), draw(scope)
            grant = RoleGrant(role, None if code is None else app.area(code).area_id)
            if grant not in p.grants:
                app.grant_role(username, role, code, ADMIN)
        elif step == "revoke" and p.grants:
            grant = draw(st.sampled_from(p.grants))
            code = None if grant.area_id is None else app.areas.history(grant.area_id)[-1].code
            app.revoke_role(username, grant.role, code, ADMIN)
        elif step == "allow" and not p.disabled:
            missing = sorted(set(Permission) - p.permissions)
            if missing:
                app.allow_permission(username, draw(st.sampled_from(missing)), ADMIN)
        elif step == "disallow" and p.permissions:
            p.disallow(draw(st.sampled_from(sorted(p.permissions))), ADMIN)
            app.save(p)
        elif step == "disable" and not p.disabled:
            app.disable_principal(username, draw(REASONS), ADMIN)


DRIVERS: dict[type[TcsAggregate], Callable[[TrackingSystem, st.DataObject], None]] = {
    Area: drive_areas,
    Device: drive_device,
    Station: drive_station,
    Facility: drive_facility,
    Broadcast: drive_broadcast,
    Dispatch: drive_dispatch,
    Feedback: drive_feedback,
    Principal: drive_principal,
    DiscoveredDevice: drive_discovered,
}


# Each example builds an application and runs a dozen commands: shrinking a failure would take
# minutes per test. Failures are reported unshrunk; their draws (printed) are short enough to read.
NO_SHRINK = settings(phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target])


@pytest.mark.parametrize("persistence", PERSISTENCES)
@pytest.mark.parametrize(
    "aggregate",
    [pytest.param(cls) for cls in DRIVERS],
    ids=lambda cls: cls.__name__,
)
@NO_SHRINK
@given(data=st.data())
def test_aggregates_replay_identically(
    aggregate: type[TcsAggregate], persistence: str, data: st.DataObject
) -> None:
    """After random valid commands an aggregate replays (events, snapshot) to its live state."""
    with province(persistence) as app:
        DRIVERS[aggregate](app, data)
        checked = [aid for aid, agg in app.live.items() if type(agg) is aggregate]
        assert checked, f"the driver saved no {aggregate.__name__}"
        for aid in checked:
            assert_replays_identically(app, aid)


# ----------------------------------------------------------------------------------------------
# Values survive a store round trip
# ----------------------------------------------------------------------------------------------


class Carrier(TcsAggregate):
    """Test-only aggregate whose one event carries any value through the mapper."""

    @event("Carried")
    def carry(self, value: Any) -> None:
        self.value = value


@functools.cache
def mapper() -> Mapper[UUID]:
    """The mapper (transcoder with every tcs-core transcoding) of a real SourceSystem."""
    return SourceSystem(Settings.in_memory()).mapper


def round_trip(value: Any) -> Any:
    """``value`` carried by an event, mapped to a stored event (JSON bytes) and back."""
    carrier = Carrier()
    carrier.carry(value=value)
    stored = mapper().to_stored_event(carrier.collect_events()[-1])
    back: Any = mapper().to_domain_event(stored)
    return back.value


@given(tst.content_variants())
def test_content_variants_round_trip(value: Any) -> None:
    """Audio, speech, board and SMS content (Vietnamese text, NFC or NFD) come back unchanged."""
    assert_same(value, round_trip(value))


@given(tst.targets())
def test_targets_round_trip(value: Any) -> None:
    """Targets (codes, channel/device-kind enums, groups) come back unchanged, enums as members."""
    assert_same(value, round_trip(value))


@given(tst.schedule_specs())
def test_schedule_specs_round_trip(value: Any) -> None:
    """Schedules (once/cron/list, instants, zone, window, exception dates) come back unchanged."""
    assert_same(value, round_trip(value))


@given(tst.preemptions())
def test_preemptions_round_trip(value: Any) -> None:
    """Preemption rules come back unchanged."""
    assert_same(value, round_trip(value))


@given(tst.role_grants())
def test_role_grants_round_trip(value: Any) -> None:
    """Role grants (global or over an area id) come back unchanged."""
    assert_same(value, round_trip(value))


@given(tst.delivery_outcomes(st.uuids()))
def test_delivery_outcomes_round_trip(value: Any) -> None:
    """Delivery outcomes (device id, status, UTC instant, reason) come back unchanged."""
    assert_same(value, round_trip(value))


@given(tst.device_settings())
def test_device_settings_round_trip(value: dict[str, Any]) -> None:
    """Validated device settings (secrets as env: references) come back unchanged."""
    settings_ = validate_settings(value)
    assert_same(settings_, round_trip(settings_))


@given(tst.broadcast_drafts(tst.area_codes()))
def test_broadcast_content_maps_round_trip_through_a_broadcast(draft: BroadcastDraft) -> None:
    """A Broadcast's Created event returns content, targets, schedule and preemption as given."""
    fields = draft.kwargs()
    fields["preemption"] = draft.preemption or Preemption.for_priority(draft.priority)
    b = Broadcast(**fields, target_area_ids=[], actor=ADMIN)
    stored = mapper().to_stored_event(b.collect_events()[0])
    back: Any = mapper().to_domain_event(stored)
    for name in ("targets", "schedule", "preemption"):
        assert_same(getattr(b, name), getattr(back, name), name)
    assert {Channel(k): v for k, v in back.content.items()} == b.content


# ----------------------------------------------------------------------------------------------
# Area structure through random reorganisations
# ----------------------------------------------------------------------------------------------

HISTORIES = tst.area_histories()
EXTRA_DAYS = st.lists(st.dates(min_value=date(1999, 1, 1), max_value=date(2060, 1, 1)), max_size=3)


def history_app(ops: list[AreaOp], settings: Settings | None = None) -> SourceSystem:
    """A SourceSystem with the admin and ``ops`` applied."""
    app = SourceSystem(settings or Settings.in_memory())
    app.bootstrap_admin(ADMIN)
    apply_history(app, ops, ADMIN)
    return app


def check_days(ops: list[AreaOp], extra: list[date]) -> list[date]:
    """Every effective date, the day before each, a far-future day and ``extra``."""
    days = {op.effective for op in ops} | {op.effective - timedelta(days=1) for op in ops}
    days |= {max(op.effective for op in ops) + timedelta(days=3650), *extra}
    return sorted(days)


@given(HISTORIES, EXTRA_DAYS)
def test_subtrees_of_the_roots_partition_the_areas_alive_each_day(
    ops: list[AreaOp], extra: list[date]
) -> None:
    """On any day the roots' subtrees are parent-closed, duplicate-free and partition live areas."""
    app = history_app(ops)
    index = app.areas
    for day in check_days(ops, extra):
        model = AreaModel.replay(ops, until=day)
        alive = {v.area_id: v for v in index.all_at(day)}
        assert set(alive) == set(model.live()), f"areas alive on {day}"
        seen: list[UUID] = []
        for root in index.children(None, day):
            assert root.parent_id is None
            subtree = index.subtree(root.area_id, day)
            members = {v.area_id for v in subtree}
            assert len(members) == len(subtree), f"an area appears twice under {root.code} on {day}"
            for v in subtree:
                assert v.area_id == root.area_id or v.parent_id in members, f"{v.code} on {day}"
                assert v.valid_at(day)
            seen.extend(members)
        assert sorted(seen) == sorted(alive), f"root subtrees do not partition the areas on {day}"
        for aid, node in model.live().items():
            v = alive[aid]
            assert (v.code, v.name, v.kind, v.parent_id) == (
                node.code,
                node.name,
                node.kind,
                node.parent_id,
            ), f"area {node.code} on {day}"
            assert index.resolve(node.code, day).area_id == aid, f"code {node.code} on {day}"
        for node in model.nodes.values():
            if node.ended is not None:
                assert index.version_at(node.area_id, day) is None, f"{node.code} ended, on {day}"


@given(HISTORIES, EXTRA_DAYS)
def test_is_within_agrees_with_ancestors(ops: list[AreaOp], extra: list[date]) -> None:
    """``is_within(a, b, d)`` holds exactly when b is a or one of a's ancestors on d."""
    app = history_app(ops)
    index = app.areas
    for day in check_days(ops, extra):
        model = AreaModel.replay(ops, until=day)
        alive = list(model.live())
        for a in alive:
            ancestors = [v.area_id for v in index.ancestors(a, day)]
            assert ancestors == model.ancestors(a), f"ancestors of {model.nodes[a].code} on {day}"
            for b in alive:
                expected = a == b or b in ancestors
                assert index.is_within(a, b, day) is expected, f"{a} within {b} on {day}"


@given(HISTORIES, EXTRA_DAYS)
@example(  # found by this test: area 00 is alive on 2000-01-01, dissolved the next day
    ops=[
        CreateArea("00", "Tỉnh Một", AreaKind.PROVINCE, None, date(2000, 1, 1)),
        DissolveArea("00", date(2000, 1, 2)),
    ],
    extra=[],
)
def test_successors_are_alive_and_follow_reorganisations(
    ops: list[AreaOp], extra: list[date]
) -> None:
    """Successors of any area on d are alive on d and are where its territory lies on d."""
    app = history_app(ops)
    index = app.areas
    for day in check_days(ops, extra):
        model = AreaModel.replay(ops, until=day)
        for aid, node in model.nodes.items():
            found = index.successors(aid, day)
            for v in found:
                assert index.version_at(v.area_id, day) is not None, f"{v.code} dead on {day}"
            assert {v.area_id for v in found} == model.successors(aid), (
                f"successors of {node.code} (created {node.created}) on {day}"
            )
    final = AreaModel.replay(ops)
    for aid, node in final.nodes.items():
        assert {v.area_id for v in index.successors(aid)} == final.successors(aid), node.code


@given(HISTORIES, EXTRA_DAYS)
def test_index_rebuilt_from_the_store_answers_identically(
    ops: list[AreaOp], extra: list[date]
) -> None:
    """A new SourceSystem on the same SQLite file, replaying the log or loading the checkpoint
    the live one wrote, has an area index that answers the same."""
    with scratch_dir() as tmp:
        settings = Settings.sqlite(Path(tmp) / "tcs.sqlite")
        live = history_app(ops, settings)
        rebuilt = SourceSystem(settings)
        assert rebuilt.loaded_checkpoint is None
        assert live.checkpoint() is not None
        restored = SourceSystem(settings)
        assert restored.loaded_checkpoint is not None
        try:
            a = live.areas
            ids = [area_id(op.code, op.effective) for op in ops if isinstance(op, CreateArea)]
            for b in (rebuilt.areas, restored.areas):
                for aid in ids:
                    assert a.history(aid) == b.history(aid)
                    assert a.successors(aid) == b.successors(aid)
                for day in check_days(ops, extra):
                    assert list(a.all_at(day)) == list(b.all_at(day)), day
                    for root in a.children(None, day):
                        assert a.subtree(root.area_id, day) == b.subtree(root.area_id, day)
                    for aid in ids:
                        assert a.ancestors(aid, day) == b.ancestors(aid, day)
                        assert a.successors(aid, day) == b.successors(aid, day)
        finally:
            restored.close()
            rebuilt.close()
            live.close()


def test_area_history_strategy_never_leaves_orphans_and_keeps_dates_ordered() -> None:
    """The generator's own contract: valid ops, non-decreasing dates, no area under an ended one."""

    @given(HISTORIES)
    def check(ops: list[AreaOp]) -> None:
        days = [op.effective for op in ops]
        assert days == sorted(days)
        model = AreaModel()
        for op in ops:
            model.apply(op)
            assert model.orphans() == []

    check()


@given(tst.usernames(), tst.device_settings(), tst.titles(), tst.area_codes(), tst.area_names())
def test_strategies_yield_values_the_engine_accepts(
    username: str, settings_: dict[str, Any], title: str, code: str, name: str
) -> None:
    """Usernames, device settings, titles, codes and names from the strategies pass validation."""
    assert validate_username(username) == username
    validate_settings(settings_)
    assert Broadcast.check_title(title) == title
    assert 1 <= len(code) <= 32 and code.strip() == code
    assert 1 <= len(name) <= 200 and name.strip() == name


def test_small_province_fixture_tree(small_province: SourceSystem) -> None:
    """The small_province fixture has P1 > C1, C2 > villages, and the documented principals."""
    day = SMALL_PROVINCE_SINCE
    codes = [v.code for v in small_province.subtree("P1", day)]
    assert codes == ["P1", "C1", "V11", "V12", "C2", "V21"]
    for name in PRINCIPALS:
        assert small_province.principals.get(name) is not None
    p1 = small_province.principals.get(APPROVER_P1)
    assert p1 is not None and p1.permissions == {Permission.EMERGENCY, Permission.SMS_SENDER}
    assert datetime.now(UTC).date() >= day, "the fixture's areas must exist today"
