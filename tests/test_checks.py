"""System checks: each id fires on its misconfiguration, and only then."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_voicepassword.checks import check_settings

HTTP = "django_voicepassword.gateways.HttpGateway"
CONSOLE = "django_voicepassword.gateways.ConsoleGateway"


def ids(**voicepassword):
    with override_settings(VOICEPASSWORD=voicepassword):
        return [message.id for message in check_settings()]


def test_a_good_configuration_passes():
    assert ids(API_KEY="k") == []
    assert ids(GATEWAY=CONSOLE) == []
    assert ids(API_KEY="k", API_URL="http://127.0.0.1:8765/api/voice-password/") == []
    assert ids(API_KEY="k", API_URL="http://localhost:8765/api/voice-password/") == []
    assert ids(API_KEY="k", API_URL="http://[::1]:8765/api/voice-password/") == []


def test_e001_unknown_key():
    assert ids(API_KEY="k", APIKEY="k") == ["voicepassword.E001"]


def test_e001_not_a_dict():
    with override_settings(VOICEPASSWORD="k"):
        assert [m.id for m in check_settings()] == ["voicepassword.E001"]


def test_e002_wrong_type():
    assert ids(API_KEY="k", READ_TIMEOUT="10") == ["voicepassword.E002"]


def test_e003_http_gateway_without_api_key():
    assert ids() == ["voicepassword.E003"]
    assert ids(API_KEY="") == ["voicepassword.E003"]
    assert ids(GATEWAY=HTTP, API_KEY=None) == ["voicepassword.E003"]


@pytest.mark.parametrize(
    "url",
    [
        "vp.voicepassword.ru/api/voice-password/",
        "ftp://vp.voicepassword.ru/api/voice-password/",
        "https://vp.voicepassword.ru/api/voice-password",
        "https:///api/",
    ],
)
def test_e004_bad_api_url(url):
    assert ids(API_KEY="k", API_URL=url) == ["voicepassword.E004"]


def test_e005_gateway_that_cannot_be_imported_or_is_not_a_gateway():
    assert ids(GATEWAY="no.such.Gateway") == ["voicepassword.E005"]
    assert ids(GATEWAY="django_voicepassword.conf.Problem") == ["voicepassword.E005"]


def test_e006_unknown_region_or_number_type():
    assert ids(API_KEY="k", PHONE_REGION="XX") == ["voicepassword.E006"]
    assert ids(API_KEY="k", ALLOWED_REGIONS=["RU", "ru"]) == ["voicepassword.E006"]
    assert ids(API_KEY="k", ALLOWED_NUMBER_TYPES=["MOBILE", "CELL"]) == ["voicepassword.E006"]
    # An attribute of PhoneNumberType that is not a type name is not a type.
    assert ids(API_KEY="k", ALLOWED_NUMBER_TYPES=["__firstlineno__"]) == ["voicepassword.E006"]


def test_w001_key_over_plain_http_to_another_host():
    assert ids(API_KEY="k", API_URL="http://vp.voicepassword.ru/api/voice-password/") == [
        "voicepassword.W001"
    ]


@pytest.mark.django_db
def test_checks_run_with_manage_py_check():
    with override_settings(VOICEPASSWORD={}), pytest.raises(SystemCheckError, match="E003"):
        call_command("check")
