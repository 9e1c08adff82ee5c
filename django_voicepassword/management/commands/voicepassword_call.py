"""``manage.py voicepassword_call NUMBER``: place a test call and show what became of it.

The call goes through the same service as any other (``calls.place``), so it
is recorded, signalled and reconciled like the site's own calls. The code the
subscriber gets is not printed unless ``--show-code`` asks for it: the
output of an operator's terminal ends up in scrollback, screen shares and CI
logs, and a code is what a person proves a phone with.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_voicepassword import calls
from django_voicepassword.client import FLASH_CAPACITY_RANGE
from django_voicepassword.conf import settings
from django_voicepassword.exceptions import (
    OutcomeUnknownError,
    TransportError,
    VoicePasswordError,
)
from django_voicepassword.models import Call
from django_voicepassword.phone import InvalidPhoneNumber, format_international, normalize

#: The exit status of a call whose outcome is unknown (it may have been placed).
EXIT_OUTCOME_UNKNOWN = 3
#: The exit status of options that do not go together (as argparse's usage errors).
EXIT_USAGE = 2
#: The longest ``--wait``, in seconds.
MAX_WAIT = 600.0
#: Seconds between two looks at the call while waiting.
POLL_INTERVAL = 1.0
#: Seconds between two ``state`` requests while waiting without callbacks.
STATE_INTERVAL = 5.0

# Module attributes so that tests can drive the waiting without sleeping.
_sleep = time.sleep
_monotonic = time.monotonic


def _code(value: str) -> str:
    if len(value) != 4 or not (value.isascii() and value.isdigit()):
        raise argparse.ArgumentTypeError("a code is exactly 4 digits, such as 0123")
    return value


def _wait(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= MAX_WAIT:
        raise argparse.ArgumentTypeError(f"give more than 0 and at most {MAX_WAIT:.0f} seconds")
    return seconds


def _money(amount: Decimal | None) -> str:
    if amount is None:
        return "-"
    # Stored with 4 places; shown with 2 unless the provider charged finer.
    cents = amount.quantize(Decimal("0.01"))
    return str(cents if cents == amount else amount.normalize())


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class Command(BaseCommand):
    """Place a flash call (or ``--voice`` call) to NUMBER and print the call."""

    #: Django's --verbosity; 0 prints only problems.
    verbosity = 1

    help = (
        "Place a test call to NUMBER through the site's gateway and record it like any "
        "other call: a flash call (the calling number ends in the code) or, with --voice, "
        "a call in which a robot speaks the code. Prints the call's local id, the "
        "provider's id, its status and price; the code only with --show-code. With --wait, "
        "waits for the final status (from the callback, or by asking the provider). "
        "Exit status: 0 placed, 1 not placed, 2 bad options, 3 outcome unknown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """NUMBER and the call's options."""
        parser.add_argument(
            "number",
            metavar="NUMBER",
            help="The subscriber's number, in any spelling: +7 999 000-00-01, 89990000001, ...",
        )
        parser.add_argument(
            "--voice",
            action="store_true",
            help="Place a voice call (a robot speaks the code) instead of a flash call.",
        )
        parser.add_argument(
            "--code",
            type=_code,
            metavar="CODE",
            help="The 4-digit code to send. Default: the provider picks one.",
        )
        parser.add_argument(
            "--capacity",
            type=int,
            choices=FLASH_CAPACITY_RANGE,
            metavar="DIGITS",
            help=(
                "Flash call without --code only: the length of the code the provider "
                f"picks, {FLASH_CAPACITY_RANGE.start} to {FLASH_CAPACITY_RANGE.stop - 1} "
                "(default 4)."
            ),
        )
        parser.add_argument(
            "--repeat",
            action="store_true",
            help="Voice call only: speak the code twice.",
        )
        parser.add_argument(
            "--ani",
            metavar="NUMBER",
            help="Voice call only: the caller number, one registered in the provider account.",
        )
        parser.add_argument(
            "--show-code",
            action="store_true",
            help="Print the code the subscriber gets (kept off the output by default).",
        )
        parser.add_argument(
            "--wait",
            type=_wait,
            metavar="SECONDS",
            help=(
                f"Wait up to SECONDS (at most {MAX_WAIT:.0f}) for the call's final status, "
                "then print it; at the end, ask the provider once."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Check the options, place the call, print it, optionally wait for the end."""
        self.verbosity = options["verbosity"]
        voice: bool = options["voice"]
        if options["capacity"] is not None and (voice or options["code"] is not None):
            raise CommandError(
                "--capacity applies to a flash call without --code only "
                "(a voice call's code is always 4 digits).",
                returncode=EXIT_USAGE,
            )
        if not voice and (options["repeat"] or options["ani"] is not None):
            raise CommandError(
                "--repeat and --ani apply to a voice call only: add --voice.",
                returncode=EXIT_USAGE,
            )
        try:
            number = normalize(options["number"])
        except InvalidPhoneNumber as error:
            raise CommandError(str(error)) from None
        ani: str | None = None
        if options["ani"] is not None:
            try:
                # The caller number is the account's own, possibly a landline:
                # the site's region and type policy is for subscribers, not for it.
                ani = normalize(options["ani"], enforce_policy=False)
            except InvalidPhoneNumber as error:
                raise CommandError(f"--ani: {error}", returncode=EXIT_USAGE) from None

        channel = Call.Channel.VOICE_CALL if voice else Call.Channel.FLASH_CALL
        try:
            call, result = calls.place(
                channel,
                number,
                code=options["code"],
                capacity=options["capacity"],
                repeat=options["repeat"],
                ani=ani,
            )
        except OutcomeUnknownError as error:
            raise CommandError(
                f"Outcome unknown: the call may have been placed and billed ({_describe(error)}). "
                "It is recorded with the status 'unknown'. Do not place it again to find out: "
                "`manage.py voicepassword_sync` settles it from the provider's daily report.",
                returncode=EXIT_OUTCOME_UNKNOWN,
            ) from None
        except TransportError as error:
            raise CommandError(
                f"Not placed: the provider could not be reached ({_describe(error)})."
            ) from None
        except VoicePasswordError as error:
            raise CommandError(f"Not placed: the provider refused ({_describe(error)}).") from None
        except ImproperlyConfigured as error:
            raise CommandError(f"Not placed: {error}") from None

        self._show(call)
        if options["show_code"]:
            self.stdout.write(f"code:        {result.code or '(not in the answer)'}")
        if options["wait"] is not None:
            self._wait_for_end(call, options["wait"])

    def _show(self, call: Call) -> None:
        kind = "voice call" if call.channel == Call.Channel.VOICE_CALL else "flash call"
        number = format_international(call.number)
        self.stdout.write(f"call:        {call.pk} ({kind} to {number})")
        self.stdout.write(f"provider id: {call.provider_id}")
        self.stdout.write(f"status:      {call.status}")
        self.stdout.write(f"price:       {_money(call.price)}")

    def _wait_for_end(self, call: Call, seconds: float) -> None:
        """Poll the row (callbacks update it) until the call ends or ``seconds`` pass.

        Without ``CALLBACK_BASE_URL`` no callback will come, so the provider is
        asked (``state``) every :data:`STATE_INTERVAL` seconds instead. Either
        way the provider is asked once more at the end if the call has not ended.
        """
        callbacks = bool(settings.CALLBACK_BASE_URL)
        how = "the callback" if callbacks else "the provider's state"
        if self.verbosity >= 1:
            self.stdout.write(f"Waiting up to {seconds:g} s for {how}...")
        deadline = _monotonic() + seconds
        next_state = _monotonic() + STATE_INTERVAL
        source = "callback"
        while not call.is_final and _monotonic() < deadline:
            _sleep(min(POLL_INTERVAL, max(0.0, deadline - _monotonic())))
            if callbacks or _monotonic() < next_state:
                call.refresh_from_db()
            else:
                source = "state"
                next_state = _monotonic() + STATE_INTERVAL
                if not self._refresh(call):
                    return
        if not call.is_final:
            source = "state"
            if not self._refresh(call):
                return
        self._show_end(call, source if call.is_final else None, seconds)

    def _refresh(self, call: Call) -> bool:
        try:
            calls.refresh_call(call)
        except VoicePasswordError as error:
            # The call was placed; only the look at its end failed.
            self.stderr.write(
                f"Could not ask the provider for the call's state ({_describe(error)}); "
                f"last known status: {call.status}."
            )
            return False
        return True

    def _show_end(self, call: Call, source: str | None, seconds: float) -> None:
        if source is None:
            self.stdout.write(
                f"status:      {call.status} (not ended after {seconds:g} s; "
                "a callback or voicepassword_sync will record the end)"
            )
            return
        via = "from the callback" if source == "callback" else "from the provider's state"
        label = f", provider: {call.state_label}" if call.state_label else ""
        self.stdout.write(f"status:      {call.status} ({via}{label})")
        if call.duration is not None:
            self.stdout.write(f"duration:    {call.duration}")
        self.stdout.write(f"price:       {_money(call.price)}")
