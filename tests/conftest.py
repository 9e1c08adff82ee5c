"""Shared fixtures and the service-tier markers."""

from __future__ import annotations

import pytest

from tests import services

pytest_plugins = ["django_voicepassword.emulator.pytest_plugin"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests whose service is missing (under CI, sessionstart fails first)."""
    for item in items:
        for service in ("postgres", "redis", "browser"):
            if item.get_closest_marker(service) is None:
                continue
            ok, why = services.available(service)
            if not ok:
                item.add_marker(pytest.mark.skip(reason=why))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI the service tier is required: a missing service fails at once."""
    if not services.required():
        return
    checked = map(services.available, ("postgres", "redis", "browser"))
    missing = [why for ok, why in checked if not ok]
    if missing:
        raise pytest.UsageError("service tier required but: " + "; ".join(missing))


@pytest.fixture(autouse=True)
def _no_pending_send_durations() -> None:
    """Each test's send durations are its own: none left in this process by an earlier test.

    A process keeps the durations of its sends until it writes a batch of
    them to the cache (``verification._record_send_seconds``).
    """
    from django_voicepassword import verification

    verification._pending_durations.clear()


@pytest.fixture(autouse=True)
def _no_cached_figures() -> None:
    """Each test's rows are its own: no finished day's figures cached by an earlier test.

    The admin's dashboard and insights cache what finished days add up to
    (``dashboard.finished_and_live``); a test writes its rows straight into
    those days, which no signal reports.
    """
    from django_voicepassword import dashboard

    dashboard.forget_cached_days()
