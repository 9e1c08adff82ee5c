"""The admin against a staff member who wants numbers they may not see.

Without ``voicepassword.view_full_number`` a staff member sees ``+7 999 ***-**-42``
and must not get the hidden digits back by asking the admin to compare them:
filters in the query string (``number__startswith``, ``payload__number``, through
relations too), the search box, autocomplete's ``term``, ordering, list filters,
``_to_field``. Every admin URL of the app answers without a server error, for
staff with and without each permission, and shows no full number to staff
without the permission.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar, cast

import pytest
from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.models import LogEntry
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.cache import SessionStore
from django.core.cache import cache
from django.db.models import F, Model
from django.db.models.functions import Lower
from django.http import HttpRequest
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, reverse
from django.utils import timezone

from django_voicepassword import dashboard
from django_voicepassword.admin import (
    CallAdmin,
    CallbackEventAdmin,
    ChallengeAdmin,
    add_phone_numbers_to_user_admin,
)
from django_voicepassword.admin.common import display_number, display_user
from django_voicepassword.admin.privacy import VISIBILITY, mask_payload, shows_full_numbers
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import (
    BalanceSnapshot,
    Call,
    CallbackEvent,
    Challenge,
    PhoneNumber,
)

pytestmark = pytest.mark.django_db

#: The numbers of the fixture: each must never appear in full to staff without the permission.
CALLED = "79990000042"
FELL_BACK = "79990000043"
CHALLENGED = "79990000044"
OWNED = "79990000045"
ANI = "79990000046"
NUMBERS = (CALLED, FELL_BACK, CHALLENGED, OWNED, ANI)

EMULATED = {"API_KEY": "emulator-key", "GET_RETRIES": 0}

CALLS = reverse("admin:voicepassword_call_changelist")
CALLBACKS = reverse("admin:voicepassword_callbackevent_changelist")
CHALLENGES = reverse("admin:voicepassword_challenge_changelist")
USERS = reverse("admin:auth_user_changelist")
AUTOCOMPLETE = reverse("admin:autocomplete")


def spellings(number: str) -> tuple[str, ...]:
    """How a full number may be written on a page (the mask keeps ``+7 999`` and the last two)."""
    national = number[1:]
    hidden = f"{national[3:6]}-{national[6:8]}-{national[8:]}"
    return (number, national, hidden, f"{national[3:6]} {national[6:8]} {national[8:]}")


def assert_masked(body: str, where: str = "") -> None:
    """No number of the fixture appears in ``body`` in any spelling."""
    for number in NUMBERS:
        for spelling in spellings(number):
            assert spelling not in body, f"{spelling} shown in full {where}"


@pytest.fixture(autouse=True)
def _fresh_balance_cache() -> Iterator[None]:
    cache.delete(dashboard.BALANCE_CACHE_KEY)
    yield
    cache.delete(dashboard.BALANCE_CACHE_KEY)


@pytest.fixture
def emulated(voicepassword_emulator: Any) -> Iterator[Any]:
    with override_settings(VOICEPASSWORD=EMULATED):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def records(django_user_model: Any) -> dict[str, Model]:
    """One of everything the admin shows, each with its number."""
    now = timezone.now()
    owner = django_user_model.objects.create_user("owner")
    PhoneNumber.objects.create(user=owner, number=OWNED)
    challenge = Challenge.objects.create(
        number=CHALLENGED,
        channel=Call.Channel.FLASH_CALL,
        expires_at=now,
        resend_at=now,
        user=owner,
    )
    call = Call.objects.create(
        number=CALLED,
        channel=Call.Channel.FLASH_CALL,
        status=Call.Status.ANSWERED,
        provider_id="4242",
        price=Decimal("0.35"),
        challenge=challenge,
        user=owner,
    )
    sms = Call.objects.create(
        number=FELL_BACK,
        channel=Call.Channel.SMS,
        status=Call.Status.DELIVERED,
        provider_id="4343",
        parent=call,
    )
    event = CallbackEvent.objects.create(
        call=call,
        provider_id="4242",
        state="ANSWERED",
        payload={"id": "4242", "number": CALLED, "ani": ANI, "extra": [{"phone": FELL_BACK}]},
        outcome=CallbackEvent.Outcome.APPLIED,
    )
    snapshot = BalanceSnapshot.objects.create(balance=Decimal("500"), currency="Rub")
    return {
        "call": call,
        "sms": sms,
        "callbackevent": event,
        "challenge": challenge,
        "balancesnapshot": snapshot,
        "user": owner,
        "phonenumber": PhoneNumber.objects.get(),
    }


def staff(django_user_model: Any, name: str, *perms: Permission) -> Client:
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.set(perms)
    client = Client()
    client.force_login(user)
    return client


def permissions(*codenames: str) -> list[Permission]:
    found = list(
        Permission.objects.filter(
            content_type__app_label__in=("voicepassword", "auth"), codename__in=codenames
        )
    )
    assert len(found) == len(codenames)
    return found


VIEW = ("view_call", "view_callbackevent", "view_challenge", "view_user", "view_phonenumber")


@pytest.fixture
def masked_client(django_user_model: Any) -> Client:
    """Staff who may view every record but not full numbers."""
    return staff(django_user_model, "support", *permissions(*VIEW))


@pytest.fixture
def full_client(django_user_model: Any) -> Client:
    """Staff with voicepassword.view_full_number."""
    return staff(django_user_model, "security", *permissions(*VIEW, "view_full_number"))


# --------------------------------------------------------------------------- lookups

#: Filters in the query string that compare a number's digits; (list, lookup, value).
NUMBER_LOOKUPS = [
    (CALLS, "number__startswith", "7999000004"),
    (CALLS, "number__regex", "^79990000"),
    (CALLS, "number__iregex", "4[0-9]$"),
    (CALLS, "number__gt", "79990000041"),
    (CALLS, "number__lt", "79990000043"),
    (CALLS, "number__gte", "79990000042"),
    (CALLS, "number__range", "79990000040,79990000049"),
    (CALLS, "number", CALLED),
    (CALLS, "number__exact", CALLED),
    (CALLS, "number__iexact", CALLED),
    (CALLS, "number__in", f"{CALLED},{FELL_BACK}"),
    (CALLS, "number__contains", "0004"),
    (CALLS, "number__icontains", "0004"),
    (CALLS, "number__endswith", "42"),
    (CALLS, "number__length", "11"),
    (CALLS, "challenge__number__startswith", "7999"),
    (CALLS, "parent__number__startswith", "7999"),
    (CALLS, "fallbacks__number__startswith", "7999"),
    (CALLS, "callback_events__payload__ani", ANI),
    (CALLS, "user__voicepassword_numbers__number__startswith", "7999"),
    (CALLS, "user__username__startswith", "own"),
    (CHALLENGES, "number__startswith", "7999000004"),
    (CHALLENGES, "number__gt", "79990000043"),
    (CHALLENGES, "calls__number__startswith", "7999"),
    (CALLBACKS, "payload__number", CALLED),
    (CALLBACKS, "payload__ani__startswith", "7999"),
    (CALLBACKS, "payload__extra__0__phone", FELL_BACK),
    (CALLBACKS, "payload__icontains", "0004"),
    (CALLBACKS, "payload__contains", '{"number": "79990000042"}'),
    (CALLBACKS, "payload__has_key", "ani"),
    (CALLBACKS, "call__number__startswith", "7999"),
    (USERS, "voicepassword_numbers__number__startswith", "7999"),
]


@pytest.mark.parametrize(("url", "lookup", "value"), NUMBER_LOOKUPS)
def test_a_filter_on_a_number_is_refused_without_the_permission(
    records: dict[str, Model], masked_client: Client, url: str, lookup: str, value: str
) -> None:
    response = masked_client.get(url, {lookup: value})
    assert response.status_code == 400, (lookup, response.status_code)
    assert_masked(response.content.decode())


@pytest.mark.parametrize(
    ("url", "lookup", "value", "found"),
    [
        (CALLS, "number__startswith", "7999000004", 2),
        (CALLS, "number__regex", "2$", 1),
        (CALLS, "number__gt", "79990000042", 1),
        (CALLS, "number", CALLED, 1),
        (CHALLENGES, "number__startswith", "7999000004", 1),
        (CALLBACKS, "payload__number", CALLED, 1),
        (CALLBACKS, "payload__number", FELL_BACK, 0),
        (CALLBACKS, "payload__ani__startswith", "7999000004", 1),
    ],
)
def test_staff_with_the_permission_keep_filtering_by_number(
    records: dict[str, Model], full_client: Client, url: str, lookup: str, value: str, found: int
) -> None:
    response = full_client.get(url, {lookup: value})
    assert response.status_code == 200
    assert response.context["cl"].result_count == found


@pytest.mark.parametrize(
    ("url", "lookup", "value", "found"),
    [
        (CALLS, "number__isnull", "False", 2),
        (CALLS, "number__isnull", "True", 0),
        (CALLS, "status__exact", "answered", 1),
        (CALLS, "challenge__isnull", "True", 1),
        (CALLS, "provider_id", "4343", 1),
        (CALLBACKS, "payload__isnull", "False", 1),
        (CALLBACKS, "outcome__exact", "applied", 1),
        (CHALLENGES, "purpose__exact", "login", 1),
    ],
)
def test_filters_that_compare_no_number_still_work_without_the_permission(
    records: dict[str, Model], masked_client: Client, url: str, lookup: str, value: str, found: int
) -> None:
    response = masked_client.get(url, {lookup: value})
    assert response.status_code == 200
    assert response.context["cl"].result_count == found


def test_a_call_is_not_found_by_its_number_through_to_field(
    records: dict[str, Model], masked_client: Client
) -> None:
    assert masked_client.get(CALLS, {"_to_field": "number", "_popup": "1"}).status_code == 400
    change = reverse("admin:voicepassword_call_change", args=[CALLED])
    assert masked_client.get(change, {"_to_field": "number"}).status_code == 400


# --------------------------------------------------------------------------- search


@pytest.mark.parametrize(
    ("url", "term"),
    [(CALLS, CALLED), (CALLS, "+7 (999) 000-00-42"), (CHALLENGES, CHALLENGED)],
)
def test_search_by_number_finds_nothing_without_the_permission(
    records: dict[str, Model], masked_client: Client, full_client: Client, url: str, term: str
) -> None:
    masked = masked_client.get(url, {"q": term})
    assert masked.status_code == 200
    assert masked.context["cl"].result_count == 0
    assert "needs the permission to see full numbers" in masked.content.decode()
    full = full_client.get(url, {"q": term})
    assert full.context["cl"].result_count == 1
    assert "needs the permission" not in full.content.decode()


def test_search_by_id_still_works_without_the_permission(
    records: dict[str, Model], masked_client: Client
) -> None:
    assert masked_client.get(CALLS, {"q": "4343"}).context["cl"].result_count == 1
    assert masked_client.get(CALLBACKS, {"q": "4242"}).context["cl"].result_count == 1
    challenge = records["challenge"]
    found = masked_client.get(CHALLENGES, {"q": str(challenge.pk)}).context["cl"]
    assert found.result_count == 1


@pytest.mark.parametrize(
    ("model_name", "field_name", "term"),
    [("call", "parent", CALLED), ("call", "challenge", CHALLENGED)],
)
def test_autocomplete_finds_no_number_without_the_permission(
    records: dict[str, Model],
    masked_client: Client,
    full_client: Client,
    model_name: str,
    field_name: str,
    term: str,
) -> None:
    params = {
        "app_label": "voicepassword",
        "model_name": model_name,
        "field_name": field_name,
        "term": term,
    }
    masked = masked_client.get(AUTOCOMPLETE, params)
    assert masked.status_code == 200
    assert masked.json()["results"] == []
    full = full_client.get(AUTOCOMPLETE, params)
    results = full.json()["results"]
    assert len(results) == 1
    # Autocomplete shows __str__, which masks for everybody.
    assert "***-**-4" in results[0]["text"]
    assert_masked(full.content.decode())


def test_autocomplete_by_provider_id_works_without_the_permission(
    records: dict[str, Model], masked_client: Client
) -> None:
    params = {
        "app_label": "voicepassword",
        "model_name": "call",
        "field_name": "parent",
        "term": "4242",
    }
    results = masked_client.get(AUTOCOMPLETE, params).json()["results"]
    assert [item["id"] for item in results] == [str(records["call"].pk)]
    assert_masked(str(results))


# --------------------------------------------------------------------------- ordering, filters


def admin_request(user: Any, params: dict[str, str] | None = None) -> HttpRequest:
    request = RequestFactory().get("/admin/", params or {})
    request.user = user
    request.session = SessionStore()
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    return request


def user_with(django_user_model: Any, name: str, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(name, is_staff=True)
    user.user_permissions.set(permissions(*codenames))
    return django_user_model.objects.get(pk=user.pk)  # a fresh permission cache


class NumberColumnCallAdmin(CallAdmin):
    """A site's call admin that sorts and filters by the number."""

    list_display: Any = ("created_at", "number_column", "number")
    sortable_by: ClassVar[Any] = None
    list_filter: ClassVar[Any] = ("number", "status")
    search_fields = ("=number", "=provider_id")

    @admin.display(description="number", ordering="number")
    def number_column(self, obj: Call) -> str:
        return display_number(obj, obj.number)


