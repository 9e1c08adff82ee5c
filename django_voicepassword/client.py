"""A small HTTP client for the VoicePassword API: flash call, voice call, SMS, statistics.

It imports nothing from Django, so any Python program can use it::

    from django_voicepassword.client import VoicePasswordClient

    with VoicePasswordClient(api_key) as client:
        sent = client.flash_call("79990000001")
        record = client.state(sent.id)

Three rules shape the transport (see ``exceptions.py`` for the error classes):

* A ``send/`` request places and bills a call. Once it may have reached the
  provider it is never sent again, neither by this module nor by urllib3: when
  no usable answer comes back :class:`OutcomeUnknownError` says so, and the
  outcome is settled later through ``state``/``daily``.
* A ``get/`` request only reads, so it is retried with exponential back-off.
* The API key appears in no repr, log line, exception or result.

The parsing functions (``parse_price``, ``parse_datetime``...) are public because
the callback view parses the same fields; each accepts both the strings the
reference shows and the integers real servers send, and raises ``ValueError``
(and nothing else) on anything it cannot read.
"""

from __future__ import annotations

import contextlib
import enum
import http.cookiejar
import json
import logging
import math
import os
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError
from urllib3.exceptions import ProxyError as _Urllib3ProxyError
from urllib3.util.retry import Retry

from django_voicepassword import __version__
from django_voicepassword.exceptions import (
    ERROR_CLASSES,
    AniPhoneNotValidError,
    APIError,
    CodeNotValidError,
    DateIsEmptyError,
    IdNotFoundError,
    NumberIsEmptyError,
    OutcomeUnknownError,
    TransportError,
    UnknownRequestError,
    VoicePasswordError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "FLASH_CAPACITY_RANGE",
    "PROVIDER_TZ",
    "Balance",
    "CallRecord",
    "CallState",
    "DailyReport",
    "SendResult",
    "VoicePasswordClient",
    "parse_callback",
    "parse_datetime",
    "parse_duration",
    "parse_id",
    "parse_price",
    "parse_record",
    "parse_state",
]

logger = logging.getLogger("django_voicepassword.client")

_T = TypeVar("_T")
_E = TypeVar("_E", bound=VoicePasswordError)

#: The provider's API root; ``send/`` and ``get/`` hang below it.
DEFAULT_BASE_URL: Final = "https://vp.voicepassword.ru/api/voice-password/"

#: Code lengths this app allows for a flash call with a service-generated code.
#: The provider says only "default 4, more only for flash call" and names no
#: maximum; 6, the usual length of a one-time code, is this app's own bound.
FLASH_CAPACITY_RANGE: Final = range(4, 7)


def _provider_tz() -> tzinfo:
    try:
        return ZoneInfo("Europe/Moscow")
    except ZoneInfoNotFoundError:  # pragma: no cover - only without tzdata (Windows)
        # Moscow has stayed on UTC+3 without DST since October 2014, which covers
        # every date this API can report.
        return timezone(timedelta(hours=3), "MSK")


#: The provider's clock: its naive dates are Moscow time.
PROVIDER_TZ: Final = _provider_tz()

# One encoder object: json.dumps() with non-default arguments builds a new
# encoder on every call, and this is the hot path.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))
_CONTENT_TYPE: Final = "application/json; charset=utf-8"
_USER_AGENT: Final = f"django-voicepassword/{__version__} python-requests/{requests.__version__}"

# Big enough for any id, price or duration the provider can send, small enough
# that int() and str() never hit Python's digit limits or build huge objects.
_MAX_FIELD_LEN: Final = 64

_sleep = time.sleep  # a module attribute so that tests can skip the back-off


# --------------------------------------------------------------------------- states


class CallState(enum.Enum):
    """The state of a call or an SMS, in the provider's English words.

    The callbacks use these words; ``get/`` answers Russian dashboard labels,
    which :meth:`parse` maps onto the same members.
    """

    ANSWERED = "ANSWERED"
    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    FAIL = "FAIL"
    CANCEL = "CANCEL"
    #: Russian "Дозвон": dialled, waiting for the far operator (not final).
    DIALLING = "DIALLING"
    #: SMS handed to the gateway (not final).
    QUEUED = "QUEUED"
    #: SMS sent, delivery not yet confirmed (not final).
    SEND = "SEND"
    DELIVERED = "DELIVERED"
    NOT_DELIVERED = "NOT DELIVERED"

    @classmethod
    def parse(cls, label: object) -> CallState | None:
        """Map an English state or a Russian ``get/`` label to a member, or ``None``.

        Case, surrounding and repeated spaces and ``_`` for a space do not matter,
        and ``Отменён`` reads as ``Отменен``. Unknown labels (and non-strings) give
        ``None``: the caller keeps the label verbatim.
        """
        if not isinstance(label, str):
            return None
        # The provider's own spelling ("BUSY"), as every callback writes it.
        exact = _EXACT_STATES.get(label)
        if exact is not None:
            return exact
        # "\u0451" is the letter yo, "\u0435" the plain ye it is often written as.
        key = " ".join(label.replace("_", " ").split()).casefold().replace("\u0451", "\u0435")
        return _STATE_LABELS.get(key)

    @property
    def is_final(self) -> bool:
        """Whether the state can no longer change (intermediate: DIALLING, QUEUED, SEND)."""
        return self not in _INTERMEDIATE_STATES

    @property
    def is_sms(self) -> bool:
        """Whether only an SMS can be in this state (``FAIL`` is shared, so it is not)."""
        return self in _SMS_STATES


