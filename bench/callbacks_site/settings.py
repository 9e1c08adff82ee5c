"""Settings of the callback bench site, read from the environment with django-environ.

``bench/callbacks.py`` sets ``DATABASE_URL`` to the database it creates and
starts gunicorn with these settings. Production-like where it matters for a
timing: ``DEBUG`` off (no query log), persistent connections
(``CONN_MAX_AGE``), no access log. The middleware is the smallest a site
would run (security headers, common), the same for every view measured: the
less both sides share, the stricter the ratio.
"""

from __future__ import annotations

import environ

env = environ.Env()

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="bench-only-secret-key-not-for-production")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "callbacks_site.urls"
WSGI_APPLICATION = "callbacks_site.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = True
LANGUAGE_CODE = "en"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "django_voicepassword",
    "callbacks_site",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Names the gunicorn worker that answered, so the bench can see the load
    # spread over both workers. A header on every response, whichever view.
    "callbacks_site.views.worker_header",
]

DATABASES = {"default": env.db("DATABASE_URL")}
# Persistent connections, identical for every view: a new connection per
# request would cost more than the views being compared.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("BENCH_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # 4xx answers are part of the job; a 5xx (logged at ERROR) is what to see.
    "loggers": {"django.request": {"level": "ERROR"}},
}

VOICEPASSWORD = {
    "API_KEY": "bench-key-not-a-secret",
    "GATEWAY": "django_voicepassword.gateways.LocmemGateway",
    "CALLBACK_BASE_URL": "http://127.0.0.1",
    # The callback statement prepared once per connection (no PgBouncer here);
    # bench/callbacks.py --unprepared measures the default instead.
    "CALLBACK_PREPARED_STATEMENTS": env.bool("BENCH_PREPARED_STATEMENTS", default=True),
}
