"""Two app processes, one site: the soak run and the fault run of the example project.

Run ``python bench/soak.py`` for the soak, ``python bench/soak.py --faults`` for
the fault run; ``--quick`` makes either about five times smaller. Needs
PostgreSQL and Redis on 127.0.0.1 and gunicorn (``pip install -e . --group dev``).

What runs, all on 127.0.0.1 and all stopped at the end whatever happens:

* a database of its own, ``voicepassword_bench_soak`` (dropped at the end), and
  one Redis database (``--redis-db``, 12 by default), which must be empty at the
  start and is flushed at the end: the cache (limits, budget) and the RQ queue;
* the emulator (``python -m django_voicepassword.emulator``): status callbacks
  half a second after each call, to server A;
* two gunicorn servers of ``example_project`` (A and B), each two ``gthread``
  workers of four threads, ``DEBUG`` off, on that database and that Redis;
* a task worker (``rqworker`` with RQ's ``SimpleWorker``, or ``db_worker`` with
  ``--tasks db``): it sends the codes (``ASYNC_SEND``, on in the soak) and
  nothing else; the reconciliation at the end runs in this script;
* a load process without Django, started with ``spawn``.

The load, in three phases (bounded together by ``--max-seconds``):

1. at the same time: 10,000 status callbacks (30% of them duplicates of
   another, the whole list shuffled) posted by 16 concurrent senders,
   alternately to A and B; and 1,000 phone logins through the JSON API by 8
   concurrent "users": start on one server, read the code on the emulator's
   phone page, confirm the code on **both** servers at once with the same
   session cookie (exactly one may succeed), check that the session is logged
   in on the other server, and replay the code with the cookies from before the
   login (refused). Logins to one number run one after another, so the phone
   page's newest call is the flow's own;
2. limits: for a few numbers of their own, more concurrent starts than the
   per-number limit allows, each from a fresh session, split across A and B;
3. budget: more starts than the day's budget has left, split across A and B.

Then the script waits for the worker's sends and the emulator's callbacks,
reconciles (``voicepassword_sync``, then the reconciliation of the next
morning: ``reconcile_day`` of today with the clock past the end of the day,
which is when unknown outcomes are settled or marked not placed), and prints:

* ``callbacks lost``: answered 200 but no ``CallbackEvent`` row for it;
* ``5xx answers``: every answer of A and B with a 5xx status (in the fault run,
  the 503 ``service_unavailable`` the API gives when the provider failed is
  counted apart: it is the clear error a user should get);
* ``final states wrong``: a call whose status is not that of the furthest state
  reported for it (the callbacks sent by the load), or not the emulator's final
  state (the calls placed through the emulator);
* ``calls placed beyond limits``: per number and window of the number limit,
  the ``send/`` requests beyond the limit; and the calls placed beyond the daily
  budget, priced at ``PRICE_ESTIMATES``;
* ``codes accepted twice``: a code that logged in more than once;
* the throughput of the callbacks and of the logins, and latencies.

The fault run (``--faults``) is the same load with ASYNC_SEND off (so that a
user sees what the provider's failure does to the request), the emulator
failing a share of the requests (``--fault-share``, 0.2) in each fault mode in
turn (slow beyond the site's read timeout, HTTP 500, an HTML page, truncated
JSON, a dropped connection; a new mode every ``--fault-period`` seconds), and
server A (the callbacks' target) killed with SIGKILL mid-run, process group
and all, and started again a few seconds later. Clients fail over to the other
server on a connection error, as a load balancer would. It prints, besides the
figures above: what each user got (a working login or a clear error; anything
else is counted as unclear, apart from the users whose send the site saw fail,
who are answered as sent by the accounts-look-alike rule and counted on a line
of their own), the Call rows by status after each reconciliation
(every row must end in a final status), ``send/`` requests per Call row (no
call placed twice) and ``send/`` requests without a row.

Exit status: 0 when every must-be-zero figure is 0, 1 when one is not, 2 when
the run could not be made (a service missing, a process that would not start).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _harness import (
    EXAMPLE_DIR,
    HOST,
    Child,
    Emulator,
    Gunicorn,
    Phone,
    Site,
    free_port,
    machine,
    manage_command,
    missing_services,
    scratch_database,
    scratch_redis,
    tail,
    update_cookies,
    wait_http,
)

from django_voicepassword.emulator.numbers import ANSWERED_NUMBER, TEST_NUMBERS

DB_NAME = "voicepassword_bench_soak"
START = "/voicepassword/api/challenges/"
#: Numbers of the test range with a behaviour of their own (busy, errors, faults,
#: flash calls never delivered...), read from the emulator's table so that a new
#: one is never taken for an ordinary number.
SPECIAL = {0} | {int(number[-2:]) for number in TEST_NUMBERS if number != ANSWERED_NUMBER}
#: The rest answer like 79990000001: a call is answered, its code usable.
ORDINARY = [f"799900000{n:02d}" for n in range(100) if n not in SPECIAL]
FAULT_MODES = ("slow", "http500", "html", "truncated", "dropped")
#: Answers a user can act on: the API's own error codes.
CLEAR_CODES = frozenset(
    {"limit_exceeded", "service_unavailable", "expired", "exhausted", "used", "cooldown"}
)
#: A flash call's and a voice call's reservation against the budget (PRICE_ESTIMATES).
ESTIMATES = {"flash_call": 0.50, "voice_call": 1.00, "sms": 4.00}
CALLBACK_STATES_FLASH = ["ANSWERED", "NO ANSWER", "BUSY", "FAIL", "CANCEL"]
CALLBACK_STATES_SMS = ["DELIVERED", "NOT DELIVERED"]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Callback:
    """One status callback to POST: to ``path`` (the call's signed URL), ``body``."""

    provider_id: str
    state: str
    path: str
    body: bytes


@dataclass(frozen=True)
class Flow:
    """One phone login: ``number`` by ``channel``, started on server ``first``."""

    number: str
    channel: str
    first: int


@dataclass(frozen=True)
class LoadPlan:
    """What the load process does; sent to it whole."""

    servers: list[str]
    emulator: str
    callbacks: list[Callback]
    senders: int
    lanes: list[list[Flow]]
    limit_burst: list[str]
    budget_burst: list[str]
    burst_concurrency: int
    async_send: bool
    failover: bool
    seconds: float
    ring_delay: float


@dataclass
class FlowResult:
    """What one login gave its user."""

    number: str
    outcome: str  # "logged_in", "clear_error", "unclear"
    detail: str
    accepted: int  # answers that accepted the code (1 for a login; more is the bug)
    seconds: float
    challenge: str = ""  # its id, once the start answered 201


@dataclass
class LoadResult:
    """What the load process saw."""

    statuses: Counter[str] = field(default_factory=Counter)  # every app answer
    steps: Counter[str] = field(default_factory=Counter)  # the same, by step ("start 201")
    samples: list[str] = field(default_factory=list)  # some 5xx and failed requests
    callback_answers: list[str] = field(default_factory=list)  # per callback: last status
    callback_seconds: float = 0.0
    flows: list[FlowResult] = field(default_factory=list)
    login_seconds: float = 0.0
    phase_seconds: float = 0.0
    limit_burst: dict[str, Counter[str]] = field(default_factory=dict)
    budget_burst: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failovers: int = 0
    early_codes: int = 0
    early_expired: int = 0
    reconnects: int = 0
    stopped_early: list[str] = field(default_factory=list)


def plan_callbacks(count: int, duplicates: float, seed: int) -> list[tuple[str, str, str, str]]:
    """``count`` callbacks as ``(call key, provider id, number, state)``, shuffled.

    The distinct ones (``1 - duplicates`` of ``count``) report flash calls (a
    final state) and SMS fallbacks (``QUEUED``, ``SEND``, a final state, on
    the URL of the call they follow); the rest repeat distinct ones at random.
    The call key is ``"c<n>"`` for the n-th call, ``"s<n>"`` for its SMS.
    """
    rng = random.Random(seed)
    distinct: list[tuple[str, str, str, str]] = []
    target = round(count * (1 - duplicates))
    index = 0
    while len(distinct) < target:
        number = ORDINARY[index % len(ORDINARY)]
        distinct.append((f"c{index}", f"5{index:08d}", number, rng.choice(CALLBACK_STATES_FLASH)))
        if rng.random() < 0.3:
            final = rng.choice(CALLBACK_STATES_SMS)
            for state in ("QUEUED", "SEND", final):
                distinct.append((f"s{index}", f"6{index:08d}", number, state))
        index += 1
    distinct = distinct[:target]
    every = distinct + [rng.choice(distinct) for _ in range(count - len(distinct))]
    rng.shuffle(every)
    return every


def plan_lanes(flows: int, numbers: list[str], lanes: int, seed: int) -> list[list[Flow]]:
    """``flows`` logins over ``numbers``; a number's logins all in one lane, in turn."""
    rng = random.Random(seed)
    by_lane: list[list[Flow]] = [[] for _ in range(lanes)]
    for index in range(flows):
        slot = index % len(numbers)
        channel = "voice_call" if rng.random() < 0.3 else "flash_call"
        by_lane[slot % lanes].append(Flow(numbers[slot], channel, index % 2))
    return by_lane


# --------------------------------------------------------------------------- load process


class Stats:
    """Counters shared by the load's threads."""

    def __init__(self, result: LoadResult) -> None:
        self.result = result
        self.lock = threading.Lock()

    def answer(self, status: str, what: str, body: bytes = b"") -> None:
        with self.lock:
            self.result.statuses[status] += 1
            self.result.steps[f"{what.split(' on ')[0]} {status}"] += 1
            failed = not status.isdigit() or status.startswith("5")
            if failed and len(self.result.samples) < 40:
                self.result.samples.append(f"{what} -> {status} {body[:160]!r}")

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self.result, name, getattr(self.result, name) + amount)

    def latency(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.result.latencies[kind].append(seconds)


@dataclass
class Answer:
    """An app answer as the load keeps it (``status`` 0: no answer at all)."""

    status: int
    body: bytes
    server: int
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Browser:
    """One user's cookie jar over both servers (one host: the cookies go to both)."""

    def __init__(self, plan: LoadPlan, stats: Stats, cookies: dict[str, str] | None = None):
        self.plan = plan
        self.stats = stats
        self.cookies: dict[str, str] = dict(cookies or {})
        self.connections: dict[int, http.client.HTTPConnection] = {}

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()

    def _send(self, server: int, method: str, path: str, body: bytes | None) -> Answer:
        port = int(self.plan.servers[server].rsplit(":", 1)[1])
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            connection = self.connections.get(server)
            fresh = connection is None
            if connection is None:
                connection = http.client.HTTPConnection(HOST, port, timeout=60)
                self.connections[server] = connection
            try:
                connection.request(method, path, body, headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                del self.connections[server]
                if fresh or attempt:
                    return Answer(0, b"", server, type(error).__name__)
                # A kept-alive connection the server had closed: once more, anew.
                self.stats.add("reconnects")
                continue
            update_cookies(self.cookies, response.getheaders())
            if response.will_close:
                connection.close()
                del self.connections[server]
            return Answer(response.status, data, server)
        raise AssertionError("unreachable")

    def request(
        self, server: int, method: str, path: str, data: dict[str, Any] | None = None
    ) -> Answer:
        """One request; on a connection error, once more to the other server if failing over."""
        body = None if data is None else json.dumps(data).encode()
        servers = [server, 1 - server] if self.plan.failover else [server]
        answer = Answer(0, b"", server, "none")
        for index, target in enumerate(servers):
            answer = self._send(target, method, path, body)
            label = str(answer.status) if answer.status else answer.error
            self.stats.answer(label, f"{describe(method, path)} on {'AB'[target]}", answer.body)
            if answer.status:
                return answer
            if index + 1 < len(servers):
                self.stats.add("failovers")
        return answer


def describe(method: str, path: str) -> str:
    """A request in a word or two, for the samples of failed ones."""
    if path == START:
        return "start"
    if path.endswith("/confirm/"):
        return "confirm"
    if "/callback/" in path:
        return "callback"
    if path.startswith(START):
        return f"{method} challenge"
    return f"{method} {path[:40]}"


def _code(answer: Answer) -> str | None:
    """The API's error ``code`` in an answer, if any."""
    data = answer.json()
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


def _refusal(answer: Answer, step: str) -> tuple[str, str]:
    """``("clear_error", code)`` for an answer a user can act on, else ``("unclear", why)``."""
    if not answer.status:
        return "unclear", f"{step}: no answer ({answer.error})"
    code = _code(answer)
    if code in CLEAR_CODES:
        return "clear_error", str(code)
    return "unclear", f"{step}: {answer.status} {answer.body[:80]!r}"


def one_login(
    flow: Flow, plan: LoadPlan, stats: Stats, phone: Phone, helper: ThreadPoolExecutor
) -> FlowResult:
    """A user logs in by phone: start, read the phone, confirm twice at once, replay."""
    started = time.perf_counter()

    challenge = ""

    def result(outcome: str, detail: str, accepted: int = 0) -> FlowResult:
        seconds = time.perf_counter() - started
        return FlowResult(flow.number, outcome, detail, accepted, seconds, challenge)

    before = phone.newest(flow.number)
    browser = Browser(plan, stats)
    try:
        begin = time.perf_counter()
        answer = browser.request(
            flow.first, "POST", START, {"number": "+" + flow.number, "channel": flow.channel}
        )
        if answer.status != 201:
            return result(*_refusal(answer, "start"))
        stats.latency("start", time.perf_counter() - begin)
        challenge = str(answer.json()["id"])
        code = phone.wait(flow.number, before[0] if before else 0, 10 if plan.async_send else 5)
        if code is None:
            shown = browser.request(answer.server, "GET", f"{START}{challenge}/")
            return result("unclear", f"no call came; the challenge says {shown.body[:80]!r}")
        if plan.async_send:
            # A real phone rings a while after the provider accepted the call
            # (and the worker has long stored the code); the emulator's page
            # shows it at once.
            time.sleep(plan.ring_delay)
        confirm = f"{START}{challenge}/confirm/"
        before_login = dict(browser.cookies)
        for attempt in range(2):
            # The same session confirms on both servers at once: one answer may accept.
            twin = Browser(plan, stats, before_login)
            other = 1 - answer.server
            begin = time.perf_counter()
            theirs = helper.submit(twin.request, other, "POST", confirm, {"code": code})
            mine = browser.request(answer.server, "POST", confirm, {"code": code})
            stats.latency("confirm", time.perf_counter() - begin)
            answers = [(mine, browser), (theirs.result(), twin)]
            accepted = [(a, who) for a, who in answers if a.status == 200]
            early = [a for a, _who in answers if _code(a) in ("wrong_code", "expired")]
            if accepted or attempt or not plan.async_send or len(early) < len(answers):
                break
            # With ASYNC_SEND the emulator's phone shows the call a moment
            # before the worker has stored the code's digest, and a code
            # entered in between is wrong (as docs/tasks.md says); storing it
            # resets the attempts, which the API can then misread as
            # "expired". The user tries once more.
            stats.add("early_codes")
            stats.add("early_expired", sum(1 for a in early if _code(a) == "expired"))
            twin.close()
            time.sleep(0.3)
        if not accepted:
            twin.close()
            outcome, detail = _refusal(mine, "confirm")
            if outcome == "clear_error":
                return result(outcome, detail)
            return result("unclear", f"the code from the phone was refused: {detail}")
        winner, session = accepted[0]
        # Logged in on the other server too: the session is in the shared database.
        home = session.request(1 - winner.server, "GET", "/")
        twin.close()
        replay = Browser(plan, stats, before_login)
        again = replay.request(1 - winner.server, "POST", confirm, {"code": code})
        replay.close()
        count = len(accepted) + (again.status == 200)
        if b'action="/logout/"' not in home.body:
            return result("unclear", f"accepted, but not logged in ({home.status})", count)
        return result("logged_in", "", count)
    finally:
        browser.close()


def run_lane(
    flows: list[Flow],
    plan: LoadPlan,
    stats: Stats,
    phone: Phone,
    deadline: float,
    out: list[FlowResult],
) -> None:
    with ThreadPoolExecutor(1) as helper:
        for flow in flows:
            if time.monotonic() > deadline:
                return
            out.append(one_login(flow, plan, stats, phone, helper))


def run_senders(plan: LoadPlan, stats: Stats, deadline: float, answers: list[str]) -> None:
    """``plan.senders`` threads post the callbacks in order, alternately to A and B."""
    cursor = itertools.count()
    lock = threading.Lock()

    def sender() -> None:
        browser = Browser(plan, stats)
        try:
            while time.monotonic() < deadline:
                with lock:
                    index = next(cursor)
                if index >= len(plan.callbacks):
                    return
                callback = plan.callbacks[index]
                begin = time.perf_counter()
                answer = browser._send(index % 2, "POST", callback.path, callback.body)
                if not answer.status and plan.failover:
                    stats.add("failovers")
                    answer = browser._send(1 - index % 2, "POST", callback.path, callback.body)
                label = str(answer.status) if answer.status else answer.error
                stats.answer(label, "POST callback", answer.body)
                if answer.status == 200:
                    stats.latency("callback", time.perf_counter() - begin)
                answers[index] = label
        finally:
            browser.close()

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(plan.senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_burst(
    numbers: list[str], plan: LoadPlan, stats: Stats, deadline: float
) -> dict[str, Counter[str]]:
    """One start per entry of ``numbers``, each from a fresh session, A and B in turn."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    lock = threading.Lock()

    def start(index: int, number: str) -> None:
        if time.monotonic() > deadline:
            return
        browser = Browser(plan, stats)
        try:
            answer = browser.request(index % 2, "POST", START, {"number": "+" + number})
        finally:
            browser.close()
        label = str(answer.status) if answer.status else answer.error
        with lock:
            seen[number][label] += 1

    with ThreadPoolExecutor(plan.burst_concurrency) as pool:
        for future in [pool.submit(start, i, n) for i, n in enumerate(numbers)]:
            future.result()
    return dict(seen)


def run_load(plan: LoadPlan) -> LoadResult:
    result = LoadResult(callback_answers=[""] * len(plan.callbacks))
    stats = Stats(result)
    phone = Phone(plan.emulator)
    begin = time.monotonic()
    deadline = begin + plan.seconds
    flows: list[FlowResult] = []
    timings: dict[str, float] = {}

    def timed(name: str, work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            work()
            timings[name] = time.monotonic() - begin

        return run

    answers = result.callback_answers
    workers = [
        threading.Thread(
            target=timed("callbacks", lambda: run_senders(plan, stats, deadline, answers)),
            daemon=True,
        )
    ]
    lane_threads = [
        threading.Thread(
            target=run_lane, args=(lane, plan, stats, phone, deadline, flows), daemon=True
        )
        for lane in plan.lanes
    ]

    def logins() -> None:
        for thread in lane_threads:
            thread.start()
        for thread in lane_threads:
            thread.join()

    workers.append(threading.Thread(target=timed("logins", logins), daemon=True))
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    result.phase_seconds = time.monotonic() - begin
    result.callback_seconds = timings.get("callbacks", result.phase_seconds)
    result.login_seconds = timings.get("logins", result.phase_seconds)
    result.flows = flows
    if sum(1 for answer in result.callback_answers if answer) < len(plan.callbacks):
        result.stopped_early.append("callbacks")
    if len(flows) < sum(len(lane) for lane in plan.lanes):
        result.stopped_early.append("logins")
    result.limit_burst = run_burst(plan.limit_burst, plan, stats, deadline)
    result.budget_burst = run_burst(plan.budget_burst, plan, stats, deadline)
    if time.monotonic() > deadline:
        result.stopped_early.append("the bursts (maybe)")
    result.latencies = dict(result.latencies)
    return result


def load_main(plan: LoadPlan, results: Connection) -> None:
    """The load process: runs the plan, sends the result back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides, and ends us
    try:
        results.send(("ok", run_load(plan)))
    except Exception as error:  # reported by the parent
        results.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        results.close()


def run_load_process(plan: LoadPlan) -> LoadResult:
    context = multiprocessing.get_context("spawn")  # no Django, nothing inherited
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=load_main, args=(plan, sender), name="soak-load")
    process.start()
    sender.close()
    try:
        if not receiver.poll(plan.seconds + 180):
            raise RuntimeError("the load process did not report in time")
        verdict, payload = receiver.recv()
        if verdict != "ok":
            raise RuntimeError(f"the load process failed: {payload}")
        result: LoadResult = payload
        return result
    finally:
        receiver.close()
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


# --------------------------------------------------------------------------- faults


class FaultDriver(threading.Thread):
    """Turns the emulator's fault modes on in turn, and crashes then restarts a server."""

    def __init__(self, emulator: Emulator, victim: Gunicorn, args: argparse.Namespace) -> None:
        super().__init__(name="faults", daemon=True)
        self.emulator = emulator
        self.victim = victim
        self.args = args
        self.stopping = threading.Event()
        self.events: list[str] = []
        self.error: str | None = None
        self.began = time.monotonic()

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.began:6.1f} s  {text}")

    def run(self) -> None:
        args = self.args
        modes = itertools.cycle(FAULT_MODES)
        mode = "no fault"
        next_mode = 0.0
        killed_at: float | None = None
        try:
            while not self.stopping.wait(0.1):
                now = time.monotonic() - self.began
                if now >= next_mode:
                    mode = next(modes)
                    self.emulator.set_faults(mode, share=args.fault_share, seconds=args.slow)
                    next_mode = now + args.fault_period
                if killed_at is None and now >= args.kill_after:
                    self.victim.kill()
                    killed_at = now
                    self.note(f"server A killed (SIGKILL to its process group) during {mode}")
                elif (
                    killed_at is not None
                    and not self.victim.alive()
                    and (now >= killed_at + args.down_seconds)
                ):
                    self.victim.start()
                    self.victim.ready()
                    self.note(f"server A started again, answering after {self.seconds():.1f} s")
        except Exception as error:  # reported by the main thread
            self.error = f"{type(error).__name__}: {error}"

    def seconds(self) -> float:
        return time.monotonic() - self.began

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)
        with contextlib.suppress(OSError):
            self.emulator.set_faults(None)


