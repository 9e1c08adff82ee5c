"""``login_number``: the number a session logged in with, not the user's newest."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.test import Client, override_settings
from django.utils import timezone

from django_voicepassword import verification
from django_voicepassword.auth_backends import LOGIN_NUMBER_SESSION_KEY, login_number
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import PhoneNumber

pytestmark = pytest.mark.django_db(transaction=True)

BACKEND = "django_voicepassword.auth_backends.PhoneCodeBackend"
BACKENDS = ["django.contrib.auth.backends.ModelBackend", BACKEND]
OLDER = "79990000001"
NEWER = "79990000007"
ADDED = "79990000008"


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    with override_settings(
        VOICEPASSWORD={"API_KEY": "emulator-key", "LIMITS": {}},
        AUTHENTICATION_BACKENDS=BACKENDS,
        LOGIN_REDIRECT_URL="/welcome/",
    ):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def user():
    """A user with two verified numbers; ``NEWER`` is the newest."""
    person = get_user_model().objects.create_user("alice", password="a long password 1")
    PhoneNumber.objects.create(
        user=person, number=OLDER, verified_at=timezone.now() - timedelta(days=1)
    )
    PhoneNumber.objects.create(user=person, number=NEWER)
    return person


def seen_by(client: Client) -> str | None:
    """What ``login_number`` says for the next request of ``client``'s session."""
    request = HttpRequest()
    request.session = client.session
    user_id = client.session.get("_auth_user_id")
    request.user = get_user_model().objects.get(pk=user_id) if user_id else AnonymousUser()
    return login_number(request)


def log_in_by_pages(client: Client, emulated: Any, number: str, flow: str = "login") -> None:
    started = client.post(f"/voicepassword/{flow}/", {"number": number})
    assert started.status_code == 302, started.content.decode()[:2000]
    done = client.post(started["Location"], {"code": emulated.code_for(number)})
    assert done.status_code == 302, done.content.decode()[:2000]


def test_the_login_pages_record_the_number_used_not_the_newest(client, user, emulated):
    assert seen_by(client) is None
    log_in_by_pages(client, emulated, OLDER)
    assert client.session["_auth_user_id"] == str(user.pk)
    # The login re-verified OLDER, so it is the newest now: verify NEWER to make
    # it the newest again, and the login's number must not follow.
    log_in_by_pages(client, emulated, ADDED, flow="verify")
    assert user.voicepassword_numbers.first().number == ADDED
    assert seen_by(client) == OLDER


def test_the_api_records_the_number_too(client, user, emulated):
    def post(url: str, body: dict[str, Any]) -> Any:
        return client.post(url, json.dumps(body), content_type="application/json")

    started = post("/voicepassword/api/challenges/", {"number": NEWER})
    assert started.status_code == 201, started.content
    challenge_id = started.json()["id"]
    done = post(
        f"/voicepassword/api/challenges/{challenge_id}/confirm/",
        {"code": emulated.code_for(NEWER)},
    )
    assert done.status_code == 200, done.content
    assert seen_by(client) == NEWER


def test_a_login_of_another_kind_or_a_log_out_forgets_it(client, user, emulated):
    log_in_by_pages(client, emulated, OLDER)
    assert seen_by(client) == OLDER
    # The same user, by password, in the same session: not a phone login.
    assert client.login(username="alice", password="a long password 1")
    assert LOGIN_NUMBER_SESSION_KEY not in client.session
    assert seen_by(client) is None

    log_in_by_pages(client, emulated, OLDER)
    assert seen_by(client) == OLDER
    client.logout()
    assert seen_by(client) is None


def test_a_request_without_a_login_or_a_session_has_none(client, user, emulated):
    log_in_by_pages(client, emulated, OLDER)
    request = HttpRequest()
    request.session = client.session
    request.user = AnonymousUser()
    assert login_number(request) is None
    request = HttpRequest()
    request.user = user
    assert login_number(request) is None
