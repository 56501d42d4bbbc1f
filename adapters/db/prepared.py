"""Hot statements on SQLite's own driver: compiled once, executed without SQLAlchemy.

The inbound batch and the outbox run the same dozen statements thousands of times a
second. Through `Connection.execute` each call costs SQLAlchemy's cache-key walk,
execution context and per-row parameter and result processing: profiled on the SMPP
bench, that was more than half of the SQLite writer thread's time and a third of the
process's (the GIL is the limit there). A `Prepared` statement keeps the Core
statement as the one source of its SQL; on SQLite it is compiled once per shape
(per length of its IN lists), and each call is one sqlite3 `execute`/`executemany`
with the column types' own bind and result converters applied by hand, so the rows
look the same as SQLAlchemy's. On PostgreSQL (and on aiosqlite, used by
the ops side) it is plain `Connection.execute`: the driver's own round trip dwarfs
the overhead there.

It runs on the connection's transaction (the driver connection is the same one), so
savepoints and the commit stay SQLAlchemy's.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Insert, ValuesBase

_Converter = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Form:
    sql: str
    # Parameter names in placeholder order; an expanding name is repeated per value.
    names: tuple[str, ...]
    expanding: frozenset[str]
    # Values the statement carries itself (`direction == "out"`).
    literals: dict[str, Any]
    bind: tuple[_Converter, ...]
    # (name, converter) per placeholder, when no parameter expands: the common case.
    pairs: tuple[tuple[str, _Converter], ...] | None
    row: Any  # a namedtuple class for the result columns, or None
    result: tuple[_Converter, ...]
    # An INSERT whose only placeholders are its one VALUES group: the SQL before and
    # after that group, and the group, to write many rows in one statement.
    values_split: tuple[str, str, str] | None = None


def _plain_sqlite(conn: Connection) -> bool:
    """The stdlib sqlite3 driver (the batch writer's), not aiosqlite or asyncpg."""
    return conn.dialect.driver == "pysqlite"


def _bind_converter(impl: Any, dialect: Any) -> _Converter:
    """The type's bind processor; for SQLite's DATETIME in its default storage format,
    one that writes the same text through `datetime.isoformat`, which is C: the
    default builds a dict and %-formats it, five times per SMS."""
    converter: _Converter = impl.bind_processor(dialect)
    if isinstance(impl, sqlite.DATETIME) and impl._storage_format == _SQLITE_DATETIME_FORMAT:
        return _sqlite_datetime(converter)
    return converter


_SQLITE_DATETIME_FORMAT: str = sqlite.DATETIME._storage_format


def _sqlite_datetime(general: _Converter) -> _Converter:
    assert general is not None

    def convert(value: Any) -> Any:
        if value.__class__ is datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return general(value)  # None, a date, an aware datetime, a subclass

    return convert


# Rows per multi-row INSERT: well under SQLite's 32,766 placeholders for any of our tables.
_MAX_ROWS = 500


def _values_split(sql: str) -> tuple[str, str, str] | None:
    """(before, "(?, ?, ...)", after) when the VALUES group holds every placeholder."""
    marker = " VALUES ("
    start = sql.find(marker)
    if start < 0:
        return None
    start += len(marker) - 1
    end = sql.find(")", start) + 1
    group = sql[start:end]
    if group.replace("?", "").replace(", ", "") != "()" or sql.count("?") != group.count("?"):
        return None
    return sql[:start], group, sql[end:]


class Prepared:
    """A Core statement that runs on sqlite3 directly (see the module docstring)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._forms: dict[tuple[Any, ...], _Form] = {}
        # Multi-row INSERT text by (single-row text, row count).
        self._multi_row_sql: dict[tuple[str, int], str] = {}
        # INSERT and UPDATE take their columns from the parameters' keys, as
        # SQLAlchemy's executemany does.
        self._dml = isinstance(statement, ValuesBase)

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Execute once; the result rows (attribute access by column name)."""
        params = params or {}
        if not _plain_sqlite(conn) or self._has_empty_list(params):
            return list(conn.execute(self.statement, dict(params)))
        form = self._form(conn, params)
        cursor = conn.connection.driver_connection.execute(  # type: ignore[union-attr]
            form.sql, self._bind(form, params)
        )
        return self._rows(form, cursor.fetchall()) if form.row is not None else []

    def many(self, conn: Connection, param_list: Sequence[Mapping[str, Any]]) -> None:
        """executemany: no results (a statement with RETURNING uses `each`)."""
        if not param_list:
            return
        if not _plain_sqlite(conn):
            conn.execute(self.statement, [dict(p) for p in param_list])
            return
        form = self._form(conn, param_list[0])
        conn.connection.driver_connection.executemany(  # type: ignore[union-attr]
            form.sql, [self._bind(form, p) for p in param_list]
        )

    def each(self, conn: Connection, param_list: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Run once per parameter set; every RETURNING row, in no particular order.

        On sqlite3 an INSERT writes its rows as multi-row VALUES, up to `_MAX_ROWS` per
        statement: a few microseconds less per row than one execute each (SQLite does
        not promise the order of RETURNING rows either way)."""
        if not param_list:
            return []
        if not _plain_sqlite(conn):
            return list(conn.execute(self.statement, [dict(p) for p in param_list]))
        form = self._form(conn, param_list[0])
        driver = conn.connection.driver_connection
        assert driver is not None
        out: list[Any] = []
        split = form.values_split
        if split is None or len(param_list) == 1:
            for params in param_list:
                out.extend(driver.execute(form.sql, self._bind(form, params)).fetchall())
            return self._rows(form, out)
        before, group, after = split
        bind = self._bind
        for start in range(0, len(param_list), _MAX_ROWS):
            chunk = param_list[start : start + _MAX_ROWS]
            key = (form.sql, len(chunk))
            sql = self._multi_row_sql.get(key)
            if sql is None:
                sql = self._multi_row_sql[key] = before + ", ".join([group] * len(chunk)) + after
            flat = [value for params in chunk for value in bind(form, params)]
            out.extend(driver.execute(sql, flat).fetchall())
        return self._rows(form, out)

    # -- compiling ------------------------------------------------------------------

    @staticmethod
    def _has_empty_list(params: Mapping[str, Any]) -> bool:
        return any(isinstance(v, list | tuple) and not v for v in params.values())

    def _form(self, conn: Connection, params: Mapping[str, Any]) -> _Form:
        keys = tuple(sorted(params)) if self._dml else ()
        lengths = tuple(
            (name, len(value)) for name, value in params.items() if isinstance(value, list | tuple)
        )
        key = (keys, lengths)
        form = self._forms.get(key)
        if form is None:
            form = self._compile(conn, list(keys), dict(lengths))
            self._forms[key] = form
        return form

    def _compile(self, conn: Connection, keys: list[str], lengths: dict[str, int]) -> _Form:
        dialect = conn.dialect
        compiled: Any = self.statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=keys or None
        )
        literals = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if name not in lengths and not bind.callable
        }
        sql: str = compiled.string
        names: list[str] = []
        bind: list[_Converter] = []
        for name in compiled.positiontup:
            converter = _bind_converter(compiled.binds[name].type.dialect_impl(dialect), dialect)
            count = lengths.get(name, 1)
            names.extend([name] * count)
            bind.extend([converter] * count)
        for name, count in lengths.items():
            sql = sql.replace(f"(__[POSTCOMPILE_{name}])", "(" + ", ".join("?" * count) + ")")
        if "__[POSTCOMPILE_" in sql:
            raise ValueError(f"unsupported post-compile parameter in {sql!r}")
        columns = list(getattr(self.statement, "exported_columns", ()) or [])
        row: Any = namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
        result: tuple[_Converter, ...] = ()
        if columns:
            result = tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
            )
        pairs = None if lengths else tuple(zip(names, bind, strict=True))
        return _Form(
            sql,
            tuple(names),
            frozenset(lengths),
            literals,
            tuple(bind),
            pairs,
            row,
            result,
            _values_split(sql) if isinstance(self.statement, Insert) else None,
        )

    # -- running --------------------------------------------------------------------

    @staticmethod
    def _bind(form: _Form, params: Mapping[str, Any]) -> list[Any]:
        pairs = form.pairs
        if pairs is not None:
            # One comprehension instead of an indexed loop: this runs for every row
            # the writer writes, about fifty values per SMS.
            if form.literals:
                params = {**form.literals, **params}
            return [
                params[name] if converter is None else converter(params[name])
                for name, converter in pairs
            ]
        values: list[Any] = []
        expanding = form.expanding
        position = 0
        names = form.names
        converters = form.bind
        while position < len(names):
            name = names[position]
            if name in expanding:
                for item in params[name]:
                    converter = converters[position]
                    values.append(converter(item) if converter is not None else item)
                    position += 1
            else:
                value = params[name] if name in params else form.literals[name]
                converter = converters[position]
                values.append(converter(value) if converter is not None else value)
                position += 1
        return values

    @staticmethod
    def _rows(form: _Form, raw: list[tuple[Any, ...]]) -> list[Any]:
        make = form.row._make
        converters = form.result
        if not any(converters):
            return [make(r) for r in raw]
        return [
            make(
                [
                    converter(value) if converter is not None else value
                    for converter, value in zip(converters, r, strict=True)
                ]
            )
            for r in raw
        ]
