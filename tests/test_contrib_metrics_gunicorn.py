"""contrib.metrics under gunicorn: two workers count, one scrape sums them.

The example site, with ``django_voicepassword.contrib.metrics`` installed and
its view routed, runs under gunicorn with two sync workers and
``PROMETHEUS_MULTIPROC_DIR`` set (the child_exit hook of docs/howto/metrics.md
in its config), on a SQLite file (``transaction_mode`` IMMEDIATE), with the
emulator on loopback as the provider, which posts the calls' callbacks back.
Logins are driven over HTTP from several threads, so both workers serve some;
then every scrape, whichever worker answers it, must give the sums.

Default tier (SQLite, the local-memory cache, no budget); gunicorn comes with
the test dependency group, and the test skips with a reason without it. With
the service tier's Redis the same runs again on a shared cache with a daily
budget, whose gauge is read from the cache when scraped: every worker reports
the same value, once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import services

pytest.importorskip("gunicorn", reason="gunicorn is not installed (the test dependency group)")

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_project"
HOST = "127.0.0.1"
START = "/voicepassword/api/challenges/"
PREFIX = f"voicepassword-metrics-{os.getpid()}"
REDIS_URL = f"redis://{services.REDIS[0]}:{services.REDIS[1]}/15"
#: Logins driven over HTTP, six at a time: both workers serve some.
LOGINS = 12
NUMBERS = [f"799900000{n}" for n in range(60, 60 + LOGINS)]
BUDGET = Decimal("50.00")
FLASH_CALL_PRICE = Decimal("0.50")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SETTINGS = """
from example_project.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_voicepassword.contrib.metrics"]  # noqa: F405
ROOT_URLCONF = "metrics_urls"
CACHES["default"]["KEY_PREFIX"] = {prefix!r}  # noqa: F405
"""
URLS = """
from django.urls import path

from django_voicepassword.contrib.metrics.views import metrics_view
from example_project.urls import urlpatterns as site

urlpatterns = [*site, path("metrics/", metrics_view)]
"""
# What docs/howto/metrics.md tells a site to put in its gunicorn config.
GUNICORN_CONF = """
from prometheus_client import multiprocess


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Site:
    url: str
    emulator: str
    multiproc_dir: Path
    cache: str

    def scrape(self) -> tuple[str, Samples]:
        response = requests.get(f"{self.url}/metrics/", timeout=30)
        response.raise_for_status()
        samples: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return response.text, samples

    def code_for(self, number: str) -> str:
        state = requests.get(f"{self.emulator}/_emulator/log", timeout=10).json()
        calls = [call for call in state["calls"] if call["number"] == number]
        assert calls, f"no call to {number}"
        code: str = calls[-1]["code"]
        return code


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=10)


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            requests.get(url, timeout=5).close()
            return
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer within 60 s: {log.read_text(errors='replace')[-3000:]}")


