"""The emulator's core, test numbers, page and in-process fixture (no sockets)."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.util import Timeout

from django_voicepassword.client import VoicePasswordClient
from django_voicepassword.emulator import pytest_plugin
from django_voicepassword.emulator.core import (
    DEFAULT_API_KEY,
    MOSCOW,
    Emulator,
    FaultPlan,
    ManualClock,
    Response,
)
from django_voicepassword.emulator.numbers import (
    DEFAULT_BEHAVIOUR,
    REGISTERED_ANIS,
    TEST_NUMBERS,
    FaultMode,
    behaviour_for,
    markdown_table,
)
from django_voicepassword.emulator.page import render_page
from django_voicepassword.emulator.wire import read_timeout_of
from django_voicepassword.exceptions import (
    ERROR_CLASSES,
    NumberNotValidError,
    OutcomeUnknownError,
    TransportError,
)

KEY = DEFAULT_API_KEY
ANSWERED = "79990000001"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "emulator.md"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def emulator(clock: ManualClock) -> Emulator:
    return Emulator(clock=clock, callback_delay=2.0, id_start=1, seed=7)


def ask(
    emulator: Emulator, endpoint: str, body: Any, *, key: str | None = KEY, method: str = "POST"
) -> Any:
    """POST ``body`` (a dict, or raw bytes) and decode the JSON answer."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": key} if key is not None else {}
    response = emulator.handle(method, f"/api/voice-password/{endpoint}/", headers, raw)
    return json.loads(response.body)


def send(emulator: Emulator, body: Any, *, key: str | None = KEY) -> Any:
    return ask(emulator, "send", body, key=key)


def get(emulator: Emulator, body: Any, *, key: str | None = KEY) -> Any:
    return ask(emulator, "get", body, key=key)


# --------------------------------------------------------------------------- send/ shapes

SHAPES = [
    {"number": ANSWERED, "capacity": "4"},
    {"number": ANSWERED, "capacity": 4},
    {"number": ANSWERED},
    {"number": int(ANSWERED), "capacity": 6},
    {"number": ANSWERED, "flashcall": {"code": "1234"}},
    {"number": ANSWERED, "flashcall": {"code": 1234}, "capacity": "4"},
    {"number": ANSWERED, "voice": {"code": "1234"}},
    {"number": ANSWERED, "voice": {}},
    {"number": ANSWERED, "voice": {"code": "1234", "repeat": "1"}},
    {"number": ANSWERED, "voice": {"code": 1234, "repeat": 0}},
    {"number": ANSWERED, "voice": {"code": "1234", "repeat": "1", "ani": "79990000090"}},
    {"number": ANSWERED, "voice": {"code": "1234", "repeat": 1, "api": 79990000091}},
    {"number": ANSWERED, "capacity": "4", "callback_url": "http://127.0.0.1:9/callback/"},
    {"number": ANSWERED, "voice": {"code": "1234"}, "callback_url": "https://site.test/cb/"},
    {"number": ANSWERED, "capacity": "4", "callback_url": ""},
]


@pytest.mark.parametrize("body", SHAPES)
def test_every_request_shape_places_a_call(emulator, body):
    answer = send(emulator, body)
    assert list(answer) == ["result", "id", "number", "price", "code"]
    assert answer["result"] == "ok"
    assert answer["number"] == ANSWERED
    assert answer["price"] == "0.35"
    call = emulator.get_call(answer["id"])
    assert call is not None
    assert call.code == answer["code"]
    assert answer["code"].isdigit()


def test_flash_call_with_service_code_comes_from_a_number_ending_in_the_code(emulator):
    for capacity in (4, "5", 6):
        answer = send(emulator, {"number": ANSWERED, "capacity": capacity})
        call = emulator.get_call(answer["id"])
        assert len(answer["code"]) == int(capacity)
        assert call.kind == "flash_call"
        assert len(call.caller) == 11
        assert call.caller.startswith("7999")
        assert call.caller.endswith(answer["code"])


def test_flash_call_with_client_code(emulator):
    answer = send(emulator, {"number": ANSWERED, "flashcall": {"code": "0123"}})
    assert answer["code"] == "0123"
    assert emulator.get_call(answer["id"]).caller == "79990000123"


def test_voice_call_codes_and_callers(emulator):
    service = send(emulator, {"number": ANSWERED, "voice": {}})
    call = emulator.get_call(service["id"])
    assert call.kind == "voice_call"
    assert call.caller.endswith(service["code"])
    client = send(emulator, {"number": ANSWERED, "voice": {"code": "4321"}})
    assert client["code"] == "4321"
    own = send(emulator, {"number": ANSWERED, "voice": {"code": "4321", "ani": "79990000090"}})
    call = emulator.get_call(own["id"])
    assert call.caller == call.ani == "79990000090"
    assert own["code"] == "4321"


@pytest.mark.parametrize("field", ["ani", "api"])
def test_a_voice_call_from_ani_without_a_code_speaks_the_anis_last_four_digits(emulator, field):
    """The document: without ``code``, the code is the last 4 digits of the calling number."""
    for ani in ("79990000090", "79990000091"):
        answer = send(emulator, {"number": ANSWERED, "voice": {field: ani}})
        call = emulator.get_call(answer["id"])
        assert call.caller == ani
        assert answer["code"] == call.code == ani[-4:]


@pytest.mark.parametrize("capacity", [1, "3", 7, "8", 10])
def test_a_capacity_outside_the_apps_range_is_the_providers_to_accept(emulator, capacity):
    """4 to 6 is the client's policy; the document names no range for the provider."""
    answer = send(emulator, {"number": ANSWERED, "capacity": capacity})
    call = emulator.get_call(answer["id"])
    assert len(answer["code"]) == int(capacity)
    assert len(call.caller) == 11
    assert call.caller.endswith(answer["code"])


