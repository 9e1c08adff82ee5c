"""The login API: phone challenges for single-page and mobile apps.

Four views over the services of :mod:`django_voicepassword.verification`, so
the API gets the same limits, records and signals as the HTML flow:

- ``POST challenges/`` (:class:`ChallengeStartView`) sends a code: 201 with the
  challenge (its id, and what an app needs to read a flash call itself);
- ``GET challenges/<id>/`` (:class:`ChallengeDetailView`) shows it again;
- ``POST challenges/<id>/resend/`` (:class:`ChallengeResendView`) sends a new
  code, by the same or another channel;
- ``POST challenges/<id>/confirm/`` (:class:`ChallengeConfirmView`) checks the
  code: a login logs the user in with ``django.contrib.auth.login`` (the
  session key is cycled), a verification adds the number to the user's.

Why these choices (``docs/api.md`` says more):

- **The session cookie is the binding.** A challenge is found only in the
  session that started it (:func:`~django_voicepassword.verification.get_challenge`);
  anything else is 404, byte for byte the same as an id that never existed.
  Apps keep the cookie, as browsers do.
- **CSRF.** Authentication is DRF's ``SessionAuthentication``, which checks the
  CSRF token for a logged-in session (so a verification, and a login from a
  session that is already logged in, need it) and not for an anonymous one.
  Login CSRF (logging a victim into the attacker's account) is defused by the
  binding: a challenge the attacker started is not in the victim's session.
  Bodies are JSON only, which a cross-site form cannot send.
- **Errors** are :class:`~rest_framework.exceptions.APIException` subclasses
  with a translatable ``default_detail`` and a stable ``default_code``; the
  views add that code to the body: ``{"detail": ..., "code": ...}``. A limit
  is 429 with ``Retry-After``; a provider that refused or failed a
  verification's call is 503 with a message that says nothing of the
  provider's own (a login's failed call answers as a sent one: a number
  without an account, never called, could not fail).
- **Never cached** (``never_cache``): the answers are about one session.
- **No transaction around a request.** A request that raises is rolled back
  under ``ATOMIC_REQUESTS``, which would undo the count of a wrong code's
  attempt: the views are ``non_atomic_requests``, as the services require.
- **No throttle of our own on confirm.** Each code sent allows
  ``MAX_ATTEMPTS`` guesses and every code sent passes the limits, so guesses
  are bounded by the send limits already; the site's own
  ``DEFAULT_THROTTLE_CLASSES`` apply as to any view.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from django.contrib.auth import login
from django.db import OperationalError, transaction
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, NotAuthenticated, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_voicepassword import binding, workflow
from django_voicepassword.adapter import PhoneAdapter, get_adapter
from django_voicepassword.api import schema
from django_voicepassword.api.login_serializers import (
    ChallengeConfirmSerializer,
    ChallengeResendSerializer,
    ChallengeStartSerializer,
)
from django_voicepassword.api.parsers import BoundedJSONParser
from django_voicepassword.auth_backends import PhoneCodeBackend, atomic_login
from django_voicepassword.exceptions import VoicePasswordError
from django_voicepassword.models import Call, Challenge
from django_voicepassword.phone import InvalidPhoneNumber, mask
from django_voicepassword.ratelimit import LimitExceeded
from django_voicepassword.verification import (
    ChallengeError,
    _claim_login,
    available_channels,
    challenge_info,
    clean_code,
    confirm_challenge,
    get_challenge,
    resend_challenge,
    start_challenge,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest
    from django_stubs_ext import StrOrPromise

__all__ = [
    "BACKEND",
    "WRONG_CHANNEL",
    "ChallengeAPIView",
    "ChallengeConfirmView",
    "ChallengeDetailView",
    "ChallengeExhausted",
    "ChallengeExpired",
    "ChallengeNotFound",
    "ChallengeResendView",
    "ChallengeStartView",
    "ChallengeUsed",
    "LimitReached",
    "LoginUnavailable",
    "ResendTooSoon",
    "ServiceUnavailable",
    "WrongCode",
]

logger = logging.getLogger(__name__)

# The channels a challenge starts with; an SMS needs a call before it.
CALL_CHANNELS = (Call.Channel.FLASH_CALL.value, Call.Channel.VOICE_CALL.value)

#: Seconds to wait before sending the code again after :class:`LoginUnavailable`.
LOGIN_RETRY_AFTER = 2

#: The backend a phone login is recorded with in the session.
BACKEND = "django_voicepassword.auth_backends.PhoneCodeBackend"


# --- errors ------------------------------------------------------------------------


class ChallengeAPIException(APIException):
    """Base of the API's own errors: DRF's ``detail``, plus ``extra`` for the body.

    ``wait`` (seconds), when set, becomes the ``Retry-After`` header, as with
    DRF's ``Throttled``; ``extra`` items are added to the body next to
    ``detail`` and ``code``.
    """

    def __init__(
        self,
        detail: StrOrPromise | None = None,
        code: str | None = None,
        *,
        wait: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, code)
        self.wait = wait
        self.extra = extra


class ChallengeNotFound(ChallengeAPIException):
    """No challenge with this id in this session (or none at all: the same answer)."""

    status_code = status.HTTP_404_NOT_FOUND
    default_detail = _("No such code request. Start again.")
    default_code = "not_found"


class WrongCode(ChallengeAPIException):
    """The code is not right; ``attempts_left`` says how many codes may still be entered.

    Build it with :meth:`for_attempts_left`, whose message (the HTML flow's)
    says the number too.
    """

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Wrong code.")
    default_code = "wrong_code"

    @classmethod
    def for_attempts_left(cls, left: int) -> WrongCode:
        """The error for a wrong code after which ``left`` codes may be entered."""
        if left <= 0:
            message = gettext("Wrong code, and no attempts are left. You can ask for a new code.")
        else:
            message = ngettext(
                "Wrong code. You have %(count)d more attempt.",
                "Wrong code. You have %(count)d more attempts.",
                left,
            ) % {"count": left}
        return cls(message, attempts_left=left)


class ChallengeExpired(ChallengeAPIException):
    """The code can no longer be entered; a resend (or a new challenge) is needed."""

    status_code = status.HTTP_410_GONE
    default_detail = ChallengeError.messages["expired"]
    default_code = "expired"


class ChallengeExhausted(ChallengeAPIException):
    """``MAX_ATTEMPTS`` codes were entered; a resend gives a new code and new attempts."""

    status_code = status.HTTP_410_GONE
    default_detail = ChallengeError.messages["exhausted"]
    default_code = "exhausted"


class ChallengeUsed(ChallengeAPIException):
    """The challenge was confirmed already."""

    status_code = status.HTTP_410_GONE
    default_detail = ChallengeError.messages["used"]
    default_code = "used"


class ResendTooSoon(ChallengeAPIException):
    """A new code was asked for before the cooldown ended (``Retry-After``)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = ChallengeError.messages["cooldown"]
    default_code = "cooldown"


class LimitReached(ChallengeAPIException):
    """An abuse limit or the daily budget refused to send a code (``Retry-After``).

    The detail is the limit's own message (:class:`~django_voicepassword.ratelimit.LimitExceeded`),
    which says when to try again.
    """

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = _("Too many codes were sent.")
    default_code = "limit_exceeded"


class ServiceUnavailable(ChallengeAPIException):
    """The provider refused or could not be reached; its own words are only logged."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    # The HTML flow's words, for every channel.
    default_detail = _("We could not call you just now. Please try again later.")
    default_code = "service_unavailable"


class LoginUnavailable(ChallengeAPIException):
    """The login could not be stored (the database is locked or down); the code is not used.

    503 with ``Retry-After``: the same code can be sent again.
    """

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    # The HTML flow's words.
    default_detail = _("We could not log you in just now. Please enter the code again.")
    default_code = "login_unavailable"


#: The field error for a channel that cannot be used now (the HTML flow's words).
WRONG_CHANNEL = _("This way of sending the code is not available.")

_CLOSED: dict[str, type[ChallengeAPIException]] = {
    "expired": ChallengeExpired,
    "exhausted": ChallengeExhausted,
    "used": ChallengeUsed,
    # get_challenge() found it in this session, so only a race gets here:
    # answer as for any challenge that is not this session's.
    "wrong_session": ChallengeNotFound,
}


def _channel_refused(error: ChallengeError, number: str, *, offered: bool) -> APIException:
    """``channel_unavailable``: the provider failed (503), or the channel is not open (400).

    ``offered``: whether the channel was open when asked for, so that the
    refusal came from sending (the provider placed a call but named no code).
    """
    cause = error.__cause__
    if isinstance(cause, VoicePasswordError) or (cause is None and offered):
        # The service logged the provider's error; the client gets none of
        # the provider's words, which it could do nothing with.
        logger.info("Code for %s not sent (503): %s", mask(number), type(cause).__name__)
        return ServiceUnavailable()
    # SMS_FALLBACK off, an SMS before a call or after one was sent, a call
    # still going on: the client may choose another way (``channels``).
    return ValidationError({"channel": [WRONG_CHANNEL]}, code=error.code)


def _refusal(error: ChallengeError, number: str, *, offered: bool = False) -> APIException:
    """The API error for a :class:`ChallengeError` from a service."""
    if error.code == "cooldown":
        return ResendTooSoon(wait=error.retry_after)
    if error.code == "channel_unavailable":
        return _channel_refused(error, number, offered=offered)
    return _CLOSED.get(error.code, ChallengeNotFound)()


# --- views ---------------------------------------------------------------------------


@method_decorator(transaction.non_atomic_requests, name="dispatch")
@method_decorator(never_cache, name="dispatch")
class ChallengeAPIView(APIView):
    """What the challenge views share: session authentication, JSON, the error body.

    Subclass a view to change one thing; the class attributes here are set
    explicitly, so a site's ``REST_FRAMEWORK`` defaults (token authentication,
    ``IsAuthenticated``) do not break phone login. Throttles are the site's.
    """

    authentication_classes = [SessionAuthentication]
    permission_classes = [AllowAny]
    parser_classes = [BoundedJSONParser]
    renderer_classes = [JSONRenderer]

    def handle_exception(self, exc: Exception) -> Response:
        """Answer as DRF does, then add the error's ``code`` (and extras) to the body.

        Only a body of DRF's own shape (``{"detail": ...}``) is extended, so a
        site's ``EXCEPTION_HANDLER`` that shapes errors its own way keeps its
        shape; ``Retry-After`` is set whatever the handler did.
        """
        response = super().handle_exception(exc)
        if not isinstance(exc, APIException):
            return response
        data = response.data
        if isinstance(data, dict) and set(data) == {"detail"}:
            codes = exc.get_codes()
            response.data = {
                **data,
                "code": codes if isinstance(codes, str) else exc.default_code,
                **getattr(exc, "extra", {}),
            }
        wait = getattr(exc, "wait", None)
        if wait and not response.has_header("Retry-After"):
            response["Retry-After"] = str(int(wait))
        return response

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        """DRF's, and the binding cookie when this request was given one (:mod:`.binding`)."""
        response = super().finalize_response(request, response, *args, **kwargs)
        binding.set_cookie(self.http_request, response)
        return response

    @property
    def http_request(self) -> HttpRequest:
        """The Django request under DRF's, for the services and ``login``."""
        return self.request._request

    def get_challenge(self, challenge_id: str) -> Challenge:
        """This session's challenge ``challenge_id``, or :class:`ChallengeNotFound`."""
        challenge = get_challenge(self.http_request, challenge_id)
        if challenge is None:
            raise ChallengeNotFound()
        return challenge

    def challenge_data(self, challenge: Challenge) -> dict[str, Any]:
        """The body that describes ``challenge``: its id and ``challenge_info()``."""
        return {"id": str(challenge.pk), **challenge_info(challenge)}


