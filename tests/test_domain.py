"""Domain behaviour: areas through time, devices and liveness, stations, feedback, settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from tcs_core import (
    AlreadyExists,
    DeviceStatus,
    FeedbackChannel,
    FeedbackStatus,
    InvalidTransition,
    Settings,
    SourceSystem,
    StationKind,
    UnknownArea,
    ValidationError,
)
from tcs_core.domain import LivenessTracker

D0 = date(2020, 1, 1)
D1 = date(2023, 6, 1)
D2 = date(2025, 7, 1)


@pytest.fixture
def app() -> SourceSystem:
    """Province P (2020) with district D and communes A, B under it."""
    app = SourceSystem(Settings.in_memory())
    app.bootstrap_admin("admin")
    app.create_area("P", "Tỉnh P", "province", parent=None, effective=D0, actor="admin")
    app.create_area("D", "Huyện D", "district", parent="P", effective=D0, actor="admin")
    app.create_area("A", "Xã A", "commune", parent="D", effective=D0, actor="admin")
    app.create_area("B", "Xã B", "commune", parent="D", effective=D0, actor="admin")
    return app


def codes(versions: list[object]) -> list[str]:
    return [v.code for v in versions]  # type: ignore[attr-defined]


def test_subtree_follows_effective_dates(app: SourceSystem) -> None:
    """A merge on D2 changes the subtree from D2 on, and not before."""
    app.create_area("AB", "Xã AB", "commune", parent="P", effective=D2, actor="admin")
    app.merge_areas(["A", "B"], into="AB", effective=D2, actor="admin")
    app.dissolve_area("D", effective=D2, actor="admin")
    assert codes(app.subtree("P", D1)) == ["P", "D", "A", "B"]
    assert codes(app.subtree("P", D2)) == ["P", "AB"]
    assert codes(app.successors("A", D1)) == ["AB"]
    assert codes(app.ancestors("A", D1)) == ["D", "P"]
    with pytest.raises(UnknownArea, match="no area has code 'A' on 2025-07-01"):
        app.area("A", D2)


def test_codes_are_reused_over_time(app: SourceSystem) -> None:
    """A code freed by a merge can name a new area later; lookups answer by date."""
    app.create_area("AB", "Xã AB", "commune", parent="D", effective=D1, actor="admin")
    app.merge_areas(["A"], into="AB", effective=D1, actor="admin")
    app.create_area("A", "Phường A mới", "ward", parent="P", effective=D2, actor="admin")
    assert app.area("A", D0).name == "Xã A"
    assert app.area("A", D2).name == "Phường A mới"
    assert app.area("A", D0).area_id != app.area("A", D2).area_id


def test_code_in_use_is_refused(app: SourceSystem) -> None:
    """Creating an area with a code held on that date fails and stores nothing."""
    before = app.recorder.max_notification_id()
    with pytest.raises(AlreadyExists, match="held by Xã A"):
        app.create_area("A", "Xã A2", "commune", parent="D", effective=D1, actor="admin")
    assert app.recorder.max_notification_id() == before


def test_history_is_append_only(app: SourceSystem) -> None:
    """A change cannot be back-dated before the area's last change."""
    app.rename_area("A", "Xã A Mới", effective=D1, actor="admin")
    with pytest.raises(InvalidTransition, match="append-only"):
        app.rename_area("A", "Xã A Cũ", effective=D0 + timedelta(days=10), actor="admin")
    assert app.area("A", D0).name == "Xã A"
    assert app.area("A", D1).name == "Xã A Mới"


def test_move_cannot_make_a_cycle(app: SourceSystem) -> None:
    """An area cannot be moved under its own descendant."""
    with pytest.raises(InvalidTransition, match="cycle"):
        app.move_area("D", "A", effective=D1, actor="admin")


def test_split_shares_territory(app: SourceSystem) -> None:
    """A split area's successors are all its targets."""
    app.create_area("A1", "Xã A1", "commune", parent="D", effective=D1, actor="admin")
    app.create_area("A2", "Xã A2", "commune", parent="D", effective=D1, actor="admin")
    app.split_area("A", into=["A1", "A2"], effective=D1, actor="admin")
    assert codes(app.successors("A", D0)) == ["A1", "A2"]
    assert codes(app.communes("P", D1)) == ["A1", "A2", "B"]


