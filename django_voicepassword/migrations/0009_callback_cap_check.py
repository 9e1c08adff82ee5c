"""The callback function's cap check, as one index probe instead of a count.

Every callback begins by asking whether its URL already keeps
``CALLBACK_MAX_EVENTS`` events. Migration 0008's function counted them:
``count(*)`` over at most ``p_cap`` rows of ``url_call_id``, which PostgreSQL
ran as an aggregate over a bitmap scan, five plan nodes set up and torn down
on each callback. The question is only whether a ``p_cap``-th event exists, so
it is now asked that way: ``EXISTS (... ORDER BY url_call_id OFFSET p_cap - 1)``,
which is planned as one index-only scan of the same index that stops at the
first row past the offset (docs/decisions.md, "The callback endpoint's
speed"). The answer is the same for every number of events and every cap
(a cap below 1, which the settings refuse, still drops everything, as
``count(*) >= p_cap`` did). Nothing else in the function changes; the
reverse puts 0008's back.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations

_0008 = importlib.import_module("django_voicepassword.migrations.0008_callback_writes")

#: 0008's cap check, replaced below.
COUNT = """    IF (SELECT count(*) FROM (
        SELECT FROM voicepassword_callbackevent WHERE url_call_id = p_token_call LIMIT p_cap
    ) AS kept) >= p_cap
    THEN"""

#: Whether the URL keeps p_cap events already: does a p_cap-th one exist?
EXISTS = """    IF p_cap < 1 OR EXISTS (
        SELECT FROM voicepassword_callbackevent WHERE url_call_id = p_token_call
        ORDER BY url_call_id OFFSET p_cap - 1
    )
    THEN"""

if COUNT not in _0008.CREATE:  # pragma: no cover - a guard on a frozen file
    raise RuntimeError("0008's function no longer has the cap check 0009 replaces")

CREATE = _0008.CREATE.replace(COUNT, EXISTS)


def create_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def restore_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_0008.CREATE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("voicepassword", "0008_callback_writes"),
    ]

    operations = [
        migrations.RunPython(create_function, restore_function, elidable=False),
    ]
