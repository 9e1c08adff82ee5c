"""Codes under concurrency: attempts counted exactly, a code consumed exactly once.

"Attempts are counted with one conditional UPDATE; a code is consumed once"
(docs/architecture.md, rules) must hold for parallel requests in several processes,
which needs a database with row locks and concurrent writers: these tests run
on the service tier's PostgreSQL (``VOICEPASSWORD_TEST_SERVICES=1``). Each
worker is a thread with its own connection, all released at once by a barrier.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_voicepassword import verification, workflow
from django_voicepassword.models import Challenge, PhoneNumber
from django_voicepassword.signals import phone_verified
from django_voicepassword.verification import (
    ChallengeError,
    confirm_challenge,
    resend_challenge,
    start_challenge,
)
from tests.test_verification import (
    EMULATED,
    KNOWN,
    UNKNOWN,
    browser,
    reopen_resend,
    same_browser,
    user_with,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 50
BACKENDS = ["django_voicepassword.auth_backends.PhoneCodeBackend"]


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    with override_settings(VOICEPASSWORD=EMULATED, AUTHENTICATION_BACKENDS=BACKENDS):
        yield voicepassword_emulator


@pytest.fixture
def verified() -> Iterator[list[Any]]:
    received: list[Any] = []
    lock = threading.Lock()

    def receive(sender: Any, user: Any, **kwargs: Any) -> None:
        with lock:
            received.append(user)

    phone_verified.connect(receive, weak=False)
    yield received
    phone_verified.disconnect(receive)


def at_once(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; the results or errors raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            try:
                result: Any = work(i)
            except ChallengeError as refused:
                result = refused.code
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
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return results


def test_fifty_logins_with_the_right_code_log_in_once(emulated, verified):
    user = user_with(KNOWN)
    request = browser()
    challenge = start_challenge(KNOWN, request=request)
    code = emulated.code_for(KNOWN)

    results = at_once(
        lambda _i: authenticate(same_browser(request), challenge=challenge, otp_token=code)
    )
    assert Counter(result is not None for result in results) == {True: 1, False: THREADS - 1}
    assert [result for result in results if result is not None] == [user]
    assert verified == [user]
    row = Challenge.objects.get()
    assert row.verified_at is not None
    assert row.attempts <= row.max_attempts == 3
    assert PhoneNumber.objects.get().user == user


def test_fifty_confirms_with_the_right_code_succeed_once(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    code = emulated.code_for(KNOWN)
    results = at_once(lambda _i: confirm_challenge(challenge, code))
    counted = Counter(results)
    assert counted[True] == 1
    # The others found it used, or found the attempts gone.
    assert set(counted) <= {True, "used", "exhausted"}
    assert sum(counted.values()) == THREADS


def test_fifty_wrong_guesses_count_three_and_then_the_right_code_fails(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    code = emulated.code_for(KNOWN)
    wrong = [f"{(int(code) + 1 + i) % 10_000:04d}" for i in range(THREADS)]

    results = at_once(lambda i: confirm_challenge(challenge, wrong[i]))
    assert Counter(results) == {False: 3, "exhausted": THREADS - 3}
    assert Challenge.objects.get().attempts == 3
    with pytest.raises(ChallengeError) as refused:
        confirm_challenge(challenge, code)
    assert refused.value.code == "exhausted"
    assert Challenge.objects.get().verified_at is None


def test_fifty_guesses_at_a_number_without_an_account_count_three(emulated):
    challenge = start_challenge(UNKNOWN)
    results = at_once(lambda i: confirm_challenge(challenge, f"{i:04d}"))
    assert Counter(results) == {False: 3, "exhausted": THREADS - 3}
    assert emulated.sends() == []


def test_fifty_resends_at_once_place_one_call(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    reopen_resend(challenge)
    copies = [Challenge.objects.get() for _ in range(THREADS)]

    results = at_once(lambda i: resend_challenge(copies[i]).sends)
    assert Counter(results) == {2: 1, "cooldown": THREADS - 1}
    assert len(emulated.sends(KNOWN)) == 2
    row = Challenge.objects.get()
    assert row.sends == 2
    assert confirm_challenge(row, emulated.code_for(KNOWN)) is True


WORKFLOW = {"steps": [{"channel": "flash_call", "wait": 30}, {"channel": "voice_call"}]}


def test_fifty_workers_and_polls_racing_on_one_workflow_step_place_one_call(emulated):
    """The step's claim is one conditional UPDATE: workers and polls racing place one call."""
    user_with(KNOWN)
    with override_settings(VOICEPASSWORD={**EMULATED, "WORKFLOW": WORKFLOW}):
        challenge = start_challenge(KNOWN)
        Challenge.objects.filter(pk=challenge.pk).update(next_step_at=timezone.now())
        copies = [Challenge.objects.get() for _ in range(THREADS)]

        def race(i: int) -> Any:
            # Half are workers (the task), half are polls of the code page or the API.
            if i % 2:
                return workflow.take_step(str(challenge.pk), 0)
            return workflow.advance(copies[i]).step

        results = at_once(race)
    assert Counter(results)[workflow.TAKEN] <= 1
    assert [entry.kind for entry in emulated.sends(KNOWN)] == ["flash_call", "voice_call"]
    row = Challenge.objects.get()
    assert (row.step, row.sends, row.channel) == (1, 2, "voice_call")
    assert confirm_challenge(row, emulated.code_for(KNOWN)) is True
