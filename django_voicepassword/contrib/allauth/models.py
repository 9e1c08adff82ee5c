"""The numbers allauth has given a user but nobody has proved yet."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_voicepassword.phone import mask

__all__ = ["PendingPhoneNumber"]


class PendingPhoneNumber(models.Model):
    """A number allauth set for a user without verifying it (a sign-up before its code).

    Kept apart from :class:`~django_voicepassword.models.PhoneNumber`, which
    holds proven numbers only: a pending number finds no user
    (``get_user_by_phone``) and is not unique, since anyone may type anyone's
    number; the first to enter the code gets it, as with the package's own
    verification. One per user, as allauth knows one number per user.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="voicepassword_pending_number",
    )
    number = models.CharField(_("number"), max_length=16, help_text=_("In the provider's form."))
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    # Declared: the type checker reads the test settings, without this app.
    objects: ClassVar[models.Manager[PendingPhoneNumber]] = models.Manager()

    class Meta:
        verbose_name = _("unverified phone number")
        verbose_name_plural = _("unverified phone numbers")

    def __str__(self) -> str:
        return mask(self.number)
