"""OpenAPI descriptions of the login API, for drf-spectacular when it is installed.

``pip install django-voicepassword[openapi]`` installs drf-spectacular; the
site then serves the schema as usual (``docs/api.md``). Without it every
decorator here leaves the view as it is and the app works the same: nothing
else imports drf-spectacular.

The provider's callback endpoint is left out of the schema: its URL carries a
secret per call and no client of the site's API calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django_voicepassword.api.login_serializers import (
    ChallengeConfirmSerializer,
    ChallengeResendSerializer,
    ChallengeSerializer,
    ChallengeStartSerializer,
    ConfirmedSerializer,
    ErrorSerializer,
    WrongCodeSerializer,
)

__all__ = ["AVAILABLE", "confirm", "detail", "resend", "start"]

F = TypeVar("F", bound=Callable[..., Any])

try:
    from drf_spectacular.extensions import OpenApiViewExtension
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import (
        OpenApiParameter,
        OpenApiResponse,
        extend_schema,
    )
except ImportError:  # pragma: no cover  (the tests run with the extra installed)
    AVAILABLE = False
else:
    AVAILABLE = True


def _unchanged(function: F) -> F:
    return function


def _describe(**kwargs: Any) -> Callable[[F], F]:
    """``extend_schema(**kwargs)`` with the tag and the common errors; a no-op without it."""
    if not AVAILABLE:
        return _unchanged
    responses = {
        400: OpenApiResponse(
            OpenApiTypes.OBJECT,
            description=(
                'Field errors, DRF\'s shape: {"number": ["Enter a valid phone number."]}; '
                'or a body that could not be read: {"detail": ..., "code": "parse_error"}.'
            ),
        ),
        404: OpenApiResponse(ErrorSerializer, description="No such challenge in this session."),
        **kwargs.pop("responses"),
    }
    if not kwargs.pop("has_id", True):
        del responses[404]
    decorate: Callable[[F], F] = extend_schema(
        tags=["voicepassword"], responses=responses, **kwargs
    )
    return decorate


def _challenge_id() -> list[Any]:
    if not AVAILABLE:
        return []
    return [
        OpenApiParameter(
            "challenge_id",
            OpenApiTypes.UUID,
            OpenApiParameter.PATH,
            description="The id from the start answer.",
        )
    ]


def _limited(description: str) -> Any:
    if not AVAILABLE:
        return None
    return OpenApiResponse(
        ErrorSerializer, description=description + " The Retry-After header says when."
    )


def _provider_failed() -> Any:
    if not AVAILABLE:
        return None
    return OpenApiResponse(
        ErrorSerializer, description="The provider refused or could not be reached."
    )


def _login_unavailable() -> Any:
    if not AVAILABLE:
        return None
    return OpenApiResponse(
        ErrorSerializer,
        description="The login could not be stored (the database is locked or down); "
        "the code is not used up: send it again after Retry-After.",
    )


#: ``POST challenges/``
start = _describe(
    operation_id="voicepassword_challenge_start",
    summary="Send a code to a phone number",
    request=ChallengeStartSerializer,
    has_id=False,
    responses={
        201: ChallengeSerializer,
        403: ErrorSerializer,
        429: _limited("A limit refused to send a code."),
        503: _provider_failed(),
    },
)

#: ``GET challenges/<id>/``
detail = _describe(
    operation_id="voicepassword_challenge_detail",
    summary="Show a challenge",
    parameters=_challenge_id(),
    responses={200: ChallengeSerializer},
)

#: ``POST challenges/<id>/resend/``
resend = _describe(
    operation_id="voicepassword_challenge_resend",
    summary="Send another code, by the same or another channel",
    parameters=_challenge_id(),
    request=ChallengeResendSerializer,
    responses={
        200: ChallengeSerializer,
        410: ErrorSerializer,
        429: _limited("Too early (cooldown) or a limit refused."),
        503: _provider_failed(),
    },
)

#: ``POST challenges/<id>/confirm/``
confirm = _describe(
    operation_id="voicepassword_challenge_confirm",
    summary="Check the code; log in, or add the number to the user's",
    parameters=_challenge_id(),
    request=ChallengeConfirmSerializer,
    responses={
        200: ConfirmedSerializer,
        400: WrongCodeSerializer,
        410: ErrorSerializer,
        503: _login_unavailable(),
    },
)


if AVAILABLE:

    class _CallbackViewSchema(OpenApiViewExtension):  # type: ignore[no-untyped-call]
        """Keeps the provider's callback endpoint out of the site's API schema."""

        target_class = "django_voicepassword.api.views.CallbackView"

        def view_replacement(self) -> Any:
            @extend_schema(exclude=True)
            class Excluded(self.target_class):  # type: ignore[name-defined,misc]
                pass

            return Excluded
