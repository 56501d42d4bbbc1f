"""The message log's partial indexes (migration 0007): unique where the key is set,
used by the lookups that need them, and reached from 0006 without losing a row."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest
from alembic import command
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from adapters.db.engine import create_engine
from adapters.db.migrate import alembic_config
from adapters.db.schema import messages

# Each partial index, and the column a row must have to be in it.
PARTIAL = {
    "uq_messages_channel_external_id": "external_id",
    "uq_messages_channel_dedupe_key": "dedupe_key",
    "uq_messages_reply_to_reply_index": "reply_to",
    "ix_messages_transport_id": "transport_id",
}


async def _migrate(url: str, step: str, revision: str) -> None:
    """alembic upgrade/downgrade to `revision`, on the connection migrate.py would use."""
    config = alembic_config(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:

            def run(sync_conn: Connection) -> None:
                config.attributes["sync_connection"] = sync_conn
                getattr(command, step)(config, revision)

            await conn.run_sync(run)
    finally:
        await engine.dispose()


def _row(**values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "direction": "in",
        "channel": "smpp",
        "phone": "+79161234567",
        "short_number": "7377",
        "text": "1234567833 1234",
        "created_at": datetime(2026, 12, 7, 2, 0),
        "status": "received",
        "attempts": 0,
        "parts": 1,
        "incomplete": False,
    }
    row.update(values)
    return row


def _index_definitions(conn: Connection) -> dict[str, str]:
    if conn.dialect.name == "sqlite":
        found = conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
            )
        )
    else:
        found = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages'")
        )
    return {name: sql or "" for name, sql in found}


def _condition(definition: str) -> str:
    """An index's definition without parentheses: PostgreSQL writes `WHERE (x IS NOT
    NULL)`, SQLite the condition as given."""
    return definition.replace("(", "").replace(")", "")


async def test_keys_are_indexed_only_where_set_and_stay_unique(db_url):
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            definitions = await conn.run_sync(_index_definitions)
            for name, column in PARTIAL.items():
                assert f"{column} IS NOT NULL" in _condition(definitions[name]), definitions[name]
            # Rows without a key: as many as there are, as with the constraints before.
            await conn.execute(insert(messages), [_row(), _row(), _row(direction="out")])
            first = (
                await conn.execute(
                    insert(messages).returning(messages.c.id), _row(external_id="SM1")
                )
            ).scalar_one()
            await conn.execute(insert(messages), _row(channel="twilio", external_id="SM1"))
            await conn.execute(insert(messages), _row(dedupe_key="k1"))
            for index in (0, 1):
                reply = _row(direction="out", reply_to=first, reply_index=index)
                await conn.execute(insert(messages), reply)
        for duplicate in (
            _row(external_id="SM1"),
            _row(dedupe_key="k1"),
            _row(direction="out", reply_to=first, reply_index=1),
        ):
            with pytest.raises(IntegrityError):
                async with engine.begin() as conn:
                    await conn.execute(insert(messages), duplicate)
        async with engine.connect() as conn:
            assert 8 == len((await conn.execute(select(messages.c.id))).all())
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("lookup", "index"),
    [
        (
            "SELECT id FROM messages WHERE channel = 'smpp' AND external_id = 'SM1'",
            "uq_messages_channel_external_id",
        ),
        (
            "SELECT id FROM messages WHERE channel = 'smpp' AND dedupe_key = 'k1'",
            "uq_messages_channel_dedupe_key",
        ),
        (
            "SELECT id, text FROM messages WHERE reply_to IN (1, 2, 3) AND reply_index = 0",
            "uq_messages_reply_to_reply_index",
        ),
        ("SELECT id FROM messages WHERE transport_id = 'abc'", "ix_messages_transport_id"),
    ],
)
def test_sqlite_finds_rows_through_the_partial_indexes(sqlite_url, lookup, index):
    """SQLite uses a partial index only where the query implies its condition: an
    equality or IN on the column does, so the store's lookups never scan the log."""
    database = make_url(sqlite_url).database
    assert database is not None
    with sqlite3.connect(database) as conn:
        plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + lookup))
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan


async def test_upgrade_from_0006_keeps_every_message_and_downgrade_restores_constraints(
    db_url,
):
    """From 0006 with messages in the log (keys set and not), up, down and up again."""
    await _migrate(db_url, "downgrade", "0006")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(messages),
                [_row(external_id=f"SM{i}" if i % 2 else None, text=f"t{i}") for i in range(6)],
            )
        await _migrate(db_url, "upgrade", "0007")
        async with engine.connect() as conn:
            kept = (await conn.execute(select(messages.c.text).order_by(messages.c.id))).scalars()
            assert [f"t{i}" for i in range(6)] == list(kept)
            definitions = await conn.run_sync(_index_definitions)
            external_id = definitions["uq_messages_channel_external_id"]
            assert "external_id IS NOT NULL" in _condition(external_id)
        await _migrate(db_url, "downgrade", "0006")
        async with engine.begin() as conn:
            assert 6 == len((await conn.execute(select(messages.c.id))).all())
            # The constraint is back: a second SM1 is refused.
            with pytest.raises(IntegrityError):
                async with conn.begin_nested():
                    await conn.execute(insert(messages), _row(external_id="SM1"))
        await _migrate(db_url, "upgrade", "head")
    finally:
        await engine.dispose()
