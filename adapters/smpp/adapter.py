"""The SMPP transport: MO in as deliver_sm, replies out as submit_sm, receipts recorded.

One hop per step, all on the event loop (the link threads only move PDUs):

    deliver_sm  -> decode (data_coding, UDH/SAR, message_payload) -> InboundSms
                -> pipeline.receive(): stored durably -> deliver_sm_resp ESME_ROK
                   (cannot store / shutting down / too much in hand: ESME_RX_T_APPN)
                   -> processed in a later batch -> the reply, offered to this adapter
                   (a long MO's joined text: pipeline.accept(), then .process())
    offer       -> one part, window free, not throttled: submit_sm now (or at its
                   turn under max_send_rate), no task of its own (_send_quickly);
                   otherwise, or on any answer but ESME_ROK: _send as below
    outbox      -> claim("smpp") -> encode + split -> submit_sm, windowed and paced
                -> submit_sm_resp: mark_sent(message_id) | throttled: back off, retry
                   | other error: mark_failed | no answer / link lost: release
    receipt     -> outbox.record_delivery_status(message_id) -> deliver_sm_resp

Exactly-once booking is the pipeline's job (unique external_id / dedupe_key). Without
an SMSC message id, this adapter tells the pipeline which acknowledged MO may not have
been heard acknowledged (adapters/smpp/acks.py): only a same-text copy of one of those
is a redelivery; any other copy is the subscriber sending again (docs/operators.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from smpplib import consts

from adapters.smpp.acks import AckLedger
from adapters.smpp.codec import (
    ESM_MESSAGE_TYPE_MASK,
    ESM_UDHI,
    Concatenation,
    MessageTooLong,
    decode_text,
    encode_reply,
    split_udh,
)
from adapters.smpp.link import (
    BindFailed,
    Bound,
    Connecting,
    Delivered,
    EnquireAnswered,
    LinkDown,
    LinkEvent,
    SmppLink,
    SubmitResult,
)
from adapters.smpp.pdus import (
    TLV_MESSAGE_PAYLOAD,
    TLV_RECEIPTED_MESSAGE_ID,
    TLV_SAR_MSG_REF_NUM,
    TLV_SAR_SEGMENT_SEQNUM,
    TLV_SAR_TOTAL_SEGMENTS,
    DeliverSm,
    parse_receipt,
    receipt_id_variants,
)
from adapters.smpp.reassembly import MemoryPartStore, MessagePart, PartGroup, PartStore, Reassembler
from sms_gateway import phones
from sms_gateway.config import SmppSettings
from sms_gateway.domain.model import InboundSms, Reply
from sms_gateway.errors import TemporaryFailure
from sms_gateway.metrics import GatewayMetrics
from sms_gateway.phones import mask_phone
from sms_gateway.ports import AcceptedInbound, InboundPipeline, OutboundSms, Outbox

log = structlog.get_logger("adapters.smpp")

CHANNEL = "smpp"
ESME_ROK = consts.SMPP_ESME_ROK
ESME_RX_T_APPN = consts.SMPP_ESME_RX_T_APPN
ESME_RTHROTTLED = consts.SMPP_ESME_RTHROTTLED
ESME_RMSGQFUL = consts.SMPP_ESME_RMSGQFUL

# An acknowledgement not confirmed by an answer to a later request this long after it
# was written gets an enquire_link of its own (a receiver link carries no submit_sm).
PROBE_AFTER_S = 0.5
# Inbound messages being stored or processed at once; beyond this deliver_sm is
# answered ESME_RX_T_APPN ("queue full") and the SMSC redelivers later.
MAX_IN_HAND = 2000
OUTBOX_POLL_S = 1.0
HOUSEKEEPING_S = 0.1
THROTTLE_MIN_S = 0.05
THROTTLE_MAX_S = 5.0
MAX_SEND_ATTEMPTS = 5
NO_RESPONSE = "no submit_sm_resp in time"


_SubmitFuture = asyncio.Future[tuple[int | None, str | None]]


class LinkLost(Exception):
    """The submit_sm may or may not have reached the SMSC; the reply goes back to the outbox."""


class SubmitTimeout(Exception):
    """No submit_sm_resp within response_timeout_s."""


class SubmitRejected(Exception):
    def __init__(self, status: int) -> None:
        description = consts.DESCRIPTIONS.get(status, "unknown status")
        super().__init__(f"submit_sm_resp 0x{status:08x} {description}")
        self.status = status


def normalize_phone(address: str, ton: int) -> str:
    """The subscriber's number in E.164; an address that is no phone number stays as is
    (the pipeline decides what to do with it)."""
    digits = address.lstrip("+")
    if not digits.isdigit():
        return address
    if ton == 1:  # international: the SMSC left out only the '+'
        return "+" + digits
    try:
        return phones.normalize_phone(address)
    except phones.InvalidPhone:
        return "+" + digits


def long_mo_key(group_key: str, text: str, first_received_at: datetime) -> str:
    """The identity of a joined long MO: the same for every instance that hands on the
    same stored parts (their first part's arrival, as stored), new for a new message."""
    first = first_received_at.astimezone(UTC) if first_received_at.tzinfo else first_received_at
    material = f"{group_key}\x1f{text}\x1f{first.replace(tzinfo=None).isoformat()}".encode()
    return "smpp:" + hashlib.sha256(material).hexdigest()[:40]


class _Pacer:
    """Spaces submit_sm at most `rate` per second (reservations, so concurrent senders
    queue behind each other instead of bursting)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = 0.0

    def reserve(self) -> float:
        """The monotonic time of the next free slot, now taken."""
        now = time.monotonic()
        at = max(self.next_at, now)
        self.next_at = at + self.interval
        return at

    async def acquire(self) -> None:
        delay = self.reserve() - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class _Window:
    """At most `size` submit_sm without their submit_sm_resp. Unlike asyncio.Semaphore
    it can be taken without awaiting, by the quick path (`SmppAdapter.offer`)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # give() hands its slot straight to us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # give() may have dropped it
                    self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


@dataclass(slots=True)
class _Quick:
    """A reply sent by the quick path, waiting for its submit_sm_resp."""

    outbound: OutboundSms
    link: SmppLink
    started: float
    mark: int  # the link's AckLedger mark when the submit_sm was queued


class SmppAdapter:
    """The ESME: binds to the operator's SMSC and moves MO and replies for one short number."""

    def __init__(
        self,
        settings: SmppSettings,
        short_number: str,
        pipeline: InboundPipeline,
        outbox: Outbox,
        metrics: GatewayMetrics | None = None,
        *,
        part_store: PartStore | None = None,
    ) -> None:
        self.settings = settings
        self.short_number = short_number
        self.pipeline = pipeline
        self.outbox = outbox
        self.metrics = metrics
        # Resolved once: labels() costs more than the increment, on every reply.
        self._replies_sent = metrics.replies.labels(CHANNEL, "sent") if metrics else None
        self.part_store: PartStore = part_store or MemoryPartStore()
        self.state = "disabled" if not settings.enabled else "stopped"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._links: list[SmppLink] = []
        self._link_state: dict[SmppLink, str] = {}
        self._link_session: dict[SmppLink, int] = {}
        self._stopping = False
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        # Tasks, and the pipeline's futures of whole MO (see _take_deliver).
        self._inbound_tasks: set[asyncio.Future[Any]] = set()
        self._send_tasks: set[asyncio.Future[Any]] = set()
        self._sending_ids: set[int] = set()
        self._background: list[asyncio.Task[Any]] = []
        self._outbox_event = asyncio.Event()
        self._outbox_idle = False
        self._send_loop_full = False
        self._pending: dict[int, tuple[_SubmitFuture, SmppLink, int]] = {}
        self._ledgers: dict[SmppLink, AckLedger] = {}
        # MO in doubt not yet recorded so (the database may be down): retried.
        self._doubtful: list[int] = []
        self._doubt_task: asyncio.Task[None] | None = None
        # enquire_link probes by tag: (link, ledger mark when sent).
        self._probes: dict[int, tuple[SmppLink, int]] = {}
        self._probe_tags = itertools.count(1)
        self._tokens = itertools.count(1)
        self._window = _Window(max(1, settings.window))
        self._pacer = _Pacer(settings.max_send_rate)
        # Replies sent by the quick path, by token, until their submit_sm_resp comes.
        self._quick: dict[int, _Quick] = {}
        # Replies confirmed sent, not yet marked in the outbox: one commit for them all.
        self._sent_marks: list[tuple[_Quick, str | None]] = []
        self._marks_task: asyncio.Task[None] | None = None
        self._throttled_until = 0.0
        self._throttle_delay = THROTTLE_MIN_S
        self._reference = itertools.count(int(time.time()) & 0xFF)
        self._reassembler = Reassembler(settings.reassembly_timeout_s)
        self._mo_id_tlv = settings.mo_id_tlv

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start binding (in the background: a dead SMSC does not block start-up)."""
        if not self.settings.enabled:
            self.state = "disabled"
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._stopping = False
        self._closing = False
        # Every instance's parts, also groups a live instance is still collecting: this
        # instance's timeout for them starts now, after the collector's, and at the
        # timeout it re-reads the group (empty: handed on elsewhere, forgotten).
        for part in await self.part_store.load():
            self._reassembler.add(part)
        modes = (
            ["transceiver"] if self.settings.bind == "transceiver" else ["receiver", "transmitter"]
        )
        self._links = [SmppLink(self.settings, mode, loop, self._on_link_events) for mode in modes]
        for link in self._links:
            self._link_state[link] = "connecting"
            self._ledgers[link] = AckLedger()
        self.state = "connecting"
        for link in self._links:
            link.start()
        self._background = [
            asyncio.create_task(self._send_loop(), name="smpp-sender"),
            asyncio.create_task(self._housekeeping(), name="smpp-housekeeping"),
        ]

    async def stop(self, deadline_s: float) -> None:
        """Graceful stop: refuse new MO, finish what is in hand, flush the outbox, unbind."""
        if not self._links:
            return
        deadline = time.monotonic() + deadline_s
        self._stopping = True
        self.state = "stopping"
        log.info("smpp.stopping", deadline_s=deadline_s, in_hand=len(self._inbound_tasks))
        if self._inbound_tasks:
            await asyncio.wait(set(self._inbound_tasks), timeout=_remaining(deadline))
        self._outbox_idle = False
        self.notify_outbox()
        while _remaining(deadline) > 0 and self._transmit_link() is not None:
            if self._outbox_idle and not self._send_tasks and not self._quick:
                break
            await asyncio.sleep(0.02)
        self._closing = True
        for task in self._background:
            task.cancel()
        for pending in list(self._send_tasks) + list(self._inbound_tasks):
            pending.cancel()
        # Quick sends still without their response go back to the outbox, as a
        # cancelled _send's reply does.
        unconfirmed, self._quick = list(self._quick.values()), {}
        for quick in unconfirmed:
            self._window.give()
            self._sending_ids.discard(quick.outbound.id)
            self._spawn(
                self._release(quick.outbound, "shutdown before the reply was confirmed"),
                self._send_tasks,
            )
        leftovers = {*self._background, *self._send_tasks, *self._inbound_tasks}
        if leftovers:
            # Bounded: a task that ignores its cancellation must not keep the link bound.
            await asyncio.wait(leftovers, timeout=2.0)
        unbind_timeout = max(_remaining(deadline), min(self.settings.response_timeout_s, 2.0))
        await asyncio.gather(*(link.stop(unbind_timeout) for link in self._links))
        # Their LinkDown events came first: what the SMSC may not have heard
        # acknowledged is recorded before this instance says it stopped.
        if self._doubt_task is not None:
            with contextlib.suppress(Exception):
                await self._doubt_task
        await self._record_doubt()
        self._links = []
        self.state = "unbound"
        if self.metrics is not None:
            self.metrics.smpp_bound.set(0)
        log.info("smpp.stopped")

    def notify_outbox(self) -> None:
        """A reply was queued: send now rather than at the next poll. Any thread may call."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._outbox_event.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._outbox_event.set)

    def accepts_direct(self) -> bool:
        """True while replies may be handed straight to this adapter (bound, not stopping).

        Called from the database writer thread: it only reads plain attributes.
        """
        return self.state == "bound" and not self._stopping

    def offer(self, replies: list[OutboundSms]) -> None:
        """Send replies that were stored already claimed by this instance ("sending"),
        saving the outbox round trip. A reply that cannot go out now is released to the
        outbox by _send; one offered after the stop began goes back there too."""
        for outbound in replies:
            if self._closing or self._stopping:
                self._spawn(self._release(outbound, "offered while stopping"), self._send_tasks)
            elif not self._send_quickly(outbound):
                self._spawn(self._send(outbound), self._send_tasks)

    def _send_quickly(self, outbound: OutboundSms) -> bool:
        """The usual case without a task of its own: one part, a free window slot, not
        throttled, bound; sent now or, under max_send_rate, by a timer at its turn.
        Its submit_sm_resp comes back to `_quick_result`; anything but ESME_ROK hands
        the reply on to `_send`, which retries as it would have. (A task per reply,
        awaiting its response and its "sent" commit, was a third of the event loop's
        time per MO.) False: not this way, use `_send`."""
        link = self._transmit_link()
        if link is None or self._throttled_until > time.monotonic():
            return False
        try:
            encoded = encode_reply(outbound.text, next(self._reference))
        except MessageTooLong:
            return False  # _send records the failure
        if len(encoded.bodies) != 1 or not self._window.try_take():
            return False
        token = next(self._tokens)
        self._quick[token] = _Quick(outbound, link, time.monotonic(), self._ledgers[link].mark())
        self._sending_ids.add(outbound.id)
        params = self._submit_params(
            outbound, encoded.esm_class, encoded.data_coding, encoded.bodies[0]
        )
        delay = self._pacer.reserve() - time.monotonic()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._submit_quick, token, params)
        else:
            link.submit(token, params)
        return True

    def _submit_quick(self, token: int, params: dict[str, Any]) -> None:
        """A quick send whose turn under max_send_rate has come, if it is still due
        (a dropped link or the stop took it back meanwhile)."""
        quick = self._quick.get(token)
        if quick is not None:
            quick.link.submit(token, params)

    def _quick_result(self, quick: _Quick, status: int | None, message_id: str | None) -> None:
        self._window.give()
        if status is not None:
            self._ledgers[quick.link].confirm(quick.mark)
        verdict = self._judge(status)
        if verdict == "sent":
            self._sent_marks.append((quick, message_id))
            if self._marks_task is None or self._marks_task.done():
                self._marks_task = asyncio.create_task(self._mark_sent())
                self._send_tasks.add(self._marks_task)
                self._marks_task.add_done_callback(self._send_tasks.discard)
            return
        # The rest as _send takes it: sent again after the pause, released or given up,
        # or failed.
        outbound = quick.outbound
        self._sending_ids.discard(outbound.id)
        if verdict == "again":
            self._spawn(self._send(outbound), self._send_tasks)
        elif verdict == "unanswered":
            self._spawn(self._unanswered(outbound, NO_RESPONSE), self._send_tasks)
        else:
            self._spawn(
                self._failed(outbound, str(SubmitRejected(cast(int, status)))), self._send_tasks
            )

    async def _mark_sent(self) -> None:
        """Record every reply confirmed meanwhile as sent, in one shared commit."""
        while self._sent_marks:
            marks, self._sent_marks = self._sent_marks, []
            try:
                await self.outbox.mark_sent_many(
                    [(q.outbound.id, message_id) for q, message_id in marks]
                )
            except Exception as exc:
                # Still "sending" in the outbox: sent again once the claim times out.
                log.warning("smpp.sent_marks_failed", count=len(marks), error=str(exc))
            finally:
                for quick, _ in marks:
                    self._sending_ids.discard(quick.outbound.id)
            if self._replies_sent is not None:
                self._replies_sent.inc(len(marks))
            if log.is_enabled_for(logging.DEBUG):
                now = time.monotonic()
                for quick, message_id in marks:
                    log.debug(
                        "smpp.reply_sent",
                        outbound_id=quick.outbound.id,
                        parts=1,
                        message_id=message_id,
                        phone=mask_phone(quick.outbound.phone),
                        latency_ms=round((now - quick.started) * 1000, 1),
                    )
        if self._send_loop_full or not self._outbox_idle:
            self._outbox_event.set()

    async def _unanswered(self, outbound: OutboundSms, error: str) -> None:
        """A reply whose submit_sm may or may not have arrived: retried, up to a point."""
        if outbound.attempts >= MAX_SEND_ATTEMPTS:
            await self._failed(outbound, f"gave up after {outbound.attempts} attempts: {error}")
        else:
            await self._release(outbound, error)

    def enquire_link(self) -> None:
        """Probe every link with an enquire_link now."""
        for link in self._links:
            link.enquire_link()

    # ---- events from the link threads ------------------------------------------------

    def _on_link_events(self, link: SmppLink, events: list[LinkEvent]) -> None:
        for event in events:
            if isinstance(event, Delivered):
                self._on_deliver(link, event)
            elif isinstance(event, SubmitResult):
                quick = self._quick.pop(event.token, None)
                if quick is not None:
                    self._quick_result(quick, event.status, event.message_id)
                    continue
                entry = self._pending.pop(event.token, None)
                if entry is not None:
                    if event.status is not None:
                        self._ledgers[entry[1]].confirm(entry[2])
                    if not entry[0].done():
                        entry[0].set_result((event.status, event.message_id))
            elif isinstance(event, EnquireAnswered):
                probe = self._probes.pop(event.tag, None)
                if probe is not None and probe[0] is link:
                    self._ledgers[link].confirm(probe[1])
            elif isinstance(event, Bound):
                self._link_session[link] = event.session
                self._doubt(self._ledgers[link].begin(event.session))
                self._set_link_state(link, "bound")
                if self.metrics is not None:
                    self.metrics.smpp_binds.labels(mode=link.mode).inc()
                log.info(
                    "smpp.bound",
                    link=link.mode,
                    host=self.settings.host,
                    port=self.settings.port,
                    system_id=self.settings.system_id,
                )
                self._outbox_event.set()
            elif isinstance(event, LinkDown):
                self._set_link_state(link, "connecting" if not self._stopping else "unbound")
                self._fail_pending(link, event.reason)
                ledger = self._ledgers[link]
                if event.drained:
                    ledger.confirm_all()
                self._doubt(ledger.begin(0))
                for tag, (owner, _) in list(self._probes.items()):
                    if owner is link:
                        del self._probes[tag]
                if event.clean:
                    log.info("smpp.unbound", link=link.mode, reason=event.reason)
                else:
                    log.warning(
                        "smpp.link_down",
                        link=link.mode,
                        reason=event.reason,
                        in_flight=len(event.tokens),
                    )
            elif isinstance(event, Connecting):
                if event.attempt > 1 and self.metrics is not None:
                    self.metrics.smpp_reconnects.inc()
                log.info(
                    "smpp.connecting",
                    link=link.mode,
                    attempt=event.attempt,
                    host=self.settings.host,
                    port=self.settings.port,
                )
            elif isinstance(event, BindFailed):
                self._set_link_state(link, "connecting")
                log.warning(
                    "smpp.bind_failed",
                    link=link.mode,
                    attempt=event.attempt,
                    error=event.error,
                    retry_in_s=event.retry_in_s,
                )

    def _set_link_state(self, link: SmppLink, state: str) -> None:
        self._link_state[link] = state
        bound = all(s == "bound" for s in self._link_state.values())
        if self.metrics is not None:
            self.metrics.smpp_bound.set(1 if bound else 0)
        if self._stopping:
            return
        self.state = "bound" if bound else "connecting"

    def _fail_pending(self, link: SmppLink, reason: str) -> None:
        for token, (future, owner, _) in list(self._pending.items()):
            if owner is link:
                del self._pending[token]
                if not future.done():
                    future.set_exception(LinkLost(reason))
        for token, quick in list(self._quick.items()):
            if quick.link is link:
                del self._quick[token]
                self._window.give()
                self._sending_ids.discard(quick.outbound.id)
                self._spawn(self._unanswered(quick.outbound, reason), self._send_tasks)

    def _on_deliver(self, link: SmppLink, event: Delivered) -> None:
        if self._stopping:
            link.respond(event, ESME_RX_T_APPN)
            return
        if len(self._inbound_tasks) >= MAX_IN_HAND:
            log.warning("smpp.mo_deferred", reason="too many messages in hand")
            link.respond(event, ESME_RX_T_APPN)
            return
        try:
            self._take_deliver(link, event)
        except Exception:
            # Nothing of it is stored: the SMSC keeps it and delivers it again.
            log.exception("smpp.mo_accept_failed")
            link.respond(event, ESME_RX_T_APPN)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], group: set[asyncio.Future[Any]]) -> None:
        task = asyncio.create_task(coroutine)
        group.add(task)
        task.add_done_callback(group.discard)

    # ---- inbound ---------------------------------------------------------------------

    def _take_deliver(self, link: SmppLink, event: Delivered) -> None:
        """A deliver_sm: a receipt or a part of a long MO is handled by a task of its
        own; a whole MO, nearly all of them, goes to the pipeline straight away."""
        deliver = event.deliver
        if deliver.esm_class & ESM_MESSAGE_TYPE_MASK:
            self._spawn(self._handle_receipt(link, event), self._inbound_tasks)
            return
        user_data = deliver.short_message or deliver.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
        concatenation: Concatenation | None = None
        if deliver.esm_class & ESM_UDHI:
            concatenation, user_data = split_udh(user_data)
        else:
            concatenation = _sar(deliver)
        phone = normalize_phone(deliver.source_addr, deliver.source_addr_ton)
        received_at = datetime.now(UTC)
        external_id = self._external_id(deliver)
        if concatenation is not None and concatenation.total > 1:
            part = MessagePart(
                group_key=":".join(
                    (
                        concatenation.kind,
                        deliver.source_addr,
                        deliver.destination_addr,
                        str(concatenation.reference),
                        str(concatenation.total),
                    )
                ),
                source_addr=deliver.source_addr,
                destination_addr=deliver.destination_addr,
                phone=phone,
                reference=concatenation.reference,
                total=concatenation.total,
                sequence=concatenation.sequence,
                data_coding=deliver.data_coding,
                body=user_data,
                received_at=received_at,
                external_id=external_id,
            )
            self._spawn(self._handle_part(link, event, part), self._inbound_tasks)
            return
        text = decode_text(user_data, deliver.data_coding, self.settings.dcs0_charset)
        inbound = InboundSms(
            channel=CHANNEL,
            phone=phone,
            short_number=self.short_number,
            text=text,
            received_at=received_at,
            external_id=external_id,
            may_be_redelivery=external_id is None,
        )
        acknowledged: list[AcceptedInbound] = []

        def acknowledge(accepted: AcceptedInbound) -> None:
            # Called by the pipeline once the message is stored, before it is processed.
            acknowledged.append(accepted)
            link.respond(event, ESME_ROK)
            ledger = self._ledgers[link]
            if ledger.session == event.session:
                ledger.acknowledged(accepted.inbound_id, new=not accepted.duplicate)
            else:
                # The session ended meanwhile: the link drops this ESME_ROK.
                self._doubt([accepted.inbound_id])

        try:
            handled = self.pipeline.receive(inbound, acknowledge)
        except TemporaryFailure as exc:
            _log_not_stored(inbound, exc)
            link.respond(event, ESME_RX_T_APPN)
            return
        # A callback, not a task per MO: the future is the pipeline's own.
        self._inbound_tasks.add(handled)
        handled.add_done_callback(
            functools.partial(self._received, link, event, inbound, acknowledged)
        )

    def _received(
        self,
        link: SmppLink,
        event: Delivered,
        inbound: InboundSms,
        acknowledged: list[AcceptedInbound],
        handled: asyncio.Future[Reply],
    ) -> None:
        self._inbound_tasks.discard(handled)
        if handled.cancelled():
            return  # the stop gave up on it: acknowledged or not, it is the SMSC's or stored
        error = handled.exception()
        if error is None:
            self._processed(acknowledged[0], handled.result(), event.received_at)
        elif acknowledged:
            _log_process_failed(acknowledged[0], error)
        else:
            _log_not_stored(inbound, error)
            link.respond(event, ESME_RX_T_APPN)

    def _external_id(self, deliver: DeliverSm) -> str | None:
        if self._mo_id_tlv and deliver.tlvs.get(self._mo_id_tlv):
            value = deliver.tlvs[self._mo_id_tlv].split(b"\x00", 1)[0]
            return value.decode("latin-1") or None
        return deliver.tlv_text(TLV_RECEIPTED_MESSAGE_ID)

    async def _accept(self, inbound: InboundSms) -> AcceptedInbound | None:
        try:
            return await self.pipeline.accept(inbound)
        except Exception as exc:
            _log_not_stored(inbound, exc)
        return None

    async def _process(self, accepted: AcceptedInbound, received: float) -> None:
        try:
            reply = await self.pipeline.process(accepted)
        except Exception as exc:
            _log_process_failed(accepted, exc)
            return
        self._processed(accepted, reply, received)

    @staticmethod
    def _processed(accepted: AcceptedInbound, reply: Reply, received: float) -> None:
        # The pipeline's "inbound_handled" is the INFO summary of every message; this
        # one adds the SMPP view (latency since the deliver_sm) for debugging. Its
        # arguments are not even worked out below DEBUG: this runs for every MO.
        if not log.is_enabled_for(logging.DEBUG):
            return
        inbound = accepted.inbound
        log.debug(
            "smpp.mo",
            outcome=str(reply.outcome),
            inbound_id=accepted.inbound_id,
            duplicate=accepted.duplicate,
            parts=inbound.parts,
            incomplete=inbound.incomplete,
            reply=reply.text is not None,
            latency_ms=round((time.monotonic() - received) * 1000, 1),
            phone=mask_phone(inbound.phone),
        )

    async def _handle_part(self, link: SmppLink, event: Delivered, part: MessagePart) -> None:
        if self._reassembler.recently_finished(part.group_key):
            # A late redelivery of a part of a message already handed on.
            link.respond(event, ESME_ROK)
            return
        try:
            await self.part_store.save(part)
        except Exception as exc:
            log.warning(
                "smpp.mo_deferred", reason=f"part not stored: {exc}", phone=mask_phone(part.phone)
            )
            link.respond(event, ESME_RX_T_APPN)
            return
        link.respond(event, ESME_ROK)
        group = self._reassembler.add(part)
        if group.handing_on:
            return  # this instance is handing it on right now; discard takes this part too
        # Other instances' binds may hold the other parts: the database has them all.
        try:
            held = await self._read_group(group)
        except Exception as exc:
            log.warning("smpp.parts_read_failed", reason=str(exc), phone=mask_phone(part.phone))
            if group.complete and not group.handing_on:
                # Complete here, but the stored values (the message's identity) are
                # unknown: housekeeping re-reads and hands on in about a second.
                self._reassembler.retry_soon(group)
            return
        if not held:
            # Another instance handed the message on (before or after this part was
            # stored): a late part, like one arriving while this instance hands on.
            self._reassembler.finish(group.key)
            return
        if group.complete and not group.handing_on:
            await self._hand_on(group, received=event.received_at)

    async def _read_group(self, group: PartGroup) -> bool:
        """Merge the group's stored parts (every instance's) into `group`; False when
        the store holds none: another instance handed the message on (its marker)."""
        stored = await self.part_store.load_group(group.key)
        self._reassembler.merge(group, stored)
        return bool(stored)

    async def _hand_on_expired(self, group: PartGroup) -> None:
        """The timeout: hand on what the database holds now, unless that is nothing."""
        group.handing_on = True  # parts arriving meanwhile wait for this decision
        try:
            held = await self._read_group(group)
        except Exception as exc:
            log.warning("smpp.parts_read_failed", reason=str(exc))
            self._reassembler.retry_soon(group)
            return
        if not held:
            # Another instance handed it on (complete or at its own timeout).
            self._reassembler.finish(group.key)
            log.info("smpp.parts_handed_on_elsewhere", parts=group.total)
            return
        # More parts may have come to other binds: the message may be complete now.
        await self._hand_on(group, received=group.first_seen)

    async def _hand_on(self, group: PartGroup, received: float) -> None:
        """Accept the joined message (complete, or incomplete after the timeout).

        Its identity (dedupe key, received_at) comes only from the parts as stored,
        so an instance handing on the same group again (at once on another bind, or
        after a crash before `discard`) is recognised by `accept` as a redelivery, and
        its `process` answers with the stored reply instead of queuing a second one."""
        group.handing_on = True
        parts = group.ordered()
        first = parts[0]
        incomplete = not group.complete
        text = decode_text(
            b"".join(part.body for part in parts), first.data_coding, self.settings.dcs0_charset
        )
        external_id = next(
            (part.external_id for part in parts if part.sequence == 1 and part.external_id), None
        )
        inbound = InboundSms(
            channel=CHANNEL,
            phone=first.phone,
            short_number=self.short_number,
            text=text,
            received_at=first.received_at,
            external_id=external_id,
            dedupe_key=None if external_id else long_mo_key(group.key, text, first.received_at),
            parts=group.total,
            incomplete=incomplete,
        )
        accepted = await self._accept(inbound)
        if accepted is None:
            # The parts are acked and held; housekeeping retries in about a second.
            self._reassembler.retry_soon(group)
            return
        self._reassembler.finish(group.key)
        try:
            await self.part_store.discard(group.key)
        except Exception:
            log.exception("smpp.parts_discard_failed")
        if incomplete:
            log.warning(
                "smpp.mo_incomplete",
                parts=group.total,
                arrived=sorted(group.parts),
                phone=mask_phone(first.phone),
            )
        await self._process(accepted, received)

    async def _handle_receipt(self, link: SmppLink, event: Delivered) -> None:
        receipt = parse_receipt(event.deliver)
        if receipt is None:
            log.warning("smpp.receipt_unreadable", esm_class=event.deliver.esm_class)
            link.respond(event, ESME_ROK)
            return
        matched = False
        try:
            for message_id in receipt_id_variants(receipt.message_id):
                if await self.outbox.record_delivery_status(
                    message_id, receipt.status, receipt.error
                ):
                    matched = True
                    break
        except Exception as exc:
            log.warning("smpp.receipt_deferred", reason=str(exc))
            link.respond(event, ESME_RX_T_APPN)
            return
        link.respond(event, ESME_ROK)
        log.info(
            "smpp.receipt",
            message_id=receipt.message_id,
            status=receipt.status,
            error=receipt.error,
            matched=matched,
        )

    # ---- outbound --------------------------------------------------------------------

    def _transmit_link(self) -> SmppLink | None:
        for link in self._links:
            if link.transmits and self._link_state.get(link) == "bound":
                return link
        return None

    async def _send_loop(self) -> None:
        max_in_flight = max(2, self.settings.window * 2)
        while not self._closing:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
            # cancellation stop() sends when the event fires at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTBOX_POLL_S):
                    await self._outbox_event.wait()
            self._outbox_event.clear()
            while self._transmit_link() is not None:
                free = max_in_flight - len(self._send_tasks)
                self._send_loop_full = free <= 0
                if free <= 0:
                    break  # a finishing send sets the event again
                try:
                    batch = await self.outbox.claim(CHANNEL, free)
                except Exception as exc:
                    log.warning("smpp.outbox_unavailable", error=str(exc))
                    break
                if not batch:
                    self._outbox_idle = True
                    break
                self._outbox_idle = False
                for outbound in batch:
                    self._spawn(self._send(outbound), self._send_tasks)

    def sending_ids(self) -> frozenset[int]:
        """Replies this adapter holds right now: never stale, however long they take."""
        return frozenset(self._sending_ids)

    async def _send(self, outbound: OutboundSms) -> None:
        started = time.monotonic()
        self._sending_ids.add(outbound.id)
        try:
            try:
                encoded = encode_reply(outbound.text, next(self._reference))
            except MessageTooLong as exc:
                await self._failed(outbound, str(exc))
                return
            message_ids: list[str | None] = []
            for body in encoded.bodies:
                params = self._submit_params(outbound, encoded.esm_class, encoded.data_coding, body)
                message_ids.append(await self._submit(params))
            await self.outbox.mark_sent(outbound.id, message_ids[0])
            if self._replies_sent is not None:
                self._replies_sent.inc()
            if log.is_enabled_for(logging.DEBUG):
                log.debug(
                    "smpp.reply_sent",
                    outbound_id=outbound.id,
                    parts=len(encoded.bodies),
                    message_id=message_ids[0],
                    phone=mask_phone(outbound.phone),
                    latency_ms=round((time.monotonic() - started) * 1000, 1),
                )
        except SubmitRejected as exc:
            await self._failed(outbound, str(exc))
        except (LinkLost, SubmitTimeout) as exc:
            await self._unanswered(outbound, str(exc) or type(exc).__name__)
        except asyncio.CancelledError:
            await self._release(outbound, "shutdown before the reply was confirmed")
            raise
        finally:
            self._sending_ids.discard(outbound.id)
            # Look at the outbox again only when it may hold something for us: the
            # loop stopped claiming for want of room, or it was not empty last time.
            # (Replies stored as pending wake it through notify_outbox.)
            if self._send_loop_full or not self._outbox_idle:
                self._outbox_event.set()

    def _submit_params(
        self, outbound: OutboundSms, esm_class: int, data_coding: int, body: bytes
    ) -> dict[str, Any]:
        """The submit_sm fields of one part of a reply."""
        return {
            "source_addr_ton": self.settings.source_addr_ton,
            "source_addr_npi": self.settings.source_addr_npi,
            "source_addr": outbound.short_number or self.short_number,
            "dest_addr_ton": 1 if outbound.phone.startswith("+") else 0,
            "dest_addr_npi": 1,
            "destination_addr": outbound.phone.lstrip("+"),
            "esm_class": esm_class,
            "data_coding": data_coding,
            "registered_delivery": 1,
            "short_message": body,
        }

    async def _failed(self, outbound: OutboundSms, error: str) -> None:
        log.warning(
            "smpp.reply_failed",
            outbound_id=outbound.id,
            error=error,
            phone=mask_phone(outbound.phone),
        )
        if self.metrics is not None:
            self.metrics.replies.labels(channel=CHANNEL, result="failed").inc()
        with contextlib.suppress(Exception):
            await self.outbox.mark_failed(outbound.id, error)

    async def _release(self, outbound: OutboundSms, error: str) -> None:
        log.info("smpp.reply_deferred", outbound_id=outbound.id, error=error)
        try:
            await self.outbox.release(outbound.id, error)
        except Exception:
            log.exception("smpp.outbox_release_failed", outbound_id=outbound.id)
        self._outbox_idle = False  # pending again: the send loop takes it from there

    async def _submit(self, params: dict[str, Any]) -> str | None:
        """One submit_sm, retried while the SMSC throttles; returns its message_id."""
        loop = asyncio.get_running_loop()
        while True:
            delay = self._throttled_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._pacer.acquire()
            await self._window.take()
            try:
                link = self._transmit_link()
                if link is None:
                    raise LinkLost("not bound")
                token = next(self._tokens)
                future: _SubmitFuture = loop.create_future()
                self._pending[token] = (future, link, self._ledgers[link].mark())
                link.submit(token, params)
                try:
                    status, message_id = await future
                finally:
                    self._pending.pop(token, None)
            finally:
                self._window.give()
            verdict = self._judge(status)
            if verdict == "sent":
                return message_id
            if verdict == "again":
                continue
            if verdict == "unanswered":
                raise SubmitTimeout(NO_RESPONSE)
            raise SubmitRejected(cast(int, status))

    def _judge(self, status: int | None) -> str:
        """What a submit_sm's outcome means for its reply: "sent", "again" (throttled:
        the same part once the pause is over), "unanswered" (no response in time) or
        "rejected"; and for all sending: a throttle or a silence pauses it."""
        if status == ESME_ROK:
            self._throttle_delay = THROTTLE_MIN_S
            return "sent"
        if status is None:
            self._throttle()
            return "unanswered"
        if status in (ESME_RTHROTTLED, ESME_RMSGQFUL):
            if self.metrics is not None:
                self.metrics.smpp_throttles.inc()
            self._throttle()
            return "again"
        return "rejected"

    def _throttle(self) -> None:
        """Pause all sending; each throttle in a row doubles the pause."""
        now = time.monotonic()
        if self._throttled_until <= now:
            self._throttled_until = now + self._throttle_delay
            log.info("smpp.throttled", pause_s=self._throttle_delay)
            self._throttle_delay = min(self._throttle_delay * 2, THROTTLE_MAX_S)

    # ---- acknowledgements in doubt ---------------------------------------------------

    def _doubt(self, inbound_ids: list[int]) -> None:
        """These MO's ESME_ROK may not have reached the SMSC: record them in doubt."""
        if not inbound_ids:
            return
        self._doubtful.extend(inbound_ids)
        if self._doubt_task is None or self._doubt_task.done():
            self._doubt_task = asyncio.create_task(self._record_doubt())

    async def _record_doubt(self) -> None:
        while self._doubtful:
            inbound_ids, self._doubtful = self._doubtful, []
            try:
                await self.pipeline.unconfirmed(inbound_ids)
            except Exception as exc:
                self._doubtful[:0] = inbound_ids  # housekeeping tries again
                log.warning("smpp.doubt_not_recorded", count=len(inbound_ids), error=str(exc))
                return
            log.info("smpp.mo_in_doubt", count=len(inbound_ids))

    def _probe_unconfirmed(self, now: float) -> None:
        """An enquire_link for a link whose oldest unconfirmed acknowledgement has
        waited PROBE_AFTER_S: its answer confirms it. One probe at a time per link;
        where replies flow on the same bind their submit_sm_resp confirm first."""
        probing = {owner for owner, _ in self._probes.values()}
        for link, ledger in self._ledgers.items():
            since = ledger.waiting_since()
            if since is None or now - since < PROBE_AFTER_S or link in probing:
                continue
            if self._link_state.get(link) != "bound":
                continue
            tag = next(self._probe_tags)
            self._probes[tag] = (link, ledger.mark())
            link.enquire_link(tag)

    def confirmed_mo_id(self) -> int | None:
        """Every new MO this instance stored with an id up to this one was heard
        acknowledged by its SMSC (None: nothing to say yet). The heartbeat records
        it: if this process dies, the MO after it come into doubt."""
        lowest = [
            low
            for low in (ledger.lowest_unconfirmed_new() for ledger in self._ledgers.values())
            if low is not None
        ]
        lowest.extend(self._doubtful)
        if lowest:
            return min(lowest) - 1
        confirmed = max((ledger.max_confirmed_new for ledger in self._ledgers.values()), default=0)
        return confirmed or None

    # ---- housekeeping ----------------------------------------------------------------

    async def _housekeeping(self) -> None:
        next_poll = time.monotonic() + OUTBOX_POLL_S
        while not self._closing:
            await asyncio.sleep(HOUSEKEEPING_S)
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + OUTBOX_POLL_S
                self._outbox_event.set()  # replies left from before a restart
            if self._doubtful and (self._doubt_task is None or self._doubt_task.done()):
                self._doubt_task = asyncio.create_task(self._record_doubt())
            if self._stopping:
                continue
            self._probe_unconfirmed(now)
            for group in self._reassembler.expired(now):
                await self._hand_on_expired(group)


def _sar(deliver: DeliverSm) -> Concatenation | None:
    reference = deliver.tlv_int(TLV_SAR_MSG_REF_NUM)
    total = deliver.tlv_int(TLV_SAR_TOTAL_SEGMENTS)
    sequence = deliver.tlv_int(TLV_SAR_SEGMENT_SEQNUM)
    if reference is None or total is None or sequence is None:
        return None
    if not 1 <= sequence <= total:
        return None
    return Concatenation("sar", reference, total, sequence)


def _log_not_stored(inbound: InboundSms, error: BaseException) -> None:
    """An MO the pipeline could not store: the transport must not acknowledge it."""
    if isinstance(error, TemporaryFailure):
        log.warning("smpp.mo_deferred", reason=str(error), phone=mask_phone(inbound.phone))
    else:
        log.error("smpp.mo_accept_failed", phone=mask_phone(inbound.phone), exc_info=error)


def _log_process_failed(accepted: AcceptedInbound, error: BaseException) -> None:
    """An MO stored and acknowledged whose handling failed: recovery tries it again."""
    log.error(
        "smpp.mo_process_failed",
        inbound_id=accepted.inbound_id,
        phone=mask_phone(accepted.inbound.phone),
        exc_info=error,
    )


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
