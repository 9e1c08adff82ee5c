"""Phone verification and phone login: challenges, their codes, and what limits them.

A :class:`~django_voicepassword.models.Challenge` is one attempt to prove that
somebody receives calls at a number: for a login (``purpose="login"``) or to
add the number to a logged-in user's numbers (``purpose="verify"``). The
services here are the only way a challenge is started, re-sent or confirmed,
so the HTML flow, the API and a site's own code all get the same limits,
records and signals:

- :func:`start_challenge` sends a code (a flash call by default) and returns
  the challenge; :func:`resend_challenge` sends another one, by the same or
  another channel, once the cooldown allows;
- :func:`get_challenge` finds a challenge by id for the client that started
  it (its session, or the binding cookie: :mod:`~django_voicepassword.binding`);
  :func:`challenge_info` is what a page or an app shows about it;
- :func:`confirm_challenge` checks a code once. Phone *login* goes through
  :class:`~django_voicepassword.auth_backends.PhoneCodeBackend`, which calls it.

With ``ASYNC_SEND`` the first two answer at once and a worker sends the code
(:func:`send_queued`, the ``send_code`` task of :mod:`django_voicepassword.tasks`);
:func:`send_state` tells a page whether it went out.

Threat model
------------
The attacker can start challenges for any number, from many addresses, and
guess codes; they can read the database or the logs of the site (a backup, a
support tool) but not ``SECRET_KEY``/``CODE_KEY``; they want to log in as
somebody, to learn which numbers have accounts, or to make the site spend
money on calls. What stops them:

- **Guessing** a 4-digit code: at most ``MAX_ATTEMPTS`` tries per code sent,
  counted by one conditional ``UPDATE`` (never read-modify-write, so parallel
  requests cannot get extra tries), and every code sent is limited by
  :mod:`~django_voicepassword.ratelimit` and a growing cooldown.
- **Replay**: a code is consumed by the conditional ``UPDATE`` that counts
  its attempt; of any number of concurrent correct entries exactly one
  succeeds.
- **Reading the database or the logs**: a code is stored only as
  HMAC-SHA256 under a key of its own (a bare hash of 10^4 codes is reversed
  in a millisecond), and never logged or signalled; the binding is an HMAC
  of the session key or of the binding cookie's token too.
- **Stealing a challenge id** (a shoulder, a referrer, a shared link): a
  challenge is bound to the client that started it; another client can
  neither find it nor confirm it.
- **Enumerating accounts**: a login for a number without an account (and
  without ``CREATE_USERS``) places no call but creates the same challenge,
  answers the same and takes as long as a real call (see :func:`pause`
  and ``_stand_in``); the limits count it the same. Such a challenge cannot
  be confirmed: its digest is of a 128-bit secret, not of a 4-digit code.
  A login whose call failed (the provider refused the number, was down,
  or the call still rang when an SMS was asked for) is answered in the
  same way, since a number that is never called cannot fail.
- **Spending**: nothing billable happens before the limits and the daily
  budget said yes; a budget reservation is given back only when the provider
  certainly placed nothing.

Call these services outside a database transaction (not under
``ATOMIC_REQUESTS``): a call is recorded before the provider is asked, and
that record must be committed to be a trace.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import logging
import math
import secrets
import sqlite3
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeAlias

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from django_voicepassword import binding, calls, fraud, ratelimit
from django_voicepassword.adapter import get_adapter
from django_voicepassword.conf import ConfigurationError, settings
from django_voicepassword.exceptions import (
    APIError,
    OutcomeUnknownError,
    TransportError,
    VoicePasswordError,
)
from django_voicepassword.gateways.base import BaseGateway, get_gateway
from django_voicepassword.models import Call, Challenge, PhoneNumber
from django_voicepassword.phone import Masked, mask, normalize
from django_voicepassword.signals import challenge_started, login_failed, phone_verified

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.http import HttpRequest
    from django_stubs_ext import StrPromise

__all__ = [
    "CODE_LENGTH",
    "MAX_PAUSE",
    "NOT_SENT",
    "SENT",
    "SKIPPED",
    "ChallengeError",
    "Delivery",
    "available_channels",
    "challenge_info",
    "clean_code",
    "confirm_challenge",
    "deliver_code",
    "get_challenge",
    "pause",
    "resend_challenge",
    "send_queued",
    "send_seconds",
    "send_state",
    "send_step",
    "start_challenge",
]

logger = logging.getLogger(__name__)

#: Digits in every code this app sends: a voice code is always 4 digits, and
#: flash calls ask the provider for 4 (``capacity``) to match.
CODE_LENGTH: Final = 4

#: The longest :func:`pause` for a number without an account, in seconds.
MAX_PAUSE: Final = 3.0

# Code input longer than this is malformed before it is read: no code is
# longer than 6 digits, and this leaves room for the spaces a person pastes.
_MAX_CODE_INPUT: Final = 64

# The salts of the keys derived from SECRET_KEY: one per use, so that an HMAC
# made for one purpose is never valid for another.
_CODE_SALT: Final = "django_voicepassword.verification.code"

# The durations of recent real sends, per channel (for the pause of unknown
# numbers): enough of them that the pause has the spread of real sends, not
# one value a timing measurement could pick out.
_DURATIONS_KEY: Final = "voicepassword:send-durations:"
_DURATIONS_KEPT: Final = 32
_DURATIONS_TIMEOUT: Final = 7 * 86400
#: The durations a process measures before it writes them (see _record_send_seconds).
_DURATIONS_BATCH: Final = 4
_pending_durations: dict[str, list[float]] = {}

_CALL_CHANNELS: Final = (Call.Channel.FLASH_CALL.value, Call.Channel.VOICE_CALL.value)


class ChallengeError(Exception):
    """A challenge cannot do what was asked, and why.

    ``code`` is ``"expired"``, ``"exhausted"`` (no attempts left for this
    code), ``"used"`` (already confirmed), ``"wrong_session"`` (started in
    another session), ``"cooldown"`` (too early to send another code;
    ``retry_after`` says when) or ``"channel_unavailable"`` (the code could not
    be sent this way: SMS not enabled or not possible yet, an unknown channel,
    or the provider refused or could not be reached; ``__cause__`` holds the
    provider's error). ``message`` is a translatable sentence for the person
    (``str(exc)`` gives it); ``retry_after`` whole seconds, or ``None``.
    ``args`` holds the code only: nothing personal, never a code.
    """

    messages: ClassVar[dict[str, StrPromise]] = {
        "expired": _("This code has expired. Ask for a new one."),
        "exhausted": _("Too many wrong codes. Ask for a new one."),
        "used": _("This code has already been used."),
        "wrong_session": _("This code was asked for in another browser or app. Start again here."),
        "cooldown": _("Please wait a little before asking for another code."),
        "channel_unavailable": _(
            "The code could not be sent this way. Try again later or choose another way."
        ),
    }

    def __init__(self, code: str, *, retry_after: int | None = None) -> None:
        self.code = code
        self.message: StrPromise = self.messages[code]
        self.retry_after = retry_after
        super().__init__(code)

    def __str__(self) -> str:
        return str(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, retry_after={self.retry_after!r})"


# --- keys and digests -----------------------------------------------------------


def _code_digest(challenge_id: uuid.UUID | str, code: str) -> str:
    """HMAC-SHA256 of ``"<challenge id>:<code>"`` under the codes' own key.

    The challenge id in the message makes every digest unique to its
    challenge: a table of the 10^4 digests of one challenge says nothing about
    another. The key is ``CODE_KEY``, or one derived from ``SECRET_KEY`` for
    this use alone; without it the digest cannot be reversed by trying codes.
    """
    message = f"{challenge_id}:{code}"
    key = settings.CODE_KEY
    if key:
        return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return salted_hmac(_CODE_SALT, message, algorithm="sha256").hexdigest()


def _same_session(challenge: Challenge, request: HttpRequest | None) -> bool:
    """Whether ``request`` may use ``challenge``: an unbound one, or one its binding started."""
    return binding.holds(challenge.session_digest, request)


def _new_code() -> str:
    """A code of :data:`CODE_LENGTH` digits from the system's CSPRNG."""
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def clean_code(value: object, length: int = CODE_LENGTH) -> str | None:
    """The code a person entered, as ASCII digits; ``None`` if it is no code.

    Whitespace anywhere (``"1234\\n"``, ``"12 34"``) and invisible format
    characters (the direction marks phones add to copied text) are dropped;
    any Unicode decimal digit becomes its ASCII digit (Arabic-Indic
    ``"١٢٣٤"`` is ``"1234"``). Anything else, a length other than ``length``
    or input that is not a string gives ``None``. Never raises.
    """
    if not isinstance(value, str) or len(value) > _MAX_CODE_INPUT:
        return None
    digits: list[str] = []
    for char in value:
        if char.isdecimal():
            digits.append(str(unicodedata.decimal(char)))
        elif not (char.isspace() or unicodedata.category(char) == "Cf"):
            return None
    code = "".join(digits)
    return code if len(code) == length else None


def _mask_token(value: object) -> str:
    """What was entered, for a signal: its first digit and a star per other character."""
    if not isinstance(value, str):
        return "*"
    text = "".join(c for c in value if not (c.isspace() or unicodedata.category(c) == "Cf"))
    if not text:
        return ""
    first = str(unicodedata.decimal(text[0])) if text[0].isdecimal() else "*"
    return first + "*" * min(len(text) - 1, 15)


# --- the pause for numbers without an account -------------------------------------


def _durations(channel: str, read: dict[str, Any] | None = None) -> list[float]:
    """The recent real send durations by ``channel`` kept in the cache (bounded).

    ``read``: the cache's values already read with the limits
    (:func:`~.ratelimit.check_and_reserve`), so that a start asks Redis once.
    """
    key = _DURATIONS_KEY + channel
    value = cache.get(key) if read is None else read.get(key)
    if not isinstance(value, list):
        return []
    return [
        float(min(max(item, 0.0), MAX_PAUSE))
        for item in value[-_DURATIONS_KEPT:]
        if isinstance(item, int | float) and item == item  # not garbage, not NaN
    ]


def send_seconds(channel: str) -> float | None:
    """How long a real send by ``channel`` took lately, at most :data:`MAX_PAUSE`.

    The median of the recent sends that were placed, kept in the cache so
    that every process of the site pauses alike; ``None`` before any was
    measured.
    """
    durations = sorted(_durations(channel))
    if not durations:
        return None
    return durations[len(durations) // 2]


def _record_send_seconds(channel: str, seconds: float, read: dict[str, Any] | None = None) -> None:
    """Keep one real send's duration among the recent ones (``read``: as :func:`_durations`).

    Written to the cache with the process's others, every :data:`_DURATIONS_BATCH`
    sends once the cache holds a quarter of :data:`_DURATIONS_KEPT` (each
    send until then, so that a new site pauses from its first sends on): a
    write per send was a round trip to the cache in every start, for one
    sample in 32.
    """
    key = _DURATIONS_KEY + channel
    pending = _pending_durations.setdefault(channel, [])
    pending.append(min(max(seconds, 0.0), MAX_PAUSE))
    known = _durations(channel, read)
    if len(pending) < _DURATIONS_BATCH and len(known) >= _DURATIONS_KEPT // 4:
        return
    kept = [*known, *pending][-_DURATIONS_KEPT:]
    pending.clear()
    # Not atomic: two processes may each lose the other's durations, which
    # shifts the spread by a few samples in 32. A lock would cost more than it saves.
    cache.set(key, kept, _DURATIONS_TIMEOUT)


def pause(seconds: float) -> None:
    """Sleep ``seconds`` (at most :data:`MAX_PAUSE`): the time a send would have taken.

    Called instead of the provider for a login by a number without an
    account, with one of the recent real send durations, so that the answer
    takes as long as a real one (allauth spends the time of a password hash on
    users that do not exist, for the same reason). Tests replace it with
    ``monkeypatch``.
    """
    time.sleep(min(max(seconds, 0.0), MAX_PAUSE))


# The gateway that has talked to the provider in this process: its first
# request pays for what later ones do not (building the client, opening the
# connection, TLS), which a pause copied from warm sends would not show.
_warm_gateway: BaseGateway | None = None
# How late this process's pauses end, on average (see _stand_in).
_oversleep = 0.0
_OVERSLEEP_WEIGHT: Final = 0.2


def _stand_in(channel: str, read: dict[str, Any] | None = None) -> None:
    """Spend what a send by ``channel`` would have spent, placing nothing.

    The gateway is built as for a real send (the same cost on a cold process,
    and the same :class:`~django_voicepassword.conf.ConfigurationError` when
    the settings are broken). Once it is warm and real sends were measured,
    :func:`pause` sleeps one of their recent durations, drawn at random. A
    cold gateway, or a site that has placed no call yet, gets a free request
    instead (``get/`` ``balance``, which places and bills nothing and names
    no number): a real round trip, the connection set-up included, is the
    nearest thing to a send that nothing measured yet.
    """
    global _warm_gateway, _oversleep
    gateway = get_gateway()
    durations = _durations(channel, read)
    if durations and gateway is _warm_gateway:
        wanted = secrets.choice(durations)
        # A sleep ends late (the thread waits for a core once it wakes), and
        # the durations it copies were late in the same way already: ask for
        # less by what sleeps here were late of late, or the copy would be
        # slower than the original by that much.
        asked = max(wanted - _oversleep, 0.0)
        began = time.monotonic()
        pause(asked)
        late = min(max(time.monotonic() - began - asked, 0.0), MAX_PAUSE)
        _oversleep += _OVERSLEEP_WEIGHT * (late - _oversleep)
        return
    # A provider that fails fails a real send the same way (and that is answered alike).
    with contextlib.suppress(VoicePasswordError):
        gateway.balance()
    _warm_gateway = gateway


# --- sending ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Recipient:
    """Whether a code really goes out, and the user the call is recorded for."""

    call: bool
    user: AbstractBaseUser | None = None


def _recipient(number: str, purpose: str, user: AbstractBaseUser | None) -> _Recipient:
    """Who would receive a code sent to ``number`` now.

    A verification is for a logged-in user: always called. A login is called
    only when it can succeed: the number has a user who may log in, or users
    are created (``CREATE_USERS``). Anything else gets no call: calling would
    spend money and ring a phone for a login that must fail, and would tell
    who has an account.
    """
    if purpose == Challenge.Purpose.VERIFY:
        return _Recipient(call=True, user=user)
    adapter = get_adapter()
    found = adapter.get_user(number)
    if found is None:
        return _Recipient(call=settings.CREATE_USERS)
    return _Recipient(call=adapter.can_log_in(found), user=found)


def _verifier(challenge: Challenge) -> AbstractBaseUser | None:
    """The user a verification's challenge is for; ``None`` for a login's.

    A login's recipient is looked up again at each send (:func:`_recipient`),
    whatever user its challenge holds: reading that one would be a query for nothing.
    """
    if challenge.purpose != Challenge.Purpose.VERIFY:
        return None
    return challenge.user


def _limit_kind(
    number: str,
    purpose: str,
    user: AbstractBaseUser | None,
    recipient: _Recipient | None = None,
) -> ratelimit.NumberKind:
    """What a send to ``number`` is to the global limit (:func:`~.ratelimit.check_send`).

    A login that will call an account's number is ``"verified"``: it keeps its
    place when new numbers fill their share. A verification adds a number the
    site has not verified for this user: ``"new"``, as is a login that creates
    its user. A login that places no call is ``"uncalled"``, which the limit
    answers as it would a verified number, so that it tells nothing.
    ``recipient``: :func:`_recipient` of the send when the caller has it
    already (one look-up of the user, not two).
    """
    if purpose == Challenge.Purpose.VERIFY:
        return "new"
    if recipient is None:
        recipient = _recipient(number, purpose, user)
    if not recipient.call:
        return "uncalled"
    return "verified" if recipient.user is not None else "new"


def _cooldown(sends: int) -> timedelta:
    """The wait after the ``sends``-th code: ``RESEND_COOLDOWNS``, the last repeating."""
    cooldowns = settings.RESEND_COOLDOWNS
    return timedelta(seconds=cooldowns[min(max(sends, 1), len(cooldowns)) - 1])


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(0, math.ceil((moment - now).total_seconds()))


class _NotSent(Exception):  # noqa: N818  (internal: carries the error to raise)
    """A send failed; ``billed`` when the provider may have placed (and charged) it."""

    def __init__(self, error: ChallengeError, *, billed: bool) -> None:
        super().__init__(error.code)
        self.error = error
        self.billed = billed


def _last_call(challenge: Challenge) -> Call | None:
    """The call whose code the challenge holds: its latest call that was not refused."""
    return (
        challenge.calls.filter(channel__in=_CALL_CHANNELS)
        .exclude(status=Call.Status.NOT_PLACED)
        .order_by("-created_at", "-pk")
        .first()
    )


def _deliver(
    challenge: Challenge, channel: str, recipient: _Recipient, request: HttpRequest | None
) -> str | None:
    """Send a code for ``challenge`` by ``channel``; return it (``None``: the same code).

    Reserves the channel's price against the daily budget first, and gives
    it back when nothing was placed. Raises :class:`_NotSent` when no code
    that the challenge can check was sent.
    """
    reservation = ratelimit.reserve(channel, request=request)
    return _send_reserved(challenge, channel, recipient, reservation)


def _send_reserved(
    challenge: Challenge,
    channel: str,
    recipient: _Recipient,
    reservation: ratelimit.Reservation | None,
    read: dict[str, Any] | None = None,
    *,
    store: bool = False,
) -> str | None:
    """:func:`_deliver` once the budget is reserved: in the request, or on a worker.

    ``reservation`` is given back whenever nothing was placed (and kept when
    the provider may have billed). ``read``: the cache's values read with the
    limits (the recent send durations), as :func:`_durations` takes them.
    ``store``: a call placed stores its code with the call's answer (one
    statement on PostgreSQL), as :func:`_store_code` would, and the challenge
    gets its ``code_digest``; a send that placed no call stores nothing.
    """
    global _warm_gateway
    if not recipient.call:
        # Nothing is placed, so nothing is spent; the reservation was still
        # made, so that a spent budget refuses every number alike.
        ratelimit.release(reservation)
        _stored(challenge)
        _stand_in(channel, read)
        return _unmatchable(channel)

    if fraud.review_code(challenge.number) is not None:
        _stored(challenge)  # its call row is the review's
    review = fraud.record_review(challenge, channel, recipient.user)
    if review is not None:
        # A review number: recorded, never placed, so nothing is spent.
        ratelimit.release(reservation)
        return review[1]

    client_code: str | None = None
    if channel == Call.Channel.VOICE_CALL or settings.FLASH_CODE_SOURCE == "client":
        client_code = _new_code()
    # Before the clock starts: only the durations of warm sends are kept, the
    # first one of a process is copied by _stand_in's own first request.
    try:
        gateway = get_gateway()
    except ConfigurationError:
        ratelimit.release(reservation)
        raise
    warm = gateway is _warm_gateway
    _warm_gateway = gateway
    started = time.monotonic()
    try:
        if channel == Call.Channel.SMS:
            last = _last_call(challenge)
            if last is None:
                raise calls.SmsFallbackError("not_placed")
            calls.send_sms(last, user=recipient.user, challenge=challenge)
            code = None
        else:
            _call, result = calls.place(
                channel,
                challenge.number,
                code=client_code,
                capacity=None if client_code else CODE_LENGTH,
                user=recipient.user,
                challenge=challenge,
                challenge_fields=(
                    (lambda result: _code_fields(challenge, channel, client_code or result.code))
                    if store
                    else None
                ),
            )
            code = client_code or result.code
    except calls.SmsFallbackError as error:
        ratelimit.release(reservation)
        logger.info("SMS for %s not sent: %s", mask(challenge.number), error.code)
        raise _NotSent(ChallengeError("channel_unavailable"), billed=False) from error
    except OutcomeUnknownError as error:
        # The provider may have placed and billed it: the reservation stays.
        if channel == Call.Channel.SMS or client_code is not None:
            # The code is ours (or the one already sent): the phone may well
            # have it, and asking again could bill a second call. Carry on as
            # if it was sent; the cooldown paces a retry.
            logger.warning(
                "%s to %s: outcome unknown; the challenge keeps the code it may have sent",
                channel,
                mask(challenge.number),
            )
            return client_code
        logger.warning(
            "%s to %s: outcome unknown, and the provider's code with it",
            channel,
            mask(challenge.number),
        )
        raise _NotSent(ChallengeError("channel_unavailable"), billed=True) from error
    except (APIError, TransportError) as error:
        # The provider refused, or nothing reached it: nothing was placed.
        ratelimit.release(reservation)
        logger.warning(
            "%s to %s not placed: %s",
            channel,
            mask(challenge.number),
            getattr(error, "error_code", "") or type(error).__name__,
        )
        raise _NotSent(ChallengeError("channel_unavailable"), billed=False) from error
    except ConfigurationError:
        # Raised before anything is sent (the gateway cannot be built).
        ratelimit.release(reservation)
        raise
    if code is None and channel != Call.Channel.SMS:
        # Placed, but the answer named no code: nothing the challenge can check.
        logger.error("%s to %s: the provider sent no code", channel, mask(challenge.number))
        raise _NotSent(ChallengeError("channel_unavailable"), billed=True)
    if warm:
        _record_send_seconds(channel, time.monotonic() - started, read)
    return code


def _unmatchable(channel: str) -> str | None:
    """The "code" of a send that reached nobody: one nobody can enter.

    A 128-bit secret, forgotten at once; its digest looks like any other, so
    the database does not tell which challenges had a call either. An SMS
    keeps the code the challenge has, as a real one does.
    """
    return None if channel == Call.Channel.SMS else secrets.token_hex(16)


def _masked(challenge: Challenge, channel: str, not_sent: _NotSent, *, first: bool) -> str | None:
    """A failed send of a *login* answered as a sent one; any other is raised.

    A number without an account is never called, so it cannot see the
    provider refuse it, fail, or say that a call is still ringing; a number
    with one must not either, or the difference tells who has an account.
    So a login whose code did not go out gets the same challenge, cooldown
    and answers as one whose code did: a ``first`` send a code nobody can
    enter, a resend the code sent before (``None``: as an SMS does, which
    looks no different from outside); the person waits for the countdown
    and asks again. The failure is logged and
    kept on the :class:`~django_voicepassword.models.Call` row (the admin
    shows it). A verification is for a logged-in user and calls every
    number, so its failure says nothing about accounts: ``not_sent`` is
    raised again.
    """
    if challenge.purpose != Challenge.Purpose.LOGIN:
        raise not_sent
    cause = not_sent.__cause__
    logger.warning(
        "%s to %s failed (%s); answered as sent, so that it looks like a number "
        "without an account",
        channel,
        mask(challenge.number),
        getattr(cause, "error_code", "") or getattr(cause, "code", "") or type(cause).__name__,
    )
    return _unmatchable(channel) if first else None


def _announce_start(challenge: Challenge, request: HttpRequest | None, channel: str) -> None:
    transaction.on_commit(
        lambda: challenge_started.send(
            sender=Challenge, challenge=challenge, request=request, channel=channel
        )
    )


def _code_fields(
    challenge: Challenge, channel: str, code: str | None, *, sms: bool = False
) -> dict[str, Any] | None:
    """The fields :func:`_store_code` writes for ``code``: ``None`` for no code.

    ``sms``: ``code=None`` is an SMS that re-sent the code the challenge has,
    whose fields are the expiry and the attempts alone.
    """
    if code is None and not sms:
        return None
    fields: dict[str, Any] = {
        "channel": channel,
        "attempts": 0,
        "expires_at": timezone.now() + timedelta(seconds=settings.CHALLENGE_TTL),
    }
    if code is not None:
        fields["code_digest"] = _code_digest(challenge.pk, code)
    return fields


def _store_code(
    challenge: Challenge, channel: str, code: str | None, *, sends: int | None = None
) -> bool:
    """Record a code just sent: its digest (unless the same code was re-sent by SMS),
    a fresh expiry and a fresh set of attempts.

    With ``sends`` (a send made on a worker) only while the challenge is still
    at that send: a newer send's code is never overwritten by an older one's.
    Returns whether the code was recorded.
    """
    fields = _code_fields(challenge, channel, code, sms=True)
    assert fields is not None
    rows = Challenge.objects.filter(pk=challenge.pk)
    if sends is not None:
        rows = rows.filter(sends=sends)
    if not rows.update(**fields):
        return False
    for name, value in fields.items():
        setattr(challenge, name, value)
    return True


def _new_challenge(
    number: str,
    purpose: str,
    channel: str,
    user: AbstractBaseUser | None,
    session_digest: str,
    now: datetime,
    *,
    step: int = 0,
    wait: int | None = None,
    save: bool = True,
) -> Challenge:
    """The row of a new challenge, at its first send and without a code yet.

    ``step`` is its place in the workflow's plan, ``wait`` the seconds to its next step.
    Not ``save``: the row is not stored yet (:func:`_stored`, or ``calls.place``
    with its call).
    """
    challenge = Challenge(
        step=step,
        next_step_at=None if wait is None else now + timedelta(seconds=wait),
        number=number,
        purpose=purpose,
        channel=channel,
        code_length=CODE_LENGTH,
        max_attempts=settings.MAX_ATTEMPTS,
        sends=1,
        expires_at=now + timedelta(seconds=settings.CHALLENGE_TTL),
        resend_at=now + _cooldown(1),
        session_digest=session_digest,
        user_id=user.pk if user is not None else None,
    )
    if save:
        _stored(challenge)
    return challenge


def _stored(challenge: Challenge) -> None:
    """Store ``challenge`` if it is not stored yet (:func:`_new_challenge` without ``save``)."""
    if challenge._state.adding:
        challenge.save(force_insert=True)


def _reusable(
    number: str, purpose: str, user: AbstractBaseUser | None, session_digest: str, now: datetime
) -> Challenge | None:
    """This session's unfinished challenge of ``number`` for ``purpose``, if any."""
    unfinished = Challenge.objects.filter(
        number=number,
        purpose=purpose,
        session_digest=session_digest,
        verified_at__isnull=True,
        expires_at__gt=now,
    )
    if purpose == Challenge.Purpose.VERIFY:
        assert user is not None  # start_challenge() refuses a verification without one
        unfinished = unfinished.filter(user_id=user.pk)
    # A login's challenge holds the user its code was sent to (or none): any
    # of this session's for the number is the one to return.
    return unfinished.first()


def start_challenge(
    number: str,
    channel: str = "flash_call",
    request: HttpRequest | None = None,
    purpose: str = "login",
    *,
    user: AbstractBaseUser | None = None,
) -> Challenge:
    """Send a code to ``number`` and return the challenge that checks it.

    ``number`` is read by :func:`~django_voicepassword.phone.normalize` (the
    site's region and number-type policy applies;
    :class:`~django_voicepassword.phone.InvalidPhoneNumber` propagates, and
    then nothing was counted or sent). ``channel`` is ``"flash_call"`` or
    ``"voice_call"`` (an SMS needs an earlier call: :func:`resend_challenge`).
    ``purpose`` is ``"login"`` or ``"verify"``; ``verify`` needs ``user``, the
    logged-in user who adds the number (``user`` is ignored for a login).

    An unfinished challenge (not confirmed, not expired) for the same number,
    purpose (and user) started in the same session is returned as it is:
    pressing "send" twice places one call. Otherwise the limits count the
    send (:func:`~django_voicepassword.ratelimit.check_send`; it raises
    :class:`~django_voicepassword.ratelimit.LimitExceeded`), the budget is
    reserved, and the code goes out: the provider's for a flash call
    (``FLASH_CODE_SOURCE="service"``), one from :mod:`secrets` otherwise.

    A login by a number without an account (without ``CREATE_USERS``) gets a
    challenge just the same, but no call (see the module's threat model).

    When no code went out (the provider refused or could not be reached, or
    the outcome and the provider's code are unknown), a login challenge is
    returned all the same, with a code nobody can enter: a number without an
    account is never called, so it cannot fail, and a number with one must
    answer alike (``docs/decisions.md``; the failure is logged and kept on
    the :class:`~django_voicepassword.models.Call` row). A verification
    raises :class:`ChallengeError` (``"channel_unavailable"``, the provider's
    error as ``__cause__``) instead, and the challenge it created is expired,
    so that it is never returned again.
    ``ValueError`` for a ``purpose`` that is not one, or ``verify`` without
    ``user``.

    With ``ASYNC_SEND`` the limits and the budget are checked here just the
    same, but the code is sent by the ``send_code`` task on a worker
    (:func:`send_queued`): the challenge is returned at once, before the
    provider is asked, for every number alike. ``"channel_unavailable"`` then
    means that the send could not be enqueued; a send that fails on the worker
    expires the challenge (:func:`send_state` says ``"failed"``).
    """
    if purpose not in Challenge.Purpose.values:
        raise ValueError(f"purpose must be 'login' or 'verify', not {purpose!r}")
    if purpose == Challenge.Purpose.VERIFY and user is None:
        raise ValueError("purpose='verify' needs the user who verifies the number")
    if purpose == Challenge.Purpose.LOGIN:
        user = None
    normalized = normalize(number)
    if channel not in _CALL_CHANNELS:
        raise ChallengeError("channel_unavailable")
    # The workflow may start elsewhere (an operator that blocks flash calls).
    channel, step, wait = _workflow().first_step(normalized, channel)
    # A binding made just now (a new token or session key) has no challenge yet.
    unbound = request is None or binding.identity(request) is None
    session_digest = binding.digest(request, create=True)

    now = timezone.now()
    if not (unbound and session_digest):
        reusable = _reusable(normalized, purpose, user, session_digest, now)
        if reusable is not None:
            logger.debug("Challenge for %s reused", Masked(normalized))
            return reusable

    # Looked up once, for the limit and the send (the limit has it on a
    # worker's send as well: the same look-up for every number alike).
    recipient = _recipient(normalized, purpose, user)
    # Before anything is written or billed, for every number alike.
    kind = _limit_kind(normalized, purpose, user, recipient)
    if settings.ASYNC_SEND:
        ratelimit.check_send(normalized, request, kind=kind)
        return _start_queued(
            normalized, purpose, channel, user, session_digest, request, now, step=step, wait=wait
        )
    # The limits, the budget and the send durations in one round trip to Redis.
    reservation, read = ratelimit.check_and_reserve(
        normalized, request, kind=kind, channel=channel, peek=[_DURATIONS_KEY + channel]
    )
    # The user the code goes to, kept on the challenge from the start (a
    # login's too, so that its confirm has no user to link: see _link_user).
    owner = recipient.user if recipient.call else None
    # Stored with its call's row when a call is placed (one statement on
    # PostgreSQL: calls.place), else before anything else is done with it.
    challenge = _new_challenge(
        normalized, purpose, channel, owner, session_digest, now, step=step, wait=wait, save=False
    )
    sent = recipient.call
    try:
        try:
            code = _send_reserved(challenge, channel, recipient, reservation, read, store=True)
        except _NotSent as not_sent:
            _stored(challenge)
            code, sent = _masked(challenge, channel, not_sent, first=True), False
    except _NotSent as not_sent:
        Challenge.objects.filter(pk=challenge.pk).update(expires_at=timezone.now())
        raise not_sent.error from not_sent.__cause__
    except BaseException:
        if not challenge._state.adding:  # else not stored: nothing to expire
            Challenge.objects.filter(pk=challenge.pk).update(expires_at=timezone.now())
        raise
    _stored(challenge)
    if not challenge.code_digest:
        # Not stored with the call's answer: no call was placed (a number
        # without an account, a review number, a send that failed).
        _store_code(challenge, channel, code)
    if sent:
        _announce_start(challenge, request, channel)
    _workflow().schedule(challenge)
    logger.debug("Challenge for %s started (%s)", Masked(normalized), channel)
    return challenge


def resend_challenge(
    challenge: Challenge, request: HttpRequest | None = None, *, channel: str | None = None
) -> Challenge:
    """Send a new code for ``challenge``: by its channel, or switch to ``channel``.

    Refused with :class:`ChallengeError`: ``"wrong_session"`` when ``request``
    is of another session than the one that started it; ``"used"``,
    ``"expired"``; ``"cooldown"`` before the time :func:`challenge_info`
    gives as ``resend_in`` (``retry_after`` says how long); and
    ``"channel_unavailable"`` for a channel that cannot be used now or (for
    a verification) a send that failed; a login's failed send is answered as
    a sent one, as in :func:`start_challenge`, and so is an SMS asked for
    while the call still rings. Limits and the budget apply as to a new
    challenge (:class:`~django_voicepassword.ratelimit.LimitExceeded`).

    A flash or voice call sends a new code: the old one stops working, the
    attempts start again and the next cooldown is longer. An SMS
    (``SMS_FALLBACK`` on, after a call) sends the last call's code again,
    with a fresh set of attempts. A failed send of a verification that cost
    nothing changes nothing, not even the cooldown. ``request=None`` is for trusted code
    that has checked the session itself (:func:`get_challenge`).

    With ``ASYNC_SEND`` the send is claimed (the cooldown starts) and the
    limits and the budget are checked here, and the ``send_code`` task sends
    the code on a worker: ``challenge`` is returned at once with its new
    ``sends`` and ``resend_at``; its channel and code change once the worker
    has sent the new code. A send that fails on the worker without costing
    anything gives the cooldown back, and the old code goes on working.

    Returns ``challenge``, updated.
    """
    if request is not None and not _same_session(challenge, request):
        raise ChallengeError("wrong_session")
    fresh = Challenge.objects.filter(pk=challenge.pk).first()
    now = timezone.now()
    if fresh is None:
        raise ChallengeError("expired")
    if fresh.verified_at is not None:
        raise ChallengeError("used")
    if fresh.expires_at <= now:
        raise ChallengeError("expired")
    channel = channel or fresh.channel
    if channel not in available_channels(fresh):
        raise ChallengeError("channel_unavailable")
    if fresh.resend_at > now:
        raise ChallengeError("cooldown", retry_after=_seconds_until(fresh.resend_at, now))

    user = _verifier(fresh)
    recipient = _recipient(fresh.number, fresh.purpose, user)
    ratelimit.check_send(
        fresh.number, request, kind=_limit_kind(fresh.number, fresh.purpose, user, recipient)
    )
    if settings.ASYNC_SEND:
        return _resend_queued(challenge, fresh, channel, request, now)
    _sends, give_back = _claim_send(fresh, now)
    sent = recipient.call
    try:
        try:
            code = _deliver(fresh, channel, recipient, request)
        except _NotSent as not_sent:
            # A login keeps the cooldown it claimed, as a send that went out does.
            code, sent = _masked(fresh, channel, not_sent, first=False), False
    except _NotSent as not_sent:
        if not not_sent.billed:
            give_back()
        raise not_sent.error from not_sent.__cause__
    except (ratelimit.LimitExceeded, ConfigurationError):
        # Refused by the budget, or broken settings: before anything was sent.
        give_back()
        raise
    _store_code(fresh, channel, code)
    fresh.refresh_from_db()
    for field in ("channel", "code_digest", "attempts", "sends", "expires_at", "resend_at"):
        setattr(challenge, field, getattr(fresh, field))
    if sent:
        _announce_start(challenge, request, channel)
    logger.debug("Challenge for %s re-sent (%s)", Masked(fresh.number), channel)
    return challenge


def _claim_send(fresh: Challenge, now: datetime) -> tuple[int, Callable[[], None]]:
    """Claim the next send of ``fresh``; return its number and how to give it back.

    One conditional UPDATE: of concurrent resends, one wins and the others see
    the cooldown it started (:class:`ChallengeError`).
    """
    sends = fresh.sends + 1
    claimed = Challenge.objects.filter(
        pk=fresh.pk,
        sends=fresh.sends,
        resend_at__lte=now,
        verified_at__isnull=True,
        expires_at__gt=now,
    ).update(sends=sends, resend_at=now + _cooldown(sends), next_step_at=None)
    # (next_step_at=None: a person who asks for a code takes over from the
    # workflow, and a step racing this resend finds nothing to claim.)
    if not claimed:
        raise _closed_or_cooling(fresh.pk, timezone.now())

    def give_back() -> None:
        # Nothing was sent: the cooldown is given back, and the old code
        # (never replaced) goes on working. The workflow stays stopped.
        Challenge.objects.filter(pk=fresh.pk, sends=sends).update(
            sends=fresh.sends, resend_at=fresh.resend_at
        )

    return sends, give_back


def _closed_or_cooling(pk: uuid.UUID, now: datetime) -> ChallengeError:
    row = Challenge.objects.filter(pk=pk).first()
    if row is None or row.expires_at <= now:
        return ChallengeError("expired")
    if row.verified_at is not None:
        return ChallengeError("used")
    return ChallengeError("cooldown", retry_after=max(1, _seconds_until(row.resend_at, now)))


# --- workflow steps (WORKFLOW; the plan and the claim are in workflow.py) ----------


def _workflow() -> ModuleType:
    """:mod:`django_voicepassword.workflow`, imported when used: it imports this module."""
    from django_voicepassword import workflow

    return workflow


def send_step(
    challenge: Challenge, channel: str, *, sends: int, give_back: Callable[[], None]
) -> str:
    """Send the code of a workflow step that :func:`~.workflow.take_step` has claimed.

    ``sends`` is the send the claim made; ``give_back`` undoes the claim
    (and stops the workflow). As :func:`resend_challenge` without a request:
    the ``number``, ``prefix`` and ``global`` limits count the send and the
    budget is reserved; a login's failed send is answered as sent
    (:func:`_masked`), a number without an account is stood in for. Returns
    :data:`SENT`, or :data:`NOT_SENT` after a limit, the budget or a
    verification's failed send (logged; the claim given back unless the
    provider may have billed, and the workflow stopped either way).
    """
    number = mask(challenge.number)
    try:
        user = _verifier(challenge)
        recipient = _recipient(challenge.number, challenge.purpose, user)
        ratelimit.check_send(
            challenge.number,
            None,
            kind=_limit_kind(challenge.number, challenge.purpose, user, recipient),
        )
        sent = recipient.call
        try:
            code = _deliver(challenge, channel, recipient, None)
        except _NotSent as not_sent:
            code, sent = _masked(challenge, channel, not_sent, first=False), False
    except ratelimit.LimitExceeded as refused:
        give_back()
        logger.warning("Workflow step (%s) to %s refused: %s", channel, number, refused.scope)
        return NOT_SENT
    except _NotSent as not_sent:
        if not_sent.billed:
            # It may have been placed: the cooldown stays, the workflow stops.
            Challenge.objects.filter(pk=challenge.pk, sends=sends).update(next_step_at=None)
        else:
            give_back()
        logger.warning("Workflow step (%s) to %s not sent; the workflow stops", channel, number)
        return NOT_SENT
    except BaseException:
        give_back()
        raise
    _store_code(challenge, channel, code, sends=sends)
    if sent:
        _announce_start(challenge, None, channel)
    logger.debug("Workflow step (%s) to %s sent", channel, number)
    return SENT


# --- sending on a worker (ASYNC_SEND) ------------------------------------------------
#
# The request checks the limits, reserves the budget, records the challenge
# (or claims the resend) and enqueues the send_code task; a worker places the
# call (send_queued). The task's arguments go into the queue's storage (the
# database, Redis), which a backup or a support tool may read: they are the
# challenge id, the channel, the send's number and the budget reservation (a
# day and an amount). Never the number, a code or a key: the worker reads the
# number from the challenge, makes the code or gets the provider's, and
# stores only its HMAC, as the request would have.

#: What :func:`send_queued` (the ``send_code`` task) did: the code went out
#: (or, for a number without an account, looked as if it did); no code went
#: out and the challenge says why; or the send was no longer wanted.
SENT: Final = "sent"
NOT_SENT: Final = "not_sent"
SKIPPED: Final = "skipped"


def _start_queued(
    number: str,
    purpose: str,
    channel: str,
    user: AbstractBaseUser | None,
    session_digest: str,
    request: HttpRequest | None,
    now: datetime,
    *,
    step: int = 0,
    wait: int | None = None,
) -> Challenge:
    """:func:`start_challenge` with ``ASYNC_SEND``: reserve, record, enqueue.

    Whether the number has an account is not looked at here: the worker
    decides, so that this answer is the same for every number.
    """
    reservation = ratelimit.reserve(channel, request=request)
    try:
        challenge = _new_challenge(
            number, purpose, channel, user, session_digest, now, step=step, wait=wait
        )
    except BaseException:
        ratelimit.release(reservation)
        raise

    def expire() -> None:
        Challenge.objects.filter(pk=challenge.pk).update(expires_at=timezone.now())

    _enqueue_send(challenge, channel, 1, reservation, undo=expire)
    _workflow().schedule(challenge)
    logger.debug("Challenge for %s started (%s, sent by a worker)", Masked(number), channel)
    return challenge


def _resend_queued(
    challenge: Challenge,
    fresh: Challenge,
    channel: str,
    request: HttpRequest | None,
    now: datetime,
) -> Challenge:
    """:func:`resend_challenge` with ``ASYNC_SEND``: claim, reserve, enqueue."""
    sends, give_back = _claim_send(fresh, now)
    try:
        reservation = ratelimit.reserve(channel, request=request)
    except BaseException:
        give_back()
        raise
    _enqueue_send(fresh, channel, sends, reservation, undo=give_back)
    # As the database has it now: the claimed send (and, with the immediate
    # backend, what the send already did).
    fresh.refresh_from_db()
    for field in ("channel", "code_digest", "attempts", "sends", "expires_at", "resend_at"):
        setattr(challenge, field, getattr(fresh, field))
    logger.debug("Challenge for %s re-sent (%s, sent by a worker)", Masked(fresh.number), channel)
    return challenge


def _enqueue_send(
    challenge: Challenge,
    channel: str,
    sends: int,
    reservation: ratelimit.Reservation | None,
    *,
    undo: Callable[[], None],
) -> None:
    """Enqueue the ``send_code`` task for the ``sends``-th send of ``challenge``.

    Outside a transaction (as these services are meant to be called) at once;
    inside one, once it commits, so that a worker never looks for a challenge
    it cannot see yet, and a rolled-back challenge is never called. When the
    task cannot be enqueued, the reservation is given back and ``undo``
    restores the challenge (expires a new one, gives a resend's cooldown back);
    then :class:`ChallengeError` (``"channel_unavailable"``) is raised, or,
    after a commit, logged.
    """
    try:
        from django_voicepassword import tasks
    except ImportError as error:
        ratelimit.release(reservation)
        undo()
        raise ConfigurationError(
            "VOICEPASSWORD['ASYNC_SEND'] needs Django's Tasks framework: Django 6 has it; "
            "on Django 5.2 install django-voicepassword[tasks] (the django-tasks backport)."
        ) from error
    held = None if reservation is None else asdict(reservation)

    def enqueue() -> None:
        try:
            task = tasks.send_code.using(
                backend=settings.ASYNC_SEND_BACKEND, queue_name=settings.ASYNC_SEND_QUEUE
            )
            task.enqueue(str(challenge.pk), channel, sends=sends, reservation=held)
        except Exception as error:
            ratelimit.release(reservation)
            undo()
            if isinstance(error, ImproperlyConfigured):
                raise  # a TASKS setting the system checks report too
            logger.error(
                "Code for %s not enqueued (%s): %s",
                mask(challenge.number),
                channel,
                type(error).__name__,
            )
            raise ChallengeError("channel_unavailable") from error

    if transaction.get_connection().in_atomic_block:
        # robust: an error after the commit is logged; there is nobody to tell.
        transaction.on_commit(enqueue, robust=True)
    else:
        enqueue()


def send_queued(
    challenge_id: str,
    channel: str,
    *,
    sends: int,
    reservation: ratelimit.Reservation | None = None,
) -> str:
    """Send the code of the ``sends``-th send of a challenge: what the ``send_code`` task runs.

    The worker's half of ``ASYNC_SEND`` (the request reserved ``reservation``
    against the budget and enqueued the task). Returns :data:`SKIPPED` (and
    gives the reservation back) when the send is no longer wanted: the
    challenge is gone, confirmed or expired, or a newer send replaced this one.
    Otherwise sends as :func:`start_challenge` would have in the request: a
    call only to a number that may log in (a number without an account gets
    the same pause and a digest nobody can match), the code's HMAC stored,
    ``challenge_started`` sent (with ``request=None``): :data:`SENT`.

    A send that fails returns :data:`NOT_SENT`, and is logged (the number
    masked): the reservation is given back unless the provider may have
    billed. A login challenge is then left as if the code had gone out, with
    a code nobody can enter, so that it looks like one of a number without an
    account (see :func:`start_challenge`). For a verification, a first send
    expires its challenge (:func:`send_state` then says ``"failed"``), and a
    resend that cost nothing gives its cooldown back (the old code goes on
    working). It is never retried: a retry could place and bill a second
    call. Anything unexpected is raised, for the task backend to record,
    after the same clean-up.
    """
    try:
        challenge = Challenge.objects.filter(pk=uuid.UUID(challenge_id)).first()
    except (TypeError, ValueError, AttributeError):
        challenge = None
    now = timezone.now()
    if (
        challenge is None
        or challenge.verified_at is not None
        or challenge.expires_at <= now
        or challenge.sends != sends
    ):
        ratelimit.release(reservation)
        logger.info("Queued %s not sent: the challenge is over or has a newer send", channel)
        return SKIPPED
    recipient = _recipient(challenge.number, challenge.purpose, _verifier(challenge))
    pk = challenge.pk

    def undo(*, billed: bool) -> None:
        rows = Challenge.objects.filter(pk=pk, sends=sends)
        if sends == 1:
            rows.update(expires_at=timezone.now())
        elif not billed:
            # The cooldown the request claimed is given back (the old
            # resend_at had passed, so "now" allows the same).
            rows.update(sends=sends - 1, resend_at=timezone.now())

    try:
        code = _send_reserved(challenge, channel, recipient, reservation)
    except _NotSent as not_sent:
        if challenge.purpose == Challenge.Purpose.LOGIN:
            # As in the request: the page goes on looking as if it was sent.
            code = _masked(challenge, channel, not_sent, first=sends == 1)
            _store_code(challenge, channel, code, sends=sends)
        else:
            undo(billed=not_sent.billed)
            logger.warning("Queued %s to %s: no code sent", channel, mask(challenge.number))
        return NOT_SENT
    except ConfigurationError:
        undo(billed=False)
        raise
    except BaseException:
        # As in the request: a first send is over; a resend that got this far
        # may have been billed, so its cooldown stays.
        undo(billed=True)
        raise
    if not _store_code(challenge, channel, code, sends=sends):
        logger.info("Queued %s to %s: a newer send replaced it", channel, mask(challenge.number))
        return SKIPPED
    if recipient.call:
        _announce_start(challenge, None, channel)
    logger.debug("Queued %s to %s sent", channel, Masked(challenge.number))
    return SENT


def send_state(challenge: Challenge) -> str:
    """Whether ``challenge`` has a code to enter: ``"sent"``, ``"pending"`` or ``"failed"``.

    ``"pending"``: with ``ASYNC_SEND``, the worker has not sent the first code
    yet (a code entered now is wrong); ``"failed"``: no code was ever sent and
    none will be (the worker could not place the call, or the challenge
    expired first), so a page can say "we could not call you" rather than
    "expired". A challenge of the synchronous path that a caller gets is
    always ``"sent"``, and so is one of a number without an account.
    """
    if challenge.code_digest:
        return "sent"
    if challenge.verified_at is None and challenge.expires_at > timezone.now():
        return "pending"
    return "failed"


# --- looking and confirming ---------------------------------------------------------


def get_challenge(request: HttpRequest | None, challenge_id: str | uuid.UUID) -> Challenge | None:
    """The challenge ``challenge_id`` if ``request``'s session started it, else ``None``.

    A challenge started without a session (``request=None`` or no
    ``SessionMiddleware``) is bound to nothing and found by its id alone.
    Any id at all may be passed (it comes from URLs and request bodies):
    garbage gives ``None``, never an exception. Expired and used challenges
    are returned too; :func:`confirm_challenge` refuses them.
    """
    pk = _challenge_pk(challenge_id)
    if pk is None:
        return None
    challenge = Challenge.objects.filter(pk=pk).first()
    if challenge is None or not _same_session(challenge, request):
        return None
    return challenge


def _refused(
    challenge: Challenge, request: HttpRequest | None, reason: str, entered: object
) -> None:
    logger.debug("Code for %s refused: %s", Masked(challenge.number), reason)
    token = _mask_token(entered)
    transaction.on_commit(
        lambda: login_failed.send(
            sender=Challenge, challenge=challenge, request=request, reason=reason, token=token
        )
    )


def _why_closed(pk: uuid.UUID, now: datetime) -> str:
    """Why the attempts UPDATE matched no row: ``used``, ``expired`` or ``exhausted``."""
    row = Challenge.objects.filter(pk=pk).values("verified_at", "expires_at").first()
    if row is None:
        return "expired"
    if row["verified_at"] is not None:
        return "used"
    if row["expires_at"] <= now:
        return "expired"
    return "exhausted"


def _returns_from_update(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``connection`` answers ``UPDATE ... RETURNING <column>`` with rows.

    PostgreSQL, and SQLite from 3.35. Not Django's feature flag
    (``can_return_rows_from_update``): Django 5.2 has none, and Oracle's flag
    is for its ``RETURNING ... INTO``, which this plain statement is not.
    """
    if connection.vendor == "postgresql":
        return True
    return connection.vendor == "sqlite" and sqlite3.sqlite_version_info >= (3, 35)


class _Unread(enum.Enum):
    """What :func:`_confirm` gives for the number's user when it did not read it."""

    UNREAD = enum.auto()


_UNREAD: Final = _Unread.UNREAD
#: The number's user as :func:`_confirm` read it: a user, ``None`` (none), or :data:`_UNREAD`.
_Owner: TypeAlias = "AbstractBaseUser | Literal[_Unread.UNREAD] | None"


@dataclass(frozen=True)
class _Attempt:
    """What the statement that counts an attempt did (:func:`_count_attempt`).

    ``counted``: the challenge was open and the attempt is counted.
    ``stored``: the code's digest as stored (``None``: not read, the caller
    reads it). ``consumed``: the code matched and the challenge is confirmed
    by this statement; ``None`` when the statement did not compare (the
    caller compares and consumes). ``owner``: the number's user, read in the
    same statement (:func:`_count_attempt_finding_owner`), or :data:`_UNREAD`.
    """

    counted: bool
    stored: str | None = None
    consumed: bool | None = None
    owner: _Owner = _UNREAD
    at: datetime | None = None  # the time the statement confirmed at (_claim_login)


def _attempt_sql(
    connection: BaseDatabaseWrapper,
    pk: uuid.UUID,
    digest: str | None,
    now: datetime,
    extra: tuple[str, list[Any]] = ("", []),
) -> tuple[str, str, list[Any]]:
    """The ``UPDATE`` that counts an attempt, its ``RETURNING`` list, and its parameters.

    With ``digest`` (the entered code's) it consumes the code in the same
    statement when the stored digest is that one: the attempt and the use
    are one conditional ``UPDATE``, so of concurrent right entries exactly one
    matches the row (the others find it confirmed). Without, it only counts.
    ``extra``: more conditions (`` AND ...``) and their parameters.
    Names and quoting from the model and the backend, values as parameters.
    """
    meta = Challenge._meta
    quote = connection.ops.quote_name

    def field(name: str) -> Any:
        return meta.get_field(name)

    def column(name: str) -> str:
        return str(quote(field(name).column))

    attempts, verified = column("attempts"), column("verified_at")
    consume = ""
    params: list[Any] = []
    if digest is not None:
        # The digests are HMACs under a key the client does not have: the
        # time the database's comparison takes tells nothing about the code.
        consume = f", {verified} = CASE WHEN {column('code_digest')} = %s THEN %s ELSE NULL END"
        params += [digest, field("verified_at").get_db_prep_value(now, connection)]
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {attempts} = {attempts} + 1{consume}"  # noqa: S608
        f" WHERE {column('id')} = %s AND {attempts} < {column('max_attempts')}"
        f" AND {verified} IS NULL AND {column('expires_at')} > %s{extra[0]}"
    )
    params += [
        field("id").get_db_prep_value(pk, connection),
        field("expires_at").get_db_prep_value(now, connection),
        *extra[1],
    ]
    # The confirmation time itself, not "IS NOT NULL": SQLite 3.40 answers
    # that expression wrongly in a RETURNING list.
    returning = (
        f"{column('code_digest')} AS digest, {verified} AS consumed, {column('number')} AS number"
    )
    return sql, returning, params


def _count_attempt(pk: uuid.UUID, now: datetime, digest: str | None = None) -> _Attempt:
    """Count one attempt at challenge ``pk`` if it is open, and with ``digest`` consume its code.

    One statement where the database can return rows from an ``UPDATE``
    (:func:`_returns_from_update`): the count, the code's use when ``digest``
    is the stored one (:func:`_attempt_sql`) and the read of the stored
    digest are the same ``UPDATE ... RETURNING``. Elsewhere the count alone,
    without the digest (the caller reads it, compares and consumes). Django's
    ``QuerySet.update()`` returns a row count only, hence the SQL, built from
    the model's own table and columns.
    """
    rows = Challenge.objects.filter(
        pk=pk, attempts__lt=F("max_attempts"), verified_at__isnull=True, expires_at__gt=now
    )
    connection = transaction.get_connection(rows.db)
    if not _returns_from_update(connection):
        return _Attempt(bool(rows.update(attempts=F("attempts") + 1)))
    sql, returning, params = _attempt_sql(connection, pk, digest, now)
    with transaction.mark_for_rollback_on_error(using=rows.db), connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {returning}", params)
        row = cursor.fetchone()
    if row is None:
        return _Attempt(False)
    consumed = row[1] is not None if digest is not None else None
    return _Attempt(True, row[0] or "", consumed)


def _reads_owner(connection: BaseDatabaseWrapper, model: type[Any]) -> bool:
    """Whether the attempt's statement can read the number's user (``model``) too.

    On PostgreSQL (an ``UPDATE`` in a ``WITH``), with the user model on the
    challenges' database.
    """
    from django.db import router

    return connection.vendor == "postgresql" and router.db_for_read(model) == connection.alias


def _owner_joins(connection: BaseDatabaseWrapper, model: type[Any], number: str) -> str:
    """The joins from the number ``number`` (SQL) to its user's row, aliased ``u``.

    As ``PhoneAdapter.get_user`` finds the user: through the number's
    :class:`~django_voicepassword.models.PhoneNumber` (``p``). ``LEFT``: a
    number without a user still gives its row, with the user's columns null.
    """
    quote = connection.ops.quote_name
    numbers, users = PhoneNumber._meta, model._meta

    def column(meta: Any, name: str) -> str:
        return str(quote(meta.get_field(name).column))

    return (
        f" LEFT JOIN {quote(numbers.db_table)} p ON p.{column(numbers, 'number')} = {number}"
        f" LEFT JOIN {quote(users.db_table)} u"
        f" ON u.{quote(users.pk.column)} = p.{column(numbers, 'user')}"
    )


def _count_attempt_finding_owner(
    pk: uuid.UUID, now: datetime, number_owner: bool, digest: str | None = None
) -> _Attempt:
    """:func:`_count_attempt`, and with ``number_owner`` the user whose number it is.

    The owner is :data:`_UNREAD` unless the user was read: on PostgreSQL,
    in the same statement (the ``UPDATE ... RETURNING`` in a ``WITH``, joined to
    the number's :class:`~django_voicepassword.models.PhoneNumber` and its
    user, as ``PhoneAdapter.get_user`` finds them), where the user model is
    on the challenges' database. Then ``None`` when the number has no user.
    """
    if not number_owner:
        return _count_attempt(pk, now, digest)
    from django.contrib.auth import get_user_model
    from django.db import router

    alias = router.db_for_write(Challenge)
    connection = transaction.get_connection(alias)
    model = get_user_model()
    if not _reads_owner(connection, model):
        return _count_attempt(pk, now, digest)
    quote = connection.ops.quote_name
    update, returning, params = _attempt_sql(connection, pk, digest, now)
    # Names and quoting from the models and the backend, values as parameters.
    sql = (
        f"WITH counted AS ({update} RETURNING {returning})"  # noqa: S608
        f" SELECT u.*, counted.digest AS {quote(_DIGEST_ALIAS)},"
        f" counted.consumed AS {quote(_CONSUMED_ALIAS)} FROM counted"
        f"{_owner_joins(connection, model, 'counted.number')}"
    )
    with transaction.mark_for_rollback_on_error(using=alias):
        rows = list(model._default_manager.raw(sql, params).using(alias))
    if not rows:
        return _Attempt(False)
    [row] = rows  # a number has one row at most (unique)
    consumed = getattr(row, _CONSUMED_ALIAS) is not None if digest is not None else None
    owner = row if row.pk is not None else None
    return _Attempt(True, getattr(row, _DIGEST_ALIAS) or "", consumed, owner)


def _challenge_pk(challenge_id: object) -> uuid.UUID | None:
    """``challenge_id`` as a challenge's primary key; ``None`` for anything that is not one."""
    if isinstance(challenge_id, uuid.UUID):
        return challenge_id
    if isinstance(challenge_id, str) and len(challenge_id) <= 64:
        try:
            return uuid.UUID(challenge_id)
        except ValueError:
            return None
    return None


#: Where :func:`_claim_login` leaves its attempt on the challenge it returns,
#: for :func:`_confirm` (through ``PhoneCodeBackend.authenticate``) to take.
_CLAIMED: Final = "_voicepassword_attempt"
# The prefix of the challenge's columns beside the user's in _claim_login's row.
_COLUMN_PREFIX: Final = "_voicepassword_c_"
#: Set on the challenge _claim_login returns when its statement renewed the
#: number's verification for the user it read (the default mark_verified).
_RENEWED: Final = "_voicepassword_renewed"


_converters: dict[tuple[str, str], list[tuple[Any, list[Any]]]] = {}


def _challenge_converters(connection: BaseDatabaseWrapper) -> list[tuple[Any, list[Any]]]:
    """Each of the challenge's columns with the converters the ORM reads it through.

    The backend's and the field's (SQLite gives datetimes and UUIDs as text),
    worked out once per database.
    """
    key = (connection.alias, connection.vendor)
    found = _converters.get(key)
    if found is None:
        found = []
        for field in Challenge._meta.concrete_fields:
            column = field.get_col(Challenge._meta.db_table)
            convert = connection.ops.get_db_converters(column) + field.get_db_converters(
                connection
            )
            found.append((column, convert))
        _converters[key] = found
    return found


def _claim_login(
    request: HttpRequest | None,
    challenge_id: object,
    code: str,
    *,
    number_owner: bool,
    renew: bool = False,
) -> Challenge | None:
    """Count an attempt at a login challenge by its id alone, in one statement; ``None``: not here.

    The usual confirm of a login: the challenge is ``request``'s (its
    binding, :mod:`~django_voicepassword.binding`), open, for a login, and
    ``code`` is a code of its length. Then one conditional ``UPDATE`` counts
    the attempt, uses the code if it is the right one (:func:`_attempt_sql`)
    and returns the challenge's columns, with the number's user on PostgreSQL
    (as :func:`_count_attempt_finding_owner`): what :func:`get_challenge` and
    then :func:`_confirm` did in two statements. The challenge is returned as
    it was before the attempt, with the attempt on it for :func:`_confirm`.

    With ``renew`` (the adapter's ``can_log_in`` and ``mark_verified`` are
    the default ones) the same statement renews the number's verification
    when the code was right and its user may log in, as ``mark_verified``
    would for the user it read: :data:`_RENEWED` is then set on the challenge
    for ``PhoneCodeBackend.authenticate``, which writes nothing more.

    ``None`` when the statement matched no row or was not made (the id is no
    id, the code is malformed, the database cannot return rows from an
    ``UPDATE``): nothing was counted, and the caller takes the long way
    (:func:`get_challenge`, which tells apart a challenge that is not there,
    and :func:`_confirm`, which says why one is closed).
    """
    from django.contrib.auth import get_user_model
    from django.db import router

    pk = _challenge_pk(challenge_id)
    cleaned = clean_code(code, CODE_LENGTH)
    alias = router.db_for_write(Challenge)
    connection = transaction.get_connection(alias)
    if pk is None or cleaned is None or not _returns_from_update(connection):
        return None
    meta = Challenge._meta
    quote = connection.ops.quote_name
    fields = meta.concrete_fields
    bindings = binding.digests(request)
    bound_to = ", ".join(["%s"] * len(bindings))
    session_digest = quote(meta.get_field("session_digest").column)
    extra = (
        f" AND {quote(meta.get_field('purpose').column)} = %s"
        f" AND {quote(meta.get_field('code_length').column)} = %s"
        f" AND ({session_digest} = ''"
        + (f" OR {session_digest} IN ({bound_to})" if bindings else "")
        + ")",
        [Challenge.Purpose.LOGIN.value, CODE_LENGTH, *bindings],
    )
    now = timezone.now()
    entered = _code_digest(pk, cleaned)
    update, _, params = _attempt_sql(connection, pk, entered, now, extra)
    columns = ", ".join(
        f"{quote(field.column)} AS {quote(_COLUMN_PREFIX + field.attname)}" for field in fields
    )
    model = get_user_model()
    owner: _Owner = _UNREAD
    was_renewed = False
    with transaction.mark_for_rollback_on_error(using=alias):
        if number_owner and _reads_owner(connection, model):
            numbers, users = PhoneNumber._meta, model._meta
            number = quote(numbers.get_field("number").column)
            user_id = quote(numbers.get_field("user").column)
            returned_number = f"counted.{quote(_COLUMN_PREFIX + 'number')}"
            renewal, renewed = "", "0"
            if renew:
                # PhoneAdapter.mark_verified(owner, number) for a right code
                # whose user may log in (PhoneAdapter.can_log_in: is_active).
                confirmed_at = f"counted.{quote(_COLUMN_PREFIX + 'verified_at')}"
                active = ""
                if any(field.name == "is_active" for field in users.concrete_fields):
                    active = f" AND v.{quote(users.get_field('is_active').column)}"
                renewal = (
                    f", renewed AS (UPDATE {quote(numbers.db_table)} n"  # noqa: S608
                    f" SET {quote(numbers.get_field('verified_at').column)} = {confirmed_at}"
                    f" FROM counted, {quote(users.db_table)} v"
                    f" WHERE n.{number} = {returned_number} AND {confirmed_at} IS NOT NULL"
                    f" AND v.{quote(users.pk.column)} = n.{user_id}{active} RETURNING 1)"
                )
                renewed = "(SELECT count(*) FROM renewed)"
            sql = (
                f"WITH counted AS ({update} RETURNING {columns}){renewal}"  # noqa: S608
                f" SELECT u.*, counted.*, {renewed} AS {quote(_RENEWED)} FROM counted"
                f"{_owner_joins(connection, model, returned_number)}"
            )
            rows = list(model._default_manager.raw(sql, params).using(alias))
            if not rows:
                return None
            [row] = rows  # a number has one row at most (unique)
            values = [getattr(row, _COLUMN_PREFIX + field.attname) for field in fields]
            owner = row if row.pk is not None else None
            was_renewed = bool(getattr(row, _RENEWED))
        else:
            with connection.cursor() as cursor:
                cursor.execute(f"{update} RETURNING {columns}", params)
                found = cursor.fetchone()
            if found is None:
                return None
            values = list(found)
    for index, (column, convert) in enumerate(_challenge_converters(connection)):
        for converter in convert:
            values[index] = converter(values[index], column, connection)
    challenge = Challenge.from_db(alias, [field.attname for field in fields], values)
    consumed = challenge.verified_at is not None
    # As it was before this attempt: what _confirm and its caller expect.
    challenge.attempts -= 1
    challenge.verified_at = None
    attempt = _Attempt(True, challenge.code_digest, consumed, owner, now)
    setattr(challenge, _CLAIMED, attempt)
    if was_renewed:
        setattr(challenge, _RENEWED, True)
    return challenge


# The columns the digest and the code's use come back under next to the user's
# (no user field has them).
_DIGEST_ALIAS: Final = "_voicepassword_code_digest"
_CONSUMED_ALIAS: Final = "_voicepassword_consumed"


def confirm_challenge(challenge: Challenge, code: str, request: HttpRequest | None = None) -> bool:
    """Check ``code`` against ``challenge``; ``True`` once, for the right code in time.

    Every call counts one attempt, whatever ``code`` is: input that is no
    code (:func:`clean_code`) is a wrong code, never an error. Returns
    ``False`` for a wrong code. Raises :class:`ChallengeError`: ``"expired"``,
    ``"exhausted"`` (``MAX_ATTEMPTS`` codes were entered), ``"used"`` (a right
    code was entered already: of concurrent right entries exactly one wins),
    or ``"wrong_session"`` when ``request`` is of another session than the
    one that started the challenge (``request=None``: the caller has checked,
    e.g. with :func:`get_challenge`). Each refusal sends ``login_failed``.

    For ``purpose="verify"`` a success records the number as the user's
    (``adapter.mark_verified``) and sends ``phone_verified``. A login challenge
    is confirmed by :class:`~django_voicepassword.auth_backends.PhoneCodeBackend`,
    which logs the user in.
    """
    return _confirm(challenge, code, request)[0]


def _confirm(
    challenge: Challenge,
    code: str,
    request: HttpRequest | None = None,
    *,
    number_owner: bool = False,
) -> tuple[bool, _Owner]:
    """:func:`confirm_challenge`, and the number's user read with the attempt.

    With ``number_owner`` the user whose verified number the challenge's is
    (``PhoneAdapter.get_user``'s answer) is read in the statement that counts
    the attempt where the database allows (:func:`_count_attempt_finding_owner`);
    the second item is that user, ``None``, or :data:`_UNREAD` (the caller asks
    the adapter).
    """
    claimed: _Attempt | None = challenge.__dict__.pop(_CLAIMED, None)
    if claimed is not None:
        # _claim_login made the statement: this client's, a code, counted.
        if not claimed.consumed:
            _refused(challenge, request, "wrong_code", code)
            return False, claimed.owner
        assert claimed.at is not None
        assert claimed.stored is not None
        return _confirmed(challenge, request, claimed.at, claimed.stored), claimed.owner
    now = timezone.now()
    same_session = request is None or _same_session(challenge, request)
    cleaned = clean_code(code, challenge.code_length)
    # The digest of the code entered, compared by the statement that counts
    # the attempt; none for another session's request (nothing is compared
    # there) or for input that is no code.
    entered = _code_digest(challenge.pk, cleaned) if same_session and cleaned else None
    # One conditional UPDATE counts the attempt and, for the right code, uses
    # it: concurrent requests each count one, none of them gets past
    # MAX_ATTEMPTS, and of concurrent right entries exactly one consumes the
    # code (the database re-checks the condition on the row it locks; no
    # read-modify-write). It compares with the digest as stored now, not as
    # this instance remembers it: a resend may have replaced the code since
    # the instance was read.
    attempt = _count_attempt_finding_owner(challenge.pk, now, number_owner, entered)
    owner = attempt.owner
    if not same_session:
        # The attempt was counted all the same: a challenge id seen outside
        # its session is a leak, and burning its attempts ends what the leak
        # allows. Nothing was compared, so nothing is learnt.
        _refused(challenge, request, "wrong_session", code)
        raise ChallengeError("wrong_session")
    if not attempt.counted:
        reason = _why_closed(challenge.pk, now)
        _refused(challenge, request, reason, code)
        raise ChallengeError(reason)
    if cleaned is None:
        _refused(challenge, request, "malformed", code)
        return False, owner
    if attempt.consumed is None:
        # A database without UPDATE ... RETURNING: read the digest after the
        # count, compare, and consume with a second conditional UPDATE.
        stored = (
            Challenge.objects.filter(pk=challenge.pk).values_list("code_digest", flat=True).first()
        )
        # compare_digest: how long the comparison takes must not tell how
        # many leading characters of a guessed digest were right.
        assert entered is not None  # a code, entered in its own session
        if not stored or not hmac.compare_digest(entered, stored):
            _refused(challenge, request, "wrong_code", code)
            return False, owner
        consumed = Challenge.objects.filter(
            pk=challenge.pk, verified_at__isnull=True, expires_at__gt=now
        ).update(verified_at=now)
        if not consumed:
            reason = _why_closed(challenge.pk, now)
            _refused(challenge, request, reason, code)
            raise ChallengeError(reason)
    elif not attempt.consumed:
        _refused(challenge, request, "wrong_code", code)
        return False, owner
    assert entered is not None  # a code, entered in its own session
    return _confirmed(challenge, request, now, entered), owner


def _confirmed(
    challenge: Challenge, request: HttpRequest | None, now: datetime, digest: str
) -> bool:
    """What follows the use of a right code: the instance, the counts, a verification's number."""
    challenge.verified_at = now
    challenge.code_digest = digest
    logger.debug("Code for %s confirmed", Masked(challenge.number))
    fraud.count_confirm(challenge)
    if challenge.purpose == Challenge.Purpose.VERIFY and challenge.user is not None:
        verified_user = challenge.user
        get_adapter().mark_verified(verified_user, challenge.number)
        transaction.on_commit(
            lambda: phone_verified.send(
                sender=PhoneNumber,
                user=verified_user,
                number=challenge.number,
                challenge=challenge,
                request=request,
            )
        )
    return True


# --- what a page shows ------------------------------------------------------------


def available_channels(challenge: Challenge) -> list[str]:
    """The channels :func:`resend_challenge` would take for ``challenge`` now (cooldown aside).

    Flash and voice calls; an SMS when ``SMS_FALLBACK`` is on and the current
    code came by a call (an SMS re-sends that call's code; a call has one at
    most). Empty once the challenge is confirmed or expired. Worked out from
    the challenge alone, so that a challenge without a call (a number without
    an account) offers the same.
    """
    if challenge.verified_at is not None or challenge.expires_at <= timezone.now():
        return []
    channels = list(_CALL_CHANNELS)
    if settings.SMS_FALLBACK and challenge.sends > 0 and challenge.channel in _CALL_CHANNELS:
        channels.append(Call.Channel.SMS.value)
    return channels


def challenge_info(challenge: Challenge) -> dict[str, Any]:
    """What a page or an app needs to show about ``challenge``; nothing secret.

    ``masked_number`` (``"+7 999 ***-**-01"``), ``channel`` the code came by,
    ``code_length``, ``caller_prefix`` (the calling number without the code's
    digits, for "enter the last 4 digits of +7 999 000-…"; ``None``: the
    provider does not say it), ``expires_in`` and ``resend_in`` (whole
    seconds, 0 when past), ``attempts_left``, ``channels``
    (:func:`available_channels`) and ``purpose``; with a ``WORKFLOW``,
    ``next_step_in`` (whole seconds until the server sends the next code by
    itself) and ``next_channel`` (how), both ``None`` when no step follows.
    The same fields and the same values for a number with or without an account.
    """
    now = timezone.now()
    next_step_in, next_channel = _workflow().next_step(challenge, now)
    return {
        "masked_number": mask(challenge.number),
        "channel": challenge.channel,
        "code_length": challenge.code_length,
        "caller_prefix": None,
        "expires_in": _seconds_until(challenge.expires_at, now),
        "resend_in": _seconds_until(challenge.resend_at, now),
        "attempts_left": max(0, challenge.max_attempts - challenge.attempts),
        "channels": available_channels(challenge),
        "purpose": challenge.purpose,
        "next_step_in": next_step_in,
        "next_channel": next_channel,
    }


# --- codes that another app checks (django-allauth) ----------------------------------


@dataclass(frozen=True)
class Delivery:
    """What :func:`deliver_code` did: whether a call went out, and the row that records it.

    ``placed`` is ``False`` for a stand-in (nobody was called) and for a send
    that failed; ``call`` is the :class:`~django_voicepassword.models.Call`
    row of a call placed (``None`` otherwise: a failed send's row holds its
    error code); ``error`` the provider's error for a failed send, or the
    :class:`~django_voicepassword.exceptions.OutcomeUnknownError` of a send
    whose outcome is unknown (then ``placed`` is ``True``).
    """

    placed: bool
    call: Call | None = None
    error: VoicePasswordError | None = None


def deliver_code(
    number: str,
    code: str,
    channel: str = "flash_call",
    *,
    request: HttpRequest | None = None,
    user: AbstractBaseUser | None = None,
    call: bool = True,
    kind: ratelimit.NumberKind = "new",
) -> Delivery:
    """Send ``code`` (4 digits, the caller's) to ``number``, for an app that checks it itself.

    The path of codes that this package does not check, as with
    django-allauth, whose flows keep the code and compare it
    (:mod:`django_voicepassword.contrib.allauth`): the same limits
    (:func:`~.ratelimit.check_send` with ``kind``), the same budget
    reservation, and a :class:`~django_voicepassword.models.Call` row for
    ``user``, as a challenge's send; no :class:`~django_voicepassword.models.Challenge`
    is made. ``channel`` is ``"flash_call"`` (the caller number ends in
    ``code``) or ``"voice_call"`` (a robot says it).

    ``call=False`` is the stand-in for a number that must not be called (an
    unknown account, with the other app's enumeration prevention): counted by
    the limits as ``"uncalled"`` and by the budget alike, nothing placed, and
    as long a wait as a real send (:func:`pause`, see the module's threat
    model). Returns a :class:`Delivery` with ``placed=False``.

    Raises :class:`~.ratelimit.LimitExceeded` when a limit or the budget
    refuses (before anything is written, for every number alike),
    :class:`~django_voicepassword.phone.InvalidPhoneNumber` for a number the
    site does not accept, and :class:`~.conf.ConfigurationError`. A send the
    provider refused or that did not reach it returns ``placed=False`` with
    the error (the reservation given back, the failure on the ``Call`` row):
    whether to tell the person is the caller's choice, as it may tell who has
    an account. A send whose outcome is unknown returns ``placed=True``: the
    code is the caller's, so the phone may well have it, and asking again
    could bill a second call. Call it outside a database transaction.
    """
    global _warm_gateway
    if channel not in _CALL_CHANNELS:
        raise ValueError(f"deliver_code() sends flash and voice calls, not {channel!r}")
    if clean_code(code) != code:
        raise ValueError(f"deliver_code() needs a code of {CODE_LENGTH} ASCII digits")
    normalized = normalize(number)
    # The limits, the budget and the send durations in one round trip to Redis.
    reservation, read = ratelimit.check_and_reserve(
        normalized,
        request,
        kind="uncalled" if not call else kind,
        channel=channel,
        peek=[_DURATIONS_KEY + channel],
    )
    if not call:
        # Reserved and given back: a spent budget refuses every number alike.
        ratelimit.release(reservation)
        _stand_in(channel, read)
        logger.debug("Stand-in for %s (%s): nothing placed", Masked(normalized), channel)
        return Delivery(placed=False)
    try:
        gateway = get_gateway()
    except ConfigurationError:
        ratelimit.release(reservation)
        raise
    warm = gateway is _warm_gateway
    _warm_gateway = gateway
    started = time.monotonic()
    try:
        placed_call, _result = calls.place(channel, normalized, code=code, user=user)
    except OutcomeUnknownError as error:
        # The provider may have placed and billed it: the reservation stays.
        logger.warning("%s to %s: outcome unknown", channel, mask(normalized))
        return Delivery(placed=True, error=error)
    except (APIError, TransportError) as error:
        ratelimit.release(reservation)
        logger.warning(
            "%s to %s not placed: %s",
            channel,
            mask(normalized),
            getattr(error, "error_code", "") or type(error).__name__,
        )
        return Delivery(placed=False, error=error)
    if warm:
        _record_send_seconds(channel, time.monotonic() - started, read)
    logger.debug("%s to %s placed", channel, Masked(normalized))
    return Delivery(placed=True, call=placed_call)
