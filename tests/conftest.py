"""Shared fixtures: settings, fresh databases on SQLite and PostgreSQL, a built gateway.

PostgreSQL tests run against the real server on 127.0.0.1:5432. Under CI=true they
fail when it is unreachable; elsewhere they skip with the reason. Each test gets its
own database, cloned from a template migrated once per run, so runs and tests never
see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sms_gateway.config import Settings

ROOT = Path(__file__).resolve().parent.parent
# The accounts every test starts from (config/demo_accounts.csv is for `make run`).
DEMO_ACCOUNTS = ROOT / "tests" / "fixtures" / "accounts.csv"
PG_ADMIN_DSN = os.environ.get("SMS_GATEWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


class FrozenClock:
    """A clock tests move by hand; the default is inside the reading window."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 18, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, *args: int) -> None:
        self.now = datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


# -- PostgreSQL ------------------------------------------------------------------


def _pg_dsn(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{database}"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_reachable() -> str | None:
    async def probe() -> None:
        await _pg_admin("SELECT 1")

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN_DSN} is not reachable ({exc.__class__.__name__}: {exc})"
    return None


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database for this run; dropped at the end."""
    problem = _pg_reachable()
    if problem:
        if IN_CI:
            pytest.fail(problem + " — CI must run the PostgreSQL tests")
        pytest.skip(problem)
    from adapters.db.migrate import upgrade

    name = f"smsgw_tmpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    asyncio.run(upgrade(_pg_dsn(name).replace("postgresql://", "postgresql+asyncpg://")))
    yield name
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg_url(pg_template: str) -> AsyncIterator[str]:
    name = f"smsgw_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_dsn(name).replace("postgresql://", "postgresql+asyncpg://")
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- SQLite ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adapters.db.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "gateway.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


# -- both ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database URL; tests using it run on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def settings_for() -> Callable[..., Settings]:
    """settings_for(url, rules={...}, gateway={...}) -> Settings for tests."""

    def build(url: str, **sections: dict[str, object]) -> Settings:
        sections.setdefault("database", {})
        sections["database"] = {"url": url, "upgrade_on_start": False, **sections["database"]}
        return Settings().replace(**sections)

    return build


@pytest.fixture
async def gateway_factory(
    clock: FrozenClock,
) -> AsyncIterator[Callable[..., object]]:
    """gateway_factory(settings, demo=True) -> a built Gateway with the demo accounts."""
    from adapters.db.bulk import import_accounts
    from sms_gateway.bootstrap import build_gateway

    built = []

    async def factory(settings: Settings, demo: bool = True, migrate: bool = False) -> object:
        gateway = await build_gateway(settings, migrate=migrate, check_schema=migrate, clock=clock)
        built.append(gateway)
        if demo:
            await import_accounts(
                gateway.store, DEMO_ACCOUNTS, settings.gateway.account_pattern, clock()
            )
        return gateway

    yield factory
    for gateway in built:
        await gateway.aclose()


@pytest.fixture
def private_postgres() -> Iterator[object]:
    """A PostgreSQL server of the test's own, which the test may stop and start."""
    from tests.pg_private import PrivatePostgres, private_postgres_problem

    problem = private_postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(problem + " — CI must run the outage tests")
        pytest.skip(problem)
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()
