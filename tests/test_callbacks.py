"""The status-callback view: every variant of the reference, applied once, in order.

The provider's callbacks are unauthenticated, may repeat and may arrive out of
order (reference, "Status callbacks"). These tests post them to the view the
way the provider does and check what the call row and the stored
:class:`CallbackEvent` say afterwards; a refused request must write nothing.
Bad bodies are in ``test_callback_input.py``, concurrency and the end-to-end
loop over real HTTP in ``test_callback_concurrency.py``.
"""

from __future__ import annotations

import gc
import importlib
import json
import weakref
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core import signing
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from django_voicepassword import callbacks as callbacks_module
from django_voicepassword.callbacks import (
    _SALT,
    _turns,
    apply_callback,
    call_id_from_token,
    callback_token,
    callback_url,
)
from django_voicepassword.client import PROVIDER_TZ, parse_callback
from django_voicepassword.models import Call, CallbackEvent, status_for_state
from django_voicepassword.reconcile import record_changes
from django_voicepassword.signals import call_status_changed

NUMBER = "79990000001"
OTHER_NUMBER = "79990000002"
CALL_ID = "1001"
SMS_ID = "1002"
OTHER_ID = "2001"
DATE = "2020-02-02 15:18:48"
#: DATE read as the reference says: Moscow time, UTC+3.
MOSCOW = datetime(2020, 2, 2, 15, 18, 48, tzinfo=PROVIDER_TZ)
SITE = "https://site.example"
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")

Status = Call.Status
Outcome = CallbackEvent.Outcome


# --------------------------------------------------------------------------- helpers


def callback(state: str, *, id: Any = CALL_ID, **fields: Any) -> dict[str, Any]:
    """A callback in the reference's shape, every value a string."""
    return {
        "id": id,
        "number": NUMBER,
        "duration": "1",
        "state": state,
        "price": "0.35",
        "date": DATE,
        **fields,
    }


def path_of(call: Call) -> str:
    """The path of the URL the provider is given for ``call`` (its parent's, for an SMS)."""
    with override_settings(VOICEPASSWORD={"CALLBACK_BASE_URL": SITE}):
        url = callback_url(call)
    assert url is not None
    return urlsplit(url).path


def deliver(client, target: Call | str, body: Any, **extra: Any):
    """POST ``body`` (a dict, or raw text or bytes) as JSON to ``target``'s callback URL.

    The request's commit callbacks (the signals) run before this returns, also
    inside the transaction of a non-transactional test.
    """
    path = path_of(target) if isinstance(target, Call) else target
    data = body if isinstance(body, bytes | str) else json.dumps(body, ensure_ascii=False)
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(path, data=data, content_type="application/json", **extra)


