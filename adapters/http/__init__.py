"""The aiohttp application: health, metrics, ops API, dashboard and the Twilio webhook."""

from adapters.http.app import create_app

__all__ = ["create_app"]
