"""``manage.py voicepassword_emulator``: run the VoicePassword emulator.

The same options as ``python -m django_voicepassword.emulator``; the default
API key is the site's ``VOICEPASSWORD["API_KEY"]``, so the site and the
emulator agree without repeating it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_voicepassword.conf import settings
from django_voicepassword.emulator.cli import DESCRIPTION, add_arguments, run_from_options
from django_voicepassword.emulator.core import DEFAULT_API_KEY


class Command(BaseCommand):
    """Run the emulator in the foreground (``--run-for`` to stop by itself)."""

    help = DESCRIPTION
    # A development server: it needs no database and must start on a half-set-up site.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """The shared emulator options."""
        add_arguments(parser, api_key=settings.API_KEY or DEFAULT_API_KEY)

    def handle(self, *args: Any, **options: Any) -> None:
        """Serve until Ctrl-C or ``--run-for`` seconds."""
        run_from_options(options, self.stdout)
