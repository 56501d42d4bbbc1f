"""The composition root: the one place that builds and wires the gateway.

    gateway = await build_gateway(settings)           # engine, store, parser, service
    reply = await gateway.pipeline.handle(inbound)    # or accept()/process()
    await gateway.aclose()

Tests build it on a fresh database with `await build_gateway(settings, migrate=True)`
where settings = load_settings(...) or Settings().replace(database={"url": ...}).
Nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from adapters.db.engine import create_batch_engine, create_engine, create_read_engine
from adapters.db.instances import instance_name
from adapters.db.migrate import current_revision, head_revision, upgrade
from adapters.db.outbox import SqlOutbox
from adapters.db.store import SqlStore
from grammar import MessageParser
from sms_gateway.config import Settings
from sms_gateway.errors import GatewayError
from sms_gateway.metrics import GatewayMetrics
from sms_gateway.service import GatewayService, utc_now


class SchemaOutOfDate(GatewayError):
    """The schema is behind the code and migrating is off: `current` (None: no schema
    at all) and the `head` the code needs."""

    def __init__(self, current: str | None, head: str | None) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"database schema is at {current or 'nothing'}, the code needs {head}: "
            "run `sms-gateway db upgrade`"
        )


@dataclass
class Gateway:
    settings: Settings
    store: SqlStore
    pipeline: GatewayService
    outbox: SqlOutbox
    metrics: GatewayMetrics
    parser: MessageParser
    # This process's name in the database (adapters/db/instances.py).
    instance: str = ""

    async def aclose(self) -> None:
        await self.pipeline.aclose()
        await self.outbox.aclose()
        await self.store.aclose()


async def ensure_schema(settings: Settings, migrate: bool) -> None:
    """Migrate to head, or refuse to run on an old schema when migrating is off."""
    url = settings.database.url
    if migrate:
        await upgrade(url)
        return
    current, head = await current_revision(url), head_revision(url)
    if current != head:
        raise SchemaOutOfDate(current, head)


async def build_gateway(
    settings: Settings,
    *,
    migrate: bool = False,
    check_schema: bool = True,
    clock: Callable[[], datetime] = utc_now,
    metrics: GatewayMetrics | None = None,
) -> Gateway:
    if check_schema or migrate:
        await ensure_schema(settings, migrate)
    url = settings.database.url
    store = SqlStore(
        create_engine(url, settings.database.pool_size),
        read_engine=create_read_engine(url),
        batch_engine=create_batch_engine(url),
    )
    parser = MessageParser(settings.gateway.account_pattern)
    parser.compile()
    metrics = metrics or GatewayMetrics()
    store.observe_commit = metrics.db_commit_seconds.observe
    instance = instance_name(settings)
    service = GatewayService(settings, store, parser, metrics, clock, instance)
    return Gateway(
        settings, store, service, SqlOutbox(store, clock, instance), metrics, parser, instance
    )
