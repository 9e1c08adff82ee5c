"""Phone verifications and login attempts in the admin: read-only, no digests shown."""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from django_voicepassword.admin.calls import CallColumns
from django_voicepassword.admin.changelist import CountTexts
from django_voicepassword.admin.common import (
    RecordAdmin,
    RecordInline,
    display_number,
    display_user,
    exact_search,
)
from django_voicepassword.admin.insights import InsightsMixin
from django_voicepassword.models import Call, Challenge

__all__ = ["ChallengeAdmin"]


class ChallengeCallInline(CallColumns, RecordInline):
    """The calls that sent a challenge's codes, on the challenge's page."""

    model = Call
    fk_name = "challenge"
    fields = ("number_column", "channel", "status_column", "price_column", "created_at")
    readonly_fields = fields


@admin.register(Challenge)
class ChallengeAdmin(InsightsMixin, RecordAdmin):
    """Challenges as they stand; the code and session digests are never shown.

    The insights page (:mod:`.insights`) is at ``insights/`` below the list.
    """

    change_list_template = "admin/voicepassword/challenge/change_list.html"

    list_display = (
        "created_at",
        "number_column",
        "purpose",
        "channel",
        "attempts_column",
        "sends",
        "expires_at",
        "verified_at",
        "user_column",
    )
    list_display_links = ("created_at",)
    count_texts = CountTexts(
        exact=ngettext_lazy("%(count)s challenge", "%(count)s challenges", "n"),
        about=ngettext_lazy("about %(count)s challenge", "about %(count)s challenges", "n"),
        or_more=ngettext_lazy("%(count)s or more challenges", "%(count)s or more challenges", "n"),
    )
    list_filter = ("purpose", "channel", "created_at")
    list_select_related = ("user",)
    sortable_by = ("created_at",)
    search_fields = ("=number", "=id")
    search_help_text = _("A phone number in any spelling, or a challenge id.")
    masked_search_help_text = _(
        "A challenge id. Searching by phone number needs the permission to see full numbers."
    )
    # code_digest and session_digest are left out on purpose: an HMAC of a
    # four-digit code is as good as the code to whoever holds the key.
    fields = (
        "id",
        "number_column",
        "purpose",
        "channel",
        "code_length",
        "attempts_column",
        "sends",
        "created_at",
        "resend_at",
        "expires_at",
        "verified_at",
        "user_column",
    )
    readonly_fields = fields
    inlines = (ChallengeCallInline,)

    @admin.display(description=_("number"))
    def number_column(self, obj: Challenge) -> str:
        """The number, masked unless the request may see it in full."""
        return display_number(obj, obj.number)

    @admin.display(description=_("user"))
    def user_column(self, obj: Challenge) -> SafeString | str:
        """The user, masked like a number when the username is one."""
        return display_user(obj, obj.user)

    @admin.display(description=_("attempts"))
    def attempts_column(self, obj: Challenge) -> str:
        """Codes entered out of those allowed."""
        return f"{obj.attempts} / {obj.max_attempts}"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Challenge], search_term: str
    ) -> tuple[QuerySet[Challenge], bool]:
        """Challenges whose number (any spelling) or id equals the term exactly.

        The number only for a request that may see full numbers (see
        ``CallAdmin.get_search_results``).
        """
        term = search_term.strip()
        try:
            challenge_id = uuid.UUID(term)
        except ValueError:
            number_field = "number" if self.searches_numbers(request) else None
            return exact_search(queryset, term, number_field=number_field), False
        # A UUID is never a phone number; its usual spelling (36 characters)
        # is longer than exact_search's ids.
        return queryset.filter(id=challenge_id), False
