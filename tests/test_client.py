"""The HTTP client: exact requests, parsed answers, errors, transport and secrets.

Nothing here reaches the network: ``responses`` stands in for the provider, and
the few tests that need real socket behaviour (a connection dropped after the
request went out) talk to a throwaway server on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.client import RemoteDisconnected
from typing import Any

import pytest
import requests
import responses
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, SSLError
from urllib3.exceptions import ProxyError as Urllib3ProxyError
from urllib3.util.retry import Retry

from django_voicepassword import client as client_module
from django_voicepassword.client import (
    DEFAULT_BASE_URL,
    PROVIDER_TZ,
    Balance,
    CallRecord,
    CallState,
    DailyReport,
    SendResult,
    VoicePasswordClient,
    parse_callback,
    parse_record,
)
from django_voicepassword.exceptions import (
    AniPhoneNotValidError,
    APIError,
    AuthorisationFailedError,
    CodeNotValidError,
    DateIsEmptyError,
    IdNotFoundError,
    NotEnoughMoneyError,
    NumberInSpamListError,
    NumberIsEmptyError,
    NumberNotPermittedError,
    NumberNotValidError,
    OutcomeUnknownError,
    TransportError,
    UnknownRequestError,
    UserDisabledError,
    VoicePasswordError,
)

KEY = "vp-test-key-DO-NOT-LEAK"
SEND = DEFAULT_BASE_URL + "send/"
GET = DEFAULT_BASE_URL + "get/"
NUMBER = "79990000001"
OTHER_NUMBER = "79990000002"
ANI = "79990000099"
CALLBACK = "http://MyUrl.ru/callback/"

SEND_OK = {"result": "ok", "id": "1234", "number": NUMBER, "price": "0.35", "code": "1234"}
SMS_OK = {
    "result": "ok",
    "id": "1234",
    "number": NUMBER,
    "price": "3.30",
    "message": "Ваш код: 1234",
}
STATE_ROW = {
    "id": "12345",
    "number": NUMBER,
    "date": "11.09.2020 13:34:39",
    "duration": "00:04",
    "price": "0.35",
    "service": "Voice Password",
    "state": "Успешно",
}
DAILY_ROW = {
    "id": "12346",
    "number": OTHER_NUMBER,
    "date": "11.09.2020 13:50:13",
    "duration": "00:00",
    "price": "0.35",
    "service": "Voice Password",
    "state": "Занято",
}
CALLBACK_PAYLOAD = {
    "id": "1234",
    "number": NUMBER,
    "duration": "1",
    "state": "ANSWERED",
    "price": "0.35",
    "date": "2020-02-02 15:18:48",
}


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture(params=["header", "body"])
def auth_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(auth_mode: str) -> Iterator[VoicePasswordClient]:
    with VoicePasswordClient(KEY, auth_mode=auth_mode, backoff=0) as vp:  # type: ignore[arg-type]
        yield vp


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The back-off delays the client asked for, without waiting for them."""
    asked: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", asked.append)
    return asked


def sent(rsps: responses.RequestsMock, index: int = 0) -> tuple[Any, Any]:
    """The JSON body and the headers of the ``index``-th request."""
    request = rsps.calls[index].request
    body = request.body
    assert isinstance(body, bytes)
    return json.loads(body.decode("utf-8")), request.headers


def expected_body(payload: dict[str, Any], auth_mode: str) -> dict[str, Any]:
    if auth_mode == "body":
        return {"security": {"apiKey": KEY}, **payload}
    return payload


def assert_auth(headers: Any, auth_mode: str) -> None:
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["User-Agent"].startswith("django-voicepassword/")
    if auth_mode == "header":
        assert headers["Authorization"] == KEY
    else:
        assert "Authorization" not in headers


def assert_no_key(*things: Any) -> None:
    for thing in things:
        assert KEY not in repr(thing)
        assert KEY not in str(thing)


def assert_exception_clean(exc: BaseException) -> None:
    assert_no_key(exc, exc.args, vars(exc))
    # requests' error holds the prepared request, headers and body included.
    assert exc.__cause__ is None
    assert exc.__context__ is None


# --------------------------------------------------------------------------- send/ requests

SEND_CASES: list[tuple[str, Callable[[Any], SendResult], dict[str, Any]]] = [
    (
        "flash call, service code",
        lambda vp: vp.flash_call(NUMBER),
        {"number": NUMBER, "capacity": "4"},
    ),
    (
        "flash call, client code",
        lambda vp: vp.flash_call(NUMBER, code="1234"),
        {"number": NUMBER, "flashcall": {"code": "1234"}},
    ),
    (
        "voice, client code",
        lambda vp: vp.voice_call(NUMBER, code="1234"),
        {"number": NUMBER, "voice": {"code": "1234"}},
    ),
    (
        "voice, service code",
        lambda vp: vp.voice_call(NUMBER),
        {"number": NUMBER, "voice": {}},
    ),
    (
        "voice, repeat",
        lambda vp: vp.voice_call(NUMBER, code="1234", repeat=True),
        {"number": NUMBER, "voice": {"code": "1234", "repeat": "1"}},
    ),
    (
        "voice, repeat and ani",
        lambda vp: vp.voice_call(NUMBER, code="1234", repeat=True, ani=ANI),
        {"number": NUMBER, "voice": {"code": "1234", "repeat": "1", "ani": ANI}},
    ),
    (
        "flash call with callback_url",
        lambda vp: vp.flash_call(NUMBER, callback_url=CALLBACK),
        {"number": NUMBER, "capacity": "4", "callback_url": CALLBACK},
    ),
    (
        "voice with callback_url",
        lambda vp: vp.voice_call(NUMBER, code="1234", callback_url=CALLBACK),
        {"number": NUMBER, "voice": {"code": "1234"}, "callback_url": CALLBACK},
    ),
    (
        "ints accepted, strings sent",
        lambda vp: vp.flash_call(int(NUMBER), code=1234),
        {"number": NUMBER, "flashcall": {"code": "1234"}},
    ),
    (
        "flash call, longer service code",
        lambda vp: vp.flash_call(NUMBER, capacity=6),
        {"number": NUMBER, "capacity": "6"},
    ),
    (
        "voice, capacity 4 is the voice default and not sent",
        lambda vp: vp.voice_call(f" {NUMBER} ", capacity=4, repeat=False),
        {"number": NUMBER, "voice": {}},
    ),
    (
        "voice, repeat as the strings the reference shows",
        lambda vp: vp.voice_call(NUMBER, repeat="1"),
        {"number": NUMBER, "voice": {"repeat": "1"}},
    ),
    (
        "voice, repeat 0",
        lambda vp: vp.voice_call(NUMBER, repeat=0),
        {"number": NUMBER, "voice": {}},
    ),
]


