"""The HTML login and verification flows, through Django's test client and the emulator."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from django_voicepassword import verification
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Challenge, PhoneNumber

pytestmark = pytest.mark.django_db(transaction=True)

BACKEND = "django_voicepassword.auth_backends.PhoneCodeBackend"
BACKENDS = ["django.contrib.auth.backends.ModelBackend", BACKEND]
KNOWN = "79990000001"  # has an account
OTHER = "79990000005"  # for verifications
UNKNOWN = "79990000003"  # has none
LOGIN = "/voicepassword/login/"
VERIFY = "/voicepassword/verify/"
WELCOME = "/welcome/"
EMULATED = {"API_KEY": "emulator-key", "LIMITS": {}}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    # The pause that makes a number without an account as slow as a call.
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    with override_settings(
        VOICEPASSWORD=EMULATED,
        AUTHENTICATION_BACKENDS=BACKENDS,
        LOGIN_REDIRECT_URL=WELCOME,
    ):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def user():
    person = get_user_model().objects.create_user("alice", password=None)
    PhoneNumber.objects.create(user=person, number=KNOWN)
    return person


def start(client, number, *, url=LOGIN, **extra):
    """POST the phone form; return the response."""
    return client.post(url, {"number": number, **extra})


def code_url_of(response):
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def challenge_of(url):
    found = UUID_RE.search(url)
    assert found is not None, url
    return Challenge.objects.get(pk=found[0])


def allow_resend(url):
    Challenge.objects.filter(pk=challenge_of(url).pk).update(
        resend_at=timezone.now() - timedelta(seconds=1)
    )


def wrong_code(right: str) -> str:
    return "1111" if right != "1111" else "2222"


def normalized(content: bytes) -> str:
    """The page without what differs between any two visits: tokens, ids, the clock."""
    text = content.decode()
    text = CSRF_RE.sub('name="csrfmiddlewaretoken" value="TOKEN"', text)
    return UUID_RE.sub("CHALLENGE", text)


# --- the whole flows -------------------------------------------------------------


def test_login_end_to_end(client, user, emulated):
    response = client.get(LOGIN)
    assert response.status_code == 200
    url = code_url_of(start(client, "+7 999 000-00-01"))
    page = client.get(url)
    text = page.content.decode()
    assert "+7 999 ***-**-01" in text
    assert "enter the last 4 digits of the calling number" in text
    assert KNOWN not in text

    code = emulated.code_for(KNOWN)
    done = client.post(url, {"code": code})
    assert done.status_code == 302
    assert done["Location"] == WELCOME
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session["_auth_user_backend"] == BACKEND
    assert len(emulated.sends()) == 1
    # The code page of a used challenge leads back to the start.
    assert client.get(url)["Location"] == LOGIN


def test_verify_end_to_end(client, user, emulated):
    client.force_login(user, backend=BACKEND)
    assert client.get(VERIFY).status_code == 200
    url = code_url_of(start(client, OTHER, url=VERIFY))
    assert url.startswith(VERIFY)
    assert "+7 999 ***-**-05" in client.get(url).content.decode()

    done = client.post(url, {"code": emulated.code_for(OTHER)}, follow=False)
    assert done.status_code == 302
    assert done["Location"] == WELCOME
    assert PhoneNumber.objects.get(number=OTHER).user == user
    assert challenge_of(url).purpose == Challenge.Purpose.VERIFY
    # The user stays logged in as themselves.
    assert client.session["_auth_user_id"] == str(user.pk)


def test_verify_needs_a_logged_in_user(client, emulated):
    for response in (client.get(VERIFY), start(client, OTHER, url=VERIFY)):
        assert response.status_code == 302
        assert response["Location"].startswith(settings.LOGIN_URL)
    assert emulated.sends() == []


def test_a_login_challenge_is_not_a_verification(client, user, emulated):
    client.force_login(user, backend=BACKEND)
    url = code_url_of(start(client, OTHER))
    challenge = challenge_of(url)
    assert client.get(url).status_code == 200
    response = client.get(reverse("voicepassword:verify_code", args=[challenge.pk]))
    assert response.status_code == 302
    assert response["Location"] == VERIFY


# --- security ----------------------------------------------------------------------


def test_login_replaces_a_planted_session(user, emulated):
    planted = SessionStore()
    planted.create()
    planted_key = planted.session_key
    assert planted_key is not None
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = planted_key
    url = code_url_of(start(client, KNOWN))
    # The challenge was started in the planted session ...
    assert client.cookies[settings.SESSION_COOKIE_NAME].value == planted_key
    client.post(url, {"code": emulated.code_for(KNOWN)})
    # ... and the login gave the browser another one, the planted one is gone.
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != planted_key
    assert not SessionStore().exists(planted_key)
    assert SessionStore(session_key=after)["_auth_user_id"] == str(user.pk)


@pytest.mark.parametrize(
    "url", [LOGIN, "/voicepassword/login/00000000-0000-4000-8000-000000000000/"]
)
def test_a_post_without_the_csrf_token_is_refused_and_calls_nobody(user, emulated, url):
    client = Client(enforce_csrf_checks=True)
    client.get(LOGIN)
    response = client.post(url, {"number": KNOWN, "code": "1234", "resend": "flash_call"})
    assert response.status_code == 403
    assert emulated.sends() == []
    assert emulated.log == []


def test_a_resend_without_the_csrf_token_sends_nothing(user, emulated):
    client = Client(enforce_csrf_checks=True)
    client.get(LOGIN)
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    url = code_url_of(client.post(LOGIN, {"number": KNOWN, "csrfmiddlewaretoken": token}))
    allow_resend(url)
    assert client.post(url, {"resend": "voice_call"}).status_code == 403
    assert len(emulated.sends()) == 1
    # With the token, the same request sends.
    assert (
        client.post(url, {"resend": "voice_call", "csrfmiddlewaretoken": token}).status_code == 302
    )
    assert len(emulated.sends()) == 2


def test_get_never_calls(client, user, emulated):
    for _ in range(2):
        assert client.get(LOGIN, {"number": KNOWN}).status_code == 200
        assert client.head(LOGIN).status_code == 200
    url = code_url_of(start(client, KNOWN))
    assert len(emulated.sends()) == 1
    allow_resend(url)
    for query in ({}, {"resend": "voice_call"}, {"code": "1234"}):
        assert client.get(url, query).status_code == 200
    client.force_login(user, backend=BACKEND)
    assert client.get(VERIFY, {"number": OTHER}).status_code == 200
    assert len(emulated.sends()) == 1
    assert challenge_of(url).attempts == 0


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "/\\evil.com",
        "https:evil.com",
        "javascript:alert(1)",
        "http://evil.com",
        "https://evil.com/voicepassword/",
        "///evil.com",
        "\\\\evil.com",
    ],
)
def test_next_never_leaves_the_site(client, user, emulated, target):
    client.get(LOGIN, {"next": target})
    url = code_url_of(start(client, KNOWN, next=target))
    done = client.post(url, {"code": emulated.code_for(KNOWN)})
    assert done["Location"] == WELCOME


def test_next_on_the_site_is_followed(client, user, emulated):
    page = client.get(LOGIN, {"next": "/account/?tab=phones"})
    assert 'value="/account/?tab=phones"' in page.content.decode()
    url = code_url_of(start(client, KNOWN, next="/account/?tab=phones"))
    done = client.post(url, {"code": emulated.code_for(KNOWN)})
    assert done["Location"] == "/account/?tab=phones"


def test_next_is_checked_again_at_the_end(client, user, emulated):
    url = code_url_of(start(client, KNOWN, next="/account/"))
    session = client.session
    # Whatever put it there (an older version, another app), it is checked again.
    session["_voicepassword_next"] = {str(challenge_of(url).pk): "//evil.com"}
    session.save()
    done = client.post(url, {"code": emulated.code_for(KNOWN)})
    assert done["Location"] == WELCOME


def test_the_code_page_belongs_to_the_session_that_asked(user, emulated):
    mine, theirs = Client(), Client()
    url = code_url_of(start(mine, KNOWN))
    for response in (
        theirs.get(url),
        theirs.post(url, {"code": emulated.code_for(KNOWN)}),
        theirs.post(url, {"resend": "voice_call"}),
    ):
        assert response.status_code == 302
        assert response["Location"] == LOGIN
    assert "_auth_user_id" not in theirs.session
    assert len(emulated.sends()) == 1
    # An id that was never issued, too.
    stranger = reverse("voicepassword:login_code", args=["00000000-0000-4000-8000-000000000000"])
    assert mine.get(stranger)["Location"] == LOGIN


def test_known_and_unknown_numbers_get_the_same_pages(user, emulated):
    # One number, first with an account, then without: the pages may differ
    # only in the CSRF token and the challenge id.
    pages: dict[bool, list[tuple[int, str]]] = {}
    for known in (True, False):
        if not known:
            PhoneNumber.objects.filter(number=KNOWN).delete()
        client = Client()
        form = client.get(LOGIN)
        sent = start(client, "+7 999 000-00-01")
        url = code_url_of(sent)
        code_page = client.get(url)
        wrong = client.post(url, {"code": wrong_code(emulated.code_for(KNOWN))})
        pages[known] = [
            (form.status_code, normalized(form.content)),
            (sent.status_code, normalized(sent.content) + UUID_RE.sub("ID", sent["Location"])),
            (code_page.status_code, normalized(code_page.content)),
            (wrong.status_code, normalized(wrong.content)),
        ]
    assert pages[True] == pages[False]
    assert "Wrong code. You have 2 more attempts." in pages[False][3][1]
    # Only the number with an account was called.
    assert len(emulated.sends()) == 1


# --- resend, switch, SMS -------------------------------------------------------------


def test_the_code_page_counts_down_to_the_next_code(client, user, emulated):
    url = code_url_of(start(client, KNOWN))
    text = client.get(url).content.decode()
    assert 'data-vp-countdown="30"' in text or 'data-vp-countdown="29"' in text
    assert re.search(r"data-vp-clock>0:(30|29)<", text)
    assert "voicepassword/countdown.js" in text

    early = client.post(url, {"resend": "flash_call"})
    assert early.status_code == 429
    assert 0 < int(early["Retry-After"]) <= 30
    assert "Please wait a little before asking for another code. Try again in" in (
        early.content.decode()
    )
    assert 'aria-describedby="vp-errors"' in early.content.decode()
    assert len(emulated.sends()) == 1

    allow_resend(url)
    again = client.post(url, {"resend": "flash_call"})
    assert again.status_code == 302
    assert len(emulated.sends()) == 2
    # The next wait is longer (RESEND_COOLDOWNS: 30, then 60).
    text = client.get(again["Location"]).content.decode()
    assert re.search(r'data-vp-countdown="(60|59)"', text)


def test_switch_to_a_voice_call(client, user, emulated):
    url = code_url_of(start(client, KNOWN))
    assert 'value="voice_call"' in client.get(url).content.decode()
    allow_resend(url)
    switched = client.post(url, {"resend": "voice_call"})
    assert switched.status_code == 302
    url = switched["Location"]
    assert emulated.last_call(KNOWN).kind == "voice_call"
    text = client.get(url).content.decode()
    assert "listen to the code" in text
    done = client.post(url, {"code": emulated.code_for(KNOWN)})
    assert done["Location"] == WELCOME
    assert client.session["_auth_user_id"] == str(user.pk)


def test_sms_is_offered_only_when_enabled(client, user, emulated):
    url = code_url_of(start(client, KNOWN))
    assert 'value="sms"' not in client.get(url).content.decode()
    allow_resend(url)
    refused = client.post(url, {"resend": "sms"})
    assert refused.status_code == 400
    assert len(emulated.sends()) == 1

    with override_settings(VOICEPASSWORD={**EMULATED, "SMS_FALLBACK": True}):
        assert 'value="sms"' in client.get(url).content.decode()
        sent = client.post(url, {"resend": "sms"})
        assert sent.status_code == 302
        text = client.get(sent["Location"]).content.decode()
        assert "Enter the code from the SMS" in text
        assert emulated.last_call().kind == "sms"


# --- codes ------------------------------------------------------------------------------


def test_a_wrong_code_says_how_many_attempts_are_left(client, user, emulated):
    url = code_url_of(start(client, KNOWN))
    wrong = wrong_code(emulated.code_for(KNOWN))
    first = client.post(url, {"code": wrong})
    text = first.content.decode()
    assert first.status_code == 200
    assert "Wrong code. You have 2 more attempts." in text
    assert 'aria-invalid="true"' in text
    assert 'aria-describedby="id_code_error"' in text
    assert re.search(
        r'<input[^>]*autofocus[^>]*name="code"|<input[^>]*name="code"[^>]*autofocus', text
    )
    assert (
        "Wrong code. You have 1 more attempt."
        in client.post(url, {"code": wrong}).content.decode()
    )
    last = client.post(url, {"code": wrong}).content.decode()
    assert "Wrong code, and no attempts are left. You can ask for a new code." in last
    assert 'name="code"' not in last
    assert 'value="flash_call"' in last
    assert f'href="{LOGIN}"' in last
    # Even the right code does nothing now.
    client.post(url, {"code": emulated.code_for(KNOWN)})
    assert "_auth_user_id" not in client.session


ODD_CODES = [
    "1234\n",
    " 12 34 ",
    "\u0661\u0662\u0663\u0664",  # Arabic-Indic
    "\uff11\uff12\uff13\uff14",  # full-width
    "",
    "abcd",
    "12345",
    "1\x002",
    "9" * 100,
    "\u0663",
]


@pytest.mark.parametrize("typed", ODD_CODES)
def test_odd_codes_never_fail_the_page(client, user, emulated, typed):
    url = code_url_of(start(client, KNOWN))
    response = client.post(url, {"code": typed})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_a_code_in_other_digits_is_read(client, user, emulated):
    url = code_url_of(start(client, KNOWN))
    arabic = emulated.code_for(KNOWN).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    done = client.post(url, {"code": arabic + "\n"})
    assert done["Location"] == WELCOME


def test_a_malformed_code_costs_no_attempt(client, user, emulated):
    url = code_url_of(start(client, KNOWN))
    response = client.post(url, {"code": "12a4"})
    assert "Enter the 4-digit code." in response.content.decode()
    assert challenge_of(url).attempts == 0


def test_an_expired_code_offers_to_start_again(client, user, emulated):
    url = code_url_of(start(client, KNOWN, next="/account/"))
    Challenge.objects.filter(pk=challenge_of(url).pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for response in (client.get(url), client.post(url, {"code": emulated.code_for(KNOWN)})):
        text = response.content.decode()
        assert "This code has expired." in text
        assert 'name="code"' not in text
        assert 'href="/voicepassword/login/?next=%2Faccount%2F"' in text
    assert "_auth_user_id" not in client.session


# --- errors on the phone form ----------------------------------------------------------


@pytest.mark.parametrize("typed", ["", "12", "+7 999 000-00-0", "call me", "7" * 200])
def test_an_invalid_number_is_explained(client, emulated, typed):
    response = start(client, typed)
    text = response.content.decode()
    assert response.status_code == 200
    assert re.search(r"Enter (a|a valid) phone number\.", text)
    assert 'aria-invalid="true"' in text
    assert 'id="id_number_error"' in text
    assert emulated.sends() == []


def test_a_limit_answers_429_with_when_to_retry(client, user, emulated):
    with override_settings(VOICEPASSWORD={**EMULATED, "LIMITS": {"session": "1/h"}}):
        code_url_of(start(client, KNOWN))
        refused = start(client, OTHER)
    text = refused.content.decode()
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "Too many codes were requested in this session." in text
    assert "Try again in" in text
    assert 'role="alert" id="vp-errors"' in text
    # The number is not what was wrong: described by the alert, not marked invalid.
    assert 'aria-describedby="id_number_helptext vp-errors"' in text
    assert 'aria-invalid="true"' not in text.split("</style>")[1]
    assert len(emulated.sends()) == 1


@pytest.mark.parametrize("number", ["79990000023", "79990000031", "79990000024"])
def test_a_provider_failure_shows_no_provider_text(client, emulated, caplog, number):
    # A verification's failure is said (every number is called, so it tells
    # nothing about accounts); a login's looks sent (test_accounts_alike.py).
    person = get_user_model().objects.create_user("bob", password=None)
    client.force_login(person, backend=BACKEND)
    with caplog.at_level(logging.ERROR, logger="django_voicepassword"):
        response = start(client, number, url=VERIFY)
    # The CSRF token is random letters and digits: it may hold "500" or "HTTP".
    text = CSRF_RE.sub('name="csrfmiddlewaretoken" value="TOKEN"', response.content.decode())
    assert response.status_code == 503
    assert "We could not call you just now. Please try again later." in text
    for provider_words in ("not_enough_money", "balance", "HTTP", "500", "user_disabled"):
        assert provider_words not in text
    assert any("+7 999 ***-**-" in record.getMessage() for record in caplog.records)
    assert all(number not in record.getMessage() for record in caplog.records)


# --- pages ------------------------------------------------------------------------------


def test_the_forms_speak_to_browsers_and_screen_readers(client, user, emulated):
    text = client.get(LOGIN).content.decode()
    assert '<label for="id_number">' in text
    assert 'autocomplete="tel"' in text
    assert 'type="tel"' in text
    assert 'aria-describedby="id_number_helptext"' in text
    text = client.get(code_url_of(start(client, KNOWN))).content.decode()
    assert '<label for="id_code">' in text
    assert 'autocomplete="one-time-code"' in text
    assert 'inputmode="numeric"' in text
    assert 'pattern="\\p{Nd}{4}"' in text
    assert "<h1>Log in by phone</h1>" in text


def test_a_site_shows_the_pages_in_its_own_layout(client, tmp_path: Path):
    (tmp_path / "voicepassword").mkdir()
    (tmp_path / "voicepassword" / "base.html").write_text(
        "<div id=site-layout>{% block content %}{% endblock %}</div>"
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    with override_settings(TEMPLATES=templates):
        text = client.get(LOGIN).content.decode()
    assert text.startswith("<div id=site-layout>")
    assert 'name="number"' in text


def test_a_code_page_whose_send_failed_says_so_not_expired():
    # With ASYNC_SEND the worker places the call; when it could not, the
    # challenge ends without a code and the page must not blame the user.
    from datetime import timedelta

    from django.utils import timezone

    from django_voicepassword import verification, views
    from django_voicepassword.models import Challenge

    ended = timezone.now() - timedelta(seconds=1)
    common: dict[str, object] = {"number": "79990000001", "channel": "flash_call"}
    common |= {"expires_at": ended, "resend_at": ended}
    failed = Challenge(**common)
    expired = Challenge(**common, code_digest="0" * 64)
    view = views.LoginCodeView()
    reasons = [
        view.ended_reason(challenge, verification.challenge_info(challenge))
        for challenge in (failed, expired)
    ]
    assert reasons == ["not_sent", "expired"]
    assert views.ENDED["not_sent"] == views.PROVIDER_FAILED


# --- a resend refused ------------------------------------------------------------------


def test_a_resend_a_limit_refuses_answers_429_and_calls_nobody(client, user, emulated):
    with override_settings(VOICEPASSWORD={**EMULATED, "LIMITS": {"number": "1/h"}}):
        url = code_url_of(start(client, KNOWN))
        allow_resend(url)
        refused = client.post(url, {"resend": "voice_call"})
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "Too many codes were sent to this number." in refused.content.decode()
    assert len(emulated.sends()) == 1


def test_a_verification_resend_the_provider_refuses_answers_503(client, user, emulated, caplog):
    client.force_login(user, backend=BACKEND)
    url = code_url_of(start(client, OTHER, url=VERIFY))
    allow_resend(url)
    emulated.emulator.balance = 0  # the provider refuses: not_enough_money
    failed = client.post(url, {"resend": "voice_call"})
    assert failed.status_code == 503
    assert "We could not call you just now." in failed.content.decode()
    assert "not_enough_money" in caplog.text
    # The page still takes the first code.
    done = client.post(url, {"code": emulated.code_for(OTHER)})
    assert done["Location"] == WELCOME


# --- the verification's code page ---------------------------------------------------


def test_a_wrong_verification_code_says_how_many_attempts_are_left(client, user, emulated):
    client.force_login(user, backend=BACKEND)
    url = code_url_of(start(client, OTHER, url=VERIFY))
    wrong = client.post(url, {"code": wrong_code(emulated.code_for(OTHER))})
    assert wrong.status_code == 200
    assert "Wrong code. You have 2 more attempts." in wrong.content.decode()
    assert not PhoneNumber.objects.filter(number=OTHER).exists()
    done = client.post(url, {"code": emulated.code_for(OTHER)})
    assert done["Location"] == WELCOME


def test_a_verified_number_s_code_page_says_the_code_was_used(client, user, emulated):
    client.force_login(user, backend=BACKEND)
    url = code_url_of(start(client, OTHER, url=VERIFY))
    client.post(url, {"code": emulated.code_for(OTHER)})
    for response in (client.get(url), client.post(url, {"resend": "voice_call"})):
        text = response.content.decode()
        assert "This code has already been used." in text
        assert 'name="code"' not in text
    assert len(emulated.sends()) == 1


@pytest.mark.parametrize("flow", [LOGIN, VERIFY])
def test_a_resend_of_an_expired_code_offers_to_start_again(client, user, emulated, flow):
    if flow == VERIFY:
        client.force_login(user, backend=BACKEND)
    url = code_url_of(start(client, KNOWN if flow == LOGIN else OTHER, url=flow))
    Challenge.objects.filter(pk=challenge_of(url).pk).update(
        expires_at=timezone.now() - timedelta(seconds=1),
        resend_at=timezone.now() - timedelta(seconds=1),
    )
    response = client.post(url, {"resend": "voice_call"})
    text = response.content.decode()
    assert response.status_code == 400  # no channel is offered any more
    assert "This code has expired." in text
    assert 'name="code"' not in text
    assert f'href="{flow}"' in text
    assert len(emulated.sends()) == 1
