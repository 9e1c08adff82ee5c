"""A person logs in by phone in a real browser, the emulator playing the phone.

Service tier: Debian's Chromium through Playwright, the site on a live server
with the HTTP gateway, and the emulator over real HTTP. The code is read the
way a person reads it: from the caller number on the emulator's phone page.
Screenshots of each step go to ``test-output/screenshots/login-*.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import override_settings
from django.urls import include, path

import django_voicepassword
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import PhoneNumber
from tests.browser import chromium_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NUMBER = "79990000001"
STATIC = Path(django_voicepassword.__file__).resolve().parent / "static"

DONE = (
    '{% extends "voicepassword/base.html" %}{% block content %}'
    "<h1>Welcome</h1><p id=who>Logged in as <strong>{{ request.user.get_username }}</strong>"
    "</p>{% endblock %}"
)


def done(request: HttpRequest) -> HttpResponse:
    """Where the login lands: who is logged in, in the flow's own layout."""
    template = engines["django"].from_string(DONE)
    return HttpResponse(template.render({"title": "Welcome"}, request))


# This module is the URLconf of the live server during the test.
urlpatterns = [
    path("done/", done),
    path("voicepassword/", include("django_voicepassword.urls")),
]


def test_a_person_logs_in_by_phone(live_server, voicepassword_emulator_server, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # of the test around it are not async code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    server = voicepassword_emulator_server
    person = get_user_model().objects.create_user("alice", password=None)
    PhoneNumber.objects.create(user=person, number=NUMBER)
    site = {
        "API_KEY": "emulator-key",
        "API_URL": server.base_url,
        "CALLBACK_BASE_URL": live_server.url,
        "LIMITS": {},
    }
    with override_settings(
        VOICEPASSWORD=site,
        ROOT_URLCONF=__name__,
        AUTHENTICATION_BACKENDS=["django_voicepassword.auth_backends.PhoneCodeBackend"],
        LOGIN_REDIRECT_URL="/done/",
        # The live server serves STATIC_URL from STATIC_ROOT: the app's own files.
        STATIC_ROOT=str(STATIC),
    ):
        reset_gateway()
        try:
            with chromium_page() as page:
                page.goto(f"{live_server.url}/voicepassword/login/?next=/done/")
                page.get_by_label("Phone number").fill("+7 999 000-00-01")
                screenshot(page, "login-1-phone")
                page.get_by_role("button", name="Call me").click()

                page.wait_for_url(re.compile(r"/voicepassword/login/[0-9a-f-]{36}/$"))
                instructions = page.locator("#vp-instructions").inner_text()
                assert "+7 999 ***-**-01" in instructions
                assert "last 4 digits of the calling number" in instructions
                # The countdown holds the resend buttons until the cooldown ends.
                again = page.get_by_role("button", name="Call me again")
                assert again.is_disabled()
                assert re.fullmatch(r"0:[0-3]\d", page.locator("[data-vp-clock]").inner_text())
                screenshot(page, "login-2-code")

                phone = page.context.new_page()
                phone.goto(f"{server.url}/?number={NUMBER}")
                caller = phone.locator("span.code").first.inner_text()
                code = re.sub(r"\D", "", caller)[-4:]
                screenshot(phone, "login-3-emulator")
                phone.close()

                page.get_by_label("Code").fill(code)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{live_server.url}/done/")
                assert page.locator("#who").inner_text() == "Logged in as alice"
                screenshot(page, "login-4-done")
        finally:
            reset_gateway()
    assert len(server.emulator.sends(NUMBER)) == 1
