"""The adapter's hooks: numbers stored as the package stores them, codes sent as its calls."""

from __future__ import annotations

from tests.contrib_allauth import require_allauth

require_allauth()

import json  # noqa: E402
import sys  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import AnonymousUser  # noqa: E402

from django_voicepassword.models import PhoneNumber  # noqa: E402
from tests import services  # noqa: E402

pytestmark = pytest.mark.django_db


def adapter():
    from allauth.account.adapter import get_adapter

    return get_adapter()


def test_the_site_uses_the_adapter():
    from django_voicepassword.contrib.allauth.adapter import VoicePasswordAccountAdapter

    assert isinstance(adapter(), VoicePasswordAccountAdapter)


def test_a_pending_number_finds_nobody_and_a_verified_one_is_a_phone_number():
    user = get_user_model().objects.create_user("u1")
    adapter().set_phone(user, "8 999 000-00-01", False)
    assert adapter().get_phone(user) == ("+79990000001", False)
    assert adapter().get_user_by_phone("+79990000001") is None
    assert not PhoneNumber.objects.exists()
    adapter().set_phone_verified(user, "+79990000001")
    assert adapter().get_phone(user) == ("+79990000001", True)
    assert adapter().get_user_by_phone("+7 999 000 00 01") == user
    assert PhoneNumber.objects.get().number == "79990000001"


@pytest.fixture
def emulator(settings, voicepassword_emulator):
    from django_voicepassword.gateways.base import reset_gateway

    services.clear_cache()
    settings.VOICEPASSWORD = {"API_KEY": "emulator-key", "LIMITS": {}}
    reset_gateway()
    yield voicepassword_emulator
    reset_gateway()


@contextmanager
def in_request(path="/accounts/login/"):
    """allauth's request context, as its middleware sets it; gives the request."""
    from allauth.core import context
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.backends.cache import SessionStore
    from django.test import RequestFactory

    request = RequestFactory().post(path)
    request.session = SessionStore()
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    with context.request_context(request):
        yield request


def test_the_code_is_four_digits_whatever_allauths_format(settings):
    settings.ACCOUNT_PHONE_VERIFICATION_CODE_FORMAT = {"numeric": True, "length": 8}
    user = get_user_model().objects.create_user("u1")
    codes = {
        adapter().generate_phone_verification_code(user=user, phone="+79990000001")
        for _ in range(50)
    }
    assert all(len(code) == 4 and code.isdigit() for code in codes)
    assert len(codes) > 10


def test_the_code_goes_out_as_the_flash_calls_own_code(emulator):
    user = get_user_model().objects.create_user("u1")
    with in_request():
        adapter().send_verification_code_sms(user=user, phone="+79990000001", code="4821")
    (sent,) = emulator.sends("79990000001")
    assert sent.payload["flashcall"]["code"] == "4821"
    assert emulator.code_for("79990000001") == "4821"


def test_an_unknown_account_waits_like_a_real_send_and_places_nothing(emulator, monkeypatch):
    from django_voicepassword import verification

    user = get_user_model().objects.create_user("u1")
    with in_request():
        # Two real sends: the first warms the gateway, the second is measured.
        for code in ("1111", "2222"):
            adapter().send_verification_code_sms(user=user, phone="+79990000001", code=code)
        measured = verification._durations("flash_call")
        assert measured
        waited: list[float] = []
        monkeypatch.setattr(verification, "pause", waited.append)
        adapter().send_unknown_account_sms("+79990000005")
        adapter().send_account_already_exists_sms("+79990000006")
    assert len(waited) == 2
    assert not emulator.sends("79990000005")
    assert not emulator.sends("79990000006")


def test_the_stand_in_is_counted_by_the_limits_as_a_call_is(emulator, settings):
    from allauth.core.exceptions import ImmediateHttpResponse

    settings.VOICEPASSWORD = {"API_KEY": "emulator-key", "LIMITS": {"number": "1/h"}}
    with in_request():
        adapter().send_unknown_account_sms("+79990000005")
        with pytest.raises(ImmediateHttpResponse) as refused:
            adapter().send_unknown_account_sms("+79990000005")
    assert refused.value.response.status_code == 302
    assert int(refused.value.response["Retry-After"]) > 0


def test_a_user_field_site_keeps_verified_numbers_in_its_field(settings, monkeypatch):
    from django_voicepassword.adapter import UserFieldAdapter
    from django_voicepassword.contrib.allauth.models import PendingPhoneNumber

    class FieldAdapter(UserFieldAdapter):
        """The user model's last_name stands in for a site's phone field."""

    settings.VOICEPASSWORD = {
        "API_KEY": "emulator-key",
        "ADAPTER": f"{__name__}.FieldAdapter",
        "USER_PHONE_FIELD": "last_name",
    }
    globals()["FieldAdapter"] = FieldAdapter
    user = get_user_model().objects.create_user("u1")
    other = get_user_model().objects.create_user("u2", last_name="79990000001")
    adapter().set_phone(user, "+79990000001", False)
    # Typed at sign-up, not proved: the field is untouched and still finds the holder.
    user.refresh_from_db()
    assert user.last_name == ""
    assert adapter().get_user_by_phone("+79990000001") == other
    adapter().set_phone_verified(user, "+79990000001")
    user.refresh_from_db()
    other.refresh_from_db()
    assert (user.last_name, other.last_name) == ("79990000001", "")
    assert adapter().get_phone(user) == ("+79990000001", True)
    assert not PhoneNumber.objects.exists()
    assert PendingPhoneNumber.objects.count() == 0