class ChallengeStartView(ChallengeAPIView):
    """``POST challenges/``: send a code to a number; 201 with the challenge.

    ``purpose="verify"`` needs a logged-in user (403 otherwise), whom the
    number is added to on confirmation. A login by a number without an
    account answers exactly as one with an account, but places no call.
    """

    @schema.start
    def post(self, request: Request) -> Response:
        """Start a challenge."""
        serializer = ChallengeStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = None
        if data["purpose"] == Challenge.Purpose.VERIFY:
            if not request.user.is_authenticated:
                raise NotAuthenticated()
            user = request.user
        # A client without a session gets the binding cookie, not a session.
        binding.bind_by_cookie(self.http_request)
        try:
            challenge = start_challenge(
                data["number"], data["channel"], self.http_request, data["purpose"], user=user
            )
        except InvalidPhoneNumber as error:
            raise ValidationError({"number": [error.message]}, code=error.code) from None
        except LimitExceeded as error:
            raise LimitReached(error.message, wait=error.retry_after) from None
        except ChallengeError as error:
            offered = data["channel"] in CALL_CHANNELS
            raise _refusal(error, data["number"], offered=offered) from None
        location = reverse("voicepassword:api_challenge", args=[challenge.pk])
        return Response(
            self.challenge_data(challenge),
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )


