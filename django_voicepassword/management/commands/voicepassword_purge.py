"""``manage.py voicepassword_purge``: delete history past the retention settings.

The policy lives in :mod:`django_voicepassword.retention`; this command runs
it and prints the counts per model.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import ProtectedError, RestrictedError

from django_voicepassword import retention
from django_voicepassword.conf import settings


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError("give a whole number, 1 or more")
    return number


class Command(BaseCommand):
    """Delete calls, callback events and balance snapshots older than their retention."""

    #: Django's --verbosity; 0 prints only problems.
    verbosity = 1

    help = (
        "Delete the calls older than CALL_RETENTION_DAYS (with their SMS fallbacks and "
        "callback events; a call is kept while any of its SMS fallbacks is younger), the "
        "callback events older than CALLBACK_RETENTION_DAYS and the balance snapshots "
        "older than BALANCE_RETENTION_DAYS, in batches. Prints the counts per model. "
        "Exit status: 0 done, 1 failed, 2 bad options."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """``--dry-run`` and ``--batch-size``."""
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--batch-size",
            type=_positive,
            default=retention.DEFAULT_BATCH_SIZE,
            metavar="ROWS",
            help=(
                "Rows deleted per transaction (default "
                f"{retention.DEFAULT_BATCH_SIZE}); smaller batches hold locks for less time."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Purge (or count) and print one line per model."""
        self.verbosity = options["verbosity"]
        try:
            report = retention.purge(dry_run=options["dry_run"], batch_size=options["batch_size"])
        except (ProtectedError, RestrictedError) as error:
            # Another app's foreign key forbids deleting some of the rows.
            raise CommandError(f"Some rows cannot be deleted: {error.args[0]}") from None
        if self.verbosity < 1:
            return
        verb = "would delete" if report.dry_run else "deleted"
        rows = (
            ("calls", report.calls, "created", report.call_cutoff, settings.CALL_RETENTION_DAYS),
            (
                "callback events",
                report.callback_events,
                "received",
                report.callback_cutoff,
                settings.CALLBACK_RETENTION_DAYS,
            ),
            (
                "balance snapshots",
                report.balance_snapshots,
                "taken",
                report.balance_cutoff,
                settings.BALANCE_RETENTION_DAYS,
            ),
            (
                "challenges",
                report.challenges,
                "created",
                report.challenge_cutoff or report.call_cutoff,
                settings.CHALLENGE_RETENTION_DAYS,
            ),
        )
        for name, count, field, cutoff, days in rows:
            self.stdout.write(
                f"{name}: {verb} {count} ({field} before {cutoff:%Y-%m-%d %H:%M:%S %Z}, "
                f"kept {days} days)"
            )
