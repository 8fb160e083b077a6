"""The SMS transport against a real Kannel 1.4 (bearerbox + smsbox) and the fake SMSC from
``kannel-extras``, all on free loopback ports, configured into a temporary directory and stopped
by the fixture. What fakesmsc logs is what reached the "network"; delivery reports and inbound
messages reach our receiver over HTTP from smsbox.

The kill test runs this file as a child process (``python tests/test_sms_kannel.py child …``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import pytest
from aiohttp import web

from tcs_core import (
    Category,
    Channel,
    DeviceKind,
    ScheduleSpec,
    Settings,
    SmsContent,
    SourceSystem,
    Targets,
)
from tcs_core.testing.conformance import TransportConformance, make_context
from tcs_core.transport import DeviceTarget, Transport, delivery_key
from transports.sms import (
    HttpJsonGateway,
    Journal,
    KannelGateway,
    SmsTransport,
    encode,
    receiver_app,
    subscriber_specs,
)
from transports.sms.kannel import KannelBoxes, free_port, kannel_available
from transports.sms.receiver import RECORDER_KEY

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from sms_gateway_stub import StubGateway  # noqa: E402

pytestmark = pytest.mark.sms

EFFECTIVE = date(2020, 1, 1)
TEXT = "UBND xã Ea Tiêu thông báo: mưa lớn kéo dài, bà con vùng trũng chú ý phòng chống sạt lở."
_numbers = itertools.count(1)


def next_number() -> str:
    """A fresh valid mobile number per use (the fake SMSC's log is shared by the module)."""
    return f"+8491{os.getpid() % 100:02d}{next(_numbers):05d}"


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KannelBoxes]:
    """bearerbox + smsbox + fakesmsc for this module; inbound messages go to a fixed free port."""
    missing = kannel_available()
    if missing:
        pytest.skip(f"kannel not installed (Debian kannel, kannel-extras): {missing}")
    port = free_port()
    boxes = KannelBoxes(
        tmp_path_factory.mktemp("kannel"), mo_url=f"http://127.0.0.1:{port}/sms/mo/kannel"
    )
    boxes.receiver_port = port  # type: ignore[attr-defined]
    boxes.start()
    try:
        yield boxes
    finally:
        boxes.stop()


def env_of(k: KannelBoxes) -> dict[str, str]:
    return {"TCS_TEST_KANNEL_PASSWORD": k.password, "TCS_TEST_KANNEL_ADMIN": k.admin_password}


def kannel_gateway(k: KannelBoxes, **kw: Any) -> KannelGateway:
    kw.setdefault("rate_per_s", 200.0)
    kw.setdefault("timeout_s", 2.0)
    return KannelGateway(
        name=kw.pop("name", "kannel"),
        url=kw.pop("url", k.sendsms_url),
        username=k.username,
        password=kw.pop("password", "env:TCS_TEST_KANNEL_PASSWORD"),
        admin_url=k.admin_url,
        admin_password="env:TCS_TEST_KANNEL_ADMIN",
        sender="UBND-XA",
        **kw,
    )


def receiver_url(k: KannelBoxes) -> str:
    return f"http://127.0.0.1:{k.receiver_port}"  # type: ignore[attr-defined]


def received_by(k: KannelBoxes, number: str) -> list[Any]:
    to = number.lstrip("+")
    return [m for m in k.received() if m.receiver == to]


