"""Status callbacks: the signed URL given to the provider, and applying what arrives.

The provider's callbacks carry no signature, may repeat and may arrive out of
order. So the URL carries the trust instead: it names one call and is signed
with the site's ``SECRET_KEY`` (:func:`callback_url`); a request whose token
does not verify is answered 404 and writes nothing. A callback with a valid
token is untrusted all the same: it is recorded as a
:class:`~django_voicepassword.models.CallbackEvent`, and applied only by the
rule of :func:`~django_voicepassword.reconcile.record_changes`, which never
moves a call back in its lifecycle. Anything that costs money (an SMS
fallback) asks the provider first and does not act on a callback.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from django.conf import settings as django_settings
from django.core import signing
from django.core.signals import setting_changed
from django.db import IntegrityError, ProgrammingError, connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes

from django_voicepassword.client import CallRecord
from django_voicepassword.conf import settings
from django_voicepassword.models import Call, CallbackEvent, status_for_state
from django_voicepassword.reconcile import ERROR_CODE_STATUSES, overwritable_by, record_changes
from django_voicepassword.signals import call_status_changed, callback_received

__all__ = ["apply_callback", "call_id_from_token", "callback_token", "callback_url"]

logger = logging.getLogger(__name__)

_SALT = "django_voicepassword.callback"


class _KeyedSigner(signing.Signer):
    """A :class:`~django.core.signing.Signer` whose HMAC keys are derived once.

    Django's signer derives the HMAC key from the secret on every signature
    (``salted_hmac``: a SHA-256 of salt and secret, then the HMAC's own key
    schedule), for the key and for each fallback an unsigning tries. This one
    does that once per key, keeps the keyed HMAC and copies it per signature:
    the same signatures (a test holds it to Django's), for a fraction of the
    cost of a callback's token check.
    """

    def __init__(self, *, key: str | bytes, fallback_keys: list[str | bytes], salt: str) -> None:
        super().__init__(key=key, fallback_keys=fallback_keys, salt=salt, algorithm="sha256")
        key_salt = force_bytes(salt + "signer")
        self._macs = {
            secret: hmac.new(
                hashlib.sha256(key_salt + force_bytes(secret)).digest(), digestmod=hashlib.sha256
            )
            for secret in (self.key, *self.fallback_keys)
        }

    def signature(self, value: str | bytes, key: str | bytes | None = None) -> str:
        """The same signature as Django's, from the HMAC keyed in advance."""
        mac = self._macs.get(key or self.key)
        if mac is None:
            return super().signature(value, key)
        mac = mac.copy()
        mac.update(force_bytes(value))
        return signing.b64_encode(mac.digest()).decode()


#: The signer per (SECRET_KEY, SECRET_KEY_FALLBACKS), built once: see
#: :class:`_KeyedSigner`. Keyed by the settings so that a rotated key is a new
#: signer; emptied on ``setting_changed``.
_signers: dict[tuple[str | bytes, tuple[str | bytes, ...]], signing.Signer] = {}


def _signer() -> signing.Signer:
    key = (django_settings.SECRET_KEY, tuple(django_settings.SECRET_KEY_FALLBACKS))
    signer = _signers.get(key)
    if signer is None:
        # Built with the key explicitly: the settings it is cached by are the
        # settings it signs with. A handful of keys a process at most.
        _signers.clear()
        signer = _signers[key] = _KeyedSigner(key=key[0], fallback_keys=list(key[1]), salt=_SALT)
    return signer


@receiver(setting_changed)
def _forget_signer(*, setting: str, **kwargs: Any) -> None:
    if setting in ("SECRET_KEY", "SECRET_KEY_FALLBACKS"):
        _signers.clear()


def callback_token(call_id: int) -> str:
    """The token of the callback URL of the call with primary key ``call_id``."""
    return _signer().sign(str(call_id))


def call_id_from_token(token: str) -> int | None:
    """The call's primary key if ``token`` is one of ours, else ``None``.

    Verified with ``SECRET_KEY`` and its fallbacks (``signing`` compares in
    constant time), so tokens survive a key rotation done the Django way.
    """
    try:
        value = _signer().unsign(token)
    except signing.BadSignature:
        return None
    # isascii(): isdigit() alone accepts "²", which int() refuses.
    return int(value) if value.isascii() and value.isdigit() else None


def callback_url(call: Call) -> str | None:
    """The URL the provider reports ``call``'s states to (``None`` without ``CALLBACK_BASE_URL``).

    An SMS fallback reports to its parent's URL, which its ``send/`` request
    carries too: that way its states arrive at the same place whether or not
    the provider honours the URL of an SMS request, and the view accepts them
    there under the SMS's own request id.
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
    orphan and changes nothing. The rule is
    :func:`~django_voicepassword.reconcile.record_changes`'s for a
    non-authoritative source: the status only moves forward.

    On PostgreSQL this is one statement in autocommit (:func:`_apply_in_one`):
    the call locked, updated if it is behind the callback, and the event
    inserted with its outcome. Elsewhere, and for a label no one knows, it is
    three queries in a transaction: the call, locked; its update; the event.
    Either way the row lock serialises concurrent deliveries of one callback,
    and the event's unique constraint guarantees "applied" at most once per
    request id and state even so.

    A URL keeps ``CALLBACK_MAX_EVENTS`` events at most (counted by
    ``url_call``; concurrent deliveries may pass the count by as many as run
    at once): a leaked token must not let anyone fill the database. A callback
    over the limit changes nothing and is not stored: the returned event is
    unsaved, with the outcome ``dropped``, and the call's ``callbacks_dropped``
    goes up by one. So does a callback to the URL of a call that is gone.

    ``call_status_changed`` is sent once the change is committed, and only if
    someone listens; on PostgreSQL the statement then also returns the
    updated row for the receivers (no query more, but more to read). While
    someone listens, the deliveries of one call in this process take turns
    from the change to its signal (:func:`_turn`), so that receivers hear of
    a call's changes in their order; across processes the signals follow
    the commits, which the row lock puts in that order.

    ``callback_received`` is sent for every callback this stores or drops,
    with its outcome, once committed.
    """
    alias = router.db_for_write(CallbackEvent)
    connection = connections[alias]
    listened = call_status_changed.has_listeners(Call)
    # Outside autocommit the signals wait for the caller's commit anyway, and
    # holding a turn across the caller's transaction could deadlock.
    turn = _turn(call_id) if listened and connection.get_autocommit() else None
    with turn.lock if turn is not None else contextlib.nullcontext():
        event = _apply(connection, call_id, record, payload, remote_addr, listened=listened)
    if callback_received.has_listeners(CallbackEvent):
        # After the commit, like the signals of a change; in autocommit, now.
        transaction.on_commit(
            lambda: callback_received.send(
                sender=CallbackEvent, event=event, outcome=event.outcome, state=record.state
            ),
            using=connection.alias,
        )
    return event


def _apply(
    connection: BaseDatabaseWrapper,
    call_id: int,
    record: CallRecord,
    payload: dict[str, Any],
    remote_addr: str | None,
    *,
    listened: bool,
) -> CallbackEvent:
    alias = connection.alias
    try:
        if connection.vendor == "postgresql" and record.state is not None:
            return _apply_in_one(
                connection, call_id, record, payload, remote_addr, listened=listened
            )
        return _apply_with_orm(alias, call_id, record, payload, remote_addr, listened=listened)
    except IntegrityError:
        # Another delivery of the same callback was applied first; the lock
        # should have made us see it, and the constraint is why that is sure.
        # Nothing of this delivery was written: the statement or the
        # transaction was rolled back whole.
        calls = Call.objects.using(alias)
        return CallbackEvent.objects.using(alias).create(
            call_id=calls.filter(provider_id=record.id).values_list("pk", flat=True).first(),
            url_call_id=calls.filter(pk=call_id).values_list("pk", flat=True).first(),
            provider_id=record.id,
            state=record.state_label[:64],
            payload=payload,
            remote_addr=remote_addr,
            outcome=CallbackEvent.Outcome.DUPLICATE,
        )


# --------------------------------------------------------------------------- PostgreSQL


def _apply_in_one(
    connection: BaseDatabaseWrapper,
    call_id: int,
    record: CallRecord,
    payload: dict[str, Any],
    remote_addr: str | None,
    *,
    listened: bool,
    through_function: bool = True,
) -> CallbackEvent:
    """Apply a callback of a known state in one statement (PostgreSQL).

    The statement calls :data:`FUNCTION`, which migration 0007 installs (and
    0008 replaces with one that applies the usual callback, when no one
    listens, with one UPDATE that finds and locks the row; 0009 checks the
    cap with one index probe instead of a count; 0010 updates a locked call
    only when the callback moves it): the same work as
    :func:`_statement`'s, whose plans PL/pgSQL keeps per connection, so
    that PostgreSQL does not plan it on every callback (behind any pooler:
    it prepares nothing on the session). The rule is
    passed in (:func:`~django_voicepassword.reconcile.overwritable_by`), not
    frozen in the function. Without the function (new code on a database
    not yet migrated) or with ``through_function`` false, the generated
    statement does it.

    In autocommit the statement is its own transaction: no BEGIN or COMMIT
    round trips. Inside the caller's transaction (``ATOMIC_REQUESTS``, a
    test) it runs in a savepoint, so that a unique violation leaves that
    transaction usable.
    """
    new_status = status_for_state(record.state)
    assert new_status is not None
    label = record.state_label[:64]
    now = timezone.now()
    params: dict[str, Any] = {
        "provider_id": record.id,
        "token_call": call_id,
        "cap": settings.CALLBACK_MAX_EVENTS,
        "label": label,
        "payload": _payload_field().get_db_prep_save(payload, connection),
        "remote_addr": remote_addr,
        "now": now,
        "price": record.price,
        "duration": record.duration,
        "date": record.date,
    }
    result = None
    if through_function:
        params.update(
            status=new_status.value,
            behind=_behind(new_status),
            error_code_statuses=_ERROR_CODE_STATUSES,
            row=listened,
        )
        try:
            result = _run(connection, _function_call(row=listened), params)
        except ProgrammingError as error:
            if not _is_missing_function(error):
                raise
            _warn_missing_function()
            through_function = False
    if not through_function:
        # Whoever listens gets the row as the statement left it, returned by
        # the statement itself: no query more.
        sql = _statement(
            new_status,
            price=record.price is not None,
            duration=record.duration is not None,
            date=record.date is not None,
            row=listened,
        )
        result = _run(connection, sql, params)
    alias = connection.alias
    if result is None or result[0] is None:
        # Over the limit, or the call is gone: nothing inserted (the
        # statement counted it on the call). The function answers a row
        # of nulls, the generated statement no row.
        return _dropped(alias, call_id, record, payload, remote_addr, now, counted=True)
    event_id, outcome, target_id = result[:3]
    if listened and outcome == CallbackEvent.Outcome.APPLIED:
        old_status, *columns = result[3:]
        fields = [field.attname for field in Call._meta.concrete_fields]
        _announce(alias, Call.from_db(alias, fields, columns), old_status, new_status)
    # The row as stored, built as a query's row is (from_db: positional,
    # marked saved): keyword construction cost a sixth of the view.
    values = {
        "id": event_id,
        "call_id": target_id,
        "url_call_id": call_id,
        "provider_id": record.id,
        "state": label,
        "payload": payload,
        "remote_addr": remote_addr,
        "received_at": now,
        "outcome": outcome,
    }
    names = _event_attnames()
    return CallbackEvent.from_db(alias, names, [values[name] for name in names])


def _run(connection: BaseDatabaseWrapper, sql: str, params: dict[str, Any]) -> Any:
    """The statement's one row; in a savepoint unless in autocommit."""
    if connection.get_autocommit():
        return _fetch_one(connection, sql, params)
    with transaction.atomic(using=connection.alias):
        return _fetch_one(connection, sql, params)


#: The PL/pgSQL function that applies a callback (migrations 0007 to 0010, PostgreSQL).
FUNCTION = "voicepassword_apply_callback"

#: SQLSTATE undefined_function: no function of that name and those arguments.
_UNDEFINED_FUNCTION = "42883"


def _array(values: Iterable[str]) -> str:
    """``values`` as PostgreSQL's text of an array, ``{a,b}``.

    Sent as a string and cast in the statement: psycopg dumped a list three
    times slower, element by element. The code's own status values only:
    lowercase words, checked, which need no quoting.
    """
    checked = sorted(values)
    assert all(value.replace("_", "").isalpha() and value.islower() for value in checked)
    return "{" + ",".join(checked) + "}"


_ERROR_CODE_STATUSES = _array(status.value for status in ERROR_CODE_STATUSES)


@functools.cache
def _behind(new_status: str) -> str:
    """The statuses a report of ``new_status`` moves a call from, as the function takes them."""
    return _array(status.value for status in overwritable_by(new_status))


@functools.cache
def _function_call(*, row: bool) -> str:
    """The statement that calls :data:`FUNCTION`: the event's id, outcome and call.

    With ``row``, also the call's status before the update and every column
    of the call as updated (``NULL`` unless applied), in the order of
    ``Call._meta.concrete_fields``, named here rather than in the function
    so that a column added later is read without a new function. The casts
    name the function's argument types, whichever way the driver binds.
    """
    columns = ["event_id", "outcome", "call_id"]
    if row:
        columns.append("old_status")
        columns += [f"(moved).{_quoted(field.column)}" for field in Call._meta.concrete_fields]
    arguments = ", ".join(
        f"%({name})s::{kind}"
        for name, kind in (
            ("token_call", "bigint"),
            ("provider_id", "text"),
            ("status", "text"),
            ("behind", "text[]"),
            ("error_code_statuses", "text[]"),
            ("label", "text"),
            ("price", "numeric"),
            ("duration", "interval"),
            ("date", "timestamptz"),
            ("payload", "jsonb"),
            ("remote_addr", "inet"),
            ("now", "timestamptz"),
            ("cap", "integer"),
            ("row", "boolean"),
        )
    )
    return f"SELECT {', '.join(columns)} FROM {FUNCTION}({arguments})"  # noqa: S608


def _quoted(name: str | None) -> str:
    assert name is not None
    return '"' + name.replace('"', '""') + '"'


def _is_missing_function(error: ProgrammingError) -> bool:
    cause = error.__cause__
    # psycopg 3 names it sqlstate, psycopg2 pgcode.
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code == _UNDEFINED_FUNCTION


@functools.cache
def _warn_missing_function() -> None:
    """Say once per process that the function is missing: every callback would say it."""
    logger.warning(
        "VoicePassword callbacks: the database function %s is missing (run migrate); "
        "callbacks are applied by a statement PostgreSQL plans every time.",
        FUNCTION,
    )


def _dropped(
    alias: str,
    call_id: int,
    record: CallRecord,
    payload: dict[str, Any],
    remote_addr: str | None,
    now: Any = None,
    *,
    counted: bool,
) -> CallbackEvent:
    """The unsaved event of a callback that is not kept; count it on the call unless done."""
    if not counted:
        Call.objects.using(alias).filter(pk=call_id).update(
            callbacks_dropped=F("callbacks_dropped") + 1
        )
    # Not the number or the payload: the log line is about the URL, not the call.
    logger.warning(
        "VoicePassword callback to the URL of call %s dropped: it keeps %d events at most "
        "(CALLBACK_MAX_EVENTS), or the call is gone. Many of these mean the URL leaked.",
        call_id,
        settings.CALLBACK_MAX_EVENTS,
    )
    event = CallbackEvent(
        call_id=None,
        provider_id=record.id,
        state=record.state_label[:64],
        payload=payload,
        remote_addr=remote_addr,
        received_at=now or timezone.now(),
        outcome=CallbackEvent.Outcome.DROPPED,
    )
    event._state.db = alias
    return event


def _fetch_one(connection: BaseDatabaseWrapper, sql: str, params: dict[str, Any]) -> Any:
    cursor = _cursor(connection)
    if cursor is None:  # psycopg2: Django's own cursor, closed after the statement
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    # The kept cursor is not closed: the next callback on this connection reuses it.
    cursor.execute(sql, params)
    return cursor.fetchone()


def _cursor(connection: BaseDatabaseWrapper) -> Any:
    """The kept cursor for the callback statement, binding on the server; prepared per setting.

    ``None`` where the driver is not psycopg 3: the caller then uses Django's
    own cursor. The caller must not close the one returned.

    PostgreSQL spent longer planning the generated statement than running it
    (562 us planned per call, 362 us prepared); the function's call, the
    usual statement since, costs little to plan. Django's psycopg 3 cursors
    bind on the client: they quote each of the call's fourteen arguments into
    the statement's text, about 30 us of the worker's CPU per callback more
    than sending them apart (docs/decisions.md). So the statement goes
    through a server-binding cursor either way. Without
    ``CALLBACK_PREPARED_STATEMENTS`` it is the unnamed statement of the
    extended protocol, parsed and planned with its call as before and never
    kept: PgBouncer in transaction mode, of any version, routes it. With the
    setting, the cursor prepares it on its first call, once per connection
    and shape (at most 162); off by default, as PgBouncer in transaction mode
    routes prepared statements only from 1.21 on, with
    ``max_prepared_statements`` set. It is still Django's cursor wrapper
    around it: the same error translation (a lost connection is an
    ``OperationalError``, a 503) and the same query log.

    The driver's cursor is made once per connection and kept
    (:data:`_KEPT`): a new psycopg cursor per callback built its adapters'
    cache anew each time, about 15 us of the worker's CPU per callback
    (docs/decisions.md). A new connection (Django reconnects after
    ``CONN_MAX_AGE`` or an error) gets a new cursor, and the old cursor and
    connection are let go. Django's wrapper is still made per callback, so
    a query log that starts later sees the statement.
    """
    prepared = settings.CALLBACK_PREPARED_STATEMENTS
    cursor_class = _server_cursor_class(prepared=prepared)
    connection.ensure_connection()
    raw = connection.connection
    if cursor_class is None or not isinstance(raw, cursor_class.connection_type):
        return None
    if prepared and raw.prepare_threshold is None:
        # Django turns psycopg's preparing off (None) unless OPTIONS says
        # otherwise, and None also ignores prepare=True. A threshold no count
        # reaches turns it on for the statements that ask and no others.
        raw.prepare_threshold = _NEVER
    # The thread's own connection object: django.db.connection, a proxy of
    # it, cannot be a key.
    owner = connections[connection.alias]
    cursor: Any = _KEPT.get(owner)
    if type(cursor) is not cursor_class or cursor.connection is not raw or cursor.closed:
        cursor = _KEPT[owner] = cursor_class(raw)
    # _prepare_cursor is what connection.cursor() wraps its own cursor with
    # (thread check, debug wrapper); only the driver's cursor differs.
    return connection._prepare_cursor(cursor)  # type: ignore[attr-defined]


#: The callback statement's driver cursor of each Django connection (one per
#: thread and alias, Django's rule), replaced when the connection reconnects.
#: Keyed by Django's connection, not the driver's: the cursor holds the
#: driver's connection, which as a weak key would then never be let go.
_KEPT: weakref.WeakKeyDictionary[BaseDatabaseWrapper, Any] = weakref.WeakKeyDictionary()


#: A ``prepare_threshold`` no statement's count of runs reaches.
_NEVER = 2**31 - 1


@functools.cache
def _server_cursor_class(*, prepared: bool) -> type[Any] | None:
    """psycopg 3's server-binding cursor, preparing all it runs or nothing; else ``None``.

    Unprepared, ``prepare=False`` holds even on a connection whose
    ``OPTIONS`` set a ``prepare_threshold``: the setting off promises a
    pooler that this statement is never prepared.
    """
    try:
        import psycopg
    except ImportError:  # psycopg2: binds on the client, never prepares; the setting does nothing
        return None

    class ServerCursor(psycopg.Cursor[Any]):
        """Prepares all it executes, or nothing (psycopg would count to ``prepare_threshold``)."""

        connection_type = psycopg.Connection

        def execute(
            self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any
        ) -> ServerCursor:
            super().execute(query, params, prepare=prepared, **kwargs)
            return self

    return ServerCursor


@functools.cache
def _event_attnames() -> tuple[str, ...]:
    return tuple(field.attname for field in CallbackEvent._meta.concrete_fields)


@functools.cache
def _payload_field() -> models.Field[Any, Any]:
    field = CallbackEvent._meta.get_field("payload")
    assert isinstance(field, models.Field)
    return field


@functools.cache
def _statement(new_status: str, *, price: bool, duration: bool, date: bool, row: bool) -> str:
    """The statement that applies a callback reporting ``new_status``.

    ``target`` locks the call of the request id, if it is the token's call or
    its SMS fallback (otherwise the callback is an orphan); ``FOR NO KEY
    UPDATE`` is the lock the update takes anyway, and leaves rows that refer
    to the call free to be inserted meanwhile. ``moved`` updates the call if
    its status is one that ``new_status`` moves forward
    (:func:`~django_voicepassword.reconcile.overwritable_by`), taking the
    label and, when the callback has them, the price, duration and date, as
    :func:`~django_voicepassword.reconcile.record_changes` does. The insert
    stores the callback with its outcome, and the statement returns the
    event's id, its outcome and the call's id (``NULL`` for an orphan).
    With ``row``, it also returns the call's status before the update and
    then every column of the call as updated (``NULL`` unless the callback
    was applied), in the order of ``Call._meta.concrete_fields``.

    Under READ COMMITTED, a delivery that waited on the lock reads the row as
    the delivery before it left it, so a repeat finds the status already
    moved and records a duplicate. Scalar subqueries rather than joins: the
    statement is planned on every callback, and with joins planning took
    about three times as long. Only the model's table and column names and the status and outcome
    values, the code's own constants, are written into the text; everything
    the provider sent is a parameter. Cached per shape: 10 statuses, 8
    combinations of optional fields, with or without the row.
    """

    def qn(name: str | None) -> str:
        assert name is not None
        return '"' + name.replace('"', '""') + '"'

    def column(model: type[models.Model], name: str) -> str:
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field)
        return qn(field.column)

    def literals(values: Iterable[str]) -> str:
        # The code's own status and outcome values: lowercase words, checked
        # all the same, as they are written into the statement.
        checked = sorted(values)
        assert all(value.replace("_", "").isalpha() and value.islower() for value in checked)
        return ", ".join(f"'{value}'" for value in checked)

    call, pk, status = qn(Call._meta.db_table), column(Call, "id"), column(Call, "status")
    error_code = column(Call, "error_code")
    events = qn(CallbackEvent._meta.db_table)
    url_call = column(CallbackEvent, "url_call")
    dropped = column(Call, "callbacks_dropped")
    reported = literals([new_status])
    assignments = [
        f"{status} = {reported}",
        f"{error_code} = CASE WHEN {status} IN ({literals(ERROR_CODE_STATUSES)}) "
        f"THEN '' ELSE {error_code} END",
        f"{column(Call, 'state_label')} = %(label)s",
    ]
    if price:
        assignments.append(f"{column(Call, 'price')} = %(price)s::numeric")
    if duration:
        assignments.append(f"{column(Call, 'duration')} = %(duration)s::interval")
    if date:
        assignments.append(f"{column(Call, 'provider_date')} = %(date)s::timestamptz")
    assignments.append(f"{column(Call, 'updated_at')} = %(now)s::timestamptz")
    columns = [qn(field.column) for field in Call._meta.concrete_fields] if row else [pk]
    outcome = CallbackEvent.Outcome
    event_columns = ", ".join(
        column(CallbackEvent, name)
        for name in (
            "call",
            "url_call",
            "provider_id",
            "state",
            "payload",
            "remote_addr",
            "received_at",
        )
    )
    returning = ", ".join(column(CallbackEvent, name) for name in ("id", "outcome", "call"))
    # INSERT ... SELECT ... WHERE: no row when the URL is over its limit (or
    # its call is gone), and then the statement returns nothing.
    insert = (
        f"INSERT INTO {events} "  # noqa: S608
        f"({event_columns}, {column(CallbackEvent, 'outcome')}) "
        f"SELECT (SELECT {pk} FROM target), %(token_call)s, %(provider_id)s, %(label)s, "
        f"%(payload)s, %(remote_addr)s::inet, %(now)s::timestamptz, CASE "
        f"WHEN EXISTS (SELECT FROM moved) THEN {literals([outcome.APPLIED])} "
        f"WHEN NOT EXISTS (SELECT FROM target) THEN {literals([outcome.ORPHAN])} "
        f"WHEN (SELECT {status} FROM target) = {reported} "
        f"THEN {literals([outcome.DUPLICATE])} "
        f"ELSE {literals([outcome.STALE])} END "
        f"WHERE (SELECT ok FROM room) "
        f"RETURNING {returning}"
    )
    if row:
        moved = ", ".join(f"m.{name}" for name in columns)
        insert = (
            f"event AS ({insert}) "  # noqa: S608
            f"SELECT e.*, (SELECT {status} FROM target), {moved} "
            f"FROM event e LEFT JOIN moved m ON TRUE"
        )
    # room: whether the URL's call exists and has kept fewer than the limit
    # (the count stops at the limit). dropped counts a callback it refuses;
    # it and moved never touch the same row, as room rules one or the other out.
    return (
        f"WITH room AS (SELECT EXISTS (SELECT FROM {call} WHERE {pk} = %(token_call)s) "  # noqa: S608
        f"AND (SELECT count(*) FROM (SELECT FROM {events} WHERE {url_call} = %(token_call)s "
        f"LIMIT %(cap)s) AS kept) < %(cap)s AS ok), "
        f"target AS ("
        f"SELECT {pk}, {status} FROM {call} "
        f"WHERE {column(Call, 'provider_id')} = %(provider_id)s "
        f"AND ({pk} = %(token_call)s OR {column(Call, 'parent')} = %(token_call)s) "
        f"AND (SELECT ok FROM room) "
        f"FOR NO KEY UPDATE), "
        f"moved AS (UPDATE {call} SET {', '.join(assignments)} "
        f"WHERE {pk} = (SELECT {pk} FROM target) "
        f"AND {status} IN ({literals(overwritable_by(new_status))}) "
        f"RETURNING {', '.join(columns)}), "
        f"dropped AS (UPDATE {call} SET {dropped} = {dropped} + 1 "
        f"WHERE {pk} = %(token_call)s AND NOT (SELECT ok FROM room)){',' if row else ''} "
        f"{insert}"
    )


