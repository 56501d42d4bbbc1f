"""Several SMPP links on the real gateway (SQLite) against real node-smpp SMSCs: each
operator answered on its own link, a dead link's replies wait for it, a group of binds
fails over, throttling and receipts per link."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from adapters.db.schema import messages
from adapters.smpp import SmppAdapter
from sms_gateway.config import SmppGroupSettings, SmppSettings, link_from_defaults
from sms_gateway.domain.model import InboundSms
from sms_gateway.runner import smpp_adapter
from tests.integration.smpp_support import SHORT_NUMBER, SmscPeer, require_peer, smpp_settings

pytestmark = [pytest.mark.smsc, pytest.mark.timeout(60)]

ESME_ROK = 0x00
ESME_RTHROTTLED = 0x58


def links_settings(
    links: list[dict[str, Any]], groups: dict[str, tuple[str, ...]] | None = None, **defaults: Any
) -> SmppSettings:
    """[[smpp.links]] as the config builds them: each over the test defaults."""
    base = smpp_settings(0, **defaults)
    return dataclasses.replace(
        base,
        links=tuple(link_from_defaults(base, link) for link in links),
        groups=tuple(
            SmppGroupSettings(name, fallback) for name, fallback in (groups or {}).items()
        ),
    )


@pytest.fixture
async def peers() -> AsyncIterator[tuple[SmscPeer, SmscPeer]]:
    """Two SMSCs, as two operators."""
    require_peer()
    first, second = await SmscPeer.start(), await SmscPeer.start()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


@pytest.fixture
async def gateway(sqlite_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(sqlite_url))


@pytest.fixture
async def started(gateway) -> AsyncIterator[Any]:
    adapters: list[SmppAdapter] = []

    async def start(settings: SmppSettings) -> SmppAdapter:
        adapter = smpp_adapter(gateway, settings)
        adapters.append(adapter)
        await adapter.start()
        return adapter

    yield start
    for adapter in adapters:
        await adapter.stop(1.0)


async def rows(gateway, query) -> list[tuple]:
    async with gateway.store.reader() as tx:
        return [tuple(row) for row in (await tx.conn.execute(query)).all()]


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def bound(adapter: SmppAdapter, *names: str, timeout: float = 10.0) -> None:
    async def all_bound() -> bool:
        return all(link.bound for link in adapter.links.links if link.name in names)

    await until(all_bound, timeout)


def submits_to(peer: SmscPeer, phone: str) -> list[dict[str, Any]]:
    return [s for s in peer.pdus("submit_sm") if s["destination_addr"] == phone]


async def test_each_operator_is_answered_on_its_own_link(peers, gateway, started) -> None:
    """An MO on MTS is answered on MTS only, one on Beeline on Beeline only; both
    inbound rows say which link they came on."""
    mts, beeline = peers
    adapter = await started(
        links_settings(
            [{"name": "mts", "port": mts.port}, {"name": "beeline", "port": beeline.port}]
        )
    )
    await bound(adapter, "mts", "beeline")
    on_mts = await mts.deliver(b"1234567833 1234", source_addr="79161234567")
    on_beeline = await beeline.deliver(
        "ПОМОЩЬ".encode("utf-16-be"), source_addr="79031234567", data_coding=8
    )
    assert ESME_ROK == await mts.deliver_resp(on_mts)
    assert ESME_ROK == await beeline.deliver_resp(on_beeline)
    await mts.wait_pdu("submit_sm", destination_addr="79161234567")
    # The help text takes two parts: both through the one link.
    await beeline.wait_count(lambda e: e.get("command") == "submit_sm", 2)
    await asyncio.sleep(0.3)
    assert ([], []) == (submits_to(beeline, "79161234567"), submits_to(mts, "79031234567"))
    assert 2 == len(submits_to(beeline, "79031234567"))
    inbound = await rows(
        gateway,
        select(messages.c.phone, messages.c.link, messages.c.link_group)
        .where(messages.c.direction == "in")
        .order_by(messages.c.phone),
    )
    assert [("+79031234567", "beeline", "beeline"), ("+79161234567", "mts", "mts")] == inbound


async def test_a_dead_operator_link_holds_its_replies_and_the_other_flows(
    peers, gateway, started
) -> None:
    """MTS drops the connection and refuses binds for a while: replies to MTS
    subscribers wait in the outbox (never through Beeline), Beeline's traffic goes on;
    once MTS binds again its replies go out on MTS."""
    mts, beeline = peers
    adapter = await started(
        links_settings(
            [{"name": "mts", "port": mts.port}, {"name": "beeline", "port": beeline.port}]
        )
    )
    await bound(adapter, "mts", "beeline")
    await mts.set_faults(refuse_system_ids=["gateway"])
    await mts.command("drop")
    await until(lambda: _false_soon(lambda: adapter.links.by_name["mts"].bound))
    for i in range(5):
        # As if they had come in on MTS just before it died.
        await gateway.pipeline.handle(_inbound(f"7916000000{i}", "1234567833 1234", "mts"))
        await gateway.pipeline.handle(_inbound(f"7903000000{i}", "ПОМОЩЬ", "beeline"))
    await beeline.wait_count(lambda e: e.get("command") == "submit_sm", 10)
    await asyncio.sleep(0.5)
    waiting = await rows(
        gateway,
        select(messages.c.status).where(messages.c.direction == "out", messages.c.link == "mts"),
    )
    assert [("pending",)] * 5 == waiting
    assert not any(s["destination_addr"].startswith("7916") for s in beeline.pdus("submit_sm"))
    assert "connecting" == adapter.state
    assert "mts" in str(adapter.links_status())

    await mts.set_faults(refuse_system_ids=[])
    await mts.wait_count(lambda e: e.get("command") == "submit_sm", 5, timeout=15)
    assert {f"7916000000{i}" for i in range(5)} == {
        s["destination_addr"] for s in mts.pdus("submit_sm")
    }


async def test_a_group_of_two_binds_fails_over_to_the_live_one(peers, gateway, started) -> None:
    """Two binds to one aggregator, one group: with one bind dead, the replies to MO
    that came in on it leave on the other; a receipt that arrives on the other bind than
    the submit is matched all the same."""
    aggregator, _ = peers
    adapter = await started(
        links_settings(
            [
                {"name": "agg_1", "group": "agg", "port": aggregator.port, "system_id": "agg1"},
                {"name": "agg_2", "group": "agg", "port": aggregator.port, "system_id": "agg2"},
            ]
        )
    )
    await bound(adapter, "agg_1", "agg_2")
    await aggregator.set_faults(refuse_system_ids=["agg1"])
    await aggregator.command("drop", system_id="agg1")
    await until(lambda: _false_soon(lambda: adapter.links.by_name["agg_1"].bound))
    await gateway.pipeline.handle(_inbound("79161234567", "1234567833 1234", "agg_1", "agg"))
    submit = await aggregator.wait_pdu("submit_sm", destination_addr="79161234567")
    assert "agg2" == submit["esme"]

    await aggregator.set_faults(refuse_system_ids=[])
    await bound(adapter, "agg_1")
    message_id = submit["assigned_message_id"]

    async def sent() -> bool:
        found = await rows(
            gateway, select(messages.c.transport_id).where(messages.c.direction == "out")
        )
        return [(message_id,)] == found

    await until(sent)
    receipt = f"id:{message_id} sub:001 dlvrd:001 stat:DELIVRD err:000 text:".encode()
    sequence = await aggregator.deliver(receipt, esm_class=0x04, system_id="agg1")
    assert ESME_ROK == await aggregator.deliver_resp(sequence, system_id="agg1")

    async def recorded() -> bool:
        found = await rows(
            gateway, select(messages.c.delivery_status).where(messages.c.direction == "out")
        )
        return [("delivered",)] == found

    await until(recorded)


async def test_replies_spread_over_the_binds_of_a_group_when_one_is_full(
    peers, gateway, started
) -> None:
    """40 replies to MO that came in on agg_1 (window 4): agg_1 carries what its window
    holds, the rest goes to agg_2, the bind with the fewest in flight."""
    aggregator, _ = peers
    adapter = await started(
        links_settings(
            [
                {"name": "agg_1", "group": "agg", "port": aggregator.port, "system_id": "agg1"},
                {"name": "agg_2", "group": "agg", "port": aggregator.port, "system_id": "agg2"},
            ],
            window=4,
        )
    )
    await bound(adapter, "agg_1", "agg_2")
    await asyncio.gather(
        *(
            gateway.pipeline.handle(_inbound(f"791600{i:05d}", "1234567833 1234", "agg_1", "agg"))
            for i in range(40)
        )
    )
    submits = await aggregator.wait_count(lambda e: e.get("command") == "submit_sm", 40)
    by_bind = {esme: sum(1 for s in submits if s["esme"] == esme) for esme in ("agg1", "agg2")}
    assert by_bind["agg1"] > 0 and by_bind["agg2"] > 0, by_bind
    assert 40 == sum(by_bind.values())


async def test_throttling_slows_only_the_link_that_is_throttled(peers, gateway, started) -> None:
    """MTS answers ESME_RTHROTTLED five times: its reply waits out its back-off, while
    Beeline's reply, sent at the same moment, goes at once."""
    mts, beeline = peers
    adapter = await started(
        links_settings(
            [{"name": "mts", "port": mts.port}, {"name": "beeline", "port": beeline.port}]
        )
    )
    await bound(adapter, "mts", "beeline")
    await mts.set_faults(submit_statuses=[ESME_RTHROTTLED] * 5)
    started_at = time.monotonic()
    await gateway.pipeline.handle(_inbound("79161234567", "1234567833 1234", "mts"))
    await gateway.pipeline.handle(_inbound("79031234567", "2223334445 1200", "beeline"))
    await beeline.wait_pdu("submit_sm")
    beeline_after = time.monotonic() - started_at
    await mts.wait_count(lambda e: e.get("command") == "submit_sm", 6)
    mts_after = time.monotonic() - started_at
    # 50 + 100 + 200 + 400 + 800 ms of back-off on MTS alone.
    assert beeline_after < 0.5 < 1.2 < mts_after, (beeline_after, mts_after)
    throttles = adapter.metrics.smpp_throttles
    assert (5.0, 0.0) == (
        throttles.labels("mts")._value.get(),
        throttles.labels("beeline")._value.get(),
    )


