"""What every script in ``bench/`` shares: scratch services, child processes, the verdict.

* Scratch services: :func:`scratch_database` creates a PostgreSQL database
  and drops it at the end (:func:`run_database` names one per run, so two runs
  at once do not drop each other's); :func:`scratch_redis` takes one Redis
  database, checked empty before and flushed after. Nothing else of the
  machine is touched, and everything listens on 127.0.0.1 only.
* Child processes (:class:`Child`, :class:`Gunicorn`, :class:`Emulator`):
  each runs in a session of its own (so Ctrl-C in the terminal reaches the
  script alone, which then stops them in order) and is stopped by its process
  group, which takes gunicorn's workers with their arbiter.
* The verdict (:class:`Verdict`, :func:`spread`, :func:`main`): a benchmark
  judges, it does not only report. It checks that the measured side did its
  work (a side that fails fast would otherwise look fast), compares the
  median of its repeats with its target, and exits 0 when everything holds,
  1 on a miss (a target missed, work not done, an error) and 2 when it could
  not run here (a service or a package missing). ``make bench`` runs them all
  and fails on any non-zero status.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class Phone:
    """The emulator's phone page: the newest call a number received (one connection per thread)."""

    def __init__(self, url: str) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.local = threading.local()

    def newest(self, number: str) -> tuple[int, str] | None:
        """The request id and code of the newest call to ``number``, if any."""
        connection: http.client.HTTPConnection | None = getattr(self.local, "connection", None)
        for _attempt in range(3):
            if connection is None:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
                self.local.connection = connection
            try:
                connection.request("GET", f"/?number={number}")
                page = connection.getresponse().read().decode()
                return newest_call(page)
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = self.local.connection = None
        raise RuntimeError("the emulator's phone page does not answer")

    def wait(self, number: str, after: int, seconds: float) -> str | None:
        """The code of the first call newer than request id ``after``, within ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            newest = self.newest(number)
            if newest is not None and newest[0] > after:
                return newest[1]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)


def update_cookies(cookies: dict[str, str], headers: Sequence[tuple[str, str]]) -> None:
    """Keep the ``Set-Cookie`` headers of an answer in ``cookies`` (a deleted one is removed)."""
    for header, value in headers:
        if header.lower() == "set-cookie":
            name, _, rest = value.partition("=")
            cookie = rest.split(";", 1)[0]
            if "max-age=0" in value.lower() or cookie in ('""', ""):
                cookies.pop(name.strip(), None)
            else:
                cookies[name.strip()] = cookie


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


BENCH_DIR = ROOT / "bench"


@contextlib.contextmanager
def bench_site(
    module: str,
    env: Mapping[str, str],
    log: Path,
    *,
    worker_class: str = "sync",
    workers: int = 2,
    profile_dir: Path | None = None,
) -> Iterator[tuple[int, list[int]]]:
    """Gunicorn serving the bench site ``bench/<module>`` (``<module>.wsgi``), logging to ``log``.

    ``env`` is added to this process's environment (the site's settings read
    it); ``bench/`` goes on ``PYTHONPATH``. With ``profile_dir`` every worker
    runs under cProfile (``callbacks_site.gunicorn_profile``) and writes its
    statistics there when it exits. Yields the port and the workers' pids,
    once the site answers ``/``.
    """
    port = free_port()
    environment = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE=f"{module}.settings",
        PYTHONPATH=os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]),
    )
    environment.update(env)
    argv = python_command(
        "-m",
        "gunicorn",
        f"{module}.wsgi:application",
        f"--bind={HOST}:{port}",
        f"--workers={workers}",
        f"--worker-class={worker_class}",
        "--threads=1",
        "--keep-alive=30",
        "--timeout=60",
        "--graceful-timeout=10",
        "--log-level=warning",
    )
    if profile_dir is not None:
        environment["BENCH_PROFILE_DIR"] = str(profile_dir)
        argv.append("--config=python:callbacks_site.gunicorn_profile")
    server = Child("gunicorn", argv, environment, log, cwd=BENCH_DIR)
    try:
        server.start()
        wait_http(f"http://{HOST}:{port}/", server)
        yield port, child_pids(server.pid or 0)
    finally:
        server.stop(timeout=15)


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


def run_database(prefix: str) -> str:
    """A database name of this run alone: ``<prefix>_<pid>``.

    Two runs at once (two people, two sessions) would otherwise drop each
    other's database.
    """
    return f"{prefix}_{os.getpid()}"


def django_database(url: str) -> dict[str, Any]:
    """Django's ``DATABASES`` entry for a ``postgres://user@host:port/name`` URL."""
    parts = urllib.parse.urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": parts.hostname or HOST,
        "PORT": parts.port or 5432,
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "postgres",
    }


