"""The device in the admin, beside django-otp's own devices.

Registered on ``admin.site``, as django-otp's plugins register theirs, so a
site whose admin is django-otp's ``OTPAdminSite`` (``admin.site.__class__ =
OTPAdminSite``) shows it too. Numbers follow the package's admin privacy
rule: in full only to staff with ``voicepassword.view_full_number``; others
see them masked and cannot edit them. The stored HMAC of the code is never
shown.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.exceptions import AlreadyRegistered
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.admin import user_model_search_fields

from django_voicepassword.admin.privacy import (
    can_see_full_numbers,
    show_number,
    shows_full_numbers,
    with_visibility,
)
from django_voicepassword.contrib.otp.models import VoicePasswordDevice

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

    _ModelAdmin = admin.ModelAdmin[VoicePasswordDevice]
else:
    _ModelAdmin = admin.ModelAdmin

__all__ = ["VoicePasswordDeviceAdmin"]


class VoicePasswordDeviceAdmin(_ModelAdmin):
    """:class:`~django.contrib.admin.ModelAdmin` of :class:`VoicePasswordDevice`."""

    list_display = [
        "user",
        "name",
        "shown_number",
        "channel",
        "confirmed",
        "created_at",
        "last_used_at",
    ]
    list_filter = ["channel", "confirmed", "created_at", "last_used_at"]
    raw_id_fields = ["user"]
    # The user's fields only: a search by number would tell its digits to
    # staff who may not see them (admin/privacy.py).
    search_fields, search_help_text = user_model_search_fields(["username", "email"])
    readonly_fields = [
        "created_at",
        "last_used_at",
        "code_pending",
        "throttling_failure_count",
        "throttling_failure_timestamp",
        "last_generated_timestamp",
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """Identity, the number and channel, and (read only) what django-otp keeps."""
        number = "number" if can_see_full_numbers(request) else "shown_number"
        return [
            (_("Identity"), {"fields": ["user", "name", "confirmed"]}),
            (_("Calls"), {"fields": [number, "channel"]}),
            (
                _("State"),
                {
                    "fields": [
                        "code_pending",
                        "last_generated_timestamp",
                        "throttling_failure_count",
                        "throttling_failure_timestamp",
                        "created_at",
                        "last_used_at",
                    ]
                },
            ),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """The number is read only (and masked) for staff who may not see it."""
        fields = list(super().get_readonly_fields(request, obj))
        if not can_see_full_numbers(request):
            fields.append("shown_number")
        return fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[VoicePasswordDevice]:
        """The rows, carrying whether this request may see full numbers."""
        return with_visibility(super().get_queryset(request), request)

    @admin.display(description=_("phone number"))
    def shown_number(self, obj: VoicePasswordDevice) -> str:
        """The device's number (masked unless allowed), or where it is read from."""
        if not obj.number:
            return str(_("the user's own"))
        return show_number(obj.number, full=shows_full_numbers(obj))

    @admin.display(description=_("code pending"), boolean=True)
    def code_pending(self, obj: VoicePasswordDevice) -> bool:
        """Whether a code was sent that can still be entered (never the code)."""
        return bool(obj.token) and obj.valid_until > timezone.now()


# Imported twice by some admin set-ups (django-otp's plugins guard it alike).
with contextlib.suppress(AlreadyRegistered):
    admin.site.register(VoicePasswordDevice, VoicePasswordDeviceAdmin)
