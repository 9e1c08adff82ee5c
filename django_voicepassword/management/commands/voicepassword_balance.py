"""``manage.py voicepassword_balance``: fetch, store and check the account balance.

Every run stores a :class:`~django_voicepassword.models.BalanceSnapshot`
(``calls.fetch_balance``, which also sends ``balance_fetched``). Below the
threshold (``--min``, else the ``LOW_BALANCE`` setting) it exits with status 3,
so that cron, a systemd timer or a monitoring check can tell "low" from
"could not ask" (1) and from a mistyped command line (2, argparse's own).
"""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_voicepassword import calls
from django_voicepassword.conf import settings
from django_voicepassword.exceptions import VoicePasswordError

#: The exit status of a balance below the threshold.
EXIT_LOW = 3


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value.replace(",", "."))
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise argparse.ArgumentTypeError(f"{value!r} is not an amount, such as 100 or 99.50")
    return amount


class Command(BaseCommand):
    """Print and store the balance; exit 3 when it is below the threshold."""

    #: Django's --verbosity; 0 prints only problems.
    verbosity = 1

    help = (
        "Ask the provider for the account balance, store it (the admin shows the history) "
        'and print it ("999.00 Rub"). Exit status: 0 at or above the threshold, 1 the '
        "provider could not be asked, 2 bad options, 3 below the threshold (--min, else "
        "the LOW_BALANCE setting; no threshold: never)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """``--min`` and ``--quiet``."""
        parser.add_argument(
            "--min",
            type=_amount,
            metavar="AMOUNT",
            help="Exit with status 3 below AMOUNT (overrides the LOW_BALANCE setting).",
        )
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="Print nothing unless the balance is low or cannot be fetched (for cron).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Fetch and store the balance, print it, compare it with the threshold."""
        self.verbosity = options["verbosity"]
        try:
            threshold: Decimal | None = (
                options["min"] if options["min"] is not None else settings.LOW_BALANCE
            )
            snapshot = calls.fetch_balance()
        except VoicePasswordError as error:
            raise CommandError(
                f"Could not fetch the balance: {type(error).__name__}: {error}"
            ) from None
        except ImproperlyConfigured as error:
            raise CommandError(f"Could not fetch the balance: {error}") from None
        shown = f"{snapshot.balance:.2f} {snapshot.currency}"
        if not options["quiet"] and self.verbosity >= 1:
            self.stdout.write(shown)
        if threshold is not None and snapshot.balance < threshold:
            raise CommandError(
                f"The balance {shown} is below {threshold:.2f}: top up the account.",
                returncode=EXIT_LOW,
            )
