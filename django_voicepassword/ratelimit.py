"""Abuse limits and the daily budget: atomic counters in Django's cache.

Every code costs money and rings a real phone, so before one is sent the caller
(:mod:`django_voicepassword.verification`) asks :func:`check_send` whether the
limits allow it and :func:`reserve` for its price against the day's budget.

How the limits count
--------------------
- **Fixed windows for the client and the number.** A rate ``3/10m`` is three
  codes per ten-minute window, the windows aligned to the Unix epoch (so a
  ``d`` window ends at midnight UTC). A client can send up to twice a rate
  across a window boundary; that is the price of one atomic operation per
  rate and nothing to clean up.
- **A sliding window for the whole site** (see "The global scope" below).
- **One atomic counter per (scope, identity, period, window).** ``cache.add(key,
  0)`` then ``cache.incr(key)``: both atomic on Redis, memcached and the
  local-memory cache, so concurrent requests in any number of processes sharing
  the cache can never together pass a limit. The system checks report a cache
  that cannot count (``voicepassword.E007``) and a per-process cache in
  production (``voicepassword.W002``).
- **One round trip on Redis.** On Django's ``RedisCache`` the same counting
  (every scope, the global pools, the fraud guard, the budget) runs as one Lua
  script: one request to Redis instead of some thirty, on the same keys with
  the same values and timeouts, so old and new processes can share a Redis.
  :func:`check_and_reserve` adds the budget (and reads a few keys) to the same
  request. See "One round trip on Redis" below and ``docs/decisions.md``.
- **Scopes in order, narrowest first:** session, ip, network, number, prefix,
  global. The
  first scope over its limit refuses, and the attempt is counted in it and in the
  scopes before it, not after it. So a refused attempt is counted against the
  client that made it (its session and address: a hammering client stays
  refused) and against the number it targets, but never uses up the shared
  scopes a refusal did not reach (the prefix and the whole site), which would
  let one client lock everyone out.
- **Retry-After is honest across scopes.** After the refusal the later scopes
  are read (not counted); when one of them is full too and frees up later, the
  refusal names that scope and its time: :attr:`LimitExceeded.retry_after` is
  when a retry can succeed, not merely when the first refusing window ends.
- **An address that cannot be read fails closed.** With ``PROXY_HEADER`` set,
  a request whose header is missing or holds no address is counted in the ip
  and network scopes under one shared identity (``unidentified``), and a
  warning is logged once per process: a proxy that stopped sending the header
  shares one allowance among all its clients rather than lifting the limit.
- **Nothing personal in the cache.** Keys hold an HMAC (``salted_hmac`` under
  ``SECRET_KEY``, a salt per scope) of the number, address, prefix or session
  key, never the value: a shared Redis is often read by more people than the
  database, and a 10-digit number space is too small for a bare hash. Keys
  start with ``voicepassword:``.
- **The cache failing fails closed.** An error from the cache (Redis down)
  propagates, and no code is sent. A cache that forgets what it was given
  (``DummyCache``) counts nothing, so every limit is a no-op; the check
  ``voicepassword.E007`` reports it.

The global scope
----------------
The global scope is a ceiling for the whole site, so it is the one scope an
attacker can fill for everybody. Two things keep that from locking every user
out:

- **Verified numbers keep a share.** ``check_send`` is told the number's
  ``kind``: ``"verified"`` (a number of an account that can log in, which will
  be called), ``"new"`` (a number that will be called but is not verified on
  the site: a sign-up, a number being added) or ``"uncalled"`` (a login for a
  number without an account: no call is placed). Every counted send is counted
  in the ``all`` pool, limited by ``LIMITS["global"]``; a new or uncalled send
  is first counted in the ``new`` pool, limited by ``GLOBAL_NEW_SHARE`` of
  it. New numbers therefore never take more than their share, and verified
  numbers always have the rest. An uncalled send that finds the new pool full
  is not refused for it (it costs nothing) and is not counted anywhere; it is
  refused exactly when a verified number would be (the ``all`` pool is full),
  so the answer to a login never tells whether the number has an account.
  The trade-off: while the new pool is full, a new number that would be called
  (with ``CREATE_USERS`` or for verification) is refused where a verified one
  is not; with ``CREATE_USERS`` on, that tells an attacker who can fill the
  pool which numbers have an account (``docs/decisions.md``).
- **The window slides.** Each rate keeps a counter per window, and the count
  is the current window's plus the previous window's weighted by the part of
  it still inside the sliding period (the sliding-window counter of
  rate-limiters at scale). A burst therefore frees capacity gradually over
  the next period, and there is no boundary at which a full allowance returns
  at once for an attacker to take again. Counting stays one atomic ``incr``
  per rate (the previous window no longer changes); a send the global scope
  refuses is ``decr``-ed back, so refused attempts never keep the site full.

The budget
----------
``DAILY_BUDGET`` is the spend allowed per Moscow day (the provider's day), kept
in whole kopecks: the budget rounded down, each estimate rounded up. A send
reserves its estimate first with one ``incr``; a reservation that overshoots is
``decr``-ed back and refused. Concurrent reservations therefore never together
exceed the budget; at worst, for the instant an overshooting one is being given
back, a cheaper one that would just have fitted is refused. A send that fails
or is refused gives its reservation back with :func:`release`, once.

All settings are read at call time. Time is read through :func:`_now` alone, so
tests can move the clock.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from django.utils.crypto import salted_hmac
from django.utils.functional import lazy
from django.utils.text import format_lazy
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from django_voicepassword import binding
from django_voicepassword.client import PROVIDER_TZ
from django_voicepassword.conf import ConfigurationError, settings
from django_voicepassword.net import client_address, network_of, wider_network_of
from django_voicepassword.signals import limit_exceeded

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

__all__ = [
    "MAX_PERIOD",
    "SCOPES",
    "LimitExceeded",
    "NumberKind",
    "Rate",
    "Reservation",
    "budget_left",
    "check_and_reserve",
    "check_send",
    "parse_rates",
    "release",
    "reserve",
    "retry_phrase",
]

#: The scopes of ``LIMITS``, in the order they are counted (narrowest first).
SCOPES: Final = ("session", "ip", "network", "number", "prefix", "global")

#: What a send is to the global scope: see :func:`check_send`.
NumberKind = Literal["verified", "new", "uncalled"]
_KINDS: Final = frozenset({"verified", "new", "uncalled"})

logger = logging.getLogger(__name__)

#: The longest period a rate may have: a year (of 366 days).
MAX_PERIOD: Final = 366 * 86400

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LARGEST_UNIT_FIRST: Final = sorted(_UNITS.items(), key=lambda unit: -unit[1])
# ASCII digits only ("٣/h" is no rate), at most nine of them: a bound that no
# sane rate reaches and that keeps int() far from its digit limit.
_RATE_RE: Final = re.compile(r"\s*([0-9]{1,9})\s*/\s*([0-9]{0,9})\s*([smhd])\s*")

_PREFIX: Final = "voicepassword:"
# Counters live this long past the end of their window: a process whose clock
# lags a little still finds its window's counter rather than a fresh one.
_GRACE: Final = 60
_SALT: Final = "django_voicepassword.ratelimit"


def _now() -> float:
    """The current Unix time: the one clock of this module (tests move it)."""
    return time.time()


# --- rates -----------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """At most ``count`` codes per ``seconds``-long window."""

    count: int
    seconds: int

    def __post_init__(self) -> None:
        if self.count < 0 or self.seconds < 1:
            raise ValueError("A rate needs a count of 0 or more and a period of 1 second or more.")

    def __str__(self) -> str:
        # The shortest spelling parse_rates reads back: "3/10m", "10/d", "5/s".
        unit, size = next((u, n) for u, n in _LARGEST_UNIT_FIRST if self.seconds % n == 0)
        multiple = self.seconds // size
        return f"{self.count}/{'' if multiple == 1 else multiple}{unit}"


def parse_rates(text: str) -> tuple[Rate, ...]:
    """Read a ``LIMITS`` value: ``"3/10m,10/d"`` → ``(Rate(3, 600), Rate(10, 86400))``.

    Each rate is ``count/period``; the period is an optional whole multiple and
    a unit, ``s``, ``m``, ``h`` or ``d`` (``"5/h"`` is ``"5/1h"``); spaces around
    the parts are allowed, rates are comma-separated, ``""`` is no rate. A period
    of zero or over :data:`MAX_PERIOD`, two rates with the same period (they
    would share a counter) or anything else raises ``ValueError``, and nothing
    else does.
    """
    if text == "":
        return ()
    rates: list[Rate] = []
    for part in text.split(","):
        match = _RATE_RE.fullmatch(part)
        if match is None:
            raise ValueError(
                f"{part[:40]!r} is not a rate such as '3/10m' "
                "(count/period, the period in s, m, h or d)."
            )
        count, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
        seconds = multiple * _UNITS[unit]
        if not 1 <= seconds <= MAX_PERIOD:
            raise ValueError(f"{part.strip()!r}: the period must be 1 second to 366 days.")
        if any(rate.seconds == seconds for rate in rates):
            raise ValueError(f"{text[:80]!r} has two rates with the same period.")
        rates.append(Rate(count, seconds))
    return tuple(rates)


def _configured_rates(scope: str) -> tuple[Rate, ...]:
    text = settings.LIMITS.get(scope, "")
    try:
        return parse_rates(text)
    except ValueError as exc:
        # conf.py checks the shape of a rate; this also refuses a zero period.
        raise ConfigurationError(f"VOICEPASSWORD['LIMITS'][{scope!r}]: {exc}") from exc


# --- the refusal -------------------------------------------------------------

_REASONS: Final[dict[str, StrPromise]] = {
    "number": _("Too many codes were sent to this number."),
    "ip": _("Too many codes were requested from your network."),
    "network": _("Too many codes were requested from your network."),
    "prefix": _("Too many codes were sent to numbers like this one."),
    "session": _("Too many codes were requested in this session."),
    "global": _("Too many codes are being sent right now."),
    "budget": _("No more codes can be sent today."),
}


def retry_phrase(seconds: int | float | None) -> str:
    """When to try again, in words: ``"Try again in 2 minutes."``.

    Rounded up to a unit a person reads at a glance; the limits' messages and
    the login pages use the same sentences.
    """
    if not seconds or seconds <= 0:
        return gettext("Try again later.")
    seconds = math.ceil(seconds)
    if seconds < 60:
        return ngettext(
            "Try again in %(count)d second.", "Try again in %(count)d seconds.", seconds
        ) % {"count": seconds}
    if seconds < 2 * 3600:
        minutes = math.ceil(seconds / 60)
        return ngettext(
            "Try again in %(count)d minute.", "Try again in %(count)d minutes.", minutes
        ) % {"count": minutes}
    hours = math.ceil(seconds / 3600)
    return ngettext("Try again in %(count)d hour.", "Try again in %(count)d hours.", hours) % {
        "count": hours
    }


# Translated when shown, in the language active then (not when raised):
# ngettext_lazy(...) % {...} would translate at once.
_wait = lazy(retry_phrase, str)


class LimitExceeded(Exception):  # noqa: N818  (the name is the public contract)
    """A limit refused to send a code.

    ``scope`` is ``"number"``, ``"ip"``, ``"network"``, ``"prefix"``,
    ``"session"``, ``"global"`` or ``"budget"``; ``retry_after`` the whole seconds (1 or more)
    until a retry can succeed, for a ``Retry-After`` header; ``message`` a
    translatable sentence saying why and when, for the person (``str(exc)``
    gives it). ``args`` holds the scope and the seconds: nothing personal.
    """

    def __init__(self, scope: str, retry_after: int, message: StrPromise | None = None) -> None:
        self.scope = scope
        self.retry_after = max(1, int(retry_after))
        reason = _REASONS.get(scope, _("Too many codes were sent."))
        self.message: StrPromise = (
            message
            if message is not None
            else format_lazy("{} {}", reason, _wait(self.retry_after))
        )
        super().__init__(scope, self.retry_after)

    def __str__(self) -> str:
        return str(self.message)


def _refuse(scope: str, retry_after: int, request: HttpRequest | None) -> LimitExceeded:
    exc = LimitExceeded(scope, retry_after)
    limit_exceeded.send(sender=None, scope=scope, retry_after=exc.retry_after, request=request)
    return exc


# --- counters ------------------------------------------------------------------


def _count(key: str, delta: int, timeout: int) -> int:
    """Add ``delta`` to the counter at ``key``, creating it at 0; the new value."""
    for _attempt in range(3):
        cache.add(key, 0, timeout)
        try:
            value = int(cache.incr(key, delta))
        except ValueError:
            # Expired or evicted between add() and incr(): add it again.
            continue
        if value == delta:
            # The first count in this window. Django's Redis incr() is EXISTS
            # then INCR: a key expiring between the two comes back without a
            # timeout and would live forever. Setting it here costs one round
            # trip per window and makes that impossible.
            cache.touch(key, timeout)
        return value
    # A cache that keeps nothing (DummyCache): nothing can be counted, and the
    # limits are off; voicepassword.E007 says so at start-up.
    return 0


def _digest(scope: str, identity: str) -> str:
    # An HMAC, not a hash: without SECRET_KEY nobody reading the cache can
    # enumerate the 10^10 numbers (or 2^32 addresses) to undo it.
    return salted_hmac(f"{_SALT}.{scope}", identity, algorithm="sha256").hexdigest()[:32]


@dataclass(frozen=True)
class _Window:
    """The current window of one rate of one scope."""

    rate: Rate
    key: str
    # Seconds until the window ends: when its count starts again from zero.
    retry_after: int

    @property
    def timeout(self) -> int:
        return self.retry_after + _GRACE


def _windows(scope: str, identity: str, rates: tuple[Rate, ...], now: float) -> list[_Window]:
    ident = _digest(scope, identity)
    windows = []
    for rate in rates:
        index = int(now // rate.seconds)
        end = (index + 1) * rate.seconds
        key = f"{_PREFIX}limit:{scope}:{ident}:{rate.seconds}:{index}"
        windows.append(_Window(rate, key, max(1, math.ceil(end - now))))
    return windows


@dataclass(frozen=True)
class _Sliding:
    """The sliding window of one rate of one pool of the global scope, at ``now``."""

    limit: int
    period: int
    key: str
    previous: str
    # Seconds into the current window (0 <= elapsed < period).
    elapsed: float

    @property
    def timeout(self) -> int:
        # The counter is read as the previous window's throughout the next one.
        return math.ceil(2 * self.period - self.elapsed) + _GRACE

    def count(self, previous: int, current: int) -> float:
        """The sends in the sliding period: the previous window's still inside it, and ours."""
        return previous * (self.period - self.elapsed) / self.period + current

    def retry_after(self, previous: int, current: int) -> int:
        """Seconds until one more send fits, if nobody else sends."""
        if self.limit < 1:
            # A rate of 0: nothing ever fits; say when this window ends.
            return max(1, math.ceil(self.period - self.elapsed))
        # Later in this window the previous window's weight falls until
        # previous * (period - t) / period + current + 1 <= limit ...
        if current + 1 <= self.limit and previous > 0:
            t = self.period - (self.limit - current - 1) * self.period / previous
            if t < self.period:
                return max(1, math.ceil(t - self.elapsed))
        # ... or in the next window, where ours is the previous one.
        t = self.period - (self.limit - 1) * self.period / current if current > 0 else 0.0
        return max(1, math.ceil(self.period - self.elapsed + max(0.0, t)))


