"""What reconcile_day costs: a day of N provider records against the floor of its writes.

Run ``python bench/reconcile.py [--rows N] [--rounds R]`` (default 100,000 rows,
5 rounds).

The script creates its own PostgreSQL database (``voicepassword_bench_reconcile_<pid>``
on 127.0.0.1:5432, dropped at the end), migrates it and generates one day of N
provider records, a realistic mix:

* half are calls this site placed: their rows exist, most of them stale (still
  ``placed`` or ``dialling``, no price or an old one), a fifth already right;
* 1% are calls whose outcome was unknown here (rows without a request id,
  settled by number and time), and a further 0.1% of unknown rows have no
  record at all (marked not placed);
* the rest were placed elsewhere: reconcile creates their rows.

The gateway returns the prepared records, so only the database work and the
Python around it are measured. Each round times, in alternating order, on a
table holding the same local rows (loaded and analysed before the clock
starts, as a production table is):

* ``reconcile``: ``reconcile_day(day)``, which must read the rows and decide;
* the floor: the same inserts and updates, known beforehand from how the day
  was generated, done as directly as the ORM and one statement per kind allow,
  in one transaction: the new rows inserted by one ``INSERT ... SELECT FROM
  unnest(...)`` (each column one array parameter, as ``bulk_create()`` sends
  on PostgreSQL but without building a ``Call`` per row), then one ``UPDATE
  ... FROM unnest(...)`` per target status (a ``VALUES`` join too) and one for
  the rows marked not placed. The time of its statements alone (the arrays
  built) is printed too.

The statements reconcile executes are counted in separate runs at N and N/10.

It judges (exit status 0 pass, 1 miss, 2 not run; see ``bench/_harness.py``):

* the work, after every round of each side: each of the N records is exactly
  one row holding its request id, with the record's status, label and price;
  no row is left ``unknown``, the rows no record matches are ``not_placed``,
  and reconcile's report counts the N records. The floor must leave the same
  table, and reconcile's report must count the floor's inserts and updates
  (created; updated, settled and not placed): a floor that writes less than
  reconcile must would flatter it, and a reconciliation that writes nothing
  would be fast;
* the targets: the median of the rounds' reconcile/floor ratios at most 1.3
  (printed with the rounds' range), and the same statement count at N and
  N/10.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from _harness import (
    ADMIN_URL,
    Failed,
    Unavailable,
    Verdict,
    django_database,
    main,
    missing_postgres,
    ratios,
    run_database,
    scratch_database,
)

DATABASE = run_database("voicepassword_bench_reconcile")
DAY = date(2025, 3, 14)
#: reconcile_day() against the floor (its writes alone), at most (the median of the rounds).
TARGET = 1.3

#: The provider's labels and their share of the records, with the service.
STATES = (
    ("Успешно", "ANSWERED", "Voice Password", 0.45),
    ("Успешно", "ANSWERED", "Flash Call", 0.15),
    ("Нет ответа", "NO ANSWER", "Flash Call", 0.18),
    ("Занято", "BUSY", "Voice Password", 0.10),
    ("Ошибка", "FAIL", "Flash Call", 0.05),
    ("Доставлено", "DELIVERED", "SMS", 0.07),
)


@contextmanager
def bench_database() -> Iterator[None]:
    """Create the bench's database, set Django up on it, drop it at the end."""
    with scratch_database(DATABASE) as url:
        import django
        from django.conf import settings
        from django.core.management import call_command

        settings.configure(
            DEBUG=False,  # no query log: a production-like timing
            USE_TZ=True,
            TIME_ZONE="UTC",
            SECRET_KEY="bench-only-secret-key-not-for-production",  # noqa: S106 (not a secret)
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django_voicepassword",
            ],
            DATABASES={"default": django_database(url)},
            VOICEPASSWORD={"GATEWAY": f"{__name__}.PreparedGateway"},
        )
        django.setup()
        call_command("migrate", verbosity=0)
        try:
            yield
        finally:
            from django.db import connections

            connections.close_all()


