"""A number with an account and one without must not be told apart.

Table-driven: every scenario (a list of steps) is played through the HTML
flow and through the API, once for an emulator number that has an account
and once for the same number without one, and what a client can see of each
answer is compared: the status, the header names and the values that are not
random or a clock, the body (JSON, or the HTML page, with ids, CSRF tokens
and countdowns taken out) and the names of the cookies set. The numbers are
the emulator's test numbers, so every provider error code and fault is met
(``django_voicepassword/emulator/numbers.py``).

The pause that stands in for a call is replaced by nothing (this file is not
about time; ``test_accounts_timing.py`` is).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import django
import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from django_voicepassword import verification
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Challenge, PhoneNumber
from tests.test_ratelimit import forget_counters

pytestmark = pytest.mark.django_db(transaction=True)

BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django_voicepassword.auth_backends.PhoneCodeBackend",
]
EMULATED: dict[str, Any] = {"API_KEY": "emulator-key", "LIMITS": {}}
LOGIN = "/voicepassword/login/"
API = "/voicepassword/api/challenges/"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
# Headers whose value is a clock: their presence is compared, not their value.
CLOCK_HEADERS = {"Expires", "Date", "Last-Modified"}


@dataclass
class Scenario:
    """Steps played for ``number``, with ``settings`` (``VOICEPASSWORD`` overrides)."""

    number: str
    steps: list[tuple[Any, ...]]
    settings: dict[str, Any] = field(default_factory=dict)
    #: Run with ASYNC_SEND on the immediate task backend.
    async_send: bool = False


# The steps: ("start", channel), ("get",), ("resend", channel), ("confirm", "wrong"
# or "right"), ("allow_resend",), ("expire",), ("ring", seconds) for how long calls
# ring from now on, ("advance", seconds) of the emulator's clock, ("fault", mode or
# None), ("new_client",) for another browser or app on the same number.
START = [("start", "flash_call"), ("get",), ("start", "flash_call")]
AFTER = [
    ("get",),
    ("confirm", "wrong"),
    ("resend", "flash_call"),  # in the cooldown
    ("allow_resend",),
    ("resend", "flash_call"),
    ("get",),
    ("allow_resend",),
    ("resend", "voice_call"),
    ("confirm", "wrong"),
]
SCENARIOS: dict[str, Scenario] = {
    "start, resend, switch to voice": Scenario("79990000001", [*START, *AFTER]),
    "wrong codes until exhausted, then the right one": Scenario(
        "79990000001",
        [
            ("start", "flash_call"),
            ("confirm", "wrong"),
            ("confirm", "wrong"),
            ("confirm", "wrong"),
            ("confirm", "right"),
            ("get",),
            ("allow_resend",),
            ("resend", "voice_call"),
            ("confirm", "wrong"),
        ],
    ),
    "expired, then the right code": Scenario(
        "79990000001",
        [("start", "flash_call"), ("expire",), ("get",), ("confirm", "right"), ("resend", "sms")],
    ),
    "SMS asked for while the call still rings": Scenario(
        "79990000003",
        [
            ("ring", 600),
            ("start", "flash_call"),
            ("allow_resend",),
            ("resend", "sms"),
            ("get",),
            ("confirm", "wrong"),
            ("allow_resend",),
            ("resend", "sms"),  # not offered after an SMS
        ],
        {"SMS_FALLBACK": True},
    ),
    "SMS after the call ended": Scenario(
        "79990000003",
        [
            ("start", "voice_call"),
            ("advance", 120),
            ("allow_resend",),
            ("resend", "sms"),
            ("get",),
            ("confirm", "wrong"),
        ],
        {"SMS_FALLBACK": True},
    ),
    "SMS not offered (fallback off)": Scenario(
        "79990000003", [("start", "flash_call"), ("allow_resend",), ("resend", "sms")]
    ),
    "per-number limit hit": Scenario(
        "79990000001",
        [("start", "flash_call"), ("new_client",), ("start", "flash_call"), ("get",)],
        {"LIMITS": {"number": "1/h"}},
    ),
    # A send that placed nothing still counts (docs/decisions.md, "Limits"): a
    # number without an account is never called, so it can neither fail nor be
    # given its count back, and a number with one must hit the limit alike.
    "per-number limit hit after a refused call": Scenario(
        "79990000022",
        [("start", "flash_call"), ("new_client",), ("start", "flash_call"), ("get",)],
        {"LIMITS": {"number": "1/h"}},
    ),
    "per-number limit hit after an unknown outcome (HTTP 500)": Scenario(
        "79990000031",
        [("start", "flash_call"), ("new_client",), ("start", "flash_call"), ("get",)],
        {"LIMITS": {"number": "1/h"}},
    ),
    "session limit hit on a resend": Scenario(
        "79990000001",
        [("start", "flash_call"), ("allow_resend",), ("resend", "flash_call"), ("get",)],
        {"LIMITS": {"session": "1/h"}},
    ),
    "daily budget spent": Scenario(
        "79990000001", [("start", "flash_call"), ("get",)], {"DAILY_BUDGET": "0.10"}
    ),
    "provider down on a resend": Scenario(
        "79990000001",
        [
            ("start", "flash_call"),
            ("fault", "http500"),
            ("allow_resend",),
            ("resend", "voice_call"),
            ("get",),
            ("confirm", "wrong"),
            ("fault", None),
        ],
    ),
    "unknown outcome on a resend": Scenario(
        "79990000001",
        [
            ("start", "flash_call"),
            ("fault", "dropped"),
            ("allow_resend",),
            ("resend", "flash_call"),
            ("get",),
            ("fault", None),
        ],
    ),
    "refused on the worker (ASYNC_SEND)": Scenario(
        "79990000022", [*START, *AFTER], async_send=True
    ),
    "down on the worker (ASYNC_SEND)": Scenario(
        "79990000031", [("start", "flash_call"), ("get",), ("confirm", "wrong")], async_send=True
    ),
}
# Every send/ error code and every fault of the emulator's table, as a first call
# and as a voice call.
for _number, _what in [
    ("79990000020", "number_not_valid"),
    ("79990000021", "number_not_permitted"),
    ("79990000022", "number_in_spam_list"),
    ("79990000023", "not_enough_money"),
    ("79990000024", "user_disabled"),
    ("79990000030", "timeout (slow)"),
    ("79990000031", "down (HTTP 500)"),
    ("79990000032", "unknown outcome (HTML)"),
    ("79990000033", "unknown outcome (truncated JSON)"),
    ("79990000034", "unknown outcome (dropped)"),
]:
    SCENARIOS[f"provider: {_what}"] = Scenario(_number, [*START, *AFTER])
    SCENARIOS[f"provider: {_what}, voice call"] = Scenario(
        _number, [("start", "voice_call"), ("get",), ("confirm", "wrong")]
    )


def wrong_for(code: str | None) -> str:
    return "1111" if code == "0000" else "0000"


class Flow:
    """Plays steps through one interface; ``seen`` collects what a client sees."""

    def __init__(self, emulated: Any, number: str) -> None:
        self.emulated = emulated
        self.number = number
        self.client = Client()
        self.challenge_id: str | None = None
        self.seen: list[Any] = []

    def right_code(self) -> str:
        call = self.emulated.last_call(self.number)
        return call.code if call is not None and call.code else "1234"

    def code(self, which: str) -> str:
        right = self.right_code()
        return right if which == "right" else wrong_for(right)

    def challenge(self) -> Any:
        if self.challenge_id is None:
            return Challenge.objects.none()
        return Challenge.objects.filter(pk=self.challenge_id)

    def play(self, step: tuple[Any, ...]) -> None:
        action, *args = step
        if action == "allow_resend":
            self.challenge().update(resend_at=timezone.now() - timedelta(seconds=1))
        elif action == "expire":
            self.challenge().update(expires_at=timezone.now() - timedelta(seconds=1))
        elif action == "ring":
            self.emulated.emulator.callback_delay = float(args[0])
        elif action == "advance":
            self.emulated.advance(args[0])
        elif action == "fault":
            self.emulated.set_fault(args[0], endpoints=("send",))
        elif action == "new_client":
            self.client = Client()
        else:
            getattr(self, action)(*args)

    def start(self, channel: str) -> None:
        raise NotImplementedError

    def get(self) -> None:
        raise NotImplementedError

    def resend(self, channel: str) -> None:
        raise NotImplementedError

    def confirm(self, which: str) -> None:
        raise NotImplementedError

    def observe(self, response: Any) -> None:
        headers = {
            name: "<clock>" if name in CLOCK_HEADERS else normalize(value, name)
            for name, value in response.items()
        }
        content = response.content.decode()
        if response.get("Content-Type", "").startswith("application/json") and content:
            body: Any = scrub(json.loads(content))
        else:
            body = normalize(content, "body")
        cookies = sorted(name for name, morsel in response.cookies.items() if morsel.value)
        self.seen.append((response.status_code, headers, body, cookies))


def normalize(text: str, where: str) -> str:
    """``text`` without what is random or a clock: ids, CSRF tokens, countdowns."""
    if where == "Retry-After":
        return "<seconds>"
    text = UUID_RE.sub("<id>", text)
    text = re.sub(r'(name="csrfmiddlewaretoken" value=")[^"]+', r"\1<csrf>", text)
    text = re.sub(r'data-vp-countdown="\d+"', 'data-vp-countdown="<s>"', text)
    text = re.sub(r"\d+:\d\d", "<clock>", text)
    return re.sub(r"Try again in \d+ \w+\.", "Try again in <time>.", text)


def scrub(data: Any) -> Any:
    """A JSON body with ids, times and retry phrases taken out (keys and the rest kept)."""
    if isinstance(data, dict):
        return {
            key: "<seconds>" if key in ("expires_in", "resend_in") else scrub(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [scrub(item) for item in data]
    if isinstance(data, str):
        return normalize(data, "json")
    return data


class HtmlFlow(Flow):
    """The phone form and the code page; a redirect's target page is seen too."""

    def follow(self, response: Any) -> None:
        self.observe(response)
        location = response.get("Location", "")
        if response.status_code == 302 and UUID_RE.search(location):
            self.challenge_id = UUID_RE.search(location)[0]  # type: ignore[index]
            self.observe(self.client.get(location))

    def code_url(self) -> str:
        return f"{LOGIN}{self.challenge_id}/" if self.challenge_id else LOGIN

    def start(self, channel: str) -> None:
        if channel != "flash_call":
            # The phone form starts with a flash call; switch as a person would.
            self.follow(self.client.post(LOGIN, {"number": self.number}))
            self.play(("allow_resend",))
            self.resend(channel)
            return
        self.follow(self.client.post(LOGIN, {"number": self.number}))

    def get(self) -> None:
        self.observe(self.client.get(self.code_url()))

    def resend(self, channel: str) -> None:
        self.follow(self.client.post(self.code_url(), {"resend": channel}))

    def confirm(self, which: str) -> None:
        self.follow(self.client.post(self.code_url(), {"code": self.code(which)}))


