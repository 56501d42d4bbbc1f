"""Creating engines: SQLite tuned for one writer, PostgreSQL pooled.

On SQLite every write transaction starts with BEGIN IMMEDIATE: it takes the write
lock up front and waits for it (busy_timeout), instead of failing with "database is
locked" when a read turns into a write while another connection writes. Readers
(ops API, export) get an engine of their own with plain deferred transactions, so a
long export never holds the write lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# What a commit waits for on SQLite. FULL: the WAL is synced at every commit, so an MO
# acknowledged to the SMSC survives a power loss (bench/soak.py measured the sync at
# about 0.1 ms of CPU and 0.2 ms of wall time per commit, 0.66 commits per MO at a
# steady 200 MO/s). NORMAL would sync only at checkpoints: a process crash still
# loses nothing, a power loss the last commits. A module value so a bench can compare.
SQLITE_SYNCHRONOUS = "FULL"


# The batch writer checkpoints the WAL itself, between transactions (see
# store.CHECKPOINT_EVERY_COMMITS); SQLite's automatic checkpoint inside a commit is
# left only as the bound of the WAL, here four times its default of 1,000 pages.
WRITER_AUTOCHECKPOINT_PAGES = 4000


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _tune_sqlite(sync_engine: Engine, immediate: bool, autocheckpoint: int | None = None) -> None:
    @event.listens_for(sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun by the listener below, not by the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; FULL makes a commit survive power
        # loss, which is what "acknowledged only after it is durable" means.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Statement journals (a multi-row write inside a savepoint, several per batch)
        # in memory, not a temporary file each: an open, unlink, writes and a close
        # every few MO, on a scratch file that nothing reads after a crash.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA busy_timeout=30000")
        if autocheckpoint is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        cursor.close()

    statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"
    plain_driver = sync_engine.dialect.driver == "pysqlite"

    @event.listens_for(sync_engine, "begin")
    def _begin(conn: Any) -> None:
        if plain_driver:
            # The batch writer begins hundreds of transactions a second: straight to
            # sqlite3, not through SQLAlchemy's statement execution.
            conn.connection.driver_connection.execute(statement)
        else:
            conn.exec_driver_sql(statement)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """The engine for writes (and everything on PostgreSQL)."""
    if is_sqlite(url):
        _sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _tune_sqlite(engine.sync_engine, immediate=True)
        return engine
    # Fail fast when PostgreSQL is away: a transport must answer "try later" within
    # its own timeouts (SMSC response timer, Twilio's 15 s), not hang on connect.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 60},
    )


def create_read_engine(url: str) -> AsyncEngine | None:
    """A separate engine for readers on SQLite; None where the write engine serves."""
    if not is_sqlite(url):
        return None
    engine = create_async_engine(url, connect_args={"timeout": 30})
    _tune_sqlite(engine.sync_engine, immediate=False)
    return engine


def create_batch_engine(url: str) -> Engine | None:
    """On SQLite, a synchronous engine for the batch writer thread.

    aiosqlite hands every statement to its own thread and back; a batch of inbound
    SMS runs a dozen statements, so the batch runs instead, whole, in one thread of
    ours on the plain sqlite3 driver: one hand-over per batch.
    """
    if not is_sqlite(url):
        return None
    sync_url = make_url(url).set(drivername="sqlite")
    engine = create_sync_engine(sync_url, connect_args={"timeout": 30, "check_same_thread": False})
    _tune_sqlite(engine, immediate=True, autocheckpoint=WRITER_AUTOCHECKPOINT_PAGES)
    return engine