def snapshot() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every event and every call row, to prove that a request wrote nothing."""
    events = [dict(event) for event in CallbackEvent.objects.order_by("pk").values()]
    rows = [dict(call) for call in Call.objects.order_by("pk").values()]
    return events, rows


def row(call: Call) -> dict[str, Any]:
    return dict(Call.objects.filter(pk=call.pk).values().get())


def data_queries(captured: CaptureQueriesContext) -> list[str]:
    """The captured statements, without BEGIN/COMMIT/SAVEPOINT (Django logs those too)."""
    statements = [query["sql"] for query in captured.captured_queries]
    return [sql for sql in statements if not sql.upper().startswith(TRANSACTION_CONTROL)]


@pytest.fixture
def call(db) -> Call:
    return Call.objects.create(
        channel=Call.Channel.FLASH_CALL,
        number=NUMBER,
        provider_id=CALL_ID,
        status=Status.PLACED,
        price=Decimal("0.35"),
    )


@pytest.fixture
def sms(call) -> Call:
    return Call.objects.create(
        channel=Call.Channel.SMS,
        number=NUMBER,
        provider_id=SMS_ID,
        parent=call,
        status=Status.PLACED,
        price=Decimal("3.30"),
    )


@pytest.fixture
def other(db) -> Call:
    return Call.objects.create(
        channel=Call.Channel.VOICE_CALL,
        number=OTHER_NUMBER,
        provider_id=OTHER_ID,
        status=Status.PLACED,
    )


@pytest.fixture
def changes():
    """``call_status_changed`` as received: ``(pk, old_status, new_status, source)``."""
    received: list[tuple[int, str, str, str]] = []

    def on_changed(sender, call, old_status, new_status, source, **kwargs):
        received.append((call.pk, old_status, new_status, source))

    call_status_changed.connect(on_changed)
    yield received
    call_status_changed.disconnect(on_changed)


# --------------------------------------------------------------------------- the URL


def test_the_callback_url_carries_a_signed_token_of_the_call(call):
    with override_settings(VOICEPASSWORD={"CALLBACK_BASE_URL": SITE + "/"}):
        url = callback_url(call)
    assert url is not None
    assert url.startswith(SITE + "/voicepassword/callback/")
    token = urlsplit(url).path.split("/")[-2]
    assert url == SITE + reverse("voicepassword:callback", kwargs={"token": token})
    assert call_id_from_token(token) == call.pk


def test_an_sms_reports_to_its_parents_url(call, sms):
    assert path_of(sms) == path_of(call)


def test_without_a_base_url_there_is_no_callback_url(call):
    assert callback_url(call) is None


# --------------------------------------------------------------------------- every variant


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("BUSY", Status.BUSY),
        ("NO ANSWER", Status.NO_ANSWER),
        ("ANSWERED", Status.ANSWERED),
        ("FAIL", Status.FAILED),
        ("CANCEL", Status.CANCELLED),
        ("Успешно", Status.ANSWERED),
        ("Занято", Status.BUSY),
        ("Нет ответа", Status.NO_ANSWER),
        ("Ошибка", Status.FAILED),
        ("Отменен", Status.CANCELLED),
        ("Недозвон", Status.FAILED),
        ("Дозвон", Status.DIALLING),
    ],
)
def test_every_call_state_is_applied(client, call, changes, state, status):
    body = callback(state, duration="4", price="0.35")
    answer = deliver(client, call, body)
    assert answer.status_code == 200
    assert answer.json() == {"result": "ok", "outcome": "applied"}
    call.refresh_from_db()
    assert call.status == status
    assert call.state_label == state
    assert call.price == Decimal("0.35")
    assert isinstance(call.price, Decimal)
    assert call.duration == timedelta(seconds=4)
    assert call.provider_date == MOSCOW
    assert call.provider_date is not None
    assert call.provider_date.utcoffset() is not None
    assert call.provider_date == datetime(2020, 2, 2, 12, 18, 48, tzinfo=UTC)
    event = CallbackEvent.objects.get()
    assert event.outcome == Outcome.APPLIED
    assert event.call == call
    assert event.provider_id == CALL_ID
    assert event.state == state
    assert event.payload == body
    assert event.remote_addr == "127.0.0.1"
    assert changes == [(call.pk, Status.PLACED, status, "callback")]


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("QUEUED", Status.QUEUED),
        ("SEND", Status.SENT),
        ("DELIVERED", Status.DELIVERED),
        ("NOT DELIVERED", Status.NOT_DELIVERED),
        ("FAIL", Status.FAILED),
    ],
)
def test_every_sms_state_arrives_on_the_parents_url_with_the_sms_id(
    client, call, sms, changes, state, status
):
    before = row(call)
    answer = deliver(client, call, callback(state, id=SMS_ID, price="3.30", duration="0"))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "applied"
    sms.refresh_from_db()
    assert sms.status == status
    assert sms.state_label == state
    assert sms.price == Decimal("3.30")
    assert sms.duration == timedelta(0)
    assert sms.provider_date == MOSCOW
    assert row(call) == before  # the parent is untouched
    event = CallbackEvent.objects.get()
    assert (event.call, event.provider_id, event.outcome) == (sms, SMS_ID, Outcome.APPLIED)
    assert changes == [(sms.pk, Status.PLACED, status, "callback")]


def test_an_sms_moves_through_its_states_in_order(client, call, sms, changes):
    outcomes = [
        deliver(client, call, callback(state, id=SMS_ID)).json()["outcome"]
        for state in ("QUEUED", "SEND", "DELIVERED")
    ]
    assert outcomes == ["applied"] * 3
    sms.refresh_from_db()
    assert sms.status == Status.DELIVERED
    assert [(old, new) for _pk, old, new, _source in changes] == [
        (Status.PLACED, Status.QUEUED),
        (Status.QUEUED, Status.SENT),
        (Status.SENT, Status.DELIVERED),
    ]


def test_a_call_moves_from_dialling_to_its_final_state(client, call, changes):
    assert deliver(client, call, callback("Дозвон")).json()["outcome"] == "applied"
    assert deliver(client, call, callback("ANSWERED")).json()["outcome"] == "applied"
    call.refresh_from_db()
    assert call.status == Status.ANSWERED
    assert len(changes) == 2


@pytest.mark.parametrize(
    ("fields", "price", "duration"),
    [
        ({"id": int(CALL_ID), "duration": 1, "price": 3}, Decimal(3), timedelta(seconds=1)),
        ({"id": CALL_ID, "duration": "1", "price": "0.35"}, Decimal("0.35"), timedelta(seconds=1)),
        ({"number": int(NUMBER), "price": "0,35"}, Decimal("0.35"), timedelta(seconds=1)),
        ({"duration": "01:05", "price": " 3.30 "}, Decimal("3.30"), timedelta(seconds=65)),
        ({"duration": 0, "price": 0}, Decimal(0), timedelta(0)),
        ({"id": f" {CALL_ID} ", "state": "no_answer"}, Decimal("0.35"), timedelta(seconds=1)),
    ],
)
def test_ids_durations_and_prices_as_integers_or_strings(client, call, fields, price, duration):
    body = {**callback("NO ANSWER"), **fields}
    answer = deliver(client, call, body)
    assert answer.status_code == 200, answer.json()
    call.refresh_from_db()
    assert call.status == Status.NO_ANSWER
    assert call.price == price
    assert call.duration == duration
    event = CallbackEvent.objects.get()
    assert event.provider_id == CALL_ID
    assert event.payload == body  # verbatim, integers stay integers


def test_optional_fields_may_be_absent_or_blank(client, call):
    body = {"id": CALL_ID, "number": NUMBER, "state": "BUSY", "price": "", "date": " "}
    assert deliver(client, call, body).json()["outcome"] == "applied"
    call.refresh_from_db()
    assert call.status == Status.BUSY
    assert call.price == Decimal("0.35")  # from send/, not overwritten by a blank
    assert call.duration is None
    assert call.provider_date is None


def test_unknown_extra_fields_are_kept_in_the_stored_payload(client, call):
    body = callback(
        "ANSWERED",
        operator="MTS",
        region={"code": 77, "name": "Москва"},
        tags=["a", 1, True, None, 0.5],
    )
    assert deliver(client, call, body).status_code == 200
    event = CallbackEvent.objects.get()
    assert event.payload == body
    assert event.payload["region"]["name"] == "Москва"


def test_an_unknown_label_is_stored_verbatim_and_changes_no_status(client, call, changes):
    label = "Ожидает оператора"
    answer = deliver(client, call, callback(label, duration="2"))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "stale"
    call.refresh_from_db()
    assert call.status == Status.PLACED
    assert call.state_label == label
    assert call.duration == timedelta(seconds=2)
    event = CallbackEvent.objects.get()
    assert (event.state, event.outcome, event.call) == (label, Outcome.STALE, call)
    assert changes == []


# --------------------------------------------------------------------------- once, forward


def test_the_same_callback_twice_is_a_duplicate_and_changes_nothing(client, call, changes):
    body = callback("BUSY")
    assert deliver(client, call, body).json()["outcome"] == "applied"
    after_first = row(call)
    answer = deliver(client, call, body)
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "duplicate"
    assert row(call) == after_first  # not even updated_at
    outcomes = CallbackEvent.objects.order_by("pk").values_list("outcome", flat=True)
    assert list(outcomes) == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert changes == [(call.pk, Status.PLACED, Status.BUSY, "callback")]


@override_settings(VOICEPASSWORD={"CALLBACK_MAX_EVENTS": 50})
def test_fifty_repeats_in_a_row_apply_once(client, call, sms, changes):
    """The duplicate rule without concurrency (any database; PostgreSQL threads elsewhere)."""
    outcomes = [
        deliver(client, call, callback("DELIVERED", id=SMS_ID)).json()["outcome"]
        for _ in range(50)
    ]
    assert outcomes == ["applied"] + ["duplicate"] * 49
    assert CallbackEvent.objects.filter(outcome=Outcome.APPLIED).count() == 1
    assert len(changes) == 1


def test_the_same_state_under_another_label_is_a_duplicate(client, call, changes):
    assert deliver(client, call, callback("ANSWERED")).json()["outcome"] == "applied"
    assert deliver(client, call, callback("Успешно")).json()["outcome"] == "duplicate"
    call.refresh_from_db()
    assert call.state_label == "ANSWERED"
    assert len(changes) == 1


@pytest.mark.parametrize(
    ("target", "final", "late", "status"),
    [
        ("sms", "DELIVERED", "SEND", Status.DELIVERED),
        ("sms", "DELIVERED", "QUEUED", Status.DELIVERED),
        ("sms", "SEND", "QUEUED", Status.SENT),
        ("sms", "NOT DELIVERED", "SEND", Status.NOT_DELIVERED),
        ("call", "ANSWERED", "Дозвон", Status.ANSWERED),
        ("call", "BUSY", "Дозвон", Status.BUSY),
        # A callback never corrects one final state into another: only get/ may.
        ("call", "BUSY", "ANSWERED", Status.BUSY),
        ("call", "NO ANSWER", "Недозвон", Status.NO_ANSWER),
    ],
)
def test_a_late_intermediate_state_is_stale_and_the_final_one_is_kept(
    client, call, sms, changes, target, final, late, status
):
    reported = sms if target == "sms" else call
    assert deliver(client, call, callback(final, id=reported.provider_id)).status_code == 200
    kept = row(reported)
    answer = deliver(client, call, callback(late, id=reported.provider_id, duration="9"))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "stale"
    assert row(reported) == kept
    assert kept["status"] == status
    event = CallbackEvent.objects.order_by("pk").last()
    assert event is not None
    assert (event.state, event.outcome, event.call) == (late, Outcome.STALE, reported)
    assert len(changes) == 1


def test_another_calls_id_under_this_token_is_an_orphan(client, call, other, changes):
    before = snapshot()[1]
    answer = deliver(client, call, callback("ANSWERED", id=OTHER_ID))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "orphan"
    assert snapshot()[1] == before
    event = CallbackEvent.objects.get()
    assert (event.call, event.provider_id, event.outcome) == (None, OTHER_ID, Outcome.ORPHAN)
    assert changes == []


def test_an_unknown_id_is_an_orphan(client, call):
    before = snapshot()[1]
    assert deliver(client, call, callback("BUSY", id="999999")).json()["outcome"] == "orphan"
    assert snapshot()[1] == before


def test_the_parents_id_under_the_sms_token_is_an_orphan(client, call, sms):
    sms_path = reverse("voicepassword:callback", kwargs={"token": callback_token(sms.pk)})
    before = snapshot()[1]
    assert deliver(client, sms_path, callback("BUSY")).json()["outcome"] == "orphan"
    assert snapshot()[1] == before


def test_a_valid_token_for_a_deleted_call_keeps_nothing(client, call, caplog):
    """The token never expires, so the URL of a purged call would keep events forever."""
    path = path_of(call)
    call.delete()
    answer = deliver(client, path, callback("BUSY"))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "dropped")
    assert not CallbackEvent.objects.exists()
    assert "dropped" in caplog.text


def test_an_orphan_counts_against_its_urls_call(client, call):
    assert deliver(client, call, callback("BUSY", id="999999")).json()["outcome"] == "orphan"
    event = CallbackEvent.objects.get()
    assert (event.call_id, event.url_call_id) == (None, call.pk)


# --------------------------------------------------------------------------- the cap


def test_a_url_keeps_at_most_callback_max_events(client, call, sms, changes, caplog):
    """A leaked token lets anyone post; what is stored for it stays bounded."""
    with override_settings(VOICEPASSWORD={"CALLBACK_MAX_EVENTS": 3}):
        kinds = [
            callback("SEND", id=SMS_ID),
            callback("BUSY", id="999999", pad="x" * 3000),  # an orphan counts too
            callback("DELIVERED", id=SMS_ID),
        ]
        outcomes = [deliver(client, call, body).json()["outcome"] for body in kinds]
        assert outcomes == ["applied", "orphan", "applied"]
        before = snapshot()[0]
        answers = [deliver(client, call, callback("BUSY", pad="y" * 3000)) for _ in range(5)]
    assert {(answer.status_code, answer.json()["outcome"]) for answer in answers} == {
        (200, "dropped")
    }
    # Nothing written for them but the counter: no event, no status change.
    assert snapshot()[0] == before
    call.refresh_from_db()
    assert (call.status, call.callbacks_dropped) == (Status.PLACED, 5)
    assert Call.objects.get(pk=sms.pk).callbacks_dropped == 0
    assert len(changes) == 2
    assert caplog.text.count("dropped: it keeps 3 events at most") == 5
    assert NUMBER not in caplog.text


def test_the_cap_is_per_url_and_counts_kept_events(client, call, other):
    with override_settings(VOICEPASSWORD={"CALLBACK_MAX_EVENTS": 1}):
        assert deliver(client, call, callback("BUSY")).json()["outcome"] == "applied"
        assert deliver(client, call, callback("BUSY")).json()["outcome"] == "dropped"
        # Another call's URL has its own room.
        other_body = callback("ANSWERED", id=OTHER_ID, number=OTHER_NUMBER)
        assert deliver(client, other, other_body).json()["outcome"] == "applied"
        # Events that are purged no longer count.
        CallbackEvent.objects.filter(url_call=call).delete()
        assert deliver(client, call, callback("BUSY")).json()["outcome"] == "duplicate"


# --------------------------------------------------------------------------- the token


def _forged_paths(call: Call) -> dict[str, str]:
    token = callback_token(call.pk)
    value, signature = token.split(":")
    return {
        "unsigned": f"{call.pk}",
        "forged signature": f"{call.pk}:{'A' * len(signature)}",
        "truncated": token[:-1],
        "signature only": signature,
        "other call's signature": f"{call.pk + 1}:{signature}",
        "other salt": signing.Signer(salt="django_voicepassword.other").sign(str(call.pk)),
        "no salt": signing.Signer().sign(str(call.pk)),
        "other key": signing.Signer(key="not-the-secret-key", salt=_SALT).sign(str(call.pk)),
        "timestamped": signing.TimestampSigner(salt=_SALT).sign(str(call.pk)),
        "not a number": signing.Signer(salt=_SALT).sign("abc"),
        "not an ascii number": signing.Signer(salt=_SALT).sign("\u00b2"),
        "empty value": signing.Signer(salt=_SALT).sign(""),
        "padding": token + "=",
        "case": value + ":" + signature.swapcase(),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "unsigned",
        "forged signature",
        "truncated",
        "signature only",
        "other call's signature",
        "other salt",
        "no salt",
        "other key",
        "timestamped",
        "not a number",
        "not an ascii number",
        "empty value",
        "padding",
        "case",
    ],
)
def test_a_bad_token_is_404_and_writes_nothing(client, call, changes, kind):
    token = _forged_paths(call)[kind]
    before = snapshot()
    answer = deliver(client, f"/voicepassword/callback/{token}/", callback("BUSY"))
    assert answer.status_code == 404
    assert snapshot() == before
    assert changes == []


@pytest.mark.parametrize(
    "path",
    ["/voicepassword/callback/", "/voicepassword/callback//", "/voicepassword/callback/%20/"],
)
def test_a_missing_token_is_404_and_writes_nothing(client, call, path):
    before = snapshot()
    assert deliver(client, path, callback("BUSY")).status_code == 404
    assert snapshot() == before


def test_the_token_is_checked_before_anything_else(client, call):
    """A bad token is 404 whatever else is wrong: the body is not even read."""
    path = f"/voicepassword/callback/{call.pk}:forged/"
    before = snapshot()
    with override_settings(VOICEPASSWORD={"CALLBACK_ALLOWED_IPS": ["192.0.2.0/24"]}):
        assert deliver(client, path, b"{not json").status_code == 404
        answer = client.post(path, data=b"x" * 10_000, content_type="text/plain")
        assert answer.status_code == 404
    assert snapshot() == before


def test_tokens_survive_a_key_rotation_done_the_django_way(client, call):
    path = path_of(call)
    old_key = django_settings.SECRET_KEY
    with override_settings(SECRET_KEY="a-new-tests-only-key", SECRET_KEY_FALLBACKS=[old_key]):
        assert deliver(client, path, callback("BUSY")).status_code == 200
    with override_settings(SECRET_KEY="a-new-tests-only-key", SECRET_KEY_FALLBACKS=[]):
        assert deliver(client, path, callback("BUSY")).status_code == 404
    assert CallbackEvent.objects.count() == 1


def test_the_signer_is_built_once_not_per_callback(client, call, monkeypatch):
    """Its keys are derived when it is built: one signer serves every callback."""
    path = path_of(call)
    deliver(client, path, callback("Дозвон"))  # whatever signer the path above left
    built: list[object] = []
    original = signing.Signer.__init__

    def counting(self: signing.Signer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.salt == _SALT:  # not the signers of sessions and the like
            built.append(self)

    derived: list[object] = []
    original_hmac = signing.base64_hmac

    def deriving(*args: Any, **kwargs: Any) -> str:
        derived.append(args)
        return original_hmac(*args, **kwargs)

    monkeypatch.setattr(signing.Signer, "__init__", counting)
    # Django's signer derives the HMAC key from the secret on every signature.
    monkeypatch.setattr(signing, "base64_hmac", deriving)
    for state in ("BUSY", "BUSY", "ANSWERED"):
        assert deliver(client, path, callback(state)).status_code == 200
    assert callback_token(call.pk) == path.rstrip("/").rsplit("/", 1)[1]
    assert built == []
    assert derived == []


@given(value=st.text(max_size=30), which=st.integers(min_value=0, max_value=2))
def test_the_cached_signer_signs_as_djangos_signer(value, which):
    """Keys derived once, the same signatures: tokens of either verify with the other."""
    keys = ["tests-only-key-a", "tests-only-key-b", "tests-only-key-c"]
    with override_settings(SECRET_KEY=keys[which], SECRET_KEY_FALLBACKS=keys[:which]):
        django_signer = signing.Signer(salt=_SALT)
        assert callbacks_module._signer().sign(value) == django_signer.sign(value)
        # Signed with an older key, verified through the fallbacks, both ways.
        old = signing.Signer(key=keys[0], salt=_SALT).sign(value)
        assert callbacks_module._signer().unsign(old) == value
        forged = old[:-1] + ("A" if old[-1] != "A" else "B")
        with pytest.raises(signing.BadSignature):
            callbacks_module._signer().unsign(forged)


def test_a_rotated_key_is_used_at_once_and_the_old_one_dropped(client, call):
    """The cached signer follows SECRET_KEY and its fallbacks (setting_changed)."""
    path = path_of(call)
    assert deliver(client, path, callback("Дозвон")).status_code == 200
    with override_settings(SECRET_KEY="a-new-tests-only-key", SECRET_KEY_FALLBACKS=[]):
        assert deliver(client, path, callback("BUSY")).status_code == 404
        new_path = path_of(call)
        assert new_path != path
        assert deliver(client, new_path, callback("BUSY")).status_code == 200
    # Back to the old key: the signer of the new one is gone with it.
    assert deliver(client, new_path, callback("BUSY")).status_code == 404
    assert deliver(client, path, callback("BUSY")).status_code == 200


def test_only_post_is_allowed(client, call):
    path = path_of(call)
    assert client.get(path).status_code == 405
    assert client.put(path, data="{}", content_type="application/json").status_code == 405
    assert not CallbackEvent.objects.exists()


# --------------------------------------------------------------------------- queries


def postgresql() -> bool:
    """Whether the tests run on PostgreSQL, where a callback is one statement."""
    return connection.vendor == "postgresql"


@pytest.mark.parametrize(
    "transactional",
    [
        pytest.param(False, marks=pytest.mark.django_db),
        pytest.param(True, marks=pytest.mark.django_db(transaction=True)),
    ],
)
def test_a_callback_is_one_statement_on_postgresql_and_four_queries_elsewhere(
    client, call, transactional
):
    path = path_of(call)
    with CaptureQueriesContext(connection) as captured:
        answer = deliver(client, path, callback("BUSY"))
    assert answer.json()["outcome"] == "applied"
    queries = data_queries(captured)
    if postgresql():
        assert len(queries) == 1, queries
        (statement,) = queries
        # The function of migration 0007 does the work: locks, updates, inserts.
        assert statement.startswith("SELECT")
        assert f"FROM {callbacks_module.FUNCTION}(" in statement
        if transactional:
            # Autocommit: the statement is its own transaction, no BEGIN or COMMIT.
            assert len(captured.captured_queries) == 1, captured.captured_queries
    else:
        assert len(queries) <= 4, queries
        count, select, update, insert = queries
        assert count.startswith("SELECT COUNT(*)"), count
        assert select.startswith("SELECT")
        assert "ORDER BY" not in select
        if connection.features.has_select_for_update:
            assert "FOR UPDATE" in select
        assert update.startswith("UPDATE")
        assert insert.startswith("INSERT")
    with CaptureQueriesContext(connection) as captured:
        assert deliver(client, path, callback("BUSY")).json()["outcome"] == "duplicate"
    # No update for a duplicate.
    assert len(data_queries(captured)) == (1 if postgresql() else 3)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("status", "target", "state", "outcome"),
    [
        (Status.PLACED, CALL_ID, "ANSWERED", Outcome.APPLIED),
        (Status.ANSWERED, CALL_ID, "ANSWERED", Outcome.DUPLICATE),
        (Status.ANSWERED, CALL_ID, "Дозвон", Outcome.STALE),
        (Status.PLACED, OTHER_ID, "ANSWERED", Outcome.ORPHAN),
        (Status.PLACED, "999999", "ANSWERED", Outcome.ORPHAN),
    ],
)
def test_every_outcome_is_one_statement_in_autocommit_on_postgresql(
    client, call, other, status, target, state, outcome
):
    Call.objects.filter(pk=call.pk).update(status=status)
    with CaptureQueriesContext(connection) as captured:
        answer = deliver(client, call, callback(state, id=target))
    assert answer.json()["outcome"] == outcome
    assert len(captured.captured_queries) == 1, captured.captured_queries
    event = CallbackEvent.objects.get()
    assert event.outcome == outcome
    assert event.call_id == (None if outcome == Outcome.ORPHAN else call.pk)


def prepared_statements() -> list[str]:
    """The statements prepared on the test's connection that apply callbacks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [text for (text,) in cursor.fetchall() if callbacks_module.FUNCTION in text]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepared", [False, True])
