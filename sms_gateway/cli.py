"""The `sms-gateway` command line.

Its messages are in `[gateway] locale` (sms_gateway/texts.py); only a configuration
that cannot be read is reported in English, since it holds the locale. Machine
output (the JSON of `config check`, the CSV) is the same in every locale.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from sms_gateway.config import Settings, load_settings, masked
from sms_gateway.errors import ConfigError, GatewayError, ImportFileError, TemporaryFailure
from sms_gateway.texts import CliTexts, cli_texts

app = typer.Typer(no_args_is_help=True, add_completion=False, help="SMS meter-reading gateway")
accounts_app = typer.Typer(no_args_is_help=True, help="Accounts and meters")
readings_app = typer.Typer(no_args_is_help=True, help="Booked readings")
db_app = typer.Typer(no_args_is_help=True, help="Database schema")
config_app = typer.Typer(no_args_is_help=True, help="Configuration")
app.add_typer(accounts_app, name="accounts")
app.add_typer(readings_app, name="readings")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file (default: $SMS_GATEWAY_CONFIG or config/gateway.toml)",
    ),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def _run(coro: Any, texts: CliTexts) -> Any:
    from sms_gateway.bootstrap import SchemaOutOfDate

    try:
        return asyncio.run(coro)
    except ImportFileError as exc:
        typer.echo(str(exc), err=True)  # worded in the locale by the import
        raise typer.Exit(1) from exc
    except TemporaryFailure as exc:
        typer.echo(texts.temporary_failure.format(reason=exc), err=True)
        raise typer.Exit(75) from exc
    except SchemaOutOfDate as exc:
        current = texts.schema_at.format(revision=exc.current) if exc.current else texts.no_schema
        typer.echo(texts.schema_out_of_date.format(current=current, head=exc.head), err=True)
        raise typer.Exit(1) from exc
    except GatewayError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


def _configure_logs(settings: Settings, quiet: bool = False) -> None:
    from sms_gateway.logs import configure_logging

    if quiet:
        configure_logging("WARNING", settings.gateway.log_format)
    else:
        configure_logging(settings.gateway.log_level, settings.gateway.log_format, sys.stdout)


class _TerminalProgress:
    """Rows done, rate and time left on stderr, only when stderr is a terminal."""

    def __init__(self, what: str, texts: CliTexts) -> None:
        self.what = what
        self.texts = texts
        self.started = time.monotonic()
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        left = (total - done) / rate if rate and total else 0
        line = self.texts.progress.format(
            what=self.what,
            done=self.texts.number(done),
            total=self.texts.number(total),
            rate=self.texts.number(round(rate)),
            left=self.texts.number(round(left)),
        )
        sys.stderr.write(f"\r{line}   ")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run the service: HTTP (health, metrics, ops, Twilio) and the SMPP link."""
    settings = _settings(config)
    _configure_logs(settings)
    from sms_gateway.runner import run_service

    _run(run_service(settings), cli_texts(settings.gateway.locale))


@app.command()
def send(
    text: Annotated[str, typer.Argument(help="The SMS text")],
    from_: Annotated[str, typer.Option("--from", help="Sender phone, any usual spelling")],
    to: Annotated[str | None, typer.Option("--to", help="Short number")] = None,
    config: ConfigOption = None,
) -> None:
    """Run one SMS through the whole pipeline in-process and print the reply."""
    settings = _settings(config)
    texts = cli_texts(settings.gateway.locale)
    _configure_logs(settings, quiet=True)
    from sms_gateway.domain.model import InboundSms
    from sms_gateway.phones import InvalidPhone, normalize_phone

    try:
        phone = normalize_phone(from_)
    except InvalidPhone as exc:
        typer.echo(texts.bad_phone.format(phone=from_), err=True)
        raise typer.Exit(2) from exc

    async def _send() -> str | None:
        from sms_gateway.bootstrap import build_gateway

        gateway = await build_gateway(settings, migrate=settings.database.upgrade_on_start)
        try:
            reply = await gateway.pipeline.handle(
                InboundSms(
                    channel="cli",
                    phone=phone,
                    short_number=to or settings.gateway.short_number,
                    text=text,
                    received_at=datetime.now(UTC),
                )
            )
        finally:
            await gateway.aclose()
        if reply.text is None:
            return None
        return "\n".join([reply.text, *(text for text, _ in reply.further)])

    reply_text = _run(_send(), texts)
    typer.echo(reply_text if reply_text is not None else texts.no_reply)


