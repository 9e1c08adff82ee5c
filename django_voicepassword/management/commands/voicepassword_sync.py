"""``manage.py voicepassword_sync``: reconcile the call history with the provider's records.

Runs ``calls.reconcile_day`` for one Moscow day (``--date``) or the last few
(``--days``, today included): rows for calls placed outside this site,
corrected states and prices, and the ``unknown`` outcomes settled. Meant for
cron; a day that fails does not stop the others, but makes the exit status 1.
"""

from __future__ import annotations

import argparse
import re
from datetime import date, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_voicepassword import calls
from django_voicepassword.client import PROVIDER_TZ
from django_voicepassword.exceptions import VoicePasswordError

#: The most days one run may reconcile.
MAX_DAYS = 31

# fromisoformat alone also takes 20250131 and 2025-W05-5.
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day(value: str) -> date:
    try:
        if not _DATE_RE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date in the form YYYY-MM-DD, such as 2025-01-31"
        ) from None


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"give a whole number of days from 1 to {MAX_DAYS}")
    return days


def moscow_today() -> date:
    """Today in the provider's time zone (its days are Moscow days)."""
    return timezone.now().astimezone(PROVIDER_TZ).date()


class Command(BaseCommand):
    """Reconcile one day (``--date``) or the last ``--days`` days with the provider."""

    #: Django's --verbosity; 0 prints only problems.
    verbosity = 1

    help = (
        "Bring the call history in line with the provider's daily report: add the calls "
        "placed outside this site, correct states, prices and durations, and settle the "
        "calls whose outcome was unknown. Days are Moscow days (the provider's). "
        "Default: today. Exit status: 0 every day reconciled, 1 a day failed, 2 bad options."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """``--date`` or ``--days``, not both."""
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--date",
            type=_day,
            metavar="YYYY-MM-DD",
            help="Reconcile this one day (Moscow time).",
        )
        which.add_argument(
            "--days",
            type=_days,
            metavar="N",
            help=(
                f"Reconcile the last N days, today included, oldest first (1 to {MAX_DAYS}; "
                "default 1: today only)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Reconcile each day, print its report, fail at the end if any day failed."""
        self.verbosity = options["verbosity"]
        today = moscow_today()
        day: date | None = options["date"]
        if day is not None:
            if day > today:
                raise CommandError(
                    f"{day.isoformat()} is in the future (today is {today.isoformat()} in "
                    "Moscow): the provider has no records of it yet.",
                    returncode=2,
                )
            days = [day]
        else:
            count: int = options["days"] or 1
            days = [today - timedelta(days=back) for back in range(count - 1, -1, -1)]

        failed: list[date] = []
        for day in days:
            try:
                report = calls.reconcile_day(day)
            except (VoicePasswordError, ImproperlyConfigured) as error:
                failed.append(day)
                self.stderr.write(f"{day.isoformat()}: failed: {type(error).__name__}: {error}")
                continue
            if self.verbosity >= 1:
                self.stdout.write(
                    f"{report.day.isoformat()}: {report.provider_rows} provider records; "
                    f"{report.created} created, {report.updated} updated, "
                    f"{report.settled} settled, {report.not_placed} marked not placed"
                    + (
                        ""
                        if report.complete
                        else f" (incomplete report, {report.skipped} unreadable records: "
                        "no unknown call marked)"
                    )
                )
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(days)} days could not be reconciled "
                f"({', '.join(day.isoformat() for day in failed)}); run again later."
            )
