"""System checks: each id fires on its misconfiguration, and only then."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_voicepassword.checks import (
    check_daily_budget,
    check_limits,
    check_limits_cache,
    check_settings,
)

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


# --- the limits' cache and settings (check_limits_cache, check_limits) ---------------

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/15",
    }
}


def cache_ids(caches, *, debug=False, **voicepassword):
    settings = {"API_KEY": "k", **voicepassword}
    with override_settings(CACHES=caches, DEBUG=debug, VOICEPASSWORD=settings):
        return [message.id for message in check_limits_cache()]


def limit_ids(**voicepassword):
    with override_settings(VOICEPASSWORD={"API_KEY": "k", **voicepassword}):
        return [message.id for message in check_limits()]


def test_w002_local_memory_cache_with_limits_in_production():
    assert cache_ids(LOCMEM) == ["voicepassword.W002"]
    assert cache_ids(LOCMEM, LIMITS={}, DAILY_BUDGET="100") == ["voicepassword.W002"]


def test_w002_not_in_development_nor_without_limits_nor_on_redis():
    assert cache_ids(LOCMEM, debug=True) == []
    assert cache_ids(LOCMEM, LIMITS={}) == []
    assert cache_ids(LOCMEM, LIMITS={"number": "", "ip": None}) == []
    assert cache_ids(REDIS) == []  # nothing connects: the check reads the class


@pytest.mark.parametrize(
    ("backend", "location"),
    [
        ("django.core.cache.backends.db.DatabaseCache", "voicepassword_cache"),
        ("django.core.cache.backends.filebased.FileBasedCache", "{tmp}"),
        ("django.core.cache.backends.dummy.DummyCache", ""),
    ],
)
def test_e007_cache_that_cannot_count_atomically(backend, location, tmp_path):
    caches = {"default": {"BACKEND": backend, "LOCATION": location.format(tmp=tmp_path)}}
    assert cache_ids(caches) == ["voicepassword.E007"]
    assert cache_ids(caches, debug=True) == ["voicepassword.E007"]
    assert cache_ids(caches, LIMITS={}, DAILY_BUDGET="50") == ["voicepassword.E007"]
    assert cache_ids(caches, LIMITS={}) == []


def test_limit_checks_leave_broken_settings_to_check_settings():
    dummy = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert cache_ids(dummy, LIMITS="3/h") == []
    assert limit_ids(LIMITS="3/h") == []


def test_e008_rates_the_limits_cannot_use():
    assert limit_ids() == []
    assert limit_ids(LIMITS={"number": "3/10m,10/d", "global": "0/d"}) == []
    assert limit_ids(LIMITS={"number": "3/0m"}) == ["voicepassword.E008"]
    assert limit_ids(LIMITS={"ip": "3/h,5/60m"}) == ["voicepassword.E008"]
    assert limit_ids(LIMITS={"ip": "1/400d", "prefix": "٣/h"}) == ["voicepassword.E008"] * 2


def test_e008_negative_amounts():
    assert limit_ids(DAILY_BUDGET="0") == []
    assert limit_ids(DAILY_BUDGET="-1") == ["voicepassword.E008"]
    prices = {"flash_call": "0.50", "voice_call": "-1", "sms": "4"}
    assert limit_ids(PRICE_ESTIMATES=prices) == ["voicepassword.E008"]


def test_e002_network_scope_and_new_share_are_validated():
    assert ids(API_KEY="k", LIMITS={"network": "12/h,60/d"}, GLOBAL_NEW_SHARE=0.25) == []
    assert ids(API_KEY="k", GLOBAL_NEW_SHARE=1) == []
    for share in (0, -0.5, 1.5, "0.5", True, None):
        assert ids(API_KEY="k", GLOBAL_NEW_SHARE=share) == ["voicepassword.E002"]
    assert ids(API_KEY="k", LIMITS={"networks": "1/h"}) == ["voicepassword.E002"]
    assert limit_ids(LIMITS={"network": "1/0h"}) == ["voicepassword.E008"]


def test_a_bad_new_share_is_a_configuration_error_naming_the_setting():
    from django_voicepassword.conf import ConfigurationError, settings

    with (
        override_settings(VOICEPASSWORD={"API_KEY": "k", "GLOBAL_NEW_SHARE": 2}),
        pytest.raises(ConfigurationError, match=r"GLOBAL_NEW_SHARE.*above 0 and at most 1"),
    ):
        settings.GLOBAL_NEW_SHARE  # noqa: B018


def budget_ids(*, debug=False, **voicepassword):
    with override_settings(DEBUG=debug, VOICEPASSWORD=voicepassword):
        return [message.id for message in check_daily_budget()]


def test_w008_production_without_a_daily_budget():
    assert budget_ids(API_KEY="k") == ["voicepassword.W008"]
    assert budget_ids(API_KEY="k", LIMITS={}) == ["voicepassword.W008"]


def test_w008_not_with_a_budget_in_development_or_without_real_calls():
    assert budget_ids(API_KEY="k", DAILY_BUDGET="300.00") == []
    assert budget_ids(API_KEY="k", DAILY_BUDGET=0) == []
    assert budget_ids(API_KEY="k", debug=True) == []
    assert budget_ids(GATEWAY=CONSOLE) == []
    assert budget_ids(GATEWAY="django_voicepassword.gateways.LocmemGateway") == []
    assert budget_ids(API_KEY="k", READ_TIMEOUT="x") == []  # check_settings reports it


@pytest.mark.django_db
def test_w008_runs_with_manage_py_check(capsys):
    with override_settings(VOICEPASSWORD={"API_KEY": "k"}):
        call_command("check")
    assert "voicepassword.W008" in capsys.readouterr().err
    with override_settings(VOICEPASSWORD={"API_KEY": "k", "DAILY_BUDGET": "300"}):
        call_command("check")
    assert "voicepassword.W008" not in capsys.readouterr().err


@pytest.mark.django_db
def test_limit_checks_run_with_manage_py_check():
    dummy = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    with (
        override_settings(CACHES=dummy, VOICEPASSWORD={"API_KEY": "k"}),
        pytest.raises(SystemCheckError, match="E007"),
    ):
        call_command("check")
    with (
        override_settings(VOICEPASSWORD={"API_KEY": "k", "LIMITS": {"number": "3/0m"}}),
        pytest.raises(SystemCheckError, match="E008"),
    ):
        call_command("check")


def test_w003_login_routed_without_the_backend():
    from django_voicepassword.checks import check_login_backend

    assert check_login_backend() == []
    with override_settings(AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"]):
        assert [m.id for m in check_login_backend()] == ["voicepassword.W003"]
    with override_settings(
        ROOT_URLCONF="tests.urls_without_app",
        AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"],
    ):
        assert check_login_backend() == []


def test_e011_signed_cookie_sessions_with_the_login_routed():
    from django_voicepassword.checks import check_login_sessions

    assert check_login_sessions() == []
    signed = "django.contrib.sessions.backends.signed_cookies"
    with override_settings(SESSION_ENGINE=signed):
        assert [m.id for m in check_login_sessions()] == ["voicepassword.E011"]
    with override_settings(SESSION_ENGINE=signed, ROOT_URLCONF="tests.urls_without_app"):
        assert check_login_sessions() == []


# --- SQLite's transaction mode (check_sqlite_transactions) ----------------------------


def sqlite_ids(tmp_path, **config):
    from django_voicepassword.checks import check_sqlite_transactions

    databases = {"default": {"NAME": str(tmp_path / "db.sqlite3"), **config}}
    # override_settings(DATABASES=...) warns that open connections keep the old
    # settings; the check reads the setting only, so the warning is expected.
    with (
        pytest.warns(UserWarning, match="DATABASES"),
        override_settings(DATABASES=databases),
    ):
        return [message.id for message in check_sqlite_transactions()]


SQLITE = "django.db.backends.sqlite3"


def test_w007_sqlite_without_options(tmp_path):
    assert sqlite_ids(tmp_path, ENGINE=SQLITE) == ["voicepassword.W007"]
    assert sqlite_ids(tmp_path, ENGINE=SQLITE, OPTIONS=None) == ["voicepassword.W007"]
    assert sqlite_ids(tmp_path, ENGINE=SQLITE, OPTIONS={"timeout": 20}) == ["voicepassword.W007"]


def test_w007_sqlite_with_deferred_transactions(tmp_path):
    options = {"transaction_mode": "DEFERRED", "timeout": 20}
    assert sqlite_ids(tmp_path, ENGINE=SQLITE, OPTIONS=options) == ["voicepassword.W007"]


@pytest.mark.parametrize("mode", ["IMMEDIATE", "immediate", "EXCLUSIVE"])
def test_w007_quiet_when_transactions_take_the_lock_at_begin(tmp_path, mode):
    options = {"transaction_mode": mode, "timeout": 20}
    assert sqlite_ids(tmp_path, ENGINE=SQLITE, OPTIONS=options) == []


def test_w007_quiet_for_an_in_memory_test_database(tmp_path):
    from django_voicepassword.checks import check_sqlite_transactions

    for name in (":memory:", "file:memorydb_default?mode=memory&cache=shared"):
        databases = {"default": {"ENGINE": SQLITE, "NAME": name}}
        with pytest.warns(UserWarning, match="DATABASES"), override_settings(DATABASES=databases):
            assert check_sqlite_transactions() == []


def test_w007_quiet_on_postgresql(tmp_path):
    pytest.importorskip("psycopg")
    assert sqlite_ids(tmp_path, ENGINE="django.db.backends.postgresql") == []


def test_w007_the_example_site_configures_sqlite_as_the_check_asks(tmp_path):
    from tests.test_example_project import manage

    result = manage("check", "--fail-level", "WARNING", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    result = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'])",
        tmp_path=tmp_path,
    )
    assert result.stdout.strip() == "{'transaction_mode': 'IMMEDIATE', 'timeout': 20}"


def test_every_problem_is_reported_at_once():
    # A typo no longer hides the other problems of the dict, nor the checks
    # of the settings that are sound enough to be checked.
    found = ids(
        APIKEY="k",  # a typo of API_KEY, so the HTTP gateway has no key either
        READ_TIMEOUT="10",
        ADAPTER="django_voicepassword.adapter.NoSuchAdapter",
        API_URL="vp.voicepassword.ru/api/",
        ALLOWED_NUMBER_TYPES=["MOBIL"],
    )
    assert sorted(found) == [
        "voicepassword.E001",
        "voicepassword.E002",
        "voicepassword.E003",
        "voicepassword.E004",
        "voicepassword.E005",
        "voicepassword.E006",
    ]
    assert limit_ids(APIKEY="k", LIMITS={"number": "3/0m"}) == ["voicepassword.E008"]


def test_manage_py_check_lists_every_problem():
    broken = {
        "CREATE_USER": True,
        "MAX_ATTEMPTS": "3",
        "ADAPTER": "django_voicepassword.adapter.NoSuchAdapter",
    }
    with (
        override_settings(VOICEPASSWORD={"API_KEY": "k", **broken}),
        pytest.raises(SystemCheckError) as error,
    ):
        call_command("check")
    for shown in ("voicepassword.E001", "CREATE_USERS?", "voicepassword.E002", "MAX_ATTEMPTS"):
        assert shown in str(error.value)
    assert "NoSuchAdapter" in str(error.value)
