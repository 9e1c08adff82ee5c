"""What the callback endpoint costs: the app's view against a bare Django view, under gunicorn.

Run ``python bench/callbacks.py [--seconds S] [--concurrency C] [--calls N]``.

The script creates its own PostgreSQL database (``voicepassword_bench_cb_<pid>``
on 127.0.0.1:5432, dropped at the end), migrates it, creates N placed calls with
provider ids and computes their signed callback URLs. Gunicorn then serves the
bench site (``bench/callbacks_site``: ``DEBUG`` off, persistent connections)
with two workers, and a separate load process posts to it over loopback from
C threads:

* ``app``: ``voicepassword/callback/<token>/``, the real endpoint, with
  realistic callbacks: each call's states in order (a flash call's final
  state; an SMS's ``QUEUED``, ``SEND``, ``DELIVERED``), a quarter of them
  delivered twice, some arriving late (stale), across the N calls;
* ``bare``: a plain csrf-exempt Django view that reads the same JSON body,
  inserts one row (one INSERT) and answers JSON: the floor;
* ``drf`` (reference, ``--no-reference`` drops it): the smallest DRF view
  that validates the body with a six-field serializer and inserts one row,
  which the issue puts at about 0.57 of the bare view on a 2-core machine.

The sides take turns in short rounds whose order rotates, so drift in the
machine's speed falls on all alike; each side's throughput in a round is its
requests over its own time. The queries per callback are counted separately,
in this process, with ``CaptureQueriesContext`` over the same view on calls
of their own.

It judges (exit status 0 pass, 1 miss, 2 not run; see ``bench/_harness.py``):

* the work: every request of every side, warm-up included, answered 200;
  every callback the app answered 200 for is a ``CallbackEvent`` row, and its
  outcome ``applied``, ``duplicate`` or ``stale`` (never ``orphan``); every
  request the bare and DRF views answered is a row of theirs; the in-process
  callbacks were accepted too. An endpoint that refuses (a broken token check
  404s at once) would be faster, and fails here;
* the targets, issue #16's: the median of the rounds' app/bare throughput
  ratios at least 0.85 (printed with the rounds' range), and so the median
  of the rounds' CPU ratios (the bare view's CPU per request, workers and
  PostgreSQL, over the app's); the median of the rounds' app/drf ratios at
  least 1.0; one statement per callback. The same targets with
  ``--unprepared``, which misses them (docs/benchmarks.md).

The site runs with ``CALLBACK_PREPARED_STATEMENTS`` on (there is no pooler);
``--unprepared`` measures the default, where the callback's statement, a call
of the function migration 0008 installs, is parsed and planned on every
callback (the function's own statements are planned once per connection
either way).

Workers: two of gunicorn's default ``sync`` workers for every side, the usual
deployment behind a proxy. A sync worker accepts a connection only when idle
and closes it after the answer (it has no keep-alive), so the load spreads
evenly over both workers; the load's keep-alive ``http.client`` connections
then reconnect per request, on every side alike. ``--worker-class gthread``
(one thread per worker) keeps connections open instead, but each stays with
the worker that accepted it, and four connections on two workers split
unevenly (about 3:2 in trial runs), with a thread hand-off per request on top;
the ratio came out the same. The workers' and PostgreSQL's CPU time per
request, read from ``/proc``, says which side of the socket the cost is on.

Everything runs on this machine, so the load process takes CPU from the
workers; its cost per request is the same for every side, which makes the
ratio a little kinder than the server alone would be. ``--profile`` instead
runs only the app side under cProfile (CPU time) in both workers and prints
where the time goes (judging the work only).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import itertools
import json
import multiprocessing
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _harness import (
    ADMIN_URL,
    BENCH_DIR,
    HOST,
    Unavailable,
    Verdict,
    bench_site,
    cpu_seconds,
    database_backends,
    main,
    missing_postgres,
    ratios,
    run_database,
    scratch_database,
    spread,
    tail,
    worker_profiles,
)

#: One database per run: two runs at once (two people, two sessions) would
#: otherwise drop each other's database.
DB_NAME = run_database("voicepassword_bench_cb")
SETTINGS = "callbacks_site.settings"
#: The app's throughput against the bare view's, at least (the median of the
#: rounds): issue #16's target.
TARGET = 0.85
#: The bare view's CPU per request (workers and PostgreSQL) over the app's, at
#: least (the median of the rounds): issue #16's target, the same prepared
#: or not.
TARGET_CPU = 0.85
#: The app's throughput against the lean DRF view's, at least (the median of
#: the rounds): issue #16's target.
TARGET_DRF = 1.0
#: Statements per callback, at most: issue #16's "still one statement".
TARGET_STATEMENTS = 1
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
#: Callbacks counted in process, on calls that the load never touches.
QUERY_CALLS = 40


# --------------------------------------------------------------------------- callbacks


@dataclass(frozen=True)
class Delivery:
    """One callback as the provider would POST it."""

    call_index: int
    payload: dict[str, str]
    kind: str  # "new", "duplicate", "late" (an intermediate state after the final one)


def plan_deliveries(provider_ids: list[str], numbers: list[str], seed: int) -> list[Delivery]:
    """Every call's callbacks in the order they would arrive, interleaved across calls.

    A call is a flash call (70%: one final state) or an SMS (30%: ``QUEUED``,
    ``SEND``, then a final state). A quarter of the callbacks come twice, a
    little later; one SMS in ten has its ``SEND`` arrive after the final state.
    """
    rng = random.Random(seed)
    timed: list[tuple[float, int, Delivery]] = []
    seq = itertools.count()
    for index, (provider_id, number) in enumerate(zip(provider_ids, numbers, strict=True)):
        start = rng.random()
        if rng.random() < 0.7:
            final = rng.choices(["ANSWERED", "NO ANSWER", "BUSY"], weights=[8, 1, 1])[0]
            states = [(final, "7")]
        else:
            final = rng.choices(["DELIVERED", "NOT DELIVERED"], weights=[9, 1])[0]
            states = [("QUEUED", "0"), ("SEND", "0"), (final, "0")]
        for step, (state, duration) in enumerate(states):
            payload = {
                "id": provider_id,
                "number": number,
                "duration": duration,
                "state": state,
                "price": "0.35",
                "date": "2026-01-15 12:00:00",
            }
            at = start + step * 0.01
            kind = "new"
            if state == "SEND" and rng.random() < 0.1:
                at += 0.03  # after the final state: stale
                kind = "late"
            timed.append((at, next(seq), Delivery(index, payload, kind)))
            if rng.random() < 0.25:
                duplicate = Delivery(index, payload, "duplicate")
                timed.append((at + rng.random() * 0.05, next(seq), duplicate))
    timed.sort()
    return [delivery for _, _, delivery in timed]


# --------------------------------------------------------------------------- load process


@dataclass
class Side:
    """One endpoint under load: what to post, and what came back."""

    name: str
    requests: list[tuple[str, bytes]]  # (path, body), posted in order, wrapping around
    measured: int = 0
    elapsed: float = 0.0
    rounds: list[float] = field(default_factory=list)  # requests per second of each round
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    workers: Counter[str] = field(default_factory=Counter)
    # Every answer, the warm-up's included: what the database must hold.
    answered: Counter[str] = field(default_factory=Counter)
    answered_outcomes: Counter[str] = field(default_factory=Counter)
    wrapped: bool = False
    worker_cpu: float = 0.0  # seconds of CPU the gunicorn workers spent in its rounds
    database_cpu: float = 0.0  # and the PostgreSQL backends of the bench database
    # Seconds of CPU (workers and backends) per request, in each measured round.
    cpu_rounds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class LoadPlan:
    """What the load process does; sent to it whole."""

    port: int
    sides: list[Side]
    concurrency: int
    rounds: int
    round_seconds: float
    warmup_seconds: float
    max_requests: int  # per side, over all measured rounds
    worker_pids: list[int]  # gunicorn's workers, for their CPU time
    database: str  # the bench database, whose backends' CPU time is read from /proc


def load_main(plan: LoadPlan, results: Connection) -> None:
    """The load process: C threads post to one side at a time, round after round."""
    # Ctrl-C reaches the whole foreground group; the parent decides, and ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        results.send(("ok", run_load(plan)))
    except Exception as error:  # reported by the parent
        results.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        results.close()


def run_load(plan: LoadPlan) -> list[Side]:
    sides = plan.sides
    cursors = {side.name: itertools.count() for side in sides}
    state: dict[str, Any] = {"side": sides[0], "deadline": 0.0, "limit": 0, "measure": False}
    barrier = threading.Barrier(plan.concurrency + 1)
    stop = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        connection = http.client.HTTPConnection(HOST, plan.port, timeout=30)
        try:
            while True:
                barrier.wait()
                if stop.is_set():
                    return
                side: Side = state["side"]
                deadline: float = state["deadline"]
                limit: int = state["limit"]
                measure: bool = state["measure"]
                cursor = cursors[side.name]
                statuses: Counter[str] = Counter()
                outcomes: Counter[str] = Counter()
                workers: Counter[str] = Counter()
                done = 0
                while time.perf_counter() < deadline and done < limit:
                    index = next(cursor)
                    path, body = side.requests[index % len(side.requests)]
                    try:
                        connection.request("POST", path, body, HEADERS)
                        response = connection.getresponse()
                        answer = response.read()
                    except (OSError, http.client.HTTPException) as error:
                        connection.close()
                        statuses[type(error).__name__] += 1
                        continue
                    done += 1
                    statuses[str(response.status)] += 1
                    workers[response.getheader("X-Bench-Worker") or "?"] += 1
                    with contextlib.suppress(ValueError):
                        outcomes[str(json.loads(answer).get("outcome", "-"))] += 1
                    if response.will_close:
                        connection.close()
                with lock:
                    side.answered.update(statuses)
                    side.answered_outcomes.update(outcomes)
                    if measure:
                        side.statuses.update(statuses)
                        side.outcomes.update(outcomes)
                        side.workers.update(workers)
                barrier.wait()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(plan.concurrency)]
    for thread in threads:
        thread.start()

    backends: list[int] = []

    def one_round(side: Side, seconds: float, limit: int, measure: bool) -> None:
        before = sum(side.statuses.values())
        workers_before, backends_before = cpu_seconds(plan.worker_pids), cpu_seconds(backends)
        state.update(side=side, limit=limit, measure=measure)
        state["deadline"] = time.perf_counter() + seconds
        start = time.perf_counter()
        barrier.wait()  # go
        barrier.wait()  # every thread has finished its last request
        elapsed = time.perf_counter() - start
        if measure:
            count = sum(side.statuses.values()) - before
            side.measured += count
            side.elapsed += elapsed
            side.rounds.append(count / elapsed)
            worker_cpu = cpu_seconds(plan.worker_pids) - workers_before
            database_cpu = cpu_seconds(backends) - backends_before
            side.worker_cpu += worker_cpu
            side.database_cpu += database_cpu
            side.cpu_rounds.append((worker_cpu + database_cpu) / max(count, 1))

    try:
        for side in sides:  # warm-up: imports, connections, caches; not counted
            one_round(side, plan.warmup_seconds, 10**9, measure=False)
        # Each worker has its persistent connection by now.
        backends.extend(database_backends(plan.database))
        per_round = max(1, plan.max_requests // plan.rounds // plan.concurrency)
        for index in range(plan.rounds):
            shift = index % len(sides)
            for side in sides[shift:] + sides[:shift]:
                one_round(side, plan.round_seconds, per_round, measure=True)
    finally:
        stop.set()
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
    for side in sides:
        side.wrapped = next(cursors[side.name]) > len(side.requests)
        side.requests = []  # not sent back
    return sides


# --------------------------------------------------------------------------- Django side


def setup_django(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["DATABASE_URL"] = database_url
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    import django

    django.setup()


def create_calls(count: int) -> tuple[list[int], list[str], list[str]]:
    """``count`` placed flash calls and SMS; their pks, provider ids and numbers."""
    from django_voicepassword.models import Call

    first = Call.objects.count()
    calls = [
        Call(
            provider_id=str(900_000_000 + first + index),
            channel=Call.Channel.FLASH_CALL,
            number=f"7999{first + index:07d}",
            status=Call.Status.PLACED,
        )
        for index in range(count)
    ]
    created = Call.objects.bulk_create(calls, batch_size=2000)
    return (
        [call.pk for call in created],
        [str(call.provider_id) for call in created],
        [call.number for call in created],
    )


def callback_path(call_pk: int) -> str:
    from django.urls import reverse

    from django_voicepassword.callbacks import callback_token

    return reverse("voicepassword:callback", kwargs={"token": callback_token(call_pk)})


def body_of(payload: dict[str, str]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


#: Transaction control, which Django logs as queries since 6.0 (5.2 does not).
_TRANSACTION = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


@dataclass
class QueryCount:
    """Database round trips of callbacks with one outcome."""

    statements: list[int] = field(default_factory=list)  # SELECT, UPDATE, INSERT
    control: list[int] = field(default_factory=list)  # BEGIN, COMMIT, savepoints


def count_queries() -> dict[str, QueryCount]:
    """Queries per callback through the same URL and view, by outcome (in process).

    The bare view's single INSERT is counted the same way, as "bare".
    """
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    pks, provider_ids, numbers = create_calls(QUERY_CALLS)
    deliveries = plan_deliveries(provider_ids, numbers, seed=7)
    # And an orphan: a valid token, a request id that is no call of ours.
    orphan = dict(deliveries[0].payload, id="1")
    plan = [(callback_path(pks[d.call_index]), d.payload) for d in deliveries]
    plan += [(callback_path(pks[0]), orphan), ("/bare/", orphan)]
    client = Client()
    counts: dict[str, QueryCount] = {}
    for path, payload in plan:
        with CaptureQueriesContext(connection) as captured:
            response = client.post(path, body_of(payload), content_type="application/json")
        if path == "/bare/":
            outcome = "bare"
        elif response.status_code == 200:
            outcome = str(response.json().get("outcome"))
        else:
            outcome = f"HTTP {response.status_code}"
        control = sum(q["sql"].upper().startswith(_TRANSACTION) for q in captured)
        count = counts.setdefault(outcome, QueryCount())
        count.statements.append(len(captured) - control)
        count.control.append(control)
    return counts


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def gunicorn(
    database_url: str, worker_class: str, log: Path, profile_dir: Path | None
) -> Iterator[tuple[int, list[int]]]:
    """Gunicorn serving the bench site with two workers, logging to ``log``.

    Yields its port and its workers' pids.
    """
    with bench_site(
        "callbacks_site",
        {"DATABASE_URL": database_url},
        log,
        worker_class=worker_class,
        profile_dir=profile_dir,
    ) as served:
        yield served


def run_load_process(plan: LoadPlan) -> list[Side]:
    context = multiprocessing.get_context("spawn")  # no Django, no inherited connections
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=load_main, args=(plan, sender), name="bench-load")
    process.start()
    sender.close()
    try:
        budget = (plan.rounds * len(plan.sides)) * (plan.round_seconds + 30) + 60
        if not receiver.poll(budget):
            raise RuntimeError("the load process did not report in time")
        verdict, payload = receiver.recv()
        if verdict != "ok":
            raise RuntimeError(f"the load process failed: {payload}")
        sides: list[Side] = payload
        return sides
    finally:
        receiver.close()
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


# --------------------------------------------------------------------------- report


#: What a callback may come to when the load posts it: never an orphan (the
#: calls are the site's own), never a refusal.
GOOD_OUTCOMES = {"applied", "duplicate", "stale"}


def verify_sides(sides: list[Side], written: dict[str, int], verdict: Verdict) -> None:
    """Whether every side did its work: every request answered 200, and stored.

    ``written`` holds the rows each side's table gained during the load:
    ``"app"`` the ``CallbackEvent`` rows, ``"bare"`` the ``BareEvent`` rows of
    the bare view and the DRF reference together. A side that answers 404
    (a broken token check) or 500 fails here, however fast it was.
    """
    for side in sides:
        answered = sum(side.answered.values())
        refused = {code: n for code, n in side.answered.items() if code != "200"}
        verdict.require(
            f"{side.name}: every request answered 200",
            answered > 0 and not refused,
            f"{answered - sum(refused.values())} of {answered}"
            + (f"; others {dict(sorted(refused.items()))}" if refused else ""),
        )
    by_name = {side.name: side for side in sides}
    app = by_name.get("app")
    if app is not None:
        ok = app.answered["200"]
        verdict.require(
            "app: every callback answered 200 was written (CallbackEvent rows)",
            written.get("app") == ok,
            f"{written.get('app')} rows for {ok} callbacks",
        )
        odd = {name: n for name, n in app.answered_outcomes.items() if name not in GOOD_OUTCOMES}
        verdict.require(
            "app: every callback applied, a duplicate or stale",
            app.answered_outcomes["applied"] > 0 and not odd,
            ", ".join(f"{name}: {n}" for name, n in app.answered_outcomes.most_common()),
        )
    floors = [by_name[name] for name in ("bare", "drf") if name in by_name]
    if floors:
        ok = sum(side.answered["200"] for side in floors)
        verdict.require(
            "bare (and drf): every request answered 200 was written",
            written.get("bare") == ok,
            f"{written.get('bare')} rows for {ok} requests",
        )


def verify_queries(counts: dict[str, QueryCount], verdict: Verdict) -> None:
    """The in-process callbacks were applied (not refused), in one statement each."""
    refused = sorted(name for name in counts if name.startswith("HTTP"))
    verdict.require(
        "query count: every in-process callback accepted",
        not refused and "applied" in counts,
        "outcomes "
        + ", ".join(f"{name}: {len(c.statements)}" for name, c in sorted(counts.items())),
    )
    statements = [
        n for name, count in counts.items() if name != "bare" for n in count.statements
    ] or [0]
    verdict.require(
        "app: statements per callback",
        max(statements) <= TARGET_STATEMENTS,
        f"at most {max(statements)}; target <= {TARGET_STATEMENTS}",
    )


def report(sides: list[Side], counts: dict[str, QueryCount], verdict: Verdict) -> None:
    by_name = {side.name: side for side in sides}
    bare = by_name["bare"]
    rate = {side.name: side.measured / side.elapsed if side.elapsed else 0.0 for side in sides}
    print(f"\nthroughput ({len(bare.rounds)} rotating rounds per side; medians of the rounds):")
    for side in sides:
        rounds = spread(side.rounds or [0.0])
        print(
            f"  {side.name:5} {rounds.describe(1)} req/s "
            f"({side.measured} requests in {side.elapsed:.1f} s: {rate[side.name]:.1f} req/s)"
        )
    print("CPU per request (from /proc; the load process's own is left out):")
    for side in sides:
        per = 1e6 / side.measured if side.measured else 0.0
        database = f"{side.database_cpu * per:6.0f} us" if side.database_cpu else "   n/a   "
        print(
            f"  {side.name:5} gunicorn worker {side.worker_cpu * per:6.0f} us, "
            f"PostgreSQL backend {database}"
        )

    def cpu_per_request(side: Side) -> float:
        return (side.worker_cpu + side.database_cpu) / side.measured if side.measured else 0.0

    if "drf" in by_name and bare.rounds:
        drf = ratios(by_name["drf"].rounds, bare.rounds)
        print(f"ratio drf/bare (reference, ~0.57 quoted): median {drf.describe()}")
    for name in ("app", "drf"):
        if name in by_name and cpu_per_request(by_name[name]):
            # On a machine whose CPU is the limit, throughput goes as 1 / CPU per
            # request; this reading moves less when other work shares the machine.
            print(
                f"  {name}/bare by CPU per request (worker + PostgreSQL), whole run: "
                f"{cpu_per_request(bare) / cpu_per_request(by_name[name]):.3f}"
            )
    print("\nstatus codes (measured rounds):")
    for side in sides:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(side.statuses.items()))
        print(f"  {side.name:5} {codes}")
    app = by_name.get("app")
    if app is not None:
        mix = ", ".join(f"{name}: {n}" for name, n in app.outcomes.most_common())
        print(f"app outcomes: {mix}")
        if app.wrapped:
            print("  (the callbacks ran out and started over: later ones were repeats)")
    for side in sides:
        workers = ", ".join(f"{n}" for _, n in side.workers.most_common())
        print(f"requests per worker, {side.name}: {workers}")
    print("\nqueries per callback (in process, CaptureQueriesContext over the same URL):")
    app_counts = {name: count for name, count in counts.items() if name != "bare"}
    for outcome, count in sorted(counts.items()):
        print(
            f"  {outcome:10} {len(count.statements):3} requests: "
            f"statements max {max(count.statements)}, "
            f"+ transaction control max {max(count.control)}"
        )
    statements = [n for count in app_counts.values() for n in count.statements] or [0]
    total = [
        s + c
        for count in app_counts.values()
        for s, c in zip(count.statements, count.control, strict=True)
    ] or [0]
    print(
        f"  app: statements max {max(statements)}, mean {statistics.fmean(statements):.2f}; "
        f"with BEGIN/COMMIT (counted by Django >= 6.0) max {max(total)}, "
        f"mean {statistics.fmean(total):.2f}"
    )
    if app is not None and app.rounds and bare.rounds:
        verdict.target("ratio app/bare", ratios(app.rounds, bare.rounds), at_least=TARGET)
    if app is not None and app.cpu_rounds and bare.cpu_rounds:
        # Round by round, as the throughput: the bare view's CPU per request
        # over the app's in the rounds that ran side by side.
        verdict.target(
            "CPU per request app/bare",
            ratios(bare.cpu_rounds, app.cpu_rounds),
            at_least=TARGET_CPU,
        )
    drf_side = by_name.get("drf")
    if app is not None and drf_side is not None and app.rounds and drf_side.rounds:
        verdict.target("ratio app/drf", ratios(app.rounds, drf_side.rounds), at_least=TARGET_DRF)


def report_profile(profile_dir: Path, limit: int = 25) -> None:
    """Where the workers' CPU went: the app's functions, then what the view and apply call."""
    stats = worker_profiles(profile_dir)
    if stats is None:
        return
    print("The app's functions by cumulative time:")
    stats.print_stats(r"django_voicepassword/", limit)
    print("What the callback view and apply_callback spend it on:")
    stats.print_callees(r"api/views\.py:\d+\(post\)")
    stats.print_callees(r"callbacks\.py:\d+\(apply_callback\)")
    stats.print_callees(r"callbacks\.py:\d+\(_apply_in_one\)")


# --------------------------------------------------------------------------- main


def bench(args: argparse.Namespace) -> Verdict:
    why = missing_postgres(args.postgres, gunicorn=True)
    if why is not None:
        raise Unavailable(why)
    verdict = Verdict()
    # Read by the site's settings, here and in gunicorn's workers alike.
    os.environ["BENCH_PREPARED_STATEMENTS"] = "1" if args.prepared else "0"
    with scratch_database(DB_NAME, args.postgres) as database_url:
        setup_django(database_url)
        from callbacks_site.models import BareEvent
        from django.core.management import call_command
        from django.db import connections

        from django_voicepassword.models import CallbackEvent

        call_command("migrate", run_syncdb=True, verbosity=0)
        counts = count_queries()
        verify_queries(counts, verdict)
        pks, provider_ids, numbers = create_calls(args.calls)
        deliveries = plan_deliveries(provider_ids, numbers, seed=1)
        app = Side(
            "app", [(callback_path(pks[d.call_index]), body_of(d.payload)) for d in deliveries]
        )
        bodies = [body_of(d.payload) for d in deliveries]
        sides = [Side("bare", [("/bare/", body) for body in bodies])]
        if not args.profile and args.reference:
            sides.append(Side("drf", [("/drf/", body) for body in bodies]))
        sides.append(app)
        if args.profile:
            sides = [app]
        events_before, bare_before = CallbackEvent.objects.count(), BareEvent.objects.count()
        connections.close_all()

        rounds = max(1, round(args.seconds / args.round / len(sides)))
        plan = LoadPlan(
            port=0,
            sides=sides,
            concurrency=args.concurrency,
            rounds=rounds,
            round_seconds=args.round,
            warmup_seconds=1.0,
            max_requests=args.requests,
            worker_pids=[],
            database=DB_NAME,
        )
        print(
            f"gunicorn: 2 {args.worker_class} workers; load: {args.concurrency} connections, "
            f"{rounds} rounds of {args.round:g} s per side; {args.calls} calls, "
            f"{len(deliveries)} distinct callbacks"
        )
        print(f"CALLBACK_PREPARED_STATEMENTS: {args.prepared}")
        print(f"load average before: {os.getloadavg()[0]:.2f} (other work skews the figures)")
        with tempfile.TemporaryDirectory(prefix="bench-callbacks-") as scratch:
            log = Path(scratch) / "gunicorn.log"
            profile_dir = Path(scratch) / "profile" if args.profile else None
            if profile_dir is not None:
                profile_dir.mkdir()
            with gunicorn(database_url, args.worker_class, log, profile_dir) as (port, workers):
                plan = dataclasses.replace(plan, port=port, worker_pids=workers)
                measured = run_load_process(plan)
            print(f"load average after: {os.getloadavg()[0]:.2f}")
            errors = tail(log)
            if errors.strip():
                print(f"gunicorn's log (last lines):\n{errors}")
            if profile_dir is not None:
                report_profile(profile_dir)
        written = {
            "app": CallbackEvent.objects.count() - events_before,
            "bare": BareEvent.objects.count() - bare_before,
        }
        connections.close_all()
    verify_sides(measured, written, verdict)
    if not args.profile:
        report(measured, counts, verdict)
    return verdict


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time, all sides")
    parser.add_argument("--concurrency", type=int, default=4, help="load connections")
    parser.add_argument("--calls", type=int, default=5000, help="calls to send callbacks for")
    parser.add_argument("--requests", type=int, default=10**6, help="at most, per side")
    parser.add_argument("--round", type=float, default=1.0, help="seconds per side per round")
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="sync")
    parser.add_argument("--no-reference", dest="reference", action="store_false")
    parser.add_argument(
        "--unprepared",
        dest="prepared",
        action="store_false",
        help="CALLBACK_PREPARED_STATEMENTS off (the default setting; for PgBouncer < 1.21)",
    )
    parser.add_argument("--postgres", default=ADMIN_URL, help="a database URL on the server")
    parser.add_argument("--profile", action="store_true", help="cProfile the workers (app only)")
    return parser


if __name__ == "__main__":
    main(bench, parser())
