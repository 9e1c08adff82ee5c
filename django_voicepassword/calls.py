"""Placing calls and keeping their history: the services every interface goes through.

Each service writes the :class:`~django_voicepassword.models.Call` row before
the provider is asked, so a crash in the middle of a request leaves a trace,
and records what the provider said on that row: the request id and price, or
the error code (and re-raises the typed exception). A call whose outcome cannot
be known stays ``unknown`` until :func:`reconcile_day` settles it.

Status changes from every source (a callback, ``state``, ``daily``) go through
one rule, :func:`~django_voicepassword.reconcile.record_changes`, which
:func:`apply_record` applies to one row and :func:`reconcile_day` to a whole
day in bulk: a call never moves back in its lifecycle, and only the provider's
own records (``state``, ``daily``) may correct one final status into another.

Call these outside a database transaction (not under ``ATOMIC_REQUESTS``):
the row must be committed before the provider is asked to be a trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Field, Model, Q
from django.db.models.signals import post_save, pre_save
from django.db.models.sql import InsertQuery, UpdateQuery
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from django_voicepassword.client import CallRecord, SendResult
from django_voicepassword.conf import settings
from django_voicepassword.exceptions import APIError, OutcomeUnknownError, TransportError
from django_voicepassword.gateways import get_gateway
from django_voicepassword.models import FINAL_STATUSES, BalanceSnapshot, Call, Challenge
from django_voicepassword.phone import normalize
from django_voicepassword.reconcile import ReconcileReport, reconcile_day, record_changes
from django_voicepassword.signals import balance_fetched, call_placed, call_status_changed

__all__ = [
    "ReconcileReport",
    "SmsFallbackError",
    "apply_record",
    "fetch_balance",
    "place",
    "place_flash_call",
    "place_voice_call",
    "reconcile_day",
    "refresh_call",
    "send_sms",
]

logger = logging.getLogger(__name__)


class SmsFallbackError(Exception):
    """An SMS fallback that this package refuses to pay for, and why.

    ``code`` is ``"not_placed"`` (the call has no provider id), ``"sms"`` (the
    call is itself an SMS), ``"not_final"`` (the provider says the call is
    still going on) or ``"already_sent"`` (the call has an SMS fallback).
    """

    messages: dict[str, Promise] = {
        "not_placed": _("The call was never placed, so there is no code to send."),
        "sms": _("An SMS cannot have an SMS fallback."),
        "not_final": _("The call is still going on; send the SMS once it has ended."),
        "already_sent": _("This call already has an SMS fallback."),
    }

    def __init__(self, code: str) -> None:
        self.code = code
        self.message = self.messages[code]
        super().__init__(code)

    def __str__(self) -> str:
        return str(self.message)


def _callback_url(call: Call) -> str | None:
    # Imported here: callbacks.py imports this module's apply_record.
    from django_voicepassword.callbacks import callback_url

    return callback_url(call)


def _announce(call: Call, old_status: str, source: str) -> None:
    """Send the signals of a status change once the transaction commits."""
    new_status = call.status

    def send() -> None:
        if source == "send" and new_status == Call.Status.PLACED:
            call_placed.send(sender=Call, call=call)
        call_status_changed.send(
            sender=Call, call=call, old_status=old_status, new_status=new_status, source=source
        )

    transaction.on_commit(send)


def _not_placed(call: Call, status: str, error_code: str) -> None:
    call.status = status
    call.error_code = error_code[:64]
    call.save(update_fields=["status", "error_code", "updated_at"])
    _announce(call, Call.Status.PENDING, "send")


#: Given the provider's answer, the fields of the call's challenge to write
#: with it (``None``: none); see :func:`place`.
ChallengeFields = Callable[[SendResult], dict[str, Any] | None]
_PLACED_FIELDS = ("provider_id", "price", "status", "updated_at")


_UpdateShape = tuple[type[Model], str, tuple[tuple[str, bool], ...]]
# The compiler's text per shape, and whether a None is a parameter in it (Django
# 6.0 on) or written into the text as NULL (before).
_update_texts: dict[_UpdateShape, tuple[str, bool]] = {}


def _update_sql(
    model: type[Model], pk: Any, values: dict[str, Any], using: str
) -> tuple[str, tuple[Any, ...]]:
    """The ``UPDATE`` of row ``pk`` of ``model`` to ``values``, as ``update()`` sends it.

    Django's compiler builds the text once per model, database and set of
    fields (and which values are ``None``, which older Django writes into the
    text); each call then only prepares the values as the compiler does
    (``get_db_prep_save``, and the key's ``get_db_prep_value``), which is most
    of what building the query cost a login's start.
    """
    connection = connections[using]
    shape = (model, using, tuple((name, value is None) for name, value in values.items()))
    kept = _update_texts.get(shape)
    if kept is None:
        query = UpdateQuery(model)
        query.add_update_values(values)
        query.add_q(Q(pk=pk))
        text, compiled = query.get_compiler(using).as_sql()
        kept = _update_texts[shape] = (text, len(compiled) == len(values) + 1)
    text, nulls_are_params = kept
    meta = model._meta
    params = []
    for name, value in values.items():
        field = meta.get_field(name)
        assert isinstance(field, Field)
        if value is not None or nulls_are_params:
            params.append(field.get_db_prep_save(value, connection=connection))
    assert meta.pk is not None
    params.append(meta.pk.get_db_prep_value(pk, connection))
    return text, tuple(params)


def _insert_sql(obj: Model, using: str) -> tuple[str, tuple[Any, ...]]:
    """The ``INSERT`` of ``obj`` as ``save()`` sends it, returning its primary key."""
    meta = obj._meta
    fields = [
        field
        for field in meta.local_concrete_fields
        if not field.generated and not (field is meta.auto_field and obj.pk is None)
    ]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = [meta.pk]
    [(sql, params)] = compiler.as_sql()
    return sql, tuple(params)


def _insert_call(call: Call, challenge: Any) -> None:
    """Store ``call``, and its ``challenge`` first when that is not stored yet.

    A new challenge and its first call are one statement on PostgreSQL (the
    challenge's ``INSERT`` in a ``WITH``; its primary key is made in Python,
    and the foreign key is checked at the statement's end), two elsewhere.
    ``pre_save`` and ``post_save`` are sent for both, as ``save()`` does.
    """
    using = router.db_for_write(Call)
    connection = connections[using]
    if challenge is None or not challenge._state.adding:
        call.save(force_insert=True, using=using)
        return
    if connection.vendor != "postgresql" or router.db_for_write(Challenge) != using:
        challenge.save(force_insert=True, using=using)
        call.save(force_insert=True, using=using)
        return
    for obj in (challenge, call):
        pre_save.send(sender=type(obj), instance=obj, raw=False, using=using, update_fields=None)
    challenge_sql, challenge_params = _insert_sql(challenge, using)
    call_sql, call_params = _insert_sql(call, using)
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        cursor.execute(f"WITH new AS ({challenge_sql}) {call_sql}", challenge_params + call_params)
        [call.pk] = cursor.fetchone()
    for obj in (challenge, call):
        obj._state.adding = False
        obj._state.db = using
        post_save.send(
            sender=type(obj),
            instance=obj,
            created=True,
            update_fields=None,
            raw=False,
            using=using,
        )


def _save_placed(call: Call, challenge: Any, fields: dict[str, Any] | None) -> None:
    """Store the call's answer, and ``fields`` of ``challenge`` with it.

    On PostgreSQL in one statement (the call's ``UPDATE`` in a ``WITH``, which
    runs whether or not it is read), elsewhere in two. Either way a duplicate
    request id raises ``IntegrityError`` before anything of the two is stored.
    """
    if not fields:
        call.save(update_fields=list(_PLACED_FIELDS))
        return
    using = router.db_for_write(Call)
    connection = connections[using]
    if connection.vendor != "postgresql":
        call.save(update_fields=list(_PLACED_FIELDS))
        Challenge.objects.using(using).filter(pk=challenge.pk).update(**fields)
        return
    call.updated_at = timezone.now()  # what save() does for auto_now
    placed_sql, placed = _update_sql(
        Call, call.pk, {name: getattr(call, name) for name in _PLACED_FIELDS}, using
    )
    coded_sql, coded = _update_sql(Challenge, challenge.pk, fields, using)
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        cursor.execute(f"WITH placed AS ({placed_sql}) {coded_sql}", placed + coded)


def _place(
    call: Call, send: Any, challenge: Any = None, challenge_fields: ChallengeFields | None = None
) -> SendResult:
    """Ask the provider through ``send(callback_url)`` and record the answer on ``call``.

    ``challenge_fields``: see :func:`place`.
    """
    try:
        result: SendResult = send(_callback_url(call))
    except OutcomeUnknownError:
        _not_placed(call, Call.Status.UNKNOWN, "outcome_unknown")
        raise
    except APIError as error:
        _not_placed(call, Call.Status.NOT_PLACED, error.error_code or "api_error")
        raise
    except TransportError:
        _not_placed(call, Call.Status.NOT_PLACED, "transport_error")
        raise
    call.provider_id = result.id
    call.price = result.price
    call.status = Call.Status.PLACED
    fields = challenge_fields(result) if challenge_fields is not None else None
    try:
        _save_placed(call, challenge, fields)
    except IntegrityError:
        # The provider answered with an id another row already has: keep the
        # trace, leave the outcome to reconciliation.
        logger.error("VoicePassword returned request id %s twice", result.id)
        Call.objects.filter(pk=call.pk).update(
            status=Call.Status.UNKNOWN, error_code="duplicate_provider_id", provider_id=None
        )
        raise
    for name, value in (fields or {}).items():
        setattr(challenge, name, value)
    _announce(call, Call.Status.PENDING, "send")
    return result


def place_flash_call(
    number: str,
    *,
    code: str | None = None,
    capacity: int | None = None,
    user: Any = None,
) -> Call:
    """Place a flash call to ``number``; the caller number ends in the code.

    ``code`` is a 4-digit code of the site's own; without it the provider picks
    one of ``capacity`` digits (default 4). Returns the call, status ``placed``.
    Raises :class:`~django_voicepassword.phone.InvalidPhoneNumber` for a number
    the site does not accept (nothing is written), or the provider's typed
    exception (the call is stored with its error code).
    """
    call, _result = place(Call.Channel.FLASH_CALL, number, code=code, capacity=capacity, user=user)
    return call


def place_voice_call(
    number: str,
    *,
    code: str | None = None,
    repeat: bool = False,
    ani: str | None = None,
    user: Any = None,
) -> Call:
    """Place a call in which a robot speaks ``code`` (or a code the provider picks).

    ``repeat`` speaks it twice; ``ani`` is a caller number registered in the
    account. Errors as :func:`place_flash_call`.
    """
    call, _result = place(
        Call.Channel.VOICE_CALL, number, code=code, repeat=repeat, ani=ani, user=user
    )
    return call


def place(
    channel: str,
    number: str,
    *,
    code: str | None = None,
    capacity: int | None = None,
    repeat: bool = False,
    ani: str | None = None,
    user: Any = None,
    challenge: Any = None,
    challenge_fields: ChallengeFields | None = None,
) -> tuple[Call, SendResult]:
    """Place a flash or voice call; return the call and the provider's answer.

    For code that needs the code the provider picked (``result.code``), such as
    phone verification, which also passes its ``challenge`` so that the row is
    linked to it from the start, even when the call fails. Everything else uses
    :func:`place_flash_call` or :func:`place_voice_call`. The code is never
    stored or signalled. Any other ``channel`` is a ``ValueError``, before
    anything is written.

    ``challenge`` may be a challenge not stored yet: it is stored with the
    call's row (one statement on PostgreSQL), before the provider is asked.

    ``challenge_fields`` (with ``challenge``) is given the provider's answer
    of a call placed and returns fields of ``challenge`` to store with it (the
    code's digest): written with the call's answer, in the same statement on
    PostgreSQL, and set on ``challenge``. ``None`` writes nothing more.
    """
    if channel not in (Call.Channel.FLASH_CALL, Call.Channel.VOICE_CALL):
        raise ValueError(f"place() places flash and voice calls, not {channel!r}")
    normalized = normalize(number)
    # Before the row: a broken configuration must not leave a pending call behind.
    gateway = get_gateway()
    call = Call(channel=channel, number=normalized, user=user, challenge=challenge)
    # A new challenge is stored with its call (see start_challenge).
    _insert_call(call, challenge)
    if channel == Call.Channel.FLASH_CALL:
        result = _place(
            call,
            lambda url: gateway.flash_call(
                normalized, code=code, capacity=capacity, callback_url=url
            ),
            challenge,
            challenge_fields,
        )
    else:
        result = _place(
            call,
            lambda url: gateway.voice_call(
                normalized, code=code, repeat=repeat, ani=ani, callback_url=url
            ),
            challenge,
            challenge_fields,
        )
    return call, result


def send_sms(call: Call, *, user: Any = None, challenge: Any = None) -> Call:
    """Send the code of ``call`` by SMS, once, after the call has ended.

    Costs money, so it trusts no callback: it first asks the provider for the
    call's state (:func:`refresh_call`) and refuses (:class:`SmsFallbackError`)
    unless the call has ended. A call gets one SMS fallback at most, enforced by
    a database constraint. Returns the SMS, a :class:`Call` whose ``parent`` is
    ``call``; provider errors as :func:`place_flash_call`.
    """
    if call.channel == Call.Channel.SMS:
        raise SmsFallbackError("sms")
    if not call.provider_id:
        raise SmsFallbackError("not_placed")
    refresh_call(call)
    if call.status not in FINAL_STATUSES:
        raise SmsFallbackError("not_final")
    try:
        sms = Call.objects.create(
            channel=Call.Channel.SMS,
            number=call.number,
            parent=call,
            user=user,
            challenge_id=challenge.pk if challenge is not None else call.challenge_id,
        )
    except IntegrityError:
        raise SmsFallbackError("already_sent") from None
    provider_id = call.provider_id
    _place(sms, lambda url: get_gateway().sms(provider_id, callback_url=url))
    return sms


def apply_record(call: Call, record: CallRecord, *, source: str) -> bool:
    """Apply the provider's report of ``call`` to the row; return whether the status moved.

    ``source`` is ``"callback"``, ``"state"`` or ``"daily"``. The rule is
    :func:`~django_voicepassword.reconcile.record_changes`: the status only
    moves forward (:func:`~django_voicepassword.models.status_rank`); the
    provider's own records (``state``, ``daily``) may also correct one final
    status into another and fill in the price, duration and date. An unknown
    label is kept in ``state_label`` without moving the status. Saves only
    what changed.
    """
    changes = record_changes(call, record, authoritative=source in ("state", "daily"))
    if not changes:
        return False
    old_status = call.status
    for field, value in changes.items():
        setattr(call, field, value)
    call.save(update_fields=[*changes, "updated_at"])
    from django_voicepassword import dashboard  # it imports this module

    dashboard.forget_if_finished(call.created_at)
    moved = "status" in changes
    if moved:
        _announce(call, old_status, source)
    return moved


def refresh_call(call: Call) -> Call:
    """Ask the provider for ``call``'s state and record it (``get/`` ``state``).

    A call without a provider id (never placed, or outcome unknown) is returned
    as it is: only :func:`reconcile_day` can settle it.
    """
    if call.provider_id:
        record = get_gateway().state(call.provider_id)
        apply_record(call, record, source="state")
    return call


def fetch_balance() -> BalanceSnapshot:
    """Ask the provider for the balance, store it and send ``balance_fetched``."""
    balance = get_gateway().balance()
    snapshot = BalanceSnapshot.objects.create(balance=balance.amount, currency=balance.currency)
    threshold = settings.LOW_BALANCE
    low = threshold is not None and snapshot.balance < threshold
    transaction.on_commit(
        lambda: balance_fetched.send(sender=BalanceSnapshot, snapshot=snapshot, low=low)
    )
    return snapshot
