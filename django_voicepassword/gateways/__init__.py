"""Gateways: how the services reach the provider.

One protocol (:class:`BaseGateway`), three implementations, chosen by the
``GATEWAY`` setting:

- :class:`HttpGateway` talks to the real API (or the emulator) through
  :class:`~django_voicepassword.client.VoicePasswordClient`;
- :class:`ConsoleGateway` places nothing and prints what it would send, for
  development;
- :class:`LocmemGateway` places nothing and records every request in
  ``django_voicepassword.outbox``, like ``django.core.mail.outbox``, for tests.

Services call :func:`get_gateway`; interfaces never call a gateway directly.
"""

from __future__ import annotations

from django_voicepassword.gateways.base import BaseGateway, get_gateway
from django_voicepassword.gateways.http import HttpGateway
from django_voicepassword.gateways.offline import ConsoleGateway, LocmemGateway, OutboxMessage

__all__ = [
    "BaseGateway",
    "ConsoleGateway",
    "HttpGateway",
    "LocmemGateway",
    "OutboxMessage",
    "get_gateway",
]
