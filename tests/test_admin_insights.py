"""The admin's insights page: the funnel's numbers, its queries, its permissions, its CSV.

The figures are checked on a small dataset built by hand, in both tiers: on
SQLite the timing is computed in Python, on PostgreSQL (the service tier) by
``percentile_cont``; both must give the same answer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_voicepassword import dashboard
from django_voicepassword import insights as data
from django_voicepassword.admin.insights import prefix_label
from django_voicepassword.models import Call, Challenge

pytestmark = pytest.mark.django_db

INSIGHTS = reverse("admin:voicepassword_challenge_insights")
INSIGHTS_CSV = reverse("admin:voicepassword_challenge_insights_csv")
CHALLENGES = reverse("admin:voicepassword_challenge_changelist")

S = dt.timedelta(seconds=1)


def yesterday_noon() -> dt.datetime:
    day = timezone.localdate() - dt.timedelta(days=1)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(12)))


def challenge(
    number: str,
    channel: str,
    *,
    at: dt.datetime,
    sends: int = 1,
    confirmed_after: float | None = None,
    purpose: str = Challenge.Purpose.LOGIN,
    calls: tuple[tuple[str, str, str | None], ...] = (),
) -> Challenge:
    """A challenge and its calls: (channel, status, price) each, a second after it."""
    row = Challenge.objects.create(
        number=number,
        channel=channel,
        purpose=purpose,
        sends=sends,
        expires_at=at + dt.timedelta(minutes=5),
        resend_at=at,
        created_at=at,
        verified_at=None if confirmed_after is None else at + confirmed_after * S,
    )
    for call_channel, status, price in calls:
        Call.objects.create(
            challenge=row,
            number=number,
            channel=call_channel,
            status=status,
            price=None if price is None else Decimal(price),
            created_at=at + S,
        )
    return row


FLASH, VOICE, SMS = Call.Channel.FLASH_CALL, Call.Channel.VOICE_CALL, Call.Channel.SMS


@pytest.fixture
def dataset() -> None:
    """Five challenges yesterday, one long ago (outside every period)."""
    at = yesterday_noon()
    challenge(
        "79990000001", FLASH, at=at, confirmed_after=10, calls=((FLASH, "answered", "0.35"),)
    )
    challenge(
        "79990000002",
        FLASH,
        at=at,
        confirmed_after=30,
        calls=((FLASH, "no_answer", "0.35"), (SMS, "delivered", "3.30")),
    )
    challenge("79990000003", FLASH, at=at, calls=((FLASH, "no_answer", "0.35"),))
    challenge(
        "79990000004",
        SMS,
        at=at,
        confirmed_after=50,
        purpose=Challenge.Purpose.VERIFY,
        calls=((SMS, "delivered", "3.30"),),
    )
    challenge("79990000005", VOICE, at=at, sends=0)
    old = at - dt.timedelta(days=120)
    challenge("79990000006", FLASH, at=old, confirmed_after=5, calls=((FLASH, "answered", "9"),))


def more(count: int, *, offset: int = 10) -> None:
    """``count`` more confirmed challenges in finished hours of the last days, each with a call."""
    now = timezone.now()
    for n in range(count):
        challenge(
            f"7999{(offset + n) % 100:07d}",
            (FLASH, VOICE, SMS)[n % 3],
            at=now - dt.timedelta(hours=n + 1) - dashboard.SETTLE_TIME,  # finished hours
            confirmed_after=n + 1,
            calls=((FLASH, "answered", "0.35"),),
        )


# --------------------------------------------------------------------------- the figures


def test_the_funnel_of_a_hand_built_dataset(dataset):
    result = data.insights(30)
    total = result.total
    assert (total.started, total.sent, total.reached, total.confirmed) == (5, 4, 3, 3)
    assert total.spend == Decimal("7.65")
    assert total.cost_per_confirmed == Decimal("2.55")
    assert total.confirmed_share == pytest.approx(0.6)
    flash = result.by_channel()[FLASH]
    assert (flash.started, flash.sent, flash.reached, flash.confirmed) == (3, 3, 2, 2)
    assert flash.spend == Decimal("4.35")
    voice = result.by_channel()[VOICE]
    assert (voice.started, voice.sent, voice.confirmed) == (1, 0, 0)
    assert voice.spend == 0
    assert voice.cost_per_confirmed is None
    days = dict(result.by_day())
    assert len(days) == 30
    assert days[yesterday_noon().date()].started == 5
    assert sum(funnel.started for funnel in days.values()) == 5


def test_median_and_p95_agree_with_percentile_cont(dataset):
    result = data.insights(30)
    # 10, 30, 50 s: the median is 30 s; p95 lies 0.9 of the way from 30 to 50.
    assert result.timing == data.Timing(30 * S, 48 * S)
    # Flash: 10 and 30 s.
    assert result.timing_by_channel[FLASH] == data.Timing(20 * S, 29 * S)
    assert VOICE not in result.timing_by_channel
    assert result.sampled is False


def test_the_filters_narrow_every_figure(dataset):
    sms = data.insights(30, channel=SMS)
    assert (sms.total.started, sms.total.confirmed, sms.total.spend) == (1, 1, Decimal("3.30"))
    verify = data.insights(30, purpose=Challenge.Purpose.VERIFY)
    assert (verify.total.started, verify.total.spend) == (1, Decimal("3.30"))
    assert verify.timing == data.Timing(50 * S, 50 * S)
    # The old challenge is inside 90 days? No: 121 days ago.
    assert data.insights(90).total.started == 5


def test_prefixes_countries_and_operators(dataset):
    result = data.insights(30, language="en")
    assert [row.prefix for row in result.prefixes] == ["7999"]
    row = result.prefixes[0]
    assert row.funnel.started == 5
    assert row.funnel.spend == Decimal("7.65")
    country, operator = data.prefix_labels("7999", "en")
    assert (row.country, row.operator) == (country, operator)
    assert country == "Russia"
    assert result.by_country() == [("Russia", row.funnel)]
    assert data.prefix_labels("7999", "ru")[0] == "Россия"
    assert prefix_label("7999") == "+7 999…"


def test_finished_days_come_from_the_cache_with_the_same_figures(dataset):
    fresh = data.insights(30)
    more(30)  # into finished hours and days, behind the cache's back
    now = timezone.now()
    challenge("79990000050", FLASH, at=now, confirmed_after=2, calls=((FLASH, "answered", "1"),))
    cached = data.insights(30)
    # The finished days as they were read; the current hour's new challenge added.
    assert cached.total.started == fresh.total.started + 1
    assert cached.total.spend == fresh.total.spend + 1
    assert cached.prefixes[0].funnel.reached == fresh.prefixes[0].funnel.reached + 1
    dashboard.forget_cached_days()
    again = data.insights(30)
    assert again.total.started == fresh.total.started + 31
    assert data.insights(30) == again  # read back from the cache: the same figures
    assert data.insights(30, channel=SMS).total.started == 1 + 10  # a choice of its own


def test_a_shorter_period_keeps_the_longer_ones_days(dataset):
    today = timezone.localdate()
    before = timezone.make_aware(dt.datetime.combine(today, dt.time(10, 50)))
    after = before + dt.timedelta(minutes=30)  # 10 o'clock has finished since
    data.insights(30, now=before)
    at = before - dt.timedelta(days=20)
    challenge("79990000060", FLASH, at=at)  # behind the cache's back
    data.insights(7, now=after)  # stores its new hour with the figure's days
    # Day 20 was neither dropped by the 7 days' page nor read again.
    assert data.insights(30, now=after).total.started == 5
    dashboard.forget_cached_days()
    assert data.insights(30, now=after).total.started == 6


def test_the_timing_is_the_newest_confirmed_challenges(dataset, monkeypatch):
    more(5)  # confirmed after 1, 2, 3... seconds, the newest first
    monkeypatch.setattr(data, "DURATION_SAMPLE", 2)
    result = data.insights(30)
    assert result.sampled is True
    assert result.timing == data.Timing(1.5 * S, 1.95 * S)


def test_percentile_interpolates_like_postgresql():
    assert data.percentile([], 0.5) is None
    assert data.percentile([5 * S], 0.95) == 5 * S
    assert data.percentile([S, 2 * S, 3 * S, 4 * S], 0.5) == 2.5 * S


def test_a_constant_number_of_queries_at_two_sizes(dataset):
    expected = data.QUERIES_POSTGRESQL if connection.vendor == "postgresql" else data.QUERIES_OTHER
    with CaptureQueriesContext(connection) as small:
        data.insights(30)
    more(60)
    # Rows written by hand into finished days: nothing told the cache.
    dashboard.forget_cached_days()
    with CaptureQueriesContext(connection) as large:
        result = data.insights(30)
    assert result.total.started == 65
    assert len(small.captured_queries) == len(large.captured_queries) == expected


# --------------------------------------------------------------------------- the page


def staff(django_user_model, username: str, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="voicepassword", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_page_shows_the_figures(admin_client, dataset):
    response = admin_client.get(INSIGHTS)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html
    assert "2.55" in html  # cost per confirmed
    assert "60 %" in html  # confirmed share
    assert "30.0 s" in html
    assert "48.0 s" in html
    assert "+7 999…" in html
    assert "numbers move between operators" in html
    assert INSIGHTS in admin_client.get(CHALLENGES).content.decode()


def test_the_page_makes_the_same_queries_at_two_sizes(admin_client, dataset):
    admin_client.get(INSIGHTS)  # the session and content types, once
    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(INSIGHTS).status_code == 200
    more(60)
    with CaptureQueriesContext(connection) as large:
        assert admin_client.get(INSIGHTS).status_code == 200
    assert len(small.captured_queries) == len(large.captured_queries)


def test_only_staff_who_may_view_challenges(django_user_model, client, dataset):
    assert client.get(INSIGHTS).status_code == 302  # to the login page
    assert staff(django_user_model, "calls", "view_call").get(INSIGHTS).status_code == 403
    assert staff(django_user_model, "calls2", "view_call").get(INSIGHTS_CSV).status_code == 403
    masked = staff(django_user_model, "viewer", "view_challenge")
    html = masked.get(INSIGHTS).content.decode()
    body = masked.get(INSIGHTS_CSV)
    csv_text = body.getvalue().decode()
    for number in ("79990000001", "+7 999 000-00-01", "9990000001", "000-00-01"):
        assert number not in html
        assert number not in csv_text


def test_the_csv_export(admin_client, dataset):
    response = admin_client.get(INSIGHTS_CSV, {"period": "7", "channel": FLASH})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.getvalue().decode())))
    assert rows[0][:3] == ["day", "channel", "started"]
    assert rows[1:] == [
        [yesterday_noon().date().isoformat(), "flash_call", "3", "3", "2", "2", "4.35", "2.18"]
    ]


def test_the_page_in_russian(admin_client, dataset):
    response = admin_client.get(INSIGHTS, HTTP_ACCEPT_LANGUAGE="ru")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Воронка" in html
    assert "Россия" in html
    assert "Последние 30 дней" in html


@pytest.mark.parametrize(
    "query",
    [
        {"period": "abc"},
        {"period": "365"},
        {"period": "-1"},
        {"channel": "<script>alert(1)</script>"},
        {"purpose": "x" * 5000},
        {"period": ["7", "abc"]},
    ],
)
def test_hostile_query_strings_are_refused(admin_client, query):
    for url in (INSIGHTS, INSIGHTS_CSV):
        response = admin_client.get(url, query)
        assert response.status_code == 400
        assert b"<script>" not in response.content


def test_every_choice_answers(admin_client, dataset):
    for period in data.PERIODS:
        for channel in ("", *Call.Channel.values):
            response = admin_client.get(INSIGHTS, {"period": period, "channel": channel})
            assert response.status_code == 200


def test_a_bad_day_is_reported(admin_client, dataset):
    assert "were confirmed, against" not in admin_client.get(INSIGHTS).content.decode()
    now = timezone.now()
    midnight = timezone.make_aware(dt.datetime.combine(timezone.localdate(now), dt.time.min))
    live = max(midnight, now - dashboard.SETTLE_TIME)  # today, and not in a cached hour
    for n in range(20):  # 20 challenges, none confirmed
        challenge(f"799900000{n + 10:02d}", FLASH, at=now - (now - live) * n / 20)
    html = admin_client.get(INSIGHTS).content.decode()
    assert "Today 0 % of challenges were confirmed, against 12 % over the period" in html
