"""The status-callback endpoint the provider POSTs to."""

from __future__ import annotations

import functools
import ipaddress
import logging
from typing import Any

from django.db import OperationalError, transaction
from django.http import Http404, HttpResponse
from django.utils.decorators import method_decorator
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_voicepassword.api.parsers import CallbackParser, refuse_declared_too_large
from django_voicepassword.api.serializers import validate_callback
from django_voicepassword.callbacks import apply_callback, call_id_from_token
from django_voicepassword.conf import settings
from django_voicepassword.net import client_address

__all__ = ["CallbackView"]

logger = logging.getLogger(__name__)

#: Seconds a callback refused for an unavailable database is asked to wait.
CALLBACK_RETRY_AFTER = 5


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class CallbackView(APIView):
    """``POST <token>/``: one status callback from the provider.

    No login and no CSRF (the provider has neither); the signed token in the
    URL is the authentication, checked before the body is read: a bad one is
    404 and writes nothing. Then the optional address allowlist (403), the
    body (JSON whatever its content type, or form fields:
    :class:`~django_voicepassword.api.parsers.CallbackParser`; multipart: 415;
    at most ``CALLBACK_MAX_BODY`` bytes: 413; strict fields: 400), and the
    callback is stored and applied once
    (:func:`~django_voicepassword.callbacks.apply_callback`: on PostgreSQL,
    one statement). Any input gets a 2xx or a 4xx, never a 5xx; a database
    that is locked or unreachable gets 503 with ``Retry-After``, stores
    nothing and is logged at warning.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    parser_classes = [CallbackParser]
    #: The one parser :meth:`post` reads the body with (stateless, shared).
    _parser = CallbackParser()
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        """Answer JSON whatever the request's ``Accept`` says, without reading it.

        The provider reads only the status code; refusing a callback with 406
        over an ``Accept: text/html`` would lose it.
        """
        renderer = self.get_renderers()[0]
        return renderer, renderer.media_type

    def perform_authentication(self, request: Request) -> None:
        """Nothing to authenticate: the token in the URL is checked by :meth:`post`."""

    def post(self, request: Request, token: str) -> HttpResponse:
        """Verify, validate, store and apply one callback."""
        call_id = call_id_from_token(token)
        if call_id is None:
            raise Http404
        address = client_address(request)
        allowed = settings.CALLBACK_ALLOWED_IPS
        if allowed and (
            address is None or not any(ipaddress.ip_address(address) in net for net in allowed)
        ):
            logger.warning("VoicePassword callback refused from %s", address)
            raise PermissionDenied
        # Before the body is read: no use reading what will be refused.
        refuse_declared_too_large(request.META)
        # The body parsed once, by the view's own parser, and validated by the
        # serializer's rules without a serializer: request.data's negotiation
        # and wrapping and a serializer instance per callback cost about a
        # third of the view (docs/decisions.md). Same parser, same 4xx.
        # No body at all is no fields, as request.data would have it.
        stream = request.stream
        data = (
            {}
            if stream is None
            else self._parser.parse(stream, request.content_type, {"request": request})
        )
        validated = validate_callback(data)
        try:
            event = apply_callback(call_id, validated["record"], dict(data), address)
        except OperationalError as error:
            # The database is locked past its timeout or unreachable: a state
            # of the server, not of the callback. apply_callback is one
            # transaction (or one statement), so nothing of it was stored; 503
            # says "try again", where a 500 would say the callback is at fault.
            logger.warning(
                "VoicePassword callback for call %s not stored, database unavailable: %s",
                call_id,
                error,
            )
            return Response(
                {"result": "error", "detail": "database unavailable, retry later"},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": str(CALLBACK_RETRY_AFTER)},
            )
        # The answer rendered once per outcome, not per callback: a Response
        # built and rendered by DRF cost about 90 us of the callback.
        return HttpResponse(_answer(str(event.outcome)), content_type=JSONRenderer.media_type)


@functools.cache
def _answer(outcome: str) -> bytes:
    """The body answering a stored (or dropped) callback: DRF's JSON, rendered once."""
    return JSONRenderer().render({"result": "ok", "outcome": outcome})
