"""Settings of the login bench site, read from the environment with django-environ.

``bench/login.py`` sets ``DATABASE_URL`` (its scratch database), ``REDIS_URL``
(its Redis database), ``VOICEPASSWORD_API_URL`` (the emulator) and
``BENCH_SITE_URL`` (where gunicorn listens) and starts gunicorn with these
settings. Production-like where it matters for a timing: ``DEBUG`` off (no
query log), persistent database connections, Redis as the cache, Django's
database sessions (the default, as in the example site). The middleware is
what a site with session logins runs (security, sessions, common, CSRF,
authentication), the same for both sides: the less they share, the stricter
the ratio.

The limits keep the shape of the package's defaults (every scope, as many
rates per scope, so the app counts as much as on a default site) with counts
no bench run reaches: the run logs in a few dozen test numbers hundreds of
times from one address. The session scope keeps its default (5 an hour):
every login starts in a fresh session.
"""

from __future__ import annotations

import environ

env = environ.Env()

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="bench-only-secret-key-not-for-production")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "login_site.urls"
WSGI_APPLICATION = "login_site.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = True
LANGUAGE_CODE = "en"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "django_voicepassword",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = 600
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("REDIS_URL", default="redis://127.0.0.1:6379/13"),
    }
}

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django_voicepassword.auth_backends.PhoneCodeBackend",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # 4xx answers are the API's refusals; a 5xx (logged at ERROR) is what to see.
    "loggers": {"django.request": {"level": "ERROR"}},
}

#: Far above what a run sends, in the package's default shape (see above).
BENCH_LIMITS = {
    "number": "1000000/10m,1000000/d",
    "ip": "1000000/h,1000000/d",
    "network": "1000000/h,1000000/d",
    "prefix": "1000000/h",
    "session": "5/h",
    "global": "1000000/h",
}

VOICEPASSWORD = {
    "API_KEY": "emulator-key",
    "API_URL": env.str(
        "VOICEPASSWORD_API_URL", default="http://127.0.0.1:8765/api/voice-password/"
    ),
    "GATEWAY": "django_voicepassword.gateways.HttpGateway",
    "CALLBACK_BASE_URL": env.str("BENCH_SITE_URL", default="http://127.0.0.1:8000"),
    # The bench's numbers have users already: a returning user's login.
    "CREATE_USERS": False,
    "SMS_FALLBACK": False,
    "LIMITS": BENCH_LIMITS,
}