def _new_limit(count: int) -> int:
    """The new-number pool's limit for a global rate of ``count``."""
    if count == 0:
        return 0
    # At least one: a site with a tiny ceiling still lets a new number in.
    return max(1, math.floor(count * settings.GLOBAL_NEW_SHARE))


def _slidings(pool: str, rates: tuple[Rate, ...], now: float) -> list[_Sliding]:
    slidings = []
    for rate in rates:
        index = int(now // rate.seconds)
        base = f"{_PREFIX}limit:global:{pool}:{rate.seconds}"
        limit = rate.count if pool == "all" else _new_limit(rate.count)
        slidings.append(
            _Sliding(
                limit, rate.seconds, f"{base}:{index}", f"{base}:{index - 1}", now % rate.seconds
            )
        )
    return slidings


def _read_full(slidings: list[_Sliding]) -> int | None:
    """Without counting: the seconds until a send fits, ``None`` when one fits now."""
    stored = cache.get_many([k for s in slidings for k in (s.key, s.previous)])
    waits = []
    for s in slidings:
        previous, current = int(stored.get(s.previous, 0)), int(stored.get(s.key, 0))
        if s.count(previous, current + 1) > s.limit:
            waits.append(s.retry_after(previous, current))
    return max(waits) if waits else None


def _count_sliding(slidings: list[_Sliding]) -> int | None:
    """Count one send in every window; ``None`` when it fits, else give it back and wait.

    The ``incr`` hands each concurrent send its own place in the current
    window, and the previous window no longer changes (but for give-backs,
    which only lower it), so concurrent sends never together pass a limit.
    """
    counted = [(s, _count(s.key, 1, s.timeout)) for s in slidings]
    stored = cache.get_many([s.previous for s in slidings])
    over = [
        (s, int(stored.get(s.previous, 0)), current)
        for s, current in counted
        if s.count(int(stored.get(s.previous, 0)), current) > s.limit
    ]
    if not over:
        return None
    for s, current in counted:
        if current > 0:  # 0: a cache that keeps nothing counted nothing
            _give_back(s.key, 1)
    return max(s.retry_after(previous, current - 1) for s, previous, current in over)


def _check_global(
    rates: tuple[Rate, ...], now: float, kind: NumberKind, *, count: bool
) -> int | None:
    """The global scope (see the module docstring): ``None`` or the seconds to wait."""
    every = _slidings("all", rates, now)
    new = _slidings("new", rates, now) if kind != "verified" else []
    if not count:
        # An earlier scope refused: read, do not count.
        waits = [w for w in (_read_full(every), _read_full(new) if kind == "new" else None) if w]
        return max(waits) if waits else None
    if new:
        new_wait = _count_sliding(new)
        if new_wait is not None:
            if kind == "new":
                full = _read_full(every)
                return max(new_wait, full or 0)
            # Uncalled: refused exactly when a verified number would be.
            return _read_full(every)
    every_wait = _count_sliding(every)
    if every_wait is not None and new:
        for s in new:
            _give_back(s.key, 1)
    return every_wait


def _session_key(request: HttpRequest) -> str | None:
    """The ``session`` scope's identity: what binds the client's challenges (:mod:`.binding`)."""
    identity = binding.identity(request)
    if identity is not None:
        return identity
    session = getattr(request, "session", None)
    if session is None:
        return None
    if session.session_key is None:
        # A first visit has no session yet; give it one so that the limit
        # binds the browser from its first code (the cookie goes out with this
        # response). A client that drops cookies escapes this scope, not ip.
        session.create()
    # Signed-cookie sessions have no key until saved: then no identity.
    key: str | None = session.session_key
    return key


# The identity of every request whose address PROXY_HEADER does not give.
_UNIDENTIFIED: Final = "unidentified"
_warned_unidentified = False


def _address_identity(scope: str, request: HttpRequest) -> str | None:
    """The ip or network scope's identity of ``request``; ``None``: not limited."""
    global _warned_unidentified  # one warning per process
    address = client_address(request)
    if address is not None:
        return network_of(address) if scope == "ip" else wider_network_of(address)
    if not settings.PROXY_HEADER:
        # The connection itself has no IP address (a Unix socket): nothing to
        # count by, and every client would share one allowance.
        return None
    # The proxy header is missing or unreadable: the request did not pass the
    # site's proxy as configured, or the proxy stopped adding it. Skipping the
    # limit would let anyone drop the header to escape it; one shared counter
    # keeps the limit (fail closed) at the price of sharing it.
    if not _warned_unidentified:
        _warned_unidentified = True
        logger.warning(
            "VOICEPASSWORD['PROXY_HEADER'] names %r, but a request came without a "
            "readable address in it: such requests share one ip and network limit. "
            "Check that the proxy sets the header on every request.",
            settings.PROXY_HEADER,
        )
    return _UNIDENTIFIED


def _identities(number: str, request: HttpRequest | None) -> Iterator[tuple[str, str]]:
    """(scope, identity) for every limited scope that has one, in counting order."""
    limited = settings.LIMITS
    for scope in SCOPES:
        if scope not in limited:
            continue
        identity: str | None
        if scope == "session":
            identity = _session_key(request) if request is not None else None
        elif scope in ("ip", "network"):
            identity = _address_identity(scope, request) if request is not None else None
        elif scope == "number":
            identity = number
        elif scope == "prefix":
            identity = number[: settings.PREFIX_LENGTH]
        else:
            identity = ""
        if identity is not None:
            yield scope, identity


_NORMALIZED: Final = re.compile(r"[0-9]{1,15}")


def check_send(number: str, request: HttpRequest | None, *, kind: NumberKind = "new") -> None:
    """Count one code about to be sent to ``number``; raise if a limit refuses it.

    ``number`` is normalized (:func:`django_voicepassword.phone.normalize`), so
    every spelling of it shares one counter; ``request`` gives the ip, network
    and session scopes (``None``: those are skipped, as is the session scope
    for a request without a session). Call it for every number, known or not,
    so that a refusal never tells whether a number has an account.

    ``kind`` says what the send is to the global scope: ``"verified"``, a
    number of an account that can log in (it may use the whole of
    ``LIMITS["global"]``); ``"new"``, any other number that will be called
    (only ``GLOBAL_NEW_SHARE`` of it); ``"uncalled"``, a login that places no
    call (counted as new, but refused only when a verified number would be).

    Scopes are counted narrowest first (session, ip, network, number, prefix,
    global) and the first one over its limit refuses; see the module's
    documentation for why. The :class:`LimitExceeded` raised names the scope whose refusal
    lasts longest among that one and the later scopes already full (the first
    of them on a tie), and the ``limit_exceeded`` signal is sent with the same
    scope and ``retry_after``. A ``"new"`` send is also judged by the fraud
    guard (:mod:`~django_voicepassword.fraud`, ``FRAUD_GUARD``): a blocked
    prefix or country is refused as the ``prefix`` scope refuses, and a send
    let through is counted for it.

    Raises ``ValueError`` for a number that is not normalized, and
    :class:`~django_voicepassword.conf.ConfigurationError` for a rate in
    ``LIMITS`` that cannot be used.
    """
    _check_arguments(number, kind)
    client = _redis_client()
    if client is None or not _admit_on_redis(client, number, request, kind, None, ()).ran:
        _check_by_cache(number, request, kind)


def _check_arguments(number: str, kind: str) -> None:
    if not _NORMALIZED.fullmatch(number):
        # Not the number itself in the message: it may be what a person typed.
        raise ValueError("check_send() needs a normalized number (E.164 digits without '+').")
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'verified', 'new' or 'uncalled', not {kind!r}")


def _check_by_cache(number: str, request: HttpRequest | None, kind: NumberKind) -> None:
    """:func:`check_send` through the cache's API: any cache that counts atomically."""
    now = _now()
    refusals: list[tuple[str, int]] = []
    # The fraud guard judges new numbers only, where the prefix scope stands
    # (django_voicepassword.fraud): its refusal is a prefix refusal.
    guarded = kind == "new"
    for scope, identity in _identities(number, request):
        if guarded and scope in ("prefix", "global"):
            guarded = _guard(number, refusals)
        if scope == "global":
            wait = _check_global(_configured_rates(scope), now, kind, count=not refusals)
            if wait is not None:
                refusals.append((scope, wait))
            continue
        windows = _windows(scope, identity, _configured_rates(scope), now)
        if refusals:
            # Already refused: read, do not count (see the module docstring).
            stored = cache.get_many([w.key for w in windows])
            full = [w for w in windows if int(stored.get(w.key, 0)) >= w.rate.count]
        else:
            full = [w for w in windows if _count(w.key, 1, w.timeout) > w.rate.count]
        if full:
            refusals.append((scope, max(w.retry_after for w in full)))
    if guarded:
        _guard(number, refusals)
    if refusals:
        # max() keeps the first of equals: the narrowest scope on a tie.
        scope, retry_after = max(refusals, key=lambda refusal: refusal[1])
        raise _refuse(scope, retry_after, request)
    if kind == "new":
        from django_voicepassword import fraud

        fraud.count_send(number, request)


def _guard(number: str, refusals: list[tuple[str, int]]) -> bool:
    """Add the fraud guard's refusal of ``number`` (unless refused already); ``False``: done."""
    from django_voicepassword import fraud  # it counts with this module's counters

    if not refusals:
        wait = fraud.blocked_for(number)
        if wait is not None:
            refusals.append(("prefix", wait))
    return False


# --- the budget ----------------------------------------------------------------


@dataclass(frozen=True)
class Reservation:
    """An amount held against one Moscow day's budget: ``day`` (ISO date), ``cents`` (kopecks)."""

    day: str
    cents: int


def _kopecks(amount: Decimal, rounding: str) -> int:
    return int((amount * 100).to_integral_value(rounding=rounding))


def _budget_key(day: str) -> str:
    return f"{_PREFIX}budget:{day}"


def _moscow_day(now: float) -> tuple[str, int]:
    """The Moscow date of ``now`` and the whole seconds (1 or more) to its end."""
    local = datetime.fromtimestamp(now, PROVIDER_TZ)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), PROVIDER_TZ)
    return local.date().isoformat(), max(1, math.ceil(midnight.timestamp() - now))


