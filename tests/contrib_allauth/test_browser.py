"""A person signs up and logs in by phone on allauth's own pages, in Chromium.

Service tier: Debian's Chromium through Playwright, the allauth test site on
a live server with the HTTP gateway, the emulator over real HTTP. The code is
read as a person reads it: the last 4 digits of the caller number on the
emulator's phone page. Screenshots go to ``test-output/screenshots/allauth-*.png``.
"""

from __future__ import annotations

from tests.contrib_allauth import require_allauth

require_allauth()

import re  # noqa: E402

import pytest  # noqa: E402

from django_voicepassword.gateways.base import reset_gateway  # noqa: E402
from django_voicepassword.models import Call, PhoneNumber  # noqa: E402
from tests.browser import chromium_page, screenshot  # noqa: E402
from tests.contrib_allauth.live import live_site  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NUMBER = "79990000007"


def read_code(page, server) -> str:
    """Open the emulator's phone page in another tab and read the caller's last 4 digits."""
    phone = page.context.new_page()
    phone.goto(f"{server.url}/?number={NUMBER}")
    caller = phone.locator("span.code").first.inner_text()
    phone.close()
    return re.sub(r"\D", "", caller)[-4:]


def test_a_person_signs_up_and_logs_in_by_phone_on_allauth_pages(
    settings, voicepassword_emulator_server, monkeypatch
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    server = voicepassword_emulator_server
    with live_site() as url:
        settings.VOICEPASSWORD = {
            "API_KEY": "emulator-key",
            "API_URL": server.base_url,
            # No callbacks: the emulator would keep its connection to the
            # site open, and with it a database session past the test.
            "LIMITS": {},
        }
        reset_gateway()
        try:
            with chromium_page() as page:
                page.goto(f"{url}/accounts/signup/")
                page.get_by_label("Phone").fill("+7 999 000-00-07")
                screenshot(page, "allauth-1-signup")
                page.get_by_role("button", name="Sign Up").click()
                page.wait_for_url(f"{url}/accounts/phone/verify/")
                body = page.locator("body").inner_text()
                assert "enter the last 4 digits of the number that calls you" in body
                screenshot(page, "allauth-2-verify")
                page.get_by_placeholder("Code").fill(read_code(page, server))
                page.get_by_role("button", name="Confirm").click()
                page.wait_for_url(f"{url}/done/")
                signed_up = page.locator("#who").inner_text()

                page.context.clear_cookies()
                page.goto(f"{url}/accounts/login/")
                page.get_by_label("Phone").fill("8 999 000 00 07")
                screenshot(page, "allauth-3-login")
                page.get_by_role("button", name="Sign In").click()
                page.wait_for_url(re.compile(r"/accounts/login/code/confirm/"))
                screenshot(page, "allauth-4-code")
                page.get_by_placeholder("Code").fill(read_code(page, server))
                page.get_by_role("button", name="Confirm").click()
                page.wait_for_url(f"{url}/done/")
                logged_in = page.locator("#who").inner_text()
                screenshot(page, "allauth-5-done")
        finally:
            reset_gateway()
    # The ORM out here: inside the page block, Playwright's greenlet would
    # open a database connection of its own (and keep it past the test).
    user = PhoneNumber.objects.get(number=NUMBER).user
    assert signed_up == logged_in == user.get_username()
    assert len(server.emulator.sends(NUMBER)) == 2
    assert Call.objects.filter(user=user, channel="flash_call").count() == 2
