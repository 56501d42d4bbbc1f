"""`sms-gateway serve`: starts the adapters around one gateway and stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import signal
import sys
import time
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import structlog
from aiohttp import web

from adapters.db.instances import InstanceRegistry
from sms_gateway.bootstrap import Gateway, build_gateway
from sms_gateway.config import Settings, SmppSettings
from sms_gateway.errors import TemporaryFailure
from sms_gateway.housekeeping import prune_loop
from sms_gateway.metrics import GatewayMetrics
from sms_gateway.ports import AcceptedInbound
from sms_gateway.service import utc_now

if TYPE_CHECKING:
    from adapters.smpp import SmppAdapter

log = structlog.get_logger("sms_gateway.runner")

RECOVERY_INTERVAL_S = 5.0
SHUTDOWN_DEADLINE_S = 10.0
# The loop-lag probe's tick, and the window its maximum is reported over.
LAG_TICK_S = 0.05
LAG_WINDOW_S = 10.0


async def recover_unprocessed(gateway: Gateway, channel: str, batch: int = 200) -> int:
    """Process inbound SMS that were stored (and acknowledged) but never handled."""
    handled = 0
    after_id = 0
    while True:
        async with gateway.store.reader() as tx:
            pending = await tx.unprocessed_inbound(channel, batch, after_id)
        if not pending:
            return handled
        after_id = pending[-1][0]
        # Not those stored and acknowledged a moment ago whose processing is queued in
        # this process: handled twice, they were logged twice (once as a redelivery).
        todo = [(i, inbound) for i, inbound in pending if i not in gateway.pipeline.in_flight]
        # All at once: the batch worker handles them in a few transactions.
        await asyncio.gather(
            *(
                gateway.pipeline.process(AcceptedInbound(inbound_id, inbound, duplicate=True))
                for inbound_id, inbound in todo
            )
        )
        handled += len(todo)
        if len(pending) < batch:
            return handled


async def _recovery_loop(gateway: Gateway, smpp: Any) -> None:
    """Every few seconds: handle inbound SMS stored but never handled (SMPP acked them
    before a crash), and give replies claimed by a dead sender back to the outbox."""
    claim_timeout = timedelta(seconds=gateway.settings.smpp.claim_timeout_s)
    reply_expiry = timedelta(seconds=gateway.settings.smpp.reply_expiry_s)
    while True:
        try:
            if smpp is not None:
                recovered = await recover_unprocessed(gateway, "smpp")
                if recovered:
                    log.info("recovered_unprocessed_inbound", channel="smpp", count=recovered)
            if smpp is not None:
                expired = await gateway.outbox.expire("smpp", reply_expiry)
                if expired:
                    log.warning("replies_expired", channel="smpp", count=expired)
            released = await gateway.outbox.release_stale(
                claim_timeout, keep=smpp.sending_ids() if smpp is not None else ()
            )
            if released:
                log.info("released_stale_replies", count=released)
            gateway.metrics.outbox_depth.set(await gateway.outbox.depth())
        except TemporaryFailure as exc:
            log.warning("recovery_skipped", reason=str(exc))
        await asyncio.sleep(RECOVERY_INTERVAL_S)


async def _heartbeat_loop(registry: InstanceRegistry, gateway: Gateway, smpp: Any) -> None:
    """Beat while serving; replies taken over from a dead instance are sent at once."""
    while True:
        await asyncio.sleep(registry.beat_interval_s)
        try:
            taken = await registry.beat(smpp.confirmed_mo_id() if smpp is not None else None)
        except TemporaryFailure as exc:
            log.warning("heartbeat_skipped", reason=str(exc))
            continue
        if taken:
            gateway.metrics.instances_taken_over.inc(len(taken))
            if smpp is not None:
                smpp.notify_outbox()


async def _loop_lag_probe(metrics: GatewayMetrics) -> None:
    """How late a due timer runs: the time every MO waits behind a stall."""
    # (when, lag) of lags over 1 ms, each larger than every later one: the first is the
    # window's longest. A scan of every lag of the window instead cost about a hundred
    # steps per tick at a steady 200 MO/s (most ticks are over 1 ms late there).
    longest: deque[tuple[float, float]] = deque()
    while True:
        due = time.monotonic() + LAG_TICK_S
        await asyncio.sleep(LAG_TICK_S)
        now = time.monotonic()
        lag = max(0.0, now - due)
        metrics.loop_lag.observe(lag)
        if lag > 0.001:
            while longest and longest[-1][1] <= lag:
                longest.pop()  # never the longest again: this one outlasts it
            longest.append((now, lag))
        while longest and longest[0][0] < now - LAG_WINDOW_S:
            longest.popleft()
        metrics.loop_lag_max.set(longest[0][1] if longest else 0.0)


def freeze_startup_heap() -> None:
    """Move everything built so far (modules, the grammar's tables, SQLAlchemy's
    metadata: over 100,000 objects) out of the garbage collector's sight. They live as
    long as the process, yet every full collection walked them all: that cost 20 µs of
    CPU per MO in bench/smpp.py, 6% of the total, and is now about 1 µs.

    And collect the young generation every 10,000 net allocations instead of 700: an
    MO's objects die by reference counting, so at 700 the collector ran every dozen MO
    and found next to nothing (6 µs per MO; 0.5 µs now)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def smpp_adapter(gateway: Gateway, smpp_settings: SmppSettings) -> SmppAdapter:
    """The SMPP adapter wired to the gateway as `serve` runs it (tests and benches too):
    parts of long MO held in the database, replies woken by the outbox and handed
    straight to the bound link."""
    from adapters.db.parts import SqlPartStore
    from adapters.smpp import SmppAdapter

    adapter = SmppAdapter(
        smpp_settings,
        gateway.settings.gateway.short_number,
        gateway.pipeline,
        gateway.outbox,
        gateway.metrics,
        part_store=SqlPartStore(gateway.outbox.commits, smpp_settings.reassembly_timeout_s),
    )
    gateway.pipeline.on_reply_queued(lambda _channel: adapter.notify_outbox())
    gateway.pipeline.use_direct_sender("smpp", adapter)
    gateway.pipeline.pause_while_lingering(adapter)
    return adapter


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def ops_token_for_run(settings: Settings) -> tuple[Settings, str | None]:
    """(settings to serve with, the token made for this run or None).

    On a loopback address nobody else can reach, a missing `[ops] token` would only
    lock the person who just ran `serve` out of their own dashboard: a random token
    for this run lets them in. Anywhere else an unset token keeps the ops API shut.
    """
    if settings.ops.token:
        return settings, None
    if settings.http.host not in LOOPBACK_HOSTS:
        log.warning(
            "ops_api_closed",
            reason="no [ops] token is configured; the ops API and dashboard refuse everyone",
            host=settings.http.host,
        )
        return settings, None
    token = secrets.token_urlsafe(24)
    return settings.replace(ops={"token": token}), token


