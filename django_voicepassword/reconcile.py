"""Bringing the call history in line with the provider's own records.

Two things live here, both about how a provider record changes a
:class:`~django_voicepassword.models.Call`:

- :func:`record_changes`, the one rule every report goes through (a callback,
  ``get/`` ``state``, a ``daily`` row): the status only moves forward, and only
  the provider's own records may correct one final status into another.
  :func:`~django_voicepassword.calls.apply_record` applies it to one row,
  :func:`reconcile_day` to a whole day at once.
- :func:`reconcile_day`, the ``daily`` reconciliation, in bulk: a constant
  number of queries on PostgreSQL whatever the number of rows.

Both are re-exported by :mod:`django_voicepassword.calls`, the services module.
"""

from __future__ import annotations

import functools
import logging
import operator
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from django_voicepassword.client import PROVIDER_TZ, CallRecord, CallState, DailyReport
from django_voicepassword.exceptions import VoicePasswordError
from django_voicepassword.gateways import get_gateway
from django_voicepassword.models import FINAL_STATUSES, Call, status_for_state, status_rank
from django_voicepassword.signals import call_status_changed

__all__ = [
    "ERROR_CODE_STATUSES",
    "NOT_IN_DAILY",
    "SETTLE_AFTER",
    "SETTLE_BEFORE",
    "ReconcileReport",
    "channel_of",
    "moscow_day",
    "overwritable_by",
    "reconcile_day",
    "record_changes",
]

logger = logging.getLogger(__name__)

#: How far from a local row's creation time a provider record may be dated and
#: still be taken for that row's unknown outcome: the provider stamps a request
#: when it accepts it, a moment after the row was written, give or take the
#: difference between the two clocks.
SETTLE_BEFORE = timedelta(minutes=1)
SETTLE_AFTER = timedelta(minutes=10)

#: The error code of a call marked ``not_placed`` because the provider's daily
#: report of its day has no record of it.
NOT_IN_DAILY = "not_in_daily"

#: The fields a provider record may change on an existing row, in the order
#: :func:`record_changes` considers them.
_RECORD_FIELDS = ("state_label", "price", "duration", "provider_date")

#: Every field reconcile_day may write on an existing row (``updated_at`` aside).
_WRITTEN = ("provider_id", "status", "state_label", "error_code", *_RECORD_FIELDS[1:])

#: First key of the PostgreSQL advisory lock that serialises the runs of one
#: day (the second key is the day): "vpRc", so that it is recognisable in
#: ``pg_locks`` and unlikely to collide with a lock of the site's own.
_LOCK_NAMESPACE = int.from_bytes(b"vpRc", "big")


# --------------------------------------------------------------------------- the rule

#: The statuses whose error code says why a call has no outcome (``unknown``,
#: ``not_placed``): a call that leaves one loses its error code.
ERROR_CODE_STATUSES = frozenset({Call.Status.UNKNOWN, Call.Status.NOT_PLACED})


@functools.cache
def overwritable_by(new_status: str) -> frozenset[Call.Status]:
    """The statuses a report of ``new_status`` moves a call from: those behind it.

    The forward half of :func:`record_changes`'s rule, on its own for code that
    applies it in SQL (a callback on PostgreSQL, in one statement): a call in
    one of these statuses moves to ``new_status``; in any other it stays. Only
    an authoritative record may do more (correct one final status into another).
    """
    rank = status_rank(new_status)
    return frozenset(status for status in Call.Status if status_rank(status) < rank)


def record_changes(
    call: Call | _Row, record: CallRecord, *, authoritative: bool
) -> dict[str, Any]:
    """What the provider's ``record`` changes on ``call``: field name → new value.

    Pure: ``call`` (a row, or the lean copy :func:`reconcile_day` reads) is
    only read. ``authoritative`` is true for the provider's
    own records (``get/`` ``state`` and ``daily``), false for a callback.

    The status only moves forward (:func:`~django_voicepassword.models.status_rank`);
    an authoritative record may also correct one final status into another,
    never a final status into an intermediate one. A call that leaves
    ``unknown`` or ``not_placed`` loses its error code. Price, duration, date
    and the provider's label are taken when the status moved, from an
    authoritative record of the call's current status, or from a record with
    an unknown label while the call has not ended (the label is kept verbatim
    and moves nothing); never from a record that is behind the call. An empty
    dict means nothing changes; ``"status" in`` the result means the status moved.
    """
    old_status = call.status
    new_status = status_for_state(record.state)
    changes: dict[str, Any] = {}
    moved = False
    if new_status is not None and new_status != old_status:
        forward = old_status in _BEHIND[new_status]
        corrected = authoritative and old_status in FINAL_STATUSES and new_status in FINAL_STATUSES
        if forward or corrected:
            changes["status"] = new_status
            moved = True
            if old_status in ERROR_CODE_STATUSES:
                changes["error_code"] = ""
    # Fields come only from a record that is not behind the call: one that moved
    # it, one of the provider's own records of the same status (filling in the
    # price or date), or an unknown label on a call that has not ended. A late
    # "Дозвон" must not zero the duration of an answered call.
    if (
        moved
        or (authoritative and new_status == old_status)
        or (new_status is None and old_status not in FINAL_STATUSES)
    ):
        # The fields of _RECORD_FIELDS, in its order, written out: a day's
        # reconciliation decides this for tens of thousands of rows.
        label = record.state_label[:64]
        if label != call.state_label:
            changes["state_label"] = label
        price, duration, when = record.price, record.duration, record.date
        if price is not None and call.price != price:
            changes["price"] = price
        if duration is not None and call.duration != duration:
            changes["duration"] = duration
        if when is not None and call.provider_date != when:
            changes["provider_date"] = when
    return changes


