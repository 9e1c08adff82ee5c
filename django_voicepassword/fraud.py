"""The fraud guard against SMS and call pumping, and the review numbers.

The fraud guard
---------------
A pumping attack sends codes to numbers the attacker is paid for (premium
or partner ranges): many sends to one prefix or country, none of them ever
confirmed. The fixed rates of :mod:`~django_voicepassword.ratelimit` slow it
down; the guard stops it. With ``FRAUD_GUARD`` set it keeps, in the cache,
per prefix (``PREFIX_LENGTH`` digits: the ``prefix`` limit's notion), per
country and for the whole site, the codes sent and the codes confirmed over
a sliding window (``WINDOW``). When a prefix has had ``MIN_SENDS`` sends in
the window (a country ``COUNTRY_MIN_SENDS``) and its confirmation rate is
below ``RATIO`` times the baseline, it is blocked for ``BLOCK_SECONDS``: a
:class:`~django_voicepassword.models.PrefixBlock` row keeps the decision and
its figures for staff, the cache keeps it for every send to read, and
``prefix_blocked`` is sent.

- **The baseline is the rest of the site.** The confirmation rate of every
  other prefix (or country), counted as if it had started with ``MIN_SENDS``
  sends confirmed at ``BASELINE``: a new site, or one with few sends, is
  compared with that assumption; a busy one with its own figures. Leaving the
  judged prefix out keeps an attack from dragging the baseline down with it,
  and a provider outage (every rate falls together) blocks nobody.
- **Only new numbers are counted and blocked.** A send is what
  :func:`~django_voicepassword.ratelimit.check_send` calls ``"new"``: a
  number that will be called and is not an account's (a sign-up with
  ``CREATE_USERS``, a number being verified). Numbers already verified on the
  site (``"verified"``) are never blocked, and a login for a number without
  an account (``"uncalled"``) places no call, costs nothing and is neither
  counted nor blocked, so the answer to a login is the same for every number
  (see "Accounts and enumeration" in ``docs/decisions.md`` for what remains).
- **A blocked send is refused as any limit refuses**: ``LimitExceeded`` with
  the ``prefix`` scope and the time the block has left, counted in the
  narrower scopes like a ``prefix`` refusal; nothing is sent or reserved.
- **Only what went out is counted.** A send the limits refused is not, so a
  block ends with an empty window: after it, a prefix that is still attacked
  gets at most ``MIN_SENDS`` more sends before the next block.
- **Counted with the limits.** On Django's ``RedisCache`` a send's block is
  read, and the send counted and its figures read, in the limits' one script
  (:mod:`~django_voicepassword.ratelimit`): no round trip of its own.
- **Nothing personal in the cache**: keys hold an HMAC of the prefix or the
  country, as the limits' keys do. The row holds the prefix in clear (at the
  default 7 digits, a block of 10,000 numbers, not somebody's number).

Review numbers
--------------
``REVIEW_NUMBERS`` maps numbers to fixed codes, for app-store reviewers and
load tests: a send to one is recorded as a :class:`~django_voicepassword.models.Call`
with status ``review`` (marked so in the admin) and never reaches the
gateway; the challenge takes the fixed code. They work only with ``DEBUG`` on
or ``REVIEW_NUMBERS_IN_PRODUCTION`` (the system check ``voicepassword.E022``
refuses them otherwise, and :func:`review_code` ignores them). The limits
apply to them as to any number: a fixed code must not be guessable faster.

Time is read through :func:`_now` alone, so tests can move the clock.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

import phonenumbers
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from django_voicepassword import ratelimit
from django_voicepassword.conf import settings
from django_voicepassword.models import Call, PrefixBlock
from django_voicepassword.phone import InvalidPhoneNumber, mask, normalize
from django_voicepassword.signals import prefix_blocked

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from django_voicepassword.models import Challenge

__all__ = [
    "Figures",
    "blocked_for",
    "count_confirm",
    "count_send",
    "country_of",
    "enabled",
    "forget",
    "lift",
    "prefix_of",
    "record_review",
    "review_code",
    "review_numbers",
]

logger = logging.getLogger(__name__)

_PREFIX: Final = "voicepassword:fraud:"
_SALT: Final = "django_voicepassword.fraud"
# Counters live this long past the window they are read in (see ratelimit).
_GRACE: Final = 60
# How long the answer "allow-listed" is kept in the cache: a prefix that
# keeps meeting the conditions asks the database at most this often.
_ALLOWED_FOR: Final = 60
_SITE: Final = "site"
#: The fewest confirmations the baseline must expect of a prefix before its
#: lack of them blocks it: a site that confirms nothing (the provider down,
#: every call failing) has no prefix far below it.
_MIN_EXPECTED: Final = 5.0


def _now() -> float:
    """The current Unix time: the one clock of this module (tests move it)."""
    return time.time()


def enabled() -> bool:
    """Whether the fraud guard is on (``FRAUD_GUARD`` is a dict)."""
    return settings.FRAUD_GUARD is not None


def prefix_of(number: str) -> str:
    """The prefix of a normalized number, as the ``prefix`` limit reads it."""
    return number[: settings.PREFIX_LENGTH]


@lru_cache(maxsize=4096)
def country_of(number: str) -> str:
    """The region code of a normalized number (``"RU"``), or ``"+<code>"`` when it has none."""
    try:
        numobj = phonenumbers.parse("+" + number)
    except phonenumbers.NumberParseException:
        return ""
    return phonenumbers.region_code_for_number(numobj) or f"+{numobj.country_code}"


def _digest(level: str, identity: str) -> str:
    # An HMAC, as the limits' keys: the cache is often read by more people.
    return salted_hmac(f"{_SALT}.{level}", identity, algorithm="sha256").hexdigest()[:32]


# --- counting ----------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Codes sent and confirmed over the sliding window (weighted, so not whole)."""

    sends: float
    confirms: float

    def __sub__(self, other: Figures) -> Figures:
        sends, confirms = self.sends - other.sends, self.confirms - other.confirms
        return Figures(max(0.0, sends), max(0.0, confirms))

    @property
    def rate(self) -> float | None:
        """Confirmed per sent; ``None`` before anything was sent."""
        return min(1.0, self.confirms / self.sends) if self.sends > 0 else None


