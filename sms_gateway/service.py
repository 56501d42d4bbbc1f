"""The inbound flow, one hop per line.

adapter builds an InboundSms
-> accept: store it durably (dedupe on the transport's id)       [InboundPipeline.accept]
-> parse the text (grammar)                                      [outside the transaction]
-> in one transaction: claim the inbound row, rate limit, resolve the account
   and meter, run the pure rules, book the reading, store the reply
-> the adapter sends the reply (inline for CLI/Twilio, from the outbox for SMPP)
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.engine import Connection

from adapters.db.batch import BatchUnit
from adapters.db.store import SqlStore, insert_inbound_many, mark_in_doubt
from grammar import MessageParser
from sms_gateway.batching import BatchQueue, ReadPauser
from sms_gateway.config import Settings
from sms_gateway.domain.model import (
    Account,
    BookedReading,
    InboundSms,
    Meter,
    Outcome,
    PreviousReading,
    Reply,
    Zone,
)
from sms_gateway.domain.parsed import (
    Command,
    ParsedCommand,
    ParsedMessage,
    ParsedReadings,
    ParseFailure,
    ParseFailureReason,
    SeveralReadings,
    account_spans,
)
from sms_gateway.domain.replies import ReplyContext, compose_replies, compose_reply
from sms_gateway.domain.rules import (
    Decision,
    assign_zones,
    choose_period,
    evaluate_reading,
    match_meter,
    without_red_digits,
)
from sms_gateway.errors import TemporaryFailure
from sms_gateway.metrics import GatewayMetrics
from sms_gateway.phones import mask_phone, own_phone_spellings
from sms_gateway.ports import AcceptedInbound, DirectSender, OutboundSms

log = structlog.get_logger("sms_gateway.service")

# Channels whose replies wait in the outbox for a sender; the others answer inline.
QUEUED_CHANNELS = frozenset({"smpp"})

# Outcomes whose replies a STOP silences: confirmations of what was booked.
# Errors, confirm_needed and answers to commands are still sent (docs/subscribers.md).
_SILENCED_BY_STOP = frozenset(
    {
        Outcome.ACCEPTED,
        Outcome.ACCEPTED_NEXT_PERIOD,
        Outcome.CORRECTED,
        Outcome.CONFIRMED,
        Outcome.DUPLICATE,
    }
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_dedupe_key() -> str:
    """A key no other message has: the time in ns, then 64 random bits.

    Time first, so that consecutive keys sit side by side in the unique index: a
    uuid4 put each MO on a random page of it, one more page written to the WAL per MO
    at every commit. The random half keeps instances (and a clock set back) apart.
    """
    return f"{time.time_ns():016x}{random.getrandbits(64):016x}"


@dataclass(slots=True)
class _Outcome:
    """What handling decided, before the reply text is composed."""

    context: ReplyContext
    account: str | None = None
    silent: bool = False
    # Several accounts or meters in one SMS: each part's reply, sent as one text.
    parts: tuple[ReplyContext, ...] = ()


class _Ambiguous(Exception):
    """The text reads two ways (an account in groups, or the groups as readings)."""


@dataclass(eq=False, slots=True)
class _Job:
    """One request to the batch worker."""

    kind: str  # accept | process | handle | receive
    inbound: InboundSms
    future: asyncio.Future[Any]
    inbound_id: int | None = None
    duplicate: bool = False
    # receive: called once the inbound row is committed, before processing.
    acknowledge: Callable[[AcceptedInbound], None] | None = None
    parsed: ParsedMessage | None = None
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class _Handled:
    decided: _Outcome | None
    text: str | None
    reply: Any = None  # the batch's reply record; its id is known after the flush
    outcome: Outcome | None = None
    reply_id: int | None = None
    redelivery: bool = False
    # The replies after the first (one per account, see compose_replies).
    further: tuple[Any, ...] = ()


class GatewayService:
    """The core pipeline: implements ports.InboundPipeline.

    Requests queue for one worker that handles whatever has queued up in one
    transaction (group commit): under load a commit carries many messages, idle
    it carries one, and nobody waits for a timer.
    """

    max_batch = 200
    # Received MO are stored and processed in one transaction in batches up to this size
    # (a steady trickle: one commit and one loop trip per MO fewer); bigger batches are
    # acknowledged first, then processed. 8: a trickle's batches, lingering for company
    # (commit_linger_ms), hold about rate x linger + 1 (5 or 6 at 200 MO/s and 20 ms);
    # split, each would cost two transactions (soak, at 4: 1.9 requests per MO).
    merge_receive_up_to = 8

    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        parser: MessageParser,
        metrics: GatewayMetrics,
        clock: Callable[[], datetime] = utc_now,
        instance: str | None = None,
    ) -> None:
        self.settings = settings
        # This process's name in the database: it receives the inbound, claims replies.
        self.instance = instance
        self._redelivery_window = timedelta(seconds=settings.smpp.redelivery_window_s)
        self.store = store
        self.parser = parser
        self.metrics = metrics
        # (channel, outcome) -> its counter and the channel's histogram, resolved once:
        # labels() costs more than the increment, twice per inbound SMS.
        self._handled_metrics: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.clock = clock
        self.timezone = ZoneInfo(settings.gateway.timezone)
        self.rules = settings.rules
        self.locale = settings.gateway.locale
        self.contact = settings.gateway.contact
        self._reply_listeners: list[Callable[[str], None]] = []
        self._direct_senders: dict[str, DirectSender] = {}
        self._account_pattern = re.compile(settings.gateway.account_pattern)
        # Twilio replies sent through the REST client are "pending" until the sender
        # reports them sent; inline TwiML replies are sent with the webhook's answer.
        self._queued_channels = QUEUED_CHANNELS | (
            {"twilio"} if settings.twilio.reply_mode == "rest" else set()
        )
        self._background: set[asyncio.Task[None]] = set()
        # Inbound rows stored and acknowledged apart whose processing is queued here:
        # recovery (runner.recover_unprocessed) leaves them to their own job.
        self.in_flight: set[int] = set()
        self._jobs: BatchQueue[_Job] = BatchQueue(
            self._run_batch,
            self._job_failed,
            max_batch=self.max_batch,
            name="gateway-batches",
            linger_s=settings.database.commit_linger_ms / 1000,
        )

    def on_reply_queued(self, listener: Callable[[str], None]) -> None:
        """Call `listener(channel)` whenever a reply lands in the outbox."""
        self._reply_listeners.append(listener)

    def pause_while_lingering(self, transport: ReadPauser) -> None:
        """Let `transport` stop reading while a batch waits for company at a trickle
        ([database] commit_linger_ms): what arrives meanwhile is read when it ends."""
        self._jobs.add_pauser(transport)

    def use_direct_sender(self, channel: str, sender: DirectSender) -> None:
        """Hand this channel's replies straight to `sender` when it is ready, stored as
        already claimed ("sending"): one database trip less per reply. What it cannot
        send goes back to the outbox, and a crash leaves claims the stale release frees."""
        self._direct_senders[channel] = sender

    def _direct_sender_ready(self, channel: str, link_group: str | None) -> bool:
        sender = self._direct_senders.get(channel)
        return sender is not None and sender.accepts_direct(link_group)

    # -- the pipeline ------------------------------------------------------

    async def accept(self, inbound: InboundSms) -> AcceptedInbound:
        job = await self._submit("accept", inbound)
        assert job.inbound_id is not None
        return AcceptedInbound(job.inbound_id, inbound, job.duplicate)

    async def process(self, accepted: AcceptedInbound) -> Reply:
        job = await self._submit(
            "process", accepted.inbound, accepted.inbound_id, accepted.duplicate
        )
        return cast(Reply, job.future.result())

    def receive(
        self, inbound: InboundSms, acknowledge: Callable[[AcceptedInbound], None]
    ) -> asyncio.Future[Reply]:
        # Stored and processed in one transaction, acknowledged after its commit, then
        # answered: at a steady trickle a second transaction (and a trip through the
        # event loop between the two) cost as much CPU as the rest of the MO. Should
        # processing fail, _run_batch stores it alone and processes it afterwards. No
        # coroutine either: the SMPP adapter takes the future with a callback rather
        # than a task per MO.
        job = self._job("receive", inbound, acknowledge=acknowledge)
        self._jobs.enqueue(job)
        return cast("asyncio.Future[Reply]", job.future)

    async def handle(self, inbound: InboundSms) -> Reply:
        job = await self._submit("handle", inbound)
        return cast(Reply, job.future.result())

    async def unconfirmed(self, inbound_ids: Sequence[int]) -> None:
        ids = sorted(set(inbound_ids))
        await self.store.run_transaction(lambda conn: mark_in_doubt(conn, ids))

    @property
    def queue_depth(self) -> int:
        return len(self._jobs)

    async def aclose(self) -> None:
        """Finish what is queued, then stop the worker; later requests fail temporarily."""
        await self._jobs.aclose()
        if self._background:  # doubts being recorded: before the store closes
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _submit(
        self, kind: str, inbound: InboundSms, inbound_id: int | None = None, duplicate: bool = False
    ) -> _Job:
        job = self._job(kind, inbound, inbound_id, duplicate)
        await self._jobs.put(job)
        return job

    @staticmethod
    def _job(
        kind: str,
        inbound: InboundSms,
        inbound_id: int | None = None,
        duplicate: bool = False,
        acknowledge: Callable[[AcceptedInbound], None] | None = None,
    ) -> _Job:
        if inbound.external_id is None and inbound.dedupe_key is None and kind != "process":
            # Transports without an id of their own (SMPP's one-part MO, the CLI): every
            # message is new.
            inbound = replace(inbound, dedupe_key=new_dedupe_key())
        future = asyncio.get_running_loop().create_future()
        return _Job(kind, inbound, future, inbound_id, duplicate, acknowledge)

    async def _run_batch(self, batch: list[_Job]) -> None:
        self.metrics.inbound_batch_messages.observe(len(batch))
        if len(batch) > self.merge_receive_up_to:
            # Under load, acknowledge first and process in the next batch: the SMSC's
            # window refills while this batch is handled (bench/smpp.py: the burst
            # rate fell from 0.54 to 0.43-0.48 of raw with everything in one).
            for job in batch:
                if job.kind == "receive":
                    job.kind = "receive_apart"
        try:
            handled = await self._transaction(batch)
        except TemporaryFailure:
            raise
        except Exception:
            if len(batch) != 1 or batch[0].kind != "receive":
                raise  # BatchQueue runs the jobs again one by one
            # Its processing failed: store it alone first, acknowledge it, then process
            # it as a job of its own, whose failure reaches the caller (and recovery
            # tries it again later): the SMSC must not redeliver it forever.
            batch[0].kind = "receive_apart"
            handled = await self._transaction(batch)
        self._settle(batch, handled)

    def _job_failed(self, job: _Job, error: Exception) -> Exception:
        if job.kind == "process" and job.inbound_id is not None:
            self.in_flight.discard(job.inbound_id)  # recovery tries it again later
        log.error("inbound_failed", channel=job.inbound.channel, exc_info=error)
        return TemporaryFailure(f"could not handle: {error!r}")

    async def _transaction(self, batch: list[_Job]) -> dict[int, _Handled]:
        now = self.clock()
        handled = await self.store.run_transaction(lambda conn: self._batch(conn, batch, now))
        for result in handled.values():
            if result.reply is not None:
                result.reply_id = result.reply.id
        return handled

    def _batch(self, conn: Connection, batch: list[_Job], now: datetime) -> dict[int, _Handled]:
        """The whole batch in one transaction: store, load, decide, write back.

        Runs synchronously (in the SQLite batch thread, or inside run_sync on
        PostgreSQL); it touches no asyncio object.
        """
        handled: dict[int, _Handled] = {}
        new = [job for job in batch if job.kind != "process"]
        fresh: set[int] = set()
        if new:
            stored = insert_inbound_many(
                conn,
                [job.inbound for job in new],
                self.instance,
                redelivery_window=self._redelivery_window,
            )
            for job, (inbound_id, duplicate) in zip(new, stored, strict=True):
                job.inbound_id, job.duplicate = inbound_id, duplicate
                if not duplicate:
                    fresh.add(inbound_id)
        # One received apart is processed in a later transaction, once acknowledged.
        work = [job for job in batch if job.kind in ("process", "handle", "receive")]
        if not work:
            return handled
        for job in work:
            parse_started = time.perf_counter()
            job.parsed = self.parser.parse(job.inbound.text)
            self.metrics.parse_seconds.observe(time.perf_counter() - parse_started)
        unit = BatchUnit.load(
            conn,
            inbound_ids=[job.inbound_id for job in work if job.inbound_id is not None],
            inserted=fresh,
            phones=[job.inbound.phone for job in work],
            account_ids=self._named_accounts(job.parsed for job in work),
            hour_ago=now - timedelta(hours=1),
            day_ago=now - timedelta(hours=24),
        )
        for job in work:
            handled[id(job)] = self._handle_one(unit, job, now)
        unit.flush(self.instance)
        return handled

    def _named_accounts(self, parsed_messages: Iterable[ParsedMessage | None]) -> set[str]:
        """Every token in the batch that may be an account, to load them all at once."""
        named: set[str] = set()
        for parsed in parsed_messages:
            parts = parsed.parts if isinstance(parsed, SeveralReadings) else (parsed,)
            for part in parts:
                if isinstance(part, ParsedReadings):
                    if part.account_hint:
                        named.add(part.account_hint)
                    named.update(n for n in part.numbers if self._account_pattern.fullmatch(n))
                    named.update(self._joined_candidates(part))
                elif isinstance(part, ParsedCommand) and part.account:
                    named.add(part.account)
        return named

    def _joined_candidates(self, parsed: ParsedReadings) -> list[str]:
        """Accounts the joined groups may spell ("123-456-7890"), longest first."""
        return [
            joined
            for _, _, joined in account_spans(parsed.numbers, parsed.joins, self._account_pattern)
        ]

    def _handle_one(self, unit: BatchUnit, job: _Job, now: datetime) -> _Handled:
        assert job.inbound_id is not None and job.parsed is not None
        if not unit.claim_inbound(job.inbound_id):
            outcome, text, reply_id = unit.reply_for(job.inbound_id)
            return _Handled(
                None,
                text,
                outcome=Outcome(outcome) if outcome else Outcome.DUPLICATE,
                reply_id=reply_id,
                redelivery=True,
            )
        inbound = job.inbound
        decided = self._decide(unit, inbound, job.parsed, now, job.inbound_id)
        outcome = decided.context.outcome
        texts: tuple[str, ...]
        if decided.silent:
            texts = ()
        elif decided.parts:
            texts = compose_replies(decided.parts, self.locale)
        else:
            texts = (compose_reply(decided.context, self.locale),)
        unit.finish_inbound(job.inbound_id, outcome, decided.account, now)
        if inbound.channel not in self._queued_channels:
            status = "sent"  # answered inline (CLI, TwiML)
        elif self._direct_sender_ready(inbound.channel, inbound.link_group):
            status = "sending"  # handed straight to the sender after the commit
        else:
            status = "pending"
        replies = [
            unit.insert_reply(
                inbound_id=job.inbound_id,
                inbound=inbound,
                text=text,
                outcome=outcome,
                account=decided.account,
                status=status,
                now=now,
                reply_index=index,
            )
            for index, text in enumerate(texts)
        ]
        if not replies:
            return _Handled(decided, None, None, outcome)
        return _Handled(decided, texts[0], replies[0], outcome, further=tuple(replies[1:]))

    def _settle(self, batch: list[_Job], handled: dict[int, _Handled]) -> None:
        """After the commit: answer the callers, count, log, wake the senders."""
        queued_channels: set[str] = set()
        direct: dict[str, list[OutboundSms]] = {}
        for job in batch:
            if job.kind == "accept":
                if not job.future.done():  # done: its caller was cancelled
                    job.future.set_result(None)
                continue
            if job.kind == "receive_apart":
                self._acknowledge_apart(job)
                continue
            if job.kind == "receive":
                self._acknowledge(job)
            elif job.kind == "process" and job.inbound_id is not None:
                self.in_flight.discard(job.inbound_id)
            result = handled[id(job)]
            inbound = job.inbound
            assert result.outcome is not None
            elapsed = time.perf_counter() - job.started
            account = result.decided.account if result.decided else None
            if not result.redelivery:
                counted, timed = self._metrics_for(inbound.channel, result.outcome)
                counted.inc()
                timed.observe(elapsed)
                reply = result.reply
                if reply is not None and reply.id is not None and reply.status == "sending":
                    direct.setdefault(inbound.channel, []).extend(
                        OutboundSms(
                            one.id, inbound.channel, inbound.phone, inbound.short_number,
                            one.text, job.inbound_id, 1, one.created_at,
                            inbound.link, inbound.link_group,
                        )
                        for one in (reply, *result.further)
                    )  # fmt: skip
                elif result.reply_id is not None and inbound.channel in self._queued_channels:
                    queued_channels.add(inbound.channel)
            log.info(
                "inbound_handled",
                inbound_id=job.inbound_id,
                channel=inbound.channel,
                phone=mask_phone(inbound.phone),
                outcome=str(result.outcome),
                account=account,
                replied=result.text is not None,
                redelivery=result.redelivery,
                parts=inbound.parts,
                latency_ms=round(elapsed * 1000, 2),
            )
            extra = {"redelivery": "true"} if result.redelivery else {}
            if not job.future.done():
                # Their ids exist: the batch's flush gave every reply its row.
                further = tuple((one.text, int(one.id)) for one in result.further)
                job.future.set_result(
                    Reply(
                        result.outcome, result.text, job.inbound_id, result.reply_id, extra,
                        further,
                    )
                )  # fmt: skip
        for channel, replies in direct.items():
            self._direct_senders[channel].offer(replies)
        for channel in queued_channels:
            for listener in self._reply_listeners:
                listener(channel)

    def _acknowledge(self, job: _Job) -> None:
        """A received message is stored and handled: its transport acknowledges it,
        before its reply is sent. If it cannot (the error is the caller's), or its
        caller is gone (cancelled at shutdown), the SMSC will deliver it again: the
        message is put in doubt, so that copy counts as a redelivery, answered by the
        one reply sent now."""
        assert job.inbound_id is not None and job.acknowledge is not None
        if job.future.done():
            self._spawn_doubt(job.inbound_id)
            return
        try:
            job.acknowledge(AcceptedInbound(job.inbound_id, job.inbound, job.duplicate))
        except Exception as error:
            job.future.set_exception(error)
            self._spawn_doubt(job.inbound_id)

    def _spawn_doubt(self, inbound_id: int) -> None:
        """Mark an MO handled but not acknowledged in doubt, in the background."""
        task = asyncio.get_running_loop().create_task(self.unconfirmed([inbound_id]))
        self._background.add(task)
        task.add_done_callback(self._doubt_recorded)

    def _doubt_recorded(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("inbound_doubt_not_recorded", error=repr(task.exception()))

    def _acknowledge_apart(self, job: _Job) -> None:
        """A message received apart is stored: its transport may acknowledge it, and
        it queues again to be processed. One whose caller is gone (cancelled at
        shutdown) is neither: it stays stored unprocessed, for recovery."""
        if job.future.done():
            return
        assert job.inbound_id is not None and job.acknowledge is not None
        try:
            job.acknowledge(AcceptedInbound(job.inbound_id, job.inbound, job.duplicate))
        except Exception as error:
            job.future.set_exception(error)
            return
        job.kind = "process"
        self.in_flight.add(job.inbound_id)
        self._jobs.requeue(job)

    def _metrics_for(self, channel: str, outcome: str) -> tuple[Any, Any]:
        key = (channel, outcome)
        found = self._handled_metrics.get(key)
        if found is None:
            found = self._handled_metrics[key] = (
                self.metrics.inbound_messages.labels(channel, outcome),
                self.metrics.handle_seconds.labels(channel),
            )
        return found

    # -- deciding ----------------------------------------------------------

    def _decide(
        self,
        tx: BatchUnit,
        inbound: InboundSms,
        parsed: ParsedMessage,
        now: datetime,
        inbound_id: int,
    ) -> _Outcome:
        phone = inbound.phone
        limit = self.rules.rate_limit_per_phone_per_hour
        hour_ago = now - timedelta(hours=1)
        # STOP and START always work: a flood must not keep a phone from opting out.
        opting = isinstance(parsed, ParsedCommand) and parsed.command in (
            Command.STOP,
            Command.START,
        )
        if not opting and tx.count_inbound_since(phone, hour_ago, inbound_id) > limit:
            already = tx.replied_with_since(phone, Outcome.RATE_LIMITED, hour_ago)
            return _Outcome(self._context(Outcome.RATE_LIMITED), silent=already)

        if isinstance(parsed, ParseFailure):
            return self._unparsed(tx, phone, parsed, self._account_in_text(tx, inbound.text))
        if isinstance(parsed, ParsedCommand):
            return self._command(tx, phone, parsed, now)
        if isinstance(parsed, ParsedReadings):
            parsed = self._split_by_accounts(tx, phone, parsed)
        if isinstance(parsed, SeveralReadings):
            decided = self._several(tx, inbound, parsed, now, inbound_id)
        else:
            decided = self._readings(tx, inbound, parsed, now, inbound_id)
        if decided.context.outcome in _SILENCED_BY_STOP and tx.is_opted_out(phone):
            decided.silent = True
        return decided

    def _context(self, outcome: Outcome, **kwargs: object) -> ReplyContext:
        return ReplyContext(
            outcome,
            window_start_day=self.rules.window_start_day,
            window_end_day=self.rules.window_end_day,
            **kwargs,  # type: ignore[arg-type]
        )

    def _unknown_account(
        self, tx: BatchUnit, phone: str, named: str | None, command: Command | None = None
    ) -> _Outcome:
        """No account to book on: the one named, or the phone's one, may be closed by
        billing, and then the reply says so and where to turn instead of "check the
        number" (which would send the subscriber round in circles)."""
        if named is None:
            closed = tx.closed_account_for_phone(phone)
        else:
            closed = named if tx.is_closed(named) else None
        if closed is not None:
            context = self._context(
                Outcome.UNKNOWN_ACCOUNT,
                account=closed,
                account_closed=True,
                contact=self.contact,
                command=command,
            )
            return _Outcome(context, account=closed)
        return _Outcome(self._context(Outcome.UNKNOWN_ACCOUNT, account=named, command=command))

    def _phone_account(self, tx: BatchUnit, phone: str) -> Account | None:
        """The one account this phone is linked to, if exactly one."""
        linked = tx.accounts_for_phone(phone)
        if len(linked) != 1:
            return None
        return (tx.load_accounts(linked)).get(linked[0])

    def _account_in_text(self, tx: BatchUnit, text: str) -> Account | None:
        """The first known account a text that could not be read names, if any."""
        named = self.parser.accounts_named(text)
        if not named:
            return None
        known = tx.load_accounts(list(named))
        return next((known[name] for name in named if name in known), None)

    def _unparsed(
        self,
        tx: BatchUnit,
        phone: str,
        failure: ParseFailure,
        account: Account | None = None,
    ) -> _Outcome:
        account = account or self._phone_account(tx, phone)
        context = self._context(
            Outcome.UNPARSED,
            failure=failure,
            account=account.account if account else None,
            meters=account.meters if account else (),
            reveal_meters=account is not None and phone in account.phones,
        )
        return _Outcome(context, account=account.account if account else None)

    def _command(
        self, tx: BatchUnit, phone: str, command: ParsedCommand, now: datetime
    ) -> _Outcome:
        if command.command is Command.HELP:
            return _Outcome(self._context(Outcome.HELP))
        if command.command is Command.STOP:
            tx.set_opted_out(phone, True, now)
            return _Outcome(self._context(Outcome.OPTED_OUT))
        if command.command is Command.START:
            tx.set_opted_out(phone, False, now)
            return _Outcome(self._context(Outcome.OPTED_IN))

        account: Account | None
        if command.account is not None:
            account = (tx.load_accounts([command.account])).get(command.account)
        else:
            account = self._phone_account(tx, phone)
        if account is None:
            return self._unknown_account(tx, phone, command.account, command.command)
        name = account.account

        if command.command is Command.REGISTER:
            meter = match_meter(account.meters, command.argument or "")
            if meter is None or len(command.argument or "") < 4:
                return _Outcome(
                    self._context(
                        Outcome.UNKNOWN_METER,
                        account=name,
                        meter_reference=command.argument,
                        command=command.command,
                    ),
                    account=name,
                )
            tx.bind_phone(name, phone, now)
            return _Outcome(self._context(Outcome.REGISTERED, account=name), account=name)

        # LAST: the reading history is the subscriber's own business.
        if self.rules.require_registered_phone and phone not in account.phones:
            return _Outcome(self._context(Outcome.PHONE_NOT_REGISTERED, account=name), account=name)
        latest: BookedReading | None = None
        billing: tuple[Meter, PreviousReading] | None = None
        for meter in account.meters:
            reading, newer_in_billing = tx.latest_known(meter)
            if reading is not None and (latest is None or reading.period > latest.period):
                latest = reading
            if newer_in_billing is not None and (
                billing is None or newer_in_billing.read_on > billing[1].read_on
            ):
                billing = (meter, newer_in_billing)
        if billing is not None and (
            latest is None or billing[1].read_on >= latest.submitted_at.date()
        ):
            # Billing knows a newer reading (the web cabinet, the app, an inspector).
            meter, known = billing
            return _Outcome(
                self._context(
                    Outcome.LAST_READING,
                    account=name,
                    meters=account.meters,
                    meter=meter,
                    last_values=known.values,
                    last_read_on=known.read_on,
                    last_from_billing=True,
                ),
                account=name,
            )
        return _Outcome(
            self._context(
                Outcome.LAST_READING,
                account=name,
                meters=account.meters,
                meter=latest.meter if latest else None,
                last_period=latest.period if latest else None,
                last_values=latest.values if latest else None,
            ),
            account=name,
        )

    def _split_by_accounts(
        self, tx: BatchUnit, phone: str, parsed: ParsedReadings
    ) -> ParsedReadings | SeveralReadings:
        """Bare readings for several accounts ("1234567890 5450 2345678901 3200"), the first
        a known one: one part per account, each from its account to the next. A later
        account need not be known: its part is then answered as an unknown account, and
        the first is booked all the same."""
        if parsed.account_hint is not None or parsed.labelled or len(parsed.numbers) < 4:
            return parsed
        numbers = parsed.numbers
        shaped = [i for i, n in enumerate(numbers) if self._account_pattern.fullmatch(n)]
        if len(shaped) < 2 or shaped[0] != 0:
            return parsed
        known = tx.load_accounts([numbers[i] for i in shaped])
        if numbers[0] not in known:
            return parsed
        own = own_phone_spellings(phone)  # the sender's own number starts nothing
        starts = [i for i in shaped if numbers[i] in known or numbers[i] not in own]
        if len(set(numbers[i] for i in starts)) < 2:
            return parsed
        bounds = [*starts, len(numbers)]
        if any(end - start < 2 for start, end in itertools.pairwise(bounds)):
            return parsed  # an account without readings: whose are the numbers? ask
        return SeveralReadings(
            tuple(
                ParsedReadings(numbers=numbers[start + 1 : end], account_hint=numbers[start])
                for start, end in itertools.pairwise(bounds)
            )
        )

    def _several(
        self,
        tx: BatchUnit,
        inbound: InboundSms,
        several: SeveralReadings,
        now: datetime,
        inbound_id: int,
    ) -> _Outcome:
        """Each part decided and booked on its own; one reply reports them all."""
        decided: list[_Outcome] = []
        account: Account | None = None
        for part in several.parts:
            one = self._readings(tx, inbound, part, now, inbound_id, inherited=account)
            decided.append(one)
            if one.account is not None:
                account = tx.load_accounts([one.account]).get(one.account)
        booked = [one for one in decided if one.context.outcome.books_reading]
        lead = booked[0] if booked else decided[0]
        return _Outcome(
            lead.context,
            account=lead.account,
            parts=tuple(one.context for one in decided),
        )

    def _readings(
        self,
        tx: BatchUnit,
        inbound: InboundSms,
        parsed: ParsedReadings,
        now: datetime,
        inbound_id: int,
        inherited: Account | None = None,
    ) -> _Outcome:
        phone = inbound.phone
        try:
            if inherited is not None and parsed.account_hint is None:
                account: Account | None = inherited
                numbers = self._without_own_phone(tx, phone, parsed.numbers)
                unknown = None
            else:
                account, numbers, unknown = self._resolve_account(tx, phone, parsed)
        except _Ambiguous:
            return self._unparsed(tx, phone, ParseFailure(ParseFailureReason.AMBIGUOUS))
        if account is None:
            return self._unknown_account(tx, phone, unknown)
        name = account.account
        if self.rules.require_registered_phone and phone not in account.phones:
            return _Outcome(self._context(Outcome.PHONE_NOT_REGISTERED, account=name), account=name)

        meter, numbers, meter_problem = self._resolve_meter(account, parsed, numbers)
        if meter is None:
            assert meter_problem is not None
            return _Outcome(
                self._context(
                    meter_problem,
                    account=name,
                    meters=account.meters,
                    reveal_meters=phone in account.phones,
                    meter_reference=parsed.meter_hint or (numbers[0] if numbers else None),
                ),
                account=name,
            )
        if not numbers and not parsed.labelled:
            if parsed.total is None:
                return self._unparsed(
                    tx, phone, ParseFailure(ParseFailureReason.NO_READINGS), account
                )
            numbers = (parsed.total,)  # "итого 5450" is the reading of a one-zone meter
        broken_by = self._word_between_readings(parsed, numbers)
        if broken_by is not None:
            failure = ParseFailure(ParseFailureReason.UNKNOWN_WORD, broken_by)
            return self._unparsed(tx, phone, failure, account)
        labelled = dict(parsed.labelled)
        typed = assign_zones(meter, numbers, labelled)
        if typed is None:
            typed = self._without_stray_numbers(meter, numbers, labelled)
        if typed is None:
            return _Outcome(
                self._context(Outcome.ZONE_COUNT, account=name, meter=meter, meters=account.meters),
                account=name,
            )

        today = now.astimezone(self.timezone).date()
        period = choose_period(today, self.rules)
        target = period.period
        previous = tx.previous_reading(meter, target) if target else None
        read = without_red_digits(meter, typed, previous, today, self.rules)
        if read is None:
            offending = next(i for i, value in enumerate(typed) if len(value) > meter.digits)
            decision = Decision(
                Outcome.TOO_MANY_DIGITS,
                values=tuple(int(value) for value in typed),
                offending_zone=Zone(offending + 1),
            )
            red_digits_dropped = False
        else:
            values, red_digits_dropped = read
            booked_in_period = tx.reading_in_period(meter, target) if target else None
            confirms = bool(target) and tx.has_pending_confirmation(
                phone, meter, values, now - timedelta(hours=24)
            )
            decision = evaluate_reading(
                meter=meter,
                values=values,
                today=today,
                policy=self.rules,
                previous=previous,
                booked_in_period=booked_in_period,
                confirms_pending=confirms,
                period=period,
            )
            if decision.outcome is Outcome.CONFIRM_NEEDED:
                tx.add_pending_confirmation(phone, meter, values, now)
            elif decision.status is not None and decision.period is not None:
                tx.book_reading(
                    BookedReading(
                        meter=meter,
                        period=decision.period,
                        values=values,
                        status=decision.status,
                        submitted_at=now,
                        channel=inbound.channel,
                        phone=phone,
                        inbound_id=inbound_id,
                    )
                )
                if confirms:
                    tx.clear_pending_confirmations(phone, meter)
        context = self._context(
            decision.outcome,
            account=name,
            meter=meter,
            meters=account.meters,
            decision=decision,
            red_digits_dropped=red_digits_dropped,
        )
        return _Outcome(context, account=name)

    @staticmethod
    def _word_between_readings(parsed: ParsedReadings, readings: tuple[str, ...]) -> str | None:
        """An unknown word that stood between two of the numbers read as the reading
        ("5450 прошлый 5300"): left out, it would make them one reading."""
        if not parsed.breaks or len(readings) < 2:
            return None
        positions: list[int] = []
        cursor = len(parsed.numbers) - 1
        for value in reversed(readings):
            while cursor >= 0 and parsed.numbers[cursor] != value:
                cursor -= 1
            if cursor < 0:
                return None
            positions.append(cursor)
            cursor -= 1
        first, last = positions[-1], positions[0]
        for index, word in parsed.breaks:
            if first < index <= last:
                return word
        return None

    def _resolve_account(
        self, tx: BatchUnit, phone: str, parsed: ParsedReadings
    ) -> tuple[Account | None, tuple[str, ...], str | None]:
        """(account, the numbers left once the account is taken out, unknown account named).

        The account is the one the sender marked; else the first number when it
        is a known account; else the only number that is a known account; else
        the one account the phone is linked to, when no number looks like one.
        """
        numbers = self._without_own_phone(tx, phone, parsed.numbers)
        if parsed.account_hint is not None:
            found = tx.load_accounts([parsed.account_hint])
            return found.get(parsed.account_hint), numbers, parsed.account_hint
        candidates = [n for n in numbers if self._account_pattern.fullmatch(n)]
        if not candidates:
            joined = self._joined_account(tx, phone, parsed, numbers)
            if joined is not None:
                return joined[0], joined[1], None
            return self._phone_account(tx, phone), numbers, None
        known = tx.load_accounts(candidates)
        first = numbers[0]
        if first in known:
            return known[first], numbers[1:], None
        known_positions = [i for i, n in enumerate(numbers) if n in known]
        if len(known_positions) == 1:
            index = known_positions[0]
            rest = numbers[:index] + numbers[index + 1 :]
            return known[numbers[index]], rest, None
        joined = self._joined_account(tx, phone, parsed, numbers)
        if joined is not None:
            return joined[0], joined[1], None
        return None, numbers, candidates[0]

    def _joined_account(
        self, tx: BatchUnit, phone: str, parsed: ParsedReadings, numbers: tuple[str, ...]
    ) -> tuple[Account, tuple[str, ...]] | None:
        """An account typed in groups as bills print it ("123-456-7890 5450"): taken when
        the joined digits are a known account and the groups are no reading that fits
        the phone's own account; when they are both, the text is ambiguous."""
        spans = list(account_spans(parsed.numbers, parsed.joins, self._account_pattern))
        if not spans:
            return None
        known = tx.load_accounts([joined for _, _, joined in spans])
        hits = [(first, last, joined) for first, last, joined in spans if joined in known]
        if len({joined for _, _, joined in hits}) != 1:
            return None
        first, last, joined = hits[0]
        own = self._phone_account(tx, phone)
        if (
            own is not None
            and own.account != joined
            and len(own.meters) == 1
            and own.meters[0].zones == len(numbers)
        ):
            raise _Ambiguous
        rest = parsed.numbers[:first] + parsed.numbers[last:]
        return known[joined], self._without_own_phone(tx, phone, rest)

    def _without_stray_numbers(
        self, meter: Meter, numbers: tuple[str, ...], labelled: dict[Zone, str]
    ) -> tuple[str, ...] | None:
        """The reading once numbers that cannot be part of it are left out, when that
        makes it fit the meter: an account-like number longer than the meter's register
        ("8888888888 5550001112 5470 2150", an old account or someone's phone). Only a
        message that would otherwise be a zone-count error is read this way."""
        kept = tuple(
            n for n in numbers if not (len(n) > meter.digits and self._account_pattern.fullmatch(n))
        )
        if kept == numbers or not (kept or labelled):
            return None
        return assign_zones(meter, kept, labelled)

    @staticmethod
    def _without_own_phone(tx: BatchUnit, phone: str, numbers: tuple[str, ...]) -> tuple[str, ...]:
        """The numbers without the sender's own phone number, which subscribers add
        ("89161234567 1234567833 5450"); kept where it is also a known account."""
        own = own_phone_spellings(phone)
        if not own or not any(n in own for n in numbers):
            return numbers
        accounts = tx.load_accounts([n for n in numbers if n in own])
        return tuple(n for n in numbers if n not in own or n in accounts)

    @staticmethod
    def _resolve_meter(
        account: Account, parsed: ParsedReadings, numbers: tuple[str, ...]
    ) -> tuple[Meter | None, tuple[str, ...], Outcome | None]:
        """(meter, the reading numbers, or the outcome saying why no meter was chosen)."""
        meters = account.meters
        if parsed.meter_hint is not None:
            meter = match_meter(meters, parsed.meter_hint)
            return (meter, numbers, None) if meter else (None, numbers, Outcome.UNKNOWN_METER)
        # A meter named by serial right after the account: "1234567833 #12345678 5450".
        if numbers and len(numbers[0]) >= 4:
            named = match_meter(meters, numbers[0])
            expected = (named.zones if not parsed.labelled else 0) if named else 0
            if named is not None and len(numbers) - 1 == expected:
                return named, numbers[1:], None
        if len(meters) == 1:
            return meters[0], numbers, None
        # A bare number that is no serial of the account names no meter: ask which.
        return None, numbers, Outcome.METER_REQUIRED
