"""The example site on its default database, SQLite, loses nothing under a burst.

The example site (its own settings, a SQLite file in a temporary directory)
runs under ``manage.py runserver --noreload``, a thread per connection, with
the emulator as the provider. 500 callbacks for 500 recorded calls, to the
signed URLs the package's own :func:`~django_voicepassword.callbacks.callback_url`
gives, are posted over HTTP from many threads while people log in by phone
(start, the code from the emulator's phone, confirm) and the emulator
delivers the callbacks of their calls. Every callback must be answered 200
and stored, every call must end in the state its callback reported, every
login must end logged in, and no request may get a 500.

With SQLite's default deferred transactions, a transaction that read first
cannot take the write lock while another writer holds it: SQLite answers
"database is locked" at once, without waiting, and the callback was lost. The
site's ``"transaction_mode": "IMMEDIATE"`` takes the lock at ``BEGIN``, where
SQLite waits for it (``"timeout"``). Default tier: needs nothing but SQLite.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
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

from django_voicepassword.conf import DEFAULTS

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_project"
HOST = "127.0.0.1"
START = "/voicepassword/api/challenges/"
CALLBACKS = 500
#: Ordinary test numbers (answered calls), one login each.
LOGIN_NUMBERS = [f"799900000{n}" for n in range(60, 84)]
#: Far above the emulator's ids (milliseconds of its clock), so none repeats.
FIRST_PROVIDER_ID = 5_000_000

# Records the calls whose callbacks the burst posts, and prints their signed URLs.
_PLACE_CALLS = f"""
import json
from django_voicepassword.callbacks import callback_url
from django_voicepassword.models import Call
calls = Call.objects.bulk_create(
    Call(
        provider_id=str({FIRST_PROVIDER_ID} + n),
        channel=Call.Channel.FLASH_CALL,
        number="79990000001",
        status=Call.Status.PLACED,
    )
    for n in range({CALLBACKS})
)
calls = Call.objects.filter(provider_id__isnull=False).order_by("pk")
print(json.dumps([[call.provider_id, callback_url(call)] for call in calls]))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


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


