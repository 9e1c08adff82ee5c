"""The service tier really runs on the services it names."""

from __future__ import annotations

import pytest
from django.core.cache import cache, caches
from django.db import connection


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_service_tier_runs_on_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.redis
def test_the_service_tier_caches_in_redis():
    assert type(caches["default"]).__name__ == "RedisCache"
    cache.set("voicepassword-tier-probe", 41)
    assert cache.incr("voicepassword-tier-probe") == 42
    cache.delete("voicepassword-tier-probe")