async def wait_for(check: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    return check()


@contextlib.asynccontextmanager
async def serving(web_app: web.Application, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def make_app(settings: Settings | None = None) -> SourceSystem:
    """Province P, communes C1 and C2; a provincial operator and approver with SMS_SENDER."""
    app = SourceSystem(settings or Settings.in_memory())
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
    return app


def approve_sms(app: SourceSystem, at: datetime, area: str = "C1", text: str = TEXT) -> UUID:
    b = app.draft_broadcast(
        "Cảnh báo mưa lớn",
        category=Category.DISASTER,
        content={Channel.SMS: SmsContent(text)},
        targets=Targets([area], ["sms"]),
        schedule=ScheduleSpec.once(at, duration_s=60),
        actor="op",
    )
    app.submit_broadcast(b, "op")
    app.approve_broadcast(b, "ap")
    return b


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_vietnamese_sms_arrives_intact_and_its_report_updates_the_dispatch(
    kannel: KannelBoxes, tmp_path: Path, method: str
) -> None:
    """Through the scheduler: a Vietnamese bulletin reaches the fake SMSC as UCS-2, intact, from
    the gateway's brandname; the outcome says how it was encoded; Kannel's delivery report reaches
    our receiver and becomes the dispatch's receipt (after the dispatch completed)."""
    from tcs_core.scheduler import Scheduler, VirtualClock

    async def go() -> None:
        app = make_app()
        number = next_number()
        (device,) = app.register_devices(
            subscriber_specs([{"number": number}], area="C1"), actor="admin"
        )
        transport = SmsTransport(
            gateways=[kannel_gateway(kannel, method=method)],
            journal=tmp_path / "journal.sqlite",
            receiver_url=receiver_url(kannel),
            environ=env_of(kannel),
        )
        async with serving(receiver_app(transport, app), kannel.receiver_port):  # type: ignore[attr-defined]
            t0 = datetime.now(UTC).replace(microsecond=0)
            b = approve_sms(app, t0)
            scheduler = Scheduler(app, [transport], VirtualClock(t0))
            await scheduler.start()
            await scheduler.run_until(t0 + timedelta(seconds=120))
            await scheduler.stop()
            d = app.dispatch_of(b, t0)
            assert d is not None and d.completed_at is not None
            outcome = d.outcome(device)
            assert outcome is not None and outcome.status.value == "delivered", outcome
            assert "ucs2, 2 segments" in outcome.reason
            (msg,) = await wait_for(lambda: received_by(kannel, number))
            assert msg.text == TEXT and msg.coding == "ucs-2" and msg.sender == "UBND-XA"
            receipt = await wait_for(
                lambda: (r := app.dispatch(d.id).receipt(device)) and r.status == "delivered" and r
            )
            assert receipt and receipt.status == "delivered" and receipt.remote_id

    asyncio.run(go())


def test_gsm7_text_and_stripped_diacritics_travel_as_7_bit(
    kannel: KannelBoxes, tmp_path: Path
) -> None:
    """Plain text goes as GSM-7 (extension characters intact); a stripping gateway sends the
    Vietnamese text without marks, as GSM-7, and the outcome records the loss."""

    async def go() -> None:
        transport = SmsTransport(
            gateways=[
                kannel_gateway(kannel),
                kannel_gateway(kannel, name="ascii", strip_diacritics=True),
            ],
            journal=tmp_path / "journal.sqlite",
            environ=env_of(kannel),
        )
        await transport.open()
        try:
            plain, stripped = next_number(), next_number()
            o1 = await transport.send(plain, "Lich tiem: 7h30 [tram y te] {so 2} ~ 50€", key="k1")
            o2 = await transport.send(stripped, "Đường ngập, cẩn thận", key="k2", gateway="ascii")
        finally:
            await transport.close()
        assert o1.status.value == "delivered" and "gsm7, 1 segment" in o1.reason
        assert o2.status.value == "delivered" and "diacritics stripped: Đ→D" in o2.reason
        (m1,) = await wait_for(lambda: received_by(kannel, plain))
        (m2,) = await wait_for(lambda: received_by(kannel, stripped))
        assert m1.coding == "text" and m1.text == "Lich tiem: 7h30 [tram y te] {so 2} ~ 50€"
        assert m2.coding == "text" and m2.text == "Duong ngap, can than"

    asyncio.run(go())


def test_inbound_message_from_the_fake_smsc_becomes_feedback_and_is_acknowledged(
    kannel: KannelBoxes, tmp_path: Path
) -> None:
    """A citizen's UCS-2 message typed into fakesmsc reaches our receiver through smsbox's
    sms-service, becomes a Feedback item in the sender's commune, and the acknowledgement goes
    back through Kannel to the sender."""

    async def go() -> None:
        app = make_app()
        number = next_number()
        app.register_devices(subscriber_specs([{"number": number}], area="C2"), actor="admin")
        transport = SmsTransport(
            gateways=[kannel_gateway(kannel)],
            journal=tmp_path / "journal.sqlite",
            receiver_url=receiver_url(kannel),
            environ=env_of(kannel),
        )
        seen: list[Any] = []
        web_app = receiver_app(
            transport,
            app,
            keywords={"XAC1": "C1"},
            ack_text="UBND đã nhận ý kiến, mã {ref}",
            on_inbound=seen.append,
        )
        await transport.open()
        try:
            async with serving(web_app, kannel.receiver_port):  # type: ignore[attr-defined]
                kannel.send_mo(number.lstrip("+"), "8055", "Cầu treo thôn 3 bị hỏng, đề nghị sửa")
                assert await wait_for(lambda: seen)
                (ack,) = await wait_for(lambda: received_by(kannel, number))
                kannel.send_mo(number.lstrip("+"), "8055", "xac1 den duong thon 2 hong")
                assert await wait_for(lambda: len(seen) == 2)
        finally:
            await transport.close()
        item = seen[0]
        assert item.sender == number and item.area == "C2" and item.feedback_id is not None
        fb = app.feedback(item.feedback_id)
        assert fb.text == "Cầu treo thôn 3 bị hỏng, đề nghị sửa"
        assert fb.area_id == app.area("C2").area_id and fb.channel.value == "sms"
        assert ack.text == f"UBND đã nhận ý kiến, mã {item.feedback_id.hex[:8].upper()}"
        plain = seen[1]  # GSM-7 text, a keyword naming another commune than the subscription
        assert plain.text == "xac1 den duong thon 2 hong" and plain.area == "C1"
        assert plain.feedback_id is not None
        assert app.feedback(plain.feedback_id).area_id == app.area("C1").area_id

    asyncio.run(go())


# -- failures ---------------------------------------------------------------------------------


def test_kannel_refusals_and_a_gateway_that_is_down_are_outcomes(
    kannel: KannelBoxes, tmp_path: Path
) -> None:
    """Wrong credentials: failed with Kannel's own words; nothing listening: retryable, naming
    the gateway; neither sends anything."""

    async def go() -> None:
        transport = SmsTransport(
            gateways=[
                kannel_gateway(kannel, password="sai-mat-khau"),
                kannel_gateway(
                    kannel, name="down", url=f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms"
                ),
            ],
            journal=tmp_path / "journal.sqlite",
            environ=env_of(kannel),
        )
        await transport.open()
        number = next_number()
        try:
            bad = await transport.send(number, TEXT, key="a")
            down = await transport.send(number, TEXT, key="b", gateway="down")
        finally:
            await transport.close()
        assert bad.status.value == "failed" and "HTTP 403" in bad.reason
        assert "Authorization failed" in bad.reason
        assert down.status.value == "retryable" and "cannot connect to gateway down" in down.reason
        await asyncio.sleep(0.3)
        assert received_by(kannel, number) == []

    asyncio.run(go())


# -- idempotency across a crash ---------------------------------------------------------------


async def _raw_submit(transport: SmsTransport, number: str, key: str) -> str:
    """What a process that died right after submitting had sent: the same request, by hand."""
    gw = transport.gateways["kannel"]
    assert isinstance(gw, KannelGateway)
    enc = encode(TEXT)
    method, url, query, body, headers = gw.request(
        number.lstrip("+"), enc, key, transport.receiver_url, transport._secret(gw)
    )
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, params=query, data=body, headers=headers) as resp,
    ):
        return (await resp.read()).decode()