@pytest.mark.parametrize(
    ("call", "payload"), [case[1:] for case in SEND_CASES], ids=[case[0] for case in SEND_CASES]
)
def test_send_requests_are_exactly_the_reference(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    auth_mode: str,
    call: Callable[[VoicePasswordClient], SendResult],
    payload: dict[str, Any],
) -> None:
    rsps.add(responses.POST, SEND, json=SEND_OK)

    result = call(client)

    body, headers = sent(rsps)
    assert body == expected_body(payload, auth_mode)
    assert_auth(headers, auth_mode)
    assert rsps.calls[0].request.url == SEND
    assert result == SendResult(
        id="1234", number=NUMBER, price=Decimal("0.35"), code="1234", message=None, raw=SEND_OK
    )
    assert isinstance(result.price, Decimal)


def test_sms_request_and_answer(
    rsps: responses.RequestsMock, client: VoicePasswordClient, auth_mode: str
) -> None:
    rsps.add(responses.POST, SEND, json=SMS_OK)

    result = client.sms("1234")

    body, headers = sent(rsps)
    assert body == expected_body({"sms": {"id": "1234"}}, auth_mode)
    assert_auth(headers, auth_mode)
    assert result.id == "1234"
    assert result.number == NUMBER
    assert result.price == Decimal("3.30")
    assert str(result.price) == "3.30"
    assert result.message == "Ваш код: 1234"
    # The code is read from the message when the answer has no "code".
    assert result.code == "1234"
    assert result.raw == SMS_OK


def test_sms_sends_the_callback_url(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    """The document lists ``callback_url`` for every ``send/`` request, the SMS too."""
    rsps.add(responses.POST, SEND, json=SMS_OK)
    client.sms("1234", callback_url=CALLBACK)
    body = sent(rsps)[0]
    assert (body["sms"], body["callback_url"]) == ({"id": "1234"}, CALLBACK)


def test_sms_refuses_a_bad_callback_url(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    with pytest.raises(UnknownRequestError) as caught:
        client.sms("1234", callback_url="ftp://site.example/cb/")
    assert caught.value.local
    assert len(rsps.calls) == 0


def test_sms_id_as_int(rsps: responses.RequestsMock, client: VoicePasswordClient) -> None:
    rsps.add(responses.POST, SEND, json=SMS_OK)
    client.sms(1234)
    assert sent(rsps)[0]["sms"] == {"id": "1234"}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Ваш код: 1234", "1234"),
        ("Ваш код: 123456", "123456"),
        ("Your code is 0042.", "0042"),
        ("Ваш код: XXXX", None),
        ("Код 12 из 1234", None),
        ("Код: 123", None),
        ("", None),
    ],
)
def test_code_from_sms_message(
    rsps: responses.RequestsMock, client: VoicePasswordClient, message: str, code: str | None
) -> None:
    rsps.add(responses.POST, SEND, json={**SMS_OK, "message": message})
    result = client.sms("1234")
    assert result.code == code