@pytest.fixture
def site_admin() -> NumberColumnCallAdmin:
    return NumberColumnCallAdmin(Call, admin.AdminSite(name="other"))


def changelist(model_admin: Any, request: HttpRequest) -> ChangeList:
    response = model_admin.changelist_view(request)
    return response.context_data["cl"]  # type: ignore[no-any-return]


# Column 0 is the action checkbox, 1 the date, 2 and 3 the number.
@pytest.mark.parametrize("order", ["2", "-2", "3", "-3", "2.3", "1.-3"])
def test_ordering_by_a_number_is_refused_without_the_permission(
    records: dict[str, Model],
    django_user_model: Any,
    site_admin: NumberColumnCallAdmin,
    order: str,
) -> None:
    masked = user_with(django_user_model, "support", *VIEW)
    request = admin_request(masked, {"o": order})
    cl = changelist(site_admin, request)
    ordering = cl.get_ordering(request, cl.root_queryset)
    assert not any("number" in str(item) for item in ordering), ordering

    full = user_with(django_user_model, "security", *VIEW, "view_full_number")
    request = admin_request(full, {"o": order})
    cl = changelist(site_admin, request)
    assert any("number" in str(item) for item in cl.get_ordering(request, cl.root_queryset))


def test_a_default_ordering_by_number_is_dropped_without_the_permission(
    records: dict[str, Model], django_user_model: Any
) -> None:
    class OrderedByNumber(CallAdmin):
        ordering = ("number", "-created_at")

    model_admin = OrderedByNumber(Call, admin.AdminSite(name="other"))
    masked = user_with(django_user_model, "support", *VIEW)
    request = admin_request(masked)
    cl = changelist(model_admin, request)
    assert "number" not in cl.get_ordering(request, cl.root_queryset)
    full = user_with(django_user_model, "security", *VIEW, "view_full_number")
    request = admin_request(full)
    cl = changelist(model_admin, request)
    assert "number" in cl.get_ordering(request, cl.root_queryset)