def test_repeat_makes_the_voice_call_longer(emulator, clock):
    once = send(emulator, {"number": ANSWERED, "voice": {"code": "1234"}})
    twice = send(emulator, {"number": ANSWERED, "voice": {"code": "1234", "repeat": "1"}})
    clock.advance(2)
    assert emulator.get_call(once["id"]).duration == 5
    assert emulator.get_call(twice["id"]).repeat is True
    assert get(emulator, {"request": "state", "id": twice["id"]})["data"]["duration"] == "00:08"


def test_ids_are_sequential_strings_and_default_from_the_clock(clock):
    emulator = Emulator(clock=clock)
    first = send(emulator, {"number": ANSWERED})["id"]
    second = send(emulator, {"number": ANSWERED})["id"]
    assert first == str(1_700_000_000_000)
    assert int(second) == int(first) + 1


def test_the_balance_is_charged_per_request(emulator):
    call = send(emulator, {"number": ANSWERED})
    send(emulator, {"number": ANSWERED, "voice": {}})
    sms = send(emulator, {"sms": {"id": call["id"]}})
    assert sms["price"] == "3.30"
    assert emulator.balance == Decimal("999.00") - Decimal("0.35") * 2 - Decimal("3.30")
    assert get(emulator, {"request": "balance"}) == {
        "result": "ok",
        "balance": "995.00",
        "currency": "Rub",
    }


def test_sms_fallback(emulator):
    call = send(emulator, {"number": "79990000003", "voice": {"code": "5678"}})
    answer = send(emulator, {"sms": {"id": int(call["id"])}})
    assert list(answer) == ["result", "id", "number", "price", "message"]
    assert answer["number"] == "79990000003"
    assert answer["message"] == "Ваш код: 5678"
    sms = emulator.get_call(answer["id"])
    assert (sms.kind, sms.parent_id, sms.caller) == ("sms", call["id"], None)


# --------------------------------------------------------------------------- auth


def test_the_key_may_come_in_the_header_or_the_body(emulator):
    assert send(emulator, {"number": ANSWERED})["result"] == "ok"
    body = {"number": ANSWERED, "security": {"apiKey": KEY}}
    assert send(emulator, body, key=None)["result"] == "ok"
    assert send(emulator, body, key="  ")["result"] == "ok"  # a blank header is no header
    headers = {"authorization": KEY}  # any case
    response = emulator.handle("POST", "/send/", headers, b'{"number": "79990000001"}')
    assert json.loads(response.body)["result"] == "ok"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"number": ANSWERED}, None),
        ({"number": ANSWERED}, "wrong"),
        ({"number": ANSWERED, "security": {"apiKey": "wrong"}}, None),
        ({"number": ANSWERED, "security": {"apiKey": 5}}, None),
        ({"number": ANSWERED, "security": "emulator-key"}, None),
        # The header wins: a right key in the body does not save a wrong header.
        ({"number": ANSWERED, "security": {"apiKey": KEY}}, "wrong"),
    ],
)
def test_a_wrong_or_missing_key_is_refused(emulator, body, key):
    answer = send(emulator, body, key=key)
    assert answer == {"result": "error", "error_code": "authorisation_failed"}
    assert get(emulator, {**body, "request": "balance"}, key=key)["error_code"] == (
        "authorisation_failed"
    )
    assert emulator.calls == []


def test_a_blocked_account(emulator):
    emulator.user_disabled = True
    assert send(emulator, {"number": ANSWERED})["error_code"] == "user_disabled"
    assert get(emulator, {"request": "balance"})["error_code"] == "user_disabled"


# --------------------------------------------------------------------------- send/ errors

