"""PhoneCodeBackend: logs in with a challenge's code, or returns None and says why."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    SESSION_KEY,
    aauthenticate,
    authenticate,
    get_user_model,
    login,
)
from django.contrib.auth.signals import user_login_failed
from django.db import connection
from django.test import override_settings

from django_voicepassword.adapter import PhoneAdapter
from django_voicepassword.auth_backends import PhoneCodeBackend
from django_voicepassword.models import Challenge, PhoneNumber
from django_voicepassword.verification import start_challenge
from tests.test_verification import (
    EMULATED,
    KNOWN,
    UNKNOWN,
    browser,
    configured,
    expire,
    same_browser,
    user_with,
)

pytestmark = pytest.mark.django_db(transaction=True)

BACKEND = "django_voicepassword.auth_backends.PhoneCodeBackend"


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    from django_voicepassword import verification

    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    backends = ["django.contrib.auth.backends.ModelBackend", BACKEND]
    with override_settings(VOICEPASSWORD=EMULATED, AUTHENTICATION_BACKENDS=backends):
        yield voicepassword_emulator


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="django_voicepassword")
    return caplog


@pytest.fixture
def verified() -> Iterator[list[dict[str, Any]]]:
    from django_voicepassword.signals import phone_verified

    received: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    phone_verified.connect(receive, weak=False)
    yield received
    phone_verified.disconnect(receive)


def started(number: str = KNOWN, **kwargs: Any) -> tuple[Challenge, Any]:
    """A login challenge for ``number`` started by a new browser, and that browser."""
    request = browser()
    return start_challenge(number, request=request, **kwargs), request


def test_it_logs_in_the_owner_of_the_number(emulated, verified):
    user = user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    here = same_browser(request)
    anonymous_key = here.session.session_key

    found = authenticate(here, challenge=challenge, otp_token=code)
    assert found is not None
    assert found == user
    assert getattr(found, "backend", None) == BACKEND
    login(here, found)
    assert here.session.session_key != anonymous_key  # cycled
    assert here.session[SESSION_KEY] == str(user.pk)
    assert here.session[BACKEND_SESSION_KEY] == BACKEND
    assert PhoneCodeBackend().get_user(user.pk) == user
    [signal] = verified
    assert (signal["user"], signal["number"], signal["challenge"]) == (user, KNOWN, challenge)
    assert PhoneNumber.objects.get(number=KNOWN).user == user


def test_it_takes_the_challenge_by_id_in_its_own_session_only(emulated):
    user = user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    assert authenticate(browser(), challenge=str(challenge.pk), otp_token=code) is None
    assert authenticate(same_browser(request), challenge=str(challenge.pk), otp_token=code) == user


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"username": "someone", "password": "secret"},
        {"challenge": "x"},
        {"otp_token": "1234"},
        {"challenge": None, "otp_token": "1234"},
    ],
)
def test_it_does_nothing_without_its_own_keywords(credentials, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert PhoneCodeBackend().authenticate(None, **credentials) is None


@pytest.mark.parametrize("garbage", ["not-a-uuid", 42, object(), b"\x00", ["a"]])
def test_garbage_challenges_are_none(garbage):
    assert PhoneCodeBackend().authenticate(browser(), challenge=garbage, otp_token="1234") is None


def refused_with(caplog: pytest.LogCaptureFixture, why: str, code: str) -> None:
    """A DEBUG line said why, and no line of the app (the emulator is the phone) has the code."""
    records = [
        record
        for record in caplog.records
        if record.name.startswith("django_voicepassword")
        and not record.name.startswith("django_voicepassword.emulator")
    ]
    refusals = [r for r in records if "refused" in r.getMessage()]
    assert any(why in r.getMessage() for r in refusals), [r.getMessage() for r in records]
    assert {r.levelno for r in refusals} == {logging.DEBUG}
    assert all(code not in re.findall(r"[0-9]+", r.getMessage()) for r in records)


def test_a_wrong_code_is_none_and_says_why(emulated, debug_log):
    user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    wrong = f"{(int(code) + 5) % 10_000:04d}"
    assert authenticate(same_browser(request), challenge=challenge, otp_token=wrong) is None
    refused_with(debug_log, "wrong code", code)


def test_an_expired_code_is_none(emulated, debug_log):
    user_with(KNOWN)
    challenge, request = started()
    expire(challenge)
    code = emulated.code_for(KNOWN)
    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is None
    refused_with(debug_log, "expired", code)


def test_a_used_code_is_none(emulated, debug_log):
    user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is not None
    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is None
    refused_with(debug_log, "used", code)


def test_another_session_is_none(emulated, debug_log):
    user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    assert authenticate(browser(), challenge=challenge, otp_token=code) is None
    refused_with(debug_log, "wrong_session", code)
    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is not None


def test_an_exhausted_challenge_is_none_even_with_the_right_code(emulated, debug_log):
    user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    for _ in range(3):
        assert authenticate(same_browser(request), challenge=challenge, otp_token="x") is None
    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is None
    refused_with(debug_log, "exhausted", code)


def test_an_inactive_user_is_none(emulated, debug_log):
    user = user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    type(user)._default_manager.filter(pk=user.pk).update(is_active=False)
    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is None
    refused_with(debug_log, "may not log in", code)
    assert PhoneCodeBackend().get_user(user.pk) is None


def test_a_verification_challenge_does_not_log_in(emulated, debug_log):
    owner = user_with(None, username="owner")
    challenge, request = started("79990000040", purpose="verify", user=owner)
    code = emulated.code_for("79990000040")
    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is None
    refused_with(debug_log, "not a login", code)
    assert Challenge.objects.get().verified_at is None  # and the code is not spent


def test_a_number_without_an_account_never_logs_in(emulated):
    challenge, request = started(UNKNOWN)
    assert emulated.sends() == []
    for guess in ("0000", "1234", "9999"):
        assert authenticate(same_browser(request), challenge=challenge, otp_token=guess) is None
    assert not get_user_model()._default_manager.exists()


def test_a_number_that_lost_its_user_after_the_call_is_none(emulated, debug_log):
    user = user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    PhoneNumber.objects.filter(user=user).delete()
    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is None
    refused_with(debug_log, "no user", code)


def test_a_challenge_holds_the_user_its_code_went_to_from_the_start(emulated):
    # So that a returning user's confirm has nothing to link (issue #16).
    user = user_with(KNOWN)
    challenge, _request = started()
    nobody, _other = started(UNKNOWN)
    assert Challenge.objects.get(pk=challenge.pk).user == user
    assert Challenge.objects.get(pk=nobody.pk).user is None  # no call, no user


def test_a_number_that_changed_hands_logs_in_its_new_owner(emulated, verified):
    # Looked up at the confirm, not taken from the start: the code went to
    # the phone, and the phone is the new owner's.
    before = user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    after = get_user_model().objects.create_user("bob", password=None)
    PhoneNumber.objects.filter(number=KNOWN).update(user=after)

    assert authenticate(same_browser(request), challenge=challenge, otp_token=code) == after
    assert Challenge.objects.get(pk=challenge.pk).user == after
    assert challenge.user == after
    assert [signal["user"] for signal in verified] == [after]
    assert before != after


class OneUserAdapter(PhoneAdapter):
    """A site's own look-up: every number is the user named "site"."""

    def get_user(self, number: str) -> Any:
        return get_user_model()._default_manager.filter(username="site").first()