def reserve(channel: str, *, request: HttpRequest | None = None) -> Reservation | None:
    """Hold ``channel``'s ``PRICE_ESTIMATES`` against today's ``DAILY_BUDGET``.

    Returns the :class:`Reservation` to :func:`release` if the send fails or is
    refused, or ``None`` when no budget is set. Raises :class:`LimitExceeded`
    with scope ``"budget"`` and ``retry_after`` the seconds to Moscow midnight
    when the reservation would exceed the budget (and sends ``limit_exceeded``
    with ``request``); ``ValueError`` for an unknown channel.
    """
    hold = _hold(channel, _now())
    if hold is None:
        return None
    client = _redis_client()
    if client is not None:
        admitted = _admit_on_redis(client, "", request, "verified", hold, (), limits=False)
        if admitted.ran:
            return admitted.reservation
    return _reserve_by_cache(hold, request)


@dataclass(frozen=True)
class _Hold:
    """A reservation about to be made: ``cents`` of ``limit`` on the day's counter ``key``."""

    day: str
    key: str
    cents: int
    limit: int
    until_midnight: int

    @property
    def timeout(self) -> int:
        return self.until_midnight + _GRACE


def _hold(channel: str, now: float) -> _Hold | None:
    """The reservation :func:`reserve` would make for ``channel``; ``None``: no budget."""
    prices = settings.PRICE_ESTIMATES
    if channel not in prices:
        raise ValueError(f"Unknown channel {channel!r}: use one of {', '.join(sorted(prices))}.")
    budget = settings.DAILY_BUDGET
    if budget is None:
        return None
    price = prices[channel]
    if price < 0 or budget < 0:
        raise ConfigurationError(
            "VOICEPASSWORD['DAILY_BUDGET'] and PRICE_ESTIMATES must be 0 or more."
        )
    day, until_midnight = _moscow_day(now)
    return _Hold(
        day,
        _budget_key(day),
        _kopecks(price, ROUND_CEILING),
        _kopecks(budget, ROUND_FLOOR),
        until_midnight,
    )


