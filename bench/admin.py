"""What the admin's call list, search, dashboard and insights cost on 10,000 and 10,000,000 calls.

Run ``python bench/admin.py [--rounds R] [--quick]`` (default 9 rounds; about
12 minutes on 2 shared cores, most of it building the large database once).
``--quick`` makes the large database 100,000 calls: a check of the script in
a minute, not the judgement.

The script creates two PostgreSQL databases of its own on 127.0.0.1:5432
(``voicepassword_bench_admin_10k_<pid>`` and ``..._10m_<pid>``, dropped at
the end), migrates them, and fills them with ``INSERT ... SELECT
generate_series`` (the rows are made by PostgreSQL, not by Python), both in
the same shape:

* N calls (10,000, and 10,000,000), one every 300 days / N, the oldest first:
  a tenth of them (1,000, and 1,000,000) in the last 30 days, the window of
  the dashboard and the insights page. A realistic mix of statuses and
  channels, 100 users; each call with its challenge (a second earlier, of the
  same channel, confirmed when the call was answered or delivered);
* the numbers: N / 1,000 of the test range 7999000xxxx (10, and 10,000), so
  that a number has 1,000 calls at either size, as a number's calls are
  bounded by the limits whatever the site's size;
* a balance snapshot every hour of the last 40 days.

The indexes and constraints of the two tables are dropped before the insert
and built after it (sorted builds), the tables are unlogged (no WAL for the
bulk: reading an unlogged table costs the same, and the pages only read
them), and both are ``VACUUM ANALYZE``-d, as autovacuum leaves a table in use.
The build takes minutes, so the calls a site would have made meanwhile are
then added at the same rate: the live hour (and the one before it, in its
first five minutes: ``dashboard.SETTLE_TIME``), which the dashboard and the
insights page read live, holds its calls (the run prints how many).

Each page is requested through Django's test ``Client`` as a superuser
(``DEBUG`` off), a database router pointing Django at one database or the
other and the cache at keys of its own (two sites): two warm-ups (the first
fills the cache of finished days, as the first visit of the hour does), then
``R`` rounds, each timing one request at 10k and one at 10M in alternating
order, so that drift in the machine's speed falls on both alike. Printed per
page: the median server time at each size, the median of the rounds' 10M/10k
ratios with their range, and the queries of one request at each size.

It judges (exit status 0 pass, 1 miss, 2 not run; see ``bench/_harness.py``):

* the work, on every page at both sizes: every request answered 200, and the
  page shows what the database holds: the call lists as many rows as the
  calls the page selects, counted by the ORM (up to the list's page size),
  the dashboard the last 30 days' calls in its figures and rows of its
  latest balances, the insights page the last 30 days' challenges as started
  and rows in its tables. A page that renders no rows would be fast, and
  fails here; a cache that lost or doubled a day fails here too;
* the targets, for the call list, the search by a full number, the dashboard
  and the insights page: the median ratio at most 1.5, and the same queries
  at both sizes, at most 8. The search is judged at 10M, not at the 5M of
  the issue: a larger table and a deeper index, so stricter.

The pages: the call list unfiltered, the list filtered by status, by channel
(SMS, 5% of the calls, the one filter without an index of its own), searched
by a full number (``+7 999 000-00-07``), and narrowed to a month by the date
hierarchy, the balance dashboard (its balance cached, as on a page reloaded
within 30 seconds; the gateway is the in-process LocmemGateway), and the
insights page of the last 30 days.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from _harness import (
    ADMIN_URL,
    Unavailable,
    Verdict,
    django_database,
    main,
    missing_postgres,
    ratios,
    run_database,
    scratch_database,
)

#: Database alias → name (one per run): the 10k table and the 1M one.
DATABASES = {
    "default": run_database("voicepassword_bench_admin_10k"),
    "large": run_database("voicepassword_bench_admin_10m"),
}
SIZES = {"default": "10k", "large": "10M"}
#: The 10M page's time against the 10k page's, at most (the median of the rounds).
TARGET = 1.5
#: The pages judged (the others are printed for information).
JUDGED = ("call list", "  searched by number", "balance dashboard", "insights")
#: The most queries a page may make.
MAX_QUERIES = 8
#: Calls (and challenges) in the small database and, by default, the large one.
SMALL = 10_000
TOTAL = 10_000_000
#: ``--quick``: the large database's size.
QUICK = 100_000
#: The days both databases span: a tenth of the rows fall in the last 30 days.
SPAN_DAYS = 300
#: The calls each number has (at most 10,000 numbers: the test range 7999000xxxx).
CALLS_PER_NUMBER = 1_000

# The admin's URLs, for ROOT_URLCONF = this module.
urlpatterns: list[Any] = []

#: The alias every query goes to (see Router).
ACTIVE = ["default"]


class Router:
    """Sends every query to the database of :data:`ACTIVE`."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return ACTIVE[0]

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return ACTIVE[0]

    def allow_relation(self, *args: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, *args: Any, **hints: Any) -> bool:
        return True


