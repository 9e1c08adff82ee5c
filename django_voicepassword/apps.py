"""Django's entry point for the app."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

__all__ = ["VoicePasswordConfig"]


class VoicePasswordConfig(AppConfig):
    """The ``voicepassword`` app."""

    name = "django_voicepassword"
    label = "voicepassword"
    verbose_name = _("VoicePassword")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks and the receivers (a login's number, workflows)."""
        from django_voicepassword import checks, workflow  # noqa: F401  (register on import)
        from django_voicepassword.auth_backends import connect_signals

        connect_signals()
