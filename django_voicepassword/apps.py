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
        """Register the system checks and the receivers (a login's number, workflows, figures)."""
        from django_voicepassword import checks, workflow  # noqa: F401  (register on import)
        from django_voicepassword.auth_backends import connect_signals
        from django_voicepassword.dashboard import forget_closed_days
        from django_voicepassword.signals import call_status_changed

        connect_signals()
        call_status_changed.connect(
            forget_closed_days, sender=self.get_model("Call"), dispatch_uid="voicepassword-days"
        )