#: :func:`overwritable_by` of every status, looked up once per record.
_BEHIND = {status: overwritable_by(status) for status in Call.Status}


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class ReconcileReport:
    """What :func:`reconcile_day` did.

    ``provider_rows`` is the number of records in the provider's report;
    ``created`` the rows added for calls placed outside this site; ``updated``
    the existing rows whose state, label, price, duration or date was
    corrected; ``settled`` the rows whose unknown outcome a record settled;
    ``not_placed`` the unknown rows the provider has no record of, marked
    ``not_placed``. A row counts in one of the last four at most.
    ``skipped`` is the number of records of the report that could not be read;
    ``complete`` whether the report held every record its ``rows`` announced
    (none skipped): only a complete report marks rows not placed.
    """

    day: date
    provider_rows: int
    created: int
    updated: int
    settled: int
    not_placed: int
    skipped: int = 0
    complete: bool = True


def _complete(records: Sequence[CallRecord]) -> bool:
    """Whether ``records`` are the whole day: a gateway's plain list vouches for itself."""
    return records.complete if isinstance(records, DailyReport) else True


def moscow_day(day: date) -> tuple[datetime, datetime]:
    """The start and end (exclusive) of the provider's ``day``: days are Moscow days."""
    start = datetime.combine(day, time.min, tzinfo=PROVIDER_TZ)
    return start, start + timedelta(days=1)


#: States only an SMS has: the channel of a record whose service is missing.
_SMS_ONLY = frozenset(
    {CallState.QUEUED, CallState.SEND, CallState.DELIVERED, CallState.NOT_DELIVERED}
)


def channel_of(record: CallRecord) -> str:
    """Guess the channel of a call placed outside this site from its record.

    The provider's ``service`` names the product, not the channel, and the
    reference shows a single value, ``"Voice Password"`` (a voice call); the
    dashboard and the emulator also show ``"Flash Call"`` and ``"SMS"``. So: a
    service that mentions SMS is an SMS, one that mentions flash a flash call;
    without a service, a state only an SMS can be in (queued, sent, delivered,
    not delivered) means an SMS; anything else is taken for a voice call, the
    provider's original product.
    """
    service = (record.service or "").casefold()
    if "sms" in service or "смс" in service:
        return Call.Channel.SMS
    if "flash" in service:
        return Call.Channel.FLASH_CALL
    if not service and record.state in _SMS_ONLY:
        return Call.Channel.SMS
    return Call.Channel.VOICE_CALL


def _window(call: _Row) -> tuple[datetime, datetime]:
    """The provider dates that may be ``call``'s record, both ends included."""
    return call.created_at - SETTLE_BEFORE, call.created_at + SETTLE_AFTER


def _match(
    candidates: Sequence[_Row], records: Iterable[CallRecord]
) -> list[tuple[_Row, CallRecord]]:
    """Pair local rows of unknown outcome with provider records, closest in time first.

    A record matches a row with the same number when it is dated within the
    row's window (:data:`SETTLE_BEFORE`, :data:`SETTLE_AFTER`). Each row takes
    one record at most and each record settles one row at most: every
    possible pair is ranked by the time between the two, and a pair is taken
    unless its row or its record was taken by a closer pair (ties go to the
    older row, then the lower request id, so the result does not depend on the
    order of the provider's report).
    """
    by_number: dict[str, list[_Row]] = {}
    for call in candidates:
        by_number.setdefault(call.number, []).append(call)
    pairs: list[tuple[timedelta, int, str, _Row, CallRecord]] = []
    for record in records:
        rows = by_number.get(record.number)
        if not rows or record.date is None:
            continue
        for call in rows:
            low, high = _window(call)
            if low <= record.date <= high:
                pairs.append(
                    (abs(record.date - call.created_at), call.pk, record.id, call, record)
                )
    pairs.sort(key=lambda pair: pair[:3])
    taken_calls: set[int] = set()
    taken_records: set[str] = set()
    matched = []
    for _distance, pk, record_id, call, record in pairs:
        if pk in taken_calls or record_id in taken_records:
            continue
        taken_calls.add(pk)
        taken_records.add(record_id)
        matched.append((call, record))
    return matched


