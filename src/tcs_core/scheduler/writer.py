"""Group commit: one writer thread saves whatever commands have queued in one transaction.

The eventsourcing library is synchronous and an SQLite commit costs an fsync, so saving one
Dispatch per transaction caps the engine at a few thousand per second. The writer gathers every
queued command into one ``app.save(...)`` (atomic), and resolves each command's future when it
commits. A transaction that hits a uniqueness conflict (e.g. a Dispatch another worker created)
is split in halves and retried, so the conflicting command fails alone and the others commit.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from tcs_core.app import SourceSystem
from tcs_core.errors import AlreadyExists, DispatchExists

__all__ = ["Command", "GroupCommitWriter"]

# A command runs in the writer thread and returns the aggregates whose pending events to save.
Command = Callable[[], Sequence[Aggregate]]


class _Item:
    __slots__ = ("command", "events", "future", "result")

    def __init__(self, command: Command, future: Future[Sequence[Aggregate]]) -> None:
        self.command = command
        self.future = future
        self.events: list[Any] = []
        self.result: Sequence[Aggregate] = ()


class GroupCommitWriter:
    """The single writer of an application."""

    def __init__(self, app: SourceSystem, max_batch: int = 5000) -> None:
        self.app = app
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tcs-writer", daemon=True)
        self.transactions = 0
        self.events_written = 0
        self.conflicts = 0
        self._closed = False
        self._thread.start()

    def submit(self, command: Command) -> Future[Sequence[Aggregate]]:
        """Queue a command; the future resolves when its events are committed."""
        if self._closed:
            raise RuntimeError("the writer is closed")
        fut: Future[Sequence[Aggregate]] = Future()
        self._queue.put(_Item(command, fut))
        return fut

    async def run(self, command: Command) -> Sequence[Aggregate]:
        """Queue a command and wait (without blocking the event loop) for its commit."""
        return await asyncio.wrap_future(self.submit(command))

    async def run_many(self, commands: Sequence[Command]) -> list[Any]:
        """Queue commands and wait for all of them with one wake-up of the event loop (not one
        per command). Each result is the command's aggregates or the exception it failed with."""
        if not commands:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        results: list[Any] = [None] * len(commands)
        left = [len(commands)]
        lock = threading.Lock()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        def settle(i: int, fut: Future[Sequence[Aggregate]]) -> None:
            exc = fut.exception()
            results[i] = exc if exc is not None else fut.result()
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                loop.call_soon_threadsafe(finish)

        for i, command in enumerate(commands):
            self.submit(command).add_done_callback(functools.partial(settle, i))
        await done
        return results

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        ready: list[_Item] = []
        for item in batch:
            if not item.future.set_running_or_notify_cancel():
                continue
            try:
                item.result = item.command()
                item.events = [e for agg in item.result for e in agg.collect_events()]
            except BaseException as exc:  # a rejected command fails alone
                item.future.set_exception(exc)
                continue
            ready.append(item)
        self._save(ready)

    def _save(self, items: list[_Item]) -> None:
        if not items:
            return
        try:
            self.app.save(*[e for item in items for e in item.events])
        except IntegrityError:
            self.conflicts += 1
            if len(items) == 1:
                items[0].future.set_exception(self._conflict(items[0]))
                return
            mid = len(items) // 2
            self._save(items[:mid])
            self._save(items[mid:])
            return
        except BaseException as exc:
            for item in items:
                item.future.set_exception(exc)
            return
        self.transactions += 1
        self.events_written += sum(len(item.events) for item in items)
        for item in items:
            item.future.set_result(item.result)

    @staticmethod
    def _conflict(item: _Item) -> AlreadyExists:
        first = item.events[0] if item.events else None
        topic = getattr(first, "TOPIC", "")
        if topic == "tcs.dispatch.started":
            return DispatchExists(f"dispatch {first.originator_id} was already started")  # type: ignore[union-attr]
        return AlreadyExists(f"a concurrent writer changed {getattr(first, 'originator_id', '?')}")
