#!/usr/bin/env python
"""The example site's command-line entry point."""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run a Django management command for the example site."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
