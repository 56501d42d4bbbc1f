"""Prepared statements on sqlite3 read and write exactly what SQLAlchemy would.

The batch writer's hot statements bypass SQLAlchemy's execution on SQLite; rows they
write must be readable by the ops side (through SQLAlchemy) and rows they read must
carry the same Python types, or time comparisons and flags would silently go wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, bindparam, create_engine, func, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adapters.db.prepared import Prepared, _bind_converter, _values_split
from adapters.db.schema import messages, metadata

MORNING = datetime(2026, 11, 18, 9, 0, 0)
LATER = datetime(2026, 11, 18, 9, 30, 15, 250_000)


@pytest.fixture(name="conn")
def conn_fixture(tmp_path: Path) -> Iterator[Connection]:
    engine = create_engine(f"sqlite:///{tmp_path / 'prepared.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        yield conn
    engine.dispose()


def _inbound(phone: str, created_at: datetime, incomplete: bool = False) -> dict[str, object]:
    return {
        "direction": "in",
        "channel": "smpp",
        "phone": phone,
        "short_number": "7377",
        "text": "5550001112 5450",
        "created_at": created_at,
        "status": "received",
        "attempts": 0,
        "parts": 1,
        "incomplete": incomplete,
    }


INSERT_RETURNING = Prepared(
    insert(messages).returning(messages.c.id, messages.c.created_at, messages.c.incomplete)
)


def test_rows_written_by_prepared_read_back_through_sqlalchemy_unchanged(conn: Connection) -> None:
    returned = INSERT_RETURNING.each(
        conn, [_inbound("+79161234567", MORNING), _inbound("+79161234568", LATER, True)]
    )
    returned = sorted(returned, key=lambda r: r.id)  # RETURNING promises no order
    assert [(r.created_at, r.incomplete) for r in returned] == [(MORNING, False), (LATER, True)]
    stored = conn.execute(
        select(messages.c.phone, messages.c.created_at, messages.c.incomplete).order_by(
            messages.c.id
        )
    ).all()
    assert [tuple(r) for r in stored] == [
        ("+79161234567", MORNING, False),
        ("+79161234568", LATER, True),
    ]
    # Stored in SQLAlchemy's own text form, so string comparisons in SQL still order.
    raw = conn.exec_driver_sql("SELECT created_at FROM messages ORDER BY id").scalars().all()
    assert raw == ["2026-11-18 09:00:00.000000", "2026-11-18 09:30:15.250000"]


def test_expanding_lists_literals_and_bound_times_match_sqlalchemy(conn: Connection) -> None:
    conn.execute(insert(messages), [_inbound(f"+7916123456{i}", LATER) for i in range(5)])
    statement = (
        select(messages.c.id, messages.c.phone, messages.c.created_at)
        .where(
            messages.c.id.in_(bindparam("ids", expanding=True)),
            messages.c.direction == "in",  # a literal the statement carries itself
            messages.c.created_at >= bindparam("since"),
        )
        .order_by(messages.c.id)
    )
    prepared = Prepared(statement)
    for ids in ([2], [1, 3, 5], [4, 2]):
        params = {"ids": ids, "since": MORNING}
        expected = [tuple(r) for r in conn.execute(statement, params)]
        assert [tuple(r) for r in prepared.rows(conn, params)] == expected
        assert expected  # the comparison above is not between two empty lists
    # After the newest row: nothing, exactly as SQLAlchemy says.
    assert prepared.rows(conn, {"ids": [1, 2], "since": datetime(2026, 11, 19)}) == []
    # An empty IN list falls back to SQLAlchemy, which knows how to say it.
    assert prepared.rows(conn, {"ids": [], "since": MORNING}) == []


def test_a_big_batch_inserts_whole_and_conflicts_are_skipped(conn: Connection) -> None:
    """6,000 rows through one prepared INSERT ... RETURNING; a row that conflicts (the
    same dedupe key, in the table or earlier in the batch) returns nothing."""
    insert_or_skip = Prepared(
        sqlite_insert(messages)
        .on_conflict_do_nothing()
        .returning(messages.c.id, messages.c.dedupe_key)
    )
    batch = [{**_inbound("+79161234567", MORNING), "dedupe_key": f"k{i}"} for i in range(6_000)]
    first = insert_or_skip.each(conn, batch)
    again = insert_or_skip.each(
        conn,
        [
            {**_inbound("+79161234567", LATER), "dedupe_key": "k1"},  # already stored
            {**_inbound("+79161234567", LATER), "dedupe_key": "new"},
            {**_inbound("+79161234567", LATER), "dedupe_key": "new"},  # twice in one batch
        ],
    )

    assert sorted(r.dedupe_key for r in first) == sorted(f"k{i}" for i in range(6_000))
    assert len({r.id for r in first}) == 6_000
    assert ["new"] == [r.dedupe_key for r in again]
    assert 6_001 == conn.execute(select(func.count()).select_from(messages)).scalar_one()


def test_executemany_update_takes_its_set_clause_from_the_keys(conn: Connection) -> None:
    conn.execute(insert(messages), [_inbound(f"+7916123456{i}", MORNING) for i in range(3)])
    set_status = Prepared(update(messages).where(messages.c.id == bindparam("b_id")))
    set_status.many(conn, [{"b_id": 1, "status": "processed", "outcome": "accepted"}])
    set_status.many(conn, [{"b_id": 3, "status": "failed"}, {"b_id": 2, "status": "failed"}])
    rows = conn.execute(
        select(messages.c.id, messages.c.status, messages.c.outcome).order_by(messages.c.id)
    ).all()
    assert [tuple(r) for r in rows] == [
        (1, "processed", "accepted"),
        (2, "failed", None),
        (3, "failed", None),
    ]


@given(
    st.one_of(
        st.none(),
        st.datetimes(),
        st.dates(),
        st.datetimes(timezones=st.just(UTC)),
    )
)
def test_datetimes_are_written_as_sqlalchemy_writes_them(value: object) -> None:
    """The fast SQLite datetime converter: the same text as SQLAlchemy's, for anything."""
    dialect = sqlite.dialect()
    impl = sqlite.DATETIME()
    general = impl.bind_processor(dialect)
    fast = _bind_converter(impl, dialect)
    assert fast is not None and general is not None
    assert fast(value) == general(value)