@pytest.mark.parametrize(
    "expression",
    [F("number").asc(), F("challenge__number").desc(nulls_last=True), Lower("number")],
    ids=["asc", "through-a-relation", "a-function"],
)
def test_a_default_ordering_by_an_expression_on_a_number_is_dropped_without_the_permission(
    records: dict[str, Model], django_user_model: Any, expression: Any
) -> None:
    class OrderedByNumber(CallAdmin):
        ordering = (expression, F("created_at").desc(), "?")

    model_admin = OrderedByNumber(Call, admin.AdminSite(name="other"))
    masked = user_with(django_user_model, "support", *VIEW)
    request = admin_request(masked)
    cl = changelist(model_admin, request)
    kept = cl.get_ordering(request, cl.root_queryset)
    assert expression not in kept
    assert F("created_at").desc() in kept  # ordering by no number is kept
    assert "?" in kept
    full = user_with(django_user_model, "security", *VIEW, "view_full_number")
    request = admin_request(full)
    cl = changelist(model_admin, request)
    assert expression in cl.get_ordering(request, cl.root_queryset)


def test_the_call_list_sorts_only_by_its_sortable_columns(
    records: dict[str, Model], masked_client: Client
) -> None:
    # Column 2 is the channel: not sortable (no index), so ?o= on it is ignored.
    response = masked_client.get(CALLS, {"o": "2"})
    cl = response.context["cl"]
    assert not any("channel" in str(item) for item in cl.get_ordering(None, cl.root_queryset))


