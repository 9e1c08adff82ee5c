"""The coverage gate of ``noxfile.py`` fails for one module under 95 %, whatever the total.

The gate reads the report of ``coverage json``; these tests build a real one
(``coverage run --branch`` over two small modules in a temporary directory),
so that a change of its shape or of what its percentage counts is noticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nox", reason="the gate lives in noxfile.py, which imports nox")
import noxfile  # after the skip: the matrix's sessions have no nox

# Every line runs, but one branch (n <= 10) is never taken: 12 of 13 (92 %).
HALF_TESTED = """
def clamp(n):
    if n > 10:
        n = 10
    return n

a = 1
b = 2
c = 3
d = 4
e = 5
f = 6
clamp(11)
"""
WELL_TESTED = "\n".join(f"v{n} = {n}" for n in range(200)) + "\n"


def coverage_json(directory: Path, modules: dict[str, str]) -> dict[str, Any]:
    """The ``coverage json`` report of importing ``modules`` ({name: source}) with branches."""
    for name, source in modules.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    (directory / "main.py").write_text("".join(f"import {name}\n" for name in modules))
    # Not the suite's own coverage data or settings (nox sets COVERAGE_FILE).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "COV_CORE_"))}
    coverage = [sys.executable, "-m", "coverage"]
    data = ["--data-file", str(directory / "data")]
    for command in (
        [*coverage, "run", *data, "--branch", "--source=.", "--omit=main.py", "main.py"],
        [*coverage, "json", *data, "-q", "-o", "report.json"],
    ):
        subprocess.run(
            command, cwd=directory, env=env, check=True, capture_output=True, timeout=60
        )
    report: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return report


def test_a_module_under_the_mark_is_named_though_the_total_is_over(tmp_path):
    report = coverage_json(tmp_path, {"half": HALF_TESTED, "well": WELL_TESTED})
    assert report["totals"]["percent_covered"] > noxfile.FAIL_UNDER
    under = noxfile.modules_under(report)
    assert list(under) == ["half.py"]
    # Every line ran: branches count, and the one not taken puts it under.
    assert report["files"]["half.py"]["summary"]["missing_lines"] == 0
    assert report["files"]["half.py"]["summary"]["missing_branches"] == 1
    assert under["half.py"] == pytest.approx(100 * 12 / 13)


def test_modules_at_the_mark_pass(tmp_path):
    report = coverage_json(tmp_path, {"well": WELL_TESTED})
    assert noxfile.modules_under(report) == {}


def test_the_gate_covers_the_package_but_the_emulator_and_the_migrations():
    assert noxfile.FAIL_UNDER >= 95
    assert sorted(noxfile.NOT_COVERED) == [
        "django_voicepassword/emulator/*",
        "django_voicepassword/migrations/*",
    ]