def missing_postgres(admin_url: str = ADMIN_URL, *, gunicorn: bool = False) -> str | None:
    """Why a benchmark on PostgreSQL (and gunicorn) cannot run here, or ``None``."""
    import importlib.util

    needed = [("psycopg", "psycopg")] + ([("gunicorn", "gunicorn")] if gunicorn else [])
    for module, what in needed:
        if importlib.util.find_spec(module) is None:
            return f"{what} is not installed (pip install -e . --group dev)"
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=3):
            pass
    except psycopg.Error as error:
        return f"PostgreSQL is not reachable at {admin_url}: {str(error).strip()}"
    return None


def missing_services(admin_url: str = ADMIN_URL, redis_url: str = REDIS) -> str | None:
    """Why the load runs cannot run here (a module or a service missing), or ``None``."""
    import importlib.util

    if importlib.util.find_spec("redis") is None:
        return "redis is not installed (pip install -e . --group dev)"
    why = missing_postgres(admin_url, gunicorn=True)
    if why is not None:
        return why
    import redis

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


def worker_profiles(profile_dir: Path) -> Any | None:
    """The cProfile statistics ``bench_site`` wrote for its workers, merged; ``None``: none."""
    import pstats

    files = sorted(profile_dir.glob("worker-*.pstats"))
    if not files:
        print("no profile was written")
        return None
    stats = pstats.Stats(str(files[0]))
    for extra in files[1:]:
        stats.add(str(extra))
    stats.sort_stats("cumulative")
    print(f"\nCPU profile of {len(files)} workers (cProfile; times include its overhead).")
    return stats


def http_json(url: str, timeout: float = 10.0) -> Any:
    """GET ``url`` and read its JSON body (raises on a non-2xx answer)."""
    with _OPENER.open(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid`` (gunicorn's workers of its arbiter), from ``/proc``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time of the processes ``pids`` so far, every thread's (0 for one that is gone).

    Read from the scheduler's own count (``/proc/<pid>/task/<tid>/schedstat``,
    nanoseconds on a CPU), so that a second's round of load is measured to
    the microsecond; where the kernel keeps no such count, from the user and
    system times of ``/proc/<pid>/stat``, in clock ticks (10 ms).
    """
    total = 0.0
    for pid in pids:
        try:
            total += _scheduled_seconds(pid)
        except OSError:
            continue
    return total


#: Whether this kernel keeps the scheduler's per-task count of time on a CPU.
_SCHEDSTAT = os.path.exists("/proc/self/schedstat")


def _scheduled_seconds(pid: int) -> float:
    if _SCHEDSTAT:
        nanoseconds = 0
        for task in os.listdir(f"/proc/{pid}/task"):  # OSError: the process is gone
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as schedstat:
                    nanoseconds += int(schedstat.read().split()[0])
            except OSError:  # a thread that ended in between
                continue
        return nanoseconds / 1e9
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def database_backends(database: str) -> list[int]:
    """The PostgreSQL processes serving ``database``, by their title (same host only)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # "postgres: <user> <database> <client> <activity>"
        if title.startswith("postgres: ") and f" {database} " in title:
            pids.append(int(entry.name))
    return pids


# --------------------------------------------------------------------------- the verdict


class Unavailable(Exception):  # noqa: N818 - a state, not a failure
    """The benchmark cannot run here (a service or a package missing): exit status 2."""


class Failed(Exception):  # noqa: N818 - reads as "the bench failed: ..."
    """The measured side did not do its work; the run stops here: exit status 1."""


@dataclass(frozen=True)
class Spread:
    """The repeats of one figure: judged by their median, shown with their range."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median of the repeats: what is judged and quoted (not the best run)."""
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        """The lowest repeat."""
        return min(self.values)

    @property
    def high(self) -> float:
        """The highest repeat."""
        return max(self.values)

    def describe(self, digits: int = 3) -> str:
        """``"1.020 (1.001-1.090 over 9 repeats)"``."""
        if len(self.values) == 1:
            return f"{self.median:.{digits}f} (1 repeat, no spread)"
        return (
            f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f} "
            f"over {len(self.values)} repeats)"
        )


