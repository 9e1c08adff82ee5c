"""Challenges: codes sent, limited, checked once, never kept or told in clear.

Everything runs against the in-process emulator (``voicepassword_emulator``);
the pause that stands in for a call to a number without an account is
replaced by a recorder (``pauses``), so no test waits. The concurrency of
attempts and consumption is tested on PostgreSQL in
``test_login_concurrency.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.db import connection, models, transaction
from django.http import HttpRequest
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from django_voicepassword import binding, ratelimit, signals, verification
from django_voicepassword.exceptions import NumberNotValidError, OutcomeUnknownError
from django_voicepassword.models import Call, Challenge, PhoneNumber
from django_voicepassword.phone import InvalidPhoneNumber
from django_voicepassword.verification import (
    ChallengeError,
    challenge_info,
    confirm_challenge,
    get_challenge,
    resend_challenge,
    send_state,
    start_challenge,
)
from tests.test_ratelimit import forget_counters

pytestmark = pytest.mark.django_db(transaction=True)

#: What every test runs with: the emulator's key, no abuse limits (a test that
#: counts sets its own, on numbers no other test counts).
EMULATED: dict[str, Any] = {"API_KEY": "emulator-key", "LIMITS": {}}

#: The real pause, before the ``pauses`` fixture replaces it.
REAL_PAUSE = verification.pause

KNOWN = "79990000001"
UNKNOWN = "79990000050"


def digits_from(zero: int) -> str:
    """The ten decimal digits of a script, from its zero's code point."""
    return "".join(chr(zero + n) for n in range(10))


#: Decimal digits of other scripts: Arabic-Indic ("١٢٣٤"), Extended Arabic-Indic
#: (Persian), Devanagari, Bengali, full-width, mathematical bold.
SCRIPTS = {
    "arabic-indic": digits_from(0x0660),
    "persian": digits_from(0x06F0),
    "devanagari": digits_from(0x0966),
    "bengali": digits_from(0x09E6),
    "full-width": digits_from(0xFF10),
    "math-bold": digits_from(0x1D7CE),
}
ARABIC_INDIC = str.maketrans("0123456789", SCRIPTS["arabic-indic"])


@contextmanager
def configured(**overrides: Any) -> Iterator[None]:
    """The emulated settings with ``overrides``."""
    with override_settings(VOICEPASSWORD={**EMULATED, **overrides}):
        yield


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator):
    with configured():
        yield voicepassword_emulator


@pytest.fixture(autouse=True)
def pauses(monkeypatch) -> list[float]:
    """The pauses of calls not placed, as asked for (nothing sleeps)."""
    asked: list[float] = []
    monkeypatch.setattr(verification, "pause", asked.append)
    return asked


@pytest.fixture
def sent() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every signal of the app, as ``(name, kwargs)``, from any thread."""
    received: list[tuple[str, dict[str, Any]]] = []
    receivers = {}
    for name in signals.__all__:

        def receive(sender: Any, name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            received.append((name, kwargs))

        receivers[name] = receive
        getattr(signals, name).connect(receive, weak=False)
    yield received
    for name, receive in receivers.items():
        getattr(signals, name).disconnect(receive)


def browser(session_key: str | None = None) -> HttpRequest:
    """A request from a browser: a new session, or the one with ``session_key``."""
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.10")
    request.session = SessionStore(session_key)
    request.user = AnonymousUser()
    return request


def session_key(request: HttpRequest) -> str | None:
    key: str | None = request.session.session_key
    return key


def same_browser(request: HttpRequest) -> HttpRequest:
    """The next request of the browser that made ``request``."""
    return browser(request.session.session_key)


def user_with(number: str | None, username: str | None = None, **fields: Any) -> Any:
    """A user (with ``number`` verified, when given)."""
    user = get_user_model()._default_manager.create_user(
        username=username or f"user-{number}", password=None, **fields
    )
    if number is not None:
        PhoneNumber.objects.create(user=user, number=number)
    return user


def code_digest(challenge: Challenge, code: str) -> str:
    return verification._code_digest(challenge.pk, code)


def reopen_resend(challenge: Challenge) -> None:
    """Move the challenge's cooldown into the past (as time passing would)."""
    Challenge.objects.filter(pk=challenge.pk).update(
        resend_at=timezone.now() - timedelta(seconds=1)
    )
    challenge.refresh_from_db()


