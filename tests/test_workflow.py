"""Workflows: a challenge moves on to the next channel by itself, once, and alike for every number.

Against the in-process emulator. Time passing is the challenge's
``next_step_at`` moved into the past (as ``reopen_resend`` does for the
cooldown) and the emulator's clock moved on. The race of two workers on one
step is in ``test_login_concurrency.py`` (PostgreSQL).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import django
import pytest
from django.contrib.auth import get_user_model
from django.core.checks import Error
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

from django_voicepassword import calls, checks, ratelimit, tasks, verification, workflow
from django_voicepassword.models import Call, Challenge, PhoneNumber
from django_voicepassword.verification import (
    challenge_info,
    resend_challenge,
    start_challenge,
)
from tests.test_api_login import forget_counters
from tests.test_verification import browser, same_browser, user_with

pytestmark = pytest.mark.django_db(transaction=True)

BLOCKED = "79990000013"  # the emulator never delivers its flash calls
FAILING = "79990000004"  # every call FAIL
KNOWN = "79990000001"
UNKNOWN = "79990000050"  # no account
START = "/voicepassword/api/challenges/"
BACKENDS = ["django_voicepassword.auth_backends.PhoneCodeBackend"]

FLASH_THEN_VOICE: dict[str, Any] = {
    "steps": [{"channel": "flash_call", "wait": 30}, {"channel": "voice_call"}]
}
THREE_STEPS: dict[str, Any] = {
    "steps": [
        {"channel": "flash_call", "wait": 30},
        {"channel": "voice_call", "wait": 60},
        {"channel": "sms"},
    ]
}
EMULATED: dict[str, Any] = {
    "API_KEY": "emulator-key",
    "LIMITS": {},
    "WORKFLOW": FLASH_THEN_VOICE,
    "CALLBACK_BASE_URL": "http://testserver",
}

FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
DUMMY = f"{FRAMEWORK}.backends.dummy.DummyBackend"


@contextmanager
def configured(**overrides: Any) -> Iterator[None]:
    with override_settings(VOICEPASSWORD={**EMULATED, **overrides}):
        yield


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    forget_counters()
    with override_settings(AUTHENTICATION_BACKENDS=BACKENDS), configured():
        yield voicepassword_emulator
    forget_counters()


def time_passes(challenge: Challenge | str, emulator: Any = None, seconds: float = 31) -> None:
    """The step's wait is over (and the emulator's calls have ended)."""
    pk = challenge.pk if isinstance(challenge, Challenge) else challenge
    Challenge.objects.filter(pk=pk, next_step_at__isnull=False).update(
        next_step_at=timezone.now() - timedelta(seconds=1)
    )
    if emulator is not None:
        emulator.advance(seconds)


def kinds(emulator: Any, number: str) -> list[str]:
    return [entry.kind for entry in emulator.sends(number)]


# --- the done criteria --------------------------------------------------------------


def test_a_flash_call_never_delivered_ends_confirmed_by_the_voice_call(emulated):
    user_with(BLOCKED)
    client = Client()
    response = client.post(START, {"number": BLOCKED}, content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    assert body["channel"] == "flash_call"
    assert body["next_channel"] == "voice_call"
    assert 29 <= body["next_step_in"] <= 30
    # The phone shows nothing: the operator blocked the flash call.
    assert emulated.last_call(BLOCKED).final_state == "NO ANSWER"

    time_passes(body["id"], emulated)
    polled = client.get(f"{START}{body['id']}/").json()  # the app polls; nobody presses
    assert polled["channel"] == "voice_call"
    assert polled["next_step_in"] is None
    assert kinds(emulated, BLOCKED) == ["flash_call", "voice_call"]

    heard = emulated.code_for(BLOCKED)  # the robot reads it out
    confirmed = client.post(
        f"{START}{body['id']}/confirm/", {"code": heard}, content_type="application/json"
    )
    assert confirmed.status_code == 200, confirmed.content
    assert client.session["_auth_user_id"]
    # Polls after the last step place nothing more.
    client.get(f"{START}{body['id']}/")
    assert kinds(emulated, BLOCKED) == ["flash_call", "voice_call"]


def test_the_code_page_says_what_comes_next_and_takes_the_step_when_reloaded(emulated):
    user_with(BLOCKED)
    client = Client()
    phone = client.post("/voicepassword/login/", {"number": BLOCKED})
    assert phone.status_code == 302
    page = client.get(phone["Location"])
    assert b"data-vp-next-step=" in page.content
    assert b"we will call you and read it out in" in page.content
    challenge = Challenge.objects.get(number=BLOCKED)
    time_passes(challenge, emulated)
    page = client.get(phone["Location"])
    assert b"Answer the call and listen to the code" in page.content
    assert b"data-vp-next-step=" not in page.content
    assert kinds(emulated, BLOCKED) == ["flash_call", "voice_call"]


def test_a_failed_call_moves_a_verification_on_at_once(emulated):
    user = user_with(None)
    challenge = start_challenge(FAILING, purpose="verify", user=user)
    emulated.advance(3)  # the call ends FAIL; its callback is due
    deliveries = emulated.deliver_callbacks(Client())
    assert [d.status for d in deliveries] == [200]
    challenge.refresh_from_db()
    assert challenge.next_step_at is not None
    assert challenge.next_step_at <= timezone.now()  # not 30 s from now
    workflow.advance(challenge)  # the next poll, well within the 30 s
    assert kinds(emulated, FAILING) == ["flash_call", "voice_call"]
    assert Challenge.objects.get(pk=challenge.pk).channel == "voice_call"


def test_a_failed_call_leaves_a_login_on_its_schedule(emulated):
    """A number without an account is never called, so it never fails: an early step would tell."""
    user_with(FAILING)
    challenge = start_challenge(FAILING, request=browser())
    planned = challenge.next_step_at
    emulated.advance(3)
    emulated.deliver_callbacks(Client())
    challenge.refresh_from_db()
    assert challenge.next_step_at == planned
    workflow.advance(challenge)
    assert kinds(emulated, FAILING) == ["flash_call"]


def test_a_step_is_taken_once_however_often_it_is_asked_for(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN, request=browser())
    time_passes(challenge)
    assert workflow.take_step(challenge.pk, 0) == workflow.TAKEN
    assert workflow.take_step(challenge.pk, 0) == workflow.SKIPPED
    workflow.advance(challenge)
    assert kinds(emulated, KNOWN) == ["flash_call", "voice_call"]


def test_a_step_before_its_time_is_not_taken(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN, request=browser())
    assert workflow.take_step(challenge.pk, 0) == workflow.SKIPPED
    workflow.advance(challenge)
    assert kinds(emulated, KNOWN) == ["flash_call"]


# --- accounts and enumeration ------------------------------------------------------------


def visible(challenge: Challenge) -> dict[str, Any]:
    info = challenge_info(Challenge.objects.get(pk=challenge.pk))
    info.pop("masked_number")
    return info


def test_a_number_without_an_account_takes_the_same_steps_placing_nothing(emulated):
    user_with(KNOWN)
    with configured(WORKFLOW=THREE_STEPS, SMS_FALLBACK=True):
        known = start_challenge(KNOWN, request=browser())
        unknown = start_challenge(UNKNOWN, request=browser())
        assert visible(known) == visible(unknown)
        assert visible(known)["next_channel"] == "voice_call"
        for step in (0, 1):
            time_passes(known, emulated, seconds=70)
            time_passes(unknown)
            assert workflow.take_step(known.pk, step) == workflow.TAKEN
            assert workflow.take_step(unknown.pk, step) == workflow.TAKEN
            assert visible(known) == visible(unknown)
    assert visible(known)["channel"] == "sms"
    assert visible(known)["next_step_in"] is None
    assert kinds(emulated, KNOWN) == ["flash_call", "voice_call", "sms"]
    assert emulated.sends(UNKNOWN) == []


# --- limits, budget, the person taking over ----------------------------------------------


def test_a_step_counts_against_the_limits_and_a_refused_one_stops_the_workflow(emulated, caplog):
    user_with(KNOWN)
    with configured(LIMITS={"number": "1/h"}):
        challenge = start_challenge(KNOWN, request=browser())
        before = Challenge.objects.get(pk=challenge.pk)
        time_passes(challenge)
        with caplog.at_level(logging.WARNING, "django_voicepassword"):
            assert workflow.take_step(challenge.pk, 0) == workflow.STOPPED
    after = Challenge.objects.get(pk=challenge.pk)
    assert (after.step, after.sends, after.resend_at) == (0, before.sends, before.resend_at)
    assert after.next_step_at is None
    assert "refused: number" in caplog.text
    assert kinds(emulated, KNOWN) == ["flash_call"]


def test_a_step_is_reserved_against_the_budget(emulated, caplog):
    user_with(KNOWN)
    prices = {"flash_call": "1", "voice_call": "5", "sms": "4"}
    with configured(DAILY_BUDGET="3", PRICE_ESTIMATES=prices):
        challenge = start_challenge(KNOWN, request=browser())
        time_passes(challenge)
        with caplog.at_level(logging.WARNING, "django_voicepassword"):
            assert workflow.take_step(challenge.pk, 0) == workflow.STOPPED
    assert "refused: budget" in caplog.text
    assert kinds(emulated, KNOWN) == ["flash_call"]


def test_a_resend_asked_for_takes_over_and_a_racing_step_finds_nothing(emulated):
    user_with(KNOWN)
    request = browser()
    challenge = start_challenge(KNOWN, request=request)
    Challenge.objects.filter(pk=challenge.pk).update(resend_at=timezone.now())
    time_passes(challenge)
    resend_challenge(challenge, same_browser(request), channel="voice_call")
    assert Challenge.objects.get(pk=challenge.pk).next_step_at is None
    assert workflow.take_step(challenge.pk, 0) == workflow.SKIPPED
    assert kinds(emulated, KNOWN) == ["flash_call", "voice_call"]


def test_a_verification_whose_step_fails_stops_and_keeps_its_code(emulated, caplog):
    user = user_with(None)
    challenge = start_challenge(KNOWN, purpose="verify", user=user)
    before = Challenge.objects.get(pk=challenge.pk)
    time_passes(challenge)
    emulated.emulator.user_disabled = True  # the provider refuses: nothing placed
    with caplog.at_level(logging.WARNING, "django_voicepassword"):
        assert workflow.take_step(challenge.pk, 0) == workflow.STOPPED
    after = Challenge.objects.get(pk=challenge.pk)
    assert after.code_digest == before.code_digest
    assert (after.sends, after.next_step_at) == (before.sends, None)
    assert "the workflow stops" in caplog.text


def test_a_verification_whose_step_may_have_been_billed_keeps_its_cooldown(emulated, caplog):
    user = user_with(None)
    # The flash call's code is the provider's: when its outcome is unknown, so is the code.
    steps = {
        "steps": [
            {"channel": "voice_call", "wait": 30},
            {"channel": "flash_call", "wait": 30},
            {"channel": "voice_call"},
        ]
    }
    with configured(WORKFLOW=steps):
        challenge = start_challenge(KNOWN, "voice_call", purpose="verify", user=user)
        before = Challenge.objects.get(pk=challenge.pk)
        time_passes(challenge)
        emulated.set_fault("http500", endpoints=("send",))  # placed and billed, or not
        with caplog.at_level(logging.WARNING, "django_voicepassword"):
            assert workflow.take_step(challenge.pk, 0) == workflow.STOPPED
    after = Challenge.objects.get(pk=challenge.pk)
    # The step counts as a send (asking again at once could bill a second
    # call), the workflow stops, and the first code goes on working.
    assert (after.sends, after.next_step_at) == (before.sends + 1, None)
    assert after.resend_at > before.resend_at
    assert after.code_digest == before.code_digest
    assert "the workflow stops" in caplog.text


# --- overrides ---------------------------------------------------------------------------


def test_an_operator_that_blocks_flash_calls_starts_with_a_voice_call(emulated):
    user_with(KNOWN)
    assert workflow.operator_of(KNOWN) == "MegaFon"  # libphonenumber's block data
    steps = {
        **FLASH_THEN_VOICE,
        "operators": {"MegaFon": [{"channel": "voice_call", "wait": 60}, {"channel": "sms"}]},
    }
    with configured(WORKFLOW=steps, SMS_FALLBACK=True):
        challenge = start_challenge(KNOWN, request=browser())
        assert (challenge.channel, challenge_info(challenge)["next_channel"]) == (
            "voice_call",
            "sms",
        )
    assert kinds(emulated, KNOWN) == ["voice_call"]


def test_a_region_override_applies_to_its_numbers_only(emulated):
    user_with(KNOWN)
    steps = {**FLASH_THEN_VOICE, "regions": {"KZ": [{"channel": "voice_call"}]}}
    with configured(WORKFLOW=steps):
        challenge = start_challenge(KNOWN, request=browser())
    assert challenge.channel == "flash_call"
    steps = {**FLASH_THEN_VOICE, "regions": {"RU": [{"channel": "voice_call"}]}}
    with configured(WORKFLOW=steps):
        challenge = start_challenge(BLOCKED, request=browser())
    assert (challenge.channel, challenge.next_step_at) == ("voice_call", None)


def test_an_operator_override_applies_to_its_operator_s_numbers_only(emulated):
    user_with(KNOWN)  # MegaFon's, in Russia
    steps = {**FLASH_THEN_VOICE, "operators": {"Tele2": [{"channel": "voice_call"}]}}
    with configured(WORKFLOW=steps):
        challenge = start_challenge(KNOWN, request=browser())
        assert (challenge.channel, challenge_info(challenge)["next_channel"]) == (
            "flash_call",
            "voice_call",
        )
    # Another operator's override leaves the number to its region's.
    with configured(WORKFLOW={**steps, "regions": {"RU": [{"channel": "voice_call"}]}}):
        challenge = start_challenge(KNOWN, request=browser())
        assert (challenge.channel, challenge.next_step_at) == ("voice_call", None)


def test_a_number_libphonenumber_cannot_read_has_no_operator_and_the_default_steps():
    voice = [{"channel": "voice_call"}]
    steps = {**FLASH_THEN_VOICE, "operators": {"MegaFon": voice}, "regions": {"RU": voice}}
    with configured(WORKFLOW=steps):
        assert workflow.operator_of("") == ""
        assert workflow.plan_for(KNOWN) == (workflow.Step("voice_call", None),)
        assert workflow.plan_for("") == (
            workflow.Step("flash_call", 30),
            workflow.Step("voice_call", None),
        )


def test_a_channel_asked_for_starts_at_its_step(emulated):
    user_with(KNOWN)
    with configured(WORKFLOW=THREE_STEPS, SMS_FALLBACK=True):
        challenge = start_challenge(KNOWN, "voice_call", request=browser())
        assert (challenge.step, challenge_info(challenge)["next_channel"]) == (1, "sms")


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"steps": []}, "non-empty list"),
        ({"steps": [{"channel": "fax"}]}, "must be one of"),
        ({"steps": [{"channel": "flash_call"}, {"channel": "voice_call"}]}, "'wait'"),
        ({"steps": [{"channel": "flash_call", "wait": True}, {"channel": "sms"}]}, "'wait'"),
        ({"steps": [{"channel": "voice_call", "wait": 5}]}, "last step"),
        ({"steps": [{"channel": "sms"}]}, "a call comes first"),
        (
            {
                "steps": [
                    {"channel": "voice_call", "wait": 5},
                    {"channel": "sms", "wait": 5},
                    {"channel": "sms"},
                ]
            },
            "one SMS at most",
        ),
        ({"steps": [{"channel": "voice_call"}], "when": 1}, "Unknown WORKFLOW key"),
        ({"steps": ["voice_call"]}, "must be a dict of 'channel' and 'wait'"),
        ({"steps": [{"channel": "voice_call", "delay": 5}]}, "must be a dict of 'channel'"),
        ({**FLASH_THEN_VOICE, "regions": ["RU"]}, "must be dicts of steps"),
        ({**FLASH_THEN_VOICE, "operators": "MegaFon"}, "must be dicts of steps"),
        ({**FLASH_THEN_VOICE, "regions": {"XX": [{"channel": "voice_call"}]}}, "region code"),
        ({**FLASH_THEN_VOICE, "operators": {"Nobody Mobile": []}}, "operator libphonenumber"),
        ({**FLASH_THEN_VOICE, "tasks": "yes"}, "True or False"),
        ({"steps": [{"channel": "flash_call", "wait": 300}, {"channel": "voice_call"}]}, "TTL"),
        (THREE_STEPS, "SMS_FALLBACK is off"),
    ],
)
def test_an_invalid_workflow_is_an_error_e012(value, why):
    with configured(WORKFLOW=value):
        found = checks.check_workflow()
    assert [message.id for message in found] == ["voicepassword.E012"]
    assert why in found[0].msg


def test_an_invalid_workflow_falls_back_to_manual_resends_with_a_warning(emulated, caplog):
    user_with(KNOWN)
    with (
        configured(WORKFLOW={"steps": [{"channel": "fax"}]}),
        caplog.at_level(logging.WARNING, "django_voicepassword"),
    ):
        challenge = start_challenge(KNOWN, request=browser())
        assert challenge_info(challenge)["next_step_in"] is None
    assert (challenge.channel, challenge.next_step_at) == ("flash_call", None)
    assert "WORKFLOW ignored" in caplog.text


def test_no_workflow_shows_no_next_step(emulated):
    user_with(KNOWN)
    with configured(WORKFLOW=None):
        challenge = start_challenge(KNOWN, request=browser())
        info = challenge_info(challenge)
    assert (info["next_step_in"], info["next_channel"], challenge.next_step_at) == (
        None,
        None,
        None,
    )


def test_a_valid_workflow_passes_the_checks():
    with configured(WORKFLOW={**THREE_STEPS, "operators": {"Tele2": []}}, SMS_FALLBACK=True):
        assert [m.id for m in checks.check_workflow()] == ["voicepassword.E012"]  # empty steps
    ok = {**THREE_STEPS, "operators": {"tele2": [{"channel": "voice_call"}]}}
    with configured(WORKFLOW=ok, SMS_FALLBACK=True):
        assert checks.check_workflow() == []


# --- the settings changed under a challenge -------------------------------------------------


def test_a_workflow_shortened_under_a_challenge_takes_no_step(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN, request=browser())
    assert challenge.next_step_at is not None
    with configured(WORKFLOW={"steps": [{"channel": "flash_call"}]}):
        assert challenge_info(challenge)["next_step_in"] is None
        assert challenge_info(challenge)["next_channel"] is None
        time_passes(challenge)
        assert workflow.take_step(challenge.pk, 0) == workflow.SKIPPED
    # Stopped for good: the next poll under the old settings takes nothing either.
    after = Challenge.objects.get(pk=challenge.pk)
    assert (after.step, after.next_step_at) == (0, None)
    workflow.advance(after)
    assert kinds(emulated, KNOWN) == ["flash_call"]


def test_a_workflow_removed_under_a_challenge_takes_no_step(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN, request=browser())
    time_passes(challenge)
    challenge.refresh_from_db()
    with configured(WORKFLOW=None):
        assert challenge_info(challenge)["next_step_in"] is None
        workflow.advance(challenge)
    assert kinds(emulated, KNOWN) == ["flash_call"]


@pytest.mark.parametrize("challenge_id", ["not-a-uuid", None, 42])
def test_a_task_with_a_garbled_challenge_id_takes_no_step(emulated, challenge_id):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN, request=browser())
    time_passes(challenge)
    assert workflow.take_step(challenge_id, 0) == workflow.SKIPPED
    assert kinds(emulated, KNOWN) == ["flash_call"]


# --- a failed call -------------------------------------------------------------------------


def test_a_late_failure_of_an_earlier_call_does_not_move_the_workflow_on(emulated):
    user = user_with(None)
    with configured(WORKFLOW=THREE_STEPS, SMS_FALLBACK=True):
        challenge = start_challenge(BLOCKED, purpose="verify", user=user)
        emulated.advance(31)  # the flash call ended NO ANSWER; its callback waits
        time_passes(challenge)
        assert workflow.take_step(challenge.pk, 0) == workflow.TAKEN
        planned = Challenge.objects.get(pk=challenge.pk).next_step_at
        assert planned is not None
        # The flash call's failure arrives now: the voice call holds the code.
        deliveries = emulated.deliver_callbacks(Client())
        assert deliveries
        assert {d.status for d in deliveries} == {200}
        assert Challenge.objects.get(pk=challenge.pk).next_step_at == planned
        workflow.advance(Challenge.objects.get(pk=challenge.pk))
    assert kinds(emulated, BLOCKED) == ["flash_call", "voice_call"]


def test_a_failure_the_provider_cannot_confirm_keeps_the_step_s_time(emulated, caplog):
    user = user_with(None)
    challenge = start_challenge(FAILING, purpose="verify", user=user)
    planned = challenge.next_step_at
    emulated.advance(3)
    emulated.set_fault("http500", endpoints=("get",))  # the state cannot be read
    with caplog.at_level(logging.INFO, "django_voicepassword.workflow"):
        assert [d.status for d in emulated.deliver_callbacks(Client())] == [200]
    assert Challenge.objects.get(pk=challenge.pk).next_step_at == planned
    assert "Failed call not confirmed" in caplog.text


# --- the worker -----------------------------------------------------------------------------


def test_tasks_on_a_backend_that_cannot_defer_is_an_error_e013():
    with (
        override_settings(TASKS={"default": {"BACKEND": IMMEDIATE}}),
        configured(WORKFLOW={**FLASH_THEN_VOICE, "tasks": True}),
    ):
        found = checks.check_workflow()
    assert [m.id for m in found] == ["voicepassword.E013"]
    assert isinstance(found[0], Error)
    with (
        override_settings(TASKS={"default": {"BACKEND": DUMMY}}),
        configured(WORKFLOW={**FLASH_THEN_VOICE, "tasks": True}),
    ):
        assert checks.check_workflow() == []


@pytest.fixture
def queue() -> Iterator[Any]:
    with override_settings(TASKS={"default": {"BACKEND": DUMMY}}):
        backend: Any = tasks.task_backends["default"]
        backend.clear()
        yield backend
        backend.clear()


def test_a_worker_takes_the_step_at_its_time(emulated, queue):
    user_with(BLOCKED)
    with configured(WORKFLOW={**FLASH_THEN_VOICE, "tasks": True}):
        challenge = start_challenge(BLOCKED, request=browser())
        [result] = queue.results
        assert result.task.name == "take_step"
        assert result.task.run_after == challenge.next_step_at
        assert result.args == [str(challenge.pk), 0]
        time_passes(challenge)
        assert tasks.take_step.call(*result.args) == workflow.TAKEN
        # A poll within the grace leaves it to the worker; nothing is sent twice.
        workflow.advance(challenge)
    assert kinds(emulated, BLOCKED) == ["flash_call", "voice_call"]


def test_an_unreachable_worker_falls_back_to_the_poll_with_a_warning(emulated, queue, caplog):
    user_with(BLOCKED)
    with (
        configured(WORKFLOW={**FLASH_THEN_VOICE, "tasks": True}),
        caplog.at_level(logging.WARNING, "django_voicepassword"),
    ):
        challenge = start_challenge(BLOCKED, request=browser())
        time_passes(challenge)
        workflow.advance(challenge)  # within the grace: the worker's
        assert kinds(emulated, BLOCKED) == ["flash_call"]
        Challenge.objects.filter(pk=challenge.pk).update(
            next_step_at=timezone.now() - timedelta(seconds=workflow.WORKER_GRACE + 1)
        )
        challenge.refresh_from_db()
        workflow.advance(challenge)
    assert kinds(emulated, BLOCKED) == ["flash_call", "voice_call"]
    assert "is the worker running?" in caplog.text


@pytest.mark.parametrize("commit", [True, False])
def test_a_step_is_enqueued_only_once_its_challenge_is_committed(emulated, queue, commit):
    user_with(BLOCKED)

    class RolledBackError(Exception):
        pass

    with configured(WORKFLOW={**FLASH_THEN_VOICE, "tasks": True}):
        try:
            with transaction.atomic():
                start_challenge(BLOCKED, request=browser())
                # A worker must not look for a challenge it cannot see yet.
                assert queue.results == []
                if not commit:
                    raise RolledBackError
        except RolledBackError:
            pass
    assert len(queue.results) == (1 if commit else 0)


def test_a_queue_that_refuses_the_step_leaves_it_to_the_poll(emulated, caplog):
    user_with(BLOCKED)
    with (
        override_settings(TASKS={"default": {"BACKEND": IMMEDIATE}}),
        configured(WORKFLOW={**FLASH_THEN_VOICE, "tasks": True}),
        caplog.at_level(logging.WARNING, "django_voicepassword"),
    ):
        challenge = start_challenge(BLOCKED, request=browser())
    assert "not enqueued (InvalidTask" in caplog.text  # InvalidTaskError in the backport
    assert challenge.next_step_at is not None


def test_the_challenge_api_shows_the_next_step(emulated):
    user_with(KNOWN)
    body = Client().post(START, {"number": KNOWN}, content_type="application/json").json()
    assert {"next_step_in", "next_channel"} <= set(body)
    assert body["next_channel"] == "voice_call"


def test_ratelimit_is_used_by_the_step(emulated, monkeypatch):
    """The step calls check_send without a request: the number's scopes, not the person's."""
    user_with(KNOWN)
    seen: list[Any] = []
    real, real_start = ratelimit.check_send, ratelimit.check_and_reserve

    def check_send(number: str, request: Any, **kwargs: Any) -> None:
        seen.append(request)
        real(number, request, **kwargs)

    def check_and_reserve(number: str, request: Any, **kwargs: Any) -> Any:
        # A start checks the limits with its budget (one round trip on Redis).
        seen.append(request)
        return real_start(number, request, **kwargs)

    monkeypatch.setattr(ratelimit, "check_send", check_send)
    monkeypatch.setattr(ratelimit, "check_and_reserve", check_and_reserve)
    challenge = start_challenge(KNOWN, request=browser())
    time_passes(challenge)
    workflow.take_step(challenge.pk, 0)
    assert seen[-1] is None
    assert len(seen) == 2


def test_emulator_number_blocks_flash_calls_only(emulated):
    assert json.dumps(emulated.sends(BLOCKED)) == "[]"
    call = calls.place_flash_call(BLOCKED)
    voice = calls.place_voice_call(BLOCKED)
    emulated.advance(60)
    assert calls.refresh_call(call).status == Call.Status.NO_ANSWER
    assert calls.refresh_call(voice).status == Call.Status.ANSWERED
    assert not PhoneNumber.objects.exists()
    assert get_user_model().objects.count() == 0
