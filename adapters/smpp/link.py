"""One SMPP bind: connect, bind, read, write, keep alive, reconnect.

smpplib's Client is blocking, so it connects and binds in a short-lived thread of its
own (a dead SMSC then blocks nothing). Once bound, the session lives on the event loop:
the socket is non-blocking, read by a reader callback and written when the loop's turn
ends (everything queued in one turn goes out in one `send`), and its deadlines are one
timer. An earlier design kept a thread per bind for the whole session; at a steady
200 MO/s that thread woke about four times per MO, and handing each MO to the loop and
each reply back woke the loop and the thread again: on a VM each wake-up costs tens of
microseconds of CPU, more than the SMPP work of an MO (bench/soak.py prints both).

smpplib is used for connect/bind and to build the session's PDUs; the four PDUs every
MO costs (deliver_sm, deliver_sm_resp, submit_sm, submit_sm_resp) are read and written
by `adapters.smpp.pdus`. The read loop is our own: `Client.listen()` blocks in `recv`,
and its `_message_received` answers deliver_sm synchronously, while we must answer only
once the message is stored.

Events (`LinkEvent`) reach the owner through `on_events(link, events)` on the loop, in
the order they happened: one call per chunk read from the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from asyncio import TimerHandle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog
from smpplib import client as smpplib_client
from smpplib import consts, exceptions, smpp

from adapters.smpp.pdus import (
    DATA_SM,
    DELIVER_SM,
    RESPONSE_BIT,
    SUBMIT_SM_RESP,
    DeliverSm,
    PduParseError,
    encode_deliver_sm_resp,
    encode_submit_sm,
    frame_length,
    parse_mo,
    parse_other,
    parse_submit_sm_resp,
)
from sms_gateway.config import SmppLinkSettings

log = structlog.get_logger("adapters.smpp.link")

ESME_ROK = consts.SMPP_ESME_ROK
ESME_RINVCMDID = consts.SMPP_ESME_RINVCMDID
ESME_RX_P_APPN = consts.SMPP_ESME_RX_P_APPN
ESME_RSUBMITFAIL = consts.SMPP_ESME_RSUBMITFAIL
MAX_PDU = 65536


# Events a link reports, on the event loop, in batches.
@dataclass(frozen=True, slots=True)
class Bound:
    session: int


@dataclass(frozen=True, slots=True)
class Connecting:
    attempt: int


@dataclass(frozen=True, slots=True)
class BindFailed:
    attempt: int
    error: str
    retry_in_s: float


@dataclass(frozen=True, slots=True)
class Delivered:
    session: int
    deliver: DeliverSm
    received_at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class SubmitResult:
    token: int
    status: int | None  # None: no submit_sm_resp within the response timeout
    message_id: str | None


@dataclass(frozen=True, slots=True)
class EnquireAnswered:
    """The answer to `SmppLink.enquire_link(tag)`: the SMSC has read everything
    written on this session before that enquire_link."""

    session: int
    tag: int


@dataclass(frozen=True, slots=True)
class LinkDown:
    session: int
    reason: str
    tokens: tuple[int, ...]  # submit_sm sent on this session and never answered
    clean: bool  # True after our own unbind on shutdown
    # True when the SMSC answered our unbind: it read everything we wrote, every
    # deliver_sm_resp included.
    drained: bool = False


LinkEvent = Bound | Connecting | BindFailed | Delivered | SubmitResult | EnquireAnswered | LinkDown


class _Stop(Exception):
    """How a session ended."""

    def __init__(self, reason: str, clean: bool = False, drained: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.clean = clean
        self.drained = drained


# Reading a socket with nothing more in it: plain TCP, or TLS waiting for a record.
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class SmppLink:
    """A bind (transceiver, receiver or transmitter): its session on the event loop."""

    def __init__(
        self,
        settings: SmppLinkSettings,
        mode: str,
        loop: asyncio.AbstractEventLoop,
        on_events: Callable[[SmppLink, list[LinkEvent]], None],
    ) -> None:
        self.settings = settings
        self.mode = mode  # "transceiver" | "receiver" | "transmitter"
        self.loop = loop
        self._on_events = on_events
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self.label = f"{settings.name}/{mode}"  # in logs
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._session = 0
        # The session being served: None between sessions.
        self._client: smpplib_client.Client | None = None
        self._sock: socket.socket | None = None
        self._ended: asyncio.Future[_Stop] | None = None
        self._buffer = bytearray()  # read, not yet a whole PDU
        self._out = bytearray()  # PDUs queued this turn of the loop
        self._chunk: bytes | None = None  # written in part; the socket was full
        self._write_scheduled = False
        self._writer_registered = False
        # Not reading while an inbound batch lingers (pause_reading).
        self._reads_paused = False
        self._outstanding: dict[int, tuple[int, float]] = {}  # sequence -> (token, deadline)
        self._probes: dict[int, int] = {}  # enquire_link sequence -> the caller's tag
        self._next_enquire = 0.0
        self._enquire_deadline: float | None = None
        self._unbind_deadline: float | None = None
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def receives(self) -> bool:
        return self.mode in ("transceiver", "receiver")

    @property
    def transmits(self) -> bool:
        return self.mode in ("transceiver", "transmitter")

    # ---- the owner's side --------------------------------------------------------------

    def start(self) -> None:
        self._task = self.loop.create_task(self._run(), name=f"smpp-{self.label}")

    def respond(self, delivered: Delivered, status: int) -> None:
        """Queue the answer (deliver_sm_resp or data_sm_resp) to a delivered MO; an
        answer for an earlier session is dropped (that session's SMSC side is gone)."""
        if threading.get_ident() != self._loop_thread:
            self.loop.call_soon_threadsafe(self.respond, delivered, status)
            return
        deliver = delivered.deliver
        if delivered.session != self._session or self._sock is None:
            return
        self._out += encode_deliver_sm_resp(deliver.sequence, status, deliver.response_id)
        self._schedule_write()

    def submit(self, token: int, params: dict[str, Any]) -> None:
        """Queue a submit_sm; its outcome comes back as SubmitResult(token)."""
        if threading.get_ident() != self._loop_thread:
            self.loop.call_soon_threadsafe(self.submit, token, params)
            return
        client = self._client
        if client is None or self._unbind_deadline is not None:
            # Not sent: reported as unanswered, so the reply goes back to the outbox.
            self._report_soon(SubmitResult(token, None, None))
            return
        sequence = client.next_sequence()
        try:
            self._out += encode_submit_sm(sequence, **params)
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            # Nothing an SMSC would accept: the reply fails rather than the session.
            log.error("smpp.submit_unencodable", error=str(exc), link=self.label)
            self._report_soon(SubmitResult(token, ESME_RSUBMITFAIL, None))
            return
        deadline = time.monotonic() + self.settings.response_timeout_s
        self._outstanding[sequence] = (token, deadline)
        self._arm(deadline)
        self._schedule_write()
        if self._reads_paused and len(self._outstanding) >= self.settings.window - 1:
            # Its answers free the window: read them as they come.
            self.loop.call_soon(self.resume_reading)

    def enquire_link(self, tag: int | None = None) -> None:
        """Send an enquire_link now (tests and operators use it to probe the link);
        with a tag, its answer comes back as EnquireAnswered(tag). Between sessions
        there is nothing to probe: dropped."""
        if threading.get_ident() != self._loop_thread:
            self.loop.call_soon_threadsafe(self.enquire_link, tag)
            return
        client = self._client
        if client is None:
            return
        pdu = smpp.make_pdu("enquire_link", client=client)  # a fresh sequence
        if tag is not None:
            self._probes[pdu.sequence] = tag
        self._queue_pdu(pdu)
        self._enquire_deadline = time.monotonic() + self.settings.response_timeout_s
        self._arm(self._enquire_deadline)
        self._schedule_write()

    async def stop(self, timeout_s: float) -> None:
        """Unbind cleanly (waiting up to timeout_s for unbind_resp) and end the link."""
        self._stopping = True
        self._stop_requested.set()
        if self._client is not None and self._unbind_deadline is None:
            self._send_unbind()
        task = self._task
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout_s + 1.0)
        if not task.done() and self._client is not None:
            self._end(_Stop("closed without unbind_resp", clean=True))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 2.0)
        if not task.done():
            # Still binding: the thread closes what it opens once it returns.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---- connect, bind, reconnect ------------------------------------------------------

    def _report(self, events: list[LinkEvent]) -> None:
        try:
            self._on_events(self, events)
        except Exception:
            # The owner's bug must not end the session, nor lose the events after it.
            log.exception("smpp.event_handling_failed", link=self.label)

    def _report_soon(self, event: LinkEvent) -> None:
        """After the caller's turn: an outcome its caller has yet to wait for."""
        self.loop.call_soon(self._report, [event])

    async def _run(self) -> None:
        settings = self.settings
        delay = settings.reconnect_min_s
        attempt = 0
        try:
            while not self._stopping:
                attempt += 1
                self._report([Connecting(attempt)])
                try:
                    client = await self._bind_in_thread()
                except Exception as exc:
                    error = _describe(exc)
                    self._report([BindFailed(attempt, error, delay)])
                    if await self._pause(delay):
                        break
                    delay = min(delay * 2, settings.reconnect_max_s)
                    continue
                attempt = 0
                delay = settings.reconnect_min_s
                stop = await self._serve(client)
                if stop.clean or self._stopping:
                    break
                # A lost link waits before reconnecting too, so a flapping SMSC is not
                # hammered; the delay grows if the next bind fails as well.
                if await self._pause(delay):
                    break
        finally:
            if self._client is not None:
                self._end(_Stop("link stopped", clean=True))

    async def _pause(self, delay: float) -> bool:
        """Wait `delay` seconds; True when the link was stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), delay)
        return self._stopping

    def _bind_in_thread(self) -> asyncio.Future[smpplib_client.Client]:
        """smpplib's blocking connect and bind in a thread of its own; a bind that
        comes back after nobody waits for it any more is closed there."""
        loop = self.loop
        future: asyncio.Future[smpplib_client.Client] = loop.create_future()

        def bind() -> None:
            client: smpplib_client.Client | None = None
            error: BaseException | None = None
            try:
                client = self._connect_and_bind()
            except BaseException as exc:
                error = exc

            def settle() -> None:
                if future.cancelled():
                    _close(client)
                elif error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(cast(smpplib_client.Client, client))

            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the loop is closed
                _close(client)

        threading.Thread(target=bind, name=f"smpp-bind-{self.label}", daemon=True).start()
        return future

    def _connect_and_bind(self) -> smpplib_client.Client:
        settings = self.settings
        client = smpplib_client.Client(
            settings.host,
            settings.port,
            timeout=settings.response_timeout_s,
            logger_name=f"smpplib.client.{self.mode}",
            allow_unknown_opt_params=True,
        )
        # smpplib logs every PDU as a hex dump at DEBUG: phone numbers and texts.
        # Pinned at INFO whatever the root logger says.
        client.logger.setLevel(logging.INFO)
        try:
            if settings.tls:
                client._socket = self._tls_connect()
                client.state = consts.SMPP_CLIENT_STATE_OPEN
            else:
                client.connect()
            # SMPP is request/response with small PDUs: Nagle's algorithm plus the
            # peer's delayed ACK would hold a deliver_sm_resp or submit_sm back by up
            # to 40 ms.
            client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            bind = {
                "transceiver": client.bind_transceiver,
                "receiver": client.bind_receiver,
                "transmitter": client.bind_transmitter,
            }[self.mode]
            bind(
                system_id=settings.system_id,
                password=settings.password,
                system_type=settings.system_type,
            )
        except BaseException:
            _close(client)
            raise
        return client

    def _tls_connect(self) -> ssl.SSLSocket:
        """TCP, then TLS with the server's name checked. smpplib's own wrapping calls
        wrap_socket without server_hostname, which a verifying context refuses; and it
        reports every failure as "Connection refused". Here a certificate that does
        not verify says so (BindFailed carries ssl's reason)."""
        settings = self.settings
        context = tls_context(settings)
        raw = socket.create_connection(
            (settings.host, settings.port), timeout=settings.response_timeout_s
        )
        try:
            return context.wrap_socket(
                raw, server_hostname=settings.tls_server_name or settings.host
            )
        except BaseException:
            raw.close()
            raise

    # ---- one session on the event loop -------------------------------------------------

    async def _serve(self, client: smpplib_client.Client) -> _Stop:
        """Serve a bound session until it ends; how it ended."""
        sock = client._socket  # smpplib keeps it private; from here on it is ours
        assert sock is not None
        sock.setblocking(False)
        self._session += 1
        self._client, self._sock = client, sock
        self._buffer.clear()
        self._out.clear()  # nothing from an earlier session goes out on this one
        self._chunk = None
        self._enquire_deadline = self._unbind_deadline = None
        self._reads_paused = False
        ended: asyncio.Future[_Stop] = self.loop.create_future()
        self._ended = ended
        self._next_enquire = time.monotonic() + self.settings.enquire_link_s
        self.loop.add_reader(sock.fileno(), self._readable)
        self._arm(self._next_enquire)
        self._report([Bound(self._session)])
        if self._stopping and self._client is not None and self._unbind_deadline is None:
            self._send_unbind()
        if _decrypted_waiting(sock):
            self.loop.call_soon(self._readable)  # TLS bytes decrypted during the bind
        return await ended

    def _end(self, stop: _Stop) -> None:
        """The session is over: close it, report LinkDown, let `_run` go on."""
        client, sock = self._client, self._sock
        if client is None or sock is None:
            return
        self._client = self._sock = None
        self.loop.remove_reader(sock.fileno())
        if self._writer_registered:
            self.loop.remove_writer(sock.fileno())
            self._writer_registered = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _close(client)
        tokens = tuple(token for token, _ in self._outstanding.values())
        self._outstanding.clear()
        self._probes.clear()
        self._out.clear()
        self._chunk = None
        self._report([LinkDown(self._session, stop.reason, tokens, stop.clean, stop.drained)])
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(stop)

    def pause_reading(self) -> None:
        """Read nothing until resume_reading: the SMSC's PDUs wait in the socket
        meanwhile (an inbound batch lingering for company, see sms_gateway/batching.py).
        Deadlines and writes go on."""
        sock = self._sock
        if self._reads_paused or sock is None:
            return
        self.loop.remove_reader(sock.fileno())
        self._reads_paused = True

    def resume_reading(self) -> None:
        """Read again, everything that arrived while paused first."""
        if not self._reads_paused:
            return
        self._reads_paused = False
        sock = self._sock
        if sock is not None:
            self.loop.add_reader(sock.fileno(), self._readable)
            self._readable()

    def _readable(self) -> None:
        sock, client = self._sock, self._client
        if sock is None or client is None:
            return
        events: list[LinkEvent] = []
        ending: _Stop | None = None
        try:
            while True:
                try:
                    data = sock.recv(MAX_PDU)
                except _WOULD_BLOCK:
                    break
                if not data:
                    raise _Stop("connection closed by the SMSC")
                self._take(client, data, events)
                # TLS: decrypted bytes already read off the socket, which epoll
                # cannot see; plain TCP: the next chunk on the next callback.
                if not _decrypted_waiting(sock):
                    break
        except _Stop as stop:
            ending = stop
        except (exceptions.ConnectionError, OSError) as exc:
            ending = _Stop(f"connection lost: {_describe(exc)}")
        try:
            self._flush_out()  # what the PDUs read need answered (an unbind_resp too)
        except OSError as exc:
            ending = ending or _Stop(f"connection lost: {_describe(exc)}")
        if events:
            self._report(events)
        if ending is not None:
            self._end(ending)

    def _take(self, client: smpplib_client.Client, data: bytes, events: list[LinkEvent]) -> None:
        """Frame what was read and handle every whole PDU in it."""
        buffer = self._buffer
        buffer += data
        now = time.monotonic()
        self._next_enquire = now + self.settings.enquire_link_s  # the timer looks again
        position = 0
        try:
            while True:
                length = frame_length(buffer, position)
                if length is None or len(buffer) - position < length:
                    break
                if length < 16 or length > MAX_PDU:
                    raise _Stop(f"framing error: command_length {length}")
                raw = bytes(buffer[position : position + length])
                position += length
                self._handle(client, raw, now, events)
        finally:
            del buffer[:position]

    def _tick(self) -> None:
        """The session's one timer: enquire_link, and every deadline."""
        self._timer = None
        client = self._client
        if client is None:
            return
        now = time.monotonic()
        if self._unbind_deadline is not None and now >= self._unbind_deadline:
            self._end(_Stop("no unbind_resp in time", clean=True))
            return
        if self._enquire_deadline is not None and now >= self._enquire_deadline:
            self._end(_Stop("enquire_link not answered in time"))
            return
        if (
            self._enquire_deadline is None
            and self._unbind_deadline is None
            and now >= self._next_enquire
        ):
            self._queue_pdu(smpp.make_pdu("enquire_link", client=client))
            self._enquire_deadline = now + self.settings.response_timeout_s
            self._next_enquire = now + self.settings.enquire_link_s
            self._schedule_write()
        events: list[LinkEvent] = []
        while self._outstanding:
            sequence, (token, deadline) = next(iter(self._outstanding.items()))
            if deadline > now:
                break
            del self._outstanding[sequence]
            events.append(SubmitResult(token, None, None))
        self._arm(self._next_wake())
        if events:
            self._report(events)

    def _next_wake(self) -> float:
        wake_at = self._next_enquire
        for deadline in (self._enquire_deadline, self._unbind_deadline):
            if deadline is not None:
                wake_at = min(wake_at, deadline)
        if self._outstanding:
            # Oldest first: dict order is send order and deadlines only grow.
            wake_at = min(wake_at, next(iter(self._outstanding.values()))[1])
        return wake_at

    def _arm(self, at: float) -> None:
        """The timer fires at `at` or earlier (it looks at every deadline when it does)."""
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        # The loop's clock is time.monotonic(), as every deadline here.
        self._timer = self.loop.call_at(at, self._tick)

    # ---- writing ---------------------------------------------------------------------

    def _queue_pdu(self, pdu: Any) -> None:
        """A PDU built by smpplib, after what is queued: the SMSC sees them in order."""
        self._out += pdu.generate()

    def _schedule_write(self) -> None:
        """Everything queued in this turn of the loop goes out in one send after it."""
        if not self._write_scheduled and not self._writer_registered:
            self._write_scheduled = True
            self.loop.call_soon(self._write_turn)

    def _write_turn(self) -> None:
        self._write_scheduled = False
        try:
            self._flush_out()
        except OSError as exc:
            self._end(_Stop(f"connection lost: {_describe(exc)}"))

    def _writable(self) -> None:
        sock = self._sock
        if sock is not None and self._writer_registered:
            self.loop.remove_writer(sock.fileno())
            self._writer_registered = False
        self._write_turn()

    def _flush_out(self) -> None:
        """Send what is queued; what the socket cannot take now waits for it to drain
        (TLS needs a write that could not finish retried with the same bytes)."""
        sock = self._sock
        if sock is None or self._writer_registered:
            return
        while True:
            if self._chunk is None:
                if not self._out:
                    return
                self._chunk, self._out = bytes(self._out), bytearray()
            try:
                sent = sock.send(self._chunk)
            except _WOULD_BLOCK:
                sent = 0
            if sent < len(self._chunk):
                if sent:
                    self._chunk = self._chunk[sent:]
                self.loop.add_writer(sock.fileno(), self._writable)
                self._writer_registered = True
                return
            self._chunk = None

    def _send_unbind(self) -> None:
        client = self._client
        assert client is not None
        self._queue_pdu(smpp.make_pdu("unbind", client=client))
        self._unbind_deadline = time.monotonic() + self.settings.response_timeout_s
        self._arm(self._unbind_deadline)
        self._schedule_write()

    def _queue_response(
        self, client: smpplib_client.Client, command: str, sequence: int, status: int
    ) -> None:
        pdu = smpp.make_pdu(command, client=client, status=status)
        pdu.sequence = sequence  # smpplib would otherwise stamp its own next sequence
        self._queue_pdu(pdu)

    # ---- reading ---------------------------------------------------------------------

    def _handle(
        self, client: smpplib_client.Client, raw: bytes, now: float, events: list[LinkEvent]
    ) -> None:
        command_id = int.from_bytes(raw[4:8], "big")
        if command_id in (DELIVER_SM, DATA_SM):  # the hot path, without smpplib
            try:
                deliver = parse_mo(raw)
            except PduParseError as exc:
                log.error("smpp.deliver_sm_unreadable", error=str(exc), link=self.label)
                response_id = command_id | RESPONSE_BIT
                self._out += encode_deliver_sm_resp(exc.sequence, ESME_RX_P_APPN, response_id)
                return
            events.append(Delivered(self._session, deliver, now))
            return
        if command_id == SUBMIT_SM_RESP:
            sequence, status, message_id = parse_submit_sm_resp(raw)
            entry = self._outstanding.pop(sequence, None)
            if entry is not None:
                events.append(SubmitResult(entry[0], status, message_id))
            return
        try:
            pdu: Any = parse_other(raw, client)
        except PduParseError as exc:
            log.warning("smpp.pdu_unreadable", error=str(exc), link=self.label)
            if not exc.command_id & RESPONSE_BIT:  # a request: it must be answered
                self._queue_response(client, "generic_nack", exc.sequence, ESME_RINVCMDID)
            return
        command: str = pdu.command
        if command == "generic_nack":
            entry = self._outstanding.pop(pdu.sequence, None)
            if entry is not None:
                events.append(SubmitResult(entry[0], pdu.status, None))
            else:
                log.warning("smpp.generic_nack", status=pdu.status, link=self.label)
        elif command == "enquire_link":
            self._queue_response(client, "enquire_link_resp", pdu.sequence, ESME_ROK)
        elif command == "enquire_link_resp":
            self._enquire_deadline = None
            tag = self._probes.pop(pdu.sequence, None)
            if tag is not None:
                events.append(EnquireAnswered(self._session, tag))
        elif command == "unbind":
            # smpplib does not answer unbind by itself.
            self._queue_response(client, "unbind_resp", pdu.sequence, ESME_ROK)
            raise _Stop("unbound by the SMSC")
        elif command == "unbind_resp":
            if self._unbind_deadline is not None:
                raise _Stop("unbound", clean=True, drained=True)
        elif command == "alert_notification":
            pass  # no response is defined for alert_notification
        elif not pdu.is_response():
            self._queue_response(client, "generic_nack", pdu.sequence, ESME_RINVCMDID)


def tls_context(settings: SmppLinkSettings) -> ssl.SSLContext:
    """The client side of SMPP over TLS: TLS 1.2 at least, the server's certificate
    verified (the system's CAs, or tls_ca_file), its name too unless switched off."""
    context = ssl.create_default_context(cafile=settings.tls_ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.tls_verify_hostname
    if settings.tls_cert_file:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
    return context


def _decrypted_waiting(sock: socket.socket) -> bool:
    """TLS: bytes already read off the socket and decrypted, which epoll cannot see."""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def _close(client: smpplib_client.Client | None) -> None:
    if client is None:
        return
    # disconnect() warns when still "bound"; the session is over either way.
    client.state = consts.SMPP_CLIENT_STATE_OPEN
    with contextlib.suppress(OSError):
        client.disconnect()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, exceptions.PDUError) and len(exc.args) > 1:
        status = exc.args[1]
        return f"{consts.DESCRIPTIONS.get(status, 'status')} (0x{status:08x})"
    return str(exc) or type(exc).__name__
