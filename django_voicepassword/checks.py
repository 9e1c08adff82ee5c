"""System checks: every misconfiguration that can be seen at start-up.

Ids are stable; ``docs/settings.md`` lists them. Each check reads the
settings through :mod:`django_voicepassword.conf`, so the checks and the code
that runs later agree on what a setting means.

``voicepassword.E001``  ``VOICEPASSWORD`` is not a dict, or has unknown keys.
``voicepassword.E002``  a setting has the wrong type.
``voicepassword.E003``  the HTTP gateway is used without ``API_KEY``.
``voicepassword.E004``  ``API_URL`` is not an absolute http(s) URL ending in ``/``.
``voicepassword.E005``  ``GATEWAY`` cannot be imported or is not a gateway.
``voicepassword.E006``  an unknown region code or number type in the phone policy.
``voicepassword.E007``  limits are on, but the default cache cannot count
                        atomically (database, file or dummy cache).
``voicepassword.E008``  a rate in ``LIMITS`` cannot be used, or ``DAILY_BUDGET``
                        or a ``PRICE_ESTIMATES`` amount is negative.
``voicepassword.W001``  ``API_URL`` sends the API key over plain HTTP to a host
                        that is not this machine.
``voicepassword.W002``  limits are on in production (``DEBUG`` off) with the
                        local-memory cache: each process counts on its own.
``voicepassword.W003``  the login views are routed without their backend.
``voicepassword.E011``  the login views are routed with signed-cookie sessions.
``voicepassword.E009``  ``ASYNC_SEND`` is on without Django's Tasks framework
                        (Django 5.2 without the ``django-tasks`` backport).
``voicepassword.E010``  ``ASYNC_SEND`` is on, but the sends cannot be enqueued:
                        ``ASYNC_SEND_BACKEND`` is not in ``TASKS`` or cannot be
                        loaded, or ``ASYNC_SEND_QUEUE`` is not one of its queues.
``voicepassword.W004``  ``ASYNC_SEND`` with the immediate backend: the send
                        still runs in the request; nothing is gained.
``voicepassword.W005``  ``ASYNC_SEND`` with the dummy backend: the sends are
                        stored and never run, so no code is ever sent.
``voicepassword.W006``  ``ASYNC_SEND`` on a worker with ``DAILY_BUDGET`` and the
                        local-memory cache: the worker gives reservations back
                        in its own memory, never to the site's budget.
``voicepassword.W007``  the app's tables are on a SQLite file database whose
                        write transactions do not take the lock at ``BEGIN``
                        (``OPTIONS["transaction_mode"]``): concurrent writes
                        fail with "database is locked" instead of waiting.
``voicepassword.W008``  the HTTP gateway in production (``DEBUG`` off) without
                        ``DAILY_BUDGET``: nothing caps a day's spend.
``voicepassword.E012``  ``WORKFLOW`` cannot be used: a step, a wait, a region
                        code or an operator name is wrong, an SMS step without
                        ``SMS_FALLBACK``, or a wait as long as ``CHALLENGE_TTL``.
``voicepassword.E013``  ``WORKFLOW`` has ``"tasks": True``, but the steps cannot
                        be enqueued for later on ``ASYNC_SEND_BACKEND`` (no Tasks
                        framework, no such backend, or one without ``run_after``).
``voicepassword.E020``  ``FRAUD_GUARD`` is not ``None`` or a dict of its keys
                        with usable values.
``voicepassword.E021``  ``REVIEW_NUMBERS`` is not a dict of phone numbers to
                        codes of 4 digits.
``voicepassword.E022``  ``REVIEW_NUMBERS`` in production (``DEBUG`` off) without
                        ``REVIEW_NUMBERS_IN_PRODUCTION``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from django_voicepassword.conf import ConfigurationError, settings
from django_voicepassword.phone import NUMBER_TYPES, InvalidPhoneNumber, normalize

__all__ = [
    "check_async_send",
    "check_daily_budget",
    "check_limits",
    "check_limits_cache",
    "check_review_numbers",
    "check_settings",
    "check_sqlite_transactions",
    "check_workflow",
]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_api_url(url: str) -> list[CheckMessage]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.endswith("/"):
        return [
            Error(
                f"VOICEPASSWORD['API_URL'] = {url!r} is not an absolute http(s) URL "
                "ending in '/'.",
                hint="Use the provider's https://vp.voicepassword.ru/api/voice-password/ "
                "or the emulator's http://127.0.0.1:8765/api/voice-password/.",
                id="voicepassword.E004",
            )
        ]
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return [
            Warning(
                f"VOICEPASSWORD['API_URL'] sends the API key over plain HTTP to {parts.hostname}.",
                hint="Use https:// for any host that is not this machine.",
                id="voicepassword.W001",
            )
        ]
    return []


def _broken() -> set[str] | None:
    """The settings with a problem (``None``: ``VOICEPASSWORD`` is no dict at all).

    The checks of the settings that are sound run beside the problems of
    those that are not, each setting read alone (``settings.value``), so that
    one problem, a typo in a key say, hides no other.
    """
    try:
        _ = settings.user_settings
    except ConfigurationError:
        return None
    return {problem.key for problem in settings.problems()}


def _check_phone_policy() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    known_regions = phonenumbers.SUPPORTED_REGIONS
    unknown = [
        code
        for code in (settings.value("PHONE_REGION"), *settings.value("ALLOWED_REGIONS"))
        if code not in known_regions
    ]
    if unknown:
        messages.append(
            Error(
                f"Unknown region code(s) in VOICEPASSWORD: {', '.join(sorted(set(unknown)))}.",
                hint="Use ISO 3166 codes in capitals, such as 'RU'.",
                id="voicepassword.E006",
            )
        )
    bad_types = [
        name for name in settings.value("ALLOWED_NUMBER_TYPES") if name not in NUMBER_TYPES
    ]
    if bad_types:
        messages.append(
            Error(
                "Unknown number type(s) in VOICEPASSWORD['ALLOWED_NUMBER_TYPES']: "
                f"{', '.join(sorted(bad_types))}.",
                hint="Use names of phonenumbers.PhoneNumberType, such as 'MOBILE'.",
                id="voicepassword.E006",
            )
        )
    return messages


@register(Tags.compatibility, "voicepassword")
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report every problem with ``VOICEPASSWORD`` that can be seen without a request."""
    from django_voicepassword.gateways import BaseGateway, HttpGateway

    problems = settings.problems()
    messages: list[CheckMessage] = [Error(p.message, id=p.check_id) for p in problems]
    broken = _broken()
    if broken is None:
        return messages  # not a dict: there is no setting to read
    gateway = settings.value("GATEWAY") if "GATEWAY" not in broken else None
    if gateway is None:
        pass
    elif not (isinstance(gateway, type) and issubclass(gateway, BaseGateway)):
        messages.append(
            Error(
                f"VOICEPASSWORD['GATEWAY'] = {gateway!r} is not a gateway class.",
                hint="Use django_voicepassword.gateways.HttpGateway, ConsoleGateway, "
                "LocmemGateway or a subclass of BaseGateway.",
                id="voicepassword.E005",
            )
        )
    elif (
        issubclass(gateway, HttpGateway)
        and "API_KEY" not in broken
        and not settings.value("API_KEY")
    ):
        messages.append(
            Error(
                "VOICEPASSWORD['API_KEY'] is not set, but the HTTP gateway needs it.",
                hint="Set it from the environment (Settings → API in the provider's "
                "account), or use ConsoleGateway or LocmemGateway in development.",
                id="voicepassword.E003",
            )
        )
    if "API_URL" not in broken:
        messages += _check_api_url(settings.value("API_URL"))
    if not broken & {"PHONE_REGION", "ALLOWED_REGIONS", "ALLOWED_NUMBER_TYPES"}:
        messages += _check_phone_policy()
    return messages


