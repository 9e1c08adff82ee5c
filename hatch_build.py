"""Build hook: compile the translations (``.po`` → ``.mo``) into every build.

Compiled catalogs are build output, not source: they are git-ignored and
written here, with Babel (pure Python, so a build needs no GNU gettext), for
wheels and editable installs alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CompileTranslations(BuildHookInterface[Any]):
    """Writes ``django.mo`` beside each ``django.po`` of the package."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile every catalog and ship the result in the build."""
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        root = Path(self.root)
        for po in sorted(root.glob("django_voicepassword/locale/*/LC_MESSAGES/*.po")):
            with po.open("rb") as source:
                catalog = read_po(source, abort_invalid=True)
            mo = po.with_suffix(".mo")
            with mo.open("wb") as target:
                # Fuzzy entries are guesses of msgmerge: never ship them.
                write_mo(target, catalog, use_fuzzy=False)
            build_data["artifacts"].append(mo.relative_to(root).as_posix())
