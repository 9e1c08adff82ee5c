"""The reference pages agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

from django_voicepassword import checks
from django_voicepassword.conf import DEFAULTS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def table_rows(page: str) -> dict[str, list[str]]:
    rows = {}
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([A-Za-z0-9_.]+)` \|(.*)\|$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in match[2].split("|")]
    return rows


def test_every_setting_is_documented_with_its_default():
    rows = {k: v for k, v in table_rows("settings.md").items() if k.isupper()}
    assert set(rows) == set(DEFAULTS)
    for key, default in DEFAULTS.items():
        documented = rows[key][1]
        expected = repr(default).replace("'", '"')
        assert documented == f"`{expected}`", key


def test_every_check_id_is_documented():
    rows = {k for k in table_rows("settings.md") if k.startswith("voicepassword.")}
    in_code = set(re.findall(r"voicepassword\.[EW]\d{3}", Path(checks.__file__).read_text()))
    assert rows == in_code
