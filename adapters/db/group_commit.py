"""Group commit for small writes: whatever is queued runs in one transaction.

The SMPP sender marks every reply sent, and every receipt updates a reply; one
commit each would cap the link at the disk's commit rate. Operations are plain
functions of a synchronous connection, run together by `SqlStore.run_transaction`
(on SQLite in the same writer thread as the inbound batches, so writers never wait
on each other's locks). Callers get their own result once the shared commit is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from sqlalchemy.engine import Connection

from adapters.db.store import SqlStore
from sms_gateway.errors import TemporaryFailure

T = TypeVar("T")
Operation = Callable[[Connection], Any]

log = structlog.get_logger("adapters.db.group_commit")


@dataclass(slots=True, eq=False)
class _Queued:
    operation: Operation
    future: asyncio.Future[Any]


class GroupCommit:
    def __init__(self, store: SqlStore, max_batch: int = 500) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: deque[_Queued] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation(conn)` in the next shared transaction; its result after the commit."""
        if self._closed:
            raise TemporaryFailure("the store is shutting down")
        loop = asyncio.get_running_loop()
        queued = _Queued(operation, loop.create_future())
        self._queue.append(queued)
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work(), name="group-commit")
        assert self._wakeup is not None
        self._wakeup.set()
        result: T = await asyncio.shield(queued.future)
        return result

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None and self._wakeup is not None:
            self._wakeup.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            await self._commit(batch)

    async def _commit(self, batch: list[_Queued]) -> None:
        def run_all(conn: Connection) -> list[Any]:
            return [queued.operation(conn) for queued in batch]

        try:
            results = await self.store.run_transaction(run_all)
        except TemporaryFailure as exc:
            for queued in batch:
                queued.future.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) > 1:
                # One bad write must not take the others down with it.
                for queued in batch:
                    await self._commit([queued])
                return
            log.exception("group_commit_failed")
            batch[0].future.set_exception(exc)
            return
        for queued, result in zip(batch, results, strict=True):
            queued.future.set_result(result)
