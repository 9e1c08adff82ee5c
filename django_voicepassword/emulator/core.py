"""The emulated provider: a thread-safe state machine, without HTTP and without Django.

:class:`Emulator` answers ``send/`` and ``get/`` requests as the provider's
document describes them (``shared/reference/voicepassword-api.ru.md``), keeps
the balance, the calls and a log of every request, and schedules the status
callbacks. It performs no I/O: the HTTP server (:mod:`.server`) and the pytest
fixture (:mod:`.pytest_plugin`) feed it requests and deliver the callbacks it
makes due. Time comes from an injectable clock, so tests can move it by hand
(:class:`ManualClock`).
"""

from __future__ import annotations

import heapq
import hmac
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from .numbers import REGISTERED_ANIS, FaultMode, behaviour_for

__all__ = [
    "API_PREFIX",
    "DEFAULT_API_KEY",
    "DEFAULT_BALANCE",
    "DEFAULT_SLOW_SECONDS",
    "DIALLING",
    "MOSCOW",
    "PRICES",
    "SERVICES",
    "STATE_LABELS",
    "CallRecord",
    "Callback",
    "Delivery",
    "Emulator",
    "FaultPlan",
    "LogEntry",
    "ManualClock",
    "Response",
]

logger = logging.getLogger("django_voicepassword.emulator")

#: The path under which the provider serves ``send/`` and ``get/``.
API_PREFIX = "/api/voice-password/"
#: The API key the emulator accepts unless told otherwise.
DEFAULT_API_KEY = "emulator-key"
#: The starting balance (the figure of the provider's own example).
DEFAULT_BALANCE = Decimal("999.00")
#: How late a ``slow`` answer comes, unless told otherwise.
DEFAULT_SLOW_SECONDS = 20.0
#: Provider time: Moscow, UTC+3 all year since 2014.
MOSCOW = timezone(timedelta(hours=3), "MSK")

#: Price of one request by kind, charged when ``send/`` accepts it.
PRICES: dict[str, Decimal] = {
    "flash_call": Decimal("0.35"),
    "voice_call": Decimal("0.35"),
    "sms": Decimal("3.30"),
}
#: The ``service`` name ``get/`` shows by kind.
SERVICES: dict[str, str] = {
    "flash_call": "Flash Call",
    "voice_call": "Voice Password",
    "sms": "SMS",
}
#: A call's state before its final one (no callback carries it; ``get/`` says Дозвон).
DIALLING = "DIALLING"
#: The Russian label ``get/`` shows for each state. The SMS labels are the
#: document's own descriptions of the SMS states.
STATE_LABELS: dict[str, str] = {
    "ANSWERED": "Успешно",
    "BUSY": "Занято",
    "NO ANSWER": "Нет ответа",
    "FAIL": "Ошибка",
    "CANCEL": "Отменен",
    DIALLING: "Дозвон",
    "QUEUED": "Передано шлюзу",
    "SEND": "Отправлено",
    "DELIVERED": "Доставлено",
    "NOT DELIVERED": "Не доставлено",  # noqa: RUF001 (Russian, not look-alike Latin)
}

# Seconds of connection of an answered call: a flash call is dropped at the
# first ring; a voice call lasts as long as the robot speaks.
_DURATIONS = {"flash_call": 1, "voice_call": 5, "voice_call_repeat": 8}
# Caller numbers: the code is the tail, the head is this test-range prefix.
_CALLER_HEAD = "79990000000"
#: The longest service code: the caller number keeps its first digit.
_MAX_CAPACITY = len(_CALLER_HEAD) - 1
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
_HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8"}
_HTML_PAGE = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Технические работы</title>'
    "</head>\n<body><h1>Сервис временно недоступен</h1>"
    "<p>Ведутся технические работы. Попробуйте позже.</p></body></html>\n"
).encode()
_HTTP500_PAGE = (
    b"<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    b"<center><h1>500 Internal Server Error</h1></center>\r\n</body>\r\n</html>\r\n"
)
_HTTP502_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
_DATE_RE = re.compile(r"\d{2}\.\d{2}\.\d{4}")