def test_the_statement_is_prepared_only_with_the_setting(client, call, other, prepared):
    """CALLBACK_PREPARED_STATEMENTS: planned once per connection, still one statement."""
    pytest.importorskip("psycopg")
    path = path_of(call)
    with override_settings(VOICEPASSWORD={"CALLBACK_PREPARED_STATEMENTS": prepared}):
        outcomes = []
        for state, target in [
            ("Дозвон", CALL_ID),
            ("ANSWERED", CALL_ID),
            ("ANSWERED", CALL_ID),
            ("BUSY", OTHER_ID),
        ]:
            with CaptureQueriesContext(connection) as captured:
                answer = deliver(client, path, callback(state, id=target, price="0.40"))
            assert len(captured.captured_queries) == 1, captured.captured_queries
            outcomes.append(answer.json()["outcome"])
        found = prepared_statements()
    assert outcomes == ["applied", "applied", "duplicate", "orphan"]
    assert [event.outcome for event in CallbackEvent.objects.order_by("pk")] == outcomes
    assert row(call)["status"] == Status.ANSWERED
    assert row(call)["price"] == Decimal("0.40")
    # Without the setting nothing is prepared: safe behind PgBouncer < 1.21.
    assert bool(found) is prepared


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepared", [False, True])
def test_the_arguments_are_bound_on_the_server_either_way(prepared):
    """Not quoted into the statement's text (Django's ClientCursor): sent apart, as typed."""
    psycopg = pytest.importorskip("psycopg")
    with override_settings(VOICEPASSWORD={"CALLBACK_PREPARED_STATEMENTS": prepared}):
        wrapper = callbacks_module._cursor(connection)
    assert isinstance(wrapper.cursor, psycopg.Cursor)
    assert not isinstance(wrapper.cursor, psycopg.ClientCursor)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_driver_cursor_per_connection_and_setting(client, call):
    """Kept and reused while the connection lives; a new connection or setting, a new one."""
    pytest.importorskip("psycopg")
    path = path_of(call)

    def driver_cursor() -> Any:
        return callbacks_module._cursor(connection).cursor

    first = driver_cursor()
    assert deliver(client, path, callback("Дозвон")).json()["outcome"] == "applied"
    assert driver_cursor() is first
    # Not closed by the statement: still usable, and the query log, started
    # after the cursor was made, still sees the statement.
    assert not first.closed
    with CaptureQueriesContext(connection) as captured:
        assert deliver(client, path, callback("ANSWERED")).json()["outcome"] == "applied"
    assert len(captured.captured_queries) == 1
    assert callbacks_module.FUNCTION in captured.captured_queries[0]["sql"]
    assert driver_cursor() is first
    with override_settings(VOICEPASSWORD={"CALLBACK_PREPARED_STATEMENTS": True}):
        prepared = driver_cursor()
        assert prepared is not first
        assert deliver(client, path, callback("ANSWERED")).json()["outcome"] == "duplicate"
        assert driver_cursor() is prepared
    old = weakref.ref(connection.connection)
    connection.close()
    assert deliver(client, path, callback("BUSY")).json()["outcome"] == "stale"
    renewed = driver_cursor()
    assert renewed is not first
    assert renewed.connection is connection.connection
    # The closed connection is let go with its cursors: nothing kept grows
    # with each reconnection.
    del first, prepared
    gc.collect()
    assert old() is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_the_setting_nothing_is_prepared_whatever_the_connection_says(client, call):
    """A site whose OPTIONS let psycopg prepare (prepare_threshold) still gets no prepared call."""
    pytest.importorskip("psycopg")
    connection.ensure_connection()
    raw = connection.connection
    before = raw.prepare_threshold
    raw.prepare_threshold = 0  # psycopg would prepare every statement on its first run
    try:
        with override_settings(VOICEPASSWORD={"CALLBACK_PREPARED_STATEMENTS": False}):
            for state in ("ANSWERED", "ANSWERED", "BUSY"):
                deliver(client, call, callback(state))
            found = prepared_statements()
    finally:
        raw.prepare_threshold = before
    assert found == []
    assert [event.outcome for event in CallbackEvent.objects.order_by("pk")] == [
        "applied",
        "duplicate",
        "stale",
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_new_connection_prepares_the_statement_again(client, call):
    """Prepared statements live per connection: a new one prepares on its first callback."""
    pytest.importorskip("psycopg")
    path = path_of(call)
    with override_settings(VOICEPASSWORD={"CALLBACK_PREPARED_STATEMENTS": True}):
        assert deliver(client, path, callback("ANSWERED")).json()["outcome"] == "applied"
        connection.close()  # a new connection: nothing prepared on it yet
        assert deliver(client, path, callback("ANSWERED")).json()["outcome"] == "duplicate"
        assert prepared_statements()


def migration_0007() -> Any:
    return importlib.import_module("django_voicepassword.migrations.0007_callback_function")


def migration_0008() -> Any:
    return importlib.import_module("django_voicepassword.migrations.0008_callback_writes")


def migration_0009() -> Any:
    return importlib.import_module("django_voicepassword.migrations.0009_callback_cap_check")


def migration_0010() -> Any:
    """The function's current form (0007's name and arguments)."""
    return importlib.import_module("django_voicepassword.migrations.0010_callback_no_idle_update")


@pytest.mark.postgres
@pytest.mark.parametrize(
    "transactional",
    [
        pytest.param(False, marks=pytest.mark.django_db),
        pytest.param(True, marks=pytest.mark.django_db(transaction=True)),
    ],
)
def test_without_the_function_the_generated_statement_applies_callbacks(
    client, call, changes, caplog, transactional
):
    """New code on a database not yet migrated: nothing lost, one warning per process."""
    with connection.cursor() as cursor:
        cursor.execute(migration_0007().DROP)
    callbacks_module._warn_missing_function.cache_clear()
    try:
        with caplog.at_level("WARNING"), CaptureQueriesContext(connection) as captured:
            first = deliver(client, call, callback("BUSY"))
            again = deliver(client, call, callback("BUSY"))
    finally:
        with connection.cursor() as cursor:
            cursor.execute(migration_0010().CREATE)
        # The caught error's traceback is a cycle (Django's error wrapping)
        # that holds the frames, and the call's turn, until collected.
        gc.collect()
    assert (first.json()["outcome"], again.json()["outcome"]) == ("applied", "duplicate")
    assert row(call)["status"] == Status.BUSY
    assert changes == [(call.pk, Status.PLACED, Status.BUSY, "callback")]
    assert [event.outcome for event in CallbackEvent.objects.order_by("pk")] == [
        "applied",
        "duplicate",
    ]
    # Each: the call that failed, then the generated statement.
    queries = data_queries(captured)
    assert len(queries) == 4, queries
    assert [sql.startswith("WITH") for sql in queries] == [False, True, False, True]
    warnings = [r for r in caplog.records if callbacks_module.FUNCTION in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_function_takes_the_rule_from_python(client, call, monkeypatch):
    """The statuses a report moves a call from are an argument: the function holds no rule."""
    monkeypatch.setattr(callbacks_module, "_behind", lambda status: "{}")
    answer = deliver(client, call, callback("BUSY"))
    assert answer.json()["outcome"] == "stale"
    assert row(call)["status"] == Status.PLACED


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("form", ["0008", "0009"])
@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (1, ["applied", "dropped", "dropped"]),
        (3, ["applied", "duplicate", "stale", "dropped", "dropped"]),
    ],
)
def test_the_cap_check_drops_where_the_count_did(client, call, form, cap, expected):
    """0009 asks whether a cap-th event exists where 0008 counted: the same answers."""
    migration = migration_0008() if form == "0008" else migration_0009()
    with connection.cursor() as cursor:
        cursor.execute(migration.CREATE)  # rolled back with the test's transaction
    states = ["BUSY", "BUSY", "ANSWERED", "BUSY", "NO ANSWER"][: len(expected)]
    with override_settings(VOICEPASSWORD={"CALLBACK_MAX_EVENTS": cap}):
        outcomes = [deliver(client, call, callback(state)).json()["outcome"] for state in states]
    assert outcomes == expected
    assert CallbackEvent.objects.filter(url_call=call).count() == cap
    assert row(call)["callbacks_dropped"] == expected.count("dropped")


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_cap_check_is_one_probe_of_the_url_call_index():
    """The function's cap check, as PostgreSQL plans it: an index scan that stops early."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT EXISTS (SELECT FROM voicepassword_callbackevent"
            " WHERE url_call_id = %s ORDER BY url_call_id OFFSET %s - 1)",
            [1, 20],
        )
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "Index Only Scan using voicepassword_callbackevent_url_call_id" in plan, plan
    assert "Aggregate" not in plan, plan
    assert "Bitmap" not in plan, plan


def function_source() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc AS p WHERE p.proname = %s",
            [callbacks_module.FUNCTION],
        )
        (source,) = cursor.fetchone()
    return str(source)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("previous", "before", "after"),
    [
        # 0009: the cap's count became a probe for the cap-th event.
        ("0008_callback_writes", "count(*)", "OFFSET p_cap - 1"),
        # 0010: the locked call's update is decided, not tried.
        (
            "0009_callback_cap_check",
            "IF FOUND THEN\n                outcome := 'applied'",
            "ELSIF old_status = ANY (p_behind) THEN",
        ),
    ],
)
def test_a_function_migration_reverses_to_the_function_before(previous, before, after):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("voicepassword")
    try:
        executor.migrate([("voicepassword", previous)])
        assert before in function_source()
        assert after not in function_source()
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    assert after in function_source()
    assert before not in function_source()


def scans_of_calls() -> int:
    """The scans of the call table this transaction made so far (PostgreSQL's own count)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
            " WHERE relid = %s::regclass",
            [Call._meta.db_table],
        )
        (scans,) = cursor.fetchone()
    return int(scans)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("listened", [False, True])
