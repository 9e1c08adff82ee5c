"""Two app processes of one site, on one PostgreSQL database and one Redis cache.

The limits and the daily budget are counted in the shared cache and a code is
consumed in the shared database, so they hold whichever process a request
reaches: concurrent starts split across both processes place exactly the
allowed number of calls, and a code is accepted once even when both processes
get it at the same moment. A local-memory cache in such a set-up counts per
process, which is what the system check ``voicepassword.W002`` reports.

Service tier only. The example site runs as two ``manage.py runserver
--noreload`` processes (threaded, ``DEBUG`` off) with the emulator as a third,
started once for the module on a database of its own and a key prefix of its
own in Redis database 15; each test starts from empty counters and an empty
emulator. ``bench/soak.py`` runs the same set-up under gunicorn at scale.
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
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.cookies import RequestsCookieJar

from tests import services

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_project"
HOST = "127.0.0.1"
PREFIX = f"voicepassword-mp-{os.getpid()}"
REDIS_URL = f"redis://{services.REDIS[0]}:{services.REDIS[1]}/15"
ADMIN_URL = f"postgres://postgres@{services.POSTGRES[0]}:{services.POSTGRES[1]}/postgres"
START = "/voicepassword/api/challenges/"
#: Flash calls the daily budget pays for (PRICE_ESTIMATES: 0.50 each).
BUDGET_CALLS = 10
NUMBER_LIMIT = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Site:
    """The two processes (``servers``: their base URLs) and the emulator."""

    servers: list[str]
    emulator: str

    def emulator_state(self) -> dict[str, Any]:
        response = requests.get(f"{self.emulator}/_emulator/log", timeout=10)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def sends(self, number: str | None = None) -> list[dict[str, Any]]:
        """The ``send/`` requests the emulator received (to ``number``)."""
        return [
            entry
            for entry in self.emulator_state()["log"]
            if entry["endpoint"] == "send" and number in (None, entry["number"])
        ]

    def code_for(self, number: str) -> str:
        """The code of the latest call to ``number``: what its phone shows."""
        calls = [call for call in self.emulator_state()["calls"] if call["number"] == number]
        assert calls, f"no call to {number}"
        code: str = calls[-1]["code"]
        return code

    def start(self, server: int, number: str, session: requests.Session) -> requests.Response:
        return session.post(
            self.servers[server] + START, json={"number": "+" + number}, timeout=30
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=10)


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            requests.get(url, timeout=5).close()
            return
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer within 60 s: {log.read_text(errors='replace')[-2000:]}")


@contextlib.contextmanager
def _database(name: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql

    def execute(statement: sql.Composed) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(statement)

    identifier = sql.Identifier(name)
    execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
    execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))


def _forget_counters() -> None:
    """Delete this module's keys (the limits' and the budget's counters) from Redis."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Two processes of the example site, the emulator, a database and a cache prefix."""
    scratch = tmp_path_factory.mktemp("multiprocess")
    # The example site's settings with this module's key prefix (CACHE_URL cannot carry one).
    (scratch / "multiprocess_settings.py").write_text(
        "from example_project.settings import *  # noqa: F403\n"
        f'CACHES["default"]["KEY_PREFIX"] = "{PREFIX}"  # noqa: F405\n'
    )
    emulator_port, ports = free_port(), [free_port(), free_port()]
    processes: list[subprocess.Popen[bytes]] = []
    with _database(f"test_voicepassword_mp_{os.getpid()}") as database_url:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))
        }
        env.update(
            PYTHONPATH=os.pathsep.join([str(scratch), str(EXAMPLE_DIR)]),
            DJANGO_SETTINGS_MODULE="multiprocess_settings",
            DJANGO_SECRET_KEY="multiprocess-tests-only-secret-key",
            DJANGO_DEBUG="false",
            DJANGO_ALLOWED_HOSTS=HOST,
            DJANGO_LANGUAGE_CODE="en",
            DATABASE_URL=database_url,
            CACHE_URL=REDIS_URL,
            VOICEPASSWORD_API_URL=f"http://{HOST}:{emulator_port}/api/voice-password/",
            VOICEPASSWORD_CALLBACK_BASE_URL=f"http://{HOST}:{ports[0]}",
            VOICEPASSWORD_CREATE_USERS="true",
            VOICEPASSWORD_LIMIT_NUMBER=f"{NUMBER_LIMIT}/d",
            # Every client of a loopback test has one address and one prefix.
            VOICEPASSWORD_LIMIT_IP="",
            VOICEPASSWORD_LIMIT_NETWORK="",
            VOICEPASSWORD_LIMIT_PREFIX="",
            VOICEPASSWORD_LIMIT_GLOBAL="",
            VOICEPASSWORD_DAILY_BUDGET=f"{BUDGET_CALLS * 0.5:.2f}",
        )
        manage = [sys.executable, str(EXAMPLE_DIR / "manage.py")]
        migrated = subprocess.run(
            [*manage, "migrate", "--noinput", "-v", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr
        commands = {
            "emulator": [
                sys.executable,
                "-m",
                "django_voicepassword.emulator",
                f"--port={emulator_port}",
                "--callback-delay=0.2",
            ],
            **{
                f"server{index}": [*manage, "runserver", "--noreload", f"{HOST}:{port}"]
                for index, port in enumerate(ports)
            },
        }
        try:
            for name, command in commands.items():
                with (scratch / f"{name}.log").open("wb") as log:
                    processes.append(
                        subprocess.Popen(
                            command,
                            cwd=EXAMPLE_DIR,
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
            urls = [f"http://{HOST}:{port}" for port in ports]
            emulator = f"http://{HOST}:{emulator_port}"
            for url, process, name in zip(
                [emulator + "/_emulator/log", *(url + "/voicepassword/login/" for url in urls)],
                processes,
                commands,
                strict=True,
            ):
                _wait_for(url, process, scratch / f"{name}.log")
            yield Site(urls, emulator)
        finally:
            for process in processes:
                _stop(process)
            _forget_counters()


@pytest.fixture(autouse=True)
def _fresh(site: Site) -> None:
    """Each test starts with empty counters and an emulator that has placed nothing."""
    _forget_counters()
    requests.post(f"{site.emulator}/_emulator/reset", timeout=10).raise_for_status()


def _starts(site: Site, numbers: list[str]) -> list[int]:
    """The statuses of one start per entry of ``numbers``, twelve at a time.

    Each start comes from a fresh session, to the two processes in turn.
    """

    def start(index: int, number: str) -> int:
        with requests.Session() as session:
            return site.start(index % 2, number, session).status_code

    with ThreadPoolExecutor(12) as pool:
        return list(pool.map(start, range(len(numbers)), numbers))


def test_the_number_limit_holds_across_both_processes(site):
    statuses = _starts(site, ["79990000007"] * 12)

    assert sorted(statuses) == [201] * NUMBER_LIMIT + [429] * (12 - NUMBER_LIMIT)
    assert len(site.sends("79990000007")) == NUMBER_LIMIT


def test_the_daily_budget_holds_across_both_processes(site):
    # Two starts for each of eight numbers: the number limit lets all sixteen
    # through, the budget pays for ten.
    numbers = [f"799900000{n}" for n in range(40, 48)] * 2

    statuses = _starts(site, numbers)

    assert sorted(statuses) == [201] * BUDGET_CALLS + [429] * (len(numbers) - BUDGET_CALLS)
    assert len(site.sends()) == BUDGET_CALLS


def _confirm(
    site: Site, server: int, challenge: str, code: str, cookies: RequestsCookieJar
) -> tuple[int, RequestsCookieJar]:
    with requests.Session() as session:
        session.cookies.update(cookies)
        response = session.post(
            f"{site.servers[server]}{START}{challenge}/confirm/", json={"code": code}, timeout=30
        )
        return response.status_code, session.cookies.copy()


@pytest.mark.parametrize("number", ["79990000050", "79990000051", "79990000052"])
def test_a_code_is_accepted_once_whichever_process_gets_it(site, number):
    with requests.Session() as browser:
        started = site.start(0, number, browser)
        assert started.status_code == 201, started.text
        challenge, code = started.json()["id"], site.code_for(number)
        cookies = browser.cookies.copy()

    # The same session sends the right code to both processes at the same moment.
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda server: _confirm(site, server, challenge, code, cookies), (0, 1))
        )

    statuses = [status for status, _cookies in answers]
    assert statuses.count(200) == 1, statuses
    loser = next(status for status in statuses if status != 200)
    assert loser in (404, 410)  # the session moved on, or the code is used
    winner = statuses.index(200)
    logged_in = answers[winner][1]
    with requests.Session() as session:
        session.cookies.update(logged_in)
        home = session.get(site.servers[1 - winner] + "/", timeout=30)
    assert 'action="/logout/"' in home.text  # logged in, on the other process too
    # Replayed later on the other process with the cookies from before the login.
    replay, _cookies = _confirm(site, 1 - winner, challenge, code, cookies)
    assert replay in (404, 410)


def _check(tmp_path: Path, cache_url: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))}
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS=HOST,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CACHE_URL=cache_url,
    )
    result = subprocess.run(
        [sys.executable, str(EXAMPLE_DIR / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout + result.stderr


def test_a_local_memory_cache_in_production_is_reported(tmp_path):
    assert "voicepassword.W002" in _check(tmp_path, "locmemcache://")
    assert "voicepassword.W002" not in _check(tmp_path, REDIS_URL)
