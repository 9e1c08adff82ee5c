"""What a phone login costs: the login API's start + confirm against a floor, under gunicorn.

Run ``python bench/login.py [--rounds R] [--pairs P] [--quick] [--profile]``.

What runs: a scratch PostgreSQL database (``voicepassword_bench_login_<pid>``
on 127.0.0.1:5432, dropped at the end), Redis database 13 (``--redis-db``;
refused unless empty, flushed at the end), the emulator over HTTP as the
provider, and gunicorn serving the bench site (``bench/login_site``: two
sync workers, ``DEBUG`` off, persistent database connections, Redis as the
cache, database sessions). In that one site, the same processes and settings:

* ``app``: the package's login API, ``POST voicepassword/api/challenges/``
  (a flash call) then ``POST .../<id>/confirm/`` with the code, which logs
  the user in to the session;
* ``floor``: two views doing only the I/O a phone login cannot avoid
  (``login_site/views.py``): one Redis round trip for the limits (a pipeline
  of ``INCR``/``EXPIRE``), the provider's ``send/`` with ``requests``, an
  ``INSERT`` of the challenge and one of the call; then one conditional
  ``UPDATE`` that consumes the code (and reads its user in the same
  statement) and ``django.contrib.auth.login()`` with the session's save.

Every number logs in as a returning user (the users and their verified
numbers are created first). The app and the floor each have 25 test numbers
of their own (``79990000040`` to ``64`` and ``65`` to ``89``: ordinary
numbers of the emulator's test range, answered like ``79990000001``), used
in turn. The site's limits keep the package's default shape with counts no
run reaches (``login_site/settings.py``), so the app counts every scope as a
default site does and nothing is refused. The emulator's callbacks are an
hour late, so none arrives during the run, on either side.

One client, one login at a time, each in a fresh session: start (timed),
read the code on the emulator's phone page (``/?number=``; **not timed**,
and the same for both sides), confirm (timed). A pair's time is its start's
plus its confirm's, over loopback, gunicorn's work included. The sides take
turns in rounds of P pairs each, the first side alternating; a round's figure
is its mean time per pair, and the ratio app/floor of each round is judged
by its median. The CPU per pair of the gunicorn workers and of the bench
database's PostgreSQL backends (read from ``/proc`` before and after each
side's turn, as ``bench/callbacks.py`` does; the emulator's and Redis's
are left out, being the same for both) is printed beside it, with its ratio.

Before gunicorn starts, one login per side runs in this process through
Django's test client over the same settings, to count the round trips:
SQL statements (``CaptureQueriesContext``; transaction control apart) and
Redis round trips (commands sent alone, plus pipelines), for the start and
the confirm. They are printed, not judged (other work lowers them).

It judges (exit status 0 pass, 1 miss, 2 not run; see ``bench/_harness.py``):

* the work, warm-up included: every start answered 201 with a challenge id
  and a call on the emulator's phone for its number; every confirm answered
  200 with the number's user; in the database, every challenge is confirmed
  (``verified_at``), has a call row with the provider's request id, and the
  session each confirm left is logged in as that user; the emulator placed
  one flash call per start to each side's numbers. A login API that refuses
  (fast) or logs nobody in fails here, however fast;
* the target: the median of the rounds' app/floor ratios of time per pair
  at most 1.5.

``--profile`` instead runs the app side alone with both workers under
cProfile (CPU time) and prints where it goes: the views, the services,
Django's ``login()`` and the session saves (judging the work only).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    ADMIN_URL,
    BENCH_DIR,
    HOST,
    Emulator,
    Failed,
    Phone,
    Unavailable,
    Verdict,
    bench_site,
    cpu_seconds,
    database_backends,
    machine,
    main,
    missing_services,
    ratios,
    run_database,
    scratch_database,
    scratch_redis,
    spread,
    tail,
    update_cookies,
    wait_http,
    worker_profiles,
)

DB_NAME = run_database("voicepassword_bench_login")
SETTINGS = "login_site.settings"
#: Redis database of this bench (the soak takes 12): checked empty, flushed after.
REDIS_DB = 13
#: Time per start + confirm pair, app over floor, at most (the median of the rounds).
TARGET = 1.5
APP_NUMBERS = [f"799900000{n}" for n in range(40, 65)]
FLOOR_NUMBERS = [f"799900000{n}" for n in range(65, 90)]
#: The in-process count's numbers, one per side (ordinary numbers too).
COUNT_NUMBERS = {"app": "79990000035", "floor": "79990000036"}
API = "/voicepassword/api/challenges/"
FLOOR = "/floor/challenges/"
SESSION_COOKIE = "sessionid"


# --------------------------------------------------------------------------- the sides


@dataclass
class Pair:
    """One login: a start and a confirm, what they answered and how long they took."""

    number: str
    start_status: int = 0
    challenge: str = ""
    call_seen: bool = False
    confirm_status: int = 0
    user: int | None = None  # the user id the confirm answered with
    session: str = ""  # the session cookie after the confirm
    start_seconds: float = 0.0
    seconds: float = 0.0  # start + confirm, the phone page left out
    detail: str = ""


@dataclass
class Side:
    """One login flow under measure: its paths, numbers and results."""

    name: str
    start_path: str
    numbers: list[str]
    pairs: list[Pair] = field(default_factory=list)  # warm-up included
    rounds: list[float] = field(default_factory=list)  # mean seconds per pair, per round
    starts: list[float] = field(default_factory=list)  # of which the start's, per round
    cpu: list[float] = field(default_factory=list)  # CPU seconds per pair, per round
    worker_cpu: float = 0.0
    database_cpu: float = 0.0
    measured: int = 0

    def confirm_path(self, challenge: str) -> str:
        """Where a challenge's code is sent."""
        return f"{self.start_path}{challenge}/confirm/"


