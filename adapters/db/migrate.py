"""Schema migrations with Alembic, driven from code (no alembic.ini to keep in sync)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from adapters.db.engine import create_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: serialises `db upgrade` across gateway instances on PostgreSQL.
_PG_LOCK_ID = 7_377_000_001


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _current(sync_conn: Connection) -> str | None:
    return MigrationContext.configure(sync_conn).get_current_revision()


async def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


async def upgrade(url: str) -> tuple[str | None, str | None]:
    """Migrate the database at `url` to head; (revision before, revision after).

    Safe to run from several instances at once: on PostgreSQL an advisory lock
    lets one migrate while the others wait and then find nothing to do.
    """
    config = alembic_config(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_lock({_PG_LOCK_ID})"))
            before = await conn.run_sync(_current)

            def _upgrade(sync_conn: Connection) -> None:
                config.attributes["sync_connection"] = sync_conn
                command.upgrade(config, "head")

            await conn.run_sync(_upgrade)
            await conn.commit()
            after = await conn.run_sync(_current)
            if conn.dialect.name == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_unlock({_PG_LOCK_ID})"))
                await conn.commit()
            return before, after
    finally:
        await engine.dispose()
