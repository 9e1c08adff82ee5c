"""A staff member gets into django-otp's OTPAdminSite by flash call, over HTTP.

The site's admin is ``django_otp.admin.OTPAdminSite`` (``urls.py`` here); the
provider is the in-process emulator, and the code is read from what its phone
saw. Wrong codes meet django-otp's back-off; the call is in the call history.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from typing import Any

import pytest

pytest.importorskip(
    "django_otp", reason='django-otp is not installed: pip install "django-voicepassword[otp]"'
)

from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from django_voicepassword.models import Call
from tests import services

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = "79990000001"


@pytest.fixture(autouse=True)
def site(voicepassword_emulator: Any) -> Iterator[Any]:
    services.clear_cache()
    with override_settings(VOICEPASSWORD={"API_KEY": "emulator-key", "LIMITS": {}}):
        yield voicepassword_emulator
    services.clear_cache()


@pytest.fixture
def staff() -> Any:
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    user = get_user_model().objects.create_user(
        "ops", password="correct horse", is_staff=True, is_superuser=True
    )
    return VoicePasswordDevice.objects.create(user=user, name="Work phone", number=NUMBER)


def errors(response: Any) -> list[str]:
    """The error notes of the admin's login page, as text."""
    html = response.content.decode()
    notes = re.findall(r'<p class="errornote">\s*(.*?)\s*</p>', html, re.DOTALL)
    notes += re.findall(r'<ul class="errorlist[^"]*"[^>]*>\s*<li>(.*?)</li>', html, re.DOTALL)
    return [unescape(re.sub(r"\s+", " ", note)) for note in notes]


def login(client: Client, device: Any, **fields: str) -> Any:
    data = {
        "username": "ops",
        "password": "correct horse",
        "otp_device": device.persistent_id,
        "next": "/admin/",
        **fields,
    }
    return client.post("/admin/login/?next=/admin/", data)


def test_a_staff_member_is_verified_by_flash_call(site, staff):
    client = Client()
    # Without a second factor the admin is closed, even to a superuser's password.
    assert client.get("/admin/").status_code == 302
    first = client.post("/admin/login/", {"username": "ops", "password": "correct horse"})
    assert "Please enter your OTP token." in errors(first)
    assert staff.persistent_id in first.content.decode()  # the device is offered

    asked = login(client, staff, otp_challenge="Get OTP Challenge")
    assert (
        "OTP Challenge: Calling +7 999 ***-**-01: "
        "enter the last 4 digits of the calling number." in errors(asked)
    )
    code = site.code_for(NUMBER)[-4:]
    wrong = f"{(int(code) + 1) % 10000:04d}"

    refused = login(client, staff, otp_token=wrong)
    assert refused.status_code == 200
    assert any(e.startswith("Invalid token.") for e in errors(refused))
    # django-otp's back-off: right after a wrong code, even the right one is refused.
    throttled = login(client, staff, otp_token=code)
    assert (
        "Verification temporarily disabled because of 1 failed attempt, please try again soon."
        in errors(throttled)
    )
    assert client.get("/admin/").status_code == 302

    # A second later (the back-off of one failure), the right code lets them in.
    type(staff).objects.filter(pk=staff.pk).update(
        throttling_failure_timestamp=timezone.now() - timedelta(seconds=1)
    )
    accepted = login(client, staff, otp_token=code)
    assert accepted.status_code == 302
    assert accepted["Location"] == "/admin/"
    index = client.get("/admin/")
    assert index.status_code == 200
    assert "VoicePassword devices" in index.content.decode()

    # The call is in the package's call history, for the staff member.
    call = Call.objects.get()
    assert (call.user_id, call.channel, call.status) == (staff.user_id, "flash_call", "placed")
    staff.refresh_from_db()
    assert staff.token is None
    assert staff.throttling_failure_count == 0

    # The code is spent: another browser cannot reuse it.
    other = login(Client(), staff, otp_token=code)
    assert any(e.startswith("Invalid token.") for e in errors(other))


def test_a_refused_call_is_the_forms_message_not_an_error(site, staff):
    type(staff).objects.filter(pk=staff.pk).update(number="79990000020")  # refused by send/
    client = Client()
    response = login(client, staff, otp_challenge="Get OTP Challenge")
    assert response.status_code == 200
    assert "OTP Challenge: The call could not be placed. Try again later." in errors(response)


def test_the_limits_answer_in_the_form(site, staff):
    with override_settings(
        VOICEPASSWORD={"API_KEY": "emulator-key", "LIMITS": {"number": "1/h"}},
        OTP_VOICEPASSWORD_COOLDOWN_DURATION=0,
    ):
        client = Client()
        login(client, staff, otp_challenge="Get OTP Challenge")
        response = login(client, staff, otp_challenge="Get OTP Challenge")
    assert response.status_code == 200
    [message] = [e for e in errors(response) if e.startswith("OTP Challenge:")]
    assert "Try again in" in message
    assert len(site.sends(NUMBER)) == 1


def test_the_device_admin_masks_numbers_and_hides_the_code(site, staff):
    from django_otp import login as otp_login

    staff.generate_challenge()
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_voicepassworddevice", "change_voicepassworddevice"]
        )
    )
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    own = VoicePasswordDevice.objects.create(user=viewer, name="phone", number="79990000002")
    client = Client()
    client.force_login(viewer)
    # OTPAdminSite asks for a verified session: as if the viewer had entered a code.
    session = client.session
    request = type("R", (), {"user": viewer, "session": session})()
    otp_login(request, own)
    session.save()

    listing = client.get("/admin/voicepassword_otp/voicepassworddevice/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "+7 999 ***-**-01" in html
    assert "79990000001" not in html
    page = client.get(f"/admin/voicepassword_otp/voicepassworddevice/{staff.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "79990000001" not in html
    assert 'name="number"' not in html  # masked, so not editable
    staff.refresh_from_db()
    assert staff.token.split("$")[1] not in html