def test_bad_area_input_is_refused(app: SourceSystem) -> None:
    """Kinds, codes and names are validated with the field named."""
    with pytest.raises(ValidationError, match="kind"):
        app.create_area("X", "X", "county", parent="P", effective=D1, actor="admin")
    with pytest.raises(ValidationError, match="code"):
        app.create_area("", "X", "commune", parent="P", effective=D1, actor="admin")
    with pytest.raises(UnknownArea):
        app.create_area("X", "X", "commune", parent="NOPE", effective=D1, actor="admin")


def _speaker(app: SourceSystem) -> UUID:
    return app.register_device(
        "Loa thôn 1",
        "ip_speaker",
        area="A",
        transport="sip",
        address="sip:loa1@127.0.0.1",
        channels=["audio"],
        actor="admin",
    )


def test_status_transitions_only_when_changed(app: SourceSystem) -> None:
    """Setting the same status twice records one event."""
    d = _speaker(app)
    assert app.set_device_status(d, DeviceStatus.ONLINE, "probe ok") is True
    assert app.set_device_status(d, DeviceStatus.ONLINE, "probe ok") is False
    assert app.device(d).status is DeviceStatus.ONLINE
    assert app.devices.get(d) is not None
    assert app.devices.get(d).status is DeviceStatus.ONLINE  # type: ignore[union-attr]


def test_liveness_turns_heartbeats_into_transitions(app: SourceSystem) -> None:
    """Heartbeats are not events; going online and timing out are."""
    d = _speaker(app)
    tracker = app.liveness_tracker(timedelta(seconds=60))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    before = app.recorder.max_notification_id()
    for s in range(0, 50, 5):
        tracker.heartbeat(d, t0 + timedelta(seconds=s))
    assert app.recorder.max_notification_id() == before + 1  # one transition: online
    assert tracker.sweep(t0 + timedelta(seconds=100)) == []
    assert tracker.sweep(t0 + timedelta(seconds=120)) == [d]
    assert app.device(d).status is DeviceStatus.OFFLINE
    assert "no heartbeat since" in app.device(d).status_reason


def test_liveness_rejects_naive_times() -> None:
    """A heartbeat time without a zone is refused (its meaning would be a guess)."""
    tracker = LivenessTracker(timedelta(seconds=1), lambda *a: None)
    with pytest.raises(ValidationError, match="time zone"):
        tracker.heartbeat(UUID(int=1), datetime(2026, 1, 1))


def test_decommissioned_device_is_final(app: SourceSystem) -> None:
    """A decommissioned device leaves the area and address indexes and accepts no more
    changes."""
    d = _speaker(app)
    assert [v.device_id for v in app.devices.at_address("sip:loa1@127.0.0.1")] == [d]
    app.decommission_device(d, "hỏng do sét đánh", actor="admin")
    assert app.devices.in_areas([app.area("A").area_id]) == []
    assert app.devices.at_address("sip:loa1@127.0.0.1") == []
    with pytest.raises(InvalidTransition, match="decommissioned"):
        app.set_device_status(d, "online")


def test_station_conversion(app: SourceSystem) -> None:
    """A wired station converts to IP once; the date is kept."""
    s = app.register_station(
        "Đài xã A", area="A", kind="wired", commissioned_year=2012, effective=D0, actor="admin"
    )
    app.convert_station(s, effective=D1, actor="admin")
    st = app.station(s)
    assert st.kind is StationKind.IP and st.converted_on == D1
    with pytest.raises(InvalidTransition, match="already an IP station"):
        app.convert_station(s, effective=D2, actor="admin")
    with pytest.raises(ValidationError, match="commissioned_year"):
        app.register_station(
            "x", area="A", kind="fm", commissioned_year=1800, effective=D0, actor="admin"
        )


def test_feedback_is_taken_in_once_per_source(app: SourceSystem) -> None:
    """The same inbound message (source_ref) twice yields one feedback item."""
    kwargs = dict(channel=FeedbackChannel.SMS, sender_ref="+84900000001", area="A")
    f1 = app.receive_feedback("Đèn đường thôn 2 bị hỏng", source_ref="kannel:42", **kwargs)
    f2 = app.receive_feedback("Đèn đường thôn 2 bị hỏng", source_ref="kannel:42", **kwargs)
    assert f1 == f2
    app.assign_feedback(f1, "admin", actor="admin")
    app.answer_feedback(f1, "Đã báo điện lực sửa.", actor="admin")
    app.close_feedback(f1, actor="admin")
    fb = app.feedback(f1)
    assert fb.status is FeedbackStatus.CLOSED and fb.answer == "Đã báo điện lực sửa."
    assert fb.due == app.areas.day(fb.received_at + timedelta(days=7))


