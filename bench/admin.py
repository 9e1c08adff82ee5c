"""What the admin's call list and balance dashboard cost on 10,000 and on 1,000,000 calls.

Run ``python bench/admin.py [--rounds R]`` (default 9 rounds).

The script creates two PostgreSQL databases of its own on 127.0.0.1:5432
(``voicepassword_bench_admin_10k`` and ``..._1m``, dropped at the end),
migrates them, and fills them with ``INSERT ... SELECT generate_series`` (the
rows are made by PostgreSQL, not by Python):

* both: the last 40 days of a site placing 250 calls a day, 10,000 calls
  (numbers in the test range 79990000000-79990000099, a realistic mix of
  statuses, 100 users), and a balance snapshot every hour of those 40 days;
* the large one also 990,000 older calls (about eleven years more of the same
  traffic): 1,000,000 in all.

Both tables are ``VACUUM ANALYZE``-d (tables in use, with statistics). Each
page is requested through Django's test ``Client`` as a superuser (``DEBUG``
off), a database router pointing Django at one database or the other: a
warm-up, then ``R`` rounds, each timing one request at 10k and one at 1M in
alternating order, so that drift in the machine's speed falls on both alike.
Printed per page: the median server time at 10k and at 1M, their ratio
(target <= 1.5 for the call list and the dashboard) and the queries of one
request at each size (target: the same, <= 8). Keeping the last 40 days equal
is the point: it shows what a longer history costs, which should be nothing;
the call list's totals read the newest 10,000 rows and the dashboard the last
30 days at either size.

The pages: the call list unfiltered (the target), the list filtered by status,
by channel (SMS, 5% of the calls, the one filter without an index of its own),
searched by a number, and narrowed to a month by the date hierarchy (for
information), and the balance dashboard (its balance cached, as on a page
reloaded within 30 seconds; the gateway is the in-process LocmemGateway).

The script reports and always exits 0: a timing is not a test.
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HOST, PORT = "127.0.0.1", 5432
#: Database alias → name: the 10k table and the 1M one.
DATABASES = {"default": "voicepassword_bench_admin_10k", "large": "voicepassword_bench_admin_1m"}
SIZES = {"default": "10k", "large": "1M"}
RECENT = 10_000
TOTAL = 1_000_000
PER_DAY = 250

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
    """Point Django at ``alias`` for the duration."""
    previous = ACTIVE[0]
    ACTIVE[0] = alias
    try:
        yield
    finally:
        ACTIVE[0] = previous


def reachable() -> bool:
    """Whether something accepts connections where PostgreSQL should be."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def bench_database() -> Iterator[None]:
    """Create the bench's databases, set Django up on them, drop them at the end."""
    import psycopg

    def admin(sql: str) -> None:
        with psycopg.connect(host=HOST, port=PORT, user="postgres", dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(sql)

    for name in DATABASES.values():
        admin(f"DROP DATABASE IF EXISTS {name}")
        admin(f"CREATE DATABASE {name}")
    try:
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
            DATABASES={
                alias: {
                    "ENGINE": "django.db.backends.postgresql",
                    "HOST": HOST,
                    "PORT": PORT,
                    "NAME": name,
                    "USER": "postgres",
                }
                for alias, name in DATABASES.items()
            },
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
        yield
    finally:
        from django.db import connections

        connections.close_all()
        for name in DATABASES.values():
            admin(f"DROP DATABASE IF EXISTS {name}")


# --------------------------------------------------------------------------- the data

# One row per call number i (1 = the newest): status, channel, price and duration
# follow from i, so both sizes hold the same mix.
_INSERT_CALLS = """
INSERT INTO voicepassword_call (
    provider_id, channel, number, status, state_label, error_code, price, duration,
    provider_date, parent_id, user_id, challenge_id, created_at, updated_at
)
SELECT
    CASE WHEN s.status IN ('not_placed', 'unknown') THEN NULL ELSE (1000000 + s.i)::text END,
    CASE WHEN s.status = 'delivered' THEN 'sms'
         WHEN s.i %% 3 = 0 THEN 'voice_call' ELSE 'flash_call' END,
    '799900000' || lpad((s.i %% 100)::text, 2, '0'),
    s.status,
    '',
    CASE WHEN s.status = 'not_placed' THEN 'number_not_valid' ELSE '' END,
    CASE WHEN s.status IN ('not_placed', 'unknown') THEN NULL
         WHEN s.status = 'delivered' THEN 3.30 ELSE 0.35 END,
    CASE WHEN s.status = 'answered' THEN make_interval(secs => s.i %% 40) END,
    CASE WHEN s.status IN ('not_placed', 'unknown') THEN NULL ELSE s.created_at END,
    NULL,
    %(first_user)s + s.i %% 100,
    NULL,
    s.created_at,
    s.created_at
FROM (
    SELECT
        g.i,
        %(now)s - make_interval(secs => g.i * %(step)s) AS created_at,
        CASE
            WHEN (g.i * 37) %% 100 < 55 THEN 'answered'
            WHEN (g.i * 37) %% 100 < 70 THEN 'no_answer'
            WHEN (g.i * 37) %% 100 < 80 THEN 'busy'
            WHEN (g.i * 37) %% 100 < 85 THEN 'failed'
            WHEN (g.i * 37) %% 100 < 88 THEN 'cancelled'
            WHEN (g.i * 37) %% 100 < 92 THEN 'placed'
            WHEN (g.i * 37) %% 100 < 94 THEN 'not_placed'
            WHEN (g.i * 37) %% 100 < 95 THEN 'unknown'
            ELSE 'delivered'
        END AS status
    FROM generate_series(%(start)s, %(stop)s) AS g(i)
) AS s
"""

_INSERT_SNAPSHOTS = """
INSERT INTO voicepassword_balancesnapshot (balance, currency, taken_at)
SELECT 900 - g.h * 0.2, 'Rub', %(now)s - make_interval(hours => g.h)
FROM generate_series(0, %(hours)s) AS g(h)
"""


def fill(start: int, stop: int, now: Any) -> float:
    """Insert calls number ``start`` to ``stop`` (1 = the newest); return seconds."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    connection = connections[ACTIVE[0]]
    first_user = get_user_model().objects.order_by("pk").values_list("pk", flat=True)[1]
    step = 86_400 / PER_DAY
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_CALLS,
            {"first_user": first_user, "now": now, "step": step, "start": start, "stop": stop},
        )
        cursor.execute("VACUUM ANALYZE voicepassword_call")
        cursor.execute("CHECKPOINT")
    return time.perf_counter() - began


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


def pages() -> dict[str, str]:
    """Name → URL of the pages measured."""
    from django.urls import reverse
    from django.utils import timezone

    calls = reverse("admin:voicepassword_call_changelist")
    month = timezone.localdate()
    return {
        "call list": calls,
        "  filtered by status": calls + "?status__exact=busy",
        "  filtered by channel (SMS)": calls + "?channel__exact=sms",
        "  searched by number": calls + "?q=%2B7+999+000-00-07",
        "  one month (date hierarchy)": (
            f"{calls}?created_at__year={month.year}&created_at__month={month.month}"
        ),
        "balance dashboard": reverse("admin:voicepassword_balancesnapshot_changelist"),
    }


def measure(clients: dict[str, Any], url: str, rounds: int) -> dict[str, tuple[float, int]]:
    """Per alias: the median seconds of ``rounds`` requests, and the queries of one.

    The sizes alternate within each round, the first one changing every round.
    """
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    aliases = list(clients)
    for alias in aliases:
        with using(alias):
            for _warm in range(2):
                response = clients[alias].get(url)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")
    seconds: dict[str, list[float]] = {alias: [] for alias in aliases}
    for index in range(rounds):
        for alias in aliases if index % 2 == 0 else aliases[::-1]:
            with using(alias):
                gc.collect()
                began = time.perf_counter()
                clients[alias].get(url)
                seconds[alias].append(time.perf_counter() - began)
    result = {}
    for alias in aliases:
        with using(alias), CaptureQueriesContext(connections[alias]) as queries:
            clients[alias].get(url)
        result[alias] = (statistics.median(seconds[alias]), len(queries.captured_queries))
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


def run(rounds: int, show_plans: bool = False) -> None:
    from django.utils import timezone

    now = timezone.now()
    clients = {}
    for alias, size in SIZES.items():
        with using(alias):
            clients[alias] = prepare(now)
            took = fill(1, TOTAL if alias == "large" else RECENT, now)
        print(f"{size}: filled in {took:.1f} s")
    results = {name: measure(clients, url, rounds) for name, url in pages().items()}
    if show_plans:
        with using("large"):
            for name, url in pages().items():
                print(f"\n==== {name}: {url}")
                explain(clients["large"], url)

    print(f"\nrounds: {rounds} (medians, sizes alternating); the same last 40 days at both\n")
    print(f"{'page':32} {'10k ms':>8} {'1M ms':>8} {'ratio':>6} {'queries 10k/1M':>15}")
    for name, result in results.items():
        (t_small, q_small), (t_large, q_large) = result["default"], result["large"]
        print(
            f"{name:32} {t_small * 1000:8.1f} {t_large * 1000:8.1f} "
            f"{t_large / t_small:6.2f} {q_small:>7} / {q_large:<6}"
        )
    print()
    for name in ("call list", "balance dashboard"):
        (t_small, q_small), (t_large, q_large) = results[name]["default"], results[name]["large"]
        ratio = t_large / t_small
        verdicts = [
            f"ratio {ratio:.2f} ({'within' if ratio <= 1.5 else 'OVER'} the target 1.5)",
            f"queries {q_small} and {q_large} "
            + ("(the same" if q_small == q_large else "(NOT the same")
            + f", {'within' if max(q_small, q_large) <= 8 else 'OVER'} the target 8)",
        ]
        print(f"{name}: " + "; ".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=9, help="timed requests per page (9)")
    parser.add_argument(
        "--explain", action="store_true", help="print the plan of every query at 1M"
    )
    args = parser.parse_args()
    if not reachable():
        print(f"PostgreSQL is not reachable at {HOST}:{PORT}: nothing measured.")
        return
    try:
        with bench_database():
            run(max(1, args.rounds), args.explain)
    except Exception as error:  # it reports, it does not judge
        print(f"the bench could not run: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
    sys.exit(0)
