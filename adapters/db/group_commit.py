"""Group commit for small writes: whatever is queued runs in one transaction.

The SMPP sender marks every reply sent, and every receipt updates a reply; one
commit each would cap the link at the disk's commit rate. Operations are plain
functions of a synchronous connection, run together by `SqlStore.run_transaction`
(on SQLite in the same writer thread as the inbound batches, so writers never wait
on each other's locks). Callers get their own result once the shared commit is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from sqlalchemy.engine import Connection

from adapters.db.store import SqlStore
from sms_gateway.batching import BatchQueue

T = TypeVar("T")
Operation = Callable[[Connection], Any]

log = structlog.get_logger("adapters.db.group_commit")


@dataclass(slots=True, eq=False)
class _Queued:
    operation: Operation
    future: asyncio.Future[Any]
    ride_along: bool = False


class GroupCommit:
    def __init__(self, store: SqlStore, max_batch: int = 500) -> None:
        self.store = store
        # Never lingers: work that can wait for company says so (ride_along), and
        # the store waits for it where the other work is queued.
        self._queue: BatchQueue[_Queued] = BatchQueue(
            self._commit, _log_failure, max_batch=max_batch, name="group-commit", linger_s=0.0
        )

    async def run(self, operation: Callable[[Connection], T], ride_along: bool = False) -> T:
        """Run `operation(conn)` in the next shared transaction; its result after the commit.

        ride_along: see SqlStore.run_transaction (waits a little for company)."""
        queued = _Queued(operation, asyncio.get_running_loop().create_future(), ride_along)
        await self._queue.put(queued)
        result: T = queued.future.result()
        return result

    async def aclose(self) -> None:
        await self._queue.aclose()

    async def _commit(self, batch: list[_Queued]) -> None:
        def run_all(conn: Connection) -> list[Any]:
            return [queued.operation(conn) for queued in batch]

        ride_along = all(queued.ride_along for queued in batch)
        results = await self.store.run_transaction(run_all, ride_along=ride_along)
        for queued, result in zip(batch, results, strict=True):
            if not queued.future.done():  # done: its caller was cancelled
                queued.future.set_result(result)


def _log_failure(_queued: _Queued, error: Exception) -> Exception:
    log.error("group_commit_failed", exc_info=error)
    return error