# --------------------------------------------------------------------------- the ORM


def _apply_with_orm(
    alias: str,
    call_id: int,
    record: CallRecord,
    payload: dict[str, Any],
    remote_addr: str | None,
    *,
    listened: bool,
) -> CallbackEvent:
    """Apply a callback in a transaction, under the call's row lock: four queries.

    The count of the URL's events, the call (locked), its update, the event;
    an orphan asks whether the URL's call still exists, and a callback over
    the limit is one UPDATE of the counter instead.
    """
    cap = settings.CALLBACK_MAX_EVENTS
    with transaction.atomic(using=alias):
        kept = CallbackEvent.objects.using(alias).filter(url_call_id=call_id).order_by()[:cap]
        if kept.count() >= cap:
            return _dropped(alias, call_id, record, payload, remote_addr, counted=False)
        # order_by(): the one row of a unique value needs no ORDER BY.
        found = list(
            Call.objects.using(alias).select_for_update().filter(provider_id=record.id).order_by()
        )
        call = found[0] if found else None
        outcome: CallbackEvent.Outcome
        if call is None or call_id not in (call.pk, call.parent_id):
            if not Call.objects.using(alias).filter(pk=call_id).exists():
                # The URL's call is gone: nothing to apply, nothing to count on.
                return _dropped(alias, call_id, record, payload, remote_addr, counted=True)
            outcome, call = CallbackEvent.Outcome.ORPHAN, None
        else:
            old_status = call.status
            changes = record_changes(call, record, authoritative=False)
            if changes:
                changes["updated_at"] = timezone.now()
                Call.objects.using(alias).filter(pk=call.pk).update(**changes)
                for field, value in changes.items():
                    setattr(call, field, value)
            if "status" in changes:
                outcome = CallbackEvent.Outcome.APPLIED
                if listened:
                    _announce(alias, call, old_status, call.status)
            else:
                outcome = _not_applied(call, record)
        return CallbackEvent.objects.using(alias).create(
            call=call,
            url_call_id=call_id,
            provider_id=record.id,
            state=record.state_label[:64],
            payload=payload,
            remote_addr=remote_addr,
            outcome=outcome,
        )


