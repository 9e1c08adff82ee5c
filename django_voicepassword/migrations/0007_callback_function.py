"""The callback's work as a PL/pgSQL function, on PostgreSQL only.

PostgreSQL planned the callback's one statement anew on every callback, which
cost more than running it. PL/pgSQL prepares the statements of a function on
their first run and keeps the plans for the connection's life, so this costs
nothing per callback and asks nothing of a pooler (PgBouncer in transaction
mode included): a call of a function is a plain statement.

The forward-only rule is not written here: the caller passes the statuses a
report moves a call from (``reconcile.overwritable_by``) and those whose
error code is cleared (``reconcile.ERROR_CODE_STATUSES``), so the rule stays
in one place, Python, and a change to it needs no migration. Only the table
and column names, and the outcome values, are frozen here, as any migration
freezes them. ``callbacks._apply_in_one`` calls it; when it is missing (code
deployed before ``migrate``) it runs the same work as one generated statement.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

#: The function's argument types: its identity, for DROP FUNCTION.
SIGNATURE = (
    "bigint, text, text, text[], text[], text, numeric, interval, timestamptz, "
    "jsonb, inet, timestamptz, integer, boolean"
)

# As the generated statement in callbacks._statement does: the room left under
# CALLBACK_MAX_EVENTS (else count the callback on the URL's call and insert
# nothing); the call of the request id locked, if it is the URL's call or its
# SMS fallback (else an orphan); updated if its status is behind the report;
# the event inserted with its outcome. Each statement sees the rows as the one
# before it left them (READ COMMITTED, a new snapshot per statement), so a
# delivery that waited on the lock sees the status its predecessor set.
# moved is the call as updated, filled only when p_row asks (for the
# receivers of call_status_changed): building the row costs otherwise.
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
    IF NOT EXISTS (SELECT FROM voicepassword_call WHERE id = p_token_call)
        OR (SELECT count(*) FROM (
            SELECT FROM voicepassword_callbackevent WHERE url_call_id = p_token_call LIMIT p_cap
        ) AS kept) >= p_cap
    THEN
        UPDATE voicepassword_call SET callbacks_dropped = callbacks_dropped + 1
        WHERE id = p_token_call;
        RETURN;
    END IF;
    SELECT c.id, c.status INTO call_id, old_status FROM voicepassword_call AS c
    WHERE c.provider_id = p_provider_id AND (c.id = p_token_call OR c.parent_id = p_token_call)
    FOR NO KEY UPDATE;
    IF call_id IS NULL THEN
        outcome := 'orphan';
    ELSE
        IF p_row THEN
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
        ELSE
            UPDATE voicepassword_call AS c SET
                status = p_status,
                error_code = CASE WHEN c.status = ANY (p_error_code_statuses)
                    THEN '' ELSE c.error_code END,
                state_label = p_label,
                price = coalesce(p_price, c.price),
                duration = coalesce(p_duration, c.duration),
                provider_date = coalesce(p_date, c.provider_date),
                updated_at = p_now
            WHERE c.id = call_id AND c.status = ANY (p_behind);
        END IF;
        IF FOUND THEN
            outcome := 'applied';
        ELSIF old_status = p_status THEN
            outcome := 'duplicate';
        ELSE
            outcome := 'stale';
        END IF;
    END IF;
    INSERT INTO voicepassword_callbackevent
        (call_id, url_call_id, provider_id, state, payload, remote_addr, received_at, outcome)
    VALUES (call_id, p_token_call, p_provider_id, p_label, p_payload, p_remote_addr, p_now, outcome)
    RETURNING id INTO event_id;
END
$function$
"""

DROP = f"DROP FUNCTION IF EXISTS voicepassword_apply_callback({SIGNATURE})"


def create_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        # params=None: the text is not a template (no placeholders to fill).
        schema_editor.execute(CREATE, params=None)


def drop_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("voicepassword", "0006_fraud_guard"),
    ]

    operations = [
        migrations.RunPython(create_function, drop_function, elidable=False),
    ]
