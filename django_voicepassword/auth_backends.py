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

Like django-sesame's backend it acts only when called with its own keywords
(``challenge`` and ``otp_token``), returns ``None`` on any failure and says why
in a DEBUG log line, never with the code. The keyword is ``otp_token`` so that
Django's ``user_login_failed`` signal, which hides credentials whose name
contains "token", never carries the code either.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.db import transaction

from django_voicepassword.adapter import get_adapter
from django_voicepassword.conf import settings
from django_voicepassword.models import Challenge, PhoneNumber
from django_voicepassword.phone import mask
from django_voicepassword.signals import login_failed, phone_verified
from django_voicepassword.verification import ChallengeError, confirm_challenge, get_challenge

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

__all__ = ["PhoneCodeBackend"]

logger = logging.getLogger(__name__)


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
        number = mask(challenge.number)
        if challenge.purpose != Challenge.Purpose.LOGIN:
            logger.debug("Phone login for %s refused: not a login challenge", number)
            return None
        try:
            confirmed = confirm_challenge(challenge, otp_token, request)
        except ChallengeError as error:
            logger.debug("Phone login for %s refused: %s", number, error.code)
            return None
        if not confirmed:
            logger.debug("Phone login for %s refused: wrong code", number)
            return None

        adapter = get_adapter()
        # Looked up now, not when the code was sent: a number can change hands.
        user = adapter.get_user(challenge.number)
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
        if not adapter.can_log_in(user):
            logger.debug("Phone login for %s refused: the user may not log in", number)
            return None
        adapter.mark_verified(user, challenge.number)
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
