"""The app's settings: one object over the site's ``VOICEPASSWORD`` dict.

Every setting has its default here and nowhere else. Values are read from
``django.conf.settings`` on first access and cached until Django's
``setting_changed`` signal says ``VOICEPASSWORD`` changed (as
``override_settings`` does in tests), so nothing captures a setting at import
time. A key the app does not know, a value of the wrong type or a dotted path
that cannot be imported raises :class:`ConfigurationError` naming the key; the
system checks (``checks.py``) report the same problems at start-up with stable
ids, from :meth:`VoicePasswordSettings.problems`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

__all__ = [
    "DEFAULTS",
    "FRAUD_GUARD_DEFAULTS",
    "ConfigurationError",
    "Problem",
    "VoicePasswordSettings",
    "settings",
]


class ConfigurationError(ImproperlyConfigured):
    """The ``VOICEPASSWORD`` setting is wrong.

    A subclass of Django's ``ImproperlyConfigured`` and deliberately not of
    :class:`~django_voicepassword.exceptions.VoicePasswordError`: code that
    tolerates provider failures must not swallow a broken configuration.

    Raised on reading a setting while the dict has any problem, it lists
    every problem of the dict at once (``problems`` holds them), not only
    the first one found.
    """

    #: Every problem of the dict when the error was raised (empty: not known).
    problems: list[Problem]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.problems = []


#: Every setting and its default. ``docs/`` lists them with their meaning.
DEFAULTS: dict[str, Any] = {
    # The provider account's API key; required by the HTTP gateway.
    "API_KEY": None,
    # Base URL of the API; send/ and get/ are appended. Point it at the
    # emulator (http://127.0.0.1:8765/api/voice-password/) in development.
    "API_URL": "https://vp.voicepassword.ru/api/voice-password/",
    # Where the API key travels: "header" (Authorization) or "body" (security.apiKey).
    "AUTH_MODE": "header",
    # Seconds to wait for a connection, and for an answer once connected.
    "CONNECT_TIMEOUT": 3.05,
    "READ_TIMEOUT": 10.0,
    # How often a read-only get/ request is retried (with back-off); send/ never is.
    "GET_RETRIES": 3,
    # Dotted path of the gateway class: HttpGateway, ConsoleGateway or LocmemGateway.
    "GATEWAY": "django_voicepassword.gateways.HttpGateway",
    # Region used to read numbers typed without a country code.
    "PHONE_REGION": "RU",
    # Regions (ISO 3166 codes) whose numbers are accepted; empty: any.
    "ALLOWED_REGIONS": ("RU",),
    # libphonenumber number types accepted (MOBILE, FIXED_LINE, ...); empty: any.
    "ALLOWED_NUMBER_TYPES": ("MOBILE",),
    # Absolute URL of the site as the provider reaches it (https://example.com);
    # when set, every call carries a callback URL with a per-call signed token.
    "CALLBACK_BASE_URL": None,
    # Callback bodies larger than this many bytes are refused with 413.
    "CALLBACK_MAX_BODY": 4096,
    # Callback events kept per callback URL (per call); more are answered 200
    # and dropped, counted in Call.callbacks_dropped.
    "CALLBACK_MAX_EVENTS": 20,
    # PostgreSQL with psycopg 3: run the callback statement (the function's
    # call) as a prepared statement. Off: safe behind PgBouncer < 1.21 in
    # transaction mode, which cannot route prepared statements.
    "CALLBACK_PREPARED_STATEMENTS": False,
    # Addresses or networks (CIDR) callbacks may come from; empty: any.
    "CALLBACK_ALLOWED_IPS": (),
    # A header set by the site's own proxy with the client address (X-Forwarded-For);
    # None: the connection's address. Only name a header your proxy overwrites.
    "PROXY_HEADER": None,
    # voicepassword_balance exits non-zero below this amount; None: no threshold.
    "LOW_BALANCE": None,
    # Days to keep calls, callback events and balance snapshots (voicepassword_purge).
    "CALL_RETENTION_DAYS": 180,
    "CALLBACK_RETENTION_DAYS": 30,
    "BALANCE_RETENTION_DAYS": 365,
    # Days to keep challenges (they hold the number they were for).
    "CHALLENGE_RETENTION_DAYS": 30,
    # Phone login and verification.
    # Seconds a code can be entered.
    "CHALLENGE_TTL": 300,
    # Codes that may be entered for one code sent.
    "MAX_ATTEMPTS": 3,
    # Seconds before a code may be sent again: the first, then each following;
    # the last repeats.
    "RESEND_COOLDOWNS": (30, 60, 120, 300),
    # Who picks a flash call's code: "service" (the provider) or "client" (this app).
    "FLASH_CODE_SOURCE": "service",
    # Whether a challenge may switch to an SMS (about ten times the price of a call).
    "SMS_FALLBACK": False,
    # Whether a login by an unknown number creates a user; off: unknown numbers
    # are never called.
    "CREATE_USERS": False,
    # Dotted path of the adapter that finds, creates and verifies users by number.
    "ADAPTER": "django_voicepassword.adapter.PhoneAdapter",
    # With UserFieldAdapter: the user model's field that holds the number.
    "USER_PHONE_FIELD": None,
    # Abuse limits per scope, as rates: "3/10m,10/d" (s, m, h, d). A scope left
    # out or empty is not limited.
    "LIMITS": {
        "number": "3/10m,10/d",
        "ip": "10/h,50/d",
        "network": "12/h,60/d",
        "prefix": "50/h",
        "session": "5/h",
        "global": "500/h",
    },
    # The part of LIMITS["global"] that numbers not verified on the site may
    # use (0 < share <= 1); the rest is kept for verified numbers, so that
    # an attack by new numbers cannot lock every user out.
    "GLOBAL_NEW_SHARE": 0.5,
    # Digits of the number that make its prefix (country code, operator, block).
    "PREFIX_LENGTH": 7,
    # Spend allowed per Moscow day, in the account currency; None: no budget.
    "DAILY_BUDGET": None,
    # What each channel is reserved against the budget before it is sent.
    "PRICE_ESTIMATES": {"flash_call": "0.50", "voice_call": "1.00", "sms": "4.00"},
    # Key of the codes' HMAC; None: derived from SECRET_KEY for this use alone.
    "CODE_KEY": None,
    # Background work (docs/tasks.md).
    # Whether a challenge's code is sent by a task on a worker (Django's Tasks
    # framework): the challenge answers at once, the worker places the call.
    "ASYNC_SEND": False,
    # The TASKS alias and the queue that ASYNC_SEND enqueues the sends on.
    "ASYNC_SEND_BACKEND": "default",
    "ASYNC_SEND_QUEUE": "default",
    # Workflows (docs/howto/workflows.md): the channels a challenge moves through
    # on its own when no code is confirmed, e.g.
    # {"steps": [{"channel": "flash_call", "wait": 30},
    #            {"channel": "voice_call", "wait": 60}, {"channel": "sms"}],
    #  "regions": {"KZ": [...]}, "operators": {"Tele2": [...]}, "tasks": False}.
    # None: no workflow, the person asks for each new code (resend).
    "WORKFLOW": None,
    # The fraud guard and review numbers (docs/topics/fraud.md).
    # None: off. A dict (FRAUD_GUARD_DEFAULTS for the keys left out): block new
    # numbers' sends to a prefix or country whose confirmation rate falls far
    # below the rest of the site's.
    "FRAUD_GUARD": None,
    # Numbers that log in with a fixed code and are never called (app-store
    # review, load tests): {"79990000090": "1234"}. Refused with DEBUG off
    # unless REVIEW_NUMBERS_IN_PRODUCTION.
    "REVIEW_NUMBERS": {},
    "REVIEW_NUMBERS_IN_PRODUCTION": False,
}

#: What an enabled ``FRAUD_GUARD`` dict holds for the keys it leaves out.
FRAUD_GUARD_DEFAULTS: dict[str, Any] = {
    # Seconds of the sliding window the sends and confirmations are counted in.
    "WINDOW": 86400,
    # Sends in the window before a prefix, or a country, may be judged.
    "MIN_SENDS": 20,
    "COUNTRY_MIN_SENDS": 200,
    # Blocked when its confirmation rate is below RATIO times the baseline.
    "RATIO": 0.25,
    # The confirmation rate assumed before the site has its own figures: the
    # baseline counts MIN_SENDS sends confirmed at this rate on top of the
    # rest of the site's.
    "BASELINE": 0.5,
    # Seconds a block lasts.
    "BLOCK_SECONDS": 86400,
}

#: The length of every code (``verification.CODE_LENGTH``; conf cannot import it).
_CODE_LENGTH = 4


def _unknown_message(unknown: list[str]) -> str:
    """Name the unknown keys, each with the known key it is likely a typo of."""
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key.upper(), DEFAULTS, n=1)
        named.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return (
        f"Unknown VOICEPASSWORD setting(s): {', '.join(named)}. "
        f"Known settings: {', '.join(sorted(DEFAULTS))}."
    )


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings, as the system checks report it."""

    key: str
    message: str
    check_id: str = "voicepassword.E002"


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_str_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple | frozenset | set) and all(
        isinstance(item, str) for item in value
    )


