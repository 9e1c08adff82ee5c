"""Change lists that say "about" and "or more" instead of counting millions of rows.

:class:`CappedChangeList` goes with
:class:`~django_voicepassword.admin.paginator.CappedCountPaginator`: the
count it shows under the list is exact, estimated ("about 1,000,000 calls")
or capped ("10,000 or more calls"). The app's ``admin/voicepassword/pagination.html``
says it with the noun in the form the count asks for (:class:`CountTexts`,
"17 звонков"), where Django's own writes the count before the model's
``verbose_name_plural`` ("17 звонки").

:class:`NumberSafeChangeList` drops, for a request that may not see full
numbers, every ordering that sorts by one (``?o=`` on a column whose
``ordering`` is a number, a ``ModelAdmin.ordering`` that names one), and
sorts only by the columns of ``sortable_by``; every change list of the app's
admins is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import formats
from django.utils.translation import gettext as _

from django_voicepassword.admin.privacy import can_see_full_numbers, orders_by_number

__all__ = ["CappedChangeList", "CountTexts", "NumberSafeChangeList", "count_label", "count_text"]


@dataclass(frozen=True)
class CountTexts:
    """How a list says its count: three ``ngettext_lazy(singular, plural, "n")`` phrases.

    Django's admin writes the count and then the model's ``verbose_name`` or
    ``verbose_name_plural``: "17 calls" in English but "17 звонки" in Russian,
    whose noun after a number has three forms ("1 звонок", "2 звонка",
    "5 звонков"). Each phrase here is translated whole, its form chosen by
    ``n`` (the count), with ``%(count)s`` for the count as the language
    writes numbers: ``exact`` ("17 calls"), ``about`` (the planner's
    estimate) and ``or_more`` (capped).
    """

    exact: Any
    about: Any
    or_more: Any


def count_text(paginator: Any, texts: CountTexts | None, plural_name: Any) -> str:
    """The count with its noun, as the list shows it under the rows.

    Without ``texts`` (a model the app has no phrases for), the count is
    followed by ``plural_name`` as Django does.
    """
    count: int = paginator.count
    if texts is None:
        return f"{count_label(paginator)} {plural_name}"
    if getattr(paginator, "exact", True):
        phrase = texts.exact
    elif getattr(paginator, "estimated", False):
        phrase = texts.about
    else:
        phrase = texts.or_more
    number = formats.number_format(count, force_grouping=True)
    return str(phrase % {"n": count, "count": number})


def count_label(paginator: Any) -> int | str:
    """The count as the list shows it: the number when exact, else a phrase."""
    count: int = paginator.count
    if getattr(paginator, "exact", True):
        return count
    number = formats.number_format(count, force_grouping=True)
    if getattr(paginator, "estimated", False):
        return _("about %(count)s") % {"count": number}
    return _("%(count)s or more") % {"count": number}


class _ShownCount:
    """A change list whose ``result_count`` is the label (for the pagination template)."""

    def __init__(self, changelist: ChangeList, label: int | str) -> None:
        self._changelist = changelist
        self.result_count = label

    def __getattr__(self, name: str) -> Any:
        return getattr(self._changelist, name)


class NumberSafeChangeList(ChangeList):
    """A change list that sorts by a number only for a request that may see numbers."""

    def get_ordering_field(self, field_name: Any) -> Any:
        """A column's ordering, or ``None`` (ignored) for a column not in ``sortable_by``.

        Django shows only those columns as sortable but still sorts by any
        column named in ``?o=``.
        """
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        """The ordering, without what sorts by a number unless ``request`` may see numbers."""
        ordering: list[Any] = super().get_ordering(request, queryset)
        if can_see_full_numbers(request):
            return ordering
        kept = [item for item in ordering if not orders_by_number(self.model, item)]
        if len(kept) < len(ordering):
            # What was dropped may have been what made the order total.
            kept.append("-pk")
        return kept


class CappedChangeList(NumberSafeChangeList):
    """A change list whose count may be estimated or capped (see the module docstring)."""

    @property
    def count_label(self) -> int | str:
        """The number of rows as the list shows it."""
        return count_label(self.paginator)

    @property
    def for_pagination(self) -> _ShownCount:
        """This change list, with the count label as ``result_count``."""
        return _ShownCount(self, self.count_label)

    @property
    def count_text(self) -> str:
        """The count with its noun in the right form ("17 звонков"), as the list shows it.

        The phrases are the model admin's ``count_texts`` (a :class:`CountTexts`).
        """
        texts = getattr(self.model_admin, "count_texts", None)
        return count_text(self.paginator, texts, self.opts.verbose_name_plural)
