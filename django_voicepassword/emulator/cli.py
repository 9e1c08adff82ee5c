"""The command-line options of the emulator, shared by ``python -m`` and ``manage.py``.

``python -m django_voicepassword.emulator`` and the ``voicepassword_emulator``
management command are thin wrappers: both build their parser with
:func:`add_arguments` and run :func:`run_from_options`, which calls
:func:`.server.serve`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .core import DEFAULT_API_KEY, DEFAULT_BALANCE, DEFAULT_SLOW_SECONDS
from .server import DEFAULT_HOST, DEFAULT_PORT, Writer, serve

__all__ = ["DESCRIPTION", "add_arguments", "run_from_options"]

DESCRIPTION = (
    "Run the VoicePassword emulator: the provider's API, its callbacks, fault modes "
    "and a page showing what each test number received, on loopback."
)


def _amount(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser, *, api_key: str = DEFAULT_API_KEY) -> None:
    """Add the emulator's options to ``parser``; ``api_key`` is the default key."""
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on, 0 for any free one (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--api-key",
        default=api_key,
        help="the API key the emulator accepts (default: the site's or 'emulator-key')",
    )
    parser.add_argument(
        "--balance",
        type=_amount,
        default=DEFAULT_BALANCE,
        help=f"starting balance in roubles (default {DEFAULT_BALANCE})",
    )
    parser.add_argument(
        "--callback-delay",
        type=float,
        default=2.0,
        help="seconds from a call to its final state and callback (default 2)",
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=DEFAULT_SLOW_SECONDS,
        help=f"how late the 'slow' fault answers (default {DEFAULT_SLOW_SECONDS:g})",
    )
    parser.add_argument(
        "--run-for",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )


def run_from_options(options: Mapping[str, Any], out: Writer) -> int:
    """Run the emulator with parsed options (``vars(namespace)`` or a command's)."""
    serve(
        options["host"],
        options["port"],
        api_key=options["api_key"],
        balance=options["balance"],
        callback_delay=options["callback_delay"],
        slow_seconds=options["slow_seconds"],
        run_for=options["run_for"],
        out=out,
    )
    return 0
