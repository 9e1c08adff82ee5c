"""The fraud guard's decisions in the admin: blocked prefixes with their evidence.

Staff see each block with the figures that made it (codes sent and confirmed
in the window, the baseline they were compared with), lift blocks, allow-list
a prefix or a country (the guard never blocks it again while the row exists),
and add an allow-list entry before any block. The evidence is read-only;
only ``allow_listed`` can be changed by hand. Every change is told to the
cache (:func:`~django_voicepassword.fraud.forget`), where sends read the
decision. The user who lifted a block is shown as the other records show
users (masked when the username is a number; see :mod:`.privacy`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_voicepassword import fraud
from django_voicepassword.admin.common import RecordAdmin, display_user
from django_voicepassword.models import PrefixBlock

if TYPE_CHECKING:
    _ModelForm = forms.ModelForm[PrefixBlock]
else:
    _ModelForm = forms.ModelForm

__all__ = ["PrefixBlockAdmin", "PrefixBlockForm"]

_DIGITS = re.compile(r"[0-9]{1,16}")
_REGION = re.compile(r"[A-Z]{2}|\+[0-9]{1,3}")


class PrefixBlockForm(_ModelForm):
    """An allow-list entry added by hand: a prefix (digits) or a whole country."""

    class Meta:
        model = PrefixBlock
        fields = ("prefix", "country", "allow_listed")

    def clean(self) -> dict[str, Any]:
        """A prefix of digits, a region code such as ``RU``; at least one of them."""
        data = super().clean() or {}
        if "prefix" not in self.fields:
            return data  # a decision's page: only allow_listed is a field
        prefix = (data.get("prefix") or "").strip()
        country = (data.get("country") or "").strip().upper()
        if prefix and not _DIGITS.fullmatch(prefix):
            self.add_error(
                "prefix", _("A prefix is the first digits of numbers, such as 7999000.")
            )
        if country and not _REGION.fullmatch(country):
            self.add_error("country", _("A country is a region code such as RU."))
        if not prefix and not country:
            raise forms.ValidationError(_("Give a prefix, a country, or both."))
        if prefix and not country:
            country = fraud.country_of(prefix.ljust(11, "0"))
        data["prefix"], data["country"] = prefix, country
        return data


@admin.register(PrefixBlock)
class PrefixBlockAdmin(RecordAdmin):
    """Blocked prefixes and countries, their evidence, and the allow-list."""

    form = PrefixBlockForm
    list_display = (
        "created_at",
        "prefix_column",
        "country",
        "started",
        "confirmed",
        "rate_column",
        "baseline_column",
        "state_column",
        "lifted_by_column",
    )
    list_display_links = ("created_at",)
    list_filter = ("allow_listed", "country", "created_at")
    list_select_related = ("lifted_by",)
    search_fields = ("=prefix", "=country")
    search_help_text = _("A prefix (its digits) or a region code such as RU.")
    sortable_by = ("created_at",)
    actions = ("lift_blocks", "allow_list")
    evidence = (
        "prefix_column",
        "country",
        "started",
        "confirmed",
        "rate_column",
        "baseline_column",
        "window",
        "created_at",
        "blocked_until",
        "lifted_at",
        "lifted_by_column",
        "state_column",
    )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        """A new row: the prefix or country to allow-list; a decision: its evidence."""
        if obj is None:
            return ["prefix", "country", "allow_listed"]
        return [*self.evidence, "allow_listed"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        """The evidence is never edited; only ``allow_listed`` is."""
        return () if obj is None else self.evidence

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A row added by hand is an allow-list entry."""
        return {"allow_listed": True}

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Staff with the model's add permission may allow-list a prefix."""
        return admin.ModelAdmin.has_add_permission(self, request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Staff with the change permission lift blocks and allow-list."""
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Deleting a row ends its allow-listing (the evidence of a block goes with it)."""
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def save_model(self, request: HttpRequest, obj: PrefixBlock, form: Any, change: bool) -> None:
        """Save, then let the sends see it (the cache keeps the decisions)."""
        if obj.allow_listed and obj.lifted_at is None and obj.blocked_until is not None:
            obj.lifted_at, obj.lifted_by = timezone.now(), request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        fraud.forget(obj)

    def delete_model(self, request: HttpRequest, obj: PrefixBlock) -> None:
        """Delete, then forget what the cache holds for its prefix."""
        super().delete_model(request, obj)
        fraud.forget(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PrefixBlock]) -> None:
        """Delete, then forget what the cache holds for each prefix."""
        rows = list(queryset)
        super().delete_queryset(request, queryset)
        for row in rows:
            fraud.forget(row)

    @admin.action(description=_("Lift the selected blocks"), permissions=["change"])
    def lift_blocks(self, request: HttpRequest, queryset: QuerySet[PrefixBlock]) -> None:
        """Lift each block now; the prefix's counts start again from zero."""
        rows = [row for row in queryset if row.lifted_at is None and not row.allow_listed]
        for row in rows:
            fraud.lift(row, request.user)  # type: ignore[arg-type]
        self.message_user(
            request,
            ngettext("%(count)d block lifted.", "%(count)d blocks lifted.", len(rows))
            % {"count": len(rows)},
            messages.SUCCESS,
        )

    @admin.action(
        description=_("Allow-list the selected prefixes (never block them)"),
        permissions=["change"],
    )
    def allow_list(self, request: HttpRequest, queryset: QuerySet[PrefixBlock]) -> None:
        """Lift each block and allow-list its prefix or country."""
        rows = list(queryset)
        for row in rows:
            fraud.lift(row, request.user, allow_list=True)  # type: ignore[arg-type]
        self.message_user(
            request,
            ngettext(
                "%(count)d prefix allow-listed.", "%(count)d prefixes allow-listed.", len(rows)
            )
            % {"count": len(rows)},
            messages.SUCCESS,
        )

    @admin.display(description=_("prefix"))
    def prefix_column(self, obj: PrefixBlock) -> str:
        """The prefix as ``+7 999000…``; a dash for a whole country."""
        return f"+{obj.prefix}…" if obj.prefix else "—"

    @admin.display(description=_("confirmation rate"))
    def rate_column(self, obj: PrefixBlock) -> str:
        """Confirmed out of sent, as a percentage."""
        if not obj.started:
            return "—"
        return f"{round(100 * obj.confirmed / obj.started)} %"

    @admin.display(description=_("baseline"))
    def baseline_column(self, obj: PrefixBlock) -> str:
        """The rest of the site's rate it was compared with, as a percentage."""
        return "—" if obj.baseline is None else f"{round(100 * obj.baseline)} %"

    @admin.display(description=_("state"))
    def state_column(self, obj: PrefixBlock) -> str:
        """Blocked, lifted, over or allow-listed."""
        if obj.allow_listed:
            return str(_("allow-listed"))
        if obj.lifted_at is not None:
            return str(_("lifted"))
        if obj.in_force:
            return str(_("blocked"))
        return str(_("over"))

    @admin.display(description=_("lifted by"))
    def lifted_by_column(self, obj: PrefixBlock) -> SafeString | str:
        """The staff member who lifted it, shown as users are shown elsewhere."""
        return display_user(obj, obj.lifted_by)
