"""Phone login as a Django authentication backend.

Add it to the site's backends, next to the usual one::

    AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "django_voicepassword.auth_backends.PhoneCodeBackend",
    ]

and log in with the code a phone received for a challenge started with
:func:`~django_voicepassword.verification.start_challenge`::

    user = authenticate(request, challenge=challenge, otp_token=code)
    if user is not None:
        login(request, user)  # cycles the session key

To confirm the code and log in as one unit, so that a login that fails (a
locked database, a session that cannot be saved) leaves the code unused, do
both inside :func:`atomic_login`, as the package's own views do::

    with atomic_login(request, challenge):
        user = authenticate(request, challenge=challenge, otp_token=code)
        if user is not None:
            login(request, user)

Like django-sesame's backend it acts only when called with its own keywords
(``challenge`` and ``otp_token``), returns ``None`` on any failure and says why
in a DEBUG log line, never with the code. The keyword is ``otp_token`` so that
Django's ``user_login_failed`` signal, which hides credentials whose name
contains "token", never carries the code either.

:func:`login_number` tells which number a session logged in with: a user may
have several verified numbers, and the newest of them is not necessarily the
one that received this login's code.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.signals import user_logged_in
from django.db import router, transaction

from django_voicepassword import binding
from django_voicepassword.adapter import PhoneAdapter, get_adapter
from django_voicepassword.conf import settings
from django_voicepassword.models import Call, Challenge, PhoneNumber
from django_voicepassword.phone import Masked
from django_voicepassword.signals import login_failed, phone_verified
from django_voicepassword.verification import (
    _RENEWED,
    _UNREAD,
    ChallengeError,
    _confirm,
    get_challenge,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

__all__ = ["LOGIN_NUMBER_SESSION_KEY", "PhoneCodeBackend", "atomic_login", "login_number"]

logger = logging.getLogger(__name__)

# The request's attributes that django.contrib.auth.login() replaces.
_USER_ATTRIBUTES = ("user", "auser")

#: The session key that holds the number (the provider's form) of a phone login.
LOGIN_NUMBER_SESSION_KEY = "_voicepassword_login_number"
# The attribute by which authenticate() hands the number to the login that follows.
_NUMBER_ATTRIBUTE = "_voicepassword_login_number"


def login_number(request: HttpRequest) -> str | None:
    """The number the session's user logged in with by phone, or ``None``.

    In the provider's form (``"79990000001"``; show it with
    :func:`~django_voicepassword.phone.mask`). ``None`` when the session is not
    logged in, or its user logged in by other means (a password, the admin).
    Recorded at each ``login()`` after :class:`PhoneCodeBackend` authenticated
    the user, whatever called it (the login pages, the API, a site's own view);
    a log-out or a later login of another kind forgets it.
    """
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    if session is None or user is None or not user.is_authenticated:
        return None
    number = session.get(LOGIN_NUMBER_SESSION_KEY)
    return number if isinstance(number, str) else None


def _remember_login_number(
    sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any
) -> None:
    # Connected to user_logged_in in AppConfig.ready(). login() has cycled the
    # session key (or flushed the session of another user) before it sends the
    # signal, so what is written here belongs to this login alone.
    session = getattr(request, "session", None)
    if session is None:
        return
    number = user.__dict__.pop(_NUMBER_ATTRIBUTE, None)
    if number:
        session[LOGIN_NUMBER_SESSION_KEY] = number
    else:
        # A login of another kind in a session that had a phone login.
        session.pop(LOGIN_NUMBER_SESSION_KEY, None)


def connect_signals() -> None:
    """Record the number of every phone login in its session (:func:`login_number`)."""
    user_logged_in.connect(_remember_login_number, dispatch_uid=_NUMBER_ATTRIBUTE)


@contextlib.contextmanager
def atomic_login(request: HttpRequest, challenge: Challenge | None = None) -> Iterator[None]:
    """Confirm a login code and log in as one unit: all of it is stored, or none.

    Around ``authenticate()`` and ``login()``: the attempt, the code's
    consumption, a new user, the verified number and the logged-in session
    (saved here, inside the transaction, rather than after the view) commit
    together. If anything in the block or the commit raises (``OperationalError``:
    SQLite locked past its timeout; a session store that fails), the
    transaction is rolled back, so the code is not consumed and the person can
    enter it again, and the request is put back as it was before the block:
    its session as stored (the cycled key and the login are dropped, so the
    middleware saves nothing and sends no cookie), its ``user``, and
    ``challenge``'s in-memory fields that a confirmation sets (its user too,
    which a first login links). The error is
    raised again for the view to answer (the package's views: 503).

    Without it the code was consumed in a transaction of its own, and a login
    that failed after it ended "used" with nobody logged in.
    """
    session = getattr(request, "session", None)
    session_key = session.session_key if session is not None else None
    users = {name: request.__dict__[name] for name in _USER_ATTRIBUTES if name in request.__dict__}
    confirmed = (
        (challenge.verified_at, challenge.code_digest, challenge.user_id)
        if challenge is not None
        else None
    )
    try:
        with transaction.atomic(using=router.db_for_write(Challenge)):
            yield
            # Saved now, in the transaction: a session store that fails must
            # leave the code unused. Once: SessionMiddleware's save of the
            # same data after the view writes nothing (it still sends the cookie).
            if session is not None and request.session.modified:
                binding.save_session_once(request.session)
    except BaseException:
        if session is not None:
            # A fresh store of the key from before: loads what the database
            # has again (the rollback restored it); unmodified, so nothing is saved.
            request.session = type(session)(session_key)
        for name, value in users.items():
            setattr(request, name, value)
        if challenge is not None and confirmed is not None:
            challenge.verified_at, challenge.code_digest, user_id = confirmed
            if challenge.user_id != user_id:
                # The user linked by the login (perhaps created by it) was rolled back.
                challenge.user_id = user_id
        raise


def _link_user(challenge: Challenge, user: AbstractBaseUser) -> None:
    """Give ``challenge`` the user who logged in with it, and its calls that have none.

    A login's challenge holds the user its code was sent to from the start
    (:func:`~django_voicepassword.verification.start_challenge`), and its call
    row too: for a returning user there is nothing to write. A first login's
    challenge and calls are made before the user exists (``CREATE_USERS``),
    so without this the admin shows no user on the call that created one; a
    number that changed hands between the start and the confirm gives the
    challenge the user who logged in. In the login's transaction: a login
    that fails leaves them as they were. Only calls without a user are changed.
    """
    if challenge.user_id == user.pk:
        return
    Challenge.objects.filter(pk=challenge.pk).update(user=user)
    Call.objects.filter(challenge=challenge, user__isnull=True).update(user=user)
    challenge.user = user  # type: ignore[assignment]


class PhoneCodeBackend(BaseBackend):
    """Authenticates the person who entered the right code of a login challenge."""

    # Both methods ignore mypy's "override": they return the site's user model,
    # which the adapter gives as AbstractBaseUser and django-stubs as the concrete one.
    def authenticate(  # type: ignore[override]
        self,
        request: HttpRequest | None,
        challenge: Challenge | str | uuid.UUID | None = None,
        otp_token: str | None = None,
        **kwargs: Any,
    ) -> AbstractBaseUser | None:
        """The user whose number received ``otp_token`` for ``challenge``, or ``None``.

        ``challenge`` is a :class:`~django_voicepassword.models.Challenge` or its
        id (looked up with :func:`~django_voicepassword.verification.get_challenge`,
        so only in the session that started it). Without both keywords the
        backend does nothing (other backends are asked). ``None`` for a wrong,
        expired, exhausted or used code, another session, a challenge that is
        not for a login, a number without a user who may log in (unless
        ``CREATE_USERS``, which creates one). On success the number is marked
        verified and ``phone_verified`` is sent; the caller logs the user in
        with ``django.contrib.auth.login``.
        """
        if challenge is None or otp_token is None:
            return None
        if not isinstance(challenge, Challenge):
            # An id (from a form or a request body): any garbage gives None.
            found = get_challenge(request, challenge)
            if found is None:
                logger.debug("Phone login refused: no such challenge in this session")
                return None
            challenge = found
        number = Masked(challenge.number)  # masked only if a line is logged
        if challenge.purpose != Challenge.Purpose.LOGIN:
            logger.debug("Phone login for %s refused: not a login challenge", number)
            return None
        adapter = get_adapter()
        # The default adapter's look-up is read with the attempt (one statement
        # on PostgreSQL); a site's own get_user() is asked below.
        default_lookup = type(adapter).get_user is PhoneAdapter.get_user
        try:
            confirmed, owner = _confirm(challenge, otp_token, request, number_owner=default_lookup)
        except ChallengeError as error:
            logger.debug("Phone login for %s refused: %s", number, error.code)
            return None
        if not confirmed:
            logger.debug("Phone login for %s refused: wrong code", number)
            return None

        # Looked up now, not when the code was sent: a number can change hands.
        user = owner if owner is not _UNREAD else adapter.get_user(challenge.number)
        if user is None:
            if not settings.CREATE_USERS:
                # Only reachable if the number lost its user after the call.
                logger.debug("Phone login for %s refused: no user has this number", number)
                transaction.on_commit(
                    lambda: login_failed.send(
                        sender=Challenge,
                        challenge=challenge,
                        request=request,
                        reason="no_user",
                        token="",
                    )
                )
                return None
            user = adapter.create_user(challenge.number, request)
            logger.debug("Phone login for %s created a user", number)
            # The default create_user() has marked the number verified (with
            # the adapter's own mark_verified); another one is asked again below.
            verified = type(adapter).create_user is PhoneAdapter.create_user
        else:
            verified = False
        # Renewed by the statement that counted the attempt (the API's usual
        # confirm, the default adapter): for the user it read, who is this one.
        renewed = challenge.__dict__.pop(_RENEWED, False) and user is owner
        if not adapter.can_log_in(user):
            logger.debug("Phone login for %s refused: the user may not log in", number)
            return None
        if not (verified or renewed):
            adapter.mark_verified(user, challenge.number)
        _link_user(challenge, user)
        # For login() to put in the session (_remember_login_number).
        setattr(user, _NUMBER_ATTRIBUTE, challenge.number)
        logged_in, used = user, challenge
        transaction.on_commit(
            lambda: phone_verified.send(
                sender=PhoneNumber,
                user=logged_in,
                number=used.number,
                challenge=used,
                request=request,
            )
        )
        logger.debug("Phone login for %s", number)
        return user

    def get_user(self, user_id: Any) -> AbstractBaseUser | None:  # type: ignore[override]
        """The user with primary key ``user_id`` if they may still log in, else ``None``."""
        model = get_user_model()
        try:
            user = model._default_manager.get(pk=user_id)
        except (model.DoesNotExist, ValueError, TypeError):
            return None
        return user if get_adapter().can_log_in(user) else None
