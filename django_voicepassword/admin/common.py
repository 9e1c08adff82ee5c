"""What the app's model admins share: read-only records, exact search, masked numbers.

Masking a number is not enough on its own: a staff member who may not see
numbers could ask the admin to compare them (``?number__startswith=``,
``?payload__number=``, a search, ``?o=``) and read the hidden digits back
from which rows answer. :class:`NumberLookups` refuses such requests unless
the request may see full numbers; every model admin of the app and the user
admin it extends use it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import formats
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_voicepassword.admin.changelist import (
    CappedChangeList,
    CountTexts,
    NumberSafeChangeList,
)
from django_voicepassword.admin.paginator import CappedCountPaginator
from django_voicepassword.admin.privacy import (
    can_see_full_numbers,
    orders_by_number,
    reads_number,
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

__all__ = [
    "NumberLookups",
    "RecordAdmin",
    "RecordInline",
    "display_number",
    "display_user",
    "exact_search",
    "month_day",
]

_M = TypeVar("_M", bound=Model)

#: The stylesheet of the badges, totals, dashboard and charts.
STYLESHEET = "voicepassword/admin/admin.css"

#: Longest term read as an id (the provider's request ids are at most 32 characters).
MAX_ID_LENGTH = 32


# An unescaped F (the month's name) in a date format.
_MONTH_NAME = re.compile(r"(?<!\\)F")


def month_day(day: dt.date) -> str:
    """``day`` as a day and month in the current language: "November 3", "3 ноября".

    Django's ``MONTH_DAY_FORMAT`` names the month with ``F``, the nominative,
    which Russian (and Ukrainian, Polish, ...) cannot put after a day: "3
    Ноябрь". ``E`` is the language's alternative name, the genitive in those
    languages and the same word elsewhere, so the language's own order is kept
    and only the month's form changes.
    """
    pattern = _MONTH_NAME.sub("E", str(formats.get_format("MONTH_DAY_FORMAT")))
    return formats.date_format(day, pattern)


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


#: The prefixes of a search field (``=number``: exact, ``^``: starts with, ``@``: full text).
_SEARCH_PREFIXES = "=^@"


#: The number-safe subclass made of each change list class (one class each, not one a request).
_NUMBER_SAFE: dict[type[ChangeList], type[ChangeList]] = {}


def _number_safe(changelist: type[ChangeList]) -> type[ChangeList]:
    if issubclass(changelist, NumberSafeChangeList):
        return changelist
    if changelist not in _NUMBER_SAFE:
        bases = (NumberSafeChangeList, changelist)
        _NUMBER_SAFE[changelist] = type(changelist.__name__, bases, {})
    return _NUMBER_SAFE[changelist]


class NumberLookups:
    """Refuse lookups that compare a phone number, unless the request may see numbers.

    For a request without ``voicepassword.view_full_number`` (see
    :func:`~.privacy.can_see_full_numbers`), every path that
    :func:`~.privacy.reads_number` flags is refused: a filter in the query
    string (``lookup_allowed``: Django answers 400), a ``_to_field`` (400), a
    search field (dropped from ``get_search_fields``), a list filter (dropped
    from ``get_list_filter``, so its choices do not list numbers), an ordering
    (dropped from ``get_ordering`` and from the change list's, ``?o=``
    included). Staff with the permission keep all of them. A mixin, put
    before the ``ModelAdmin`` class.
    """

    model: Any

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        """Refuse a filter that compares a number; otherwise Django's rule."""
        if not can_see_full_numbers(request) and reads_number(self.model, lookup):
            return False
        allowed: bool = super().lookup_allowed(lookup, value, request)  # type: ignore[misc]
        return allowed

    def to_field_allowed(self, request: HttpRequest, to_field: str) -> bool:
        """Refuse to find rows by their number (``?_to_field=number``); otherwise Django's rule."""
        if not can_see_full_numbers(request) and reads_number(self.model, to_field):
            return False
        allowed: bool = super().to_field_allowed(request, to_field)  # type: ignore[misc]
        return allowed

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        """The search fields, without those that read a number unless the request may."""
        fields = list(super().get_search_fields(request))  # type: ignore[misc]
        if can_see_full_numbers(request):
            return fields
        return [
            field
            for field in fields
            if not reads_number(self.model, str(field).lstrip(_SEARCH_PREFIXES))
        ]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        """The list filters, without those on a number unless the request may see numbers.

        A filter on a number lists the numbers as its choices. A
        ``SimpleListFilter`` is the site's own code and is kept.
        """
        filters = list(super().get_list_filter(request))  # type: ignore[misc]
        if can_see_full_numbers(request):
            return filters
        kept = []
        for item in filters:
            path = item[0] if isinstance(item, list | tuple) else item
            if isinstance(path, str) and reads_number(self.model, path):
                continue
            kept.append(item)
        return kept

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        """The default ordering, without what sorts by a number unless the request may."""
        ordering = list(super().get_ordering(request) or ())  # type: ignore[misc]
        if can_see_full_numbers(request):
            return ordering
        return [item for item in ordering if not orders_by_number(self.model, item)]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The change list class, made to drop orderings by a number (``?o=``)."""
        changelist: type[ChangeList] = super().get_changelist(request, **kwargs)  # type: ignore[misc]
        return _number_safe(changelist)


class RecordAdmin(NumberLookups, _ModelAdmin):
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

    #: How the list says its count, with the noun in the form the count asks
    #: for ("17 звонков"); ``None``: the count and ``verbose_name_plural``.
    count_texts: CountTexts | None = None

    #: The search box's help for staff who may not see full numbers (they
    #: cannot search by one); ``None``: ``search_help_text`` for everybody.
    masked_search_help_text: Any = None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[CappedChangeList]:
        """A change list that shows an estimated or capped count as such."""
        return CappedChangeList

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The change list, its search help saying what this request can search by."""
        changelist = super().get_changelist_instance(request)
        if self.masked_search_help_text is not None and not can_see_full_numbers(request):
            changelist.search_help_text = self.masked_search_help_text
        return changelist

    def searches_numbers(self, request: HttpRequest) -> bool:
        """Whether this request's search reads the ``number`` field (see ``NumberLookups``)."""
        return any(
            str(field).lstrip(_SEARCH_PREFIXES) == "number"
            for field in self.get_search_fields(request)
        )

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