_INTERMEDIATE_STATES: Final = frozenset({CallState.DIALLING, CallState.QUEUED, CallState.SEND})
_SMS_STATES: Final = frozenset(
    {CallState.QUEUED, CallState.SEND, CallState.DELIVERED, CallState.NOT_DELIVERED}
)

# Keys are normalized as in CallState.parse. The Russian SMS labels are the
# reference's own translations of the SMS states; get/ may answer them too.
#: The English states as the document writes them: :meth:`CallState.parse`'s shortcut.
_EXACT_STATES: Final[dict[str, CallState]] = {member.value: member for member in CallState}
_STATE_LABELS: Final[dict[str, CallState]] = {
    **{member.value.casefold(): member for member in CallState},
    "успешно": CallState.ANSWERED,
    "занято": CallState.BUSY,
    "нет ответа": CallState.NO_ANSWER,
    "ошибка": CallState.FAIL,
    "отменен": CallState.CANCEL,
    "недозвон": CallState.FAIL,
    "дозвон": CallState.DIALLING,
    "передано шлюзу": CallState.QUEUED,
    "отправлено": CallState.SEND,
    "доставлено": CallState.DELIVERED,
    "не доставлено": CallState.NOT_DELIVERED,
}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider's answer to a flash call, a voice call or an SMS.

    ``code`` is the code the subscriber sees or hears: the answer's ``code``, or
    for an SMS answer that has only ``message`` ("Ваш код: 1234") the single run
    of 4 to 8 digits in that message (``None`` when there is not exactly one).
    ``code``, ``message`` and ``raw`` stay out of the repr so that logging a
    result does not log the code.
    """

    id: str
    number: str
    price: Decimal
    code: str | None = field(repr=False)
    message: str | None = field(repr=False)
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Balance:
    """The account balance (it may be negative on a credit account)."""

    amount: Decimal
    currency: str
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One request's state: a ``get/`` state answer, a ``daily`` row or a callback.

    ``state`` is ``None`` when the provider's label is unknown; ``state_label``
    always holds the label verbatim. ``date`` is aware (provider time, Moscow).
    Fields the answer leaves out or empty are ``None``.
    """

    id: str
    number: str
    date: datetime | None
    duration: timedelta | None
    price: Decimal | None
    state: CallState | None
    state_label: str
    service: str | None
    raw: dict[str, Any] = field(repr=False)


class DailyReport(list[CallRecord]):
    """The records of one ``daily`` answer: a list of :class:`CallRecord`, and how whole it is.

    ``rows`` is the count the provider announced (its ``rows``), ``None`` when
    the answer has none or it is not a whole number; ``skipped`` the records
    that could not be read and were left out (each is logged). The list holds
    every record that could be read, so one bad record does not cost the day.

    :attr:`complete` says whether the list is the whole day: only then may a
    call missing from it be taken for a call that was never placed.
    """

    __slots__ = ("rows", "skipped")

    def __init__(
        self, records: Iterable[CallRecord] = (), *, rows: int | None, skipped: int = 0
    ) -> None:
        super().__init__(records)
        self.rows = rows
        self.skipped = skipped

    @property
    def complete(self) -> bool:
        """Whether every record the provider counted was read: ``rows`` known, none skipped."""
        return self.rows is not None and not self.skipped and len(self) >= self.rows

    def __repr__(self) -> str:
        return f"DailyReport({len(self)} records, rows={self.rows!r}, skipped={self.skipped})"


# --------------------------------------------------------------------------- parsing