@dataclass
class Site:
    """The example site (``url``), the emulator, the database file and the site's log."""

    url: str
    emulator: str
    database: Path
    log: Path
    #: ``[provider id, signed callback URL]`` of each recorded call.
    calls: list[list[str]]

    def emulator_state(self) -> dict[str, Any]:
        response = requests.get(f"{self.emulator}/_emulator/log", timeout=10)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as connection:
            return connection.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The example site on a migrated SQLite file, under runserver, with the emulator."""
    scratch = tmp_path_factory.mktemp("sqlite-burst")
    database = scratch / "db.sqlite3"
    emulator_port, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))}
    env.update(
        PYTHONPATH=str(EXAMPLE_DIR),
        DJANGO_SECRET_KEY="sqlite-burst-tests-only-secret-key",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS=HOST,
        DJANGO_LANGUAGE_CODE="en",
        DATABASE_URL=f"sqlite:///{database}",
        CACHE_URL="locmemcache://",
        VOICEPASSWORD_API_URL=f"http://{HOST}:{emulator_port}/api/voice-password/",
        VOICEPASSWORD_CALLBACK_BASE_URL=f"http://{HOST}:{port}",
        VOICEPASSWORD_CREATE_USERS="true",
        # Every client of a loopback test has one address, network and prefix: no
        # limits, in every scope there is.
        **{f"VOICEPASSWORD_LIMIT_{scope.upper()}": "" for scope in DEFAULTS["LIMITS"]},
    )
    manage = [sys.executable, str(EXAMPLE_DIR / "manage.py")]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*manage, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("migrate", "--noinput", "-v", "0")
    calls = json.loads(run("shell", "-v", "0", "-c", _PLACE_CALLS))
    commands = {
        "emulator": [
            sys.executable,
            "-m",
            "django_voicepassword.emulator",
            f"--port={emulator_port}",
            "--callback-delay=0.2",
        ],
        "site": [*manage, "runserver", "--noreload", f"{HOST}:{port}"],
    }
    processes: list[subprocess.Popen[bytes]] = []
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
        url, emulator = f"http://{HOST}:{port}", f"http://{HOST}:{emulator_port}"
        _wait_for(emulator + "/_emulator/log", processes[0], scratch / "emulator.log")
        _wait_for(url + "/voicepassword/login/", processes[1], scratch / "site.log")
        yield Site(url, emulator, database, scratch / "site.log", calls)
    finally:
        for process in processes:
            _stop(process)


def _post_callback(provider_id: str, url: str) -> int:
    # The emulator's shape of a final callback (emulator/core.py).
    payload = {
        "id": provider_id,
        "number": "79990000001",
        "duration": "0",
        "state": "ANSWERED",
        "price": "0.50",
        "date": "2025-01-15 12:00:00",
    }
    return requests.post(url, json=payload, timeout=60).status_code


def _log_in(site: Site, number: str) -> tuple[int, int, bool]:
    """Start, read the code from the phone, confirm: the statuses, and whether logged in."""
    with requests.Session() as browser:
        started = browser.post(site.url + START, json={"number": "+" + number}, timeout=60)
        if started.status_code != 201:
            return started.status_code, 0, False
        calls = [call for call in site.emulator_state()["calls"] if call["number"] == number]
        confirmed = browser.post(
            f"{site.url}{START}{started.json()['id']}/confirm/",
            json={"code": calls[-1]["code"]},
            timeout=60,
        )
        home = browser.get(site.url + "/", timeout=60)
        return started.status_code, confirmed.status_code, 'action="/logout/"' in home.text


def test_a_burst_of_callbacks_during_logins_loses_nothing(site):
    # runserver's listen queue holds 10 connections (WSGIServer.request_queue_size):
    # seven callback threads, two logins and the emulator's deliveries stay within
    # it, so that no connection is refused before the site sees it.
    with ThreadPoolExecutor(7) as callbacks, ThreadPoolExecutor(2) as logins:
        posted = callbacks.map(lambda call: _post_callback(*call), site.calls)
        logged = logins.map(lambda number: _log_in(site, number), LOGIN_NUMBERS)
        statuses, outcomes = list(posted), list(logged)

    assert statuses == [200] * CALLBACKS, {s: statuses.count(s) for s in set(statuses)}
    assert outcomes == [(201, 200, True)] * len(LOGIN_NUMBERS), outcomes
    ids = [provider_id for provider_id, _url in site.calls]
    marks = ",".join("?" * len(ids))
    stored = site.query(
        f"SELECT outcome, COUNT(*) FROM voicepassword_callbackevent "  # noqa: S608
        f"WHERE provider_id IN ({marks}) GROUP BY outcome",
        *ids,
    )
    assert stored == [("applied", CALLBACKS)]
    answered = site.query(
        f"SELECT status, COUNT(*) FROM voicepassword_call "  # noqa: S608
        f"WHERE provider_id IN ({marks}) GROUP BY status",
        *ids,
    )
    assert answered == [("answered", CALLBACKS)]

    # The emulator's own callbacks of the login calls arrived too. Not pending
    # is not delivered yet: the emulator takes a callback off its queue, then
    # posts it, so wait for every delivery to be recorded.
    def delivered(state: dict[str, Any]) -> bool:
        done = len(state["deliveries"]) >= len(LOGIN_NUMBERS)
        return done and not state["pending_callbacks"]

    deadline = time.monotonic() + 30
    while not delivered(state := site.emulator_state()) and time.monotonic() < deadline:
        time.sleep(0.2)
    deliveries = [delivery["status"] for delivery in state["deliveries"]]
    assert deliveries == [200] * len(LOGIN_NUMBERS)
    logins = site.query(
        "SELECT COUNT(*) FROM voicepassword_challenge WHERE verified_at IS NOT NULL"
    )
    assert logins == [(len(LOGIN_NUMBERS),)]
    # runserver logs each request with its status: not one 5xx.
    assert not re.search(r'" 5\d\d ', site.log.read_text(errors="replace"))


def test_parallel_right_codes_log_in_once_and_never_fail(site):
    """One browser sends the right code eight times at once: one login, no 500."""
    number = "79990000084"
    with requests.Session() as browser:
        started = browser.post(site.url + START, json={"number": "+" + number}, timeout=60)
        assert started.status_code == 201, started.text
        challenge = started.json()["id"]
        calls = [call for call in site.emulator_state()["calls"] if call["number"] == number]
        cookies = browser.cookies.copy()

    def confirm(_index: int) -> tuple[int, bool]:
        with requests.Session() as session:
            session.cookies.update(cookies)
            answer = session.post(
                f"{site.url}{START}{challenge}/confirm/",
                json={"code": calls[-1]["code"]},
                timeout=60,
            )
            home = session.get(site.url + "/", timeout=60)
            return answer.status_code, 'action="/logout/"' in home.text

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(confirm, range(8)))

    statuses = sorted(status for status, _logged_in in answers)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 404, 410}, statuses  # used, or the session moved on
    assert [logged_in for status, logged_in in answers if status == 200] == [True]
    assert not re.search(r'" 5\d\d ', site.log.read_text(errors="replace"))