def _reserve_by_cache(hold: _Hold | None, request: HttpRequest | None) -> Reservation | None:
    if hold is None:
        return None
    if _count(hold.key, hold.cents, hold.timeout) > hold.limit:
        _give_back(hold.key, hold.cents)
        raise _refuse("budget", hold.until_midnight, request)
    return Reservation(hold.day, hold.cents)


def _give_back(key: str, cents: int) -> None:
    if cents == 0:
        return
    try:
        value = cache.decr(key, cents)
    except ValueError:
        # The day's counter is gone (the day ended): nothing left to give back to.
        return
    if value < 0:
        # Decremented a counter that had just expired: Redis recreated it
        # without a timeout, holding only this refund. Drop it.
        cache.delete(key)


def release(reservation: Reservation | None) -> None:
    """Give a reservation back to its day's budget (the send failed or was refused).

    Accepts ``None`` (no budget was set). Release each reservation once: the
    cache cannot tell a second release from a first.
    """
    if reservation is None or reservation.cents == 0:
        return
    key = _budget_key(reservation.day)
    client = _redis_client()
    plan = {"release": [_redis_key(key), reservation.cents]} if client is not None else {}
    if client is None or _run_script(client, plan) is _REFUSED:
        _give_back(key, reservation.cents)


def check_and_reserve(
    number: str,
    request: HttpRequest | None,
    *,
    kind: NumberKind = "new",
    channel: str,
    peek: Sequence[str] = (),
) -> tuple[Reservation | None, dict[str, Any]]:
    """:func:`check_send`, then :func:`reserve` for ``channel``: in one round trip on Redis.

    Returns the reservation and the values of the cache keys ``peek`` found
    (as ``cache.get_many`` would), read with the limits, so that a login
    start asks Redis once for all of them. Raises what :func:`check_send` and
    :func:`reserve` raise, and counts and reserves exactly as the two would
    one after the other: nothing is reserved when a limit refuses. On any
    other cache (local memory, memcached) it calls the two in turn.
    """
    _check_arguments(number, kind)
    hold = _hold(channel, _now())
    client = _redis_client()
    if client is not None:
        admitted = _admit_on_redis(client, number, request, kind, hold, peek)
        if admitted.ran:
            return admitted.reservation, admitted.peeked
    _check_by_cache(number, request, kind)
    reservation = _reserve_by_cache(hold, request)
    return reservation, cache.get_many(list(peek)) if peek else {}