SEND_ERRORS = [
    (b"not json", "unknown_request"),
    (b"\xff\xfe", "unknown_request"),
    (b'["a", "list"]', "unknown_request"),
    ({}, "number_is_empty"),
    ({"number": ""}, "number_is_empty"),
    ({"number": "+79990000001"}, "number_is_empty"),
    ({"number": "7999000000"}, "number_is_empty"),
    ({"number": "7999000000100000"}, "number_is_empty"),
    ({"number": True}, "number_is_empty"),
    ({"number": -79990000001}, "number_is_empty"),
    ({"number": "7999OOOOOO1"}, "number_is_empty"),
    # Not a code length at all; 3 and 7 are the app's policy, not the provider's.
    ({"number": ANSWERED, "capacity": "0"}, "code_not_valid"),
    ({"number": ANSWERED, "capacity": 11}, "code_not_valid"),
    ({"number": ANSWERED, "capacity": "-4"}, "code_not_valid"),
    ({"number": ANSWERED, "capacity": "0004" * 20}, "code_not_valid"),
    ({"number": ANSWERED, "capacity": "four"}, "code_not_valid"),
    ({"number": ANSWERED, "capacity": 4.0}, "code_not_valid"),
    ({"number": ANSWERED, "capacity": True}, "code_not_valid"),
    ({"number": ANSWERED, "flashcall": {}}, "code_not_valid"),
    ({"number": ANSWERED, "flashcall": {"code": "123"}}, "code_not_valid"),
    ({"number": ANSWERED, "flashcall": {"code": 123}}, "code_not_valid"),
    ({"number": ANSWERED, "flashcall": {"code": "12345"}}, "code_not_valid"),
    ({"number": ANSWERED, "flashcall": {"code": "12a4"}}, "code_not_valid"),
    ({"number": ANSWERED, "flashcall": {"code": "1234"}, "capacity": 5}, "code_not_valid"),
    ({"number": ANSWERED, "voice": {"code": "12"}}, "code_not_valid"),
    ({"number": ANSWERED, "voice": {"code": "1234"}, "capacity": "6"}, "code_not_valid"),
    ({"number": ANSWERED, "voice": {"code": "1234", "repeat": "2"}}, "unknown_request"),
    ({"number": ANSWERED, "voice": {"code": "1234", "repeat": True}}, "unknown_request"),
    ({"number": ANSWERED, "voice": {"ani": "79990000099"}}, "ani_phone_not_valid"),
    ({"number": ANSWERED, "voice": {"api": "not a number"}}, "ani_phone_not_valid"),
    ({"number": ANSWERED, "voice": "1234"}, "unknown_request"),
    ({"number": ANSWERED, "flashcall": ["1234"]}, "unknown_request"),
    ({"number": ANSWERED, "voice": {}, "flashcall": {"code": "1234"}}, "unknown_request"),
    ({"number": ANSWERED, "callback_url": "ftp://site.test/cb/"}, "unknown_request"),
    ({"number": ANSWERED, "callback_url": "/cb/"}, "unknown_request"),
    ({"number": ANSWERED, "callback_url": 5}, "unknown_request"),
    ({"sms": {}}, "unknown_request"),
    ({"sms": {"id": "999999"}}, "unknown_request"),
    ({"sms": {"id": "x"}}, "unknown_request"),
    ({"sms": "1"}, "unknown_request"),
    ({"number": "79990000020"}, "number_not_valid"),
    ({"number": "79990000021", "voice": {}}, "number_not_permitted"),
    ({"number": "79990000022", "flashcall": {"code": "1234"}}, "number_in_spam_list"),
    ({"number": "79990000023"}, "not_enough_money"),
    ({"number": "79990000024"}, "user_disabled"),
]


@pytest.mark.parametrize(("body", "code"), SEND_ERRORS)
def test_send_errors(emulator, body, code):
    assert send(emulator, body) == {"result": "error", "error_code": code}
    assert emulator.calls == []
    assert emulator.balance == Decimal("999.00")
    [entry] = emulator.log
    assert (entry.endpoint, entry.result, entry.status) == ("send", code, 200)


def test_sms_for_an_sms_is_refused(emulator):
    call = send(emulator, {"number": ANSWERED})
    sms = send(emulator, {"sms": {"id": call["id"]}})
    assert send(emulator, {"sms": {"id": sms["id"]}})["error_code"] == "unknown_request"


def test_not_enough_money(emulator):
    emulator.balance = "0.34"
    assert send(emulator, {"number": ANSWERED})["error_code"] == "not_enough_money"
    emulator.balance = 1
    call = send(emulator, {"number": ANSWERED})
    assert send(emulator, {"sms": {"id": call["id"]}})["error_code"] == "not_enough_money"
    assert emulator.balance == Decimal("0.65")


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", "sNaN"])
def test_the_balance_must_be_money(emulator, value):
    with pytest.raises(ValueError, match="not an amount"):
        emulator.balance = value


def test_other_methods_and_paths(emulator):
    response = emulator.handle("GET", "/api/voice-password/send/", {"Authorization": KEY}, b"")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert json.loads(response.body)["error_code"] == "unknown_request"
    assert emulator.log[0].status == 405
    assert emulator.handle("POST", "/api/voice-password/other/", {}, b"{}").status == 404
    assert len(emulator.log) == 1  # a path that is no endpoint is not a request to the API
    # Any prefix, with or without the trailing slash, with a query string.
    for path in ("/send", "/prefix/send?x=1", "get/"):
        assert emulator.handle("POST", path, {"Authorization": KEY}, b"{}").status == 200


# --------------------------------------------------------------------------- get/


def test_state_goes_from_dialling_to_final(emulator, clock):
    call = send(emulator, {"number": "79990000002", "voice": {"code": "1234"}})
    data = get(emulator, {"request": "state", "id": call["id"]})["data"]
    assert data["state"] == "Дозвон"
    assert data["duration"] == "00:00"
    clock.advance(2)
    data = get(emulator, {"request": "state", "id": int(call["id"])})["data"]
    assert data == {
        "id": call["id"],
        "number": "79990000002",
        "date": datetime.fromtimestamp(1_700_000_000, MOSCOW).strftime("%d.%m.%Y %H:%M:%S"),
        "duration": "00:00",
        "price": "0.35",
        "service": "Voice Password",
        "state": "Занято",
    }


def test_state_of_an_unknown_id(emulator):
    for body in ({"request": "state", "id": "12345"}, {"request": "state"}):
        assert get(emulator, body) == {"result": "error", "error_code": "ID_Not_Found"}


def test_daily(emulator, clock):
    first = send(emulator, {"number": ANSWERED})
    send(emulator, {"number": "79990000003", "voice": {}})
    send(emulator, {"sms": {"id": first["id"]}})
    clock.advance(5)
    today = datetime.fromtimestamp(clock(), MOSCOW).strftime("%d.%m.%Y")
    answer = get(emulator, {"request": "daily", "date": today})
    assert answer["rows"] == "3"
    assert [row["service"] for row in answer["data"]] == ["Flash Call", "Voice Password", "SMS"]
    assert [row["state"] for row in answer["data"]] == ["Успешно", "Нет ответа", "Доставлено"]
    assert get(emulator, {"request": "daily", "date": "01.01.2020"}) == {
        "result": "ok",
        "rows": "0",
        "data": [],
    }


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"request": "daily"}, "Date_is_Empty"),
        ({"request": "daily", "date": ""}, "Date_is_Empty"),
        ({"request": "daily", "date": "2020-01-01"}, "unknown_request"),
        ({"request": "daily", "date": "31.02.2020"}, "unknown_request"),
        ({"request": "daily", "date": 1012020}, "unknown_request"),
        ({"request": "weekly"}, "unknown_request"),
        ({}, "unknown_request"),
        (b"nope", "unknown_request"),
    ],
)
def test_get_errors(emulator, body, code):
    assert get(emulator, body) == {"result": "error", "error_code": code}