def _keys(what: str, level: str, identity: str, now: float) -> tuple[str, str]:
    window = int(settings.FRAUD_GUARD["WINDOW"])  # type: ignore[index]
    index = int(now // window)
    base = f"{_PREFIX}{what}:{level}:{_digest(level, identity)}:{window}"
    return f"{base}:{index}", f"{base}:{index - 1}"


def _counter(what: str, level: str, identity: str, now: float) -> tuple[str, int]:
    """The key of the current window's counter and the timeout it is counted with."""
    window = int(settings.FRAUD_GUARD["WINDOW"])  # type: ignore[index]
    current, _previous = _keys(what, level, identity, now)
    # Read as the previous window's throughout the next one.
    return current, 2 * window + _GRACE


def _count(what: str, level: str, identity: str, now: float) -> None:
    key, timeout = _counter(what, level, identity, now)
    ratelimit._count(key, 1, timeout)


_FigureKeys = dict[tuple[str, str, str], tuple[str, str]]


def _figure_keys(levels: list[tuple[str, str]], now: float) -> _FigureKeys:
    """(level, identity, what) -> the keys of its current and previous windows."""
    return {
        (level, identity, what): _keys(what, level, identity, now)
        for level, identity in levels
        for what in ("sends", "confirms")
    }


def _figures(levels: list[tuple[str, str]], now: float) -> dict[tuple[str, str], Figures]:
    """The sliding counts of every (level, identity), in one read of the cache."""
    keys = _figure_keys(levels, now)
    return _figures_of(
        levels, keys, cache.get_many([k for pair in keys.values() for k in pair]), now
    )


def _figures_of(
    levels: list[tuple[str, str]], keys: _FigureKeys, stored: dict[str, Any], now: float
) -> dict[tuple[str, str], Figures]:
    """The sliding counts of every (level, identity) from the counters ``stored``."""
    window = int(settings.FRAUD_GUARD["WINDOW"])  # type: ignore[index]
    # The previous window's counts weigh by its part still inside the period.
    weight = (window - now % window) / window

    def count(level: str, identity: str, what: str) -> float:
        current, previous = keys[(level, identity, what)]
        return int(stored.get(previous, 0)) * weight + int(stored.get(current, 0))

    return {
        (level, identity): Figures(
            count(level, identity, "sends"), count(level, identity, "confirms")
        )
        for level, identity in levels
    }


def _levels(number: str) -> list[tuple[str, str]]:
    return [("prefix", prefix_of(number)), ("country", country_of(number))]


def _guarded(number: str) -> bool:
    return enabled() and review_code(number) is None


# --- blocks ------------------------------------------------------------------------


def _block_key(level: str, identity: str) -> str:
    return f"{_PREFIX}block:{level}:{_digest(level, identity)}"


def _allowed_key(level: str, identity: str) -> str:
    return f"{_PREFIX}allowed:{level}:{_digest(level, identity)}"


def blocked_for(number: str) -> int | None:
    """Seconds the block on ``number``'s prefix or country has left; ``None``: not blocked.

    One read of the cache. Called by :func:`~django_voicepassword.ratelimit.check_send`
    for the sends it counts as ``"new"`` only.
    """
    if not _guarded(number):
        return None
    return _block_wait(cache.get_many(_block_keys(number)).values(), _now())


def _block_keys(number: str) -> list[str]:
    """The keys of the blocks that would refuse ``number``: its prefix's and country's."""
    return [_block_key(level, identity) for level, identity in _levels(number)]


def _block_wait(untils: Iterable[Any], now: float) -> int | None:
    """Seconds the longest of the blocks ending at ``untils`` has left; ``None``: none holds."""
    waits = [
        math.ceil(float(until) - now)
        for until in untils
        if isinstance(until, int | float) and until > now
    ]
    return max(waits) if waits else None


def _allow_listed(level: str, identity: str) -> bool:
    key = _allowed_key(level, identity)
    known = cache.get(key)
    if known is not None:
        return bool(known)
    rows = PrefixBlock.objects.filter(allow_listed=True)
    rows = (
        rows.filter(prefix=identity)
        if level == "prefix"
        else rows.filter(prefix="", country=identity)
    )
    allowed = rows.exists()
    cache.set(key, allowed, _ALLOWED_FOR)
    return allowed


def count_send(number: str, request: HttpRequest | None = None) -> PrefixBlock | None:
    """Count a send to a new ``number`` that the limits let through, and judge its prefix.

    Returns the :class:`~django_voicepassword.models.PrefixBlock` made when
    this send tipped its prefix or country over (the send itself still goes
    out: it was the last one allowed), else ``None``. Review numbers and a
    guard that is off count nothing.
    """
    if not _guarded(number):
        return None
    now = _now()
    levels = _levels(number)
    for level, identity in [*levels, (_SITE, "")]:
        _count("sends", level, identity, now)
    return _judge(number, _figures([*levels, (_SITE, "")], now), now, request)


@dataclass(frozen=True)
class _SendCount:
    """What :func:`count_send` writes and reads, for the limits to do in one round trip.

    :mod:`~django_voicepassword.ratelimit` counts ``counters`` (key, timeout)
    and reads ``keys`` in the same Redis script as the limits, then hands
    what it read to :meth:`judge`.
    """

    number: str
    now: float
    counters: list[tuple[str, int]]
    keys: _FigureKeys

    def judge(self, stored: dict[str, Any], request: HttpRequest | None) -> PrefixBlock | None:
        """:func:`count_send`'s judgement on the counters read after counting (``stored``)."""
        levels = [*_levels(self.number), (_SITE, "")]
        return _judge(
            self.number, _figures_of(levels, self.keys, stored, self.now), self.now, request
        )


def _send_count(number: str) -> _SendCount | None:
    """:func:`count_send` as keys to count and read; ``None`` when it counts nothing."""
    if not _guarded(number):
        return None
    now = _now()
    levels = [*_levels(number), (_SITE, "")]
    counters = [_counter("sends", level, identity, now) for level, identity in levels]
    return _SendCount(number, now, counters, _figure_keys(levels, now))


def _judge(
    number: str,
    figures: dict[tuple[str, str], Figures],
    now: float,
    request: HttpRequest | None,
) -> PrefixBlock | None:
    """Block ``number``'s prefix or country if its ``figures`` (this send counted) say so."""
    levels = _levels(number)
    site = figures[(_SITE, "")]
    guard = settings.FRAUD_GUARD
    assert guard is not None  # _guarded
    made = None
    for level, identity in levels:
        minimum = guard["MIN_SENDS"] if level == "prefix" else guard["COUNTRY_MIN_SENDS"]
        own = figures[(level, identity)]
        if own.sends < minimum:
            continue
        rest = site - own
        if level == "country" and rest.sends < guard["MIN_SENDS"]:
            # A country is judged against the site's other countries, never
            # against the assumption: on a site of one country that would
            # block the whole site (the limits and DAILY_BUDGET do that job).
            continue
        # The rest of the site's rate, as if it had begun with MIN_SENDS sends
        # confirmed at BASELINE: few figures lean on the assumption, many on the site.
        prior = guard["MIN_SENDS"]
        baseline = (rest.confirms + guard["BASELINE"] * prior) / (rest.sends + prior)
        # The confirmations the site's rate would have given this many sends:
        # too few is far below the site only when the site itself confirms.
        expected = baseline * own.sends
        if (
            expected >= _MIN_EXPECTED
            and own.confirms < guard["RATIO"] * expected
            and not _allow_listed(level, identity)
        ):
            made = _block(level, identity, number, own, baseline, now, request) or made
    return made


def _block(
    level: str,
    identity: str,
    number: str,
    own: Figures,
    baseline: float,
    now: float,
    request: HttpRequest | None,
) -> PrefixBlock | None:
    guard = settings.FRAUD_GUARD
    assert guard is not None
    until = now + int(guard["BLOCK_SECONDS"])
    key, timeout = _block_key(level, identity), int(guard["BLOCK_SECONDS"])
    # add(): of concurrent sends that tip the same prefix, one records the block.
    if not cache.add(key, until, timeout):
        held = cache.get(key)
        if isinstance(held, int | float) and held > now:
            return None  # blocked already (a concurrent send recorded it)
        # A block that ended but was not yet evicted: the first to drop it blocks again.
        cache.delete(key)
        if not cache.add(key, until, timeout):
            return None
    block = PrefixBlock.objects.create(
        prefix=identity if level == "prefix" else "",
        country=country_of(number),
        started=round(own.sends),
        confirmed=round(own.confirms),
        baseline=round(baseline, 4),
        window=int(guard["WINDOW"]),
        blocked_until=datetime.fromtimestamp(until, UTC),
    )
    logger.warning(
        "Fraud guard: %s %s blocked (%d sent, %d confirmed in the window; baseline %.2f)",
        level,
        identity if level == "prefix" else block.country,
        block.started,
        block.confirmed,
        baseline,
    )
    transaction.on_commit(
        lambda: prefix_blocked.send(sender=PrefixBlock, block=block, request=request)
    )
    return block


def count_confirm(challenge: Challenge) -> None:
    """Count a confirmed code for ``challenge``'s prefix, if its send was counted.

    A verification's, or a login's whose number has no user yet (a sign-up
    with ``CREATE_USERS``): the sends :func:`count_send` counts. A login of an
    account's number is not counted, as its send was not.
    """
    if not _guarded(challenge.number):
        return
    if challenge.purpose == "login":
        from django_voicepassword.adapter import get_adapter

        if get_adapter().get_user(challenge.number) is not None:
            return
    levels = [*_levels(challenge.number), (_SITE, "")]

    def count() -> None:
        now = _now()
        for level, identity in levels:
            _count("confirms", level, identity, now)

    # Once the confirmation is stored: a rolled-back login confirmed nothing.
    transaction.on_commit(count)


def _identity(block: PrefixBlock) -> tuple[str, str]:
    return ("prefix", block.prefix) if block.prefix else ("country", block.country)


def forget(block: PrefixBlock) -> None:
    """Drop what the cache holds on ``block``'s prefix: its block, counts and allow-listing.

    After a lift the counts start again from zero: the figures that tipped
    the block would otherwise tip it again at the next send.
    """
    level, identity = _identity(block)
    keys = [_block_key(level, identity), _allowed_key(level, identity)]
    if enabled():
        # The counters' keys name the window; with the guard off nothing is counted.
        now = _now()
        for what in ("sends", "confirms"):
            keys += _keys(what, level, identity, now)
    cache.delete_many(keys)


def lift(block: PrefixBlock, user: AbstractBaseUser | None, *, allow_list: bool = False) -> None:
    """Lift ``block`` now (staff did), and with ``allow_list`` never block its prefix again."""
    block.lifted_at = block.lifted_at or timezone.now()
    block.lifted_by_id = getattr(user, "pk", None)
    fields = ["lifted_at", "lifted_by"]
    if allow_list:
        block.allow_listed = True
        fields.append("allow_listed")
    block.save(update_fields=fields)
    # After the commit: a send in between would read the old block again.
    transaction.on_commit(lambda: forget(block))


# --- review numbers ----------------------------------------------------------------


def review_numbers() -> dict[str, str]:
    """``REVIEW_NUMBERS`` by normalized number, when they may be used; else empty.

    They may with ``DEBUG`` on or ``REVIEW_NUMBERS_IN_PRODUCTION``. A key that
    is no phone number is left out (``voicepassword.E021`` reports it).
    """
    configured = settings.REVIEW_NUMBERS
    if not configured or not (django_settings.DEBUG or settings.REVIEW_NUMBERS_IN_PRODUCTION):
        return {}
    found = {}
    for number, code in configured.items():
        try:
            found[normalize(number, enforce_policy=False)] = code
        except InvalidPhoneNumber:
            continue
    return found


def review_code(number: str) -> str | None:
    """The fixed code of a review number (normalized), or ``None`` for any other number."""
    if not settings.REVIEW_NUMBERS:
        return None
    return review_numbers().get(number)


def record_review(
    challenge: Challenge, channel: str, user: AbstractBaseUser | None
) -> tuple[Call, str] | None:
    """Record a send to a review number, placing nothing; ``(call, code)``, or ``None``.

    The :class:`~django_voicepassword.models.Call` row has status ``review``
    and price 0: the admin marks it, and the spend totals stay true.
    """
    code = review_code(challenge.number)
    if code is None:
        return None
    call = Call.objects.create(
        channel=channel,
        number=challenge.number,
        status=Call.Status.REVIEW,
        price=Decimal("0"),
        user_id=getattr(user, "pk", None),
        challenge=challenge,
    )
    logger.info("Review number %s: %s recorded, not placed", mask(challenge.number), channel)
    return call, code