def test_settings_from_toml(tmp_path: Path) -> None:
    """tcs.toml sets persistence; relative SQLite paths are relative to the file."""
    cfg = tmp_path / "tcs.toml"
    cfg.write_text('[persistence]\nkind = "sqlite"\nsqlite_path = "data/tcs.sqlite"\n')
    s = Settings.from_toml(cfg)
    assert s.persistence == "sqlite" and s.sqlite_path == str(tmp_path / "data/tcs.sqlite")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[persistence]\nkind = "oracle"\n', "not one of"),
        ('[persistence]\ncolour = "red"\n', "unknown setting"),
        ("[nonsense]\n", "unknown table"),
        ("[persistence\n", "not valid TOML"),
        (
            '[persistence]\nkind = "postgres"\npostgres_dsn = "postgresql://u:pw@h/db"\n',
            "contains a password",
        ),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """Config errors name the setting and say what to do."""
    cfg = tmp_path / "tcs.toml"
    cfg.write_text(text)
    with pytest.raises(ValidationError, match=message):
        Settings.from_toml(cfg)


def test_postgres_password_comes_from_environment() -> None:
    """The PostgreSQL password is read from the named variable, never from the DSN."""
    s = Settings.postgres("postgresql://tcs@db.example:6543/tcs", postgres_password_env="PW")
    env = s.eventsourcing_env({"PW": "s3cret"})
    assert env["POSTGRES_PASSWORD"] == "s3cret" and env["POSTGRES_PORT"] == "6543"
    assert "s3cret" not in repr(s)


def test_an_area_with_live_children_cannot_end(app: SourceSystem) -> None:
    """Ending an area that still has areas under it is refused: they would fall out of every tree."""
    with pytest.raises(InvalidTransition, match="still has 2 area"):
        app.dissolve_area("D", effective=D1, actor="admin")
    with pytest.raises(ValidationError, match="named twice"):
        app.merge_areas(["A", "A"], into="B", effective=D1, actor="admin")


def test_innocent_setting_names_are_not_secrets(app: SourceSystem) -> None:
    """ping_interval or mapping are plain settings; sip_password must be a reference."""
    d = app.register_device(
        "Loa 2",
        "ip_speaker",
        area="A",
        transport="sip",
        address="sip:loa2@127.0.0.1",
        channels=["audio"],
        settings={"ping_interval": 30, "mapping": "x"},
        actor="admin",
    )
    assert app.device(d).settings == {"ping_interval": "30", "mapping": "x"}
    with pytest.raises(ValidationError, match="secret"):
        app.register_device(
            "Loa 3",
            "ip_speaker",
            area="A",
            transport="sip",
            address="sip:loa3@127.0.0.1",
            channels=["audio"],
            settings={"sip_password": "123456"},
            actor="admin",
        )


def test_inbound_addresses_match_active_devices_of_the_kind(app: SourceSystem) -> None:
    """``subscriber_area`` finds the area of the active device of that kind at that address (a
    replacement at a reused address wins over the decommissioned one); other kinds don't match."""
    old = app.register_device(
        "Thuê bao cũ",
        "sms_subscriber",
        area="A",
        transport="sms",
        address="+84912000001",
        channels=["sms"],
        actor="admin",
    )
    app.decommission_device(old, "đổi chủ thuê bao", actor="admin")
    assert app.subscriber_area("+84912000001", "sms_subscriber") is None
    app.register_device(
        "Thuê bao mới",
        "sms_subscriber",
        area="B",
        transport="sms",
        address="+84912000001",
        channels=["sms"],
        actor="admin",
    )
    assert app.subscriber_area("+84912000001", "sms_subscriber") == "B"
    assert app.subscriber_area("+84912000001", "ip_speaker") is None
    assert app.subscriber_area("+84912000002", "sms_subscriber") is None
