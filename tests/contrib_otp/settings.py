"""The django-otp test site: the suite's settings with django-otp and the device.

``conftest.py`` here switches the running suite to these for this directory
(``INSTALLED_APPS`` and the rest of :data:`CHANGED`, with the device's tables
migrated), so a plain ``pytest`` runs these tests; ``pytest --ds
tests.contrib_otp.settings tests/contrib_otp`` runs them on these settings
from the start.
"""

from __future__ import annotations

import importlib.util

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS as SUITE_APPS
from tests.settings import MIDDLEWARE as SUITE_MIDDLEWARE

INSTALLED_APPS = [
    *SUITE_APPS,
    "django_otp",
    "django_voicepassword.contrib.otp",
]
if importlib.util.find_spec("two_factor") is not None:
    # django-two-factor-auth and the django-otp plugins its pages read.
    INSTALLED_APPS[-2:-2] = ["django_otp.plugins.otp_static", "django_otp.plugins.otp_totp"]
    INSTALLED_APPS += ["two_factor"]
    LOGIN_URL = "two_factor:login"
    # two_factor would otherwise replace every AdminSite's login (for good, in
    # this process); the admin here is django-otp's OTPAdminSite.
    TWO_FACTOR_PATCH_ADMIN = False

# request.user.is_verified(), which OTPAdminSite asks, comes from OTPMiddleware.
_AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
MIDDLEWARE = [
    *SUITE_MIDDLEWARE[: SUITE_MIDDLEWARE.index(_AUTH) + 1],
    "django_otp.middleware.OTPMiddleware",
    *SUITE_MIDDLEWARE[SUITE_MIDDLEWARE.index(_AUTH) + 1 :],
]

# The site: django-otp's admin (an OTPAdminSite) over the package's URLs.
ROOT_URLCONF = "tests.contrib_otp.urls"

# django-otp's defaults, spelled out: what the tests assert.
OTP_VOICEPASSWORD_TOKEN_VALIDITY = 300
OTP_VOICEPASSWORD_THROTTLE_FACTOR = 1
OTP_VOICEPASSWORD_COOLDOWN_DURATION = 60

#: The settings that differ from the suite's (what ``conftest.py`` switches).
CHANGED = [
    "INSTALLED_APPS",
    "MIDDLEWARE",
    "ROOT_URLCONF",
    "LOGIN_URL",
    "TWO_FACTOR_PATCH_ADMIN",
    "OTP_VOICEPASSWORD_TOKEN_VALIDITY",
    "OTP_VOICEPASSWORD_THROTTLE_FACTOR",
    "OTP_VOICEPASSWORD_COOLDOWN_DURATION",
]