@accounts_app.command("import")
def accounts_import(
    file: Annotated[Path, typer.Argument(help="Accounts CSV (UTF-8, header row)")],
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="The file lists every account: close accounts and meters it does not list",
        ),
    ] = False,
    prune_max_share: Annotated[
        float | None,
        typer.Option(
            "--prune-max-share",
            min=0.0,
            max=1.0,
            help="With --prune: refuse (import nothing) when it would close more than this "
            "share of the open meters (default [billing] prune_max_share, 0.1; 1 = no limit)",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Bring accounts, meters and phones in line with the file; a bad file is rejected whole."""
    settings = _settings(config)
    texts = cli_texts(settings.gateway.locale)
    if prune_max_share is not None and not prune:
        typer.echo(texts.max_share_alone, err=True)
        raise typer.Exit(2)
    _configure_logs(settings, quiet=True)
    stages = {
        "check": _TerminalProgress(texts.checking, texts),
        "write": _TerminalProgress(texts.writing, texts),
    }
    current: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        # One terminal line per stage: the check's line stays when the write begins.
        if current and current[-1] != stage:
            stages[current[-1]].finish()
        if not current or current[-1] != stage:
            current.append(stage)
            stages[stage].started = time.monotonic()
        stages[stage](done, total)

    async def _import() -> Any:
        from adapters.db.bulk import import_accounts
        from sms_gateway.bootstrap import build_gateway

        gateway = await build_gateway(settings, migrate=settings.database.upgrade_on_start)
        try:
            return await import_accounts(
                gateway.store,
                file,
                settings.gateway.account_pattern,
                datetime.now(UTC),
                progress=progress,
                prune=prune,
                prune_max_share=(
                    settings.billing.prune_max_share if prune_max_share is None else prune_max_share
                ),
                locale=settings.gateway.locale,
            )
        finally:
            await gateway.aclose()

    try:
        counts = _run(_import(), texts)
    finally:
        if current:
            stages[current[-1]].finish()
    numbers = texts.numbers(counts)
    for line in texts.import_counts:
        typer.echo(line.format(**numbers, seconds=texts.decimal(counts.seconds)))


@readings_app.command("export")
def readings_export(
    period: Annotated[str, typer.Option("--period", help="Billing period YYYY-MM")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="CSV file")] = None,
    config: ConfigOption = None,
) -> None:
    """Export the period's booked readings as CSV (stdout by default)."""
    settings = _settings(config)
    texts = cli_texts(settings.gateway.locale)
    _configure_logs(settings, quiet=True)
    progress = _TerminalProgress(texts.exporting, texts)

    async def _export() -> int:
        from adapters.db.bulk import export_readings
        from sms_gateway.bootstrap import build_gateway

        gateway = await build_gateway(settings, migrate=settings.database.upgrade_on_start)
        try:
            if output is None:
                return await export_readings(gateway.store, period, sys.stdout)
            with output.open("w", encoding="utf-8", newline="") as handle:
                return await export_readings(gateway.store, period, handle, progress)
        finally:
            await gateway.aclose()

    from adapters.db.bulk import BadPeriod

    try:
        written = _run(_export(), texts)
    except BadPeriod as exc:
        typer.echo(texts.bad_period.format(period=period), err=True)
        raise typer.Exit(2) from exc
    progress.finish()
    if output is not None:
        typer.echo(texts.exported.format(count=texts.number(written), path=output))


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply the Alembic migrations up to head."""
    settings = _settings(config)
    texts = cli_texts(settings.gateway.locale)
    from adapters.db.migrate import upgrade

    before, after = _run(upgrade(settings.database.url), texts)
    if before == after:
        typer.echo(texts.db_already.format(revision=after))
    elif before is None:
        typer.echo(texts.db_created.format(after=after))
    else:
        typer.echo(texts.db_upgraded.format(before=before, after=after))


@db_app.command("is-empty")
def db_is_empty(config: ConfigOption = None) -> None:
    """Exit 0 when the database has no accounts (used by `make run` to load demo data)."""
    settings = _settings(config)

    async def _count() -> int:
        from sms_gateway.bootstrap import build_gateway

        gateway = await build_gateway(settings, migrate=settings.database.upgrade_on_start)
        try:
            async with gateway.store.reader() as tx:
                return await tx.count_accounts()
        finally:
            await gateway.aclose()

    raise typer.Exit(0 if _run(_count(), cli_texts(settings.gateway.locale)) == 0 else 1)


@db_app.command("prune")
def db_prune(
    days: Annotated[
        int | None,
        typer.Option(
            "--days", min=1, help="Keep this many days (default: [database] keep_messages_days)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be pruned, delete nothing")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Prune the message log once, in batches (safe while the gateway runs); readings stay."""
    settings = _settings(config)
    _configure_logs(settings, quiet=True)
    keep_days = days if days is not None else settings.database.keep_messages_days

    async def _prune() -> Any:
        from sms_gateway.bootstrap import build_gateway
        from sms_gateway.housekeeping import prune_once

        gateway = await build_gateway(settings, migrate=settings.database.upgrade_on_start)
        try:
            return await prune_once(gateway, days=keep_days, dry_run=dry_run)
        finally:
            await gateway.aclose()

    texts = cli_texts(settings.gateway.locale)
    counts = _run(_prune(), texts)
    template = texts.would_prune if dry_run else texts.pruned
    typer.echo(template.format(days=keep_days, **texts.numbers(counts)))


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration and print the effective values, secrets masked."""
    settings = _settings(config)
    typer.echo(json.dumps(masked(settings), indent=2, ensure_ascii=False))


def main() -> None:
    app()
