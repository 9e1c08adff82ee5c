"""What a verified user costs: the challenge funnel, its timing and its price.

The admin's insights page (:mod:`django_voicepassword.admin.insights`) shows
what this module computes from the records the app keeps anyway: challenges
(:class:`~django_voicepassword.models.Challenge`) and the calls that sent their
codes (:class:`~django_voicepassword.models.Call`).

The funnel of a challenge: *started* (a row), *code sent* (``sends > 0``),
*answered or delivered* (one of its calls reached ``answered`` or
``delivered``), *confirmed* (``verified_at`` set). A challenge counts under
the channel of its current code: one that fell back to SMS counts as SMS.

Every count and sum is an aggregate the database computes, grouped by hour,
over a range of the ``created_at`` index; the finished days and hours come
from the cache and only the current hour is read at each request (see
:func:`~django_voicepassword.dashboard.finished_and_live`), so the cost
grows neither with the history nor with the period's traffic, in a constant
number of queries (:data:`QUERIES_POSTGRESQL`, :data:`QUERIES_OTHER`: the
same). The time from start to confirmation is computed in Python over the
newest :data:`DURATION_SAMPLE` confirmed challenges of the period, with
``percentile_cont``'s interpolation, so it is the database's answer when the
period has fewer: percentiles do not add up from cached days.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import phonenumbers
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Substr
from phonenumbers import carrier, geocoder

from django_voicepassword.dashboard import HourRows, _local_hour, _window, finished_and_live
from django_voicepassword.models import Call, Challenge

__all__ = [
    "DURATION_SAMPLE",
    "PERIODS",
    "PREFIX_DIGITS",
    "QUERIES_OTHER",
    "QUERIES_POSTGRESQL",
    "Funnel",
    "Insights",
    "PrefixRow",
    "Timing",
    "insights",
    "percentile",
    "prefix_labels",
]

#: The periods the page offers, in days.
PERIODS = (7, 30, 90)
#: How many leading digits of a number make its prefix: the country code and
#: the operator's code for Russia ("7916"), never more than a masked number
#: shows ("+7 916 ***-**-67").
PREFIX_DIGITS = 4
#: The newest confirmed challenges the timing is computed from, at most.
DURATION_SAMPLE = 2_000
#: The queries :func:`insights` makes on PostgreSQL, and on other databases.
QUERIES_POSTGRESQL = 3
QUERIES_OTHER = 3

#: The call statuses that mean the code reached the subscriber.
REACHED = (Call.Status.ANSWERED, Call.Status.DELIVERED)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Funnel:
    """Challenges at each step, and what their calls cost."""

    started: int = 0
    sent: int = 0
    reached: int = 0
    confirmed: int = 0
    spend: Decimal = Decimal(0)

    def add(self, other: Funnel) -> None:
        """Add ``other``'s counts and spend to these."""
        self.started += other.started
        self.sent += other.sent
        self.reached += other.reached
        self.confirmed += other.confirmed
        self.spend += other.spend

    @property
    def sent_share(self) -> float | None:
        """Code sent over started."""
        return _share(self.sent, self.started)

    @property
    def reached_share(self) -> float | None:
        """Answered or delivered over code sent."""
        return _share(self.reached, self.sent)

    @property
    def confirmed_share(self) -> float | None:
        """Confirmed over started: the conversion."""
        return _share(self.confirmed, self.started)

    @property
    def cost_per_confirmed(self) -> Decimal | None:
        """Spend over confirmed challenges (``None``: none confirmed)."""
        return self.spend / self.confirmed if self.confirmed else None


@dataclass(frozen=True)
class Timing:
    """Start to confirmation: the median and the 95th percentile (``None``: no data)."""

    median: dt.timedelta | None = None
    p95: dt.timedelta | None = None


@dataclass
class PrefixRow:
    """The challenges of numbers starting with ``prefix`` (digits, no "+")."""

    prefix: str
    funnel: Funnel = field(default_factory=Funnel)
    country: str = ""
    operator: str = ""