#: A row still ``pending`` this long after it was written lost its process
#: between writing the row and recording the answer (a killed server): a send
#: takes at most its connect and read timeouts, seconds.
ABANDONED_AFTER = timedelta(minutes=10)


def _abandon_pending(alias: str, start: datetime, end: datetime, now: datetime) -> None:
    """Turn the day's abandoned ``pending`` rows into ``unknown`` ones, to be settled.

    Their call may well have been placed; as ``unknown`` a record of the
    provider settles them instead of becoming a second row for the same call.
    One UPDATE, whatever the number of rows.
    """
    Call.objects.using(alias).filter(
        status=Call.Status.PENDING,
        provider_id__isnull=True,
        created_at__gte=start - SETTLE_AFTER,
        created_at__lt=min(end + SETTLE_BEFORE, now - ABANDONED_AFTER),
    ).update(status=Call.Status.UNKNOWN, error_code="abandoned", updated_at=now)


def _settle_candidate(call: _Row) -> bool:
    """Whether a row without a request id may still be given one by a record.

    Unknown outcomes, and the rows an earlier run marked not placed for want of
    a record (the provider's report may have been late): a record that turns
    up after all revives them rather than becoming a second row for the same
    call.
    """
    return call.provider_id is None and (
        call.status == Call.Status.UNKNOWN
        or (call.status == Call.Status.NOT_PLACED and call.error_code == NOT_IN_DAILY)
    )


#: Every column of a row: what a ``Call`` built for a signal's receiver (or
#: ``bulk_update``) is made of.
_COLUMNS = tuple(field.attname for field in Call._meta.concrete_fields)
#: The attributes of a :class:`_Row` after its key: the columns deciding needs.
_ROW_ATTRS = (
    "provider_id",
    "number",
    "status",
    "state_label",
    "error_code",
    "price",
    "duration",
    "provider_date",
    "created_at",
)
#: The key and :data:`_ROW_ATTRS` of a row read whole (:data:`_COLUMNS`).
_PICK = operator.itemgetter(
    _COLUMNS.index(Call._meta.pk.attname), *(_COLUMNS.index(name) for name in _ROW_ATTRS)
)


class _Row:
    """A local row as :func:`reconcile_day` reads it: what deciding needs.

    Half a day's report is rows of this site: a model instance for each cost
    more than the decisions about it. The decision reads and changes these
    attributes; a ``Call`` is built (:meth:`call`) only where one is needed,
    for the receivers of ``call_status_changed`` and for ``bulk_update``
    outside PostgreSQL, from ``values``: every column (:data:`_COLUMNS`), as
    read (outside PostgreSQL) or as written (PostgreSQL's ``RETURNING``, asked
    for only when the signal has receivers).
    """

    __slots__ = ("values", "pk", *_ROW_ATTRS, "updated_at")

    pk: int
    provider_id: str | None
    number: str
    status: str
    state_label: str
    error_code: str
    price: Decimal | None
    duration: timedelta | None
    provider_date: datetime | None
    created_at: datetime
    updated_at: datetime | None

    def __init__(self, picked: Sequence[Any], values: tuple[Any, ...] | None = None) -> None:
        (
            self.pk,
            self.provider_id,
            self.number,
            self.status,
            self.state_label,
            self.error_code,
            self.price,
            self.duration,
            self.provider_date,
            self.created_at,
        ) = picked
        self.values = values
        self.updated_at = None

    def call(self, alias: str) -> Call:
        """The whole ``Call``: its columns (``values``) with the changes decided since."""
        assert self.values is not None
        call = Call.from_db(alias, _COLUMNS, self.values)
        for name in _ROW_ATTRS:
            setattr(call, name, getattr(self, name))
        if self.updated_at is not None:
            call.updated_at = self.updated_at
        return call


@dataclass(slots=True)
class _Change:
    """One existing row to write: its status when read, and what happened to it."""

    call: _Row
    old_status: str
    kind: str  # "updated", "settled" or "not_placed": the report's counter