def _crashed_transport(k: KannelBoxes, tmp_path: Path, **kw: Any) -> SmsTransport:
    return SmsTransport(
        gateways=[kannel_gateway(k, **kw)],
        journal=tmp_path / "journal.sqlite",
        receiver_url=receiver_url(k),
        environ=env_of(k),
    )


def test_ambiguous_key_resolved_by_the_smsc_report_is_not_sent_again(
    kannel: KannelBoxes, tmp_path: Path
) -> None:
    """Pending in the journal, but Kannel had it: its SMSC-level report (dlr-mask 8) carrying our
    key settles the key as delivered, and the subscriber gets one message."""

    async def go() -> None:
        transport = _crashed_transport(kannel, tmp_path, resolve_window_s=10.0)
        number, device = next_number(), uuid4()
        key = delivery_key(uuid4(), device)
        transport.journal.begin(
            key, dispatch="d", device=device.hex, number=number, gateway="kannel"
        )
        async with serving(receiver_app(transport), kannel.receiver_port):  # type: ignore[attr-defined]
            assert "Accepted" in await _raw_submit(transport, number, key)
            await transport.open()
            target = DeviceTarget(
                device, "Thuê bao", DeviceKind.SMS_SUBSCRIBER, number, {}, (Channel.SMS,)
            )
            o = await transport.deliver(target, SmsContent(TEXT), key, make_context())
            await transport.close()
        assert o.status.value == "delivered" and "no second submission" in o.reason, o.reason
        assert len(await wait_for(lambda: received_by(kannel, number))) == 1, (
            transport.journal.receipts(key)
        )
        await asyncio.sleep(0.5)
        assert len(received_by(kannel, number)) == 1

    asyncio.run(go())


