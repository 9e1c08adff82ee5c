"""Parsers for untrusted bodies: size-capped, strict, and never a 500."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import parse_qsl

from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser, JSONParser

from django_voicepassword.conf import settings

__all__ = [
    "MAX_DEPTH",
    "BoundedJSONParser",
    "CallbackParser",
    "PayloadTooLarge",
    "refuse_declared_too_large",
]

#: How deeply a body may nest arrays and objects. A callback is one flat
#: object; the limit keeps every payload storable (SQLite's JSON functions
#: refuse more than 1000 levels, which the parser would otherwise accept).
MAX_DEPTH = 32


class PayloadTooLarge(APIException):
    """The body is larger than ``CALLBACK_MAX_BODY``."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "payload_too_large"


def refuse_declared_too_large(meta: Mapping[str, Any]) -> None:
    """Raise :class:`PayloadTooLarge` if ``Content-Length`` exceeds ``CALLBACK_MAX_BODY``.

    Called by the view before the body is touched: DRF reads a whole JSON body
    into memory before any parser sees it. ``Content-Length`` is read as Django
    reads it (``int()``, unreadable meaning none), so a value Django would
    honour cannot slip past.
    """
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if declared > settings.CALLBACK_MAX_BODY:
        raise PayloadTooLarge()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON but reads as infinity, which no database stores as JSON.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


#: The strict decoder, built once: json.loads would build one per body for its hooks.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _unstorable(value: Any) -> str | None:
    """Why the parsed ``value`` could not be stored as a JSON payload, or ``None``.

    Iterative, so that checking a deep value cannot itself exhaust the stack.
    PostgreSQL refuses ``\\u0000`` in text and JSON; no backend encodes an
    unpaired surrogate (``"\\ud800"``, which ``json`` accepts) as UTF-8.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a string holds the character \\u0000"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds an unpaired surrogate"
    return None


def _may_be_unstorable(text: str) -> bool:
    """Whether the JSON ``text``, which parsed, needs :func:`_unstorable` at all.

    Only an escape puts a NUL or an unpaired surrogate into a parsed string:
    strict JSON has no raw control characters, and text decoded as strict
    UTF-8 has no surrogates. And nesting deeper than :data:`MAX_DEPTH` takes
    more brackets than that. Most bodies have neither, and skip the walk.
    """
    return "\\u" in text or text.count("[") + text.count("{") > MAX_DEPTH


class BoundedJSONParser(JSONParser):
    """Reads at most ``CALLBACK_MAX_BODY`` bytes of strict JSON.

    Refuses with 413 a body that says or turns out to be larger, and with 400
    anything that is not strict UTF-8 JSON: ``NaN``, ``Infinity`` and numbers
    too large for a float, nesting deeper than :data:`MAX_DEPTH` or deep enough
    to exhaust the parser's recursion (which the standard library reports as
    ``RecursionError``, not ``ValueError``), and strings no database stores
    (``\\u0000``, unpaired surrogates). The 400's message says which.
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Parse the body, or raise the 4xx that says why not."""
        return _parse_json(_read_bounded(stream, parser_context))


def _read_bounded(stream: IO[Any] | None, parser_context: Mapping[str, Any] | None) -> bytes:
    """The body, or :class:`PayloadTooLarge` if it says or turns out to be over the limit."""
    limit = settings.CALLBACK_MAX_BODY
    request = (parser_context or {}).get("request")
    if request is not None:
        refuse_declared_too_large(request.META)
    body: bytes = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise PayloadTooLarge()
    return body


def _parse_json(body: bytes) -> Any:
    """``body`` as strict, storable JSON, or a :class:`ParseError` that says why not."""
    try:
        text = body.decode("utf-8")
        if text.startswith("\ufeff"):
            # What json.loads says of it; the decoder alone would not say why.
            raise ValueError("Unexpected UTF-8 BOM")
        data = _DECODER.decode(text)
    except UnicodeDecodeError as exc:
        reason: str | None = f"not UTF-8 at byte {exc.start}"
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:
        reason = str(exc)
    else:
        reason = _unstorable(data) if _may_be_unstorable(text) else None
        if reason is None:
            return data
    message = _("The body is not valid JSON.")
    raise ParseError(f"{message} ({reason})")


#: More fields than a callback has, with room for extras; a bound for parse_qsl.
_MAX_FORM_FIELDS = 64


def _parse_form(body: bytes) -> dict[str, str]:
    """``body`` as ``application/x-www-form-urlencoded`` fields, or a :class:`ParseError`.

    Strict: UTF-8 only, every field ``name=value``, no name twice (which
    value would be the status?), nothing a database cannot store.
    """
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError as exc:  # raw or %-escaped bytes that are not UTF-8
        reason: str | None = f"not UTF-8 ({exc.reason})"
    except ValueError as exc:
        reason = str(exc)[:60]
    else:
        data = dict(pairs)
        if len(data) < len(pairs):
            reason = "a field is given twice"
        else:
            reason = _unstorable(data)
            if reason is None:
                return data
    message = _("The body is neither JSON nor form fields.")
    raise ParseError(f"{message} ({reason})")


def _is_json_type(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


class CallbackParser(BaseParser):
    """The body of a status callback, whatever its ``Content-Type`` says.

    The provider's document says only that statuses are sent "in JSON
    format", and nothing about retries: a callback refused for its media type
    is lost. So a body that is a JSON object or array, or is declared JSON, is
    read as JSON (:class:`BoundedJSONParser`'s rules) whether it came as
    ``application/json``, ``text/plain``, form-encoded or without a type; any
    other body is read as ``application/x-www-form-urlencoded`` fields, which
    is what PHP's curl sends by default. Multipart bodies, which would need an
    upload handler, are refused with 415. The size limit and the 400s are
    those of :class:`BoundedJSONParser`.
    """

    media_type = "*/*"

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Parse the body as JSON or as form fields, or raise the 4xx that says why not."""
        base = (media_type or "").split(";", 1)[0].strip().lower()
        if base.startswith("multipart/"):
            raise UnsupportedMediaType(media_type or "")
        body = _read_bounded(stream, parser_context)
        if _is_json_type(base) or body.lstrip()[:1] in (b"{", b"["):
            return _parse_json(body)
        return _parse_form(body)
