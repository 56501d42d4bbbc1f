"""Crash safety and several instances, with real `serve` processes and the node-smpp SMSC.

The SMSC peer runs in store-and-forward mode: 3,000 MO wait in its queue and leave
it only when a deliver_sm_resp says ESME_ROK; whatever was unanswered when a gateway
died is delivered again, with the same MO id TLV. The tests kill -9 a gateway in the
middle of the burst and then prove, from the database and from what the SMSC saw:
every MO booked exactly once, every MO answered, no reply left behind in the outbox.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.db.schema import messages, readings
from tests.e2e.serve_support import ID_TLV, Serve, accounts_csv, cli, write_config
from tests.integration.smpp_support import SmscPeer, smsc_fixture  # noqa: F401  (fixture)

pytestmark = [pytest.mark.smsc, pytest.mark.timeout(900)]

MO_COUNT = 3000
KILL_AFTER_ACKED = 1000
FIRST_ACCOUNT = 4_000_000_000


async def _until_acked(peer: SmscPeer, acked: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await peer.command("queue_status")
        if status["acked"] >= acked:
            return status
        assert time.monotonic() < deadline, f"only {status['acked']} MO acked in {timeout}s"
        await asyncio.sleep(0.05)


async def _database_facts(database_url: str) -> dict[str, object]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:

            async def scalar(query):
                return (await conn.execute(query)).scalar_one()

            inbound = messages.c.direction == "in"
            outbound = messages.c.direction == "out"
            return {
                "inbound": await scalar(select(func.count()).where(inbound)),
                "distinct_mo_ids": await scalar(
                    select(func.count(func.distinct(messages.c.external_id))).where(inbound)
                ),
                "unprocessed": await scalar(
                    select(func.count()).where(inbound, messages.c.status != "processed")
                ),
                "replies": await scalar(select(func.count()).where(outbound)),
                "replies_not_sent": await scalar(
                    select(func.count()).where(outbound, messages.c.status != "sent")
                ),
                "readings": await scalar(select(func.count()).select_from(readings)),
                "readings_wrong": await scalar(
                    select(func.count()).select_from(readings).where(readings.c.t1 != 1100)
                ),
            }
    finally:
        await engine.dispose()


async def _resent_to(database_url: str) -> set[str]:
    """Subscribers whose reply went out more than once from our side: claimed by an
    instance that died before recording it sent, then sent again (attempts > 1)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(messages.c.phone).where(
                    messages.c.direction == "out", messages.c.attempts > 1
                )
            )
            return {row.phone.lstrip("+") for row in rows}
    finally:
        await engine.dispose()


def _assert_second_replies_only_where_resent(final: dict, resent: set[str]) -> None:
    """The one case where a subscriber gets a second reply: SMPP 3.4 cannot tell whether
    a submit_sm the dead process wrote reached the SMSC, so a reply it had not yet
    recorded as sent goes out again (at-least-once; docs/operations.md, "Delivery
    guarantees"). Every second reply must be one of those, and none gets a third."""
    assert final["most_replies"] <= 2
    assert set(final["twice"]) <= resent, sorted(set(final["twice"]) - resent)[:10]
    print(f"second replies: {len(final['twice'])}, replies sent again: {len(resent)}")


async def _until_outbox_drained(database_url: str, timeout: float = 90) -> None:
    """Replies the killed process sent but never recorded are re-sent once taken over:
    the SMSC may see every MO answered before that."""
    deadline = time.monotonic() + timeout
    while (await _database_facts(database_url))["replies_not_sent"]:
        assert time.monotonic() < deadline, "replies left in the outbox"
        await asyncio.sleep(0.5)


async def _claimed(database_url: str) -> set[int]:
    """Replies claimed by a sender and not recorded sent (the dead one's, at the kill)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(messages.c.id).where(
                    messages.c.direction == "out", messages.c.status == "sending"
                )
            )
            return {int(row.id) for row in rows}
    finally:
        await engine.dispose()


async def _seconds_until_sent(database_url: str, ids: set[int], since: float) -> float:
    """Seconds from `since` (monotonic) until every reply in `ids` is recorded sent."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            while True:
                left = (
                    await conn.execute(
                        select(func.count()).where(
                            messages.c.id.in_(sorted(ids)), messages.c.status != "sent"
                        )
                    )
                ).scalar_one()
                if not left:
                    return time.monotonic() - since
                assert time.monotonic() - since < 120, f"{left} claimed replies never sent"
                await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