def test_a_list_filter_on_a_number_is_hidden_without_the_permission(
    records: dict[str, Model],
    django_user_model: Any,
    site_admin: NumberColumnCallAdmin,
) -> None:
    masked = user_with(django_user_model, "support", *VIEW)
    cl = changelist(site_admin, admin_request(masked))
    assert [spec.title for spec in cl.filter_specs] == ["status"]
    with pytest.raises(DisallowedModelAdminLookup):  # a SuspiciousOperation: Django's 400
        site_admin.changelist_view(admin_request(masked, {"number": CALLED}))
    assert site_admin.get_search_fields(admin_request(masked)) == ["=provider_id"]

    full = user_with(django_user_model, "security", *VIEW, "view_full_number")
    cl = changelist(site_admin, admin_request(full))
    assert [spec.title for spec in cl.filter_specs] == ["number", "status"]
    filtered = changelist(site_admin, admin_request(full, {"number": CALLED}))
    assert filtered.result_count == 1


def test_a_user_admin_filter_through_the_numbers_is_hidden_without_the_permission(
    records: dict[str, Model], django_user_model: Any
) -> None:
    site = admin.AdminSite(name="other")

    class SiteUserAdmin(UserAdmin):  # type: ignore[type-arg]
        list_filter = ("is_staff", "voicepassword_numbers__number")
        search_fields = ("username", "voicepassword_numbers__number")

    site.register(django_user_model, SiteUserAdmin)
    assert add_phone_numbers_to_user_admin(site)
    model_admin = site.get_model_admin(django_user_model)
    masked = user_with(django_user_model, "support", *VIEW)
    cl = changelist(model_admin, admin_request(masked))
    assert_masked(" ".join(str(choice) for spec in cl.filter_specs for choice in spec.choices(cl)))
    lookup = {"voicepassword_numbers__number": OWNED}
    with pytest.raises(DisallowedModelAdminLookup):
        model_admin.changelist_view(admin_request(masked, lookup))
    assert changelist(model_admin, admin_request(masked, {"q": "7999"})).result_count == 0

    full = user_with(django_user_model, "security", *VIEW, "view_full_number")
    assert changelist(model_admin, admin_request(full, lookup)).result_count == 1
    assert changelist(model_admin, admin_request(full, {"q": "7999"})).result_count == 1