def test_ambiguous_key_never_submitted_is_sent_once_after_the_window(
    kannel: KannelBoxes, tmp_path: Path
) -> None:
    """Pending in the journal and Kannel never had it: no report within the window, so it is
    sent, once."""

    async def go() -> None:
        transport = _crashed_transport(kannel, tmp_path, resolve_window_s=1.0)
        number, device = next_number(), uuid4()
        key = delivery_key(uuid4(), device)
        transport.journal.begin(
            key, dispatch="d", device=device.hex, number=number, gateway="kannel"
        )
        async with serving(receiver_app(transport), kannel.receiver_port):  # type: ignore[attr-defined]
            await transport.open()
            target = DeviceTarget(
                device, "Thuê bao", DeviceKind.SMS_SUBSCRIBER, number, {}, (Channel.SMS,)
            )
            began = time.monotonic()
            o = await transport.deliver(target, SmsContent(TEXT), key, make_context())
            waited = time.monotonic() - began
            await transport.close()
        assert o.status.value == "delivered", o.reason
        assert waited >= 0.9  # it waited for a report before sending
        assert len(await wait_for(lambda: received_by(kannel, number))) == 1

    asyncio.run(go())


def test_ambiguous_key_found_queued_in_kannels_store_is_not_sent_again(
    kannel: KannelBoxes, tmp_path: Path
) -> None:
    """The SMSC link is down, so no report can come: the message waiting in bearerbox's store
    settles the key; when the link is back the subscriber gets exactly one message."""

    async def go() -> None:
        transport = _crashed_transport(kannel, tmp_path, resolve_window_s=30.0)
        number, device = next_number(), uuid4()
        key = delivery_key(uuid4(), device)
        kannel.stop_smsc()
        try:
            transport.journal.begin(
                key, dispatch="d", device=device.hex, number=number, gateway="kannel"
            )
            assert "Queued" in await _raw_submit(transport, number, key)
            await transport.open()
            target = DeviceTarget(
                device, "Thuê bao", DeviceKind.SMS_SUBSCRIBER, number, {}, (Channel.SMS,)
            )
            o = await transport.deliver(target, SmsContent(TEXT), key, make_context())
            await transport.close()
        finally:
            kannel.start_smsc()
        assert o.status.value == "delivered" and "queued in Kannel's store" in o.reason, o.reason
        assert len(await wait_for(lambda: received_by(kannel, number))) == 1
        await asyncio.sleep(0.5)
        assert len(received_by(kannel, number)) == 1

    asyncio.run(go())