def test_rows_with_different_columns_in_one_batch_run_of_their_own_shape(
    conn: Connection,
) -> None:
    """A multi-row INSERT is written per parameter shape: rows naming other columns
    than the first row's take their own statement, not the first one's placeholders."""
    returned = INSERT_RETURNING.each(
        conn, [_inbound("+79161234567", MORNING), _inbound("+79161234568", LATER)]
    )
    with_account = [{**_inbound(f"+7916765432{i}", LATER), "account": "A1"} for i in range(3)]
    returned += INSERT_RETURNING.each(conn, with_account)
    assert 5 == len({r.id for r in returned})
    stored = conn.execute(select(messages.c.account).order_by(messages.c.id)).scalars().all()
    assert [None, None, "A1", "A1", "A1"] == stored


def test_an_insert_with_placeholders_outside_values_runs_row_by_row(conn: Connection) -> None:
    """ON CONFLICT ... SET status = ? has a placeholder after the VALUES group: repeating
    the group would misplace it, so such an INSERT keeps one execute per row."""
    upsert = sqlite_insert(messages)
    statement = upsert.on_conflict_do_update(
        index_elements=[messages.c.id], set_={"status": "again"}
    ).returning(messages.c.id, messages.c.status)
    prepared = Prepared(statement)
    first = prepared.each(conn, [{**_inbound("+79161234567", MORNING), "id": i} for i in (1, 2)])
    again = prepared.each(conn, [{**_inbound("+79161234567", LATER), "id": i} for i in (2, 3)])
    assert [(1, "received"), (2, "received")] == sorted(tuple(r) for r in first)
    assert [(2, "again"), (3, "received")] == sorted(tuple(r) for r in again)
    assert _values_split(str(statement.compile(dialect=sqlite.dialect()))) is None