def test_send_answer_with_ints_and_extra_fields(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    answer = {"result": "OK", "id": 1234, "number": int(NUMBER), "price": 0.35, "code": 1234}
    rsps.add(responses.POST, SEND, json={**answer, "balance": "998.65"})

    result = client.flash_call(NUMBER)

    assert (result.id, result.number, result.price, result.code) == (
        "1234",
        NUMBER,
        Decimal("0.35"),
        "1234",
    )
    assert result.raw["balance"] == "998.65"


def test_send_result_repr_leaves_the_code_out(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    rsps.add(responses.POST, SEND, json={**SEND_OK, "code": "9876"})
    result = client.flash_call(NUMBER)
    assert "9876" not in repr(result)
    assert "1234" in repr(result)  # the id


def test_answer_5xx_with_result_ok_is_taken(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    # The provider said it placed the call: that outweighs the status.
    rsps.add(responses.POST, SEND, json=SEND_OK, status=500)
    assert client.flash_call(NUMBER).id == "1234"


# --------------------------------------------------------------------------- get/ requests


def test_balance(
    rsps: responses.RequestsMock, client: VoicePasswordClient, auth_mode: str
) -> None:
    answer = {"result": "ok", "balance": "999.00", "currency": "Rub"}
    rsps.add(responses.POST, GET, json=answer)

    result = client.balance()

    body, headers = sent(rsps)
    assert body == expected_body({"request": "balance"}, auth_mode)
    assert_auth(headers, auth_mode)
    assert result == Balance(amount=Decimal("999.00"), currency="Rub", raw=answer)


@pytest.mark.parametrize(
    ("answer", "amount", "currency"),
    [
        ({"balance": "-12,50", "currency": " Rub "}, Decimal("-12.50"), "Rub"),
        ({"balance": 1000}, Decimal("1000"), ""),
        ({"balance": 0.1, "currency": None}, Decimal("0.1"), ""),
    ],
)
def test_balance_tolerant(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    answer: dict[str, Any],
    amount: Decimal,
    currency: str,
) -> None:
    rsps.add(responses.POST, GET, json={"result": "ok", **answer})
    result = client.balance()
    assert (result.amount, result.currency) == (amount, currency)


def test_state(rsps: responses.RequestsMock, client: VoicePasswordClient, auth_mode: str) -> None:
    answer = {"result": "ok", "data": STATE_ROW}
    rsps.add(responses.POST, GET, json=answer)

    result = client.state("12345")

    body, headers = sent(rsps)
    assert body == expected_body({"request": "state", "id": "12345"}, auth_mode)
    assert_auth(headers, auth_mode)
    assert result == CallRecord(
        id="12345",
        number=NUMBER,
        date=datetime(2020, 9, 11, 13, 34, 39, tzinfo=PROVIDER_TZ),
        duration=timedelta(seconds=4),
        price=Decimal("0.35"),
        state=CallState.ANSWERED,
        state_label="Успешно",
        service="Voice Password",
        raw=STATE_ROW,
    )
    assert result.date is not None
    assert result.date.utcoffset() == timedelta(hours=3)
    assert result.date.astimezone(UTC) == datetime(2020, 9, 11, 10, 34, 39, tzinfo=UTC)


def test_state_id_as_int_and_data_in_a_list(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    rsps.add(responses.POST, GET, json={"result": "ok", "data": [{**STATE_ROW, "id": 12345}]})
    result = client.state(12345)
    assert sent(rsps)[0]["id"] == "12345"
    assert result.id == "12345"


def test_daily(rsps: responses.RequestsMock, client: VoicePasswordClient, auth_mode: str) -> None:
    answer = {"result": "ok", "rows": "2", "data": [STATE_ROW, DAILY_ROW]}
    rsps.add(responses.POST, GET, json=answer)

    rows = client.daily(date(2020, 9, 11))

    body, headers = sent(rsps)
    assert body == expected_body({"request": "daily", "date": "11.09.2020"}, auth_mode)
    assert_auth(headers, auth_mode)
    assert [row.id for row in rows] == ["12345", "12346"]
    busy = rows[1]
    assert busy.number == OTHER_NUMBER
    assert busy.state is CallState.BUSY
    assert busy.state_label == "Занято"
    assert busy.duration == timedelta(0)
    assert busy.date == datetime(2020, 9, 11, 13, 50, 13, tzinfo=PROVIDER_TZ)


@pytest.mark.parametrize(
    ("day", "sent_date"),
    [
        (date(2021, 1, 2), "02.01.2021"),
        (datetime(2021, 1, 2, 23, 59), "02.01.2021"),
        # 22:30 UTC is already the next day in Moscow.
        (datetime(2021, 1, 1, 22, 30, tzinfo=UTC), "02.01.2021"),
    ],
)
def test_daily_date(
    rsps: responses.RequestsMock, client: VoicePasswordClient, day: date, sent_date: str
) -> None:
    rsps.add(responses.POST, GET, json={"result": "ok", "rows": "0", "data": []})
    assert client.daily(day) == []
    assert sent(rsps)[0]["date"] == sent_date


@pytest.mark.parametrize(
    "answer",
    [
        {"result": "ok", "rows": "0"},
        {"result": "ok", "rows": "0", "data": None},
        {"result": "ok", "rows": 0, "data": {}},
    ],
)
def test_daily_without_rows(
    rsps: responses.RequestsMock, client: VoicePasswordClient, answer: dict[str, Any]
) -> None:
    rsps.add(responses.POST, GET, json=answer)
    assert client.daily(date(2020, 9, 11)) == []


def test_daily_rows_as_an_object(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    # What PHP's json_encode makes of an array whose keys are not 0..n-1.
    answer = {"result": "ok", "rows": "2", "data": {"1": STATE_ROW, "5": DAILY_ROW}}
    rsps.add(responses.POST, GET, json=answer)
    assert [row.id for row in client.daily(date(2020, 9, 11))] == ["12345", "12346"]


def test_daily_unknown_labels_kept_verbatim(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    rows = [
        {**STATE_ROW, "state": "Дозвон", "duration": "", "price": None, "date": ""},
        {**DAILY_ROW, "state": "Голосовая почта", "extra": {"nested": True}},
        {**DAILY_ROW, "state": "Отменён"},
        {**DAILY_ROW, "state": "Недозвон"},
    ]
    rsps.add(responses.POST, GET, json={"result": "ok", "rows": "4", "data": rows})

    dialling, unknown, cancelled, failed = client.daily(date(2020, 9, 11))

    assert dialling.state is CallState.DIALLING
    assert not dialling.state.is_final
    assert (dialling.date, dialling.duration, dialling.price) == (None, None, None)
    assert unknown.state is None
    assert unknown.state_label == "Голосовая почта"
    assert unknown.raw["extra"] == {"nested": True}
    assert cancelled.state is CallState.CANCEL
    assert cancelled.state_label == "Отменён"
    assert failed.state is CallState.FAIL


# --------------------------------------------------------------------------- callbacks


def test_parse_callback_reference_payload() -> None:
    record = parse_callback(CALLBACK_PAYLOAD)
    assert record == CallRecord(
        id="1234",
        number=NUMBER,
        date=datetime(2020, 2, 2, 15, 18, 48, tzinfo=PROVIDER_TZ),
        duration=timedelta(seconds=1),
        price=Decimal("0.35"),
        state=CallState.ANSWERED,
        state_label="ANSWERED",
        service=None,
        raw=CALLBACK_PAYLOAD,
    )
    assert record.raw is not CALLBACK_PAYLOAD  # a copy: the caller may change theirs


@pytest.mark.parametrize(
    ("state", "member", "is_sms", "is_final"),
    [
        ("QUEUED", CallState.QUEUED, True, False),
        ("SEND", CallState.SEND, True, False),
        ("DELIVERED", CallState.DELIVERED, True, True),
        ("NOT DELIVERED", CallState.NOT_DELIVERED, True, True),
        ("FAIL", CallState.FAIL, False, True),
        ("NO ANSWER", CallState.NO_ANSWER, False, True),
        ("BUSY", CallState.BUSY, False, True),
        ("CANCEL", CallState.CANCEL, False, True),
    ],
)
def test_parse_callback_states(
    state: str, member: CallState, is_sms: bool, is_final: bool
) -> None:
    record = parse_callback({**CALLBACK_PAYLOAD, "state": state})
    assert record.state is member
    assert member.is_sms is is_sms
    assert member.is_final is is_final


def test_parse_callback_ints_and_extra_fields() -> None:
    payload = {
        "id": 1234,
        "number": int(NUMBER),
        "duration": 17,
        "state": "answered",
        "price": 1,
        "date": "2020-02-02T15:18:48",
        "token": "abc",
    }
    record = parse_callback(payload)
    assert (record.id, record.number, record.duration, record.price) == (
        "1234",
        NUMBER,
        timedelta(seconds=17),
        Decimal(1),
    )
    assert record.state is CallState.ANSWERED
    assert record.state_label == "answered"
    assert record.raw["token"] == "abc"


def test_parse_callback_without_optional_fields() -> None:
    record = parse_callback({"id": "1", "number": NUMBER, "state": "SEND"})
    assert (record.date, record.duration, record.price, record.service) == (None,) * 4


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "expected a JSON object"),
        ({"number": NUMBER, "state": "BUSY"}, "missing 'id'"),
        ({"id": "1", "state": "BUSY"}, "missing 'number'"),
        ({"id": "1", "number": NUMBER}, "missing 'state'"),
        ({**CALLBACK_PAYLOAD, "id": "abc"}, "id"),
        ({**CALLBACK_PAYLOAD, "date": "yesterday"}, "date"),
        ({**CALLBACK_PAYLOAD, "duration": "long"}, "duration"),
        ({**CALLBACK_PAYLOAD, "price": "free"}, "price"),
        ({**CALLBACK_PAYLOAD, "state": None}, "state"),
        ({**CALLBACK_PAYLOAD, "number": None}, "number"),
        ({**CALLBACK_PAYLOAD, "service": ["x"]}, "service"),
    ],
)
def test_parse_callback_garbage(payload: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_callback(payload)


def test_parse_record_is_parse_callback_for_get_rows() -> None:
    assert parse_record(STATE_ROW).state is CallState.ANSWERED
    with pytest.raises(ValueError, match="record: missing 'id'"):
        parse_record({})


# --------------------------------------------------------------------------- provider errors

SEND_ERRORS = [
    ("unknown_request", UnknownRequestError),
    ("authorisation_failed", AuthorisationFailedError),
    ("user_disabled", UserDisabledError),
    ("number_is_empty", NumberIsEmptyError),
    ("number_not_valid", NumberNotValidError),
    ("number_not_permitted", NumberNotPermittedError),
    ("number_in_spam_list", NumberInSpamListError),
    ("not_enough_money", NotEnoughMoneyError),
    ("ani_phone_not_valid", AniPhoneNotValidError),
    ("code_not_valid", CodeNotValidError),
]
GET_ERRORS = [
    ("ID_Not_Found", IdNotFoundError),
    ("Date_is_Empty", DateIsEmptyError),
    ("unknown_request", UnknownRequestError),
    ("authorisation_failed", AuthorisationFailedError),
    ("user_disabled", UserDisabledError),
]


@pytest.mark.parametrize(("code", "klass"), SEND_ERRORS)
def test_send_error_codes(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    code: str,
    klass: type[APIError],
) -> None:
    answer = {"result": "error", "error_code": code}
    rsps.add(responses.POST, SEND, json=answer)

    with pytest.raises(klass) as caught:
        client.flash_call(NUMBER)

    exc = caught.value
    assert type(exc) is klass
    assert (exc.error_code, exc.endpoint, exc.status, exc.local) == (code, "send", 200, False)
    assert exc.response == answer
    assert code in str(exc)
    assert_exception_clean(exc)


@pytest.mark.parametrize(("code", "klass"), GET_ERRORS)
def test_get_error_codes(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    code: str,
    klass: type[APIError],
) -> None:
    answer = {"result": "error", "error_code": code}
    rsps.add(responses.POST, GET, json=answer)

    with pytest.raises(klass) as caught:
        client.state("12345")

    exc = caught.value
    assert type(exc) is klass
    assert (exc.error_code, exc.endpoint, exc.local) == (code, "get", False)
    assert_exception_clean(exc)
    assert len(rsps.calls) == 1  # a refusal is an answer: never retried


@pytest.mark.parametrize(
    ("error_code", "klass", "kept"),
    [
        ("something_new", APIError, "something_new"),
        ("id_not_found", IdNotFoundError, "ID_Not_Found"),
        (" NOT_ENOUGH_MONEY ", NotEnoughMoneyError, "not_enough_money"),
        (42, APIError, "42"),
        (None, APIError, ""),
    ],
)
def test_other_error_codes(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    error_code: Any,
    klass: type[APIError],
    kept: str,
) -> None:
    rsps.add(responses.POST, SEND, json={"result": "Error", "error_code": error_code}, status=400)
    with pytest.raises(APIError) as caught:
        client.flash_call(NUMBER)
    assert type(caught.value) is klass
    assert caught.value.error_code == kept
    assert caught.value.status == 400


def test_error_answer_with_5xx_is_an_api_error(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    rsps.add(
        responses.POST, GET, json={"result": "error", "error_code": "user_disabled"}, status=503
    )
    with pytest.raises(UserDisabledError):
        client.balance()
    assert len(rsps.calls) == 1


def test_send_refusal_with_5xx_is_an_api_error(
    rsps: responses.RequestsMock, client: VoicePasswordClient
) -> None:
    """The provider's own refusal body says nothing was placed, whatever the status."""
    refusal = {"result": "error", "error_code": "not_enough_money"}
    rsps.add(responses.POST, SEND, json=refusal, status=502)
    with pytest.raises(NotEnoughMoneyError) as caught:
        client.flash_call(NUMBER)
    assert caught.value.status == 502
    assert len(rsps.calls) == 1


# --------------------------------------------------------------------------- local refusals

LOCAL_REFUSALS: list[tuple[str, Callable[[Any], object], type[APIError]]] = [
    ("number with +", lambda vp: vp.flash_call("+" + NUMBER), NumberIsEmptyError),
    ("number too short", lambda vp: vp.flash_call("799900000"), NumberIsEmptyError),
    ("number too long", lambda vp: vp.voice_call("7999000000012345"), NumberIsEmptyError),
    ("number with dashes", lambda vp: vp.flash_call("7-999-000-00-01"), NumberIsEmptyError),
    ("number in Arabic digits", lambda vp: vp.flash_call("٧٩٩٩٠٠٠٠٠٠١"), NumberIsEmptyError),
    ("number empty", lambda vp: vp.flash_call(""), NumberIsEmptyError),
    ("number None", lambda vp: vp.flash_call(None), NumberIsEmptyError),
    ("number float", lambda vp: vp.flash_call(79990000001.0), NumberIsEmptyError),
    ("number bool", lambda vp: vp.flash_call(True), NumberIsEmptyError),
    ("number negative", lambda vp: vp.flash_call(-79990000001), NumberIsEmptyError),
    ("code 3 digits", lambda vp: vp.flash_call(NUMBER, code="123"), CodeNotValidError),
    ("code 5 digits", lambda vp: vp.voice_call(NUMBER, code="12345"), CodeNotValidError),
    ("code letters", lambda vp: vp.flash_call(NUMBER, code="12a4"), CodeNotValidError),
    ("code int losing a zero", lambda vp: vp.flash_call(NUMBER, code=123), CodeNotValidError),
    ("code list", lambda vp: vp.voice_call(NUMBER, code=[1]), CodeNotValidError),
    ("capacity 3", lambda vp: vp.flash_call(NUMBER, capacity=3), CodeNotValidError),
    ("capacity 7", lambda vp: vp.flash_call(NUMBER, capacity=7), CodeNotValidError),
    ("capacity text", lambda vp: vp.flash_call(NUMBER, capacity="x"), CodeNotValidError),
    ("capacity on voice", lambda vp: vp.voice_call(NUMBER, capacity=6), CodeNotValidError),
    (
        "code and capacity",
        lambda vp: vp.flash_call(NUMBER, code="1234", capacity=4),
        UnknownRequestError,
    ),
    ("ani short", lambda vp: vp.voice_call(NUMBER, ani="12345"), AniPhoneNotValidError),
    ("ani with +", lambda vp: vp.voice_call(NUMBER, ani="+" + ANI), AniPhoneNotValidError),
    ("repeat text", lambda vp: vp.voice_call(NUMBER, repeat="yes"), UnknownRequestError),
    ("repeat 2", lambda vp: vp.voice_call(NUMBER, repeat=2), UnknownRequestError),
    ("repeat float", lambda vp: vp.voice_call(NUMBER, repeat=1.0), UnknownRequestError),
    (
        "callback ftp",
        lambda vp: vp.flash_call(NUMBER, callback_url="ftp://x/"),
        UnknownRequestError,
    ),
    (
        "callback with a space",
        lambda vp: vp.flash_call(NUMBER, callback_url="http://x/a b"),
        UnknownRequestError,
    ),
    (
        "callback with a newline",
        lambda vp: vp.voice_call(NUMBER, callback_url="http://x/\n"),
        UnknownRequestError,
    ),
    (
        "callback not a str",
        lambda vp: vp.flash_call(NUMBER, callback_url=b"http://x/"),
        UnknownRequestError,
    ),
    ("sms id letters", lambda vp: vp.sms("12a"), IdNotFoundError),
    ("sms id empty", lambda vp: vp.sms(" "), IdNotFoundError),
    ("sms id None", lambda vp: vp.sms(None), IdNotFoundError),
    ("state id letters", lambda vp: vp.state("abc"), IdNotFoundError),
    ("state id negative", lambda vp: vp.state(-1), IdNotFoundError),
    ("daily text date", lambda vp: vp.daily("11.09.2020"), DateIsEmptyError),
    ("daily None", lambda vp: vp.daily(None), DateIsEmptyError),
]


@pytest.mark.parametrize(
    ("call", "klass"),
    [case[1:] for case in LOCAL_REFUSALS],
    ids=[case[0] for case in LOCAL_REFUSALS],
)
def test_local_refusals_send_nothing(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    call: Callable[[VoicePasswordClient], object],
    klass: type[APIError],
) -> None:
    with pytest.raises(klass) as caught:
        call(client)
    exc = caught.value
    assert type(exc) is klass
    assert exc.local is True
    assert exc.endpoint is None
    assert exc.error_code == klass.error_code
    assert len(rsps.calls) == 0
    assert_exception_clean(exc)
    assert NUMBER not in str(exc)  # refusals do not echo what they refused


# --------------------------------------------------------------------------- transport: send/


NO_POOL: Any = None  # urllib3 only keeps the pool and the connection for messages


def connect_refused() -> requests.exceptions.ConnectionError:
    reason = NewConnectionError(NO_POOL, "Failed to establish a new connection: refused")
    return requests.exceptions.ConnectionError(MaxRetryError(NO_POOL, SEND, reason))


def proxy_refused() -> requests.exceptions.ProxyError:
    reason = Urllib3ProxyError("Unable to connect to proxy", NewConnectionError(NO_POOL, "no"))
    return requests.exceptions.ProxyError(MaxRetryError(NO_POOL, SEND, reason))


def certificate_refused() -> requests.exceptions.SSLError:
    reason = SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    return requests.exceptions.SSLError(MaxRetryError(NO_POOL, SEND, reason))


def deeply_wrapped() -> requests.exceptions.ConnectionError:
    error: BaseException = connect_refused()
    for _ in range(10):
        error = requests.exceptions.ConnectionError(error)
    assert isinstance(error, requests.exceptions.ConnectionError)
    return error


def connection_aborted() -> requests.exceptions.ConnectionError:
    cause = RemoteDisconnected("Remote end closed connection without response")
    return requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", cause))


@pytest.mark.parametrize(
    ("error", "klass"),
    [
        (requests.exceptions.ReadTimeout("Read timed out."), OutcomeUnknownError),
        (connection_aborted(), OutcomeUnknownError),
        (requests.exceptions.ChunkedEncodingError("Connection broken"), OutcomeUnknownError),
        (
            requests.exceptions.SSLError("EOF occurred in violation of protocol"),
            OutcomeUnknownError,
        ),
        (requests.exceptions.ConnectionError(), OutcomeUnknownError),
        # Too deep to be sure: the safe reading.
        (deeply_wrapped(), OutcomeUnknownError),
        (requests.exceptions.ConnectTimeout("Connect timed out"), TransportError),
        (connect_refused(), TransportError),
        (proxy_refused(), TransportError),
        (certificate_refused(), TransportError),
    ],
    ids=[
        "read timeout",
        "connection aborted",
        "chunked",
        "ssl while reading",
        "bare connection error",
        "deeply wrapped",
        "connect timeout",
        "connect refused",
        "proxy refused",
        "certificate refused",
    ],
)
def test_send_network_errors(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    error: Exception,
    klass: type[TransportError],
) -> None:
    rsps.add(responses.POST, SEND, body=error)

    with pytest.raises(TransportError) as caught:
        client.flash_call(NUMBER)

    assert type(caught.value) is klass
    assert caught.value.endpoint == "send"
    assert len(rsps.calls) == 1  # never retried, whatever happened
    assert_exception_clean(caught.value)
    if klass is OutcomeUnknownError:
        assert "may have been placed" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "klass"),
    [
        # The document refuses only with {"result": "error"}: a 5xx without
        # that body may come from a proxy after the call was placed.
        (500, "<html>Internal Server Error</html>", OutcomeUnknownError),
        (502, "", OutcomeUnknownError),
        (502, "<html>502 Bad Gateway</html>", OutcomeUnknownError),
        (503, '{"message": "maintenance"}', OutcomeUnknownError),
        (503, "Service Unavailable", OutcomeUnknownError),
        (504, "<html>Gateway Time-out</html>", OutcomeUnknownError),
        (200, "<html><body>Welcome</body></html>", OutcomeUnknownError),
        (200, '{"result": "ok", "id": "12', OutcomeUnknownError),
        (200, "", OutcomeUnknownError),
        (200, '["ok"]', OutcomeUnknownError),
        (200, '{"status": "ok"}', OutcomeUnknownError),
        (200, '{"result": "maybe"}', OutcomeUnknownError),
        (200, "[" * 100_000, OutcomeUnknownError),
        (200, b"\xff\xfe\xfa", OutcomeUnknownError),
        (404, "<html>Not Found</html>", OutcomeUnknownError),
        (302, "", OutcomeUnknownError),
    ],
)
def test_send_unusable_answers(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    status: int,
    body: str | bytes,
    klass: type[TransportError],
) -> None:
    headers = {"Location": "https://elsewhere.test/"} if status == 302 else None
    rsps.add(responses.POST, SEND, body=body, status=status, headers=headers)

    with pytest.raises(TransportError) as caught:
        client.flash_call(NUMBER)

    exc = caught.value
    assert type(exc) is klass
    assert exc.status == status
    assert len(rsps.calls) == 1
    assert_exception_clean(exc)


@pytest.mark.parametrize(
    "answer",
    [
        {"result": "ok", "number": NUMBER, "price": "0.35", "code": "1234"},
        {"result": "ok", "id": "1234", "price": "0.35"},
        {"result": "ok", "id": "1234", "number": NUMBER},
        {"result": "ok", "id": "abc", "number": NUMBER, "price": "0.35"},
        {"result": "ok", "id": "1234", "number": NUMBER, "price": "NaN"},
        {"result": "ok", "id": "1234", "number": NUMBER, "price": "0.35", "message": 5.5},
    ],
)
def test_send_ok_answer_unreadable_is_outcome_unknown(
    rsps: responses.RequestsMock, client: VoicePasswordClient, answer: dict[str, Any]
) -> None:
    rsps.add(responses.POST, SEND, json=answer)
    with pytest.raises(OutcomeUnknownError) as caught:
        client.flash_call(NUMBER)
    # The answer is kept: its id, if any, lets the caller reconcile.
    assert caught.value.response == answer


def test_send_invalid_url_is_not_sent(rsps: responses.RequestsMock) -> None:
    vp = VoicePasswordClient(KEY, base_url="http://[bad-host/")
    with pytest.raises(TransportError) as caught:
        vp.flash_call(NUMBER)
    assert type(caught.value) is TransportError
    assert "not sent" in str(caught.value)


# --------------------------------------------------------------------------- transport: get/


def test_get_retries_then_succeeds(
    rsps: responses.RequestsMock, delays: list[float], auth_mode: str
) -> None:
    vp = VoicePasswordClient(KEY, auth_mode=auth_mode, backoff=0.5)  # type: ignore[arg-type]
    rsps.add(responses.POST, GET, body=requests.exceptions.ConnectionError("reset"))
    rsps.add(responses.POST, GET, status=503, body="busy")
    rsps.add(responses.POST, GET, body="<html>captive portal</html>")
    rsps.add(responses.POST, GET, json={"result": "ok", "balance": "1.00", "currency": "Rub"})

    assert vp.balance().amount == Decimal("1.00")

    assert len(rsps.calls) == 4
    assert delays == [0.5, 1.0, 2.0]
    for index in range(4):
        assert sent(rsps, index)[0] == expected_body({"request": "balance"}, auth_mode)


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 502, "body": "bad gateway"},
        {"body": requests.exceptions.ReadTimeout("Read timed out.")},
        {"body": requests.exceptions.ConnectTimeout("Connect timed out.")},
        {"status": 200, "body": '{"result": "ok", "bal'},
        {"status": 500, "json": {"message": "oops"}},
    ],
)
def test_get_gives_up(
    rsps: responses.RequestsMock, delays: list[float], failure: dict[str, Any]
) -> None:
    vp = VoicePasswordClient(KEY, get_retries=2, backoff=0.25)
    rsps.add(responses.POST, GET, **failure)

    with pytest.raises(TransportError) as caught:
        vp.state("12345")

    exc = caught.value
    assert type(exc) is TransportError
    assert exc.endpoint == "get"
    assert len(rsps.calls) == 3
    assert delays == [0.25, 0.5]
    assert_exception_clean(exc)


