"""Background work through Django's Tasks framework, and ASYNC_SEND.

Each task runs under the immediate backend (the framework's default: it runs
in the caller) and under the dummy backend (stored, not run; the test then
runs the stored task as a worker would). Sends with ``ASYNC_SEND`` are
checked for what the request does before any provider is asked, for what the
worker does, and for what goes into the queue's storage: never a number, a
code or a key. The example site's real workers (``db_worker``, ``rqworker``)
run at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import django
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.checks import Error, Warning
from django.db import transaction
from django.http import HttpRequest
from django.test import RequestFactory, override_settings
from django.utils import timezone
from django.utils.module_loading import import_string

from django_voicepassword import calls, checks, ratelimit, signals, tasks, verification
from django_voicepassword.models import (
    BalanceSnapshot,
    Call,
    CallbackEvent,
    Challenge,
    PhoneNumber,
)
from django_voicepassword.ratelimit import LimitExceeded
from django_voicepassword.verification import (
    ChallengeError,
    confirm_challenge,
    resend_challenge,
    send_state,
    start_challenge,
)
from tests.test_ratelimit import forget_counters

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "emulator-key"
EMULATED: dict[str, Any] = {"API_KEY": API_KEY, "LIMITS": {}}

#: Where the framework is: built in from Django 6, the backport before.
FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
DUMMY = f"{FRAMEWORK}.backends.dummy.DummyBackend"

KNOWN = "79990000001"
SLOW = "79990000030"  # the emulator answers too late (the call is placed)
REFUSED = "79990000020"  # number_not_valid: nothing placed
UNKNOWN = "79990000050"  # no account


class _Unreachable(import_string(DUMMY)):  # type: ignore[misc]
    """A backend whose store cannot be reached (Redis down)."""

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        raise ConnectionError("the queue's store is down")


class _Worker(import_string(f"{FRAMEWORK}.backends.base.BaseTaskBackend")):  # type: ignore[misc]
    """Stands in for a backend with real workers (for the checks only)."""

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        raise NotImplementedError


UNREACHABLE = f"{__name__}._Unreachable"
WORKER = f"{__name__}._Worker"


@contextmanager
def configured(**overrides: Any) -> Iterator[None]:
    with override_settings(VOICEPASSWORD={**EMULATED, **overrides}):
        yield


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator):
    with configured():
        yield voicepassword_emulator


@pytest.fixture(autouse=True)
def _counters() -> Iterator[None]:
    """Limits and budgets counted by one test are not another's."""
    forget_counters()
    yield
    forget_counters()


@pytest.fixture(autouse=True)
def pauses(monkeypatch) -> list[float]:
    """The pauses of calls not placed, as asked for (nothing sleeps)."""
    asked: list[float] = []
    monkeypatch.setattr(verification, "pause", asked.append)
    return asked


@pytest.fixture
def queue() -> Iterator[Any]:
    """The dummy backend as the default: tasks are stored, not run. Yields it."""
    with override_settings(TASKS={"default": {"BACKEND": DUMMY}}):
        backend: Any = tasks.task_backends["default"]
        yield backend
        backend.clear()