# --------------------------------------------------------------------------- final states

CALL_STATES = [
    ("79990000001", "ANSWERED", "Успешно", "1"),
    ("79990000002", "BUSY", "Занято", "0"),
    ("79990000003", "NO ANSWER", "Нет ответа", "0"),
    ("79990000004", "FAIL", "Ошибка", "0"),
    ("79990000005", "CANCEL", "Отменен", "0"),
    ("79990000006", "FAIL", "Недозвон", "0"),
    ("79990000011", "NO ANSWER", "Нет ответа", "0"),
    ("79990000012", "NO ANSWER", "Нет ответа", "0"),
    ("79990000077", "ANSWERED", "Успешно", "1"),
]


@pytest.mark.parametrize(("number", "state", "label", "duration"), CALL_STATES)
def test_every_final_call_state(emulator, clock, number, state, label, duration):
    url = "http://127.0.0.1:9/cb/?token=abc"
    call = send(emulator, {"number": number, "capacity": "4", "callback_url": url})
    assert emulator.due_callbacks() == []
    assert emulator.next_callback_due() == clock() + 2
    clock.advance(2)
    [callback] = emulator.due_callbacks()
    assert callback.url == url
    assert callback.payload == {
        "id": call["id"],
        "number": number,
        "duration": duration,
        "state": state,
        "price": "0.35",
        "date": datetime.fromtimestamp(1_700_000_000, MOSCOW).strftime("%Y-%m-%d %H:%M:%S"),
    }
    assert get(emulator, {"request": "state", "id": call["id"]})["data"]["state"] == label
    assert emulator.next_callback_due() is None


@pytest.mark.parametrize(
    ("number", "state", "label"),
    [
        ("79990000001", "DELIVERED", "Доставлено"),
        ("79990000011", "NOT DELIVERED", "Не доставлено"),  # noqa: RUF001
        ("79990000012", "FAIL", "Ошибка"),
    ],
)
def test_every_final_sms_state(emulator, clock, number, state, label):
    call = send(emulator, {"number": number, "callback_url": "http://127.0.0.1:9/call/"})
    clock.advance(2)
    emulator.due_callbacks()
    sms = send(emulator, {"sms": {"id": call["id"]}})
    labels = []
    for step in (0.7, 0.7, 0.6):
        labels.append(get(emulator, {"request": "state", "id": sms["id"]})["data"]["state"])
        clock.advance(step)
    labels.append(get(emulator, {"request": "state", "id": sms["id"]})["data"]["state"])
    assert labels == ["Передано шлюзу", "Передано шлюзу", "Отправлено", label]
    callbacks = emulator.due_callbacks()
    # Without a callback_url of its own, the SMS reports to the call's.
    assert {cb.url for cb in callbacks} == {"http://127.0.0.1:9/call/"}
    assert [cb.payload["state"] for cb in callbacks] == ["QUEUED", "SEND", state]
    assert {cb.payload["id"] for cb in callbacks} == {sms["id"]}
    assert {cb.payload["price"] for cb in callbacks} == {"3.30"}


def test_sms_callbacks_own_url_and_final_only(emulator, clock):
    emulator.sms_intermediate_callbacks = False
    call = send(emulator, {"number": ANSWERED})
    send(emulator, {"sms": {"id": call["id"]}})
    clock.advance(2)
    assert emulator.due_callbacks() == []  # no callback_url anywhere
    send(emulator, {"sms": {"id": call["id"]}, "callback_url": "http://127.0.0.1:9/sms/"})
    clock.advance(2)
    [callback] = emulator.due_callbacks()
    assert (callback.url, callback.payload["state"]) == ("http://127.0.0.1:9/sms/", "DELIVERED")


def test_callbacks_duplicated_shuffled_and_recorded(emulator, clock):
    emulator.callback_duplicates = True
    emulator.callback_shuffle = True
    emulator.callback_delay = 0
    for _ in range(5):
        send(emulator, {"number": ANSWERED, "callback_url": "http://127.0.0.1:9/"})
    assert len(emulator.pending_callbacks) == 10
    due = emulator.due_callbacks()
    ids = [callback.call_id for callback in due]
    assert sorted(ids) == sorted(str(i) for i in range(1, 6) for _ in range(2))
    assert ids != sorted(ids)  # shuffled (seeded)
    delivery = emulator.record_delivery(due[0], 200)
    emulator.record_delivery(due[1], None, "URLError: refused")
    assert emulator.deliveries[0] == delivery
    assert emulator.deliveries[1].error == "URLError: refused"
    assert delivery.to_json()["status"] == 200


def test_a_negative_delay_counts_as_none(emulator):
    emulator.callback_delay = -5
    send(emulator, {"number": ANSWERED, "callback_url": "http://127.0.0.1:9/"})
    assert len(emulator.due_callbacks()) == 1


# --------------------------------------------------------------------------- log