def _money(value: Decimal | str | int) -> Decimal:
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        raise ValueError(f"not an amount of money: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount of money: {value!r}")
    return amount


def _moscow(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, MOSCOW)


def _mm_ss(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class ManualClock:
    """A clock that moves only when told to, for tests.

    Call it for the time (a POSIX timestamp, like :func:`time.time`); it starts
    at the real time unless ``start`` is given.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds


@dataclass(frozen=True)
class FaultPlan:
    """A fault applied to a share of the requests, whatever their number.

    ``mode`` is a :class:`~.numbers.FaultMode` (or its string value);
    ``share`` the fraction of requests affected, 0 to 1; ``endpoints`` which of
    ``"send"`` and ``"get"`` it applies to; ``seconds`` how late a ``slow``
    answer comes (the emulator's ``slow_seconds`` when ``None``).
    """

    mode: FaultMode
    share: float = 1.0
    endpoints: Collection[str] = ("send", "get")
    seconds: float | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", FaultMode(self.mode))
        except ValueError:
            modes = ", ".join(mode.value for mode in FaultMode)
            raise ValueError(f"unknown fault mode {self.mode!r} (one of {modes})") from None
        if isinstance(self.endpoints, str):
            raise ValueError("endpoints must be a collection such as ('send', 'get')")
        endpoints = frozenset(self.endpoints)
        if not endpoints <= {"send", "get"}:
            raise ValueError(f"endpoints must be 'send' and/or 'get', not {sorted(endpoints)}")
        object.__setattr__(self, "endpoints", endpoints)
        share = self.share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"share must be a number from 0 to 1, not {share!r}")
        seconds = self.seconds
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0
        ):
            raise ValueError(f"seconds must be a number of seconds, not {seconds!r}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultPlan | None:
        """Build a plan from the control endpoint's JSON (``{"mode": null}`` means none)."""
        if data.get("mode") is None:
            return None
        unknown = set(data) - {"mode", "share", "endpoints", "seconds"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        return cls(
            mode=data["mode"],
            share=data.get("share", 1.0),
            endpoints=data.get("endpoints", ("send", "get")),
            seconds=data.get("seconds"),
        )

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready data (the inverse of :meth:`from_json`)."""
        return {
            "mode": self.mode.value,
            "share": self.share,
            "endpoints": sorted(self.endpoints),
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Response:
    """What the emulator answers to one request.

    ``delay`` asks the transport to answer that many seconds late (``slow``);
    ``drop`` asks it to close the connection without answering (``dropped``),
    in which case ``status``, ``headers`` and ``body`` are meaningless.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    delay: float = 0.0
    drop: bool = False


@dataclass(frozen=True)
class CallRecord:
    """One request ``send/`` accepted: a flash call, a voice call or an SMS.

    Immutable: the state at any moment follows from the times, so a record can
    be shared between threads. ``kind`` is ``"flash_call"``, ``"voice_call"`` or
    ``"sms"``; ``caller`` the number the phone sees calling (``None`` for an
    SMS); ``code`` what the subscriber sees or hears; ``message`` the SMS text.
    """

    id: str
    kind: str
    number: str
    code: str
    caller: str | None
    price: Decimal
    created: float
    final_at: float
    final_state: str
    final_label: str
    duration: int
    callback_url: str | None
    message: str | None = None
    parent_id: str | None = None
    repeat: bool = False
    ani: str | None = None
    fault: str | None = None

    @property
    def created_at(self) -> datetime:
        """When the request was accepted, in provider (Moscow) time."""
        return _moscow(self.created)

    def state_at(self, now: float) -> str:
        """The state at ``now``: ``DIALLING``/``QUEUED``/``SEND`` until the final one."""
        if now >= self.final_at:
            return self.final_state
        if self.kind != "sms":
            return DIALLING
        # An SMS is QUEUED for two thirds of the delay, then SEND.
        if now < self.created + (self.final_at - self.created) * 2 / 3:
            return "QUEUED"
        return "SEND"

    def label_at(self, now: float) -> str:
        """The Russian label ``get/`` shows at ``now``."""
        if now >= self.final_at:
            return self.final_label
        return STATE_LABELS[self.state_at(now)]

    def data(self, now: float) -> dict[str, str]:
        """The record as ``get/`` shows it (``state`` and ``daily``)."""
        final = now >= self.final_at
        return {
            "id": self.id,
            "number": self.number,
            "date": self.created_at.strftime("%d.%m.%Y %H:%M:%S"),
            "duration": _mm_ss(self.duration if final else 0),
            "price": f"{self.price:.2f}",
            "service": SERVICES[self.kind],
            "state": self.label_at(now),
        }

    def to_json(self, now: float) -> dict[str, Any]:
        """Everything about the record as JSON-ready data (for ``/_emulator/log``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "number": self.number,
            "code": self.code,
            "caller": self.caller,
            "message": self.message,
            "price": f"{self.price:.2f}",
            "created": self.created_at.isoformat(),
            "state": self.state_at(now),
            "label": self.label_at(now),
            "final_state": self.final_state,
            "duration": self.duration,
            "callback_url": self.callback_url,
            "parent_id": self.parent_id,
            "repeat": self.repeat,
            "ani": self.ani,
            "fault": self.fault,
        }


@dataclass(frozen=True)
class LogEntry:
    """One request received on ``send/`` or ``get/``, whatever became of it.

    ``kind`` is the request kind when it could be told (``flash_call``,
    ``voice_call``, ``sms``, ``balance``, ``state``, ``daily``); ``result`` is
    ``"ok"``, the ``error_code`` answered, or ``None`` when no answer was
    produced (``http500``); ``status`` the HTTP status sent, ``None`` when the
    connection was dropped; ``fault`` the fault mode applied. ``payload`` is the
    decoded body with its ``security`` section removed: the API key is never
    kept, in this or any other field.
    """

    seq: int
    time: datetime
    endpoint: str
    kind: str | None
    number: str | None
    code: str | None
    caller: str | None
    state: str | None
    callback_url: str | None
    call_id: str | None
    result: str | None
    status: int | None
    fault: str | None
    payload: Any = None

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON-ready data."""
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "endpoint": self.endpoint,
            "kind": self.kind,
            "number": self.number,
            "code": self.code,
            "caller": self.caller,
            "state": self.state,
            "callback_url": self.callback_url,
            "call_id": self.call_id,
            "result": self.result,
            "status": self.status,
            "fault": self.fault,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class Callback:
    """A status callback to POST: ``payload`` as JSON to ``url``, from ``due`` on."""

    call_id: str
    url: str
    payload: dict[str, str]
    due: float


@dataclass(frozen=True)
class Delivery:
    """What became of one callback: the HTTP status, or the error when none came."""

    callback: Callback
    status: int | None
    error: str | None
    time: datetime

    def to_json(self) -> dict[str, Any]:
        """The delivery as JSON-ready data."""
        return {
            "call_id": self.callback.call_id,
            "url": self.callback.url,
            "payload": self.callback.payload,
            "status": self.status,
            "error": self.error,
            "time": self.time.isoformat(),
        }


class _RefusedError(Exception):
    """Internal: the request is answered with ``error_code``."""

    def __init__(self, error_code: str) -> None:
        super().__init__(error_code)
        self.error_code = error_code


@dataclass
class _Info:
    """What is known about a request so far, for its log entry."""

    kind: str | None = None
    number: str | None = None
    code: str | None = None
    caller: str | None = None
    callback_url: str | None = None
    call: CallRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _digits(value: Any) -> str | None:
    """``value`` as a string of digits, from a string or a non-negative integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    return None


def _number(value: Any) -> str | None:
    digits = _digits(value)
    if digits is None or not 11 <= len(digits) <= 15:
        return None
    return digits


def _code(value: Any) -> str:
    """A 4-digit code, from ``"0123"`` or from an integer 1000 to 9999."""
    digits = _digits(value)
    if digits is None or len(digits) != 4:
        raise _RefusedError("code_not_valid")
    return digits


def _capacity(value: Any) -> int:
    """A code length: a whole number the caller number's tail can hold.

    The document sets a default (4) and says more is for flash calls only, but
    names no range; 4 to 6 is this app's own policy, kept by the client
    (``FLASH_CAPACITY_RANGE``), not the provider's. So the emulator refuses
    only what cannot be a code length: not a whole number, 0, or so long that
    the caller number would lose its country code.
    """
    digits = _digits(value)
    if digits is None or len(digits) > 2 or not 1 <= int(digits) <= _MAX_CAPACITY:
        raise _RefusedError("code_not_valid")
    return int(digits)


def _repeat(value: Any) -> bool:
    if value is None or value in ("0", "1") or (type(value) is int and value in (0, 1)):
        return value in ("1", 1)
    raise _RefusedError("unknown_request")


def _callback_url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value
    raise _RefusedError("unknown_request")


def _section(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = payload[name]
    if not isinstance(section, Mapping):
        raise _RefusedError("unknown_request")
    return section


def _caller_for(code: str) -> str:
    """A caller number from the emulator's pool whose tail is ``code``."""
    return _CALLER_HEAD[: len(_CALLER_HEAD) - len(code)] + code


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


class Emulator:
    """The provider, faked: answers, balance, calls, callbacks and faults.

    Thread-safe: one lock guards the state, so the threaded HTTP server may call
    :meth:`handle` concurrently. Public attributes may be changed at any time:
    ``api_key``, ``callback_delay`` (seconds from a call to its final state and
    callback), ``slow_seconds``, ``registered_anis``, ``sms_intermediate_callbacks``
    (also POST ``QUEUED`` and ``SEND`` for an SMS), ``callback_duplicates`` (POST
    every callback twice), ``callback_shuffle`` (shuffle each batch of due
    callbacks), ``user_disabled`` (the account is blocked) and ``faults``
    (a :class:`FaultPlan` or ``None``).

    ``id_start`` is the first request id; by default it derives from the clock
    in milliseconds, so ids do not repeat across restarts (a site keeps them
    unique). ``seed`` makes codes and fault shares reproducible.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        balance: Decimal | str | int = DEFAULT_BALANCE,
        callback_delay: float = 2.0,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        registered_anis: Collection[str] = REGISTERED_ANIS,
        sms_intermediate_callbacks: bool = True,
        callback_duplicates: bool = False,
        callback_shuffle: bool = False,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        id_start: int | None = None,
        max_log: int | None = 100_000,
    ) -> None:
        self.api_key = api_key
        self.callback_delay = callback_delay
        self.slow_seconds = slow_seconds
        self.registered_anis = tuple(registered_anis)
        self.sms_intermediate_callbacks = sms_intermediate_callbacks
        self.callback_duplicates = callback_duplicates
        self.callback_shuffle = callback_shuffle
        self.clock = clock
        self.user_disabled = False
        self.faults: FaultPlan | None = None
        #: Set whenever a callback is scheduled, to wake a delivering thread.
        self.wakeup = threading.Event()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._initial_balance = _money(balance)
        self._balance = self._initial_balance
        self._next_id = int(clock() * 1000) if id_start is None else id_start
        self._log_seq = 0
        self._callback_seq = 0
        self._log: deque[LogEntry] = deque(maxlen=max_log)
        self._calls: dict[str, CallRecord] = {}
        self._pending: list[tuple[float, int, Callback]] = []
        self._deliveries: list[Delivery] = []

    # -- state --------------------------------------------------------------

    @property
    def balance(self) -> Decimal:
        """The account balance; settable from a ``Decimal``, a string or an integer."""
        with self._lock:
            return self._balance

    @balance.setter
    def balance(self, value: Decimal | str | int) -> None:
        amount = _money(value)
        with self._lock:
            self._balance = amount

    @property
    def log(self) -> list[LogEntry]:
        """Every request received on ``send/`` and ``get/``, oldest first."""
        with self._lock:
            return list(self._log)

    def sends(self, number: str | None = None) -> list[LogEntry]:
        """The ``send/`` requests received (for ``number`` only, when given).

        The way to assert that a request was sent exactly once, including one
        that met a fault.
        """
        return [
            entry
            for entry in self.log
            if entry.endpoint == "send" and (number is None or entry.number == number)
        ]

    @property
    def calls(self) -> list[CallRecord]:
        """Every request ``send/`` accepted, oldest first."""
        with self._lock:
            return list(self._calls.values())

    def get_call(self, call_id: str) -> CallRecord | None:
        """The call or SMS with this id, if any."""
        with self._lock:
            return self._calls.get(call_id)

    def last_call(self, number: str | None = None) -> CallRecord | None:
        """The latest call or SMS (to ``number``, when given): what the phone just got."""
        for call in reversed(self.calls):
            if number is None or call.number == number:
                return call
        return None

    @property
    def deliveries(self) -> list[Delivery]:
        """Every callback delivery attempted, oldest first."""
        with self._lock:
            return list(self._deliveries)

    @property
    def pending_callbacks(self) -> list[Callback]:
        """The callbacks scheduled but not yet handed out, soonest first."""
        with self._lock:
            return [item[2] for item in sorted(self._pending)]

    def reset(self, *, balance: Decimal | str | int | None = None) -> None:
        """Forget calls, log, callbacks and faults; restore the balance.

        Ids go on from where they were, so a site that kept them sees no repeat.
        """
        amount = self._initial_balance if balance is None else _money(balance)
        with self._lock:
            self._log.clear()
            self._calls.clear()
            self._pending.clear()
            self._deliveries.clear()
            self._balance = amount
            self.faults = None
            self.user_disabled = False

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (``GET /_emulator/log``)."""
        now = self.clock()
        with self._lock:
            return {
                "balance": f"{self._balance:.2f}",
                "user_disabled": self.user_disabled,
                "faults": self.faults.to_json() if self.faults else None,
                "log": [entry.to_json() for entry in self._log],
                "calls": [call.to_json(now) for call in self._calls.values()],
                "deliveries": [delivery.to_json() for delivery in self._deliveries],
                "pending_callbacks": len(self._pending),
            }

    # -- callbacks ----------------------------------------------------------

    def due_callbacks(self, now: float | None = None) -> list[Callback]:
        """Hand out the callbacks due by ``now`` (default: the clock), soonest first.

        Each callback is handed out once; the caller delivers it and reports
        with :meth:`record_delivery`.
        """
        when = self.clock() if now is None else now
        due: list[Callback] = []
        with self._lock:
            while self._pending and self._pending[0][0] <= when:
                due.append(heapq.heappop(self._pending)[2])
            if self.callback_shuffle:
                self._random.shuffle(due)
        return due

    def next_callback_due(self) -> float | None:
        """When the next callback falls due, or ``None`` when none is pending."""
        with self._lock:
            return self._pending[0][0] if self._pending else None

    def record_delivery(
        self, callback: Callback, status: int | None, error: str | None = None
    ) -> Delivery:
        """Record what became of delivering ``callback``."""
        delivery = Delivery(callback, status, error, _moscow(self.clock()))
        with self._lock:
            self._deliveries.append(delivery)
        logger.info(
            "callback %s %s -> %s", callback.call_id, callback.payload["state"], status or error
        )
        return delivery

    # -- requests -----------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one HTTP request to the API, as the provider would.

        ``path`` may carry any prefix and a query string; it must end in
        ``send/`` or ``get/`` (the trailing slash is optional). Only the
        ``Authorization`` header is read from ``headers``.
        """
        route = path.split("?", 1)[0].rstrip("/")
        if route.endswith("/send") or route == "send":
            endpoint = "send"
        elif route.endswith("/get") or route == "get":
            endpoint = "get"
        else:
            return Response(404, {"Content-Type": "text/plain; charset=utf-8"}, b"Not Found")
        payload: Any
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            payload = None
        now = self.clock()
        info = _Info()
        if method != "POST":
            answer = {"result": "error", "error_code": "unknown_request"}
            with self._lock:
                self._log_entry(endpoint, info, payload, answer, 405, None, now)
            return Response(405, {**_JSON_HEADERS, "Allow": "POST"}, _dumps(answer))
        with self._lock:
            fault, seconds = self._choose_fault(endpoint, payload)
            if fault is FaultMode.HTTP500:
                # The provider failed before doing anything: nothing placed.
                self._describe(endpoint, payload, info)
                self._log_entry(endpoint, info, payload, None, 500, fault, now)
                return Response(500, _HTML_HEADERS, _HTTP500_PAGE)
            try:
                answer = self._answer(endpoint, headers, payload, info, now, fault)
            except _RefusedError as refused:
                answer = {"result": "error", "error_code": refused.error_code}
            status = (
                None if fault is FaultMode.DROPPED else 502 if fault is FaultMode.HTTP502 else 200
            )
            self._log_entry(endpoint, info, payload, answer, status, fault, now)
        if info.call is not None:
            self._announce(info.call)
        body_out = _dumps(answer)
        if fault is FaultMode.SLOW:
            return Response(200, _JSON_HEADERS, body_out, delay=seconds)
        if fault is FaultMode.HTML:
            return Response(200, _HTML_HEADERS, _HTML_PAGE)
        if fault is FaultMode.TRUNCATED:
            return Response(200, _JSON_HEADERS, body_out[: len(body_out) // 2])
        if fault is FaultMode.DROPPED:
            return Response(0, {}, b"", drop=True)
        if fault is FaultMode.HTTP502:
            return Response(502, _HTML_HEADERS, _HTTP502_PAGE)
        return Response(200, _JSON_HEADERS, body_out)

    def _choose_fault(self, endpoint: str, payload: Any) -> tuple[FaultMode | None, float]:
        if endpoint == "send" and isinstance(payload, Mapping):
            number = _number(payload.get("number"))
            if number is not None:
                fault = behaviour_for(number).fault
                if fault is not None:
                    return fault, self.slow_seconds
        plan = self.faults
        if (
            plan is not None
            and endpoint in plan.endpoints
            and (plan.share >= 1 or self._random.random() < plan.share)
        ):
            seconds = self.slow_seconds if plan.seconds is None else plan.seconds
            return plan.mode, seconds
        return None, 0.0

    @staticmethod
    def _describe(endpoint: str, payload: Any, info: _Info) -> None:
        """Fill in what can be told of an unprocessed request, for the log."""
        if not isinstance(payload, Mapping):
            return
        if endpoint == "get":
            if payload.get("request") in ("balance", "state", "daily"):
                info.kind = payload["request"]
            return
        if "sms" in payload:
            info.kind = "sms"
        else:
            info.kind = "voice_call" if "voice" in payload else "flash_call"
            info.number = _number(payload.get("number"))

    def _authorised(self, headers: Mapping[str, str], payload: Mapping[str, Any]) -> bool:
        key: Any = None
        for name, value in headers.items():
            if name.lower() == "authorization" and value.strip():
                key = value.strip()
                break
        else:
            security = payload.get("security")
            if isinstance(security, Mapping):
                key = security.get("apiKey")
        if not isinstance(key, str):
            return False
        # Constant time, as a real provider would compare; it costs nothing here.
        return hmac.compare_digest(key.encode(), self.api_key.encode())

    def _answer(
        self,
        endpoint: str,
        headers: Mapping[str, str],
        payload: Any,
        info: _Info,
        now: float,
        fault: FaultMode | None,
    ) -> dict[str, Any]:
        # Called with the lock held.
        if not isinstance(payload, Mapping):
            raise _RefusedError("unknown_request")
        self._describe(endpoint, payload, info)
        if not self._authorised(headers, payload):
            raise _RefusedError("authorisation_failed")
        if self.user_disabled:
            raise _RefusedError("user_disabled")
        if endpoint == "get":
            return self._get(payload, now)
        if info.kind == "sms":
            return self._send_sms(payload, info, now, fault)
        return self._send_call(payload, info, now, fault)

    def _random_digits(self, count: int) -> str:
        return "".join(self._random.choices("0123456789", k=count))

    def _send_call(
        self, payload: Mapping[str, Any], info: _Info, now: float, fault: FaultMode | None
    ) -> dict[str, Any]:
        if "voice" in payload and "flashcall" in payload:
            raise _RefusedError("unknown_request")
        number = _number(payload.get("number"))
        if number is None:
            raise _RefusedError("number_is_empty")
        info.callback_url = callback_url = _callback_url(payload.get("callback_url"))
        capacity = payload.get("capacity")
        repeat = False
        ani: str | None = None
        if "flashcall" in payload:
            code = _code(_section(payload, "flashcall").get("code"))
            if capacity is not None and _capacity(capacity) != 4:
                raise _RefusedError("code_not_valid")
            caller = _caller_for(code)
        elif "voice" in payload:
            voice = _section(payload, "voice")
            if capacity is not None and _capacity(capacity) != 4:
                raise _RefusedError("code_not_valid")
            repeat = _repeat(voice.get("repeat"))
            # The document's table says "api", its example "ani": accept both.
            raw_ani = voice["ani"] if "ani" in voice else voice.get("api")
            if raw_ani is not None:
                ani = _digits(raw_ani)
                if ani is None or ani not in self.registered_anis:
                    raise _RefusedError("ani_phone_not_valid")
            if voice.get("code") is not None:
                code = _code(voice["code"])
                caller = ani or _caller_for(self._random_digits(4))
            elif ani is not None:
                # "Absent: the code is the last 4 digits of the number the call
                # comes from", and with ani the call comes from that number.
                caller = ani
                code = ani[-4:]
            else:
                # Service code: the last four digits of the calling number.
                code = self._random_digits(4)
                caller = _caller_for(code)
        else:
            length = 4 if capacity is None else _capacity(capacity)
            code = self._random_digits(length)
            caller = _caller_for(code)
        info.code, info.caller = code, caller
        behaviour = behaviour_for(number)
        if behaviour.error_code is not None:
            raise _RefusedError(behaviour.error_code)
        kind = info.kind or "flash_call"
        price = self._charge(kind)
        final_state = behaviour.state_of(kind)
        if final_state == "ANSWERED":
            duration = _DURATIONS[kind + ("_repeat" if repeat else "")]
        else:
            duration = 0
        call = self._place(
            kind=kind,
            number=number,
            code=code,
            caller=caller,
            price=price,
            now=now,
            final_state=final_state,
            final_label=behaviour.call_label or STATE_LABELS[final_state],
            duration=duration,
            callback_url=callback_url,
            repeat=repeat,
            ani=ani,
            fault=fault,
        )
        info.call = call
        return {
            "result": "ok",
            "id": call.id,
            "number": number,
            "price": f"{price:.2f}",
            "code": code,
        }

    def _send_sms(
        self, payload: Mapping[str, Any], info: _Info, now: float, fault: FaultMode | None
    ) -> dict[str, Any]:
        sms = _section(payload, "sms")
        parent_id = _digits(sms.get("id"))
        parent = None if parent_id is None else self._calls.get(parent_id)
        # send/ has no ID_Not_Found: an unknown (or SMS) id makes a malformed request.
        if parent is None or parent.kind == "sms":
            raise _RefusedError("unknown_request")
        info.number, info.code = parent.number, parent.code
        # The document lists callback_url for every send/, but its SMS example
        # has none, yet SMS statuses go to "the Callback URL": this request's,
        # or else the call's own.
        callback_url = _callback_url(payload.get("callback_url")) or parent.callback_url
        info.callback_url = callback_url
        price = self._charge("sms")
        state = behaviour_for(parent.number).sms_state
        message = f"Ваш код: {parent.code}"
        call = self._place(
            kind="sms",
            number=parent.number,
            code=parent.code,
            caller=None,
            price=price,
            now=now,
            final_state=state,
            final_label=STATE_LABELS[state],
            duration=0,
            callback_url=callback_url,
            message=message,
            parent_id=parent.id,
            fault=fault,
        )
        info.call = call
        return {
            "result": "ok",
            "id": call.id,
            "number": parent.number,
            "price": f"{price:.2f}",
            "message": message,
        }

    def _charge(self, kind: str) -> Decimal:
        price = PRICES[kind]
        if self._balance < price:
            raise _RefusedError("not_enough_money")
        self._balance -= price
        return price

    def _place(self, *, now: float, fault: FaultMode | None, **fields: Any) -> CallRecord:
        call_id = str(self._next_id)
        self._next_id += 1
        delay = max(0.0, self.callback_delay)
        call = CallRecord(
            id=call_id,
            created=now,
            final_at=now + delay,
            fault=fault.value if fault else None,
            **fields,
        )
        self._calls[call_id] = call
        if call.callback_url:
            self._schedule(call, delay)
        return call

    def _schedule(self, call: CallRecord, delay: float) -> None:
        assert call.callback_url is not None
        states: list[tuple[float, str, int]] = []
        if call.kind == "sms" and self.sms_intermediate_callbacks:
            states += [(call.created + delay / 3, "QUEUED", 0)]
            states += [(call.created + delay * 2 / 3, "SEND", 0)]
        states.append((call.final_at, call.final_state, call.duration))
        for due, state, duration in states:
            payload = {
                "id": call.id,
                "number": call.number,
                "duration": str(duration),
                "state": state,
                "price": f"{call.price:.2f}",
                "date": call.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            }
            callback = Callback(call.id, call.callback_url, payload, due)
            for _ in range(2 if self.callback_duplicates else 1):
                self._callback_seq += 1
                heapq.heappush(self._pending, (due, self._callback_seq, callback))
        self.wakeup.set()

    def _get(self, payload: Mapping[str, Any], now: float) -> dict[str, Any]:
        request = payload.get("request")
        if request == "balance":
            return {"result": "ok", "balance": f"{self._balance:.2f}", "currency": "Rub"}
        if request == "state":
            call_id = _digits(payload.get("id"))
            call = None if call_id is None else self._calls.get(call_id)
            if call is None:
                raise _RefusedError("ID_Not_Found")
            return {"result": "ok", "data": call.data(now)}
        if request == "daily":
            date = payload.get("date")
            if date is None or date == "":
                raise _RefusedError("Date_is_Empty")
            if not isinstance(date, str) or not _DATE_RE.fullmatch(date):
                raise _RefusedError("unknown_request")
            try:
                day = datetime.strptime(date, "%d.%m.%Y").date()
            except ValueError:
                raise _RefusedError("unknown_request") from None
            rows = [
                call.data(now) for call in self._calls.values() if call.created_at.date() == day
            ]
            return {"result": "ok", "rows": str(len(rows)), "data": rows}
        raise _RefusedError("unknown_request")

    def _log_entry(
        self,
        endpoint: str,
        info: _Info,
        payload: Any,
        answer: Mapping[str, Any] | None,
        status: int | None,
        fault: FaultMode | None,
        now: float,
    ) -> None:
        if isinstance(payload, Mapping):
            # Never keep the key: drop the whole security section.
            payload = {key: value for key, value in payload.items() if key != "security"}
        if answer is None:
            result = None
        else:
            result = "ok" if answer.get("result") == "ok" else answer.get("error_code")
        call = info.call
        self._log_seq += 1
        self._log.append(
            LogEntry(
                seq=self._log_seq,
                time=_moscow(now),
                endpoint=endpoint,
                kind=info.kind,
                number=info.number,
                code=info.code,
                caller=info.caller,
                state=None if call is None else call.state_at(now),
                callback_url=info.callback_url,
                call_id=None if call is None else call.id,
                result=result,
                status=status,
                fault=fault.value if fault else None,
                payload=payload,
            )
        )
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s %s %s -> %s%s",
                endpoint,
                info.kind or "?",
                info.number or "-",
                result or status,
                f" [{fault.value}]" if fault else "",
            )

    @staticmethod
    def _announce(call: CallRecord) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        if call.kind == "flash_call":
            logger.info("%s rings from %s (code %s)", call.number, call.caller, call.code)
        elif call.kind == "voice_call":
            logger.info("%s hears the robot say %s", call.number, call.code)
        else:
            logger.info("%s gets an SMS: %s", call.number, call.message)
