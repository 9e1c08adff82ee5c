"""A send that placed nothing still counts against the limits; its budget is given back.

Why (``docs/decisions.md``, "Limits"): a login for a number without an account
places nothing and is counted, so a login whose call the provider refused must
be counted alike (``test_accounts_alike.py`` compares the two); and a
verification refused by the provider is the one place where retrying would
only ask the provider again, so the limits are what paces it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from django_voicepassword import verification
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Call
from django_voicepassword.ratelimit import LimitExceeded
from tests.test_ratelimit import forget_counters

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "79990000022"  # the emulator refuses it: number_in_spam_list


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch) -> Iterator[object]:
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    forget_counters()
    with override_settings(
        VOICEPASSWORD={
            "API_KEY": "emulator-key",
            "LIMITS": {"number": "2/h"},
            "DAILY_BUDGET": "1.00",  # two flash calls' estimates
        }
    ):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()
    forget_counters()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: a connection to it is refused


def two_failed_verifications(number: str) -> None:
    user = get_user_model().objects.create_user("alice")
    for _ in range(2):
        with pytest.raises(verification.ChallengeError) as failed:
            verification.start_challenge(number, purpose="verify", user=user)
        assert failed.value.code == "channel_unavailable"
    # Nothing was placed, but the number's two codes are used.
    assert set(Call.objects.values_list("status", flat=True)) == {Call.Status.NOT_PLACED}
    with pytest.raises(LimitExceeded) as refused:
        verification.start_challenge(number, purpose="verify", user=user)
    assert refused.value.scope == "number"


def test_a_verification_the_provider_refused_counts():
    two_failed_verifications(REFUSED)
    # The budget (1.00: two estimates) was given back each time: a third number
    # is not refused for money.
    user = get_user_model().objects.get(username="alice")
    verification.start_challenge("79990000007", purpose="verify", user=user)


def test_a_verification_that_could_not_reach_the_provider_counts():
    settings = {
        "API_KEY": "emulator-key",
        "API_URL": f"http://127.0.0.1:{closed_port()}/api/voice-password/",
        "LIMITS": {"number": "2/h"},
    }
    with override_settings(VOICEPASSWORD=settings):
        reset_gateway()
        two_failed_verifications("79990000007")
