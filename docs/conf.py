"""Sphinx configuration of the django-voicepassword documentation.

Pages are Markdown (MyST); ``make docs`` builds them with warnings as errors,
and ``make test`` runs that build.
"""

from __future__ import annotations

import re
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_VERSION = re.search(
    r'__version__ = "([^"]+)"', (_ROOT / "django_voicepassword" / "__init__.py").read_text()
)

project = "django-voicepassword"
author = "django-voicepassword maintainers"
copyright = "2026, django-voicepassword maintainers"
release = _VERSION[1] if _VERSION else "unknown"
version = release

extensions = ["myst_parser"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "screenshots/README.md"]

html_theme = "furo"
html_title = "django-voicepassword"
language = "en"
