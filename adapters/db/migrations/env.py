"""Alembic environment: runs migrations on the connection `migrate.upgrade` hands over."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from adapters.db.engine import create_engine
from adapters.db.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_own_engine() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `sms-gateway db upgrade`")
sync_connection = config.attributes.get("sync_connection")
if sync_connection is not None:
    _run(sync_connection)
else:
    # The `alembic` command line (e.g. `revision --autogenerate` during development).
    asyncio.run(_run_on_own_engine())
