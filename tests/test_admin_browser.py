"""The admin in a real browser (service tier: Debian's Chromium): the pages a person sees.

The screenshots go to ``test-output/screenshots/`` (``admin-call-list.png``,
``admin-call-list-1280-en.png``, ``admin-call-list-1280-ru.png``,
``admin-call-detail.png``, ``admin-balance.png``); ``docs/screenshots/`` keeps
copies for the README.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from django_voicepassword import calls
from django_voicepassword.exceptions import VoicePasswordError
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import BalanceSnapshot, Call
from tests.browser import chromium_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SETTINGS = {
    "API_KEY": "emulator-key",
    "GET_RETRIES": 0,
    "LOW_BALANCE": "100",
    "CALLBACK_BASE_URL": "https://site.example",
}


def serve_static(route):
    """Answer /static/ from the apps' static folders (the tests have no staticfiles app)."""
    from django.contrib.staticfiles import finders

    name = route.request.url.split("/static/", 1)[1].split("?", 1)[0]
    path = finders.find(name)
    if not path:
        route.fulfill(status=404, body="")
        return
    content_type = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    route.fulfill(path=str(path), content_type=content_type)


def history(voicepassword_emulator, django_user_model):
    """A few calls of every kind, through the emulator, and a month of older ones."""
    site = Client()
    maria = django_user_model.objects.create_user("maria")
    ivan = django_user_model.objects.create_user("ivan")
    placed = {}
    for number, user in (
        ("79990000001", maria),
        ("79990000002", ivan),
        ("79990000003", maria),
        ("79990000004", None),
    ):
        placed[number] = calls.place_flash_call(number, user=user)
    placed["voice"] = calls.place_voice_call("79990000005", code="1234", user=ivan)
    for number in ("79990000020", "79990000023", "79990000034"):
        with pytest.raises(VoicePasswordError):
            calls.place_flash_call(number)
    voicepassword_emulator.advance(5)
    voicepassword_emulator.deliver_callbacks(site)
    sms = calls.send_sms(placed["79990000003"], user=maria)
    voicepassword_emulator.advance(5)
    voicepassword_emulator.deliver_callbacks(site)
    # Older calls, for the charts: some each day of the last four weeks.
    now = timezone.now()
    statuses = ["answered", "answered", "answered", "no_answer", "busy", "failed"]
    older = [
        Call(
            channel="flash_call" if n % 3 else "voice_call",
            number=f"799900000{n % 90 + 10:02d}",
            status=statuses[(n * 7 + day) % len(statuses)],
            provider_id=str(900_000 + day * 100 + n),
            price=Decimal("0.35"),
            created_at=now - dt.timedelta(days=day, hours=n % 9 + 1),
        )
        for day in range(1, 29)
        for n in range(4 + day % 5)
    ]
    Call.objects.bulk_create(older)
    balance = Decimal("180.00")
    for day in range(29, 0, -1):
        balance -= Decimal("3.10") + Decimal(day % 4)
        BalanceSnapshot.objects.create(
            balance=balance, currency="Rub", taken_at=now - dt.timedelta(days=day)
        )
    return placed["79990000003"], sms


