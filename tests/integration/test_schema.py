"""Migrations: upgrade to head, refuse an old schema, run once under concurrent starts."""

from __future__ import annotations

import asyncio

import pytest

from adapters.db.migrate import current_revision, head_revision, upgrade
from sms_gateway.bootstrap import SchemaOutOfDate, build_gateway
from sms_gateway.config import Settings


async def test_serve_refuses_an_unmigrated_database_when_upgrades_are_off(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    settings = Settings().replace(database={"url": url, "upgrade_on_start": False})
    with pytest.raises(SchemaOutOfDate) as caught:
        await build_gateway(settings)
    assert (
        f"database schema is at nothing, the code needs {head_revision(url)}: "
        "run `sms-gateway db upgrade`"
    ) == str(caught.value)


async def test_upgrade_reaches_head_and_is_idempotent(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    assert (None, head_revision(url)) == await upgrade(url)
    assert (head_revision(url), head_revision(url)) == await upgrade(url)
    assert head_revision(url) == await current_revision(url)


@pytest.mark.postgres
async def test_concurrent_upgrades_on_postgresql_migrate_once(pg_template, tmp_path):
    """Several instances starting at once: the advisory lock lets one migrate."""
    import uuid

    from tests.conftest import _pg_admin, _pg_dsn

    name = f"smsgw_mig_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    url = _pg_dsn(name).replace("postgresql://", "postgresql+asyncpg://")
    try:
        results = await asyncio.gather(*(upgrade(url) for _ in range(3)))
        head = head_revision(url)
        assert [head, head, head] == [after for _, after in results]
        assert 1 == sum(1 for before, _ in results if before is None)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