def spread(values: Sequence[float]) -> Spread:
    """The :class:`Spread` of ``values`` (at least one)."""
    if not values:
        raise ValueError("no repeats to summarise")
    return Spread(tuple(values))


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Spread:
    """The ratio of each repeat's pair: sides measured in the same round are compared."""
    return spread([a / b for a, b in zip(numerators, denominators, strict=True)])


@dataclass(frozen=True)
class Check:
    """One thing a run must show: the work done, or a target met."""

    name: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    """What one benchmark run showed: its checks, printed and turned into an exit status."""

    checks: list[Check] = field(default_factory=list)

    def require(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record that the measured side did (``ok``) or did not do its work."""
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def target(
        self,
        name: str,
        figure: Spread,
        *,
        at_most: float | None = None,
        at_least: float | None = None,
        digits: int = 3,
    ) -> bool:
        """Compare the median of ``figure`` with its target (one bound)."""
        median = figure.median
        if at_most is not None:
            ok, wanted = median <= at_most, f"target <= {at_most:g}"
        elif at_least is not None:
            ok, wanted = median >= at_least, f"target >= {at_least:g}"
        else:
            raise ValueError("a target needs at_most or at_least")
        return self.require(name, ok, f"median {figure.describe(digits)}; {wanted}")

    @property
    def passed(self) -> bool:
        """Every check held (and there was at least one)."""
        return bool(self.checks) and all(check.ok for check in self.checks)

    def report(self) -> int:
        """Print every check, then the verdict; return the exit status (0 or 1)."""
        print("\nverdict:")
        for check in self.checks:
            detail = f": {check.detail}" if check.detail else ""
            print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}{detail}")
        if not self.checks:
            print("  FAIL nothing was checked")
        missed = sum(not check.ok for check in self.checks)
        print("PASS" if self.passed else f"FAIL ({missed} of {len(self.checks)} checks missed)")
        return 0 if self.passed else 1


def main(run: Callable[[argparse.Namespace], Verdict], parser: argparse.ArgumentParser) -> None:
    """Parse the arguments, run the benchmark, exit with its status (see the module docstring).

    SIGTERM is turned into ``KeyboardInterrupt`` so that every ``finally`` runs:
    children stopped, scratch databases dropped.
    """
    args = parser.parse_args()

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        status = run(args).report()
    except Unavailable as why:
        print(f"NOT RUN: {why}")
        status = 2
    except KeyboardInterrupt:
        print("NOT RUN: interrupted")
        status = 2
    except Failed as error:
        print(f"FAIL: {error}")
        status = 1
    except Exception as error:  # a broken measured side often raises: a miss, not a pass
        traceback.print_exc()
        print(f"FAIL: the bench stopped on {type(error).__name__}: {error}")
        status = 1
    sys.exit(status)


__all__ = [
    "ADMIN_URL",
    "BENCH_DIR",
    "EXAMPLE_DIR",
    "HOST",
    "ROOT",
    "Check",
    "Child",
    "Emulator",
    "Failed",
    "Gunicorn",
    "Phone",
    "Site",
    "Spread",
    "Unavailable",
    "Verdict",
    "bench_site",
    "child_pids",
    "cpu_seconds",
    "database_backends",
    "django_database",
    "free_port",
    "http_json",
    "machine",
    "main",
    "manage_command",
    "missing_postgres",
    "missing_services",
    "newest_call",
    "python_command",
    "ratios",
    "run_database",
    "scratch_database",
    "scratch_redis",
    "spread",
    "tail",
    "update_cookies",
    "wait_http",
]