def sides() -> list[Side]:
    """The app's login API and the floor, each with numbers of its own."""
    return [Side("app", API, list(APP_NUMBERS)), Side("floor", FLOOR, list(FLOOR_NUMBERS))]


def post(port: int, path: str, data: dict[str, Any], cookies: dict[str, str]) -> tuple[int, Any]:
    """POST ``data`` as JSON with ``cookies`` (updated from the answer); the status and body."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    # A connection per request: gunicorn's sync workers close each one anyway.
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        connection.request("POST", path, json.dumps(data).encode(), headers)
        response = connection.getresponse()
        body = response.read()
        update_cookies(cookies, response.getheaders())
    finally:
        connection.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body[:200]


class Client:
    """The person logging in: start, read the phone, confirm; one login at a time."""

    def __init__(self, port: int, phone: Phone) -> None:
        self.port = port
        self.phone = phone
        self.seen: dict[str, int] = {}  # the newest request id seen on each number's phone

    def login(self, side: Side, number: str) -> Pair:
        """One login by ``number`` through ``side``, in a fresh session."""
        pair = Pair(number)
        cookies: dict[str, str] = {}
        began = time.perf_counter()
        pair.start_status, started = post(
            self.port, side.start_path, {"number": "+" + number, "channel": "flash_call"}, cookies
        )
        pair.start_seconds = time.perf_counter() - began
        if pair.start_status != 201 or not isinstance(started, dict) or "id" not in started:
            pair.detail = f"start: {pair.start_status} {started!r:.120}"
            return pair
        pair.challenge = str(started["id"])
        # Not timed: the code is on the phone by the time the start answers
        # (the send is made in the request, on both sides).
        newest = self.phone.newest(number)
        if newest is None or newest[0] <= self.seen.get(number, 0):
            pair.detail = "start: no new call on the phone"
            return pair
        pair.call_seen = True
        self.seen[number] = newest[0]
        began = time.perf_counter()
        pair.confirm_status, confirmed = post(
            self.port, side.confirm_path(pair.challenge), {"code": newest[1]}, cookies
        )
        pair.seconds = pair.start_seconds + time.perf_counter() - began
        pair.session = cookies.get(SESSION_COOKIE, "")
        if pair.confirm_status != 200 or not isinstance(confirmed, dict):
            pair.detail = f"confirm: {pair.confirm_status} {confirmed!r:.120}"
            return pair
        user = confirmed.get("user")
        pair.user = user.get("id") if isinstance(user, dict) else None
        return pair


def run_turn(client: Client, side: Side, count: int, cursor: Iterator[int]) -> list[Pair]:
    """``count`` logins through ``side``, its numbers in turn; stops at the first failure."""
    done = []
    for _ in range(count):
        number = side.numbers[next(cursor) % len(side.numbers)]
        pair = client.login(side, number)
        side.pairs.append(pair)
        done.append(pair)
        if pair.detail:
            raise Failed(f"{side.name}: a login did not go through: {pair.detail}")
    return done


def run_rounds(
    client: Client,
    measured: list[Side],
    *,
    rounds: int,
    pairs: int,
    warmup: int,
    worker_pids: list[int],
    database: str,
) -> None:
    """Warm every side up, then ``rounds`` rounds of ``pairs`` logins per side, taking turns."""
    cursors = {side.name: iter(range(10**9)) for side in measured}
    for side in measured:  # imports, connections, the gateway's session: not counted
        run_turn(client, side, warmup, cursors[side.name])
    # Each worker has its persistent connection by now.
    backends = database_backends(database)
    for index in range(rounds):
        order = measured if index % 2 == 0 else measured[::-1]
        for side in order:
            workers, server = cpu_seconds(worker_pids), cpu_seconds(backends)
            done = run_turn(client, side, pairs, cursors[side.name])
            worker_cpu = cpu_seconds(worker_pids) - workers
            database_cpu = cpu_seconds(backends) - server
            side.rounds.append(sum(pair.seconds for pair in done) / len(done))
            side.starts.append(sum(pair.start_seconds for pair in done) / len(done))
            side.cpu.append((worker_cpu + database_cpu) / len(done))
            side.worker_cpu += worker_cpu
            side.database_cpu += database_cpu
            side.measured += len(done)


# --------------------------------------------------------------------------- Django side


def setup_django(env: dict[str, str]) -> None:
    """This process on the bench site's settings (its database, Redis and emulator)."""
    os.environ.update(env, DJANGO_SETTINGS_MODULE=SETTINGS)
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    import django

    django.setup()