def test_the_log_keeps_every_request_and_never_the_key(emulator):
    secret = "s3cret-Key"
    emulator.api_key = secret
    send(emulator, {"number": ANSWERED, "security": {"apiKey": secret}}, key=None)
    send(emulator, {"number": ANSWERED}, key=secret)
    send(emulator, {"number": ANSWERED, "security": {"apiKey": "wrong-key"}}, key=None)
    get(emulator, {"request": "balance", "security": {"apiKey": secret}}, key=None)
    entries = emulator.log
    assert [e.result for e in entries] == ["ok", "ok", "authorisation_failed", "ok"]
    assert [e.kind for e in entries] == ["flash_call", "flash_call", "flash_call", "balance"]
    assert entries[0].payload == {"number": ANSWERED}
    text = repr(entries) + json.dumps(emulator.snapshot())
    assert secret not in text
    assert "wrong-key" not in text
    assert len(emulator.sends()) == 3
    assert len(emulator.sends(ANSWERED)) == 3
    assert emulator.sends("79990000002") == []


def test_a_log_entry_tells_what_the_phone_got(emulator):
    url = "http://127.0.0.1:9/cb/"
    answer = send(
        emulator, {"number": ANSWERED, "flashcall": {"code": "4321"}, "callback_url": url}
    )
    [entry] = emulator.log
    assert entry.code == "4321"
    assert entry.caller == "79990004321"
    assert entry.state == "DIALLING"
    assert entry.call_id == answer["id"]
    assert entry.callback_url == url
    assert entry.time.tzinfo is not None
    assert entry.to_json()["time"].endswith("+03:00")


def test_each_call_is_logged_as_a_person_would_read_it(emulator, caplog):
    caplog.set_level("INFO", logger="django_voicepassword.emulator")
    send(emulator, {"number": ANSWERED, "flashcall": {"code": "4321"}})
    call = send(emulator, {"number": ANSWERED, "voice": {"code": "8765"}})
    send(emulator, {"sms": {"id": call["id"]}})
    emulator.faults = FaultPlan(FaultMode.HTML)
    emulator.handle("POST", "/send/", {"Authorization": KEY}, b'{"number": "79990000001"}')
    lines = [record.getMessage() for record in caplog.records]
    assert "send flash_call 79990000001 -> ok" in lines
    assert "79990000001 rings from 79990004321 (code 4321)" in lines
    assert "79990000001 hears the robot say 8765" in lines
    assert "79990000001 gets an SMS: Ваш код: 8765" in lines
    assert lines[-2] == "send flash_call 79990000001 -> ok [html]"


def test_last_call_and_calls(emulator):
    assert emulator.last_call() is None
    send(emulator, {"number": ANSWERED})
    send(emulator, {"number": "79990000002"})
    assert emulator.last_call().number == "79990000002"
    assert emulator.last_call(ANSWERED).number == ANSWERED
    assert emulator.last_call("79990000003") is None
    assert [call.id for call in emulator.calls] == ["1", "2"]


def test_reset_forgets_everything_but_the_ids(emulator):
    emulator.faults = FaultPlan(FaultMode.SLOW)
    emulator.user_disabled = True
    emulator.faults = None
    emulator.user_disabled = False
    send(emulator, {"number": ANSWERED, "callback_url": "http://127.0.0.1:9/"})
    emulator.faults = FaultPlan(FaultMode.SLOW)
    emulator.user_disabled = True
    emulator.reset()
    assert (emulator.log, emulator.calls, emulator.pending_callbacks) == ([], [], [])
    assert emulator.deliveries == []
    assert (emulator.faults, emulator.user_disabled) == (None, False)
    assert emulator.balance == Decimal("999.00")
    assert send(emulator, {"number": ANSWERED})["id"] == "2"
    emulator.reset(balance="5")
    assert emulator.balance == Decimal("5.00")


def test_snapshot_is_json(emulator):
    call = send(emulator, {"number": ANSWERED, "callback_url": "http://127.0.0.1:9/"})
    emulator.faults = FaultPlan(FaultMode.HTML, share=0.5, endpoints=["get"])
    emulator.record_delivery(emulator.due_callbacks(now=10**10)[0], 204)
    snapshot = json.loads(json.dumps(emulator.snapshot()))
    assert snapshot["balance"] == "998.65"
    assert snapshot["faults"] == {
        "mode": "html",
        "share": 0.5,
        "endpoints": ["get"],
        "seconds": None,
    }
    assert snapshot["calls"][0]["id"] == call["id"]
    assert snapshot["deliveries"][0]["status"] == 204
    assert snapshot["pending_callbacks"] == 0


def test_the_log_is_bounded(clock):
    emulator = Emulator(clock=clock, max_log=3)
    for _ in range(5):
        send(emulator, {"number": ANSWERED})
    assert [entry.seq for entry in emulator.log] == [3, 4, 5]


def test_concurrent_requests(clock):
    emulator = Emulator(clock=clock, id_start=1)

    def place() -> None:
        for _ in range(50):
            send(emulator, {"number": ANSWERED})

    threads = [threading.Thread(target=place) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({call.id for call in emulator.calls}) == 400
    assert emulator.balance == Decimal("999.00") - 400 * Decimal("0.35")


def test_manual_clock():
    clock = ManualClock(5.0)
    clock.advance(1.5)
    assert clock() == 6.5
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)
    assert abs(ManualClock()() - datetime.now().timestamp()) < 60


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
fields = st.sampled_from(
    ["number", "capacity", "voice", "flashcall", "sms", "callback_url", "request", "id", "date"]
)


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(fields, json_values | st.just(ANSWERED), max_size=5))
def test_any_json_gets_a_documented_answer(body):
    emulator = Emulator(id_start=1, seed=1)
    for endpoint in ("send", "get"):
        answer = ask(emulator, endpoint, body)
        assert answer["result"] in ("ok", "error")
        if answer["result"] == "error":
            assert answer["error_code"] in ERROR_CLASSES


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=40))
def test_any_bytes_get_an_answer(body):
    response = Emulator().handle("POST", "/send/", {}, body)
    assert response.status == 200
    assert json.loads(response.body)["result"] == "error"


