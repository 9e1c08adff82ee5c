"""What the admin shows about calls and money: bounded aggregates and the live balance.

Every query here is bounded so that its cost does not grow with the history:
totals read at most ``limit`` rows (in the order of the created index), the
daily figures read the last ``days`` days (a range on the created index), and
the balance is asked from the provider at most once per
:data:`BALANCE_CACHE_SECONDS` (the refresh button excepted).

The balance goes through :func:`~django_voicepassword.calls.fetch_balance`, so
every answer the provider gives is also stored as a
:class:`~django_voicepassword.models.BalanceSnapshot`: the cache only limits how
often the provider is asked, and the history is what was seen.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from django_voicepassword import calls
from django_voicepassword.conf import settings
from django_voicepassword.exceptions import (
    APIError,
    AuthorisationFailedError,
    TransportError,
)
from django_voicepassword.models import BalanceSnapshot, Call

__all__ = [
    "BALANCE_CACHE_KEY",
    "BALANCE_CACHE_SECONDS",
    "CLOSED_DAYS_CACHE_KEY",
    "CLOSED_DAYS_CACHE_SECONDS",
    "CLOSED_DAYS_GENERATION_KEY",
    "DASHBOARD_DAYS",
    "TOTALS_LIMIT",
    "BalanceDay",
    "BalanceReading",
    "CallStats",
    "CallTotals",
    "DayStats",
    "balance_history",
    "cached_balance",
    "call_stats",
    "call_totals",
    "current_balance",
    "finished_and_live",
    "forget_cached_days",
    "forget_if_finished",
    "latest_snapshots",
]

#: How long a balance read from the provider is shown without asking again.
BALANCE_CACHE_SECONDS = 30
#: The cache key of the last reading (a dict of plain values, safe to unpickle
#: across versions of this module).
BALANCE_CACHE_KEY = "voicepassword:admin:balance:v1"
#: How far back the dashboard's daily figures and balance history go.
DASHBOARD_DAYS = 30
#: How long the call figures of a finished day stay cached, at most.
CLOSED_DAYS_CACHE_SECONDS = 3600
#: How long an hour stays live after it ends, read at each request before it is cached:
#: a callback moments after the hour, or a row committed late, still counts in it.
SETTLE_TIME = dt.timedelta(minutes=5)
#: The prefix of the cache keys of finished days' figures (one per figure and time zone).
CLOSED_DAYS_CACHE_KEY = "voicepassword:admin:call-days:v1"
#: The cache key of their generation: a new one forgets every finished day.
CLOSED_DAYS_GENERATION_KEY = CLOSED_DAYS_CACHE_KEY + ":generation"
#: The most rows the call list's totals read.
TOTALS_LIMIT = 10_000

#: The calls' order: newest first, the created index's.
CALL_ORDER = ("-created_at", "-id")

#: The channels whose calls can be answered: an SMS is delivered, not answered.
ANSWERABLE = (Call.Channel.FLASH_CALL, Call.Channel.VOICE_CALL)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --------------------------------------------------------------------------- call totals


@dataclass(frozen=True)
class CallTotals:
    """Totals of a set of calls, as the call list shows them above the rows.

    ``calls`` rows were read. When ``limited`` is true the set has at least
    that many rows and the totals cover its newest ``calls`` rows only (in
    the list's order); otherwise they cover the whole set.
    """

    calls: int
    answered: int
    answerable: int
    spend: Decimal
    limited: bool

    @property
    def answered_share(self) -> float | None:
        """Answered flash and voice calls over all flash and voice calls (``None``: none)."""
        return _share(self.answered, self.answerable)


def call_totals(queryset: QuerySet[Call], *, limit: int = TOTALS_LIMIT) -> CallTotals:
    """Count, answered share and spend of ``queryset``, reading at most ``limit`` rows.

    One query: an aggregate over the first ``limit`` rows of ``queryset`` in its
    own order (the list's, which the created index serves), so that the cost is
    bounded on a table of any size.
    """
    if not queryset.ordered:
        queryset = queryset.order_by(*CALL_ORDER)
    row = queryset[:limit].aggregate(
        calls=Count("pk"),
        answered=Count("pk", filter=Q(status=Call.Status.ANSWERED)),
        answerable=Count("pk", filter=Q(channel__in=ANSWERABLE)),
        spend=Sum("price"),
    )
    count = row["calls"] or 0
    return CallTotals(
        calls=count,
        answered=row["answered"] or 0,
        answerable=row["answerable"] or 0,
        spend=row["spend"] or Decimal(0),
        limited=count >= limit,
    )


# --------------------------------------------------------------------------- per day


@dataclass(frozen=True)
class DayStats:
    """One day of calls (in the current time zone)."""

    day: dt.date
    calls: int = 0
    answered: int = 0
    answerable: int = 0
    spend: Decimal = Decimal(0)

    @property
    def answered_share(self) -> float | None:
        """Answered flash and voice calls over all flash and voice calls of the day."""
        return _share(self.answered, self.answerable)


@dataclass(frozen=True)
class CallStats:
    """The last ``days`` days of calls: per day, and per status over the whole span."""

    since: dt.datetime
    days: list[DayStats]
    by_status: list[tuple[Call.Status, int]] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Every call of the span."""
        return sum(day.calls for day in self.days)

    @property
    def spend(self) -> Decimal:
        """What the span's calls cost."""
        return sum((day.spend for day in self.days), Decimal(0))

    @property
    def answered_share(self) -> float | None:
        """The span's answered share (see :attr:`CallTotals.answered_share`)."""
        return _share(sum(d.answered for d in self.days), sum(d.answerable for d in self.days))


def _window(days: int, now: dt.datetime | None) -> tuple[dt.datetime, list[dt.date]]:
    """The start (local midnight ``days - 1`` days ago) and the dates of the window."""
    today = timezone.localdate(now) if django_settings.USE_TZ else dt.date.today()
    first = today - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first, dt.time.min)
    if django_settings.USE_TZ:
        since = timezone.make_aware(since)
    return since, [first + dt.timedelta(days=n) for n in range(days)]


def _local_hour(field: str) -> TruncHour:
    """``field``'s hour in the current time zone (naive datetimes are local already)."""
    if django_settings.USE_TZ:
        return TruncHour(field, tzinfo=timezone.get_current_timezone())
    return TruncHour(field)


def _local_date(field: str) -> TruncDate:
    """``field``'s date in the current time zone (naive datetimes are local already)."""
    if django_settings.USE_TZ:
        return TruncDate(field, tzinfo=timezone.get_current_timezone())
    return TruncDate(field)


def _namespace_key(namespace: str) -> str:
    zone = timezone.get_current_timezone_name() if django_settings.USE_TZ else "local"
    return f"{CLOSED_DAYS_CACHE_KEY}:{namespace}:{zone}"


def _aware(moment: dt.datetime) -> dt.datetime:
    return timezone.make_aware(moment) if django_settings.USE_TZ else moment


def _naive_local(moment: dt.datetime) -> dt.datetime:
    if django_settings.USE_TZ and timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return moment.replace(tzinfo=None)


def _live_start(moment: dt.datetime, zone: dt.tzinfo | None = None) -> dt.datetime:
    """The naive local start of the oldest hour still live at ``moment`` (:data:`SETTLE_TIME`)."""
    moment -= SETTLE_TIME
    if django_settings.USE_TZ and timezone.is_aware(moment):
        moment = timezone.localtime(moment, zone)
    return moment.replace(tzinfo=None, minute=0, second=0, microsecond=0)


#: A bucket: ("day", a finished date) or ("hour", the local start of a finished hour of the
#: live hour's day).
_Bucket = tuple[str, Any]
#: Rows as :func:`finished_and_live` reads them: (the local hour, what the row says).
HourRows = Iterable[tuple[dt.datetime, tuple[Any, ...]]]


def _added_up(
    rows: list[tuple[dt.date, tuple[Any, ...]]], keys: int
) -> list[tuple[dt.date, tuple[Any, ...]]]:
    """One row per date and group: the counts and sums of ``rows`` added up."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for day, values in rows:
        group = (day, *values[:keys])
        totals = groups.get(group)
        if totals is None:
            groups[group] = list(values[keys:])
        else:
            for index, value in enumerate(values[keys:]):
                if value is not None:
                    totals[index] = value if totals[index] is None else totals[index] + value
    return [(group[0], (*group[1:], *totals)) for group, totals in groups.items()]


def finished_and_live(
    namespace: str,
    dates: list[dt.date],
    read: Callable[[dt.datetime], HourRows],
    *,
    keys: int,
    now: dt.datetime | None = None,
) -> list[tuple[dt.date, tuple[Any, ...]]]:
    """A grouped aggregate over the window ``dates``: the past from the cache, the present read.

    ``read(start)`` runs one query from ``start`` (aware when ``USE_TZ``) and
    gives its rows grouped by the local hour (``_local_hour``) and whatever
    else the caller groups by, as (hour, values). The past is written once: a
    finished day's rows, and a finished hour's of today, are cached under
    ``namespace`` (for :data:`CLOSED_DAYS_CACHE_SECONDS` at most; a
    reconciliation or a refresh that changes an older call forgets them at
    once, see :func:`forget_if_finished`). An hour is finished
    :data:`SETTLE_TIME` after its end: until then it is read with the current
    one, so that the callbacks of its last calls, and rows committed late,
    count. So ``read`` starts at the live hour when every finished bucket is
    cached, else at the first one that is not: one query, whose cost is the
    live hour's rows, not the window's.

    The first ``keys`` of a row's values are what it is grouped by (besides
    the hour), the others are counts or sums: a finished bucket is cached
    with one row per group (its hours added up; a ``None`` sum counts as 0),
    so that what is read back does not grow with the traffic either.

    Returns every row as (its local date, values), days after the window's
    last included (rows stamped in the future).
    """
    moment = now or timezone.now()
    live = max(_live_start(moment), dt.datetime.combine(dates[0], dt.time.min))
    live_day = live.date()
    wanted: list[_Bucket] = [("day", day) for day in dates if day < live_day]
    midnight = dt.datetime.combine(live_day, dt.time.min)
    for n in range(live.hour):
        wanted.append(("hour", midnight + dt.timedelta(hours=n)))
    # One key per figure and time zone, holding its buckets: one round trip,
    # and a handful of keys whatever the window (a local-memory cache culls
    # beyond 300).
    key = _namespace_key(namespace)
    found = cache.get_many([CLOSED_DAYS_GENERATION_KEY, key])
    generation = found.get(CLOSED_DAYS_GENERATION_KEY, 0)
    stored = found.get(key)
    cached: dict[_Bucket, tuple[float, list[Any]]] = {}
    if isinstance(stored, dict) and stored.get("generation") == generation:
        cached = stored.get("buckets") or {}
    oldest = moment.timestamp() - CLOSED_DAYS_CACHE_SECONDS
    known: dict[_Bucket, list[tuple[dt.date, tuple[Any, ...]]]] = {}
    fresh: dict[_Bucket, list[tuple[dt.date, tuple[Any, ...]]]] = {}
    for bucket in wanted:
        entry = cached.get(bucket)
        if entry is not None and entry[0] >= oldest:
            known[bucket] = entry[1]
        else:
            fresh[bucket] = []
    first = live
    if fresh:
        kind, start = next(iter(fresh))
        first = dt.datetime.combine(start, dt.time.min) if kind == "day" else start
    present: list[tuple[dt.date, tuple[Any, ...]]] = []  # the current hour, and the future
    for hour, values in read(_aware(first)):
        local = _naive_local(hour)
        row = (local.date(), values)
        if local >= live:
            present.append(row)
            continue
        bucket = ("day", local.date()) if local.date() < live_day else ("hour", local)
        if bucket in fresh:  # not a cached bucket read again (after the first missing)
            fresh[bucket].append(row)
    if fresh:
        for bucket, rows in fresh.items():
            fresh[bucket] = _added_up(rows, keys)
        # Kept: every bucket still fresh, those of a longer window too (the
        # insights page's 90 days and its 7 share a figure's key).
        buckets = {
            bucket: entry
            for bucket, entry in cached.items()
            if entry[0] >= oldest and (bucket[0] == "day" or bucket[1].date() == live_day)
        }
        buckets.update((bucket, (moment.timestamp(), rows)) for bucket, rows in fresh.items())
        value = {"generation": generation, "buckets": buckets}
        cache.set(key, value, CLOSED_DAYS_CACHE_SECONDS)
    return [row for rows in (*known.values(), *fresh.values(), present) for row in rows]


def call_stats(days: int = DASHBOARD_DAYS, *, now: dt.datetime | None = None) -> CallStats:
    """Calls, answered share and spend per day, and calls per status, for the last ``days``.

    Days are dates in the current time zone, today included. One query,
    grouped by hour, status and channel over a range of the created index:
    the current hour's calls, the finished days and hours being cached (see
    :func:`finished_and_live`).
    """
    since, dates = _window(days, now)

    def read(start: dt.datetime) -> HourRows:
        for row in (
            Call.objects.filter(created_at__gte=start)
            .annotate(hour=_local_hour("created_at"))
            .values("hour", "status", "channel")
            .annotate(n=Count("pk"), spend=Sum("price"))
            .order_by()
        ):
            yield row["hour"], (row["status"], row["channel"], row["n"], row["spend"])

    rows = finished_and_live("calls", dates, read, keys=2, now=now)
    per_day: dict[dt.date, dict[str, Any]] = {
        d: {"calls": 0, "answered": 0, "answerable": 0, "spend": Decimal(0)} for d in dates
    }
    statuses: Counter[str] = Counter()
    for day, (status, channel, n, spend) in rows:
        statuses[status] += n
        figures = per_day.get(day)
        if figures is None:  # a call stamped in the future: counted by status only
            continue
        figures["calls"] += n
        figures["spend"] += spend or 0
        if channel in ANSWERABLE:
            figures["answerable"] += n
            if status == Call.Status.ANSWERED:
                figures["answered"] += n
    by_status = [
        (status, statuses[status.value]) for status in Call.Status if statuses[status.value]
    ]
    by_status.sort(key=lambda item: -item[1])
    return CallStats(
        since=since,
        days=[DayStats(day=d, **values) for d, values in per_day.items()],
        by_status=by_status,
    )


def forget_if_finished(created_at: dt.datetime) -> None:
    """Forget the cached figures of finished days and hours if ``created_at`` is in one.

    Called where an older call can change or appear: a reconciliation
    (:func:`~django_voicepassword.reconcile.reconcile_day`) and a call's
    refresh from the provider (:func:`~django_voicepassword.calls.apply_record`).
    Not a receiver of ``call_status_changed``: a receiver of that signal makes
    every callback build its row and take turns inside the process
    (``callbacks._turn``). A callback later than :data:`SETTLE_TIME` after
    the end of its call's hour therefore shows when the cached hour or day
    expires, within ``CLOSED_DAYS_CACHE_SECONDS``. Hours are local: the
    moment is compared with the live hour's start in the current and in the
    default time zone; a change in a finished hour or day starts a new
    generation, in which every finished bucket is read again once.
    """
    now = timezone.now()
    if django_settings.USE_TZ and timezone.is_aware(created_at):
        zones = {timezone.get_current_timezone(), timezone.get_default_timezone()}
        finished = any(
            timezone.localtime(created_at, zone).replace(tzinfo=None) < _live_start(now, zone)
            for zone in zones
        )
    else:
        finished = _naive_local(created_at) < _live_start(now)
    if finished:
        forget_cached_days()


def forget_cached_days() -> None:
    """Start a new generation of the cached figures: every finished day is read again once.

    For a change to older calls that sends no signal (rows written by hand,
    a restore, a test's rows in the past).
    """
    cache.add(CLOSED_DAYS_GENERATION_KEY, 0, None)
    try:
        cache.incr(CLOSED_DAYS_GENERATION_KEY)
    except ValueError:  # evicted in between: a new generation all the same
        cache.set(CLOSED_DAYS_GENERATION_KEY, 1, None)


# --------------------------------------------------------------------------- the balance


@dataclass(frozen=True)
class BalanceReading:
    """What is known about the balance: the provider's answer, or why there is none.

    ``problem`` is ``""`` when the provider answered, else ``"unreachable"``
    (network, HTTP 5xx, an answer that is not JSON), ``"unauthorised"`` (the
    API key was refused), ``"refused"`` (another error code, in
    ``error_code``) or ``"misconfigured"`` (the settings are incomplete).
    With a problem, ``balance``, ``currency`` and ``taken_at`` are the last
    stored snapshot's, if any. ``checked_at`` is when the provider was asked.
    """

    balance: Decimal | None
    currency: str
    taken_at: dt.datetime | None
    checked_at: dt.datetime
    problem: str = ""
    error_code: str = ""

    @property
    def threshold(self) -> Decimal | None:
        """The ``LOW_BALANCE`` setting (read now, never cached)."""
        return settings.LOW_BALANCE

    @property
    def low(self) -> bool:
        """Whether the balance is below ``LOW_BALANCE``."""
        threshold = self.threshold
        return threshold is not None and self.balance is not None and self.balance < threshold

    @property
    def live(self) -> bool:
        """Whether the balance is the provider's answer (not a stored one after a failure)."""
        return not self.problem

    def to_cache(self) -> dict[str, Any]:
        """Plain values for the cache."""
        return {
            "balance": self.balance,
            "currency": self.currency,
            "taken_at": self.taken_at,
            "checked_at": self.checked_at,
            "problem": self.problem,
            "error_code": self.error_code,
        }

    @classmethod
    def from_cache(cls, value: Any) -> BalanceReading | None:
        """The reading of a cached dict, or ``None`` for anything else."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(**value)
        except TypeError:
            return None

    @classmethod
    def from_snapshot(
        cls, snapshot: BalanceSnapshot | None, *, problem: str = "", error_code: str = ""
    ) -> BalanceReading:
        """A reading of ``snapshot`` (or of nothing), checked now."""
        return cls(
            balance=snapshot.balance if snapshot else None,
            currency=snapshot.currency if snapshot else "",
            taken_at=snapshot.taken_at if snapshot else None,
            checked_at=timezone.now(),
            problem=problem,
            error_code=error_code,
        )


def _last_snapshot() -> BalanceSnapshot | None:
    return BalanceSnapshot.objects.order_by("-taken_at", "-id").first()


def current_balance(*, refresh: bool = False) -> BalanceReading:
    """The balance: from the cache, or asked from the provider and stored.

    With ``refresh`` the cache is bypassed. A provider that cannot be asked
    gives a reading with a ``problem`` and the last stored balance; that
    reading is cached too, so a page reloaded during an outage does not wait
    on the provider again (the refresh button still asks).
    """
    if not refresh:
        cached = BalanceReading.from_cache(cache.get(BALANCE_CACHE_KEY))
        if cached is not None:
            return cached
    try:
        reading = BalanceReading.from_snapshot(calls.fetch_balance())
    except AuthorisationFailedError as error:
        reading = BalanceReading.from_snapshot(
            _last_snapshot(), problem="unauthorised", error_code=error.error_code
        )
    except APIError as error:
        reading = BalanceReading.from_snapshot(
            _last_snapshot(), problem="refused", error_code=error.error_code
        )
    except TransportError:
        reading = BalanceReading.from_snapshot(_last_snapshot(), problem="unreachable")
    except ImproperlyConfigured:
        reading = BalanceReading.from_snapshot(_last_snapshot(), problem="misconfigured")
    cache.set(BALANCE_CACHE_KEY, reading.to_cache(), BALANCE_CACHE_SECONDS)
    return reading


def cached_balance() -> BalanceReading | None:
    """The balance without asking the provider: the cached reading, else the last snapshot.

    For pages that must not wait on the provider (the admin index). ``None``
    when nothing was ever stored.
    """
    cached = BalanceReading.from_cache(cache.get(BALANCE_CACHE_KEY))
    if cached is not None:
        return cached
    snapshot = _last_snapshot()
    if snapshot is None:
        return None
    return BalanceReading(
        balance=snapshot.balance,
        currency=snapshot.currency,
        taken_at=snapshot.taken_at,
        checked_at=snapshot.taken_at,
    )


@dataclass(frozen=True)
class BalanceDay:
    """The lowest and highest balance stored on one day (``None``: nothing stored)."""

    day: dt.date
    low: Decimal | None
    high: Decimal | None


def balance_history(
    days: int = DASHBOARD_DAYS, *, now: dt.datetime | None = None
) -> list[BalanceDay]:
    """The stored balance per day for the last ``days`` days: one grouped query."""
    since, dates = _window(days, now)
    rows = (
        BalanceSnapshot.objects.filter(taken_at__gte=since)
        .annotate(day=_local_date("taken_at"))
        .values("day")
        .annotate(low=Min("balance"), high=Max("balance"))
        .order_by()
    )
    found = {row["day"]: row for row in rows}
    return [
        BalanceDay(
            day=d,
            low=found[d]["low"] if d in found else None,
            high=found[d]["high"] if d in found else None,
        )
        for d in dates
    ]


def latest_snapshots(count: int = 10) -> list[BalanceSnapshot]:
    """The ``count`` newest stored balances, newest first."""
    return list(BalanceSnapshot.objects.order_by("-taken_at", "-id")[:count])