class _Plan:
    """What one run does to the database, decided in Python from what was read."""

    def __init__(self) -> None:
        self.new: list[tuple[Any, ...]] = []
        self.changes: list[_Change] = []
        self.fields: set[str] = set()

    def change(self, call: _Row, changes: dict[str, Any], kind: str) -> None:
        """Apply ``changes`` to the instance and queue the row for writing."""
        old_status = call.status
        for field, value in changes.items():
            setattr(call, field, value)
        self.fields.update(changes)
        self.changes.append(_Change(call, old_status, kind))

    def settle(self, call: _Row, record: CallRecord) -> None:
        """Give ``call`` the request id of ``record`` and the state the record reports."""
        old_status = call.status
        # Decided as for a call whose outcome was never known, which is what
        # it is even when an earlier run marked it not placed for want of a
        # record: the record proves the provider accepted it.
        call.status = Call.Status.UNKNOWN
        changes = record_changes(call, record, authoritative=True)
        call.status = old_status
        # A label nobody knows moves nothing, but the call was placed.
        changes.setdefault("status", Call.Status.PLACED)
        changes["error_code"] = ""
        changes["provider_id"] = record.id
        self.change(call, changes, "settled")

    def not_placed(self, call: _Row) -> None:
        """Mark ``call`` as never placed: the provider's report has no record of it."""
        self.change(
            call, {"status": Call.Status.NOT_PLACED, "error_code": NOT_IN_DAILY}, "not_placed"
        )


# --------------------------------------------------------------------------- the day


def reconcile_day(day: date) -> ReconcileReport:
    """Bring the history of ``day`` (a Moscow day) in line with the provider's ``daily`` report.

    Creates rows for the calls placed outside this site (channel guessed by
    :func:`channel_of`, ``created_at`` the provider's date); corrects states,
    labels, prices, durations and dates by :func:`record_changes` (forward
    moves and final-to-final corrections, never final to intermediate);
    settles the ``unknown`` rows a record matches by number and time (see
    :func:`_match`); and once the day is over (plus :data:`SETTLE_AFTER`), marks
    the ``unknown`` rows created that day that no record matches ``not_placed``
    with the error code :data:`NOT_IN_DAILY` — but only from a complete report
    (:attr:`~django_voicepassword.client.DailyReport.complete`: as many records
    read as its ``rows`` announced, none unreadable), since a call missing from
    a cut report may well have been placed. ``call_status_changed`` (source
    ``"daily"``) is sent for every row whose status moved, after the commit.

    One transaction, and idempotent: a second run changes nothing, and the
    unique request id keeps a row from being created twice. On PostgreSQL it
    makes at most five queries whatever the number of rows (a lock, an UPDATE
    of the abandoned pending rows, a SELECT, an INSERT, an UPDATE), plus one
    when a row near midnight needs the next or previous day's report to be
    decided. Other databases read and write in
    batches (SQLite limits the parameters of a statement), so there the number
    of queries grows with the rows.

    Call it outside a transaction: it makes a network request first, and its
    signals are sent when its own transaction commits.
    """
    gateway = get_gateway()
    # Fetched before the transaction opens: no lock is held across the request.
    records = gateway.daily(day)
    start, end = moscow_day(day)
    now = timezone.now()
    by_id = _usable(records)
    alias = router.db_for_write(Call)
    connection = connections[alias]
    postgresql = connection.vendor == "postgresql"
    plan = _Plan()
    with transaction.atomic(using=alias):
        if postgresql:
            _lock_day(connection, day)
        _abandon_pending(alias, start, end, now)
        local = _read(connection, alias, list(by_id), start, end, postgresql=postgresql)
        known = {call.provider_id: call for call in local if call.provider_id}
        candidates = [call for call in local if _settle_candidate(call)]

        unclaimed = []
        recent = now - SETTLE_AFTER
        for record in by_id.values():
            call = known.get(record.id)
            if call is not None:
                changes = record_changes(call, record, authoritative=True)
                if changes:
                    plan.change(call, changes, "updated")
            elif record.date is not None and record.date > recent:
                # Too recent to be anyone's but perhaps a call whose send/ is
                # still waiting for its answer here: taking its id now would
                # make that call's own save fail. The next run takes it.
                continue
            else:
                unclaimed.append(record)

        settled = _match(candidates, unclaimed) if candidates else []
        settled_ids = set()
        for call, record in settled:
            plan.settle(call, record)
            settled_ids.add(record.id)
        for record in unclaimed:
            if record.id not in settled_ids:
                new = _new_call(record, start)
                if new is not None:
                    plan.new.append(new)

        complete = _complete(records)
        if now >= end + SETTLE_AFTER and not complete:
            # A missing record may be in the part of the report that did not
            # arrive or could not be read: "not in the report" proves nothing.
            logger.warning(
                "daily %s: the report is incomplete (%d records read, %s announced, "
                "%d unreadable): no unknown call is marked not placed",
                day.isoformat(),
                len(records),
                getattr(records, "rows", None),
                getattr(records, "skipped", 0),
            )
        elif now >= end + SETTLE_AFTER:
            taken = {call.pk for call, _record in settled}
            unsettled = [call for call in candidates if call.pk not in taken]
            _decide_leftovers(plan, unsettled, day, by_id, alias, gateway.daily)

        created = _insert(plan.new, alias, connection, now)
        written = _update(connection, alias, plan, now, postgresql=postgresql)

        moved = [change for change in written if change.call.status != change.old_status]
        if moved:
            transaction.on_commit(lambda: _announce(moved, alias), using=alias)

    if created or written:
        # The day's figures, if the admin cached them, are read again.
        from django_voicepassword import dashboard

        dashboard.forget_if_finished(start)
    counts = dict.fromkeys(("updated", "settled", "not_placed"), 0)
    for change in written:
        counts[change.kind] += 1
    report = ReconcileReport(
        day,
        len(records),
        created,
        counts["updated"],
        counts["settled"],
        counts["not_placed"],
        skipped=getattr(records, "skipped", 0),
        complete=complete,
    )
    logger.info("Reconciled %s: %s", day.isoformat(), report)
    return report


