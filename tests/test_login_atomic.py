"""A confirm never uses up a code without logging in.

The check of the code and the login are one transaction
(:func:`~django_voicepassword.auth_backends.atomic_login`): when the login
fails (SQLite locked past its timeout, a session that cannot be saved), the
code stays unused, the browser keeps its session, the page or the API answers
503 with ``Retry-After``, and the same code logs in when entered again. Each
failure is injected as an ``OperationalError`` at a step of the login.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import OperationalError
from django.test import Client, override_settings

from django_voicepassword import binding, verification
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Call, Challenge, PhoneNumber

pytestmark = pytest.mark.django_db(transaction=True)

BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django_voicepassword.auth_backends.PhoneCodeBackend",
]
KNOWN = "79990000001"  # has an account
UNKNOWN = "79990000003"  # has none: CREATE_USERS makes one at the login
LOGIN = "/voicepassword/login/"
API = "/voicepassword/api/challenges/"
WELCOME = "/welcome/"
EMULATED = {"API_KEY": "emulator-key", "LIMITS": {}, "CREATE_USERS": True}


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    with override_settings(
        VOICEPASSWORD=EMULATED, AUTHENTICATION_BACKENDS=BACKENDS, LOGIN_REDIRECT_URL=WELCOME
    ):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def user():
    person = get_user_model().objects.create_user("alice", password=None)
    PhoneNumber.objects.create(user=person, number=KNOWN)
    return person


class Locked:
    """Raise "database is locked" at one step of the login, until ``clear()``."""

    def __init__(self) -> None:
        self.armed = True
        self.raised = 0

    def __call__(self) -> None:
        if self.armed:
            self.raised += 1
            raise OperationalError("database is locked")

    def clear(self) -> None:
        self.armed = False


@pytest.fixture(params=["signal", "session_save"])
def locked(request, monkeypatch) -> Iterator[Locked]:
    """The failure at the login step: a ``user_logged_in`` receiver, or the session's save."""
    lock = Locked()
    if request.param == "signal":
        # django.contrib.auth's own receiver updates last_login here: a write.
        def receiver(**kwargs: Any) -> None:
            lock()

        user_logged_in.connect(receiver, weak=False)
        yield lock
        user_logged_in.disconnect(receiver)
    else:
        save = SessionStore.save

        def failing_save(self: SessionStore, must_create: bool = False) -> None:
            if SESSION_KEY in self:
                lock()  # the save of the logged-in session
            save(self, must_create)

        monkeypatch.setattr(SessionStore, "save", failing_save)
        yield lock


def unused(challenge_id: str) -> bool:
    return Challenge.objects.get(pk=challenge_id).verified_at is None


def session_row_exists(key: str) -> bool:
    return SessionStore().exists(key)


@pytest.mark.parametrize("number", [KNOWN, UNKNOWN])
def test_the_html_flow_keeps_the_code_when_the_login_fails(
    client: Client, user, emulated, locked, number, caplog
):
    started = client.post(LOGIN, {"number": number})
    assert started.status_code == 302
    url = started["Location"]
    challenge_id = url.rstrip("/").rsplit("/", 1)[-1]
    code = emulated.code_for(number)
    session_key = client.cookies["sessionid"].value
    users = get_user_model().objects.count()

    with caplog.at_level("WARNING", logger="django_voicepassword.views"):
        failed = client.post(url, {"code": code})

    assert locked.raised == 1
    assert failed.status_code == 503
    assert failed["Retry-After"] == "2"
    assert "We could not log you in just now" in failed.content.decode()
    assert 'name="code"' in failed.content.decode()  # the form, to enter it again
    assert unused(challenge_id)
    assert SESSION_KEY not in client.session
    assert client.cookies["sessionid"].value == session_key
    assert session_row_exists(session_key)  # the cycled key's delete was rolled back
    assert get_user_model().objects.count() == users  # no user created half-way
    assert any("not completed" in r.getMessage() for r in caplog.records)

    locked.clear()
    again = client.post(url, {"code": code})
    assert again.status_code == 302
    assert again["Location"] == WELCOME
    assert SESSION_KEY in client.session
    assert not unused(challenge_id)


@pytest.mark.parametrize("number", [KNOWN, UNKNOWN])
def test_the_api_keeps_the_code_when_the_login_fails(
    client: Client, user, emulated, locked, number
):
    started = client.post(API, {"number": "+" + number}, content_type="application/json")
    assert started.status_code == 201
    challenge_id = started.json()["id"]
    code = emulated.code_for(number)
    # The start bound the challenge with the binding cookie: no session yet.
    assert binding.COOKIE in client.cookies
    assert "sessionid" not in client.cookies
    users = get_user_model().objects.count()
    confirm = f"{API}{challenge_id}/confirm/"
    body = json.dumps({"code": code})

    failed = client.post(confirm, body, content_type="application/json")

    assert failed.status_code == 503
    assert failed["Retry-After"] == "2"
    assert failed.json()["code"] == "login_unavailable"
    assert unused(challenge_id)
    # The login's session was rolled back: no session was stored, no cookie
    # sent (read before client.session, which would make one).
    assert "sessionid" not in client.cookies
    assert not Session.objects.exists()
    assert get_user_model().objects.count() == users

    locked.clear()
    again = client.post(confirm, body, content_type="application/json")
    assert again.status_code == 200, again.content
    assert again.json()["verified"] is True
    assert SESSION_KEY in client.session
    assert not unused(challenge_id)


def test_a_wrong_code_still_counts_its_attempt(client: Client, user, emulated):
    url = client.post(LOGIN, {"number": KNOWN})["Location"]
    challenge_id = url.rstrip("/").rsplit("/", 1)[-1]
    wrong = "1111" if emulated.code_for(KNOWN) != "1111" else "2222"

    assert client.post(url, {"code": wrong}).status_code == 200

    assert Challenge.objects.get(pk=challenge_id).attempts == 1


def test_a_first_login_links_its_call_to_the_user_it_created(
    client: Client, emulated, locked, django_user_model
):
    # The issue: the call that created a user at their first login showed no
    # user in the admin; the challenge and its calls were made before the user.
    url = client.post(LOGIN, {"number": UNKNOWN})["Location"]
    challenge_id = url.rstrip("/").rsplit("/", 1)[-1]
    code = emulated.code_for(UNKNOWN)
    [call] = Call.objects.filter(challenge_id=challenge_id)
    assert call.user is None

    assert client.post(url, {"code": code}).status_code == 503
    call.refresh_from_db()
    assert call.user is None  # a login that failed links nothing (and created no one)
    assert Challenge.objects.get(pk=challenge_id).user is None

    locked.clear()
    assert client.post(url, {"code": code}).status_code == 302
    created = django_user_model.objects.get(pk=client.session[SESSION_KEY])
    call.refresh_from_db()
    assert call.user == created
    assert Challenge.objects.get(pk=challenge_id).user == created

    admin = django_user_model.objects.create_superuser("boss", password="pw")
    staff = Client()
    staff.force_login(admin)
    page = staff.get(f"/admin/voicepassword/call/{call.pk}/change/").content.decode()
    assert created.get_username() in page
    listing = staff.get("/admin/voicepassword/call/").content.decode()
    assert created.get_username() in listing
