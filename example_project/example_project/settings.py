"""Settings of the example site, read from the environment with django-environ.

``.env.example`` beside ``manage.py`` documents every variable; each has a
default that runs the demo on the local emulator. While ``make demo`` runs, its
``.env.demo`` says where its two servers are (``make demo PORT=... EMULATOR_PORT=...``).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django
import environ
from django.core.exceptions import ImproperlyConfigured

from django_voicepassword.conf import DEFAULTS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The process's environment wins over both files, and .env.demo over .env: while
# make demo runs, a command typed in another terminal reaches the demo's emulator
# and is called back on the demo's port, whatever ports .env names. make demo
# writes the file when it starts and removes it when it stops; DEMO_ENV_FILE moves it.
DEMO_ENV_FILE = Path(env.str("DEMO_ENV_FILE", default=str(BASE_DIR / ".env.demo")))
for env_file in (DEMO_ENV_FILE, BASE_DIR / ".env"):
    if env_file.is_file():
        env.read_env(env_file)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="demo-only-secret-key-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_voicepassword",
    "example_project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite's deferred transactions fail at once with "database is locked" when two
    # requests write at the same moment (a callback during a login): IMMEDIATE takes
    # the write lock at BEGIN, where SQLite waits for it up to "timeout" seconds
    # (docs/howto/deploy.md, voicepassword.W007). Options in DATABASE_URL
    # (sqlite:///db.sqlite3?timeout=30) win.
    sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    sqlite_options.setdefault("transaction_mode", "IMMEDIATE")
    sqlite_options.setdefault("timeout", 20)
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = env.str("DJANGO_LANGUAGE_CODE", default="ru")
LANGUAGES = [("ru", "Русский"), ("en", "English")]
TIME_ZONE = "Europe/Moscow"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# The admin logs in with a password, everyone else by phone.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django_voicepassword.auth_backends.PhoneCodeBackend",
]
LOGIN_URL = "voicepassword:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

VOICEPASSWORD = {
    "API_KEY": env.str("VOICEPASSWORD_API_KEY", default="emulator-key"),
    "API_URL": env.str(
        "VOICEPASSWORD_API_URL", default="http://127.0.0.1:8765/api/voice-password/"
    ),
    "GATEWAY": env.str(
        "VOICEPASSWORD_GATEWAY", default="django_voicepassword.gateways.HttpGateway"
    ),
    # The emulator (or the provider) posts call states back to the site here.
    "CALLBACK_BASE_URL": env.str(
        "VOICEPASSWORD_CALLBACK_BASE_URL", default="http://127.0.0.1:8000"
    ),
    "LOW_BALANCE": env.str("VOICEPASSWORD_LOW_BALANCE", default="100"),
    # A first login by phone creates the user: any test number logs in.
    "CREATE_USERS": env.bool("VOICEPASSWORD_CREATE_USERS", default=True),
    # The code page offers an SMS (free on the emulator, about ten calls' price for real).
    "SMS_FALLBACK": env.bool("VOICEPASSWORD_SMS_FALLBACK", default=True),
}

# Limits and timeouts (docs/settings.md), for load runs such as bench/soak.py. Each
# VOICEPASSWORD_LIMIT_<SCOPE> (NUMBER, IP, NETWORK, PREFIX, SESSION, GLOBAL) is that scope's rates,
# "3/10m,10/d"; empty: the scope is not limited; unset: the package's default rates.
limits = dict(DEFAULTS["LIMITS"])
for scope in limits:
    if f"VOICEPASSWORD_LIMIT_{scope.upper()}" in env:
        limits[scope] = env.str(f"VOICEPASSWORD_LIMIT_{scope.upper()}")
VOICEPASSWORD["LIMITS"] = limits
# The spend allowed per Moscow day, in roubles; unset or empty: no budget.
VOICEPASSWORD["DAILY_BUDGET"] = env.str("VOICEPASSWORD_DAILY_BUDGET", default="") or None
# Seconds to wait for the provider's answer once connected.
VOICEPASSWORD["READ_TIMEOUT"] = env.float(
    "VOICEPASSWORD_READ_TIMEOUT", default=DEFAULTS["READ_TIMEOUT"]
)

# Background work (docs/tasks.md): where django_voicepassword.tasks run.
#   immediate  in the process that enqueues them (the framework's default; no worker)
#   db         django-tasks-db: tasks are rows in DATABASE_URL; `manage.py db_worker` runs them
#   rq         django-tasks-rq: tasks are RQ jobs in REDIS_URL; `manage.py rqworker
#              --job-class django_tasks_rq.Job default` runs them, on any number of machines
TASKS_BACKEND = env.str("TASKS_BACKEND", default="immediate")
if django.VERSION < (6, 0) and find_spec("django_tasks"):
    # Django 5.2: the django-tasks backport (the [tasks] extra) stands in for django.tasks.
    INSTALLED_APPS.append("django_tasks")
if TASKS_BACKEND == "db":
    INSTALLED_APPS.append("django_tasks_db")
    TASKS: dict[str, Any] = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }
elif TASKS_BACKEND == "rq":
    INSTALLED_APPS += ["django_rq", "django_tasks_rq"]
    RQ_QUEUES = {"default": {"URL": env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")}}
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
elif TASKS_BACKEND != "immediate":
    raise ImproperlyConfigured(
        f"TASKS_BACKEND must be 'immediate', 'db' or 'rq', not {TASKS_BACKEND!r}."
    )
# The code page answers at once and the worker places the call (a worker backend only).
VOICEPASSWORD["ASYNC_SEND"] = env.bool("VOICEPASSWORD_ASYNC_SEND", default=False)
# A workflow (docs/howto/workflows.md), as JSON; unset: none, the person resends by hand.
VOICEPASSWORD["WORKFLOW"] = env.json("VOICEPASSWORD_WORKFLOW", default=None)

# The emulator's phone page, which the home page links: the API's own address,
# unless the site talks to the real service.
_api = urlsplit(str(VOICEPASSWORD["API_URL"]))
EMULATOR_URL = (
    ""
    if _api.netloc == urlsplit(DEFAULTS["API_URL"]).netloc
    else f"{_api.scheme}://{_api.netloc}/"
)

# Who runs the login pages: "voicepassword" (the package's own, the default) or
# "allauth" (django-allauth's pages and headless API over the package:
# docs/howto/allauth.md; pip install "django-voicepassword[allauth]", then migrate).
VOICEPASSWORD_DEMO_AUTH = env.str("VOICEPASSWORD_DEMO_AUTH", default="voicepassword")
if VOICEPASSWORD_DEMO_AUTH == "allauth":
    # Before "allauth": its templates say how a flash call brings the code.
    INSTALLED_APPS += [
        "django_voicepassword.contrib.allauth",
        "allauth",
        "allauth.account",
        "allauth.headless",
    ]
    MIDDLEWARE += [
        "allauth.account.middleware.AccountMiddleware",
        "django_voicepassword.contrib.allauth.middleware.AllauthErrorsMiddleware",
    ]
    AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "allauth.account.auth_backends.AuthenticationBackend",
    ]
    LOGIN_URL = "account_login"
    ACCOUNT_ADAPTER = "django_voicepassword.contrib.allauth.adapter.VoicePasswordAccountAdapter"
    ACCOUNT_LOGIN_METHODS = {"phone"}
    ACCOUNT_SIGNUP_FIELDS = ["phone*"]
    ACCOUNT_LOGIN_BY_CODE_ENABLED = True
    ACCOUNT_EMAIL_VERIFICATION = "none"
    # allauth's sign-up makes the users: the package's own first-login users are off.
    VOICEPASSWORD["CREATE_USERS"] = False
elif VOICEPASSWORD_DEMO_AUTH != "voicepassword":
    raise ImproperlyConfigured(
        "VOICEPASSWORD_DEMO_AUTH must be 'voicepassword' or 'allauth', "
        f"not {VOICEPASSWORD_DEMO_AUTH!r}."
    )

DEMO_ADMIN_USERNAME = env.str("DEMO_ADMIN_USERNAME", default="admin")
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="demo-password")