def _limits_on() -> bool:
    return bool(settings.LIMITS) or settings.DAILY_BUDGET is not None


@register(Tags.caches, "voicepassword")
def check_limits_cache(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report a default cache in which the limits and the budget cannot be counted."""
    if settings.problems() or not _limits_on():
        # check_settings reports broken settings; without limits any cache will do.
        return []
    try:
        cache = caches["default"]
    except InvalidCacheBackendError:
        return []  # Django's own cache checks report this.
    name = f"{type(cache).__module__}.{type(cache).__qualname__}"
    if isinstance(cache, DatabaseCache | FileBasedCache | DummyCache):
        # Their incr() is a read then a write (or nothing at all): concurrent
        # requests would both pass a limit, and DummyCache counts nothing.
        return [
            Error(
                f"The default cache ({name}) cannot count atomically, so the phone "
                "login limits and the daily budget would not hold.",
                hint="Use Redis (django.core.cache.backends.redis.RedisCache) or "
                "memcached; or turn the limits off with VOICEPASSWORD['LIMITS'] = {} "
                "and DAILY_BUDGET = None.",
                id="voicepassword.E007",
            )
        ]
    if isinstance(cache, LocMemCache) and not django_settings.DEBUG:
        return [
            Warning(
                "The default cache is the local-memory cache: each process counts "
                "the phone login limits and the daily budget on its own, so a site "
                "with several processes allows that many times the limits.",
                hint="Use a cache shared by every process, such as Redis "
                "(django.core.cache.backends.redis.RedisCache).",
                id="voicepassword.W002",
            )
        ]
    return []


@register(Tags.compatibility, "voicepassword")
def check_limits(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report limit settings of the right type that the limits still cannot use."""
    from django_voicepassword.ratelimit import parse_rates

    broken = _broken()
    if broken is None or broken & {"LIMITS", "DAILY_BUDGET", "PRICE_ESTIMATES"}:
        return []  # check_settings reports these settings' own problems
    messages: list[CheckMessage] = []
    for scope, text in settings.value("LIMITS").items():
        try:
            parse_rates(text)
        except ValueError as exc:
            messages.append(
                Error(
                    f"VOICEPASSWORD['LIMITS'][{scope!r}]: {exc}",
                    hint="Write rates as count/period, comma-separated, each period "
                    "once: '3/10m,10/d'.",
                    id="voicepassword.E008",
                )
            )
    amounts = {"DAILY_BUDGET": settings.value("DAILY_BUDGET")} | {
        f"PRICE_ESTIMATES[{channel!r}]": price
        for channel, price in settings.value("PRICE_ESTIMATES").items()
    }
    negative = [name for name, amount in amounts.items() if amount is not None and amount < 0]
    if negative:
        messages.append(
            Error(
                f"Negative amount(s) in VOICEPASSWORD: {', '.join(negative)}.",
                hint="Budgets and prices are 0 or more; a budget of 0 sends nothing.",
                id="voicepassword.E008",
            )
        )
    return messages


@register(Tags.security, "voicepassword")
def check_daily_budget(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when a production site places real calls without a daily budget.

    The limits bound how fast codes go out, not what a day of them costs: at
    the default rates and price estimates, a determined attacker can spend
    tens of thousands a day. Only ``DAILY_BUDGET`` is a ceiling in money.
    """
    from django_voicepassword.gateways import HttpGateway

    if settings.problems() or django_settings.DEBUG or settings.DAILY_BUDGET is not None:
        return []
    gateway = settings.GATEWAY
    if not (isinstance(gateway, type) and issubclass(gateway, HttpGateway)):
        return []  # the console and locmem gateways spend nothing
    return [
        Warning(
            "VOICEPASSWORD['DAILY_BUDGET'] is not set: nothing caps what a day of "
            "calls and SMS can cost, and the limits alone allow thousands of codes a day.",
            hint="Set DAILY_BUDGET to a day's spend you accept, in the account currency "
            "(for example '300.00'); sends beyond it are refused until Moscow midnight.",
            id="voicepassword.W008",
        )
    ]


_BACKEND = "django_voicepassword.auth_backends.PhoneCodeBackend"


@register(Tags.security, "voicepassword")
def check_login_backend(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when the login views are routed but their backend is not installed.

    ``login()`` records the backend in the session, and Django logs out on the
    next request any session whose backend is not in AUTHENTICATION_BACKENDS:
    every phone login would end at once, silently.
    """
    from django.conf import settings as django_settings
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("voicepassword:login")
    except NoReverseMatch:
        return []
    if _BACKEND in django_settings.AUTHENTICATION_BACKENDS:
        return []
    return [
        Warning(
            f"The phone login views are routed, but {_BACKEND} is not in "
            "AUTHENTICATION_BACKENDS: a phone login would end on the next request.",
            hint=f"Add {_BACKEND!r} to AUTHENTICATION_BACKENDS.",
            id="voicepassword.W003",
        )
    ]


def _backend_classes(module: str, name: str) -> tuple[type[Any], ...]:
    """``name`` in ``module`` of Django's Tasks framework and of its backport, where installed."""
    found: list[type[Any]] = []
    for package in ("django.tasks", "django_tasks"):
        try:
            found.append(import_string(f"{package}.backends.{module}.{name}"))
        except ImportError:
            continue
    return tuple(found)


@register(Tags.compatibility, "voicepassword")
def check_async_send(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report an ``ASYNC_SEND`` whose sends cannot be enqueued, never run, or gain nothing."""
    if settings.problems() or not settings.ASYNC_SEND:
        return []
    alias = settings.ASYNC_SEND_BACKEND
    queue = settings.ASYNC_SEND_QUEUE
    try:
        # Importing declares the tasks on the default backend (a decorator
        # validates them): a TASKS setting they do not fit fails here.
        from django_voicepassword.tasks import task_backends

        backend = task_backends[alias]
    except ImportError:
        return [
            Error(
                "VOICEPASSWORD['ASYNC_SEND'] is on, but Django's Tasks framework is not "
                "installed: Django 5.2 needs the django-tasks backport.",
                hint="pip install 'django-voicepassword[tasks]' and add 'django_tasks' to "
                "INSTALLED_APPS, or upgrade to Django 6.",
                id="voicepassword.E009",
            )
        ]
    except Exception as exc:  # any way a backend fails to load is reported
        return [
            Error(
                f"VOICEPASSWORD['ASYNC_SEND'] is on, but the sends cannot be enqueued on "
                f"the task backend {alias!r}: {type(exc).__name__}: {exc}",
                hint="Name a backend of the TASKS setting in ASYNC_SEND_BACKEND; the "
                "package's tasks are declared on the 'default' queue of the 'default' "
                "backend, so keep that queue in its QUEUES (docs/tasks.md).",
                id="voicepassword.E010",
            )
        ]
    queues: set[str] = set(getattr(backend, "queues", ()))
    if queues and queue not in queues:
        return [
            Error(
                f"VOICEPASSWORD['ASYNC_SEND_QUEUE'] = {queue!r} is not one of the QUEUES "
                f"of the task backend {alias!r} ({', '.join(sorted(queues))}).",
                hint="Add it to that backend's QUEUES (and to RQ_QUEUES with RQ), or "
                "choose one of them.",
                id="voicepassword.E010",
            )
        ]
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if isinstance(backend, _backend_classes("immediate", "ImmediateBackend")):
        return [
            Warning(
                f"VOICEPASSWORD['ASYNC_SEND'] is on with the immediate task backend "
                f"({name}): the send still runs in the request, and waits for the provider.",
                hint="Configure a backend with a worker (django-tasks-db, django-tasks-rq) "
                "in TASKS, or turn ASYNC_SEND off.",
                id="voicepassword.W004",
            )
        ]
    if isinstance(backend, _backend_classes("dummy", "DummyBackend")):
        return [
            Warning(
                f"VOICEPASSWORD['ASYNC_SEND'] is on with the dummy task backend ({name}): "
                "tasks are stored and never run, so no code would ever be sent.",
                hint="The dummy backend is for tests; configure a backend with a worker.",
                id="voicepassword.W005",
            )
        ]
    if settings.DAILY_BUDGET is not None:
        try:
            cache = caches["default"]
        except InvalidCacheBackendError:
            return []
        if isinstance(cache, LocMemCache):
            return [
                Warning(
                    "VOICEPASSWORD['ASYNC_SEND'] sends on a worker, and the default cache "
                    "is the local-memory cache: the worker gives the budget reserved for "
                    "a send that failed back in its own memory, never to the site's "
                    "DAILY_BUDGET.",
                    hint="Use a cache shared by every process and the workers, such as "
                    "Redis (django.core.cache.backends.redis.RedisCache).",
                    id="voicepassword.W006",
                )
            ]
    return []


@register(Tags.security, "voicepassword")
def check_login_sessions(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Refuse signed-cookie sessions when the login views are routed.

    A challenge is bound to the session that started it by the session's key,
    and a signed-cookie session has no key that lasts: the code page would
    send every visitor back to the phone form.
    """
    from django.conf import settings as django_settings
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("voicepassword:login")
    except NoReverseMatch:
        return []
    if django_settings.SESSION_ENGINE != "django.contrib.sessions.backends.signed_cookies":
        return []
    return [
        Error(
            "Phone login cannot bind a challenge to a signed-cookie session.",
            hint="Use a server-side SESSION_ENGINE (db, cache or cached_db).",
            id="voicepassword.E011",
        )
    ]


# Transaction modes that take SQLite's write lock at BEGIN (Django 5.1+).
_LOCKING_MODES = frozenset({"IMMEDIATE", "EXCLUSIVE"})


def _is_sqlite(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` (one entry of ``DATABASES``) is a SQLite database, without connecting.

    By the backend's vendor, so that SpatiaLite and a site's own subclass of
    the SQLite backend count too.
    """
    engine = config.get("ENGINE")
    if not isinstance(engine, str) or not engine:
        return False
    try:
        wrapper = import_module(f"{engine}.base").DatabaseWrapper
    except (ImportError, AttributeError):
        return False  # Django's own checks and the first query report a broken ENGINE.
    return getattr(wrapper, "vendor", None) == "sqlite"


def _in_memory(name: object) -> bool:
    # ":memory:", a shared in-memory URI, or "" (a temporary database): a test
    # database of one process, where a burst of writers does not happen.
    return not name or name == ":memory:" or "mode=memory" in str(name)


@register(Tags.compatibility, "voicepassword")
def check_sqlite_transactions(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when the app writes to a SQLite file whose transactions fail instead of waiting.

    A callback or a login is a transaction that reads, then writes. In
    SQLite's default (deferred) mode it takes the write lock only at its
    first write, and when another connection holds that lock SQLite answers
    "database is locked" at once, whatever the ``timeout``: waiting could
    deadlock. With ``"transaction_mode": "IMMEDIATE"`` the lock is taken at
    ``BEGIN``, where SQLite waits up to ``"timeout"`` seconds for it.
    """
    from django.db import router

    from django_voicepassword.models import Call, CallbackEvent, Challenge, PhoneNumber

    # getattr: typed as a dict, but a settings file may hold anything.
    databases: object = getattr(django_settings, "DATABASES", None)
    if not isinstance(databases, Mapping):
        return []
    aliases = sorted(
        {router.db_for_write(model) for model in (Call, CallbackEvent, Challenge, PhoneNumber)}
    )
    messages: list[CheckMessage] = []
    for alias in aliases:
        config = databases.get(alias)
        if not isinstance(config, Mapping) or not _is_sqlite(config):
            continue
        if _in_memory(config.get("NAME")):
            continue
        options = config.get("OPTIONS")
        mode = options.get("transaction_mode") if isinstance(options, Mapping) else None
        if isinstance(mode, str) and mode.upper() in _LOCKING_MODES:
            continue
        messages.append(
            Warning(
                f"The database {alias!r} is SQLite with deferred transactions: when "
                "requests write at the same moment (callbacks during logins), some "
                "fail with 'database is locked' instead of waiting, and a callback "
                "answered with an error is lost.",
                hint=f'Add "OPTIONS": {{"transaction_mode": "IMMEDIATE", '
                f'"timeout": 20}} to DATABASES[{alias!r}], or use PostgreSQL.',
                id="voicepassword.W007",
            )
        )
    return messages


@register(Tags.compatibility, "voicepassword")
def check_workflow(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report a ``WORKFLOW`` that cannot be used, or whose steps no worker can take later."""
    from django_voicepassword import workflow

    if settings.problems():
        return []
    found = workflow.problems()
    if found:
        return [
            Error(
                message,
                hint="See docs/howto/workflows.md for the shape of WORKFLOW. Until it is "
                "fixed, challenges have no workflow: the person resends by hand.",
                id="voicepassword.E012",
            )
            for message in found
        ]
    value = settings.WORKFLOW
    if value is None or not value.get("tasks"):
        return []
    alias = settings.ASYNC_SEND_BACKEND
    try:
        from django_voicepassword.tasks import task_backends

        backend = task_backends[alias]
    except Exception as exc:  # no framework, or any way a backend fails to load
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if getattr(backend, "supports_defer", False):
            return []
        reason = f"{type(backend).__qualname__} cannot run a task later (run_after)"
    return [
        Error(
            f"VOICEPASSWORD['WORKFLOW'] has 'tasks': True, but its steps cannot be enqueued "
            f"on the task backend {alias!r}: {reason}.",
            hint="Use a backend with a worker that supports run_after (django-tasks-db, "
            "django-tasks-rq) as ASYNC_SEND_BACKEND, or set 'tasks': False: the next poll "
            "of the code page or the API then takes each step.",
            id="voicepassword.E013",
        )
    ]


@register(Tags.security, "voicepassword")
def check_review_numbers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report review numbers that are no numbers, and review numbers in production.

    A review number logs in with a fixed code and is never called: in
    production that is a door with a known key, so it needs saying so
    (``REVIEW_NUMBERS_IN_PRODUCTION``). Without it the numbers are also
    ignored at run time.
    """
    if settings.problems() or not settings.REVIEW_NUMBERS:
        return []
    messages: list[CheckMessage] = []
    for number in settings.REVIEW_NUMBERS:
        try:
            normalize(number, enforce_policy=False)
        except InvalidPhoneNumber:
            messages.append(
                Error(
                    f"VOICEPASSWORD['REVIEW_NUMBERS'] has {number[:20]!r}, which is no phone "
                    "number.",
                    hint="Use full numbers with their country code, such as '79990000090'.",
                    id="voicepassword.E021",
                )
            )
    if not django_settings.DEBUG and not settings.REVIEW_NUMBERS_IN_PRODUCTION:
        messages.append(
            Error(
                "VOICEPASSWORD['REVIEW_NUMBERS'] is set in production (DEBUG is off): "
                "each of them logs in with a fixed code, and they are ignored.",
                hint="Remove them, or set REVIEW_NUMBERS_IN_PRODUCTION = True if an "
                "app-store review or a load test needs them on this site.",
                id="voicepassword.E022",
            )
        )
    return messages