# --------------------------------------------------------------------------- Django side


#: The soak's workflow: what a site would set. Its logins confirm within the
#: wait, so each step is scheduled and then found not wanted; the starts of the
#: limit and budget phases are never confirmed, so theirs are taken (by the
#: worker, or by nobody: no poll) and refused by the same limits and budget.
WORKFLOW = {"steps": [{"channel": "flash_call", "wait": 30}, {"channel": "voice_call"}]}


def workflow_environment(on: bool, *, worker: bool) -> dict[str, str]:
    """``VOICEPASSWORD_WORKFLOW`` for the site: the steps taken by the worker when one sends."""
    if not on:
        return {}
    return {"VOICEPASSWORD_WORKFLOW": json.dumps({**WORKFLOW, "tasks": worker})}


def setup_django(site: Site) -> None:
    """This process as the example site (the same settings as the servers): for the checks."""
    os.environ.update(site.environment())
    sys.path.insert(0, str(EXAMPLE_DIR))
    import django

    django.setup()


def create_calls(planned: list[tuple[str, str, str, str]]) -> list[Callback]:
    """The calls the callbacks report (placed flash calls, SMS fallbacks); the callbacks."""
    from django.urls import reverse

    from django_voicepassword.callbacks import callback_token
    from django_voicepassword.client import PROVIDER_TZ
    from django_voicepassword.models import Call

    calls: dict[str, Call] = {}
    for key, provider_id, number, _state in planned:
        if key.startswith("c") and key not in calls:
            calls[key] = Call(
                provider_id=provider_id,
                channel=Call.Channel.FLASH_CALL,
                number=number,
                status=Call.Status.PLACED,
            )
    Call.objects.bulk_create(calls.values(), batch_size=2000)
    sms: dict[str, Call] = {}
    for key, provider_id, number, _state in planned:
        if key.startswith("s") and key not in sms:
            sms[key] = Call(
                provider_id=provider_id,
                channel=Call.Channel.SMS,
                number=number,
                status=Call.Status.PLACED,
                parent=calls["c" + key[1:]],
            )
    Call.objects.bulk_create(sms.values(), batch_size=2000)
    paths = {
        key: reverse("voicepassword:callback", kwargs={"token": callback_token(call.pk)})
        for key, call in calls.items()
    }
    callbacks = []
    for key, provider_id, number, state in planned:
        payload = {
            "id": provider_id,
            "number": number,
            "duration": "0" if key.startswith("s") or state != "ANSWERED" else "1",
            "state": state,
            "price": "3.30" if key.startswith("s") else "0.35",
            "date": datetime.now(PROVIDER_TZ).strftime("%Y-%m-%d %H:%M:%S"),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        # An SMS reports to the URL of the call it follows.
        callbacks.append(Callback(provider_id, state, paths["c" + key[1:]], body))
    return callbacks


def wait_for_sends(seconds: float) -> int:
    """Wait until no challenge waits for the worker; return how many still do."""
    from django.utils import timezone

    from django_voicepassword.models import Challenge

    deadline = time.monotonic() + seconds
    while True:
        waiting = Challenge.objects.filter(
            code_digest="", verified_at__isnull=True, expires_at__gt=timezone.now()
        ).count()
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(0.5)


def wait_for_callbacks(emulator: Emulator, seconds: float) -> int:
    """Wait until the emulator has delivered every callback; return how many are left."""
    deadline = time.monotonic() + seconds
    while True:
        left = int(emulator.snapshot()["pending_callbacks"])
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


#: A send the site itself saw fail: refused (``not_placed``), its outcome
#: unknown, or never finished (a killed process's ``pending``).
FAILED_SENDS = ("not_placed", "unknown", "pending")


def failed_sends(flows: list[FlowResult]) -> set[str]:
    """The unclear flows' challenges whose send failed, as the site recorded it.

    Read right after the load, before reconciliation settles unknown outcomes.
    A login whose send failed is answered as sent, as a number without an
    account is (the accounts-look-alike rule, ``docs/decisions.md``), so its
    user waits for a call that does not come, or gets one with a code the site
    cannot check: by design, not a fault; reported apart.
    """
    from django_voicepassword.models import Call

    ids = [flow.challenge for flow in flows if flow.outcome == "unclear" and flow.challenge]
    rows = Call.objects.filter(challenge_id__in=ids, status__in=FAILED_SENDS)
    return {str(pk) for pk in rows.values_list("challenge_id", flat=True)}


def statuses() -> Counter[str]:
    from django.db.models import Count

    from django_voicepassword.models import Call

    rows = Call.objects.values("status").annotate(n=Count("id")).order_by()
    return Counter({row["status"]: row["n"] for row in rows})


def reconcile(now_shift: bool) -> str:
    """``voicepassword_sync --days 2``, or today's reconciliation as of tomorrow morning."""
    import io
    from unittest import mock

    from django.core.management import call_command

    from django_voicepassword.client import PROVIDER_TZ
    from django_voicepassword.reconcile import SETTLE_AFTER, moscow_day, reconcile_day

    if not now_shift:
        out = io.StringIO()
        call_command("voicepassword_sync", days=2, stdout=out, stderr=out)
        return " ".join(out.getvalue().split())
    today = datetime.now(PROVIDER_TZ).date()
    _start, end = moscow_day(today)
    later = end + SETTLE_AFTER + timedelta(minutes=1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        report = reconcile_day(today)
    return (
        f"{report.provider_rows} provider records; {report.created} created, "
        f"{report.updated} updated, {report.settled} settled, "
        f"{report.not_placed} marked not placed"
    )


# --------------------------------------------------------------------------- figures


@dataclass
class Figure:
    """One line of the report; ``must_be_zero`` ones decide the exit status."""

    name: str
    value: int
    must_be_zero: bool = True
    note: str = ""


def callback_figures(callbacks: list[Callback], answers: list[str]) -> list[Figure]:
    """Callbacks lost, and the calls they reported whose final status is wrong."""
    from django.db.models import Count

    from django_voicepassword.client import CallState
    from django_voicepassword.models import Call, CallbackEvent, status_for_state, status_rank

    def rank(state: str) -> int:
        return status_rank(status_for_state(CallState(state)) or "pending")

    ok: Counter[str] = Counter()
    furthest: dict[str, str] = {}
    for callback, answer in zip(callbacks, answers, strict=True):
        if answer != "200":
            continue
        ok[callback.provider_id] += 1
        known = furthest.get(callback.provider_id)
        if known is None or rank(callback.state) > rank(known):
            furthest[callback.provider_id] = callback.state
    events = Counter(
        {
            row["provider_id"]: row["n"]
            for row in CallbackEvent.objects.filter(provider_id__in=list(ok))
            .values("provider_id")
            .annotate(n=Count("id"))
            .order_by()
        }
    )
    lost = sum(max(0, n - events[provider_id]) for provider_id, n in ok.items())
    actual = dict(
        Call.objects.filter(provider_id__in=list(furthest)).values_list("provider_id", "status")
    )
    wrong = 0
    for provider_id, state in furthest.items():
        expected = status_for_state(CallState(state))
        if actual.get(provider_id) != expected:
            wrong += 1
    applied = CallbackEvent.objects.filter(
        provider_id__in=list(ok), outcome=CallbackEvent.Outcome.APPLIED
    ).count()
    return [
        Figure("callbacks lost (answered 200, no CallbackEvent row)", lost),
        Figure("final states wrong (calls the load's callbacks reported)", wrong),
        Figure(
            "callbacks applied (moved a call; the others: duplicate or stale)",
            applied,
            must_be_zero=False,
        ),
    ]


def callback_outcomes(callbacks: list[Callback]) -> dict[str, int]:
    """The CallbackEvent rows of the load's callbacks, by outcome."""
    from django.db.models import Count

    from django_voicepassword.models import CallbackEvent

    rows = (
        CallbackEvent.objects.filter(provider_id__in={c.provider_id for c in callbacks})
        .values("outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["outcome"]: row["n"] for row in rows}


def token_pk(url: str | None) -> int | None:
    """The Call pk in a callback URL the site gave the provider."""
    from django_voicepassword.callbacks import call_id_from_token

    match = re.search(r"/callback/([^/]+)/", url or "")
    return None if match is None else call_id_from_token(match[1])


def emulator_figures(
    snapshot: dict[str, Any], number_limit: int, budget: float, *, faults: bool
) -> tuple[list[Figure], list[str]]:
    """What the provider saw against what the site recorded and allowed."""
    from django_voicepassword.client import CallState
    from django_voicepassword.models import Call, status_for_state

    sends = [
        entry
        for entry in snapshot["log"]
        if entry["endpoint"] == "send" and entry["kind"] in ("flash_call", "voice_call")
    ]
    per_row: Counter[int | None] = Counter()
    windows: Counter[tuple[str, int]] = Counter()
    for entry in sends:
        payload = entry.get("payload") or {}
        per_row[token_pk(payload.get("callback_url"))] += 1
        day = int(datetime.fromisoformat(entry["time"]).timestamp() // 86400)
        windows[(entry["number"], day)] += 1
    rows = set(
        Call.objects.filter(pk__in=[pk for pk in per_row if pk is not None]).values_list(
            "pk", flat=True
        )
    )
    twice = sum(1 for pk, n in per_row.items() if pk is not None and n > 1)
    untracked = per_row[None] + sum(n for pk, n in per_row.items() if pk and pk not in rows)
    beyond_number = sum(max(0, n - number_limit) for n in windows.values())

    placed = snapshot["calls"]
    spend = sum(ESTIMATES[call["kind"]] for call in placed)
    beyond_budget = max(0, round((spend - budget) / ESTIMATES["flash_call"]))
    unspent = max(0, int((budget - spend) / ESTIMATES["flash_call"] + 1e-9))

    # Where each placed call is recorded now: the row that holds its request id.
    recorded = {
        provider_id: (pk, status)
        for provider_id, pk, status in Call.objects.filter(
            provider_id__in=[call["id"] for call in placed]
        ).values_list("provider_id", "pk", "status")
    }
    site_rows = {pk for pk in per_row if pk is not None}
    wrong = 0
    missing: list[str] = []  # on no row, or on a row reconciliation made for it
    swapped = 0  # on another row of the site's own for the same number
    for call in placed:
        pk, status = recorded.get(call["id"], (None, None))
        if pk is None or pk not in site_rows:
            own = token_pk(call["callback_url"])
            found = Call.objects.filter(pk=own) if own is not None else Call.objects.none()
            state = found.values_list("status", flat=True).first()
            missing.append(f"{call['id']} (its own row {own} is {state})")
            continue
        if pk != token_pk(call["callback_url"]):
            swapped += 1
        if status != status_for_state(CallState(call["final_state"])):
            wrong += 1
    figures = [
        Figure("calls placed twice (send/ requests for one Call row)", twice),
        Figure("send/ requests without a Call row", untracked),
        Figure(
            f"calls placed beyond the number limit ({number_limit} a day per number)",
            beyond_number,
        ),
        Figure(
            "calls placed beyond the daily budget",
            beyond_budget,
            note=f"{spend:.2f} of {budget:.2f} spent at PRICE_ESTIMATES, "
            f"{len(placed)} calls placed, {len(sends)} send/ requests",
        ),
        Figure(
            "flash calls the budget refused while it had room for them",
            unspent,
            note="the budget burst has twice the starts the budget has room for",
        )
        if not faults
        else Figure(
            "budget left unspent, in flash calls",
            unspent,
            must_be_zero=False,
            note="what failed sends gave back, less what the kill kept",
        ),
        Figure("final states wrong (calls placed through the emulator)", wrong),
        Figure("placed calls not on a row of the site's own sends", len(missing)),
        Figure(
            "placed calls settled onto a sibling row (same number, same second)",
            swapped,
            must_be_zero=False,
            note="unknown outcomes are matched by number and time; the daily report "
            "names nothing else",
        ),
    ]
    return figures, missing


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --------------------------------------------------------------------------- the run


@dataclass
class Sizes:
    callbacks: int
    logins: int
    limit_numbers: int
    budget_headroom: int


def sizes(args: argparse.Namespace) -> Sizes:
    if args.quick:
        return Sizes(2000, 200, 3, 10)
    return Sizes(args.callbacks, args.logins, 6, 20)


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """The started children, stopped in reverse order whatever happens."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


def run(args: argparse.Namespace) -> int:
    why = missing_services()
    if why is not None:
        print(f"the run cannot be made: {why}")
        return 2
    size = sizes(args)
    faults = args.faults
    async_send = not faults if args.send == "auto" else args.send == "async"
    budget_numbers = ORDINARY[-8:]
    limit_numbers = ORDINARY[-8 - size.limit_numbers : -8]
    login_numbers = ORDINARY[: -8 - size.limit_numbers]
    per_number = -(-size.logins // len(login_numbers))
    limit = args.number_limit
    if per_number > limit:
        print(f"{size.logins} logins over {len(login_numbers)} numbers exceed --number-limit")
        return 2
    lanes = plan_lanes(size.logins, login_numbers, args.lanes, seed=args.seed)
    # Every start of the soak places one call: the budget is what the logins and
    # the limit burst spend, and room for `headroom` flash calls more, which the
    # budget burst (twice as many starts) must use up to the last one.
    spend = sum(ESTIMATES[flow.channel] for lane in lanes for flow in lane)
    spend += size.limit_numbers * limit * ESTIMATES["flash_call"]
    budget = spend + size.budget_headroom * ESTIMATES["flash_call"]
    mode = "fault run" if faults else "soak"
    print(f"{mode}: {machine()}")
    print(
        f"load: {size.callbacks} callbacks ({args.duplicates:.0%} duplicates, shuffled) from "
        f"{args.senders} senders; {size.logins} logins by {args.lanes} users over "
        f"{len(login_numbers)} numbers; codes sent "
        f"{'by the worker' if async_send else 'in the request'}"
        f" ({args.tasks}); number limit {limit}/d, daily budget {budget:.2f}"
    )

    with (
        tempfile.TemporaryDirectory(prefix="soak-") as scratch_dir,
        scratch_database(DB_NAME) as database_url,
        scratch_redis(args.redis_db) as redis_url,
        children() as started,
    ):
        scratch = Path(scratch_dir)
        emulator = Emulator.create(
            scratch / "emulator.log", callback_delay=args.callback_delay, slow_seconds=args.slow
        )
        port_a, port_b = free_port(), free_port()
        site = Site(
            database_url=database_url + "?conn_max_age=60",
            redis_url=redis_url,
            api_url=emulator.api_url,
            callback_base_url=f"http://{HOST}:{port_a}",
            tasks_backend=args.tasks,
            async_send=async_send,
            extra={
                "VOICEPASSWORD_LIMIT_NUMBER": f"{limit}/d",
                # Every user of a loopback run has one address and one prefix.
                "VOICEPASSWORD_LIMIT_IP": "",
                "VOICEPASSWORD_LIMIT_NETWORK": "",
                "VOICEPASSWORD_LIMIT_PREFIX": "",
                "VOICEPASSWORD_LIMIT_GLOBAL": "",
                "VOICEPASSWORD_DAILY_BUDGET": f"{budget:.2f}",
                "VOICEPASSWORD_READ_TIMEOUT": str(args.read_timeout),
                **workflow_environment(args.workflow, worker=async_send),
            },
        )
        setup_django(site)
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        planned = plan_callbacks(size.callbacks, args.duplicates, seed=args.seed)
        callbacks = create_calls(planned)
        connections.close_all()

        started.append(emulator.start())
        servers = [
            Gunicorn.create(
                name, site, scratch / f"{name}.log", port=port, workers=2, threads=args.threads
            )
            for name, port in (("server A", port_a), ("server B", port_b))
        ]
        for server in servers:
            started.append(server.start())
        worker_argv = (
            manage_command(
                "rqworker",
                "--job-class=django_tasks_rq.Job",
                "--worker-class=rq.worker.SimpleWorker",
                "default",
            )
            if args.tasks == "rq"
            else manage_command("db_worker", "--interval=0.1", "--no-startup-delay")
        )
        worker = Child("worker", worker_argv, site.environment(), scratch / "worker.log")
        started.append(worker.start())
        wait_http(emulator.url + "/_emulator/log", emulator)
        for server in servers:
            server.ready()
        time.sleep(1.0)
        if not worker.alive():
            raise RuntimeError(f"the worker exited: {tail(worker.log)}")

        plan = LoadPlan(
            servers=[server.url for server in servers],
            emulator=emulator.url,
            callbacks=callbacks,
            senders=args.senders,
            lanes=lanes,
            limit_burst=[n for n in limit_numbers for _ in range(limit + 10)],
            budget_burst=[n for n in budget_numbers for _ in range(size.budget_headroom // 4)],
            burst_concurrency=args.senders,
            async_send=async_send,
            failover=faults,
            seconds=args.max_seconds,
            ring_delay=args.ring_delay,
        )
        driver = FaultDriver(emulator, servers[0], args) if faults else None
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        began = time.monotonic()
        if driver is not None:
            driver.start()
        try:
            load = run_load_process(plan)
        finally:
            if driver is not None:
                driver.stop()
        load_seconds = time.monotonic() - began
        print(f"load done in {load_seconds:.1f} s; load average {os.getloadavg()[0]:.2f}")
        if driver is not None:
            for event in driver.events:
                print(f"  {event}")
            if driver.error:
                print(f"  the fault driver failed: {driver.error}")
        for server in servers:
            if not server.alive():
                print(f"{server.name} is not running: {tail(server.log)}")

        waiting = wait_for_sends(60) if async_send else 0
        left = wait_for_callbacks(emulator, 30)
        masked = failed_sends(load.flows)
        before = statuses()
        sync_report = reconcile(now_shift=False)
        after_sync = statuses()
        morning_report = reconcile(now_shift=True)
        after = statuses()
        snapshot = emulator.snapshot()
        figures = callback_figures(callbacks, load.callback_answers)
        emulator_side, no_id = emulator_figures(snapshot, limit, budget, faults=faults)
        figures += emulator_side
        report(load, figures, size, faults, limit, budget, no_id, masked)
        print("\nCall rows by status:")
        for name, counted in (
            ("after the load", before),
            ("after voicepassword_sync", after_sync),
            ("after the next morning's", after),
        ):
            print(f"  {name:28} {dict(sorted(counted.items()))}")
        print(f"  voicepassword_sync: {sync_report}")
        print(f"  the next morning's reconcile_day: {morning_report}")
        from django_voicepassword.models import FINAL_STATUSES

        open_rows = {status: n for status, n in after.items() if status not in FINAL_STATUSES}
        pending = open_rows.get("pending", 0)
        figures.append(
            Figure(
                "Call rows not final after reconciliation",
                sum(open_rows.values()),
                note=f"{open_rows}; pending: a send a killed process never finished, "
                "which reconciliation does not look at"
                if pending
                else "",
            )
        )
        if waiting:
            figures.append(Figure("challenges still waiting for the worker", waiting))
        if left:
            figures.append(Figure("emulator callbacks never delivered", left))
        deliveries = Counter(str(d["status"] or "error") for d in snapshot["deliveries"])
        print(f"  the load's callbacks, by outcome: {callback_outcomes(callbacks)}")
        print(f"  the emulator's own callbacks, by answer: {dict(deliveries)}")
        print("\nmust be 0:")
        failed = False
        for figure in figures:
            mark = "" if not figure.must_be_zero else ("  OK" if figure.value == 0 else "  FAIL")
            failed |= figure.must_be_zero and figure.value != 0
            note = f"  ({figure.note})" if figure.note else ""
            print(f"  {figure.name:64} {figure.value:6}{mark}{note}")
        print(f"\nresult: {'FAIL' if failed else 'OK'} ({mode}, {time.monotonic() - began:.0f} s)")
        for child in [*servers, worker]:
            errors = tail(child.log, 8)
            if "Traceback" in errors or "Error" in errors:
                print(f"{child.name}'s log (last lines):\n{errors}")
        return 1 if failed else 0


def report(
    load: LoadResult,
    figures: list[Figure],
    size: Sizes,
    faults: bool,
    limit: int,
    budget: float,
    no_id: list[str],
    masked: set[str],
) -> None:
    flows = load.flows
    outcomes = Counter(flow.outcome for flow in flows)
    answered_as_sent = sum(
        1 for flow in flows if flow.outcome == "unclear" and flow.challenge in masked
    )
    accepted_twice = sum(1 for flow in flows if flow.accepted > 1)
    errors = Counter(flow.detail for flow in flows if flow.outcome == "clear_error")
    unclear = Counter(flow.detail for flow in flows if flow.outcome == "unclear")
    done = sum(1 for answer in load.callback_answers if answer)
    server_errors = sum(
        n for status, n in load.statuses.items() if status.isdigit() and status >= "500"
    )
    service_unavailable = load.statuses.get("503", 0)
    no_answer = sum(n for status, n in load.statuses.items() if not status.isdigit())

    print("\nthroughput (phase 1: callbacks and logins at the same time):")
    print(
        f"  callbacks  {done / load.callback_seconds:7.1f}/s  "
        f"({done} in {load.callback_seconds:.1f} s; "
        f"p50 {percentile(load.latencies.get('callback', []), 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(load.latencies.get('callback', []), 0.95) * 1000:.0f} ms)"
    )
    print(
        f"  logins     {len(flows) / load.login_seconds:7.1f}/s  "
        f"({len(flows)} in {load.login_seconds:.1f} s; start p50 "
        f"{percentile(load.latencies.get('start', []), 0.5) * 1000:.0f} ms, p95 "
        f"{percentile(load.latencies.get('start', []), 0.95) * 1000:.0f} ms; double confirm "
        f"p50 {percentile(load.latencies.get('confirm', []), 0.5) * 1000:.0f} ms)"
    )
    total = sum(load.statuses.values())
    print(
        f"  app answers {total} in all ({total / max(load.phase_seconds, 0.001):.0f}/s over "
        f"phase 1's {load.phase_seconds:.1f} s, bursts included in the count)"
    )
    if load.stopped_early:
        print(f"  STOPPED at --max-seconds: {', '.join(load.stopped_early)} not finished")
    print(f"answers by status: {dict(sorted(load.statuses.items()))}")
    print(f"  by step: {dict(sorted(load.steps.items()))}")
    if load.early_codes:
        print(
            f"  {load.early_codes} logins had both confirms refused right after the call "
            f"showed ({load.early_expired} answers 'expired', the others 'wrong_code'): the "
            "worker had not stored the code yet, or its send had failed; the user tried again"
        )
    if load.failovers or load.reconnects:
        print(
            f"  {load.failovers} requests went to the other server after a connection "
            f"error; {load.reconnects} kept-alive connections were opened again"
        )
    for sample in load.samples[:8]:
        print(f"  e.g. {sample}")
    print(f"\nusers ({len(flows)} logins): {dict(outcomes)}")
    if errors:
        print(f"  clear errors: {dict(errors)}")
    for detail, n in unclear.most_common(8):
        print(f"  unclear x{n}: {detail}")
    for name, burst in (("limit", load.limit_burst), ("budget", load.budget_burst)):
        merged: Counter[str] = Counter()
        for counted in burst.values():
            merged.update(counted)
        starts = sum(merged.values())
        print(f"{name} burst: {starts} starts over {len(burst)} numbers: {dict(merged)}")
    if not faults:
        wrong_limit = sum(1 for counted in load.limit_burst.values() if counted["201"] != limit)
        figures.append(
            Figure(
                "limit burst numbers not given exactly the limit",
                wrong_limit,
                note=f"each number {limit} of {limit + 10} starts",
            )
        )
    if no_id[:5]:
        print(f"placed calls not on a row of the site's own, e.g.: {', '.join(no_id[:5])}")
    figures[:0] = [
        Figure("5xx answers (server errors)", server_errors - service_unavailable),
        Figure(
            "503 service_unavailable (the provider failed: a clear error)",
            service_unavailable,
            must_be_zero=not faults,
        ),
        Figure("requests that got no answer at all", no_answer, must_be_zero=not faults),
        Figure("codes accepted twice", accepted_twice),
        Figure(
            "users with an unclear outcome (their send did not fail)",
            outcomes["unclear"] - answered_as_sent,
        ),
        Figure(
            "users answered as sent after a failed send (accounts look alike)",
            answered_as_sent,
            must_be_zero=not faults,  # without faults no send fails
            note="the provider refused, failed or timed out; a clear 503 would tell accounts",
        ),
    ]
    if not faults:
        figures.append(Figure("logins that did not log in", len(flows) - outcomes["logged_in"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", action="store_true", help="the fault run")
    parser.add_argument("--quick", action="store_true", help="2,000 callbacks, 200 logins")
    parser.add_argument("--callbacks", type=int, default=10_000)
    parser.add_argument("--duplicates", type=float, default=0.3, help="share of repeats")
    parser.add_argument("--senders", type=int, default=16, help="concurrent callback senders")
    parser.add_argument("--logins", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=8, help="concurrent users logging in")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--number-limit", type=int, default=20, help="codes a day per number")
    parser.add_argument("--tasks", choices=["rq", "db"], default="rq", help="the worker")
    parser.add_argument(
        "--send",
        choices=["auto", "async", "sync"],
        default="auto",
        help="codes sent by the worker (async) or in the request (sync); "
        "auto: async in the soak, sync in the fault run",
    )
    parser.add_argument(
        "--workflow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="logins run with a WORKFLOW (flash call, a voice call 30 s later); the worker "
        "takes the steps when it sends the codes",
    )
    parser.add_argument("--max-seconds", type=float, default=150.0, help="bound on the load")
    parser.add_argument("--callback-delay", type=float, default=0.5)
    parser.add_argument(
        "--ring-delay",
        type=float,
        default=0.1,
        help="with codes sent by the worker: seconds from the call to the code typed",
    )
    parser.add_argument("--redis-db", type=int, default=12, help="an empty Redis database")
    parser.add_argument("--seed", type=int, default=1)
    faults = parser.add_argument_group("the fault run")
    faults.add_argument("--fault-share", type=float, default=0.2)
    faults.add_argument("--fault-period", type=float, default=2.0, help="seconds per mode")
    faults.add_argument("--slow", type=float, default=3.0, help="seconds a slow answer takes")
    faults.add_argument("--read-timeout", type=float, default=2.0, help="the site's")
    faults.add_argument("--kill-after", type=float, default=12.0, help="seconds into the load")
    faults.add_argument("--down-seconds", type=float, default=3.0)
    args = parser.parse_args()
    if args.quick and args.kill_after == parser.get_default("kill_after"):
        args.kill_after = 6.0

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so that every finally runs

    signal.signal(signal.SIGTERM, terminated)
    try:
        status = run(args)
    except KeyboardInterrupt:
        print("interrupted")
        status = 2
    except Exception as error:
        print(f"the run could not be made: {type(error).__name__}: {error}")
        status = 2
    sys.exit(status)


if __name__ == "__main__":
    main()
