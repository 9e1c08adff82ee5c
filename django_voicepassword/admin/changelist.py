"""Change lists that say "about" and "or more" instead of counting millions of rows.

:class:`CappedChangeList` goes with
:class:`~django_voicepassword.admin.paginator.CappedCountPaginator`: the
count it shows under the list is exact, estimated ("about 1,000,000 calls")
or capped ("10,000 or more calls"). The app's ``admin/voicepassword/pagination.html``
renders Django's own ``admin/pagination.html`` with a view of the change
list whose ``result_count`` is that label, so the markup stays the installed
Django version's.

:class:`NumberSafeChangeList` drops, for a request that may not see full
numbers, every ordering that sorts by one (``?o=`` on a column whose
``ordering`` is a number, a ``ModelAdmin.ordering`` that names one), and
sorts only by the columns of ``sortable_by``; every change list of the app's
admins is one.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import formats
from django.utils.translation import gettext as _

from django_voicepassword.admin.privacy import can_see_full_numbers, orders_by_number

__all__ = ["CappedChangeList", "NumberSafeChangeList", "count_label"]


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
