"""Bad callback bodies: a 4xx that says what is wrong, never a 5xx, and nothing written.

The token in these requests is valid, so everything here reaches the parser
and the serializer. Each refusal is checked against a snapshot of every call
and event: a refused body writes nothing. A value that the database would
refuse (``\\u0000`` on PostgreSQL, SQLite's JSON depth limit, a price too
large for its column) must be refused here, as a 400, on every backend; the
service tier runs the same tests on PostgreSQL.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.template.response import SimpleTemplateResponse
from django.test import RequestFactory, override_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from django_voicepassword.api.parsers import _may_be_unstorable, _unstorable
from django_voicepassword.api.views import CallbackView
from django_voicepassword.callbacks import callback_token
from django_voicepassword.models import Call, CallbackEvent
from tests.test_callbacks import (
    CALL_ID,
    DATE,
    MOSCOW,
    NUMBER,
    OTHER_ID,
    SMS_ID,
    callback,
    deliver,
    path_of,
    snapshot,
)

Status = Call.Status
LIMIT = 4096  # CALLBACK_MAX_BODY's default


@pytest.fixture
def nothing_yet(db) -> Call:
    """A placed call with no price, duration or date yet."""
    return Call.objects.create(
        channel=Call.Channel.FLASH_CALL, number=NUMBER, provider_id=CALL_ID, status=Status.PLACED
    )


@pytest.fixture
def call(db) -> Call:
    call = Call.objects.create(
        channel=Call.Channel.FLASH_CALL, number=NUMBER, provider_id=CALL_ID, status=Status.PLACED
    )
    Call.objects.create(
        channel=Call.Channel.SMS,
        number=NUMBER,
        provider_id=SMS_ID,
        parent=call,
        status=Status.PLACED,
    )
    return call


def refused(answer: Any, status: int, *needles: str) -> str:
    """Assert ``answer`` is ``status`` with a message holding every needle; return it."""
    assert answer.status_code == status, answer.content
    text = json.dumps(json.loads(answer.content), ensure_ascii=False)
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def raw(fields: str) -> str:
    """A callback whose last members are ``fields``, written as JSON text."""
    return f'{{"id": "{CALL_ID}", "number": "{NUMBER}", "state": "BUSY", {fields}}}'


# --------------------------------------------------------------------------- media type


# The document says only that statuses come "in JSON format" and mentions no
# retries: a callback refused for its media type is lost.
ANY_TYPE = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",  # PHP curl's default for a string body
    "application/xml",
    "text/json",
    "application/jsonp",
    "application/octet-stream",
    "",
]


@pytest.mark.parametrize("content_type", ANY_TYPE)
def test_a_json_body_is_read_whatever_its_content_type(client, call, content_type):
    body = json.dumps(callback("BUSY"))
    answer = client.generic("POST", path_of(call), body.encode(), content_type=content_type)
    assert answer.status_code == 200, answer.content
    assert answer.json()["outcome"] == "applied"
    event = CallbackEvent.objects.get()
    assert event.payload == callback("BUSY")
    call.refresh_from_db()
    assert call.status == Status.BUSY


FORM = (
    f"id={CALL_ID}&number={NUMBER}&duration=1&state=NO+ANSWER&price=0.35"
    "&date=2020-02-02+15%3A18%3A48&extra="
)


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", ""])
def test_form_fields_are_read(client, call, content_type):
    answer = client.generic("POST", path_of(call), FORM.encode(), content_type=content_type)
    assert answer.status_code == 200, answer.content
    call.refresh_from_db()
    assert (call.status, call.price, call.provider_date) == (
        Status.NO_ANSWER,
        Decimal("0.35"),
        MOSCOW,
    )
    assert CallbackEvent.objects.get().payload == {
        "id": CALL_ID,
        "number": NUMBER,
        "duration": "1",
        "state": "NO ANSWER",
        "price": "0.35",
        "date": DATE,
        "extra": "",
    }


def test_a_form_from_the_test_client_is_read(client, call):
    """``client.post(data=dict)`` sends multipart; the same fields urlencoded are read."""
    answer = client.post(
        path_of(call),
        data=urlencode(callback("BUSY")),
        content_type="application/x-www-form-urlencoded; charset=utf-8",
    )
    assert answer.status_code == 200, answer.content
    assert CallbackEvent.objects.get().payload == callback("BUSY")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"BUSY", "bad query field"),
        (b"id=1001&number=79990000001&state", "bad query field"),
        (f"id={CALL_ID}&id={OTHER_ID}&number={NUMBER}&state=BUSY".encode(), "given twice"),
        (b"id=1001&number=79990000001&state=%FF", "not UTF-8"),
        (b"id=1001&number=79990000001&state=\xff", "not UTF-8"),
        (b"id=1001&number=79990000001&state=BUSY&x=%00", "\\u0000"),
        (b"&".join(b"f%d=" % i for i in range(65)), "Max number of fields"),
    ],
)
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_a_body_that_is_neither_json_nor_form_fields_is_400(
    client, call, body, needle, content_type
):
    before = snapshot()
    answer = client.generic("POST", path_of(call), body, content_type=content_type)
    refused(answer, 400, "neither JSON nor form fields", needle)
    assert snapshot() == before


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data; boundary=xyz", "multipart/form-data", "MULTIPART/mixed"]
)
def test_a_multipart_body_is_415(client, call, content_type):
    before = snapshot()
    body = json.dumps(callback("BUSY"))
    answer = client.generic("POST", path_of(call), body.encode(), content_type=content_type)
    refused(answer, 415, "Unsupported media type")
    assert snapshot() == before


def test_a_form_declared_json_is_read_as_json(client, call):
    before = snapshot()
    refused(deliver(client, call, FORM), 400, "not valid JSON")
    assert snapshot() == before


def test_json_with_a_charset_parameter_is_json(client, call):
    body = json.dumps(callback("BUSY"), ensure_ascii=False)
    answer = client.post(
        path_of(call), data=body.encode(), content_type="application/json; charset=utf-8"
    )
    assert answer.status_code == 200


# --------------------------------------------------------------------------- size


def padded(size: int) -> bytes:
    """A valid callback of exactly ``size`` bytes (the padding is an extra field)."""
    head = json.dumps({**callback("BUSY"), "pad": ""})
    body = head[:-2] + "x" * (size - len(head)) + head[-2:]
    assert len(body) == size
    return body.encode()


def test_a_body_of_exactly_the_limit_is_read(client, call):
    assert deliver(client, call, padded(LIMIT)).status_code == 200


def test_a_body_over_the_limit_is_413(client, call):
    before = snapshot()
    refused(deliver(client, call, padded(LIMIT + 1)), 413, "too large")
    assert snapshot() == before


def test_the_limit_is_a_setting(client, call):
    with override_settings(VOICEPASSWORD={"CALLBACK_MAX_BODY": 200}):
        refused(deliver(client, call, padded(201)), 413)
        assert deliver(client, call, padded(200)).status_code == 200


@pytest.mark.parametrize("declared", [LIMIT + 1, 10**6, 3 * 2**20, 10**12])
def test_a_declared_length_over_the_limit_is_413_before_reading(client, call, declared):
    """The test client's stream asserts if read past the body: 413 comes first.

    Over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB), Django itself would refuse
    the body with an HTML 400 if the view read it.
    """
    before = snapshot()
    answer = client.generic(
        "POST",
        path_of(call),
        json.dumps(callback("BUSY")),
        content_type="application/json",
        CONTENT_LENGTH=str(declared),
    )
    refused(answer, 413, "too large")
    assert snapshot() == before


def test_a_declared_length_shorter_than_the_body_cuts_it(client, call):
    """A WSGI server reads Content-Length bytes: the rest never reaches the view."""
    before = snapshot()
    answer = client.generic(
        "POST",
        path_of(call),
        json.dumps(callback("BUSY")),
        content_type="application/json",
        CONTENT_LENGTH="20",
    )
    refused(answer, 400, "not valid JSON")
    assert snapshot() == before


def _direct(call: Call, stream: bytes, meta: dict[str, str]) -> Any:
    """Run the view on a request whose body stream is ``stream`` whatever it declares.

    As under a server that does not cut the body to Content-Length (ASGI
    reads the whole body), which the test client's WSGI stream cannot show.
    """
    request = RequestFactory().generic("POST", path_of(call), b"", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    request.META.update(CONTENT_TYPE="application/json", **meta)
    request._stream = io.BytesIO(stream)
    response = CallbackView.as_view()(request, token=callback_token(call.pk))
    if isinstance(response, SimpleTemplateResponse):
        # DRF's refusals render late; a stored callback's answer is plain.
        response.render()
    return response


@pytest.mark.parametrize("declared", ["10", "100", str(LIMIT)])
def test_a_body_longer_than_it_declares_is_measured_itself(call, declared):
    before = snapshot()
    answer = _direct(call, padded(LIMIT + 500), {"CONTENT_LENGTH": declared})
    refused(answer, 413, "too large")
    assert snapshot() == before


@pytest.mark.parametrize("meta", [{}, {"CONTENT_LENGTH": ""}, {"CONTENT_LENGTH": "abc"}])
def test_a_body_without_a_usable_length_is_not_read(call, meta):
    """Without Content-Length, DRF does not read the body at all: the fields are missing."""
    before = snapshot()
    refused(_direct(call, padded(LIMIT + 500), meta), 400, "id", "required")
    refused(_direct(call, json.dumps(callback("BUSY")).encode(), meta), 400, "required")
    assert snapshot() == before


def test_a_body_with_its_length_declared_is_applied_directly(call):
    body = json.dumps(callback("BUSY")).encode()
    answer = _direct(call, body, {"CONTENT_LENGTH": str(len(body))})
    assert answer.status_code == 200
    assert CallbackEvent.objects.get().outcome == CallbackEvent.Outcome.APPLIED


# --------------------------------------------------------------------------- not JSON

NOT_JSON: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "unclosed": (b"{", ("not valid JSON", "Expecting property name")),
    "single quotes": (b"{'id': 1}", ("not valid JSON", "double quotes")),
    "trailing data": (json.dumps(callback("BUSY")).encode() + b" x", ("Extra data",)),
    "two objects": (json.dumps(callback("BUSY")).encode() * 2, ("Extra data",)),
    "not utf-8": (b'{"id": "\xff"}', ("not UTF-8 at byte 8",)),
    "latin-1": (raw('"x": "caf\xe9"').encode("latin-1"), ("not UTF-8",)),
    "bom": (b"\xef\xbb\xbf" + json.dumps(callback("BUSY")).encode(), ("BOM",)),
    "NaN": (raw('"price": NaN').encode(), ("NaN is not valid JSON",)),
    "Infinity": (raw('"x": Infinity').encode(), ("Infinity is not valid JSON",)),
    "-Infinity": (raw('"x": [-Infinity]').encode(), ("-Infinity is not valid JSON",)),
    "1e400": (raw('"x": 1e400').encode(), ("1e400 is out of range",)),
    "-1e400": (raw('"x": {"y": -1e400}').encode(), ("out of range",)),
    "huge integer": (raw(f'"x": {"9" * 4301}').encode(), ("4300",)),
    "NUL in an extra": (raw('"x": "a\\u0000b"').encode(), ("\\\\u0000",)),
    "NUL in the state": (b'{"id": "1", "number": "1", "state": "BU\\u0000SY"}', ("\\\\u0000",)),
    "NUL in a key": (raw('"\\u0000": 1').encode(), ("\\\\u0000",)),
    "NUL in a nested key": (raw('"x": [{"\\u0000": 1}]').encode(), ("\\\\u0000",)),
    "lone surrogate in the state": (
        b'{"id": "1", "number": "1", "state": "\\ud800"}',
        ("unpaired surrogate",),
    ),
    "lone surrogate in an extra": (raw('"x": ["\\udfff"]').encode(), ("unpaired surrogate",)),
    "lone surrogate in a key": (raw('"\\ud83d": 1').encode(), ("unpaired surrogate",)),
    "nested 33 deep": (raw('"x": ' + "[" * 32 + "]" * 32).encode(), ("deeper than 32",)),
    "objects nested 40 deep": (
        raw('"x": ' + '{"a": ' * 40 + "1" + "}" * 40).encode(),
        ("deeper than 32",),
    ),
    # Python 3.11's parser gives up (RecursionError) before the depth check
    # runs; 3.12 and later parse it and the check refuses it: both are 400.
    "arrays 5000 deep": (b"[" * 5000 + b"]" * 5000, ("The body is not valid JSON.",)),
    # Deep enough that the json module itself gives up (RecursionError).
    "arrays 20000 deep": (b"[" * 20000 + b"]" * 20000, ("nested too deeply",)),
    "objects 20000 deep": (b'{"a":' * 20000 + b"1" + b"}" * 20000, ("nested too deeply",)),
}


@pytest.mark.parametrize("case", list(NOT_JSON))
def test_a_body_that_is_not_strict_storable_json_is_400(client, call, case):
    body, needles = NOT_JSON[case]
    before = snapshot()
    with override_settings(VOICEPASSWORD={"CALLBACK_MAX_BODY": 200_000}):
        answer = deliver(client, call, body)
    refused(answer, 400, *needles)
    assert snapshot() == before


def test_a_surrogate_pair_is_a_character_not_a_surrogate(client, call):
    body = raw('"x": "\\ud83d\\ude00"')
    assert deliver(client, call, body).status_code == 200
    assert CallbackEvent.objects.get().payload["x"] == "\U0001f600"


def test_nesting_up_to_the_limit_is_kept(client, call):
    body = raw('"x": ' + "[" * 31 + "]" * 31)
    assert deliver(client, call, body).status_code == 200


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[]", "Expected a dictionary, but got list"),
        (b"[1, 2]", "Expected a dictionary, but got list"),
        (b'"BUSY"', "Expected a dictionary, but got str"),
        (b"1", "Expected a dictionary, but got int"),
        (b"1.5", "Expected a dictionary, but got float"),
        (b"true", "Expected a dictionary, but got bool"),
        (b"null", "No data provided"),
        (b"{}", "This field is required"),
        (b"", "This field is required"),  # no body at all: no fields
    ],
)
def test_a_body_that_is_not_an_object_is_400(client, call, body, needle):
    before = snapshot()
    refused(deliver(client, call, body), 400, needle)
    assert snapshot() == before


# --------------------------------------------------------------------------- fields


@pytest.mark.parametrize("field", ["id", "number", "state"])
def test_a_missing_required_field_is_400(client, call, field):
    body = callback("BUSY")
    del body[field]
    before = snapshot()
    answer = deliver(client, call, body)
    assert answer.json() == {field: ["This field is required."]}
    refused(answer, 400)
    assert snapshot() == before


NUMERIC = ("duration", "price")
OPTIONAL = ("duration", "price", "date")
WRONG: list[tuple[Any, str]] = [
    ([], "Must be a string or an integer."),
    (["1"], "Must be a string or an integer."),
    ({}, "Must be a string or an integer."),
    ({"value": "1"}, "Must be a string or an integer."),
    (True, "Must be a string or an integer."),
    (False, "Must be a string or an integer."),
    (0.35, "Must be a string or an integer."),
    (None, "This field may not be null."),
    ("1" * 65, "Must be at most 64 characters."),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            field,
            value,
            message.replace("an integer", "a number") if field in NUMERIC else message,
        )
        for field in ("id", "number", "state", "duration", "price", "date")
        for value, message in WRONG
        # Numbers with a fraction are prices and durations; null is "none" when optional.
        if not (isinstance(value, float) and field in NUMERIC)
        and not (value is None and field in OPTIONAL)
    ],
)
def test_a_field_of_the_wrong_type_is_400_and_named(client, call, field, value, message):
    before = snapshot()
    answer = deliver(client, call, {**callback("BUSY"), field: value})
    assert answer.json() == {field: [message]}
    refused(answer, 400)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("fields", "needles"),
    [
        ({"id": "abc"}, ("id: expected digits", "abc")),
        ({"id": "-1"}, ("id: expected digits",)),
        ({"id": -1}, ("id: expected digits",)),
        ({"id": "1.0"}, ("id: expected digits",)),
        ({"id": ""}, ("id: expected digits",)),
        ({"id": "\u0661\u0662"}, ("id: expected digits",)),  # Arabic-Indic digits
        ({"id": "1" * 33}, ("id: at most 32 digits",)),
        ({"id": 10**39}, ("id: at most 32 digits",)),
        ({"state": ""}, ("state", "may not be blank")),
        ({"state": "   "}, ("state", "may not be blank")),
        ({"date": "yesterday"}, ("date: expected 'YYYY-MM-DD HH:MM:SS'",)),
        ({"date": "2020-13-01 00:00:00"}, ("date: no such date",)),
        ({"date": "2020-02-30 10:00:00"}, ("date: no such date",)),
        ({"date": "2020-02-02 24:00:00"}, ("date: no such date",)),
        ({"date": "2020-02-02"}, ("date: expected",)),
        ({"date": "02.02.2020"}, ("date: expected",)),
        ({"date": 20200202}, ("date: expected 'YYYY-MM-DD HH:MM:SS'", "20200202")),
        ({"date": "0001-01-01 00:00:00"}, ("date: out of range",)),
        ({"date": "1969-12-31 23:59:59"}, ("date: out of range",)),
        ({"date": "9999-12-31 23:59:59"}, ("date: out of range",)),
        ({"price": "-1"}, ("price: expected a decimal number",)),
        ({"price": -1}, ("price: expected a decimal number",)),
        ({"price": "1e3"}, ("price: expected a decimal number",)),
        ({"price": "abc"}, ("price: expected a decimal number",)),
        ({"price": "0.35 RUB"}, ("price: expected a decimal number",)),
        ({"price": "NaN"}, ("price: expected a decimal number",)),
        ({"price": "100000000"}, ("price: at most 8 digits before the point",)),
        ({"price": "99999999.99995"}, ("price: at most 8 digits",)),  # rounds up to 10**8
        ({"price": "9" * 60}, ("price: at most 8 digits",)),
        ({"price": 10**20}, ("price: at most 8 digits",)),
        ({"duration": "-1"}, ("duration: expected seconds",)),
        ({"duration": -1}, ("duration: expected seconds",)),
        ({"duration": "abc"}, ("duration: expected seconds",)),
        ({"duration": "1.5"}, ("duration: expected seconds",)),
        ({"duration": "1:99"}, ("duration: expected seconds",)),
        ({"duration": "1:60:00"}, ("duration: minutes must be below 60",)),
        ({"duration": "1" * 10}, ("duration: expected seconds",)),
        ({"duration": 10**9}, ("duration: expected seconds",)),
    ],
)
def test_a_garbage_value_is_400_and_named(client, call, fields, needles):
    before = snapshot()
    refused(deliver(client, call, {**callback("BUSY"), **fields}), 400, *needles)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("fields", "column", "stored"),
    [
        ({"price": "99999999.9999"}, "price", Decimal("99999999.9999")),
        ({"price": "0.123456"}, "price", Decimal("0.1235")),
        ({"id": "1" * 32}, None, None),
        ({"date": "1970-01-01 03:00:00"}, "provider_date", None),
        ({"date": "9998-12-31 23:59:59"}, "provider_date", None),
        ({"duration": 10**9 - 1}, "duration", None),
    ],
)
def test_values_at_the_edges_are_stored(client, call, fields, column, stored):
    answer = deliver(client, call, {**callback("BUSY"), **fields})
    assert answer.status_code == 200
    call.refresh_from_db()
    if column is not None:
        assert getattr(call, column) is not None
    if stored is not None:
        assert getattr(call, column) == stored
    assert CallbackEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "price", "duration"),
    [
        ({"price": 0.35}, Decimal("0.35"), timedelta(seconds=1)),
        ({"price": 3.3, "duration": 12}, Decimal("3.3"), timedelta(seconds=12)),
        ({"price": 1e-05}, Decimal("0.0000"), timedelta(seconds=1)),
        ({"duration": 1.5}, Decimal("0.35"), timedelta(seconds=1.5)),
        ({"duration": None}, Decimal("0.35"), None),
        ({"duration": None, "price": None, "date": None}, None, None),
    ],
)
def test_numeric_prices_and_null_durations_are_read(client, nothing_yet, fields, price, duration):
    """``"price": 0.35`` and ``"duration": null`` are JSON, and no reason to lose a status."""
    answer = deliver(client, nothing_yet, {**callback("BUSY"), **fields})
    assert answer.status_code == 200, answer.content
    assert answer.json()["outcome"] == "applied"
    nothing_yet.refresh_from_db()
    assert (nothing_yet.status, nothing_yet.price, nothing_yet.duration) == (
        Status.BUSY,
        price,
        duration,
    )
    assert CallbackEvent.objects.get().payload == {**callback("BUSY"), **fields}


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"price": -0.35}, "price: negative"),
        ({"duration": -1.0}, "duration: not a non-negative"),
        ({"duration": 1e10}, "duration: not a non-negative"),
        ({"price": 1e300}, "price: at most 8 digits"),
    ],
)
def test_bad_numbers_are_still_400(client, call, fields, needle):
    before = snapshot()
    refused(deliver(client, call, {**callback("BUSY"), **fields}), 400, needle)
    assert snapshot() == before


# --------------------------------------------------------------------------- fuzz

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    # Every code point, the NUL and unpaired surrogates included.
    | st.text(st.characters(exclude_categories=()), max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(st.characters(exclude_categories=()), max_size=6), children)
    ),
    max_leaves=12,
)
# Values a callback's fields may hold: mostly good, some bad, so that many
# bodies are valid and the rest are wrong in one field or a few.
GOOD: dict[str, list[Any]] = {
    "id": [CALL_ID, SMS_ID, OTHER_ID, int(CALL_ID), " 1001 ", "7"],
    "number": [NUMBER, int(NUMBER), "", "+7 999 000-00-01"],
    "state": ["BUSY", "ANSWERED", "QUEUED", "SEND", "DELIVERED", "Дозвон", "Занято", "?"],
    "duration": ["1", 1, "00:04", "", "1:02:03"],
    "price": ["0.35", 3, "0,35", "", "3.30"],
    "date": [DATE, "11.09.2020 13:34:39", ""],
}
BAD: dict[str, list[Any]] = {
    "id": ["1" * 33, "x", -1, ""],
    "number": [None, []],
    "state": ["", " ", "x" * 65],
    "duration": ["-1", "1:99", 10**9],
    "price": ["-1", "1e3", "100000000"],
    "date": ["2020-02-30 10:00:00", 1, "0001-01-01 00:00:00"],
}
field_values = {
    name: st.sampled_from(GOOD[name]) | st.sampled_from(GOOD[name] + BAD[name]) for name in GOOD
}
REQUIRED = ("id", "number", "state")
near_callbacks = (
    # The required fields, each optional field or not, and perhaps an extra one.
    st.fixed_dictionaries(
        {name: field_values[name] for name in REQUIRED},
        optional={
            **{name: field_values[name] for name in GOOD if name not in REQUIRED},
            "extra": json_values,
        },
    )
    # Any subset of the fields.
    | st.fixed_dictionaries({}, optional={**field_values, "id ": json_values})
    # A valid callback with one field anything at all.
    | st.sampled_from(list(GOOD)).flatmap(
        lambda name: st.fixed_dictionaries(
            {**{key: st.just(value) for key, value in callback("BUSY").items()}, name: json_values}
        )
    )
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "application/json;",
        "application/json; boundary",
        "text/plain",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "",
    ]
) | st.text(max_size=40)

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check_fuzzed(client, call: Call, body: bytes, content_type: str, accept: str = "") -> None:
    before = snapshot()
    # generic(): post() would re-encode the bytes to the content type's charset.
    answer = client.generic(
        "POST", path_of(call), body, content_type=content_type, HTTP_ACCEPT=accept
    )
    assert answer.status_code < 500
    event(f"HTTP {answer.status_code}")
    assert answer.status_code in (200, 400, 413, 415), answer.status_code
    events, _rows = snapshot()
    if answer.status_code == 200 and answer.json()["outcome"] == "dropped":
        # Over CALLBACK_MAX_EVENTS (the examples share one call): no event.
        assert events == before[0]
    elif answer.status_code == 200:
        assert len(events) == len(before[0]) + 1
        assert events[:-1] == before[0]
        assert answer.json()["outcome"] == events[-1]["outcome"]
    else:
        assert snapshot() == before
        assert answer.json()  # a message, in JSON


@settings(max_examples=300, deadline=None)
@given(value=json_values, ascii_only=st.booleans())
def test_the_parser_skips_the_storable_check_only_when_it_cannot_fail(value, ascii_only):
    """A body without ``\\u`` escapes and with few brackets cannot be unstorable."""
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        text = body.decode("utf-8")
        parsed = json.loads(text)
    except ValueError:  # an unpaired surrogate written raw: not UTF-8, refused earlier
        return
    if _unstorable(parsed) is not None:
        assert _may_be_unstorable(text)


@FUZZ
@given(body=json_values | near_callbacks)
def test_fuzz_json_values(client, call, body):
    # ensure_ascii keeps unpaired surrogates encodable; NaN and Infinity pass through.
    check_fuzzed(client, call, json.dumps(body).encode(), "application/json")


@FUZZ
@given(body=near_callbacks)
def test_fuzz_callbacks_unescaped(client, call, body):
    text = json.dumps(body, ensure_ascii=False)
    check_fuzzed(client, call, text.encode("utf-8", "surrogatepass"), "application/json")


@FUZZ
@given(
    body=st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode()),
    content_type=content_types,
    accept=st.sampled_from(["", "*/*", "application/json", "text/html"]) | st.text(max_size=20),
)
def test_fuzz_bytes_content_types_and_accept_headers(client, call, body, content_type, accept):
    check_fuzzed(client, call, body, content_type, accept)


def form_encoded(fields: dict[str, Any]) -> bytes:
    """``fields`` as a form body, non-strings as their JSON text (surrogates kept raw)."""
    text = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in fields.items()
    }
    return urlencode(text, encoding="utf-8", errors="surrogatepass").encode()


@FUZZ
@given(
    body=near_callbacks.map(form_encoded)
    | near_callbacks.map(lambda fields: json.dumps(fields).encode()),
    content_type=st.sampled_from([*ANY_TYPE, "application/json"]),
)
def test_fuzz_forms_and_json_under_any_content_type(client, call, body, content_type):
    """Form fields and JSON under every content type: 200, 400 or 413, never a 5xx."""
    check_fuzzed(client, call, body, content_type)


def numbers_as_decimals(value: Any) -> Any:
    """``value`` with its numbers as decimals: PostgreSQL's jsonb keeps a number's
    decimal value, not its Python type (``3.6e16`` comes back as an integer)."""
    if isinstance(value, dict):
        return {key: numbers_as_decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [numbers_as_decimals(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(repr(value))
    return value


@FUZZ
@given(body=near_callbacks)
@override_settings(VOICEPASSWORD={"CALLBACK_MAX_EVENTS": 10_000})
def test_fuzz_valid_bodies_are_applied_and_recorded(client, call, body):
    """Whatever the view accepts, it records once, verbatim."""
    before = CallbackEvent.objects.count()
    answer = deliver(client, call, json.dumps(body))
    assert answer.status_code in (200, 400), answer.content
    if answer.status_code == 200:
        event = CallbackEvent.objects.order_by("pk").last()
        assert event is not None
        assert CallbackEvent.objects.count() == before + 1
        assert numbers_as_decimals(event.payload) == numbers_as_decimals(body)
        assert event.provider_id == str(body["id"]).strip()
        assert event.state == str(body["state"])


def test_extra_numbers_keep_their_value_on_every_backend(client, call):
    body = {**callback("BUSY"), "extra": [3.676048097897979e16, -0.0, 1e-300, 10**30, 0.1, 7]}
    assert deliver(client, call, json.dumps(body)).status_code == 200
    event = CallbackEvent.objects.get()
    assert numbers_as_decimals(event.payload) == numbers_as_decimals(body)


# --------------------------------------------------------------------------- one parse


def test_the_view_parses_once_and_builds_no_serializer(client, call, monkeypatch):
    """The body is read by CallbackParser once; the serializer's rules run without it.

    request.data and a CallbackSerializer per callback were about a third of
    the view's cost; the answers must not change (the rest of this file).
    """
    from django_voicepassword.api import parsers, serializers

    parsed: list[bytes] = []
    original = parsers._parse_json

    def counting(body: bytes) -> Any:
        parsed.append(body)
        return original(body)

    def no_serializer(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the view built a serializer")

    monkeypatch.setattr(parsers, "_parse_json", counting)
    monkeypatch.setattr(serializers.CallbackSerializer, "__init__", no_serializer)
    answer = deliver(client, path_of(call), callback("BUSY"))
    assert answer.status_code == 200, answer.content
    assert len(parsed) == 1
    refused(deliver(client, path_of(call), {"id": CALL_ID}), 400, "This field is required")
