"""Process management for the load runs: the example site's servers, its worker, the emulator.

``bench/soak.py`` starts everything here from one process and stops it in a
``finally``: every child runs in a session of its own (so Ctrl-C in the
terminal reaches the script alone, which then stops them in order) and is
stopped by its process group, which takes gunicorn's workers with their
arbiter. The scratch database is created and dropped here, and the Redis
database used is checked empty before and flushed after: nothing else of the
machine is touched. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = ROOT / "example_project"
MANAGE = EXAMPLE_DIR / "manage.py"
HOST = "127.0.0.1"
#: A database on the PostgreSQL server, for creating and dropping the scratch one.
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379"
EMULATOR_KEY = "emulator-key"
# No proxy for loopback, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- children


@dataclass
class Child:
    """A child process in a session (and process group) of its own, logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path = EXAMPLE_DIR
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Child:
        """Start (or start again) the process; its output goes to the end of :attr:`log`."""
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        """The process id, while started."""
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, nothing is cleaned up."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left after ``timeout`` seconds."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        # A gunicorn worker may outlive its arbiter; the group is the child's alone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def wait_http(url: str, child: Child, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers anything over HTTP; raise if ``child`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited: {tail(child.log)}")
        connection = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=5)
        try:
            connection.request("GET", parts.path or "/")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    raise RuntimeError(f"{child.name} did not answer within {timeout:g} s: {tail(child.log)}")


def python_command(*args: str) -> list[str]:
    """``args`` run by this interpreter."""
    return [sys.executable, *args]


def manage_command(*args: str) -> list[str]:
    """The example site's ``manage.py`` with ``args``."""
    return python_command(str(MANAGE), *args)


# --------------------------------------------------------------------------- the emulator


class Emulator(Child):
    """``python -m django_voicepassword.emulator`` on a port of its own, and its control URLs."""

    port: int = 0

    @classmethod
    def create(cls, log: Path, *, callback_delay: float, slow_seconds: float) -> Emulator:
        """An emulator (not yet started) on a free port."""
        port = free_port()
        argv = python_command(
            "-m",
            "django_voicepassword.emulator",
            f"--port={port}",
            f"--callback-delay={callback_delay}",
            f"--slow-seconds={slow_seconds}",
            f"--api-key={EMULATOR_KEY}",
        )
        emulator = cls("emulator", argv, dict(os.environ), log, cwd=ROOT)
        emulator.port = port
        return emulator

    @property
    def url(self) -> str:
        """The phone page, ``http://127.0.0.1:<port>`` (no slash)."""
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        """The API base URL, for ``VOICEPASSWORD_API_URL``."""
        return self.url + "/api/voice-password/"

    def control(self, action: str, data: Mapping[str, Any] | None = None) -> Any:
        """POST ``data`` to ``/_emulator/<action>``; without ``data``, GET ``/_emulator/log``."""
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback http
            f"{self.url}/_emulator/{action}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="GET" if data is None else "POST",
        )
        with _OPENER.open(request, timeout=30) as answer:
            return json.loads(answer.read())

    def set_faults(
        self, mode: str | None, *, share: float = 1.0, seconds: float | None = None
    ) -> None:
        """A fault for ``share`` of the ``send/`` and ``get/`` requests (``None`` clears)."""
        plan: dict[str, Any] = {"mode": mode}
        if mode is not None:
            plan.update(share=share, endpoints=["send", "get"], seconds=seconds)
        self.control("faults", plan)

    def snapshot(self) -> dict[str, Any]:
        """The whole state: ``log``, ``calls``, ``deliveries``, ``pending_callbacks``..."""
        data: dict[str, Any] = self.control("log")
        return data


#: The newest call on the phone page of one number: its id, then the code.
_NEWEST_CALL = re.compile(r"id (\d+)</span>.*?<mark>(\d+)</mark>", re.DOTALL)


def newest_call(page: str) -> tuple[int, str] | None:
    """The id and code of the newest call on a ``/?number=`` phone page, if any."""
    match = _NEWEST_CALL.search(page)
    return None if match is None else (int(match[1]), match[2])


# --------------------------------------------------------------------------- the site