# --------------------------------------------------------------------------- the mask by default


def test_a_row_that_did_not_come_through_the_admin_is_masked(records: dict[str, Model]) -> None:
    call = Call.objects.get(pk=records["call"].pk)  # no annotation
    assert not shows_full_numbers(call)
    model_admin = CallAdmin(Call, admin.site)
    assert model_admin.number_column(call) == "+7 999 ***-**-42"
    challenge = Challenge.objects.get()
    assert ChallengeAdmin(Challenge, admin.site).number_column(challenge) == "+7 999 ***-**-44"
    event = CallbackEvent.objects.get()
    payload = CallbackEventAdmin(CallbackEvent, admin.site).payload_column(event)
    assert_masked(payload)
    owner: Any = records["user"]
    owner.username = "79990000045"
    assert_masked(str(display_user(call, owner)))
    setattr(call, VISIBILITY, True)
    assert shows_full_numbers(call)
    assert model_admin.number_column(call) == "+7 999 000-00-42"


def test_a_number_that_is_no_phone_number_is_shown_as_stored(
    django_user_model: Any, full_client: Client, masked_client: Client
) -> None:
    # A row written before validation, or by hand: the list still answers.
    Call.objects.create(number="12345", channel=Call.Channel.FLASH_CALL, provider_id="5")
    page = full_client.get(CALLS)
    assert page.status_code == 200
    assert "12345" in page.content.decode()
    page = masked_client.get(CALLS)
    assert page.status_code == 200
    assert "12345" not in page.content.decode()


