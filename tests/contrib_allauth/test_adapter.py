"""The adapter's hooks: numbers stored as the package stores them, codes sent as its calls."""

from __future__ import annotations

from tests.contrib_allauth import require_allauth

require_allauth()

import pytest  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from django_voicepassword.models import PhoneNumber  # noqa: E402

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
