"""The forward-only rule of callbacks, on every path that applies one.

A callback is applied through the ORM (:func:`~django_voicepassword.reconcile.record_changes`
under a row lock) on every database, and on PostgreSQL through one statement:
a call of the PL/pgSQL function that migration 0007 installs and 0008
replaces (``callbacks.FUNCTION``: one UPDATE for the usual callback, a
locking SELECT first when someone listens to ``call_status_changed``), or,
without it, a generated statement (``callbacks._statement``); both take their status sets from
:func:`~django_voicepassword.reconcile.overwritable_by`, that is from the same
rank table, and each may run as a prepared statement. Here every path is held
against the rule written out a second time, independently of the package's
tables, for every pair of (the call's status, the state reported); and on
PostgreSQL the paths are held against the ORM on generated callbacks
(hypothesis), so that a change to the Python rule, the statement or the
function that leaves another behind fails.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_voicepassword import callbacks
from django_voicepassword.client import CallState, parse_callback
from django_voicepassword.models import Call, CallbackEvent

Status = Call.Status
Outcome = CallbackEvent.Outcome

#: The lifecycle, written out again rather than imported: a call never moves to
#: a status of a lower or equal rank through a callback.
RANK = {"pending": 0, "unknown": 0, "placed": 1, "dialling": 2, "queued": 2, "sent": 3}
FINAL_RANK = 9
#: What each state of the provider's document means for the call.
MEANING = {
    "ANSWERED": "answered",
    "BUSY": "busy",
    "NO ANSWER": "no_answer",
    "FAIL": "failed",
    "CANCEL": "cancelled",
    "DIALLING": "dialling",
    "QUEUED": "queued",
    "SEND": "sent",
    "DELIVERED": "delivered",
    "NOT DELIVERED": "not_delivered",
}
#: The statuses whose error code says why there is no outcome; leaving one clears it.
WITH_ERROR_CODE = {"unknown", "not_placed"}

OLD_PRICE = Decimal("0.3500")
OLD_DURATION = timedelta(seconds=1)
FIELDS = ("status", "error_code", "state_label", "price", "duration", "provider_date")

_ids = itertools.count(5000)


def rank(status: str) -> int:
    return RANK.get(status, FINAL_RANK)


def test_the_rule_here_covers_every_status_and_state():
    """The table above is complete: a new status or state must be placed in it."""
    assert {state.value for state in CallState} == set(MEANING)
    assert set(MEANING.values()) <= {status.value for status in Status}
    assert set(RANK) <= {status.value for status in Status}


def make_call(status: str) -> Call:
    return Call.objects.create(
        channel=Call.Channel.FLASH_CALL,
        number="79990000001",
        provider_id=str(next(_ids)),
        status=status,
        error_code="timeout" if status in WITH_ERROR_CODE else "",
        state_label="before",
        price=OLD_PRICE,
        duration=OLD_DURATION,
    )


def payload_for(call: Call, state: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"id": call.provider_id, "number": call.number, "state": state, **extra}


def expected(call: Call, state: str, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The row after a callback reporting ``state``, and the event's outcome: the rule."""
    before = {name: getattr(call, name) for name in FIELDS}
    new = MEANING[state]
    if rank(call.status) >= rank(new):
        return before, Outcome.DUPLICATE if new == call.status else Outcome.STALE
    record = parse_callback(payload)
    after = dict(before, status=new, state_label=state)
    if call.status in WITH_ERROR_CODE:
        after["error_code"] = ""
    for name, value in (
        ("price", record.price),
        ("duration", record.duration),
        ("provider_date", record.date),
    ):
        if value is not None:
            after[name] = value
    return after, Outcome.APPLIED


def apply(path: str, call: Call, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Apply ``payload`` to ``call`` through ``path``; the row after it and the outcome."""
    record = parse_callback(payload)
    apply_on = callbacks._apply_with_orm if path == "orm" else callbacks._apply_in_one
    target: Any = connection.alias if path == "orm" else connection
    # "sql": the generated statement; "function": the function's call; each
    # also "...prepared", run as a prepared statement. "function listened":
    # the function's other way, which returns the row for the listeners.
    options = {} if path == "orm" else {"through_function": path.startswith("function")}
    prepared = {"CALLBACK_PREPARED_STATEMENTS": path.endswith("prepared")}
    listened = path == "function listened"
    with override_settings(VOICEPASSWORD=prepared):
        event = apply_on(
            target, call.pk, record, payload, "127.0.0.1", listened=listened, **options
        )
    row = Call.objects.values(*FIELDS).get(pk=call.pk)
    stored = CallbackEvent.objects.get(pk=event.pk)
    assert (stored.outcome, stored.call_id) == (event.outcome, call.pk)
    return dict(row), event.outcome


def paths() -> list[str]:
    if connection.vendor != "postgresql":
        return ["orm"]
    return ["orm", "sql", "prepared", "function", "function prepared", "function listened"]


@pytest.mark.django_db
def test_every_status_and_state_pair_follows_the_rule():
    extra = {"price": "0.40", "duration": "7", "date": "2020-02-02 15:18:48"}
    checked = 0
    for path in paths():
        for status, state in itertools.product(Status, MEANING):
            call = make_call(status)
            payload = payload_for(call, state, extra)
            want = expected(call, state, payload)
            assert apply(path, call, payload) == want, (path, status, state)
            checked += 1
    assert checked == len(paths()) * len(Status) * len(MEANING)


optional = st.fixed_dictionaries(
    {},
    optional={
        "price": st.decimals(min_value=0, max_value=999, places=2).map(str),
        "duration": st.integers(min_value=0, max_value=3600).map(str),
        "date": st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
            lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")
        ),
    },
)


@pytest.mark.postgres
@pytest.mark.django_db
@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from(list(Status)),
    states=st.lists(st.sampled_from(sorted(MEANING)), min_size=1, max_size=4),
    extra=optional,
)
def test_the_statement_and_the_orm_agree(status, states, extra):
    """The same callbacks, in the same order, leave the same rows and outcomes on both paths."""
    calls = {path: make_call(status) for path in paths()}
    for state in states:
        results = {
            path: apply(path, call, payload_for(call, state, extra))
            for path, call in calls.items()
        }
        for path in paths():
            assert results[path] == results["orm"], (path, status, state, extra)
