"""A JSON parser for untrusted bodies: size-capped, strict, and never a 500."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

from django_voicepassword.conf import settings

__all__ = ["BoundedJSONParser", "PayloadTooLarge"]


class PayloadTooLarge(APIException):
    """The body is larger than ``CALLBACK_MAX_BODY``."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "payload_too_large"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class BoundedJSONParser(JSONParser):
    """Reads at most ``CALLBACK_MAX_BODY`` bytes of strict JSON.

    Refuses with 413 a body that says or turns out to be larger, and with 400
    anything that is not strict UTF-8 JSON: ``NaN`` and ``Infinity``, and
    nesting deep enough to exhaust the parser's recursion (which the standard
    library reports as ``RecursionError``, not ``ValueError``).
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Parse the body, or raise the 4xx that says why not."""
        limit = settings.CALLBACK_MAX_BODY
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge()
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise PayloadTooLarge()
        try:
            return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ParseError(_("The body is not valid JSON.")) from exc
