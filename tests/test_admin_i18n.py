"""The admin in Russian: every count with its noun in the right form, every date in the genitive.

Russian has three forms of a noun after a number ("1 звонок", "2 звонка",
"5 звонков"; 11-14 take the third, 21 the first, 22 the second) and names a
month after a day in the genitive ("3 ноября", not "3 Ноябрь"). English is
checked beside it: the fix must not change it.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone, translation

from django_voicepassword import dashboard
from django_voicepassword.admin.calls import ACTION_LIMIT
from django_voicepassword.admin.common import month_day
from django_voicepassword.models import Call, CallbackEvent, Challenge

pytestmark = pytest.mark.django_db

CALLS = reverse("admin:voicepassword_call_changelist")
CALLBACKS = reverse("admin:voicepassword_callbackevent_changelist")
CHALLENGES = reverse("admin:voicepassword_challenge_changelist")
BALANCE = reverse("admin:voicepassword_balancesnapshot_changelist")

RU_MONTHS = [
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
]  # fmt: skip
RU_NOMINATIVE = [
    "Январь", "Февраль", "Март", "Апрель", "Май", "Июнь",
    "Июль", "Август", "Сентябрь", "Октябрь", "Ноябрь", "Декабрь",
]  # fmt: skip
EN_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip

# The counts of the issue: each Russian plural form, and the teens that break the rule.
COUNTS = {
    1: ("1 call", "1 звонок"),
    2: ("2 calls", "2 звонка"),
    5: ("5 calls", "5 звонков"),
    11: ("11 calls", "11 звонков"),
    17: ("17 calls", "17 звонков"),
    21: ("21 calls", "21 звонок"),
    22: ("22 calls", "22 звонка"),
}


@pytest.fixture(autouse=True)
def _fresh_balance_cache():
    cache.delete(dashboard.BALANCE_CACHE_KEY)
    yield
    cache.delete(dashboard.BALANCE_CACHE_KEY)


def get(client, url, language, **params):
    response = client.get(url, params, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return response.content.decode()


def shown_count(body):
    """The count under the list, as a person reads it."""
    match = re.search(r'<span class="vp-count">([^<]*)</span>', body)
    assert match, "the list shows no count"
    return match.group(1)


def make_calls(count, **fields):
    now = timezone.now()
    Call.objects.bulk_create(
        Call(
            number=f"799900000{n % 100:02d}",
            channel=Call.Channel.FLASH_CALL,
            status=Call.Status.ANSWERED,
            price=Decimal("0.35"),
            created_at=now - dt.timedelta(minutes=n),
            **fields,
        )
        for n in range(count)
    )


@pytest.mark.parametrize("count", sorted(COUNTS))
def test_the_call_list_counts_in_both_languages(admin_client, count):
    make_calls(count)
    english, russian = COUNTS[count]
    body = get(admin_client, CALLS, "en")
    assert shown_count(body) == english
    assert f"<strong>{shown_count(body)}</strong>" in body  # the totals above the rows
    body = get(admin_client, CALLS, "ru")
    assert shown_count(body) == russian
    assert f"<strong>{russian}</strong>" in body
    assert "звонки" not in shown_count(body)  # the issue: "17 звонки"


def test_a_capped_count_is_said_with_the_right_form(admin_client, monkeypatch):
    from django_voicepassword.admin.calls import CallPaginator

    monkeypatch.setattr(CallPaginator, "limit", 21)
    monkeypatch.setattr(CallPaginator, "_unfiltered", lambda self: False)  # no estimate
    make_calls(23)
    assert shown_count(get(admin_client, CALLS, "ru")) == "21 звонок и более"
    assert shown_count(get(admin_client, CALLS, "en")) == "21 or more calls"


def test_the_other_lists_count_with_their_own_nouns(admin_client):
    call = Call.objects.create(number="79990000001", channel=Call.Channel.FLASH_CALL)
    now = timezone.now()
    for n in range(22):
        CallbackEvent.objects.create(call=call, provider_id=str(n), payload={}, state="x")
        Challenge.objects.create(
            number="79990000001",
            purpose=Challenge.Purpose.LOGIN,
            channel=Call.Channel.FLASH_CALL,
            expires_at=now,
            resend_at=now,
        )
    assert shown_count(get(admin_client, CALLBACKS, "ru")) == "22 уведомления о статусе"  # noqa: RUF001
    assert shown_count(get(admin_client, CHALLENGES, "ru")) == "22 подтверждения"
    assert shown_count(get(admin_client, CHALLENGES, "en")) == "22 challenges"


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "November 3"), ("ru", "3 ноября"), ("uk", "03 листопада")],
)
def test_month_day_uses_the_genitive_where_the_language_has_one(language, expected):
    with translation.override(language):
        assert month_day(dt.date(2026, 11, 3)) == expected


def test_every_month_is_in_the_genitive_in_russian():
    with translation.override("ru"):
        for month in range(1, 13):
            assert month_day(dt.date(2026, month, 3)) == f"3 {RU_MONTHS[month - 1]}"


def test_the_dashboard_charts_label_days_in_the_genitive(admin_client):
    today = timezone.localdate()
    make_calls(3)
    body = get(admin_client, BALANCE, "ru")
    assert f"{today.day} {RU_MONTHS[today.month - 1]}" in body
    assert f"{today.day} {RU_NOMINATIVE[today.month - 1]}" not in body
    # The tooltips count calls with the right noun too: "за 3 звонка".
    assert "за 3 звонка" in body
    assert "Последние 30 дней" in body
    body = get(admin_client, BALANCE, "en")
    assert f"{EN_MONTHS[today.month - 1]} {today.day}" in body
    assert "for 3 calls" in body


def test_the_date_hierarchy_names_days_in_the_genitive(admin_client):
    Call.objects.create(
        number="79990000001",
        channel=Call.Channel.FLASH_CALL,
        created_at=dt.datetime(2024, 11, 5, 12, tzinfo=dt.UTC),
    )
    params = {"created_at__year": "2024", "created_at__month": "11"}
    for language, title in (("ru", "5 ноября"), ("en", "November 5")):
        response = admin_client.get(CALLS, params, HTTP_ACCEPT_LANGUAGE=language)
        drill = response.context["cl"].date_drilldown
        assert [choice["title"] for choice in drill["choices"]] == [title]


@pytest.mark.parametrize(
    ("count", "russian"),
    [(1, "1 секунду"), (2, "2 секунды"), (5, "5 секунд"), (21, "21 секунду"), (22, "22 секунды")],
)
def test_the_dashboard_cache_seconds_are_counted(admin_client, monkeypatch, count, russian):
    from django_voicepassword.models import BalanceSnapshot

    monkeypatch.setattr(dashboard, "BALANCE_CACHE_SECONDS", count)
    BalanceSnapshot.objects.create(balance=Decimal("10"), currency="Rub")
    reading = dashboard.BalanceReading(
        balance=Decimal("10"),
        currency="Rub",
        taken_at=timezone.now(),
        checked_at=timezone.now(),
    )
    monkeypatch.setattr(dashboard, "current_balance", lambda **_: reading)
    assert f"не чаще раза в {russian}." in get(admin_client, BALANCE, "ru")


def test_the_action_limit_message_counts_in_russian():
    with translation.override("ru"):
        text = translation.ngettext(
            "Select at most %(limit)d call: each one is a request to the provider.",
            "Select at most %(limit)d calls: each one is a request to the provider.",
            ACTION_LIMIT,
        ) % {"limit": ACTION_LIMIT}
    assert text.startswith(f"Выберите не больше {ACTION_LIMIT} звонков")


def test_the_call_list_shows_short_dates_in_both_languages(admin_client):
    # DATETIME_FORMAT's long Russian date left no room for the user column at 1280 px.
    Call.objects.create(
        number="79990000001",
        channel=Call.Channel.FLASH_CALL,
        created_at=dt.datetime(2024, 11, 5, 12, tzinfo=dt.UTC),
    )
    russian = get(admin_client, CALLS, "ru")
    shown = '<span class="vp-nowrap">{}</span> <span class="vp-nowrap">{}</span>'
    assert shown.format("05.11.2024", "12:00") in russian
    assert "5 ноября 2024" not in russian
    english = get(admin_client, CALLS, "en")
    assert shown.format("11/05/2024", "noon") in english
