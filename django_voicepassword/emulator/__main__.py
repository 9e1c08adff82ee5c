"""``python -m django_voicepassword.emulator``: run the emulator (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .cli import DESCRIPTION, add_arguments, run_from_options

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the emulator; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m django_voicepassword.emulator", description=DESCRIPTION
    )
    add_arguments(parser)
    return run_from_options(vars(parser.parse_args(argv)), sys.stdout)


if __name__ == "__main__":  # pragma: no cover - run by test_python_m_* in a subprocess
    sys.exit(main())
