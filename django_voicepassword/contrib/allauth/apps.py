"""The app config of the allauth integration: its model, templates and checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VoicePasswordAllauthConfig(AppConfig):
    """The allauth integration; listed before ``allauth`` in ``INSTALLED_APPS``."""

    name = "django_voicepassword.contrib.allauth"
    label = "voicepassword_allauth"
    verbose_name = _("VoicePassword for allauth")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks (``voicepassword_allauth.*``)."""
        from django_voicepassword.contrib.allauth import checks  # noqa: F401
