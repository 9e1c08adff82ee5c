"""System checks: every misconfiguration that can be seen at start-up.

Ids are stable; ``docs/reference/checks.md`` lists them. Each check reads the
settings through :mod:`django_voicepassword.conf`, so the checks and the code
that runs later agree on what a setting means.

``voicepassword.E001``  ``VOICEPASSWORD`` is not a dict, or has unknown keys.
``voicepassword.E002``  a setting has the wrong type.
``voicepassword.E003``  the HTTP gateway is used without ``API_KEY``.
``voicepassword.E004``  ``API_URL`` is not an absolute http(s) URL ending in ``/``.
``voicepassword.E005``  ``GATEWAY`` cannot be imported or is not a gateway.
``voicepassword.E006``  an unknown region code or number type in the phone policy.
``voicepassword.W001``  ``API_URL`` sends the API key over plain HTTP to a host
                        that is not this machine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_voicepassword.conf import settings
from django_voicepassword.phone import NUMBER_TYPES

__all__ = ["check_settings"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_api_url(url: str) -> list[CheckMessage]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.endswith("/"):
        return [
            Error(
                f"VOICEPASSWORD['API_URL'] = {url!r} is not an absolute http(s) URL "
                "ending in '/'.",
                hint="Use the provider's https://vp.voicepassword.ru/api/voice-password/ "
                "or the emulator's http://127.0.0.1:8765/api/voice-password/.",
                id="voicepassword.E004",
            )
        ]
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return [
            Warning(
                f"VOICEPASSWORD['API_URL'] sends the API key over plain HTTP to {parts.hostname}.",
                hint="Use https:// for any host that is not this machine.",
                id="voicepassword.W001",
            )
        ]
    return []


def _check_phone_policy() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    known_regions = phonenumbers.SUPPORTED_REGIONS
    unknown = [
        code
        for code in (settings.PHONE_REGION, *settings.ALLOWED_REGIONS)
        if code not in known_regions
    ]
    if unknown:
        messages.append(
            Error(
                f"Unknown region code(s) in VOICEPASSWORD: {', '.join(sorted(set(unknown)))}.",
                hint="Use ISO 3166 codes in capitals, such as 'RU'.",
                id="voicepassword.E006",
            )
        )
    bad_types = [name for name in settings.ALLOWED_NUMBER_TYPES if name not in NUMBER_TYPES]
    if bad_types:
        messages.append(
            Error(
                "Unknown number type(s) in VOICEPASSWORD['ALLOWED_NUMBER_TYPES']: "
                f"{', '.join(sorted(bad_types))}.",
                hint="Use names of phonenumbers.PhoneNumberType, such as 'MOBILE'.",
                id="voicepassword.E006",
            )
        )
    return messages


@register(Tags.compatibility, "voicepassword")
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report every problem with ``VOICEPASSWORD`` that can be seen without a request."""
    from django_voicepassword.gateways import BaseGateway, HttpGateway

    problems = settings.problems()
    if problems:
        # Later checks would only repeat these as exceptions: report them alone.
        return [Error(p.message, id=p.check_id) for p in problems]
    messages: list[CheckMessage] = []
    gateway = settings.GATEWAY
    if not (isinstance(gateway, type) and issubclass(gateway, BaseGateway)):
        messages.append(
            Error(
                f"VOICEPASSWORD['GATEWAY'] = {gateway!r} is not a gateway class.",
                hint="Use django_voicepassword.gateways.HttpGateway, ConsoleGateway, "
                "LocmemGateway or a subclass of BaseGateway.",
                id="voicepassword.E005",
            )
        )
    elif issubclass(gateway, HttpGateway) and not settings.API_KEY:
        messages.append(
            Error(
                "VOICEPASSWORD['API_KEY'] is not set, but the HTTP gateway needs it.",
                hint="Set it from the environment (Settings → API in the provider's "
                "account), or use ConsoleGateway or LocmemGateway in development.",
                id="voicepassword.E003",
            )
        )
    messages += _check_api_url(settings.API_URL)
    messages += _check_phone_policy()
    return messages