def test_a_payload_is_masked_at_any_depth() -> None:
    payload = {"number": CALLED, "ani": ANI, "extra": [{"phone": FELL_BACK}], "id": "1"}
    masked = mask_payload(payload, full=False)
    assert_masked(str(masked))
    assert masked["id"] == "1"
    assert mask_payload(payload, full=True) == payload


@pytest.mark.parametrize(
    ("model", "path", "reads"),
    [
        (Call, "number", True),
        (Call, "number__startswith", True),
        (Call, "number__isnull", False),
        (Call, "challenge__number__gt", True),
        (Call, "challenge__number__isnull", False),
        (Call, "callback_events__payload__ani", True),
        (Call, "user__voicepassword_numbers__number", True),
        (Call, "user__username", True),
        (Call, "provider_id__startswith", False),
        (Call, "created_at__year", False),
        (Call, "pk", False),
        (Call, "no_such_field", False),
        (CallbackEvent, "payload", True),
        (CallbackEvent, "payload__has_key", True),
        (CallbackEvent, "call__provider_id", False),
        (PhoneNumber, "number__regex", True),
    ],
)
def test_reads_number(model: type[Model], path: str, reads: bool) -> None:
    from django_voicepassword.admin.privacy import reads_number

    assert reads_number(model, path) is reads


# --------------------------------------------------------------------------- history, logs


def test_the_history_pages_answer_and_mask(
    records: dict[str, Model], masked_client: Client, admin_client: Client
) -> None:
    call = records["call"]
    CallAdmin(Call, admin.site).log_change(
        admin_request(records["user"]), call, [{"changed": {"fields": ["status"]}}]
    )
    for model in ("call", "callbackevent", "challenge"):
        url = reverse(f"admin:voicepassword_{model}_history", args=[records[model].pk])
        for client in (masked_client, admin_client):
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            assert_masked(response.content.decode(), url)


def test_recent_actions_and_the_delete_page_show_numbers_masked(
    records: dict[str, Model], django_user_model: Any
) -> None:
    client = staff(
        django_user_model,
        "admin-staff",
        *permissions(*VIEW, "change_user", "delete_user", "delete_phonenumber"),
    )
    actor = django_user_model.objects.get(username="admin-staff")
    model_admin = CallAdmin(Call, admin.site)
    model_admin.log_change(admin_request(actor), records["call"], "refreshed")
    assert LogEntry.objects.get().object_repr == str(records["call"])
    index = client.get(reverse("admin:index"))
    assert "***-**-42" in index.content.decode()
    assert_masked(index.content.decode())
    delete = client.get(reverse("admin:auth_user_delete", args=[records["user"].pk]))
    assert delete.status_code == 200
    body = delete.content.decode()
    assert "Are you sure" in body  # not "Cannot delete user": its challenges go with it
    assert "***-**-45" in body  # the verified number, in the list of what goes with the user
    assert_masked(body)


# --------------------------------------------------------------------------- every URL


