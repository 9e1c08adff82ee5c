"""The admin: masked numbers, read-only records, provider actions, totals, the balance."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_voicepassword import calls, dashboard
from django_voicepassword.admin import (
    PhoneNumberInline,
    add_phone_numbers_to_user_admin,
    use_index_template,
)
from django_voicepassword.admin.calls import ACTION_LIMIT, CallPaginator
from django_voicepassword.admin.paginator import CappedCountPaginator, estimated_rows
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import (
    BalanceSnapshot,
    Call,
    CallbackEvent,
    Challenge,
    PhoneNumber,
)

pytestmark = pytest.mark.django_db

NUMBER = "79990000001"
FULL = "+7 999 000-00-01"
MASKED = "+7 999 ***-**-01"

EMULATED = {"API_KEY": "emulator-key", "GET_RETRIES": 0, "LOW_BALANCE": "100"}

CALLS = reverse("admin:voicepassword_call_changelist")
CALLBACKS = reverse("admin:voicepassword_callbackevent_changelist")
CHALLENGES = reverse("admin:voicepassword_challenge_changelist")
BALANCE = reverse("admin:voicepassword_balancesnapshot_changelist")
REFRESH = reverse("admin:voicepassword_balancesnapshot_refresh")


@pytest.fixture(autouse=True)
def _fresh_balance_cache():
    cache.delete(dashboard.BALANCE_CACHE_KEY)
    yield
    cache.delete(dashboard.BALANCE_CACHE_KEY)


@pytest.fixture
def emulated(voicepassword_emulator):
    with override_settings(VOICEPASSWORD=EMULATED):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


def staff_client(django_user_model, username, *codenames):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    perms = Permission.objects.filter(
        content_type__app_label__in=("voicepassword", "auth"), codename__in=codenames
    )
    user.user_permissions.set(perms)
    client = Client()
    client.force_login(user)
    return client


VIEW = (
    "view_call",
    "view_callbackevent",
    "view_challenge",
    "view_balancesnapshot",
    "view_user",
    "view_phonenumber",
)


@pytest.fixture
def masked_client(django_user_model):
    """Staff who may view everything but not full numbers."""
    return staff_client(django_user_model, "support", *VIEW)


@pytest.fixture
def full_client(django_user_model):
    """Staff with voicepassword.view_full_number."""
    return staff_client(django_user_model, "security", *VIEW, "view_full_number")


def make_call(number=NUMBER, **fields):
    defaults = {
        "channel": Call.Channel.FLASH_CALL,
        "status": Call.Status.ANSWERED,
        "price": Decimal("0.35"),
    }
    defaults.update(fields)
    return Call.objects.create(number=number, **defaults)


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


# --------------------------------------------------------------------------- personal data


def test_staff_without_the_permission_see_masked_numbers_in_the_list(masked_client):
    make_call()
    body = masked_client.get(CALLS).content.decode()
    assert MASKED in body
    assert NUMBER not in body
    assert FULL not in body


def test_staff_with_the_permission_see_full_numbers_in_the_list(full_client):
    make_call()
    body = full_client.get(CALLS).content.decode()
    assert FULL in body


def test_the_detail_page_masks_the_number_and_the_callback_payload(masked_client, full_client):
    call = make_call(provider_id="17")
    CallbackEvent.objects.create(
        call=call,
        provider_id="17",
        state="ANSWERED",
        payload={"id": "17", "number": NUMBER, "state": "ANSWERED"},
        outcome=CallbackEvent.Outcome.APPLIED,
    )
    url = reverse("admin:voicepassword_call_change", args=[call.pk])
    masked = masked_client.get(url).content.decode()
    assert MASKED in masked
    assert NUMBER not in masked
    assert "&quot;number&quot;: &quot;+7 999 ***-**-01&quot;" in masked  # the payload, masked
    full = full_client.get(url).content.decode()
    assert FULL in full
    assert NUMBER in full  # the payload as received


def test_the_callback_admin_masks_the_payload(masked_client, full_client):
    event = CallbackEvent.objects.create(
        provider_id="18",
        state="BUSY",
        payload={"id": "18", "number": "79990000002", "state": "BUSY"},
        outcome=CallbackEvent.Outcome.ORPHAN,
    )
    url = reverse("admin:voicepassword_callbackevent_change", args=[event.pk])
    masked = masked_client.get(url).content.decode()
    assert "+7 999 ***-**-02" in masked
    assert "79990000002" not in masked
    assert "79990000002" in full_client.get(url).content.decode()


@pytest.mark.parametrize(
    "spelling", [NUMBER, "+7 (999) 000-00-01", "8 999 000 00 01", "9990000001", "+79990000001"]
)
def test_search_finds_a_number_in_any_spelling_for_staff_who_may_see_it(
    full_client, masked_client, spelling
):
    make_call()
    make_call("79990000002")
    response = full_client.get(CALLS, {"q": spelling})
    cl = response.context["cl"]
    assert [call.number for call in cl.result_list] == [NUMBER]
    body = response.content.decode()
    assert FULL in body
    assert "+7 999 000-00-02" not in body
    # To anyone else a match would confirm a guess at the hidden digits.
    assert masked_client.get(CALLS, {"q": spelling}).context["cl"].result_count == 0


def test_search_by_provider_id_is_exact(masked_client):
    make_call(provider_id="1234")
    make_call("79990000002", provider_id="12345")
    cl = masked_client.get(CALLS, {"q": "1234"}).context["cl"]
    assert [call.provider_id for call in cl.result_list] == ["1234"]
    assert masked_client.get(CALLS, {"q": "not a number"}).context["cl"].result_count == 0


def test_search_is_an_exact_lookup_not_icontains(full_client):
    make_call()
    with CaptureQueriesContext(connection) as queries:
        full_client.get(CALLS, {"q": "8 999 000 00 01"})
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "LIKE" not in sql.upper()
    assert "79990000001" in sql


def test_the_csv_export_masks_numbers_for_staff_without_the_permission(masked_client, full_client):
    call = make_call()
    data = {"action": "export_csv", "_selected_action": [call.pk], "index": 0}
    masked = b"".join(masked_client.post(CALLS, data).streaming_content).decode()
    assert "'+7 999 ***-**-01" in masked  # a leading + is not a formula to a spreadsheet
    assert NUMBER not in masked
    full = b"".join(full_client.post(CALLS, data).streaming_content).decode()
    assert NUMBER in full


def test_a_username_that_is_a_phone_number_is_masked_too(
    masked_client, full_client, django_user_model
):
    # The default adapter names the users it creates after their number.
    owner = django_user_model.objects.create_user("79990000009")
    call = make_call(user=owner)
    listing = masked_client.get(CALLS).content.decode()
    assert "+7 999 ***-**-09" in listing
    assert "79990000009" not in listing
    detail_url = reverse("admin:voicepassword_call_change", args=[call.pk])
    detail = masked_client.get(detail_url).content.decode()
    assert "+7 999 ***-**-09" in detail
    assert "79990000009" not in detail
    assert "79990000009" in full_client.get(CALLS).content.decode()
    data = {"action": "export_csv", "_selected_action": [call.pk], "index": 0}
    exported = b"".join(masked_client.post(CALLS, data).streaming_content).decode()
    assert "79990000009" not in exported


def test_challenges_show_no_digests_and_mask_the_number(masked_client):
    now = timezone.now()
    challenge = Challenge.objects.create(
        number=NUMBER,
        channel=Call.Channel.FLASH_CALL,
        code_digest="c0de" * 16,
        session_digest="5e55" * 16,
        expires_at=now,
        resend_at=now,
    )
    listing = masked_client.get(CHALLENGES).content.decode()
    assert MASKED in listing
    detail = masked_client.get(
        reverse("admin:voicepassword_challenge_change", args=[challenge.pk])
    ).content.decode()
    assert MASKED in detail
    assert "c0de" not in detail
    assert "5e55" not in detail
    assert NUMBER not in detail


def test_the_user_admin_lists_the_users_numbers_masked(
    masked_client, full_client, django_user_model
):
    owner = django_user_model.objects.create_user("owner")
    PhoneNumber.objects.create(user=owner, number=NUMBER)
    url = reverse("admin:auth_user_change", args=[owner.pk])
    masked = masked_client.get(url).content.decode()
    assert MASKED in masked
    assert NUMBER not in masked
    assert FULL in full_client.get(url).content.decode()


def test_the_phone_number_inline_is_added_once_and_only_to_a_registered_user_admin(
    django_user_model,
):
    site = admin.AdminSite(name="other")
    assert add_phone_numbers_to_user_admin(site) is False  # nothing registered
    site.register(django_user_model, admin.ModelAdmin)
    assert add_phone_numbers_to_user_admin(site) is True
    assert add_phone_numbers_to_user_admin(site) is False
    model_admin = site.get_model_admin(django_user_model)
    assert isinstance(model_admin, admin.ModelAdmin)
    # The default site's UserAdmin keeps its own class behaviour and gains the inline.
    user_admin = admin.site.get_model_admin(django_user_model)
    assert type(user_admin).__name__ == "UserAdmin"
    assert PhoneNumberInline in user_admin.get_inlines(None, django_user_model())  # type: ignore[arg-type]
    assert PhoneNumberInline not in user_admin.get_inlines(None, None)  # type: ignore[arg-type]


def test_the_index_template_is_set_only_when_the_site_has_none():
    site = admin.AdminSite(name="other")
    assert use_index_template(site) is True
    site.index_template = "custom/index.html"
    assert use_index_template(site) is False
    assert site.index_template == "custom/index.html"


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize("model", ["call", "callbackevent", "challenge"])
def test_records_cannot_be_added_changed_or_deleted_even_by_a_superuser(admin_client, model):
    if model == "call":
        obj = make_call()
    elif model == "callbackevent":
        obj = CallbackEvent.objects.create(
            provider_id="1", state="ANSWERED", payload={}, outcome="orphan"
        )
    else:
        now = timezone.now()
        obj = Challenge.objects.create(
            number=NUMBER, channel="flash_call", expires_at=now, resend_at=now
        )
    assert admin_client.get(reverse(f"admin:voicepassword_{model}_add")).status_code == 403
    change = reverse(f"admin:voicepassword_{model}_change", args=[obj.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert admin_client.post(change, {}).status_code == 403
    delete = reverse(f"admin:voicepassword_{model}_delete", args=[obj.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()
    listing = admin_client.get(reverse(f"admin:voicepassword_{model}_changelist"))
    action_form = listing.context["action_form"]
    assert action_form is None or "delete_selected" not in dict(
        action_form.fields["action"].choices
    )


def test_callbacks_are_filtered_by_outcome(admin_client):
    for outcome in ("applied", "orphan", "stale"):
        CallbackEvent.objects.create(provider_id="1", state=outcome, payload={}, outcome=outcome)
    cl = admin_client.get(CALLBACKS, {"outcome__exact": "orphan"}).context["cl"]
    assert [event.outcome for event in cl.result_list] == ["orphan"]


# --------------------------------------------------------------------------- the list


def test_the_list_shows_badges_and_totals_of_the_filtered_calls(admin_client):
    make_call(price=Decimal("0.35"))
    make_call(status=Call.Status.NO_ANSWER, price=Decimal("0.35"))
    make_call(channel=Call.Channel.SMS, status=Call.Status.DELIVERED, price=Decimal("3.30"))
    make_call(status=Call.Status.NOT_PLACED, price=None, error_code="number_not_valid")
    response = admin_client.get(CALLS)
    totals = response.context["cl"].totals
    assert totals["calls"] == 4
    assert totals["answered_share"] == "33 %"  # 1 of 3 flash calls; the SMS is not a call
    assert totals["spend"] == "4.00"
    assert not totals["limited"]
    body = response.content.decode()
    assert 'class="vp-badge vp-badge--ok">answered<' in body
    assert "vp-totals" in body

    filtered = admin_client.get(CALLS, {"status__exact": "no_answer"}).context["cl"].totals
    assert (filtered["calls"], filtered["answered_share"], filtered["spend"]) == (1, "0 %", "0.35")


def test_totals_over_the_limit_cover_the_newest_calls_and_say_so(admin_client, monkeypatch):
    monkeypatch.setattr(CallPaginator, "limit", 3)
    now = timezone.now()
    for minutes in range(5):
        make_call(created_at=now - dt.timedelta(minutes=minutes), price=Decimal(minutes))
    response = admin_client.get(CALLS)
    cl = response.context["cl"]
    assert cl.totals["limited"]
    assert cl.totals["spend"] == "3.00"  # 0 + 1 + 2: the newest three
    if connection.vendor != "postgresql":
        assert cl.count_label == "3 or more"
    body = response.content.decode()
    assert "cover the latest 3 calls" in body


def test_the_date_hierarchy_is_built_from_the_first_and_last_date(admin_client):
    make_call(created_at=dt.datetime(2024, 11, 5, 12, tzinfo=dt.UTC))
    make_call(created_at=dt.datetime(2025, 2, 1, 12, tzinfo=dt.UTC))
    drill = admin_client.get(CALLS).context["cl"].date_drilldown
    assert [choice["title"] for choice in drill["choices"]] == ["2024", "2025"]
    drill = admin_client.get(CALLS, {"created_at__year": "2025"}).context["cl"].date_drilldown
    assert [choice["title"] for choice in drill["choices"]] == ["February 2025"]
    drill = (
        admin_client.get(CALLS, {"created_at__year": "2024", "created_at__month": "11"})
        .context["cl"]
        .date_drilldown
    )
    assert [choice["title"] for choice in drill["choices"]] == ["November 5"]


def changelist_queries(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CALLS)
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_the_number_of_queries_does_not_grow_with_the_rows(
    admin_client, masked_client, django_user_model
):
    owner = django_user_model.objects.create_user("caller")
    for index in range(5):
        make_call(f"799900000{index:02d}", user=owner, provider_id=str(index))
    few = changelist_queries(admin_client)
    few_staff = changelist_queries(masked_client)
    for index in range(5, 50):
        make_call(f"799900000{index:02d}", user=owner, provider_id=str(index))
    assert changelist_queries(admin_client) == few
    assert changelist_queries(masked_client) == few_staff
    assert few <= 8
    assert few_staff <= 8


def test_the_list_pages_only_through_the_first_rows(admin_client, monkeypatch):
    monkeypatch.setattr(CallPaginator, "limit", 60)
    for index in range(70):
        make_call(provider_id=str(index))
    cl = admin_client.get(CALLS).context["cl"]
    assert cl.paginator.num_pages == 2  # 60 rows of 50 per page
    assert admin_client.get(CALLS, {"p": "3"}).status_code == 302  # Django's "?e=1"


def test_a_capped_paginator_counts_no_more_than_its_limit():
    for index in range(7):
        make_call(provider_id=str(index))
    queryset = Call.objects.filter(status="answered").order_by("-created_at", "-id")
    paginator = CappedCountPaginator(queryset, 2, limit=5)
    assert (paginator.count, paginator.exact, paginator.estimated) == (5, False, False)
    assert paginator.num_pages == 3
    assert paginator.truncated
    exact = CappedCountPaginator(queryset, 2, limit=50)
    assert (exact.count, exact.exact, exact.truncated) == (7, True, False)


def test_a_capped_paginator_caps_a_list_too():
    paginator = CappedCountPaginator(list(range(7)), 2, limit=5)
    assert (paginator.count, paginator.exact, paginator.num_pages) == (5, False, 3)
    assert paginator.truncated
    assert paginator.page(3).object_list == [4]  # the rows past the limit are not paged
    exact = CappedCountPaginator(list(range(7)), 2, limit=7)
    assert (exact.count, exact.exact, exact.num_pages, exact.truncated) == (7, False, 4, True)
    below = CappedCountPaginator(list(range(6)), 2, limit=7)
    assert (below.count, below.exact, below.num_pages, below.truncated) == (6, True, 3, False)


def test_a_capped_paginator_keeps_django_s_orphans_and_empty_pages():
    # The last page takes up to `orphans` rows rather than a page of its own.
    paginator = CappedCountPaginator(list(range(7)), 2, orphans=1, limit=50)
    assert paginator.num_pages == 3
    assert paginator.page(3).object_list == [4, 5, 6]
    assert CappedCountPaginator([], 2, limit=5).num_pages == 1
    assert CappedCountPaginator([], 2, allow_empty_first_page=False, limit=5).num_pages == 0


@pytest.mark.postgres
def test_an_estimate_below_the_count_is_not_taken():
    # Analysed with 3 rows, then 20 more: the planner's estimate is stale.
    Call.objects.bulk_create(
        [Call(number=NUMBER, channel="flash_call", provider_id=str(i)) for i in range(3)]
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Call._meta.db_table}")
    Call.objects.bulk_create(
        [Call(number=NUMBER, channel="flash_call", provider_id=str(i)) for i in range(3, 23)]
    )
    assert estimated_rows(Call.objects.all()) == 3
    paginator = CappedCountPaginator(Call.objects.order_by("-created_at", "-id"), 5, limit=10)
    assert (paginator.count, paginator.estimated, paginator.exact) == (10, False, False)
    assert (paginator.num_pages, paginator.truncated) == (2, True)


@pytest.mark.postgres
def test_the_unfiltered_count_is_the_planners_estimate_on_postgresql():
    Call.objects.bulk_create(
        [Call(number=NUMBER, channel="flash_call", provider_id=str(i)) for i in range(30)]
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Call._meta.db_table}")
    assert estimated_rows(Call.objects.all()) == 30
    paginator = CappedCountPaginator(Call.objects.order_by("-created_at", "-id"), 5, limit=10)
    assert (paginator.count, paginator.estimated) == (30, True)
    assert (paginator.num_pages, paginator.truncated) == (2, True)  # 10 rows of the 30 paged
    filtered = CappedCountPaginator(
        Call.objects.filter(number=NUMBER).order_by("-created_at", "-id"), 5, limit=10
    )
    assert (filtered.count, filtered.estimated, filtered.exact) == (10, False, False)


def test_there_is_no_estimate_without_postgresql():
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL estimates")
    assert estimated_rows(Call.objects.all()) is None


# --------------------------------------------------------------------------- actions


def run_action(client, action, calls_, **extra):
    data = {"action": action, "_selected_action": [call.pk for call in calls_], "index": 0}
    confirm = client.post(CALLS, data)
    assert confirm.status_code == 200, confirm
    assert b'name="post" value="yes"' in confirm.content
    data.pop("index")
    data["post"] = "yes"
    data.update(extra)
    return client.post(CALLS, data, follow=True)


@pytest.mark.django_db(transaction=True)
def test_refresh_asks_the_provider_and_reports_each_call(admin_client, emulated):
    placed = calls.place_flash_call("79990000003")
    emulated.advance(5)
    lost = make_call("79990000004", status=Call.Status.PLACED, provider_id="404404")
    with pytest.raises(Exception):  # noqa: B017,PT011  (the provider refuses; the row stays)
        calls.place_flash_call("79990000020")
    refused = Call.objects.get(number="79990000020")
    response = run_action(admin_client, "refresh_from_provider", [placed, lost, refused])
    shown = messages_of(response)
    assert "Asked the provider about 1 call; 1 changed status." in shown
    assert any("+7 999 000-00-04" in m and "(ID_Not_Found)" in m for m in shown), shown
    assert any("1 call has no provider id" in m for m in shown), shown
    placed.refresh_from_db()
    assert placed.status == Call.Status.NO_ANSWER


@pytest.mark.django_db(transaction=True)
def test_refresh_stops_when_the_provider_is_down(admin_client, emulated):
    first = calls.place_flash_call("79990000001")
    second = calls.place_flash_call("79990000002")
    emulated.set_fault("http500", endpoints=("get",))
    shown = messages_of(run_action(admin_client, "refresh_from_provider", [first, second]))
    assert any("could not be reached" in m for m in shown), shown
    assert "Stopped: 1 more call was not tried." in shown


@pytest.mark.django_db(transaction=True)
def test_sms_fallback_goes_through_the_service_and_reports_refusals(admin_client, emulated):
    ended = calls.place_flash_call("79990000003")
    emulated.advance(5)
    with pytest.raises(Exception):  # noqa: B017,PT011
        calls.place_flash_call("79990000020")
    never = Call.objects.get(number="79990000020")
    with pytest.raises(Exception):  # noqa: B017,PT011  (HTML with 200: outcome unknown)
        calls.place_flash_call("79990000032")
    unknown = Call.objects.get(number="79990000032")
    shown = messages_of(run_action(admin_client, "send_sms_fallback", [ended, never, unknown]))
    assert "Sent 1 SMS fallback." in shown
    assert sum("The call was never placed" in m for m in shown) == 2, shown
    sms = Call.objects.get(parent=ended)
    assert sms.channel == Call.Channel.SMS
    assert [e.kind for e in emulated.sends()].count("sms") == 1
    entry = LogEntry.objects.get()
    assert "SMS fallback" in entry.get_change_message()
    assert "79990000003" not in entry.object_repr

    again = messages_of(run_action(admin_client, "send_sms_fallback", [ended]))
    assert any("already has an SMS fallback" in m for m in again), again


@pytest.mark.django_db(transaction=True)
def test_sms_fallback_stops_on_a_provider_fault(admin_client, emulated):
    first = calls.place_flash_call("79990000003")
    second = calls.place_flash_call("79990000011")
    emulated.advance(5)
    # A 5xx without the provider's refusal may follow a placed SMS: unknown, and
    # the rest is not tried.
    emulated.set_fault("http500", endpoints=("send",))
    shown = messages_of(run_action(admin_client, "send_sms_fallback", [first, second]))
    assert any("may have gone through" in m for m in shown), shown
    assert "Stopped: 1 more call was not tried." in shown
    assert not Call.objects.filter(channel=Call.Channel.SMS, status=Call.Status.PLACED).exists()


@pytest.mark.django_db(transaction=True)
def test_sms_fallback_reports_a_provider_refusal(admin_client, emulated):
    call = calls.place_flash_call("79990000003")
    emulated.advance(5)
    emulated.emulator.balance = Decimal("0.10")  # less than an SMS costs
    shown = messages_of(run_action(admin_client, "send_sms_fallback", [call]))
    assert any("(not_enough_money)" in m for m in shown), shown


def test_actions_refuse_more_calls_than_the_limit(admin_client):
    many = [make_call(provider_id=str(i)) for i in range(ACTION_LIMIT + 1)]
    data = {
        "action": "refresh_from_provider",
        "_selected_action": [c.pk for c in many],
        "index": 0,
    }
    shown = messages_of(admin_client.post(CALLS, data, follow=True))
    assert any(f"at most {ACTION_LIMIT} calls" in m for m in shown), shown


def test_provider_actions_need_the_change_permission(masked_client):
    response = masked_client.get(CALLS)
    actions = [name for name, _label in response.context["action_form"].fields["action"].choices]
    assert "export_csv" in actions
    assert "refresh_from_provider" not in actions
    assert "send_sms_fallback" not in actions


# --------------------------------------------------------------------------- the balance


def test_the_dashboard_shows_the_live_balance_and_caches_it(admin_client, emulated):
    make_call(created_at=timezone.now())
    response = admin_client.get(BALANCE)
    assert response.status_code == 200
    body = response.content.decode()
    assert "999.00" in body
    assert "<svg" in body
    # Everything it draws is shipped: no script, style or image from another host
    # (a CSRF token may well spell "cdn", so look at the addresses).
    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", body)
    assert BalanceSnapshot.objects.count() == 1
    gets = len(emulated.log)
    admin_client.get(BALANCE)
    assert len(emulated.log) == gets  # cached
    assert BalanceSnapshot.objects.count() == 1


def test_the_refresh_button_bypasses_the_cache_and_stores_a_snapshot(admin_client, emulated):
    admin_client.get(BALANCE)
    emulated.emulator.balance = Decimal("42.50")
    response = admin_client.post(REFRESH, follow=True)
    assert "Balance refreshed: 42.50 Rub." in messages_of(response)
    assert BalanceSnapshot.objects.count() == 2
    body = response.content.decode()
    assert "below 100.00" in body  # LOW_BALANCE
    assert admin_client.get(REFRESH).status_code == 405


def test_the_refresh_button_needs_the_csrf_token(django_user_model, emulated):
    user = django_user_model.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(REFRESH).status_code == 403
    assert not BalanceSnapshot.objects.exists()


def test_the_dashboard_says_when_the_provider_is_down(admin_client, emulated):
    BalanceSnapshot.objects.create(balance=Decimal("512.00"), currency="Rub")
    emulated.set_fault("http500")
    body = admin_client.get(BALANCE).content.decode()
    assert "could not be reached" in body
    assert "512.00" in body  # the last stored balance


def test_the_dashboard_says_when_the_provider_is_unreachable(admin_client):
    settings_ = {**EMULATED, "API_URL": "http://127.0.0.1:9/api/voice-password/"}
    with override_settings(VOICEPASSWORD=settings_):
        reset_gateway()
        body = admin_client.get(BALANCE).content.decode()
    reset_gateway()
    assert "could not be reached" in body


def test_the_dashboard_says_when_the_key_is_wrong(admin_client, emulated):
    with override_settings(VOICEPASSWORD={**EMULATED, "API_KEY": "wrong-key"}):
        reset_gateway()
        body = admin_client.get(BALANCE).content.decode()
        shown = messages_of(admin_client.post(REFRESH, follow=True))
    assert "refused the API key" in body
    assert any("refused the API key" in m for m in shown)
    assert not BalanceSnapshot.objects.exists()


def test_the_dashboard_charts_the_last_thirty_days(admin_client, emulated):
    now = timezone.now()
    make_call(created_at=now, price=Decimal("0.35"))
    make_call(created_at=now - dt.timedelta(days=2), status="busy", price=Decimal("0.35"))
    make_call(created_at=now - dt.timedelta(days=45), price=Decimal("100"))  # out of range
    BalanceSnapshot.objects.create(balance=Decimal("80"), currency="Rub")
    response = admin_client.get(BALANCE)
    stats = response.context["stats"]
    assert stats.calls == 2
    assert stats.spend == Decimal("0.70")
    assert dict(stats.by_status) == {Call.Status.ANSWERED: 1, Call.Status.BUSY: 1}
    assert len(stats.days) == 30
    body = response.content.decode()
    assert body.count('<svg class="vp-chart') == 4
    assert "vp-threshold" in body  # the LOW_BALANCE line


def hour_ago_or_yesterday() -> dt.datetime:
    """A moment of a finished hour (of today, or of yesterday just after midnight)."""
    return timezone.now() - dt.timedelta(hours=1) - dashboard.SETTLE_TIME


def test_finished_days_and_hours_are_read_once_the_current_hour_every_time():
    now = timezone.now()
    make_call(created_at=now - dt.timedelta(days=2), status="busy")
    make_call(created_at=hour_ago_or_yesterday())
    assert dashboard.call_stats().calls == 2
    # Written behind the app's back into a finished day and hour: not seen...
    make_call(created_at=now - dt.timedelta(days=2))
    make_call(created_at=hour_ago_or_yesterday())
    # ... while a call of the current hour is.
    make_call(created_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        stats = dashboard.call_stats()
    assert len(queries.captured_queries) == 1
    assert stats.calls == 3
    dashboard.forget_cached_days()
    fresh = dashboard.call_stats()
    assert fresh.calls == 5
    assert dict(fresh.by_status) == {Call.Status.ANSWERED: 4, Call.Status.BUSY: 1}
    assert dashboard.call_stats() == fresh  # from the cache: the same figures


def test_an_hour_is_read_until_it_has_settled():
    # A call placed at 10:59 and answered at 11:02: its hour is still read
    # at 11:03, and cached only once SETTLE_TIME has passed.
    today = timezone.localdate()
    hour = timezone.make_aware(dt.datetime.combine(today, dt.time(10)))
    call = make_call(created_at=hour + dt.timedelta(minutes=59), status="placed")
    after = hour + dt.timedelta(hours=1, minutes=3)
    assert dict(dashboard.call_stats(now=after).by_status) == {Call.Status.PLACED: 1}
    Call.objects.filter(pk=call.pk).update(status=Call.Status.ANSWERED)  # the callback
    settled = hour + dt.timedelta(hours=1) + dashboard.SETTLE_TIME
    assert dict(dashboard.call_stats(now=settled).by_status) == {Call.Status.ANSWERED: 1}
    Call.objects.filter(pk=call.pk).update(status=Call.Status.BUSY)  # behind the cache's back
    later = settled + dt.timedelta(minutes=10)
    assert dict(dashboard.call_stats(now=later).by_status) == {Call.Status.ANSWERED: 1}


def test_a_one_day_window_reads_nothing_of_yesterday_while_its_last_hour_settles():
    midnight = timezone.make_aware(dt.datetime.combine(timezone.localdate(), dt.time.min))
    make_call(created_at=midnight - dt.timedelta(minutes=1))  # yesterday's
    make_call(created_at=midnight + dt.timedelta(minutes=1))
    stats = dashboard.call_stats(1, now=midnight + dt.timedelta(minutes=2))
    assert (stats.calls, sum(n for _status, n in stats.by_status)) == (1, 1)
    two_days = dashboard.call_stats(2, now=midnight + dt.timedelta(minutes=2))
    assert [day.calls for day in two_days.days] == [1, 1]


def test_a_refresh_of_a_finished_hours_call_forgets_the_cached_hours():
    from django_voicepassword import calls
    from django_voicepassword.client import CallRecord, CallState

    earlier = make_call(created_at=hour_ago_or_yesterday(), status="placed")
    assert dict(dashboard.call_stats().by_status) == {Call.Status.PLACED: 1}
    generation = cache.get(dashboard.CLOSED_DAYS_GENERATION_KEY)
    record = CallRecord(
        id=earlier.provider_id or "",
        number=earlier.number,
        date=None,
        duration=None,
        price=None,
        state=CallState.ANSWERED,
        state_label="",
        service=None,
        raw={},
    )
    assert calls.apply_record(earlier, record, source="state")
    assert cache.get(dashboard.CLOSED_DAYS_GENERATION_KEY) != generation
    assert dict(dashboard.call_stats().by_status) == {Call.Status.ANSWERED: 1}


def test_a_refresh_of_a_finished_days_call_forgets_the_cached_days():
    from django_voicepassword import calls
    from django_voicepassword.client import CallRecord, CallState

    old = make_call(created_at=timezone.now() - dt.timedelta(days=3), status="placed")
    today = make_call(created_at=timezone.now(), status="placed")
    assert dict(dashboard.call_stats().by_status) == {Call.Status.PLACED: 2}
    generation = cache.get(dashboard.CLOSED_DAYS_GENERATION_KEY)

    def refreshed(call: Call, state: CallState) -> None:
        record = CallRecord(
            id=call.provider_id or "",
            number=call.number,
            date=None,
            duration=None,
            price=None,
            state=state,
            state_label="",
            service=None,
            raw={},
        )
        assert calls.apply_record(call, record, source="state")

    refreshed(today, CallState.ANSWERED)  # today's: nothing cached to forget
    assert cache.get(dashboard.CLOSED_DAYS_GENERATION_KEY) == generation
    refreshed(old, CallState.BUSY)  # a refresh from the admin, days later
    assert cache.get(dashboard.CLOSED_DAYS_GENERATION_KEY) != generation
    stats = dashboard.call_stats()
    assert dict(stats.by_status) == {Call.Status.ANSWERED: 1, Call.Status.BUSY: 1}


def test_the_cached_days_listen_to_no_signal():
    # A receiver of call_status_changed would make every callback build its
    # row and take turns in the process: the figures are forgotten by the
    # writers of older calls instead.
    from django_voicepassword.signals import call_status_changed

    sync, asynchronous = call_status_changed._live_receivers(Call)
    modules = {receiver.__module__ for receiver in [*sync, *asynchronous]}
    # Only an integration a site installs may listen (the metrics, in their tests).
    assert modules <= {"django_voicepassword.contrib.metrics.prometheus"}, modules


def test_each_time_zone_has_its_own_days():
    # 23:30 UTC two days ago is the next day in Moscow: the same calls, other days.
    moment = (timezone.now() - dt.timedelta(days=2)).replace(hour=23, minute=30)
    make_call(created_at=moment)
    with timezone.override(dt.UTC):
        utc = {day.day: day.calls for day in dashboard.call_stats().days if day.calls}
    with timezone.override(zoneinfo.ZoneInfo("Europe/Moscow")):
        moscow = {day.day: day.calls for day in dashboard.call_stats().days if day.calls}
    assert list(moscow) == [next(iter(utc)) + dt.timedelta(days=1)]


def test_the_dashboard_needs_its_permission(django_user_model, emulated):
    client = staff_client(django_user_model, "nobody", "view_call")
    assert client.get(BALANCE).status_code == 403
    assert client.post(REFRESH).status_code == 403


def test_call_charts_need_the_call_permission(django_user_model, emulated):
    client = staff_client(django_user_model, "money", "view_balancesnapshot")
    response = client.get(BALANCE)
    assert response.status_code == 200
    assert "stats" not in response.context


def test_the_admin_index_shows_the_balance_without_asking_the_provider(admin_client, emulated):
    BalanceSnapshot.objects.create(balance=Decimal("64.00"), currency="Rub")
    body = admin_client.get(reverse("admin:index")).content.decode()
    assert "VoicePassword balance" in body
    assert "64.00 Rub" in body
    assert BALANCE in body
    assert emulated.log == []
    app = admin_client.get(reverse("admin:app_list", args=["voicepassword"])).content.decode()
    assert app.count('id="voicepassword-balance"') == 1


def test_the_balance_block_is_hidden_without_the_permission(django_user_model):
    client = staff_client(django_user_model, "calls-only", "view_call")
    body = client.get(reverse("admin:index")).content.decode()
    assert "voicepassword-balance" not in body


def test_the_pages_render_in_russian(admin_client, emulated):
    call = make_call(provider_id="77")
    make_call(created_at=timezone.now() - dt.timedelta(days=400))
    BalanceSnapshot.objects.create(balance=Decimal("80"), currency="Rub")
    pages = [
        CALLS,
        CALLS + "?created_at__year=2025",
        reverse("admin:voicepassword_call_change", args=[call.pk]),
        CALLBACKS,
        CHALLENGES,
        BALANCE,
        reverse("admin:index"),
        reverse("admin:app_list", args=["voicepassword"]),
    ]
    for url in pages:
        response = admin_client.get(url, headers={"accept-language": "ru"})
        assert response.status_code == 200, url
        assert response.headers["Content-Language"] == "ru", url


def test_the_list_and_the_dashboard_work_without_time_zones(admin_client, emulated):
    with override_settings(USE_TZ=False):
        make_call(created_at=dt.datetime.now())  # naive, as USE_TZ=False stores them
        assert admin_client.get(CALLS).status_code == 200
        response = admin_client.get(BALANCE)
        assert response.status_code == 200
        assert response.context["stats"].calls == 1
