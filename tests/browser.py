"""Chromium for the browser tests: Debian's build, driven by Playwright.

Playwright's own browser download cannot be used (and is not needed): the
tests launch the system Chromium through ``executable_path``. Screenshots go
to ``test-output/screenshots/`` so that a person (and the README) can see
what the tests saw.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests import services

if TYPE_CHECKING:
    from playwright.sync_api import Page

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"

# Without these, Chromium reaches for Google's hosts at every start, and this
# workplace's closed network refuses them (root also needs --no-sandbox).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page(locale: str = "en-US") -> Iterator[Page]:
    """A fresh headless Chromium page, closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = services.chromium()
    assert executable, "the browser marker should have skipped this test"
    with (
        tempfile.TemporaryDirectory() as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            locale=locale,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``test-output/screenshots/NAME.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
