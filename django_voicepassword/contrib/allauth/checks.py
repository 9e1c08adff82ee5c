"""System checks of the allauth integration (``voicepassword_allauth.*``)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Warning, register
from django.utils.module_loading import import_string

__all__ = ["check_allauth_site"]

_APP = "django_voicepassword.contrib.allauth"


def _position(name: str) -> int | None:
    for index, entry in enumerate(settings.INSTALLED_APPS):
        if entry == name or entry.startswith(name + ".apps."):
            return index
    return None


@register()
def check_allauth_site(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """What would make allauth's phone flows skip this integration or leak its codes.

    - ``E001``: ``ACCOUNT_ADAPTER`` is not a ``VoicePasswordAccountAdapterMixin``:
      allauth would not call through this package at all;
    - ``W001``: the app is listed after ``allauth``: allauth's own templates
      win, and the pages say "we've sent a code" for a flash call;
    - ``W002``: sessions in signed cookies: allauth keeps the code in the
      session, and the person (or anyone with the cookie) could read it.
    """
    from django_voicepassword.contrib.allauth.adapter import VoicePasswordAccountAdapterMixin

    problems: list[Any] = []
    if not apps.is_installed("allauth.account"):
        return problems
    path = getattr(settings, "ACCOUNT_ADAPTER", "allauth.account.adapter.DefaultAccountAdapter")
    try:
        adapter = import_string(path)
    except ImportError:
        adapter = None  # allauth reports its own setting
    if adapter is not None and not (
        isinstance(adapter, type) and issubclass(adapter, VoicePasswordAccountAdapterMixin)
    ):
        problems.append(
            Error(
                "ACCOUNT_ADAPTER does not use django-voicepassword's phone hooks.",
                hint="Set ACCOUNT_ADAPTER to 'django_voicepassword.contrib.allauth.adapter."
                "VoicePasswordAccountAdapter', or put VoicePasswordAccountAdapterMixin first "
                "on your adapter's bases.",
                id="voicepassword_allauth.E001",
            )
        )
    ours, theirs = _position(_APP), _position("allauth")
    if ours is not None and theirs is not None and ours > theirs:
        problems.append(
            Warning(
                f"'{_APP}' is listed after 'allauth' in INSTALLED_APPS: allauth's own code "
                "pages are shown, which say a code was sent rather than how a flash call reads.",
                hint=f"List '{_APP}' before 'allauth'.",
                id="voicepassword_allauth.W001",
            )
        )
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.signed_cookies":
        problems.append(
            Warning(
                "allauth keeps the phone code in the session, and signed-cookie sessions "
                "are readable by whoever holds the cookie.",
                hint="Use a server-side session engine (db, cache or cached_db).",
                id="voicepassword_allauth.W002",
            )
        )
    return problems
