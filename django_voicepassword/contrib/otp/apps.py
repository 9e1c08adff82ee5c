"""Django's entry point for the django-otp device."""

from __future__ import annotations

from django.apps import AppConfig, apps
from django.utils.translation import gettext_lazy as _

__all__ = ["VoicePasswordOTPConfig"]


class VoicePasswordOTPConfig(AppConfig):
    """The ``voicepassword_otp`` app: the device model and its admin."""

    name = "django_voicepassword.contrib.otp"
    label = "voicepassword_otp"
    verbose_name = _("VoicePassword OTP")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Offer the flash call among django-two-factor-auth's methods when it is installed."""
        if apps.is_installed("two_factor"):
            from django_voicepassword.contrib.otp.twofactor import register

            register()
