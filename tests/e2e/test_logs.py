"""What a real `serve` writes to its log at INFO: JSON lines, one summary per MO, no
subscriber number in full anywhere (the operator's hex dumps included) and no SMS text."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

from tests.e2e.serve_support import ID_TLV, Serve, accounts_csv, cli, write_config
from tests.integration.smpp_support import SmscPeer, smsc_fixture  # noqa: F401  (fixture)

pytestmark = [pytest.mark.smsc, pytest.mark.timeout(120)]

MO_COUNT = 20
FIRST_ACCOUNT = 4_100_000_000
PREFIX = "7917"  # the peer's queue numbers MO senders 79170000000, 79170000001, ...


async def test_info_log_is_json_with_one_masked_summary_per_mo(smsc: SmscPeer, tmp_path) -> None:
    config = write_config(
        tmp_path / "gateway.toml", f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", smsc.port
    )
    await cli(config, "db", "upgrade")
    await cli(
        config, "accounts", "import", str(accounts_csv(tmp_path / "a.csv", MO_COUNT, FIRST_ACCOUNT))
    )
    log_file = tmp_path / "serve.log"
    serve = Serve(config, log_file).start()
    try:
        await smsc.wait_bound(timeout=30)
        texts = [f"{FIRST_ACCOUNT + i} 1100" for i in range(MO_COUNT)]
        await smsc.command(
            "queue", count=MO_COUNT, window=10, texts=texts, destination_addr="7377", id_tlv=ID_TLV
        )
        deadline = time.monotonic() + 30
        while (await smsc.command("queue_status"))["answered"] < MO_COUNT:
            assert time.monotonic() < deadline, "not every MO was answered"
            await asyncio.sleep(0.1)
        assert serve.stop() == 0
    finally:
        serve.ensure_dead()

    lines = log_file.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"event", "level", "logger", "timestamp"} <= r.keys() for r in records)
    assert {r["level"] for r in records} <= {"info", "warning"}

    # One line per MO speaks of it (its inbound_id): the pipeline's summary.
    about_inbound = Counter(r["inbound_id"] for r in records if "inbound_id" in r)
    assert len(about_inbound) == MO_COUNT and set(about_inbound.values()) == {1}
    handled = [r for r in records if r["event"] == "inbound_handled"]
    assert Counter(r["outcome"] for r in handled) == {"accepted": MO_COUNT}
    senders = {f"+{PREFIX}{i:07d}" for i in range(MO_COUNT)}
    masked = {f"{phone[:5]}***{phone[-4:]}" for phone in senders}
    assert {r["phone"] for r in handled} == masked
    # The reply's own line (message id, latency) is DEBUG: at INFO the summary is the
    # only line per MO, and nothing else names a subscriber.
    assert not [r for r in records if r["event"] == "smpp.reply_sent"]
    assert [r for r in records if "phone" in r] == handled

    whole_log = "\n".join(lines)
    for phone in senders:
        assert phone[1:] not in whole_log, f"{phone} appears unmasked in the log"
    # Texts stay in the database: neither the MO nor our reply is written to the log.
    for text in texts:
        assert text not in whole_log
    assert "Приняты" not in whole_log
