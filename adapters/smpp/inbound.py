"""MO in: deliver_sm (or data_sm) decoded, stored, acknowledged; long MO joined; receipts.

    deliver_sm  -> decode (data_coding, UDH/SAR, message_payload) -> InboundSms, with
                   the link it came on (its reply goes back the same way)
                -> pipeline.receive(): stored durably -> deliver_sm_resp ESME_ROK
                   (cannot store / shutting down / too much in hand: ESME_RX_T_APPN)
                   -> processed in a later batch -> the reply, offered to Outbound
                   (a long MO's joined text: pipeline.accept(), then .process())
    receipt     -> outbox.record_delivery_status(message_id) -> deliver_sm_resp

Exactly-once booking is the pipeline's job (unique external_id / dedupe_key). Without
an SMSC message id, this side tells the pipeline which acknowledged MO may not have
been heard acknowledged (adapters/smpp/acks.py): only a same-text copy of one of those
is a redelivery; any other copy is the subscriber sending again (docs/operators.md).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import structlog
from smpplib import consts

from adapters.smpp.codec import (
    ESM_MESSAGE_TYPE_MASK,
    ESM_UDHI,
    Concatenation,
    decode_text,
    split_udh,
)
from adapters.smpp.link import Delivered, SmppLink
from adapters.smpp.links import Link
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
from adapters.smpp.reassembly import MessagePart, PartGroup, PartStore, Reassembler
from sms_gateway import phones
from sms_gateway.domain.model import InboundSms, Reply
from sms_gateway.errors import TemporaryFailure
from sms_gateway.metrics import GatewayMetrics
from sms_gateway.phones import mask_phone
from sms_gateway.ports import AcceptedInbound, InboundPipeline, Outbox

log = structlog.get_logger("adapters.smpp")

CHANNEL = "smpp"
ESME_ROK = consts.SMPP_ESME_ROK
ESME_RX_T_APPN = consts.SMPP_ESME_RX_T_APPN
# Inbound messages being stored or processed at once; beyond this deliver_sm is
# answered ESME_RX_T_APPN ("queue full") and the SMSC redelivers later.
MAX_IN_HAND = 2000
# An acknowledgement not confirmed by an answer to a later request this long after it
# was written gets an enquire_link of its own (a receiver bind carries no submit_sm).
PROBE_AFTER_S = 0.5


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


class Inbound:
    """The MO side of every link of this instance."""

    def __init__(
        self,
        short_number: str,
        pipeline: InboundPipeline,
        outbox: Outbox,
        part_store: PartStore,
        reassembly_timeout_s: float,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.short_number = short_number
        self.pipeline = pipeline
        self.outbox = outbox
        self.part_store = part_store
        self.metrics = metrics
        self.reassembler = Reassembler(reassembly_timeout_s)
        self.stopping = False
        # Tasks, and the pipeline's futures of whole MO (see _take_deliver).
        self.tasks: set[asyncio.Future[Any]] = set()
        # MO in doubt not yet recorded so (the database may be down): retried.
        self._doubtful: list[int] = []
        self._doubt_task: asyncio.Task[None] | None = None
        # enquire_link probes by tag: (link, session, ledger mark when sent).
        self._probes: dict[int, tuple[Link, SmppLink, int]] = {}
        self._probe_tags = itertools.count(1)

    # -- from the links ---------------------------------------------------------------

    def on_deliver(self, link: Link, session: SmppLink, event: Delivered) -> None:
        if link.mo_metric is not None:
            link.mo_metric.inc()
        if self.stopping:
            session.respond(event, ESME_RX_T_APPN)
            return
        if len(self.tasks) >= MAX_IN_HAND:
            log.warning("smpp.mo_deferred", link=link.name, reason="too many messages in hand")
            session.respond(event, ESME_RX_T_APPN)
            return
        try:
            self._take_deliver(link, session, event)
        except Exception:
            # Nothing of it is stored: the SMSC keeps it and delivers it again.
            log.exception("smpp.mo_accept_failed", link=link.name)
            session.respond(event, ESME_RX_T_APPN)

    def on_enquire_answered(self, session: SmppLink, tag: int) -> None:
        probe = self._probes.pop(tag, None)
        if probe is not None and probe[1] is session:
            probe[0].ledgers[session].confirm(probe[2])

    def session_bound(self, link: Link, session: SmppLink, number: int) -> None:
        self._doubt(link.ledgers[session].begin(number))

    def session_lost(self, link: Link, session: SmppLink, drained: bool) -> None:
        """What this session acknowledged and the SMSC is not known to have read comes
        into doubt (all of it is known read when the SMSC answered our unbind)."""
        ledger = link.ledgers[session]
        if drained:
            ledger.confirm_all()
        self._doubt(ledger.begin(0))
        for tag, (_, owner, _) in list(self._probes.items()):
            if owner is session:
                del self._probes[tag]

    # -- a whole MO --------------------------------------------------------------------

    def _take_deliver(self, link: Link, session: SmppLink, event: Delivered) -> None:
        """A deliver_sm: a receipt or a part of a long MO is handled by a task of its
        own; a whole MO, nearly all of them, goes to the pipeline straight away."""
        deliver = event.deliver
        if deliver.esm_class & ESM_MESSAGE_TYPE_MASK:
            self._spawn(self._handle_receipt(link, session, event))
            return
        user_data = deliver.short_message or deliver.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
        concatenation: Concatenation | None = None
        if deliver.esm_class & ESM_UDHI:
            concatenation, user_data = split_udh(user_data)
        else:
            concatenation = _sar(deliver)
        phone = normalize_phone(deliver.source_addr, deliver.source_addr_ton)
        received_at = datetime.now(UTC)
        external_id = self._external_id(link, deliver)
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
            self._spawn(self._handle_part(link, session, event, part))
            return
        text = decode_text(user_data, deliver.data_coding, link.settings.dcs0_charset)
        inbound = InboundSms(
            channel=CHANNEL,
            phone=phone,
            short_number=self.short_number,
            text=text,
            received_at=received_at,
            external_id=external_id,
            may_be_redelivery=external_id is None,
            link=link.name,
            link_group=link.group,
        )
        acknowledged: list[AcceptedInbound] = []

        def acknowledge(accepted: AcceptedInbound) -> None:
            # Called by the pipeline once the message is stored, before it is processed.
            acknowledged.append(accepted)
            session.respond(event, ESME_ROK)
            ledger = link.ledgers[session]
            if ledger.session == event.session:
                ledger.acknowledged(accepted.inbound_id, new=not accepted.duplicate)
            else:
                # The session ended meanwhile: the link drops this ESME_ROK.
                self._doubt([accepted.inbound_id])

        try:
            handled = self.pipeline.receive(inbound, acknowledge)
        except TemporaryFailure as exc:
            _log_not_stored(inbound, exc)
            session.respond(event, ESME_RX_T_APPN)
            return
        # A callback, not a task per MO: the future is the pipeline's own.
        self.tasks.add(handled)
        handled.add_done_callback(
            functools.partial(self._received, session, event, inbound, acknowledged)
        )

    def _received(
        self,
        session: SmppLink,
        event: Delivered,
        inbound: InboundSms,
        acknowledged: list[AcceptedInbound],
        handled: asyncio.Future[Reply],
    ) -> None:
        self.tasks.discard(handled)
        if handled.cancelled():
            return  # the stop gave up on it: acknowledged or not, it is the SMSC's or stored
        error = handled.exception()
        if error is None:
            _processed(acknowledged[0], handled.result(), event.received_at)
        elif acknowledged:
            _log_process_failed(acknowledged[0], error)
        else:
            _log_not_stored(inbound, error)
            session.respond(event, ESME_RX_T_APPN)

    @staticmethod
    def _external_id(link: Link, deliver: DeliverSm) -> str | None:
        tag = link.settings.mo_id_tlv
        if tag and deliver.tlvs.get(tag):
            value = deliver.tlvs[tag].split(b"\x00", 1)[0]
            return value.decode("latin-1") or None
        return deliver.tlv_text(TLV_RECEIPTED_MESSAGE_ID)

    # -- a long MO ---------------------------------------------------------------------

    async def _handle_part(
        self, link: Link, session: SmppLink, event: Delivered, part: MessagePart
    ) -> None:
        if self.reassembler.recently_finished(part.group_key):
            # A late redelivery of a part of a message already handed on.
            session.respond(event, ESME_ROK)
            return
        try:
            await self.part_store.save(part)
        except Exception as exc:
            log.warning(
                "smpp.mo_deferred", reason=f"part not stored: {exc}", phone=mask_phone(part.phone)
            )
            session.respond(event, ESME_RX_T_APPN)
            return
        session.respond(event, ESME_ROK)
        group = self.reassembler.add(part)
        group.link = link
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
                self.reassembler.retry_soon(group)
            return
        if not held:
            # Another instance handed the message on (before or after this part was
            # stored): a late part, like one arriving while this instance hands on.
            self.reassembler.finish(group.key)
            return
        if group.complete and not group.handing_on:
            await self._hand_on(group, received=event.received_at)

    async def load_parts(self) -> None:
        """Every instance's parts, also groups a live instance is still collecting: this
        instance's timeout for them starts now, after the collector's, and at the
        timeout it re-reads the group (empty: handed on elsewhere, forgotten)."""
        for part in await self.part_store.load():
            self.reassembler.add(part)

    async def _read_group(self, group: PartGroup) -> bool:
        """Merge the group's stored parts (every instance's) into `group`; False when
        the store holds none: another instance handed the message on (its marker)."""
        stored = await self.part_store.load_group(group.key)
        self.reassembler.merge(group, stored)
        return bool(stored)

    async def _hand_on_expired(self, group: PartGroup) -> None:
        """The timeout: hand on what the database holds now, unless that is nothing."""
        group.handing_on = True  # parts arriving meanwhile wait for this decision
        try:
            held = await self._read_group(group)
        except Exception as exc:
            log.warning("smpp.parts_read_failed", reason=str(exc))
            self.reassembler.retry_soon(group)
            return
        if not held:
            # Another instance handed it on (complete or at its own timeout).
            self.reassembler.finish(group.key)
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
        link: Link | None = group.link
        charset = link.settings.dcs0_charset if link is not None else "gsm"
        text = decode_text(b"".join(part.body for part in parts), first.data_coding, charset)
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
            link=link.name if link is not None else None,
            link_group=link.group if link is not None else None,
        )
        accepted = await self._accept(inbound)
        if accepted is None:
            # The parts are acked and held; housekeeping retries in about a second.
            self.reassembler.retry_soon(group)
            return
        self.reassembler.finish(group.key)
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
        _processed(accepted, reply, received)

    # -- receipts ----------------------------------------------------------------------

    async def _handle_receipt(self, link: Link, session: SmppLink, event: Delivered) -> None:
        receipt = parse_receipt(event.deliver)
        if receipt is None:
            log.warning("smpp.receipt_unreadable", esm_class=event.deliver.esm_class)
            session.respond(event, ESME_ROK)
            return
        matched = False
        try:
            # By message id alone: a receipt may come on another bind of the group
            # than the one the reply left on.
            for message_id in receipt_id_variants(receipt.message_id):
                if await self.outbox.record_delivery_status(
                    message_id, receipt.status, receipt.error
                ):
                    matched = True
                    break
        except Exception as exc:
            log.warning("smpp.receipt_deferred", reason=str(exc))
            session.respond(event, ESME_RX_T_APPN)
            return
        session.respond(event, ESME_ROK)
        if self.metrics is not None:
            self.metrics.smpp_receipts.labels(link.name).inc()
        log.info(
            "smpp.receipt",
            link=link.name,
            message_id=receipt.message_id,
            status=receipt.status,
            error=receipt.error,
            matched=matched,
        )

    # -- acknowledgements in doubt -----------------------------------------------------

    def _doubt(self, inbound_ids: list[int]) -> None:
        """These MO's ESME_ROK may not have reached the SMSC: record them in doubt."""
        if not inbound_ids:
            return
        self._doubtful.extend(inbound_ids)
        if self._doubt_task is None or self._doubt_task.done():
            self._doubt_task = asyncio.create_task(self.record_doubt())

    async def record_doubt(self) -> None:
        while self._doubtful:
            inbound_ids, self._doubtful = self._doubtful, []
            try:
                await self.pipeline.unconfirmed(inbound_ids)
            except Exception as exc:
                self._doubtful[:0] = inbound_ids  # housekeeping tries again
                log.warning("smpp.doubt_not_recorded", count=len(inbound_ids), error=str(exc))
                return
            log.info("smpp.mo_in_doubt", count=len(inbound_ids))

    async def settle_doubt(self) -> None:
        """At the stop: every doubt recorded before the instance says it stopped."""
        task = self._doubt_task
        if task is not None:
            try:
                await task
            except Exception:
                log.debug("smpp.doubt_task_failed", exc_info=True)
        await self.record_doubt()

    def confirmed_mo_id(self, links: list[Link]) -> int | None:
        """Every new MO this instance stored with an id up to this one was heard
        acknowledged by its SMSC (None: nothing to say yet). The heartbeat records
        it: if this process dies, the MO after it come into doubt."""
        ledgers = [ledger for link in links for ledger in link.ledgers.values()]
        lowest = [
            low
            for low in (ledger.lowest_unconfirmed_new() for ledger in ledgers)
            if low is not None
        ]
        lowest.extend(self._doubtful)
        if lowest:
            return min(lowest) - 1
        confirmed = max((ledger.max_confirmed_new for ledger in ledgers), default=0)
        return confirmed or None

    # -- housekeeping ------------------------------------------------------------------

    async def housekeeping(self, links: list[Link], now: float) -> None:
        if self._doubtful and (self._doubt_task is None or self._doubt_task.done()):
            self._doubt_task = asyncio.create_task(self.record_doubt())
        if self.stopping:
            return
        self._probe_unconfirmed(links, now)
        for group in self.reassembler.expired(now):
            await self._hand_on_expired(group)

    def _probe_unconfirmed(self, links: list[Link], now: float) -> None:
        """An enquire_link for a session whose oldest unconfirmed acknowledgement has
        waited PROBE_AFTER_S: its answer confirms it. One probe at a time per session;
        where replies flow on the same bind their submit_sm_resp confirm first."""
        probing = {session for _, session, _ in self._probes.values()}
        for link in links:
            for session, ledger in link.ledgers.items():
                since = ledger.waiting_since()
                if since is None or now - since < PROBE_AFTER_S or session in probing:
                    continue
                if link.session_state.get(session) != "bound":
                    continue
                tag = next(self._probe_tags)
                self._probes[tag] = (link, session, ledger.mark())
                session.enquire_link(tag)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _sar(deliver: DeliverSm) -> Concatenation | None:
    reference = deliver.tlv_int(TLV_SAR_MSG_REF_NUM)
    total = deliver.tlv_int(TLV_SAR_TOTAL_SEGMENTS)
    sequence = deliver.tlv_int(TLV_SAR_SEGMENT_SEQNUM)
    if reference is None or total is None or sequence is None:
        return None
    if not 1 <= sequence <= total:
        return None
    return Concatenation("sar", reference, total, sequence)


def _processed(accepted: AcceptedInbound, reply: Reply, received: float) -> None:
    # The pipeline's "inbound_handled" is the INFO summary of every message; this
    # one adds the SMPP view (latency since the deliver_sm) for debugging. Its
    # arguments are not even worked out below DEBUG: this runs for every MO.
    if not log.is_enabled_for(logging.DEBUG):
        return
    inbound = accepted.inbound
    log.debug(
        "smpp.mo",
        link=inbound.link,
        outcome=str(reply.outcome),
        inbound_id=accepted.inbound_id,
        duplicate=accepted.duplicate,
        parts=inbound.parts,
        incomplete=inbound.incomplete,
        reply=reply.text is not None,
        latency_ms=round((time.monotonic() - received) * 1000, 1),
        phone=mask_phone(inbound.phone),
    )


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
