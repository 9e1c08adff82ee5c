"""Less for a callback to write: two index entries fewer per update, one lookup fewer.

A callback that moves a call rewrites the call's row with an entry in every
index of the table (``status`` is indexed, so the update is never a HOT one).
Two of those entries served nothing:

* the parent index held a NULL for every call without a parent, which is
  every call but the SMS fallbacks; every query on ``parent`` asks for a
  value (a call's fallbacks: the cascade, retention, the admin's inline), so
  it is now a partial index of the rows that have one (``Call.Meta.indexes``);
* the pattern index (``varchar_pattern_ops``, ``..._like``) PostgreSQL is given
  for the unique ``provider_id``: no query filters the request id by a
  pattern (the admin searches it exactly), and the unique index serves every
  equality. Dropped on PostgreSQL only, where it exists; the field keeps
  ``unique=True``. (A later migration that changes the field's type would
  make Django build it again; ``tests/test_indexes.py`` says so.)

And the function of migration 0007 is replaced by one that applies the usual
callback (a state that moves the call forward, no listener of
``call_status_changed``) with one UPDATE, which finds and locks the row
itself, instead of an existence check, a locking SELECT and an UPDATE by key.
Everything else (a repeat, a stale state, an orphan, the listeners' row) goes
the way 0007 went. Same name and arguments: the caller does not change.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations, models

_0007 = importlib.import_module("django_voicepassword.migrations.0007_callback_function")

# As 0007's, with the usual case first. When no one listens, the UPDATE by
# request id takes the row lock and moves the status if it is behind; a
# delivery waiting on that lock re-reads the row as the delivery before it
# left it (READ COMMITTED), so a repeat finds the status moved and updates
# nothing. Whatever that UPDATE did not move goes 0007's way: the locking
# SELECT (which also serialises the reading of a repeat's outcome), an UPDATE
# by key if the status is behind after all (a row that got its request id in
# between), the outcome. The URL's call is looked for only when the request
# id matched no call of that URL: an orphan if it exists, dropped if it is
# gone (a call found by ``id = p_token_call`` or ``parent_id = p_token_call``
# is, or has, the URL's call).
CREATE = """
CREATE OR REPLACE FUNCTION voicepassword_apply_callback(
    p_token_call bigint,
    p_provider_id text,
    p_status text,
    p_behind text[],
    p_error_code_statuses text[],
    p_label text,
    p_price numeric,
    p_duration interval,
    p_date timestamptz,
    p_payload jsonb,
    p_remote_addr inet,
    p_now timestamptz,
    p_cap integer,
    p_row boolean,
    OUT event_id bigint,
    OUT outcome text,
    OUT call_id bigint,
    OUT old_status text,
    OUT moved voicepassword_call
) LANGUAGE plpgsql VOLATILE AS $function$
BEGIN
    IF (SELECT count(*) FROM (
        SELECT FROM voicepassword_callbackevent WHERE url_call_id = p_token_call LIMIT p_cap
    ) AS kept) >= p_cap
    THEN
        UPDATE voicepassword_call SET callbacks_dropped = callbacks_dropped + 1
        WHERE id = p_token_call;
        RETURN;
    END IF;
    IF NOT p_row THEN
        UPDATE voicepassword_call AS c SET
            status = p_status,
            error_code = CASE WHEN c.status = ANY (p_error_code_statuses)
                THEN '' ELSE c.error_code END,
            state_label = p_label,
            price = coalesce(p_price, c.price),
            duration = coalesce(p_duration, c.duration),
            provider_date = coalesce(p_date, c.provider_date),
            updated_at = p_now
        WHERE c.provider_id = p_provider_id
            AND (c.id = p_token_call OR c.parent_id = p_token_call)
            AND c.status = ANY (p_behind)
        RETURNING c.id INTO call_id;
        IF FOUND THEN
            outcome := 'applied';
        END IF;
    END IF;
    IF outcome IS NULL THEN
        SELECT c.id, c.status INTO call_id, old_status FROM voicepassword_call AS c
        WHERE c.provider_id = p_provider_id
            AND (c.id = p_token_call OR c.parent_id = p_token_call)
        FOR NO KEY UPDATE;
        IF call_id IS NULL THEN
            IF NOT EXISTS (SELECT FROM voicepassword_call WHERE id = p_token_call) THEN
                RETURN;
            END IF;
            outcome := 'orphan';
        ELSE
            -- The whole row is read back by the caller only when a receiver listens.
            UPDATE voicepassword_call AS c SET
                status = p_status,
                error_code = CASE WHEN c.status = ANY (p_error_code_statuses)
                    THEN '' ELSE c.error_code END,
                state_label = p_label,
                price = coalesce(p_price, c.price),
                duration = coalesce(p_duration, c.duration),
                provider_date = coalesce(p_date, c.provider_date),
                updated_at = p_now
            WHERE c.id = call_id AND c.status = ANY (p_behind)
            RETURNING c.* INTO moved;
            IF FOUND THEN
                outcome := 'applied';
            ELSIF old_status = p_status THEN
                outcome := 'duplicate';
            ELSE
                outcome := 'stale';
            END IF;
        END IF;
    END IF;
    INSERT INTO voicepassword_callbackevent
        (call_id, url_call_id, provider_id, state, payload, remote_addr, received_at, outcome)
    VALUES (call_id, p_token_call, p_provider_id, p_label, p_payload, p_remote_addr, p_now, outcome)
    RETURNING id INTO event_id;
