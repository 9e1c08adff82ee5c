"""The login API (DRF), through Django's test client and the in-process emulator."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.middleware import SessionMiddleware
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_voicepassword import binding, calls, verification
from django_voicepassword.api.login import ChallengeConfirmView
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Challenge, PhoneNumber
from django_voicepassword.signals import phone_verified

pytestmark = pytest.mark.django_db(transaction=True)

BACKEND = "django_voicepassword.auth_backends.PhoneCodeBackend"
BACKENDS = ["django.contrib.auth.backends.ModelBackend", BACKEND]
KNOWN = "79990000001"  # has an account
OTHER = "79990000005"  # for verifications
UNKNOWN = "79990000003"  # has none
START = "/voicepassword/api/challenges/"
EMULATED: dict[str, Any] = {"API_KEY": "emulator-key", "LIMITS": {}}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NOBODY = "00000000-0000-4000-8000-000000000000"
ARABIC_INDIC = {str(digit): chr(0x0660 + digit) for digit in range(10)}
CSRF_TOKEN = "a" * 32  # what the cookie and the X-CSRFToken header both carry
INFO_KEYS = {
    "id",
    "masked_number",
    "channel",
    "code_length",
    "caller_prefix",
    "expires_in",
    "resend_in",
    "attempts_left",
    "channels",
    "purpose",
    "next_step_in",
    "next_channel",
}


def forget_counters() -> None:
    """Drop this run's limit counters (not cache.clear(): a shared Redis has other runs')."""
    backend: Any = caches["default"]
    pattern = backend.make_key("voicepassword:*")
    if type(backend).__name__ == "RedisCache":
        client = backend._cache.get_client()
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    else:
        for key in [key for key in backend._cache if fnmatch.fnmatchcase(key, pattern)]:
            del backend._cache[key]
            backend._expire_info.pop(key, None)


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    forget_counters()
    yield
    forget_counters()


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    # The pause that makes a number without an account as slow as a call.
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    with override_settings(VOICEPASSWORD=EMULATED, AUTHENTICATION_BACKENDS=BACKENDS):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def user():
    person = get_user_model().objects.create_user("alice", password=None)
    PhoneNumber.objects.create(user=person, number=KNOWN)
    return person


def post(client: Client, url: str, body: Any = None, **extra: Any) -> Any:
    """POST ``body`` as JSON (``bytes`` as they are)."""
    data = body if isinstance(body, bytes) else json.dumps({} if body is None else body)
    return client.post(url, data=data, content_type="application/json", **extra)


def start(client: Client, number: str = KNOWN, **fields: Any) -> Any:
    return post(client, START, {"number": number, **fields})


def started(client: Client, number: str = KNOWN, **fields: Any) -> dict[str, Any]:
    response = start(client, number, **fields)
    assert response.status_code == 201, response.content
    data: dict[str, Any] = response.json()
    return data


def url_of(challenge_id: str, action: str = "") -> str:
    return f"{START}{challenge_id}/" + (f"{action}/" if action else "")


def confirm(client: Client, challenge_id: str, code: Any) -> Any:
    return post(client, url_of(challenge_id, "confirm"), {"code": code})


def resend(client: Client, challenge_id: str, **fields: Any) -> Any:
    return post(client, url_of(challenge_id, "resend"), fields)


def allow_resend(challenge_id: str) -> None:
    Challenge.objects.filter(pk=challenge_id).update(
        resend_at=timezone.now() - timedelta(seconds=1)
    )


def wrong_code(right: str) -> str:
    return "1111" if right != "1111" else "2222"


def without_id(content: bytes) -> str:
    return UUID_RE.sub("CHALLENGE", content.decode())


# --- the whole flows -----------------------------------------------------------------


def test_login_end_to_end(client, user, emulated):
    response = start(client, "+7 999 000-00-01")
    assert response.status_code == 201
    data = response.json()
    assert set(data) == INFO_KEYS
    assert data["masked_number"] == "+7 999 ***-**-01"
    assert data["purpose"] == "login"
    assert data["channel"] == "flash_call"
    assert response["Location"] == url_of(data["id"])
    assert "no-store" in response["Cache-Control"]
    assert KNOWN not in response.content.decode()
    # The challenge is bound by the binding cookie: no session before the login.
    assert binding.COOKIE in response.cookies
    assert settings.SESSION_COOKIE_NAME not in client.cookies
    assert not Session.objects.exists()

    done = confirm(client, data["id"], emulated.code_for(KNOWN))
    assert done.status_code == 200, done.content
    assert done.json() == {"verified": True, "user": {"id": user.pk}}
    assert settings.SESSION_COOKIE_NAME in done.cookies  # the login's session
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session["_auth_user_backend"] == BACKEND
    assert len(emulated.sends()) == 1


def test_a_login_from_a_session_cycles_its_key(client, user, emulated):
    # A client with a session keeps it as the binding, and the login cycles its key.
    session = client.session
    session["kept"] = 1
    session.save()
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    response = start(client)
    assert response.status_code == 201
    assert binding.COOKIE not in response.cookies
    challenge = Challenge.objects.get(pk=response.json()["id"])
    assert challenge.session_digest == binding._session_digest(before)

    done = confirm(client, str(challenge.pk), emulated.code_for(KNOWN))
    assert done.status_code == 200, done.content
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != before
    assert client.session["kept"] == 1
    assert not Session.objects.filter(session_key=before).exists()


def test_the_start_answer_has_what_an_app_needs_to_read_a_flash_call(client, user):
    data = started(client)
    assert data["code_length"] == 4
    assert data["caller_prefix"] is None  # the provider does not say it
    assert data["expires_in"] == 300
    assert data["resend_in"] == 30
    assert data["attempts_left"] == 3
    assert data["channels"] == ["flash_call", "voice_call"]


def test_get_shows_the_challenge(client, user, emulated):
    data = started(client)
    confirm(client, data["id"], wrong_code(emulated.code_for(KNOWN)))
    shown = client.get(url_of(data["id"]))
    assert shown.status_code == 200
    assert shown.json() == {**data, "attempts_left": 2}


def test_verify_adds_the_number_to_the_user(user, emulated):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user, backend=BACKEND)
    client.cookies[settings.CSRF_COOKIE_NAME] = CSRF_TOKEN
    csrf = {"HTTP_X_CSRFTOKEN": CSRF_TOKEN}
    session_before = client.cookies[settings.SESSION_COOKIE_NAME].value

    response = post(client, START, {"number": OTHER, "purpose": "verify"}, **csrf)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["purpose"] == "verify"
    done = post(client, url_of(data["id"], "confirm"), {"code": emulated.code_for(OTHER)}, **csrf)
    assert done.status_code == 200, done.content
    assert done.json() == {"verified": True, "user": {"id": user.pk}}
    assert PhoneNumber.objects.get(number=OTHER).user == user
    # Still the same user in the same session.
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.cookies[settings.SESSION_COOKIE_NAME].value == session_before
    # Once: the code is used.
    again = post(client, url_of(data["id"], "confirm"), {"code": emulated.code_for(OTHER)}, **csrf)
    assert again.status_code == 410
    assert again.json()["code"] == "used"


def test_verify_needs_a_logged_in_user(client, emulated):
    response = start(client, OTHER, purpose="verify")
    assert response.status_code == 403
    assert response.json()["code"] == "not_authenticated"
    assert emulated.log == []


def test_a_logged_in_session_needs_the_csrf_token(user, emulated):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user, backend=BACKEND)
    for purpose in ("verify", "login"):
        response = start(client, OTHER, purpose=purpose)
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert "CSRF" in response.json()["detail"]
    assert emulated.log == []


def test_an_anonymous_login_needs_no_csrf_token(user, emulated):
    # A mobile app has no CSRF cookie; login CSRF is defused by the session binding.
    client = Client(enforce_csrf_checks=True)
    data = started(client)
    assert confirm(client, data["id"], emulated.code_for(KNOWN)).status_code == 200


def test_a_verification_is_not_confirmed_by_another_user(user, emulated):
    client = Client()
    client.force_login(user, backend=BACKEND)
    data = started(client, OTHER, purpose="verify")
    # Another user in the same session (a test shortcut: a real login cycles the key).
    other = get_user_model().objects.create_user("bob", password=None)
    session = client.session
    session["_auth_user_id"] = str(other.pk)
    session.save()
    response = confirm(client, data["id"], emulated.code_for(OTHER))
    assert response.status_code == 404
    assert not PhoneNumber.objects.filter(number=OTHER).exists()


# --- codes -------------------------------------------------------------------------


def test_a_wrong_code_says_how_many_attempts_are_left(client, user, emulated):
    data = started(client)
    wrong = wrong_code(emulated.code_for(KNOWN))
    for left, detail in (
        (2, "Wrong code. You have 2 more attempts."),
        (1, "Wrong code. You have 1 more attempt."),
        (0, "Wrong code, and no attempts are left. You can ask for a new code."),
    ):
        response = confirm(client, data["id"], wrong)
        assert response.status_code == 400
        assert response.json() == {"detail": detail, "code": "wrong_code", "attempts_left": left}
    # Even the right code fails now.
    response = confirm(client, data["id"], emulated.code_for(KNOWN))
    assert response.status_code == 410
    assert response.json()["code"] == "exhausted"
    assert "_auth_user_id" not in client.session


def test_an_expired_code_is_gone(client, user, emulated):
    data = started(client)
    Challenge.objects.filter(pk=data["id"]).update(expires_at=timezone.now())
    response = confirm(client, data["id"], emulated.code_for(KNOWN))
    assert response.status_code == 410
    assert response.json() == {
        "detail": "This code has expired. Ask for a new one.",
        "code": "expired",
    }
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    "spell",
    [
        lambda code: code + "\n",
        lambda code: f" {code[:2]} {code[2:]} ",
        lambda code: "".join(ARABIC_INDIC[digit] for digit in code),
        lambda code: "\u200e" + code,  # the direction mark phones add to copied text
    ],
    ids=["newline", "spaces", "arabic-indic", "bidi-mark"],
)
def test_codes_in_other_spellings_are_read(client, user, emulated, spell):
    data = started(client)
    assert confirm(client, data["id"], spell(emulated.code_for(KNOWN))).status_code == 200


@pytest.mark.parametrize("typed", ["abcd", "12", "123456", "12 3a", "", "1234!", "+1234"])
def test_a_malformed_code_costs_no_attempt(client, user, emulated, typed):
    data = started(client)
    response = confirm(client, data["id"], typed)
    assert response.status_code == 400
    assert list(response.json()) == ["code"]
    assert Challenge.objects.get(pk=data["id"]).attempts == 0
    assert confirm(client, data["id"], emulated.code_for(KNOWN)).status_code == 200


def test_attempts_are_counted_under_atomic_requests(client, user, emulated):
    # DRF rolls back a request that raises under ATOMIC_REQUESTS: the views
    # must not run in one, or a wrong code would cost nothing.
    data = started(client)
    wrong = wrong_code(emulated.code_for(KNOWN))
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    try:
        for _ in range(3):
            assert confirm(client, data["id"], wrong).status_code == 400
        assert confirm(client, data["id"], emulated.code_for(KNOWN)).status_code == 410
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = False
    assert Challenge.objects.get(pk=data["id"]).attempts == 3


# --- resend and channels -------------------------------------------------------------


def test_a_resend_waits_for_the_cooldown(client, user, emulated):
    data = started(client)
    first = emulated.code_for(KNOWN)
    response = resend(client, data["id"])
    assert response.status_code == 429
    assert response.json()["code"] == "cooldown"
    assert 1 <= int(response["Retry-After"]) <= 30
    assert len(emulated.sends()) == 1

    allow_resend(data["id"])
    response = resend(client, data["id"])
    assert response.status_code == 200, response.content
    again = response.json()
    assert again["id"] == data["id"]
    assert again["resend_in"] == 60  # the second cooldown is longer
    assert len(emulated.sends()) == 2
    second = emulated.code_for(KNOWN)
    if second != first:
        assert confirm(client, data["id"], first).status_code == 400
    assert confirm(client, data["id"], second).status_code == 200


def test_switch_to_a_voice_call(client, user, emulated):
    data = started(client)
    allow_resend(data["id"])
    response = resend(client, data["id"], channel="voice_call")
    assert response.status_code == 200
    assert response.json()["channel"] == "voice_call"
    assert [entry.kind for entry in emulated.sends()] == ["flash_call", "voice_call"]
    assert confirm(client, data["id"], emulated.code_for(KNOWN)).status_code == 200


def test_sms_only_when_enabled(client, user, emulated):
    data = started(client)
    assert "sms" not in data["channels"]
    allow_resend(data["id"])
    refused = resend(client, data["id"], channel="sms")
    assert refused.status_code == 400
    assert refused.json() == {"channel": ["This way of sending the code is not available."]}
    assert [entry.kind for entry in emulated.sends()] == ["flash_call"]

    with override_settings(VOICEPASSWORD={**EMULATED, "SMS_FALLBACK": True}):
        assert "sms" in client.get(url_of(data["id"])).json()["channels"]
        response = resend(client, data["id"], channel="sms")
        assert response.status_code == 200, response.content
        assert response.json()["channel"] == "sms"
        assert [entry.kind for entry in emulated.sends()] == ["flash_call", "sms"]
        # The SMS carries the call's code.
        assert confirm(client, data["id"], emulated.code_for(KNOWN)).status_code == 200


def test_a_channel_that_is_no_channel_is_refused(client, user, emulated):
    assert list(start(client, channel="fax").json()) == ["channel"]
    assert start(client, channel="sms").status_code == 400  # an SMS needs a call first
    data = started(client)
    allow_resend(data["id"])
    for channel in ("fax", None, ["sms"], {"a": 1}, 1):
        response = resend(client, data["id"], channel=channel)
        assert response.status_code == 400
        assert list(response.json()) == ["channel"]
    assert len(emulated.sends()) == 1


# --- limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "numbers", "clients"),
    [
        ("number", [KNOWN, KNOWN], 2),  # one number from two sessions
        ("session", [KNOWN, OTHER], 1),  # two numbers from one session
        ("ip", [KNOWN, OTHER], 2),  # two numbers from two sessions at one address
    ],
)
def test_a_limit_answers_429_with_retry_after(user, emulated, scope, numbers, clients):
    PhoneNumber.objects.create(
        user=get_user_model().objects.create_user("bob", password=None), number=OTHER
    )
    browsers = [Client() for _ in range(clients)]
    with override_settings(VOICEPASSWORD={**EMULATED, "LIMITS": {scope: "1/h"}}):
        assert start(browsers[0], numbers[0]).status_code == 201
        response = start(browsers[-1], numbers[1])
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "limit_exceeded"
    assert body["detail"]
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert len(emulated.sends()) == 1


def test_a_resend_is_limited_too(client, user, emulated):
    with override_settings(VOICEPASSWORD={**EMULATED, "LIMITS": {"number": "1/h"}}):
        data = started(client)
        allow_resend(data["id"])
        response = resend(client, data["id"])
    assert response.status_code == 429
    assert response.json()["code"] == "limit_exceeded"
    assert int(response["Retry-After"]) >= 1
    assert len(emulated.sends()) == 1


# --- what the answers do not tell ----------------------------------------------------


def test_another_sessions_challenge_is_not_there(user, emulated):
    owner, stranger = Client(), Client()
    data = started(owner)
    code = emulated.code_for(KNOWN)
    answers = [
        stranger.get(url_of(data["id"])),
        confirm(stranger, data["id"], code),
        resend(stranger, data["id"]),
        stranger.get(url_of(NOBODY)),
        confirm(stranger, NOBODY, code),
        owner.get(url_of("not-a-uuid")),
        confirm(owner, "x" * 200, code),
    ]
    for response in answers:
        assert response.status_code == 404
        assert response.content == answers[0].content
    assert answers[0].json()["code"] == "not_found"
    # The stranger's tries cost the owner nothing.
    assert Challenge.objects.get(pk=data["id"]).attempts == 0
    assert confirm(owner, data["id"], code).status_code == 200


def test_the_binding_cookie_alone_binds_a_challenge(user, emulated):
    owner, stranger = Client(), Client()
    response = start(owner)
    assert response.status_code == 201
    data = response.json()
    cookie = response.cookies[binding.COOKIE]
    # HttpOnly; scoped and flagged as the session cookie is.
    assert cookie["httponly"]
    assert cookie["samesite"] == settings.SESSION_COOKIE_SAMESITE
    assert cookie["path"] == settings.SESSION_COOKIE_PATH
    assert not cookie["secure"]
    challenge = Challenge.objects.get(pk=data["id"])
    # Stored as an HMAC, never the token itself.
    assert challenge.session_digest
    assert cookie.value not in challenge.session_digest
    assert challenge.session_digest == binding._cookie_digest(cookie.value)

    assert stranger.get(url_of(data["id"])).status_code == 404
    # A token of the right shape but another value binds nothing either.
    stranger.cookies[binding.COOKIE] = "A" * 43
    assert stranger.get(url_of(data["id"])).status_code == 404
    # The cookie's token is the binding: with it, another client is the owner.
    stranger.cookies[binding.COOKIE] = cookie.value
    assert stranger.get(url_of(data["id"])).status_code == 200
    assert confirm(stranger, data["id"], emulated.code_for(KNOWN)).status_code == 200


def test_a_second_start_keeps_the_binding_cookie(user, emulated):
    client = Client()
    first = start(client)
    token = first.cookies[binding.COOKIE].value
    again = start(client)
    assert again.json()["id"] == first.json()["id"]  # the same challenge, found by its binding
    assert binding.COOKIE not in again.cookies  # not set again
    other = start(client, OTHER)
    assert other.status_code == 201
    assert client.cookies[binding.COOKIE].value == token
    assert Challenge.objects.filter(session_digest=binding._cookie_digest(token)).count() == 2


@pytest.mark.parametrize("value", ["", "short", "A" * 44, "not a token!" * 4, "é" * 43])
def test_a_malformed_binding_cookie_is_replaced(user, emulated, value):
    client = Client()
    client.cookies[binding.COOKIE] = value
    response = start(client)
    assert response.status_code == 201
    token = response.cookies[binding.COOKIE].value
    assert token != value
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert client.get(url_of(response.json()["id"])).status_code == 200


def test_the_binding_cookie_follows_the_session_cookie_settings(user, emulated, settings):
    settings.SESSION_COOKIE_SECURE = True
    settings.SESSION_COOKIE_SAMESITE = "Strict"
    settings.SESSION_COOKIE_PATH = "/voicepassword/"
    settings.SESSION_COOKIE_DOMAIN = "example.com"
    cookie = start(Client()).cookies[binding.COOKIE]
    assert cookie["secure"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/voicepassword/"
    assert cookie["domain"] == "example.com"


def test_a_session_limit_counts_by_the_binding_cookie(user, emulated, settings):
    settings.VOICEPASSWORD = {**EMULATED, "LIMITS": {"session": "1/h"}}
    client = Client()
    assert start(client).status_code == 201
    refused = start(client, OTHER)
    assert refused.status_code == 429
    assert refused.json()["code"] == "limit_exceeded"
    # A client without the cookie is another "session".
    assert start(Client(), OTHER).status_code == 201


def test_a_challenge_started_in_a_session_is_found_beside_a_binding_cookie(user, emulated):
    # The HTML flow binds to the session; a binding cookie the client got from
    # the API later does not hide that challenge.
    client = Client()
    url = client.post("/voicepassword/login/", {"number": KNOWN})["Location"]
    challenge_id = url.rstrip("/").rsplit("/", 1)[-1]
    client.cookies[binding.COOKIE] = "B" * 43
    assert client.get(url_of(challenge_id)).status_code == 200
    assert confirm(client, challenge_id, emulated.code_for(KNOWN)).status_code == 200


def test_a_challenge_of_another_code_length_is_confirmed_the_long_way(user, emulated):
    # The one-statement confirm asks for the usual code length; a challenge
    # made with another one (an older release's) is found the long way.
    client = Client()
    data = started(client)
    Challenge.objects.filter(pk=data["id"]).update(code_length=6)
    code = emulated.code_for(KNOWN)
    refused = confirm(client, data["id"], code)  # 4 digits for a 6-digit code
    assert refused.status_code == 400
    assert refused.json()["code"] == ["Enter the 6-digit code."]
    assert Challenge.objects.get(pk=data["id"]).attempts == 0


def test_a_closed_challenge_is_answered_the_long_way(user, emulated):
    client = Client()
    data = started(client)
    code = emulated.code_for(KNOWN)
    Challenge.objects.filter(pk=data["id"]).update(expires_at=timezone.now())
    expired = confirm(client, data["id"], code)
    assert expired.status_code == 410
    assert expired.json()["code"] == "expired"
    # The statement that counts matched nothing, and the long way counted nothing either.
    assert Challenge.objects.get(pk=data["id"]).attempts == 0


def test_a_confirm_login_of_its_own_is_given_a_challenge_read_first(user, emulated):
    seen: list[Any] = []

    class Auditing(ChallengeConfirmView):
        def confirm_login(self, challenge: Challenge, code: str) -> Any:
            seen.append((challenge.attempts, challenge.verified_at))
            return super().confirm_login(challenge, code)

    client = Client()
    data = started(client)
    request = RequestFactory().post(
        url_of(data["id"], "confirm"),
        json.dumps({"code": emulated.code_for(KNOWN)}),
        content_type="application/json",
    )
    request.COOKIES = {binding.COOKIE: client.cookies[binding.COOKIE].value}
    SessionMiddleware(lambda r: HttpResponse()).process_request(request)
    with CaptureQueriesContext(connection) as queries:
        response = Auditing.as_view()(request, challenge_id=data["id"])
    assert response.status_code == 200, response.content
    # The hook saw the challenge as stored, read before the attempt.
    assert seen == [(0, None)]
    read = [q["sql"] for q in queries if q["sql"].startswith('SELECT "voicepassword_challenge"')]
    assert len(read) == 1
    assert Challenge.objects.get(pk=data["id"]).verified_at is not None


@pytest.mark.parametrize("active", [True, False])
def test_a_login_renews_the_numbers_verification_only_for_a_user_who_may_log_in(
    user, emulated, active
):
    earlier = timezone.now() - timedelta(days=30)
    PhoneNumber.objects.filter(number=KNOWN).update(verified_at=earlier)
    client = Client()
    data = started(client)
    # Deactivated after the call went out: the right code logs nobody in.
    type(user).objects.filter(pk=user.pk).update(is_active=active)
    done = confirm(client, data["id"], emulated.code_for(KNOWN))
    renewed = PhoneNumber.objects.get(number=KNOWN).verified_at
    if active:
        assert done.status_code == 200, done.content
        assert renewed > earlier
    else:
        assert done.status_code == 410
        assert done.json()["code"] == "used"
        assert renewed == earlier
        assert "_auth_user_id" not in client.session


def test_known_and_unknown_numbers_get_the_same_answers(user, emulated):
    def visit(number: str) -> list[tuple[int, str, str | None]]:
        client = Client()
        answers = []
        data = started(client, number)
        answers.append(start(client, number))  # the same challenge again
        answers.append(client.get(url_of(data["id"])))
        answers.append(confirm(client, data["id"], "0000"))
        answers.append(resend(client, data["id"]))
        allow_resend(data["id"])
        answers.append(resend(client, data["id"], channel="voice_call"))
        answers.append(confirm(client, data["id"], ARABIC_INDIC["0"] * 4))
        answers.append(confirm(client, data["id"], "00"))
        return [
            (
                response.status_code,
                without_id(response.content),
                response.get("Retry-After"),
            )
            for response in answers
        ]

    known = visit(KNOWN)
    unknown = visit(UNKNOWN)
    known_text = json.dumps(known).replace("***-**-01", "***-**-NN")
    unknown_text = json.dumps(unknown).replace("***-**-03", "***-**-NN")
    assert known_text == unknown_text
    # The number without an account was never called.
    assert emulated.sends(UNKNOWN) == []
    assert len(emulated.sends(KNOWN)) == 2


# --- input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b"not json",
        b"[]",
        b'"79990000001"',
        b"null",
        b"79990000001",
        b'{"number": NaN}',
        b'{"number": 1e400}',
        b'{"number": "\\u0000"}',
        b'{"number": "\\ud800"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"number": "' + b"7" * 5000 + b'"}',
        b"\xff\xfe",
        b'{"number": 79990000001}',
        b'{"number": null}',
        b'{"number": ["79990000001"]}',
        b'{"number": {"n": "79990000001"}}',
        b'{"number": true}',
        b'{"number": "79990000001", "channel": 1}',
        b'{"number": "79990000001", "channel": null}',
        b'{"number": "79990000001", "purpose": "admin"}',
        b'{"number": "79990000001", "purpose": ["login"]}',
    ],
)
def test_bad_start_bodies_are_4xx_and_call_nobody(client, user, emulated, body):
    response = post(client, START, body)
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json"
    assert emulated.log == []


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "invalid"),
        ("+7 999 000-00-01 ext. 5", "extension"),
        ("+7 800 000-00-00", "type"),
        ("+77012345678", "region"),
        ("7" * 65, "invalid"),
    ],
)
def test_an_unusable_number_is_explained(client, emulated, number, code):
    response = start(client, number)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["number"]
    assert isinstance(body["number"][0], str)
    assert emulated.log == []


@pytest.mark.parametrize(
    "typed",
    [
        "".join(ARABIC_INDIC[digit] for digit in KNOWN),
        "".join(chr(0xFF10 + int(digit)) for digit in "89990000001"),  # full-width
        KNOWN + "\n",
        "+7 (999) 000-00-01",
    ],
)
def test_numbers_in_other_spellings_are_read(client, user, emulated, typed):
    data = started(client, typed)
    assert data["masked_number"] == "+7 999 ***-**-01"
    assert len(emulated.sends(KNOWN)) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"code": 1234}',
        b'{"code": null}',
        b'{"code": ["1234"]}',
        b'{"code": "' + b"1" * 100 + b'"}',
        b'{"code": 1e400}',
        b'{"code": "\\u0000\\u0000\\u0000\\u0000"}',
        b"{}",
    ],
)
def test_bad_confirm_bodies_are_400_and_cost_no_attempt(client, user, emulated, body):
    data = started(client)
    response = post(client, url_of(data["id"], "confirm"), body)
    assert response.status_code == 400, response.content
    assert Challenge.objects.get(pk=data["id"]).attempts == 0


def test_bodies_other_than_json_are_refused(client, user, emulated):
    form = client.post(START, {"number": KNOWN})
    assert form.status_code == 415
    assert form.json()["code"] == "unsupported_media_type"
    text = client.post(START, data='{"number": "79990000001"}', content_type="text/plain")
    assert text.status_code == 415
    big = post(client, START, {"number": KNOWN, "pad": "x" * 5000})
    assert big.status_code == 413
    assert big.json()["code"] == "payload_too_large"
    broken = post(client, START, b'{"number": ')
    assert broken.status_code == 400
    assert broken.json()["code"] == "parse_error"
    assert list(post(client, START, b"[]").json()) == ["non_field_errors"]
    assert emulated.log == []


def test_the_sites_rest_framework_defaults_do_not_lock_out_logins(client, user, emulated):
    with override_settings(
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "rest_framework.authentication.BasicAuthentication"
            ],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        }
    ):
        data = started(client)
        assert confirm(client, data["id"], emulated.code_for(KNOWN)).status_code == 200


def test_a_first_login_creates_the_user_with_create_users(client, emulated):
    with override_settings(VOICEPASSWORD={**EMULATED, "CREATE_USERS": True}):
        data = started(client, UNKNOWN)
        response = confirm(client, data["id"], emulated.code_for(UNKNOWN))
    assert response.status_code == 200
    created = PhoneNumber.objects.get(number=UNKNOWN).user
    assert response.json() == {"verified": True, "user": {"id": created.pk}}
    assert client.session["_auth_user_id"] == str(created.pk)


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=5,
    )
)
def test_no_field_value_is_a_server_error(client, emulated, value):
    responses = [
        post(client, START, {"number": "abc", "channel": value}),
        post(client, START, {"number": "abc", "purpose": value}),
        post(client, START, {"number": value}),
        post(client, url_of(NOBODY, "confirm"), {"code": value}),
        post(client, url_of(NOBODY, "resend"), {"channel": value}),
        post(client, START, value),
    ]
    for response in responses:
        assert response.status_code < 500, response.content
    # A valid number is never typed by chance here, but make sure of it.
    assert all(
        entry.number is None or entry.number.startswith("7999000000") for entry in emulated.log
    )


# --- the provider failing --------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "79990000020",  # number_not_valid
        "79990000023",  # not_enough_money
        "79990000024",  # user_disabled
        "79990000031",  # HTTP 500
        "79990000032",  # an HTML page: the outcome (and the provider's code) unknown
        "79990000034",  # dropped connection
    ],
)
def test_a_provider_failure_is_503_with_a_generic_message(user, emulated, caplog, number):
    # A verification calls every number, so its failure tells nothing about
    # accounts and is said; a login's is not (test_accounts_alike.py).
    client = Client()
    client.force_login(user, backend=BACKEND)
    with caplog.at_level(logging.INFO, logger="django_voicepassword"):
        response = start(client, number, purpose="verify")
    assert response.status_code == 503
    assert response.json() == {
        "detail": "We could not call you just now. Please try again later.",
        "code": "service_unavailable",
    }
    assert caplog.records, "the failure is logged"
    PhoneNumber.objects.create(
        user=get_user_model().objects.create_user("carol", password=None), number=number
    )
    assert start(Client(), number).status_code == 201  # a login


def test_a_call_placed_without_a_code_is_503(client, user, emulated, monkeypatch):
    # The provider accepted a flash call but its answer named no code: nothing
    # the challenge could check. The service's failure, not a closed channel.
    def placed_without_code(*args, **kwargs):
        return None, SimpleNamespace(code=None)

    monkeypatch.setattr(calls, "place", placed_without_code)
    client.force_login(user, backend=BACKEND)
    response = start(client, OTHER, purpose="verify")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


def test_a_failed_resend_is_503(client, user, emulated):
    client.force_login(user, backend=BACKEND)
    data = started(client, OTHER, purpose="verify")
    allow_resend(data["id"])
    emulated.emulator.user_disabled = True  # refused: nothing placed
    response = resend(client, data["id"], channel="voice_call")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


# --- the hook for sites that issue tokens ----------------------------------------------


class TokenConfirmView(ChallengeConfirmView):
    """What docs/api.md shows: a token in the answer, no session."""

    def perform_login(self, user, challenge):
        pass

    def get_response_data(self, user, challenge):
        data = super().get_response_data(user, challenge)
        data["token"] = f"token-for-{user.pk}"
        return data


urlpatterns = [
    path("voicepassword/api/challenges/<str:challenge_id>/confirm/", TokenConfirmView.as_view()),
    path("voicepassword/", include("django_voicepassword.urls")),
]


@override_settings(ROOT_URLCONF=__name__)
def test_a_subclass_answers_with_a_token(client, user, emulated):
    data = started(client)
    response = confirm(client, data["id"], emulated.code_for(KNOWN))
    assert response.status_code == 200
    assert response.json() == {
        "verified": True,
        "user": {"id": user.pk},
        "token": f"token-for-{user.pk}",
    }
    assert "_auth_user_id" not in client.session
    # Refusals are the app's own.
    again = started(client)
    refused = confirm(client, again["id"], wrong_code(emulated.code_for(KNOWN)))
    assert refused.status_code == 400
    assert refused.json()["code"] == "wrong_code"


def test_phone_verified_is_sent_after_a_login(client, user, emulated):
    received: list[dict[str, Any]] = []

    def on_verified(sender, **kwargs):
        received.append({"sender": sender, **kwargs})

    phone_verified.connect(on_verified)
    try:
        data = started(client)
        assert confirm(client, data["id"], emulated.code_for(KNOWN)).status_code == 200
    finally:
        phone_verified.disconnect(on_verified)
    [event] = received
    assert event["sender"] is PhoneNumber
    assert event["user"] == user
    assert event["number"] == KNOWN
    assert str(event["challenge"].pk) == data["id"]
    assert event["request"] is not None


def test_the_url_names(user):
    challenge_id = NOBODY
    assert reverse("voicepassword:api_challenges") == START
    assert reverse("voicepassword:api_challenge", args=[challenge_id]) == url_of(challenge_id)
    for action in ("resend", "confirm"):
        name = f"voicepassword:api_challenge_{action}"
        assert reverse(name, args=[challenge_id]) == url_of(challenge_id, action)


# --- the OpenAPI schema --------------------------------------------------------------------


# drf-spectacular's decorators take the schema class of REST_FRAMEWORK when the
# views are imported (as in any site, whose settings come first): generate in a
# process whose settings name it from the start.
SCHEMA_SCRIPT = """
import json
from django.conf import settings
import tests.settings as base
settings.configure(
    **{name: getattr(base, name) for name in dir(base) if name.isupper()},
    REST_FRAMEWORK={"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"},
)
import django
django.setup()
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
document = SchemaGenerator().get_schema(request=None, public=True)
print(json.dumps({
    "document": document,
    "warnings": sorted(map(str, GENERATOR_STATS._warn_cache)),
    "errors": sorted(map(str, GENERATOR_STATS._error_cache)),
}, default=str))
"""


def run_python(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONWARNINGS": "error", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_schema_describes_the_api():
    pytest.importorskip("drf_spectacular", reason="drf-spectacular (the openapi extra) missing")
    result = run_python(SCHEMA_SCRIPT)
    assert result.returncode == 0, result.stderr
    generated = json.loads(result.stdout)
    assert generated["warnings"] == []
    assert generated["errors"] == []
    document = generated["document"]
    paths = document["paths"]
    base = "/voicepassword/api/challenges/"
    # The provider's callback is not part of the site's API.
    assert set(paths) == {
        base,
        base + "{challenge_id}/",
        base + "{challenge_id}/resend/",
        base + "{challenge_id}/confirm/",
    }
    assert set(paths[base]["post"]["responses"]) >= {"201", "400", "429", "503"}
    confirm_responses = paths[base + "{challenge_id}/confirm/"]["post"]["responses"]
    assert set(confirm_responses) >= {"200", "400", "404", "410", "503"}
    schemas = document["components"]["schemas"]
    assert set(schemas["Challenge"]["properties"]) == INFO_KEYS


def test_the_api_works_without_drf_spectacular():
    script = (
        "import sys; sys.modules['drf_spectacular'] = None\n"
        "import django; django.setup()\n"
        "from django_voicepassword.api import schema, urls\n"
        "assert not schema.AVAILABLE\n"
        "from django_voicepassword.api.login import ChallengeStartView\n"
        "assert ChallengeStartView.post.__name__ == 'post'\n"
    )
    result = run_python(script, DJANGO_SETTINGS_MODULE="tests.settings")
    assert result.returncode == 0, result.stderr
