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


@nox.session
@nox.parametrize(("python", "django"), MATRIX)
def tests(session: nox.Session, django: str) -> None:
    """Install the package with one Django and run the whole suite."""
    # Dependency groups need pip 25.1; the interpreters' own pip can be older.
    session.install("--quiet", "--upgrade", "pip>=25.1")
    session.install("--quiet", "-e", ".", "--group", "test", f"django=={django}.*")
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