def _text(value: object, what: str) -> str:
    """A string field that the provider may also send as an integer."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**_MAX_FIELD_LEN:
            raise ValueError(f"{what}: integer too large")
        return str(value)
    raise ValueError(f"{what}: expected a string or an integer, got {type(value).__name__}")


def _digits(value: object) -> str | None:
    """``value`` as a string of ASCII digits (whitespace around stripped), else None."""
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**40:
        text = str(value)
    else:
        return None
    # str.isdigit() alone also accepts "٣" and "²".
    if text and len(text) <= _MAX_FIELD_LEN and text.isascii() and text.isdigit():
        return text
    return None


def parse_id(value: object) -> str:
    """A request id: an integer or a string of ASCII digits (spaces around stripped).

    Returns the digits as a string; leading zeros in a string are kept.
    """
    text = _digits(value)
    if text is None:
        raise ValueError(f"id: expected digits, got {_describe(value)}")
    return text


_PRICE_RE: Final = re.compile(r"([0-9]+)(?:[.,]([0-9]*))?|[.,]([0-9]+)", re.ASCII)


def _decimal(value: object, what: str, *, signed: bool) -> Decimal:
    if type(value) is str and len(value) <= _MAX_FIELD_LEN and _PRICE_RE.fullmatch(value):
        # The usual answer ("0.35"): no sign, no spaces to strip, never negative.
        return Decimal(value.replace(",", "."))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{what}: not a finite number")
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what}: not a finite number")
        # repr() is the shortest string that reads back as this float, so 0.35
        # becomes Decimal("0.35"), not 0.34999999999999997779...
        number = Decimal(repr(value))
    else:
        text = _text(value, what).strip()
        negative = signed and text.startswith("-")
        body = text[1:] if negative else text
        match = _PRICE_RE.fullmatch(body) if len(body) <= _MAX_FIELD_LEN else None
        if match is None:
            raise ValueError(f"{what}: expected a decimal number, got {_describe(value)}")
        number = Decimal(("-" if negative else "") + body.replace(",", "."))
    if not signed and number < 0:
        raise ValueError(f"{what}: negative")
    return number


def parse_price(value: object) -> Decimal:
    """A non-negative price: ``"0.35"``, ``"0,35"``, ``"3"``, ``3``, a float or a Decimal.

    Plain decimal notation only (no exponent, sign, NaN or infinity); a comma is
    read as the decimal point. Floats go through their shortest repr, so 0.35 is
    ``Decimal("0.35")``. A string's trailing zeros are kept: ``"3.30"`` gives
    ``Decimal("3.30")``.
    """
    return _decimal(value, "price", signed=False)


_ISO_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})[ T]([0-9]{1,2}):([0-9]{2}):([0-9]{2})", re.ASCII
)
_RU_RE: Final = re.compile(
    r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4}) +([0-9]{1,2}):([0-9]{2}):([0-9]{2})", re.ASCII
)


def parse_datetime(value: object) -> datetime:
    """A provider date as an aware datetime.

    Reads ``YYYY-MM-DD HH:MM:SS`` (callbacks; ``T`` also accepted as separator)
    and ``dd.mm.yyyy HH:MM:SS`` (``get/``), both naive Moscow time. A datetime
    is passed through, a naive one taken as Moscow time.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=PROVIDER_TZ)
    if not isinstance(value, str):
        raise ValueError(f"date: expected a string, got {type(value).__name__}")
    text = value.strip()
    if match := _ISO_RE.fullmatch(text):
        year, month, day, hour, minute, second = map(int, match.groups())
    elif match := _RU_RE.fullmatch(text):
        day, month, year, hour, minute, second = map(int, match.groups())
    else:
        raise ValueError(
            "date: expected 'YYYY-MM-DD HH:MM:SS' or 'dd.mm.yyyy HH:MM:SS', "
            f"got {_describe(value)}"
        )
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=PROVIDER_TZ)
    except ValueError:
        raise ValueError(f"date: no such date or time: {_describe(value)}") from None


_DURATION_RE: Final = re.compile(
    r"([0-9]{1,9})|(?:([0-9]{1,6}):)?([0-9]{1,7}):([0-5]?[0-9])", re.ASCII
)
_MAX_SECONDS: Final = 10**9  # about 31 years: far beyond any call, far below overflow


def parse_duration(value: object) -> timedelta:
    """A call duration: seconds (``"1"``, ``1``, ``1.5``), ``MM:SS`` or ``H:MM:SS``.

    In the colon forms the seconds must be below 60, and so must the minutes in
    ``H:MM:SS``; in ``MM:SS`` they may exceed 59 (``"75:00"`` is 75 minutes).
    """
    if isinstance(value, float):
        if not (math.isfinite(value) and 0 <= value < _MAX_SECONDS):
            raise ValueError("duration: not a non-negative finite number of seconds")
        return timedelta(seconds=value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < _MAX_SECONDS:
            raise ValueError("duration: out of range")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"duration: expected a string or a number, got {type(value).__name__}")
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            f"duration: expected seconds, 'MM:SS' or 'H:MM:SS', got {_describe(value)}"
        )
    seconds, hours, minutes, rest = match.groups()
    if seconds is not None:
        return timedelta(seconds=int(seconds))
    if hours is not None and int(minutes) >= 60:
        raise ValueError(
            f"duration: minutes must be below 60 in 'H:MM:SS', got {_describe(value)}"
        )
    return timedelta(hours=int(hours or 0), minutes=int(minutes), seconds=int(rest))


def parse_state(value: object) -> tuple[CallState | None, str]:
    """``(state, label)``: the member :meth:`CallState.parse` finds, and the label verbatim.

    Any string is accepted (an unknown label gives ``(None, label)``); an
    integer is read as its decimal string.
    """
    label = _text(value, "state")
    return CallState.parse(label), label


