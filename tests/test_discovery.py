"""Zeroconf discovery on loopback, pending devices and the admin's decision.

Real mDNS on 127.0.0.1 (python-zeroconf on both sides, no mocks): the simulated board of
``examples/simulated_board.py`` advertises, ``tcs_core.discovery.Browser`` finds it, the app
records it as pending, an admin accepts it and the board then takes a push from
``BoardTransport``. Service instance names carry a random suffix so parallel runs never meet.

If these fail with nothing found, multicast on loopback does not work on the machine: see
docs/discovery.md ("Loopback"), e.g. ``ip link set lo multicast on``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import sys
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from tcs_core import BoardContent, Channel, DeviceKind, OutcomeStatus, Settings, SourceSystem
from tcs_core.discovery import (
    Browser,
    DiscoveryProblem,
    advertise,
    browse,
    declared_service_types,
    record_found,
    recorder,
)
from tcs_core.discovery_cli import main as discovery_main
from tcs_core.domain import DiscoveredService, DiscoveryStatus, RecordOutcome
from tcs_core.errors import (
    AlreadyExists,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from tcs_core.testing.conformance import make_context
from tcs_core.transport import DeviceTarget, delivery_key
from transports.board import AppSettings, BoardTransport

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from simulated_board import BOARD_SERVICE_TYPE, Board, advertise_board, serve  # noqa: E402

KEY = "khoá-bảng-tin-khám-phá"
ENV = {"TCS_TEST_DISCOVERY_KEY": KEY}
EFFECTIVE = date(2020, 1, 1)
LOOPBACK = ["127.0.0.1"]
TEXT = "Thông báo: bảng tin mới của xã đã được kết nối với hệ thống thông tin nguồn."
WAIT_S = 10.0


def make_app(settings: Settings | None = None) -> SourceSystem:
    """Province P with communes C1, C2; admins over everything and over C2; an operator over P."""
    app = SourceSystem(settings or Settings.in_memory())
    app.bootstrap_admin("admin")
    app.create_area("P", "Tỉnh P", "province", parent=None, effective=EFFECTIVE, actor="admin")
    for c in ("C1", "C2"):
        app.create_area(c, f"Xã {c}", "commune", parent="P", effective=EFFECTIVE, actor="admin")
    app.create_principal("qt.c2", grants=[("admin", "C2")], actor="admin")
    app.create_principal("op", grants=[("operator", "P")], actor="admin")
    return app


def tag() -> str:
    return uuid.uuid4().hex[:6]


def found(
    name: str = "Bảng tin chợ",
    port: int = 8090,
    path: str = "/b/0",
    **txt: str,
) -> DiscoveredService:
    """A board advertisement as the browser would read it (for the tests without network)."""
    records = {
        "kind": "board",
        "channel": "board",
        "address": "http://{host}:{port}" + path,
        "model": "TCS-SIM-BOARD",
        **txt,
    }
    return DiscoveredService.from_txt(
        service_name=f"{name}.{BOARD_SERVICE_TYPE}",
        service_type=BOARD_SERVICE_TYPE,
        host="127.0.0.1",
        port=port,
        txt=records,
        transport="board",
        transport_channels=[Channel.BOARD],
    )


def stored(app: SourceSystem) -> int:
    return app.recorder.max_notification_id() or 0


# -- the acceptance test: advertise, discover, accept, push ---------------------------------------


def test_simulated_board_is_discovered_accepted_by_an_admin_and_takes_a_push() -> None:
    """A simulated board advertises on loopback, is found, recorded pending (once, however often
    it is seen), refused to a non-admin, accepted by an admin and then receives a push."""

    async def go() -> None:
        app = make_app()
        board = Board(0, KEY.encode(), f"Bảng tin UBND xã {tag()}")
        runner, port = await serve([board])
        try:
            async with (
                advertise_board(board, port) as ad,
                Browser([BoardTransport], interfaces=LOOPBACK) as browser,
            ):
                seen = await browser.wait_for(lambda b: ad.service_name in b.found, WAIT_S)
                assert seen, f"{ad.service_name} not discovered on loopback in {WAIT_S} s"
                item = browser.found[ad.service_name]
            assert item.address == f"http://127.0.0.1:{port}/b/0"
            assert (item.kind, item.channels, item.transport) == (
                DeviceKind.BOARD,
                (Channel.BOARD,),
                "board",
            )
            assert item.model == "TCS-SIM-BOARD" and item.name == board.name

            first = app.record_discovered(item)
            again = record_found(app, [item])[0]
            assert first.outcome is RecordOutcome.NEW
            assert again == first.__class__(first.discovered_id, RecordOutcome.UNCHANGED, None)
            pending = app.discovered.pending()
            assert [p.discovered_id for p in pending] == [first.discovered_id]
            assert len(app.devices) == 0, "discovery registered a device by itself"

            entry = first.discovered_id
            assert entry is not None
            before = stored(app)
            for who, area in (("op", "C1"), ("qt.c2", "C1")):
                with pytest.raises(PermissionDenied):
                    app.accept_discovered(entry, area=area, actor=who)
            assert stored(app) == before and len(app.devices) == 0
            assert app.discovered.pending()[0].status == "pending"

            settings = {"key": "env:TCS_TEST_DISCOVERY_KEY", "mode": "push"}
            device_id = app.accept_discovered(entry, area="C1", actor="admin", settings=settings)
            assert app.accept_discovered(entry, area="C1", actor="admin") == device_id
            assert app.discovered.pending() == []
            view = app.devices.get(device_id)
            assert view is not None and view.address == item.address
            assert view.transport == "board" and view.name == board.name
            assert app.discovered_device(entry).status is DiscoveryStatus.ACCEPTED

            transport = BoardTransport(settings=AppSettings(app), environ=ENV, push_timeout_s=2.0)
            await transport.open()
            try:
                target = DeviceTarget(
                    device_id, view.name, view.kind, view.address, {}, view.channels
                )
                context = make_context()
                key = delivery_key(context.dispatch_id, device_id)
                outcome = await transport.deliver(target, BoardContent(TEXT), key, context)
            finally:
                await transport.close()
            assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
            assert board.items[key]["text"] == TEXT and board.rejected == []
        finally:
            await runner.cleanup()

    asyncio.run(go())


def test_bad_txt_records_are_reported_with_the_record_and_the_reason_and_not_recorded() -> None:
    """Advertisements with a wrong kind, a channel the transport does not serve, an address not
    pointing at the advertiser or a secret in TXT are problems naming the TXT record; a good one
    advertised at the same time is found; nothing is recorded."""

    async def go() -> None:
        t = tag()
        bad = {
            f"Máy nướng {t}": ({"kind": "toaster", "channel": "board"}, "txt.kind"),
            f"Loa lạc {t}": ({"kind": "board", "channel": "audio"}, "txt.channel"),
            f"Nơi khác {t}": (
                {"kind": "board", "channel": "board", "address": "http://10.9.9.9/b/0"},
                "txt.address",
            ),
            f"Lộ khoá {t}": ({"kind": "board", "channel": "board", "key": "s3cret"}, "txt.key"),
        }
        good = f"Bảng tốt {t}"
        # A careless device does not use tcs_core.discovery.advertise (which refuses secrets):
        # announce every advertisement with python-zeroconf directly.
        zc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
        infos = [
            ServiceInfo(
                BOARD_SERVICE_TYPE,
                f"{label}.{BOARD_SERVICE_TYPE}",
                addresses=[socket.inet_aton("127.0.0.1")],
                port=8090 + i,
                properties=props,
                server=f"bad-{t}-{i}.local.",
            )
            for i, (label, (props, _)) in enumerate(
                [*bad.items(), (good, ({"kind": "board", "channel": "board"}, ""))]
            )
        ]
        try:
            await asyncio.gather(*[zc.async_register_service(i) for i in infos])
            names = {i.name for i in infos}
            async with Browser([BoardTransport], interfaces=LOOPBACK) as browser:
                done = await browser.wait_for(
                    lambda b: names <= set(b.found) | set(b.problems), WAIT_S
                )
                result = browser.result()
        finally:
            await zc.async_close()
        assert done, f"not all of {sorted(names)} were seen on loopback"
        problems = {p.service_name: p for p in result.problems}
        for label, (_, field) in bad.items():
            p = problems[f"{label}.{BOARD_SERVICE_TYPE}"]
            assert isinstance(p, DiscoveryProblem) and p.field == field, p
            assert p.reason and label in str(p)
        assert "toaster" in problems[f"Máy nướng {t}.{BOARD_SERVICE_TYPE}"].reason
        assert "public" in problems[f"Lộ khoá {t}.{BOARD_SERVICE_TYPE}"].reason
        assert [f.name for f in result.found if f.name.endswith(t)] == [good]

        app = make_app()
        before = stored(app)
        record_found(app, [f for f in result.found if f.name.endswith(t)])
        assert [v.name for v in app.discovered.pending()] == [good]
        assert stored(app) == before + 1  # the good one only

    asyncio.run(go())


def test_a_changed_advertisement_updates_the_pending_entry_and_browse_sees_it_go() -> None:
    """A board that changes its TXT records is seen as changed (one update, no second entry);
    ``browse`` returns what is there and a withdrawn advertisement disappears."""

    async def go() -> None:
        app = make_app()
        board = Board(3, KEY.encode(), f"Bảng tin thôn {tag()}")
        async with advertise_board(board, 8123) as ad:
            result = await browse([BoardTransport()], 1.5, interfaces=LOOPBACK)
            mine = [f for f in result.found if f.service_name == ad.service_name]
            assert len(mine) == 1 and mine[0].address == "http://127.0.0.1:8123/b/3"
            first = app.record_discovered(mine[0])
            await ad.update({**dict(mine[0].properties), "kind": "board", "channel": "board",
                             "address": "http://{host}:{port}/b/7", "model": "V2"})  # fmt: skip
            async with Browser([BoardTransport], interfaces=LOOPBACK) as browser:
                changed = await browser.wait_for(
                    lambda b: getattr(b.found.get(ad.service_name), "model", "") == "V2", WAIT_S
                )
                assert changed, "the updated TXT records were not seen"
                newer = browser.found[ad.service_name]
                second = app.record_discovered(newer)
                assert second.outcome is RecordOutcome.UPDATED
                assert second.discovered_id == first.discovered_id
                assert [v.address for v in app.discovered.pending()] == [
                    "http://127.0.0.1:8123/b/7"
                ]
        # The goodbye packets remove it from a browser that is still listening.
        async with Browser([BoardTransport], interfaces=LOOPBACK) as browser:
            async with advertise_board(board, 8124) as ad2:
                assert await browser.wait_for(lambda b: ad2.service_name in b.found, WAIT_S)
            gone = await browser.wait_for(lambda b: ad2.service_name not in b.found, WAIT_S)
            assert gone, "a withdrawn advertisement stayed in the browser's list"

    asyncio.run(go())


def test_a_server_browser_records_finds_as_pending_as_they_come() -> None:
    """``recorder(app)`` as ``on_found`` records each advertisement as pending while browsing,
    once however many times zeroconf reports it; nothing is registered."""

    async def go() -> None:
        app = make_app()
        board = Board(5, KEY.encode(), f"Bảng tin trạm y tế {tag()}")
        async with (
            Browser([BoardTransport], interfaces=LOOPBACK, on_found=recorder(app)) as browser,
            advertise_board(board, 8126) as ad,
        ):
            names = lambda _: [v.service_name for v in app.discovered.pending()]  # noqa: E731
            assert await browser.wait_for(lambda b: ad.service_name in names(b), WAIT_S)
            await ad.update({"kind": "board", "channel": "board", "model": "V3",
                             "address": "http://{host}:{port}/b/5"})  # fmt: skip
            assert await browser.wait_for(
                lambda _: app.discovered.pending()[0].model == "V3", WAIT_S
            )
        assert len(app.discovered) == 1 and len(app.devices) == 0

    asyncio.run(go())


def test_cli_discover_lists_in_vietnamese_and_records_pending(tmp_path: Path) -> None:
    """``tcs devices discover --record`` lists the board (Vietnamese by default, English with
    --lang en) and records it pending in the store; ``devices pending`` shows it."""
    db = tmp_path / "tcs.sqlite"
    make_app(Settings.sqlite(str(db))).close()

    async def go() -> tuple[str, str]:
        board = Board(0, KEY.encode(), f"Bảng tin CLI {tag()}")
        async with advertise_board(board, 8125):
            vi, en = io.StringIO(), io.StringIO()
            common = ["--seconds", "1.5", "--interface", "127.0.0.1", "--db", str(db)]
            args_vi = ["devices", "discover", "--record", *common]
            args_en = ["devices", "discover", *common, "--lang", "en"]
            for args, out in ((args_vi, vi), (args_en, en)):
                code = await asyncio.to_thread(discovery_main, args, out)
                assert code == 0
        return vi.getvalue(), en.getvalue()

    vi, en = asyncio.run(go())
    assert "Bảng tin CLI" in vi and "Tìm thấy" in vi and "chờ duyệt" in vi
    assert "Found" in en and "Bảng tin CLI" in en
    out = io.StringIO()
    assert discovery_main(["devices", "pending", "--db", str(db)], out) == 0
    assert "Bảng tin CLI" in out.getvalue()
    app = SourceSystem(Settings.sqlite(str(db)))
    try:
        assert [v.name[:12] for v in app.discovered.pending()] == ["Bảng tin CLI"]
    finally:
        app.close()


def test_cli_accepts_and_rejects_by_short_id_and_refuses_bad_options(tmp_path: Path) -> None:
    """``devices accept`` registers by the listed 8-character id with settings, ``reject``
    turns one down; an unknown id, a bad --type or --seconds are clear errors."""
    db = str(tmp_path / "tcs.sqlite")
    app = make_app(Settings.sqlite(db))
    one = app.record_discovered(found("Bảng I")).discovered_id
    two = app.record_discovered(found("Bảng K", port=8094)).discovered_id
    app.close()
    out = io.StringIO()
    short = str(one)[:8]
    setting = "--setting=key=env:BOARD_KEY"
    accept = ["devices", "accept", short, "--area", "C1", "--as", "admin", setting, "--db", db]
    assert discovery_main(accept, out) == 0
    reject = ["devices", "reject", str(two), "--reason", "trùng", "--as", "qt.c2", "--db", db]
    assert discovery_main([*reject, "--lang", "en"], out) == 0
    assert "Đã đăng ký thiết bị Bảng I" in out.getvalue() and "Rejected Bảng K" in out.getvalue()
    with pytest.raises(NotFound):
        discovery_main(["devices", "accept", "ffffffff", "--area", "C1", "--as", "admin",
                        "--db", db], out)  # fmt: skip
    for bad, field in ((["--seconds", "0"], "--seconds"), (["--type", "x"], "--type")):
        with pytest.raises(ValidationError) as exc:
            discovery_main(["devices", "discover", *bad], out)
        assert exc.value.field == field
    again = SourceSystem(Settings.sqlite(db))
    try:
        device = again.discovered.get(one).device_id  # type: ignore[union-attr]
        assert device is not None
        assert again.devices.get(device).settings == {"key": "env:BOARD_KEY"}  # type: ignore[union-attr]
        assert again.discovered.pending() == []
    finally:
        again.close()


# -- the pending → accepted flow, without the network ----------------------------------------------


def test_rediscovery_under_another_name_or_of_a_registered_device_does_not_duplicate() -> None:
    """The same service name, or the same transport and address under a new name, is one entry;
    a device already registered at that address is 'known' and gets none."""
    app = make_app()
    a = app.record_discovered(found("Bảng A"))
    b = app.record_discovered(found("Bảng A (đổi tên)"))
    assert b.discovered_id == a.discovered_id and b.outcome is RecordOutcome.UPDATED
    assert len(app.discovered) == 1 and app.discovered.pending()[0].name == "Bảng A (đổi tên)"
    app.register_device(
        "Bảng B", "board", area="C1", transport="board",
        address="http://127.0.0.1:8091/b/0", channels=["board"], actor="admin",
    )  # fmt: skip
    known = app.record_discovered(found("Bảng B", port=8091))
    assert known.outcome is RecordOutcome.KNOWN and known.discovered_id is None
    assert len(app.discovered) == 1


def test_accept_is_idempotent_and_refuses_another_area_or_a_taken_address() -> None:
    """Accepting twice gives one device; accepting into another area, or an entry whose address
    a device took meanwhile, is refused and stores nothing."""
    app = make_app()
    entry = app.record_discovered(found("Bảng C")).discovered_id
    assert entry is not None
    device = app.accept_discovered(entry, area="C2", actor="qt.c2")  # admin over C2 suffices
    assert app.accept_discovered(entry, area="C2", actor="admin") == device
    before = stored(app)
    with pytest.raises(InvalidTransition):
        app.accept_discovered(entry, area="C1", actor="admin")
    other = app.record_discovered(found("Bảng D", port=8092)).discovered_id
    assert other is not None
    app.register_device(
        "Bảng D (tay)", "board", area="C1", transport="board",
        address="http://127.0.0.1:8092/b/0", channels=["board"], actor="admin",
    )  # fmt: skip
    before = stored(app)
    with pytest.raises(AlreadyExists):
        app.accept_discovered(other, area="C1", actor="admin")
    with pytest.raises(ValidationError) as exc:
        app.accept_discovered(other, area="C1", actor="admin", settings={"password": "x"})
    assert exc.value.field == "settings.password"
    assert stored(app) == before
    assert len([d for d in app.devices.all() if d.address.endswith(":8092/b/0")]) == 1


def test_rejected_devices_stay_out_of_the_pending_list_until_an_admin_accepts_them() -> None:
    """A rejected entry is not pending again when re-advertised; an admin can still accept it;
    an accepted one cannot be rejected; non-admins can neither record nor reject."""
    app = make_app()
    entry = app.record_discovered(found("Bảng E")).discovered_id
    assert entry is not None
    with pytest.raises(PermissionDenied):
        app.reject_discovered(entry, "không rõ nguồn gốc", actor="op")
    with pytest.raises(PermissionDenied):
        app.record_discovered(found("Bảng F"), actor="op")
    with pytest.raises(ValidationError):
        app.reject_discovered(entry, " ", actor="admin")
    assert app.reject_discovered(entry, "không rõ nguồn gốc", actor="qt.c2") is True
    assert app.reject_discovered(entry, "lần nữa", actor="admin") is False
    assert app.record_discovered(found("Bảng E")).outcome is RecordOutcome.UNCHANGED
    assert app.discovered.pending() == []
    view = app.discovered.get(entry)
    assert view is not None and (view.status, view.decided_by) == ("rejected", "qt.c2")
    device = app.accept_discovered(entry, area="C1", actor="admin")
    with pytest.raises(InvalidTransition):
        app.reject_discovered(entry, "muộn", actor="admin")
    assert app.discovered.get(entry).device_id == device  # type: ignore[union-attr]


def test_pending_entries_survive_a_restart(tmp_path: Path) -> None:
    """The pending list is a projection of stored events: a reopened store shows it again."""
    settings = Settings.sqlite(str(tmp_path / "tcs.sqlite"))
    app = make_app(settings)
    entry = app.record_discovered(found("Bảng G", fw="2.1")).discovered_id
    app.record_discovered(found("Bảng H", port=8093))
    app.close()
    again = SourceSystem(settings)
    try:
        names = [v.name for v in again.discovered.pending()]
        assert names == ["Bảng G", "Bảng H"]
        assert again.discovered.get(entry).properties == {"fw": "2.1"}  # type: ignore[arg-type, union-attr]
        assert again.discovered_device(entry).as_service() == found("Bảng G", fw="2.1")  # type: ignore[arg-type]
    finally:
        again.close()


@pytest.mark.parametrize(
    ("txt", "field"),
    [
        ({"channel": "board"}, "txt.kind"),
        ({"kind": "board"}, "txt.channel"),
        ({"kind": "board", "channel": "board,fax"}, "txt.channel"),
        (
            {"kind": "board", "channel": "board", "address": "http://{host}:{port}/{x}"},
            "txt.address",
        ),
        ({"kind": "board", "channel": "board", "transport": "sip"}, "txt.transport"),
        ({"kind": "board", "channel": "board", "txtvers": "2"}, "txt.txtvers"),
        ({"kind": "board", "channel": "board", "api_token": "abc"}, "txt.api_token"),
        ({"kind": "board", "channel": "board", "name": "a\nb"}, "txt.name"),
        ({"kind": "board", "channel": "board", "model": "x" * 65}, "txt.model"),
    ],
)
def test_txt_layout_errors_name_the_record(txt: dict[str, str], field: str) -> None:
    """Each malformed TXT record is a ValidationError naming that record."""
    with pytest.raises(ValidationError) as exc:
        DiscoveredService.from_txt(
            service_name=f"X.{BOARD_SERVICE_TYPE}",
            service_type="_tcs-board._tcp",
            host="127.0.0.1",
            port=80,
            txt=txt,
            transport="board",
            transport_channels=[Channel.BOARD],
        )
    assert exc.value.field == field and exc.value.reason


def test_non_utf8_txt_and_bad_service_types_are_refused() -> None:
    """Undecodable TXT bytes and malformed service types are clear validation errors."""
    with pytest.raises(ValidationError) as exc:
        DiscoveredService.from_txt(
            service_name=f"X.{BOARD_SERVICE_TYPE}", service_type=BOARD_SERVICE_TYPE,
            host="127.0.0.1", port=80, txt={b"kind": b"\xff\xfe", b"channel": b"board"},
            transport="board",
        )  # fmt: skip
    assert exc.value.field == "txt.kind"
    for bad in ("tcs-board._tcp", "_tcs_board._tcp", "_this-name-is-too-long._udp", "_x._sctp"):
        with pytest.raises(ValidationError):
            declared_service_types([], {bad: "board"})


def test_transports_declare_service_types_through_an_optional_attribute() -> None:
    """Transports without the attribute are skipped; the board's type is read from the class or
    an instance; a type claimed by two transports is an error; no type at all cannot browse."""

    class Speaker:
        name = "sip"
        channels = frozenset({Channel.AUDIO})
        discovery_service_types = frozenset({"_tcs-speaker._udp"})

    class Plain:
        name = "memory"

    decls = declared_service_types([BoardTransport, Speaker(), Plain()])
    assert sorted(decls) == ["_tcs-board._tcp.local.", "_tcs-speaker._udp.local."]
    assert decls["_tcs-speaker._udp.local."].transport == "sip"
    assert decls["_tcs-board._tcp.local."].channels == frozenset({Channel.BOARD})

    class Clash:
        name = "other"
        discovery_service_types = ("_tcs-board._tcp.local.",)

    with pytest.raises(ValidationError):
        declared_service_types([BoardTransport, Clash])
    with pytest.raises(ValidationError):
        Browser([Plain()])


def test_advertise_refuses_secrets_and_bad_names_before_touching_the_network() -> None:
    """``advertise`` refuses a secret TXT record, a dotted or over-long name and a bad host."""

    async def go(**kw: Any) -> None:
        args: dict[str, Any] = {"port": 8090, "properties": {"kind": "board"}, **kw}
        name = args.pop("name", "Bảng")
        async with advertise(name, BOARD_SERVICE_TYPE, **args):
            pass  # pragma: no cover - never reached

    cases: list[tuple[dict[str, Any], str]] = [
        ({"properties": {"password": "x"}}, "properties.password"),
        ({"name": "a.b"}, "name"),
        ({"name": "ả" * 40}, "name"),
        ({"host": "localhost"}, "host"),
        ({"port": 0}, "port"),
    ]
    for kw, field in cases:
        with pytest.raises(ValidationError) as exc:
            asyncio.run(go(**kw))
        assert exc.value.field == field


def test_record_refuses_anything_but_a_discovered_service() -> None:
    """``record_discovered`` takes only validated values; a raw dict stores nothing."""
    app = make_app()
    before = stored(app)
    with pytest.raises(ValidationError):
        app.record_discovered({"service_name": "x"})  # type: ignore[arg-type]
    with contextlib.suppress(ValidationError):
        found("Bảng", kind="toaster")
    assert stored(app) == before and len(app.discovered) == 0


_TXT_KEYS = st.sampled_from(
    ["kind", "channel", "address", "name", "model", "transport", "txtvers", "fw", "KIND", "pin"]
)
_TXT_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.sampled_from(["board", "ip_speaker", "audio", "board,sms", "http://{host}:{port}/b/0", ""]),
    st.text(max_size=40),
)


@given(
    txt=st.builds(
        lambda base, extra: {**base, **extra},
        st.fixed_dictionaries(
            {"kind": st.sampled_from(["board", "toaster"]), "channel": st.just("board")}
        ),
        st.dictionaries(st.one_of(_TXT_KEYS, st.text(max_size=12)), _TXT_VALUES, max_size=6),
    ),
    host=st.sampled_from(["127.0.0.1", "10.0.0.7", "fe80::1"]),
    port=st.integers(min_value=-1, max_value=70000),
)
def test_any_txt_record_set_gives_a_valid_find_or_a_validation_error(
    txt: dict[str, Any], host: str, port: int
) -> None:
    """Whatever a device advertises, reading it either succeeds with a value that survives the
    event store's round trip or fails with a ValidationError naming a field; nothing else."""
    error: ValidationError | None = None
    try:
        f = DiscoveredService.from_txt(
            service_name=f"Thiết bị.{BOARD_SERVICE_TYPE}",
            service_type=BOARD_SERVICE_TYPE,
            host=host,
            port=port,
            txt=txt,
            transport="board",
        )
    except ValidationError as exc:
        error = exc
    if error is not None:
        assert error.field and error.reason
        return
    assert host in f.address  # the address always points at the advertiser
    assert DiscoveredService(**f.event_fields()) == f
