"""The call table's indexes: what every callback's update writes, and what the queries need.

A callback that moves a call rewrites every index entry of its row (``status``
is indexed: never a HOT update), so migration 0008 took out the two that
served nothing: the parent index's entries for calls without a parent (now a
partial index) and PostgreSQL's pattern index for ``provider_id``. Here: the
indexes are the intended ones, the queries that need them still find one,
the unique rules are still enforced, and 0008 reverses to 0007's indexes
(Django's own AlterField would have dropped the one-SMS-per-call index with
the parent's).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from django_voicepassword.models import Call

TABLE = Call._meta.db_table
APP = "voicepassword"


def index_names() -> dict[str, list[str]]:
    """Every index of the call table, by name: its columns."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, TABLE)
    return {name: info["columns"] for name, info in found.items() if info["index"]}


def definitions() -> dict[str, str]:
    """PostgreSQL's text of every index of the call table, by name."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [TABLE])
        return dict(cursor.fetchall())


def make(provider_id: str, **fields: Any) -> Call:
    fields.setdefault("channel", Call.Channel.FLASH_CALL)
    return Call.objects.create(
        number="79990000001", provider_id=provider_id, status=Call.Status.PLACED, **fields
    )


@pytest.mark.django_db
def test_parent_has_one_index_of_its_own_and_the_one_sms_rule():
    on_parent = sorted(name for name, columns in index_names().items() if columns == ["parent_id"])
    assert on_parent == ["voicepassword_call_parent", "voicepassword_one_sms_per_call"]


@pytest.mark.django_db
def test_the_admins_filters_and_ordering_keep_their_indexes():
    names = index_names()
    # list_filter status and channel, the date hierarchy and ordering, the search by number.
    assert names["voicepassword_call_status"] == ["status", "created_at"]
    assert names["voicepassword_call_channel"] == ["channel", "created_at"]
    assert names["voicepassword_call_created"] == ["created_at", "id"]
    assert names["voicepassword_call_number"] == ["number", "created_at"]


@pytest.mark.django_db
def test_a_request_id_is_still_unique_and_a_call_has_one_sms():
    call = make("100")
    make("101", channel=Call.Channel.SMS, parent=call)
    with pytest.raises(IntegrityError), transaction.atomic():
        make("100")
    with pytest.raises(IntegrityError), transaction.atomic():
        make("102", channel=Call.Channel.SMS, parent=call)


@pytest.mark.postgres
@pytest.mark.django_db
def test_on_postgresql_no_pattern_index_and_the_parent_index_is_partial():
    indexes = definitions()
    assert not [name for name, text in indexes.items() if "pattern_ops" in text]
    assert "UNIQUE" in indexes["voicepassword_call_provider_id_key"]
    assert indexes["voicepassword_call_parent"].endswith("WHERE (parent_id IS NOT NULL)")
    # Each index is written to on every update but these two partial ones,
    # which a flash call without a parent skips: 10 indexes, 8 entries.
    assert len(indexes) == 10


def plan(queryset: Any) -> str:
    """PostgreSQL's plan of ``queryset`` when any index it can use is preferred."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        return str(queryset.explain())


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_queries_on_parent_and_request_id_use_the_indexes_left():
    call = make("200")
    make("201", channel=Call.Channel.SMS, parent=call)
    # The admin's inline and the cascade; retention's "no younger fallback".
    assert "voicepassword_call_parent" in plan(Call.objects.filter(parent=call))
    assert "voicepassword_call_parent" in plan(Call.objects.filter(parent__in=[call.pk]))
    # The admin's search (exact), reconcile's lookups, the callback's lock.
    assert "voicepassword_call_provider_id_key" in plan(Call.objects.filter(provider_id="200"))
    assert "voicepassword_call_provider_id_key" in plan(
        Call.objects.filter(provider_id__in=["200", "201"])
    )


@pytest.mark.django_db(transaction=True)
def test_migration_0008_reverses_to_0007s_indexes():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes(APP)
    try:
        executor.migrate([(APP, "0007_callback_function")])
        before = index_names()
        assert "voicepassword_call_parent" not in before
        assert [c for name, c in before.items() if name.startswith(f"{TABLE}_parent_id_")] == [
            ["parent_id"]
        ]
        assert "voicepassword_one_sms_per_call" in before
        if connection.vendor == "postgresql":
            likes = [name for name in before if name.endswith("_like")]
            assert len(likes) == 1
            assert likes[0].startswith(f"{TABLE}_provider_id_")
            assert "pattern_ops" in definitions()[likes[0]]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    after = index_names()
    assert not [name for name in after if name.startswith(f"{TABLE}_parent_id_")]
    assert "voicepassword_call_parent" in after
    assert "voicepassword_one_sms_per_call" in after
