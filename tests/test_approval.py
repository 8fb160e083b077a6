"""Approval and authorisation rules: each one rejects, and a rejected command stores nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from tcs_core import (
    BoardContent,
    BroadcastStatus,
    Category,
    Channel,
    InvalidTransition,
    Permission,
    PermissionDenied,
    Priority,
    ScheduleSpec,
    Settings,
    SmsContent,
    SourceSystem,
    SpeechContent,
    Targets,
    UnknownArea,
    ValidationError,
)

EFFECTIVE = date(2025, 7, 1)


@pytest.fixture
def app() -> SourceSystem:
    """A province P with communes C1 and C2, and the people who work there."""
    app = SourceSystem(Settings.in_memory())
    app.bootstrap_admin("admin")
    app.create_area("P", "Tỉnh Thử", "province", parent=None, effective=EFFECTIVE, actor="admin")
    for code in ("C1", "C2"):
        app.create_area(
            code, f"Xã {code}", "commune", parent="P", effective=EFFECTIVE, actor="admin"
        )
    app.create_principal("op1", grants=[("operator", "C1")], actor="admin")
    app.create_principal("appr1", grants=[("approver", "C1")], actor="admin")
    app.create_principal("op.p", grants=[("operator", "P")], actor="admin")
    app.create_principal(
        "appr.p",
        grants=[("approver", "P")],
        permissions=[Permission.EMERGENCY, Permission.SMS_SENDER],
        actor="admin",
    )
    app.create_principal("appr.plain", grants=[("approver", "P")], actor="admin")
    return app


def _draft(
    app: SourceSystem,
    actor: str,
    areas: tuple[str, ...] = ("C1",),
    priority: Priority = Priority.NORMAL,
    sms: bool = False,
) -> UUID:
    channels = [Channel.AUDIO, Channel.BOARD] + ([Channel.SMS] if sms else [])
    content: dict[Channel, Any] = {
        Channel.AUDIO: SpeechContent("Thông báo lịch tiêm chủng tại trạm y tế xã."),
        Channel.BOARD: BoardContent("Lịch tiêm chủng"),
    }
    if sms:
        content[Channel.SMS] = SmsContent("Lich tiem chung tai tram y te xa.")
    return app.draft_broadcast(
        "Lịch tiêm chủng",
        category=Category.HEALTH,
        priority=priority,
        content=content,
        targets=Targets(areas=areas, channels=channels),
        schedule=ScheduleSpec.once(datetime.now(UTC) + timedelta(hours=1)),
        actor=actor,
    )


def _stores_nothing(
    app: SourceSystem, command: Callable[[], object], error: type[Exception]
) -> str:
    before = app.recorder.max_notification_id()
    with pytest.raises(error) as info:
        command()
    assert app.recorder.max_notification_id() == before
    return str(info.value)


def test_second_person_approves(app: SourceSystem) -> None:
    """A broadcast drafted and submitted by op1 is approved by appr1."""
    b = _draft(app, "op1")
    app.submit_broadcast(b, "op1")
    app.approve_broadcast(b, "appr1")
    assert app.broadcast(b).status is BroadcastStatus.APPROVED
    assert app.broadcast(b).approved_by == "appr1"


def test_author_cannot_approve_own_broadcast(app: SourceSystem) -> None:
    """The author may not approve, even holding the approver role over the targets."""
    b = _draft(app, "appr1")
    app.submit_broadcast(b, "appr1")
    msg = _stores_nothing(app, lambda: app.approve_broadcast(b, "appr1"), PermissionDenied)
    assert "second person" in msg
    assert app.broadcast(b).status is BroadcastStatus.SUBMITTED


def test_approver_scope_must_cover_every_target(app: SourceSystem) -> None:
    """An approver of C1 cannot approve a broadcast that also targets C2."""
    b = _draft(app, "op.p", areas=("C1", "C2"))
    app.submit_broadcast(b, "op.p")
    msg = _stores_nothing(app, lambda: app.approve_broadcast(b, "appr1"), PermissionDenied)
    assert "C2" in msg and "approver" in msg


def test_operator_is_not_an_approver(app: SourceSystem) -> None:
    """The operator role does not include approval."""
    b = _draft(app, "op.p")
    app.submit_broadcast(b, "op.p")
    _stores_nothing(app, lambda: app.approve_broadcast(b, "op1"), PermissionDenied)


def test_operator_cannot_target_another_commune(app: SourceSystem) -> None:
    """A commune operator cannot draft a broadcast for a neighbouring commune."""
    msg = _stores_nothing(app, lambda: _draft(app, "op1", areas=("C2",)), PermissionDenied)
    assert "operator" in msg and "C2" in msg


def test_emergency_needs_permission_to_submit(app: SourceSystem) -> None:
    """A commune operator without the emergency permission cannot submit an emergency."""
    b = _draft(app, "op1", priority=Priority.EMERGENCY)
    msg = _stores_nothing(app, lambda: app.submit_broadcast(b, "op1"), PermissionDenied)
    assert "emergency" in msg


def test_emergency_needs_permission_to_approve(app: SourceSystem) -> None:
    """An approver without the emergency permission cannot approve one; one with it can."""
    app.allow_permission("op.p", Permission.EMERGENCY, actor="admin")
    b = _draft(app, "op.p", priority=Priority.EMERGENCY)
    app.submit_broadcast(b, "op.p")
    _stores_nothing(app, lambda: app.approve_broadcast(b, "appr.plain"), PermissionDenied)
    app.approve_broadcast(b, "appr.p")
    assert app.broadcast(b).status is BroadcastStatus.APPROVED


def test_sms_needs_sender_permission(app: SourceSystem) -> None:
    """SMS is for holders of the SMS-sender permission (NĐ 49/2024): submit and approve."""
    b = _draft(app, "op.p", sms=True)
    msg = _stores_nothing(app, lambda: app.submit_broadcast(b, "op.p"), PermissionDenied)
    assert "sms_sender" in msg
    app.allow_permission("op.p", Permission.SMS_SENDER, actor="admin")
    app.submit_broadcast(b, "op.p")
    _stores_nothing(app, lambda: app.approve_broadcast(b, "appr.plain"), PermissionDenied)
    app.approve_broadcast(b, "appr.p")


def test_unknown_and_disabled_principals_are_refused(app: SourceSystem) -> None:
    """Commands from unknown or disabled accounts are refused."""
    _stores_nothing(app, lambda: _draft(app, "nobody"), PermissionDenied)
    app.disable_principal("op1", "left the commune", actor="admin")
    msg = _stores_nothing(app, lambda: _draft(app, "op1"), PermissionDenied)
    assert "disabled" in msg


def test_usernames_cannot_impersonate_the_system(app: SourceSystem) -> None:
    """The string 'system' is just an unknown username, not the SystemActor."""
    _stores_nothing(app, lambda: _draft(app, "system"), PermissionDenied)


def test_approving_a_draft_is_an_invalid_transition(app: SourceSystem) -> None:
    """Approval needs a submitted broadcast; the error lists what is allowed now."""
    b = _draft(app, "op1")
    msg = _stores_nothing(app, lambda: app.approve_broadcast(b, "appr1"), InvalidTransition)
    assert "drafted" in msg and "submit" in msg


def test_reject_needs_a_reason_and_revision_returns_to_draft(app: SourceSystem) -> None:
    """Rejection needs a reason; a rejected broadcast can be revised and resubmitted."""
    b = _draft(app, "op1")
    app.submit_broadcast(b, "op1")
    _stores_nothing(app, lambda: app.reject_broadcast(b, " ", "appr1"), ValidationError)
    app.reject_broadcast(b, "Sai giờ tiêm", "appr1")
    bc = app.broadcast(b)
    assert bc.status is BroadcastStatus.REJECTED
    app.revise_broadcast(
        b,
        title="Lịch tiêm chủng (sửa)",
        category=bc.category,
        priority=bc.priority,
        content=bc.content,
        targets=bc.targets,
        schedule=bc.schedule,
        actor="op1",
    )
    assert app.broadcast(b).status is BroadcastStatus.DRAFTED


def test_content_must_match_channels(app: SourceSystem) -> None:
    """Every targeted channel needs its content variant, and variants match their channel."""

    def missing_board() -> object:
        return app.draft_broadcast(
            "x",
            category=Category.OTHER,
            content={Channel.AUDIO: SpeechContent("a")},
            targets=Targets(areas=["C1"], channels=["audio", "board"]),
            schedule=ScheduleSpec.once(datetime.now(UTC)),
            actor="op1",
        )

    def wrong_variant() -> object:
        return app.draft_broadcast(
            "x",
            category=Category.OTHER,
            content={Channel.AUDIO: BoardContent("a")},
            targets=Targets(areas=["C1"], channels=["audio"]),
            schedule=ScheduleSpec.once(datetime.now(UTC)),
            actor="op1",
        )

    assert "board" in _stores_nothing(app, missing_board, ValidationError)
    _stores_nothing(app, wrong_variant, ValidationError)


def test_unknown_target_area_is_refused(app: SourceSystem) -> None:
    """A target code that names no area today is an UnknownArea error."""
    _stores_nothing(app, lambda: _draft(app, "op.p", areas=("ZZ",)), UnknownArea)


def test_only_admins_create_accounts_within_their_scope(app: SourceSystem) -> None:
    """Creating principals needs the admin role over the granted areas."""
    app.create_principal("admin.c1", grants=[("admin", "C1")], actor="admin")
    _stores_nothing(
        app,
        lambda: app.create_principal("x1", grants=[("operator", "C2")], actor="admin.c1"),
        PermissionDenied,
    )
    _stores_nothing(
        app,
        lambda: app.create_principal("x2", grants=[("operator", "C1")], actor="op1"),
        PermissionDenied,
    )
    # An admin can hand out only the special permissions it holds itself.
    _stores_nothing(
        app,
        lambda: app.create_principal(
            "x3", grants=[("operator", "C1")], permissions=["emergency"], actor="admin.c1"
        ),
        PermissionDenied,
    )
    app.create_principal("x4", grants=[("operator", "C1")], actor="admin.c1")


def test_bootstrap_only_once(app: SourceSystem) -> None:
    """The first-admin bootstrap is refused once principals exist."""
    _stores_nothing(app, lambda: app.bootstrap_admin("mallory"), InvalidTransition)


def test_secrets_in_device_settings_are_refused(app: SourceSystem) -> None:
    """A device password written in clear is refused; an env reference is accepted."""

    def register(password: str) -> UUID:
        return app.register_device(
            "Loa thôn 1",
            "ip_speaker",
            area="C1",
            transport="sip",
            address="sip:loa1@127.0.0.1",
            channels=["audio"],
            settings={"password": password},
            actor="admin",
        )

    msg = _stores_nothing(app, lambda: register("hunter2"), ValidationError)
    assert "hunter2" not in msg and "env:" in msg
    device = app.device(register("env:LOA1_PASSWORD"))
    assert device.settings == {"password": "env:LOA1_PASSWORD"}


def test_reviser_cannot_approve_what_they_rewrote(app: SourceSystem) -> None:
    """An approver who revised someone else's draft has written it, so cannot approve it."""
    b = _draft(app, "op.p")
    bc = app.broadcast(b)
    app.revise_broadcast(
        b,
        title="Nội dung do người duyệt viết lại",
        category=bc.category,
        priority=bc.priority,
        content=bc.content,
        targets=bc.targets,
        schedule=bc.schedule,
        actor="appr.p",
    )
    app.submit_broadcast(b, "appr.p")
    msg = _stores_nothing(app, lambda: app.approve_broadcast(b, "appr.p"), PermissionDenied)
    assert "revised" in msg
    app.approve_broadcast(b, "appr.plain")


def test_trailing_newline_is_not_a_username(app: SourceSystem) -> None:
    """Validation matches whole values: 'mallory\\n' is not a valid username."""
    _stores_nothing(app, lambda: app.create_principal("mallory\n", actor="admin"), ValidationError)
