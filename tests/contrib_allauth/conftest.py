"""Switches the settings to the allauth test site for this directory.

pytest-django configures Django once, with ``tests.settings``; the tests of
this directory need allauth's apps, middleware and URLs. Unless the run
already uses :mod:`tests.contrib_allauth.settings` (``--ds``), every setting
that module changes is overridden for the directory's tests, and allauth's
tables are migrated into the test database. When the directory's tests are
done, the tables are dropped, the admin forgets allauth's models and the
overrides end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

SITE = "tests.contrib_allauth.settings"


def _site_settings() -> dict[str, Any]:
    """The settings the allauth site sets differently from tests.settings."""
    from tests import settings as base
    from tests.contrib_allauth import settings as site

    missing = object()
    return {
        name: getattr(site, name)
        for name in dir(site)
        if name.isupper() and getattr(site, name) != getattr(base, name, missing)
    }


@pytest.fixture(scope="package", autouse=True)
def allauth_site(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The allauth test site's settings for the whole directory."""
    try:
        import allauth  # noqa: F401
    except ImportError:
        # Every module of the directory skips (or fails under CI) on its own.
        yield
        return
    if settings.SETTINGS_MODULE == SITE:
        yield
        return
    from django.contrib import admin

    changed = _site_settings()
    installed = changed.pop("INSTALLED_APPS")
    registered = dict(admin.site._registry)
    # Two steps: allauth.account refuses to start without its middleware,
    # and INSTALLED_APPS is applied before the other settings of one override.
    with override_settings(**changed), override_settings(INSTALLED_APPS=installed):
        with django_db_blocker.unblock():
            call_command("migrate", verbosity=0)
        try:
            yield
        finally:
            admin.site._registry = registered
            # Drop allauth's tables again: their foreign keys to auth_user
            # would stop the later tests' flush (PostgreSQL's TRUNCATE), which
            # no longer knows them.
            with django_db_blocker.unblock():
                for label in ("account", "voicepassword_allauth"):
                    call_command("migrate", label, "zero", verbosity=0)