def test_get_without_retries(rsps: responses.RequestsMock, delays: list[float]) -> None:
    vp = VoicePasswordClient(KEY, get_retries=0)
    rsps.add(responses.POST, GET, status=500)
    with pytest.raises(TransportError) as caught:
        vp.balance()
    assert caught.value.status == 500
    assert len(rsps.calls) == 1
    assert delays == []


@pytest.mark.parametrize(
    "answer",
    [
        {"balance": "1.00"},
        {"result": "ok"},
        {"result": "ok", "balance": "lots"},
    ],
)
def test_get_unreadable_json_is_not_retried(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    delays: list[float],
    answer: dict[str, Any],
) -> None:
    rsps.add(responses.POST, GET, json=answer)
    with pytest.raises(TransportError) as caught:
        client.balance()
    assert type(caught.value) is TransportError
    assert caught.value.response == answer
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"result": "ok"},
        {"result": "ok", "data": "12345"},
        {"result": "ok", "data": [STATE_ROW, DAILY_ROW]},
    ],
)
def test_state_unreadable(
    rsps: responses.RequestsMock, client: VoicePasswordClient, answer: dict[str, Any]
) -> None:
    rsps.add(responses.POST, GET, json=answer)
    with pytest.raises(TransportError, match="unreadable answer"):
        client.state("12345")