def test_a_number_set_as_verified_is_the_user_s_one_number():
    from django_voicepassword.contrib.allauth.models import PendingPhoneNumber

    user = get_user_model().objects.create_user("u1")
    adapter().set_phone(user, "+79990000002", False)
    adapter().set_phone(user, "8 999 000-00-01", True)
    assert adapter().get_phone(user) == ("+79990000001", True)
    assert adapter().get_user_by_phone("+79990000001") == user
    assert list(PhoneNumber.objects.values_list("number", flat=True)) == ["79990000001"]
    assert not PendingPhoneNumber.objects.exists()


@pytest.mark.parametrize("typed", ["not a number", "12", "+7 495 000-00-00"])
def test_what_is_no_acceptable_number_finds_nobody(typed):
    # Even a holder stored before the policy refused such numbers (a landline).
    user = get_user_model().objects.create_user("u1")
    PhoneNumber.objects.create(user=user, number="74950000000")
    assert adapter().get_user_by_phone(typed) is None


def test_a_pending_number_the_policy_refuses_is_not_called(emulator):
    from allauth.core.exceptions import ImmediateHttpResponse

    user = get_user_model().objects.create_user("u1")
    # Stored as typed (set_phone does not apply the policy); called, it is refused.
    adapter().set_phone(user, "+7 495 000-00-00", False)
    with in_request() as request, pytest.raises(ImmediateHttpResponse) as refused:
        adapter().send_verification_code_sms(user=user, phone="+74950000000", code="1234")
    assert refused.value.response.status_code == 302
    assert [str(m) for m in request._messages] == ["Landline numbers are not accepted."]
    assert not emulator.sends()


def test_a_channel_the_package_does_not_place_is_a_programming_error(emulator, settings):
    settings.ACCOUNT_ADAPTER = "tests.contrib_allauth.adapters.SmsAdapter"
    user = get_user_model().objects.create_user("u1")
    with in_request(), pytest.raises(ValueError, match="voicepassword_channel must be one of"):
        adapter().send_verification_code_sms(user=user, phone="+79990000001", code="1234")
    assert not emulator.sends()


def headless_refusal() -> Any:
    from allauth.core.exceptions import ImmediateHttpResponse

    with in_request("/_allauth/app/v1/auth/code/request") as request:
        request.allauth = SimpleNamespace(headless=SimpleNamespace(client="app"))
        request.user = AnonymousUser()
        with pytest.raises(ImmediateHttpResponse) as refused:
            adapter().voicepassword_refuse(
                "Too many codes.", code="voicepassword_limit", status=429, retry_after=30
            )
    return refused.value.response


def test_a_headless_refusal_has_allauth_s_error_shape_even_where_allauth_moved_it(monkeypatch):
    expected = {"message": "Too many codes.", "code": "voicepassword_limit"}
    for where in ("allauth's class", "by hand"):
        if where == "by hand":
            monkeypatch.setitem(sys.modules, "allauth.headless.internal.restkit.response", None)
        response = headless_refusal()
        assert response.status_code == 429, where
        assert response["Retry-After"] == "30"
        body = json.loads(response.content)
        assert (body["status"], body["errors"]) == (429, [expected]), where


def test_verifying_through_allauth_leaves_the_user_one_number():
    user = get_user_model().objects.create_user("u1")
    PhoneNumber.objects.create(user=user, number="79990000002")
    adapter().set_phone_verified(user, "+79990000001")
    assert list(PhoneNumber.objects.values_list("number", flat=True)) == ["79990000001"]


def test_the_checks_name_what_is_wrong(settings):
    from django_voicepassword.contrib.allauth.checks import check_allauth_site

    assert check_allauth_site() == []
    settings.ACCOUNT_ADAPTER = "allauth.account.adapter.DefaultAccountAdapter"
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    apps = list(settings.INSTALLED_APPS)
    apps.remove("django_voicepassword.contrib.allauth")
    settings.INSTALLED_APPS = [*apps, "django_voicepassword.contrib.allauth"]
    ids = [problem.id for problem in check_allauth_site()]
    assert ids == [
        "voicepassword_allauth.E001",
        "voicepassword_allauth.W001",
        "voicepassword_allauth.W002",
    ]


def test_the_package_imports_no_allauth_unless_the_site_uses_it():
    import subprocess
    import sys

    code = (
        "import sys, django; from django.conf import settings;"
        "settings.configure(INSTALLED_APPS=['django.contrib.admin','django.contrib.auth',"
        "'django.contrib.contenttypes','django.contrib.sessions','django.contrib.messages',"
        "'rest_framework','django_voicepassword'], SECRET_KEY='x');"
        "django.setup();"
        "import django_voicepassword.verification, django_voicepassword.urls;"
        "print(sorted(m for m in sys.modules if m.startswith('allauth')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
