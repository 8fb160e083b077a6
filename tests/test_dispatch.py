"""Tests for Dispatch through the SourceSystem: ids, refusals, outcomes, counts, completion."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import UUID

import pytest

from tcs_core.app import SYSTEM, SourceSystem
from tcs_core.config import Settings
from tcs_core.domain.dispatch import Dispatch, dispatch_id
from tcs_core.domain.values import (
    DeliveryOutcome,
    OutcomeStatus,
    ScheduleSpec,
    SpeechContent,
    Targets,
)
from tcs_core.errors import DispatchExists, InvalidTransition, ValidationError

AREA = "79"
OCCURRENCE = datetime(2030, 5, 1, 7, 30, tzinfo=UTC)
ICT = timezone(timedelta(hours=7))
T0 = datetime(2030, 5, 1, 7, 31, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def _system() -> SourceSystem:
    """An in-memory system with an admin, an operator, an approver and one area."""
    app = SourceSystem(Settings.in_memory())
    app.bootstrap_admin("admin")
    app.create_area(AREA, "Hồ Chí Minh", "province", parent=None, effective=date(2025, 7, 1),
                    actor="admin")
    app.create_principal("op", grants=[("operator", AREA)], actor="admin")
    app.create_principal("boss", grants=[("approver", AREA)], actor="admin")
    return app


def _draft(app: SourceSystem) -> UUID:
    return app.draft_broadcast(
        "Lịch tiêm chủng",
        category="health",
        content={"audio": SpeechContent("Thông báo lịch tiêm chủng")},
        targets=Targets([AREA], ["audio"]),
        schedule=ScheduleSpec.once(OCCURRENCE),
        actor="op",
    )


def _approved(app: SourceSystem) -> UUID:
    bid = _draft(app)
    app.submit_broadcast(bid, "op")
    app.approve_broadcast(bid, "boss")
    return bid


def _events(app: SourceSystem) -> int:
    """How many events the store holds (a refused command must not change it)."""
    return app.recorder.max_notification_id() or 0


def _topics(app: SourceSystem, originator: UUID) -> list[str]:
    return [
        n.topic
        for n in app.recorder.select_notifications(1, 10_000)
        if n.originator_id == originator
    ]


@pytest.fixture
def app() -> SourceSystem:
    return _system()


@pytest.fixture
def devices() -> list[UUID]:
    return [uuid.uuid4() for _ in range(4)]


@pytest.fixture
def started(app: SourceSystem, devices: list[UUID]) -> UUID:
    """The id of a started dispatch over ``devices``."""
    return app.start_dispatch(_approved(app), OCCURRENCE, devices)


def _ok(device: UUID, at: datetime = T0) -> DeliveryOutcome:
    return DeliveryOutcome(device, OutcomeStatus.DELIVERED, at)


# --------------------------------------------------------------------------- ids


def test_dispatch_id_is_uuid5_of_broadcast_and_utc_occurrence() -> None:
    """dispatch_id is uuid5(broadcast id, the occurrence's UTC ISO form)."""
    bid = uuid.uuid4()
    assert dispatch_id(bid, OCCURRENCE) == uuid.uuid5(bid, "2030-05-01T07:30:00+00:00")
    assert Dispatch.create_id(bid, OCCURRENCE) == dispatch_id(bid, OCCURRENCE)


def test_dispatch_id_is_zone_independent() -> None:
    """The same instant written in +07:00 and in UTC gives the same dispatch id."""
    bid = uuid.uuid4()
    local = OCCURRENCE.astimezone(ICT)
    assert local.hour == 14
    assert dispatch_id(bid, local) == dispatch_id(bid, OCCURRENCE)
    assert dispatch_id(bid, OCCURRENCE + timedelta(seconds=1)) != dispatch_id(bid, OCCURRENCE)


def test_dispatch_id_rejects_naive_occurrence() -> None:
    """A naive occurrence is refused: its zone would be a guess."""
    with pytest.raises(ValidationError):
        dispatch_id(uuid.uuid4(), OCCURRENCE.replace(tzinfo=None))


def test_started_dispatch_id_matches_and_second_start_in_other_zone_is_refused(
    app: SourceSystem, devices: list[UUID]
) -> None:
    """start_dispatch in +07:00 stores the dispatch under the UTC-derived id; the same instant
    started again in UTC raises DispatchExists and stores nothing."""
    bid = _approved(app)
    did = app.start_dispatch(bid, OCCURRENCE.astimezone(ICT), devices)
    assert did == dispatch_id(bid, OCCURRENCE)
    d = app.dispatch_of(bid, OCCURRENCE)
    assert d is not None
    assert d.id == did
    assert d.occurrence == OCCURRENCE
    assert d.occurrence.utcoffset() == timedelta(0)
    before = _events(app)
    with pytest.raises(DispatchExists):
        app.start_dispatch(bid, OCCURRENCE, devices[:1])
    assert _events(app) == before
    assert _topics(app, did) == ["tcs.dispatch.started"]


def test_dispatch_of_unstarted_occurrence_is_none(app: SourceSystem) -> None:
    """dispatch_of answers None for an occurrence that was never started."""
    assert app.dispatch_of(_approved(app), OCCURRENCE) is None


# --------------------------------------------------------------------------- refusals to start


def test_start_for_draft_broadcast_is_refused_and_stores_nothing(
    app: SourceSystem, devices: list[UUID]
) -> None:
    """A drafted (not approved) broadcast is never dispatched; nothing is stored."""
    bid = _draft(app)
    before = _events(app)
    with pytest.raises(InvalidTransition, match="drafted"):
        app.start_dispatch(bid, OCCURRENCE, devices)
    assert _events(app) == before
    assert app.dispatch_of(bid, OCCURRENCE) is None


def test_start_for_submitted_broadcast_is_refused_and_stores_nothing(
    app: SourceSystem, devices: list[UUID]
) -> None:
    """A submitted broadcast awaiting approval is not dispatched; nothing is stored."""
    bid = _draft(app)
    app.submit_broadcast(bid, "op")
    before = _events(app)
    with pytest.raises(InvalidTransition, match="submitted"):
        app.start_dispatch(bid, OCCURRENCE, devices)
    assert _events(app) == before


def test_start_for_cancelled_broadcast_is_refused_and_stores_nothing(
    app: SourceSystem, devices: list[UUID]
) -> None:
    """A cancelled broadcast is never dispatched again; nothing is stored."""
    bid = _approved(app)
    app.cancel_broadcast(bid, "trùng lịch", "op")
    before = _events(app)
    with pytest.raises(InvalidTransition, match="cancelled"):
        app.start_dispatch(bid, OCCURRENCE, devices)
    assert _events(app) == before
    assert app.dispatch_of(bid, OCCURRENCE) is None


def test_start_with_duplicate_device_is_refused_and_stores_nothing(
    app: SourceSystem, devices: list[UUID]
) -> None:
    """A device listed twice in one dispatch is a validation error; nothing is stored."""
    bid = _approved(app)
    before = _events(app)
    with pytest.raises(ValidationError):
        app.start_dispatch(bid, OCCURRENCE, [*devices, devices[0]])
    assert _events(app) == before


def test_scheduled_broadcast_is_dispatched(app: SourceSystem, devices: list[UUID]) -> None:
    """A broadcast the scheduler has taken (scheduled) is still live and is dispatched."""
    bid = _approved(app)
    app.mark_scheduled(bid)
    did = app.start_dispatch(bid, OCCURRENCE, devices)
    assert app.dispatch(did).device_ids == tuple(d.hex for d in devices)


# --------------------------------------------------------------------------- outcomes


def test_outcome_for_unknown_device_is_refused_and_stores_nothing(
    app: SourceSystem, started: UUID, devices: list[UUID]
) -> None:
    """An outcome for a device outside the dispatch raises InvalidTransition; the whole batch
    is refused and nothing is stored."""
    before = _events(app)
    with pytest.raises(InvalidTransition, match="not part of dispatch"):
        app.record_outcomes(started, [_ok(devices[0]), _ok(uuid.uuid4())])
    assert _events(app) == before
    assert app.dispatch(started).outcomes == {}


def test_duplicate_device_in_one_batch_is_refused(
    app: SourceSystem, started: UUID, devices: list[UUID]
) -> None:
    """The same device twice in one batch is a validation error; nothing is stored."""
    before = _events(app)
    with pytest.raises(ValidationError, match="twice"):
        app.record_outcomes(started, [_ok(devices[0]), _ok(devices[0])])
    assert _events(app) == before


def test_empty_batch_is_refused(app: SourceSystem, started: UUID) -> None:
    """An empty batch of outcomes is a validation error."""
    with pytest.raises(ValidationError):
        app.record_outcomes(started, [])


@pytest.mark.parametrize("final", [OutcomeStatus.DELIVERED, OutcomeStatus.FAILED])
@pytest.mark.parametrize(
    "then", [OutcomeStatus.DELIVERED, OutcomeStatus.FAILED, OutcomeStatus.RETRYABLE]
)
def test_device_with_final_outcome_gets_no_other(
    app: SourceSystem,
    started: UUID,
    devices: list[UUID],
    final: OutcomeStatus,
    then: OutcomeStatus,
) -> None:
    """Once delivered or failed, a device accepts no further outcome (never delivered twice);
    the refused batch stores nothing, even its valid outcomes for other devices."""
    app.record_outcomes(started, [DeliveryOutcome(devices[0], final, T0, "x")])
    before = _events(app)
    later = T0 + timedelta(minutes=1)
    with pytest.raises(InvalidTransition, match="final outcome"):
        app.record_outcomes(
            started, [_ok(devices[1], later), DeliveryOutcome(devices[0], then, later, "again")]
        )
    assert _events(app) == before
    d = app.dispatch(started)
    assert d.outcome(devices[0]) == DeliveryOutcome(devices[0], final, T0, "x")
    assert d.outcome(devices[1]) is None


def test_retryable_then_delivered_is_accepted(
    app: SourceSystem, started: UUID, devices: list[UUID]
) -> None:
    """A retryable outcome may be followed by delivered; the latest outcome wins."""
    app.record_outcomes(
        started, [DeliveryOutcome(devices[0], OutcomeStatus.RETRYABLE, T0, "busy")]
    )
    app.record_outcomes(
        started, [DeliveryOutcome(devices[0], OutcomeStatus.RETRYABLE, T0 + timedelta(seconds=30),
                                  "busy again")]
    )
    later = T0 + timedelta(minutes=1)
    app.record_outcomes(started, [_ok(devices[0], later)])
    d = app.dispatch(started)
    assert d.outcome(devices[0]) == DeliveryOutcome(devices[0], OutcomeStatus.DELIVERED, later)
    assert _topics(app, started) == ["tcs.dispatch.started"] + 3 * [
        "tcs.dispatch.outcomes_recorded"
    ]


def test_outcome_needs_reason_unless_delivered() -> None:
    """Failed and retryable outcomes must say why; delivered ones need no reason."""
    DeliveryOutcome(uuid.uuid4(), "delivered", T0)
    for status in ("failed", "retryable"):
        with pytest.raises(ValidationError, match="reason"):
            DeliveryOutcome(uuid.uuid4(), status, T0)


def test_outcome_time_is_normalised_to_utc() -> None:
    """An outcome's time given in +07:00 is stored as the same instant in UTC."""
    o = DeliveryOutcome(uuid.uuid4(), "delivered", T0.astimezone(ICT))
    assert o.at == T0
    assert o.at.utcoffset() == timedelta(0)


def test_counts_and_pending(app: SourceSystem, started: UUID, devices: list[UUID]) -> None:
    """counts() gives each device's latest status plus devices with none (pending);
    pending() lists devices without a final outcome (retryable ones included), in order."""
    d = app.dispatch(started)
    assert d.counts() == {"delivered": 0, "failed": 0, "retryable": 0, "pending": 4}
    assert d.pending() == devices
    app.record_outcomes(
        started,
        [
            _ok(devices[0]),
            DeliveryOutcome(devices[1], OutcomeStatus.FAILED, T0, "no route"),
            DeliveryOutcome(devices[2], OutcomeStatus.RETRYABLE, T0, "busy"),
        ],
    )
    d = app.dispatch(started)  # replayed from the store
    assert d.counts() == {"delivered": 1, "failed": 1, "retryable": 1, "pending": 1}
    assert d.pending() == [devices[2], devices[3]]
    app.record_outcomes(started, [_ok(devices[2]), _ok(devices[3])])
    d = app.dispatch(started)
    assert d.counts() == {"delivered": 3, "failed": 1, "retryable": 0, "pending": 0}
    assert d.pending() == []


def test_outcomes_survive_replay(app: SourceSystem, started: UUID, devices: list[UUID]) -> None:
    """Outcomes read back from the store equal the values that were recorded."""
    recorded = [
        _ok(devices[0]),
        DeliveryOutcome(devices[1], OutcomeStatus.FAILED, T0.astimezone(ICT), "lỗi đường truyền"),
    ]
    app.record_outcomes(started, recorded)
    d = app.dispatch(started)
    assert [d.outcome(o.device_id) for o in recorded] == recorded
    assert d.outcome(devices[2]) is None


def test_in_memory_and_replayed_state_agree(
    app: SourceSystem, started: UUID, devices: list[UUID]
) -> None:
    """The live aggregate after record_outcomes has the same outcomes as the replayed one."""
    live = app.dispatch(started)
    live.record_outcomes(
        [_ok(devices[0]), DeliveryOutcome(devices[1], "retryable", T0, "busy")], SYSTEM
    )
    app.save(live)
    replayed = app.dispatch(started)
    assert replayed.outcomes == live.outcomes
    assert replayed.counts() == live.counts()
    assert replayed.pending() == live.pending()
    assert all(type(s) is str for s, _, _ in live.outcomes.values())


# --------------------------------------------------------------------------- completion


def test_complete_closes_the_dispatch(
    app: SourceSystem, started: UUID, devices: list[UUID]
) -> None:
    """complete() records the closing time (in UTC); undelivered devices stay pending."""
    app.record_outcomes(started, [_ok(devices[0])])
    closed_at = T0.astimezone(ICT) + timedelta(minutes=5)
    app.complete_dispatch(started, closed_at)
    d = app.dispatch(started)
    assert d.completed_at == closed_at
    assert d.completed_at.utcoffset() == timedelta(0)
    assert d.pending() == devices[1:]
    assert d.counts()["pending"] == 3
    assert _topics(app, started)[-1] == "tcs.dispatch.completed"


def test_record_after_complete_is_refused_and_stores_nothing(
    app: SourceSystem, started: UUID, devices: list[UUID]
) -> None:
    """A completed dispatch accepts no more outcomes; nothing is stored."""
    app.complete_dispatch(started, T0)
    before = _events(app)
    with pytest.raises(InvalidTransition, match="completed"):
        app.record_outcomes(started, [_ok(devices[0])])
    assert _events(app) == before
    assert app.dispatch(started).outcomes == {}


def test_complete_twice_is_refused(app: SourceSystem, started: UUID) -> None:
    """A dispatch is completed once; the second complete() raises and stores nothing."""
    app.complete_dispatch(started, T0)
    before = _events(app)
    with pytest.raises(InvalidTransition, match="already completed"):
        app.complete_dispatch(started, T0 + timedelta(minutes=1))
    assert _events(app) == before
