"""allauth's headless API (the "app" client of SPAs and mobile apps) over HTTP.

The site runs on a live server thread; the test talks to it with
``requests`` as an app would (``X-Session-Token``), the provider is the
in-process emulator.
"""

from __future__ import annotations

from tests.contrib_allauth import require_allauth

require_allauth()

from typing import Any  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402
from django.core.cache import cache  # noqa: E402

from django_voicepassword.gateways.base import reset_gateway  # noqa: E402
from django_voicepassword.models import Call, PhoneNumber  # noqa: E402
from tests.contrib_allauth.live import live_site  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = "79990000001"
API = "/_allauth/app/v1"


@pytest.fixture
def site(settings, voicepassword_emulator):
    cache.clear()
    settings.VOICEPASSWORD = {"API_KEY": "emulator-key", "LIMITS": {}}
    reset_gateway()
    with live_site() as url:
        yield url, voicepassword_emulator
    reset_gateway()


class App:
    """A mobile app's side of the API: JSON in and out, the session token kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token: str | None = None

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        headers = {"X-Session-Token": self.token} if self.token else {}
        response = requests.post(self.url + API + path, json=body, headers=headers, timeout=30)
        token = response.json().get("meta", {}).get("session_token")
        if token:
            self.token = token
        return response


def pending(response: requests.Response) -> list[str]:
    return [f["id"] for f in response.json()["data"]["flows"] if f.get("is_pending")]


def test_sign_up_and_log_in_by_phone_over_the_headless_api(site):
    url, emulator = site
    app = App(url)
    signup = app.post("/auth/signup", {"phone": "+7 999 000-00-01"})
    assert signup.status_code == 401
    assert pending(signup) == ["verify_phone"]
    verified = app.post("/auth/phone/verify", {"code": emulator.code_for(NUMBER)})
    assert verified.status_code == 200
    assert verified.json()["data"]["user"]["id"]
    assert PhoneNumber.objects.get().number == NUMBER

    again = App(url)
    request = again.post("/auth/code/request", {"phone": "+79990000001"})
    assert request.status_code == 401
    assert pending(request) == ["login_by_code"]
    assert len(emulator.sends(NUMBER)) == 2
    wrong = "0000" if emulator.code_for(NUMBER) != "0000" else "1111"
    assert again.post("/auth/code/confirm", {"code": wrong}).status_code == 400
    done = again.post("/auth/code/confirm", {"code": emulator.code_for(NUMBER)})
    assert done.status_code == 200
    assert done.json()["data"]["user"]["id"] == verified.json()["data"]["user"]["id"]
    assert Call.objects.filter(user=PhoneNumber.objects.get().user).count() == 2


def test_a_refusal_is_allauths_error_shape_with_our_message(site, settings):
    url, emulator = site
    settings.VOICEPASSWORD = {"API_KEY": "emulator-key", "LIMITS": {"number": "1/h"}}
    assert App(url).post("/auth/code/request", {"phone": "+79990000005"}).status_code == 401
    refused = App(url).post("/auth/code/request", {"phone": "+79990000005"})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    (error,) = refused.json()["errors"]
    assert error["code"] == "voicepassword_limit"
    assert error["message"].startswith("Too many codes were sent to this number.")
    assert not emulator.sends()


def test_a_failed_call_is_a_503_without_enumeration_prevention(site, settings):
    url, _emulator = site
    settings.ACCOUNT_PREVENT_ENUMERATION = False
    app = App(url)
    refused = app.post("/auth/code/request", {"phone": "+79990000022"})
    # Unknown number without enumeration prevention: allauth's own 400.
    assert refused.status_code == 400
    # allauth's headless sign-up swallows the adapter's refusal; the
    # middleware answers with it all the same.
    signup = app.post("/auth/signup", {"phone": "+79990000022"})
    assert signup.status_code == 503
    (error,) = signup.json()["errors"]
    assert error["code"] == "voicepassword_not_sent"
    assert error["message"] == "We could not call this number just now. Try again later."
    assert Call.objects.get().status == "not_placed"