EXPECTED = {
    "inbound": MO_COUNT,
    "distinct_mo_ids": MO_COUNT,
    "unprocessed": 0,
    "replies": MO_COUNT,
    "replies_not_sent": 0,
    "readings": MO_COUNT,
    "readings_wrong": 0,
}


async def _import_accounts(config, tmp_path) -> None:
    """One account per MO of the burst, imported with the CLI as ops would."""
    csv_path = accounts_csv(tmp_path / "accounts.csv", MO_COUNT, FIRST_ACCOUNT)
    await cli(config, "accounts", "import", str(csv_path))


async def _start_queue(peer: SmscPeer, id_tlv: bool = True) -> None:
    texts = [f"{FIRST_ACCOUNT + i} 1100" for i in range(MO_COUNT)]
    await peer.command(
        "queue",
        count=MO_COUNT,
        window=50,
        texts=texts,
        destination_addr="7377",
        id_tlv=ID_TLV if id_tlv else 0,
    )


@pytest.mark.parametrize("id_tlv", [True, False], ids=["mo-id-tlv", "no-mo-id"])
async def test_kill_9_mid_burst_loses_nothing_and_books_once(db_url, smsc, tmp_path, id_tlv):
    """serve takes a 3,000 MO burst, is killed with SIGKILL after 1,000 acks, restarts,
    and the SMSC redelivers what was unacknowledged: one booking, one reply row and at
    least one submit_sm per MO, nothing left in the outbox, and a clean SIGTERM stop.

    With the default configuration: the replies the dead process had claimed go out
    within 10 s of the restart (its name is the same, so it takes them back at once).
    Without an MO id TLV, an MO stored whose ESME_ROK the SMSC never got is recognised
    in its redelivery (it came into doubt at the restart): still one row per MO."""
    config = write_config(tmp_path / "gateway.toml", db_url, smsc.port, mo_id_tlv=id_tlv)
    await _import_accounts(config, tmp_path)
    first = Serve(config, tmp_path / "serve-1.log").start()
    second = Serve(config, tmp_path / "serve-2.log")
    try:
        await smsc.wait_bound(timeout=60)
        await _start_queue(smsc, id_tlv)
        at_kill = await _until_acked(smsc, KILL_AFTER_ACKED, timeout=300)
        first.kill9()
        assert at_kill["acked"] < MO_COUNT, "the kill came after the burst"
        claimed = await _claimed(db_url)

        restarted = time.monotonic()
        second.start()
        if claimed:
            took = await _seconds_until_sent(db_url, claimed, restarted)
            print(f"{len(claimed)} claimed replies of the dead process sent {took:.1f} s after")
            assert took < 10, took
        await smsc.wait_bound(count=2, timeout=60)
        done = await smsc.wait_for(lambda e: e.get("event") == "queue_done", timeout=600)
        await _until_outbox_drained(db_url)
        final = await smsc.command("queue_status")
        assert 0 == second.stop(), (tmp_path / "serve-2.log").read_text()[-3000:]
    finally:
        first.ensure_dead()
        second.ensure_dead()

    print("at kill:", at_kill, "done:", {k: v for k, v in done.items() if k != "twice"})
    assert (MO_COUNT, MO_COUNT) == (done["acked"], done["answered"])
    _assert_second_replies_only_where_resent(final, await _resent_to(db_url))
    expected = dict(EXPECTED, distinct_mo_ids=MO_COUNT if id_tlv else 0)
    assert expected == await _database_facts(db_url)