# --------------------------------------------------------------------------- the day


@dataclass
class Day:
    """The provider's records of one day and the rows this site already has."""

    records: list[Any]  # CallRecord
    local: list[dict[str, Any]]  # Call fields


def generate(rows: int, seed: int = 20250314) -> Day:
    """N records and the local rows of the realistic mix described above."""
    from django_voicepassword.client import PROVIDER_TZ, CallRecord, CallState
    from django_voicepassword.models import Call, status_for_state

    rng = random.Random(seed)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=PROVIDER_TZ)
    weights = [share for *_rest, share in STATES]
    records: list[CallRecord] = []
    local: list[dict[str, Any]] = []
    for index in range(rows):
        # Spread over the day, whole seconds as the provider reports them.
        when = start + timedelta(seconds=index * 86_000 // rows + 60)
        label, state_name, service, _share = rng.choices(STATES, weights)[0]
        state = CallState(state_name)
        number = f"7999{index:07d}"
        price = Decimal("3.30") if service == "SMS" else Decimal("0.35")
        duration = timedelta(seconds=rng.randint(0, 40)) if service != "SMS" else None
        record = CallRecord(
            id=str(1_000_000 + index),
            number=number,
            date=when,
            duration=duration,
            price=price,
            state=state,
            state_label=label,
            service=service,
            raw={},
        )
        records.append(record)
        channel = {"SMS": "sms", "Flash Call": "flash_call"}.get(service, "voice_call")
        created_at = when - timedelta(seconds=2)
        roll = rng.random()
        if roll < 0.5:
            fresh = rng.random() < 0.2
            final = status_for_state(state)
            local.append(
                {
                    "provider_id": record.id,
                    "channel": channel,
                    "number": number,
                    "status": final if fresh else rng.choice(["placed", "dialling"]),
                    "state_label": label if fresh else "",
                    "price": price if fresh else rng.choice([None, Decimal("0.30")]),
                    "duration": duration if fresh else None,
                    "provider_date": when if fresh else None,
                    "created_at": created_at,
                }
            )
        elif roll < 0.51:
            local.append(
                {
                    "channel": channel,
                    "number": number,
                    "status": Call.Status.UNKNOWN,
                    "error_code": "outcome_unknown",
                    "created_at": created_at,
                }
            )
    for index in range(rows // 1000):
        local.append(
            {
                "channel": "flash_call",
                "number": f"7998{index:07d}",
                "status": Call.Status.UNKNOWN,
                "error_code": "outcome_unknown",
                "created_at": start + timedelta(hours=12, seconds=index),
            }
        )
    return Day(records, local)


_PREPARED: dict[date, list[Any]] = {}


def _make_gateway() -> type:
    from django_voicepassword.gateways import BaseGateway

    class PreparedGateway(BaseGateway):
        """Answers ``daily`` with the prepared records: no HTTP, no parsing."""

        def daily(self, day: date) -> list[Any]:
            return _PREPARED.get(day, [])

        def flash_call(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        voice_call = sms = balance = state = flash_call

    return PreparedGateway


def __getattr__(name: str) -> Any:
    # The GATEWAY setting imports "<this module>.PreparedGateway"; it is built
    # lazily because BaseGateway can only be imported once Django is set up.
    if name == "PreparedGateway":
        gateway = _make_gateway()
        globals()[name] = gateway
        return gateway
    raise AttributeError(name)


# --------------------------------------------------------------------------- the sides


def reset(local: list[dict[str, Any]]) -> list[Any]:
    """An empty table, then the local rows, analysed: a table in use, not a fresh one.

    Returns the rows written, with their primary keys, in the order of ``local``.
    """
    from django.db import connection

    from django_voicepassword.models import Call

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Call._meta.db_table} RESTART IDENTITY CASCADE")
    rows = Call.objects.bulk_create([Call(**fields) for fields in local]) if local else []
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Call._meta.db_table}")
    gc.collect()
    return rows


def run_reconcile(day: Day) -> tuple[float, Any]:
    from django_voicepassword import calls

    reset(day.local)
    _PREPARED[DAY] = day.records
    started = time.perf_counter()
    report = calls.reconcile_day(DAY)
    return time.perf_counter() - started, report


#: The columns the floor writes on a row whose record it takes, after the key.
_TAKEN = ("provider_id", "state_label", "error_code", "price", "duration", "provider_date")
#: The columns of a new row the floor takes from its record, with their array types.
_NEW = (
    ("provider_id", "varchar"),
    ("channel", "varchar"),
    ("number", "varchar"),
    ("status", "varchar"),
    ("state_label", "varchar"),
    ("price", "numeric"),
    ("duration", "interval"),
    ("provider_date", "timestamptz"),
    ("created_at", "timestamptz"),
)


@dataclass
class Writes:
    """What reconciling the day must write, known beforehand: the floor's work."""

    #: The rows of the records no local row has: ``Call`` fields.
    new: list[dict[str, Any]]
    #: Per target status, the rows that move to it: the key, then ``_TAKEN``.
    taken: dict[str, list[tuple[Any, ...]]]
    #: The keys of the unknown rows no record has: marked not placed.
    not_placed: list[int]

    @property
    def updated(self) -> int:
        """How many existing rows change."""
        return sum(map(len, self.taken.values())) + len(self.not_placed)


def writes(day: Day, rows: list[Any]) -> Writes:
    """The inserts and updates that bring ``rows`` (the local rows, written) in line with the day.

    Known from how the day was generated, not read from the table: a row with
    a request id takes its record's state, label, price, duration and date
    unless it has them already; an unknown row takes the record of its number
    (each number has one record here), or is marked not placed when there is
    none; every other record is a new row.
    """
    from django_voicepassword.models import Call, status_for_state
    from django_voicepassword.reconcile import channel_of

    by_id = {record.id: record for record in day.records}
    by_number = {record.number: record for record in day.records}
    taken: dict[str, list[tuple[Any, ...]]] = {}
    not_placed: list[int] = []
    claimed: set[str] = set()
    for fields, row in zip(day.local, rows, strict=True):
        if "provider_id" in fields:
            record = by_id[fields["provider_id"]]
            claimed.add(record.id)
            now = (fields["status"], fields["state_label"], fields["price"], fields["duration"])
            if (
                now
                == (
                    status_for_state(record.state),
                    record.state_label,
                    record.price,
                    record.duration,
                )
                and fields["provider_date"] == record.date
            ):
                continue
        elif fields["number"] in by_number:
            record = by_number[fields["number"]]
            claimed.add(record.id)
        else:
            not_placed.append(row.pk)
            continue
        status = status_for_state(record.state) or Call.Status.PLACED
        taken.setdefault(status, []).append(
            (row.pk, record.id, record.state_label, "", record.price, record.duration, record.date)
        )
    new = [
        {
            "provider_id": record.id,
            "channel": channel_of(record),
            "number": record.number,
            "status": status_for_state(record.state) or Call.Status.PLACED,
            "state_label": record.state_label,
            "price": record.price,
            "duration": record.duration,
            "provider_date": record.date,
            "created_at": record.date,
        }
        for record in day.records
        if record.id not in claimed
    ]
    return Writes(new, taken, not_placed)


def run_floor(day: Day) -> tuple[float, float, Writes]:
    """The floor: the day's inserts and updates, known beforehand, written as directly as can be.

    One transaction, as ``reconcile_day``'s: the new rows inserted by one
    ``INSERT ... SELECT FROM unnest(...)`` (the other columns their defaults:
    no error code, no callback dropped, updated now); then one ``UPDATE ...
    FROM unnest(...)`` per target status. Each column is one array parameter
    (a ``VALUES`` join without PostgreSQL's limit of 65,535 parameters).
    Returns the whole time, the time of the writes alone (the arrays built),
    and the writes.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from django_voicepassword.models import Call
    from django_voicepassword.reconcile import NOT_IN_DAILY

    planned = writes(day, reset(day.local))
    table = connection.ops.quote_name(Call._meta.db_table)
    columns = ", ".join(_TAKEN)
    assignments = ", ".join(f"{column} = v.{column}" for column in _TAKEN)
    arrays = "%s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[], %s::numeric[], "
    arrays += "%s::interval[], %s::timestamptz[]"
    take = (
        f"UPDATE {table} AS c SET status = %s, {assignments}, updated_at = %s "  # noqa: S608
        f"FROM unnest({arrays}) AS v(id, {columns}) WHERE c.id = v.id"
    )
    mark = f"UPDATE {table} SET status = %s, error_code = %s, updated_at = %s WHERE id = ANY(%s)"  # noqa: S608
    given = ", ".join(name for name, _type in _NEW)
    insert = (
        f"INSERT INTO {table} ({given}, error_code, callbacks_dropped, updated_at) "  # noqa: S608
        f"SELECT v.*, '', 0, %s FROM unnest("
        + ", ".join(f"%s::{array}[]" for _name, array in _NEW)
        + f") AS v({given})"
    )
    started = time.perf_counter()
    now = timezone.now()
    with transaction.atomic():
        arrays_new = [[fields[name] for fields in planned.new] for name, _type in _NEW]
        writing = time.perf_counter()
        with connection.cursor() as cursor:
            if planned.new:
                cursor.execute(insert, [now, *arrays_new])
            for status, changes in planned.taken.items():
                cursor.execute(take, [status, now, *map(list, zip(*changes, strict=True))])
            if planned.not_placed:
                cursor.execute(mark, ["not_placed", NOT_IN_DAILY, now, planned.not_placed])
    done = time.perf_counter()
    return done - started, done - writing, planned


def count_statements(day: Day) -> int:
    """The statements one reconcile_day executes (transaction control aside)."""
    from django.db import connection

    from django_voicepassword import calls

    reset(day.local)
    _PREPARED[DAY] = day.records
    executed = 0

    def counter(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        nonlocal executed
        executed += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counter):
        calls.reconcile_day(DAY)
    return executed


def verify_reconciled(day: Day, report: Any) -> list[str]:
    """What the table lacks after ``reconcile_day`` of ``day`` (nothing when it did its work).

    ``report`` is what ``reconcile_day`` returned; ``None`` for the floor, which has none.
    """
    from django_voicepassword.models import Call, status_for_state

    expected = {record.id: record for record in day.records}
    rows_of: Counter[str] = Counter()
    wrong = stray = left_unknown = not_placed = 0
    fields = ("provider_id", "status", "price", "state_label")
    for provider_id, status, price, label in Call.objects.values_list(*fields).iterator(
        chunk_size=20_000
    ):
        if provider_id is None:
            left_unknown += status == Call.Status.UNKNOWN
            not_placed += status == Call.Status.NOT_PLACED
            continue
        record = expected.get(provider_id)
        if record is None:
            stray += 1
            continue
        rows_of[provider_id] += 1
        if (status, price, label) != (
            status_for_state(record.state),
            record.price,
            record.state_label,
        ):
            wrong += 1
    problems = []
    missing = len(expected) - len(rows_of)
    twice = sum(n > 1 for n in rows_of.values())
    lonely = sum(
        "provider_id" not in row and row["number"].startswith("7998") for row in day.local
    )
    for count, what in (
        (missing, "records without a row"),
        (twice, "records on more than one row"),
        (wrong, "rows whose status, label or price is not the record's"),
        (stray, "rows with a request id of no record"),
        (left_unknown, "rows left unknown"),
    ):
        if count:
            problems.append(f"{count} {what}")
    if not_placed != lonely:
        problems.append(f"{not_placed} rows not_placed, {lonely} expected")
    if report is not None and getattr(report, "provider_rows", None) != len(day.records):
        problems.append(f"the report counts {getattr(report, 'provider_rows', None)} records")
    return problems


def run(args: argparse.Namespace) -> Verdict:
    why = missing_postgres(ADMIN_URL)
    if why is not None:
        raise Unavailable(why)
    with bench_database():
        return measure(max(10, args.rows), max(1, args.rounds))


def measure(rows: int, rounds: int) -> Verdict:
    verdict = Verdict()
    day = generate(rows)
    print(
        f"{rows} provider records; {len(day.local)} local rows "
        f"({sum('provider_id' in r for r in day.local)} with a request id)"
    )
    # Warm-up (imports, caches, the first plan), and a first look at the work.
    _seconds, report = run_reconcile(day)
    problems = verify_reconciled(day, report)
    if problems:
        raise Failed("reconcile_day() did not do its work: " + "; ".join(problems))
    *_times, planned = run_floor(day)
    problems = verify_reconciled(day, None)
    if problems:
        raise Failed("the floor did not do the day's work: " + "; ".join(problems))

    reconcile_s: list[float] = []
    floor_s: list[float] = []
    writes_s: list[float] = []
    undone: list[str] = []
    floor_undone: list[str] = []
    reports: list[Any] = []

    def reconcile_side() -> None:
        seconds, report = run_reconcile(day)
        reconcile_s.append(seconds)
        reports.append(report)
        undone.extend(verify_reconciled(day, report))

    def floor_side() -> None:
        whole, written, _planned = run_floor(day)
        floor_s.append(whole)
        writes_s.append(written)
        # The floor's table must be the reconciled day too.
        floor_undone.extend(verify_reconciled(day, None))

    # Alternating which side goes first, so that drift in the machine's speed
    # (other work on it, the disk's cache) falls on both alike.
    for index in range(rounds):
        sides = [reconcile_side, floor_side] if index % 2 == 0 else [floor_side, reconcile_side]
        for side in sides:
            side()

    verdict.require(
        "reconcile: every round reconciled every record",
        not undone,
        "; ".join(sorted(set(undone))) or f"{rounds} rounds checked, row by row",
    )
    verdict.require(
        "floor: every round left the table reconciled",
        not floor_undone,
        "; ".join(sorted(set(floor_undone))) or f"{rounds} rounds checked, row by row",
    )
    floor_counts = (len(planned.new), planned.updated)
    differing = [
        counts
        for counts in ((r.created, r.updated + r.settled + r.not_placed) for r in reports)
        if counts != floor_counts
    ]
    verdict.require(
        "floor: the inserts and updates reconcile made",
        not differing,
        f"reconcile inserted and updated {differing[0]}, the floor {floor_counts}"
        if differing
        else f"{floor_counts[0]} rows inserted, {floor_counts[1]} updated, by both",
    )
    print(f"report: {reports[-1]}")
    print(f"rounds: {rounds} (medians)")
    print(f"reconcile_day():                          {statistics.median(reconcile_s):7.3f} s")
    print(f"floor (new rows built, inserted; updates): {statistics.median(floor_s):7.3f} s")
    print(f"floor's statements alone:                 {statistics.median(writes_s):7.3f} s")
    print(
        "ratio reconcile/floor's statements alone: "
        f"{ratios(reconcile_s, writes_s).describe(2)} (for information)"
    )

    small = generate(max(1, rows // 10))
    at_n, at_tenth = count_statements(day), count_statements(small)
    print(f"statements of reconcile_day(): {at_n} at {rows} records, {at_tenth} at {rows // 10}")
    verdict.require(
        "statements the same at N and N/10",
        at_n == at_tenth,
        f"{at_n} at {rows} rows, {at_tenth} at {rows // 10} rows",
    )
    verdict.target("ratio reconcile/floor", ratios(reconcile_s, floor_s), at_most=TARGET, digits=2)
    return verdict


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="provider records (100000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per side (5)")
    return parser


if __name__ == "__main__":
    main(run, parser())