class ChallengeDetailView(ChallengeAPIView):
    """``GET challenges/<id>/``: the challenge as the start answered, with times updated."""

    @schema.detail
    def get(self, request: Request, challenge_id: str) -> Response:
        """Show a challenge; a workflow step that is due is taken first (the poll)."""
        challenge = workflow.advance(self.get_challenge(challenge_id))
        return Response(self.challenge_data(challenge))


class ChallengeResendView(ChallengeAPIView):
    """``POST challenges/<id>/resend/``: a new code, optionally by another ``channel``.

    429 with ``Retry-After`` before the cooldown ends (``resend_in``) or when
    a limit refuses; 400 for a channel not offered (``channels``).
    """

    @schema.resend
    def post(self, request: Request, challenge_id: str) -> Response:
        """Send another code."""
        challenge = self.get_challenge(challenge_id)
        serializer = ChallengeResendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel = serializer.validated_data.get("channel") or challenge.channel
        offered = channel in available_channels(challenge)
        try:
            challenge = resend_challenge(challenge, self.http_request, channel=channel)
        except LimitExceeded as error:
            raise LimitReached(error.message, wait=error.retry_after) from None
        except ChallengeError as error:
            raise _refusal(error, challenge.number, offered=offered) from None
        return Response(self.challenge_data(challenge))


