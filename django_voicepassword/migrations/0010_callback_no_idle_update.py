"""The callback function updates a locked call only when the callback moves it.

A callback that the first ``UPDATE`` did not apply (a repeat, a stale state,
a row that got its request id in between, or any callback while someone
listens to ``call_status_changed``) takes the call's row lock with a
``SELECT … FOR NO KEY UPDATE``, which also reads its status. Migration 0009's
function then ran a second ``UPDATE`` by key with ``status = ANY (p_behind)``
and looked at ``FOUND``. Under the lock the status it read cannot change, so
that condition is already known: the function now runs the ``UPDATE`` only
when the status read is behind, and a repeat or a stale state, about a third
of the callbacks a provider sends, costs one statement less inside the
function (an ``UPDATE`` that opened every index of the table to change
nothing; docs/decisions.md, "The callback endpoint's speed"). The outcomes
are the same for every status and state (``tests/test_forward_rule.py``).
Same name and arguments; the reverse puts 0009's back.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations

_0009 = importlib.import_module("django_voicepassword.migrations.0009_callback_cap_check")

#: What 0010 changes in 0009's function, before and after: the head and the
#: tail of the locked call's update (the SET between them stays as it is).
#: Before, tried whatever the status read; after, only when that status is
#: behind, and then it always applies.
CHANGES = [
    (
        """        ELSE
            -- The whole row is read back by the caller only when a receiver listens.
""",
        """        ELSIF old_status = ANY (p_behind) THEN
            -- Locked by the SELECT above: the status read is the status updated.
            -- The whole row is read back by the caller only when a receiver listens.
""",
    ),
    (
        """            WHERE c.id = call_id AND c.status = ANY (p_behind)
            RETURNING c.* INTO moved;
            IF FOUND THEN
                outcome := 'applied';
            ELSIF old_status = p_status THEN
                outcome := 'duplicate';
            ELSE
                outcome := 'stale';
            END IF;
        END IF;""",
        """            WHERE c.id = call_id
            RETURNING c.* INTO moved;
            outcome := 'applied';
        ELSIF old_status = p_status THEN
            outcome := 'duplicate';
        ELSE
            outcome := 'stale';
        END IF;""",
    ),
]


def _changed(source: str) -> str:
    for before, after in CHANGES:
        if source.count(before) != 1:  # pragma: no cover - a guard on a frozen file
            raise RuntimeError("0009's function no longer has the update 0010 replaces")
        source = source.replace(before, after)
    return source


CREATE = _changed(_0009.CREATE)


def create_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def restore_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_0009.CREATE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("voicepassword", "0009_callback_cap_check"),
    ]

    operations = [
        migrations.RunPython(create_function, restore_function, elidable=False),
    ]