def expire(challenge: Challenge) -> None:
    Challenge.objects.filter(pk=challenge.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


# --------------------------------------------------------------------------- starting


def test_a_flash_call_sends_the_providers_code_and_keeps_only_its_hmac(emulated, sent):
    user_with(KNOWN)
    request = browser()
    challenge = start_challenge("+7 999 000-00-01", request=request)

    [send] = emulated.sends(KNOWN)
    assert send.kind == "flash_call"
    assert send.payload["capacity"] == "4"  # the provider picks the code
    code = emulated.code_for(KNOWN)
    challenge.refresh_from_db()
    assert (
        challenge.code_digest
        == hmac.new(
            hashlib.sha256(
                b"django_voicepassword.verification.code"
                + b"tests-only-secret-key-not-for-production"
            ).digest(),
            f"{challenge.pk}:{code}".encode(),
            hashlib.sha256,
        ).hexdigest()
    )
    assert challenge.code_digest != hashlib.sha256(code.encode()).hexdigest()
    assert (challenge.sends, challenge.attempts, challenge.number) == (1, 0, KNOWN)
    assert challenge.session_digest not in ("", request.session.session_key)
    call = Call.objects.get()
    assert call.challenge == challenge
    assert call.user is not None
    assert [name for name, _kwargs in sent if name == "challenge_started"] == ["challenge_started"]
    [(_name, started)] = [item for item in sent if item[0] == "challenge_started"]
    assert started["challenge"] == challenge
    assert started["channel"] == "flash_call"
    assert started["request"] is request

    assert confirm_challenge(challenge, code, same_browser(request)) is True


def test_a_code_key_of_its_own_keys_the_hmac(emulated):
    user_with(KNOWN)
    with configured(CODE_KEY="a-key-for-codes-alone"):
        challenge = start_challenge(KNOWN)
        code = emulated.code_for(KNOWN)
        challenge.refresh_from_db()
        expected = hmac.new(
            b"a-key-for-codes-alone", f"{challenge.pk}:{code}".encode(), hashlib.sha256
        )
        assert challenge.code_digest == expected.hexdigest()
        assert confirm_challenge(challenge, code) is True


def test_a_flash_call_can_carry_a_code_of_the_sites_own(emulated, monkeypatch):
    user_with(KNOWN)
    monkeypatch.setattr(verification, "_new_code", lambda: "0427")
    with configured(FLASH_CODE_SOURCE="client"):
        challenge = start_challenge(KNOWN)
    [send] = emulated.sends(KNOWN)
    assert send.payload["flashcall"] == {"code": "0427"}
    assert "capacity" not in send.payload
    assert emulated.code_for(KNOWN) == "0427"
    assert confirm_challenge(challenge, "0427") is True


def test_a_voice_call_always_speaks_a_code_from_secrets(emulated, monkeypatch):
    user_with(KNOWN)
    drawn: list[int] = []
    real = secrets.randbelow

    def randbelow(limit: int) -> int:
        drawn.append(limit)
        return real(limit)

    monkeypatch.setattr(secrets, "randbelow", randbelow)
    challenge = start_challenge(KNOWN, "voice_call")
    [send] = emulated.sends(KNOWN)
    spoken = send.payload["voice"]["code"]
    assert re.fullmatch(r"[0-9]{4}", spoken)
    assert drawn == [10_000]
    assert challenge.channel == "voice_call"
    assert confirm_challenge(challenge, spoken) is True


def test_an_sms_cannot_start_a_challenge_and_unknown_channels_are_refused(emulated):
    user_with(KNOWN)
    for channel in ("sms", "pigeon", ""):
        with pytest.raises(ChallengeError) as refused:
            start_challenge(KNOWN, channel)
        assert refused.value.code == "channel_unavailable"
    assert emulated.sends() == []
    assert not Challenge.objects.exists()


def test_purpose_must_be_login_or_verify_and_verify_needs_a_user():
    with pytest.raises(ValueError, match="purpose"):
        start_challenge(KNOWN, purpose="reset")
    with pytest.raises(ValueError, match="user"):
        start_challenge(KNOWN, purpose="verify")


@pytest.mark.parametrize("number", ["+78091234567", "+77012345678", "+78000000000"])
def test_numbers_the_site_does_not_accept_are_refused_before_anything(
    number, emulated, monkeypatch
):
    counted: list[str] = []
    monkeypatch.setattr(ratelimit, "check_send", lambda n, r: counted.append(n))
    monkeypatch.setattr(ratelimit, "check_and_reserve", lambda n, r, **kw: counted.append(n))
    with pytest.raises(InvalidPhoneNumber):
        start_challenge(number, request=browser())
    assert emulated.sends() == []
    assert counted == []
    assert not Challenge.objects.exists()
    assert not Call.objects.exists()


def test_every_spelling_of_a_number_is_one_challenge_and_one_user(emulated):
    user = user_with("79990000005")
    request = browser()
    request.session.create()
    spellings = [
        "+7 999 000-00-05",
        "89990000005",
        "8 (999) 000 00 05",
        "79990000005",
        "+7\u00a0999\u00a0000\u201100\u201105",
        "\u200e+7 999 000 00 05".translate(str.maketrans("0123456789", SCRIPTS["full-width"])),
    ]
    challenges = {
        start_challenge(spelling, request=same_browser(request)) for spelling in spellings
    }
    assert len(challenges) == 1
    assert len(emulated.sends()) == 1
    [challenge] = challenges
    assert challenge.number == "79990000005"
    code = emulated.code_for("79990000005")
    assert confirm_challenge(challenge, code) is True
    assert list(PhoneNumber.objects.values_list("number", "user")) == [("79990000005", user.pk)]


# --------------------------------------------------------------------------- reuse


def test_an_unfinished_challenge_is_reused_instead_of_calling_again(emulated):
    user_with(KNOWN)
    request = browser()
    first = start_challenge(KNOWN, request=request)
    again = start_challenge(KNOWN, "voice_call", request=same_browser(request))
    assert again == first
    assert again.channel == "flash_call"  # switching is resend_challenge's job
    assert len(emulated.sends()) == 1

    # Another session, another purpose, or once it is finished: a new one.
    other = start_challenge(KNOWN, request=browser())
    assert other != first
    user = get_user_model()._default_manager.get()
    verify = start_challenge(KNOWN, request=same_browser(request), purpose="verify", user=user)
    assert verify not in (first, other)
    expire(first)
    after_expiry = start_challenge(KNOWN, request=same_browser(request))
    assert after_expiry not in (first, other, verify)
    assert confirm_challenge(after_expiry, emulated.code_for(KNOWN)) is True
    after_use = start_challenge(KNOWN, request=same_browser(request))
    assert after_use not in (first, other, verify, after_expiry)
    assert len(emulated.sends()) == 5


def test_without_a_request_challenges_are_unbound_and_reused_among_server_callers(emulated):
    user_with(KNOWN)
    first = start_challenge(KNOWN)
    assert first.session_digest == ""
    assert start_challenge(KNOWN) == first
    assert get_challenge(None, first.pk) == first
    assert get_challenge(browser(), str(first.pk)) == first  # bound to nothing
    assert len(emulated.sends()) == 1


# --------------------------------------------------------------------------- sessions


def test_a_challenge_belongs_to_the_session_that_started_it(emulated, sent):
    user_with(KNOWN)
    request = browser()
    assert session_key(request) is None
    challenge = start_challenge(KNOWN, request=request)
    # A first visit gets a session, saved and marked, so its cookie goes out.
    assert session_key(request) is not None
    assert request.session.modified

    mine, theirs = same_browser(request), browser()
    assert get_challenge(mine, challenge.pk) == challenge
    assert get_challenge(mine, str(challenge.pk).upper()) == challenge
    assert get_challenge(theirs, challenge.pk) is None
    assert get_challenge(None, challenge.pk) is None
    no_sessions = RequestFactory().get("/")
    assert get_challenge(no_sessions, challenge.pk) is None

    code = emulated.code_for(KNOWN)
    with pytest.raises(ChallengeError) as refused:
        confirm_challenge(challenge, code, theirs)
    assert refused.value.code == "wrong_session"
    with pytest.raises(ChallengeError) as refused:
        resend_challenge(challenge, theirs, channel="voice_call")
    assert refused.value.code == "wrong_session"
    challenge.refresh_from_db()
    assert challenge.attempts == 1  # a leaked id burns its own attempts
    assert ("login_failed", "wrong_session") in [
        (name, kwargs.get("reason")) for name, kwargs in sent
    ]
    assert confirm_challenge(challenge, code, mine) is True


@pytest.mark.parametrize(
    "garbage",
    ["", "nope", "123", "'; DROP TABLE x; --", "0" * 10_000, 123, None, b"bytes", 1.5, [], "🙂"],
)
def test_get_challenge_never_raises_for_garbage_ids(garbage):
    assert get_challenge(browser(), garbage) is None
    assert get_challenge(None, garbage) is None


def test_get_challenge_of_an_unknown_id_is_none():
    import uuid

    assert get_challenge(None, uuid.uuid4()) is None
    assert get_challenge(None, str(uuid.uuid4())) is None


# ------------------------------------------------------------- numbers without accounts


def test_a_number_without_an_account_is_never_called_and_looks_the_same(emulated, pauses, sent):
    user_with(KNOWN)
    known = start_challenge(KNOWN, request=browser())
    unknown = start_challenge(UNKNOWN, request=browser())

    assert emulated.sends(UNKNOWN) == []
    assert len(emulated.sends(KNOWN)) == 1
    known_info, unknown_info = challenge_info(known), challenge_info(unknown)
    assert known_info.keys() == unknown_info.keys()
    del known_info["masked_number"], unknown_info["masked_number"]
    assert known_info == unknown_info
    assert {type(value) for value in challenge_info(unknown).values()} == {
        type(value) for value in challenge_info(known).values()
    }
    known.refresh_from_db()
    unknown.refresh_from_db()
    for field in ("channel", "sends", "attempts", "max_attempts", "code_length", "purpose"):
        assert getattr(known, field) == getattr(unknown, field), field
    assert re.fullmatch(r"[0-9a-f]{64}", unknown.code_digest)
    assert bool(unknown.session_digest) == bool(known.session_digest)
    assert len(pauses) == 1
    # challenge_started tells of calls placed; none was.
    assert [kwargs["challenge"] for name, kwargs in sent if name == "challenge_started"] == [known]


def test_a_challenge_without_a_call_can_never_be_confirmed(emulated):
    challenge = start_challenge(UNKNOWN)
    challenge.refresh_from_db()
    every_digest = {code_digest(challenge, f"{n:04d}") for n in range(10_000)}
    assert challenge.code_digest not in every_digest
    for guess in ("0000", "1234", "9999"):
        assert confirm_challenge(challenge, guess) is False
    with pytest.raises(ChallengeError) as refused:
        confirm_challenge(challenge, "4321")
    assert refused.value.code == "exhausted"


def forget_durations() -> None:
    for channel in ("flash_call", "voice_call", "sms"):
        cache.delete(f"voicepassword:send-durations:{channel}")
    verification._pending_durations.clear()


def test_the_pause_is_drawn_from_recent_warm_sends(emulated, pauses, monkeypatch):
    forget_durations()
    assert verification.send_seconds("flash_call") is None  # nothing measured yet
    # Real sends that (by the clock) take 1.0 s, 2.0 s and 4.0 s. The first
    # one of the gateway is not timed: it paid for the connection too.
    ticks = iter([100.0, 200.0, 201.0, 300.0, 302.0, 400.0, 404.0])
    clock = SimpleNamespace(monotonic=lambda: next(ticks))
    monkeypatch.setattr(verification, "time", clock)  # this module's clock only
    for number in (KNOWN, "79990000002", "79990000005", "79990000052"):
        user_with(number)
        start_challenge(number)
    assert verification.send_seconds("flash_call") == 2.0  # the median of 1, 2, 4
    monkeypatch.setattr(verification, "time", time)
    monkeypatch.setattr(verification, "_oversleep", 0.0)
    chosen: list[list[float]] = []

    def first(seq: list[float]) -> float:
        chosen.append(seq)
        return seq[0]

    monkeypatch.setattr(secrets, "choice", first)
    start_challenge(UNKNOWN)
    assert chosen == [[1.0, 2.0, 3.0]]  # 4.0 s is more than MAX_PAUSE
    assert pauses == [1.0]
    assert emulated.sends(UNKNOWN) == []


def test_a_pause_asks_for_less_by_how_late_pauses_end(emulated, monkeypatch):
    forget_durations()
    cache.set("voicepassword:send-durations:flash_call", [0.05])
    monkeypatch.setattr(verification, "_oversleep", 0.0)
    now = [100.0]
    asked: list[float] = []

    def late_pause(seconds: float) -> None:
        asked.append(seconds)
        now[0] += seconds + 0.01  # every sleep ends 10 ms late

    monkeypatch.setattr(verification, "pause", late_pause)
    monkeypatch.setattr(verification, "time", SimpleNamespace(monotonic=lambda: now[0]))
    verification._stand_in("flash_call")  # a cold gateway: a round trip
    for _ in range(30):
        verification._stand_in("flash_call")
    assert asked[0] == pytest.approx(0.05)
    # It learns the lateness, and asks for that much less.
    assert asked[-1] == pytest.approx(0.04, abs=0.001)


def test_a_cold_gateway_or_no_measured_send_gets_a_free_round_trip(emulated, pauses):
    forget_durations()
    user_with(KNOWN)
    start_challenge(UNKNOWN)
    start_challenge("79990000053")
    # Nothing measured: a get/ balance each time, which places nothing.
    assert [entry.kind for entry in emulated.log] == ["balance", "balance"]
    assert pauses == []
    start_challenge(KNOWN)  # warm already: its duration is kept
    assert verification.send_seconds("flash_call") is not None
    start_challenge("79990000054")
    assert len(pauses) == 1
    # A new gateway (the settings changed, or a new process) is cold again.
    with configured(MAX_ATTEMPTS=3):
        start_challenge("79990000055")
    assert len(pauses) == 1
    assert emulated.log[-1].kind == "balance"
    assert emulated.sends() == [emulated.sends(KNOWN)[0]]


def test_send_durations_are_written_in_batches_once_there_are_enough(emulated, monkeypatch):
    forget_durations()
    key = "voicepassword:send-durations:flash_call"
    # A new site: each of the first durations is written at once.
    for _ in range(8):
        verification._record_send_seconds("flash_call", 0.5)
    assert cache.get(key) == [0.5] * 8
    # Then every fourth send writes its batch: a round trip saved three times in four.
    writes: list[str] = []
    real_set = cache.set

    def counted_set(name: str, *args: Any, **kwargs: Any) -> Any:
        writes.append(name)
        return real_set(name, *args, **kwargs)

    monkeypatch.setattr(cache, "set", counted_set)
    for seconds in (1.0, 1.5, 2.0):
        verification._record_send_seconds("flash_call", seconds)
    assert cache.get(key) == [0.5] * 8
    verification._record_send_seconds("flash_call", 2.5)
    assert cache.get(key) == [0.5] * 8 + [1.0, 1.5, 2.0, 2.5]
    assert writes == [key]
    assert verification._pending_durations["flash_call"] == []


def test_the_pause_is_bounded(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(verification, "time", SimpleNamespace(sleep=slept.append))
    cache.set("voicepassword:send-durations:sms", [40.0, float("nan"), "x", 1.0])
    assert verification.send_seconds("sms") == verification.MAX_PAUSE
    verification._record_send_seconds("sms", 1_000.0)
    assert cache.get("voicepassword:send-durations:sms") == [3.0, 1.0, 3.0]
    for _ in range(40):
        verification._record_send_seconds("sms", 0.25)
    assert cache.get("voicepassword:send-durations:sms") == [0.25] * 32
    cache.set("voicepassword:send-durations:sms", "garbage")
    assert verification.send_seconds("sms") is None
    REAL_PAUSE(60.0)
    REAL_PAUSE(-1.0)
    assert slept == [verification.MAX_PAUSE, 0.0]
    cache.delete("voicepassword:send-durations:sms")


def test_limits_count_numbers_without_an_account_the_same(emulated):
    known, unknown = "79990000070", "79990000071"
    user_with(known)
    with configured(LIMITS={"number": "2/h"}):
        for number in (known, unknown):
            start_challenge(number, request=browser())
            start_challenge(number, request=browser())
            with pytest.raises(ratelimit.LimitExceeded) as refused:
                start_challenge(number, request=browser())
            assert refused.value.scope == "number"
    assert len(emulated.sends(known)) == 2
    assert emulated.sends(unknown) == []


def test_a_spent_budget_refuses_numbers_without_an_account_too(emulated):
    user_with(KNOWN)
    for number in (KNOWN, UNKNOWN):
        with configured(DAILY_BUDGET="0.49"), pytest.raises(ratelimit.LimitExceeded) as refused:
            start_challenge(number)
        assert refused.value.scope == "budget"
    assert emulated.sends() == []
    # Neither challenge is left to be reused.
    assert not Challenge.objects.filter(expires_at__gt=timezone.now()).exists()


def test_create_users_calls_numbers_without_an_account(emulated, pauses):
    with configured(CREATE_USERS=True):
        start_challenge(UNKNOWN)
    assert len(emulated.sends(UNKNOWN)) == 1
    assert pauses == []


def test_a_user_who_may_not_log_in_is_not_called(emulated):
    user_with(KNOWN, is_active=False)
    challenge = start_challenge(KNOWN)
    assert emulated.sends() == []
    assert challenge_info(challenge)["attempts_left"] == 3


def test_resending_without_an_account_places_nothing_and_answers_alike(emulated, pauses):
    user_with(KNOWN)
    with configured(SMS_FALLBACK=True):
        known, unknown = start_challenge(KNOWN), start_challenge(UNKNOWN)
        for channel in ("voice_call", "sms", "flash_call"):
            for challenge in (known, unknown):
                reopen_resend(challenge)
                resend_challenge(challenge, channel=channel)
            a, b = challenge_info(known), challenge_info(unknown)
            del a["masked_number"], b["masked_number"]
            assert a == b
    assert emulated.sends(UNKNOWN) == []
    assert [e.kind for e in emulated.sends()] == ["flash_call", "voice_call", "sms", "flash_call"]
    assert len(pauses) == 4


# --------------------------------------------------------------------------- confirming


def test_a_right_code_is_consumed_once(emulated, sent):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    code = emulated.code_for(KNOWN)
    assert confirm_challenge(challenge, code) is True
    with pytest.raises(ChallengeError) as refused:
        confirm_challenge(challenge, code)
    assert refused.value.code == "used"
    challenge.refresh_from_db()
    assert challenge.verified_at is not None
    reasons = [kwargs["reason"] for name, kwargs in sent if name == "login_failed"]
    assert reasons == ["used"]


def test_wrong_codes_are_counted_and_then_even_the_right_one_fails(emulated, sent):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    code = emulated.code_for(KNOWN)
    wrong = f"{(int(code) + 1) % 10_000:04d}"
    assert confirm_challenge(challenge, wrong) is False
    assert challenge_info(Challenge.objects.get())["attempts_left"] == 2
    assert confirm_challenge(challenge, "12") is False  # malformed counts too
    assert confirm_challenge(challenge, wrong) is False
    with pytest.raises(ChallengeError) as refused:
        confirm_challenge(challenge, code)
    assert refused.value.code == "exhausted"
    assert refused.value.retry_after is None
    challenge.refresh_from_db()
    assert challenge.attempts == 3
    assert challenge.verified_at is None
    failures = [kwargs for name, kwargs in sent if name == "login_failed"]
    assert [f["reason"] for f in failures] == [
        "wrong_code",
        "malformed",
        "wrong_code",
        "exhausted",
    ]
    assert failures[0]["token"] == wrong[0] + "***"
    assert failures[1]["token"] == "1*"
    assert failures[3]["token"] == code[0] + "***"


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "atomic"])
@pytest.mark.parametrize("number_owner", [False, True], ids=["count", "count-and-owner"])
def test_the_attempts_statement_uses_the_right_code_only(emulated, in_transaction, number_owner):
    # The attempt and the code's use are one UPDATE: a wrong digest counts the
    # attempt and leaves the challenge open, the right one confirms it, in a
    # transaction or not (a login's confirm runs in atomic_login). SQLite 3.40
    # answers "verified_at IS NOT NULL" wrongly in a RETURNING list, which
    # made a wrong code a right one.
    user = user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    code = emulated.code_for(KNOWN)
    wrong = f"{(int(code) + 1) % 10_000:04d}"
    now = timezone.now()

    def attempt(entered: str | None) -> Any:
        digest = verification._code_digest(challenge.pk, entered) if entered else None
        block = transaction.atomic() if in_transaction else contextlib.nullcontext()
        with block:
            return verification._count_attempt_finding_owner(
                challenge.pk, now, number_owner, digest
            )

    counted_only = attempt(None)
    assert (counted_only.counted, counted_only.consumed) == (True, None)
    refused = attempt(wrong)
    assert (refused.counted, refused.consumed) == (True, False)
    challenge.refresh_from_db()
    assert (challenge.attempts, challenge.verified_at) == (2, None)
    used = attempt(code)
    assert (used.counted, used.consumed) == (True, True)
    assert used.stored == verification._code_digest(challenge.pk, code)
    if number_owner and connection.vendor == "postgresql":
        assert used.owner == user
    challenge.refresh_from_db()
    assert challenge.attempts == 3
    assert challenge.verified_at == now
    # Used: the statement matches no row any more, whatever is entered.
    assert attempt(code).counted is False


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "atomic"])
def test_a_wrong_code_never_confirms(emulated, in_transaction):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    code = emulated.code_for(KNOWN)
    for wrong in {f"{(int(code) + step) % 10_000:04d}" for step in (1, 5000, 9999)}:
        block = transaction.atomic() if in_transaction else contextlib.nullcontext()
        with block:
            assert confirm_challenge(challenge, wrong) is False
    challenge.refresh_from_db()
    assert challenge.verified_at is None
    assert challenge.attempts == 3