def _not_applied(call: Call, record: CallRecord) -> CallbackEvent.Outcome:
    # A repeat of the current status is a duplicate; a status behind it (an
    # intermediate state after the final one) or a label no one knows is stale.
    if status_for_state(record.state) == call.status:
        return CallbackEvent.Outcome.DUPLICATE
    return CallbackEvent.Outcome.STALE


def _announce(alias: str, call: Call, old_status: str, new_status: str) -> None:
    """Send ``call_status_changed`` (source ``"callback"``) once the change is committed."""
    transaction.on_commit(
        lambda: call_status_changed.send(
            sender=Call,
            call=call,
            old_status=old_status,
            new_status=new_status,
            source="callback",
        ),
        using=alias,
    )


class _Turn:
    """One call's turn in this process; see :func:`_turn`."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        # Reentrant: a receiver may itself apply a callback of the same call.
        self.lock = threading.RLock()


_turns: weakref.WeakValueDictionary[int, _Turn] = weakref.WeakValueDictionary()
_turns_guard = threading.Lock()


def _turn(call_id: int) -> _Turn:
    """The turn of the deliveries to ``call_id``'s URL in this process.

    Held from the change to its signal, so that threads (gthread workers)
    cannot send one call's signals out of order: without it, the thread
    whose change committed first may be scheduled after the thread whose
    change was waiting on the row lock. Kept as long as someone holds or
    waits for it.
    """
    with _turns_guard:
        turn = _turns.get(call_id)
        if turn is None:
            turn = _turns[call_id] = _Turn()
        return turn