def budget_left() -> Decimal | None:
    """What is left of today's ``DAILY_BUDGET`` (the Moscow day), ``None`` without a budget.

    Reads the day's counter in the shared cache without counting anything, so
    every process reads the same figure (for a metric computed when scraped).
    Never below zero: an overshooting reservation is over the counter only
    for the instant before it is given back.
    """
    budget = settings.DAILY_BUDGET
    if budget is None:
        return None
    day, _until_midnight = _moscow_day(_now())
    spent = int(cache.get(_budget_key(day), 0))
    left = max(0, _kopecks(budget, ROUND_FLOOR) - spent)
    return Decimal(left) / 100


# --- one round trip on Redis -----------------------------------------------------------
#
# Counted through the cache's API, a login start asks Redis some thirty
# times (add, exists, incr and expire per window; the global pools; the
# fraud guard; the budget), and Django's RedisCache builds a client for each.
# On Django's RedisCache the same counting runs as one Lua script instead:
# one round trip, and atomic as a whole (Redis runs one script at a time),
# so it can never lose an update that the per-key commands would not.
#
# The script does what the cache path does, step for step and key for key
# (the same keys under the cache's prefix and version, the same values, the
# same timeouts, set when a counter is created), so old and new processes
# can share a Redis during a rolling deploy. It returns what it counted and
# read; the refusals, their Retry-After and the fraud guard's judgement are
# computed from that by the same Python as on the cache path.