class ApiFlow(Flow):
    """The login API, as an app uses it (with the session cookie)."""

    def post(self, url: str, body: dict[str, Any]) -> Any:
        return self.client.post(url, data=json.dumps(body), content_type="application/json")

    def url(self, action: str = "") -> str:
        return f"{API}{self.challenge_id}/" + (f"{action}/" if action else "")

    def start(self, channel: str) -> None:
        response = self.post(API, {"number": self.number, "channel": channel})
        if response.status_code == 201:
            self.challenge_id = response.json()["id"]
        self.observe(response)

    def get(self) -> None:
        self.observe(self.client.get(self.url()))

    def resend(self, channel: str) -> None:
        self.observe(self.post(self.url("resend"), {"channel": channel}))

    def confirm(self, which: str) -> None:
        self.observe(self.post(self.url("confirm"), {"code": self.code(which)}))


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch) -> Iterator[Any]:
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    with override_settings(AUTHENTICATION_BACKENDS=BACKENDS):
        yield voicepassword_emulator


def play(scenario: Scenario, flow_class: type[Flow], emulated: Any, *, account: bool) -> Any:
    """The scenario through one flow, from a clean slate; what the client saw."""
    forget_counters()
    Challenge.objects.all().delete()
    PhoneNumber.objects.all().delete()
    get_user_model().objects.all().delete()
    emulated.emulator.reset()
    emulated.set_fault(None)
    emulated.emulator.callback_delay = 0.0
    if account:
        user = get_user_model().objects.create_user("holder", password=None)
        PhoneNumber.objects.create(user=user, number=scenario.number)
    tasks = {"default": {"BACKEND": IMMEDIATE}}
    settings = {**EMULATED, **scenario.settings, "ASYNC_SEND": scenario.async_send}
    with override_settings(VOICEPASSWORD=settings, TASKS=tasks):
        reset_gateway()
        flow = flow_class(emulated, scenario.number)
        for step in scenario.steps:
            flow.play(step)
    reset_gateway()
    return flow.seen, len(emulated.sends(scenario.number))


@pytest.mark.parametrize("flow_class", [HtmlFlow, ApiFlow], ids=["html", "api"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_number_with_an_account_answers_as_one_without(name, flow_class, emulated):
    scenario = SCENARIOS[name]
    if scenario.async_send:
        pytest.importorskip(FRAMEWORK)
    without, calls_without = play(scenario, flow_class, emulated, account=False)
    with_account, calls_with = play(scenario, flow_class, emulated, account=True)
    assert calls_without == 0  # nobody without an account is ever called
    assert calls_with > 0 or "limit" in name or "budget" in name
    assert len(with_account) == len(without)
    for step, (seen_with, seen_without) in enumerate(zip(with_account, without, strict=True)):
        assert seen_with == seen_without, f"answer {step} differs"
