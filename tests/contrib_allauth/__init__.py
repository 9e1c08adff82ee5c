"""The allauth test site: django-allauth (phone login and sign-up) over django-voicepassword.

The tests here run in the normal ``pytest`` run (their ``conftest.py``
switches the settings to :mod:`tests.contrib_allauth.settings` for this
directory) or on their own with ``pytest --ds=tests.contrib_allauth.settings
tests/contrib_allauth``. Without django-allauth they skip, saying so, except
under CI (``CI=true``), where the ``allauth`` extra is installed and its
absence fails the run.
"""

from __future__ import annotations

import os

import pytest

INSTALL = 'pip install "django-voicepassword[allauth]" (or "django-allauth[headless]>=65.21")'


def require_allauth() -> None:
    """Skip the calling test module when django-allauth is missing (fail under CI)."""
    try:
        import allauth  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"django-allauth is not installed, and CI must run its tests: {INSTALL}")
        pytest.skip(f"django-allauth is not installed: {INSTALL}", allow_module_level=True)
