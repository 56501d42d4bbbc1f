"""Support for the SMPP tests: the node-smpp SMSC peer, an in-memory pipeline, fixtures.

The peer (tests/smsc/peer.js) is a real SMSC implementation (the npm package `smpp`)
scripted over stdin/stdout with JSON lines. Without node or its node_modules the
tests skip with the reason; under CI=true they fail instead, because CI must run them.

Test files import the fixtures from here explicitly:

    from tests.integration.smpp_support import smsc_fixture, adapter_factory_fixture
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.smpp import SmppAdapter
from sms_gateway.config import SmppSettings
from sms_gateway.domain.model import InboundSms, Outcome, Reply
from sms_gateway.errors import TemporaryFailure
from sms_gateway.metrics import GatewayMetrics
from sms_gateway.ports import AcceptedInbound, OutboundSms

ROOT = Path(__file__).resolve().parents[2]
SMSC_DIR = ROOT / "tests" / "smsc"
PEER_SCRIPT = SMSC_DIR / "peer.js"
IN_CI = os.environ.get("CI", "").lower() == "true"
SHORT_NUMBER = "7377"


def peer_problem() -> str | None:
    """Why the node-smpp peer cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (the SMPP tests need node >= 18 for the node-smpp SMSC)"
    if not (SMSC_DIR / "node_modules" / "smpp").is_dir():
        return "node-smpp is not installed: run `npm ci --prefix tests/smsc`"
    return None


def require_peer() -> None:
    problem = peer_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(problem + " — CI must run the SMPP tests")
    pytest.skip(problem)