# -- the conformance suite --------------------------------------------------------------------

STUB_PORT = free_port()


class TestSmsTransportConformance(TransportConformance):
    """SmsTransport through the contract suite: the working device is served by the real Kannel;
    the unreachable one by a gateway nothing listens on; the slow and malformed ones by the stub
    gateway stalling or answering garbage."""

    @pytest.fixture
    def transport(self, kannel: KannelBoxes, tmp_path: Path) -> Transport:
        stub = f"http://127.0.0.1:{STUB_PORT}"
        return SmsTransport(
            gateways=[
                kannel_gateway(kannel, rate_per_s=20.0, concurrency=20),
                HttpJsonGateway(
                    name="down", url=f"http://127.0.0.1:{free_port()}/send", rate_per_s=5
                ),
                HttpJsonGateway(
                    name="slow", url=f"{stub}/mode/slow/send", timeout_s=0.5, rate_per_s=5
                ),
                HttpJsonGateway(name="garbage", url=f"{stub}/mode/garbage/send", rate_per_s=5),
            ],
            journal=tmp_path / "journal.sqlite",
            environ=env_of(kannel),
        )

    def peer(self) -> contextlib.AbstractAsyncContextManager[object]:
        @contextlib.asynccontextmanager
        async def stub() -> AsyncIterator[object]:
            gateway = StubGateway(slow_s=5.0)
            await gateway.start(port=STUB_PORT)
            try:
                yield gateway
            finally:
                await gateway.stop()

        return stub()

    @staticmethod
    def _device(name: str, gateway: str) -> DeviceTarget:
        return DeviceTarget(
            uuid4(),
            name,
            DeviceKind.SMS_SUBSCRIBER,
            next_number(),
            {"gateway": gateway},
            (Channel.SMS,),
        )

    @pytest.fixture
    def device(self) -> DeviceTarget:
        return self._device("Thuê bao thôn Một", "kannel")

    @pytest.fixture
    def unreachable_device(self) -> DeviceTarget:
        return self._device("Thuê bao cổng SMS hỏng", "down")

    @pytest.fixture
    def slow_device(self) -> DeviceTarget:
        return self._device("Thuê bao cổng SMS chậm", "slow")

    @pytest.fixture
    def malformed_device(self) -> DeviceTarget:
        return self._device("Thuê bao cổng SMS lỗi", "garbage")


# -- kill the sender mid-batch ----------------------------------------------------------------

BATCH = 60


def _child(args: list[str]) -> None:
    """The sending process: deliver the dispatch's pending subscribers, record outcomes in
    batches and receipts as they come; print progress; exit once every receipt is in."""
    events, journal, dispatch_hex, sendsms_url, port, env_json = args
    environ = json.loads(env_json)

    async def run() -> None:
        app = SourceSystem(Settings.sqlite(events))
        gw = KannelGateway(
            name="kannel",
            url=sendsms_url,
            username="tcs",
            password="env:TCS_TEST_KANNEL_PASSWORD",
            rate_per_s=40.0,
            concurrency=8,
            resolve_window_s=3.0,
        )
        transport = SmsTransport(
            gateways=[gw], journal=journal, receiver_url=f"http://127.0.0.1:{port}", environ=environ
        )
        web_app = receiver_app(transport, app)
        recorder = web_app[RECORDER_KEY]
        assert recorder is not None
        d_id = UUID(dispatch_hex)
        async with serving(web_app, int(port)):
            await transport.open()
            d = app.dispatch(d_id)
            content = d_content = SmsContent(TEXT)
            del d_content
            pending = d.pending()
            print(f"pending {len(pending)}", flush=True)
            done = 0
            buffer: list[Any] = []
            gate = asyncio.Semaphore(8)

            async def one(device_id: UUID) -> None:
                nonlocal done
                view = app.devices.get(device_id)
                assert view is not None
                target = DeviceTarget(
                    device_id,
                    view.name,
                    view.kind,
                    view.address,
                    dict(view.settings),
                    view.channels,
                )
                async with gate:
                    o = await transport.deliver(
                        target, content, delivery_key(d_id, device_id), make_context(d_id)
                    )
                from tcs_core import DeliveryOutcome

                buffer.append(DeliveryOutcome(device_id, o.status, datetime.now(UTC), o.reason))
                done += 1
                print(f"accepted {done} {o.status.value}", flush=True)
                if len(buffer) >= 5:
                    batch = buffer[:]
                    buffer.clear()
                    await recorder.run(app.record_outcomes, d_id, batch)

            await asyncio.gather(*(one(x) for x in pending))
            if buffer:
                await recorder.run(app.record_outcomes, d_id, buffer)
            for _ in range(400):
                await recorder.run(recorder.flush)
                counts = app.dispatch(d_id).receipt_counts()
                if counts["delivered"] == len(app.dispatch(d_id).device_ids):
                    break
                await asyncio.sleep(0.05)
            await transport.close()
        print("done", flush=True)

    asyncio.run(run())