_ID_LENGTH = Call._meta.get_field("provider_id").max_length or 32
_NUMBER_LENGTH = Call._meta.get_field("number").max_length or 16


def _usable(records: Sequence[CallRecord]) -> dict[str, CallRecord]:
    """The report's records by request id, the last one winning when an id repeats.

    A request id too long for the column cannot be stored, nor match one that
    was: the record is logged and left out rather than let one odd row fail
    the whole day.
    """
    by_id: dict[str, CallRecord] = {}
    for record in records:
        if len(record.id) > _ID_LENGTH:
            logger.warning("daily: request id of %d digits left out", len(record.id))
            continue
        by_id[record.id] = record
    return by_id


#: The fields a row created for a call placed outside this site takes from its
#: record, in the order of :func:`_new_call`'s values; the others take their defaults.
_NEW = (
    "provider_id",
    "channel",
    "number",
    "status",
    "state_label",
    "price",
    "duration",
    "provider_date",
    "created_at",
)


def _new_call(record: CallRecord, start: datetime) -> tuple[Any, ...] | None:
    """The values (:data:`_NEW`) of the row of a call placed outside this site.

    ``None`` if it cannot be stored. Values, not a ``Call``: on PostgreSQL
    they go straight into the INSERT's arrays, and building tens of thousands
    of model instances only to read their fields back cost as much as the
    INSERT itself.
    """
    if len(record.number) > _NUMBER_LENGTH:
        logger.warning("daily: request %s has a number too long to store; left out", record.id)
        return None
    return (
        record.id,
        channel_of(record),
        record.number,
        status_for_state(record.state) or Call.Status.PLACED,
        record.state_label[:64],
        record.price,
        record.duration,
        record.date,
        record.date or start,
    )


def _decide_leftovers(
    plan: _Plan,
    unsettled: list[_Row],
    day: date,
    by_id: dict[str, CallRecord],
    alias: str,
    daily: Callable[[date], list[CallRecord]],
) -> None:
    """Mark the day's unknown rows that no record matched not placed.

    ``unsettled`` are the candidates no record of the day settled. Those of
    them created on the day and still ``unknown`` are marked; but a row
    created in the last :data:`SETTLE_AFTER` of the day may have been stamped
    by the provider after midnight (and one created in the first
    :data:`SETTLE_BEFORE`, before it), so its record may be in the
    neighbouring day's report. That report is asked for only when such a row
    is left, which is rare (unknown outcomes are); its records may still
    settle the rows, paired with all the unsettled candidates so that a closer
    row of the next day keeps its own record; and if it cannot be had, the rows
    near midnight stay unknown for a later run.
    """
    start, end = moscow_day(day)
    leftovers = [
        call
        for call in unsettled
        if call.status == Call.Status.UNKNOWN and start <= call.created_at < end
    ]
    if not leftovers:
        return
    neighbours = set()
    for call in leftovers:
        low, high = _window(call)
        if low < start:
            neighbours.add(day - timedelta(days=1))
        if high >= end:
            neighbours.add(day + timedelta(days=1))
    # Rows not to mark: settled by a neighbour's record, or left for a later run.
    keep: set[int] = set()
    if neighbours:
        numbers = {call.number for call in leftovers}
        extra: list[CallRecord] = []
        whole = True
        try:
            for other in sorted(neighbours):
                report = daily(other)
                whole = whole and _complete(report)
                extra += [r for r in report if r.number in numbers and r.id not in by_id]
        except VoicePasswordError as error:
            logger.warning(
                "daily: no report for the day next to %s (%s): rows near midnight stay unknown",
                day.isoformat(),
                error,
            )
            whole = False
            extra = []
        if not whole:
            # A row near midnight may have its record in the part of the
            # neighbour's report that is missing: leave it for a later run.
            keep = {call.pk for call in leftovers if not _within(call, start, end)}
        if extra:
            # These ids were not in the SELECT: one small query tells which are
            # already some row's, and so cannot settle another.
            taken = set(
                Call.objects.using(alias)
                .filter(provider_id__in=[record.id for record in extra])
                .values_list("provider_id", flat=True)
            )
            extra = [record for record in extra if record.id not in taken]
            for call, record in _match(unsettled, extra):
                plan.settle(call, record)
                keep.add(call.pk)
    for call in leftovers:
        if call.pk not in keep:
            plan.not_placed(call)


