"""The client's public parsing functions: examples, round trips and garbage.

Every parser either returns a value of its type or raises ``ValueError``:
hypothesis feeds them arbitrary input to hold them to that.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_voicepassword import client as client_module
from django_voicepassword.client import (
    PROVIDER_TZ,
    CallRecord,
    CallState,
    parse_callback,
    parse_datetime,
    parse_duration,
    parse_id,
    parse_price,
    parse_record,
    parse_state,
)

#: Anything a JSON decoder (or a careless caller) can hand a parser.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
digits = st.text(alphabet="0123456789", min_size=1, max_size=20)


def only_value_error(parser: Any, value: Any) -> Any:
    """Call ``parser``; a ``ValueError`` is an answer, any other exception a bug."""
    try:
        return parser(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- parse_price


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.35", Decimal("0.35")),
        ("3.30", Decimal("3.30")),
        ("0,35", Decimal("0.35")),
        (" 999.00 ", Decimal("999.00")),
        ("3", Decimal(3)),
        ("3.", Decimal(3)),
        (".5", Decimal("0.5")),
        (0, Decimal(0)),
        (3, Decimal(3)),
        (0.35, Decimal("0.35")),
        (1e16, Decimal("1E+16")),
        (Decimal("0.350"), Decimal("0.350")),
    ],
)
def test_parse_price(value: Any, expected: Decimal) -> None:
    assert parse_price(value) == expected
    assert str(parse_price(value)) == str(expected)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "-0.35",
        "+0.35",
        "NaN",
        "Infinity",
        "1e3",
        "0.3.5",
        "1 000",
        "٣",
        "0x10",
        "1" * 65,
        float("nan"),
        float("inf"),
        -0.35,
        -1,
        True,
        None,
        [],
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("-Infinity"),
        Decimal("-0.35"),
        10**70,
    ],
)
def test_parse_price_garbage(value: Any) -> None:
    with pytest.raises(ValueError, match="price"):
        parse_price(value)


@given(st.decimals(min_value=0, max_value=10**12, places=4, allow_nan=False))
def test_parse_price_round_trip(value: Decimal) -> None:
    text = format(value, "f")
    assert parse_price(text) == value
    assert parse_price(text.replace(".", ",")) == value


@given(st.integers(min_value=0, max_value=10**30))
def test_parse_price_int(value: int) -> None:
    assert parse_price(value) == value
    assert parse_price(str(value)) == value


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_parse_price_float(value: float) -> None:
    assert parse_price(value) == Decimal(repr(value))


@given(json_values)
def test_parse_price_only_raises_value_error(value: Any) -> None:
    result = only_value_error(parse_price, value)
    assert result is None or (isinstance(result, Decimal) and result.is_finite() and result >= 0)


# --------------------------------------------------------------------------- parse_datetime


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-02-02 15:18:48", datetime(2020, 2, 2, 15, 18, 48)),
        ("2020-02-02T15:18:48", datetime(2020, 2, 2, 15, 18, 48)),
        (" 11.09.2020 13:34:39 ", datetime(2020, 9, 11, 13, 34, 39)),
        ("1.9.2020 3:04:05", datetime(2020, 9, 1, 3, 4, 5)),
    ],
)
def test_parse_datetime(value: str, expected: datetime) -> None:
    parsed = parse_datetime(value)
    assert parsed == expected.replace(tzinfo=PROVIDER_TZ)
    assert parsed.utcoffset() == timedelta(hours=3)


def test_parse_datetime_passes_datetimes_through() -> None:
    aware = datetime(2020, 2, 2, 12, 0, tzinfo=UTC)
    assert parse_datetime(aware) is aware
    assert parse_datetime(datetime(2020, 2, 2, 15, 0)).tzinfo is PROVIDER_TZ


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2020-02-02",
        "02.02.2020",
        "2020-02-30 10:00:00",
        "31.04.2020 10:00:00",
        "2020-02-02 24:00:00",
        "2020-02-02 10:60:00",
        "2020/02/02 10:00:00",
        "02.02.20 10:00:00",
        1580645928,
        None,
    ],
)
def test_parse_datetime_garbage(value: Any) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_datetime(value)


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_parse_datetime_round_trip(value: datetime) -> None:
    value = value.replace(microsecond=0)
    iso = f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value:%H:%M:%S}"
    russian = f"{value.day:02d}.{value.month:02d}.{value.year:04d} {value:%H:%M:%S}"
    for text in (iso, russian):
        parsed = parse_datetime(text)
        assert parsed.tzinfo is PROVIDER_TZ
        assert parsed.replace(tzinfo=None) == value


@given(json_values)
def test_parse_datetime_only_raises_value_error(value: Any) -> None:
    result = only_value_error(parse_datetime, value)
    assert result is None or (isinstance(result, datetime) and result.tzinfo is not None)


# --------------------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", 1),
        (1, 1),
        (1.5, 1.5),
        ("00:04", 4),
        ("0:04", 4),
        ("01:30", 90),
        ("75:00", 75 * 60),
        ("1:02:03", 3723),
        (" 00:00 ", 0),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-1",
        "1.5",
        "00:60",
        "1:60:00",
        "1:2:3:4",
        "abc",
        "1234567890",
        -1,
        10**9,
        float("nan"),
        -0.5,
        True,
        None,
        [1],
    ],
)
def test_parse_duration_garbage(value: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@given(st.integers(min_value=0, max_value=10**9 - 1))
def test_parse_duration_seconds_round_trip(seconds: int) -> None:
    assert parse_duration(str(seconds)) == timedelta(seconds=seconds)
    assert parse_duration(seconds) == timedelta(seconds=seconds)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=59))
def test_parse_duration_minutes_round_trip(minutes: int, seconds: int) -> None:
    assert parse_duration(f"{minutes:02d}:{seconds:02d}") == timedelta(
        minutes=minutes, seconds=seconds
    )


@given(
    st.integers(min_value=0, max_value=999),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
)
def test_parse_duration_hours_round_trip(hours: int, minutes: int, seconds: int) -> None:
    assert parse_duration(f"{hours}:{minutes:02d}:{seconds:02d}") == timedelta(
        hours=hours, minutes=minutes, seconds=seconds
    )


@given(json_values)
def test_parse_duration_only_raises_value_error(value: Any) -> None:
    result = only_value_error(parse_duration, value)
    assert result is None or (isinstance(result, timedelta) and result >= timedelta(0))


# --------------------------------------------------------------------------- states


@pytest.mark.parametrize(
    ("label", "member"),
    [
        ("ANSWERED", CallState.ANSWERED),
        ("no answer", CallState.NO_ANSWER),
        ("NO_ANSWER", CallState.NO_ANSWER),
        ("  No   Answer ", CallState.NO_ANSWER),
        ("not_delivered", CallState.NOT_DELIVERED),
        ("Успешно", CallState.ANSWERED),
        ("Занято", CallState.BUSY),
        ("Нет ответа", CallState.NO_ANSWER),
        ("нет  ответа".upper(), CallState.NO_ANSWER),
        ("Ошибка", CallState.FAIL),
        ("Отменен", CallState.CANCEL),
        ("Отменён", CallState.CANCEL),
        ("Недозвон", CallState.FAIL),
        ("Дозвон", CallState.DIALLING),
        ("Передано шлюзу", CallState.QUEUED),
        ("Отправлено", CallState.SEND),
        ("Доставлено", CallState.DELIVERED),
        ("Не доставлено", CallState.NOT_DELIVERED),  # noqa: RUF001
        ("Голосовая почта", None),
        ("", None),
        ("ANSWERED!", None),
        (None, None),
        (1, None),
    ],
)
def test_call_state_parse(label: Any, member: CallState | None) -> None:
    assert CallState.parse(label) is member


def test_call_state_properties() -> None:
    assert {state for state in CallState if not state.is_final} == {
        CallState.DIALLING,
        CallState.QUEUED,
        CallState.SEND,
    }
    assert {state for state in CallState if state.is_sms} == {
        CallState.QUEUED,
        CallState.SEND,
        CallState.DELIVERED,
        CallState.NOT_DELIVERED,
    }


@given(st.sampled_from(CallState))
def test_parse_state_round_trip(member: CallState) -> None:
    assert parse_state(member.value) == (member, member.value)
    assert parse_state(member.value.lower()) == (member, member.value.lower())
    assert CallState(member.value) is member


@given(st.text())
def test_parse_state_keeps_any_label(label: str) -> None:
    state, kept = parse_state(label)
    assert kept == label
    assert state is None or isinstance(state, CallState)


@given(json_values)
def test_parse_state_only_raises_value_error(value: Any) -> None:
    only_value_error(parse_state, value)


def test_parse_state_int() -> None:
    assert parse_state(3) == (None, "3")
    with pytest.raises(ValueError, match="state"):
        parse_state(True)
    with pytest.raises(ValueError, match="state"):
        parse_state(10**80)


# --------------------------------------------------------------------------- parse_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1234", "1234"), (" 1234\n", "1234"), (1234, "1234"), (0, "0"), ("0012", "0012")],
)
def test_parse_id(value: Any, expected: str) -> None:
    assert parse_id(value) == expected


@pytest.mark.parametrize(
    "value", ["", " ", "12a", "-1", "1.0", "١٢", "1" * 65, -1, 1.0, True, None, 10**40]
)
def test_parse_id_garbage(value: Any) -> None:
    with pytest.raises(ValueError, match="id"):
        parse_id(value)


@given(st.integers(min_value=0, max_value=10**39))
def test_parse_id_int_round_trip(value: int) -> None:
    assert parse_id(value) == str(value)
    assert parse_id(str(value)) == str(value)


@given(digits)
def test_parse_id_digits_round_trip(value: str) -> None:
    assert parse_id(value) == value
    assert parse_id(f" {value} ") == value


@given(json_values)
def test_parse_id_only_raises_value_error(value: Any) -> None:
    result = only_value_error(parse_id, value)
    assert result is None or (result.isascii() and result.isdigit())


# --------------------------------------------------------------------------- records


record_fields = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | digits,
        "number": json_values | digits,
        "state": json_values | st.sampled_from(["ANSWERED", "Успешно", "Дозвон"]),
        "date": json_values | st.just("2020-02-02 15:18:48"),
        "duration": json_values | st.just("00:04"),
        "price": json_values | st.just("0.35"),
        "service": json_values,
    },
)


@given(record_fields | json_values)
def test_parse_record_and_callback_only_raise_value_error(data: Any) -> None:
    for parser in (parse_record, parse_callback):
        result = only_value_error(parser, data)
        assert result is None or isinstance(result, CallRecord)


# --------------------------------------------------------------------------- shortcuts
#
# flash_call() and the other sends read every answer through _decode and
# parse_price; both have a shortcut for the usual answer (bench/client.py).
# These hold each shortcut to what the general path gives.


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@given(
    value=st.dictionaries(st.text(max_size=6), _json_values, max_size=4),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]),
    ensure_ascii=st.booleans(),
)
def test_decoding_an_answer_is_json_loads_in_any_encoding(value, encoding, ensure_ascii):
    content = json.dumps(value, ensure_ascii=ensure_ascii).encode(encoding, "surrogatepass")
    assert client_module._decode(content) == json.loads(content)


@given(content=st.binary(max_size=24).map(lambda tail: b"{" + tail))
def test_decoding_bytes_that_start_like_an_object_is_json_loads(content):
    try:
        expected = json.loads(content)
    except (ValueError, RecursionError):
        expected = None
    if not isinstance(expected, dict):
        expected = None
    assert client_module._decode(content) == expected


@given(
    text=st.from_regex(r"\A([0-9]{1,6}([.,][0-9]{0,4})?|[.,][0-9]{1,4})\Z"),
    space=st.sampled_from(["", " ", "\t"]),
)
def test_a_plain_price_reads_the_same_with_or_without_the_shortcut(text, space):
    # Spaces around take the general path; without, the shortcut.
    assert parse_price(text) == parse_price(space + text + space)
    assert parse_price(text) == Decimal(text.replace(",", "."))
    assert str(parse_price(text)) == str(Decimal(text.replace(",", ".")))