_LUA: Final = r"""
local plan = cjson.decode(ARGV[1])

local function count(key, delta, timeout)
  local value = redis.call('INCRBY', key, delta)
  if value == delta then redis.call('EXPIRE', key, timeout) end
  return value
end

local function give_back(key, delta)
  if delta == 0 or redis.call('EXISTS', key) == 0 then return end
  if redis.call('DECRBY', key, delta) < 0 then redis.call('DEL', key) end
end

local function read(key)
  return tonumber(redis.call('GET', key) or '0') or 0
end

-- A block's end: an int (stored as digits) or a float (pickled, protocol
-- 2 to 5); false for anything else, which the script leaves to Python.
local function block_end(raw)
  local number = tonumber(raw)
  if number then return number end
  if raw:byte(1) == 128 then
    if #raw == 21 and raw:byte(3) == 149 and raw:sub(12, 12) == 'G' and raw:sub(21) == '.' then
      return (struct.unpack('>d', raw:sub(13, 20)))
    end
    if #raw == 11 and raw:sub(3, 3) == 'G' and raw:sub(11) == '.' then
      return (struct.unpack('>d', raw:sub(4, 11)))
    end
  end
  return false
end

if plan.release then give_back(plan.release[1], plan.release[2]) end

-- The fraud guard's blocks first (a read: the script is atomic, so reading
-- them now is reading them at their step), and nothing written if one
-- cannot be read here.
local blocked, raw_blocks = {}, {}
for i, step in ipairs(plan.steps) do
  if step.g then
    blocked[i], raw_blocks[i] = false, {}
    for _, key in ipairs(step.g) do
      local raw = redis.call('GET', key)
      if raw then
        local ends = block_end(raw)
        if ends == false then return {'cache'} end
        if ends > step.now then blocked[i] = true end
      end
      raw_blocks[i][#raw_blocks[i] + 1] = raw or ''
    end
  end
end

local function over(s, previous, current)
  return previous * (s[4] - s[5]) / s[4] + current > s[3]
end

local function read_sliding(slidings, out)
  for _, s in ipairs(slidings) do
    out[#out + 1] = read(s[2])
    out[#out + 1] = read(s[1])
  end
end

local function count_sliding(slidings, out)
  local counted, full = {}, false
  for j, s in ipairs(slidings) do counted[j] = count(s[1], 1, s[6]) end
  for j, s in ipairs(slidings) do
    local previous = read(s[2])
    out[#out + 1] = previous
    out[#out + 1] = counted[j]
    if over(s, previous, counted[j]) then full = true end
  end
  if full then
    for _, s in ipairs(slidings) do give_back(s[1], 1) end
  end
  return full
end

local refused = false
local results = {}
for i, step in ipairs(plan.steps) do
  local out
  if step.f then
    -- A scope of fixed windows: every rate counted, or read once refused.
    local full = false
    out = {refused and 0 or 1}
    for _, w in ipairs(step.f) do
      if refused then
        out[#out + 1] = read(w[1])
      else
        local value = count(w[1], 1, w[3])
        out[#out + 1] = value
        if value > w[2] then full = true end
      end
    end
    if full then refused = true end
  elseif step.g then
    out = {refused and 0 or 1}
    for _, raw in ipairs(raw_blocks[i]) do out[#out + 1] = raw end
    if not refused and blocked[i] then refused = true end
  else
    -- The global scope: a path code, then (previous, current) per window.
    local every, new, kind = step.every, step.new, step.kind
    local counted_new = {}
    if refused then
      out = {0}
      read_sliding(every, out)
      if kind == 'new' then read_sliding(new, out) end
    elseif #new > 0 and count_sliding(new, counted_new) then
      -- The new pool is full (and given back): read the whole site's.
      out = {1}
      for _, value in ipairs(counted_new) do out[#out + 1] = value end
      local first = #out
      read_sliding(every, out)
      if kind == 'new' then
        refused = true
      else
        -- Uncalled: refused exactly when a verified number would be.
        for j, s in ipairs(every) do
          if over(s, out[first + 2 * j - 1], out[first + 2 * j] + 1) then refused = true end
        end
      end
    else
      out = {2}
      if count_sliding(every, out) then
        for _, s in ipairs(new) do give_back(s[1], 1) end
        refused = true
      end
    end
  end
  results[i] = out
end

local figures, budget = {}, {}
if not refused and plan.fraud then
  for _, c in ipairs(plan.fraud.count) do count(c[1], 1, c[2]) end
  for _, key in ipairs(plan.fraud.read) do figures[#figures + 1] = read(key) end
end
if not refused and plan.budget then
  local b = plan.budget
  local value = count(b[1], b[2], b[4])
  if value > b[3] then give_back(b[1], b[2]) end
  budget[1] = value
end
local peeked = {}
for _, key in ipairs(plan.peek or {}) do peeked[#peeked + 1] = redis.call('GET', key) or '' end
return {'ok', results, figures, budget, peeked}
"""