@pytest.mark.parametrize(
    ("status", "state", "outcome", "fewer"),
    [
        (Status.PLACED, "BUSY", Outcome.APPLIED, 0),
        (Status.BUSY, "BUSY", Outcome.DUPLICATE, 1),
        (Status.BUSY, "Дозвон", Outcome.STALE, 1),
    ],
)
def test_a_callback_that_moves_nothing_updates_nothing(
    client, call, listened, status, state, outcome, fewer
):
    """0010: the locked call is updated only when its status is behind, not tried regardless.

    A repeat or a stale state read the call three times under 0009 (the
    request id's UPDATE, the locking SELECT, the UPDATE by key that changed
    nothing), twice now; a callback that moves the call reads it as often as before.
    """
    Call.objects.filter(pk=call.pk).update(status=status)
    scans = {}
    for form, migration in (("0009", migration_0009()), ("0010", migration_0010())):
        with connection.cursor() as cursor:
            cursor.execute(migration.CREATE)  # rolled back with the test's transaction
        Call.objects.filter(pk=call.pk).update(status=status)
        before = scans_of_calls()
        if listened:
            call_status_changed.connect(ignore_change)
        try:
            answer = deliver(client, call, callback(state))
        finally:
            call_status_changed.disconnect(ignore_change)
        assert answer.json()["outcome"] == outcome, form
        scans[form] = scans_of_calls() - before
        CallbackEvent.objects.all().delete()
    assert scans["0010"] == scans["0009"] - fewer, scans
    assert row(call)["status"] == (Status.BUSY if outcome != Outcome.STALE else status)