class SmscPeer:
    """The node-smpp SMSC: commands go in as JSON lines, every PDU it sees comes back."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, tls: tuple[Path, Path] | None = None) -> SmscPeer:
        """A peer on a free port; `tls`: (key, certificate) PEM files to serve TLS."""
        process = await asyncio.create_subprocess_exec(
            "node",
            str(PEER_SCRIPT),
            "0",
            *(str(path) for path in tls or ()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(SMSC_DIR),
            limit=1 << 20,
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        first = json.loads(line)
        assert first["event"] == "listening", first
        peer = cls(process, first["port"])
        peer._reader = asyncio.create_task(peer._read())
        return peer

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.command("exit", timeout=2)
            try:
                await asyncio.wait_for(self.process.wait(), 3)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def command(self, cmd: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Run a peer command and return its result line."""
        command_id = next(self._ids)
        assert self.process.stdin is not None
        payload = {"cmd": cmd, "id": command_id, **fields}
        self.process.stdin.write((json.dumps(payload) + "\n").encode())
        await self.process.stdin.drain()
        result = await self.wait_for(
            lambda e: e.get("event") == "result" and e.get("id") == command_id, timeout
        )
        assert "error" not in result, result
        return result

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first event (seen so far or arriving within timeout) that matches."""
        deadline = time.monotonic() + timeout
        checked = 0
        async with self._changed:
            while True:
                for event in self.events[checked:]:
                    if predicate(event):
                        return event
                checked = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching peer event in {timeout}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_count(
        self, predicate: Callable[[dict[str, Any]], bool], count: int, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait until `count` events match; returns them all."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                matching = [event for event in self.events if predicate(event)]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(matching)} of {count} matching peer events in {timeout}s"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    def pdus(self, command: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "pdu" and e["command"] == command]

    async def wait_pdu(self, command: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: (
                e.get("event") == "pdu"
                and e["command"] == command
                and all(e.get(k) == v for k, v in fields.items())
            ),
            timeout,
        )

    async def wait_bound(self, count: int = 1, timeout: float = 5.0) -> None:
        await self.wait_count(lambda e: e.get("event") == "bound", count, timeout)

    async def deliver(
        self,
        short_message: bytes = b"",
        *,
        source_addr: str = "79161234567",
        destination_addr: str = SHORT_NUMBER,
        data_coding: int = 0,
        esm_class: int = 0,
        message_payload: bytes | None = None,
        tlvs: dict[str, Any] | None = None,
        vendor_tlvs: dict[int, bytes] | None = None,
        system_id: str | None = None,
        pdu: str = "deliver_sm",
    ) -> int:
        """Send an MO as a deliver_sm (or `pdu="data_sm"`: its text in message_payload)
        to the ESME bound as `system_id`, if given, else to the newest bind; returns
        its sequence number."""
        fields: dict[str, Any] = {
            "source_addr": source_addr,
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "destination_addr": destination_addr,
            "data_coding": data_coding,
            "esm_class": esm_class,
            **(tlvs or {}),
        }
        extra: dict[str, Any] = {"short_message_hex": short_message.hex()}
        if message_payload is not None:
            extra["message_payload_hex"] = message_payload.hex()
        if vendor_tlvs:
            extra["tlvs"] = [{"tag": tag, "hex": value.hex()} for tag, value in vendor_tlvs.items()]
        if system_id is not None:
            extra["system_id"] = system_id
        result = await self.command("deliver_sm", fields=fields, pdu=pdu, **extra)
        return int(result["sequence_number"])

    async def deliver_resp(
        self,
        sequence: int,
        timeout: float = 5.0,
        system_id: str | None = None,
        pdu: str = "deliver_sm",
    ) -> int:
        """The command_status we answered the deliver_sm (or data_sm) with (on the bind
        of `system_id`, if given: each session numbers its PDUs from 1)."""
        fields = {} if system_id is None else {"esme": system_id}
        event = await self.wait_pdu(f"{pdu}_resp", timeout, sequence_number=sequence, **fields)
        return int(event["command_status"])

    async def set_faults(self, **faults: Any) -> None:
        await self.command("set", faults=faults)


# ---- an in-memory pipeline and outbox (the ports, nothing else) ----------------------


@dataclasses.dataclass
class StoredInbound:
    inbound_id: int
    inbound: InboundSms
    deliveries: int = 1
    processed: int = 0


class MemoryGateway:
    """InboundPipeline + Outbox in memory: dedupes like the real store, echoes a reply."""

    def __init__(self, reply: Callable[[InboundSms], str | None] | None = None) -> None:
        self.reply = reply or (lambda inbound: f"got: {inbound.text}")
        self.inbound: list[StoredInbound] = []
        self.outbound: dict[int, dict[str, Any]] = {}
        self.receipts: list[tuple[str, str, str | None]] = []
        self.accept_fails = False
        self._by_identity: dict[str, StoredInbound] = {}
        # MO whose acknowledgement may have been lost (InboundPipeline.unconfirmed).
        self.doubtful: set[int] = set()
        self._by_id: dict[int, StoredInbound] = {}
        self._pending: dict[int, None] = {}  # outbound ids in claim order
        self._ids = itertools.count(1)
        self.on_reply_queued: Callable[[], None] = lambda: None
        self.changed = asyncio.Event()

    # InboundPipeline
    async def accept(self, inbound: InboundSms) -> AcceptedInbound:
        if self.accept_fails:
            raise TemporaryFailure("database is down (test)")
        identity = inbound.external_id or inbound.dedupe_key
        stored = self._by_identity.get(identity) if identity else self._redelivered(inbound)
        if stored is not None:
            stored.deliveries += 1
            return AcceptedInbound(stored.inbound_id, stored.inbound, duplicate=True)
        stored = StoredInbound(next(self._ids), inbound)
        self.inbound.append(stored)
        if identity:
            self._by_identity[identity] = stored
        self._by_id[stored.inbound_id] = stored
        self.changed.set()
        return AcceptedInbound(stored.inbound_id, inbound)

    def _redelivered(self, inbound: InboundSms) -> StoredInbound | None:
        """As the store: the MO in doubt from this phone with this text, once."""
        if not inbound.may_be_redelivery:
            return None
        for inbound_id in sorted(self.doubtful):
            stored = self._by_id[inbound_id]
            if (stored.inbound.phone, stored.inbound.text) == (inbound.phone, inbound.text):
                self.doubtful.discard(inbound_id)
                return stored
        return None

    async def unconfirmed(self, inbound_ids: Sequence[int]) -> None:
        self.doubtful.update(inbound_ids)

    async def process(self, accepted: AcceptedInbound) -> Reply:
        stored = self._by_id[accepted.inbound_id]
        stored.processed += 1
        if stored.processed > 1:  # a redelivery: the reply was queued the first time
            return Reply(Outcome.DUPLICATE, None, accepted.inbound_id)
        text = self.reply(accepted.inbound)
        outbound_id = None
        if text is not None:
            outbound_id = self.queue_reply(accepted.inbound.phone, text, accepted.inbound_id)
        self.changed.set()
        return Reply(Outcome.ACCEPTED, text, accepted.inbound_id, outbound_id)

    def receive(
        self, inbound: InboundSms, acknowledge: Callable[[AcceptedInbound], None]
    ) -> asyncio.Future[Reply]:
        async def both() -> Reply:
            accepted = await self.accept(inbound)
            acknowledge(accepted)
            return await self.process(accepted)

        return asyncio.ensure_future(both())

    async def handle(self, inbound: InboundSms) -> Reply:
        return await self.process(await self.accept(inbound))

    def queue_reply(self, phone: str, text: str, inbound_id: int | None = None) -> int:
        outbound_id = next(self._ids)
        self.outbound[outbound_id] = {
            "sms": OutboundSms(
                outbound_id,
                "smpp",
                phone,
                SHORT_NUMBER,
                text,
                inbound_id,
                0,
                datetime.now(UTC),
            ),
            "status": "pending",
            "transport_id": None,
            "error": None,
            "sends": 0,
            "delivery": None,
        }
        self._pending[outbound_id] = None
        self.on_reply_queued()
        return outbound_id

    # Outbox
    async def claim(
        self, channel: str, limit: int, groups: Collection[str] | None = None
    ) -> list[OutboundSms]:
        claimed = []
        for outbound_id in list(itertools.islice(self._pending, limit)):
            del self._pending[outbound_id]
            entry = self.outbound[outbound_id]
            if entry["status"] == "pending":
                entry["status"] = "claimed"
                entry["sends"] += 1
                sms = entry["sms"]
                entry["sms"] = dataclasses.replace(sms, attempts=sms.attempts + 1)
                claimed.append(entry["sms"])
        return claimed

    async def mark_sent(self, outbound_id: int, transport_id: str | None) -> None:
        self.outbound[outbound_id].update(status="sent", transport_id=transport_id)
        self.changed.set()

    async def mark_sent_many(self, sent) -> None:
        for outbound_id, transport_id in sent:
            await self.mark_sent(outbound_id, transport_id)

    async def mark_failed(self, outbound_id: int, error: str) -> None:
        self.outbound[outbound_id].update(status="failed", error=error)
        self.changed.set()

    async def release(self, outbound_id: int, error: str | None = None) -> None:
        self.outbound[outbound_id].update(status="pending", error=error)
        self._pending[outbound_id] = None
        self.changed.set()

    async def record_delivery_status(
        self, transport_id: str, status: str, error: str | None = None
    ) -> bool:
        self.receipts.append((transport_id, status, error))
        for entry in self.outbound.values():
            if entry["transport_id"] == transport_id:
                entry["delivery"] = status
                return True
        return False

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `condition()` holds (checked on every change and every 20 ms)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout}s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.02)


def smpp_settings(port: int, **overrides: Any) -> SmppSettings:
    """Settings for a test bind: fast reconnects and timeouts, real defaults otherwise."""
    values: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "system_id": "gateway",
        "password": "secret",
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.4,
        "response_timeout_s": 2.0,
        "max_send_rate": 1000.0,
        "reassembly_timeout_s": 2.0,
    }
    values.update(overrides)
    return SmppSettings(**values)


# ---- fixtures -----------------------------------------------------------------------


@pytest.fixture(name="smsc")
async def smsc_fixture() -> AsyncIterator[SmscPeer]:
    """A fresh node-smpp SMSC on a free 127.0.0.1 port."""
    require_peer()
    peer = await SmscPeer.start()
    try:
        yield peer
    finally:
        await peer.close()


AdapterFactory = Callable[..., SmppAdapter]


@pytest.fixture(name="adapter_factory")
async def adapter_factory_fixture(smsc: SmscPeer) -> AsyncIterator[AdapterFactory]:
    """adapter_factory(pipeline_and_outbox, **smpp_overrides) -> an unstarted SmppAdapter
    bound to the `smsc` peer; every adapter built is stopped at the end."""
    built: list[SmppAdapter] = []

    def build(
        gateway: Any, *, metrics: GatewayMetrics | None = None, **overrides: Any
    ) -> SmppAdapter:
        adapter = SmppAdapter(
            smpp_settings(smsc.port, **overrides),
            SHORT_NUMBER,
            gateway,
            gateway,
            metrics or GatewayMetrics(),
        )
        if isinstance(gateway, MemoryGateway):
            gateway.on_reply_queued = adapter.notify_outbox
        built.append(adapter)
        return adapter

    yield build
    for adapter in built:
        await adapter.stop(1.0)


def udh8(reference: int, total: int, sequence: int) -> bytes:
    """A concatenation UDH with an 8-bit reference."""
    return bytes((0x05, 0x00, 0x03, reference, total, sequence))


def udh16(reference: int, total: int, sequence: int) -> bytes:
    """A concatenation UDH with a 16-bit reference."""
    return bytes((0x06, 0x08, 0x04, reference >> 8, reference & 0xFF, total, sequence))


async def bound(adapter_factory: AdapterFactory, gateway: MemoryGateway, **overrides: Any) -> Any:
    """A started adapter on `gateway`, once its bind succeeded (5 s at most)."""
    adapter = adapter_factory(gateway, **overrides)
    await adapter.start()
    deadline = asyncio.get_running_loop().time() + 5
    while adapter.state != "bound":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    return adapter
