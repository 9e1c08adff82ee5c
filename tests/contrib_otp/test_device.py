"""VoicePasswordDevice: calls through the package's services, codes kept as HMACs.

Against the in-process emulator (``voicepassword_emulator``): the code a
test enters is the one the emulator's phone saw, as a person reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip(
    "django_otp",
    reason='django-otp is not installed: pip install "django-voicepassword[otp]"',
)

from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from django_otp import verify_token

from django_voicepassword.conf import ConfigurationError
from django_voicepassword.models import Call, PhoneNumber
from tests import services

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = "79990000001"
EMULATED: dict[str, Any] = {"API_KEY": "emulator-key", "LIMITS": {}}


@pytest.fixture(autouse=True)
def site(voicepassword_emulator: Any) -> Iterator[Any]:
    """The emulator as the provider, no limits, an empty cache."""
    services.clear_cache()
    with override_settings(VOICEPASSWORD=EMULATED):
        yield voicepassword_emulator
    services.clear_cache()


def make_device(number: str = NUMBER, **fields: Any) -> Any:
    from django_voicepassword.contrib.otp.models import VoicePasswordDevice

    user = get_user_model().objects.create_user(f"staff-{number}-{fields}", password="pw")
    return VoicePasswordDevice.objects.create(user=user, name="phone", number=number, **fields)


def test_a_challenge_is_a_flash_call_through_the_services(site):
    device = make_device()
    message = device.generate_challenge()
    assert message == ("Calling +7 999 ***-**-01: enter the last 4 digits of the calling number.")
    # One send to the provider, recorded as a Call of the device's user.
    assert len(site.sends(NUMBER)) == 1
    call = Call.objects.get()
    assert (call.channel, call.number, call.user_id) == ("flash_call", NUMBER, device.user_id)
    assert call.status == Call.Status.PLACED
    code = site.code_for(NUMBER)[-4:]
    device.refresh_from_db()
    # What the row keeps: a nonce and an HMAC, never the code.
    assert re.fullmatch(r"[0-9a-f]{16}\$[0-9a-f]{64}", device.token)
    assert code not in device.token.split("$")[0]
    assert device.valid_until > timezone.now() + timedelta(seconds=290)
    assert verify_token(device.user, device.persistent_id, code) is not None


def test_the_digest_is_an_hmac_under_the_code_key(site):
    from django_voicepassword.contrib.otp.models import token_digest

    device = make_device()
    with override_settings(VOICEPASSWORD={**EMULATED, "CODE_KEY": "k" * 32}):
        device.generate_challenge()
        device.refresh_from_db()
        nonce, digest = device.token.split("$")
        code = site.code_for(NUMBER)[-4:]
        assert token_digest(device.pk, nonce, code) == digest
    # Another key gives another digest: the key, not the code, is the secret.
    assert token_digest(device.pk, nonce, code) != digest


def test_a_code_is_accepted_once(site):
    device = make_device()
    device.generate_challenge()
    code = site.code_for(NUMBER)[-4:]
    assert device.verify_token(code) is True
    device.refresh_from_db()
    assert device.token is None
    assert device.last_used_at is not None
    assert device.verify_token(code) is False


def test_a_voice_call_speaks_a_code_of_ours(site):
    device = make_device(channel="voice_call")
    assert "enter the 4-digit code you hear" in device.generate_challenge()
    assert Call.objects.get().channel == "voice_call"
    assert device.verify_token(site.code_for(NUMBER)) is True


def test_wrong_codes_are_throttled_as_django_otp_promises(site):
    device = make_device()
    device.generate_challenge()
    code = site.code_for(NUMBER)[-4:]
    wrong = f"{(int(code) + 1) % 10000:04d}"
    assert device.verify_token(wrong) is False
    # Back-off: 1 s after the first failure, during which even the right code fails.
    allowed, info = device.verify_is_allowed()
    assert not allowed
    assert info["failure_count"] == 1
    assert device.verify_token(code) is False
    device.refresh_from_db()
    assert device.throttling_failure_count == 1  # a refused attempt counts nothing
    # Once the back-off has passed, the right code is accepted and resets it.
    device.throttling_failure_timestamp = timezone.now() - timedelta(seconds=2)
    device.save()
    assert device.verify_token(code) is True
    device.refresh_from_db()
    assert device.throttling_failure_count == 0


@override_settings(OTP_VOICEPASSWORD_THROTTLE_FACTOR=0)
def test_a_code_takes_max_attempts_entries(site):
    device = make_device()
    device.generate_challenge()
    code = site.code_for(NUMBER)[-4:]
    for guess in ("0000x", "", f"{(int(code) + 1) % 10000:04d}"):
        assert device.verify_token(guess) is False
    device.refresh_from_db()
    assert device.token is None  # spent: a new call is needed
    assert device.verify_token(code) is False


def test_an_expired_code_is_refused(site):
    device = make_device()
    device.generate_challenge()
    code = site.code_for(NUMBER)[-4:]
    type(device).objects.filter(pk=device.pk).update(valid_until=timezone.now())
    device.refresh_from_db()
    assert device.verify_token(code) is False


def test_input_that_is_no_code_is_a_wrong_code(site):
    device = make_device()
    device.generate_challenge()
    for junk in (None, 12, ["1234"], "١٢٣٤٥", "x" * 10_000):
        assert device.verify_token(junk) is False


def test_an_older_code_stops_working_when_a_new_call_is_placed(site):
    with override_settings(OTP_VOICEPASSWORD_COOLDOWN_DURATION=0):
        device = make_device()
        device.generate_challenge()
        first = site.code_for(NUMBER)[-4:]
        device.generate_challenge()
        second = site.code_for(NUMBER)[-4:]
        if first != second:
            assert device.verify_token(first) is False
            device.throttling_failure_count = 0
            device.save()
        assert device.verify_token(second) is True


def test_the_cooldown_places_one_call(site):
    device = make_device()
    device.generate_challenge()
    message = device.generate_challenge()
    assert message.startswith("A code was sent a moment ago. Try again in ")
    # Another instance of the same device (a second tab) is refused by the database.
    again = type(device).objects.get(pk=device.pk)
    again.last_generated_timestamp = None
    assert again.generate_challenge().startswith("A code was sent a moment ago.")
    assert len(site.sends(NUMBER)) == 1


def test_the_package_limits_refuse_a_call(site):
    with override_settings(
        VOICEPASSWORD={**EMULATED, "LIMITS": {"number": "1/h"}},
        OTP_VOICEPASSWORD_COOLDOWN_DURATION=0,
    ):
        device = make_device()
        device.generate_challenge()
        message = device.generate_challenge()
    assert "Try again in" in message
    assert "Calling" not in message
    assert len(site.sends(NUMBER)) == 1
    # The refused challenge left the first code in force.
    assert device.verify_token(site.code_for(NUMBER)[-4:]) is True


def test_the_daily_budget_refuses_a_call(site):
    with override_settings(VOICEPASSWORD={**EMULATED, "DAILY_BUDGET": "0.00"}):
        device = make_device()
        message = device.generate_challenge()
    assert "Try again in" in message
    assert site.sends() == []
    assert not Call.objects.exists()
    device.refresh_from_db()
    assert device.token is None
    # No call, no cooldown: the person may ask again at once.
    assert device.last_generated_timestamp is None


#: A budget of one flash call (its PRICE_ESTIMATES default is 0.50).
ONE_CALL = {**EMULATED, "DAILY_BUDGET": "0.50"}


@pytest.mark.parametrize("number", ["79990000020", "79990000024"])
def test_a_call_the_provider_refuses_is_a_message_and_costs_nothing(site, number):
    from django_voicepassword import ratelimit

    with override_settings(VOICEPASSWORD=ONE_CALL):
        device = make_device(number)
        assert device.generate_challenge() == "The call could not be placed. Try again later."
        # The reservation was given back: the day's budget still holds a call.
        ratelimit.release(ratelimit.reserve("flash_call"))
    assert Call.objects.get().status == Call.Status.NOT_PLACED
    device.refresh_from_db()
    assert device.token is None
    # No call, no cooldown: the person may ask again at once.
    assert device.last_generated_timestamp is None


def test_a_call_whose_outcome_is_unknown_keeps_its_cost_and_cooldown(site):
    from django_voicepassword import ratelimit

    with override_settings(VOICEPASSWORD=ONE_CALL):
        device = make_device("79990000031")  # HTTP 500: the call may have been placed
        assert device.generate_challenge() == "The call could not be placed. Try again later."
        with pytest.raises(ratelimit.LimitExceeded):
            ratelimit.reserve("flash_call")
    assert Call.objects.get().status == Call.Status.UNKNOWN
    device.refresh_from_db()
    assert device.token is None  # the provider's code was lost with its answer
    assert device.last_generated_timestamp is not None


def test_a_voice_call_whose_outcome_is_unknown_keeps_its_code(site):
    device = make_device("79990000031", channel="voice_call")
    assert device.generate_challenge().startswith("Calling +7 999 ***-**-31")
    assert Call.objects.get().status == Call.Status.UNKNOWN
    # The code was ours: the phone may well have heard it.
    device.refresh_from_db()
    assert device.token


def test_a_device_without_a_number_calls_the_users_verified_number(site):
    device = make_device("")
    assert device.generate_challenge() == "There is no phone number to call for this device."
    PhoneNumber.objects.create(user=device.user, number="79990000007")
    assert "+7 999 ***-**-07" in device.generate_challenge()
    assert len(site.sends("79990000007")) == 1


def test_a_device_without_a_number_reads_the_users_phone_field(site):
    # last_name stands in for a site's own phone field on its user model.
    device = make_device("")
    device.user.last_name = "+7 999 000-00-08"
    device.user.save()
    with override_settings(VOICEPASSWORD={**EMULATED, "USER_PHONE_FIELD": "last_name"}):
        assert "+7 999 ***-**-08" in device.generate_challenge()
    assert len(site.sends("79990000008")) == 1


def test_a_number_is_stored_normalized_and_checked():
    from django.core.exceptions import ValidationError

    from django_voicepassword.phone import InvalidPhoneNumber

    device = make_device("+7 (999) 000-00-09")
    assert device.number == "79990000009"
    device.number = "not a number"
    with pytest.raises(ValidationError) as raised:
        device.full_clean()
    assert "number" in raised.value.message_dict
    with pytest.raises(InvalidPhoneNumber):
        device.save()


def test_a_broken_setting_names_itself():
    device = make_device()
    with (
        override_settings(OTP_VOICEPASSWORD_COOLDOWN_DURATION="60"),
        pytest.raises(ConfigurationError, match="OTP_VOICEPASSWORD_COOLDOWN_DURATION"),
    ):
        device.generate_challenge()


@pytest.mark.parametrize("value", [-1, True, "60", 1.5, None])
def test_a_setting_that_is_no_whole_number_of_0_or_more_is_refused(value):
    from django_voicepassword.contrib.otp import conf

    with (
        override_settings(OTP_VOICEPASSWORD_TOKEN_VALIDITY=value),
        pytest.raises(ConfigurationError, match=r"OTP_VOICEPASSWORD_TOKEN_VALIDITY must be"),
    ):
        conf.get("OTP_VOICEPASSWORD_TOKEN_VALIDITY")


def test_a_setting_is_the_site_s_or_its_default():
    from django_voicepassword.contrib.otp import conf

    assert conf.get("OTP_VOICEPASSWORD_TOKEN_VALIDITY") == 300
    with override_settings(OTP_VOICEPASSWORD_TOKEN_VALIDITY=0):
        assert conf.get("OTP_VOICEPASSWORD_TOKEN_VALIDITY") == 0


def test_a_name_that_is_no_setting_of_the_device_is_refused():
    from django_voicepassword.contrib.otp import conf

    # A typo in the package must not read a setting nobody documents.
    with (
        override_settings(OTP_VOICEPASSWORD_TOKEN_VALIDTY=30),
        pytest.raises(ConfigurationError, match="OTP_VOICEPASSWORD_TOKEN_VALIDTY is not"),
    ):
        conf.get("OTP_VOICEPASSWORD_TOKEN_VALIDTY")


def test_the_repr_masks_the_number():
    assert "79990000001" not in repr(make_device())