def ignore_change(sender: Any, **kwargs: Any) -> None:
    """A receiver of call_status_changed: the function's listened path, which locks first."""


def test_a_label_no_one_knows_takes_at_most_four_queries(client, call):
    """On PostgreSQL too: the rare case takes the ORM's way, in a transaction."""
    with CaptureQueriesContext(connection) as captured:
        answer = deliver(client, call, callback("Ожидает оператора"))
    assert answer.json()["outcome"] == "stale"
    assert len(data_queries(captured)) <= 4


def test_listeners_get_the_call_as_updated_for_no_query_more(client, call):
    """Listened to or not, a callback takes the same queries, and the receiver the row."""
    received: list[tuple[Call, str, str]] = []

    def on_changed(sender, call, old_status, new_status, source, **kwargs):
        received.append((call, old_status, new_status))

    path = path_of(call)
    with CaptureQueriesContext(connection) as without:
        deliver(client, path, callback("Дозвон"))
    call_status_changed.connect(on_changed)
    try:
        with CaptureQueriesContext(connection) as listened:
            deliver(client, path, callback("BUSY", duration="5"))
    finally:
        call_status_changed.disconnect(on_changed)
    assert len(data_queries(listened)) == len(data_queries(without))
    [(sent, old_status, new_status)] = received
    assert (old_status, new_status) == (Status.DIALLING, Status.BUSY)
    # The whole row, as updated: reading it costs nothing more.
    with CaptureQueriesContext(connection) as reading:
        assert sent.pk == call.pk
        assert sent.status == Status.BUSY
        assert sent.state_label == "BUSY"
        assert sent.duration == timedelta(seconds=5)
        assert sent.number == NUMBER
        assert sent.channel == Call.Channel.FLASH_CALL
        assert sent.price == Decimal("0.35")
        assert sent.provider_date == MOSCOW
        assert sent.updated_at > sent.created_at
    assert reading.captured_queries == []
    # What the receiver got is what was stored, field for field.
    got = {field.attname: getattr(sent, field.attname) for field in Call._meta.concrete_fields}
    assert got == row(call)