def create_users(numbers: Sequence[str]) -> dict[str, int]:
    """A user with a verified number for each of ``numbers``; number -> user id."""
    from django.contrib.auth import get_user_model

    from django_voicepassword.models import PhoneNumber

    model = get_user_model()
    users = model._default_manager.bulk_create(
        model(**{model.USERNAME_FIELD: f"bench-{number}"}) for number in numbers
    )
    PhoneNumber.objects.bulk_create(
        PhoneNumber(user=user, number=number) for user, number in zip(users, numbers, strict=True)
    )
    return {number: int(user.pk) for number, user in zip(numbers, users, strict=True)}


#: Transaction control, which Django logs as queries since 6.0 (5.2 does not).
_TRANSACTION = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


@dataclass
class RoundTrips:
    """What one request sent to PostgreSQL and Redis."""

    statements: list[str]  # the first words of each SQL statement
    control: int  # BEGIN, COMMIT, savepoints
    redis: int  # commands sent alone, plus pipelines (each one round trip)
    status: int


@contextlib.contextmanager
def counting_redis() -> Iterator[Counter[str]]:
    """Count Redis round trips made in this process: one per command, one per pipeline."""
    import redis.client

    counts: Counter[str] = Counter()
    command: Callable[..., Any] = redis.client.Redis.execute_command
    execute: Callable[..., Any] = redis.client.Pipeline.execute

    def counted_command(self: Any, *args: Any, **options: Any) -> Any:
        counts[str(args[0]).upper()] += 1
        return command(self, *args, **options)

    def counted_execute(self: Any, *args: Any, **options: Any) -> Any:
        counts["pipeline"] += 1
        return execute(self, *args, **options)

    redis.client.Redis.execute_command = counted_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = counted_execute  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        redis.client.Redis.execute_command = command  # type: ignore[method-assign]
        redis.client.Pipeline.execute = execute  # type: ignore[method-assign]


def count_round_trips(side: Side, number: str, phone: Phone) -> dict[str, RoundTrips]:
    """One login through ``side`` in this process (Django's test client), its round trips counted.

    The first login of a process pays for what later ones do not (the
    gateway's session, the durations of recent sends), so the second one is
    counted. The phone page is read between the two requests, outside the count.
    """
    from django.db import connection
    from django.test import Client as TestClient
    from django.test.utils import CaptureQueriesContext

    def counted(client: TestClient, path: str, data: dict[str, str]) -> tuple[Any, RoundTrips]:
        with CaptureQueriesContext(connection) as queries, counting_redis() as redis:
            answer = client.post(path, data, content_type="application/json")
        sql = [query["sql"].lstrip().upper() for query in queries]
        control = [text for text in sql if text.startswith(_TRANSACTION)]
        trips = RoundTrips(
            [text.split(None, 1)[0] for text in sql if text and text not in control],
            len(control),
            sum(redis.values()),
            answer.status_code,
        )
        return answer, trips

    result: dict[str, RoundTrips] = {}
    for _login in range(2):
        client = TestClient()
        started, result["start"] = counted(
            client, side.start_path, {"number": "+" + number, "channel": "flash_call"}
        )
        newest = phone.newest(number)
        challenge = str(started.json().get("id", "")) if started.status_code == 201 else "none"
        code = newest[1] if newest else ""
        _, result["confirm"] = counted(client, side.confirm_path(challenge), {"code": code})
    return result