def admin_urls(records: dict[str, Model]) -> list[str]:
    """Every URL of the app's model admins and of the user admin, with real ids and bad ones.

    Built from the admins' own URL patterns, so a page added later is walked too.
    """
    models: dict[str, tuple[type[Model], list[str]]] = {
        "call": (Call, [str(records["call"].pk), str(records["sms"].pk), "x"]),
        "callbackevent": (CallbackEvent, [str(records["callbackevent"].pk), "0"]),
        "challenge": (Challenge, [str(records["challenge"].pk), "not-a-uuid"]),
        "balancesnapshot": (BalanceSnapshot, [str(records["balancesnapshot"].pk)]),
    }
    urls = [
        reverse("admin:index"),
        reverse("admin:app_list", args=["voicepassword"]),
    ]
    routes: list[tuple[str, list[URLPattern], list[str]]] = []
    for model_name, (model, ids) in models.items():
        model_admin = admin.site.get_model_admin(model)
        routes.append((f"/admin/voicepassword/{model_name}/", model_admin.get_urls(), ids))
    user_admin = admin.site.get_model_admin(type(records["user"]))
    routes.append(("/admin/auth/user/", user_admin.get_urls(), [str(records["user"].pk)]))
    for prefix, patterns, ids in routes:
        for pattern in patterns:
            route = str(pattern.pattern)
            for object_id in ids if "<" in route else [""]:
                url = prefix + re.sub(r"<(?:\w+:)?\w+>", object_id, route)
                assert "<" not in url
                urls.append(url)
    content_type = ContentType.objects.get_for_model(Call)
    urls.append(reverse("admin:view_on_site", args=[content_type.pk, records["call"].pk]))
    for model_name, field_name in [
        ("call", "parent"),
        ("call", "challenge"),
        ("callbackevent", "call"),
        ("phonenumber", "user"),
    ]:
        urls.append(
            f"{AUTOCOMPLETE}?app_label=voicepassword&model_name={model_name}"
            f"&field_name={field_name}&term="
        )
    return urls


#: The permissions the walk grants one at a time and takes away one at a time.
PERMISSIONS = [
    f"{action}_{model}"
    for model in ("call", "callbackevent", "challenge", "balancesnapshot", "phonenumber")
    for action in ("add", "change", "delete", "view")
] + ["view_full_number", "view_user", "change_user"]

#: Who walks: nobody, each permission alone, all but each permission, a superuser.
WALKERS = [
    "none",
    *(f"only {codename}" for codename in PERMISSIONS),
    *(f"all but {codename}" for codename in PERMISSIONS),
    "superuser",
]


def walker(django_user_model: Any, who: str) -> tuple[Client, bool]:
    """A logged-in client for ``who`` of :data:`WALKERS`, and whether it may see numbers."""
    if who == "superuser":
        root = django_user_model.objects.create_superuser("root", password="pw")
        client = Client()
        client.force_login(root)
        return client, True
    if who == "none":
        return staff(django_user_model, "walker"), False
    mode, _, codename = who.partition(" ")
    if mode == "only":
        return staff(django_user_model, "walker", *permissions(codename)), (
            codename == "view_full_number"
        )
    codename = who.removeprefix("all but ")
    others = [c for c in PERMISSIONS if c != codename]
    return staff(django_user_model, "walker", *permissions(*others)), (
        codename != "view_full_number"
    )


def leaks(body: str) -> list[str]:
    return [s for number in NUMBERS for s in spellings(number) if s in body]


@pytest.mark.parametrize("who", WALKERS)
def test_every_admin_url_answers_without_a_server_error_and_masks(
    records: dict[str, Model], django_user_model: Any, emulated: Any, who: str
) -> None:
    client, full = walker(django_user_model, who)
    urls = admin_urls(records)
    assert any(url.endswith("/history/") for url in urls)
    assert any(url.endswith("/refresh/") for url in urls)
    failures = []
    shown_in_full = []
    methods = ("get", "post") if who in ("none", "superuser", "all but view_full_number") else ()
    for url in urls:
        for method in ("get", *methods[1:]):
            if method == "post" and "delete" in url:
                continue  # a superuser's POST would delete; the GET shows the page
            response = getattr(client, method)(url)
            if response.status_code >= 500:
                failures.append((method, url, response.status_code))
            elif response.status_code == 200 and not response.streaming:
                found = leaks(response.content.decode())
                if found and not full:
                    failures.append((method, url, f"shows {found}"))
                shown_in_full.extend(found)
    assert failures == []
    if who == "superuser":
        assert shown_in_full  # the walk reaches pages that show numbers to those allowed


