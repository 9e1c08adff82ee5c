"""Codes and limits under concurrency on a SQLite file, as a site on SQLite runs.

The PostgreSQL twins are ``tests/test_login_concurrency.py``. These run on a
SQLite *file* database (``tests/settings_sqlite_file.py``: the options the
deployment guide gives, ``IMMEDIATE`` and a timeout) with the local-memory
cache, so that the default tier, which needs no service, fails too when a
conditional UPDATE becomes a read then a write, or the limits' ``incr`` a
get then a set. The suite's own database is in-memory SQLite, where threads
sharing the one database meet table locks rather than SQLite's file locking,
so this module runs in a pytest of its own, started by
``tests/test_sqlite_races.py``; it is not collected with the suite.

Each worker is a thread with its own connection, all released at once by a
barrier. Reads yield, the cache's (``tests/caches.py``) and the database's
(:func:`yield_after_reads`), so that a read-then-write loses updates here as
it would across processes, rather than once in a while. Each of these tests
was seen to fail with the conditional UPDATE of ``confirm_challenge`` (the
attempt, or the code's consumption) made a SELECT then an UPDATE, or with the
``incr`` of ``ratelimit._count`` made a get then a set.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import connection
from django.test import override_settings

from django_voicepassword import verification
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Challenge
from django_voicepassword.ratelimit import LimitExceeded
from django_voicepassword.signals import phone_verified
from django_voicepassword.verification import (
    ChallengeError,
    confirm_challenge,
    start_challenge,
)
from tests.caches import READ_DELAY
from tests.test_verification import KNOWN, UNKNOWN, browser, same_browser, user_with

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 40
#: The races run one after another for a code's single use. The writers before
#: the consuming UPDATE (the attempts) queue for SQLite's lock with growing
#: sleeps, which spreads the threads out: one race may let a read-then-write
#: through by luck, several do not.
RACES = 3
BACKENDS = ["django_voicepassword.auth_backends.PhoneCodeBackend"]
EMULATED: dict[str, Any] = {"API_KEY": "emulator-key", "LIMITS": {}}


@pytest.fixture(autouse=True)
def on_a_file() -> None:
    """These races mean nothing on an in-memory database: make sure of the file."""
    assert connection.vendor == "sqlite"
    assert Path(connection.settings_dict["NAME"]).is_file()
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    cache.clear()
    with override_settings(VOICEPASSWORD=EMULATED, AUTHENTICATION_BACKENDS=BACKENDS):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


def configured(**overrides: Any) -> Any:
    return override_settings(VOICEPASSWORD={**EMULATED, **overrides})


@pytest.fixture
def verified() -> Iterator[list[Any]]:
    """The users ``phone_verified`` was sent for, from any thread."""
    received: list[Any] = []
    lock = threading.Lock()

    def receive(sender: Any, user: Any, **kwargs: Any) -> None:
        with lock:
            received.append(user)

    phone_verified.connect(receive, weak=False)
    yield received
    phone_verified.disconnect(receive)


def yield_after_reads(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """Run a query; after a SELECT, yield the thread for a millisecond.

    As a round trip to a database server would: the gap between a read and
    the write after it widens, and a read-then-write loses to the threads
    that read in it, where on a local file it would rarely meet one.
    """
    result = execute(sql, params, many, context)
    if sql.lstrip()[:6].upper() == "SELECT":
        time.sleep(READ_DELAY)
    return result


def at_once(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together: the results.

    A :class:`ChallengeError` is its code, a :class:`LimitExceeded`
    ``"limited"``; anything else raised fails the test (SQLite's "database is
    locked" among them: the timeout must make writers wait, never fail).
    """
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            try:
                with connection.execute_wrapper(yield_after_reads):
                    result: Any = work(i)
            except ChallengeError as refused:
                result = refused.code
            except LimitExceeded:
                result = "limited"
            with lock:
                results.append(result)
        except BaseException as error:  # reported by the test, not lost in a thread
            with lock:
                errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return results


def confirm(challenge: Challenge, code: str, _thread: int) -> bool:
    return confirm_challenge(challenge, code)


def log_in(request: Any, challenge: Challenge, code: str, _thread: int) -> Any:
    """``authenticate()`` as the next request of the browser that made ``request``."""
    return authenticate(same_browser(request), challenge=challenge, otp_token=code)


def wrong_codes(code: str) -> list[str]:
    return [f"{(int(code) + 1 + i) % 10_000:04d}" for i in range(THREADS)]


# --- attempts: one conditional UPDATE counts each ---------------------------------------


def test_concurrent_wrong_codes_use_up_exactly_max_attempts(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    code = emulated.code_for(KNOWN)

    results = at_once(lambda i: confirm_challenge(challenge, wrong_codes(code)[i]))
    # Three were compared (and wrong); the others found the attempts gone.
    assert Counter(results) == {False: 3, "exhausted": THREADS - 3}
    assert Challenge.objects.get().attempts == 3
    with pytest.raises(ChallengeError) as refused:
        confirm_challenge(challenge, code)
    assert refused.value.code == "exhausted"
    assert Challenge.objects.get().verified_at is None


def test_every_concurrent_wrong_code_is_counted(emulated):
    # Room for every try: the attempts column must then hold every one of
    # them (no two read the same count and write the same count back).
    with configured(MAX_ATTEMPTS=THREADS):
        challenge = start_challenge(UNKNOWN)
        results = at_once(lambda i: confirm_challenge(challenge, f"{i:04d}"))
        assert results == [False] * THREADS
        assert Challenge.objects.get().attempts == THREADS
        with pytest.raises(ChallengeError) as refused:
            confirm_challenge(challenge, "0000")
        assert refused.value.code == "exhausted"


# --- a code is consumed once ------------------------------------------------------------


def test_concurrent_right_codes_are_accepted_once(emulated):
    user_with(KNOWN)
    # Every thread's attempt is counted and compared: all reach the consuming
    # UPDATE, and only it can tell them apart.
    with configured(MAX_ATTEMPTS=THREADS):
        for _race in range(RACES):
            challenge = start_challenge(KNOWN, request=browser())
            code = emulated.code_for(KNOWN)
            results = at_once(partial(confirm, challenge, code))
            assert Counter(results) == {True: 1, "used": THREADS - 1}
            challenge.refresh_from_db()
            assert challenge.verified_at is not None


def test_concurrent_logins_with_the_right_code_log_in_once(emulated, verified):
    user = user_with(KNOWN)
    with configured(MAX_ATTEMPTS=THREADS):
        for race in range(RACES):
            request = browser()
            challenge = start_challenge(KNOWN, request=request)
            code = emulated.code_for(KNOWN)
            results = at_once(partial(log_in, request, challenge, code))
            assert [result for result in results if result is not None] == [user]
            assert verified == [user] * (race + 1)


# --- the limits' counters ------------------------------------------------------------


def test_concurrent_sends_to_one_number_pass_its_limit_exactly(emulated):
    user_with(KNOWN)
    # A browser each (sessions saved beforehand), so that none reuses another's
    # challenge and every start is counted.
    browsers = [browser() for _ in range(THREADS)]
    for request in browsers:
        request.session.create()
    with configured(LIMITS={"number": "7/h"}):
        results = at_once(lambda i: start_challenge(KNOWN, request=browsers[i]).pk)
    assert Counter(result == "limited" for result in results) == {False: 7, True: THREADS - 7}
    assert Challenge.objects.count() == 7
    assert len(emulated.sends(KNOWN)) == 7
