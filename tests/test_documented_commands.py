"""Every ``make`` target and nox session that the docs tell a reader to run exists.

The commands are read from the code of README.md, CONTRIBUTING.md and every page
under docs/ (fenced blocks and inline code; prose such as "make the site pay" is
not a command), and checked against the Makefile (``make -q``, which runs no
recipe) and ``nox -l``. Nothing is run.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")],
    key=str,
)
MAKE = shutil.which("make")

FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# "make" as a command: at the start of a line or after a shell separator or prompt.
MAKE_COMMAND = re.compile(r"(?:^|[;&|(]\s*|\$\s+)make((?:[ \t]+[^\s#;&|)`]+)*)", re.MULTILINE)
NOX_SESSION = re.compile(r"\bnox\b[^\n#]*?\s(?:-s|--sessions?)\s+(\"[^\"]*\"|'[^']*'|[^\s#]+)")


def code_of(markdown: str) -> list[str]:
    """The texts of a page's fenced code blocks and inline code spans."""
    blocks = [match[2] for match in FENCE.finditer(markdown)]
    prose = FENCE.sub("", markdown)
    return blocks + [match[2] for match in INLINE.finditer(prose)]


def commands_in(markdown: str) -> tuple[set[str], set[str]]:
    """The make targets and the nox sessions named in a page's code."""
    targets: set[str] = set()
    sessions: set[str] = set()
    for code in code_of(markdown):
        for match in MAKE_COMMAND.finditer(code):
            words = match[1].split()
            targets.update(w for w in words if "=" not in w and not w.startswith("-"))
        for match in NOX_SESSION.finditer(code):
            (session,) = shlex.split(match[1])
            sessions.add(session)
    return targets, sessions


def documented() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each documented target and session, with the pages that name it."""
    targets: dict[str, list[str]] = {}
    sessions: dict[str, list[str]] = {}
    for page in PAGES:
        name = str(page.relative_to(ROOT))
        page_targets, page_sessions = commands_in(page.read_text(encoding="utf-8"))
        for target in page_targets:
            targets.setdefault(target, []).append(name)
        for session in page_sessions:
            sessions.setdefault(session, []).append(name)
    return targets, sessions


def make_has(target: str) -> bool:
    """Whether the Makefile has ``target``: ``make -q`` runs nothing and exits 2 without it."""
    assert MAKE is not None
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        [MAKE, "-q", "--no-print-directory", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode != 2


@functools.cache
def nox_sessions() -> frozenset[str]:
    """The sessions of noxfile.py, as ``nox -l`` lists them."""
    if find_spec("nox"):
        nox = [sys.executable, "-m", "nox"]
    elif (ROOT / ".venv" / "bin" / "nox").is_file():
        # The matrix's sessions have no nox of their own; the development one has.
        nox = [str(ROOT / ".venv" / "bin" / "nox")]
    else:
        pytest.skip("nox is not installed here (make sets it up in .venv)")
    result = subprocess.run(
        [*nox, "-l", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return frozenset(session["session"] for session in json.loads(result.stdout))


def test_commands_are_read_from_code_not_prose():
    page = """
Run `make demo PORT=8001 EMULATOR_PORT=8766`, then make the site pay.

```console
$ make test SERVICES=1    # the service tier
$ .venv/bin/nox -s "tests(python='3.13', django='6.1')"
$ make lint && make -j2 types docs
```
"""
    assert commands_in(page) == (
        {"demo", "test", "lint", "types", "docs"},
        {"tests(python='3.13', django='6.1')"},
    )


def test_the_docs_name_the_commands_a_reader_starts_with():
    targets, sessions = documented()
    assert {"demo", "test", "dist", "docs"} <= set(targets)
    assert sessions


@pytest.mark.skipif(MAKE is None, reason="needs make")
def test_every_documented_make_target_exists():
    targets, _ = documented()
    missing = {target: pages for target, pages in targets.items() if not make_has(target)}
    assert not missing, f"make targets the Makefile lacks: {missing}"


@pytest.mark.skipif(MAKE is None, reason="needs make")
def test_a_missing_make_target_is_noticed():
    assert make_has("demo")
    assert not make_has("no-such-target")


def test_every_documented_nox_session_exists():
    _, sessions = documented()
    missing = {s: pages for s, pages in sessions.items() if s not in nox_sessions()}
    assert not missing, f"nox sessions noxfile.py lacks (nox -l): {missing}"
