"""The allauth test site: tests.settings plus allauth, phone login and phone sign-up."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import AUTHENTICATION_BACKENDS, INSTALLED_APPS, MIDDLEWARE

# Before "allauth": this app's templates replace allauth's code pages.
INSTALLED_APPS = [
    *INSTALLED_APPS,
    "django_voicepassword.contrib.allauth",
    "allauth",
    "allauth.account",
    "allauth.headless",
]
MIDDLEWARE = [
    *MIDDLEWARE,
    "allauth.account.middleware.AccountMiddleware",
    "django_voicepassword.contrib.allauth.middleware.AllauthErrorsMiddleware",
]
AUTHENTICATION_BACKENDS = [
    *AUTHENTICATION_BACKENDS,
    "allauth.account.auth_backends.AuthenticationBackend",
]
ROOT_URLCONF = "tests.contrib_allauth.urls"
LOGIN_REDIRECT_URL = "/done/"

ACCOUNT_ADAPTER = "django_voicepassword.contrib.allauth.adapter.VoicePasswordAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"phone"}
ACCOUNT_SIGNUP_FIELDS = ["phone*"]
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_EMAIL_VERIFICATION = "none"
# The test site counts every send in the package's limits; allauth's own
# per-request limits are left at their defaults (docs/howto/allauth.md).
HEADLESS_CLIENTS = ("app", "browser")
