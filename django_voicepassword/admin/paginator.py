"""A paginator for tables of millions of rows: it never counts them all.

Django's admin counts the filtered rows (``SELECT COUNT(*)``) on every page of
a change list, which reads the whole table (or the whole index range) on
PostgreSQL. :class:`CappedCountPaginator` counts at most ``limit`` rows:

* fewer than ``limit`` match: the count is exact, as Django's;
* ``limit`` or more match and the query has no ``WHERE`` clause (the list
  unfiltered) on PostgreSQL: the count is the planner's estimate of the table
  (``pg_class.reltuples``, kept current by autovacuum's ``ANALYZE``), never
  below ``limit``;
* otherwise: "``limit`` or more".

Only the first ``limit`` rows can be paged through (``limit / per_page``
pages): an ``OFFSET`` of a million rows reads a million rows, and a person
narrows such a list with a filter, a search or the date hierarchy instead.
The number of queries does not depend on the table's size: one capped count,
plus one estimate when the count reaches the cap unfiltered.
"""

from __future__ import annotations

from math import ceil
from typing import TYPE_CHECKING, Any, cast

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

if TYPE_CHECKING:
    _Paginator = Paginator[Any]
else:
    _Paginator = Paginator

__all__ = ["CappedCountPaginator", "estimated_rows"]


def estimated_rows(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of the rows in ``queryset``'s table (``None``: unknown).

    Other databases have no cheap estimate and give ``None``; so does a table
    never analysed (``reltuples`` is ``-1`` then).
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


class CappedCountPaginator(_Paginator):
    """A paginator whose count reads at most ``limit`` rows (see the module docstring).

    ``exact`` tells whether :attr:`count` is exact, ``estimated`` whether it
    is the planner's estimate; when neither, the set has :attr:`count` rows
    or more.
    """

    #: The most rows counted, and the most rows that can be paged through.
    limit = 10_000

    def __init__(
        self,
        object_list: Any,
        per_page: int | str,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
        *,
        limit: int | None = None,
    ) -> None:
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        if limit is not None:
            self.limit = limit
        self.exact = True
        self.estimated = False

    def count_rows(self, limit: int) -> int:
        """How many rows there are, counting no more than ``limit``; one query.

        Subclasses may answer from a query they run anyway (the call list's
        totals do).
        """
        object_list = self.object_list
        if isinstance(object_list, QuerySet):
            return object_list[:limit].count()
        return min(len(object_list), limit)

    def _unfiltered(self) -> bool:
        object_list = self.object_list
        return isinstance(object_list, QuerySet) and not object_list.query.where

    @cached_property
    def count(self) -> int:
        """The number of rows: exact below ``limit``, else estimated or capped."""
        counted = self.count_rows(self.limit)
        if counted < self.limit:
            return counted
        self.exact = False
        unfiltered = self._unfiltered()
        estimate = estimated_rows(cast("QuerySet[Any]", self.object_list)) if unfiltered else None
        if estimate is not None and estimate > counted:
            self.estimated = True
            return estimate
        return counted

    @cached_property
    def num_pages(self) -> int:
        """Pages up to ``limit`` rows: deeper pages are reached by filtering."""
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        hits = max(1, min(self.count, self.limit) - self.orphans)
        return ceil(hits / self.per_page)

    @property
    def truncated(self) -> bool:
        """Whether rows beyond the last page exist that paging cannot reach."""
        return self.count > self.limit or (not self.exact and not self.estimated)
