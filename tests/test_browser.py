"""What a person sees, in a real browser (service tier: Debian's Chromium)."""

from __future__ import annotations

import pytest

from django_voicepassword.client import VoicePasswordClient
from tests.browser import chromium_page, screenshot

pytestmark = pytest.mark.browser


def test_the_phone_page_shows_the_flash_call_a_person_answers(voicepassword_emulator_server):
    server = voicepassword_emulator_server
    with VoicePasswordClient("emulator-key", base_url=server.base_url) as client:
        flash = client.flash_call("79990000001", code="4821")
        client.voice_call("79990000002", code="1357")
    caller = server.emulator.last_call("79990000001").caller
    assert caller.endswith("4821")

    with chromium_page() as page:
        page.goto(server.url + "/")
        body = page.locator("body")
        assert caller in body.inner_text()
        assert "1357" in body.inner_text()
        screenshot(page, "emulator-phone-page")

        page.goto(server.url + "/?number=79990000002")
        text = page.locator("body").inner_text()
        assert "1357" in text
        assert caller not in text
    assert flash.id