def _is_optional_amount(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return False
    try:
        return Decimal(str(value)).is_finite()
    except ArithmeticError:
        return False


def _is_days(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_networks(value: Any) -> bool:
    if not _is_str_sequence(value):
        return False
    try:
        for item in value:
            ipaddress.ip_network(item, strict=False)
    except ValueError:
        return False
    return True


def _is_cooldowns(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )


_RATE = re.compile(r"^\s*\d+\s*/\s*\d*\s*[smhd]\s*$")
_LIMIT_SCOPES = frozenset({"number", "ip", "network", "prefix", "session", "global"})
_CHANNELS = frozenset({"flash_call", "voice_call", "sms"})


def _is_limits(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and set(value) <= _LIMIT_SCOPES
        and all(
            v is None
            or (isinstance(v, str) and all(_RATE.match(part) for part in v.split(",") if v))
            for v in value.values()
        )
    )


def _is_share(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1


def _is_prices(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and set(value) == _CHANNELS
        and all(_is_optional_amount(v) and v is not None for v in value.values())
    )


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_code_source(value: Any) -> bool:
    return value in ("service", "client")


def _is_optional_mapping(value: Any) -> bool:
    return value is None or isinstance(value, Mapping)


def _is_auth_mode(value: Any) -> bool:
    return value in ("header", "body")


# --- the fraud guard and review numbers: settings with their own check ids ---

_GUARD_COUNTS = ("WINDOW", "MIN_SENDS", "COUNTRY_MIN_SENDS", "BLOCK_SECONDS")
_GUARD_SHARES = ("RATIO", "BASELINE")


def _fraud_guard_errors(value: Any) -> list[str]:
    """What is wrong with a ``FRAUD_GUARD`` value, one sentence each (empty: nothing)."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [
            f"VOICEPASSWORD['FRAUD_GUARD'] must be None or a dict, not {type(value).__name__}."
        ]
    errors = []
    unknown = sorted(str(key) for key in value if key not in FRAUD_GUARD_DEFAULTS)
    if unknown:
        errors.append(
            f"Unknown VOICEPASSWORD['FRAUD_GUARD'] key(s): {', '.join(unknown)}. "
            f"Known keys: {', '.join(FRAUD_GUARD_DEFAULTS)}."
        )
    for key in _GUARD_COUNTS:
        if key in value and not _is_days(value[key]):
            errors.append(
                f"VOICEPASSWORD['FRAUD_GUARD'][{key!r}] must be a whole number, 1 or more."
            )
    for key in _GUARD_SHARES:
        if key in value and not _is_share(value[key]):
            errors.append(
                f"VOICEPASSWORD['FRAUD_GUARD'][{key!r}] must be a number above 0 and at most 1."
            )
    return errors


def _review_numbers_errors(value: Any) -> list[str]:
    """What is wrong with the shape of ``REVIEW_NUMBERS`` (``checks.py`` reads the numbers)."""
    if not isinstance(value, Mapping):
        return [f"VOICEPASSWORD['REVIEW_NUMBERS'] must be a dict, not {type(value).__name__}."]
    errors = []
    for number, code in value.items():
        if not isinstance(number, str):
            errors.append("VOICEPASSWORD['REVIEW_NUMBERS'] keys must be phone numbers as strings.")
        # Not the code itself in the message: it logs somebody in.
        elif not (
            isinstance(code, str)
            and len(code) == _CODE_LENGTH
            and all(c in "0123456789" for c in code)
        ):
            errors.append(
                f"VOICEPASSWORD['REVIEW_NUMBERS'][{number[:20]!r}] must be a code of "
                f"{_CODE_LENGTH} ASCII digits, as a string."
            )
    return errors


#: Settings whose problems are told one by one, under a check id of their own.
_DETAILED: dict[str, tuple[Callable[[Any], list[str]], str]] = {
    "FRAUD_GUARD": (_fraud_guard_errors, "voicepassword.E020"),
    "REVIEW_NUMBERS": (_review_numbers_errors, "voicepassword.E021"),
}


# key -> (test, what the test expects, in words for the error message)
_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "API_KEY": (_is_optional_str, "a string or None"),
    "API_URL": (_is_str, "a string"),
    "AUTH_MODE": (_is_auth_mode, '"header" or "body"'),
    "CONNECT_TIMEOUT": (_is_positive_number, "a positive number of seconds"),
    "READ_TIMEOUT": (_is_positive_number, "a positive number of seconds"),
    "GET_RETRIES": (_is_count, "a whole number, 0 or more"),
    "GATEWAY": (_is_str, "a dotted path to a gateway class"),
    "PHONE_REGION": (_is_str, "a region code such as 'RU'"),
    "ALLOWED_REGIONS": (_is_str_sequence, "a list of region codes"),
    "ALLOWED_NUMBER_TYPES": (_is_str_sequence, "a list of number type names"),
    "CALLBACK_BASE_URL": (_is_optional_str, "an absolute URL or None"),
    "CALLBACK_MAX_BODY": (_is_days, "a positive whole number of bytes"),
    "CALLBACK_MAX_EVENTS": (_is_days, "a positive whole number of events"),
    "CALLBACK_PREPARED_STATEMENTS": (_is_flag, "True or False"),
    "CALLBACK_ALLOWED_IPS": (_is_networks, "a list of IP addresses or networks (CIDR)"),
    "PROXY_HEADER": (_is_optional_str, "a header name or None"),
    "LOW_BALANCE": (_is_optional_amount, "an amount (number, string or Decimal) or None"),
    "CALL_RETENTION_DAYS": (_is_days, "a positive whole number of days"),
    "CALLBACK_RETENTION_DAYS": (_is_days, "a positive whole number of days"),
    "BALANCE_RETENTION_DAYS": (_is_days, "a positive whole number of days"),
    "CHALLENGE_RETENTION_DAYS": (_is_days, "a positive whole number of days"),
    "CHALLENGE_TTL": (_is_days, "a positive whole number of seconds"),
    "MAX_ATTEMPTS": (_is_days, "a positive whole number"),
    "RESEND_COOLDOWNS": (_is_cooldowns, "a non-empty list of whole numbers of seconds"),
    "FLASH_CODE_SOURCE": (_is_code_source, '"service" or "client"'),
    "SMS_FALLBACK": (_is_flag, "True or False"),
    "CREATE_USERS": (_is_flag, "True or False"),
    "ADAPTER": (_is_str, "a dotted path to an adapter class"),
    "USER_PHONE_FIELD": (_is_optional_str, "a field name or None"),
    "LIMITS": (
        _is_limits,
        "a dict of scopes (number, ip, network, prefix, session, global) to rates "
        "such as '3/10m,10/d'",
    ),
    "GLOBAL_NEW_SHARE": (_is_share, "a number above 0 and at most 1, such as 0.5"),
    "PREFIX_LENGTH": (_is_days, "a positive whole number of digits"),
    "DAILY_BUDGET": (_is_optional_amount, "an amount (number, string or Decimal) or None"),
    "PRICE_ESTIMATES": (
        _is_prices,
        "a dict of flash_call, voice_call and sms to amounts",
    ),
    "CODE_KEY": (_is_optional_str, "a string or None"),
    "ASYNC_SEND": (_is_flag, "True or False"),
    "ASYNC_SEND_BACKEND": (_is_name, "the name of a backend in the TASKS setting"),
    "ASYNC_SEND_QUEUE": (_is_name, "a queue name"),
    # Only the shape here: workflow.problems() reads the steps (voicepassword.E012).
    "WORKFLOW": (_is_optional_mapping, "a dict (steps, regions, operators, tasks) or None"),
    "FRAUD_GUARD": (lambda value: not _fraud_guard_errors(value), "None or a dict"),
    "REVIEW_NUMBERS": (lambda value: not _review_numbers_errors(value), "a dict"),
    "REVIEW_NUMBERS_IN_PRODUCTION": (_is_flag, "True or False"),
}

# Settings holding dotted paths: imported once, here, with errors that name them.
_IMPORT_STRINGS = frozenset({"GATEWAY", "ADAPTER"})
# Settings normalized to tuples, so that callers may rely on immutability.
_TUPLES = frozenset({"ALLOWED_REGIONS", "ALLOWED_NUMBER_TYPES", "RESEND_COOLDOWNS"})
# Settings read as networks and amounts, so that callers get parsed values.
_NETWORKS = frozenset({"CALLBACK_ALLOWED_IPS"})
_AMOUNTS = frozenset({"LOW_BALANCE", "DAILY_BUDGET"})


class VoicePasswordSettings:
    """Attribute access to the ``VOICEPASSWORD`` dict, with defaults and checks.

    ``settings.API_KEY`` returns the site's value or the default;
    ``settings.GATEWAY`` returns the imported class, not the string.
    """

    API_KEY: str | None
    API_URL: str
    AUTH_MODE: str
    CONNECT_TIMEOUT: float
    READ_TIMEOUT: float
    GET_RETRIES: int
    GATEWAY: type[Any]
    PHONE_REGION: str
    ALLOWED_REGIONS: tuple[str, ...]
    ALLOWED_NUMBER_TYPES: tuple[str, ...]
    CALLBACK_BASE_URL: str | None
    CALLBACK_MAX_BODY: int
    CALLBACK_MAX_EVENTS: int
    CALLBACK_PREPARED_STATEMENTS: bool
    CALLBACK_ALLOWED_IPS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    PROXY_HEADER: str | None
    LOW_BALANCE: Decimal | None
    CALL_RETENTION_DAYS: int
    CALLBACK_RETENTION_DAYS: int
    BALANCE_RETENTION_DAYS: int
    CHALLENGE_RETENTION_DAYS: int
    CHALLENGE_TTL: int
    MAX_ATTEMPTS: int
    RESEND_COOLDOWNS: tuple[int, ...]
    FLASH_CODE_SOURCE: str
    SMS_FALLBACK: bool
    CREATE_USERS: bool
    ADAPTER: type[Any]
    USER_PHONE_FIELD: str | None
    LIMITS: dict[str, str]
    GLOBAL_NEW_SHARE: float
    PREFIX_LENGTH: int
    DAILY_BUDGET: Decimal | None
    PRICE_ESTIMATES: dict[str, Decimal]
    CODE_KEY: str | None
    ASYNC_SEND: bool
    ASYNC_SEND_BACKEND: str
    ASYNC_SEND_QUEUE: str
    WORKFLOW: Mapping[str, Any] | None
    FRAUD_GUARD: dict[str, Any] | None
    REVIEW_NUMBERS: dict[str, str]
    REVIEW_NUMBERS_IN_PRODUCTION: bool

    def __init__(self, user_settings: Mapping[str, Any] | None = None) -> None:
        # Given explicitly (tests), the dict is used as is; otherwise it is read
        # from django.conf.settings on first access.
        self._explicit = user_settings
        self._lock = threading.Lock()
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> Mapping[str, Any]:
        """The site's ``VOICEPASSWORD`` dict (empty when the site has none)."""
        if self._explicit is not None:
            return self._explicit
        value = getattr(django_settings, "VOICEPASSWORD", None)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"The VOICEPASSWORD setting must be a dict, not {type(value).__name__}."
            )
        return value

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in DEFAULTS:
            raise AttributeError(f"Invalid VoicePassword setting: {key!r}")
        user = self.user_settings
        try:
            # Unknown keys are refused on every read: a typo ("CREATE_USER")
            # must not quietly leave its setting at the default.
            self._reject_unknown(user)
            value = self.value(key)
        except ConfigurationError as error:
            # One problem found: report every one, so that fixing a typo does
            # not merely reveal the next error of the same dict.
            raise self._every_problem(error) from error
        with self._lock:
            setattr(self, key, value)
            self._cached.add(key)
        return value

    def value(self, key: str) -> Any:
        """``key``'s value as the app uses it, checked on its own.

        Like ``settings.KEY``, but neither cached nor refused for problems
        of other keys (unknown ones included): the system checks use it to
        report what is wrong with one setting beside what is wrong elsewhere.
        Raises :class:`ConfigurationError` if this setting itself is wrong.
        """
        if key not in DEFAULTS:
            raise AttributeError(f"Invalid VoicePassword setting: {key!r}")
        value = self.user_settings.get(key, DEFAULTS[key])
        test, expected = _TYPES[key]
        if key in _DETAILED:
            errors = _DETAILED[key][0](value)
            if errors:
                raise ConfigurationError(errors[0])
        elif not test(value):
            # The type, not the value: the value may be the API key.
            raise ConfigurationError(
                f"VOICEPASSWORD[{key!r}] must be {expected}, not {type(value).__name__}."
            )
        if key in _TUPLES:
            value = tuple(value)
        elif key in _NETWORKS:
            value = tuple(ipaddress.ip_network(item, strict=False) for item in value)
        elif key in _AMOUNTS and value is not None:
            value = Decimal(str(value))
        elif key == "PRICE_ESTIMATES":
            value = {channel: Decimal(str(price)) for channel, price in value.items()}
        elif key == "LIMITS":
            value = {scope: rates for scope, rates in value.items() if rates}
        elif key == "FRAUD_GUARD" and value is not None:
            value = {**FRAUD_GUARD_DEFAULTS, **value}
        elif key == "REVIEW_NUMBERS":
            value = dict(value)
        if key in _IMPORT_STRINGS:
            value = self._import(key, value)
        return value

    def _every_problem(self, error: ConfigurationError) -> ConfigurationError:
        """``error``, or one error listing it with every other problem of the dict."""
        found = self.problems()
        if len(found) <= 1:
            error.problems = found
            return error
        lines = "\n".join(f"- {problem.message}" for problem in found)
        combined = ConfigurationError(
            f"The VOICEPASSWORD setting has {len(found)} problems:\n{lines}"
        )
        combined.problems = found
        return combined

    @staticmethod
    def _reject_unknown(user: Mapping[str, Any]) -> None:
        unknown = sorted(str(key) for key in user if key not in DEFAULTS)
        if unknown:
            raise ConfigurationError(_unknown_message(unknown))

    @staticmethod
    def _import(key: str, path: str) -> Any:
        try:
            return import_string(path)
        except ImportError as exc:
            raise ConfigurationError(
                f"VOICEPASSWORD[{key!r}] = {path!r} could not be imported: {exc}"
            ) from exc

    def reload(self) -> None:
        """Forget cached values; the next access reads the settings again."""
        with self._lock:
            for key in self._cached:
                self.__dict__.pop(key, None)
            self._cached.clear()

    def problems(self) -> list[Problem]:
        """Every problem with the settings, without raising (for the system checks)."""
        try:
            user = self.user_settings
        except ConfigurationError as exc:
            return [Problem("VOICEPASSWORD", str(exc), "voicepassword.E001")]
        found: list[Problem] = []
        unknown = sorted(str(key) for key in user if key not in DEFAULTS)
        if unknown:
            found.append(Problem("VOICEPASSWORD", _unknown_message(unknown), "voicepassword.E001"))
        for key, (test, _expected) in _TYPES.items():
            if key in _DETAILED:
                # Every error of the setting, each under the setting's own check id.
                explain, check_id = _DETAILED[key]
                value = user.get(key, DEFAULTS[key])
                found += [Problem(key, error, check_id) for error in explain(value)]
                continue
            try:
                self.value(key)
            except ConfigurationError as exc:
                wrong_type = not test(user.get(key, DEFAULTS[key]))
                check_id = "voicepassword.E002" if wrong_type else "voicepassword.E005"
                found.append(Problem(key, str(exc), check_id))
        return found


#: The settings object the whole app reads.
settings = VoicePasswordSettings()


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "VOICEPASSWORD":
        settings.reload()