#: Query strings a curious or hostile staff member tries on a list.
HOSTILE = [
    {"o": "1"},
    {"o": "-2.3"},
    {"o": "x"},
    {"q": CALLED},
    {"q": "7999"},
    {"q": "\x00"},
    {"p": "x"},
    {"p": "999"},
    {"created_at__year": "x"},
    {"created_at__year": "2025", "created_at__month": "2", "created_at__day": "31"},
    {"received_at__gte": "yesterday"},
    {"number__startswith": "7999"},
    {"number__isnull": "maybe"},
    {"payload__number": CALLED},
    {"payload__ani__regex": "("},
    {"user__voicepassword_numbers__number__gt": "7"},
    {"_to_field": "number"},
    {"_to_field": "payload", "_popup": "1"},
    {"_facets": "1"},
    {"all": ""},
    {"e": "1"},
]


@pytest.mark.parametrize("who", ["none", "only view_full_number", "all but view_full_number"])
@pytest.mark.parametrize("listing", [CALLS, CALLBACKS, CHALLENGES, USERS])
def test_hostile_query_strings_get_a_client_error_not_a_server_error(
    records: dict[str, Model],
    django_user_model: Any,
    who: str,
    listing: str,
) -> None:
    client, full = walker(django_user_model, who)
    for query in HOSTILE:
        response = client.get(listing, query)
        assert response.status_code < 500, (query, response.status_code)
        echoed = {"q", "number__startswith", "payload__number"} & set(query)
        if response.status_code == 200 and not full and not echoed:
            assert leaks(response.content.decode()) == [], query


def test_a_staff_member_with_the_permission_sees_every_list_in_full(
    records: dict[str, Model], full_client: Client, masked_client: Client
) -> None:
    full = "+7 999 000-00-"
    pages = {
        CALLS: ("42", "43"),
        CHALLENGES: ("44",),
        reverse("admin:auth_user_change", args=[records["user"].pk]): ("45",),
        reverse("admin:voicepassword_call_change", args=[records["call"].pk]): ("42", "43"),
        reverse("admin:voicepassword_challenge_change", args=[records["challenge"].pk]): ("44",),
    }
    for url, endings in pages.items():
        shown = full_client.get(url).content.decode()
        masked = masked_client.get(url).content.decode()
        for ending in endings:
            assert full + ending in shown, url
            assert "+7 999 ***-**-" + ending in masked, url
        assert_masked(masked, url)
    event = reverse("admin:voicepassword_callbackevent_change", args=[records["callbackevent"].pk])
    shown = full_client.get(event).content.decode()
    for number in (CALLED, ANI, FELL_BACK):  # the payload as received
        assert number in shown
    assert_masked(masked_client.get(event).content.decode())


def test_the_export_and_the_action_pages_mask_by_default(
    records: dict[str, Model], django_user_model: Any, emulated: Any
) -> None:
    acting = staff(django_user_model, "acting", *permissions(*VIEW, "change_call"))
    calls = [records["call"].pk, records["sms"].pk]
    export = {"action": "export_csv", "_selected_action": calls, "index": 0}
    exported = b"".join(cast("Any", acting.post(CALLS, export)).streaming_content).decode()
    assert "+7 999 ***-**-42" in exported
    assert_masked(exported)
    confirm = {"action": "refresh_from_provider", "_selected_action": calls, "index": 0}
    page = acting.post(CALLS, confirm)
    assert page.status_code == 200
    assert "+7 999 ***-**-42" in page.content.decode()
    assert_masked(page.content.decode())
    done = acting.post(CALLS, {**confirm, "post": "yes"}, follow=True)
    shown = " ".join(str(message) for message in done.context["messages"])
    assert "***-**-4" in shown
    assert_masked(shown)
    assert_masked(done.content.decode())


def test_the_date_hierarchy_reveals_no_number(
    records: dict[str, Model], masked_client: Client
) -> None:
    Call.objects.filter(pk=records["sms"].pk).update(
        created_at=timezone.now() - dt.timedelta(days=400)
    )
    response = masked_client.get(CALLS, {"created_at__year": str(timezone.now().year)})
    assert response.status_code == 200
    assert_masked(response.content.decode())