_script: Any = None
#: Set when the server refused to run scripts (an ACL without ``@scripting``,
#: ``EVALSHA`` renamed away): the cache path counts from then on.
_scripting_refused = False
_REFUSED: Final = [b"refused"]


def _redis_client() -> Any | None:
    """The Redis client of the default cache when it is Django's RedisCache, else ``None``.

    The primary's (Django's ``write=True``): the script writes. ``None`` as
    well once the server refused to run the script: the cache path then
    counts, with the same keys.
    """
    backend = caches["default"]
    if _scripting_refused or not isinstance(backend, RedisCache):
        return None
    # Kept on Django's client (one per cache instance, so per thread): Django
    # builds a new redis.Redis for every operation, which costs more CPU than
    # the round trip. It holds nothing but the shared connection pool.
    redis_cache: Any = backend._cache
    client = getattr(redis_cache, "_voicepassword_client", None)
    if client is None:
        client = redis_cache._voicepassword_client = redis_cache.get_client(None, write=True)
    return client


def _redis_key(key: str) -> str:
    """``key`` as the default cache stores it (its ``KEY_PREFIX`` and ``VERSION``)."""
    return str(caches["default"].make_and_validate_key(key))


def _run_script(client: Any, plan: dict[str, Any]) -> list[Any]:
    """Run the script on ``plan``: one ``EVALSHA`` (the first in a process may load it)."""
    global _script, _scripting_refused
    from redis.exceptions import NoPermissionError, ResponseError

    if _script is None:
        _script = client.register_script(_LUA)
    plan.setdefault("steps", [])
    try:
        result: list[Any] = _script(args=[json.dumps(plan)], client=client)
    except ResponseError as error:
        # Refused before it ran (nothing counted): an ACL that denies
        # scripting, or the command renamed away. Anything else is raised.
        message = str(error)
        if not (isinstance(error, NoPermissionError) or message.startswith("unknown command")):
            raise
        _scripting_refused = True
        logger.warning("Redis refused the limits' script (%s); counting by the cache's API", error)
        return _REFUSED
    return result


@dataclass(frozen=True)
class _Admitted:
    """What :func:`_admit_on_redis` did; ``ran`` ``False``: it left all to the cache path."""

    ran: bool
    reservation: Reservation | None = None
    peeked: dict[str, Any] = field(default_factory=dict)