@pytest.mark.slow
def test_killed_mid_batch_and_restarted_every_subscriber_gets_exactly_one_message(
    kannel: KannelBoxes, tmp_path: Path
) -> None:
    """SIGKILL the sending process part-way through a batch of 60, start it again: the fake SMSC
    counts exactly one message per subscriber, every subscriber has a delivered outcome and a
    delivery receipt."""
    events = tmp_path / "events.sqlite"
    app = make_app(Settings.sqlite(events))
    numbers = [next_number() for _ in range(BATCH)]
    ids = app.register_devices(
        subscriber_specs([{"number": n} for n in numbers], area="C1"), actor="admin"
    )
    at = datetime.now(UTC)
    d = app.start_dispatch(
        approve_sms(app, at + timedelta(minutes=1)), at + timedelta(minutes=1), ids
    )
    del app
    port = free_port()
    cmd = [
        sys.executable,
        __file__,
        "child",
        str(events),
        str(tmp_path / "journal.sqlite"),
        d.hex,
        kannel.sendsms_url,
        str(port),
        json.dumps(env_of(kannel)),
    ]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    killed_at = None
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if line.startswith("accepted") and int(line.split()[1]) >= BATCH // 3:
                first.send_signal(signal.SIGKILL)
                killed_at = int(line.split()[1])
                break
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert killed_at is not None and first.returncode == -signal.SIGKILL
    journal = Journal(tmp_path / "journal.sqlite")
    at_kill = {s: journal.count(s) for s in ("accepted", "pending")}
    journal.close()
    recorded = BATCH - len(SourceSystem(Settings.sqlite(events)).dispatch(d).pending())
    # What the restart must not send again: accepted keys whose outcome was not recorded, and
    # pending keys (in flight at the kill) that Kannel had.
    print(f"killed after {killed_at} answers: journal {at_kill}, outcomes recorded {recorded}")
    assert at_kill["accepted"] + at_kill["pending"] > recorded, "the kill left the journal nothing"
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "done" in second.stdout
    pending_after_kill = int(second.stdout.split()[1])
    assert 0 < pending_after_kill < BATCH

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        counts = Counter(m.receiver for m in kannel.received() if "+" + m.receiver in numbers)
        if len(counts) == BATCH:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # anything sent twice would show up by now
    counts = Counter(m.receiver for m in kannel.received() if "+" + m.receiver in numbers)
    assert len(counts) == BATCH, f"{BATCH - len(counts)} subscribers got nothing"
    twice = {n: c for n, c in counts.items() if c != 1}
    assert not twice, f"subscribers with more than one message: {twice}"

    app = SourceSystem(Settings.sqlite(events))
    dispatch = app.dispatch(d)
    assert dispatch.pending() == []
    assert dispatch.counts()["delivered"] == BATCH
    assert dispatch.receipt_counts()["delivered"] == BATCH


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "child":
    _child(sys.argv[2:])