@dataclass
class Insights:
    """The period's funnel per day and channel, its timing, and its prefixes."""

    since: dt.datetime
    dates: list[dt.date]
    #: (day, channel) → funnel; only the pairs that had challenges.
    cells: dict[tuple[dt.date, str], Funnel]
    timing: Timing
    timing_by_channel: dict[str, Timing]
    prefixes: list[PrefixRow]
    #: Whether the timing is a sample's (not a database percentile).
    sampled: bool

    @property
    def total(self) -> Funnel:
        """The whole period."""
        result = Funnel()
        for funnel in self.cells.values():
            result.add(funnel)
        return result

    def by_day(self) -> list[tuple[dt.date, Funnel]]:
        """Each day of the period, every channel together (days without challenges too)."""
        days = {day: Funnel() for day in self.dates}
        for (day, _channel), funnel in self.cells.items():
            if day in days:
                days[day].add(funnel)
        return list(days.items())

    def by_channel(self) -> dict[str, Funnel]:
        """Each channel that had challenges, in the order of :class:`Call.Channel`."""
        channels: dict[str, Funnel] = {}
        for channel in Call.Channel.values:
            for (_day, cell_channel), funnel in self.cells.items():
                if cell_channel == channel:
                    channels.setdefault(channel, Funnel()).add(funnel)
        return channels

    def by_country(self) -> list[tuple[str, Funnel]]:
        """The prefixes' funnels summed per country, most challenges first."""
        return _grouped(self.prefixes, lambda row: row.country)

    def by_operator(self) -> list[tuple[str, Funnel]]:
        """The prefixes' funnels summed per operator hint, most challenges first."""
        return _grouped(self.prefixes, lambda row: row.operator)


def _grouped(rows: list[PrefixRow], key: Any) -> list[tuple[str, Funnel]]:
    groups: dict[str, Funnel] = defaultdict(Funnel)
    for row in rows:
        groups[key(row)].add(row.funnel)
    return sorted(groups.items(), key=lambda item: (-item[1].started, item[0]))


# --------------------------------------------------------------------------- helpers


def percentile(values: list[dt.timedelta], fraction: float) -> dt.timedelta | None:
    """``percentile_cont``'s answer in Python: linear between the two nearest values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def prefix_labels(prefix: str, language: str) -> tuple[str, str]:
    """The country and the operator hint of a prefix, in ``language`` ("ru" or "en").

    The prefix is padded with zeros to a whole number, which libphonenumber's
    carrier data then names: the operator the prefix was given to, a hint only,
    since numbers move between operators. Empty strings when unknown.
    """
    try:
        number = phonenumbers.parse("+" + prefix.ljust(11, "0"))
    except phonenumbers.NumberParseException:
        return "", ""
    return (
        geocoder.country_name_for_number(number, language),
        carrier.name_for_number(number, language),
    )


def _challenges(since: dt.datetime, channel: str, purpose: str) -> QuerySet[Challenge]:
    rows = Challenge.objects.filter(created_at__gte=since)
    if channel:
        rows = rows.filter(channel=channel)
    if purpose:
        rows = rows.filter(purpose=purpose)
    return rows.order_by()


def _calls(since: dt.datetime, channel: str, purpose: str) -> QuerySet[Call]:
    # A challenge's calls come after it: the created index of the calls narrows
    # the join to the period as the challenges' does.
    rows = Call.objects.filter(created_at__gte=since, challenge__created_at__gte=since)
    if channel:
        rows = rows.filter(challenge__channel=channel)
    if purpose:
        rows = rows.filter(challenge__purpose=purpose)
    return rows.order_by()


def _counts() -> dict[str, Any]:
    return {
        "started": Count("pk"),
        "sent": Count("pk", filter=Q(sends__gt=0)),
        "confirmed": Count("pk", filter=Q(verified_at__isnull=False)),
    }


def _call_counts() -> dict[str, Any]:
    # "Reached" is counted from the calls' side, in the same join as the spend:
    # an EXISTS per challenge lets the planner hash every answered call of the
    # whole history.
    return {
        "spend": Sum("price"),
        "reached": Count("challenge", distinct=True, filter=Q(status__in=REACHED)),
    }


def _rows(queryset: Any) -> list[dict[str, Any]]:
    """A ``values()`` query's rows, typed loosely: each query groups by its own keys."""
    return list(queryset)


def _funnel(row: dict[str, Any]) -> Funnel:
    return Funnel(started=row["started"], sent=row["sent"], confirmed=row["confirmed"])