def test_a_sites_own_get_user_is_asked_at_the_confirm(emulated):
    # The default look-up is read with the attempt (PostgreSQL); a site's own
    # get_user() is still the one that decides.
    user_with(KNOWN)  # PhoneNumber says alice; the site's adapter says otherwise
    site = get_user_model().objects.create_user("site", password=None)
    with configured(ADAPTER=f"{__name__}.OneUserAdapter"):
        challenge, request = started()
        code = emulated.code_for(KNOWN)
        assert authenticate(same_browser(request), challenge=challenge, otp_token=code) == site


def test_create_users_makes_the_user_of_a_first_login(emulated, verified):
    with configured(CREATE_USERS=True):
        challenge, request = started(UNKNOWN)
        code = emulated.code_for(UNKNOWN)
        user = authenticate(same_browser(request), challenge=challenge, otp_token=code)
    assert user is not None
    # Usernames show in places that do not mask numbers: the number is not one.
    assert UNKNOWN not in user.get_username()
    assert user.get_username().startswith("phone-")
    assert not user.has_usable_password()
    assert PhoneNumber.objects.get(number=UNKNOWN).user == user
    assert [signal["user"] for signal in verified] == [user]


def test_djangos_failure_signal_never_carries_the_code(emulated):
    user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)
    wrong = f"{(int(code) + 1) % 10_000:04d}"
    received: list[dict[str, Any]] = []

    def receive(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
        received.append(credentials)

    user_login_failed.connect(receive, weak=False)
    try:
        assert authenticate(same_browser(request), challenge=challenge, otp_token=wrong) is None
    finally:
        user_login_failed.disconnect(receive)
    [credentials] = received
    assert credentials["otp_token"] != wrong  # cleansed by Django: the name says "token"


def test_it_works_from_async_code(emulated):
    import asyncio

    user = user_with(KNOWN)
    challenge, request = started()
    code = emulated.code_for(KNOWN)

    def close_connection() -> None:
        connection.close()  # looked up in the thread it runs in

    async def log_in() -> Any:
        try:
            return await aauthenticate(same_browser(request), challenge=challenge, otp_token=code)
        finally:
            # The backend ran in asgiref's thread: close that thread's connection,
            # or the test database cannot be dropped at the end of the run.
            await sync_to_async(close_connection)()

    assert asyncio.run(log_in()) == user


@pytest.mark.parametrize("user_id", [None, "x", 10**9, "1; DROP"])
def test_get_user_of_nobody_is_none(user_id):
    assert PhoneCodeBackend().get_user(user_id) is None
