"""The "flash call" method in django-two-factor-auth's set-up and login pages, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest

pytest.importorskip(
    "two_factor",
    reason='django-two-factor-auth is not installed: pip install "django-two-factor-auth>=1.16"',
)

from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from two_factor.plugins.registry import registry

from django_voicepassword.models import Call, PhoneNumber
from tests import services

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = "79990000001"


@pytest.fixture(autouse=True)
def site(voicepassword_emulator: Any) -> Iterator[Any]:
    services.clear_cache()
    with override_settings(VOICEPASSWORD={"API_KEY": "emulator-key", "LIMITS": {}}):
        yield voicepassword_emulator
    services.clear_cache()


def text(response: Any) -> str:
    return unescape(response.content.decode())


def login_step(client: Client, step: str, **fields: str) -> Any:
    data = {"login_view-current_step": step, **{f"{step}-{k}": v for k, v in fields.items()}}
    return client.post("/account/login/", data)


def test_the_method_is_registered_beside_two_factors_own():
    codes = [method.code for method in registry.get_methods()]
    assert "voicepassword" in codes
    assert "generator" in codes


def test_a_user_logs_in_with_a_flash_call(site):
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    user = get_user_model().objects.create_user("alice", password="correct horse")
    VoicePasswordDevice.objects.create(user=user, name="default", number=NUMBER)
    client = Client()
    token_page = login_step(client, "auth", username="alice", password="correct horse")
    assert token_page.status_code == 200
    # The token step opened: the device called, and the page says so.
    assert "Calling +7 999 ***-**-01: enter the last 4 digits of the calling number." in text(
        token_page
    )
    assert len(site.sends(NUMBER)) == 1
    assert 'maxlength="4"' in text(token_page)
    code = site.code_for(NUMBER)[-4:]
    wrong = login_step(client, "token", otp_token=f"{(int(code) + 1) % 10000:04d}")
    assert "Invalid token." in text(wrong)
    throttled = login_step(client, "token", otp_token=code)
    assert "Verification temporarily disabled because of 1 failed attempt" in text(throttled)
    VoicePasswordDevice.objects.update(throttling_failure_timestamp=None)
    done = login_step(client, "token", otp_token=code)
    assert done.status_code == 302
    assert client.get("/account/two_factor/").status_code == 200
    assert Call.objects.get().user_id == user.pk


def test_a_refused_call_says_so_on_the_login_page(site):
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    user = get_user_model().objects.create_user("bob", password="correct horse")
    VoicePasswordDevice.objects.create(user=user, name="default", number="79990000020")
    page = login_step(Client(), "auth", username="bob", password="correct horse")
    assert page.status_code == 200
    assert "The call could not be placed. Try again later." in text(page)


def test_a_user_sets_the_method_up_with_their_verified_number(site):
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    user = get_user_model().objects.create_user("carol", password="pw")
    PhoneNumber.objects.create(user=user, number=NUMBER)
    client = Client()
    client.force_login(user)

    def step(name: str, **fields: str) -> Any:
        data = {"setup_view-current_step": name, **{f"{name}-{k}": v for k, v in fields.items()}}
        return client.post("/account/two_factor/setup/", data)

    assert client.get("/account/two_factor/setup/").status_code == 200
    step("welcome")
    validation = step("method", method="voicepassword")
    assert validation.status_code == 200
    assert len(site.sends(NUMBER)) == 1  # the user's verified number: no number step
    code = site.code_for(NUMBER)[-4:]
    assert "This code is not valid." in text(step("validation", token="x" * 4))
    VoicePasswordDevice.objects.update(throttling_failure_timestamp=None)
    finished = step("validation", token=code)
    assert finished.status_code == 302, text(finished)
    device = VoicePasswordDevice.objects.get(user=user)
    assert device.confirmed
    assert device.name == "default"
    assert device.number == ""  # follows the user's number