# --------------------------------------------------------------------------- the figures


def insights(
    days: int = 30,
    *,
    channel: str = "",
    purpose: str = "",
    language: str = "en",
    now: dt.datetime | None = None,
) -> Insights:
    """The funnel of the last ``days`` days' challenges (today included), optionally narrowed.

    ``channel`` and ``purpose`` are a :class:`Call.Channel` and a
    :class:`Challenge.Purpose` value, or ``""`` for all. ``language`` names
    the countries and operators. Days are dates in the current time zone.
    """
    since, dates = _window(days, now)

    # One query for the challenges and one for their calls, each grouped by
    # hour, channel and prefix: the cells and the prefixes are both sums of
    # its rows (a challenge has one of each, so distinct counts add up too).
    def challenge_rows(start: dt.datetime) -> HourRows:
        rows = _challenges(start, channel, purpose).annotate(
            hour=_local_hour("created_at"), prefix=Substr("number", 1, PREFIX_DIGITS)
        )
        for row in _rows(rows.values("hour", "channel", "prefix").annotate(**_counts())):
            yield (
                row["hour"],
                (row["channel"], row["prefix"], row["started"], row["sent"], row["confirmed"]),
            )

    def call_rows(start: dt.datetime) -> HourRows:
        rows = _calls(start, channel, purpose).annotate(
            hour=_local_hour("challenge__created_at"),
            prefix=Substr("challenge__number", 1, PREFIX_DIGITS),
        )
        grouped = rows.values("hour", "challenge__channel", "prefix").annotate(**_call_counts())
        for row in _rows(grouped):
            yield (
                row["hour"],
                (row["challenge__channel"], row["prefix"], row["spend"], row["reached"]),
            )

    # Keyed by the filters: each choice of the page is an aggregate of its own.
    scope = f"insights:{channel}:{purpose}"
    cells: dict[tuple[dt.date, str], Funnel] = {}
    prefixes: dict[str, PrefixRow] = {}
    for day, (cell_channel, prefix, started, sent, confirmed) in finished_and_live(
        f"{scope}:challenges", dates, challenge_rows, keys=2, now=now
    ):
        funnel = Funnel(started=started, sent=sent, confirmed=confirmed)
        cells.setdefault((day, cell_channel), Funnel()).add(funnel)
        prefixes.setdefault(prefix, PrefixRow(prefix=prefix)).funnel.add(funnel)
    for day, (cell_channel, prefix, spend, reached) in finished_and_live(
        f"{scope}:calls", dates, call_rows, keys=2, now=now
    ):
        funnel = Funnel(reached=reached, spend=spend or Decimal(0))
        cells.setdefault((day, cell_channel), Funnel()).add(funnel)
        prefixes.setdefault(prefix, PrefixRow(prefix=prefix)).funnel.add(funnel)
    for prefix_row in prefixes.values():
        prefix_row.country, prefix_row.operator = prefix_labels(prefix_row.prefix, language)

    # The timing of the newest confirmed challenges: percentiles do not add up
    # from cached days, and reading the period's every confirmation would
    # grow with its traffic. The same interpolation as percentile_cont.
    confirmed = _challenges(since, channel, purpose).filter(verified_at__isnull=False)
    sample = list(
        confirmed.order_by("-created_at").values_list("channel", "created_at", "verified_at")[
            :DURATION_SAMPLE
        ]
    )
    durations: dict[str, list[dt.timedelta]] = defaultdict(list)
    for sample_channel, created, verified in sample:
        if verified is not None:  # the query's filter: never None
            durations[sample_channel].append(verified - created)
    every = [value for values in durations.values() for value in values]
    timing = Timing(percentile(every, 0.5), percentile(every, 0.95))
    by_channel = {
        name: Timing(percentile(values, 0.5), percentile(values, 0.95))
        for name, values in durations.items()
    }
    sampled = len(sample) >= DURATION_SAMPLE

    return Insights(
        since=since,
        dates=dates,
        cells=cells,
        timing=timing,
        timing_by_channel=by_channel,
        prefixes=sorted(prefixes.values(), key=lambda r: (-r.funnel.started, r.prefix)),
        sampled=sampled,
    )