# --------------------------------------------------------------------------- faults


def test_fault_numbers(emulator):
    cases = {
        "79990000030": (200, True),
        "79990000031": (500, False),
        "79990000032": (200, True),
        "79990000033": (200, True),
        "79990000034": (None, True),
        "79990000037": (502, True),
    }
    emulator.slow_seconds = 3.5
    for number, (status, placed) in cases.items():
        response = emulator.handle(
            "POST", "/send/", {"Authorization": KEY}, json.dumps({"number": number}).encode()
        )
        [entry] = emulator.sends(number)
        assert entry.status == status
        assert entry.fault == TEST_NUMBERS[number].fault
        assert (emulator.last_call(number) is not None) is placed
        if number == "79990000030":
            assert response.delay == 3.5
            assert json.loads(response.body)["result"] == "ok"
        elif number == "79990000031":
            assert response.status == 500
            assert b"500 Internal Server Error" in response.body
            assert entry.result is None
            assert entry.kind == "flash_call"
        elif number == "79990000032":
            assert response.headers["Content-Type"].startswith("text/html")
            assert "Технические работы" in response.body.decode()
        elif number == "79990000033":
            with pytest.raises(json.JSONDecodeError):
                json.loads(response.body)
            assert response.body.startswith(b'{"result":"ok"')
        elif number == "79990000037":
            # A proxy's page after the provider placed the call: no refusal body.
            assert response.status == 502
            assert b"502 Bad Gateway" in response.body
            assert response.headers["Content-Type"].startswith("text/html")
            assert entry.result == "ok"
        else:
            assert response.drop
    assert emulator.balance == Decimal("999.00") - 5 * Decimal("0.35")
    # An SMS names no number: the call's fault number does not fault it.
    call = emulator.last_call("79990000032")
    assert send(emulator, {"sms": {"id": call.id}})["result"] == "ok"


def test_fault_numbers_only_fault_send(emulator):
    response = emulator.handle(
        "POST", "/get/", {"Authorization": KEY}, b'{"request": "balance", "number": "79990000031"}'
    )
    assert response.status == 200


def test_fault_plans(emulator):
    emulator.faults = FaultPlan(FaultMode.SLOW, endpoints=("get",), seconds=0.25)
    assert send(emulator, {"number": ANSWERED})["result"] == "ok"
    response = emulator.handle("POST", "/get/", {"Authorization": KEY}, b"{}")
    assert response.delay == 0.25
    emulator.faults = FaultPlan("http500")  # type: ignore[arg-type]
    assert emulator.handle("POST", "/get/", {}, b"{}").status == 500
    assert emulator.handle("POST", "/send/", {}, b"nope").status == 500
    assert emulator.log[-1].kind is None
    emulator.faults = FaultPlan(FaultMode.DROPPED, share=0)
    assert not emulator.handle("POST", "/send/", {}, b"{}").drop
    emulator.faults = FaultPlan(FaultMode.DROPPED, share=0.5)
    drops = [emulator.handle("POST", "/get/", {}, b"{}").drop for _ in range(100)]
    assert 20 < sum(drops) < 80


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "boom"}, "unknown fault mode"),
        ({"mode": "slow", "share": 2}, "share"),
        ({"mode": "slow", "share": True}, "share"),
        ({"mode": "slow", "share": "1"}, "share"),
        ({"mode": "slow", "endpoints": "send"}, "collection"),
        ({"mode": "slow", "endpoints": ["post"]}, "endpoints"),
        ({"mode": "slow", "seconds": -1}, "seconds"),
        ({"mode": "slow", "seconds": True}, "seconds"),
    ],
)
def test_fault_plan_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaultPlan(**kwargs)


def test_fault_plan_json():
    plan = FaultPlan.from_json({"mode": "truncated", "share": 0.25, "endpoints": ["send"]})
    assert plan == FaultPlan(FaultMode.TRUNCATED, 0.25, frozenset({"send"}))
    assert FaultPlan.from_json(plan.to_json()) == plan
    assert FaultPlan.from_json({"mode": None}) is None
    assert FaultPlan.from_json({}) is None
    with pytest.raises(ValueError, match="unknown field"):
        FaultPlan.from_json({"mode": "slow", "rate": 1})


# --------------------------------------------------------------------------- numbers & docs


def test_test_numbers_stay_in_the_test_range():
    for number in [*TEST_NUMBERS, *REGISTERED_ANIS]:
        assert 79990000000 <= int(number) <= 79990000099
    assert behaviour_for("79991234567") is DEFAULT_BEHAVIOUR
    modes = {row.fault for row in TEST_NUMBERS.values() if row.fault}
    assert modes == set(FaultMode)


def test_every_number_error_code_has_a_number():
    codes = {row.error_code for row in TEST_NUMBERS.values() if row.error_code}
    assert codes == {
        "number_not_valid",
        "number_not_permitted",
        "number_in_spam_list",
        "not_enough_money",
        "user_disabled",
    }


def test_the_docs_show_the_test_number_table():
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- numbers:start[^>]*-->\n(.*?)\n<!-- numbers:end -->", text, re.S)
    assert match is not None
    assert match[1] == markdown_table()


def test_the_docs_list_every_fault_mode():
    text = DOCS.read_text(encoding="utf-8")
    for mode in FaultMode:
        assert f"| `{mode.value}` |" in text