class ChallengeConfirmView(ChallengeAPIView):
    """``POST challenges/<id>/confirm/``: check the code; 200 ``{"verified": true, "user": ...}``.

    For a login the user is logged in (``django.contrib.auth.login`` with
    :class:`~django_voicepassword.auth_backends.PhoneCodeBackend`, which the
    site lists in ``AUTHENTICATION_BACKENDS``; the session key is cycled).
    For a verification the number is added to the logged-in user's.

    A wrong code is 400 ``wrong_code`` with ``attempts_left``; input that is
    no code at all (letters, too few digits) is 400 on the ``code`` field and
    costs no attempt; ``expired``, ``exhausted`` and ``used`` are 410. A login
    that cannot be stored (the database is locked or down) is 503
    ``login_unavailable`` with ``Retry-After``, and the code is not used up:
    the check and the login are one transaction
    (:func:`~django_voicepassword.auth_backends.atomic_login`).

    A site that issues its own tokens subclasses this view and overrides
    :meth:`get_response_data` (and :meth:`perform_login` to skip the session).
    """

    @schema.confirm
    def post(self, request: Request, challenge_id: str) -> Response:
        """Check a code."""
        serializer = ChallengeConfirmSerializer(data=request.data)
        # A subclass's own confirm_login() is given a challenge read the long way.
        usual = type(self).confirm_login is ChallengeConfirmView.confirm_login
        if usual and serializer.is_valid():
            # The usual login: one statement finds the challenge and counts the attempt.
            answered = self.log_in(challenge_id, serializer.validated_data["code"])
            if answered is not None:
                return answered
        # The long way: the challenge read first, to tell one that is not
        # there (404) from a body that is no code (400) and from one that is
        # closed (410), and a verification from a login.
        challenge = self.get_challenge(challenge_id)
        serializer.is_valid(raise_exception=True)
        entered = serializer.validated_data["code"]
        if clean_code(entered, challenge.code_length) is None:
            # Refused before the service sees it, so a typo costs no attempt
            # (as in the HTML form). Depends on the code length alone: the
            # same for every number.
            message = ngettext(
                "Enter the %(count)d-digit code.",
                "Enter the %(count)d-digit code.",
                challenge.code_length,
            ) % {"count": challenge.code_length}
            raise ValidationError({"code": [message]}, code="malformed")
        if challenge.purpose == Challenge.Purpose.LOGIN:
            answered = self.log_in(challenge, entered)
            assert answered is not None  # a challenge, not an id: always answered
            return answered
        user = self.confirm_verification(challenge, entered)
        return Response(self.get_response_data(user, challenge))

    def log_in(self, challenge: Challenge | str, code: str) -> Response | None:
        """Confirm ``code`` for a login challenge and log its user in, as one transaction.

        ``challenge`` is the challenge, or its id: then this client's open
        login challenge with that id is found by the statement that counts the
        attempt (:func:`~django_voicepassword.verification._claim_login`), and
        ``None`` is returned, with nothing counted, when there is none or
        ``code`` is not a code of its length (:meth:`post` then takes the long way).
        """
        request = self.http_request
        found = challenge if isinstance(challenge, Challenge) else None
        refusal: ChallengeAPIException | None = None
        try:
            # One unit: a login that cannot be stored leaves the code unused.
            with atomic_login(request, found):
                if found is None:
                    kind = type(get_adapter())
                    found = _claim_login(
                        request,
                        challenge,
                        code,
                        number_owner=kind.get_user is PhoneAdapter.get_user,
                        renew=kind.can_log_in is PhoneAdapter.can_log_in
                        and kind.mark_verified is PhoneAdapter.mark_verified,
                    )
                    if found is None:
                        return None  # nothing was written
                try:
                    user = self.confirm_login(found, code)
                except ChallengeAPIException as refused:
                    # Raised once committed: the attempt of a wrong code counts.
                    refusal = refused
                else:
                    self.perform_login(user, found)
        except OperationalError as error:
            logger.warning(
                "Phone login for %s not completed, database unavailable: %s",
                mask(found.number) if found is not None else "a number",
                error,
            )
            raise LoginUnavailable(wait=LOGIN_RETRY_AFTER) from None
        if refusal is not None:
            raise refusal
        return Response(self.get_response_data(user, found))

    def confirm_login(self, challenge: Challenge, code: str) -> AbstractBaseUser:
        """The user the code logs in, through the backend; or the error to answer."""
        attempts_before = challenge.attempts
        user = PhoneCodeBackend().authenticate(
            self.http_request, challenge=challenge, otp_token=code
        )
        if user is not None:
            return user
        # The backend says yes or no, as a backend must; the challenge row
        # says why it said no.
        raise self.refusal_of(challenge, attempts_before)

    def confirm_verification(self, challenge: Challenge, code: str) -> AbstractBaseUser:
        """The logged-in user whose number the code verifies; or the error to answer."""
        user = self.request.user
        if not user.is_authenticated or challenge.user_id != user.pk:
            # Another user's challenge in this session (one logged out, another
            # in): as good as not there.
            raise ChallengeNotFound()
        attempts_before = challenge.attempts
        try:
            confirmed = confirm_challenge(challenge, code, self.http_request)
        except ChallengeError as error:
            raise _refusal(error, challenge.number) from None
        if not confirmed:
            raise self.refusal_of(challenge, attempts_before)
        return user

    @staticmethod
    def refusal_of(challenge: Challenge, attempts_before: int) -> ChallengeAPIException:
        """Why a code for ``challenge`` was refused, read from its row."""
        challenge.refresh_from_db()
        if challenge.verified_at is not None:
            # Confirmed by a concurrent request, or the right code for a user
            # who may not log in (any more): either way, done.
            return ChallengeUsed()
        if challenge.attempts > attempts_before:
            # This request's attempt was counted: a wrong code.
            attempts_left = max(0, challenge.max_attempts - challenge.attempts)
            return WrongCode.for_attempts_left(attempts_left)
        if challenge.attempts >= challenge.max_attempts:
            return ChallengeExhausted()
        return ChallengeExpired()

    def perform_login(self, user: AbstractBaseUser, challenge: Challenge) -> None:
        """Log ``user`` in to this session (the session key is cycled).

        Override to skip the session in an API that answers with tokens only.
        """
        # cast: django-stubs types login() with the concrete user model.
        login(self.http_request, cast("Any", user), backend=BACKEND)

    def get_response_data(self, user: AbstractBaseUser, challenge: Challenge) -> dict[str, Any]:
        """The body of the 200 answer: ``{"verified": true, "user": {"id": pk}}``.

        The hook for sites that issue API tokens after a phone login: override,
        call ``super()`` and add the token (see ``docs/api.md``).
        """
        return {"verified": True, "user": {"id": user.pk}}
