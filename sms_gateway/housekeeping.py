"""Housekeeping for months of traffic: the daily prune of the message log.

`serve` runs `prune_loop(gateway)` as a task beside its other loops; `sms-gateway db
prune` runs `prune_once` by hand. What is pruned and what never is: see
adapters/db/retention.py and docs/operations.md ("Retention").

The loop prunes every 24 hours, the first time a few minutes after start-up, rather
than at a fixed hour: a prune is batches of short transactions that the pipeline's
commits interleave with, so the hour does not matter to subscribers, and a restart
neither skips a day nor makes instances started together prune together. The first
run after retention is switched on (months of rows) takes longest; later ones take
about one day of traffic each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timedelta

import structlog

from adapters.db.retention import PruneCounts, prune
from sms_gateway.bootstrap import Gateway
from sms_gateway.errors import TemporaryFailure

log = structlog.get_logger("sms_gateway.housekeeping")

# After start-up: the recovery of what a crash left, and the first burst, go first.
FIRST_PRUNE_AFTER_S = 600.0
PRUNE_EVERY_S = 24 * 3600.0
# The database was away: try again sooner than tomorrow.
RETRY_AFTER_S = 3600.0


async def prune_once(
    gateway: Gateway,
    *,
    days: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneCounts:
    """One prune of what is older than `days` (default `[database] keep_messages_days`)."""
    keep_days = days if days is not None else gateway.settings.database.keep_messages_days
    moment = now if now is not None else gateway.pipeline.clock()
    started = time.monotonic()
    counts = await prune(gateway.store, timedelta(days=keep_days), now=moment, dry_run=dry_run)
    log.info(
        "pruned",
        keep_days=keep_days,
        before=(moment - timedelta(days=keep_days)).isoformat(),
        dry_run=dry_run,
        seconds=round(time.monotonic() - started, 3),
        **dataclasses.asdict(counts),
    )
    return counts


async def prune_loop(
    gateway: Gateway,
    *,
    first_after_s: float = FIRST_PRUNE_AFTER_S,
    every_s: float = PRUNE_EVERY_S,
    retry_after_s: float = RETRY_AFTER_S,
) -> None:
    """Prune once a day until cancelled; a failed round is logged, never fatal."""
    delay = first_after_s
    while True:
        await asyncio.sleep(delay)
        delay = every_s
        try:
            await prune_once(gateway)
        except TemporaryFailure as exc:
            log.warning("prune_skipped", reason=str(exc))
            delay = min(retry_after_s, every_s)
        except Exception:
            # A bug in a housekeeping task must not end it for good, nor the service.
            log.exception("prune_failed")