def _announce_dashboard(settings: Settings, token: str) -> None:
    """Show the one-run dashboard URL to the person at the terminal, never to the log."""
    host = f"[{settings.http.host}]" if ":" in settings.http.host else settings.http.host
    url = f"http://{host}:{settings.http.port}/login?{urlencode({'token': token})}"
    fmt = settings.gateway.log_format
    # JSON logs go to a collector, where a token would be a leaked secret; the console
    # renderer is chosen as sms_gateway.logs.configure_logging chooses it.
    if fmt == "console" or (fmt == "auto" and sys.stdout.isatty()):
        log.info("ops_token_generated", note="valid until this process stops")
        print(f"Ops dashboard (token for this run only): {url}", flush=True)
    else:
        log.warning(
            "ops_token_generated",
            note="shown only with console logs; set [ops] token to sign in",
        )


async def run_service(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    settings, one_run_token = ops_token_for_run(settings)
    gateway = await build_gateway(settings, migrate=settings.database.upgrade_on_start)
    smpp: Any = smpp_adapter(gateway, settings.smpp) if settings.smpp.enabled else None
    registry = InstanceRegistry(
        gateway.store,
        gateway.instance,
        dead_after=timedelta(seconds=settings.gateway.instance_dead_after_s),
        redelivery_window=timedelta(seconds=settings.smpp.redelivery_window_s),
        clock=utc_now,
    )

    from adapters.http import create_app

    app = create_app(
        gateway,
        link_state=lambda: smpp.state if smpp else "disabled",
        links=lambda: smpp.links_status() if smpp else [],
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port)
    tasks: list[asyncio.Task[None]] = []
    try:
        await site.start()
        # Before any bind: replies this instance had claimed before a crash go back to
        # the outbox, and its MO not known acknowledged come into doubt.
        await registry.start()
        tasks.append(asyncio.create_task(_heartbeat_loop(registry, gateway, smpp)))
        tasks.append(asyncio.create_task(_loop_lag_probe(gateway.metrics)))
        tasks.append(asyncio.create_task(_recovery_loop(gateway, smpp)))
        tasks.append(asyncio.create_task(prune_loop(gateway)))
        if smpp is not None:
            await smpp.start()
        freeze_startup_heap()
        log.info(
            "serving",
            http=f"http://{settings.http.host}:{settings.http.port}",
            instance=gateway.instance,
            smpp=settings.smpp.enabled,
            twilio=settings.twilio.enabled,
            database=settings.database.url.split("://")[0],
        )
        if one_run_token is not None:
            _announce_dashboard(settings, one_run_token)
        await stop.wait()
        log.info("stopping")
    finally:
        if smpp is not None:
            await smpp.stop(SHUTDOWN_DEADLINE_S)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(TemporaryFailure):
            await registry.retire(smpp.confirmed_mo_id() if smpp is not None else None)
        await runner.cleanup()
        await gateway.aclose()
        log.info("stopped")
