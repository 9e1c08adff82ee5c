"""The retention policy: how long calls, callback events, challenges and balances are kept.

:func:`purge` deletes what is older than the ``CALL_RETENTION_DAYS``,
``CALLBACK_RETENTION_DAYS``, ``CHALLENGE_RETENTION_DAYS`` and
``BALANCE_RETENTION_DAYS`` settings (the
``voicepassword_purge`` command runs it). It deletes in batches, each in its
own short transaction, and reads only the primary keys of a batch: a large
table is never loaded into memory or locked for the whole run.

Two foreign keys shape what "older than" means for calls:

- an SMS fallback (``Call.parent``, ``CASCADE``) goes with its call, so a
  call and its fallbacks are one unit, deleted once *every* one of them is
  older than the cutoff: a young SMS is never taken by the cascade of an old
  call, and an old SMS is never deleted while its call is kept (which would
  let a second fallback be paid for);
- a callback event (``CallbackEvent.call``, ``CASCADE``) belongs to its call
  and goes with it, even when ``CALLBACK_RETENTION_DAYS`` is the longer
  period. The counts include these cascaded rows, in a dry run too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from django_voicepassword.conf import settings
from django_voicepassword.models import BalanceSnapshot, Call, CallbackEvent, Challenge

__all__ = ["DEFAULT_BATCH_SIZE", "PurgeReport", "purge"]

#: Rows deleted per transaction unless told otherwise.
DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class PurgeReport:
    """What :func:`purge` deleted (or, in a dry run, would delete), and the cutoffs.

    ``calls`` counts SMS fallbacks too; ``callback_events`` counts the events
    past their own retention and those of the calls deleted.
    """

    calls: int
    callback_events: int
    balance_snapshots: int
    call_cutoff: datetime
    callback_cutoff: datetime
    balance_cutoff: datetime
    dry_run: bool
    challenges: int = 0
    challenge_cutoff: datetime | None = None


def _purgeable_calls(cutoff: datetime) -> models.QuerySet[Call]:
    """The calls whose whole unit (the call and its SMS fallbacks) is older than ``cutoff``.

    Only calls without a parent are selected: a fallback goes by the cascade
    of its call, never alone.
    """
    return Call.objects.filter(parent__isnull=True, created_at__lt=cutoff).exclude(
        fallbacks__created_at__gte=cutoff
    )


def _delete_in_batches(
    queryset: models.QuerySet[models.Model], order: tuple[str, ...], batch_size: int
) -> dict[str, int]:
    """Delete ``queryset`` ``batch_size`` rows at a time; return the counts per model label.

    The oldest rows go first, so an interrupted run has done the most useful
    part. The delete itself is Django's, so cascades, ``SET_NULL`` and delete
    signals of other apps are honoured; it loads at most one batch of rows
    (and their cascaded rows), never the table.
    """
    model = queryset.model
    deleted: dict[str, int] = {}
    while True:
        with transaction.atomic():
            pks = list(queryset.order_by(*order).values_list("pk", flat=True)[:batch_size])
            if not pks:
                return deleted
            _total, per_model = model._default_manager.filter(pk__in=pks).delete()
        for label, count in per_model.items():
            deleted[label] = deleted.get(label, 0) + count


def purge(
    *, dry_run: bool = False, now: datetime | None = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> PurgeReport:
    """Delete the calls, callback events and balance snapshots past their retention.

    With ``dry_run`` nothing is deleted and the report says what would be.
    ``now`` (default: the current time) is what the retention periods count
    back from. Callback events are purged first, then calls (with their SMS
    fallbacks and remaining events), then balance snapshots.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or timezone.now()
    call_cutoff = now - timedelta(days=settings.CALL_RETENTION_DAYS)
    callback_cutoff = now - timedelta(days=settings.CALLBACK_RETENTION_DAYS)
    balance_cutoff = now - timedelta(days=settings.BALANCE_RETENTION_DAYS)
    # A challenge holds the number it was for; its calls keep their own
    # retention (Call.challenge is SET_NULL).
    challenge_cutoff = now - timedelta(days=settings.CHALLENGE_RETENTION_DAYS)
    old_challenges = Challenge.objects.filter(created_at__lt=challenge_cutoff)
    old_events = CallbackEvent.objects.filter(received_at__lt=callback_cutoff)
    roots = _purgeable_calls(call_cutoff)
    old_snapshots = BalanceSnapshot.objects.filter(taken_at__lt=balance_cutoff)

    if dry_run:
        root_pks = roots.values("pk")
        doomed = Call.objects.filter(Q(pk__in=root_pks) | Q(parent__in=root_pks))
        events = CallbackEvent.objects.filter(
            Q(received_at__lt=callback_cutoff) | Q(call__in=doomed.values("pk"))
        )
        return PurgeReport(
            calls=doomed.count(),
            callback_events=events.count(),
            balance_snapshots=old_snapshots.count(),
            call_cutoff=call_cutoff,
            callback_cutoff=callback_cutoff,
            balance_cutoff=balance_cutoff,
            dry_run=True,
            challenges=old_challenges.count(),
            challenge_cutoff=challenge_cutoff,
        )

    call_label = Call._meta.label
    event_label = CallbackEvent._meta.label
    snapshot_label = BalanceSnapshot._meta.label
    deleted: dict[str, int] = {}
    for queryset, order in (
        (old_events, ("received_at", "pk")),
        (roots, ("created_at", "pk")),
        (old_snapshots, ("taken_at", "pk")),
        (old_challenges, ("created_at", "pk")),
    ):
        for label, count in _delete_in_batches(queryset, order, batch_size).items():
            deleted[label] = deleted.get(label, 0) + count
    return PurgeReport(
        calls=deleted.get(call_label, 0),
        callback_events=deleted.get(event_label, 0),
        balance_snapshots=deleted.get(snapshot_label, 0),
        call_cutoff=call_cutoff,
        callback_cutoff=callback_cutoff,
        balance_cutoff=balance_cutoff,
        dry_run=False,
        challenges=deleted.get(Challenge._meta.label, 0),
        challenge_cutoff=challenge_cutoff,
    )
