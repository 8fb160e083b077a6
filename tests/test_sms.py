"""The SMS transport without Kannel: encoding and segmentation (Hypothesis), Vietnamese numbers,
subscribers as devices, Dispatch receipts, the SMS-sender permission, the journal, and the generic
HTTP/JSON adapter against the stub gateway shipped in ``examples/sms_gateway_stub.py`` (real
HTTP on 127.0.0.1). Kannel itself is exercised in ``tests/test_sms_kannel.py``."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from tcs_core import (
    Category,
    Channel,
    DeviceKind,
    Permission,
    ScheduleSpec,
    Settings,
    SmsContent,
    SourceSystem,
    Targets,
)
from tcs_core.domain.dispatch import RECEIPT_STATUSES, DeliveryReceipt
from tcs_core.errors import InvalidTransition, PermissionDenied, ValidationError
from tcs_core.testing.conformance import make_context
from tcs_core.transport import DeviceTarget, delivery_key
from transports.sms import (
    Coding,
    HttpJsonGateway,
    Journal,
    SmsTransport,
    encode,
    gateway_from_mapping,
    is_gsm7,
    normalise_vn,
    receiver_app,
    send_answer,
    strip_diacritics,
    subscriber_specs,
)
from transports.sms.kannel import free_port

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from sms_gateway_stub import StubGateway  # noqa: E402

EFFECTIVE = date(2020, 1, 1)
TEXT = "UBND xã thông báo: mưa lớn kéo dài, bà con vùng trũng chú ý phòng chống sạt lở đất."

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = "^{}\\[~]|€"


# -- encoding ---------------------------------------------------------------------------------

texts = st.text(
    alphabet=st.sampled_from(GSM_BASIC + GSM_EXT)
    | st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=700,
)


@given(texts)
def test_parts_rebuild_the_text_and_respect_the_segment_sizes(text: str) -> None:
    """Parts join back to the text; each fits 160/153 septets or 70/67 units; the count is minimal
    up to the unsplittable pairs."""
    enc = encode(text)
    assert "".join(enc.parts) == text
    assert enc.coding is (Coding.GSM7 if is_gsm7(text) else Coding.UCS2)
    single, multi = (160, 153) if enc.coding is Coding.GSM7 else (70, 67)

    def units(part: str) -> int:
        if enc.coding is Coding.GSM7:
            return sum(2 if c in GSM_EXT else 1 for c in part)
        return sum(2 if ord(c) > 0xFFFF else 1 for c in part)

    assert enc.units == units(text)
    if not text:
        assert enc.segments == 0
    elif enc.units <= single:
        assert enc.segments == 1
    else:
        assert all(units(p) <= multi for p in enc.parts)
        assert all(p for p in enc.parts)
        assert math.ceil(enc.units / multi) <= enc.segments <= math.ceil(enc.units / (multi - 1))


@given(st.text(max_size=300))
def test_stripped_text_is_always_gsm7_and_gsm7_text_is_untouched(text: str) -> None:
    """Stripping always yields GSM-7; a text that already is GSM-7 comes back unchanged."""
    s = strip_diacritics(text)
    assert is_gsm7(s.text)
    if is_gsm7(text):
        assert s.text == text and not s.changed and s.loss == ""


def test_segment_boundaries() -> None:
    """160 GSM-7 characters are one SMS, 161 are two (153+8); 70 UCS-2 one, 71 two (67+4); an
    escape pair or a surrogate pair is never split."""
    assert encode("a" * 160).segments == 1
    assert [len(p) for p in encode("a" * 161).parts] == [153, 8]
    assert encode("ô" * 70).segments == 1
    assert [len(p) for p in encode("ô" * 71).parts] == [67, 4]
    parts = encode("a" * 152 + "€" + "b" * 10).parts
    assert parts[0] == "a" * 152 and parts[1].startswith("€")
    parts = encode("ô" * 66 + "😀" + "x" * 10).parts
    assert parts[0] == "ô" * 66 and parts[1].startswith("😀")
    assert encode("Thông báo").summary == "ucs2, 1 segment, 9/70 UCS-2 units"
    assert encode("a" * 161).summary == "gsm7, 2 segments, 161/306 septets"


def test_vietnamese_diacritics_stripped_with_the_loss_spelled_out() -> None:
    """Vietnamese loses its marks (đ → d too), typographic quotes become plain, and the note
    lists every replacement and every character with no GSM-7 form."""
    s = strip_diacritics("Đường “ngập” – cẩn thận 😀")
    assert s.text == 'Duong "ngap" - can than ?'
    assert "Đ→D" in s.loss and "ư→u" in s.loss and "ậ→a" in s.loss
    assert "😀" in s.loss and "'?'" in s.loss
    assert encode(s.text).coding is Coding.GSM7


# -- numbers and subscribers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["0912345678", "+84912345678", "84912345678", "091 234 5678", "+84-91-234-5678"]
)
def test_vietnamese_numbers_normalise_to_e164(raw: str) -> None:
    """Every usual way of writing a mobile number gives the same +84… number."""
    assert normalise_vn(raw) == "+84912345678"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "no phone number"),
        ("12345", "not a valid Vietnamese number"),
        ("+14155552671", "not a Vietnamese number"),
        ("091234567", "not a valid Vietnamese number"),
        ("02838123456", "fixed line"),
        ("số điện thoại", "not a phone number"),
    ],
)
def test_bad_numbers_are_refused_with_the_reason(raw: str, why: str) -> None:
    """A bad number raises ValidationError naming the field and saying what is wrong."""
    with pytest.raises(ValidationError) as err:
        normalise_vn(raw)
    assert err.value.field == "address" and why in err.value.reason


def make_app() -> SourceSystem:
    """Province P with communes C1, C2; a provincial operator and approver holding SMS_SENDER,
    and a commune operator of C1 without it."""
    app = SourceSystem(Settings.in_memory())
    app.bootstrap_admin("admin")
    app.create_area("P", "Tỉnh P", "province", parent=None, effective=EFFECTIVE, actor="admin")
    for c in ("C1", "C2"):
        app.create_area(c, f"Xã {c}", "commune", parent="P", effective=EFFECTIVE, actor="admin")
    app.create_principal(
        "op", grants=[("operator", "P")], permissions=["sms_sender"], actor="admin"
    )
    app.create_principal(
        "ap", grants=[("approver", "P")], permissions=["sms_sender"], actor="admin"
    )
    app.create_principal("op_xa", grants=[("operator", "C1")], actor="admin")
    app.create_principal("ap_xa", grants=[("approver", "C1")], actor="admin")
    return app


def test_subscribers_register_in_bulk_and_are_resolved_like_devices() -> None:
    """Subscribers become sms_subscriber devices with +84 addresses; an area's subscribers are
    what an SMS broadcast to the area resolves to."""
    app = make_app()
    specs = subscriber_specs(
        [{"number": "0912000001"}, {"number": "84912000002", "area": "C2"}], area="C1"
    )
    ids = app.register_devices(specs, actor="admin")
    assert [app.device(i).address for i in ids] == ["+84912000001", "+84912000002"]
    assert {app.device(i).kind for i in ids} == {DeviceKind.SMS_SUBSCRIBER}
    c1 = app.area("C1").area_id
    found, _ = app.resolve_targets(Targets(["C1"], ["sms"]), [c1], datetime.now(UTC))
    assert [d.device_id for d in found] == [ids[0]]
    p = app.area("P").area_id
    found, _ = app.resolve_targets(Targets(["P"], ["sms"]), [p], datetime.now(UTC))
    assert {d.device_id for d in found} == set(ids)


def test_a_bad_number_in_a_bulk_list_registers_nothing() -> None:
    """One bad or repeated number names its row and nothing at all is registered."""
    app = make_app()
    before = len(app.devices.all())
    with pytest.raises(ValidationError, match="row 2"):
        subscriber_specs([{"number": "0912000001"}, {"number": "0241234"}], area="C1")
    with pytest.raises(ValidationError, match="also row 1"):
        subscriber_specs([{"number": "0912000001"}, {"number": "+84912000001"}], area="C1")
    assert len(app.devices.all()) == before


# -- permissions ------------------------------------------------------------------------------


def _sms_draft(app: SourceSystem, actor: str, area: str) -> UUID:
    return app.draft_broadcast(
        "Cảnh báo mưa lớn",
        category=Category.DISASTER,
        content={Channel.SMS: SmsContent(TEXT)},
        targets=Targets([area], ["sms"]),
        schedule=ScheduleSpec.once(datetime.now(UTC) + timedelta(hours=1)),
        actor=actor,
    )


def test_a_commune_operator_cannot_send_sms() -> None:
    """NĐ 49/2024: without the SMS-sender permission a commune operator's SMS broadcast cannot be
    submitted, nor approved by a commune approver; the provincial pair can."""
    app = make_app()
    b = _sms_draft(app, "op_xa", "C1")
    with pytest.raises(PermissionDenied, match=Permission.SMS_SENDER.value):
        app.submit_broadcast(b, "op_xa")
    assert app.broadcast(b).status.value == "drafted"  # nothing changed
    app.submit_broadcast(b, "op")
    with pytest.raises(PermissionDenied, match="sms_sender"):
        app.approve_broadcast(b, "ap_xa")
    app.approve_broadcast(b, "ap")
    assert app.broadcast(b).status.value == "approved"


# -- receipts on the Dispatch -----------------------------------------------------------------


def _dispatch(app: SourceSystem, n: int = 2) -> tuple[UUID, list[UUID]]:
    ids = app.register_devices(
        subscriber_specs([{"number": f"09120001{i:02d}"} for i in range(n)], area="C1"),
        actor="admin",
    )
    b = _sms_draft(app, "op", "C1")
    app.submit_broadcast(b, "op")
    app.approve_broadcast(b, "ap")
    d = app.start_dispatch(b, datetime.now(UTC), ids)
    return d, ids


_APP_FOR_RECEIPTS = make_app()


def test_receipts_are_recorded_after_completion_and_never_go_backwards() -> None:
    """Reports arrive after the dispatch completed and out of order: a late SMSC ack does not hide
    "delivered", a final status stays, duplicates store nothing."""
    app = make_app()
    d, (a, b) = _dispatch(app)
    now = datetime.now(UTC)
    app.record_batch(d, [a, b], "delivered", now, "accepted by kannel")
    app.complete_dispatch(d)
    assert app.record_receipts(d, [DeliveryReceipt(a, "delivered", now, "smsc-1")]) == 1
    assert app.record_receipts(d, [DeliveryReceipt(a, "accepted", now)]) == 0  # late DLR 8
    assert app.record_receipts(d, [DeliveryReceipt(a, "failed", now)]) == 0  # final stays
    assert app.record_receipts(d, [DeliveryReceipt(b, "buffered", now)]) == 1
    assert app.record_receipts(d, [DeliveryReceipt(b, "buffered", now)]) == 0
    assert app.record_receipts(d, [DeliveryReceipt(b, "failed", now, "", "absent")]) == 1
    dispatch = app.dispatch(d)
    receipt = dispatch.receipt(a)
    assert receipt is not None and receipt.status == "delivered" and receipt.remote_id == "smsc-1"
    assert dispatch.receipt_counts()["failed"] == 1
    topics = [n.topic for n in app.recorder.select_notifications(1, 10_000)]
    assert topics.count("tcs.dispatch.receipts_recorded") == 3


def test_bad_receipts_are_refused_and_store_nothing() -> None:
    """An unknown status or a device outside the dispatch is refused with a clear error."""
    app = make_app()
    d, (a, _) = _dispatch(app)
    with pytest.raises(ValidationError, match=r"receipt\.status"):
        DeliveryReceipt(a, "lost", datetime.now(UTC))
    with pytest.raises(InvalidTransition, match="not part of dispatch"):
        app.record_receipts(d, [DeliveryReceipt(uuid4(), "delivered", datetime.now(UTC))])
    assert app.dispatch(d).receipts == {}


# -- the journal ------------------------------------------------------------------------------


def test_journal_survives_reopening(tmp_path: Path) -> None:
    """States and reports written before a restart are there after it."""
    j = Journal(tmp_path / "j.sqlite")
    j.begin("k1", dispatch="d", device="a", number="+84912000001", gateway="g")
    j.begin("k2", dispatch="d", device="b", number="+84912000002", gateway="g")
    j.finish("k2", "accepted", "gw-7", "0: Accepted for delivery")
    j.add_receipt("k2", "delivered", "smsc-7")
    j.close()
    j = Journal(tmp_path / "j.sqlite")
    pending = j.pending()
    assert [e.key for e in pending] == ["k1"]
    entry = j.get("k2")
    assert entry is not None and entry.state == "accepted" and entry.remote_id == "gw-7"
    assert [r.status for r in j.unrecorded()] == ["delivered"]
    j.mark_recorded([r.seq for r in j.unrecorded()])
    assert j.unrecorded() == []
    assert j.prune(3600) == 0 and j.prune(0) == 1  # k2 answered; the pending k1 is kept
    assert j.get("k2") is None and j.receipts("k2") == [] and j.get("k1") is not None


def test_gateway_settings_are_validated() -> None:
    """A TOML gateway table with a bad field is refused naming the field."""
    with pytest.raises(ValidationError, match="dlr_mask"):
        gateway_from_mapping(
            {
                "name": "k",
                "url": "http://127.0.0.1:1/",
                "username": "u",
                "password": "p",
                "dlr_mask": 3,
            }
        )
    with pytest.raises(ValidationError, match="unknown setting"):
        gateway_from_mapping(
            {"kind": "json", "name": "j", "url": "http://127.0.0.1:1/", "pasword": "x"}
        )
    with pytest.raises(ValidationError, match="sender"):
        gateway_from_mapping(
            {"kind": "json", "name": "j", "url": "http://x/", "sender": "QUÁ DÀI BRAND"}
        )
    with pytest.raises(ValidationError, match="unknown template"):
        HttpJsonGateway(name="j", url="http://x/", body={"to": "{phone}"})


# -- the HTTP/JSON adapter against the stub gateway ------------------------------------------


def _target(number: str, gateway: str = "stub", name: str = "Thuê bao thử") -> DeviceTarget:
    return DeviceTarget(
        uuid4(), name, DeviceKind.SMS_SUBSCRIBER, number, {"gateway": gateway}, (Channel.SMS,)
    )


@contextlib.asynccontextmanager
async def stub_and_transport(
    tmp_path: Path,
    app: SourceSystem | None = None,
    receiver: dict[str, Any] | None = None,
    token: str = "",
    **gw: Any,
) -> AsyncIterator[tuple[StubGateway, SmsTransport]]:
    """The stub gateway, an SmsTransport with gateways for each stub mode, and its receiver."""
    stub = StubGateway(slow_s=5.0)
    base = await stub.start()
    port = free_port()
    gateways = [
        HttpJsonGateway(name="stub", url=f"{base}/send", sender="UBND", idempotent=True, **gw),
        *[
            HttpJsonGateway(
                name=m, url=f"{base}/mode/{m}/send", timeout_s=0.5, retries=1, idempotent=True
            )
            for m in ("429", "500", "garbage", "slow")
        ],
        HttpJsonGateway(name="down", url=f"http://127.0.0.1:{free_port()}/send"),
    ]
    transport = SmsTransport(
        gateways=gateways,
        journal=tmp_path / "journal.sqlite",
        receiver_url=f"http://127.0.0.1:{port}",
        receiver_token="env:TCS_TEST_RECEIVER_TOKEN" if token else "",
        environ={"TCS_TEST_RECEIVER_TOKEN": token},
    )
    runner = web.AppRunner(receiver_app(transport, app, **(receiver or {})), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await transport.open()
    try:
        yield stub, transport
    finally:
        await transport.close()
        await runner.cleanup()
        await stub.stop()


def test_json_gateway_delivers_once_per_key_and_its_report_reaches_the_dispatch(
    tmp_path: Path,
) -> None:
    """Delivered with the gateway's id; the same key again is no second message; the report
    posted to our receiver becomes a receipt on the Dispatch."""
    app = make_app()
    d, (device, _) = _dispatch(app)

    async def go() -> None:
        async with stub_and_transport(tmp_path, app) as (stub, transport):
            target = DeviceTarget(
                device, "Thuê bao 1", DeviceKind.SMS_SUBSCRIBER, "+84912000100", {}, (Channel.SMS,)
            )
            key = delivery_key(d, device)
            context = make_context(d)
            first = await transport.deliver(target, SmsContent(TEXT), key, context)
            again = await transport.deliver(target, SmsContent(TEXT), key + ".2", context)
            assert first.status.value == "delivered", first.reason
            assert first.remote_id == "stub-1" and "ucs2, 2 segments" in first.reason
            assert again.status.value == "delivered" and "already accepted" in again.reason
            assert stub.submissions == 1 and stub.requests == 1
            sent = stub.messages[key]
            assert sent["text"] == TEXT and sent["from"] == "UBND" and sent["to"] == "+84912000100"
            for _ in range(100):
                r = app.dispatch(d).receipt(device)
                if r is not None:
                    break
                await asyncio.sleep(0.05)
            assert r is not None and r.status == "delivered" and r.remote_id == "stub-1"

    asyncio.run(go())


def test_every_gateway_failure_is_an_outcome_with_a_clear_reason(tmp_path: Path) -> None:
    """429, 500, garbage, a stalled gateway, a gateway that is down, a bad number and a text too
    long each come back as an outcome (never an exception) whose reason says what happened."""

    async def go() -> None:
        async with stub_and_transport(tmp_path, max_segments=1) as (stub, transport):
            content = SmsContent(TEXT)

            async def to(gateway: str, number: str = "0912000200") -> Any:
                t = _target(number, gateway)
                return await transport.deliver(
                    t, content, delivery_key(uuid4(), t.device_id), make_context()
                )

            o = await to("429")
            assert o.status.value == "retryable" and "HTTP 429" in o.reason
            assert o.retry_after_s == 1.0
            o = await to("500")
            assert o.status.value == "retryable" and "HTTP 500: internal error" in o.reason
            o = await to("garbage")
            assert o.status.value == "retryable" and "without a message id" in o.reason
            o = await to("slow")
            assert o.status.value == "retryable" and "no answer" in o.reason
            o = await to("down")
            assert o.status.value == "retryable" and "cannot connect to gateway down" in o.reason
            o = await to("stub", "0241234567")
            assert o.status.value == "failed" and "bad phone number" in o.reason
            o = await to("stub")  # max_segments=1 and TEXT takes two UCS-2 segments
            assert (
                o.status.value == "failed" and "too long" in o.reason and "2 segments" in o.reason
            )
            o = await transport.send("0912000200", "   ", key="k-empty", gateway="stub")
            assert o.status.value == "failed" and "empty text" in o.reason
            assert stub.submissions == 0

    asyncio.run(go())
    with pytest.raises(ValidationError, match=r"sms\.text"):
        SmsContent("")
    with pytest.raises(ValidationError, match=r"sms\.text"):
        SmsContent("x" * 671)


def test_strip_diacritics_gateway_sends_gsm7_and_records_the_loss(tmp_path: Path) -> None:
    """With strip_diacritics the text goes as one GSM-7 segment and the outcome says what was
    lost."""

    async def go() -> None:
        async with stub_and_transport(tmp_path, strip_diacritics=True) as (stub, transport):
            t = _target("0912000300")
            o = await transport.deliver(
                t, SmsContent(TEXT), delivery_key(uuid4(), t.device_id), make_context()
            )
            assert o.status.value == "delivered"
            assert "gsm7, 1 segment" in o.reason and "diacritics stripped" in o.reason
            (sent,) = stub.messages.values()
            assert (
                sent["text"].startswith("UBND xa thong bao: mua lon") and sent["coding"] == "gsm7"
            )

    asyncio.run(go())


def test_an_ambiguous_submission_to_an_idempotent_gateway_is_resent_and_deduplicated(
    tmp_path: Path,
) -> None:
    """A key left pending (crash after the request left) is resent at once to a gateway that
    de-duplicates by reference: the gateway keeps one message."""

    async def go() -> None:
        async with stub_and_transport(tmp_path) as (stub, transport):
            t = _target("0912000400")
            key = delivery_key(uuid4(), t.device_id)
            first = await transport.deliver(t, SmsContent(TEXT), key, make_context())
            assert first.status.value == "delivered"
            # Simulate the crash: the answer never reached the journal.
            transport.journal.begin(
                key, dispatch="d", device=t.device_id.hex, number="n", gateway="stub"
            )
            again = await transport.deliver(t, SmsContent(TEXT), key, make_context())
            assert again.status.value == "delivered", again.reason
            assert stub.submissions == 1 and stub.duplicates == 1

    asyncio.run(go())


def test_inbound_message_becomes_feedback_in_the_subscribers_area_or_the_keywords(
    tmp_path: Path,
) -> None:
    """An MO from a subscriber of C2 is Feedback in C2; a first word that is a keyword names the
    area; an unknown sender without keyword is Feedback with no area; the same message id twice
    is one item; the acknowledgement goes back through the same gateway."""
    app = make_app()
    app.register_devices(subscriber_specs([{"number": "0912000500"}], area="C2"), actor="admin")
    receiver = {"keywords": {"XA1": "C1"}, "ack_text": "Đã nhận ý kiến, mã {ref}"}

    async def go() -> None:
        async with stub_and_transport(tmp_path, app, receiver=receiver) as (stub, transport):
            mo = f"{transport.receiver_url}/sms/mo/stub"
            assert await stub.send_mo(mo, "0912000500", "Đường liên thôn bị sạt lở", "m1") == 200
            assert await stub.send_mo(mo, "0912000500", "Đường liên thôn bị sạt lở", "m1") == 200
            assert await stub.send_mo(mo, "0987654321", "xa1 cầu treo hỏng", "m2") == 200
            assert await stub.send_mo(mo, "0987654321", "hỏi lịch tiêm chủng", "m3") == 200
            for _ in range(100):
                if stub.submissions >= 3:
                    break
                await asyncio.sleep(0.05)
            acks = [m for m in stub.messages.values() if m["text"].startswith("Đã nhận ý kiến")]
            assert len(acks) == 3  # one per feedback item, the repeated m1 not acknowledged twice
            assert {m["to"] for m in acks} == {"+84912000500", "+84987654321"}
            (first,) = [
                i for i in _feedback_ids(app) if app.feedback(i).source_ref == "sms:stub:m1"
            ]
            answer = "UBND xã đã cử cán bộ kiểm tra đường liên thôn."
            o = await send_answer(transport, app, first, answer, actor="op")
            assert o.status.value == "delivered", o.reason
            assert app.feedback(first).answer == answer
            assert [m["to"] for m in stub.messages.values() if m["text"] == answer] == [
                "+84912000500"
            ]

    asyncio.run(go())
    items = [app.feedback(i) for i in _feedback_ids(app)]
    by_text = {fb.text: fb for fb in items}
    assert len(items) == 3
    assert by_text["Đường liên thôn bị sạt lở"].area_id == app.area("C2").area_id
    assert by_text["Đường liên thôn bị sạt lở"].sender_ref == "+84912000500"
    assert by_text["xa1 cầu treo hỏng"].area_id == app.area("C1").area_id
    assert by_text["hỏi lịch tiêm chủng"].area_id is None
    assert {fb.channel.value for fb in items} == {"sms"}


def _feedback_ids(app: SourceSystem) -> list[UUID]:
    return [
        UUID(str(n.originator_id))
        for n in app.recorder.select_notifications(1, 100_000)
        if n.topic == "tcs.feedback.received"
    ]


def test_failures_through_the_scheduler_are_recorded_outcomes_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """One dispatch through the scheduler to subscribers behind a throttling, a failing, a
    garbage-answering and a dead gateway, one with a bad number and one working: every subscriber
    ends with a recorded final outcome whose reason says what happened."""
    from tcs_core.scheduler import Scheduler, SchedulerConfig, VirtualClock

    app = make_app()
    kinds = ["stub", "429", "500", "garbage", "down"]
    specs = subscriber_specs(
        [{"number": f"09120007{i:02d}", "gateway": g} for i, g in enumerate(kinds)], area="C1"
    )
    ids = dict(zip(kinds, app.register_devices(specs, actor="admin"), strict=True))
    ids["bad"] = app.register_device(
        "Thuê bao số sai", "sms_subscriber", area="C1", transport="sms",
        address="0241234567", channels=["sms"], actor="admin",
    )  # fmt: skip

    async def go() -> None:
        async with stub_and_transport(tmp_path, app) as (stub, transport):
            t0 = datetime.now(UTC).replace(microsecond=0)
            b = app.draft_broadcast(
                "Cảnh báo",
                category=Category.DISASTER,
                content={Channel.SMS: SmsContent(TEXT)},
                targets=Targets(["C1"], ["sms"]),
                schedule=ScheduleSpec.once(t0, duration_s=600),
                actor="op",
            )
            app.submit_broadcast(b, "op")
            app.approve_broadcast(b, "ap")
            config = SchedulerConfig(max_attempts=3, retry_base_s=1.0)
            scheduler = Scheduler(app, [transport], VirtualClock(t0), config)
            await scheduler.start()
            await scheduler.run_until(t0 + timedelta(minutes=15))
            await scheduler.stop()
            d = app.dispatch_of(b, t0)
            assert d is not None and d.pending() == [] and d.completed_at is not None
            reasons = {}
            for kind, device in ids.items():
                o = d.outcome(device)
                assert o is not None, kind
                reasons[kind] = (o.status.value, o.reason)
            assert reasons["stub"][0] == "delivered"
            assert reasons["429"][0] == "failed" and "HTTP 429" in reasons["429"][1]
            assert "gave up after 3 attempt(s)" in reasons["429"][1]
            assert reasons["500"][0] == "failed" and "HTTP 500: internal error" in reasons["500"][1]
            assert reasons["garbage"][0] == "failed"
            assert "without a message id" in reasons["garbage"][1]
            assert reasons["down"][0] == "failed" and "cannot connect" in reasons["down"][1]
            assert reasons["bad"][0] == "failed" and "bad phone number" in reasons["bad"][1]
            assert stub.submissions == 1

    asyncio.run(go())


def test_the_receiver_token_keeps_forged_reports_and_messages_out(tmp_path: Path) -> None:
    """With a receiver token, the gateway's report (its dlr_url carries the token) is taken, while
    a report or a message posted without it is refused with 403 and stores nothing."""
    app = make_app()
    d, (device, _) = _dispatch(app)

    async def go() -> None:
        async with stub_and_transport(tmp_path, app, token="bí-mật-nhận") as (stub, transport):
            target = DeviceTarget(
                device, "Thuê bao 1", DeviceKind.SMS_SUBSCRIBER, "+84912000100", {}, (Channel.SMS,)
            )
            key = delivery_key(d, device)
            o = await transport.deliver(target, SmsContent(TEXT), key, make_context(d))
            assert o.status.value == "delivered"
            assert "t=b%C3%AD-m%E1%BA%ADt-nh%E1%BA%ADn" in stub.messages[key]["callback_url"]
            for _ in range(100):
                if transport.journal.receipts(key):
                    break
                await asyncio.sleep(0.05)
            assert [r.status for r in transport.journal.receipts(key)] == ["delivered"]
            base = transport.receiver_url
            async with aiohttp.ClientSession() as s:
                forged = {"reference": key, "status": "failed", "error": "forged"}
                async with s.post(f"{base}/sms/dlr/stub?key={key}", json=forged) as r:
                    assert r.status == 403
                async with s.post(f"{base}/sms/dlr/stub?key={key}&t=wrong", json=forged) as r:
                    assert r.status == 403
            assert await stub.send_mo(f"{base}/sms/mo/stub", "0912000100", "giả mạo") == 403
            assert [r.status for r in transport.journal.receipts(key)] == ["delivered"]

    asyncio.run(go())
    assert _feedback_ids(app) == []


@given(st.lists(st.sampled_from(sorted(RECEIPT_STATUSES)), min_size=1, max_size=12))
def test_the_receipt_that_counts_is_the_first_final_else_the_highest(statuses: list[str]) -> None:
    """Whatever order reports arrive in, the receipt held is the first final one, or else the
    highest-ranked one; each change is stored once."""
    app = _APP_FOR_RECEIPTS
    d, (device, _) = _dispatch(app)
    at = datetime.now(UTC)
    for status in statuses:
        app.record_receipts(d, [DeliveryReceipt(device, status, at)])
    finals = [s for s in statuses if RECEIPT_STATUSES[s] == 3]
    expected = finals[0] if finals else max(statuses, key=lambda s: RECEIPT_STATUSES[s])
    receipt = app.dispatch(d).receipt(device)
    assert receipt is not None and receipt.status == expected


def test_the_documented_toml_builds_the_transport() -> None:
    """The ``[transports.sms]`` example in docs/sms.md is a valid SmsTransport configuration."""
    import re
    import tomllib

    doc = (ROOT / "docs" / "sms.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert block is not None
    settings = tomllib.loads(block.group(1))["transports"]["sms"]
    settings["journal"] = ":memory:"  # not the production path
    transport = SmsTransport(**settings)
    assert list(transport.gateways) == ["kannel", "brandname"]
    brandname = transport.gateways["brandname"]
    assert isinstance(brandname, HttpJsonGateway) and brandname.strip_diacritics
    assert transport.limits.rate_per_s == 150
