"""``make dist`` builds what a release uploads and proves that the wheel works alone.

Until the first release is on the package index, the README and the tutorial
install from a clone or from this wheel. The test runs the real target offline
(``DIST_DEPS=.venv``: the fresh environment borrows Django and the rest from the
development environment, the package itself comes only from the wheel) into a
temporary directory, then reads what the two archives hold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")


def development_environment_ready() -> bool:
    """Whether ``.venv`` is set up and current, so that make installs nothing.

    Otherwise the target would first install from the network, which no test does.
    """
    if MAKE is None:
        return False
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    question = subprocess.run(
        [MAKE, "-q", ".venv/.installed"], cwd=ROOT, env=env, capture_output=True, check=False
    )
    return question.returncode == 0


pytestmark = [
    pytest.mark.skipif(MAKE is None, reason="make dist needs make"),
    pytest.mark.skipif(
        not development_environment_ready(), reason="set up .venv first: make .venv/.installed"
    ),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run ``make dist`` once; the directory of its archives."""
    assert MAKE is not None
    work = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        [
            MAKE,
            "dist",
            "DIST_DEPS=.venv",
            f"DIST_DIR={work / 'dist'}",
            f"DIST_CHECK={work / 'check'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Each step ran and said so: twine, the fresh project's checks, the migrations.
    assert result.stdout.count("PASSED") == 2, result.stdout
    assert "System check identified no issues" in result.stdout
    assert "No changes detected in app 'voicepassword'" in result.stdout
    return work / "dist"


def test_make_dist_builds_one_wheel_and_one_sdist(built: Path) -> None:
    names = sorted(path.name for path in built.iterdir())
    assert len(names) == 2, names
    assert names[0].endswith("-py3-none-any.whl")
    assert names[1].endswith(".tar.gz")


def test_the_wheel_holds_the_app_and_its_compiled_catalog_not_the_tests(built: Path) -> None:
    (wheel,) = built.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "django_voicepassword/py.typed",
        "django_voicepassword/locale/ru/LC_MESSAGES/django.mo",
        "django_voicepassword/migrations/0001_initial.py",
        "django_voicepassword/templates/voicepassword/phone.html",
    ):
        assert needed in names, needed
    assert not any(name.startswith(("tests/", "example_project/", "bench/")) for name in names)


def test_the_wheel_declares_what_pyproject_says(built: Path) -> None:
    (wheel,) = built.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requires = metadata.get_all("Requires-Dist") or []
    assert set(project["dependencies"]) <= set(requires)
    assert metadata.get_all("Classifier") == project["classifiers"]
    assert metadata["Requires-Python"] == project["requires-python"]


def test_the_sdist_builds_the_wheel_again(built: Path) -> None:
    # build makes the wheel from the sdist: what the sdist must hold to do that.
    (sdist,) = built.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "hatch_build.py", "README.md", "LICENSE"} <= names
    assert "django_voicepassword/locale/ru/LC_MESSAGES/django.po" in names
