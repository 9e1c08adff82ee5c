"""The limits and the budget of a login start on Redis: one script against the cache API.

Run ``python bench/limits.py [--starts N] [--repeats R] [--redis-db D]``
(Redis on 127.0.0.1:6379; the database, 9 by default, must be empty and is
flushed at the end).

The script sets Django up with Django's ``RedisCache`` on that database and
every limit scope on (rates no start reaches), the daily budget and the
fraud guard on. Each repeat makes N starts' worth of counting on each side,
the two sides alternating:

* the baseline: what a start did through the cache's API,
  ``check_send`` then ``reserve`` and the read of the send durations, each
  command a round trip;
* the measured side: :func:`~django_voicepassword.ratelimit.check_and_reserve`,
  one Lua script for the same counting.

Each start is a new number (of its own prefix, so the fraud guard never
judges one), address and session; a third of them of each kind (new,
verified, uncalled).

It judges (exit status 0 pass, 1 miss, 2 not run; see ``bench/_harness.py``):

* the work: on each side the global counter and the budget hold every start
  of the repeat (the measured side counted what the baseline did), and the
  measured side asked Redis once per start;
* the target: the measured side's time per start at most :data:`TARGET` of
  the baseline's (median of the repeats' ratios).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_voicepassword.ratelimit import NumberKind

from _harness import REDIS, Unavailable, Verdict, main, ratios, scratch_redis

#: The measured side's time per start, as a share of the baseline's.
TARGET = 0.5
KINDS: tuple[NumberKind, ...] = ("new", "verified", "uncalled")
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"
DURATIONS = "voicepassword:send-durations:flash_call"
_HIGH = "1000000/h,1000000/d"
VOICEPASSWORD: dict[str, Any] = {
    "API_KEY": "bench-key",
    "LIMITS": dict.fromkeys(("session", "ip", "network", "number", "prefix", "global"), _HIGH),
    "DAILY_BUDGET": "100000000",
    "FRAUD_GUARD": {},
    "PREFIX_LENGTH": 11,
}


@contextlib.contextmanager
def cache_path() -> Iterator[None]:
    """The baseline: counting through the cache's API, as on any other cache."""
    from django_voicepassword import ratelimit

    real = ratelimit._redis_client
    ratelimit._redis_client = lambda: None
    try:
        yield
    finally:
        ratelimit._redis_client = real


class Starts:
    """Numbered starts, each its own number, address and session."""

    def __init__(self) -> None:
        from django.test import RequestFactory

        self.made = 0
        self.factory = RequestFactory()

    def one(self, *, measured: bool) -> None:
        from django.core.cache import cache

        from django_voicepassword import ratelimit

        self.made += 1
        n = self.made
        request: Any = self.factory.post(
            "/", REMOTE_ADDR=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        )
        request.session = SimpleNamespace(session_key=f"bench-{n}")
        number, kind = f"7999{n:07d}", KINDS[n % len(KINDS)]
        if measured:
            ratelimit.check_and_reserve(
                number, request, kind=kind, channel="flash_call", peek=[DURATIONS]
            )
        else:
            ratelimit.check_send(number, request, kind=kind)
            ratelimit.reserve("flash_call", request=request)
            cache.get(DURATIONS)


def stored() -> tuple[int, int]:
    """The global counters' sum and the budget's, as Redis holds them."""
    from django.core.cache import caches

    backend: Any = caches["default"]
    client = backend._cache.get_client()

    def total(pattern: str) -> int:
        keys = list(client.scan_iter(match=backend.make_key(pattern)))
        return sum(int(value) for value in client.mget(keys)) if keys else 0

    return total("voicepassword:limit:global:all:*"), total("voicepassword:budget:*")


def counted_by(count: int) -> tuple[int, int]:
    """What ``count`` starts leave in :func:`stored`.

    Every start in both global windows (an hour's, a day's), 50 kopecks (a
    flash call) each against the budget.
    """
    return 2 * count, 50 * count


def forget() -> None:
    from django.core.cache import caches

    backend: Any = caches["default"]
    client = backend._cache.get_client()
    for key in client.scan_iter(match=backend.make_key("voicepassword:*")):
        client.delete(key)


def side(starts: Starts, count: int, *, measured: bool) -> tuple[float, tuple[int, int]]:
    """Seconds per start of ``count`` starts on one side, and what they stored."""
    forget()
    with contextlib.nullcontext() if measured else cache_path():
        began = time.perf_counter()
        for _ in range(count):
            starts.one(measured=measured)
        seconds = (time.perf_counter() - began) / count
    return seconds, stored()


def round_trips_per_start(starts: Starts) -> int:
    """The requests the measured side writes to Redis for one start."""
    from redis.connection import AbstractConnection

    sent = 0
    real: Any = AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        real(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        starts.one(measured=True)
    finally:
        AbstractConnection.send_packed_command = real  # type: ignore[method-assign]
    return sent


def measure(count: int, repeats: int) -> Verdict:
    """Alternate the two sides ``repeats`` times; judge (see the module docstring)."""
    starts = Starts()
    side(starts, 20, measured=True)  # the script loaded, the connection open
    side(starts, 20, measured=False)
    verdict = Verdict()
    baseline: list[float] = []
    measured: list[float] = []
    expected = counted_by(count)
    for _ in range(repeats):
        seconds, counted = side(starts, count, measured=False)
        baseline.append(seconds)
        verdict.require(
            "the baseline counted every start", counted == expected, f"{counted} of {expected}"
        )
        seconds, counted = side(starts, count, measured=True)
        measured.append(seconds)
        verdict.require(
            "the script counted every start", counted == expected, f"{counted} of {expected}"
        )
    trips = round_trips_per_start(starts)
    verdict.require("one round trip per start", trips == 1, f"{trips} requests")
    forget()
    print(
        f"per start: cache API {1000 * sorted(baseline)[repeats // 2]:.3f} ms, "
        f"script {1000 * sorted(measured)[repeats // 2]:.3f} ms (medians of {repeats})"
    )
    verdict.target("script / cache API", ratios(measured, baseline), at_most=TARGET)
    return verdict


def run(args: argparse.Namespace) -> Verdict:
    """Set Django up on the scratch Redis, measure, judge."""
    import django
    import redis
    from django.conf import settings

    try:
        redis.Redis.from_url(REDIS, socket_timeout=3).ping()
    except redis.RedisError as error:
        raise Unavailable(f"Redis is not reachable at {REDIS}: {error}") from error
    with scratch_redis(args.redis_db) as url:
        settings.configure(
            USE_TZ=True,
            SECRET_KEY="bench-only-secret-key-not-for-production",  # noqa: S106 (not a secret)
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django_voicepassword",
            ],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": url,
                }
            },
            VOICEPASSWORD=VOICEPASSWORD,
        )
        django.setup()
        return measure(args.starts, args.repeats)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=200, help="starts per side (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per side (default 5)")
    parser.add_argument("--redis-db", type=int, default=9, help="an empty Redis database")
    main(run, parser)