@pytest.mark.django_db(transaction=True)
def test_a_receiver_may_apply_a_callback_of_the_same_call(call, sms):
    """The deliveries of one call take turns while someone listens; a receiver is not held up."""
    heard: list[str] = []

    def on_changed(sender, call, old_status, new_status, **kwargs):
        heard.append(new_status)
        if new_status == Status.QUEUED:
            record = parse_callback(callback("SEND", id=SMS_ID))
            apply_callback(call.parent_id, record, callback("SEND", id=SMS_ID), None)

    call_status_changed.connect(on_changed)
    try:
        record = parse_callback(callback("QUEUED", id=SMS_ID))
        event = apply_callback(call.pk, record, callback("QUEUED", id=SMS_ID), None)
    finally:
        call_status_changed.disconnect(on_changed)
    assert event.outcome == Outcome.APPLIED
    assert heard == [Status.QUEUED, Status.SENT]
    assert not _turns  # nobody holds or waits for a turn: none is kept


@pytest.mark.parametrize(
    "transactional",
    [
        pytest.param(False, marks=pytest.mark.django_db),
        pytest.param(True, marks=pytest.mark.django_db(transaction=True)),
    ],
)
def test_when_the_constraint_fires_the_delivery_is_a_duplicate_and_writes_no_change(
    client, call, changes, transactional
):
    """The unique constraint is the last word, even if the lock did not serialise.

    An "applied" event for the request id and state, while the call is still
    behind it, is what a concurrent delivery committed between our read and
    our insert would leave: the update is rolled back with the insert.
    """
    CallbackEvent.objects.create(
        call=call, provider_id=CALL_ID, state="BUSY", payload={}, outcome=Outcome.APPLIED
    )
    before = row(call)
    answer = deliver(client, call, callback("BUSY"))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "duplicate"
    assert row(call) == before
    assert changes == []
    event = CallbackEvent.objects.order_by("pk").last()
    assert event is not None
    assert (event.call, event.state, event.outcome) == (call, "BUSY", Outcome.DUPLICATE)
    assert event.payload == callback("BUSY")


