"""Sending replies through Twilio's REST API (`[twilio] reply_mode = "rest"`).

Used where the reply is not given inline as TwiML. The official client runs on its
aiohttp-based `AsyncTwilioHttpClient`, so sending never blocks the event loop.
Failures leave this module as our own errors: `TemporaryFailure` when trying again
later may help (network, 429, 5xx), `TwilioRejected` when Twilio refused the message.
"""

from __future__ import annotations

import logging

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from sms_gateway.errors import GatewayError, TemporaryFailure

# The client logs every request, with the recipient and the text, at INFO; those are
# subscribers' personal data, so its logger only lets warnings through.
_http_log = logging.getLogger("adapters.twilio.rest.http")
_http_log.setLevel(logging.WARNING)

SEND_TIMEOUT_S = 10.0


class TwilioRejected(GatewayError):
    """Twilio refused the message (bad number, blocked, account problem)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TwilioRestSender:
    """`send()` one SMS through Twilio's Messages resource; `aclose()` when done."""

    def __init__(self, account_sid: str, auth_token: str, api_base_url: str | None = None) -> None:
        if not account_sid or not auth_token:
            raise ValueError("reply_mode = rest needs [twilio] account_sid and auth_token")
        self._http = AsyncTwilioHttpClient(timeout=SEND_TIMEOUT_S, logger=_http_log)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        if api_base_url is not None:
            # Tests point the client at a local server; production uses api.twilio.com.
            self._client.api.base_url = api_base_url

    async def send(self, to: str, from_: str, body: str, status_callback: str | None = None) -> str:
        """Create the outbound message; returns Twilio's MessageSid."""
        try:
            if status_callback is None:
                message = await self._client.messages.create_async(to=to, from_=from_, body=body)
            else:
                message = await self._client.messages.create_async(
                    to=to, from_=from_, body=body, status_callback=status_callback
                )
        except TwilioRestException as exc:
            if exc.status == 429 or exc.status >= 500:
                raise TemporaryFailure(f"twilio answered {exc.status}") from exc
            raise TwilioRejected(f"twilio refused the message: {exc.msg}", exc.code) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryFailure(f"twilio unreachable: {exc.__class__.__name__}") from exc
        if not message.sid:
            raise TemporaryFailure("twilio answered without a MessageSid")
        return str(message.sid)

    async def aclose(self) -> None:
        await self._http.close()
