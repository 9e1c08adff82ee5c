"""The settings object: defaults, unknown keys, types, imports, reload."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from django_voicepassword.adapter import PhoneAdapter
from django_voicepassword.conf import (
    DEFAULTS,
    ConfigurationError,
    VoicePasswordSettings,
    settings,
)
from django_voicepassword.gateways import ConsoleGateway, HttpGateway


def test_defaults_apply_when_the_site_sets_nothing():
    vp = VoicePasswordSettings({})
    for key, default in DEFAULTS.items():
        if key == "GATEWAY":
            assert vp.GATEWAY is HttpGateway
        elif key == "ADAPTER":
            assert vp.ADAPTER is PhoneAdapter
        elif key == "PRICE_ESTIMATES":
            assert {k: Decimal(v) for k, v in default.items()} == vp.PRICE_ESTIMATES
        elif key in ("ALLOWED_REGIONS", "ALLOWED_NUMBER_TYPES", "RESEND_COOLDOWNS"):
            assert getattr(vp, key) == tuple(default)
        else:
            assert getattr(vp, key) == default


def test_the_default_api_url_is_the_clients():
    from django_voicepassword.client import DEFAULT_BASE_URL

    assert DEFAULTS["API_URL"] == DEFAULT_BASE_URL


def test_site_values_override_defaults():
    vp = VoicePasswordSettings({"READ_TIMEOUT": 2.5, "ALLOWED_REGIONS": ["RU", "BY"]})
    assert vp.READ_TIMEOUT == 2.5
    assert vp.ALLOWED_REGIONS == ("RU", "BY")


def test_unknown_key_is_rejected_by_name():
    vp = VoicePasswordSettings({"API_KEYS": "x", "TIMEOUT": 3})
    with pytest.raises(ConfigurationError) as error:
        _ = vp.API_URL
    assert "API_KEYS (did you mean API_KEY?), TIMEOUT" in str(error.value)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOPE"):
        _ = VoicePasswordSettings({}).NOPE


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("API_KEY", 123),
        ("API_URL", None),
        ("AUTH_MODE", "query"),
        ("CONNECT_TIMEOUT", 0),
        ("READ_TIMEOUT", "10"),
        ("READ_TIMEOUT", True),
        ("GET_RETRIES", -1),
        ("GET_RETRIES", 1.5),
        ("GATEWAY", HttpGateway),
        ("ALLOWED_REGIONS", "RU"),
        ("ALLOWED_NUMBER_TYPES", [1]),
    ],
)
def test_wrong_type_names_the_key(key, value):
    vp = VoicePasswordSettings({key: value})
    with pytest.raises(ConfigurationError, match=key):
        getattr(vp, key)
    assert [p.key for p in vp.problems()] == [key]


def test_dotted_path_is_imported_once_with_an_error_naming_the_setting():
    assert (
        VoicePasswordSettings({"GATEWAY": "django_voicepassword.gateways.ConsoleGateway"}).GATEWAY
        is ConsoleGateway
    )
    vp = VoicePasswordSettings({"GATEWAY": "django_voicepassword.gateways.Nope"})
    with pytest.raises(ConfigurationError, match="GATEWAY"):
        _ = vp.GATEWAY
    assert [p.check_id for p in vp.problems()] == ["voicepassword.E005"]


def test_values_are_cached_and_reloaded_on_setting_changed():
    with override_settings(VOICEPASSWORD={"READ_TIMEOUT": 1.0}):
        assert settings.READ_TIMEOUT == 1.0
        assert "READ_TIMEOUT" in vars(settings)  # cached, no second lookup
        with override_settings(VOICEPASSWORD={"READ_TIMEOUT": 2.0}):
            assert settings.READ_TIMEOUT == 2.0
        assert settings.READ_TIMEOUT == 1.0


def test_a_site_without_the_setting_gets_defaults():
    with override_settings():
        from django.conf import settings as django_settings

        del django_settings.VOICEPASSWORD
        assert settings.API_KEY is None
        assert settings.problems() == []


def test_a_setting_that_is_not_a_dict():
    with override_settings(VOICEPASSWORD=["API_KEY"]):
        with pytest.raises(ConfigurationError, match="must be a dict"):
            _ = settings.API_KEY
        assert [p.check_id for p in settings.problems()] == ["voicepassword.E001"]


def test_problems_lists_unknown_keys_and_every_bad_type():
    vp = VoicePasswordSettings({"FOO": 1, "AUTH_MODE": "x", "GET_RETRIES": "3"})
    found = vp.problems()
    assert [(p.key, p.check_id) for p in found] == [
        ("VOICEPASSWORD", "voicepassword.E001"),
        ("AUTH_MODE", "voicepassword.E002"),
        ("GET_RETRIES", "voicepassword.E002"),
    ]
    assert "FOO" in found[0].message


def test_a_wrong_api_key_value_is_not_repeated_in_the_error():
    vp = VoicePasswordSettings({"API_KEY": b"vp-secret-bytes"})
    with pytest.raises(ConfigurationError) as error:
        _ = vp.API_KEY
    assert "vp-secret-bytes" not in str(error.value)
    assert "bytes" in str(error.value)


# A typo, a wrong type and a dotted path that cannot be imported, in one dict.
THREE_PROBLEMS = {
    "CREATE_USER": True,
    "MAX_ATTEMPTS": "3",
    "ADAPTER": "django_voicepassword.adapter.NoSuchAdapter",
}


@pytest.mark.parametrize("key", ["API_URL", "MAX_ATTEMPTS", "ADAPTER"])
def test_one_error_reports_every_problem_of_the_dict(key):
    # The issue: the typo's error hid the others until it was fixed, then the
    # next one appeared, one restart at a time.
    vp = VoicePasswordSettings(THREE_PROBLEMS)
    with pytest.raises(ConfigurationError) as error:
        getattr(vp, key)
    message = str(error.value)
    assert message.startswith("The VOICEPASSWORD setting has 3 problems:")
    assert "CREATE_USER (did you mean CREATE_USERS?)" in message
    assert "VOICEPASSWORD['MAX_ATTEMPTS'] must be a positive whole number, not str." in message
    assert "VOICEPASSWORD['ADAPTER'] = 'django_voicepassword.adapter.NoSuchAdapter'" in message
    assert [(p.key, p.check_id) for p in error.value.problems] == [
        ("VOICEPASSWORD", "voicepassword.E001"),
        ("MAX_ATTEMPTS", "voicepassword.E002"),
        ("ADAPTER", "voicepassword.E005"),
    ]


def test_a_single_problem_keeps_its_own_message():
    vp = VoicePasswordSettings({"MAX_ATTEMPTS": "3"})
    with pytest.raises(ConfigurationError) as error:
        _ = vp.MAX_ATTEMPTS
    assert str(error.value) == (
        "VOICEPASSWORD['MAX_ATTEMPTS'] must be a positive whole number, not str."
    )
    assert [p.key for p in error.value.problems] == ["MAX_ATTEMPTS"]
    assert DEFAULTS["API_URL"] == vp.API_URL  # the sound settings still read


def test_value_reads_one_setting_alone():
    vp = VoicePasswordSettings(THREE_PROBLEMS)
    assert vp.value("READ_TIMEOUT") == DEFAULTS["READ_TIMEOUT"]
    with pytest.raises(ConfigurationError, match="MAX_ATTEMPTS"):
        vp.value("MAX_ATTEMPTS")
    assert "READ_TIMEOUT" not in vars(vp)  # value() caches nothing