def _optional(data: Mapping[str, Any], key: str) -> Any:
    """The value at ``key``, with absent, null and blank all read as ``None``."""
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _record(data: object, what: str) -> CallRecord:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected a JSON object, got {type(data).__name__}")
    for key in ("id", "number", "state"):
        if key not in data:
            raise ValueError(f"{what}: missing {key!r}")
    state, label = parse_state(data["state"])
    date_ = _optional(data, "date")
    duration = _optional(data, "duration")
    price = _optional(data, "price")
    service = _optional(data, "service")
    return CallRecord(
        id=parse_id(data["id"]),
        number=_text(data["number"], "number").strip(),
        date=None if date_ is None else parse_datetime(date_),
        duration=None if duration is None else parse_duration(duration),
        price=None if price is None else parse_price(price),
        state=state,
        state_label=label,
        service=None if service is None else _text(service, "service"),
        raw=dict(data),
    )


def parse_record(data: Mapping[str, Any]) -> CallRecord:
    """A ``get/`` ``state`` answer's ``data`` or one ``daily`` row.

    ``id``, ``number`` and ``state`` are required; ``date``, ``duration``,
    ``price`` and ``service`` may be absent or blank (then ``None``). Either
    date and duration format is read, so the same function also reads callbacks.
    """
    return _record(data, "record")


def parse_callback(data: Mapping[str, Any]) -> CallRecord:
    """A status callback the provider posted to ``callback_url``.

    The same fields and rules as :func:`parse_record`; unknown extra fields are
    ignored and kept in ``raw`` (a copy of the payload). The payload is
    unauthenticated: check the callback's token before trusting it.
    """
    return _record(data, "callback")


def _describe(value: object) -> str:
    """A short, safe rendering of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- answers

_CODE_IN_MESSAGE: Final = re.compile(r"[0-9]+", re.ASCII)
# error_code case-insensitively, because the reference itself mixes
# "ID_Not_Found" with "unknown_request".
_ERROR_CODES: Final = {code.casefold(): code for code in ERROR_CLASSES}


def _code_from_message(message: str | None) -> str | None:
    if message is None:
        return None
    runs = _CODE_IN_MESSAGE.findall(message)
    if len(runs) == 1 and 4 <= len(runs[0]) <= 8:
        return str(runs[0])
    return None


def _send_result(data: dict[str, Any]) -> SendResult:
    for key in ("id", "number", "price"):
        if key not in data:
            raise ValueError(f"answer: missing {key!r}")
    code = _optional(data, "code")
    # Most answers have no message: no call for it (this runs once per code sent).
    message = _optional(data, "message") if "message" in data else None
    message = None if message is None else _text(message, "message")
    return SendResult(
        parse_id(data["id"]),
        _text(data["number"], "number").strip(),
        _decimal(data["price"], "price", signed=False),
        _code_from_message(message) if code is None else _text(code, "code").strip(),
        message,
        data,
    )


def _balance(data: dict[str, Any]) -> Balance:
    if "balance" not in data:
        raise ValueError("answer: missing 'balance'")
    currency = _optional(data, "currency")
    return Balance(
        amount=_decimal(data["balance"], "balance", signed=True),
        currency="" if currency is None else _text(currency, "currency").strip(),
        raw=data,
    )


def _state_record(data: dict[str, Any]) -> CallRecord:
    record = data.get("data")
    # A PHP server may wrap a single object in a one-element list.
    if isinstance(record, list) and len(record) == 1:
        record = record[0]
    return _record(record, "data")


def _daily_records(data: dict[str, Any]) -> DailyReport:
    announced = data.get("rows")
    text = _digits(announced)
    count = None if text is None else int(text)
    if count is None:
        # Without it nobody can tell a whole day from a cut one.
        problem = "missing" if announced is None else "unreadable"
        logger.warning("get/ daily: 'rows' is %s", problem)
    items = data.get("data")
    if items is None:
        # Complete only if "rows" says the day had no calls.
        return DailyReport(rows=count)
    # PHP encodes an array whose keys are not 0..n-1 as an object.
    if isinstance(items, dict):
        items = list(items.values())
    if not isinstance(items, list):
        raise ValueError(f"data: expected a list of rows, got {type(items).__name__}")
    records = []
    skipped = 0
    for index, item in enumerate(items):
        try:
            records.append(_record(item, "row"))
        except ValueError as err:
            # One bad record must not cost the day's others; the report counts it.
            skipped += 1
            logger.warning("get/ daily: record %d skipped: %s", index, err)
    return DailyReport(records, rows=count, skipped=skipped)


#: json.loads's own decoder, for :func:`_decode`'s shortcut.
_DECODER: Final = json.JSONDecoder()


def _decode(content: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object, or ``None`` when it is not one."""
    try:
        if content[:1] == b"{" and content[1:2] != b"\x00":
            # What json.loads(bytes) would do, without its encoding detection:
            # a "{" and then no NUL is UTF-8 to it (a BOM or UTF-16/32 would
            # not start so), decoded with the same error handler.
            data = _DECODER.decode(content.decode("utf-8", "surrogatepass"))
        else:
            data = json.loads(content)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return data if isinstance(data, dict) else None


