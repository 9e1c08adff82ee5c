"""The views the callback endpoint is measured against, and the worker header.

* :func:`bare`: plain Django, the floor: read the JSON body, insert one row
  with one INSERT, answer JSON.
* :class:`DrfReferenceView`: the smallest DRF view that does the same through
  a six-field serializer, for scale (the issue quotes about 0.57 of the bare
  view for it on a 2-core machine).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callbacks_site.models import BareEvent


def worker_header(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Middleware: ``X-Bench-Worker`` names the process that answered."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        # Read at request time: the module may be imported before the fork.
        response["X-Bench-Worker"] = str(os.getpid())
        return response

    return middleware


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    """``POST``: store the JSON body as one :class:`BareEvent` (one INSERT)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        payload = json.loads(request.body)
    except ValueError:
        return JsonResponse({"result": "error"}, status=400)
    if not isinstance(payload, dict):
        return JsonResponse({"result": "error"}, status=400)
    BareEvent.objects.create(
        provider_id=str(payload.get("id", ""))[:32],
        state=str(payload.get("state", ""))[:64],
        payload=payload,
        remote_addr=request.META.get("REMOTE_ADDR"),
    )
    return JsonResponse({"result": "ok"})


class _SixFields(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField(max_length=32)
    number = serializers.CharField(max_length=64)
    state = serializers.CharField(max_length=64)
    duration = serializers.CharField(max_length=64, required=False)
    price = serializers.CharField(max_length=64, required=False)
    date = serializers.CharField(max_length=64, required=False)


class DrfReferenceView(APIView):
    """``POST``: validate six fields with a DRF serializer, insert one :class:`BareEvent`."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    def post(self, request: Request) -> Response:
        """Validate and store the body."""
        serializer = _SixFields(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        BareEvent.objects.create(
            provider_id=data["id"],
            state=data["state"],
            payload=request.data,
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
        return Response({"result": "ok"})
