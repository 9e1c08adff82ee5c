"""The test tiers: which database and cache the suite runs on.

``VOICEPASSWORD_TEST_SERVICES`` unset or empty: the default tier (SQLite, the
local-memory cache); tests marked ``postgres``, ``redis`` or ``browser`` skip
with a reason. Set (to anything but ``0``): the service tier, the same suite on
PostgreSQL and Redis at 127.0.0.1 and the browser tests in Chromium. A service
that is missing then skips its tests with a reason, except under CI (``CI=true``)
where the tier is required and a missing service fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
from functools import cache
from typing import Any

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def tier_on() -> bool:
    """Whether the service tier was asked for."""
    return os.environ.get("VOICEPASSWORD_TEST_SERVICES", "") not in ("", "0")


def required() -> bool:
    """Whether a missing service must fail the run rather than skip (CI)."""
    return tier_on() and os.environ.get("CI", "").lower() in ("1", "true", "yes")


@cache
def reachable(address: tuple[str, int]) -> bool:
    """Whether something accepts TCP connections at ``address``."""
    try:
        with socket.create_connection(address, timeout=1.0):
            return True
    except OSError:
        return False


def chromium() -> str | None:
    """The path of Debian's Chromium, if installed."""
    for path in CHROMIUM_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def available(service: str) -> tuple[bool, str]:
    """``(True, "")`` when ``service`` can be used, else ``(False, why)``."""
    if not tier_on():
        return False, f"{service}: service tier off (set VOICEPASSWORD_TEST_SERVICES=1)"
    if service == "postgres" and not reachable(POSTGRES):
        return False, "postgres: nothing listens on 127.0.0.1:5432"
    if service == "redis" and not reachable(REDIS):
        return False, "redis: nothing listens on 127.0.0.1:6379"
    if service == "browser" and chromium() is None:
        return False, "browser: Debian's chromium is not installed"
    return True, ""


def databases() -> dict[str, Any]:
    """The ``DATABASES`` setting of the current tier."""
    if available("postgres")[0]:
        return {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": POSTGRES[0],
                "PORT": POSTGRES[1],
                "NAME": "voicepassword",
                "USER": "postgres",
                # One test database per run, so that two runs on one machine
                # (two nox sessions, two developers' terminals) never collide.
                "TEST": {"NAME": f"test_voicepassword_{os.getpid()}"},
            }
        }
    return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}


def caches() -> dict[str, Any]:
    """The ``CACHES`` setting of the current tier."""
    if available("redis")[0]:
        return {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://{REDIS[0]}:{REDIS[1]}/15",
                "KEY_PREFIX": f"voicepassword-tests-{os.getpid()}",
            }
        }
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def clear_cache() -> None:
    """Empty this run's default cache: every key of its prefix, and no other run's.

    Not ``cache.clear()``: on the service tier's Redis that flushes the
    database which other test runs on the machine share.
    """
    from django.core.cache import caches

    backend: Any = caches["default"]
    if type(backend).__name__ == "RedisCache":
        client = backend._cache.get_client()
        for key in client.scan_iter(match=backend.make_key("*")):
            client.delete(key)
    else:
        backend.clear()