async def test_a_group_with_a_fallback_sends_through_it_while_its_own_links_are_down(
    peers, gateway, started
) -> None:
    """[smpp.groups.mts] fallback_groups = ["agg"]: with MTS down, its replies leave
    through the aggregator; a group without a fallback would wait."""
    mts, aggregator = peers
    adapter = await started(
        links_settings(
            [
                {"name": "mts", "port": mts.port},
                {"name": "agg_1", "group": "agg", "port": aggregator.port},
            ],
            groups={"mts": ("agg",)},
        )
    )
    await bound(adapter, "mts", "agg_1")
    await mts.set_faults(refuse_system_ids=["gateway"])
    await mts.command("drop")
    await until(lambda: _false_soon(lambda: adapter.links.by_name["mts"].bound))
    await gateway.pipeline.handle(_inbound("79161234567", "1234567833 1234", "mts"))
    await aggregator.wait_pdu("submit_sm", destination_addr="79161234567")


async def _false_soon(predicate) -> bool:
    return not predicate()


def _inbound(phone: str, text: str, link: str, group: str | None = None) -> InboundSms:
    return InboundSms(
        channel="smpp",
        phone="+" + phone,
        short_number=SHORT_NUMBER,
        text=text,
        received_at=datetime.now(UTC),
        dedupe_key=f"test:{phone}:{text}",
        link=link,
        link_group=group or link,
    )


