"""The version matrix: the oldest and the newest supported pair.

``make test`` runs both sessions after the lint, type and migration gates.
``nox -s "tests-3.13(django='6.1')"`` runs one.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"

# (Python, Django): the two ends of what the package supports.
MATRIX = [("3.11", "5.2"), ("3.13", "6.1")]
NEWEST = MATRIX[-1]

# The modules whose coverage is held at 95% or more.
COVERED = [
    "django_voicepassword/client.py",
    "django_voicepassword/phone.py",
    "django_voicepassword/conf.py",
    "django_voicepassword/emulator/*",
]


def django_version(django: str) -> tuple[int, ...]:
    """``"5.2"`` as ``(5, 2)``."""
    return tuple(int(part) for part in django.split("."))


@nox.session
@nox.parametrize(("python", "django"), MATRIX)
def tests(session: nox.Session, django: str) -> None:
    """Install the package with one Django and run the whole suite."""
    # Dependency groups need pip 25.1; the interpreters' own pip can be older.
    session.install("--quiet", "--upgrade", "pip>=25.1")
    # Django 5.2 takes the Tasks framework from the django-tasks backport (the
    # [tasks] extra), and runs the example site's workers on it (the worker
    # group); Django 6 has the framework built in, and its session proves that
    # the package needs no backport there.
    if django_version(django) < (6, 0):
        package, groups = ".[tasks]", ["--group", "test", "--group", "worker"]
    else:
        package, groups = ".", ["--group", "test"]
    session.install("--quiet", "-e", package, *groups, f"django=={django}.*")
    session.run("python", "-m", "django", "--version")
    session.run(
        "python",
        "-m",
        "pytest",
        "--cov",
        "--cov-report=",
        *session.posargs,
        env={"COVERAGE_FILE": f".coverage.{session.python}"},
    )
    if (session.python, django) == NEWEST:
        session.run(
            "python",
            "-m",
            "coverage",
            "report",
            "--fail-under=95",
            "--include=" + ",".join(COVERED),
            env={"COVERAGE_FILE": f".coverage.{session.python}"},
        )
