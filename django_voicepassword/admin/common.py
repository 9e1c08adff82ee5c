"""What the app's model admins share: read-only records, exact search, masked numbers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_voicepassword.admin.changelist import CappedChangeList
from django_voicepassword.admin.paginator import CappedCountPaginator
from django_voicepassword.admin.privacy import (
    show_number,
    show_user,
    shows_full_numbers,
    with_visibility,
)
from django_voicepassword.phone import InvalidPhoneNumber, normalize

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
    _TabularInline = admin.TabularInline[Any, Any]
else:
    _ModelAdmin = admin.ModelAdmin
    _TabularInline = admin.TabularInline

__all__ = ["RecordAdmin", "RecordInline", "display_number", "display_user", "exact_search"]

_M = TypeVar("_M", bound=Model)

#: The stylesheet of the badges, totals, dashboard and charts.
STYLESHEET = "voicepassword/admin/admin.css"

#: Longest term read as an id (the provider's request ids are at most 32 characters).
MAX_ID_LENGTH = 32


def exact_search(
    queryset: QuerySet[_M],
    term: str,
    *,
    number_field: str | None = None,
    id_fields: tuple[str, ...] = (),
) -> QuerySet[_M]:
    """Rows whose number or id equals ``term``: an index lookup, never ``icontains``.

    ``term`` is read as a phone number in any spelling (``normalize`` without
    the site's region and type policy, so that any stored number is found) and
    as an id (one word of at most 32 characters). A term that is neither
    matches nothing. An empty term matches everything.
    """
    term = term.strip()
    if not term:
        return queryset
    condition = Q()
    if number_field:
        try:
            number = normalize(term, enforce_policy=False)
        except InvalidPhoneNumber:
            pass
        else:
            condition |= Q(**{number_field: number})
    if len(term) <= MAX_ID_LENGTH and not any(char.isspace() for char in term):
        for field in id_fields:
            condition |= Q(**{field: term})
    if not condition:
        return queryset.none()
    return queryset.filter(condition)


def display_number(obj: Any, number: str) -> str:
    """``number`` masked or in full, as ``obj``'s annotation says."""
    return show_number(number, full=shows_full_numbers(obj))


def display_user(obj: Any, user: Any) -> SafeString | str:
    """A link to ``user``'s admin page, named as :func:`~.privacy.show_user` shows it."""
    if user is None:
        return ""
    name = show_user(user, full=shows_full_numbers(obj))
    opts = user._meta
    try:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[user.pk])
    except NoReverseMatch:
        return name
    return format_html('<a href="{}">{}</a>', url, name)


class RecordAdmin(_ModelAdmin):
    """A model admin for records nobody edits by hand: view only, numbers masked.

    Rows get the request's full-number decision (see ``privacy``); counts are
    capped (see ``paginator``); filter counts ("facets") are off, since each
    is a count over the filtered table.
    """

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50

    class Media:
        css = {"all": (STYLESHEET,)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        """The rows, each carrying whether this request may see full numbers."""
        return with_visibility(super().get_queryset(request), request)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[CappedChangeList]:
        """A change list that shows an estimated or capped count as such."""
        return CappedChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Records are written by the app, never added by hand."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Records are never edited: the detail page is read-only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Records are removed by the retention policy (``voicepassword_purge``) only."""
        return False


class RecordInline(_TabularInline):
    """A read-only table of related records on a detail page."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        """The rows, each carrying whether this request may see full numbers."""
        return with_visibility(super().get_queryset(request), request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Read-only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Read-only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Read-only."""
        return False


#: The label of a masked-or-full number column.
NUMBER_LABEL = _("number")
