"""The example site that ``make demo`` runs: it starts, checks clean and serves its pages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MANAGE = Path(__file__).resolve().parent.parent / "example_project" / "manage.py"
LOCALE = MANAGE.parent / "example_project" / "locale"


@pytest.fixture(scope="module", autouse=True)
def _compiled_catalog():
    """Compile the example site's catalog, as make demo does."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in LOCALE.glob("*/LC_MESSAGES/django.po"):
        with po.open("rb") as source:
            catalog = read_po(source)
        with po.with_suffix(".mo").open("wb") as target:
            write_mo(target, catalog)


def manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VOICEPASSWORD_"))
    }
    # Never the ports of a demo running in this working tree (example_project/.env.demo).
    environment["DEMO_ENV_FILE"] = str(tmp_path / "no-demo.env")
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    environment.update(env)
    return subprocess.run(
        [sys.executable, str(MANAGE), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_the_example_site_passes_its_checks_on_the_emulator_defaults(tmp_path):
    result = manage("check", "--fail-level", "WARNING", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_missing_api_key_is_reported_at_start(tmp_path):
    result = manage("check", tmp_path=tmp_path, VOICEPASSWORD_API_KEY="")
    assert result.returncode != 0
    assert "voicepassword.E003" in result.stderr


def test_demo_admin_creates_then_resets_the_administrator(tmp_path):
    assert manage("migrate", "--noinput", tmp_path=tmp_path).returncode == 0
    first = manage("demo_admin", tmp_path=tmp_path, DEMO_ADMIN_PASSWORD="first-pass")
    assert first.returncode == 0, first.stderr
    assert "Created the demo admin: username 'admin', password 'first-pass'" in first.stdout
    again = manage("demo_admin", tmp_path=tmp_path, DEMO_ADMIN_PASSWORD="second-pass")
    assert "Reset the demo admin" in again.stdout
    login = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth import authenticate;"
        "print(authenticate(username='admin', password='second-pass').is_superuser)",
        tmp_path=tmp_path,
    )
    assert login.stdout.strip() == "True", login.stderr


@pytest.mark.parametrize(
    ("language", "admin_label"), [("en", "Administration"), ("ru", "Администрирование")]
)
def test_the_home_page_links_the_admin_and_the_emulator(tmp_path, language, admin_label):
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.test import Client; r = Client().get('/');"
        "print(r.status_code); print(r.content.decode())",
        tmp_path=tmp_path,
        DJANGO_LANGUAGE_CODE=language,
        DJANGO_ALLOWED_HOSTS="testserver",
    )
    status, _, body = result.stdout.partition("\n")
    assert status == "200", result.stderr
    assert 'href="/admin/"' in body
    assert 'href="http://127.0.0.1:8765/"' in body
    assert admin_label in body


def home_page(tmp_path: Path, **env: str) -> str:
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.test import Client; print(Client().get('/').content.decode())",
        tmp_path=tmp_path,
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_LANGUAGE_CODE="en",
        **env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_home_page_links_the_emulator_the_site_talks_to(tmp_path):
    body = home_page(tmp_path, VOICEPASSWORD_API_URL="http://127.0.0.1:8766/api/voice-password/")
    assert 'href="http://127.0.0.1:8766/"' in body
    assert "8765" not in body


def test_the_home_page_links_no_emulator_on_the_real_service(tmp_path):
    body = home_page(
        tmp_path, VOICEPASSWORD_API_URL="https://vp.voicepassword.ru/api/voice-password/"
    )
    assert "The emulator's phone page" not in body
    assert "voicepassword.ru" not in body


def settings_seen(tmp_path: Path, **env: str) -> list[str]:
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s;"
        "print(s.VOICEPASSWORD['API_URL']); print(s.VOICEPASSWORD['CALLBACK_BASE_URL'])",
        tmp_path=tmp_path,
        **env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_demo_file_carries_the_demo_ports_to_every_command(tmp_path):
    demo_env = tmp_path / ".env.demo"
    demo_env.write_text(
        "VOICEPASSWORD_API_URL=http://127.0.0.1:8766/api/voice-password/\n"
        "VOICEPASSWORD_CALLBACK_BASE_URL=http://127.0.0.1:8001\n",
        encoding="utf-8",
    )
    assert settings_seen(tmp_path, DEMO_ENV_FILE=str(demo_env)) == [
        "http://127.0.0.1:8766/api/voice-password/",
        "http://127.0.0.1:8001",
    ]
    # The process's own environment still wins; without the file, the defaults.
    assert (
        settings_seen(
            tmp_path, DEMO_ENV_FILE=str(demo_env), VOICEPASSWORD_CALLBACK_BASE_URL="http://x.test"
        )[1]
        == "http://x.test"
    )
    demo_env.unlink()
    assert settings_seen(tmp_path, DEMO_ENV_FILE=str(demo_env)) == [
        "http://127.0.0.1:8765/api/voice-password/",
        "http://127.0.0.1:8000",
    ]


def test_the_demo_switches_to_allauth_pages(tmp_path):
    pytest.importorskip(
        "allauth", reason='django-allauth is not installed: pip install -e ".[allauth]"'
    )
    assert (
        manage(
            "migrate", "--noinput", tmp_path=tmp_path, VOICEPASSWORD_DEMO_AUTH="allauth"
        ).returncode
        == 0
    )
    checked = manage(
        "check", "--fail-level", "WARNING", tmp_path=tmp_path, VOICEPASSWORD_DEMO_AUTH="allauth"
    )
    assert checked.returncode == 0, checked.stderr
    body = home_page(tmp_path, VOICEPASSWORD_DEMO_AUTH="allauth")
    assert 'href="/accounts/login/"' in body
    assert 'href="/voicepassword/login/"' not in body
    # The default stays the package's own pages.
    assert 'href="/voicepassword/login/"' in home_page(tmp_path)


def test_an_unknown_demo_auth_is_refused_at_start(tmp_path):
    result = manage("check", tmp_path=tmp_path, VOICEPASSWORD_DEMO_AUTH="sesame")
    assert result.returncode != 0
    assert "VOICEPASSWORD_DEMO_AUTH must be" in result.stderr