@dataclass(frozen=True)
class Facts:
    """What the database and the emulator hold of one side's logins."""

    challenges: int  # of the side's challenge ids, rows found
    confirmed: int  # of them, confirmed (verified_at set)
    with_call: int  # of them, with a call row holding the provider's request id
    logged_in: int  # sessions left by the confirms that are logged in as the number's user
    emulator_calls: int  # flash calls the emulator placed to the side's numbers


def gather_facts(side: Side, users: dict[str, int], emulator_calls: Counter[str]) -> Facts:
    """Read what ``side``'s logins left in the database and on the emulator."""
    from django.contrib.sessions.models import Session

    from django_voicepassword.models import Call, Challenge

    ids = [pair.challenge for pair in side.pairs if pair.challenge]
    rows = Challenge.objects.filter(pk__in=ids)
    with_call = (
        Call.objects.filter(challenge_id__in=ids, provider_id__isnull=False)
        .values("challenge_id")
        .distinct()
        .count()
    )
    expected = {pair.session: users[pair.number] for pair in side.pairs if pair.session}
    logged_in = 0
    for session in Session.objects.filter(session_key__in=list(expected)):
        data = session.get_decoded()
        if str(data.get("_auth_user_id")) == str(expected[session.session_key]):
            logged_in += 1
    return Facts(
        challenges=rows.count(),
        confirmed=rows.filter(verified_at__isnull=False).count(),
        with_call=with_call,
        logged_in=logged_in,
        emulator_calls=sum(emulator_calls[number] for number in side.numbers),
    )


def emulator_flash_calls(emulator: Emulator) -> Counter[str]:
    """The flash calls the emulator placed, per number."""
    calls = emulator.snapshot()["calls"]
    return Counter(call["number"] for call in calls if call["kind"] == "flash_call")


# --------------------------------------------------------------------------- the verdict


def verify(side: Side, users: dict[str, int], facts: Facts, verdict: Verdict) -> None:
    """Whether every login of ``side`` was made: answered, stored, logged in, called."""
    logins = len(side.pairs)
    answered = sum(
        pair.start_status == 201
        and pair.call_seen
        and pair.confirm_status == 200
        and pair.user == users.get(pair.number)
        for pair in side.pairs
    )
    failures = [pair.detail or f"user {pair.user}" for pair in side.pairs if pair.detail]
    verdict.require(
        f"{side.name}: every start 201 with a call, every confirm 200 with the number's user",
        logins > 0 and answered == logins,
        f"{answered} of {logins}" + (f"; first failure: {failures[0]}" if failures else ""),
    )
    verdict.require(
        f"{side.name}: every challenge confirmed in the database, with its call row",
        logins > 0 and facts.challenges == facts.confirmed == facts.with_call == logins,
        f"{facts.challenges} rows, {facts.confirmed} confirmed, {facts.with_call} with a call, "
        f"for {logins} logins",
    )
    verdict.require(
        f"{side.name}: every confirm left a session logged in as the number's user",
        logins > 0 and facts.logged_in == logins,
        f"{facts.logged_in} of {logins}",
    )
    verdict.require(
        f"{side.name}: the emulator placed one flash call per start",
        logins > 0 and facts.emulator_calls == logins,
        f"{facts.emulator_calls} calls for {logins} starts",
    )


def report(
    measured: list[Side], counts: dict[str, dict[str, RoundTrips]], verdict: Verdict
) -> None:
    """Print the figures and judge the ratio."""
    by_name = {side.name: side for side in measured}
    print(f"\ntime per start + confirm pair ({len(measured[0].rounds)} rounds per side):")
    for side in measured:
        rounds = spread([seconds * 1000 for seconds in side.rounds])
        per = 1e6 / side.measured if side.measured else 0.0
        worker, database = side.worker_cpu * per, side.database_cpu * per
        start = statistics.median(side.starts) * 1000
        confirm = statistics.median(
            (total - first) * 1000 for total, first in zip(side.rounds, side.starts, strict=True)
        )
        print(f"  {side.name:5} {rounds.describe(2)} ms: start {start:.2f}, confirm {confirm:.2f}")
        print(
            f"        CPU per pair: gunicorn worker {worker:.0f} us, "
            f"PostgreSQL backend {database:.0f} us"
        )
    print("round trips per request (in process, one login each):")
    for name, steps in counts.items():
        for step, trips in steps.items():
            kinds = Counter(trips.statements)
            print(
                f"  {name:5} {step:7} HTTP {trips.status}: {len(trips.statements)} statements "
                f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) "
                f"+ {trips.control} transaction control; {trips.redis} Redis round trips"
            )
    app, floor = by_name.get("app"), by_name.get("floor")
    if app is None or floor is None or not app.rounds or not floor.rounds:
        return
    cpu = ratios(app.cpu, floor.cpu) if all(floor.cpu) else None
    if cpu is not None:
        print(f"CPU per pair app/floor (workers + PostgreSQL): median {cpu.describe()}")
    verdict.target("time per pair app/floor", ratios(app.rounds, floor.rounds), at_most=TARGET)


