"""Live updates and metrics: server-sent events from the notification log; Prometheus text.

``LiveHub`` reads the store's notification log every ``live_poll_s`` seconds from where it last
stopped (only the topics it shows), so it sees what the scheduler's writer thread, another
process or another worker recorded, and never makes a write path wait. Each subscriber gets only
events about areas it may view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from uuid import UUID

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tcs_core import NotFound

from .state import State

__all__ = ["LiveHub", "Metrics"]

log = logging.getLogger("province_server.live")

TOPICS = (
    "tcs.device.status_changed",
    "tcs.device.registered",
    "tcs.dispatch.started",
    "tcs.dispatch.outcomes_recorded",
    "tcs.dispatch.completed",
    "tcs.broadcast.drafted",
    "tcs.broadcast.revised",
    "tcs.broadcast.submitted",
    "tcs.broadcast.approved",
    "tcs.broadcast.rejected",
    "tcs.broadcast.scheduled",
    "tcs.broadcast.cancelled",
    "tcs.broadcast.expired",
)


class _StoreCollector(Collector):
    """Gauges read at scrape time: devices by status, broadcasts by status, store position."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Any:
        app = self.state.system
        devices = GaugeMetricFamily("tcs_devices", "Active devices by status", labels=["status"])
        counts: dict[str, int] = {}
        for d in app.devices.all():
            if d.active:
                counts[d.status.value] = counts.get(d.status.value, 0) + 1
        for status, n in sorted(counts.items()):
            devices.add_metric([status], n)
        yield devices
        position = GaugeMetricFamily("tcs_store_position", "Newest notification id seen")
        position.add_metric([], float(app.position))
        yield position


class Metrics:
    """The server's Prometheus metrics, in their own registry (several apps per process)."""

    def __init__(self, state: State, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tcs_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "tcs_http_request_seconds", "Request latency", ["route"], registry=r
        )
        self.auth_failures = Counter(
            "tcs_auth_failures", "Refused credentials", ["kind"], registry=r
        )
        self.rate_limited = Counter(
            "tcs_rate_limited", "Requests refused by a rate limit", ["kind"], registry=r
        )
        self.outcomes = Counter(
            "tcs_dispatch_outcomes", "Delivery outcomes seen", ["status"], registry=r
        )
        self.sse_clients = Gauge("tcs_sse_clients", "Open event streams", registry=r)
        r.register(_StoreCollector(state))


class LiveHub:
    """Fans store events out to event-stream subscribers, filtered by what each may view."""

    def __init__(self, state: State, metrics: Metrics) -> None:
        self.state = state
        self.metrics = metrics
        self.subscribers: dict[
            asyncio.Queue[tuple[str, dict[str, Any]]], tuple[str, set[UUID] | None]
        ] = {}
        self.position = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start polling from the store's current end (history is what the API lists)."""
        self.position = self.state.system.recorder.max_notification_id() or 0
        self._task = asyncio.create_task(self._run(), name="province-server-live")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.state.config.live_poll_s)
            try:
                self.poll()
            except Exception:  # a bad event must not end the stream for everyone
                log.exception("live update failed")

    def poll(self) -> int:
        """Read and publish what was recorded since the last poll; returns how many events."""
        app = self.state.system
        n = 0
        dispatches: dict[UUID, str] = {}
        while True:
            batch = app.recorder.select_notifications(
                start=self.position + 1, limit=1000, topics=TOPICS
            )
            if not batch:
                break
            for note in batch:
                n += 1
                e: Any = app.mapper.to_domain_event(note)
                kind = note.topic.split(".")[1]
                if kind == "device":
                    self._device(e.originator_id, note.topic)
                elif kind == "dispatch":
                    dispatches[e.originator_id] = note.topic
                    if note.topic == "tcs.dispatch.outcomes_recorded":
                        for row in e.rows:
                            self.metrics.outcomes.labels(status=str(row[1])).inc()
                else:
                    self._broadcast(e.originator_id, note.topic)
            self.position = batch[-1].id
        for did, topic in dispatches.items():  # one update per dispatch per poll
            self._dispatch(did, topic)
        return n

    def _publish(self, event: str, data: dict[str, Any], areas: list[UUID]) -> None:
        for q, (user, visible) in list(self.subscribers.items()):
            if not self.state.reaches(user, areas, visible):
                continue
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait((event, data))

    def _device(self, device_id: UUID, topic: str) -> None:
        d = self.state.system.devices.get(device_id)
        if d is None:
            return
        data = {
            "id": str(d.device_id),
            "name": d.name,
            "status": d.status.value,
            "active": d.active,
            "area": self.state.area_ref(d.area_id),
            "topic": topic,
        }
        self._publish("device", data, [d.area_id])

    def _broadcast(self, broadcast_id: UUID, topic: str) -> None:
        view = self.state.system.broadcasts.get(broadcast_id)
        if view is None:
            return
        areas = [UUID(str(a)) for a in view.fields["target_area_ids"]]
        data = {
            "id": str(broadcast_id),
            "title": view.fields["title"],
            "status": view.status,
            "priority": str(view.fields["priority"]),
            "topic": topic,
        }
        self._publish("broadcast", data, areas)

    def _dispatch(self, dispatch_id: UUID, topic: str) -> None:
        from .api import dispatch_json

        app = self.state.system
        try:
            d = app.dispatch(dispatch_id)
        except NotFound:
            return
        view = app.broadcasts.get(d.broadcast_id)
        if view is None:
            return
        areas = [UUID(str(a)) for a in view.fields["target_area_ids"]]
        data = {**dispatch_json(d), "title": view.fields["title"], "topic": topic}
        self._publish("dispatch", data, areas)

    async def stream(
        self, request: web.Request, user: str, visible: set[UUID] | None
    ) -> web.StreamResponse:
        """Serve one ``text/event-stream`` until the client goes away."""
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=1000)
        self.subscribers[q] = (user, visible)
        self.metrics.sse_clients.inc()
        try:
            await resp.write(b"retry: 2000\n: connected\n\n")
            while True:
                try:
                    event, data = await asyncio.wait_for(q.get(), timeout=15.0)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                payload = json.dumps(data, ensure_ascii=False)
                await resp.write(f"event: {event}\ndata: {payload}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.subscribers.pop(q, None)
            self.metrics.sse_clients.dec()
        return resp
