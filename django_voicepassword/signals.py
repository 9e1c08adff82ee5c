"""Signals a site may connect to. None of them carries a code or the API key.

Each is sent after the database transaction that made the change commits, so
a receiver sees the change and is never told of one that was rolled back.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["balance_fetched", "call_placed", "call_status_changed"]

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