@contextmanager
def using(alias: str) -> Iterator[None]:
    """Point Django at ``alias`` for the duration, and the cache at the alias's keys.

    Each database stands for a site of its own: a figure cached from one must
    not be read on the other (a key prefix per alias, as two sites have).
    """
    from django.core.cache import cache

    previous = ACTIVE[0]
    ACTIVE[0] = alias
    cache.key_prefix = alias
    try:
        yield
    finally:
        ACTIVE[0] = previous
        cache.key_prefix = previous


@contextmanager
def bench_database() -> Iterator[None]:
    """Create the bench's databases, set Django up on them, drop them at the end."""
    with ExitStack() as stack:
        urls = {
            alias: stack.enter_context(scratch_database(name)) for alias, name in DATABASES.items()
        }
        import django
        from django.conf import settings
        from django.core.management import call_command

        settings.configure(
            DEBUG=False,  # no query log: a production-like timing
            USE_TZ=True,
            TIME_ZONE="Europe/Moscow",
            LANGUAGE_CODE="en",
            SECRET_KEY="bench-only-secret-key-not-for-production",  # noqa: S106 (not a secret)
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[
                "django.contrib.admin",
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "django.contrib.messages",
                "django_voicepassword",
            ],
            MIDDLEWARE=[
                "django.middleware.security.SecurityMiddleware",
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
            ],
            TEMPLATES=[
                {
                    "BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True,
                    "OPTIONS": {
                        "context_processors": [
                            "django.template.context_processors.request",
                            "django.contrib.auth.context_processors.auth",
                            "django.contrib.messages.context_processors.messages",
                        ]
                    },
                }
            ],
            DATABASES={alias: django_database(url) for alias, url in urls.items()},
            DATABASE_ROUTERS=[f"{__name__}.Router"],
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            STATIC_URL="static/",
            VOICEPASSWORD={
                "GATEWAY": "django_voicepassword.gateways.LocmemGateway",
                "LOW_BALANCE": "100",
            },
        )
        django.setup()
        from django.contrib import admin as django_admin
        from django.urls import path

        urlpatterns.append(path("admin/", django_admin.site.urls))
        for alias in DATABASES:
            call_command("migrate", database=alias, verbosity=0)
        try:
            yield
        finally:
            from django.db import connections

            connections.close_all()


# --------------------------------------------------------------------------- the data

