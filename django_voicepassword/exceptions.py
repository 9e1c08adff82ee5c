"""Errors raised when talking to VoicePassword.

This module imports nothing from Django, so that :mod:`django_voicepassword.client`
stays usable from any Python program. The configuration error lives in
:mod:`django_voicepassword.conf`: it subclasses Django's ``ImproperlyConfigured``
and stays outside :class:`VoicePasswordError` on purpose, so that no handler that
tolerates provider failures can swallow a broken configuration.

The hierarchy::

    VoicePasswordError
    ├── APIError                  the provider answered {"result": "error", ...}
    │   ├── UnknownRequestError   unknown_request
    │   ├── ...                   one class per documented error_code
    │   └── DateIsEmptyError      Date_is_Empty
    └── TransportError            network failure, HTTP 5xx, an answer that is not JSON
        └── OutcomeUnknownError   a send/ whose outcome cannot be known: never retry it
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ERROR_CLASSES",
    "APIError",
    "AniPhoneNotValidError",
    "AuthorisationFailedError",
    "CodeNotValidError",
    "DateIsEmptyError",
    "IdNotFoundError",
    "NotEnoughMoneyError",
    "NumberInSpamListError",
    "NumberIsEmptyError",
    "NumberNotPermittedError",
    "NumberNotValidError",
    "OutcomeUnknownError",
    "TransportError",
    "UnknownRequestError",
    "UserDisabledError",
    "VoicePasswordError",
]


class VoicePasswordError(Exception):
    """Base of every error that comes from talking to the provider.

    ``endpoint`` is ``"send"`` or ``"get"`` (or ``None`` when nothing was sent);
    ``status`` the HTTP status when an answer arrived; ``response`` the decoded
    answer when it was JSON. None of them ever holds the API key.
    """

    default_message: ClassVar[str] = "VoicePassword request failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        response: Any = None,
    ) -> None:
        self.message = message or self.default_message
        self.endpoint = endpoint
        self.status = status
        self.response = response
        super().__init__(self.message)


class APIError(VoicePasswordError):
    """The provider refused the request with ``{"result": "error", "error_code": ...}``.

    Each documented ``error_code`` has a subclass; an undocumented code raises
    :class:`APIError` itself with the code kept in ``error_code``. ``local`` is
    true when the client refused the arguments before sending anything (the
    provider would have answered with this code).
    """

    error_code: str = ""
    default_message = "VoicePassword refused the request"

    def __init__(
        self,
        message: str | None = None,
        *,
        error_code: str | None = None,
        local: bool = False,
        endpoint: str | None = None,
        status: int | None = None,
        response: Any = None,
    ) -> None:
        if error_code is not None:
            self.error_code = error_code
        self.local = local
        super().__init__(message, endpoint=endpoint, status=status, response=response)

    def __str__(self) -> str:
        return f"{self.message} ({self.error_code or 'no error_code'})"

    @classmethod
    def for_code(cls, error_code: str, message: str | None = None, **kwargs: Any) -> APIError:
        """Build the exception that ``error_code`` maps to (``APIError`` if unknown)."""
        klass = ERROR_CLASSES.get(error_code, APIError)
        return klass(message, error_code=error_code, **kwargs)


class UnknownRequestError(APIError):
    """``unknown_request``: the request was malformed."""

    error_code = "unknown_request"
    default_message = "Malformed request"


class AuthorisationFailedError(APIError):
    """``authorisation_failed``: the API key was refused."""

    error_code = "authorisation_failed"
    default_message = "The API key was refused"


class UserDisabledError(APIError):
    """``user_disabled``: the provider account is blocked."""

    error_code = "user_disabled"
    default_message = "The provider account is blocked"


class NumberIsEmptyError(APIError):
    """``number_is_empty``: the number is missing or malformed."""

    error_code = "number_is_empty"
    default_message = "The subscriber number is missing or malformed"


class NumberNotValidError(APIError):
    """``number_not_valid``: the provider could not route the number."""

    error_code = "number_not_valid"
    default_message = "The destination of the number could not be determined"


class NumberNotPermittedError(APIError):
    """``number_not_permitted``: calls to this destination are forbidden."""

    error_code = "number_not_permitted"
    default_message = "Calls to this destination are forbidden"


class NumberInSpamListError(APIError):
    """``number_in_spam_list``: the number is on the provider's spam list."""

    error_code = "number_in_spam_list"
    default_message = "The number is on the spam list"


class NotEnoughMoneyError(APIError):
    """``not_enough_money``: the account balance is too low."""

    error_code = "not_enough_money"
    default_message = "The account balance is too low"


class AniPhoneNotValidError(APIError):
    """``ani_phone_not_valid``: the caller number is not registered in the account."""

    error_code = "ani_phone_not_valid"
    default_message = "The caller number is not registered in the account"


class CodeNotValidError(APIError):
    """``code_not_valid``: the code (or code length) is malformed."""

    error_code = "code_not_valid"
    default_message = "The code is malformed"


class IdNotFoundError(APIError):
    """``ID_Not_Found``: no request with this id."""

    error_code = "ID_Not_Found"
    default_message = "Unknown request id"


class DateIsEmptyError(APIError):
    """``Date_is_Empty``: a daily report was asked for without a date."""

    error_code = "Date_is_Empty"
    default_message = "No date given for the daily report"


#: ``error_code`` → exception class, for both endpoints.
ERROR_CLASSES: dict[str, type[APIError]] = {
    klass.error_code: klass
    for klass in (
        UnknownRequestError,
        AuthorisationFailedError,
        UserDisabledError,
        NumberIsEmptyError,
        NumberNotValidError,
        NumberNotPermittedError,
        NumberInSpamListError,
        NotEnoughMoneyError,
        AniPhoneNotValidError,
        CodeNotValidError,
        IdNotFoundError,
        DateIsEmptyError,
    )
}


class TransportError(VoicePasswordError):
    """The provider could not be reached or did not answer with JSON.

    Raised for connection failures, HTTP 5xx and answers that are not a JSON
    object. For ``get/`` it is raised after the retries are spent. For ``send/``
    it means no call was placed (nothing reached the provider); when that cannot
    be known (an HTTP 5xx without the provider's refusal among others),
    :class:`OutcomeUnknownError` is raised instead.
    """

    default_message = "VoicePassword could not be reached"


class OutcomeUnknownError(TransportError):
    """A ``send/`` request may or may not have placed (and billed) a call.

    The request went out but no usable answer came back: a read timeout, a
    connection dropped after the body was sent, an HTTP 5xx without the
    provider's refusal (a proxy's 502 can follow a placed call), or an answer
    that could not be read. It is never retried automatically, because a retry can place and bill
    a second call; the outcome is settled later through ``state``/``daily``.
    Catch it before :class:`TransportError` when the difference matters.
    """

    default_message = "The call may or may not have been placed"
