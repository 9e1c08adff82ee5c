"""Refusals answered as allauth answers errors, wherever allauth's flow is when they happen."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from allauth.core.exceptions import RateLimited
from allauth.core.ratelimit import respond_429

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

__all__ = ["REFUSAL_ATTRIBUTE", "AllauthErrorsMiddleware"]

#: Where the adapter leaves the response of a refusal on the request.
REFUSAL_ATTRIBUTE = "_voicepassword_refusal"


class AllauthErrorsMiddleware:
    """Makes sure the person sees a refusal, never a 500 nor a silent success.

    - The adapter answers a refusal (a limit, the budget, a failed call) by
      raising allauth's ``ImmediateHttpResponse``; allauth's headless sign-up
      swallows it and answers as if the code was sent. The adapter also
      leaves the response on the request, and this middleware returns it in
      place of whatever the view answered.
    - allauth counts its ``verify_phone`` limit (``ACCOUNT_RATE_LIMITS``) as it
      starts a phone verification and raises ``RateLimited``; its pages catch
      that when a code is re-sent, but not during a sign-up, where a second
      sign-up by one number within the window was a server error. This
      middleware answers it with allauth's own 429 (its page, or the
      headless 429).

    List it after ``allauth.account.middleware.AccountMiddleware``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """The view's response, or the refusal it swallowed."""
        response = self.get_response(request)
        refusal: HttpResponse | None = getattr(request, REFUSAL_ATTRIBUTE, None)
        if refusal is not None and response is not refusal:
            return refusal
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """allauth's 429 for its ``RateLimited``; anything else goes on."""
        if isinstance(exception, RateLimited):
            response: HttpResponse = respond_429(request)
            return response
        return None