def _result(data: dict[str, Any] | None) -> str | None:
    """``"ok"`` or ``"error"`` when the answer says so, else ``None``."""
    if data is None:
        return None
    result = data.get("result")
    if isinstance(result, str):
        result = result.strip().lower()
        if result in ("ok", "error"):
            return result
    return None


def _scrub(value: Any, secret: str) -> Any:
    """``value`` with every occurrence of ``secret`` in its strings replaced by ``***``."""
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {_scrub(k, secret): _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secret) for item in value]
    return value


# --------------------------------------------------------------------------- transport

# requests errors raised before a byte leaves the machine.
_NOT_SENT: Final = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


def _nothing_sent(err: BaseException) -> bool:
    """Whether ``err`` proves that the request never reached the server.

    requests wraps urllib3's error: ``ConnectionError(MaxRetryError(reason=...))``.
    Only a failure to connect (refused, unreachable, DNS, connect timeout; urllib3's
    ``NewConnectionError`` is a ``ConnectTimeoutError``) or a refused certificate
    happens before the request is written. Anything else - a read timeout, a reset
    or a close after the body went out, an SSL error while reading - may follow a
    request the provider has acted on, so it does not count.
    """
    cause: object = err
    for _ in range(8):  # the chain is short; the bound only guards against cycles
        if isinstance(cause, (*_NOT_SENT, ConnectTimeoutError, ssl.SSLCertVerificationError)):
            return True
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        elif isinstance(cause, _Urllib3ProxyError):
            cause = cause.original_error
        elif isinstance(cause, BaseException) and cause.args:
            cause = cause.args[0]
        else:
            return False
    return False


def _configuration_error(err: BaseException) -> bool:
    """Errors that the same request would raise again (bad URL): not worth a retry."""
    return isinstance(err, _NOT_SENT) and not isinstance(err, requests.exceptions.ConnectTimeout)


def _read_environment_once(session: requests.Session, url: str) -> None:
    """Give ``session`` what requests reads from the environment for ``url``, then stop it.

    With ``trust_env`` on, requests reads the proxy variables (``HTTPS_PROXY``,
    ``NO_PROXY``...), the CA bundle (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``)
    and ``~/.netrc`` on every request: walks of ``os.environ`` and two
    ``stat()`` calls, a tenth of a call's time to a nearby server. Every
    request of a client goes to the same host, so the proxies and the bundle
    are read once, here, with requests' own function, and honoured as before.
    ``~/.netrc`` is left out on purpose: requests would put its credentials in
    the ``Authorization`` header in place of the API key.
    """
    # A URL past parsing raises here; its first request raises a TransportError.
    with contextlib.suppress(ValueError):
        session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


def _may_resend_post(adapter: object) -> bool:
    """Whether ``adapter`` could send one POST twice (urllib3 retries after writing it)."""
    if not isinstance(adapter, HTTPAdapter):
        return False  # someone else's adapter (a test double): trust it
    retry: Retry = adapter.max_retries
    if retry.total in (0, False):
        return False
    post_retried = not retry.allowed_methods or "POST" in retry.allowed_methods
    read_retried = retry.read not in (0, False) and post_retried
    status_retried = bool(retry.status_forcelist) and retry.status not in (0, False)
    # "other" errors (an SSL error while reading the answer...) are retried
    # whatever the method.
    return read_retried or (status_retried and post_retried) or retry.other not in (0, False)