END
$function$
"""

#: Same signature as 0007's: DROP is 0007's.
DROP = _0007.DROP


def create_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def restore_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_0007.CREATE, params=None)


def _provider_id(apps: Any) -> tuple[Any, Any]:
    model = apps.get_model("voicepassword", "Call")
    return model, model._meta.get_field("provider_id")


def like_index_name(schema_editor: Any, model: Any, field: Any) -> str:
    """The name Django gave the pattern index of ``field`` (as its schema editor names it)."""
    name: str = schema_editor._create_index_name(
        model._meta.db_table, [field.column], suffix="_like"
    )
    return name


def drop_like_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        model, field = _provider_id(apps)
        name = schema_editor.quote_name(like_index_name(schema_editor, model, field))
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}", params=None)


def restore_like_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        model, field = _provider_id(apps)
        schema_editor.execute(schema_editor._create_like_index_sql(model, field))


def parent_index_name(schema_editor: Any, model: Any) -> str:
    """The name Django gave the index of the ``parent`` foreign key (``db_index``)."""
    name: str = schema_editor._create_index_name(
        model._meta.db_table, [model._meta.get_field("parent").column]
    )
    return name


def drop_parent_index(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("voicepassword", "Call")
    schema_editor.execute(
        schema_editor._delete_index_sql(model, parent_index_name(schema_editor, model))
    )


def restore_parent_index(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("voicepassword", "Call")
    field = model._meta.get_field("parent")
    schema_editor.execute(
        schema_editor._create_index_sql(
            model, fields=[field], name=parent_index_name(schema_editor, model)
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("voicepassword", "0007_callback_function"),
    ]

    operations = [
        # The partial index first: the fallbacks are never without one.
        migrations.AddIndex(
            model_name="call",
            index=models.Index(
                condition=models.Q(("parent__isnull", False)),
                fields=["parent"],
                name="voicepassword_call_parent",
            ),
        ),
        # The state's AlterField, but not its database side: Django drops every
        # plain index on the column there, and took the unique partial index
        # of voicepassword_one_sms_per_call with it. Only the FK's own goes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="call",
                    name="parent",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        help_text="For an SMS fallback: the call whose code it sends.",
                        null=True,
                        on_delete=models.deletion.CASCADE,
                        related_name="fallbacks",
                        to="voicepassword.call",
                        verbose_name="parent call",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_parent_index, restore_parent_index, elidable=False),
            ],
        ),
        migrations.RunPython(drop_like_index, restore_like_index, elidable=False),
        migrations.RunPython(create_function, restore_function, elidable=False),
    ]
