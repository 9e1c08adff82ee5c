"""Switch the suite to the django-otp test site (``settings.py`` here) for this directory.

pytest-django sets Django up once per run, with the suite's settings; the
tests here need django-otp's app and the device's. A package-scoped fixture
applies the settings of :mod:`tests.contrib_otp.settings` that differ
(``override_settings`` of ``INSTALLED_APPS`` reloads the app registry, as
Django's own test suite does) and migrates the device's table into the test
database, then restores the suite's settings for the rest of the run. Under
``--ds tests.contrib_otp.settings`` there is nothing to switch.

Without django-otp installed every module here is skipped, saying so
(``pytest.importorskip`` at its top: ``pip install "django-voicepassword[otp]"``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="package", autouse=True)
def otp_site(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """The suite switched to the django-otp test site, its tables migrated."""
    from django.apps import apps as django_apps
    from django.conf import settings
    from django.contrib import admin
    from django.core.checks.registry import registry as check_registry
    from django.core.management import call_command
    from django.test import override_settings

    from tests.contrib_otp import settings as site

    if site.__name__ == settings.SETTINGS_MODULE:
        yield
        return
    registered = set(admin.site._registry)
    suite_apps = set(settings.INSTALLED_APPS)
    changed = {name: getattr(site, name) for name in site.CHANGED if hasattr(site, name)}
    installed = changed.pop("INSTALLED_APPS")
    # The other settings first: override_settings reloads the apps before it
    # switches the settings, and the apps' ready() must see the site's.
    with override_settings(**changed), override_settings(INSTALLED_APPS=installed):
        with django_db_blocker.unblock():
            call_command("migrate", verbosity=0, interactive=False)
        try:
            yield
        finally:
            # Their tables go too: PostgreSQL will not truncate auth_user (the
            # flush of the suite's later tests) while a table refers to it.
            added = [
                app.label
                for app in django_apps.get_app_configs()
                if app.name not in suite_apps and list(app.get_models())
            ]
            with django_db_blocker.unblock():
                for label in reversed(added):
                    call_command("migrate", label, "zero", verbosity=0, interactive=False)
            # The admin's autodiscover registered the device on admin.site
            # when the app was installed; the rest of the suite runs without it.
            for model in set(admin.site._registry) - registered:
                admin.site.unregister(model)
            # two_factor's ready() registered a system check that warns when
            # two_factor is not installed: the rest of the suite runs without it.
            two_factor_checks = sys.modules.get("two_factor.checks")
            if two_factor_checks is not None:
                check_registry.registered_checks.discard(
                    two_factor_checks.check_installed_app_order
                )
