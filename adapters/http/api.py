"""The ops JSON API: the message log, an account's readings and the billing export.

    GET /api/messages?phone=&account=&outcome=&since=&limit=&cursor=
    GET /api/accounts/{account}/readings
    GET /api/readings/export?period=YYYY-MM
    GET /api/instances
    POST /api/accounts/import[?prune=true[&prune_max_share=0..1]]   text/csv: the accounts file

Every parameter is checked here and a bad one answers 400 saying what is wrong.
The cursor is the id of the last item returned: the next page holds older rows.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters.db.bulk import (
    ImportBusy,
    ImportRejected,
    PruneRefused,
    import_accounts,
    readings_csv_chunks,
)
from adapters.db.store import StoredMessage
from adapters.http.errors import BadInput, NotFound
from adapters.http.keys import GATEWAY_KEY
from adapters.http.queries import account_exists, instance_rows
from sms_gateway.domain.model import Outcome
from sms_gateway.phones import InvalidPhone, normalize_phone

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_ACCOUNT = re.compile(r"[0-9A-Z\-]{1,32}")
OUTCOMES = frozenset(str(o) for o in Outcome)
# Texts are Russian: readable UTF-8 rather than \u escapes (both are valid JSON).
_dumps = functools.partial(json.dumps, ensure_ascii=False)


def parse_phone(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        return normalize_phone(raw)
    except InvalidPhone as exc:
        raise BadInput(f"phone: not a phone number: {raw!r}") from exc


def parse_account(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    account = raw.strip().upper()
    if not _ACCOUNT.fullmatch(account):
        raise BadInput(f"account: expected up to 32 letters and digits, got {raw!r}")
    return account


def parse_outcome(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    outcome = raw.strip().lower()
    if outcome not in OUTCOMES:
        raise BadInput(f"outcome: expected one of {', '.join(sorted(OUTCOMES))}, got {raw!r}")
    return outcome


def parse_since(raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError as exc:
        raise BadInput(f"since: expected an ISO 8601 time, got {raw!r}") from exc
    # A time without an offset is read as UTC, the gateway's storage time.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_limit(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return DEFAULT_LIMIT
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadInput(f"limit: expected a whole number 1..{MAX_LIMIT}, got {raw!r}")
    return int(text)


def parse_cursor(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise BadInput(f"cursor: not a cursor this API returned: {raw!r}")
    return int(text)


def parse_period(raw: str | None) -> str:
    period = (raw or "").strip()
    if not _PERIOD.fullmatch(period):
        raise BadInput(f"period: expected YYYY-MM, got {raw!r}")
    return period


def parse_share(raw: str | None, default: float) -> float:
    if raw is None or not raw.strip():
        return default
    try:
        share = float(raw)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise BadInput(f"prune_max_share: expected a share 0..1 (0.1 = 10 %), got {raw!r}")
    return share


def message_item(message: StoredMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "channel": message.channel,
        "phone": message.phone,
        "account": message.account,
        "text": message.text,
        "outcome": message.outcome,
        "created_at": message.created_at.isoformat(),
        "reply_to": message.reply_to,
        "status": message.status,
        "transport_id": message.transport_id,
        "delivery_status": message.delivery_status,
        "error": message.error,
    }


async def list_messages(request: web.Request) -> web.Response:
    query = request.query
    phone = parse_phone(query.get("phone"))
    account = parse_account(query.get("account"))
    outcome = parse_outcome(query.get("outcome"))
    since = parse_since(query.get("since"))
    limit = parse_limit(query.get("limit"))
    cursor = parse_cursor(query.get("cursor"))
    store = request.app[GATEWAY_KEY].store
    async with store.reader() as tx:
        # One row more than asked tells whether another page exists.
        found = await tx.list_messages(
            phone=phone,
            account=account,
            outcome=outcome,
            since=since,
            before_id=cursor,
            limit=limit + 1,
        )
    page = found[:limit]
    next_cursor = str(page[-1].id) if len(found) > limit else None
    body = {"items": [message_item(m) for m in page], "next_cursor": next_cursor}
    return web.json_response(body, dumps=_dumps)


async def account_readings(request: web.Request) -> web.Response:
    account = parse_account(request.match_info["account"])
    assert account is not None
    store = request.app[GATEWAY_KEY].store
    if not await account_exists(store, account):
        raise NotFound(f"unknown account {account}")
    async with store.reader() as tx:
        history = await tx.readings_of_account(account)
        known = await tx.meters_of_account(account)
    return web.json_response(
        {"account": account, "readings": history, "meters": known}, dumps=_dumps
    )


async def export(request: web.Request) -> web.StreamResponse:
    period = parse_period(request.query.get("period"))
    chunks = readings_csv_chunks(request.app[GATEWAY_KEY].store, period)
    # The header needs no database; the first rows are read before the response
    # starts, so a database that is down is still a clean 503, not a cut-off CSV.
    header, _ = await anext(chunks)
    first, _ = await anext(chunks, ("", 0))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="readings-{period}.csv"',
        }
    )
    await response.prepare(request)
    await response.write((header + first).encode("utf-8"))
    # Later pieces stream as they are read: a big month never sits in memory. A
    # failure from here on cuts the transfer short, which the client sees as such.
    async for chunk, _rows in chunks:
        await response.write(chunk.encode("utf-8"))
    await response.write_eof()
    return response


async def list_instances(request: web.Request) -> web.Response:
    """Every `serve` on this database: which is alive, whose heartbeat stopped."""
    gateway = request.app[GATEWAY_KEY]
    rows = await instance_rows(
        gateway.store, datetime.now(UTC), gateway.settings.gateway.instance_dead_after_s
    )
    return web.json_response({"self": gateway.instance, "instances": rows}, dumps=_dumps)


async def import_accounts_file(request: web.Request) -> web.Response:
    """Billing pushes its accounts file: streamed (never held in memory), the same checks
    and all-or-nothing promise as `sms-gateway accounts import`. 200 with the counts,
    422 with the lines that are wrong or with why a prune was refused, 409 while
    another import runs. Its words are English whatever the locale, like the API's
    other errors: programs read them."""
    if request.content_type not in ("text/csv", "text/plain"):
        raise BadInput(f"expected a text/csv body, got {request.content_type or 'none'}")
    prune = request.query.get("prune", "false").lower()
    if prune not in ("true", "false", "1", "0"):
        raise BadInput(f"prune: expected true or false, got {prune!r}")
    gateway = request.app[GATEWAY_KEY]
    max_share = parse_share(
        request.query.get("prune_max_share"), gateway.settings.billing.prune_max_share
    )
    try:
        counts = await import_accounts(
            gateway.store,
            request.content.iter_any(),
            gateway.settings.gateway.account_pattern,
            datetime.now(UTC),
            prune=prune in ("true", "1"),
            prune_max_share=max_share,
        )
    except ImportRejected as rejected:
        body = {
            "error": "file rejected, nothing imported",
            "problems": [{"line": p.line, "message": p.message} for p in rejected.shown],
            "total_problems": rejected.total,
        }
        return web.json_response(body, status=422, dumps=_dumps)
    except PruneRefused as refused:
        body = {
            "error": "prune refused, nothing imported",
            "reason": refused.problems[0],
            "meters_to_close": refused.meters_to_close,
            "open_meters": refused.open_meters,
            "accounts_to_close": refused.accounts_to_close,
            "prune_max_share": refused.max_share,
            "prune_max_share_needed": refused.share_needed,
        }
        return web.json_response(body, status=422, dumps=_dumps)
    except ImportBusy as busy:
        return web.json_response({"error": str(busy) or "an import is running"}, status=409)
    return web.json_response(dataclasses.asdict(counts), dumps=_dumps)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/messages", list_messages)
    app.router.add_get("/api/accounts/{account}/readings", account_readings)
    app.router.add_get("/api/readings/export", export)
    app.router.add_get("/api/instances", list_instances)
    app.router.add_post("/api/accounts/import", import_accounts_file)