@dataclass
class Site:
    """The example site's environment: one database, one Redis database, the emulator."""

    database_url: str
    redis_url: str
    api_url: str
    callback_base_url: str
    tasks_backend: str = "immediate"
    async_send: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """The variables ``example_project/settings.py`` reads, over this process's own."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="example_project.settings",
            DJANGO_SECRET_KEY="bench-only-secret-key-not-for-production",  # noqa: S106
            DJANGO_DEBUG="false",
            DJANGO_ALLOWED_HOSTS=HOST,
            DJANGO_LANGUAGE_CODE="en",
            DATABASE_URL=self.database_url,
            CACHE_URL=self.redis_url,
            REDIS_URL=self.redis_url,
            TASKS_BACKEND=self.tasks_backend,
            VOICEPASSWORD_ASYNC_SEND="true" if self.async_send else "false",
            VOICEPASSWORD_API_KEY=EMULATOR_KEY,
            VOICEPASSWORD_API_URL=self.api_url,
            VOICEPASSWORD_CALLBACK_BASE_URL=self.callback_base_url,
            VOICEPASSWORD_CREATE_USERS="true",
            VOICEPASSWORD_SMS_FALLBACK="false",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra)
        return env


class Gunicorn(Child):
    """Gunicorn serving the example site on a fixed port (so it can be restarted there)."""

    port: int = 0

    @classmethod
    def create(
        cls, name: str, site: Site, log: Path, *, port: int, workers: int, threads: int
    ) -> Gunicorn:
        """A server (not yet started) of ``workers`` gthread workers of ``threads`` threads."""
        argv = python_command(
            "-m",
            "gunicorn",
            "example_project.wsgi:application",
            f"--bind={HOST}:{port}",
            f"--workers={workers}",
            "--worker-class=gthread",
            f"--threads={threads}",
            "--keep-alive=30",
            "--timeout=60",
            "--graceful-timeout=5",
            "--log-level=warning",
        )
        server = cls(name, argv, site.environment(), log)
        server.port = port
        return server

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no slash)."""
        return f"http://{HOST}:{self.port}"

    def ready(self, timeout: float = 30.0) -> None:
        """Wait until it answers."""
        wait_http(self.url + "/voicepassword/login/", self, timeout)


# --------------------------------------------------------------------------- services


@contextlib.contextmanager
def scratch_database(name: str, admin_url: str = ADMIN_URL) -> Iterator[str]:
    """Create the PostgreSQL database ``name`` (dropped first if left over); drop it at the end."""
    import psycopg
    from psycopg import sql

    def execute(statement: sql.Composed) -> None:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(statement)

    identifier = sql.Identifier(name)
    execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
    execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))


@contextlib.contextmanager
def scratch_redis(db: int, base_url: str = REDIS) -> Iterator[str]:
    """Redis database ``db``, refused unless empty (someone may use it), flushed at the end."""
    import redis

    url = f"{base_url}/{db}"
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        size = int(client.dbsize())
        if size:
            raise RuntimeError(
                f"Redis database {db} holds {size} keys: it may be someone else's. Choose an "
                f"empty one with --redis-db, or empty it (redis-cli -n {db} flushdb) if it is "
                "a run of this script's leftovers."
            )
        try:
            yield url
        finally:
            client.flushdb()
    finally:
        client.close()


def missing_services(admin_url: str = ADMIN_URL, redis_url: str = REDIS) -> str | None:
    """Why the load runs cannot run here (a module or a service missing), or ``None``."""
    import importlib.util

    for module, what in (("psycopg", "psycopg"), ("gunicorn", "gunicorn"), ("redis", "redis")):
        if importlib.util.find_spec(module) is None:
            return f"{what} is not installed (pip install -e . --group dev)"
    import psycopg
    import redis

    try:
        with psycopg.connect(admin_url, connect_timeout=3):
            pass
    except psycopg.Error as error:
        return f"PostgreSQL is not reachable at {admin_url}: {str(error).strip()}"
    try:
        redis.Redis.from_url(redis_url, socket_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis is not reachable at {redis_url}: {error}"
    return None


def machine() -> str:
    """One line about this machine: CPUs, memory, load, Python."""
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        memory = f"{int(meminfo[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        memory = "?"
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs, {memory} memory, load average {load:.2f}; "
        f"Python {sys.version.split()[0]}"
    )


def http_json(url: str, timeout: float = 10.0) -> Any:
    """GET ``url`` and read its JSON body (raises on a non-2xx answer)."""
    with _OPENER.open(url, timeout=timeout) as answer:
        return json.loads(answer.read())


__all__ = [
    "ADMIN_URL",
    "EXAMPLE_DIR",
    "HOST",
    "ROOT",
    "Child",
    "Emulator",
    "Gunicorn",
    "Site",
    "free_port",
    "http_json",
    "machine",
    "manage_command",
    "missing_services",
    "newest_call",
    "python_command",
    "scratch_database",
    "scratch_redis",
    "tail",
    "wait_http",
]