def test_what_the_provider_sends_never_becomes_sql(client, call):
    body = callback(
        " busy ",
        note="it's 100% %(label)s %s $1; DROP TABLE voicepassword_call; --",
        **{"%(now)s": "'"},
    )
    answer = deliver(client, call, body)
    assert answer.json()["outcome"] == "applied"
    call.refresh_from_db()
    assert (call.status, call.state_label) == (Status.BUSY, " busy ")
    assert CallbackEvent.objects.get().payload == body


# Every status a call can be in, against every kind of report: the callback
# does exactly what record_changes says (the SQL statement on PostgreSQL, the
# ORM elsewhere), no more.
REPORTS = [
    "Дозвон",
    "QUEUED",
    "SEND",
    "ANSWERED",
    "BUSY",
    "NO ANSWER",
    "FAIL",
    "CANCEL",
    "DELIVERED",
    "NOT DELIVERED",
    "Ожидает оператора",
]


@pytest.mark.parametrize("state", REPORTS)
@pytest.mark.parametrize("status", list(Status))
def test_a_callback_changes_what_record_changes_says(client, call, changes, status, state):
    Call.objects.filter(pk=call.pk).update(
        status=status, error_code="why", state_label="before", duration=timedelta(seconds=9)
    )
    call.refresh_from_db()
    before = row(call)
    body = callback(state, duration="4", price="0.5")
    expected = record_changes(call, parse_callback(body), authoritative=False)

    answer = deliver(client, call, body)

    after = row(call)
    changed = {field for field in after if after[field] != before[field]}
    assert changed - {"updated_at"} == set(expected)
    assert ("updated_at" in changed) == bool(expected)
    for field, value in expected.items():
        assert after[field] == value, field
    reported = status_for_state(parse_callback(body).state)
    if "status" in expected:
        outcome = Outcome.APPLIED
        assert changes == [(call.pk, status, expected["status"], "callback")]
    else:
        outcome = Outcome.DUPLICATE if reported == status else Outcome.STALE
        assert changes == []
    assert answer.json()["outcome"] == outcome
    assert CallbackEvent.objects.get().outcome == outcome


def test_a_refused_request_takes_no_query(client, call):
    path = path_of(call)
    with CaptureQueriesContext(connection) as captured:
        assert deliver(client, path + "x/", callback("BUSY")).status_code == 404
        assert deliver(client, path, b"[").status_code == 400
        assert deliver(client, path, {"id": CALL_ID}).status_code == 400
    assert captured.captured_queries == []


