"""Background work on a worker, through Django's Tasks framework.

- :data:`reconcile_recent_days` reconciles the last days with the provider's
  daily report (``voicepassword_sync --days``);
- :data:`poll_balance` fetches and stores the balance, and sends
  ``balance_fetched`` with ``low`` (``voicepassword_balance``);
- :data:`purge_history` deletes history past the retention settings
  (``voicepassword_purge``);
- :data:`send_code` sends a challenge's code; the services enqueue it when
  ``ASYNC_SEND`` is on (:func:`~django_voicepassword.verification.send_queued`);
- :data:`take_step` takes a challenge's next workflow step at its time
  (``WORKFLOW`` with ``"tasks": True``; :func:`~django_voicepassword.workflow.take_step`).

Each is a task of the site's ``TASKS`` setting (Django 6 has the framework
built in as ``django.tasks``; on Django 5.2 it is the ``django-tasks``
backport: ``pip install "django-voicepassword[tasks]"``). Where it runs is the
backend's business: in the calling process with the default
``ImmediateBackend``, on a worker with ``django-tasks-db`` (``manage.py
db_worker``) or ``django-tasks-rq`` (``manage.py rqworker``). This package
starts no thread and no loop of its own, and the framework has no scheduler:
cron (or a timer of the platform) says when; ``docs/tasks.md`` has the lines.

A task's arguments are stored by the backend (a database row, a Redis key)
where a backup or a support tool may read them: none of these tasks takes a
phone number, a code or a key, and none returns one.

The tasks are declared on the ``default`` backend's ``default`` queue (a
decorator runs at import, so it cannot read a setting); a site that restricts
``QUEUES`` keeps ``default`` among them, or enqueues with
``task.using(queue_name=...)``. ``ASYNC_SEND_BACKEND`` and
``ASYNC_SEND_QUEUE`` choose where the sends go.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

# The one place that knows where the Tasks framework comes from.
try:
    from django.tasks import task, task_backends
except ImportError:  # Django 5.2: the backport
    try:
        from django_tasks import (  # type: ignore[no-redef,assignment,import-not-found,unused-ignore]
            task,
            task_backends,
        )
    except ImportError as error:
        raise ImportError(
            "django_voicepassword.tasks needs Django's Tasks framework: Django 6 has it "
            "built in; on Django 5.2 install the backport with "
            "pip install 'django-voicepassword[tasks]' and add 'django_tasks' to "
            "INSTALLED_APPS."
        ) from error

from django_voicepassword import calls, ratelimit, retention, verification, workflow
from django_voicepassword.client import PROVIDER_TZ
from django_voicepassword.conf import settings
from django_voicepassword.exceptions import VoicePasswordError

__all__ = [
    "MAX_DAYS",
    "ReconcileError",
    "poll_balance",
    "purge_history",
    "reconcile_recent_days",
    "send_code",
    "take_step",
    "task",
    "task_backends",
]

#: The most days one run of :data:`reconcile_recent_days` reconciles (as the command).
MAX_DAYS = 31


class ReconcileError(Exception):
    """Some days could not be reconciled; ``days`` names them (ISO dates).

    Raised after every other day was done, so that the task backend records
    the run as failed; ``__cause__`` is the first day's error.
    """

    def __init__(self, days: list[str], total: int) -> None:
        self.days = days
        super().__init__(
            f"{len(days)} of {total} days could not be reconciled ({', '.join(days)}); "
            "run again later."
        )


@task
def reconcile_recent_days(days: int = 2) -> list[dict[str, Any]]:
    """Reconcile the last ``days`` Moscow days (today included, oldest first) with the provider.

    What ``voicepassword_sync --days`` does: :func:`calls.reconcile_day` for
    each day. The default, today and yesterday, is the hourly run (yesterday
    keeps changing for a while after midnight). Returns each day's report as
    a dict (``day``, ``provider_rows``, ``created``, ``updated``, ``settled``,
    ``not_placed``). A day that fails does not stop the others; then
    :class:`ReconcileError` is raised. ``ValueError`` for ``days`` outside
    1 to :data:`MAX_DAYS`.
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be a whole number from 1 to {MAX_DAYS}")
    today = timezone.now().astimezone(PROVIDER_TZ).date()
    reports: list[dict[str, Any]] = []
    failed: list[str] = []
    first_error: Exception | None = None
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        try:
            report = calls.reconcile_day(day)
        except (VoicePasswordError, ImproperlyConfigured) as error:
            failed.append(day.isoformat())
            first_error = first_error or error
            continue
        reports.append(
            {
                "day": report.day.isoformat(),
                "provider_rows": report.provider_rows,
                "created": report.created,
                "updated": report.updated,
                "settled": report.settled,
                "not_placed": report.not_placed,
            }
        )
    if failed:
        raise ReconcileError(failed, days) from first_error
    return reports


@task
def poll_balance() -> dict[str, Any]:
    """Fetch and store the balance; ``balance_fetched`` says whether it is ``low``.

    What ``voicepassword_balance`` does, without a threshold of its own: ``low``
    follows the ``LOW_BALANCE`` setting. Returns ``balance`` (a string, to keep
    the kopecks exact), ``currency`` and ``low``. A provider error is raised
    (the backend records the run as failed); nothing is stored then.
    """
    snapshot = calls.fetch_balance()
    threshold = settings.LOW_BALANCE
    return {
        "balance": str(snapshot.balance),
        "currency": snapshot.currency,
        "low": threshold is not None and snapshot.balance < threshold,
    }


@task
def purge_history(batch_size: int = retention.DEFAULT_BATCH_SIZE) -> dict[str, int]:
    """Delete the calls, callback events and balance snapshots past their retention.

    What ``voicepassword_purge`` does (:func:`retention.purge`), in batches of
    ``batch_size`` rows. Returns the counts: ``calls``, ``callback_events``,
    ``balance_snapshots`` and ``challenges``.
    """
    report = retention.purge(batch_size=batch_size)
    return {
        "calls": report.calls,
        "callback_events": report.callback_events,
        "balance_snapshots": report.balance_snapshots,
        "challenges": report.challenges,
    }


@task
def send_code(
    challenge_id: str,
    channel: str,
    sends: int = 1,
    reservation: dict[str, Any] | None = None,
) -> str:
    """Send the code of a challenge's ``sends``-th send (``ASYNC_SEND``); enqueued by the services.

    ``reservation`` is the budget the request reserved for it, as plain data
    (``{"day": "2025-01-31", "cents": 50}``; ``None`` without a budget).
    Returns ``"sent"``, ``"not_sent"`` or ``"skipped"``; see
    :func:`~django_voicepassword.verification.send_queued`.
    """
    held = None
    if reservation is not None:
        held = ratelimit.Reservation(day=str(reservation["day"]), cents=int(reservation["cents"]))
    return verification.send_queued(challenge_id, channel, sends=sends, reservation=held)


@task
def take_step(challenge_id: str, step: int) -> str:
    """Take the workflow step after ``step`` of a challenge if still due; enqueued by the services.

    Enqueued with ``run_after`` at the step's time (and at once when a
    verification's call failed). Returns ``"taken"``, ``"skipped"`` (taken
    already, by another worker or a poll, or no longer wanted) or
    ``"stopped"``; see :func:`~django_voicepassword.workflow.take_step`.
    """
    return workflow.take_step(challenge_id, step)