# One row per call number i (1 = the newest), one every %(step)s seconds back
# from now: status, channel, number, price and duration follow from i, so both
# sizes hold the same mix. The numbers are %(numbers)s of the test range
# 7999000xxxx, so a number has TOTAL / numbers calls at either size.
_INSERT_CALLS = """
INSERT INTO voicepassword_call (
    id, provider_id, channel, number, status, state_label, error_code, price, duration,
    provider_date, parent_id, user_id, challenge_id, created_at, updated_at, callbacks_dropped
)
SELECT
    %(total)s + 1 - s.i,
    CASE WHEN s.status IN ('not_placed', 'unknown') THEN NULL ELSE (1000000 + s.i)::text END,
    CASE WHEN s.status = 'delivered' THEN 'sms'
         WHEN s.k %% 3 = 0 THEN 'voice_call' ELSE 'flash_call' END,
    '7999000' || lpad((s.k %% %(numbers)s)::text, 4, '0'),
    s.status,
    '',
    CASE WHEN s.status = 'not_placed' THEN 'number_not_valid' ELSE '' END,
    CASE WHEN s.status IN ('not_placed', 'unknown') THEN NULL
         WHEN s.status = 'delivered' THEN 3.30 ELSE 0.35 END,
    CASE WHEN s.status = 'answered' THEN make_interval(secs => s.k %% 40) END,
    CASE WHEN s.status IN ('not_placed', 'unknown') THEN NULL ELSE s.created_at END,
    NULL,
    %(first_user)s + s.k %% 100,
    md5('challenge-' || s.i)::uuid,
    s.created_at,
    s.created_at,
    0
FROM (
    SELECT
        g.i,
        abs(g.i) AS k,
        %(now)s - make_interval(secs => g.i * %(step)s) AS created_at,
        CASE
            WHEN (abs(g.i) * 37) %% 100 < 55 THEN 'answered'
            WHEN (abs(g.i) * 37) %% 100 < 70 THEN 'no_answer'
            WHEN (abs(g.i) * 37) %% 100 < 80 THEN 'busy'
            WHEN (abs(g.i) * 37) %% 100 < 85 THEN 'failed'
            WHEN (abs(g.i) * 37) %% 100 < 88 THEN 'cancelled'
            WHEN (abs(g.i) * 37) %% 100 < 92 THEN 'placed'
            WHEN (abs(g.i) * 37) %% 100 < 94 THEN 'not_placed'
            WHEN (abs(g.i) * 37) %% 100 < 95 THEN 'unknown'
            ELSE 'delivered'
        END AS status
    FROM generate_series(%(stop)s, %(last)s, -1) AS g(i)
) AS s
"""

# One challenge per call, a second before it, of the same number and channel:
# confirmed (after 5 to 64 seconds) when its call was answered or delivered.
# Calls and challenges share the status mix of _INSERT_CALLS (the same i).
_INSERT_CHALLENGES = """
INSERT INTO voicepassword_challenge (
    id, number, purpose, channel, code_digest, code_length, attempts, max_attempts, sends,
    expires_at, resend_at, verified_at, step, next_step_at, session_digest, user_id, created_at
)
SELECT
    md5('challenge-' || s.i)::uuid,
    '7999000' || lpad((s.k %% %(numbers)s)::text, 4, '0'),
    CASE WHEN s.k %% 4 = 0 THEN 'verify' ELSE 'login' END,
    CASE WHEN s.status = 'delivered' THEN 'sms'
         WHEN s.k %% 3 = 0 THEN 'voice_call' ELSE 'flash_call' END,
    '',
    4,
    CASE WHEN s.status IN ('answered', 'delivered') THEN 1 ELSE 0 END,
    3,
    CASE WHEN s.status = 'not_placed' THEN 0 ELSE 1 END,
    s.created_at + interval '5 minutes',
    s.created_at + interval '1 minute',
    CASE WHEN s.status IN ('answered', 'delivered')
         THEN s.created_at + make_interval(secs => 5 + s.k %% 60) END,
    0,
    NULL,
    '',
    NULL,
    s.created_at
FROM (
    SELECT
        g.i,
        abs(g.i) AS k,
        %(now)s - make_interval(secs => g.i * %(step)s + 1) AS created_at,
        CASE
            WHEN (abs(g.i) * 37) %% 100 < 55 THEN 'answered'
            WHEN (abs(g.i) * 37) %% 100 < 92 THEN 'other'
            WHEN (abs(g.i) * 37) %% 100 < 94 THEN 'not_placed'
            WHEN (abs(g.i) * 37) %% 100 < 95 THEN 'other'
            ELSE 'delivered'
        END AS status
    FROM generate_series(%(stop)s, %(last)s, -1) AS g(i)
) AS s
"""