def report_profile(profile_dir: Path, limit: int = 30) -> None:
    """Where the workers' CPU went on the app's logins."""
    stats = worker_profiles(profile_dir)
    if stats is None:
        return
    print("The app's functions, Django's login() and the session store, by cumulative time:")
    stats.print_stats(r"django_voicepassword/|contrib/auth/__init__|sessions/backends/", limit)
    print("Where the CPU is spent, by own time (any module):")
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative")
    print("What the two views spend it on:")
    stats.print_callees(r"api/login\.py:\d+\(post\)")
    stats.print_callees(r"verification\.py:\d+\(start_challenge\)")
    stats.print_callees(r"ratelimit\.py:\d+\(check_and_reserve\)")


# --------------------------------------------------------------------------- main


def bench(args: argparse.Namespace) -> Verdict:
    if args.quick:
        args.rounds, args.pairs, args.warmup = 5, 4, 2
    if args.rounds < 1 or args.pairs < 1:
        raise Failed("--rounds and --pairs must be 1 or more")
    why = missing_services(args.postgres)
    if why is not None:
        raise Unavailable(why)
    verdict = Verdict()
    print(machine())
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(scratch_database(DB_NAME, args.postgres))
        redis_url = stack.enter_context(scratch_redis(args.redis_db))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-login-")))
        emulator = Emulator.create(scratch / "emulator.log", callback_delay=3600, slow_seconds=30)
        stack.callback(emulator.stop)
        emulator.start()
        wait_http(emulator.url + "/", emulator)
        emulator.control("balance", {"balance": "100000000"})
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "VOICEPASSWORD_API_URL": emulator.api_url,
            "BENCH_SITE_URL": f"http://{HOST}",
        }
        setup_django(env)
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        measured = sides()
        numbers = APP_NUMBERS + FLOOR_NUMBERS + list(COUNT_NUMBERS.values())
        users = create_users(numbers)
        phone = Phone(emulator.url)
        counts = {}
        if not args.profile:
            counts = {
                side.name: count_round_trips(side, COUNT_NUMBERS[side.name], phone)
                for side in measured
            }
        connections.close_all()
        if args.profile:
            measured = [side for side in measured if side.name == "app"]
        print(
            f"gunicorn: 2 sync workers; {args.rounds} rounds of {args.pairs} logins per side, "
            f"after {args.warmup} per side of warm-up; one login at a time"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f} (other work skews the figures)")
        profile_dir = scratch / "profile" if args.profile else None
        if profile_dir is not None:
            profile_dir.mkdir()
        log = scratch / "gunicorn.log"
        try:
            with bench_site("login_site", env, log, profile_dir=profile_dir) as (port, workers):
                run_rounds(
                    Client(port, phone),
                    measured,
                    rounds=args.rounds,
                    pairs=args.pairs,
                    warmup=args.warmup,
                    worker_pids=workers,
                    database=DB_NAME,
                )
        finally:
            errors = tail(log)
            if errors.strip():
                print(f"gunicorn's log (last lines):\n{errors}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        placed = emulator_flash_calls(emulator)
        for side in measured:
            verify(side, users, gather_facts(side, users, placed), verdict)
        connections.close_all()
        if profile_dir is not None:
            report_profile(profile_dir)
        else:
            report(measured, counts, verdict)
    return verdict


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds per side (5 or more)")
    parser.add_argument("--pairs", type=int, default=20, help="logins per side per round")
    parser.add_argument("--warmup", type=int, default=5, help="logins per side before the rounds")
    parser.add_argument("--quick", action="store_true", help="5 rounds of 4 logins: a smoke run")
    parser.add_argument("--redis-db", type=int, default=REDIS_DB, help="an empty Redis database")
    parser.add_argument("--postgres", default=ADMIN_URL, help="a database URL on the server")
    parser.add_argument("--profile", action="store_true", help="cProfile the workers (app only)")
    return parser


if __name__ == "__main__":
    main(bench, parser())
