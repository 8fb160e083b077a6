"""The HTTP board transport against the simulated board (real aiohttp servers on 127.0.0.1).

The scheduler runs on a VirtualClock, but every delivery is a real HTTP exchange: ``run_until``
awaits the transport's calls while it drains. Push boards are ``examples/simulated_board.py``;
pull boards are its ``PullBoard`` client talking to ``feed_app`` over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from tcs_core import (
    BoardContent,
    Category,
    Channel,
    DeviceKind,
    OutcomeStatus,
    Priority,
    ScheduleSpec,
    Settings,
    SourceSystem,
    Targets,
)
from tcs_core.scheduler import Scheduler, SchedulerConfig, VirtualClock
from tcs_core.testing.conformance import TransportConformance, make_context
from tcs_core.transport import DeviceTarget, Limits, Transport, delivery_key
from transports.board import (
    AppSettings,
    BoardTransport,
    PlayReport,
    Verifier,
    feed_app,
    signed_headers,
)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from simulated_board import Board, PullBoard, serve  # noqa: E402

KEY = "khoá-bảng-tin-thử-nghiệm"
ENV = {"TCS_TEST_BOARD_KEY": KEY}
SETTINGS = {"key": "env:TCS_TEST_BOARD_KEY"}
EFFECTIVE = datetime(2020, 1, 1).date()
TEXT = "Thông báo: lịch tiêm chủng lúc 7 giờ 30 tại trạm y tế xã Ea Tiêu."
ALERT = "KHẨN CẤP: lũ quét trên suối Ea Tiêu, bà con di chuyển lên vùng cao ngay!"


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def boards_served(n: int, key: str = KEY) -> AsyncIterator[tuple[list[Board], str]]:
    """``n`` simulated push boards in this loop; yields them and the base URL."""
    boards = [Board(i, key.encode()) for i in range(n)]
    runner, port = await serve(boards)
    try:
        yield boards, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def feed_served(transport: BoardTransport) -> AsyncIterator[str]:
    """The transport's feed server on a random port; yields its base URL."""
    runner = web.AppRunner(feed_app(transport), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def make_app() -> SourceSystem:
    """Province P, communes C1 and C2; an operator and an approver with the emergency right."""
    app = SourceSystem(Settings.in_memory())
    app.bootstrap_admin("admin")
    app.create_area("P", "Tỉnh P", "province", parent=None, effective=EFFECTIVE, actor="admin")
    for c in ("C1", "C2"):
        app.create_area(c, f"Xã {c}", "commune", parent="P", effective=EFFECTIVE, actor="admin")
    app.create_principal("op", grants=[("operator", "P")], permissions=["emergency"], actor="admin")
    app.create_principal("ap", grants=[("approver", "P")], permissions=["emergency"], actor="admin")
    return app


def add_board(app: SourceSystem, name: str, address: str, area: str = "C1", **extra: str) -> UUID:
    return app.register_device(
        name,
        "board",
        area=area,
        transport="board",
        address=address,
        channels=["board"],
        settings={**SETTINGS, **extra},
        actor="admin",
    )


def approve(
    app: SourceSystem,
    at: datetime,
    *,
    text: str = TEXT,
    priority: Priority = Priority.NORMAL,
    areas: tuple[str, ...] = ("P",),
    duration_s: int = 300,
) -> UUID:
    b = app.draft_broadcast(
        f"Bản tin {priority.value}",
        category=Category.LOCAL_GOVERNMENT,
        priority=priority,
        content={Channel.BOARD: BoardContent(text)},
        targets=Targets(areas=areas, channels=["board"]),
        schedule=ScheduleSpec.once(at, duration_s=duration_s),
        actor="op",
    )
    app.submit_broadcast(b, "op")
    app.approve_broadcast(b, "ap")
    return b


def transport_for(app: SourceSystem, **kw: Any) -> BoardTransport:
    kw.setdefault("push_timeout_s", 1.0)
    return BoardTransport(settings=AppSettings(app), environ=ENV, **kw)


def outcome_of(app: SourceSystem, b: UUID, at: datetime, device: UUID) -> tuple[str, str]:
    d = app.dispatch_of(b, at)
    assert d is not None, "the broadcast was not dispatched"
    o = d.outcome(device)
    assert o is not None, f"no outcome for {device}"
    return str(o.status), o.reason


def target(device_id: UUID, address: str, name: str = "Bảng tin chợ", **extra: str) -> DeviceTarget:
    return DeviceTarget(
        device_id, name, DeviceKind.BOARD, address, {**SETTINGS, **extra}, (Channel.BOARD,)
    )


async def signed_get(
    session: aiohttp.ClientSession, url: str, key: str = KEY, **headers: str
) -> aiohttp.ClientResponse:
    h = signed_headers(key.encode(), "GET", URL(url).raw_path)
    h.update(headers)
    return await session.get(url, headers=h)


# -- push, end to end ---------------------------------------------------------------------------


def test_push_item_delivered_end_to_end_through_the_scheduler() -> None:
    """A normal bulletin reaches two push boards as signed playlist items; both are delivered."""

    async def go() -> None:
        async with boards_served(2) as (boards, base):
            app = make_app()
            ids = [add_board(app, f"Bảng {i}", f"{base}/b/{i}", mode="push") for i in range(2)]
            t0 = now_s()
            at = t0  # the board's own clock decides when an item shows: make it due now
            b = approve(app, at, duration_s=600)
            scheduler = Scheduler(app, [transport_for(app)], VirtualClock(t0))
            await scheduler.start()
            await scheduler.run_until(t0 + timedelta(seconds=5))
            await scheduler.stop()
            for i, device in enumerate(ids):
                assert outcome_of(app, b, at, device) == ("delivered", "")
                key = delivery_key(app.dispatch_of(b, at).id, device)  # type: ignore[union-attr]
                item = boards[i].items[key]
                assert item["text"] == TEXT and item["type"] == "item"
                assert item["valid_from"].startswith(at.strftime("%Y-%m-%dT%H:%M:%S"))
                assert boards[i].state()["items"][0]["text"] == TEXT
                assert boards[i].rejected == []

    asyncio.run(go())


def test_push_emergency_becomes_an_overlay_that_takes_the_screen() -> None:
    """An emergency is pushed as an overlay and is on the board's screen at once."""

    async def go() -> None:
        async with boards_served(1) as (boards, base):
            app = make_app()
            device = add_board(app, "Bảng UBND", f"{base}/b/0")
            t0 = now_s()
            b = approve(app, t0, text=ALERT, priority=Priority.EMERGENCY, duration_s=120)
            scheduler = Scheduler(app, [transport_for(app)], VirtualClock(t0))
            await scheduler.start()
            await scheduler.run_until(t0 + timedelta(seconds=1))
            await scheduler.stop()
            assert outcome_of(app, b, t0, device) == ("delivered", "")
            shown = boards[0].state()["overlay"]
            assert shown is not None and shown["text"] == ALERT

    asyncio.run(go())


def test_redelivery_with_the_same_key_is_a_409_and_delivered() -> None:
    """The board answers 409 to a key it has; the transport reports delivered, not a failure."""

    async def go() -> None:
        async with boards_served(1) as (boards, base):
            transport = BoardTransport(environ=ENV)
            await transport.open()
            device = target(uuid4(), f"{base}/b/0")
            context = make_context()
            key = delivery_key(context.dispatch_id, device.device_id)
            first = await transport.deliver(device, BoardContent(TEXT), key, context)
            second = await transport.deliver(device, BoardContent(TEXT), key, context)
            await transport.close()
            assert first.status is OutcomeStatus.DELIVERED and first.remote_id == key
            assert second.status is OutcomeStatus.DELIVERED
            assert "duplicate key" in second.reason
            assert len(boards[0].items) == 1

    asyncio.run(go())


# -- signatures -----------------------------------------------------------------------------------


def test_board_rejects_tampered_replayed_and_stale_requests() -> None:
    """Crafted requests: a good one is accepted; tampered, replayed, stale and unsigned get 401."""

    async def go() -> None:
        async with boards_served(1) as (boards, base):
            url = f"{base}/b/0/items"
            path = URL(url).raw_path
            key = KEY.encode()

            def doc(i: int) -> bytes:
                item = {"v": 1, "type": "item", "id": f"k{i}", "text": TEXT}
                return json.dumps(item, ensure_ascii=False).encode()

            async with aiohttp.ClientSession() as s:

                async def post(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
                    async with s.post(url, data=body, headers=headers) as r:
                        answer = await r.json()
                        return r.status, str(answer.get("error", answer.get("status")))

                good = signed_headers(key, "POST", path, doc(1))
                assert await post(doc(1), good) == (200, "added")
                status, reason = await post(doc(1), good)  # the same request again
                assert status == 401 and reason.startswith("replayed nonce")
                tampered = doc(2)
                headers = signed_headers(key, "POST", path, tampered)
                status, reason = await post(tampered.replace(b"k2", b"k3"), headers)
                assert status == 401 and reason.startswith("bad signature")
                stale = signed_headers(key, "POST", path, doc(4), now=time.time() - 45)
                status, reason = await post(doc(4), stale)
                assert status == 401 and reason.startswith("stale timestamp")
                assert "limit ±30 s" in reason
                future = signed_headers(key, "POST", path, doc(5), now=time.time() + 45)
                assert (await post(doc(5), future))[0] == 401
                wrong = signed_headers(b"not the key", "POST", path, doc(6))
                assert (await post(doc(6), wrong))[1].startswith("bad signature")
                other_path = signed_headers(key, "POST", "/b/0/clear", doc(7))
                assert (await post(doc(7), other_path))[1].startswith("bad signature")
                status, reason = await post(doc(8), {})
                assert status == 401 and reason.startswith("missing signature headers")
            assert list(boards[0].items) == ["k1"]
            assert len(boards[0].rejected) == 7

    asyncio.run(go())


def test_board_nonce_cache_is_bounded() -> None:
    """A full nonce cache refuses new requests (busy) instead of forgetting live nonces."""
    board = Board(0, b"k", nonce_capacity=3)
    path = "/b/0/status"
    answers = [board.check("GET", path, b"", signed_headers(b"k", "GET", path)) for _ in range(4)]
    assert answers[:3] == [None, None, None]
    assert answers[3] is not None and answers[3].startswith("busy")
    assert len(board.nonces) == 3


def test_wrong_key_is_a_failed_delivery_recorded_in_the_dispatch() -> None:
    """With a wrong key the board refuses the push: failed 'signature rejected' in the Dispatch."""

    async def go() -> None:
        async with boards_served(2) as (boards, base):
            app = make_app()
            good = add_board(app, "Bảng đúng khoá", f"{base}/b/0")
            bad = add_board(app, "Bảng sai khoá", f"{base}/b/1", key="env:TCS_TEST_WRONG_KEY")
            t0 = now_s()
            b = approve(app, t0)
            environ = {**ENV, "TCS_TEST_WRONG_KEY": "khoá cũ đã thu hồi"}
            transport = BoardTransport(settings=AppSettings(app), environ=environ)
            scheduler = Scheduler(app, [transport], VirtualClock(t0))
            await scheduler.start()
            await scheduler.run_until(t0 + timedelta(minutes=30))
            await scheduler.stop()
            assert outcome_of(app, b, t0, good) == ("delivered", "")
            status, reason = outcome_of(app, b, t0, bad)
            assert status == "failed"
            assert reason.startswith("signature rejected: bad signature")
            assert f"{base}/b/1" in reason
            assert scheduler.stats.retries == 0  # a refused signature is final, not retried
            assert boards[1].items == {} and boards[1].rejected

    asyncio.run(go())


# -- faults ---------------------------------------------------------------------------------------


def test_down_slow_500_busy_and_malformed_boards_do_not_stop_the_others() -> None:
    """Faulty boards end retryable-then-failed or failed with reasons; the others get the item."""

    async def go() -> None:
        async with boards_served(6) as (boards, base):
            app = make_app()
            dead = f"http://127.0.0.1:{free_port()}/b/9"
            names = ["ok", "down", "slow", "error", "malformed", "busy"]
            ids = {}
            for i, name in enumerate(names):
                address = dead if name == "down" else f"{base}/b/{i}"
                ids[name] = add_board(app, f"Bảng {name}", address)
                if name not in ("ok", "down"):
                    boards[i].fault = name
            t0 = now_s()
            b = approve(app, t0, duration_s=600)
            config = SchedulerConfig(max_attempts=3, retry_base_s=2.0, retry_cap_s=10.0)
            transport = transport_for(app, push_timeout_s=0.5)
            scheduler = Scheduler(app, [transport], VirtualClock(t0), config)
            await scheduler.start()
            began = time.monotonic()
            await scheduler.run_until(t0 + timedelta(minutes=30))
            elapsed = time.monotonic() - began
            await scheduler.stop()
            got = {name: outcome_of(app, b, t0, ids[name]) for name in names}
            assert got["ok"] == ("delivered", "")
            assert got["malformed"][0] == "failed"
            assert got["malformed"][1].startswith("malformed response from")
            for name, why in (
                ("down", f"cannot connect to {dead}"),
                ("slow", "no answer from"),
                ("error", "board error: HTTP 500"),
                ("busy", "board busy: HTTP 503"),
            ):
                status, reason = got[name]
                assert status == "failed", (name, reason)
                assert reason.startswith("gave up after 3 attempt(s): " + why), (name, reason)
            assert "display controller crashed" in got["error"][1]
            assert scheduler.stats.retries == 8  # 4 boards x 2 retries
            assert elapsed < 10, "bounded retries: the slow board costs 3 x 0.5 s"
            d = app.dispatch_of(b, t0)
            assert d is not None and d.completed_at is not None

    asyncio.run(go())


def test_busy_board_retry_after_is_passed_to_the_engine() -> None:
    """503 with Retry-After: 7 is retryable with retry_after_s 7; a 500 without it has none."""

    async def go() -> None:
        async with boards_served(2) as (boards, base):
            boards[0].fault, boards[1].fault = "busy", "error"
            transport = BoardTransport(environ=ENV)
            await transport.open()
            outcomes = []
            for i in range(2):
                device = target(uuid4(), f"{base}/b/{i}")
                context = make_context()
                key = delivery_key(context.dispatch_id, device.device_id)
                outcomes.append(await transport.deliver(device, BoardContent(TEXT), key, context))
            await transport.close()
            assert outcomes[0].status is OutcomeStatus.RETRYABLE
            assert outcomes[0].retry_after_s == 7.0 and "updating firmware" in outcomes[0].reason
            assert outcomes[1].status is OutcomeStatus.RETRYABLE
            assert outcomes[1].retry_after_s is None

    asyncio.run(go())


def test_bad_settings_are_failed_outcomes_never_exceptions() -> None:
    """Missing key, unset variable, bad mode, or audio content: failed with a reason, no raise."""

    async def go() -> None:
        transport = BoardTransport(environ=ENV)
        await transport.open()
        context = make_context()
        cases = [
            (DeviceTarget(uuid4(), "b1", DeviceKind.BOARD, "http://x", {}), "no settings"),
            (target(uuid4(), "http://x", key="env:TCS_UNSET_VAR"), "TCS_UNSET_VAR is not set"),
            (target(uuid4(), "http://x", mode="multicast"), "bad mode setting"),
            (target(uuid4(), "http://x", dayparts="sáng"), "bad dayparts setting"),
        ]
        for device, why in cases:
            key = delivery_key(context.dispatch_id, device.device_id)
            outcome = await transport.deliver(device, BoardContent(TEXT), key, context)
            assert outcome.status is OutcomeStatus.FAILED and why in outcome.reason
            health = await transport.probe(device)
            assert health.ok is False
        from tcs_core import SmsContent

        device = target(uuid4(), "http://x")
        outcome = await transport.deliver(device, SmsContent("Xin chào"), "k.k", context)
        assert outcome.status is OutcomeStatus.FAILED and "board content" in outcome.reason
        await transport.close()

    asyncio.run(go())


def test_push_probe_reads_the_board_status() -> None:
    """probe: ok from a healthy board's /status, not ok when faulty, refused or unreachable."""

    async def go() -> None:
        async with boards_served(2) as (boards, base):
            boards[1].fault = "error"
            transport = BoardTransport(environ=ENV)
            await transport.open()
            ok = await transport.probe(target(uuid4(), f"{base}/b/0"))
            faulty = await transport.probe(target(uuid4(), f"{base}/b/1"))
            dead = f"http://127.0.0.1:{free_port()}"
            down = await transport.probe(target(uuid4(), dead))
            wrong = await BoardTransport(environ={"TCS_TEST_BOARD_KEY": "x"}).probe(
                target(uuid4(), f"{base}/b/0")
            )
            await transport.close()
            assert ok.ok and "items=0" in ok.detail
            assert not faulty.ok and "fault=error" in faulty.detail
            assert not down.ok and dead in down.detail
            assert not wrong.ok and wrong.detail.startswith("signature rejected")

    asyncio.run(go())


# -- preemption and overlays ---------------------------------------------------------------------


def test_engine_preemption_never_takes_down_the_emergency_that_caused_it() -> None:
    """A normal item plays; an emergency cuts in (the engine calls preempt): the overlay stays."""

    async def go() -> None:
        async with boards_served(1) as (boards, base):
            app = make_app()
            push = add_board(app, "Bảng đẩy", f"{base}/b/0")
            pull = add_board(app, "Bảng kéo", "pull:", mode="pull")
            t0 = now_s()
            approve(app, t0, duration_s=600)
            e_at = t0 + timedelta(seconds=1)
            e = approve(app, e_at, text=ALERT, priority=Priority.EMERGENCY, duration_s=120)
            transport = transport_for(app, play_wait_s=0)
            scheduler = Scheduler(app, [transport], VirtualClock(t0))
            await scheduler.start()
            await scheduler.run_until(t0 + timedelta(seconds=3))
            assert scheduler.stats.preemptions == 2
            assert outcome_of(app, e, e_at, push)[0] == "delivered"
            assert outcome_of(app, e, e_at, pull)[0] == "delivered"
            assert boards[0].state()["overlay"]["text"] == ALERT
            feed = transport.feed_of(pull)
            assert feed is not None and feed.overlay is not None
            assert feed.overlay["text"] == ALERT
            # An operator's preempt takes the overlay down.
            for device, address in ((push, f"{base}/b/0"), (pull, "pull:")):
                mode = "push" if device == push else "pull"
                outcome = await transport.preempt(target(device, address, mode=mode))
                assert outcome.status is OutcomeStatus.DELIVERED
                assert outcome.reason == "" or "cleared" in outcome.reason
            assert boards[0].state()["overlay"] is None and feed.overlay is None
            await scheduler.stop()

    asyncio.run(go())


# -- pull -----------------------------------------------------------------------------------------


def test_pull_feed_has_etag_and_answers_304_when_unchanged() -> None:
    """GET feed: 200 with an ETag; If-None-Match with it: 304; a new item: 200 with a new tag."""

    async def go() -> None:
        transport = BoardTransport(environ=ENV, play_wait_s=0)
        board_id = uuid4()
        transport.add_board(board_id, {**SETTINGS, "mode": "pull", "poll_interval_s": "60"})
        device = target(board_id, "pull:", mode="pull")
        await transport.open()
        async with feed_served(transport) as base, aiohttp.ClientSession() as s:
            url = f"{base}/boards/{board_id}/feed"
            r = await signed_get(s, url)
            assert r.status == 200
            etag = r.headers["ETag"]
            assert (await r.json())["items"] == []
            r = await signed_get(s, url, **{"If-None-Match": etag})
            assert r.status == 304
            context = make_context()
            key = delivery_key(context.dispatch_id, board_id)
            outcome = await transport.deliver(device, BoardContent(TEXT), key, context)
            assert outcome.status is OutcomeStatus.DELIVERED and "feed" in outcome.reason
            r = await signed_get(s, url, **{"If-None-Match": etag})
            assert r.status == 200 and r.headers["ETag"] != etag
            doc = await r.json()
            assert [i["text"] for i in doc["items"]] == [TEXT]
            assert doc["poll_interval_s"] == 60.0
            r = await signed_get(s, url, **{"If-None-Match": r.headers["ETag"]})
            assert r.status == 304
            # Unsigned, wrongly signed and unknown boards are refused.
            r = await s.get(url)
            assert r.status == 401 and "missing" in (await r.json())["error"]
            r = await signed_get(s, url, key="sai khoá")
            assert r.status == 401 and "bad signature" in (await r.json())["error"]
            r = await signed_get(s, f"{base}/boards/{uuid4()}/feed")
            assert r.status == 404
        await transport.close()

    asyncio.run(go())


def test_sse_emergency_event_arrives_and_proof_of_play_closes_the_outcome() -> None:
    """A pull board on SSE gets the emergency at once; its proof of play closes the Dispatch."""

    async def go() -> None:
        app = make_app()
        device = add_board(app, "Bảng sau NAT", "pull:", mode="pull", poll_interval_s="300")
        reports: list[PlayReport] = []
        transport = transport_for(app, play_wait_s=3.0, on_played=reports.append)
        await transport.open()
        async with feed_served(transport) as base:
            puller = PullBoard(base, device, KEY.encode(), poll_interval_s=300)
            listening = asyncio.create_task(puller.listen())
            await asyncio.wait_for(puller.connected.wait(), 5)
            t0 = now_s()
            e = approve(app, t0, text=ALERT, priority=Priority.EMERGENCY, duration_s=120)
            scheduler = Scheduler(app, [transport], VirtualClock(t0))
            await scheduler.start()
            sent = time.time()
            await scheduler.run_until(t0 + timedelta(seconds=1))
            status, reason = outcome_of(app, e, t0, device)
            assert status == "delivered" and reason.startswith("played at")
            d = app.dispatch_of(e, t0)
            assert d is not None
            key = delivery_key(d.id, device)
            assert puller.overlay_received[key] - sent < 1.0
            assert puller.board.state()["overlay"]["text"] == ALERT
            assert [(r.key, r.dispatch_id, r.board_id, r.confirmed) for r in reports] == [
                (key, d.id, device, True)
            ]
            health = await transport.probe(target(device, "pull:", mode="pull"))
            assert health.ok and "event stream" in health.detail
            await scheduler.stop()
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            await puller.stop()
        await transport.close()

    asyncio.run(go())


def test_polling_board_reports_plays_through_the_callback() -> None:
    """A board without SSE polls its feed, shows the item and posts proof of play."""

    async def go() -> None:
        reports: list[PlayReport] = []

        async def on_played(report: PlayReport) -> None:
            reports.append(report)

        transport = BoardTransport(environ=ENV, play_wait_s=0, on_played=on_played)
        board_id = uuid4()
        transport.add_board(board_id, {**SETTINGS, "mode": "pull"})
        await transport.open()
        device = target(board_id, "pull:", mode="pull")
        context = make_context(duration_s=600)
        key = delivery_key(context.dispatch_id, board_id)
        assert (await transport.deliver(device, BoardContent(TEXT), key, context)).status is (
            OutcomeStatus.DELIVERED
        )
        async with feed_served(transport) as base:
            puller = PullBoard(base, board_id, KEY.encode(), events=False)
            assert await puller.poll() == 200
            assert await puller.poll() == 304
            assert puller.reported == {key}
            assert [(r.key, r.dispatch_id, r.confirmed) for r in reports] == [
                (key, context.dispatch_id, False)
            ]
            assert abs((reports[0].at - datetime.now(UTC)).total_seconds()) < 5
            # A report for another board's item is refused.
            stranger = delivery_key(uuid4(), uuid4())
            body = json.dumps({"played": [{"id": stranger, "at": "2026-01-01T00:00:00Z"}]})
            url = f"{base}/boards/{board_id}/played"
            headers = signed_headers(KEY.encode(), "POST", URL(url).raw_path, body.encode())
            async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
                assert r.status == 400 and "not " + str(board_id) in (await r.json())["error"]
            await puller.stop()
        await transport.close()

    asyncio.run(go())


def test_pull_board_that_never_polls_ends_failed_with_a_reason_naming_it() -> None:
    """No poll, no play: retryable while the item is valid, then failed; probe says offline."""

    async def go() -> None:
        app = make_app()
        device = add_board(app, "Bảng thôn Hai", "pull:", mode="pull", poll_interval_s="60")
        transport = transport_for(app, play_wait_s=0.2)
        t0 = now_s()
        b = approve(app, t0, duration_s=60)
        config = SchedulerConfig(max_attempts=3, retry_base_s=2.0, retry_cap_s=10.0)
        scheduler = Scheduler(app, [transport], VirtualClock(t0), config)
        await scheduler.start()
        await scheduler.run_until(t0 + timedelta(minutes=30))
        await scheduler.stop()
        status, reason = outcome_of(app, b, t0, device)
        assert status == "failed"
        assert "Bảng thôn Hai has the item in its feed but has never polled it" in reason
        pull = target(device, "pull:", mode="pull", poll_interval_s="60")
        health = await transport.probe(pull)
        assert not health.ok and "never polled" in health.detail
        feed = transport.feed_of(device)
        assert feed is not None
        feed.last_seen = time.time() - 65  # within 60 s x 1.1
        assert (await transport.probe(pull)).ok
        feed.last_seen = time.time() - 67
        health = await transport.probe(pull)
        assert not health.ok and "offline" in health.detail

    asyncio.run(go())


def test_encoded_payload_is_the_document_as_json() -> None:
    """The JSON sent to boards (built from a cached shared part) equals the payload document."""
    from transports.board.transport import _item

    for priority in Priority:
        context = make_context(priority=priority)
        for key in (delivery_key(context.dispatch_id, uuid4()), "a.b.2", 'odd "key"'):
            settings = {**SETTINGS, "dayparts": "06:00-11:00, 13:30-22:00"}
            images: Any = ("a.png",)  # (attrs' converter=tuple confuses mypy's signature)
            content = BoardContent(TEXT, images)
            doc, body = _item(content, key, context, settings)
            assert json.loads(body) == doc
            assert doc["id"] == key and doc["text"] == TEXT
            overlay = priority is Priority.EMERGENCY
            assert doc["type"] == ("overlay" if overlay else "item")
            if not overlay:
                assert doc["dayparts"] == ["06:00-11:00", "13:30-22:00"]


def test_feed_verifier_refuses_replays() -> None:
    """The feed's verifier (same scheme as the boards') refuses a replayed board request."""
    v = Verifier()
    headers = signed_headers(b"k", "GET", "/boards/x/feed")
    assert v.verify(b"k", "GET", "/boards/x/feed", b"", headers) is None
    again = v.verify(b"k", "GET", "/boards/x/feed", b"", headers)
    assert again is not None and again.startswith("replayed nonce")


# -- the conformance suite ------------------------------------------------------------------------


class TestBoardConformance(TransportConformance):
    """tcs-core's transport conformance suite on push boards served by the simulated board."""

    concurrent_calls = 16

    @pytest.fixture(autouse=True)
    def _sockets(self) -> Iterator[None]:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        yield
        self.sock.close()

    def peer(self) -> contextlib.AbstractAsyncContextManager[object]:
        sock = self.sock

        @contextlib.asynccontextmanager
        async def run() -> AsyncIterator[object]:
            boards = [Board(i, KEY.encode()) for i in range(3)]
            boards[1].fault, boards[2].fault = "slow", "malformed"
            from simulated_board import board_app

            runner = web.AppRunner(board_app(boards), access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            try:
                yield boards
            finally:
                await runner.cleanup()

        return run()

    @pytest.fixture
    def transport(self) -> Transport:
        limits = Limits(concurrency=100, rate_per_s=50.0, timeout_s=1.0)
        return BoardTransport(environ=ENV, push_timeout_s=0.5, play_wait_s=0.3, limits=limits)

    @pytest.fixture
    def device(self) -> DeviceTarget:
        return target(UUID(int=1), f"{self.base}/b/0", "Bảng tin chợ Ea Tiêu")

    @pytest.fixture
    def unreachable_device(self) -> DeviceTarget:
        return target(UUID(int=2), f"http://127.0.0.1:{free_port()}/b/0", "Bảng tin bến xe")

    @pytest.fixture
    def slow_device(self) -> DeviceTarget:
        return target(UUID(int=3), f"{self.base}/b/1", "Bảng tin trường học")

    @pytest.fixture
    def malformed_device(self) -> DeviceTarget:
        return target(UUID(int=4), f"{self.base}/b/2", "Bảng tin trạm y tế")
