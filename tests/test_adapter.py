"""The adapters: finding, creating and verifying users by number."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import QuerySet
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_voicepassword.adapter import PhoneAdapter, UserFieldAdapter, get_adapter
from django_voicepassword.conf import ConfigurationError
from django_voicepassword.models import PhoneNumber

pytestmark = pytest.mark.django_db

# The default user model has no phone field: last_name stands in for one.
FIELD = {
    "ADAPTER": "django_voicepassword.adapter.UserFieldAdapter",
    "USER_PHONE_FIELD": "last_name",
}


def test_the_default_adapter_finds_users_by_verified_number():
    user = get_user_model().objects.create_user("someone")
    adapter = get_adapter()
    assert isinstance(adapter, PhoneAdapter)
    assert adapter.get_user("79990000001") is None
    adapter.mark_verified(user, "79990000001")
    assert adapter.get_user("79990000001") == user


def test_the_default_adapter_reads_the_whole_user_in_one_query(settings):
    user = get_user_model().objects.create_user("someone", email="someone@example.com")
    PhoneNumber.objects.create(user=user, number="79990000001")
    adapter = get_adapter()
    with CaptureQueriesContext(connection) as queries:
        found = adapter.get_user("79990000001")
    assert len(queries) == 1
    assert found == user
    assert isinstance(found, get_user_model())
    assert (found.username, found.email, found.is_active) == (
        "someone",
        "someone@example.com",
        True,
    )
    assert adapter.get_user("79990000002") is None
    assert adapter.get_user("79990000003") is None


def test_the_default_adapter_asks_the_orm_when_users_live_on_another_database(settings):
    class UsersElsewhere:
        def db_for_read(self, model, **hints):
            return "users" if model is get_user_model() else None

    user = get_user_model().objects.create_user("someone")
    PhoneNumber.objects.create(user=user, number="79990000001")
    settings.DATABASE_ROUTERS = [UsersElsewhere()]
    with CaptureQueriesContext(connection) as queries:
        found = get_adapter().get_user("79990000001")
    # select_related through PhoneNumber's database, not a raw query on the users'.
    assert found == user
    assert 'FROM "voicepassword_phonenumber"' in queries[0]["sql"]
    assert "INNER JOIN" in queries[0]["sql"]


def test_verifying_a_number_moves_it_from_its_previous_user():
    old, new = (get_user_model().objects.create_user(name) for name in ("old", "new"))
    adapter = PhoneAdapter()
    adapter.mark_verified(old, "79990000001")
    adapter.mark_verified(new, "79990000001")
    assert PhoneNumber.objects.get(number="79990000001").user == new


def test_re_verifying_a_recorded_number_is_one_update():
    # Every login by a known number re-verifies it (issue #16: it was six statements).
    old, new = (get_user_model().objects.create_user(name) for name in ("old", "new"))
    adapter = PhoneAdapter()
    adapter.mark_verified(old, "79990000001")
    first = PhoneNumber.objects.get(number="79990000001").verified_at

    with CaptureQueriesContext(connection) as again:
        adapter.mark_verified(old, "79990000001")
    with CaptureQueriesContext(connection) as moved:
        adapter.mark_verified(new, "79990000001")

    assert [q["sql"].split()[0] for q in again.captured_queries] == ["UPDATE"]
    assert [q["sql"].split()[0] for q in moved.captured_queries] == ["UPDATE"]
    number = PhoneNumber.objects.get(number="79990000001")
    assert number.user == new
    assert number.verified_at > first  # renewed: "the number verified last" follows logins


def test_a_number_inserted_by_a_concurrent_verification_is_moved(monkeypatch):
    # The other request's INSERT commits between this one's UPDATE and INSERT.
    other, user = (get_user_model().objects.create_user(name) for name in ("other", "user"))
    PhoneNumber.objects.create(number="79990000001", user=other)
    update = QuerySet.update
    seen: list[object] = []

    def update_after_the_race(self: QuerySet[PhoneNumber], **fields: object) -> int:
        seen.append(fields)
        return 0 if len(seen) == 1 else update(self, **fields)

    monkeypatch.setattr(QuerySet, "update", update_after_the_race)
    PhoneAdapter().mark_verified(user, "79990000001")

    assert len(seen) == 2  # the INSERT failed on the unique number, then the UPDATE
    assert PhoneNumber.objects.get(number="79990000001").user == user


def test_a_created_user_is_not_named_after_the_number():
    user = PhoneAdapter().create_user("79990000001", None)
    assert "79990000001" not in user.get_username()
    assert not user.has_usable_password()
    assert PhoneNumber.objects.get(number="79990000001").user == user


def test_the_field_adapter_reads_writes_and_moves_the_users_field():
    with override_settings(VOICEPASSWORD=FIELD):
        adapter = get_adapter()
        assert isinstance(adapter, UserFieldAdapter)
        old = get_user_model().objects.create_user("old", last_name="79990000001")
        assert adapter.get_user("79990000001") == old
        new = get_user_model().objects.create_user("new")
        adapter.mark_verified(new, "79990000001")
        old.refresh_from_db()
        assert (old.last_name, adapter.get_user("79990000001")) == ("", new)
        created = adapter.create_user("79990000002", None)
        assert getattr(created, "last_name", None) == "79990000002"


def test_the_field_adapter_without_its_setting_names_it():
    with (
        override_settings(VOICEPASSWORD={"ADAPTER": FIELD["ADAPTER"]}),
        pytest.raises(ConfigurationError, match="USER_PHONE_FIELD"),
    ):
        get_adapter().get_user("79990000001")


def test_an_adapter_that_is_not_one_is_refused():
    with (
        override_settings(
            VOICEPASSWORD={"ADAPTER": "django_voicepassword.conf.VoicePasswordSettings"}
        ),
        pytest.raises(ConfigurationError, match="PhoneAdapter"),
    ):
        get_adapter()