# --------------------------------------------------------------------------- the allowlist

ALLOWED = ["203.0.113.0/24", "198.51.100.7", "2001:db8:5::/48"]


@pytest.mark.parametrize(
    ("remote", "allowed", "stored"),
    [
        ("203.0.113.9", True, "203.0.113.9"),
        ("198.51.100.7", True, "198.51.100.7"),
        ("2001:db8:5::1", True, "2001:db8:5::1"),
        ("2001:0db8:0005:0000:0000:0000:0000:0002", True, "2001:db8:5::2"),
        # A dual-stack server reports IPv4 peers as IPv4-mapped IPv6 addresses.
        ("::ffff:203.0.113.9", True, "203.0.113.9"),
        ("198.51.100.8", False, None),
        ("203.0.114.1", False, None),
        ("2001:db8:6::1", False, None),
        ("::ffff:198.51.100.8", False, None),
        ("127.0.0.1", False, None),
        ("", False, None),
        ("not-an-address", False, None),
    ],
)
def test_the_allowlist_matches_addresses_and_networks(client, call, remote, allowed, stored):
    before = snapshot()
    with override_settings(VOICEPASSWORD={"CALLBACK_ALLOWED_IPS": ALLOWED}):
        answer = deliver(client, call, callback("BUSY"), REMOTE_ADDR=remote)
    if allowed:
        assert answer.status_code == 200
        assert CallbackEvent.objects.get().remote_addr == stored
    else:
        assert answer.status_code == 403
        assert snapshot() == before


@pytest.mark.parametrize(
    ("forwarded", "allowed", "stored"),
    [
        # The last address is the one our proxy added; what comes before is the sender's.
        ("203.0.113.9", True, "203.0.113.9"),
        ("192.0.2.66, 203.0.113.9", True, "203.0.113.9"),
        ("203.0.113.9 ,  2001:db8:5::9", True, "2001:db8:5::9"),
        ("203.0.113.9, 192.0.2.66", False, None),  # a spoofed first address
        ("198.51.100.7,192.0.2.66", False, None),
        ("203.0.113.9, ", False, None),  # an empty last entry is no address
        ("203.0.113.9, unknown", False, None),
        ("203.0.113.9:443", False, None),
        (None, False, None),  # the header is missing: the connection's address is not used
    ],
)
def test_behind_a_proxy_the_last_forwarded_address_counts(
    client, call, forwarded, allowed, stored
):
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    settings = {"CALLBACK_ALLOWED_IPS": ALLOWED, "PROXY_HEADER": "X-Forwarded-For"}
    before = snapshot()
    with override_settings(VOICEPASSWORD=settings):
        # The connection comes from an allowed address: the proxy is not the sender.
        answer = deliver(client, call, callback("BUSY"), REMOTE_ADDR="203.0.113.1", **headers)
    if allowed:
        assert answer.status_code == 200
        assert CallbackEvent.objects.get().remote_addr == stored
    else:
        assert answer.status_code == 403
        assert snapshot() == before


def test_the_proxy_header_is_used_even_when_the_connection_is_not_allowed(client, call):
    settings = {"CALLBACK_ALLOWED_IPS": ALLOWED, "PROXY_HEADER": "X-Real-IP"}
    with override_settings(VOICEPASSWORD=settings):
        answer = deliver(
            client, call, callback("BUSY"), REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="203.0.113.4"
        )
    assert answer.status_code == 200
    assert CallbackEvent.objects.get().remote_addr == "203.0.113.4"


def test_without_an_allowlist_the_address_is_only_recorded(client, call):
    with override_settings(VOICEPASSWORD={"PROXY_HEADER": "X-Forwarded-For"}):
        deliver(client, call, callback("QUEUED", id="5"), HTTP_X_FORWARDED_FOR="1.2.3.4, 2.3.4.5")
        deliver(client, call, callback("BUSY"), HTTP_X_FORWARDED_FOR="garbage")
    addresses = CallbackEvent.objects.order_by("pk").values_list("remote_addr", flat=True)
    assert list(addresses) == ["2.3.4.5", None]


def test_the_allowlist_is_checked_before_the_body(client, call):
    before = snapshot()
    with override_settings(VOICEPASSWORD={"CALLBACK_ALLOWED_IPS": ALLOWED}):
        assert deliver(client, call, b"{not json").status_code == 403
        answer = client.post(path_of(call), data="x", content_type="text/plain")
        assert answer.status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize(
    "accept", ["text/html", "application/xml", "text/html, image/gif, *; q=.2", "garbage", ""]
)
def test_the_accept_header_does_not_matter(client, call, accept):
    """The provider reads only the status: a callback is never refused with 406."""
    answer = deliver(client, call, callback("BUSY"), HTTP_ACCEPT=accept)
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/json"
    refused = deliver(
        client, "/voicepassword/callback/forged/", callback("BUSY"), HTTP_ACCEPT=accept
    )
    assert refused.status_code == 404


# --------------------------------------------------------------------------- a locked database


@pytest.mark.parametrize(
    "transactional",
    [
        pytest.param(False, marks=pytest.mark.django_db),
        pytest.param(True, marks=pytest.mark.django_db(transaction=True)),
    ],
)
def test_a_locked_database_is_503_with_retry_after_and_writes_nothing(
    client, call, changes, caplog, transactional
):
    """SQLite's "database is locked" past its timeout: retryable, logged, nothing half-stored.

    The error is raised at the event's insert, after the ORM path has updated
    the call (PostgreSQL's one statement never runs): the update must be
    rolled back with it.
    """
    from django.db import OperationalError

    event_table = CallbackEvent._meta.db_table

    def locked(execute, sql, params, many, context):
        # PostgreSQL's one statement: the call of the function that inserts.
        if f'INTO "{event_table}"' in sql or callbacks_module.FUNCTION in sql:
            raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    before = snapshot()
    with connection.execute_wrapper(locked), caplog.at_level("WARNING"):
        answer = deliver(client, call, callback("ANSWERED"))

    assert answer.status_code == 503
    assert answer["Retry-After"] == "5"
    assert snapshot() == before
    assert changes == []
    [record] = [r for r in caplog.records if r.name == "django_voicepassword.api.views"]
    assert record.levelname == "WARNING"
    assert "database is locked" in record.getMessage()
    # The provider's retry, once the lock is gone, is applied as if first.
    assert deliver(client, call, callback("ANSWERED")).json()["outcome"] == "applied"
    assert row(call)["status"] == Status.ANSWERED
