"""Checking `X-Twilio-Signature` against the public URLs Twilio posts to.

Twilio signs the URL it requested plus the sorted form parameters with the account's
auth token. Behind a proxy the URL the gateway sees differs from the one Twilio used,
so the check always runs against `[twilio] public_url` (the inbound SMS webhook), and
status callbacks against its sibling `status` URL, which is the URL the gateway itself
hands Twilio in every reply (see `status_callback_url`).

During a token rotation `[twilio] previous_auth_token` is accepted too, so webhooks
signed before and after the promotion of the new token both pass.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from twilio.request_validator import RequestValidator, get_signature_algorithm

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

# The query parameter that carries our reply row's id through Twilio and back.
REPLY_PARAMETER = "reply"


class TwilioSignature:
    """The public URLs of the Twilio endpoints and the signature check for them."""

    def __init__(self, auth_token: str, public_url: str, previous_auth_token: str = "") -> None:
        if not auth_token:
            # Never run an unauthenticated webhook: anyone could book readings.
            raise ValueError("the Twilio auth token is empty")
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the Twilio public URL is not an absolute URL: {public_url!r}")
        self._validator = RequestValidator(auth_token)
        self._previous = RequestValidator(previous_auth_token) if previous_auth_token else None
        self.sms_url = public_url
        # Relative to the webhook so a proxy prefix (https://host/gw/twilio/sms) is kept.
        self.status_url = urljoin(public_url, "status")

    def status_callback_url(self, reply_id: int) -> str:
        """The URL Twilio reports the delivery of reply `reply_id` to."""
        return f"{self.status_url}?{REPLY_PARAMETER}={reply_id}"

    def public_status_url(self, raw_query: str) -> str:
        """The URL Twilio requested for a status callback whose query string is `raw_query`."""
        return f"{self.status_url}?{raw_query}" if raw_query else self.status_url

    def is_valid(
        self,
        url: str,
        params: Mapping[str, Any],
        signature: str | None,
        settings_header: str | None = None,
    ) -> bool:
        if not signature:
            return False
        algorithm = get_signature_algorithm(settings_header)
        validators = (
            [self._validator] if self._previous is None else [self._validator, self._previous]
        )
        return any(_signed_by(v, url, params, signature, algorithm) for v in validators)

    def sign(self, url: str, params: Mapping[str, Any]) -> str:
        """The signature Twilio would send (for tests, benchmarks and local tools)."""
        return str(self._validator.compute_signature(url, params))


def _signed_by(
    validator: RequestValidator,
    url: str,
    params: Mapping[str, Any],
    signature: str,
    algorithm: Any,
) -> bool:
    # Twilio signs the URL exactly as configured, so one HMAC over it settles a
    # genuine request; only a mismatch pays for RequestValidator.validate, which
    # also tries the URL with and without an explicit port.
    try:
        expected = validator.compute_signature(url, params, algorithm)
    except ValueError:
        expected = ""  # an algorithm the library does not know: validate() says no
    if expected and hmac.compare_digest(expected.encode(), signature.encode()):
        return True
    return bool(validator.validate(url, params, signature, algorithm))
