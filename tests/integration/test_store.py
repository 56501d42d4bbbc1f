"""SqlStore.run_transaction: work queued together shares a commit, failures stay apart."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest
from sqlalchemy import insert, select

from adapters.db.schema import phone_preferences

NOW = datetime(2026, 11, 18, 9, 0)


def _opt_out(phone: str, fail: bool = False):
    def work(conn):
        conn.execute(insert(phone_preferences).values(phone=phone, opted_out=True, updated_at=NOW))
        if fail:
            raise ValueError(f"{phone} breaks after writing")
        return phone

    return work


async def _phones(gateway) -> list[str]:
    async with gateway.store.reader() as tx:
        rows = await tx.conn.execute(select(phone_preferences.c.phone).order_by("phone"))
        return [row.phone for row in rows]


@pytest.fixture
async def gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url), demo=False)


async def test_one_failing_piece_of_work_does_not_undo_the_others(gateway):
    """Three pieces queued at once: the failing one raises to its caller and its write
    is gone; the two others are committed."""

    def hold_the_writer(conn):
        # On SQLite the next three queue up behind this and share one transaction.
        time.sleep(0.3)

    blocker = asyncio.create_task(gateway.store.run_transaction(hold_the_writer))
    await asyncio.sleep(0.05)
    results = await asyncio.gather(
        gateway.store.run_transaction(_opt_out("+79000000001")),
        gateway.store.run_transaction(_opt_out("+79000000002", fail=True)),
        gateway.store.run_transaction(_opt_out("+79000000003")),
        return_exceptions=True,
    )
    assert "+79000000001" == results[0] and "+79000000003" == results[2]
    assert isinstance(results[1], ValueError)
    assert ["+79000000001", "+79000000003"] == await _phones(gateway)
    await blocker


async def test_work_alone_that_fails_leaves_nothing(gateway):
    with pytest.raises(ValueError, match="breaks after writing"):
        await gateway.store.run_transaction(_opt_out("+79000000004", fail=True))
    assert [] == await _phones(gateway)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_work_that_rides_along_shares_the_next_commit(gateway, monkeypatch):
    """A reply marked sent waits briefly for other work and commits with it: two pieces
    of work, one commit. Alone, it commits after RIDE_ALONG_S, not never."""
    from sqlalchemy import event

    import adapters.db.store as store_module

    commits: list[int] = []
    event.listen(gateway.store.batch_engine, "commit", lambda conn: commits.append(1))
    store = gateway.store

    # Long enough that a slow machine cannot let it go alone before company comes.
    monkeypatch.setattr(store_module, "RIDE_ALONG_S", 5.0)
    riding = asyncio.create_task(store.run_transaction(_opt_out("+79000000006"), ride_along=True))
    await asyncio.sleep(0.1)
    assert not riding.done()
    assert "+79000000007" == await store.run_transaction(_opt_out("+79000000007"))
    assert "+79000000006" == await riding
    assert 1 == len(commits)

    monkeypatch.setattr(store_module, "RIDE_ALONG_S", 0.2)
    started = time.monotonic()
    await store.run_transaction(_opt_out("+79000000008"), ride_along=True)
    waited = time.monotonic() - started
    assert 2 == len(commits)
    assert 0.18 <= waited < 2.0
    assert ["+79000000006", "+79000000007", "+79000000008"] == await _phones(gateway)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_ride_along_work_does_not_wake_an_idle_writer(gateway, monkeypatch):
    """Held on the loop until company comes (or RIDE_ALONG_S passes): the writer thread
    is started once, for both; and store.aclose commits what is still held (and a
    second aclose, the gateway's at the end of the test, is harmless)."""
    import adapters.db.store as store_module

    store = gateway.store
    starts: list[int] = []
    real_submit = store._batch_thread.submit

    def counted_submit(fn, *args):
        if fn == store._drain_queued:
            starts.append(1)
        return real_submit(fn, *args)

    monkeypatch.setattr(store._batch_thread, "submit", counted_submit)
    monkeypatch.setattr(store_module, "RIDE_ALONG_S", 5.0)
    riding = asyncio.create_task(store.run_transaction(_opt_out("+79000000011"), ride_along=True))
    await asyncio.sleep(0.1)
    assert not riding.done() and starts == []  # the writer was not woken for it
    await store.run_transaction(_opt_out("+79000000012"))
    assert "+79000000011" == await riding
    assert starts == [1]

    await asyncio.sleep(0.1)  # the writer idle again (it settles futures before it stops)
    held = asyncio.create_task(store.run_transaction(_opt_out("+79000000013"), ride_along=True))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await store.aclose()
    assert "+79000000013" == await asyncio.wait_for(held, 2)
    assert time.monotonic() - started < 2  # not after the 5 s timer
    assert len(starts) == 2


async def test_outbox_status_changes_ride_along(gateway, monkeypatch):
    """What rides along: replies marked sent, failed or released; a claim does not."""
    seen: list[bool] = []
    real = gateway.store.run_transaction

    async def spy(work, ride_along=False):
        seen.append(ride_along)
        return await real(work, ride_along=ride_along)

    monkeypatch.setattr(gateway.store, "run_transaction", spy)
    await gateway.outbox.mark_sent(12345, "msg-1")
    await gateway.outbox.mark_sent_many([(12346, "msg-2")])
    await gateway.outbox.release(12347, "link lost")
    await gateway.outbox.claim("smpp", 10)
    assert [True, True, True, False] == seen


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_writer_checkpoints_between_commits_and_keeps_the_wal_small(gateway):
    """Every CHECKPOINT_EVERY_COMMITS commits the writer copies the WAL into the database
    itself, outside any transaction, so no commit runs SQLite's own checkpoint; the WAL
    file is then written from its start again and stops growing."""
    from pathlib import Path

    from adapters.db.engine import WRITER_AUTOCHECKPOINT_PAGES
    from adapters.db.store import CHECKPOINT_EVERY_COMMITS

    statements: list[str] = []

    def trace(conn):
        conn.connection.driver_connection.set_trace_callback(statements.append)
        return conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()

    assert WRITER_AUTOCHECKPOINT_PAGES == await gateway.store.run_transaction(trace)
    gateway.store._commits_since_checkpoint = 0  # whatever the gateway's start committed
    wal = Path(f"{gateway.store.batch_engine.url.database}-wal")

    def write(number: int):
        def work(conn):
            rows = [
                {"phone": f"+7900{number:03d}{i:04d}", "opted_out": True, "updated_at": NOW}
                for i in range(40)
            ]
            conn.execute(insert(phone_preferences), rows)

        return work

    sizes = []
    for number in range(1, 5 * CHECKPOINT_EVERY_COMMITS + 1):
        await gateway.store.run_transaction(write(number))
        sizes.append(wal.stat().st_size)
    # The last commit's caller is answered before its checkpoint runs; the writer runs
    # one thing at a time, so this transaction begins only after that checkpoint.
    await gateway.store.run_transaction(lambda conn: None)
    checkpoints = [i for i, sql in enumerate(statements) if "wal_checkpoint" in sql]
    assert 5 == len(checkpoints)
    for at in checkpoints:
        # Right after a commit, before the next transaction begins.
        assert "COMMIT" == statements[at - 1].upper()
        assert at + 1 == len(statements) or statements[at + 1].startswith("BEGIN")
    # Each commit adds some 20 KB to the WAL until a checkpoint lets the next one write
    # from its start again: after five intervals the file is about one interval long
    # (a little more, as the table's pages per commit grow), not five.
    assert sizes[-1] < 2 * sizes[CHECKPOINT_EVERY_COMMITS - 1]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_callers_do_not_wait_for_the_checkpoint(gateway, monkeypatch):
    """The commit that reaches CHECKPOINT_EVERY_COMMITS answers its caller first."""
    from adapters.db import store as store_module

    checkpoint = store_module.SqlStore._checkpoint

    def slow_checkpoint(self, conn):
        time.sleep(0.5)
        checkpoint(self, conn)

    monkeypatch.setattr(store_module.SqlStore, "_checkpoint", slow_checkpoint)
    gateway.store._commits_since_checkpoint = 0  # whatever the gateway's start committed
    waits = []
    for number in range(store_module.CHECKPOINT_EVERY_COMMITS):
        started = time.monotonic()
        await gateway.store.run_transaction(_opt_out(f"+7900000{number:04d}"))
        waits.append(time.monotonic() - started)
    assert max(waits) < 0.3, waits
    # The next one waits for the writer to finish the checkpoint.
    started = time.monotonic()
    await gateway.store.run_transaction(_opt_out("+79000009999"))
    assert time.monotonic() - started > 0.2


def _commits_observed(gateway) -> float:
    return gateway.metrics.registry.get_sample_value("sms_gateway_db_commit_seconds_count") or 0.0


async def test_every_commit_is_timed_and_a_slow_one_is_logged(gateway, monkeypatch):
    """sms_gateway_db_commit_seconds counts each write transaction's commit with the
    time it took; one slower than SLOW_COMMIT_S is a warning (its batch's MO waited)."""
    from structlog.testing import capture_logs

    from adapters.db import store as store_module

    before = _commits_observed(gateway)
    for number in range(3):
        await gateway.store.run_transaction(_opt_out(f"+7900100{number:04d}"))
    assert before + 3 == _commits_observed(gateway)

    # The driver's commit itself made slow: on SQLite the writer's engine, on
    # PostgreSQL the pooled one's.
    engine = gateway.store.batch_engine or gateway.store.engine.sync_engine
    dialect = engine.dialect
    plain_commit = type(dialect).do_commit

    def slow_commit(dbapi_connection):
        time.sleep(0.3)
        plain_commit(dialect, dbapi_connection)

    monkeypatch.setattr(dialect, "do_commit", slow_commit)
    monkeypatch.setattr(store_module, "SLOW_COMMIT_S", 0.2)
    fast_before = gateway.metrics.registry.get_sample_value(
        "sms_gateway_db_commit_seconds_bucket", {"le": "0.25"}
    )
    with capture_logs() as logs:
        await gateway.store.run_transaction(_opt_out("+79001009999"))
    assert before + 4 == _commits_observed(gateway)
    # Counted in the buckets above 0.25 s only.
    assert fast_before == gateway.metrics.registry.get_sample_value(
        "sms_gateway_db_commit_seconds_bucket", {"le": "0.25"}
    )
    slow = [entry for entry in logs if entry["event"] == "db.slow_commit"]
    assert 1 == len(slow) and slow[0]["seconds"] >= 0.3, logs
    assert "+79001009999" in await _phones(gateway)  # committed all the same
