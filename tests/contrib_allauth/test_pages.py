"""allauth's own HTML pages over the package: sign-up and login by phone, and every refusal.

The provider is the in-process emulator; the code is read as the person would
read it (the last 4 digits of the caller number, ``code_for``).
"""

from __future__ import annotations

from tests.contrib_allauth import require_allauth

require_allauth()

import pytest  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import override_settings  # noqa: E402

from django_voicepassword import verification  # noqa: E402
from django_voicepassword.models import Call, PhoneNumber  # noqa: E402
from tests import services  # noqa: E402

pytestmark = pytest.mark.django_db

NUMBER = "79990000001"
TYPED = "+7 999 000-00-01"
SITE = {"API_KEY": "emulator-key", "LIMITS": {}}


@pytest.fixture(autouse=True)
def site(settings, voicepassword_emulator):
    services.clear_cache()  # the limits' counters, and allauth's
    settings.VOICEPASSWORD = SITE
    from django_voicepassword.gateways.base import reset_gateway

    reset_gateway()
    yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def pauses(monkeypatch):
    """The stand-in's waits, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(verification, "pause", waited.append)
    return waited


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def user_with(number: str):
    user = get_user_model().objects.create_user(f"u{number[-2:]}", password=None)
    PhoneNumber.objects.create(user=user, number=number)
    return user


def test_sign_up_by_phone_takes_the_last_four_digits_of_the_caller(client, site):
    response = client.post("/accounts/signup/", {"phone": TYPED})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/phone/verify/"
    # One flash call, with the site's own code (flashcall.code), recorded for the new user.
    assert len(site.sends(NUMBER)) == 1
    call = Call.objects.get()
    user = get_user_model().objects.get()
    assert (call.channel, call.status, call.user, call.challenge) == (
        "flash_call",
        "placed",
        user,
        None,
    )
    page = client.get("/accounts/phone/verify/")
    text = page.content.decode()
    assert "enter the last 4 digits of the number that calls you" in text
    assert "sent a code" not in text
    # A wrong code first: allauth counts it and the number stays pending.
    wrong = "0000" if site.code_for(NUMBER) != "0000" else "1111"
    assert client.post("/accounts/phone/verify/", {"code": wrong}).status_code == 200
    assert not PhoneNumber.objects.exists()
    done = client.post("/accounts/phone/verify/", {"code": site.code_for(NUMBER)})
    assert done.status_code == 302
    assert PhoneNumber.objects.get().user == user
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_by_phone_through_allauth_pages(client, site):
    user = user_with(NUMBER)
    response = client.post("/accounts/login/", {"login": TYPED})
    assert response.status_code == 302, response.context["form"].errors
    assert response["Location"].startswith("/accounts/login/code/confirm/")
    page = client.get("/accounts/login/code/confirm/")
    assert "enter the last 4 digits of the number that calls you" in page.content.decode()
    assert any("last 4 digits" in m for m in messages_of(page))
    done = client.post("/accounts/login/code/confirm/", {"code": site.code_for(NUMBER)})
    assert done.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
    assert Call.objects.get().user == user


def test_the_pages_speak_russian(client, site):
    user_with(NUMBER)
    client.post("/accounts/login/", {"login": TYPED}, HTTP_ACCEPT_LANGUAGE="ru")
    page = client.get("/accounts/login/code/confirm/", HTTP_ACCEPT_LANGUAGE="ru")
    assert "последние 4 цифры номера, с которого вам звонят" in page.content.decode()  # noqa: RUF001


def test_an_unknown_number_gets_no_call_but_the_same_answer_and_wait(client, site, pauses):
    known = client.post("/accounts/login/", {"login": TYPED})
    user_with(NUMBER)  # only now: the first request was for an unknown number
    site.emulator.log.clear()
    other = client.post("/accounts/login/", {"login": "+7 999 000-00-05"})
    assert known.status_code == other.status_code == 302
    assert not site.sends("79990000005")
    # The stand-in waited (a real send was measured or a free request made).
    assert pauses or site.emulator.log


def test_a_limit_refusal_shows_its_message_alike_for_every_number(client, site, settings):
    settings.VOICEPASSWORD = {**SITE, "LIMITS": {"number": "1/h"}}
    user_with(NUMBER)
    for number in ("+7 999 000-00-01", "+7 999 000-00-05"):
        assert client.post("/accounts/login/", {"login": number}).status_code == 302
        client.post("/accounts/logout/")
        client.cookies.clear()
        refused = client.post("/accounts/login/", {"login": number}, follow=True)
        assert refused.status_code == 200
        assert refused.redirect_chain[-1][0] == "/accounts/login/"
        assert any("Too many codes were sent to this number" in m for m in messages_of(refused))
        client.cookies.clear()
    assert len(site.sends(NUMBER)) == 1


def test_the_budget_refuses_with_its_message(client, site, settings):
    settings.VOICEPASSWORD = {**SITE, "DAILY_BUDGET": "0.10"}
    user_with(NUMBER)
    refused = client.post("/accounts/login/", {"login": TYPED}, follow=True)
    assert any("No more codes can be sent today" in m for m in messages_of(refused))
    assert not site.sends(NUMBER)


# Nothing listens here: a connection refused is a provider that is down, and
# certainly placed nothing.
DOWN = {**SITE, "API_URL": "http://127.0.0.1:9/api/voice-password/"}


@pytest.mark.parametrize(
    ("number", "down"),
    [("79990000022", False), ("79990000001", True)],
    ids=["provider-refused", "provider-down"],
)
def test_a_failed_call_is_an_error_message_without_enumeration_prevention(
    client, site, settings, number, down
):
    settings.ACCOUNT_PREVENT_ENUMERATION = False
    if down:
        settings.VOICEPASSWORD = DOWN
    user_with(number)
    refused = client.post("/accounts/login/", {"login": "+" + number}, follow=True)
    assert refused.status_code == 200
    assert refused.redirect_chain[-1][0] == "/accounts/login/"
    assert any("We could not call this number just now" in m for m in messages_of(refused))
    assert Call.objects.get().status == "not_placed"
    # allauth's state is as before: no login is pending, the code page sends back.
    assert client.get("/accounts/login/code/confirm/").status_code == 302


@pytest.mark.parametrize("fault", ["http500", "dropped"])
def test_a_call_whose_outcome_is_unknown_counts_as_sent(client, site, settings, fault):
    # The code is the site's own: the phone may well have it, and calling
    # again could bill a second call (the package's rule for its own sends).
    settings.ACCOUNT_PREVENT_ENUMERATION = False
    user_with(NUMBER)
    site.set_fault(fault)
    response = client.post("/accounts/login/", {"login": TYPED})
    assert response["Location"].startswith("/accounts/login/code/confirm/")
    assert Call.objects.get().status == "unknown"


def test_a_failed_call_is_answered_as_sent_while_allauth_prevents_enumeration(client, site):
    user_with("79990000022")
    failed = client.post("/accounts/login/", {"login": "+79990000022"})
    unknown = client.post("/accounts/login/", {"login": "+79990000005"})
    assert failed.status_code == unknown.status_code == 302
    assert failed["Location"] == unknown["Location"]
    # The failure is kept where staff look: the Call row and its error code.
    call = Call.objects.get()
    assert (call.status, call.error_code) == ("not_placed", "number_in_spam_list")


def test_a_sign_up_whose_call_fails_shows_the_message_and_no_500(client, site, settings):
    settings.ACCOUNT_PREVENT_ENUMERATION = False
    refused = client.post("/accounts/signup/", {"phone": "+7 999 000-00-22"}, follow=True)
    assert refused.status_code == 200
    assert any("We could not call this number just now" in m for m in messages_of(refused))


def test_an_adapter_that_tells_failures_says_so_while_allauth_prevents_enumeration(client, site):
    user_with("79990000022")
    with override_settings(ACCOUNT_ADAPTER="tests.contrib_allauth.adapters.TellingAdapter"):
        refused = client.post("/accounts/login/", {"login": "+79990000022"}, follow=True)
    assert refused.redirect_chain[-1][0] == "/accounts/login/"
    assert any("We could not call this number just now" in m for m in messages_of(refused))


def test_an_adapter_that_hides_failures_hides_them_without_enumeration_prevention(
    client, site, settings
):
    settings.ACCOUNT_PREVENT_ENUMERATION = False
    user_with("79990000022")
    with override_settings(ACCOUNT_ADAPTER="tests.contrib_allauth.adapters.HidingAdapter"):
        failed = client.post("/accounts/login/", {"login": "+79990000022"})
    assert failed.status_code == 302
    assert failed["Location"].startswith("/accounts/login/code/confirm/")
    assert Call.objects.get().status == "not_placed"


def test_a_voice_call_adapter_says_the_robot_speaks(client, site):
    user_with(NUMBER)
    with override_settings(ACCOUNT_ADAPTER="tests.contrib_allauth.adapters.VoiceAdapter"):
        client.post("/accounts/login/", {"login": TYPED})
        page = client.get("/accounts/login/code/confirm/")
        assert "enter the 4-digit code the robot says" in page.content.decode()
        assert Call.objects.get().channel == "voice_call"
        done = client.post("/accounts/login/code/confirm/", {"code": site.code_for(NUMBER)})
    assert done.status_code == 302


def test_numbers_are_read_as_the_package_reads_them(client, site):
    # A landline is refused by the package's policy (ALLOWED_NUMBER_TYPES), with its message.
    response = client.post("/accounts/login/", {"login": "+7 495 000-00-00"})
    assert response.status_code == 200
    assert "Landline numbers are not accepted." in response.content.decode()
    assert not site.sends()


def test_allauth_own_limit_is_its_429_not_a_server_error(client, site):
    # allauth's verify_phone limit (1/30s per number) refuses a second sign-up
    # by one number before the adapter is asked: no call, our counters untouched.
    client.raise_request_exception = False
    assert client.post("/accounts/signup/", {"phone": TYPED}).status_code == 302
    client.cookies.clear()
    again = client.post("/accounts/signup/", {"phone": TYPED})
    assert again.status_code == 429
    assert len(site.sends(NUMBER)) == 1