# --------------------------------------------------------------------------- page


def test_the_page_shows_what_each_phone_got(emulator, clock):
    send(emulator, {"number": ANSWERED, "flashcall": {"code": "4321"}})
    send(emulator, {"number": "79990000002", "voice": {"code": "8765", "repeat": "1"}})
    call = send(emulator, {"number": "79990000003", "voice": {"code": "1111"}})
    send(emulator, {"sms": {"id": call["id"]}})
    page = render_page(emulator)
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "7999000<mark>4321</mark>" in page
    assert "робот говорит" in page
    assert "<mark>8765</mark> … <mark>8765</mark>" in page
    assert "Ваш код: 1111" in page
    assert "Дозвон (DIALLING)" in page
    assert "Balance · Баланс: <b>994.65</b>" in page
    assert "79990000034" in page  # the table
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # no external resource
    # Newest first: the SMS above the voice call to the same number.
    section = page[page.index("79990000003</a>") :]
    assert section.index("SMS") < section.index("Voice call")
    clock.advance(2)
    assert "Успешно (ANSWERED)" in render_page(emulator)


def test_the_page_filters_and_escapes(emulator):
    send(emulator, {"number": ANSWERED})
    send(emulator, {"number": "79990000002"})
    only = render_page(emulator, "79990000002")
    assert "79990000002</a>" in only
    assert f"{ANSWERED}</a>" not in only
    hostile = render_page(emulator, '"><script>alert(1)</script>')
    assert "<script>" not in hostile
    assert "&quot;&gt;&lt;script&gt;" in hostile
    assert "No calls yet" in hostile
    assert "No calls yet" in render_page(Emulator())


# --------------------------------------------------------------------------- fixture

URL = pytest_plugin.DEFAULT_BASE_URL


def test_the_fixture_answers_requests(voicepassword_emulator):
    answer = requests.post(
        URL + "send/",
        json={"number": ANSWERED, "capacity": "4", "callback_url": "http://127.0.0.1:9/cb/"},
        headers={"Authorization": KEY},
        timeout=5,
    )
    assert answer.headers["Content-Type"].startswith("application/json")
    code = answer.json()["code"]
    assert voicepassword_emulator.code_for(ANSWERED) == code
    assert voicepassword_emulator.last_call().code == code
    assert len(voicepassword_emulator.sends(ANSWERED)) == 1
    assert voicepassword_emulator.log[0].kind == "flash_call"
    # The callback delay is 0: final at once, callback due at once.
    state = requests.post(
        URL + "get/",
        json={"request": "state", "id": answer.json()["id"]},
        timeout=5,
        headers={"Authorization": KEY},
    )
    assert state.json()["data"]["state"] == "Успешно"
    posted: list[tuple[str, dict[str, str]]] = []

    def sender(url: str, payload: dict[str, str]) -> int:
        posted.append((url, payload))
        return 204

    deliveries = voicepassword_emulator.deliver_callbacks(sender)
    assert [d.status for d in deliveries] == [204]
    assert posted[0][1]["state"] == "ANSWERED"
    with pytest.raises(AssertionError, match="no call"):
        voicepassword_emulator.code_for("79990000002")


def test_the_fixture_delivers_to_a_django_test_client(voicepassword_emulator, client):
    url = "https://site.test/voicepassword/callback/?token=t"
    requests.post(
        URL + "send/",
        json={"number": "79990000002", "callback_url": url},
        headers={"Authorization": KEY},
        timeout=5,
    )

    class Recording:
        def __init__(self) -> None:
            self.calls: list[tuple[str, Any, str, dict[str, Any]]] = []

        def post(self, path, data, content_type, **extra):
            self.calls.append((path, json.loads(data), content_type, extra))
            return client.post(path, data, content_type=content_type, **extra)

    recording = Recording()
    [delivery] = voicepassword_emulator.deliver_callbacks(recording)
    assert delivery.status == 404  # the test URLconf has no callback view
    [(path, payload, content_type, extra)] = recording.calls
    assert path == "/voicepassword/callback/?token=t"
    assert payload["state"] == "BUSY"
    assert content_type == "application/json"
    assert extra == {"secure": True}
    assert voicepassword_emulator.emulator.deliveries == [delivery]


def test_the_fixture_moves_its_clock(voicepassword_emulator):
    voicepassword_emulator.emulator.callback_delay = 3
    answer = requests.post(
        URL + "send/", json={"number": ANSWERED}, headers={"Authorization": KEY}, timeout=5
    )
    call_id = answer.json()["id"]
    assert (
        voicepassword_emulator.emulator.get_call(call_id).state_at(voicepassword_emulator.clock())
        == "DIALLING"
    )
    voicepassword_emulator.advance(3)
    call = voicepassword_emulator.emulator.get_call(call_id)
    assert call.state_at(voicepassword_emulator.clock()) == "ANSWERED"


def test_the_fixture_maps_faults_to_what_requests_raises(voicepassword_emulator):
    def post(number: str, timeout: Any = (1, 2)) -> requests.Response:
        return requests.post(
            URL + "send/", json={"number": number}, headers={"Authorization": KEY}, timeout=timeout
        )

    with pytest.raises(requests.exceptions.ConnectionError, match="Remote end closed"):
        post("79990000034")
    voicepassword_emulator.emulator.slow_seconds = 5
    with pytest.raises(requests.exceptions.ReadTimeout):
        post("79990000030")
    with pytest.raises(requests.exceptions.ReadTimeout):
        post("79990000030", timeout=Timeout(connect=1, read=2))
    before = voicepassword_emulator.clock()
    assert post("79990000030", timeout=None).json()["result"] == "ok"  # waits, and gets it
    assert voicepassword_emulator.clock() == before + 5
    assert post("79990000030", timeout=10).json()["result"] == "ok"
    assert post("79990000031").status_code == 500
    assert post("79990000032").headers["Content-Type"].startswith("text/html")
    with pytest.raises(requests.exceptions.JSONDecodeError):
        post("79990000033").json()
    assert len(voicepassword_emulator.sends()) == 8


