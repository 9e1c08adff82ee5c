"""The gateway that talks to the provider over HTTP."""

from __future__ import annotations

from datetime import date

from django_voicepassword.client import (
    Balance,
    CallRecord,
    DailyReport,
    SendResult,
    VoicePasswordClient,
)
from django_voicepassword.conf import ConfigurationError, settings
from django_voicepassword.gateways.base import BaseGateway
from django_voicepassword.gateways.tracing import observe

__all__ = ["HttpGateway"]


class HttpGateway(BaseGateway):
    """Sends every request through :class:`VoicePasswordClient`, configured from settings.

    A ``client`` may be passed in (for a second account, or tests); otherwise
    one is built from ``API_KEY``, ``API_URL``, ``AUTH_MODE``, the timeouts and
    ``GET_RETRIES``.

    Every request runs inside :func:`~django_voicepassword.gateways.tracing.observe`:
    an OpenTelemetry span when ``opentelemetry-api`` is installed, and the
    ``provider_request`` signal (kind, outcome, duration) when it ends.
    """

    def __init__(self, client: VoicePasswordClient | None = None) -> None:
        if client is None:
            if not settings.API_KEY:
                raise ConfigurationError(
                    "VOICEPASSWORD['API_KEY'] is not set, but the HTTP gateway needs it."
                )
            client = VoicePasswordClient(
                settings.API_KEY,
                base_url=settings.API_URL,
                timeout=(settings.CONNECT_TIMEOUT, settings.READ_TIMEOUT),
                auth_mode="body" if settings.AUTH_MODE == "body" else "header",
                get_retries=settings.GET_RETRIES,
            )
        self.client = client

    def __repr__(self) -> str:
        return f"<HttpGateway {self.client!r}>"

    def flash_call(
        self,
        number: str,
        *,
        code: str | None = None,
        capacity: int | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Place a flash call through the provider."""
        with observe("flash_call", type(self)):
            return self.client.flash_call(
                number, code=code, capacity=capacity, callback_url=callback_url
            )

    def voice_call(
        self,
        number: str,
        *,
        code: str | None = None,
        repeat: bool = False,
        ani: str | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Place a voice call through the provider."""
        with observe("voice_call", type(self)):
            return self.client.voice_call(
                number, code=code, repeat=repeat, ani=ani, callback_url=callback_url
            )

    def sms(self, request_id: str, *, callback_url: str | None = None) -> SendResult:
        """Send the SMS fallback through the provider."""
        with observe("sms", type(self)):
            return self.client.sms(request_id, callback_url=callback_url)

    def balance(self) -> Balance:
        """Ask the provider for the balance."""
        with observe("balance", type(self)):
            return self.client.balance()

    def state(self, request_id: str) -> CallRecord:
        """Ask the provider for one request's record."""
        with observe("state", type(self)):
            return self.client.state(request_id)

    def daily(self, day: date) -> DailyReport:
        """Ask the provider for one day's records."""
        with observe("daily", type(self)):
            return self.client.daily(day)

    def close(self) -> None:
        """Close the client's connection pool."""
        self.client.close()