def _forget_redis_keys() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module", params=["locmem", pytest.param("redis", marks=pytest.mark.redis)])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    cache: str = request.param
    scratch = tmp_path_factory.mktemp(f"metrics-{cache}")
    (scratch / "metrics_settings.py").write_text(SETTINGS.format(prefix=PREFIX))
    (scratch / "metrics_urls.py").write_text(URLS)
    (scratch / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    multiproc_dir = scratch / "prometheus"
    multiproc_dir.mkdir()
    emulator_port, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        PYTHONPATH=os.pathsep.join([str(scratch), str(EXAMPLE_DIR)]),
        DJANGO_SETTINGS_MODULE="metrics_settings",
        DJANGO_SECRET_KEY="metrics-tests-only-secret-key",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS=HOST,
        DJANGO_LANGUAGE_CODE="en",
        DATABASE_URL=f"sqlite:///{scratch / 'db.sqlite3'}",
        CACHE_URL=REDIS_URL if cache == "redis" else "locmemcache://",
        VOICEPASSWORD_API_URL=f"http://{HOST}:{emulator_port}/api/voice-password/",
        VOICEPASSWORD_CALLBACK_BASE_URL=f"http://{HOST}:{port}",
        VOICEPASSWORD_CREATE_USERS="true",
        # Every client of a loopback test has one address: no limit but the budget.
        **{
            f"VOICEPASSWORD_LIMIT_{scope}": ""
            for scope in ("NUMBER", "IP", "NETWORK", "PREFIX", "SESSION", "GLOBAL")
        },
        # Each worker of a local-memory cache would hold a budget of its own.
        VOICEPASSWORD_DAILY_BUDGET=str(BUDGET) if cache == "redis" else "",
    )
    migrated = subprocess.run(
        [sys.executable, str(EXAMPLE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    # Set for gunicorn only: the migration above must leave no files behind.
    served = {**env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    commands = {
        "emulator": (
            [
                sys.executable,
                "-m",
                "django_voicepassword.emulator",
                f"--port={emulator_port}",
                "--callback-delay=0.2",
            ],
            env,
        ),
        "gunicorn": (
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers=2",
                f"--bind={HOST}:{port}",
                f"--config={scratch / 'gunicorn_conf.py'}",
                "example_project.wsgi",
            ],
            served,
        ),
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, (command, environment) in commands.items():
            with (scratch / f"{name}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=EXAMPLE_DIR,
                        env=environment,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        emulator, url = f"http://{HOST}:{emulator_port}", f"http://{HOST}:{port}"
        _wait_for(emulator + "/_emulator/log", processes[0], scratch / "emulator.log")
        _wait_for(url + "/metrics/", processes[1], scratch / "gunicorn.log")
        yield Site(url, emulator, multiproc_dir, cache)
    finally:
        for process in reversed(processes):
            _stop(process)
        if cache == "redis":
            _forget_redis_keys()


def _login(site: Site, number: str, *, wrong_first: bool) -> None:
    with requests.Session() as session:
        started = session.post(f"{site.url}{START}", json={"number": "+" + number}, timeout=30)
        assert started.status_code == 201, started.text
        confirm = f"{site.url}{START}{started.json()['id']}/confirm/"
        code = site.code_for(number)
        if wrong_first:
            wrong = "1111" if code != "1111" else "2222"
            assert session.post(confirm, json={"code": wrong}, timeout=30).status_code == 400
        done = session.post(confirm, json={"code": code}, timeout=30)
        assert done.status_code == 200, done.text


def test_two_workers_count_and_every_scrape_gives_the_sums(site):
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda n: _login(site, n[1], wrong_first=n[0] < 3), enumerate(NUMBERS)))

    # The emulator posts each call's state back after its delay, to either worker.
    deadline = time.monotonic() + 60
    applied = (
        "voicepassword_callbacks_total",
        frozenset({("outcome", "applied"), ("state", "answered")}),
    )
    while True:
        _text, samples = site.scrape()
        if samples.get(applied, 0) >= LOGINS or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    # Both workers counted: each writes files of its own pid.
    pids = {path.stem.rsplit("_", 1)[1] for path in site.multiproc_dir.glob("*.db")}
    assert len(pids) >= 2, sorted(site.multiproc_dir.iterdir())
    # Several scrapes, whichever worker answers: the same sums.
    for _scrape in range(4):
        text, samples = site.scrape()

        def value(name: str, samples: Samples = samples, **labels: str) -> float:
            return samples.get((name, frozenset(labels.items())), 0.0)

        assert (
            value("voicepassword_codes_sent_total", channel="flash_call", outcome="placed")
            == LOGINS
        )
        assert (
            value("voicepassword_challenges_started_total", channel="flash_call", purpose="login")
            == LOGINS
        )
        assert (
            value("voicepassword_provider_requests_total", kind="flash_call", outcome="ok")
            == LOGINS
        )
        assert (
            value("voicepassword_provider_request_duration_seconds_count", kind="flash_call")
            == LOGINS
        )
        assert value("voicepassword_confirmations_total", purpose="login") == LOGINS
        assert value("voicepassword_confirmation_failures_total", reason="wrong_code") == 3
        assert (
            value("voicepassword_callbacks_total", outcome="applied", state="answered") == LOGINS
        )
        assert value("voicepassword_limit_refusals_total", scope="budget") == 0
        # The budget gauge is computed when scraped, never stored per worker: once, or not at all.
        lines = [
            line
            for line in text.splitlines()
            if line.startswith("voicepassword_daily_budget_left ")
        ]
        if site.cache == "redis":
            assert lines == [
                f"voicepassword_daily_budget_left {float(BUDGET - LOGINS * FLASH_CALL_PRICE)}"
            ]
        else:
            assert lines == []
