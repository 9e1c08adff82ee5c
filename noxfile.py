"""The version matrix: the oldest and the newest supported pair.

``make test`` runs both sessions after the lint, type and migration gates.
``nox -s "tests(python='3.13', django='6.1')"`` runs one; ``nox -l`` lists them.

Every test runs at least once per ``make test``:

- each session runs the whole suite on the tier asked for (the service tier's
  PostgreSQL, Redis and Chromium under ``SERVICES=1`` and in CI);
- with the service tier on, the newest pair runs the suite again on SQLite and
  the local-memory cache, for the tests that only SQLite reaches;
- Django 6 runs the suite without the ``django-tasks`` backport (the package
  needs none there), then installs the example site's workers, which bring the
  backport along, and runs their tests.

The coverage gate (95 %, branches counted) covers every module of the package
but the emulator, a test double with tests of its own, and the migrations: the
total under it fails the session, and every module under it is named (a
warning while some still are; ``CONTRIBUTING.md`` lists them). It is measured
over all the passes of the newest pair, the package run in the tests'
subprocesses included (``[tool.coverage.run] patch`` in ``pyproject.toml``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nox

nox.options.default_venv_backend = "venv"

# (Python, Django): the two ends of what the package supports.
MATRIX = [("3.11", "5.2"), ("3.13", "6.1")]
NEWEST = MATRIX[-1]

#: The coverage gate: every module but these.
NOT_COVERED = ["django_voicepassword/emulator/*", "django_voicepassword/migrations/*"]
#: The least coverage (statements and branches, in %) in total; each module under it is named.
FAIL_UNDER = 95.0

#: The extras of the optional integrations (pyproject.toml), installed on both ends.
EXTRAS = ["openapi", "allauth", "otp", "metrics"]

#: The integrations' declared minimums (pyproject.toml), which the oldest end runs, so that
#: a minimum that no longer works fails there; the newest end takes the newest releases.
MINIMUMS = [
    "django-allauth[headless]==65.21.0",
    "django-otp==1.5.1",
    "django-two-factor-auth==1.16.0",
]

#: The tests that need the example site's workers (the ``worker`` group).
WORKER_TESTS = ["tests/test_tasks.py", "-k", "db_worker or rq_worker"]


def django_version(django: str) -> tuple[int, ...]:
    """``"5.2"`` as ``(5, 2)``."""
    return tuple(int(part) for part in django.split("."))


def modules_under(report: dict[str, Any], fail_under: float = FAIL_UNDER) -> dict[str, float]:
    """The modules of a ``coverage json`` report covered under ``fail_under`` %, and their %."""
    return {
        name: file["summary"]["percent_covered"]
        for name, file in sorted(report["files"].items())
        if file["summary"]["percent_covered"] < fail_under
    }


def coverage_gate(session: nox.Session, env: dict[str, str]) -> None:
    """Report the coverage of every module; fail under :data:`FAIL_UNDER` in total.

    The modules under the mark are named as well: a total hides a module, 99 %
    of the rest averages a badly tested one away. Each module at the mark is
    the goal; until every one is, those under it are a warning, not a failure.
    """
    omit = "--omit=" + ",".join(NOT_COVERED)
    session.run(
        "python", "-m", "coverage", "report", omit, f"--fail-under={FAIL_UNDER:g}", env=env
    )
    path = Path(session.create_tmp()) / "coverage.json"
    session.run("python", "-m", "coverage", "json", "-q", "-o", str(path), omit, env=env)
    under = modules_under(json.loads(path.read_text()))
    if under:
        session.warn(
            f"Modules under {FAIL_UNDER:g} % (statements and branches): "
            + ", ".join(f"{name} {percent:.1f} %" for name, percent in under.items())
        )


def service_tier() -> bool:
    """Whether the service tier is on (``tests/services.py`` reads the same variable)."""
    return os.environ.get("VOICEPASSWORD_TEST_SERVICES", "") not in ("", "0")


@nox.session
@nox.parametrize(("python", "django"), MATRIX)
def tests(session: nox.Session, django: str) -> None:
    """Install the package with one Django and run the whole suite."""
    # Dependency groups need pip 25.1; the interpreters' own pip can be older.
    session.install("--quiet", "--upgrade", "pip>=25.1")
    backport = django_version(django) < (6, 0)
    # Django 5.2 takes the Tasks framework from the django-tasks backport (the
    # [tasks] extra) and runs the example site's workers on it from the start.
    # The optional integrations' extras on both ends, so that their declared
    # minimums resolve beside each Django (the test group has what their tests use).
    extras = ",".join(["tasks", *EXTRAS] if backport else EXTRAS)
    groups = ["--group", "test", *(["--group", "worker"] if backport else [])]
    session.install("--quiet", "-e", f".[{extras}]", *groups, f"django=={django}.*")
    if backport:
        session.install("--quiet", *MINIMUMS, f"django=={django}.*")
    session.run("python", "-m", "django", "--version")
    env = {"COVERAGE_FILE": f".coverage.{session.python}"}
    newest = (session.python, django) == NEWEST
    # A run of a few tests (posargs) is not the whole suite: no second pass, no gate.
    whole = not session.posargs
    pytest = ["python", "-m", "pytest", "--cov", "--cov-report="]
    session.run(*pytest, *session.posargs, env=env)
    if not backport and whole:
        # The suite passed without the backport; the workers bring it along.
        session.install("--quiet", "--group", "worker", f"django=={django}.*")
        session.run(*pytest, "--cov-append", *WORKER_TESTS, env=env)
    if newest and whole and service_tier():
        session.run(
            *pytest,
            "--cov-append",
            "-m",
            "not postgres and not redis and not browser",
            env={**env, "VOICEPASSWORD_TEST_SERVICES": "0"},
        )
    if newest and whole:
        coverage_gate(session, env)
