"""A minimal HTTP/JSON SMS gateway: what ``HttpJsonGateway`` speaks with its default templates.

It accepts ``POST /send`` with ``{"to", "from", "text", "coding", "segments", "reference",
"callback_url"}``, answers ``{"id": "…", "status": "accepted"}``, de-duplicates by ``reference``
(the same reference twice is one message: 409 with the first id), and posts a delivery report
``{"reference", "id", "status": "delivered"}`` to ``callback_url`` shortly after. ``POST
/mode/{mode}/send`` answers as a misbehaving gateway would (``429``, ``500``, ``garbage``,
``slow``, ``down``), for tests. ``send_mo`` posts an inbound message to a receiver.

Importable (``StubGateway(...).start()`` / ``.stop()``) and runnable::

    python examples/sms_gateway_stub.py --port 8055
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["StubGateway", "main"]


class StubGateway:
    """The stub gateway; ``messages`` holds what it accepted, by reference."""

    def __init__(
        self, *, dlr_delay_s: float = 0.05, slow_s: float = 30.0, sender: str = ""
    ) -> None:
        self.dlr_delay_s = dlr_delay_s
        self.slow_s = slow_s
        self.sender = sender
        self.messages: dict[str, dict[str, Any]] = {}
        self.requests = 0
        self.duplicates = 0
        self.reports_sent = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    @property
    def submissions(self) -> int:
        """Distinct messages accepted."""
        return len(self.messages)

    def app(self) -> web.Application:
        """The aiohttp application (to mount elsewhere)."""
        app = web.Application()
        app.router.add_post("/send", self._send)
        app.router.add_post("/mode/{mode}/send", self._send)
        app.router.add_get("/health", self._health)
        app.router.add_get("/mode/{mode}/health", self._health)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); returns the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = next(a for a in self._runner.addresses if isinstance(a, tuple))
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        """Stop serving; pending delivery reports are dropped."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        if request.match_info.get("mode") == "down":
            return web.json_response({"ok": False}, status=503)
        return web.json_response({"ok": True, "accepted": self.submissions})

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        mode = request.match_info.get("mode", "ok")
        if mode == "429":
            return web.json_response(
                {"error": "too many requests"}, status=429, headers={"Retry-After": "1"}
            )
        if mode == "500":
            return web.json_response({"error": "internal error"}, status=500)
        if mode == "garbage":
            return web.Response(body=b"\x00\xff<html>oops", content_type="text/html")
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        try:
            doc = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(doc, dict) or not doc.get("to") or not doc.get("text"):
            return web.json_response({"error": "to and text are required"}, status=400)
        ref = str(doc.get("reference") or request.headers.get("Idempotency-Key") or "")
        if ref and ref in self.messages:
            self.duplicates += 1
            return web.json_response(
                {"id": self.messages[ref]["id"], "status": "duplicate"}, status=409
            )
        msg_id = f"stub-{next(self._ids)}"
        self.messages[ref or msg_id] = {**doc, "id": msg_id}
        if doc.get("callback_url"):
            task = asyncio.create_task(self._report(str(doc["callback_url"]), ref, msg_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"id": msg_id, "status": "accepted"}, status=202)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def _report(self, url: str, ref: str, msg_id: str) -> None:
        await asyncio.sleep(self.dlr_delay_s)
        body = {"reference": ref, "id": msg_id, "status": "delivered"}
        for _ in range(5):  # a receiver that is briefly away gets the report later
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with self._client().post(url, json=body) as resp:
                    if resp.status < 500:
                        self.reports_sent += 1
                        return
            await asyncio.sleep(0.5)

    async def send_mo(
        self, receiver_url: str, sender: str, text: str, msg_id: str | None = None
    ) -> int:
        """Post an inbound message to ``receiver_url`` (e.g. ``…/sms/mo/stub``); the status."""
        body = {
            "from": sender,
            "to": self.sender or "8055",
            "text": text,
            "id": msg_id or f"mo-{next(self._ids)}",
        }
        async with self._client().post(receiver_url, json=body) as resp:
            return resp.status


def main(argv: list[str] | None = None) -> None:
    """Run the stub until interrupted."""
    parser = argparse.ArgumentParser(description="Minimal HTTP/JSON SMS gateway (stub)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8055)
    args = parser.parse_args(argv)

    async def run() -> None:
        stub = StubGateway()
        url = await stub.start(args.host, args.port)
        print(f"SMS gateway stub at {url}/send (Ctrl-C to stop)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await stub.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