# -- TLS -------------------------------------------------------------------------------


def _openssl(*args: str, cwd) -> None:
    import subprocess

    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Any]:
    """A CA of the test's own and a server certificate it signed for 127.0.0.1 and
    localhost; and a second CA that signed nothing."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    where = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=Test SMSC CA", cwd=where)  # fmt: skip
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key",
             "-out", "other.pem", "-days", "2", "-subj", "/CN=Another CA", cwd=where)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=localhost", cwd=where)  # fmt: skip
    (where / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
             cwd=where)  # fmt: skip
    return {
        "ca": str(where / "ca.pem"),
        "other_ca": str(where / "other.pem"),
        "server": (where / "server.key", where / "server.pem"),
    }


@pytest.fixture
async def tls_peer(certificates) -> AsyncIterator[SmscPeer]:
    require_peer()
    peer = await SmscPeer.start(tls=certificates["server"])
    try:
        yield peer
    finally:
        await peer.close()


async def test_tls_with_a_trusted_ca_binds_and_carries_traffic(
    tls_peer, certificates, gateway, started
) -> None:
    adapter = await started(
        links_settings(
            [{"name": "mts", "port": tls_peer.port, "tls": True, "tls_ca_file": certificates["ca"]}]
        )
    )
    await bound(adapter, "mts")
    sequence = await tls_peer.deliver(b"1234567833 1234", source_addr="79161234567")
    assert ESME_ROK == await tls_peer.deliver_resp(sequence)
    submit = await tls_peer.wait_pdu("submit_sm")
    assert "79161234567" == submit["destination_addr"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"tls_ca_file": "other_ca"}, "CERTIFICATE_VERIFY_FAILED"),
        ({"tls_ca_file": "ca", "tls_server_name": "smsc.wrong.example"}, "Hostname mismatch"),
    ],
    ids=["untrusted-ca", "wrong-hostname"],
)
async def test_tls_that_does_not_verify_is_a_clear_bind_failure_retried(
    tls_peer, certificates, gateway, started, overrides, reason
) -> None:
    """A certificate from a CA we do not trust, or for another name: no bind, the
    reason in the link's status (/health) and the log, and it keeps retrying."""
    link = {"name": "mts", "port": tls_peer.port, "tls": True}
    link.update({k: certificates[v] if k == "tls_ca_file" else v for k, v in overrides.items()})
    adapter = await started(links_settings([link]))

    async def failed_twice() -> bool:
        return adapter.metrics.smpp_reconnects.labels("mts")._value.get() >= 2

    await until(failed_twice)
    [status] = adapter.links_status()
    assert ("connecting", False) == (status["state"], adapter.links.by_name["mts"].bound)
    assert reason in (status["last_error"] or ""), status
    assert [] == tls_peer.pdus("bind_transceiver")  # never got as far as binding