def test_daily_unreadable(rsps: responses.RequestsMock, client: VoicePasswordClient) -> None:
    rsps.add(responses.POST, GET, json={"result": "ok", "rows": "1", "data": "nothing"})
    with pytest.raises(TransportError, match="expected a list of rows"):
        client.daily(date(2020, 9, 11))


def test_daily_skips_and_counts_an_unreadable_record(
    rsps: responses.RequestsMock, client: VoicePasswordClient, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad record costs itself, not the day; the report is then not complete."""
    rows = [STATE_ROW, {**DAILY_ROW, "price": "-1"}, {"id": "7"}, DAILY_ROW]
    rsps.add(responses.POST, GET, json={"result": "ok", "rows": "4", "data": rows})
    report = client.daily(date(2020, 9, 11))
    assert [record.id for record in report] == ["12345", "12346"]
    assert (report.rows, report.skipped, report.complete) == (4, 2, False)
    assert "record 1 skipped: price" in caplog.text
    assert "record 2 skipped: row: missing 'number'" in caplog.text


@pytest.mark.parametrize(
    ("answer", "records", "rows", "complete"),
    [
        ({"rows": "2", "data": [STATE_ROW, DAILY_ROW]}, 2, 2, True),
        ({"rows": 2, "data": [STATE_ROW, DAILY_ROW]}, 2, 2, True),
        ({"rows": "0", "data": []}, 0, 0, True),
        ({"rows": "0"}, 0, 0, True),
        # Fewer records than announced: a cut answer, not a quiet day.
        ({"rows": "3", "data": [STATE_ROW, DAILY_ROW]}, 2, 3, False),
        ({"rows": "2"}, 0, 2, False),
        ({"rows": "2", "data": None}, 0, 2, False),
        # Nothing says how many there should be.
        ({}, 0, None, False),
        ({"data": [STATE_ROW]}, 1, None, False),
        ({"rows": "two", "data": [STATE_ROW, DAILY_ROW]}, 2, None, False),
        ({"rows": -1, "data": []}, 0, None, False),
        ({"rows": True, "data": []}, 0, None, False),
    ],
)
def test_daily_reads_rows(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    answer: dict[str, Any],
    records: int,
    rows: int | None,
    complete: bool,
) -> None:
    rsps.add(responses.POST, GET, json={"result": "ok", **answer})
    report = client.daily(date(2020, 9, 11))
    assert isinstance(report, DailyReport)
    assert (len(report), report.rows, report.skipped, report.complete) == (
        records,
        rows,
        0,
        complete,
    )


def test_get_invalid_url_is_not_retried(rsps: responses.RequestsMock, delays: list[float]) -> None:
    vp = VoicePasswordClient(KEY, base_url="http://[bad-host/")
    with pytest.raises(TransportError):
        vp.balance()
    assert delays == []


# --------------------------------------------------------------------------- secrets


def test_repr_hides_the_key(auth_mode: str) -> None:
    vp = VoicePasswordClient(KEY, auth_mode=auth_mode)  # type: ignore[arg-type]
    text = repr(vp)
    assert KEY not in text
    assert KEY not in str(vp)
    assert "api_key='***'" in text
    assert DEFAULT_BASE_URL in text
    assert repr(auth_mode) in text


def test_nothing_logged_carries_the_key(
    rsps: responses.RequestsMock,
    client: VoicePasswordClient,
    caplog: pytest.LogCaptureFixture,
    delays: list[float],
) -> None:
    caplog.set_level(logging.DEBUG)
    rsps.add(responses.POST, SEND, json=SEND_OK)
    rsps.add(responses.POST, GET, body=requests.exceptions.ConnectionError("reset"))
    rsps.add(responses.POST, GET, json={"result": "error", "error_code": "ID_Not_Found"})

    client.flash_call(NUMBER, code="5678")
    with pytest.raises(IdNotFoundError):
        client.state("12345")
    rsps.replace(responses.POST, SEND, body=requests.exceptions.ReadTimeout())
    with pytest.raises(OutcomeUnknownError):
        client.voice_call(NUMBER, code="5678")

    assert caplog.records
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
    # Nor the code or the subscriber's number.
    assert "5678" not in caplog.text
    assert NUMBER not in caplog.text
    assert "outcome unknown" in caplog.text
    assert "retry 1 of 3" in caplog.text


@pytest.mark.parametrize(
    ("key", "echo"),
    [
        (KEY, KEY),
        ("vp/test/key/DO-NOT-LEAK", "vp\\/test\\/key\\/DO-NOT-LEAK"),
    ],
)
def test_an_echoed_key_is_scrubbed_from_answers(
    rsps: responses.RequestsMock, key: str, echo: str
) -> None:
    vp = VoicePasswordClient(key, auth_mode="body")
    body = (
        '{"result": "error", "error_code": "unknown_request", '
        f'"request": {{"security": {{"apiKey": "{echo}"}}, "list": ["{echo}", 1]}}}}'
    )
    rsps.add(responses.POST, SEND, body=body)

    with pytest.raises(UnknownRequestError) as caught:
        vp.flash_call(NUMBER)

    assert key not in json.dumps(caught.value.response)
    assert caught.value.response["request"] == {"security": {"apiKey": "***"}, "list": ["***", 1]}


def test_an_echoed_key_is_scrubbed_from_html_snippets(rsps: responses.RequestsMock) -> None:
    vp = VoicePasswordClient(KEY, get_retries=0)
    # The key straddles the 80-character cut of the snippet.
    rsps.add(responses.POST, GET, body="x" * 70 + KEY + "y" * 100)
    with pytest.raises(TransportError) as caught:
        vp.balance()
    assert "DO-NOT" not in str(caught.value)
    assert "vp-test" not in str(caught.value)


def test_body_mode_sends_no_authorization_header(rsps: responses.RequestsMock) -> None:
    vp = VoicePasswordClient(KEY, auth_mode="body")
    rsps.add(responses.POST, GET, json={"result": "ok", "balance": "1", "currency": "Rub"})
    vp.balance()
    body, headers = sent(rsps)
    assert body == {"security": {"apiKey": KEY}, "request": "balance"}
    assert "Authorization" not in headers


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_key": ""},
        {"api_key": "   "},
        {"api_key": None},
        {"api_key": KEY + "\nX-Evil: 1"},
        {"api_key": KEY + "ключ"},
        {"auth_mode": "query"},
        {"base_url": "vp.voicepassword.ru/api/"},
        {"base_url": None},
        {"timeout": 0},
        {"timeout": None},
        {"timeout": (1.0,)},
        {"timeout": (1.0, None)},
        {"timeout": (1, 2, 3)},
        {"timeout": float("inf")},
        {"timeout": True},
        {"get_retries": -1},
        {"get_retries": 1.5},
        {"get_retries": True},
        {"backoff": -1},
        {"backoff": "1"},
    ],
)
def test_bad_configuration(kwargs: dict[str, Any]) -> None:
    arguments = {"api_key": KEY, **kwargs}
    with pytest.raises(
        ValueError, match=r"^(api_key|auth_mode|base_url|timeout|get_retries|backoff) "
    ):
        VoicePasswordClient(**arguments)


def test_configuration_errors_do_not_quote_the_key() -> None:
    with pytest.raises(ValueError, match="api_key") as caught:
        VoicePasswordClient(KEY + "\r\nX-Evil: 1")
    assert_no_key(caught.value)


def test_configuration_is_normalized(rsps: responses.RequestsMock) -> None:
    vp = VoicePasswordClient(
        f"  {KEY}\n", base_url="http://127.0.0.1:8000/vp", timeout=5, get_retries=0, backoff=0
    )
    rsps.add(
        responses.POST, "http://127.0.0.1:8000/vp/get/", json={"result": "ok", "balance": "1"}
    )
    vp.balance()
    assert sent(rsps)[1]["Authorization"] == KEY


def test_the_own_session_is_pooled_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[requests.Session] = []
    monkeypatch.setattr(requests.Session, "close", lambda self: closed.append(self))
    with VoicePasswordClient(KEY) as vp:
        adapter = vp._session.get_adapter(SEND)
        assert isinstance(adapter, HTTPAdapter)
        assert adapter.max_retries.total == 0
        assert adapter.max_retries.read is False
        assert vp._session.get_adapter("http://127.0.0.1/") is adapter
    assert closed == [vp._session]


def test_the_own_session_keeps_no_cookies(rsps: responses.RequestsMock) -> None:
    vp = VoicePasswordClient(KEY)
    rsps.add(responses.POST, SEND, json=SEND_OK, headers={"Set-Cookie": "PHPSESSID=abc; Path=/"})
    vp.flash_call(NUMBER)
    vp.flash_call(NUMBER)
    assert "Cookie" not in rsps.calls[1].request.headers


def test_the_own_session_reads_the_environment_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    # A netrc entry for the provider: requests would put its password in the
    # Authorization header, in place of the key.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine vp.voicepassword.ru login someone password other-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    sends: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        sends.append((request, kwargs))
        answer = requests.Response()
        answer.status_code = 200
        answer._content = json.dumps(SEND_OK).encode()
        return answer

    monkeypatch.setattr(HTTPAdapter, "send", send)
    vp = VoicePasswordClient(KEY)
    vp.flash_call(NUMBER)
    # Read when the client was built, not at each request.
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.invalid:3128")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    vp.flash_call(NUMBER)
    for request, kwargs in sends:
        assert kwargs["proxies"]["https"] == "http://proxy.invalid:3128"
        assert kwargs["verify"] == str(tmp_path / "ca.pem")
        assert request.headers["Authorization"] == KEY
    assert len(sends) == 2

    monkeypatch.setenv("NO_PROXY", "vp.voicepassword.ru")
    VoicePasswordClient(KEY).flash_call(NUMBER)
    assert "https" not in sends[-1][1]["proxies"]


def test_the_client_imports_no_django() -> None:
    code = (
        "import sys, django_voicepassword.client; "
        "sys.exit(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_given_session_is_used_and_left_open(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[requests.Session] = []
    monkeypatch.setattr(requests.Session, "close", lambda self: closed.append(self))
    session = requests.Session()
    session.headers["X-Site"] = "demo"
    rsps.add(responses.POST, SEND, json=SEND_OK)
    with VoicePasswordClient(KEY, session=session) as vp:
        vp.flash_call(NUMBER)
    assert sent(rsps)[1]["X-Site"] == "demo"
    assert closed == []


class _OtherAdapter(BaseAdapter):
    def send(self, *args: Any, **kwargs: Any) -> requests.Response:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        pass


@pytest.mark.parametrize(
    ("adapter", "accepted"),
    [
        (HTTPAdapter(), True),
        (HTTPAdapter(max_retries=Retry(total=False)), True),
        (HTTPAdapter(max_retries=Retry(total=3, read=False, other=0)), True),
        (HTTPAdapter(max_retries=Retry(total=3, read=0, other=0, status=0)), True),
        (
            HTTPAdapter(max_retries=Retry(total=3, read=False, other=0, status_forcelist=[502])),
            True,
        ),
        (HTTPAdapter(max_retries=3), False),
        (HTTPAdapter(max_retries=Retry(total=3, read=3, other=0, allowed_methods=None)), False),
        (
            HTTPAdapter(
                max_retries=Retry(
                    total=3, read=False, other=0, status_forcelist=[502], allowed_methods=["POST"]
                )
            ),
            False,
        ),
        (_OtherAdapter(), True),
    ],
)
def test_a_given_session_must_not_resend(adapter: BaseAdapter, accepted: bool) -> None:
    session = requests.Session()
    session.mount("https://", adapter)
    if accepted:
        VoicePasswordClient(KEY, session=session).close()
    else:
        with pytest.raises(ValueError, match="max_retries=0"):
            VoicePasswordClient(KEY, session=session)
    session.close()


# --------------------------------------------------------------------------- real sockets


class RawServer:
    """A one-trick HTTP peer on 127.0.0.1 that counts the requests it reads.

    ``responses`` replaces the adapter, so it cannot show what urllib3 does
    with a dropped connection; this does.
    """

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/voice-password/"

    def serve(self) -> None:
        # A closed listener does not wake a blocked accept(): poll instead.
        self.listener.settimeout(0.05)
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                if self.behaviour == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif self.behaviour == "slow":
                    self.done.wait(5)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("raw_server", ["close", "reset", "slow"], indirect=True)
def test_send_after_the_request_went_out_is_sent_once(raw_server: RawServer) -> None:
    with (
        VoicePasswordClient(KEY, base_url=raw_server.base_url, timeout=(2, 0.3)) as vp,
        pytest.raises(OutcomeUnknownError) as caught,
    ):
        vp.flash_call(NUMBER)
    assert len(raw_server.requests) == 1
    assert raw_server.requests[0].startswith(b"POST /api/voice-password/send/ ")
    assert_exception_clean(caught.value)


@pytest.mark.parametrize("raw_server", ["close"], indirect=True)
def test_get_retries_on_a_real_dropped_connection(
    raw_server: RawServer, delays: list[float]
) -> None:
    with (
        VoicePasswordClient(KEY, base_url=raw_server.base_url, get_retries=2) as vp,
        pytest.raises(TransportError) as caught,
    ):
        vp.balance()
    assert type(caught.value) is TransportError
    assert len(raw_server.requests) == 3


def test_send_to_a_closed_port_is_not_sent() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    # Nothing listens there now: the connection is refused before any byte is sent.
    with (
        VoicePasswordClient(KEY, base_url=f"http://127.0.0.1:{port}/") as vp,
        pytest.raises(TransportError) as caught,
    ):
        vp.flash_call(NUMBER)
    assert type(caught.value) is TransportError
    assert "not sent" in str(caught.value)
    assert_exception_clean(caught.value)


def test_errors_share_one_base() -> None:
    for klass in (TransportError, OutcomeUnknownError, APIError):
        assert issubclass(klass, VoicePasswordError)
