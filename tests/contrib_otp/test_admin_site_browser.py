"""A staff member gets into django-otp's OTPAdminSite by flash call, in Chromium.

Service tier: Debian's Chromium through Playwright, the test site on a live
server, the emulator over real HTTP; the code is read from the emulator's
phone page as a person would. Screenshots go to ``test-output/screenshots/otp-*.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "django_otp", reason='django-otp is not installed: pip install "django-voicepassword[otp]"'
)

import django.contrib.admin
from django.contrib.auth import get_user_model
from django.test import override_settings

from django_voicepassword.gateways.base import reset_gateway
from tests import services
from tests import settings as suite
from tests.browser import chromium_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NUMBER = "79990000001"
ADMIN_STATIC = Path(django.contrib.admin.__file__).resolve().parent / "static"


def test_a_staff_member_is_verified_by_flash_call_in_a_browser(
    live_server: Any, voicepassword_emulator_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    server = voicepassword_emulator_server
    services.clear_cache()
    user = get_user_model().objects.create_user(
        "ops", password="correct horse", is_staff=True, is_superuser=True
    )
    device = VoicePasswordDevice.objects.create(user=user, name="Work phone", number=NUMBER)
    site = {
        "API_KEY": "emulator-key",
        "API_URL": server.base_url,
        "CALLBACK_BASE_URL": live_server.url,
        "LIMITS": {},
    }
    # The live server is the session's: built before this directory's
    # settings, so its middleware lacks django-otp's (request.user.is_verified).
    # (Under the static files handler, whose own load_middleware() does nothing.)
    handler = live_server.thread.httpd.get_app()
    handler = getattr(handler, "application", handler)
    handler.load_middleware()
    # The live server serves STATIC_URL from STATIC_ROOT: the admin's own files.
    with override_settings(VOICEPASSWORD=site, STATIC_ROOT=str(ADMIN_STATIC)):
        reset_gateway()
        try:
            with chromium_page() as page:
                page.goto(f"{live_server.url}/admin/")
                page.get_by_label("Username").fill("ops")
                page.get_by_label("Password").fill("correct horse")
                page.get_by_role("button", name="Log in").click()
                page.locator("#id_otp_device").select_option(device.persistent_id)
                page.get_by_role("button", name="Get OTP Challenge").click()
                note = page.locator("p.errornote").first.inner_text()
                assert "OTP Challenge: Calling +7 999 ***-**-01" in note
                screenshot(page, "otp-1-challenge")

                phone = page.context.new_page()
                phone.goto(f"{server.url}/?number={NUMBER}")
                code = re.sub(r"\D", "", phone.locator("span.code").first.inner_text())[-4:]
                phone.close()

                wrong = f"{(int(code) + 1) % 10000:04d}"
                page.get_by_label("OTP Token:").fill(wrong)
                page.get_by_role("button", name="Log in").click()
                page.get_by_text("Invalid token").wait_for()
                # The back-off of one wrong code (1 s) passes before the right one.
                page.wait_for_timeout(1100)
                page.get_by_label("Password").fill("correct horse")
                page.get_by_label("OTP Token:").fill(code)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{live_server.url}/admin/")
                assert page.get_by_text("VoicePassword devices").count() >= 1
                screenshot(page, "otp-2-admin")
        finally:
            reset_gateway()
            with override_settings(MIDDLEWARE=suite.MIDDLEWARE):
                handler.load_middleware()
    assert len(server.emulator.sends(NUMBER)) == 1