_INSERT_SNAPSHOTS = """
INSERT INTO voicepassword_balancesnapshot (balance, currency, taken_at)
SELECT 900 - g.h * 0.2, 'Rub', %(now)s - make_interval(hours => g.h)
FROM generate_series(0, %(hours)s) AS g(h)
"""

#: The tables filled in bulk: their indexes and constraints are dropped
#: before and built after (a sorted build, not millions of inserts into them).
_BULK_TABLES = ("voicepassword_challenge", "voicepassword_call")

# The constraints on, or pointing at, the bulk tables (primary keys last to
# drop, first to add), and their plain indexes, each with its definition.
_CONSTRAINTS = """
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype
FROM pg_constraint
WHERE contype IN ('p', 'u', 'f')
  AND (conrelid = ANY(%(tables)s::regclass[]) OR confrelid = ANY(%(tables)s::regclass[]))
ORDER BY contype = 'p', conname
"""
_INDEXES = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
WHERE i.indrelid = ANY(%(tables)s::regclass[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
"""


def fill(total: int, now: Any) -> float:
    """Insert ``total`` challenges and calls over :data:`SPAN_DAYS`; return seconds.

    One every ``SPAN_DAYS * 86400 / total`` seconds: a tenth of them in the
    last 30 days at any size. The rows are inserted oldest first (the heap in
    the order a site writes it), with the tables' indexes and constraints
    dropped and built afterwards and foreign keys not checked row by row
    (``session_replication_role``): they hold by construction. Then
    ``VACUUM ANALYZE``, as autovacuum leaves a table in use.
    """
    from django.contrib.auth import get_user_model
    from django.db import connections

    connection = connections[ACTIVE[0]]
    first_user = get_user_model().objects.order_by("pk").values_list("pk", flat=True)[1]
    values = {
        "now": now,
        "step": SPAN_DAYS * 86_400 / total,
        "stop": total,
        "last": 1,
        "total": total,
        "numbers": numbers(total),
        "first_user": first_user,
    }
    tables = {"tables": list(_BULK_TABLES)}
    steps: dict[str, float] = {}
    began = time.perf_counter()

    def step(name: str) -> None:
        steps[name] = time.perf_counter() - began - sum(steps.values())

    with connection.cursor() as cursor:
        cursor.execute(_CONSTRAINTS, tables)
        constraints = cursor.fetchall()
        cursor.execute(_INDEXES, tables)
        indexes = cursor.fetchall()
        for table, name, _definition, _kind in constraints:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            cursor.execute(f"DROP INDEX {name}")
        # Unlogged: no WAL for the bulk of rows. A read costs the same in an
        # unlogged table, and the pages only read these; the tables that
        # refer to them (empty) go unlogged too, as PostgreSQL requires.
        for table in sorted({row[0] for row in constraints}):
            cursor.execute(f"ALTER TABLE {table} SET UNLOGGED")
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(_INSERT_CHALLENGES, values)
        step("challenges")
        cursor.execute(_INSERT_CALLS, values)
        step("calls")
        cursor.execute("RESET session_replication_role")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for _name, definition in indexes:
            cursor.execute(definition)
        for table, name, definition, _kind in reversed(constraints):
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('voicepassword_call', 'id'), %s)", [total]
        )
        step("indexes and constraints")
    # VACUUM cannot run in a transaction: outside the cursor's block above.
    with connection.cursor() as cursor:
        for table in _BULK_TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")
        step("vacuum analyze")
    print("  " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items()))
    return time.perf_counter() - began


def top_up(total: int, now: Any) -> int:
    """Add the calls a site of ``total`` calls made since ``now`` (the fill's); return how many.

    Building the large database takes minutes: without them, the hour the
    pages read live would hold the calls of its minutes before the fill only.
    """
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.utils import timezone

    step = SPAN_DAYS * 86_400 / total
    count = int((timezone.now() - now).total_seconds() / step)
    if count < 1:
        return 0
    first_user = get_user_model().objects.order_by("pk").values_list("pk", flat=True)[1]
    # Negative numbers: after ``now``, oldest first, ids and keys of their own.
    values = {
        "now": now,
        "step": step,
        "stop": -1,
        "last": -count,
        "total": total,
        "numbers": numbers(total),
        "first_user": first_user,
    }
    with connections[ACTIVE[0]].cursor() as cursor:
        cursor.execute(_INSERT_CHALLENGES, values)
        cursor.execute(_INSERT_CALLS, values)
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('voicepassword_call', 'id'), %s)",
            [total + count + 1],
        )
    return count


def numbers(total: int) -> int:
    """How many numbers the calls of a database of ``total`` go to: CALLS_PER_NUMBER each."""
    return max(1, min(10_000, total // CALLS_PER_NUMBER))


def prepare(now: Any) -> Any:
    """The superuser, 100 users, 40 days of hourly balances; the client, logged in."""
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.test import Client

    connection = connections[ACTIVE[0]]
    user_model = get_user_model()
    admin_user = user_model.objects.create_superuser("bench", password="bench")  # noqa: S106
    user_model.objects.bulk_create(user_model(username=f"user{n:03d}") for n in range(100))
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SNAPSHOTS, {"now": now, "hours": 40 * 24})
        cursor.execute("VACUUM ANALYZE voicepassword_balancesnapshot")
    client = Client()
    client.force_login(admin_user)
    return client


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Page:
    """A page measured: its URL, and what it must show (checked by :func:`shows`)."""

    url: str
    kind: str  # "list", "dashboard" or "insights"
    #: The calls the page selects, counted by the ORM (in the active database).
    selects: Callable[[], int]


def pages() -> dict[str, Page]:
    """Name → the pages measured."""
    from django.urls import reverse
    from django.utils import timezone

    from django_voicepassword.models import Call, Challenge

    calls = reverse("admin:voicepassword_call_changelist")
    month = timezone.localdate()

    def counting(**lookups: Any) -> Callable[[], int]:
        return lambda: Call.objects.filter(**lookups).count()

    def last_30_days() -> int:
        # The dashboard's window: local midnight 29 days ago to now, today included.
        first = timezone.localdate() - dt.timedelta(days=29)
        since = timezone.make_aware(dt.datetime.combine(first, dt.time.min))
        return Call.objects.filter(created_at__gte=since).count()

    def challenges_30_days() -> int:
        first = timezone.localdate() - dt.timedelta(days=29)
        since = timezone.make_aware(dt.datetime.combine(first, dt.time.min))
        return Challenge.objects.filter(created_at__gte=since).count()

    return {
        "call list": Page(calls, "list", counting()),
        "  filtered by status": Page(
            calls + "?status__exact=busy", "list", counting(status="busy")
        ),
        "  filtered by channel (SMS)": Page(
            calls + "?channel__exact=sms", "list", counting(channel="sms")
        ),
        "  searched by number": Page(
            calls + "?q=%2B7+999+000-00-07", "list", counting(number="79990000007")
        ),
        "  one month (date hierarchy)": Page(
            f"{calls}?created_at__year={month.year}&created_at__month={month.month}",
            "list",
            counting(created_at__year=month.year, created_at__month=month.month),
        ),
        "balance dashboard": Page(
            reverse("admin:voicepassword_balancesnapshot_changelist"), "dashboard", last_30_days
        ),
        "insights": Page(
            reverse("admin:voicepassword_challenge_insights"), "insights", challenges_30_days
        ),
    }


_RESULT_ROWS = re.compile(r'<table id="result_list">.*?<tbody>(.*?)</tbody>', re.DOTALL)
_SNAPSHOT_ROWS = re.compile(r'<table class="vp-snapshots">.*?<tbody>(.*?)</tbody>', re.DOTALL)
_CALLS_FIGURE = re.compile(r"<dt>calls</dt>\s*<dd>([^<]*)</dd>")
_STARTED_FIGURE = re.compile(r"<dt>started</dt>\s*<dd>([^<]*)</dd>")
_CHANNEL_ROWS = re.compile(r'class="vp-insights-row"')


def table_rows(pattern: re.Pattern[str], html: str) -> int:
    """The rows in the body of the table ``pattern`` finds (0 without one)."""
    match = pattern.search(html)
    return 0 if match is None else match[1].count("<tr")


def shows(page: Page, html: str) -> str | None:
    """What ``page`` lacks in ``html`` (``None`` when it shows what the database holds)."""
    from django.contrib import admin as django_admin

    from django_voicepassword import dashboard
    from django_voicepassword.models import BalanceSnapshot, Call

    selected = page.selects()
    if page.kind == "list":
        per_page = django_admin.site.get_model_admin(Call).list_per_page
        expected, rows = min(selected, per_page), table_rows(_RESULT_ROWS, html)
        if rows != expected:
            return f"{rows} rows shown, {expected} expected ({selected} calls selected)"
        return None
    if page.kind == "insights":
        figure = _STARTED_FIGURE.search(html)
        shown = int(re.sub(r"\D", "", figure[1]) or -1) if figure else None
        if shown != selected:
            return f"challenges of the last 30 days {shown}, {selected} expected"
        if selected and not _CHANNEL_ROWS.search(html):
            return "no rows in the insights tables"
        return None
    problems = []
    figure = _CALLS_FIGURE.search(html)
    shown = int(re.sub(r"\D", "", figure[1]) or -1) if figure else None
    if shown != selected:
        problems.append(f"calls of the last 30 days {shown}, {selected} expected")
    latest, rows = len(dashboard.latest_snapshots()), table_rows(_SNAPSHOT_ROWS, html)
    if not latest:
        stored = BalanceSnapshot.objects.count()
        problems.append(f"no latest balances to show, {stored} stored")
    elif rows != latest:
        problems.append(f"{rows} latest balances shown, {latest} expected")
    return "; ".join(problems) or None


@dataclass
class Measured:
    """One page at both sizes: the timed requests, the queries of one, what it showed."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    #: The first request at each size (a cold cache of finished days), not judged.
    cold: dict[str, float] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    lacks: dict[str, str | None] = field(default_factory=dict)


def measure(clients: dict[str, Any], page: Page, rounds: int) -> Measured:
    """Time ``rounds`` requests at each size, the sizes alternating within each round.

    The first one changes every round. The warm-up's pages are checked against
    the database; every answer's status is counted.
    """
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    result = Measured()
    aliases = list(clients)
    for alias in aliases:
        with using(alias):
            for warm in range(2):
                began = time.perf_counter()
                response = clients[alias].get(page.url)
                if not warm:
                    result.cold[alias] = time.perf_counter() - began
                result.statuses[response.status_code] += 1
            result.lacks[alias] = shows(page, response.content.decode())
    result.seconds = {alias: [] for alias in aliases}
    for index in range(rounds):
        for alias in aliases if index % 2 == 0 else aliases[::-1]:
            with using(alias):
                gc.collect()
                began = time.perf_counter()
                response = clients[alias].get(page.url)
                result.seconds[alias].append(time.perf_counter() - began)
                result.statuses[response.status_code] += 1
    for alias in aliases:
        with using(alias), CaptureQueriesContext(connections[alias]) as queries:
            response = clients[alias].get(page.url)
        result.statuses[response.status_code] += 1
        result.queries[alias] = len(queries.captured_queries)
    return result


def explain(client: Any, url: str) -> None:
    """Print each query of one request to ``url`` with its plan and time."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    connection = connections[ACTIVE[0]]
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = [row[0] for row in cursor.fetchall()]
            print(f"\n-- {sql[:160]}")
            for line in plan:
                print("   " + line)


def run(args: argparse.Namespace) -> Verdict:
    why = missing_postgres(ADMIN_URL)
    if why is not None:
        raise Unavailable(why)
    with bench_database():
        total = QUICK if args.quick else args.calls
        return judge(max(1, args.rounds), max(SMALL, total), args.explain)


def judge(rounds: int, total: int, show_plans: bool = False) -> Verdict:
    from django.utils import timezone

    now = timezone.now()
    clients = {}
    large = SIZES["large"] if total == TOTAL else f"{total:,}"
    for alias in SIZES:
        with using(alias):
            clients[alias] = prepare(now)
            took = fill(total if alias == "large" else SMALL, now)
        print(f"{large if alias == 'large' else SIZES[alias]}: filled in {took:.1f} s")
    for alias in SIZES:
        with using(alias):
            from django_voicepassword import dashboard
            from django_voicepassword.models import Call

            added = top_up(total if alias == "large" else SMALL, now)
            moment = timezone.localtime() - dashboard.SETTLE_TIME
            start = moment.replace(minute=0, second=0, microsecond=0)
            live = Call.objects.filter(created_at__gte=start).count()
        label = large if alias == "large" else SIZES[alias]
        print(f"{label}: {added} calls since the fill; {live} read live (since {start:%H:%M})")
    results = {name: measure(clients, page, rounds) for name, page in pages().items()}
    if show_plans:
        with using("large"):
            for name, page in pages().items():
                print(f"\n==== {name}: {page.url}")
                explain(clients["large"], page.url)

    print(
        f"\nrounds: {rounds} (medians, sizes alternating); {SMALL:,} and {total:,} calls over "
        f"{SPAN_DAYS} days, a tenth of each in the last 30\n"
    )
    print(
        f"{'page':32} {'10k ms':>8} {large + ' ms':>8} {'ratio (range)':>20} {'queries':>9}"
        f"  {'first request, 10k / ' + large:>24}"
    )
    for name, result in results.items():
        small_ms = statistics.median(result.seconds["default"]) * 1000
        large_ms = statistics.median(result.seconds["large"]) * 1000
        spread = ratios(result.seconds["large"], result.seconds["default"])
        print(
            f"{name:32} {small_ms:8.1f} {large_ms:8.1f}"
            f" {spread.median:6.2f} ({spread.low:.2f}-{spread.high:.2f})"
            f" {result.queries['default']:>4} / {result.queries['large']:<4}"
            f"  {result.cold['default'] * 1000:>11.1f} / {result.cold['large'] * 1000:.1f} ms"
        )

    verdict = Verdict()
    for name, result in results.items():
        answered = sum(result.statuses.values())
        others = {code: n for code, n in result.statuses.items() if code != 200}
        verdict.require(
            f"{name.strip()}: every request answered 200",
            not others,
            f"{answered - sum(others.values())} of {answered}"
            + (f"; others {others}" if others else ""),
        )
        for alias, size in SIZES.items():
            lacks = result.lacks[alias]
            verdict.require(
                f"{name.strip()} at {size}: shows what the database holds",
                lacks is None,
                lacks or "",
            )
    for name in JUDGED:
        result = results[name]
        name = name.strip()
        at_small, at_large = result.queries["default"], result.queries["large"]
        verdict.require(
            f"{name}: the same queries at both sizes, at most {MAX_QUERIES}",
            at_small == at_large and max(at_small, at_large) <= MAX_QUERIES,
            f"{at_small} and {at_large}",
        )
        verdict.target(
            f"{name}: ratio {large}/10k",
            ratios(result.seconds["large"], result.seconds["default"]),
            at_most=TARGET,
            digits=2,
        )
    return verdict


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=9, help="timed requests per page (9)")
    parser.add_argument(
        "--calls",
        type=int,
        default=TOTAL,
        help=f"calls in the large database ({TOTAL}; smaller for a quick check of the script)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a large database of {QUICK:,} calls (a check of the script, not the judgement)",
    )
    parser.add_argument(
        "--explain", action="store_true", help="print the plan of every query at the large size"
    )
    return parser


if __name__ == "__main__":
    main(run, parser())