def test_the_call_list_a_call_and_the_balance_dashboard(
    live_server, voicepassword_emulator, django_user_model, monkeypatch
):
    # Playwright's sync API runs an event loop in this thread; Django's ORM
    # (the live server and these fixtures) refuses to run beside one otherwise.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    django_user_model.objects.create_superuser("admin", password="admin-password")
    with override_settings(VOICEPASSWORD=SETTINGS):
        reset_gateway()
        try:
            call, sms = history(voicepassword_emulator, django_user_model)
            voicepassword_emulator.emulator.balance = Decimal("44.80")
            with chromium_page() as page:
                page.route(f"{live_server.url}/static/**", serve_static)
                page.goto(f"{live_server.url}/admin/login/?next=/admin/")
                page.fill("#id_username", "admin")
                page.fill("#id_password", "admin-password")
                page.click("input[type=submit]")
                page.wait_for_url(f"{live_server.url}/admin/")
                index = page.locator("#voicepassword-balance").inner_text()
                assert "VoicePassword balance" in index

                today = timezone.localdate()
                page.goto(
                    f"{live_server.url}/admin/voicepassword/call/?created_at__year={today.year}"
                    f"&created_at__month={today.month}&created_at__day={today.day}"
                )
                # More room for the tables: the navigation sidebar folded away
                # (the admin remembers it for the next pages).
                page.click("#toggle-nav-sidebar")
                listing = page.locator("#content").inner_text()
                assert "+7 999 000-00-03" in listing  # a superuser sees full numbers
                assert "no answer" in listing
                assert page.locator(".vp-totals").is_visible()
                assert page.locator(".vp-badge--ok").first.is_visible()
                screenshot(page, "admin-call-list")

                page.goto(f"{live_server.url}/admin/voicepassword/call/{call.pk}/change/")
                callbacks = page.locator("#callback_events-group").inner_text()
                assert "NO ANSWER" in callbacks
                assert '"number": "79990000003"' in callbacks  # the payload, in full
                fallback = page.locator("#fallbacks-group").inner_text()
                assert "delivered" in fallback
                assert sms.status == Call.Status.PLACED  # the SMS as the service wrote it
                screenshot(page, "admin-call-detail")

                page.goto(f"{live_server.url}/admin/voicepassword/balancesnapshot/")
                dashboard = page.locator("#content").inner_text()
                assert "44.80" in dashboard
                assert "below 100.00" in dashboard
                assert page.locator("svg.vp-chart").count() == 4
                screenshot(page, "admin-balance")

                page.click("text=Ask VoicePassword now")
                assert "Balance refreshed" in page.locator("ul.messagelist").first.inner_text()
        finally:
            reset_gateway()


# Every cell of the call list, and the list itself, measured in the page: a
# cell whose content is wider than the cell is clipped (or overflows into the
# next one), and a table wider than the window is cut off at its right edge.
MEASURE = """() => {
  const table = document.querySelector('#result_list');
  const clipped = [];
  for (const cell of table.querySelectorAll('th, td')) {
    if (cell.scrollWidth > cell.clientWidth + 1) {
      clipped.push([cell.className, cell.innerText, cell.scrollWidth, cell.clientWidth]);
    }
  }
  // Django's .results wrapper scrolls sideways: what passes its right edge is hidden.
  const box = table.closest('.results') || table.parentElement;
  const edge = Math.min(box.getBoundingClientRect().right, window.innerWidth);
  const hidden = [];
  for (const head of table.querySelectorAll('thead th')) {
    if (Math.floor(head.getBoundingClientRect().right) > Math.ceil(edge)) {
      hidden.push(head.innerText);
    }
  }
  return {
    clipped,
    hidden,
    scrolls: box.scrollWidth > box.clientWidth + 1,
    page: document.documentElement.scrollWidth,
    window: window.innerWidth,
  };
}"""


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_call_list_fits_1280_pixels_in_both_languages(
    live_server, voicepassword_emulator, django_user_model, monkeypatch, language
):
    # The issue: at 1400 px with Russian dates the user column was cut off.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    django_user_model.objects.create_superuser("admin", password="admin-password")
    with override_settings(VOICEPASSWORD=SETTINGS):
        reset_gateway()
        try:
            history(voicepassword_emulator, django_user_model)
            # A long username, as a CREATE_USERS login makes them ("phone-" and 12 hex).
            long_name = django_user_model.objects.create_user("phone-5f3c9a1e7b2d")
            Call.objects.filter(user__isnull=True).update(user=long_name)
            with chromium_page(locale=language) as page:
                page.route(f"{live_server.url}/static/**", serve_static)
                page.goto(f"{live_server.url}/admin/login/?next=/admin/")
                page.fill("#id_username", "admin")
                page.fill("#id_password", "admin-password")
                page.click("input[type=submit]")
                page.wait_for_url(f"{live_server.url}/admin/")
                # The navigation sidebar open, as a first visit shows the list.
                page.goto(f"{live_server.url}/admin/voicepassword/call/")
                assert page.viewport_size == {"width": 1280, "height": 900}
                if language == "ru":
                    assert "звонков" in page.locator(".vp-count").inner_text()
                for width in (1280, 1400, 1920):
                    page.set_viewport_size({"width": width, "height": 900})
                    found = page.evaluate(MEASURE)
                    if width == 1280:
                        screenshot(page, f"admin-call-list-1280-{language}")
                    assert found["clipped"] == [], width
                    assert found["hidden"] == [], width
                    assert not found["scrolls"], width
                    assert found["page"] <= found["window"], width
        finally:
            reset_gateway()