def test_the_fixture_fault_switch(voicepassword_emulator):
    voicepassword_emulator.set_fault("http500", endpoints=("get",))
    assert voicepassword_emulator.emulator.faults == FaultPlan(FaultMode.HTTP500, 1.0, ["get"])
    answer = requests.post(URL + "get/", json={"request": "balance"}, timeout=5)
    assert answer.status_code == 500
    voicepassword_emulator.set_fault(None)
    answer = requests.post(
        URL + "get/", json={"request": "balance"}, headers={"Authorization": KEY}, timeout=5
    )
    assert answer.json()["balance"] == "999.00"


def test_the_fixture_routes_other_base_urls_and_refuses_the_rest(voicepassword_emulator):
    voicepassword_emulator.route("https://proxy.test/vp")
    answer = requests.post(
        "https://proxy.test/vp/send/?trace=1",
        data='{"number": "79990000001"}',
        headers={"Authorization": KEY},
        timeout=5,
    )
    assert answer.json()["result"] == "ok"
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post("https://elsewhere.test/api/", timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(URL + "send/", timeout=5)


class TestBaseUrlOverride:
    @pytest.fixture
    def voicepassword_emulator_base_urls(self):
        return ["https://vp.example.test/api/voice-password"]

    @pytest.fixture
    def voicepassword_emulator_api_key(self):
        return "tests-api-key"

    def test_overridden(self, voicepassword_emulator):
        assert voicepassword_emulator.base_url == "https://vp.example.test/api/voice-password"
        answer = requests.post(
            "https://vp.example.test/api/voice-password/get/",
            json={"request": "balance"},
            headers={"Authorization": "tests-api-key"},
            timeout=5,
        )
        assert answer.json()["result"] == "ok"


def test_the_fixture_without_base_urls():
    fixture = pytest_plugin.EmulatorFixture(Emulator(), ManualClock(), None, [])
    assert fixture.base_url == pytest_plugin.DEFAULT_BASE_URL


def test_the_fixture_passes_loopback_through(
    voicepassword_emulator, voicepassword_emulator_server
):
    answer = requests.post(
        voicepassword_emulator_server.base_url + "send/",
        json={"number": ANSWERED},
        headers={"Authorization": KEY},
        timeout=5,
    )
    assert answer.json()["result"] == "ok"
    assert voicepassword_emulator.sends() == []
    assert len(voicepassword_emulator_server.emulator.sends()) == 1


def test_without_responses_the_fixture_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "responses", None)
    with pytest.raises(ImportError, match=r"pip install django-voicepassword\[testing\]"):
        pytest_plugin._import_responses()


def test_read_timeout_forms():
    assert read_timeout_of((1, 2)) == 2.0
    assert read_timeout_of(3) == 3.0
    assert read_timeout_of(Timeout(read=4)) == 4.0
    assert read_timeout_of(None) is None
    assert read_timeout_of((1, None)) is None


# --------------------------------------------------------------------------- through the client


@pytest.fixture
def vp_client(voicepassword_emulator: Any) -> Iterator[VoicePasswordClient]:
    with VoicePasswordClient(KEY, timeout=(1, 2), get_retries=1, backoff=0) as client:
        yield client


def test_the_client_through_the_fixture(vp_client, voicepassword_emulator):
    sent = vp_client.flash_call(ANSWERED)
    assert sent.code == voicepassword_emulator.code_for(ANSWERED)
    voice = vp_client.voice_call("79990000003", code="1234", repeat=True, ani="79990000090")
    sms = vp_client.sms(voice.id)
    assert sms.code == "1234"
    assert vp_client.balance().amount == Decimal("995.00")
    assert vp_client.state(voice.id).state.value == "NO ANSWER"
    with pytest.raises(NumberNotValidError):
        vp_client.flash_call("79990000020")


@pytest.mark.parametrize(
    ("number", "error", "placed"),
    [
        ("79990000030", OutcomeUnknownError, True),
        # No refusal body: the client cannot know that nothing was placed.
        ("79990000031", OutcomeUnknownError, False),
        ("79990000032", OutcomeUnknownError, True),
        ("79990000033", OutcomeUnknownError, True),
        ("79990000034", OutcomeUnknownError, True),
        ("79990000037", OutcomeUnknownError, True),
    ],
)
def test_the_client_sees_each_fault_as_documented(
    vp_client, voicepassword_emulator, number, error, placed
):
    with pytest.raises(error) as caught:
        vp_client.flash_call(number)
    assert type(caught.value) is error
    assert len(voicepassword_emulator.sends(number)) == 1  # never sent twice
    assert (voicepassword_emulator.last_call(number) is not None) is placed


@pytest.mark.parametrize("mode", list(FaultMode))
def test_get_faults_are_transport_errors_after_retries(vp_client, voicepassword_emulator, mode):
    voicepassword_emulator.set_fault(mode, endpoints=("get",))
    with pytest.raises(TransportError) as caught:
        vp_client.balance()
    assert type(caught.value) is TransportError
    assert len(voicepassword_emulator.log) == 2  # the first try and one retry


def test_response_is_a_plain_value():
    response = Response(200, {}, b"{}")
    assert (response.delay, response.drop) == (0.0, False)