@pytest.fixture
def sent() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every signal of the app, as ``(name, kwargs)``."""
    received: list[tuple[str, dict[str, Any]]] = []
    receivers = {}
    for name in signals.__all__:

        def receive(sender: Any, name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            received.append((name, kwargs))

        receivers[name] = receive
        getattr(signals, name).connect(receive, weak=False)
    yield received
    for name, receive in receivers.items():
        getattr(signals, name).disconnect(receive)


def run(result: Any) -> Any:
    """Run a stored task as a worker would: from its stored arguments."""
    return result.task.call(*result.args, **result.kwargs)


def browser(session_key: str | None = None) -> HttpRequest:
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.10")
    request.session = SessionStore(session_key)
    request.user = AnonymousUser()
    return request


def user_with(number: str) -> Any:
    user = get_user_model()._default_manager.create_user(username=f"user-{number}")
    PhoneNumber.objects.create(user=user, number=number)
    return user


def reopen_resend(challenge: Challenge) -> None:
    Challenge.objects.filter(pk=challenge.pk).update(
        resend_at=timezone.now() - timedelta(seconds=1)
    )
    challenge.refresh_from_db()


def fresh(challenge: Challenge) -> Challenge:
    return Challenge.objects.get(pk=challenge.pk)


def stored(backend: Any) -> str:
    """Everything the backend keeps of the tasks enqueued: arguments and results."""
    return json.dumps(
        [
            [r.task.module_path, r.args, r.kwargs, r._return_value, r.errors]
            for r in backend.results
        ],
        default=str,
    )


# --------------------------------------------------------------------------- the framework


def test_the_default_backend_is_the_immediate_one():
    assert type(tasks.task_backends["default"]).__module__ == IMMEDIATE.rpartition(".")[0]


def test_the_tasks_are_the_frameworks():
    for name in ("reconcile_recent_days", "poll_balance", "purge_history", "send_code"):
        assert getattr(tasks, name).module_path == f"django_voicepassword.tasks.{name}"


def test_without_the_backport_django_6_needs_nothing_and_5_2_says_what_to_install():
    script = (
        "import sys; sys.modules['django_tasks'] = None\n"
        "import django; django.setup()\n"
        "try:\n"
        "    from django_voicepassword import tasks\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n"
        "else:\n"
        "    print(type(tasks.poll_balance.get_backend()).__module__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if django.VERSION >= (6, 0):
        assert result.stdout.strip() == "django.tasks.backends.immediate"
    else:
        assert "ImportError:" in result.stdout
        assert "django-voicepassword[tasks]" in result.stdout


def test_a_django_without_the_framework_or_the_backport_is_told_what_to_install():
    # Django 5.2 without the [tasks] extra, whatever Django runs the suite.
    script = (
        "import sys; sys.modules['django.tasks'] = sys.modules['django_tasks'] = None\n"
        "import django; django.setup()\n"
        "try:\n"
        "    from django_voicepassword import tasks\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError:")
    assert "pip install 'django-voicepassword[tasks]'" in result.stdout
    assert "'django_tasks' to INSTALLED_APPS" in result.stdout


# --------------------------------------------------------------------------- periodic tasks


def test_reconcile_recent_days_runs_at_once_on_the_immediate_backend(emulated):
    call = calls.place_flash_call("79990000004")  # the provider's record says: failed
    result = tasks.reconcile_recent_days.enqueue()
    assert result.status == "SUCCESSFUL", result.errors
    yesterday, today = result.return_value
    assert yesterday["provider_rows"] == 0
    assert (today["provider_rows"], today["updated"]) == (1, 1)
    assert today["day"] > yesterday["day"]
    call.refresh_from_db()
    assert call.status == Call.Status.FAILED


def test_reconcile_recent_days_counts_back_from_today(emulated):
    result = tasks.reconcile_recent_days.enqueue(days=3)
    days = [report["day"] for report in result.return_value]
    assert len(days) == 3
    assert days == sorted(days)


@pytest.mark.parametrize("days", [0, 32, True, "2"])
def test_reconcile_recent_days_refuses_a_bad_number_of_days(days):
    with pytest.raises(ValueError, match="1 to 31"):
        tasks.reconcile_recent_days.call(days=days)


def test_a_day_that_fails_fails_the_run_after_the_others(emulated):
    emulated.set_fault("http500", endpoints=("get",))
    with configured(GET_RETRIES=0):
        result = tasks.reconcile_recent_days.enqueue(days=2)
    assert result.status == "FAILED"
    [error] = result.errors
    assert error.exception_class_path == "django_voicepassword.tasks.ReconcileError"
    assert "2 of 2 days could not be reconciled" in error.traceback


def test_poll_balance_stores_it_and_signals_low(emulated, sent):
    with configured(LOW_BALANCE="1000"):
        result = tasks.poll_balance.enqueue()
    assert result.return_value == {"balance": "999.00", "currency": "Rub", "low": True}
    snapshot = BalanceSnapshot.objects.get()
    assert snapshot.balance == Decimal("999.00")
    [(_name, fetched)] = [item for item in sent if item[0] == "balance_fetched"]
    assert fetched == {"snapshot": snapshot, "low": True}
    assert tasks.poll_balance.enqueue().return_value["low"] is False  # no LOW_BALANCE


def test_a_provider_error_fails_the_task_without_the_key(emulated):
    with configured(API_KEY="a-wrong-key-3f9c"):
        result = tasks.poll_balance.enqueue()
    assert result.status == "FAILED"
    [error] = result.errors
    assert error.exception_class_path.endswith(".AuthorisationFailedError")
    assert "a-wrong-key-3f9c" not in error.traceback
    assert not BalanceSnapshot.objects.exists()


def test_purge_history_follows_the_retention_settings():
    old = timezone.now() - timedelta(days=400)
    Call.objects.create(channel="flash_call", number=KNOWN, status="answered", created_at=old)
    Call.objects.create(channel="flash_call", number=KNOWN, status="answered")
    CallbackEvent.objects.create(
        provider_id="1", state="ANSWERED", payload={}, outcome="orphan", received_at=old
    )
    BalanceSnapshot.objects.create(balance=1, currency="Rub", taken_at=old)
    Challenge.objects.create(
        number=KNOWN, channel="flash_call", expires_at=old, resend_at=old, created_at=old
    )
    result = tasks.purge_history.enqueue(batch_size=1)
    assert result.return_value == {
        "calls": 1,
        "callback_events": 1,
        "balance_snapshots": 1,
        "challenges": 1,
    }
    assert Call.objects.count() == 1


def test_the_dummy_backend_stores_the_periodic_tasks_and_a_worker_runs_them(queue, emulated):
    call = calls.place_flash_call("79990000004")
    reconcile = tasks.reconcile_recent_days.enqueue(days=1)
    balance = tasks.poll_balance.enqueue()
    purge = tasks.purge_history.enqueue()
    assert [r.status for r in queue.results] == ["READY"] * 3
    assert (reconcile.args, reconcile.kwargs) == ([], {"days": 1})
    assert [entry.endpoint for entry in emulated.log] == ["send"]  # nothing asked yet
    call.refresh_from_db()
    assert call.status == Call.Status.PLACED

    [today] = run(reconcile)
    assert today["updated"] == 1
    assert run(balance)["balance"] == str(BalanceSnapshot.objects.get().balance)
    assert run(purge) == dict.fromkeys(
        ("calls", "callback_events", "balance_snapshots", "challenges"), 0
    )
    assert BalanceSnapshot.objects.count() == 1


# --------------------------------------------------------------------------- ASYNC_SEND


@pytest.fixture
def async_send() -> Iterator[None]:
    with configured(ASYNC_SEND=True):
        yield


def test_async_send_answers_before_the_provider_is_asked(queue, async_send, emulated):
    user_with(SLOW)
    challenge = start_challenge(SLOW, request=browser())

    # Nothing was sent yet: the request did not wait for the (slow) provider.
    assert emulated.sends() == []
    assert not Call.objects.exists()
    [result] = queue.results
    assert result.task.module_path == "django_voicepassword.tasks.send_code"
    assert result.args == [str(challenge.pk), "flash_call"]
    assert result.kwargs == {"sends": 1, "reservation": None}
    assert send_state(challenge) == "pending"
    assert challenge.code_digest == ""

    # The worker asks; the answer comes too late, with the provider's code in it.
    assert run(result) == "not_sent"
    assert len(emulated.sends(SLOW)) == 1
    # A login: left as if sent (a number without an account cannot fail).
    challenge = fresh(challenge)
    assert challenge.expires_at > timezone.now()
    assert send_state(challenge) == "sent"
    assert Call.objects.get().status == Call.Status.UNKNOWN


def test_the_worker_sends_the_code_and_keeps_only_its_hmac(queue, async_send, emulated, sent):
    user_with(KNOWN)
    request = browser()
    challenge = start_challenge(KNOWN, request=request)
    assert not [name for name, _ in sent if name == "challenge_started"]

    assert run(queue.results[0]) == "sent"
    code = emulated.code_for(KNOWN)
    challenge = fresh(challenge)
    assert challenge.code_digest == verification._code_digest(challenge.pk, code)
    assert send_state(challenge) == "sent"
    assert Call.objects.get().challenge == challenge
    [(_name, started)] = [item for item in sent if item[0] == "challenge_started"]
    assert (started["challenge"].pk, started["channel"], started["request"]) == (
        challenge.pk,
        "flash_call",
        None,
    )
    assert confirm_challenge(challenge, code, request=browser(request.session.session_key))


def test_a_code_entered_before_the_worker_sent_it_is_wrong_and_costs_nothing_after(
    queue, async_send, emulated
):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    assert confirm_challenge(challenge, "0000") is False
    run(queue.results[0])
    challenge = fresh(challenge)
    assert challenge.attempts == 0  # a fresh set of attempts with the code
    assert confirm_challenge(challenge, emulated.code_for(KNOWN))


def test_nothing_secret_goes_into_the_queue(queue, emulated):
    secret_key = "tests-only-secret-key-not-for-production"
    code_key = "a-code-key-7d1e"
    with configured(
        ASYNC_SEND=True,
        SMS_FALLBACK=True,
        FLASH_CODE_SOURCE="client",
        DAILY_BUDGET="100",
        CODE_KEY=code_key,
    ):
        user_with(KNOWN)
        challenge = start_challenge(KNOWN)
        run(queue.results[-1])
        for channel in ("voice_call", "sms"):
            reopen_resend(challenge)
            resend_challenge(challenge, channel=channel)
            assert run(queue.results[-1]) == "sent"
    codes = {call.code for call in emulated.emulator.calls if call.code}
    assert codes
    everything = stored(queue)
    for secret in (KNOWN, KNOWN[1:], API_KEY, secret_key, code_key, *codes):
        assert secret not in everything
    day, _until_midnight = ratelimit._moscow_day(ratelimit._now())
    assert [r.kwargs for r in queue.results] == [
        {"sends": 1, "reservation": {"day": day, "cents": 50}},
        {"sends": 2, "reservation": {"day": day, "cents": 100}},
        {"sends": 3, "reservation": {"day": day, "cents": 400}},
    ]
    assert {tuple(r.args) for r in queue.results} == {
        (str(challenge.pk), "flash_call"),
        (str(challenge.pk), "voice_call"),
        (str(challenge.pk), "sms"),
    }


def test_a_number_without_an_account_is_enqueued_alike_and_never_called(
    queue, async_send, emulated, pauses, sent
):
    challenge = start_challenge(UNKNOWN)
    [result] = queue.results
    assert result.kwargs == {"sends": 1, "reservation": None}
    assert run(result) == "sent"
    assert emulated.sends() == []
    # The worker spends the time a call would have taken: on its cold
    # gateway, a free round trip (get/ balance) rather than a pause.
    assert pauses == []
    assert [entry.kind for entry in emulated.log] == ["balance"]
    assert send_state(fresh(challenge)) == "sent"  # a digest nobody can match
    assert not [name for name, _ in sent if name == "challenge_started"]


def test_limits_and_budget_are_checked_in_the_request(queue, emulated):
    with configured(ASYNC_SEND=True, LIMITS={"number": "1/h"}):
        start_challenge("79990000007", request=browser())
        with pytest.raises(LimitExceeded) as refused:
            start_challenge("79990000007", request=browser())
        assert refused.value.scope == "number"
    with configured(ASYNC_SEND=True, DAILY_BUDGET="0.50"):
        start_challenge("79990000002")
        with pytest.raises(LimitExceeded) as refused:
            start_challenge("79990000003")
        assert refused.value.scope == "budget"
    assert len(queue.results) == 2
    assert emulated.sends() == []


def test_a_failed_send_on_the_worker_is_logged_and_gives_the_budget_back(queue, emulated, caplog):
    owner = user_with(KNOWN)
    with configured(ASYNC_SEND=True, DAILY_BUDGET="0.50"):
        challenge = start_challenge(REFUSED, purpose="verify", user=owner)
        with caplog.at_level("INFO", logger="django_voicepassword"):
            assert run(queue.results[0]) == "not_sent"
        # The budget of the call that was never placed is free again.
        start_challenge("79990000002")
    challenge = fresh(challenge)
    assert challenge.expires_at <= timezone.now()
    assert send_state(challenge) == "failed"
    assert Call.objects.get(number=REFUSED).status == Call.Status.NOT_PLACED
    ours = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith("django_voicepassword.emulator")
    )
    assert "not placed: number_not_valid" in ours
    assert "no code sent" in ours
    assert REFUSED[1:] not in ours  # the number is masked


def test_an_unknown_outcome_keeps_the_budget(queue, emulated):
    user_with(SLOW)
    with configured(ASYNC_SEND=True, DAILY_BUDGET="0.50"):
        start_challenge(SLOW)
        assert run(queue.results[0]) == "not_sent"
        # The provider may have billed it: the reservation stays.
        with pytest.raises(LimitExceeded):
            start_challenge("79990000002")


def test_a_resend_is_claimed_in_the_request_and_sent_by_the_worker(queue, async_send, emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    run(queue.results[0])
    first = emulated.code_for(KNOWN)
    reopen_resend(challenge)

    renewed = resend_challenge(challenge, channel="voice_call")
    assert renewed.sends == 2
    assert renewed.resend_at > timezone.now()
    assert len(emulated.sends()) == 1  # not yet
    assert queue.results[1].kwargs == {"sends": 2, "reservation": None}
    with pytest.raises(ChallengeError) as early:
        resend_challenge(challenge, channel="voice_call")
    assert early.value.code == "cooldown"

    assert run(queue.results[1]) == "sent"
    assert emulated.sends()[-1].kind == "voice_call"
    second = emulated.code_for(KNOWN)
    challenge = fresh(challenge)
    assert challenge.channel == "voice_call"
    if second != first:
        assert confirm_challenge(challenge, first) is False
    assert confirm_challenge(challenge, second)


@pytest.mark.parametrize("purpose", ["verify", "login"])
def test_a_failed_resend_gives_the_cooldown_back_and_keeps_the_old_code(
    queue, async_send, emulated, purpose
):
    owner = user_with(KNOWN)
    challenge = start_challenge(KNOWN, purpose=purpose, user=owner)
    run(queue.results[0])
    code = emulated.code_for(KNOWN)
    reopen_resend(challenge)
    resend_challenge(challenge)
    emulated.emulator.user_disabled = True  # refused: nothing placed
    assert run(queue.results[1]) == "not_sent"
    emulated.emulator.user_disabled = False
    challenge = fresh(challenge)
    if purpose == "verify":
        assert challenge.sends == 1
        assert challenge.resend_at <= timezone.now()
    else:
        # A login keeps the cooldown, as one whose code went out does.
        assert challenge.sends == 2
        assert challenge.resend_at > timezone.now()
    assert confirm_challenge(challenge, code)


def test_a_send_replaced_by_a_newer_one_is_skipped(queue, emulated):
    user_with(KNOWN)
    with configured(ASYNC_SEND=True, DAILY_BUDGET="1.50"):
        challenge = start_challenge(KNOWN)
        reopen_resend(challenge)
        resend_challenge(challenge, channel="voice_call")  # budget: 0.50 + 1.00
        older, newer = queue.results
        assert run(older) == "skipped"
        assert emulated.sends() == []
        # The skipped send's 0.50 is free again.
        start_challenge("79990000002")
        assert run(newer) == "sent"
    assert [entry.kind for entry in emulated.sends()] == ["voice_call"]


def test_a_send_for_a_challenge_that_is_over_is_skipped(queue, async_send, emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    Challenge.objects.filter(pk=challenge.pk).update(expires_at=timezone.now())
    assert run(queue.results[0]) == "skipped"
    assert tasks.send_code.call("not-a-challenge", "flash_call") == "skipped"
    assert emulated.sends() == []


def test_inside_a_transaction_the_send_is_enqueued_once_it_commits(queue, async_send):
    with transaction.atomic():
        start_challenge(KNOWN)
        assert queue.results == []
    assert len(queue.results) == 1


def test_a_rolled_back_challenge_is_never_sent(queue, async_send):
    class SiteError(Exception):
        pass

    def the_sites_view() -> None:
        with transaction.atomic():
            start_challenge(KNOWN)
            raise SiteError

    with pytest.raises(SiteError):
        the_sites_view()
    assert queue.results == []
    assert not Challenge.objects.exists()


def test_a_send_that_cannot_be_enqueued_is_refused_and_undone(emulated, caplog):
    user_with(KNOWN)
    backends = {"default": {"BACKEND": IMMEDIATE}, "broken": {"BACKEND": UNREACHABLE}}
    broken = {"ASYNC_SEND": True, "ASYNC_SEND_BACKEND": "broken", "DAILY_BUDGET": "0.50"}
    with override_settings(TASKS=backends), configured(**broken):
        with pytest.raises(ChallengeError) as refused:
            start_challenge(KNOWN)
        assert refused.value.code == "channel_unavailable"
        assert "not enqueued (flash_call): ConnectionError" in caplog.text
        [challenge] = Challenge.objects.all()
        assert challenge.expires_at <= timezone.now()
    with override_settings(TASKS=backends), configured(DAILY_BUDGET="0.50"):
        # The budget was given back: the same send fits again (sent in the request).
        challenge = start_challenge(KNOWN)
    reopen_resend(challenge)
    with override_settings(TASKS=backends), configured(**{**broken, "DAILY_BUDGET": None}):
        with pytest.raises(ChallengeError) as refused:
            resend_challenge(challenge)
        assert refused.value.code == "channel_unavailable"
    challenge = fresh(challenge)
    assert challenge.sends == 1
    assert challenge.resend_at <= timezone.now()


def test_the_immediate_backend_sends_in_the_request(async_send, emulated, sent):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    assert len(emulated.sends(KNOWN)) == 1
    assert send_state(fresh(challenge)) == "sent"
    assert [item[1]["request"] for item in sent if item[0] == "challenge_started"] == [None]
    # A failure is the worker's too: the challenge says so, nothing is raised.
    owner = user_with(REFUSED)
    assert send_state(fresh(start_challenge(REFUSED, purpose="verify", user=owner))) == "failed"
    # A login's says "sent", as for a number without an account.
    assert send_state(fresh(start_challenge(REFUSED))) == "sent"


def test_off_by_default_the_request_sends(queue, emulated):
    user_with(KNOWN)
    start_challenge(KNOWN)
    assert len(emulated.sends(KNOWN)) == 1
    assert queue.results == []


# --------------------------------------------------------------------------- checks


def async_checks(**overrides: Any) -> list[Any]:
    with configured(**overrides):
        return checks.check_async_send()


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def test_no_check_without_async_send():
    assert async_checks() == []


def test_async_send_with_the_immediate_backend_is_pointless():
    [message] = async_checks(ASYNC_SEND=True)
    assert isinstance(message, Warning)
    assert message.id == "voicepassword.W004"


def test_async_send_with_the_dummy_backend_sends_nothing(queue):
    assert ids(async_checks(ASYNC_SEND=True)) == ["voicepassword.W005"]


def test_async_send_on_a_worker_is_fine():
    with override_settings(TASKS={"default": {"BACKEND": WORKER, "QUEUES": ["default", "calls"]}}):
        assert async_checks(ASYNC_SEND=True) == []
        assert async_checks(ASYNC_SEND=True, ASYNC_SEND_QUEUE="calls") == []
        # Without a shared cache the worker gives reservations back to itself.
        locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        with override_settings(CACHES=locmem):
            budget = async_checks(ASYNC_SEND=True, DAILY_BUDGET="100")
        assert ids(budget) == ["voicepassword.W006"]
        [error] = async_checks(ASYNC_SEND=True, ASYNC_SEND_QUEUE="elsewhere")
        assert isinstance(error, Error)
        assert error.id == "voicepassword.E010"
        assert "'elsewhere'" in error.msg


def test_an_unknown_task_backend_is_an_error():
    [error] = async_checks(ASYNC_SEND=True, ASYNC_SEND_BACKEND="nowhere")
    assert error.id == "voicepassword.E010"
    assert "'nowhere'" in error.msg


def test_without_the_tasks_framework_async_send_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "django_voicepassword.tasks", None)
    assert ids(async_checks(ASYNC_SEND=True)) == ["voicepassword.E009"]
    assert async_checks() == []


@pytest.mark.parametrize("value", ["", None, 1])
def test_a_bad_backend_or_queue_name_is_a_settings_error(value):
    with configured(ASYNC_SEND_QUEUE=value):
        assert "voicepassword.E002" in ids(checks.check_settings())
    with configured(ASYNC_SEND="yes"):
        assert "voicepassword.E002" in ids(checks.check_settings())


# ------------------------------------------------------------------- the example site's workers

MANAGE = ROOT / "example_project" / "manage.py"


def manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "VOICEPASSWORD_", "TASKS_", "REDIS_"))
    }
    environment.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VOICEPASSWORD_CALLBACK_BASE_URL="",
        **env,
    )
    return subprocess.run(
        [sys.executable, str(MANAGE), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


START = (
    "from django_voicepassword.verification import start_challenge, send_state;"
    "c = start_challenge('79990000001'); print(c.pk, send_state(c))"
)


def state_of(challenge_id: str) -> str:
    return (
        "from django_voicepassword.models import Challenge;"
        "from django_voicepassword.verification import send_state;"
        f"print(send_state(Challenge.objects.get(pk='{challenge_id}')))"
    )


def test_the_example_site_refuses_an_unknown_tasks_backend(tmp_path):
    result = manage("check", tmp_path=tmp_path, TASKS_BACKEND="celery")
    assert result.returncode != 0
    assert "TASKS_BACKEND must be 'immediate', 'db' or 'rq'" in result.stderr


def test_the_example_site_sends_from_the_db_worker(tmp_path, voicepassword_emulator_server):
    pytest.importorskip("django_tasks_db")
    env = {
        "TASKS_BACKEND": "db",
        "VOICEPASSWORD_ASYNC_SEND": "true",
        "VOICEPASSWORD_API_URL": voicepassword_emulator_server.base_url,
    }
    assert manage("check", "--fail-level", "WARNING", tmp_path=tmp_path, **env).returncode == 0
    assert manage("migrate", "--noinput", tmp_path=tmp_path, **env).returncode == 0
    started = manage("shell", "--no-imports", "-c", START, tmp_path=tmp_path, **env)
    challenge_id, state = started.stdout.split()
    assert state == "pending", started.stderr
    assert voicepassword_emulator_server.emulator.sends() == []

    worked = manage(
        "db_worker", "--batch", "--no-startup-delay", "--no-reload", tmp_path=tmp_path, **env
    )
    assert worked.returncode == 0, worked.stderr
    assert len(voicepassword_emulator_server.emulator.sends("79990000001")) == 1
    after = manage("shell", "--no-imports", "-c", state_of(challenge_id), tmp_path=tmp_path, **env)
    assert after.stdout.strip() == "sent", after.stderr

    # The periodic schedule for the worker (docs/tasks.md): cron enqueues, the worker runs.
    cron = "from django_voicepassword.tasks import poll_balance as t; t.enqueue()"
    assert manage("shell", "--no-imports", "-c", cron, tmp_path=tmp_path, **env).returncode == 0
    count = (
        "from django_voicepassword.models import BalanceSnapshot;"
        "print(BalanceSnapshot.objects.count())"
    )
    assert manage("shell", "--no-imports", "-c", count, tmp_path=tmp_path, **env).stdout == "0\n"
    worked = manage(
        "db_worker", "--batch", "--no-startup-delay", "--no-reload", tmp_path=tmp_path, **env
    )
    assert worked.returncode == 0, worked.stderr
    assert manage("shell", "--no-imports", "-c", count, tmp_path=tmp_path, **env).stdout == "1\n"


@pytest.mark.redis
def test_the_example_site_sends_from_an_rq_worker(tmp_path, voicepassword_emulator_server):
    pytest.importorskip("django_tasks_rq")
    env = {
        "TASKS_BACKEND": "rq",
        "REDIS_URL": "redis://127.0.0.1:6379/14",
        "VOICEPASSWORD_ASYNC_SEND": "true",
        "VOICEPASSWORD_API_URL": voicepassword_emulator_server.base_url,
    }
    assert manage("check", "--fail-level", "WARNING", tmp_path=tmp_path, **env).returncode == 0
    assert manage("migrate", "--noinput", tmp_path=tmp_path, **env).returncode == 0
    started = manage("shell", "--no-imports", "-c", START, tmp_path=tmp_path, **env)
    challenge_id, state = started.stdout.split()
    assert state == "pending", started.stderr

    worked = manage(
        "rqworker",
        "--burst",
        "--job-class",
        "django_tasks_rq.Job",
        "default",
        tmp_path=tmp_path,
        **env,
    )
    assert worked.returncode == 0, worked.stderr
    assert len(voicepassword_emulator_server.emulator.sends("79990000001")) == 1
    after = manage("shell", "--no-imports", "-c", state_of(challenge_id), tmp_path=tmp_path, **env)
    assert after.stdout.strip() == "sent", after.stderr