def _admit_on_redis(
    client: Any,
    number: str,
    request: HttpRequest | None,
    kind: NumberKind,
    hold: _Hold | None,
    peek: Sequence[str],
    *,
    limits: bool = True,
) -> _Admitted:
    """:func:`check_send` (unless not ``limits``) and the reservation ``hold``, as one script.

    Raises as :func:`check_send` and :func:`reserve` do; nothing is counted
    or reserved when the script cannot read a fraud block (``ran`` is then
    ``False``: the caller counts through the cache's API).
    """
    from django_voicepassword import fraud  # it counts with this module's counters

    now = _now()
    steps: list[tuple[str, Any]] = []
    guarded = limits and kind == "new" and fraud._guarded(number)
    if limits:
        for scope, identity in _identities(number, request):
            if guarded and scope in ("prefix", "global"):
                steps.append(("guard", fraud._block_keys(number)))
                guarded = False
            rates = _configured_rates(scope)
            if scope == "global":
                new = _slidings("new", rates, now) if kind != "verified" else []
                steps.append((scope, (_slidings("all", rates, now), new)))
            else:
                steps.append((scope, _windows(scope, identity, rates, now)))
        if guarded:
            steps.append(("guard", fraud._block_keys(number)))
    send_count = fraud._send_count(number) if limits and kind == "new" else None
    fraud_now = fraud._now() if any(scope == "guard" for scope, _ in steps) else 0.0

    def sliding(s: _Sliding) -> list[Any]:
        return [_redis_key(s.key), _redis_key(s.previous), s.limit, s.period, s.elapsed, s.timeout]

    plan_steps: list[dict[str, Any]] = []
    for scope, spec in steps:
        if scope == "guard":
            plan_steps.append({"g": [_redis_key(k) for k in spec], "now": fraud_now})
        elif scope == "global":
            every, new = spec
            plan_steps.append(
                {
                    "every": [sliding(s) for s in every],
                    "new": [sliding(s) for s in new],
                    "kind": kind,
                }
            )
        else:
            plan_steps.append({"f": [[_redis_key(w.key), w.rate.count, w.timeout] for w in spec]})
    plan: dict[str, Any] = {"steps": plan_steps, "peek": [_redis_key(k) for k in peek]}
    figure_keys: list[str] = []
    if send_count is not None:
        figure_keys = [key for pair in send_count.keys.values() for key in pair]
        plan["fraud"] = {
            "count": [[_redis_key(k), timeout] for k, timeout in send_count.counters],
            "read": [_redis_key(k) for k in figure_keys],
        }
    if hold is not None:
        plan["budget"] = [_redis_key(hold.key), hold.cents, hold.limit, hold.timeout]

    result = _run_script(client, plan)
    if result[0] != b"ok":
        return _Admitted(ran=False)
    _status, outs, figures, budget, peeked = result
    backend: Any = caches["default"]
    loads = backend._cache._serializer.loads

    refusals: list[tuple[str, int]] = []
    for (scope, spec), out in zip(steps, outs, strict=True):
        evaluated, values = out[0], out[1:]
        if scope == "guard":
            if evaluated:
                wait = fraud._block_wait([loads(raw) for raw in values if raw != b""], fraud_now)
                if wait is not None:
                    refusals.append(("prefix", wait))
        elif scope == "global":
            every, new = spec
            wait = _global_wait(every, new, kind, evaluated, values)
            if wait is not None:
                refusals.append((scope, wait))
        else:
            full = [
                w
                for w, value in zip(spec, values, strict=True)
                if (value > w.rate.count if evaluated else value >= w.rate.count)
            ]
            if full:
                refusals.append((scope, max(w.retry_after for w in full)))
    if refusals:
        scope, retry_after = max(refusals, key=lambda refusal: refusal[1])
        raise _refuse(scope, retry_after, request)
    if send_count is not None:
        send_count.judge(dict(zip(figure_keys, figures, strict=True)), request)
    reservation = None
    if hold is not None:
        if budget[0] > hold.limit:
            raise _refuse("budget", hold.until_midnight, request)
        reservation = Reservation(hold.day, hold.cents)
    found = {key: loads(raw) for key, raw in zip(peek, peeked, strict=True) if raw != b""}
    return _Admitted(ran=True, reservation=reservation, peeked=found)


def _pairs(values: list[int]) -> list[tuple[int, int]]:
    return list(zip(values[::2], values[1::2], strict=True))


def _global_wait(
    every: list[_Sliding], new: list[_Sliding], kind: NumberKind, path: int, values: list[int]
) -> int | None:
    """:func:`_check_global`'s answer from what the script counted and read (``path``)."""

    def full(slidings: list[_Sliding], pairs: list[tuple[int, int]]) -> int | None:
        # As _read_full: the windows one more send would overfill.
        waits = [
            s.retry_after(previous, current)
            for s, (previous, current) in zip(slidings, pairs, strict=True)
            if s.count(previous, current + 1) > s.limit
        ]
        return max(waits) if waits else None

    def counted(slidings: list[_Sliding], pairs: list[tuple[int, int]]) -> int | None:
        # As _count_sliding: the windows this send overfilled, the send given back.
        waits = [
            s.retry_after(previous, current - 1)
            for s, (previous, current) in zip(slidings, pairs, strict=True)
            if s.count(previous, current) > s.limit
        ]
        return max(waits) if waits else None

    pairs = _pairs(values)
    if path == 0:  # refused before: read
        read_new = new if kind == "new" else []
        waits = [
            w for w in (full(every, pairs[: len(every)]), full(read_new, pairs[len(every) :])) if w
        ]
        return max(waits) if waits else None
    if path == 1:  # the new pool was full
        new_wait = counted(new, pairs[: len(new)])
        whole = full(every, pairs[len(new) :])
        return max(new_wait or 0, whole or 0) if kind == "new" else whole
    return counted(every, pairs)