class VoicePasswordClient:
    """The VoicePassword API over one pooled :class:`requests.Session`.

    ``api_key`` goes in the ``Authorization`` header (``auth_mode="header"``, the
    default) or in the body's ``security`` section (``"body"``). ``timeout`` is
    requests' ``(connect, read)`` pair or one number for both. ``get_retries``
    is how many times a ``get/`` request is tried again after the first attempt,
    waiting ``backoff``, then twice that, and so on; ``send/`` is never retried.

    A ``session`` passed in is used as it is and left open by :meth:`close`; its
    adapter for ``base_url`` must not retry a POST (``ValueError`` otherwise),
    because urllib3 would then send a billed request twice. The client keeps no
    state between calls (its own session does not even keep cookies), so sharing
    one between threads is as safe as sharing its ``requests.Session``.
    """

    __slots__ = (
        "_api_key",
        "_auth_mode",
        "_backoff",
        "_base_url",
        "_get_retries",
        "_get_url",
        "_headers",
        "_key_needles",
        "_owns_session",
        "_security",
        "_send_url",
        "_session",
        "_timeout",
    )

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | tuple[float, float] = (3.05, 10.0),
        auth_mode: Literal["header", "body"] = "header",
        session: requests.Session | None = None,
        get_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        key = api_key.strip() if isinstance(api_key, str) else ""
        # A header value must be printable ASCII; requests and http.client would
        # otherwise raise an error that quotes the key.
        if not key or not (key.isascii() and key.isprintable()):
            raise ValueError("api_key must be a non-empty string of printable ASCII characters")
        if auth_mode not in ("header", "body"):
            raise ValueError("auth_mode must be 'header' or 'body'")
        if not isinstance(base_url, str) or not base_url.startswith(("https://", "http://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        timeouts: tuple[object, ...] = timeout if isinstance(timeout, tuple) else (timeout, 1)
        if len(timeouts) != 2 or not all(_positive(t) for t in timeouts):
            raise ValueError("timeout must be a positive number or a (connect, read) pair of them")
        if not isinstance(get_retries, int) or isinstance(get_retries, bool) or get_retries < 0:
            raise ValueError("get_retries must be a non-negative integer")
        if not (_positive(backoff) or backoff == 0):
            raise ValueError("backoff must be a non-negative number")

        self._api_key = key
        # The key as it appears in an answer: as is, JSON-escaped, and with the
        # "\/" PHP writes for "/".
        escaped = json.dumps(key)[1:-1]
        self._key_needles = tuple(
            {needle.encode() for needle in (key, escaped, escaped.replace("/", "\\/"))}
        )
        self._auth_mode = auth_mode
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._send_url = self._base_url + "send/"
        self._get_url = self._base_url + "get/"
        self._timeout = timeout
        self._get_retries = get_retries
        self._backoff = float(backoff)
        self._headers = {"Content-Type": _CONTENT_TYPE, "User-Agent": _USER_AGENT}
        self._security: dict[str, str] | None = None
        if auth_mode == "header":
            self._headers["Authorization"] = key
        else:
            self._security = {"apiKey": key}

        if session is None:
            session = requests.Session()
            # requests' default already is Retry(0, read=False); spelled out here
            # because a billed send/ must go out exactly once.
            adapter = HTTPAdapter(max_retries=Retry(total=0, read=False, redirect=0))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # The API is stateless: a cookie it sets (a PHP session id...) would
            # only tie calls together and be shared state between threads.
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            _read_environment_once(session, self._base_url)
            self._owns_session = True
        else:
            if _may_resend_post(session.get_adapter(self._send_url)):
                raise ValueError(
                    "the session's adapter for base_url retries POST requests; a retried "
                    "send/ can place and bill a second call: mount an HTTPAdapter with "
                    "max_retries=0 for base_url"
                )
            self._owns_session = False
        self._session = session

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, "
            f"auth_mode={self._auth_mode!r}, api_key='***')"
        )

    @property
    def base_url(self) -> str:
        """The API base URL, ending in ``/``."""
        return self._base_url

    @property
    def auth_mode(self) -> str:
        """Where the key travels: ``"header"`` or ``"body"``."""
        return self._auth_mode

    @property
    def timeout(self) -> float | tuple[float, float]:
        """The timeout given to every request: seconds, or (connect, read)."""
        return self._timeout

    @property
    def get_retries(self) -> int:
        """How often a ``get/`` request is retried."""
        return self._get_retries

    def __enter__(self) -> VoicePasswordClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool, if this client created its session."""
        if self._owns_session:
            self._session.close()

    # ------------------------------------------------------------------- send/

    def flash_call(
        self,
        number: str | int,
        *,
        code: str | int | None = None,
        capacity: int | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Place a flash call: the code is the last digits of the calling number.

        With ``code`` (4 digits) the client chooses the code; otherwise the
        service generates a code of ``capacity`` digits (default 4, and this app
        allows 4 to 6: :data:`FLASH_CAPACITY_RANGE`). Giving both is refused.
        """
        payload: dict[str, Any] = {"number": _number(number)}
        if code is not None:
            if capacity is not None:
                raise UnknownRequestError(
                    "give either code (client code) or capacity (service code), not both",
                    local=True,
                )
            payload["flashcall"] = {"code": _code(code)}
        else:
            payload["capacity"] = "4" if capacity is None else _capacity(capacity)
        if callback_url is not None:
            payload["callback_url"] = _callback_url(callback_url)
        return self._send_call("flash_call", payload)

    def voice_call(
        self,
        number: str | int,
        *,
        code: str | int | None = None,
        repeat: bool = False,
        ani: str | int | None = None,
        capacity: int | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Place a voice call: a robot speaks the code.

        Without ``code`` the code is the last 4 digits of the calling number.
        ``repeat`` speaks it twice; ``ani`` is a caller number registered in the
        account. A voice code is always 4 digits, so ``capacity`` may only be
        ``None`` or 4 (kept for symmetry with :meth:`flash_call`, never sent).
        """
        payload: dict[str, Any] = {"number": _number(number)}
        if capacity is not None and _digits(capacity) != "4":
            raise CodeNotValidError(
                "a voice call's code is always 4 digits: capacity must be None or 4",
                local=True,
            )
        voice: dict[str, str] = {}
        if code is not None:
            voice["code"] = _code(code)
        if _flag(repeat):
            voice["repeat"] = "1"
        if ani is not None:
            # The reference's table calls this field "api", its example "ani".
            voice["ani"] = _ani(ani)
        payload["voice"] = voice
        if callback_url is not None:
            payload["callback_url"] = _callback_url(callback_url)
        return self._send_call("voice_call", payload)

    def sms(self, request_id: str | int, *, callback_url: str | None = None) -> SendResult:
        """Send the code of an earlier call request by SMS (the fallback).

        ``callback_url`` is where the provider reports the SMS's states: the
        document lists it for every ``send/`` request, this one included.
        """
        payload: dict[str, Any] = {"sms": {"id": _request_id(request_id)}}
        if callback_url is not None:
            payload["callback_url"] = _callback_url(callback_url)
        return self._send_call("sms", payload)

    # ------------------------------------------------------------------- get/

    def balance(self) -> Balance:
        """The account balance and its currency."""
        return self._read("balance", {"request": "balance"}, _balance)

    def state(self, request_id: str | int) -> CallRecord:
        """The state of one request, by the id :meth:`flash_call` & co. returned."""
        payload = {"request": "state", "id": _request_id(request_id)}
        return self._read("state", payload, _state_record)

    def daily(self, day: date) -> DailyReport:
        """Every request of one day (a Moscow day; an aware datetime is converted first).

        A record that cannot be read is skipped and counted rather than failing
        the day; :attr:`DailyReport.complete` says whether the records are all
        the provider counted (its ``rows``).
        """
        if isinstance(day, datetime):
            day = (day.astimezone(PROVIDER_TZ) if day.tzinfo is not None else day).date()
        elif not isinstance(day, date):
            raise DateIsEmptyError("day must be a datetime.date", local=True)
        payload = {"request": "daily", "date": f"{day.day:02d}.{day.month:02d}.{day.year:04d}"}
        return self._read("daily", payload, _daily_records)

    # ------------------------------------------------------------------- transport

    def _post(self, url: str, payload: dict[str, Any]) -> requests.Response:
        if self._security is not None:
            payload["security"] = self._security
        return self._session.post(
            url,
            data=_ENCODER.encode(payload).encode(),
            headers=self._headers,
            timeout=self._timeout,
            # The API never redirects; following a redirect would turn the POST
            # into a GET or, for 307/308, post the key somewhere else.
            allow_redirects=False,
        )

    def _send_call(self, kind: str, payload: dict[str, Any]) -> SendResult:
        logger.debug("POST send/ %s", kind)
        try:
            response = self._post(self._send_url, payload)
        except requests.RequestException as err:
            failure = self._send_failure(kind, err)
        else:
            return self._send_answer(kind, response)
        # Raised outside the except block so that neither __cause__ nor
        # __context__ keeps requests' error, whose request holds the key.
        raise failure

    def _send_failure(self, kind: str, err: requests.RequestException) -> TransportError:
        if _nothing_sent(err):
            return self._error(
                TransportError, "send", kind, f"the request was not sent: {_why(err)}"
            )
        logger.warning("send/ %s: outcome unknown (%s)", kind, type(err).__name__)
        return self._error(
            OutcomeUnknownError,
            "send",
            kind,
            f"the request went out but no answer came back ({_why(err)}); "
            "the call may have been placed: do not retry, check state/daily",
        )

    def _send_answer(self, kind: str, response: requests.Response) -> SendResult:
        status = response.status_code
        data = self._answer(response)
        result = _result(data)
        if data is not None and result == "ok":
            try:
                sent = _send_result(data)
            except ValueError as err:
                raise self._error(
                    OutcomeUnknownError,
                    "send",
                    kind,
                    f"the provider accepted the request but its answer is unreadable ({err}); "
                    "the call may have been placed: check state/daily",
                    status=status,
                    response=data,
                ) from None
            logger.debug("send/ %s: HTTP %s, id %s", kind, status, sent.id)
            return sent
        if data is not None and result == "error":
            raise self._api_error("send", kind, status, data)
        # The document's only refusal is {"result": "error", ...}. Anything else
        # may follow a placed call, a 5xx included: a proxy in front of the
        # provider answers 502, 503 or 504 when the provider was slow or died
        # after it had placed the call. Taking it for "nothing was placed" would
        # let the caller try again and bill the subscriber twice.
        if status >= 500:
            what = f"HTTP {status} without a refusal"
            if data is None:
                what += f" ({self._snippet(response)})"
        elif data is not None:
            what = f"an answer without a result (HTTP {status})"
        else:
            snippet = self._snippet(response)
            what = f"an answer that is not a JSON object (HTTP {status}: {snippet})"
        logger.warning("send/ %s: outcome unknown (HTTP %s)", kind, status)
        raise self._error(
            OutcomeUnknownError,
            "send",
            kind,
            f"the provider gave {what}; the call may have been placed: "
            "do not retry, check state/daily",
            status=status,
            response=data,
        )

    def _read(
        self, kind: str, payload: dict[str, Any], parse: Callable[[dict[str, Any]], _T]
    ) -> _T:
        failure: TransportError | None = None
        for attempt in range(self._get_retries + 1):
            if attempt:
                delay = self._backoff * 2 ** (attempt - 1)
                # The failure's own message already names "get/ <kind>".
                logger.warning(
                    "%s; retry %d of %d in %.2fs",
                    failure,
                    attempt,
                    self._get_retries,
                    delay,
                )
                _sleep(delay)
            logger.debug("POST get/ %s", kind)
            try:
                response = self._post(self._get_url, payload)
            except requests.RequestException as err:
                failure = self._error(TransportError, "get", kind, _why(err))
                if _configuration_error(err):
                    break
                continue

            status = response.status_code
            data = self._answer(response)
            result = _result(data)
            if data is not None and result == "ok":
                try:
                    return parse(data)
                except ValueError as err:
                    raise self._error(
                        TransportError,
                        "get",
                        kind,
                        f"unreadable answer: {err}",
                        status=status,
                        response=data,
                    ) from None
            if data is not None and result == "error":
                raise self._api_error("get", kind, status, data)
            if status >= 500:
                failure = self._error(
                    TransportError, "get", kind, f"HTTP {status}", status=status, response=data
                )
            elif data is None:
                failure = self._error(
                    TransportError,
                    "get",
                    kind,
                    f"an answer that is not a JSON object (HTTP {status}: "
                    f"{self._snippet(response)})",
                    status=status,
                )
            else:
                # A JSON object without a result would read the same next time.
                raise self._error(
                    TransportError,
                    "get",
                    kind,
                    f"an answer without a result (HTTP {status})",
                    status=status,
                    response=data,
                )
        assert failure is not None  # the loop runs at least once and only falls out failing
        raise failure

    def _answer(self, response: requests.Response) -> dict[str, Any] | None:
        content = response.content
        data = _decode(content)
        # Should the provider ever echo the request, the key must not reach
        # raw, an exception or the database. A few bytes searches per answer.
        if data is not None:
            for needle in self._key_needles:
                if needle in content:
                    scrubbed: dict[str, Any] = _scrub(data, self._api_key)
                    return scrubbed
        return data

    def _snippet(self, response: requests.Response) -> str:
        # Scrubbed before it is cut, so that no part of the key survives the cut.
        head = response.content[: 80 + len(self._api_key)].decode("utf-8", "replace")
        text = head.replace(self._api_key, "***")
        return repr(text[:80]) + ("..." if len(text) > 80 else "")

    def _api_error(self, endpoint: str, kind: str, status: int, data: dict[str, Any]) -> APIError:
        raw_code = data.get("error_code")
        code = raw_code.strip() if isinstance(raw_code, str) else ""
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            code = str(raw_code)
        code = _ERROR_CODES.get(code.casefold(), code)
        logger.debug("%s/ %s: refused with %r", endpoint, kind, code)
        return APIError.for_code(code, endpoint=endpoint, status=status, response=data)

    def _error(
        self,
        klass: type[_E],
        endpoint: str,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        response: Any = None,
    ) -> _E:
        # The underlying error's text names the URL, never a header or the body,
        # but nothing here may carry the key, so it is scrubbed once more.
        text = f"{endpoint}/ {kind}: {message}".replace(self._api_key, "***")
        return klass(text, endpoint=endpoint, status=status, response=response)


# --------------------------------------------------------------------------- arguments


def _positive(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _why(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _number(value: object) -> str:
    text = _digits(value)
    if text is None or not 10 <= len(text) <= 15:
        raise NumberIsEmptyError(
            "number must be 10 to 15 digits with the country code, without '+', spaces or dashes",
            local=True,
        )
    return text


def _code(value: object) -> str:
    text = _digits(value)
    if text is None or len(text) != 4:
        # An int code is stringified as it is: 123 is refused, pass "0123".
        raise CodeNotValidError("code must be exactly 4 digits", local=True)
    return text


def _capacity(value: object) -> str:
    text = _digits(value)
    if text is None or int(text) not in FLASH_CAPACITY_RANGE:
        raise CodeNotValidError(
            f"capacity must be from {FLASH_CAPACITY_RANGE.start} "
            f"to {FLASH_CAPACITY_RANGE.stop - 1}",
            local=True,
        )
    return str(int(text))


def _ani(value: object) -> str:
    text = _digits(value)
    if text is None or not 10 <= len(text) <= 15:
        raise AniPhoneNotValidError(
            "ani must be 10 to 15 digits with the country code", local=True
        )
    return text


def _request_id(value: object) -> str:
    text = _digits(value)
    if text is None:
        raise IdNotFoundError("a request id is a string of digits", local=True)
    return text


def _flag(value: object) -> bool:
    # A string "0" is truthy: only unambiguous spellings of a flag are accepted.
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1") and not isinstance(value, float):
        return value in (1, "1")
    raise UnknownRequestError("repeat must be a boolean", local=True)


def _callback_url(value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith(("https://", "http://"))
        or not value.isprintable()
        or any(char.isspace() for char in value)
    ):
        # The URL is not quoted: it usually carries a signed token.
        raise UnknownRequestError(
            "callback_url must be an http:// or https:// URL without spaces", local=True
        )
    return value
