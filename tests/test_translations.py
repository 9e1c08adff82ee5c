"""Every user-facing string has its Russian translation, and the catalog is current."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.utils import translation

import django_voicepassword
from django_voicepassword.models import Call
from django_voicepassword.phone import InvalidPhoneNumber
from tests import services

PACKAGE = Path(django_voicepassword.__file__).resolve().parent
CATALOG = PACKAGE / "locale" / "ru" / "LC_MESSAGES" / "django.po"


def catalog_ids(path: Path) -> dict[str, object]:
    with path.open("rb") as source:
        catalog = read_po(source)
    return {str(message.id): message for message in catalog if message.id}


def test_every_message_is_translated_and_none_is_fuzzy():
    messages = catalog_ids(CATALOG)
    assert messages
    untranslated = [
        message_id
        for message_id, message in messages.items()
        if message.fuzzy or not message.string  # type: ignore[attr-defined]
    ]
    assert untranslated == []


def test_the_compiled_catalog_is_used():
    with translation.override("ru"):
        assert str(Call._meta.verbose_name_plural) == "звонки"
        assert str(InvalidPhoneNumber("type")) == (
            "Номера такого типа (например, бесплатные 8-800 или платные) не принимаются."
        )
    with translation.override("en"):
        assert str(Call.Status.NO_ANSWER.label) == "no answer"


def test_the_catalog_holds_every_string_of_the_code(tmp_path):
    if shutil.which("xgettext") is None:
        # The service tier installs gettext (make test SERVICES=1); CI must run this.
        if services.required():
            pytest.fail("GNU gettext is not installed; the service tier needs it")
        pytest.skip("GNU gettext is not installed")
    # makemessages writes into the tree it scans: scan a copy.
    copy = tmp_path / "django_voicepassword"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "ru", "--no-obsolete"],
        cwd=copy,
        check=True,
        capture_output=True,
    )
    fresh = set(catalog_ids(copy / "locale" / "ru" / "LC_MESSAGES" / "django.po"))
    assert fresh == set(catalog_ids(CATALOG)), "run makemessages -l ru in django_voicepassword/"


def test_every_translation_keeps_the_placeholders_of_its_source():
    import re

    placeholder = re.compile(r"%\((\w+)\)[sd]|\{\{?\s*\w+|<[a-z]+")
    wrong = []
    for message_id, message in catalog_ids(CATALOG).items():
        sources = message.id if isinstance(message.id, tuple) else (message.id,)  # type: ignore[attr-defined]
        forms = message.string if isinstance(message.string, tuple) else (message.string,)  # type: ignore[attr-defined]
        expected = set().union(*(placeholder.findall(s) for s in sources))
        for form in forms:
            # A singular form may drop the count ("one digit"), never add a name.
            if not set(placeholder.findall(form)) <= expected:
                wrong.append((message_id, form))
        if not set(placeholder.findall(sources[0])) <= set(placeholder.findall(forms[-1])):
            wrong.append((message_id, forms[-1]))
    assert wrong == []
