"""Signals a site may connect to. None of them carries a code or the API key.

Each signal of a change is sent after the database transaction that made the
change commits, so a receiver sees the change and is never told of one that
was rolled back. ``limit_exceeded`` and ``login_failed`` report refusals,
which change nothing: they are sent at once.
"""

from __future__ import annotations

from django.dispatch import Signal

from django_voicepassword.gateways.tracing import provider_request

__all__ = [
    "balance_fetched",
    "call_placed",
    "call_status_changed",
    "callback_received",
    "challenge_started",
    "limit_exceeded",
    "login_failed",
    "phone_verified",
    "prefix_blocked",
    "provider_request",
]

#: The provider accepted a call or SMS. Sent with ``sender=Call`` and:
#: ``call`` (the :class:`~django_voicepassword.models.Call`, status ``placed``).
call_placed = Signal()

#: A call's status changed. Sent with ``sender=Call`` and:
#: ``call`` (the updated :class:`~django_voicepassword.models.Call`),
#: ``old_status`` and ``new_status`` (:class:`Call.Status` values), and
#: ``source``: ``"send"`` (the provider's answer to ``send/``), ``"callback"``,
#: ``"state"`` (``refresh_call``) or ``"daily"`` (``reconcile_day``).
call_status_changed = Signal()

#: The balance was fetched and stored. Sent with ``sender=BalanceSnapshot`` and:
#: ``snapshot`` (the :class:`~django_voicepassword.models.BalanceSnapshot`) and
#: ``low`` (true when below the ``LOW_BALANCE`` setting).
balance_fetched = Signal()

#: A code was sent for a challenge (a new challenge, a resend or a switch of
#: channel). Sent with ``sender=Challenge`` and: ``challenge``, ``request``
#: (or ``None``) and ``channel``. Not sent for a login by an unknown number,
#: which places no call.
challenge_started = Signal()

#: A user proved they receive calls at a number. Sent with
#: ``sender=PhoneNumber`` and: ``user``, ``number`` (normalized), ``challenge``
#: and ``request`` (or ``None``). Sent for logins and verifications alike:
#: a site issuing API tokens after a phone login can hook here.
phone_verified = Signal()

#: A code was refused. Sent with ``sender=Challenge`` and: ``challenge`` (or
#: ``None``), ``request``, ``reason`` (``"wrong_code"``, ``"expired"``,
#: ``"exhausted"``, ``"used"``, ``"wrong_session"``, ``"malformed"``,
#: ``"no_user"``) and ``token``: what was entered, masked (``"1***"``).
login_failed = Signal()

#: A limit refused to send a code. Sent with ``sender=None`` and: ``scope``
#: (``"number"``, ``"ip"``, ``"network"``, ``"prefix"``, ``"session"``, ``"global"``,
#: ``"budget"``), ``retry_after`` (seconds) and ``request`` (or ``None``).
limit_exceeded = Signal()

#: A callback with a valid token was stored, or dropped (see
#: ``CALLBACK_MAX_EVENTS``). Sent with ``sender=CallbackEvent`` and: ``event``
#: (the :class:`~django_voicepassword.models.CallbackEvent`, unsaved when
#: dropped), ``outcome`` (a :class:`CallbackEvent.Outcome` value) and ``state``
#: (the :class:`~django_voicepassword.client.CallState` it reported, ``None``
#: for a label nobody knows: ``event.state`` keeps it verbatim). Sent after
#: the commit, like the signals of a change.
callback_received = Signal()

# provider_request (a request to the provider ended: kind, outcome, duration)
# is sent by the transport layer, which cannot import this module; it is
# defined in django_voicepassword.gateways.tracing and importable from here.

#: The fraud guard blocked a prefix or a country (``docs/topics/fraud.md``).
#: Sent with ``sender=PrefixBlock`` and: ``block`` (the
#: :class:`~django_voicepassword.models.PrefixBlock`, with its evidence) and
#: ``request`` (the send that tipped it, or ``None``).
prefix_blocked = Signal()
