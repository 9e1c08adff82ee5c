"""The "flash call" method in django-two-factor-auth's set-up and login pages, over HTTP."""

from __future__ import annotations

from base64 import b32decode
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from typing import Any

import pytest

pytest.importorskip(
    "two_factor",
    reason='django-two-factor-auth is not installed: pip install "django-two-factor-auth>=1.16"',
)

from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone
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


def setup_step(client: Client, name: str, **fields: str) -> Any:
    data = {"setup_view-current_step": name, **{f"{name}-{k}": v for k, v in fields.items()}}
    return client.post("/account/two_factor/setup/", data)


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
        return setup_step(client, name, **fields)

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


def logged_in(username: str) -> Client:
    user = get_user_model().objects.create_user(username, password="pw")
    client = Client()
    client.force_login(user)
    assert client.get("/account/two_factor/setup/").status_code == 200
    setup_step(client, "welcome")
    return client


def test_a_user_without_a_number_gives_one_in_the_set_up(site):
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    client = logged_in("dave")
    number_step = setup_step(client, "method", method="voicepassword")
    assert number_step.status_code == 200
    assert 'name="voicepassword-number"' in text(number_step)
    assert site.sends() == []
    # The site's policy refuses what is no number, and says why.
    refused = setup_step(client, "voicepassword", number="12")
    assert refused.status_code == 200
    assert 'name="voicepassword-number"' in text(refused)
    assert "errorlist" in text(refused)
    assert site.sends() == []
    # A number as people write it is called in its normalized form.
    validation = setup_step(client, "voicepassword", number="+7 (999) 000-00-01")
    assert validation.status_code == 200
    assert len(site.sends(NUMBER)) == 1
    finished = setup_step(client, "validation", token=site.code_for(NUMBER)[-4:])
    assert finished.status_code == 302, text(finished)
    device = VoicePasswordDevice.objects.get()
    assert (device.confirmed, device.number) == (True, NUMBER)


def test_a_number_changed_during_the_set_up_is_the_one_called_and_kept(site):
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    other = "79990000002"
    client = logged_in("erin")
    setup_step(client, "method", method="voicepassword")
    setup_step(client, "voicepassword", number=NUMBER)
    assert len(site.sends(NUMBER)) == 1
    # A wrong number typed: the user starts the set-up again with another,
    # after the device's cooldown (which holds whatever the number).
    VoicePasswordDevice.objects.update(
        last_generated_timestamp=timezone.now() - timedelta(seconds=61)
    )
    assert client.get("/account/two_factor/setup/").status_code == 200
    setup_step(client, "welcome")
    setup_step(client, "method", method="voicepassword")
    validation = setup_step(client, "voicepassword", number=other)
    assert validation.status_code == 200
    assert (len(site.sends(NUMBER)), len(site.sends(other))) == (1, 1)
    stale = setup_step(client, "validation", token=site.code_for(NUMBER)[-4:])
    assert "This code is not valid." in text(stale)
    VoicePasswordDevice.objects.update(throttling_failure_timestamp=None)
    finished = setup_step(client, "validation", token=site.code_for(other)[-4:])
    assert finished.status_code == 302, text(finished)
    device = VoicePasswordDevice.objects.get()
    assert (device.confirmed, device.number) == (True, other)


def test_two_factor_s_own_methods_still_set_up_through_the_view(site):
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    client = logged_in("frank")
    generator = setup_step(client, "method", method="generator")
    assert generator.status_code == 200
    key = b32decode(client.session["django_two_factor-qr_secret_key"])
    finished = setup_step(client, "generator", token=f"{totp(key):06d}")
    assert finished.status_code == 302, text(finished)
    assert TOTPDevice.objects.get().confirmed
    assert not VoicePasswordDevice.objects.exists()
    assert site.sends() == []
    assert client.get("/account/two_factor/").status_code == 200
