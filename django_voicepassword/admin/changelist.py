"""Change lists that say "about" and "or more" instead of counting millions of rows.

:class:`CappedChangeList` goes with
:class:`~django_voicepassword.admin.paginator.CappedCountPaginator`: the
count it shows under the list is exact, estimated ("about 1,000,000 calls")
or capped ("10,000 or more calls"). The app's ``admin/voicepassword/pagination.html``
renders Django's own ``admin/pagination.html`` with a view of the change
list whose ``result_count`` is that label, so the markup stays the installed
Django version's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.utils import formats
from django.utils.translation import gettext as _

__all__ = ["CappedChangeList", "count_label"]


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


class CappedChangeList(ChangeList):
    """A change list whose count may be estimated or capped (see the module docstring)."""

    @property
    def count_label(self) -> int | str:
        """The number of rows as the list shows it."""
        return count_label(self.paginator)

    @property
    def for_pagination(self) -> _ShownCount:
        """This change list, with the count label as ``result_count``."""
        return _ShownCount(self, self.count_label)
