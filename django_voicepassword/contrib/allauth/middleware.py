"""allauth's own rate limit, answered as allauth answers it wherever it is raised."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from allauth.core.exceptions import RateLimited
from allauth.core.ratelimit import respond_429

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

__all__ = ["RateLimitedMiddleware"]


class RateLimitedMiddleware:
    """Answers allauth's ``RateLimited`` with its 429 page (or headless 429), not a 500.

    allauth counts its ``verify_phone`` limit (``ACCOUNT_RATE_LIMITS``) as it
    starts a phone verification and raises ``RateLimited``; its pages catch
    that when a code is re-sent, but not during a sign-up, where a second
    sign-up by one number within the limit's window became a server error.
    List it after ``allauth.account.middleware.AccountMiddleware``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Pass the request on."""
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """allauth's 429 for its ``RateLimited``; anything else goes on."""
        if isinstance(exception, RateLimited):
            response: HttpResponse = respond_429(request)
            return response
        return None