def test_an_expired_code_is_refused(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    expire(challenge)
    with pytest.raises(ChallengeError) as refused:
        confirm_challenge(challenge, emulated.code_for(KNOWN))
    assert refused.value.code == "expired"
    with pytest.raises(ChallengeError) as refused:
        resend_challenge(challenge, channel="voice_call")
    assert refused.value.code == "expired"
    challenge.refresh_from_db()
    assert challenge_info(challenge)["expires_in"] == 0
    assert challenge_info(challenge)["channels"] == []


def test_a_deleted_challenge_is_expired(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    Challenge.objects.all().delete()
    with pytest.raises(ChallengeError) as refused:
        confirm_challenge(challenge, "1234")
    assert refused.value.code == "expired"
    with pytest.raises(ChallengeError) as refused:
        resend_challenge(challenge)
    assert refused.value.code == "expired"


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        (lambda code: code + "\n", True),
        (lambda code: f"  {code}\t", True),
        (lambda code: f"{code[:2]} {code[2:]}", True),
        (lambda code: code.translate(ARABIC_INDIC), True),  # ١٢٣٤
        (lambda code: code.translate(str.maketrans("0123456789", SCRIPTS["persian"])), True),
        (lambda code: code.translate(str.maketrans("0123456789", SCRIPTS["full-width"])), True),
        (lambda code: "\u200f" + code.translate(ARABIC_INDIC) + "\n", True),
        (lambda code: code + "0", False),
        (lambda code: code[:3], False),
        (lambda code: code[:2] + "-" + code[2:], False),
        (lambda code: code.replace(code[0], "x", 1), False),
        (lambda code: "", False),
        (lambda code: "\x00" + code, False),
        (lambda code: code + "²", False),
        (lambda code: code * 100, False),
    ],
)
def test_codes_are_read_as_people_type_them(spelling, expected, emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    assert confirm_challenge(challenge, spelling(emulated.code_for(KNOWN))) is expected


@pytest.mark.parametrize("entered", [None, 1234, b"1234", ["1", "2", "3", "4"], 12.34])
def test_a_code_that_is_not_a_string_is_a_wrong_code(entered, emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    assert confirm_challenge(challenge, entered) is False


@given(st.text(max_size=80))
def test_clean_code_never_raises(text):
    cleaned = verification.clean_code(text)
    assert cleaned is None or re.fullmatch(r"[0-9]{4}", cleaned)


@given(st.lists(st.sampled_from("0123456789"), min_size=4, max_size=4), st.data())
def test_clean_code_reads_every_decimal_script(digits, data):
    scripts = ["0123456789", *SCRIPTS.values()]
    spelled = "".join(data.draw(st.sampled_from(scripts))[int(d)] for d in digits)
    assert verification.clean_code(f" {spelled}\n") == "".join(digits)


def test_a_stale_instance_checks_the_current_code(emulated):
    user_with(KNOWN)
    stale = start_challenge(KNOWN)
    first_code = emulated.code_for(KNOWN)
    fresh = Challenge.objects.get()
    reopen_resend(fresh)
    resend_challenge(fresh)
    second_code = emulated.code_for(KNOWN)
    if first_code != second_code:
        assert confirm_challenge(stale, first_code) is False
    assert confirm_challenge(stale, second_code) is True


# --------------------------------------------------------------------------- verify


def test_verification_adds_the_number_to_the_user(emulated, sent):
    owner = user_with(None, username="owner")
    request = browser()
    request.user = owner
    challenge = start_challenge("+7 999 000 00 60", request=request, purpose="verify", user=owner)
    assert len(emulated.sends("79990000060")) == 1  # no account has it yet: called all the same
    assert challenge.user == owner
    assert challenge_info(challenge)["purpose"] == "verify"
    assert not PhoneNumber.objects.exists()
    assert confirm_challenge(challenge, emulated.code_for("79990000060"), same_browser(request))
    assert list(PhoneNumber.objects.values_list("user", "number")) == [(owner.pk, "79990000060")]
    [verified] = [kwargs for name, kwargs in sent if name == "phone_verified"]
    assert verified["user"] == owner
    assert verified["number"] == "79990000060"
    assert verified["challenge"] == challenge


def test_verifying_a_number_moves_it_from_its_previous_owner(emulated):
    previous = user_with("79990000061")
    owner = user_with(None, username="owner")
    challenge = start_challenge("79990000061", purpose="verify", user=owner)
    assert confirm_challenge(challenge, emulated.code_for("79990000061"))
    assert PhoneNumber.objects.get(number="79990000061").user == owner
    assert not PhoneNumber.objects.filter(user=previous).exists()


def test_a_failed_verification_adds_nothing(emulated):
    owner = user_with(None, username="owner")
    challenge = start_challenge("79990000062", purpose="verify", user=owner)
    assert confirm_challenge(challenge, "abcd") is False
    assert not PhoneNumber.objects.exists()


# --------------------------------------------------------------------------- resending


def test_the_cooldown_grows_with_every_code_sent(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    assert challenge_info(challenge)["resend_in"] == 30
    with pytest.raises(ChallengeError) as refused:
        resend_challenge(challenge)
    assert refused.value.code == "cooldown"
    assert 29 <= (refused.value.retry_after or 0) <= 30
    cooldowns = []
    for _ in range(5):
        reopen_resend(challenge)
        resend_challenge(challenge)
        cooldowns.append(challenge_info(challenge)["resend_in"])
    assert cooldowns == [60, 120, 300, 300, 300]
    assert challenge.sends == 6
    assert len(emulated.sends(KNOWN)) == 6


def test_a_new_code_replaces_the_old_and_restores_the_attempts(emulated, sent):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    old = emulated.code_for(KNOWN)
    assert confirm_challenge(challenge, "abcd") is False
    assert confirm_challenge(challenge, "abcd") is False
    reopen_resend(challenge)
    resend_challenge(challenge, channel="voice_call")
    new = emulated.code_for(KNOWN)
    assert emulated.sends(KNOWN)[-1].kind == "voice_call"
    info = challenge_info(challenge)
    assert (info["channel"], info["attempts_left"], info["expires_in"]) == ("voice_call", 3, 300)
    if old != new:
        assert confirm_challenge(challenge, old) is False
    assert confirm_challenge(challenge, new) is True
    started = [kwargs["channel"] for name, kwargs in sent if name == "challenge_started"]
    assert started == ["flash_call", "voice_call"]


def test_sms_is_offered_only_when_enabled_and_after_a_call(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    assert challenge_info(challenge)["channels"] == ["flash_call", "voice_call"]
    reopen_resend(challenge)
    with pytest.raises(ChallengeError) as refused:
        resend_challenge(challenge, channel="sms")
    assert refused.value.code == "channel_unavailable"
    assert [e.kind for e in emulated.sends()] == ["flash_call"]
    with configured(SMS_FALLBACK=True):
        assert challenge_info(challenge)["channels"] == ["flash_call", "voice_call", "sms"]


def test_an_sms_sends_the_code_of_the_last_call_again(emulated, sent):
    user_with("79990000003")
    with configured(SMS_FALLBACK=True):
        challenge = start_challenge("79990000003")
        code = emulated.code_for("79990000003")
        assert confirm_challenge(challenge, "abcd") is False
        reopen_resend(challenge)
        resend_challenge(challenge, channel="sms")
        assert [e.kind for e in emulated.sends()] == ["flash_call", "sms"]
        assert emulated.code_for("79990000003") == code  # the SMS carries the call's code
        sms = Call.objects.get(channel="sms")
        assert sms.parent == Call.objects.get(channel="flash_call")
        assert sms.challenge == challenge
        info = challenge_info(challenge)
        assert (info["channel"], info["attempts_left"]) == ("sms", 3)
        # One SMS per call: the next needs a new call.
        assert info["channels"] == ["flash_call", "voice_call"]
        reopen_resend(challenge)
        with pytest.raises(ChallengeError):
            resend_challenge(challenge, channel="sms")
        assert confirm_challenge(challenge, code) is True
    started = [kwargs["channel"] for name, kwargs in sent if name == "challenge_started"]
    assert started == ["flash_call", "sms"]


def test_an_sms_for_a_verification_waits_for_the_call_to_end(emulated, monkeypatch):
    owner = user_with(None, "owner")
    reserved, released = spy_on_the_budget(monkeypatch)
    emulated.emulator.callback_delay = 60.0  # the call is still ringing
    with configured(SMS_FALLBACK=True, DAILY_BUDGET="1000"):
        challenge = start_challenge(KNOWN, purpose="verify", user=owner)
        reopen_resend(challenge)
        with pytest.raises(ChallengeError) as refused:
            resend_challenge(challenge, channel="sms")
        assert refused.value.code == "channel_unavailable"
        assert [e.kind for e in emulated.sends()] == ["flash_call"]
        # Nothing was sent: the budget and the cooldown are given back.
        assert released == [reserved[1]]
        assert challenge_info(Challenge.objects.get())["resend_in"] == 0
        emulated.advance(61)
        resend_challenge(challenge, channel="sms")
    assert [e.kind for e in emulated.sends()] == ["flash_call", "sms"]


def test_an_sms_for_a_login_while_the_call_rings_answers_as_sent(emulated, monkeypatch, sent):
    user_with(KNOWN)
    reserved, released = spy_on_the_budget(monkeypatch)
    emulated.emulator.callback_delay = 60.0  # the call is still ringing
    with configured(SMS_FALLBACK=True, DAILY_BUDGET="1000"):
        known, unknown = start_challenge(KNOWN), start_challenge(UNKNOWN)
        code = emulated.code_for(KNOWN)
        for challenge in (known, unknown):
            reopen_resend(challenge)
            resend_challenge(challenge, channel="sms")
        # As for a number without an account: the SMS "went out".
        a, b = challenge_info(known), challenge_info(unknown)
        del a["masked_number"], b["masked_number"]
        assert a == b
        assert (a["channel"], a["resend_in"]) == ("sms", 60)
    assert [e.kind for e in emulated.sends()] == ["flash_call"]  # no SMS paid for
    assert released[-1] == reserved[-1]
    # The call's code (which the ringing phone shows) still works.
    assert confirm_challenge(known, code) is True
    started = [kwargs["channel"] for name, kwargs in sent if name == "challenge_started"]
    assert started == ["flash_call"]


def test_a_resend_claims_its_cooldown_once(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    stale = Challenge.objects.get()
    reopen_resend(challenge)
    stale.resend_at = challenge.resend_at
    resend_challenge(challenge)
    # A second resend that read the row before the first one claimed it.
    with pytest.raises(ChallengeError) as refused:
        resend_challenge(stale)
    assert refused.value.code == "cooldown"
    assert len(emulated.sends()) == 2


def test_limits_apply_to_resends(emulated):
    number = "79990000072"
    user_with(number)
    with configured(LIMITS={"number": "2/h"}):
        challenge = start_challenge(number)
        reopen_resend(challenge)
        resend_challenge(challenge)
        reopen_resend(challenge)
        with pytest.raises(ratelimit.LimitExceeded):
            resend_challenge(challenge)
    assert len(emulated.sends(number)) == 2


def test_a_resend_refused_by_the_budget_keeps_the_cooldown_open(emulated, monkeypatch):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    reopen_resend(challenge)

    def refuse(channel: str, *, request: Any = None) -> None:
        raise ratelimit.LimitExceeded("budget", 3600)

    monkeypatch.setattr(ratelimit, "reserve", refuse)
    with pytest.raises(ratelimit.LimitExceeded):
        resend_challenge(challenge, channel="voice_call")
    fresh = Challenge.objects.get()
    assert (fresh.sends, fresh.channel) == (1, "flash_call")
    assert challenge_info(fresh)["resend_in"] == 0
    assert len(emulated.sends()) == 1


def test_a_used_challenge_sends_nothing_more(emulated):
    user_with(KNOWN)
    challenge = start_challenge(KNOWN)
    assert confirm_challenge(challenge, emulated.code_for(KNOWN))
    reopen_resend(challenge)
    with pytest.raises(ChallengeError) as refused:
        resend_challenge(challenge)
    assert refused.value.code == "used"
    assert challenge_info(challenge)["channels"] == []


# ------------------------------------------------------ provider failures and the budget


def spy_on_the_budget(monkeypatch) -> tuple[list[Any], list[Any]]:
    """Record every reservation made and every one released (and still make them)."""
    reserved: list[Any] = []
    released: list[Any] = []
    real_reserve, real_release = ratelimit.reserve, ratelimit.release
    real_check_and_reserve = ratelimit.check_and_reserve

    def reserve(channel: str, *, request: Any = None) -> Any:
        reservation = real_reserve(channel, request=request)
        reserved.append(reservation)
        return reservation

    def check_and_reserve(*args: Any, **kwargs: Any) -> Any:
        # A start checks the limits and reserves in one call (one round trip on Redis).
        reservation, read = real_check_and_reserve(*args, **kwargs)
        reserved.append(reservation)
        return reservation, read

    def release(reservation: Any) -> None:
        released.append(reservation)
        real_release(reservation)

    monkeypatch.setattr(ratelimit, "reserve", reserve)
    monkeypatch.setattr(ratelimit, "check_and_reserve", check_and_reserve)
    monkeypatch.setattr(ratelimit, "release", release)
    return reserved, released


@pytest.mark.parametrize(
    ("number", "error_code"),
    [
        ("79990000020", "number_not_valid"),
        ("79990000023", "not_enough_money"),
    ],
)
def test_a_refused_call_gives_its_budget_back(number, error_code, emulated, monkeypatch, sent):
    owner = user_with(None, "owner")
    reserved, released = spy_on_the_budget(monkeypatch)
    with configured(DAILY_BUDGET="1000"), pytest.raises(ChallengeError) as refused:
        start_challenge(number, request=browser(), purpose="verify", user=owner)
    assert refused.value.code == "channel_unavailable"
    assert reserved[0] is not None
    assert released == reserved
    call = Call.objects.get()
    assert (call.status, call.error_code) == (Call.Status.NOT_PLACED, error_code)
    challenge = Challenge.objects.get()
    assert call.challenge == challenge  # linked even though it failed
    assert challenge.expires_at <= timezone.now()  # never reused
    assert "challenge_started" not in [name for name, _kwargs in sent]


@pytest.mark.parametrize(
    ("number", "error_code"),
    [
        ("79990000020", "number_not_valid"),
        ("79990000021", "number_not_permitted"),
        ("79990000022", "number_in_spam_list"),
        ("79990000023", "not_enough_money"),
        ("79990000024", "user_disabled"),
    ],
)
def test_a_refused_login_looks_like_a_number_without_an_account(
    number, error_code, emulated, monkeypatch, sent, caplog
):
    user_with(number)
    reserved, released = spy_on_the_budget(monkeypatch)
    with configured(DAILY_BUDGET="1000"):
        challenge = start_challenge(number, request=browser())
        ghost = start_challenge(UNKNOWN, request=browser())
    a, b = challenge_info(challenge), challenge_info(ghost)
    del a["masked_number"], b["masked_number"]
    assert a == b
    assert send_state(challenge) == "sent"
    assert released == reserved  # nothing placed, nothing spent
    call = Call.objects.get()
    assert (call.status, call.error_code) == (Call.Status.NOT_PLACED, error_code)
    assert call.challenge == challenge  # the admin shows what happened
    assert "challenge_started" not in [name for name, _kwargs in sent]
    assert any(error_code.split("_")[0] in r.getMessage().lower() for r in caplog.records)
    # A code nobody can enter, and a resend after the cooldown is allowed.
    challenge.refresh_from_db()
    assert challenge.code_digest not in {code_digest(challenge, f"{n:04d}") for n in range(10_000)}
    reopen_resend(challenge)
    assert resend_challenge(challenge).sends == 2


def test_the_providers_error_is_the_cause(emulated):
    owner = user_with(None, "owner")
    with pytest.raises(ChallengeError) as refused:
        start_challenge("79990000020", purpose="verify", user=owner)
    assert isinstance(refused.value.__cause__, NumberNotValidError)


# 31 and 37: HTTP 500 and 502 without the provider's refusal; 37's call is placed.
@pytest.mark.parametrize(
    "number",
    ["79990000030", "79990000031", "79990000032", "79990000033", "79990000034", "79990000037"],
)
def test_an_unknown_outcome_keeps_the_budget_and_an_unknown_code_fails(
    number, emulated, monkeypatch
):
    owner = user_with(None, "owner")
    user_with(number)
    reserved, released = spy_on_the_budget(monkeypatch)
    with configured(DAILY_BUDGET="1000"), pytest.raises(ChallengeError) as refused:
        start_challenge(number, purpose="verify", user=owner)
    assert refused.value.code == "channel_unavailable"
    assert isinstance(refused.value.__cause__, OutcomeUnknownError)
    assert len(reserved) == 1
    assert released == []  # it may have been billed
    assert Call.objects.get().status == Call.Status.UNKNOWN
    assert Challenge.objects.get().expires_at <= timezone.now()
    # A login answers as sent; the code the phone may have seen is not known.
    with configured(DAILY_BUDGET="1000"):
        login = start_challenge(number)
    assert released == []
    assert send_state(login) == "sent"
    # 31's call was not placed (a 500 before the call): no phone saw a code.
    seen = emulated.code_for(number) if emulated.last_call(number) else "0000"
    assert confirm_challenge(login, seen) is False


def test_an_unknown_outcome_with_a_code_of_ours_carries_on(emulated, monkeypatch, sent):
    number = "79990000034"
    user_with(number)
    _reserved, released = spy_on_the_budget(monkeypatch)
    with configured(DAILY_BUDGET="1000"):
        challenge = start_challenge(number, "voice_call")
    assert released == []
    assert len(emulated.sends(number)) == 1  # and never asked again
    assert Call.objects.get().challenge == challenge
    assert [name for name, _kwargs in sent if name == "challenge_started"] == ["challenge_started"]
    # The phone did get it (the emulator places a call that drops its answer).
    assert confirm_challenge(challenge, emulated.code_for(number)) is True


def test_a_failed_resend_keeps_the_old_code_and_gives_the_cooldown_back(emulated, monkeypatch):
    number = "79990000035"
    owner = user_with(None, "owner")
    challenge = start_challenge(number, purpose="verify", user=owner)
    code = emulated.code_for(number)
    reopen_resend(challenge)
    emulated.emulator.user_disabled = True  # refused: nothing placed
    with pytest.raises(ChallengeError) as refused:
        resend_challenge(challenge, channel="voice_call")
    assert refused.value.code == "channel_unavailable"
    emulated.emulator.user_disabled = False
    fresh = Challenge.objects.get()
    assert (fresh.sends, fresh.channel) == (1, "flash_call")
    assert challenge_info(fresh)["resend_in"] == 0
    assert confirm_challenge(fresh, code) is True


def test_a_failed_login_resend_answers_as_sent_and_keeps_the_old_code(emulated, monkeypatch):
    number = "79990000035"
    user_with(number)
    challenge = start_challenge(number)
    code = emulated.code_for(number)
    reopen_resend(challenge)
    emulated.emulator.user_disabled = True  # refused: nothing placed
    resend_challenge(challenge, channel="voice_call")
    emulated.emulator.user_disabled = False
    fresh = Challenge.objects.get()
    # As a sent one: the next cooldown, the channel asked for.
    assert (fresh.sends, fresh.channel) == (2, "voice_call")
    assert challenge_info(fresh)["resend_in"] == 60
    assert confirm_challenge(fresh, code) is True


def test_a_resend_whose_outcome_and_code_are_unknown_still_counts(emulated):
    number = "79990000036"
    user_with(number)
    challenge = start_challenge(number)
    code = emulated.code_for(number)
    reopen_resend(challenge)
    emulated.set_fault("dropped", endpoints=("send",))
    resend_challenge(challenge)
    emulated.set_fault(None)
    fresh = Challenge.objects.get()
    assert fresh.sends == 2  # it may have rung and cost: the cooldown stands
    assert challenge_info(fresh)["resend_in"] == 60
    assert confirm_challenge(fresh, code) is True


def test_a_broken_configuration_is_not_disguised(emulated, monkeypatch):
    from django_voicepassword.conf import ConfigurationError

    user_with(KNOWN)
    reserved, released = spy_on_the_budget(monkeypatch)
    broken = configured(DAILY_BUDGET="1000", GATEWAY="django_voicepassword.conf.settings")
    with broken, pytest.raises(ConfigurationError):
        start_challenge(KNOWN)
    assert released == reserved
    assert not Challenge.objects.filter(expires_at__gt=timezone.now()).exists()


# --------------------------------------------------------------------------- nothing kept in clear


def scan(text: str, codes: set[str], keys: tuple[str, ...]) -> list[str]:
    """The codes (as whole runs of digits) and keys found in ``text``."""
    found = [key for key in keys if key in text]
    found += [run for run in re.findall(r"[0-9]+", text) if run in codes]
    return found


def text_values() -> Iterator[tuple[str, str]]:
    """``(where, value)`` for every text column of every row of every model."""
    for model in apps.get_models():
        fields = [
            field
            for field in model._meta.concrete_fields
            if isinstance(field, models.CharField | models.TextField | models.JSONField)
        ]
        for row in model._default_manager.values_list("pk", *(f.attname for f in fields)):
            pk, *values = row
            for field, value in zip(fields, values, strict=True):
                if value not in (None, ""):
                    where = f"{model._meta.label}.{field.name} #{pk}"
                    yield where, value if isinstance(value, str) else json.dumps(value)


def run_everything(emulated) -> None:
    """Calls, faults, wrong codes, right codes, SMS, and logins by phone."""
    from django.contrib.auth import authenticate

    for n in (1, 2, 3, 30, 31, 32, 33, 34, 37):
        user_with(f"799900000{n:02d}")
    backends = ["django_voicepassword.auth_backends.PhoneCodeBackend"]
    with (
        configured(SMS_FALLBACK=True, DAILY_BUDGET="1000"),
        override_settings(AUTHENTICATION_BACKENDS=backends),
    ):
        for number, channel in (
            ("79990000001", "flash_call"),
            ("79990000002", "voice_call"),
            ("79990000003", "flash_call"),
        ):
            request = browser()
            challenge = start_challenge(number, channel, request)
            code = emulated.code_for(number)
            assert confirm_challenge(challenge, "0000" if code != "0000" else "1111") is False
            if number == "79990000003":
                reopen_resend(challenge)
                resend_challenge(challenge, same_browser(request), channel="sms")
                reopen_resend(challenge)
                resend_challenge(challenge, same_browser(request), channel="voice_call")
                code = emulated.code_for(number)
            # The right code from another browser, then in time, then once more.
            assert authenticate(browser(), challenge=challenge, otp_token=code) is None
            user = authenticate(
                same_browser(request), challenge=challenge, otp_token=code.translate(ARABIC_INDIC)
            )
            assert user is not None
            assert authenticate(same_browser(request), challenge=challenge, otp_token=code) is None
        for n in (30, 32, 33, 34, 37):
            for channel in ("flash_call", "voice_call"):
                challenge = start_challenge(f"799900000{n:02d}", channel, browser())
                placed = Call.objects.filter(challenge=challenge).latest("created_at")
                if placed.status == Call.Status.NOT_PLACED or (
                    placed.status == Call.Status.UNKNOWN and channel == "flash_call"
                ):
                    continue  # answered as sent, with a code nobody knows
                code = emulated.code_for(f"799900000{n:02d}")
                assert authenticate(None, challenge=challenge, otp_token=code) is not None
        ghost = start_challenge(UNKNOWN, request=browser())
        assert authenticate(None, challenge=ghost, otp_token="1234") is None


def test_no_code_or_key_is_kept_logged_or_signalled(emulated, sent, caplog):
    caplog.set_level("DEBUG")
    run_everything(emulated)

    codes = {call.code for call in emulated.emulator.calls}
    codes |= {entry.code for entry in emulated.log if entry.code}
    assert len(codes) >= 8
    known_secrets = ("emulator-key", "tests-only-secret-key-not-for-production")
    unkeyed = {hashlib.sha256(code.encode()).hexdigest() for code in codes}
    leaks = []
    checked = 0
    for where, value in text_values():
        checked += 1
        if re.fullmatch(r"[0-9a-f]{64}", value):
            # Digest-shaped (the code and session HMACs): not a bare hash of a
            # code, and not searched for digit runs that chance puts in hex.
            if value in unkeyed:
                leaks.append(f"{where}: a bare hash of a code")
            continue
        leaks += [f"{where}: {found}" for found in scan(value, codes, known_secrets)]
    assert checked > 50

    for record in caplog.records:
        if record.name.startswith("django_voicepassword.emulator"):
            continue  # the emulator plays the phone: it is there to show codes
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += "".join(traceback.format_exception_only(record.exc_info[1]))
        leaks += [f"log {record.name}: {found}" for found in scan(text, codes, known_secrets)]
    assert any(r.name.startswith("django_voicepassword.verification") for r in caplog.records)

    for name, kwargs in sent:
        for key, value in kwargs.items():
            text = f"{value!r} {value}"
            leaks += [
                f"signal {name}.{key}: {found}" for found in scan(text, codes, known_secrets)
            ]
    assert {name for name, _kwargs in sent} >= {
        "challenge_started",
        "phone_verified",
        "login_failed",
        "call_placed",
    }
    assert leaks == []


def test_errors_say_nothing_personal():
    error = ChallengeError("cooldown", retry_after=12)
    assert error.args == ("cooldown",)
    assert repr(error) == "ChallengeError('cooldown', retry_after=12)"
    assert str(error) == str(ChallengeError.messages["cooldown"])
    for code in ChallengeError.messages:
        assert ChallengeError(code).code == code


def test_every_refusal_has_a_message():
    for code in (
        "expired",
        "exhausted",
        "used",
        "wrong_session",
        "cooldown",
        "channel_unavailable",
    ):
        assert str(ChallengeError(code))


def test_a_session_saved_once_is_not_written_again_with_the_same_data():
    # A start stores a new session before it answers; SessionMiddleware's save
    # after the view wrote the same data again (issue #16).
    session = SessionStore()
    session["kept"] = 1
    binding.save_session_once(session)
    with CaptureQueriesContext(connection) as unchanged:
        session.save()
    session["kept"] = 2
    with CaptureQueriesContext(connection) as changed:
        session.save()

    assert unchanged.captured_queries == []
    assert any("UPDATE" in query["sql"] for query in changed.captured_queries)
    assert SessionStore(session.session_key)["kept"] == 2
    # A new key (login() cycles it) is stored as a new row, data and all.
    old_key = session.session_key
    session.cycle_key()
    assert session.session_key != old_key
    assert SessionStore(session.session_key)["kept"] == 2


# --- deliver_code: codes this package does not check ------------------------------------


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        ("sms", "1234"),
        ("fax", "1234"),
        ("flash_call", "12345"),
        ("flash_call", "12a4"),
        ("voice_call", "\u0661\u0662\u0663\u0664"),
        ("voice_call", ""),
    ],
)
def test_deliver_code_refuses_what_it_cannot_send_before_counting_it(emulated, channel, code):
    forget_counters()
    with configured(LIMITS={"number": "1/h"}):
        with pytest.raises(ValueError, match="deliver_code"):
            verification.deliver_code(KNOWN, code, channel)
        # Nothing was counted: the one send the limit allows still goes out.
        assert verification.deliver_code(KNOWN, "1234", "flash_call").placed
    forget_counters()
    assert [e.kind for e in emulated.sends()] == ["flash_call"]
    assert Call.objects.count() == 1


#: A day's budget of exactly one flash call.
ONE_CALL_BUDGET: dict[str, Any] = {
    "DAILY_BUDGET": "1",
    "PRICE_ESTIMATES": {"flash_call": "1", "voice_call": "5", "sms": "4"},
}


@pytest.mark.parametrize("send", ["deliver_code", "start_challenge"])
def test_a_send_the_settings_break_gives_its_budget_back(emulated, send):
    from django_voicepassword.conf import ConfigurationError
    from django_voicepassword.gateways.base import reset_gateway

    forget_counters()
    user_with(KNOWN)

    def attempt() -> None:
        if send == "deliver_code":
            assert verification.deliver_code(KNOWN, "1234", "flash_call").placed
        else:
            start_challenge(KNOWN, request=browser())

    try:
        with configured(**ONE_CALL_BUDGET, GATEWAY="django_voicepassword.models.Call"):
            reset_gateway()
            with pytest.raises(ConfigurationError, match="GATEWAY"):
                attempt()
        reset_gateway()
        with configured(**ONE_CALL_BUDGET):
            attempt()  # the budget the broken send reserved was given back
            assert len(emulated.sends()) == 1
            with pytest.raises(ratelimit.LimitExceeded):
                attempt()  # and this one is over it
    finally:
        reset_gateway()
        forget_counters()
