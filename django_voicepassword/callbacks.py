"""Status callbacks: the signed URL given to the provider, and applying what arrives.

The provider's callbacks carry no signature, may repeat and may arrive out of
order. So the URL carries the trust instead: it names one call and is signed
with the site's ``SECRET_KEY`` (:func:`callback_url`); a request whose token
does not verify is answered 404 and writes nothing. A callback with a valid
token is untrusted all the same: it is recorded as a
:class:`~django_voicepassword.models.CallbackEvent`, and applied only through
:func:`~django_voicepassword.calls.apply_record`, which never moves a call back
in its lifecycle. Anything that costs money (an SMS fallback) asks the provider
first and does not act on a callback.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse

from django_voicepassword.calls import apply_record
from django_voicepassword.client import CallRecord
from django_voicepassword.conf import settings
from django_voicepassword.models import Call, CallbackEvent, status_for_state

__all__ = ["apply_callback", "call_id_from_token", "callback_token", "callback_url"]

_SALT = "django_voicepassword.callback"


def callback_token(call_id: int) -> str:
    """The token of the callback URL of the call with primary key ``call_id``."""
    return signing.Signer(salt=_SALT).sign(str(call_id))


def call_id_from_token(token: str) -> int | None:
    """The call's primary key if ``token`` is one of ours, else ``None``.

    Verified with ``SECRET_KEY`` and its fallbacks (``signing`` compares in
    constant time), so tokens survive a key rotation done the Django way.
    """
    try:
        value = signing.Signer(salt=_SALT).unsign(token)
    except signing.BadSignature:
        return None
    # isascii(): isdigit() alone accepts "²", which int() refuses.
    return int(value) if value.isascii() and value.isdigit() else None


def callback_url(call: Call) -> str | None:
    """The URL the provider reports ``call``'s states to (``None`` without ``CALLBACK_BASE_URL``).

    An SMS fallback reports to its parent's URL: the provider's SMS request has
    no URL of its own.
    """
    base = settings.CALLBACK_BASE_URL
    if not base:
        return None
    target = call.parent_id if call.parent_id else call.pk
    path = reverse("voicepassword:callback", kwargs={"token": callback_token(target)})
    return base.rstrip("/") + path


def apply_callback(
    call_id: int, record: CallRecord, payload: dict[str, Any], remote_addr: str | None
) -> CallbackEvent:
    """Record a callback for the call ``call_id`` (from its token) and apply it once.

    ``record`` is the parsed ``payload``. The callback may report the call
    itself or its SMS fallback (same URL); a request id that is neither is an
    orphan and changes nothing. Three queries: the call, locked; its update;
    the event. The lock serialises concurrent deliveries of one callback, and
    the event's unique constraint guarantees "applied" at most once per
    request id and state even so.
    """
    try:
        with transaction.atomic():
            call = (
                Call.objects.select_for_update()
                .filter(provider_id=record.id)
                .only(*_APPLY_FIELDS)
                .first()
            )
            outcome: CallbackEvent.Outcome
            if call is None or call_id not in (call.pk, call.parent_id):
                outcome, call = CallbackEvent.Outcome.ORPHAN, None
            elif apply_record(call, record, source="callback"):
                outcome = CallbackEvent.Outcome.APPLIED
            else:
                outcome = _not_applied(call, record)
            return CallbackEvent.objects.create(
                call=call,
                provider_id=record.id,
                state=record.state_label[:64],
                payload=payload,
                remote_addr=remote_addr,
                outcome=outcome,
            )
    except IntegrityError:
        # Another delivery of the same callback was applied first; the lock
        # should have made us see it, and the constraint is why that is sure.
        return CallbackEvent.objects.create(
            call=Call.objects.filter(provider_id=record.id).first(),
            provider_id=record.id,
            state=record.state_label[:64],
            payload=payload,
            remote_addr=remote_addr,
            outcome=CallbackEvent.Outcome.DUPLICATE,
        )


_APPLY_FIELDS = (
    "id",
    "parent_id",
    "provider_id",
    "status",
    "state_label",
    "error_code",
    "price",
    "duration",
    "provider_date",
)


def _not_applied(call: Call, record: CallRecord) -> CallbackEvent.Outcome:
    # A repeat of the current status is a duplicate; a status behind it (an
    # intermediate state after the final one) or a label no one knows is stale.
    if status_for_state(record.state) == call.status:
        return CallbackEvent.Outcome.DUPLICATE
    return CallbackEvent.Outcome.STALE
