"""The gateway's own errors.

    GatewayError
    ├── ConfigError                 bad configuration; every problem listed at once
    ├── ImportFileError             a bad accounts CSV (every bad line listed) or a prune
    │                               that would close too much; nothing imported
    └── TemporaryFailure            infrastructure is unavailable (database down, shutting
        │                           down, queue full); SMPP answers ESME_RX_T_APPN so the
        │                           SMSC redelivers, HTTP answers 503
        └── StoreUnavailable        the database could not durably store or read

Errors the subscriber must fix are not exceptions: they are `Outcome` codes with a
reply template (sms_gateway.domain.replies).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class ImportFileError(GatewayError):
    """`heading` ("file rejected, nothing imported:"), then a line per problem, both
    in the words of the locale the import was given."""

    def __init__(self, heading: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(heading + "\n" + "\n".join(problems))


class TemporaryFailure(GatewayError):
    """The message could not be taken now; the sender should retry later."""


class StoreUnavailable(TemporaryFailure):
    """The database did not answer or refused the write."""