@pytest.mark.postgres
async def test_two_instances_share_the_work_and_survive_one_being_killed(pg_url, smsc, tmp_path):
    """Two serve processes on one PostgreSQL, each with its own bind: the SMSC spreads
    the burst over both, one is killed with SIGKILL mid-way and is not restarted; the
    survivor takes the redeliveries, handles what the dead one had stored, re-sends
    what it had claimed within 15 s of the kill (its heartbeat is 10 s old by then):
    every MO booked once and answered."""
    config_a = write_config(tmp_path / "a.toml", pg_url, smsc.port)
    config_b = write_config(tmp_path / "b.toml", pg_url, smsc.port)
    await _import_accounts(config_a, tmp_path)
    a = Serve(config_a, tmp_path / "a.log").start()
    b = Serve(config_b, tmp_path / "b.log").start()
    try:
        await smsc.wait_bound(count=2, timeout=60)
        await _start_queue(smsc)
        at_kill = await _until_acked(smsc, KILL_AFTER_ACKED, timeout=300)
        a.kill9()
        killed = time.monotonic()
        assert at_kill["acked"] < MO_COUNT, "the kill came after the burst"
        claimed = await _claimed(pg_url)  # a's, and b's in flight right now
        if claimed:
            took = await _seconds_until_sent(pg_url, claimed, killed)
            print(f"{len(claimed)} claimed replies sent {took:.1f} s after the kill")
            assert took < 15, took
        done = await smsc.wait_for(lambda e: e.get("event") == "queue_done", timeout=600)
        await _until_outbox_drained(pg_url)
        final = await smsc.command("queue_status")
        assert 0 == b.stop(), (tmp_path / "b.log").read_text()[-3000:]
    finally:
        a.ensure_dead()
        b.ensure_dead()

    print("at kill:", at_kill, "done:", {k: v for k, v in done.items() if k != "twice"})
    assert (MO_COUNT, MO_COUNT) == (done["acked"], done["answered"])
    _assert_second_replies_only_where_resent(final, await _resent_to(pg_url))
    assert EXPECTED == await _database_facts(pg_url)


@pytest.mark.postgres
async def test_a_live_instance_sends_what_a_dead_one_had_claimed_within_15_s(
    pg_url, smsc, tmp_path
):
    """A's SMSC takes its replies' submit_sm and never answers (A holds them claimed,
    "sending", for its 60 s response timeout). A is killed with SIGKILL. B, bound to
    another SMSC and never restarted, sees A's heartbeat stop and sends every one of
    those replies within 15 s of the kill, with the default instance_dead_after_s."""
    other = await SmscPeer.start()
    try:
        config_a = write_config(tmp_path / "a.toml", pg_url, smsc.port, response_timeout_s=60)
        config_b = write_config(tmp_path / "b.toml", pg_url, other.port)
        await _import_accounts(config_a, tmp_path)
        await smsc.set_faults(silent_submit=True)
        a = Serve(config_a, tmp_path / "a.log").start()
        b = Serve(config_b, tmp_path / "b.log").start()
        try:
            await smsc.wait_bound(timeout=60)
            await other.wait_bound(timeout=60)
            for i in range(20):
                sequence = await smsc.deliver(
                    f"{FIRST_ACCOUNT + i} 1100".encode(), source_addr=f"7917{i:07d}"
                )
                assert 0 == await smsc.deliver_resp(sequence)
            await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 20)
            claimed = await _claimed(pg_url)
            assert 20 == len(claimed)
            a.kill9()
            killed = time.monotonic()
            took = await _seconds_until_sent(pg_url, claimed, killed)
            print(f"B sent A's {len(claimed)} claimed replies {took:.1f} s after the kill")
            assert took < 15, took
            sent_by_b = await other.wait_count(lambda e: e.get("command") == "submit_sm", 20)
            assert {f"7917{i:07d}" for i in range(20)} == {s["destination_addr"] for s in sent_by_b}
            assert 0 == b.stop(), (tmp_path / "b.log").read_text()[-3000:]
        finally:
            a.ensure_dead()
            b.ensure_dead()
    finally:
        await other.close()


