"""The floor the login API is measured against: the same unavoidable I/O and little else.

A phone login cannot do less than this, whatever its code looks like:

* :func:`floor_start` (``POST floor/challenges/``, ``{"number": ...}``): one
  Redis round trip for the limits (a pipeline of an ``INCR`` and an
  ``EXPIRE`` per counter: the ip, network, number, prefix and global
  windows of the site's ``LIMITS``), the provider's ``send/`` with
  ``requests`` (one pooled session, as the app's client keeps), then one
  ``INSERT`` of the challenge (with the code's digest) and one of the call;
  201 ``{"id": ...}``.
* :func:`floor_confirm` (``POST floor/challenges/<id>/confirm/``,
  ``{"code": ...}``): one statement, the conditional ``UPDATE`` that consumes
  the code (right digest, not verified, not expired, attempts left) and,
  in the same round trip, reads the user whose number it is; then
  ``django.contrib.auth.login()``, which cycles the session key and stores
  the last login, and the session middleware's save. 200
  ``{"verified": true, "user": {"id": ...}}``.

The rows go to the app's own tables (``Challenge``, ``Call``), so both
sides pay for the same indexes. What the floor leaves out is what the
app's correctness needs beyond the round trips: the session binding of a
challenge (the floor finds it by its random id alone), the call row written
before the provider is asked, a wrong code's attempt counted, the limits'
HMAC-ed keys, the signals, the transaction around the login. The floor is
for the success path only; a wrong code is simply refused.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import requests
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_voicepassword.models import Call, Challenge, PhoneNumber

#: The backend the session records, as the app's login does.
BACKEND = "django_voicepassword.auth_backends.PhoneCodeBackend"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# One pooled session for the process: the app's client keeps one too.
_provider = requests.Session()


@functools.cache
def _rates() -> dict[str, list[tuple[int, int]]]:
    """``LIMITS`` as ``(count, seconds)`` per scope, read once per process."""
    rates: dict[str, list[tuple[int, int]]] = {}
    limits = cast("dict[str, str]", settings.VOICEPASSWORD["LIMITS"])
    for scope, text in limits.items():
        for rate in filter(None, text.split(",")):
            count, _, period = rate.strip().partition("/")
            amount, unit = period[:-1] or "1", period[-1]
            rates.setdefault(scope, []).append((int(count), int(amount) * _UNITS[unit]))
    return rates


@functools.cache
def _key() -> bytes:
    return hashlib.sha256(b"bench-floor:" + settings.SECRET_KEY.encode()).digest()


def _digest(challenge_id: uuid.UUID, code: str) -> str:
    return hmac.new(_key(), f"{challenge_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _within_limits(request: HttpRequest, number: str) -> bool:
    """Count the send in every window of every scope but the session's: one round trip."""
    address = str(request.META.get("REMOTE_ADDR", ""))
    identities = {
        "ip": address,
        "network": address.rsplit(".", 1)[0],
        "number": number,
        "prefix": number[:7],
        "global": "all",
    }
    now = int(time.time())
    windows = [
        (f"bench-floor:{scope}:{identity}:{seconds}:{now // seconds}", count, seconds)
        for scope, identity in identities.items()
        for count, seconds in _rates().get(scope, [])
    ]
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    pipeline = client.pipeline(transaction=False)
    for key, _count, seconds in windows:
        pipeline.incr(key)
        pipeline.expire(key, seconds)
    counted = pipeline.execute()[::2]
    return all(value <= count for value, (_, count, _) in zip(counted, windows, strict=True))


def _body(request: HttpRequest) -> dict[str, Any]:
    data = json.loads(request.body)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


@csrf_exempt
@require_POST
def floor_start(request: HttpRequest) -> HttpResponse:
    """Count the limits, place a flash call, store the challenge and the call."""
    try:
        number = str(_body(request)["number"]).lstrip("+")
    except (ValueError, KeyError):
        return JsonResponse({"code": "invalid"}, status=400)
    if not _within_limits(request, number):
        return JsonResponse({"code": "limit_exceeded"}, status=429)
    conf = settings.VOICEPASSWORD
    answer = _provider.post(
        conf["API_URL"] + "send/",
        data=json.dumps({"number": number, "capacity": "4"}),
        headers={"Authorization": conf["API_KEY"], "Content-Type": "application/json"},
        timeout=(3.05, 10),
        allow_redirects=False,
    )
    sent = answer.json()
    if sent.get("result") != "ok" or not sent.get("code"):
        return JsonResponse({"code": "service_unavailable"}, status=503)
    now = timezone.now()
    challenge = Challenge(
        number=number,
        channel=Call.Channel.FLASH_CALL,
        code_length=4,
        sends=1,
        expires_at=now + timedelta(minutes=5),
        resend_at=now + timedelta(seconds=30),
    )
    challenge.code_digest = _digest(challenge.pk, str(sent["code"]))
    challenge.save(force_insert=True)
    Call.objects.create(
        provider_id=str(sent["id"]),
        channel=Call.Channel.FLASH_CALL,
        number=number,
        status=Call.Status.PLACED,
        price=Decimal(str(sent["price"])),
        challenge=challenge,
    )
    return JsonResponse({"id": str(challenge.pk)}, status=201)


@functools.cache
def _confirm_sql() -> str:
    user = get_user_model()._meta
    # The names are the models' own table and column names, never input.
    return (
        f"WITH confirmed AS (UPDATE {Challenge._meta.db_table} "  # noqa: S608
        "SET verified_at = now(), attempts = attempts + 1 "
        "WHERE id = %s AND code_digest = %s AND verified_at IS NULL "
        "AND expires_at > now() AND attempts < max_attempts RETURNING number) "
        f"SELECT u.* FROM {user.db_table} u "
        f"JOIN {PhoneNumber._meta.db_table} p ON p.user_id = u.{user.pk.column} "
        "JOIN confirmed c ON c.number = p.number"
    )


@csrf_exempt
@require_POST
def floor_confirm(request: HttpRequest, challenge_id: uuid.UUID) -> HttpResponse:
    """Consume the code and find its user in one statement; log the user in."""
    try:
        code = str(_body(request)["code"])
    except (ValueError, KeyError):
        return JsonResponse({"code": "invalid"}, status=400)
    model = get_user_model()
    digest = _digest(challenge_id, code)
    users = list(model._default_manager.raw(_confirm_sql(), [challenge_id, digest]))
    if not users:
        return JsonResponse({"code": "wrong_code"}, status=400)
    login(request, users[0], backend=BACKEND)
    return JsonResponse({"verified": True, "user": {"id": users[0].pk}})
