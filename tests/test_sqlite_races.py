"""Attempts, a code's single use and the limits' counters hold on a SQLite file.

The races themselves are in ``tests/sqlite_races.py``; they need a SQLite file
database (``tests/settings_sqlite_file.py``), which the suite's in-memory one
is not, so they run here in a pytest of their own, in a temporary directory,
once for the module; each test below reports one of them. Default tier: needs
nothing but SQLite, and runs in the service tier too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import sqlite_races

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(sqlite_races.__file__).resolve()
#: The child's tests, each reported by one test here.
RACES = sorted(name for name in vars(sqlite_races) if name.startswith("test_"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Each race's failure (its report), or ``None`` when it passed."""
    scratch = tmp_path_factory.mktemp("sqlite-races")
    report = scratch / "races.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))}
    env.update(
        VOICEPASSWORD_TEST_SERVICES="0",
        VOICEPASSWORD_TEST_SQLITE_FILE=str(scratch / "db.sqlite3"),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(CHILD),
            "--ds=tests.settings_sqlite_file",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={report}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if not report.exists():
        pytest.fail(f"the races did not run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    found: dict[str, str | None] = {}
    # The child's own report, not outside input.
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314
        failed = case.find("failure")
        if failed is None:
            failed = case.find("error")
        if failed is None and case.find("skipped") is not None:
            found[case.attrib["name"]] = "skipped"
            continue
        found[case.attrib["name"]] = None if failed is None else (failed.text or "failed")
    return found


@pytest.mark.parametrize("race", RACES)
def test_on_a_sqlite_file(outcomes: dict[str, str | None], race: str) -> None:
    assert race in outcomes, f"{race} did not run"
    assert outcomes[race] is None, outcomes[race]
