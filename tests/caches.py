"""A local-memory cache on which a lost update shows.

The limits count with ``cache.incr``, which the local-memory cache runs under
its lock: concurrent counts never lose one. A count written as "get, add one,
set" loses updates when two threads read the same value, but with the
local-memory cache a read and the write after it take microseconds, and the
threads of a test rarely interleave there: such a count passed the concurrency
tests every time. :class:`SlowReadLocMemCache` makes every read yield the
thread for a millisecond after it has read (as a network round trip to Redis
or memcached does), so that concurrent readers all read before any of them
writes, and a read-modify-write loses updates every time; ``incr``, ``add``
and ``touch`` keep the lock and stay atomic.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache.backends.locmem import LocMemCache

__all__ = ["READ_DELAY", "SLOW_READ_LOCMEM", "SlowReadLocMemCache"]

#: How long a read yields, in seconds.
READ_DELAY = 0.001


class SlowReadLocMemCache(LocMemCache):
    """``LocMemCache`` whose ``get`` (and so ``get_many``) yields after reading."""

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """The stored value, returned a millisecond after it was read."""
        value = super().get(key, default, version)
        time.sleep(READ_DELAY)
        return value


#: A ``CACHES`` setting with it as the default cache.
SLOW_READ_LOCMEM = {"default": {"BACKEND": "tests.caches.SlowReadLocMemCache"}}