async def _reply_rows(database_url: str) -> dict[str, tuple[str, str | None]]:
    """{subscriber (no +): (status, link group)} of every reply."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(messages.c.phone, messages.c.status, messages.c.link_group).where(
                    messages.c.direction == "out"
                )
            )
            return {row.phone.lstrip("+"): (row.status, row.link_group) for row in rows}
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_two_instances_with_different_links_keep_each_reply_in_its_group(
    pg_url, smsc, tmp_path
):
    """A holds MTS (one SMSC) and a Beeline bind (another SMSC); B holds only a second
    Beeline bind. Every reply leaves through its MO's operator. A is killed holding
    replies of both groups: B sends A's Beeline replies within 15 s, through its own
    Beeline bind, and leaves A's MTS replies waiting (it has no MTS link) until A is
    back, which sends them on MTS."""
    mts, beeline = smsc, await SmscPeer.start()
    try:
        config_a = write_config(
            tmp_path / "a.toml",
            pg_url,
            mts.port,
            response_timeout_s=60,
            links=[
                {"name": "mts", "port": mts.port, "system_id": "gw-a"},
                {
                    "name": "beeline_a",
                    "group": "beeline",
                    "port": beeline.port,
                    "system_id": "gw-a",
                },
            ],
        )
        config_b = write_config(
            tmp_path / "b.toml",
            pg_url,
            beeline.port,
            links=[
                {"name": "beeline_b", "group": "beeline", "port": beeline.port, "system_id": "gw-b"}
            ],
        )
        await _import_accounts(config_a, tmp_path)
        a = Serve(config_a, tmp_path / "a.log").start()
        b = Serve(config_b, tmp_path / "b.log").start()
        a_again = Serve(config_a, tmp_path / "a2.log")
        try:
            await mts.wait_bound(timeout=60)
            await beeline.wait_bound(count=2, timeout=60)

            async def mo(peer: SmscPeer, i: int, system_id: str) -> str:
                phone = f"7917{i:07d}"
                sequence = await peer.deliver(
                    f"{FIRST_ACCOUNT + i} 1100".encode(), source_addr=phone, system_id=system_id
                )
                assert 0 == await peer.deliver_resp(sequence, system_id=system_id)
                return phone

            on_mts = [await mo(mts, i, "gw-a") for i in range(0, 5)]
            on_beeline = [await mo(beeline, i, "gw-a" if i % 2 else "gw-b") for i in range(5, 15)]
            await mts.wait_count(lambda e: e.get("command") == "submit_sm", 5)
            await beeline.wait_count(lambda e: e.get("command") == "submit_sm", 10)
            assert set(on_mts) == {s["destination_addr"] for s in mts.pdus("submit_sm")}
            assert set(on_beeline) == {s["destination_addr"] for s in beeline.pdus("submit_sm")}

            # A takes more MO of both groups and holds their replies (the SMSCs answer
            # none of its submit_sm), then dies.
            await mts.set_faults(silent_submit=True)
            await beeline.set_faults(silent_submit=True)
            held_mts = [await mo(mts, i, "gw-a") for i in range(15, 20)]
            held_beeline = [await mo(beeline, i, "gw-a") for i in range(20, 25)]
            await mts.wait_count(lambda e: e.get("command") == "submit_sm", 10)
            await beeline.wait_count(lambda e: e.get("command") == "submit_sm", 15)
            a.kill9()
            killed = time.monotonic()
            await mts.set_faults(silent_submit=False)
            await beeline.set_faults(silent_submit=False)

            deadline = killed + 15
            while True:
                replies = await _reply_rows(pg_url)
                if all(replies[p][0] == "sent" for p in held_beeline):
                    break
                assert time.monotonic() < deadline, {p: replies[p] for p in held_beeline}
                await asyncio.sleep(0.2)
            print(f"B sent A's Beeline replies {time.monotonic() - killed:.1f} s after the kill")
            resent = [s for s in beeline.pdus("submit_sm") if s["destination_addr"] in held_beeline]
            assert {"gw-b"} == {s["esme"] for s in resent if s.get("answered") is not False}
            await asyncio.sleep(1.0)
            replies = await _reply_rows(pg_url)
            assert {("pending", "mts")} == {replies[p] for p in held_mts}

            a_again.start()
            deadline = time.monotonic() + 30
            while True:
                replies = await _reply_rows(pg_url)
                if all(replies[p][0] == "sent" for p in held_mts):
                    break
                assert time.monotonic() < deadline, "A's MTS replies never went out"
                await asyncio.sleep(0.2)
            assert not any(s["destination_addr"] in held_mts for s in beeline.pdus("submit_sm")), (
                "an MTS reply left through Beeline"
            )
            assert 0 == b.stop(), (tmp_path / "b.log").read_text()[-3000:]
            assert 0 == a_again.stop(), (tmp_path / "a2.log").read_text()[-3000:]
        finally:
            a.ensure_dead()
            b.ensure_dead()
            a_again.ensure_dead()
    finally:
        await beeline.close()