def _within(call: _Row, start: datetime, end: datetime) -> bool:
    """Whether every date that may be ``call``'s record falls in ``[start, end)``."""
    low, high = _window(call)
    return start <= low and high < end


# --------------------------------------------------------------------------- the database


def _lock_day(connection: BaseDatabaseWrapper, day: date) -> None:
    """Serialise the runs of one day (PostgreSQL): two workers may run the same task.

    Held to the end of the transaction. The second run then reads what the
    first wrote and finds nothing to do, instead of both deciding from the
    same stale rows.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, day.toordinal()])


def _read(
    connection: BaseDatabaseWrapper,
    alias: str,
    ids: list[str],
    start: datetime,
    end: datetime,
    *,
    postgresql: bool,
) -> list[_Row]:
    """The local rows the report may concern: those with its request ids, and the candidates.

    The candidates for settling (:func:`_settle_candidate`) are the rows created
    from :data:`SETTLE_AFTER` before the day to :data:`SETTLE_BEFORE` after it:
    the only ones whose window meets the day. Rows are found by request id, not
    by date, so a call of this site is found whatever its clock said. Read as
    tuples (:class:`_Row`), not model instances: on PostgreSQL only the columns
    deciding needs, elsewhere every column (a ``Call`` is built from them for
    ``bulk_update``).
    """
    calls = Call.objects.using(alias).order_by()
    candidate = Q(
        Q(status=Call.Status.UNKNOWN) | Q(status=Call.Status.NOT_PLACED, error_code=NOT_IN_DAILY),
        provider_id__isnull=True,
        created_at__gte=start - SETTLE_AFTER,
        created_at__lt=end + SETTLE_BEFORE,
    )
    if postgresql:
        lean = calls.values_list(Call._meta.pk.attname, *_ROW_ATTRS)
        if not ids:
            return [_Row(values) for values in lean.filter(candidate)]
        # One statement, UNION ALL: each half uses its own index (an OR would
        # not). A row is in one half at most: the candidates have no request id.
        by_id = lean.filter(_any_id(connection, ids))
        # Unordered: the combined query would otherwise sort by Meta.ordering.
        both = by_id.union(lean.filter(candidate), all=True).order_by()
        return [_Row(values) for values in both]
    # Elsewhere every column is read, the rows are locked where the database
    # can (SQLite serialises writers anyway), and the ids go in batches that
    # respect the limit on a statement's parameters (SQLite's is 32766 by
    # default, 999 before 3.32).
    whole = calls.values_list(*_COLUMNS)
    rows = list(whole.filter(candidate).select_for_update())
    step = max(1, (_max_params(connection) or len(ids) or 1) - 1)
    for index in range(0, len(ids), step):
        rows += whole.filter(provider_id__in=ids[index : index + step]).select_for_update()
    return [_Row(_PICK(values), values) for values in rows]


def _any_id(connection: BaseDatabaseWrapper, ids: list[str]) -> RawSQL:
    """``provider_id = ANY(...)`` of ``ids``, as one parameter (PostgreSQL).

    ``= ANY`` of an array, not ``IN (SELECT unnest(...))``: the planner sees
    the array and probes the unique index for its values in order (or, on a
    small table, scans it once against a hash of them), where the subquery
    costs a hash aggregate of the ids and then one index probe per id, about
    ten times as long. Request ids are digits (:func:`~django_voicepassword.client.parse_id`),
    so they travel as one comma-separated string split by the server: Django
    binds parameters on the client, and quoting an array's every element in
    Python cost more than the server's whole search. An id with a comma in it
    (from a gateway of one's own) sends the array.
    """
    qn = connection.ops.quote_name
    column = f"{qn(Call._meta.db_table)}.{qn(_column(_field('provider_id')))}"
    joined = ",".join(ids)
    params: tuple[str | list[str]]
    # Only the model's own table and column names, quoted, are interpolated.
    if joined.count(",") == len(ids) - 1 and "" not in ids:
        sql, params = f"{column} = ANY(string_to_array(%s, ','))", (joined,)
    else:
        sql, params = f"{column} = ANY(%s::varchar[])", (ids,)
    return RawSQL(sql, params, output_field=models.BooleanField())  # noqa: S611


def _max_params(connection: BaseDatabaseWrapper) -> int | None:
    """The most parameters one statement may take on ``connection`` (``None``: no limit).

    SQLite's limit is a property of the library it was built with (999 before
    3.32, 32766 after) and can be lowered at run time; Django 5.2 assumes 999
    where 6.x asks the connection. Ask the connection here too.
    """
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        getlimit = getattr(connection.connection, "getlimit", None)
        if getlimit is not None:
            return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    limit = connection.features.max_query_params
    return None if limit is None else int(limit)


def _insert(
    new: list[tuple[Any, ...]], alias: str, connection: BaseDatabaseWrapper, now: datetime
) -> int:
    """Insert the rows of calls placed outside this site; return how many.

    ``ignore_conflicts``: a row with the same request id inserted meanwhile by
    someone else (the runs of a day are serialised, so a concurrent
    ``send/`` answer at most) wins, and is corrected by the next run. It is
    counted all the same: PostgreSQL's ``ON CONFLICT DO NOTHING`` does not say
    which rows it skipped without a costlier ``RETURNING``.
    """
    if not new:
        return 0
    if connection.vendor == "postgresql":
        _insert_postgresql(connection, new, now)
        return len(new)
    # Elsewhere batches within the connection's real parameter limit.
    limit = _max_params(connection)
    fields = len(Call._meta.concrete_fields)
    batch = None if limit is None else max(1, limit // fields)
    rows = [Call(**dict(zip(_NEW, values, strict=True))) for values in new]
    Call.objects.using(alias).bulk_create(rows, batch_size=batch, ignore_conflicts=True)
    return len(new)


def _insert_postgresql(
    connection: BaseDatabaseWrapper, new: list[tuple[Any, ...]], now: datetime
) -> None:
    """One ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` of the new rows.

    What ``bulk_create()`` sends on PostgreSQL, without its cost in Python: a
    model instance per row, then each field's ``pre_save()`` and preparation
    read back from it. The values of :data:`_NEW` travel as one array
    parameter per column; every other column takes its default once, as
    ``bulk_create()`` would (``updated_at``, ``auto_now``, the run's time).
    """
    qn = connection.ops.quote_name
    given = [_field(name) for name in _NEW]
    others = [
        field
        for field in Call._meta.concrete_fields
        if not field.primary_key and field.name not in _NEW
    ]
    constants = [
        now
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        else field.get_db_prep_save(field.get_default(), connection)
        for field in others
    ]
    names = ", ".join(qn(_column(field)) for field in (*given, *others))
    arrays = ", ".join(f"%s::{_base_type(field, connection)}[]" for field in given)
    selected = ", ".join(
        [*(f"v.{qn(_column(field))}" for field in given)]
        + [f"%s::{_base_type(field, connection)}" for field in others]
    )
    aliases = ", ".join(qn(_column(field)) for field in given)
    # Only the model's own table and column names, quoted, are interpolated;
    # every value is a parameter.
    sql = (
        f"INSERT INTO {qn(Call._meta.db_table)} ({names}) "  # noqa: S608
        f"SELECT {selected} FROM unnest({arrays}) AS v({aliases}) ON CONFLICT DO NOTHING"
    )
    columns = [list(column) for column in zip(*new, strict=True)]
    with connection.cursor() as cursor:
        # The constants come first: the SELECT list precedes the FROM.
        cursor.execute(sql, [*constants, *columns])


def _base_type(field: models.Field[Any, Any], connection: BaseDatabaseWrapper) -> str:
    """``field``'s column type without its modifiers (varchar, not varchar(16)).

    As in Django's own bulk insert: the column itself checks the length.
    """
    return (field.db_type(connection) or "text").split("(")[0]


#: Rows per UPDATE outside PostgreSQL. Django's bulk_update writes one
#: ``CASE WHEN pk = ...`` per row and field, which the database evaluates for
#: every row of the batch: the work grows with the square of the batch, so the
#: batches stay small.
FALLBACK_BATCH = 200


def _update(
    connection: BaseDatabaseWrapper, alias: str, plan: _Plan, now: datetime, *, postgresql: bool
) -> list[_Change]:
    """Write the changed rows; return the changes that were written."""
    if not plan.changes:
        return []
    if postgresql:
        return _update_postgresql(connection, plan.changes, now)
    for change in plan.changes:
        change.call.updated_at = now
    fields = [name for name in _WRITTEN if name in plan.fields] + ["updated_at"]
    # Each row takes a "WHEN pk = %s THEN %s" per field and a place in the
    # "pk IN (...)": Django's own estimate (two parameters and one per field)
    # falls short of that when the database limits parameters, as SQLite does.
    limit = _max_params(connection)
    batch = (
        FALLBACK_BATCH if limit is None else min(FALLBACK_BATCH, limit // (1 + 2 * len(fields)))
    )
    Call.objects.using(alias).bulk_update(
        [change.call.call(alias) for change in plan.changes], fields, batch_size=max(1, batch)
    )
    return plan.changes


def _update_postgresql(
    connection: BaseDatabaseWrapper, changes: list[_Change], now: datetime
) -> list[_Change]:
    """One ``UPDATE ... FROM unnest(...)`` for every changed row.

    Each column travels as one array parameter, so the statement's size and
    the planner's work do not grow with the rows (``bulk_update``'s ``CASE``
    does, quadratically). A row is written only if its status is still the
    one read: the rows are not locked, and a callback that moved one meanwhile
    wins; the next run corrects it if the report says otherwise. ``RETURNING``
    tells which rows were written, so that signals go for those alone; when
    ``call_status_changed`` has receivers it returns every column, the rows
    as written, from which their ``Call`` is built (the SELECT read only what
    deciding needs).
    """
    qn = connection.ops.quote_name
    pk, status, updated_at = _field("id"), _field("status"), _field("updated_at")
    fields = [_field(name) for name in _WRITTEN]
    names = [qn(_column(pk)), qn("old_status"), *(qn(_column(field)) for field in fields)]
    rows = [change.call for change in changes]
    columns: list[list[Any]] = [
        [row.pk for row in rows],
        [change.old_status for change in changes],
        *(list(map(operator.attrgetter(field.attname), rows)) for field in fields),
    ]
    arrays: list[str] = []
    params: list[Any] = [now]  # the SET's updated_at comes first
    for field, column in zip((pk, status, *fields), columns, strict=True):
        if field.attname == "status":
            # Statuses are words of Call.Status: one string the server splits
            # costs less than an array quoted element by element in Python.
            array, param = _words(column)
        else:
            array, param = f"%s::{_base_type(field, connection)}[]", column
        arrays.append(array)
        params.append(param)
    assignments = ", ".join(f"{qn(_column(field))} = v.{qn(_column(field))}" for field in fields)
    table, pk_column = qn(Call._meta.db_table), qn(_column(pk))
    # Only the model's own table and column names, quoted, are interpolated;
    # every value is a parameter.
    sql = (
        f"UPDATE {table} AS c SET {assignments}, {qn(_column(updated_at))} = %s "  # noqa: S608
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(names)}) "
        f"WHERE c.{pk_column} = v.{pk_column} "
        f"AND c.{qn(_column(status))} = v.{qn('old_status')} "
        f"RETURNING c.{pk_column}"
    )
    whole = call_status_changed.has_listeners(Call)
    if whole:
        sql += "".join(f", c.{qn(column)}" for column in _COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchall()
    if whole:
        by_pk = {row[0]: row[1:] for row in returned}
        for change in changes:
            change.call.values = by_pk.get(change.call.pk)
        written: Iterable[int] = by_pk
    else:
        written = {row[0] for row in returned}
    if len(returned) < len(changes):
        logger.info(
            "daily: %d rows changed meanwhile were left for the next run",
            len(changes) - len(returned),
        )
    return [change for change in changes if change.call.pk in written]


def _words(values: list[str]) -> tuple[str, str | list[str]]:
    """An SQL array of ``values`` and its parameter: one comma-separated string if it can be.

    Django binds parameters on the client, where an array is quoted element
    by element in Python; ``string_to_array`` of one string is split by the
    server. Words with a comma (or a lone empty one, which would split into
    no element at all) go as an array.
    """
    joined = ",".join(values)
    if joined.count(",") == len(values) - 1 and joined:
        return "string_to_array(%s, ',')::varchar[]", joined
    return "%s::varchar[]", values


def _field(name: str) -> models.Field[Any, Any]:
    field = Call._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _column(field: models.Field[Any, Any]) -> str:
    assert field.column is not None
    return field.column


def _announce(moved: list[_Change], alias: str) -> None:
    """Send ``call_status_changed`` for every row whose status moved.

    Each receiver gets a whole ``Call``, built from the row's columns as read
    or as written (nothing is queried); with no receiver none is built. A
    receiver connected while the run wrote (so that PostgreSQL's ``RETURNING``
    did not return every column) costs one query for the rows' columns.
    """
    if not call_status_changed.has_listeners(Call):
        return
    missing = [change.call.pk for change in moved if change.call.values is None]
    found: dict[int, Call] = Call.objects.using(alias).in_bulk(missing) if missing else {}
    for change in moved:
        call = found[change.call.pk] if change.call.values is None else change.call.call(alias)
        call_status_changed.send(
            sender=Call,
            call=call,
            old_status=change.old_status,
            new_status=change.call.status,
            source="daily",
        )
