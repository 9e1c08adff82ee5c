"""Abuse limits and the daily budget: each scope refuses on time, atomically, anonymously.

Runs on the local-memory cache in the default tier and on Redis in the service
tier. The clock is the module's ``_now``, moved by the ``clock`` fixture: no test
sleeps to let time pass. The local-memory concurrency tests run on a cache whose
reads yield (``tests/caches.py``), so that a count written as get-then-set
loses updates there and fails them, as it fails the Redis twins.
"""

from __future__ import annotations

import contextlib
import fnmatch
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.test import RequestFactory, override_settings
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from django_voicepassword import ratelimit
from django_voicepassword.client import PROVIDER_TZ
from django_voicepassword.conf import ConfigurationError
from django_voicepassword.phone import normalize
from django_voicepassword.ratelimit import (
    MAX_PERIOD,
    LimitExceeded,
    Rate,
    Reservation,
    check_send,
    parse_rates,
    release,
    reserve,
)
from django_voicepassword.signals import limit_exceeded
from tests.caches import SLOW_READ_LOCMEM

NUMBER = "79161234567"
OTHER = "79031112233"
# A Unix time at a UTC midnight: every window of a minute, hour or day starts here.
T0 = 1_750_118_400
BASE = {"API_KEY": "tests-api-key"}


# --- fixtures and helpers --------------------------------------------------------


class Clock:
    """The time ratelimit reads, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    frozen = Clock(T0)
    monkeypatch.setattr(ratelimit, "_now", frozen)
    return frozen


def stored_keys() -> list[str]:
    """This run's cache keys under the app's prefix, as the cache stores them."""
    backend: Any = caches["default"]
    pattern = backend.make_key("voicepassword:*")
    if type(backend).__name__ == "RedisCache":
        client = backend._cache.get_client()
        return [key.decode() for key in client.scan_iter(match=pattern)]
    return [key for key in backend._cache if fnmatch.fnmatchcase(key, pattern)]


def forget_counters() -> None:
    # Not cache.clear(): on Redis that flushes the database other test runs share.
    cache.delete_many([unprefixed(key) for key in stored_keys()])


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    forget_counters()
    yield
    forget_counters()


def limits(budget: str | None = None, **scopes: str) -> Any:
    """override_settings with only ``scopes`` limited (and ``budget``)."""
    return override_settings(VOICEPASSWORD={**BASE, "LIMITS": scopes, "DAILY_BUDGET": budget})


rf = RequestFactory()


def request_from(address: str, session: SessionStore | None = None) -> Any:
    request = rf.post("/login/", REMOTE_ADDR=address)
    if session is not None:
        request.session = session
    return request


def refusal(number: str = NUMBER, request: Any = None) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        check_send(number, request)
    return info.value


def send_times(times: int, number: str = NUMBER, request: Any = None) -> None:
    for _ in range(times):
        check_send(number, request)


# --- parse_rates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3/10m,10/d", (Rate(3, 600), Rate(10, 86400))),
        ("5/h", (Rate(5, 3600),)),
        ("5/1h", (Rate(5, 3600),)),
        (" 1 / 30 s , 0/d ", (Rate(1, 30), Rate(0, 86400))),
        ("100/366d", (Rate(100, MAX_PERIOD),)),
        ("", ()),
    ],
)
def test_parse_rates(text, expected):
    assert parse_rates(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "3",
        "3/",
        "/h",
        "3/10",
        "3/10w",
        "3/0m",
        "3/367d",
        "-3/h",
        "3.5/h",
        "3/h,",
        ",3/h",
        "3/h;5/d",
        "3/h,5/60m",  # one period twice: both would count on one counter
        "٣/h",  # Arabic-Indic digit: int() reads it, a settings file should not
        " ",
        "1234567890/h",
    ],
)
def test_parse_rates_refuses_garbage(text):
    with pytest.raises(ValueError):  # noqa: PT011  (ValueError is the contract)
        parse_rates(text)


def test_rate_prints_its_shortest_spelling():
    spellings = ["3/10m", "10/d", "5/60s", "2/90s", "1/24h", "7/3600s", "4/366d", "9/1s"]
    assert [str(rate) for text in spellings for rate in parse_rates(text)] == [
        "3/10m",
        "10/d",
        "5/m",
        "2/90s",
        "1/d",
        "7/h",
        "4/366d",
        "9/s",
    ]
    with pytest.raises(ValueError):  # noqa: PT011
        Rate(1, 0)


_units = st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("d", 86400)])
_spaces = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def spelled_rate(draw: st.DrawFn) -> tuple[str, Rate]:
    """Any valid spelling of a rate, and the rate it means."""
    unit, size = draw(_units)
    multiple = draw(st.integers(1, MAX_PERIOD // size))
    count = draw(st.integers(0, 999_999_999))
    shown = "" if multiple == 1 and draw(st.booleans()) else str(multiple)
    s = [draw(_spaces) for _ in range(4)]
    return f"{s[0]}{count}{s[1]}/{s[2]}{shown}{unit}{s[3]}", Rate(count, multiple * size)


@given(st.lists(spelled_rate(), min_size=1, max_size=5, unique_by=lambda p: p[1].seconds))
def test_parse_rates_reads_every_spelling(pairs):
    text = ",".join(spelled for spelled, _ in pairs)
    rates = tuple(rate for _, rate in pairs)
    assert parse_rates(text) == rates
    # And prints what it reads back.
    assert parse_rates(",".join(map(str, rates))) == rates


@given(st.text(max_size=60))
def test_parse_rates_raises_only_value_error(text):
    try:
        rates = parse_rates(text)
    except ValueError:
        return
    assert all(isinstance(rate, Rate) and 1 <= rate.seconds <= MAX_PERIOD for rate in rates)


@given(st.text(alphabet="0123456789/,smhd -", max_size=30))
def test_parse_rates_raises_only_value_error_on_near_misses(text):
    with contextlib.suppress(ValueError):
        parse_rates(text)


# --- each scope ----------------------------------------------------------------------


def test_number_scope_refuses_until_its_window_ends(clock):
    with limits(number="2/10m"):
        send_times(2)
        clock.advance(60)
        refused = refusal()
        assert (refused.scope, refused.retry_after) == ("number", 540)
        check_send(OTHER, None)  # another number has its own counter
        clock.advance(539)
        assert refusal().retry_after == 1
        clock.advance(1)
        check_send(NUMBER, None)


def test_retry_after_rounds_up_to_whole_seconds(clock):
    with limits(number="1/m"):
        check_send(NUMBER, None)
        clock.advance(0.4)
        assert refusal().retry_after == 60  # 59.6 seconds left: 59 would be too early
        clock.advance(59.5)
        assert refusal().retry_after == 1  # 0.1 seconds left: never 0


def test_every_rate_of_a_scope_counts(clock):
    with limits(number="2/m,3/h"):
        send_times(2)
        assert refusal().retry_after == 60
        clock.advance(60)
        # A new minute, but the hour holds 2 codes and the refused attempt.
        assert refusal().retry_after == 3600 - 60


def test_the_window_that_frees_up_last_decides(clock):
    with limits(number="2/m,2/h"):
        send_times(2)
        clock.advance(30)
        assert refusal().retry_after == 3600 - 30  # not the minute's 30


def test_ip_scope_groups_an_ipv6_64_and_separates_others(clock):
    with limits(ip="2/h"):
        check_send(NUMBER, request_from("2001:db8:1:2::1"))
        check_send(OTHER, request_from("2001:db8:1:2:ffff:ffff:ffff:fffe"))
        refused = refusal(OTHER, request_from("2001:db8:1:2:abcd::9"))
        assert (refused.scope, refused.retry_after) == ("ip", 3600)
        send_times(2, request=request_from("2001:db8:1:3::1"))  # the next /64
        send_times(2, request=request_from("203.0.113.7"))
        assert refusal(request=request_from("203.0.113.7")).scope == "ip"
        check_send(NUMBER, request_from("203.0.113.8"))  # IPv4: one address is one client
        # An IPv4-mapped IPv6 peer is its IPv4 address, not a /64 of its own.
        check_send(NUMBER, request_from("::ffff:203.0.113.8"))
        assert refusal(request=request_from("203.0.113.8")).scope == "ip"


def test_network_scope_groups_an_ipv6_48_and_an_ipv4_24(clock):
    with limits(ip="10/h", network="12/h"):
        # 15 /64s of one /48: each is a fresh address, but one network.
        passed = 0
        for n in range(15):
            with contextlib.suppress(LimitExceeded):
                check_send(NUMBER, request_from(f"2001:db8:1:{n:x}::1"))
                passed += 1
        assert passed == 12
        assert refusal(request=request_from("2001:db8:1:ff::1")).scope == "network"
        check_send(NUMBER, request_from("2001:db8:2::1"))  # the next /48
        for host in range(1, 13):
            check_send(NUMBER, request_from(f"198.51.100.{host}"))
        assert refusal(request=request_from("198.51.100.200")).scope == "network"
        check_send(NUMBER, request_from("198.51.101.1"))  # the next /24


def test_the_network_scope_is_on_by_default(clock):
    with override_settings(VOICEPASSWORD=BASE):
        passed = 0
        for n in range(15):
            with contextlib.suppress(LimitExceeded):
                check_send(numbers(1, n)[0], request_from(f"2001:db8:1:{n:x}::1"))
                passed += 1
        assert passed < 15


PROXIED = {**BASE, "LIMITS": {"ip": "2/h", "network": "3/h"}, "PROXY_HEADER": "X-Forwarded-For"}


@pytest.fixture
def fresh_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "_warned_unidentified", False, raising=False)


@pytest.mark.parametrize("header", [None, "", "garbage", "1.2.3.4, not-an-address"])
def test_a_request_without_a_readable_proxy_header_is_limited_not_let_through(
    clock, fresh_warning, caplog, header
):
    extra = {} if header is None else {"HTTP_X_FORWARDED_FOR": header}
    with override_settings(VOICEPASSWORD=PROXIED), caplog.at_level("WARNING"):
        # Every such request shares one allowance, whatever its connection.
        check_send(NUMBER, rf.post("/", REMOTE_ADDR="10.0.0.1", **extra))
        check_send(OTHER, rf.post("/", REMOTE_ADDR="10.0.0.2", **extra))
        refused = refusal(request=rf.post("/", REMOTE_ADDR="10.9.9.9", **extra))
        assert refused.scope == "ip"
        # A client whose header the proxy did set is not held by them.
        check_send(NUMBER, rf.post("/", HTTP_X_FORWARDED_FOR="198.51.100.1"))
    warnings = [r for r in caplog.records if "PROXY_HEADER" in r.getMessage()]
    assert len(warnings) == 1  # once per process, not per request
    assert warnings[0].levelname == "WARNING"


def test_the_proxy_warning_is_not_given_when_the_header_is_there(clock, fresh_warning, caplog):
    with override_settings(VOICEPASSWORD=PROXIED), caplog.at_level("WARNING"):
        check_send(NUMBER, rf.post("/", HTTP_X_FORWARDED_FOR="198.51.100.1"))
    assert caplog.records == []


def test_ip_scope_reads_the_proxy_header(clock):
    settings = {**BASE, "LIMITS": {"ip": "1/h"}, "PROXY_HEADER": "X-Forwarded-For"}
    with override_settings(VOICEPASSWORD=settings):
        first = rf.post("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1")
        check_send(NUMBER, first)
        again = rf.post("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.1")
        assert refusal(request=again).scope == "ip"
        other = rf.post("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")
        check_send(NUMBER, other)


def test_prefix_scope_counts_numbers_of_one_block(clock):
    with limits(prefix="2/h"):
        check_send("79161234567", None)
        check_send("79161239999", None)
        refused = refusal("79161230000")
        assert (refused.scope, refused.retry_after) == ("prefix", 3600)
        check_send("79161240000", None)  # another block of 7 digits


def test_prefix_length_is_read_at_call_time(clock):
    settings = {**BASE, "LIMITS": {"prefix": "1/h"}, "PREFIX_LENGTH": 4}
    with override_settings(VOICEPASSWORD=settings):
        check_send("79161234567", None)
        assert refusal("79169999999").scope == "prefix"
        check_send("79179999999", None)


@pytest.mark.django_db
def test_session_scope_creates_a_session_and_binds_it(clock):
    with limits(session="2/h"):
        session = SessionStore()
        before = session.session_key
        check_send(NUMBER, request_from("203.0.113.1", session))
        assert before is None
        assert session.session_key is not None  # created, so the cookie goes out
        # Another address and another number: the same browser session.
        check_send(OTHER, request_from("203.0.113.2", session))
        refused = refusal(request=request_from("203.0.113.3", session))
        assert (refused.scope, refused.retry_after) == ("session", 3600)
        check_send(NUMBER, request_from("203.0.113.3", SessionStore()))


@pytest.mark.django_db
def test_no_session_is_created_when_the_session_scope_is_off(clock):
    with limits(number="5/h"):
        session = SessionStore()
        check_send(NUMBER, request_from("203.0.113.1", session))
        assert session.session_key is None


def test_global_scope_counts_every_number(clock):
    with limits(**{"global": "3/h"}):
        check_send("79161234567", None, kind="verified")
        check_send("79031112233", None, kind="verified")
        check_send("79261112233", None, kind="verified")
        with pytest.raises(LimitExceeded) as info:
            check_send("79991112233", None, kind="verified")
        # Sliding: the three sends weigh on the next hour too, and the first
        # place returns when a third of it has passed (3 * 2/3 + 1 <= 3).
        assert (info.value.scope, info.value.retry_after) == ("global", 3600 + 1200)
        clock.advance(3600 + 1200)
        check_send("79991112233", None, kind="verified")


def global_limits(rate: str, share: float = 0.5) -> Any:
    settings = {**BASE, "LIMITS": {"global": rate}, "GLOBAL_NEW_SHARE": share}
    return override_settings(VOICEPASSWORD=settings)


def numbers(count: int, start: int = 0) -> list[str]:
    """``count`` distinct normalized numbers: the attacker needs no real ones."""
    return [f"7916{n:07d}" for n in range(start, start + count)]


def global_counters() -> dict[str, int]:
    """pool -> the sum of its stored counters."""
    counts: dict[str, int] = {}
    for key in stored_keys():
        parts = unprefixed(key).split(":")
        if parts[2] == "global":
            counts[parts[3]] = counts.get(parts[3], 0) + int(cache.get(unprefixed(key)))
    return counts


def test_new_numbers_take_only_their_share_of_the_global_scope(clock):
    with global_limits("10/h", share=0.3):
        for number in numbers(3):
            check_send(number, None)
        with pytest.raises(LimitExceeded) as info:
            check_send(numbers(1, 3)[0], None, kind="new")
        assert info.value.scope == "global"
        # The other seven places are the verified numbers'.
        for number in numbers(7, 100):
            check_send(number, None, kind="verified")
        with pytest.raises(LimitExceeded):
            check_send(numbers(1, 200)[0], None, kind="verified")
        assert global_counters() == {"new": 3, "all": 10}


def test_an_attack_by_new_numbers_cannot_stop_a_verified_number(clock):
    with global_limits("100/h"):
        attack = iter(numbers(20_000))
        users = iter(numbers(100, 50_000))
        new_passed = refused = 0
        # Two hours of a new number every 12 seconds (300 an hour, where their
        # share is 50), while the site's users log in every ten minutes.
        for second in range(0, 2 * 3600, 12):
            kind: Any = "new" if second % 24 else "uncalled"
            try:
                check_send(next(attack), None, kind=kind)
                new_passed += kind == "new"
            except LimitExceeded:
                refused += 1
            if second % 600 == 0:
                check_send(next(users), None, kind="verified")
            clock.advance(12)
        assert refused > 0  # the attack is shed,
        assert new_passed < 2 * 50  # within its share of 50 an hour
        # and the site's allowance is never held by refused attempts.
        assert global_counters()["all"] <= 2 * 100


def test_an_uncalled_login_is_refused_exactly_when_a_verified_one_is(clock):
    # A login for a number without an account places no call; its answer must
    # not tell the number apart from one that has an account.
    with global_limits("4/h"):
        check_send(numbers(1)[0], None, kind="uncalled")
        check_send(numbers(1, 1)[0], None, kind="uncalled")  # the new share (2) is full
        check_send(numbers(1, 2)[0], None, kind="uncalled")  # passes, counted nowhere
        assert global_counters() == {"new": 2, "all": 2}
        with pytest.raises(LimitExceeded):
            check_send(numbers(1, 3)[0], None, kind="new")  # a new number to call is shed
        check_send(numbers(1, 4)[0], None, kind="verified")
        check_send(numbers(1, 5)[0], None, kind="verified")
        answers = []
        for kind in ("verified", "uncalled"):
            with pytest.raises(LimitExceeded) as info:
                check_send(numbers(1, 6)[0], None, kind=kind)
            answers.append((info.value.scope, info.value.retry_after, str(info.value)))
        assert answers[0] == answers[1]
        assert global_counters() == {"new": 2, "all": 4}


def test_the_global_window_slides(clock):
    with global_limits("100/h", share=1):
        for number in numbers(100):
            check_send(number, None)
        # The hour turns: a fixed window would hand back all 100 places at once.
        clock.advance(3600)
        with pytest.raises(LimitExceeded) as info:
            check_send(OTHER, None)
        assert info.value.retry_after == 36  # one place per 36 s of the hour
        # A tenth of the hour later, a tenth of the places are back, not more.
        clock.advance(360)
        passed = 0
        for number in numbers(50, 1000):
            with contextlib.suppress(LimitExceeded):
                check_send(number, None)
                passed += 1
        assert passed == 10
        # The burst is gone entirely only when a whole hour has slid past it.
        clock.advance(3600 - 360)
        for number in numbers(90, 2000):
            check_send(number, None)


def test_kind_must_be_one_of_the_three(clock):
    with global_limits("5/h"), pytest.raises(ValueError, match="kind"):
        check_send(NUMBER, None, kind="known")  # type: ignore[arg-type]


def test_scopes_without_an_identity_are_skipped(clock):
    with limits(ip="1/h", session="1/h"):
        send_times(5)  # no request: no address, no session
        send_times(3, request=request_from("not an address"))  # no address, no session
        check_send(NUMBER, request_from("203.0.113.1"))
        assert refusal(request=request_from("203.0.113.1")).scope == "ip"


def test_a_scope_left_out_or_empty_is_not_limited(clock):
    with limits(number="", ip="1/h"):
        send_times(20)


def test_a_rate_of_zero_refuses_everything(clock):
    with limits(**{"global": "0/d"}):
        refused = refusal()
        assert (refused.scope, refused.retry_after) == ("global", 86400)


# --- several scopes ---------------------------------------------------------------------


def test_a_refused_attempt_does_not_use_up_the_scopes_it_did_not_reach(clock):
    with limits(ip="2/h", number="5/h", **{"global": "100/h"}):
        hammering = request_from("203.0.113.66")
        send_times(2, request=hammering)
        for _ in range(50):
            assert refusal(request=hammering).scope == "ip"
        # The client's own counter holds its refused attempts (it stays refused);
        # neither the number nor the site paid for them.
        counts = sorted(
            (unprefixed(key).split(":")[2], cache.get(unprefixed(key))) for key in stored_keys()
        )
        # The global scope counts a new number twice: in its share and in all.
        assert counts == [("global", 2), ("global", 2), ("ip", 52), ("number", 2)]


def unprefixed(stored: str) -> str:
    """The key as given to the cache, from the key as stored."""
    return "voicepassword:" + stored.split(":voicepassword:", 1)[1]


def test_the_refusal_names_the_scope_that_frees_up_last(clock):
    with limits(ip="1/m", **{"global": "1/h"}):
        check_send(NUMBER, request_from("203.0.113.1"))
        clock.advance(10)
        # The address is refused for 50 s, but the whole site is full for longer
        # (until the send of 10 s ago has slid out of the hour).
        refused = refusal(OTHER, request_from("203.0.113.1"))
        assert (refused.scope, refused.retry_after) == ("global", 2 * 3600 - 10)


def test_on_a_tie_the_narrowest_scope_is_named(clock):
    with limits(session="1/h", ip="1/h", number="1/h"):
        check_send(NUMBER, request_from("203.0.113.1"))
        assert refusal(request=request_from("203.0.113.1")).scope == "ip"


def test_every_spelling_of_a_number_shares_one_counter(clock):
    spellings = [
        "+7 916 123-45-67",
        "8 (916) 123 45 67",
        "\uff0b\uff17\uff19\uff11\uff16\uff11\uff12\uff13\uff14\uff15\uff16\uff17",  # full-width
        "9161234567",
    ]
    numbers = {normalize(spelling) for spelling in spellings}
    assert numbers == {NUMBER}
    with limits(number=f"{len(spellings)}/h"):
        for spelling in spellings:
            check_send(normalize(spelling), None)
        assert len(stored_keys()) == 1
        assert refusal(normalize(spellings[0])).scope == "number"


def test_a_number_that_is_not_normalized_is_refused_loudly(clock):
    with limits(number="1/h"):
        for raw in ["+79161234567", "8 916 123-45-67", "", "7916123456789012"]:
            with pytest.raises(ValueError, match="normalized") as info:
                check_send(raw, None)
            assert raw not in str(info.value) or raw == ""


def test_a_rate_the_limits_cannot_use_raises_configuration_error(clock):
    with limits(number="3/0m"), pytest.raises(ConfigurationError, match=r"LIMITS.*number"):
        check_send(NUMBER, None)


def test_a_cache_that_keeps_nothing_limits_nothing(clock):
    # DummyCache: voicepassword.E007 reports it at start; sending still works.
    dummy = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    with override_settings(CACHES=dummy), limits(budget="0.50", number="1/h"):
        send_times(5)
        assert reserve("flash_call") is not None
        assert reserve("flash_call") is not None


def test_a_negative_amount_is_a_configuration_error(clock):
    with limits(budget="-1"), pytest.raises(ConfigurationError, match="DAILY_BUDGET"):
        reserve("sms")


def test_limits_are_read_at_call_time(clock):
    with limits(number="1/h"):
        check_send(NUMBER, None)
        assert refusal().scope == "number"
    with limits(number="3/h"):
        check_send(NUMBER, None)  # the same counter (1 sent, 1 refused), a higher limit


# --- the signal and the message --------------------------------------------------------


def test_limit_exceeded_is_sent_with_scope_and_retry_after(clock):
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    limit_exceeded.connect(receiver)
    try:
        with limits(ip="1/10m"):
            request = request_from("203.0.113.1")
            check_send(NUMBER, request)
            assert received == []
            clock.advance(120)
            refusal(request=request)
    finally:
        limit_exceeded.disconnect(receiver)
    assert len(received) == 1
    sent = received[0]
    assert sent["sender"] is None
    assert (sent["scope"], sent["retry_after"], sent["request"]) == ("ip", 480, request)


def test_the_message_says_why_and_when():
    assert str(LimitExceeded("number", 401)) == (
        "Too many codes were sent to this number. Try again in 7 minutes."
    )
    assert str(LimitExceeded("ip", 1).message) == (
        "Too many codes were requested from your network. Try again in 1 second."
    )
    assert str(LimitExceeded("global", 45)).endswith("Try again in 45 seconds.")
    assert str(LimitExceeded("session", 60)).endswith("Try again in 1 minute.")
    assert str(LimitExceeded("prefix", 7199)).endswith("Try again in 120 minutes.")
    assert str(LimitExceeded("budget", 7200)) == (
        "No more codes can be sent today. Try again in 2 hours."
    )
    assert str(LimitExceeded("budget", 3 * 3600 + 1)).endswith("Try again in 4 hours.")


def test_the_message_is_translated_when_shown_not_when_raised():
    exc = LimitExceeded("number", 120)
    with translation.override("en"):
        english = str(exc.message)
    with translation.override("ru"):
        shown = str(exc.message)
    assert english == "Too many codes were sent to this number. Try again in 2 minutes."
    # Until the catalog has these strings the Russian falls back to English;
    # either way it is produced now, in the language now active.
    assert shown


def test_the_exception_carries_nothing_personal():
    exc = LimitExceeded("number", 0)
    assert exc.retry_after == 1
    assert exc.args == ("number", 1)
    assert repr(exc) == "LimitExceeded('number', 1)"


# --- no personal data in the cache ---------------------------------------------------------


@pytest.mark.django_db
def test_no_key_holds_a_number_an_address_or_a_session_key(clock):
    session = SessionStore()
    rates = {"number": "9/h,20/d", "ip": "9/h", "network": "9/h", "prefix": "9/h"}
    with limits(**rates, session="9/h", **{"global": "9/h"}):
        check_send(NUMBER, request_from("203.0.113.7", session))
        check_send(NUMBER, request_from("2001:db8:1:2::5", session))
    keys = stored_keys()
    scopes = {unprefixed(key).split(":")[2] for key in keys}
    assert scopes == {"number", "ip", "network", "prefix", "session", "global"}
    secrets = [
        NUMBER,
        NUMBER[1:],
        NUMBER[:7],
        "203.0.113.7",
        "203.0.113.0",
        "2001:db8:1:2",
        "2001:db8:1::",
        "2001:0db8",
        str(session.session_key),
    ]
    for key in keys:
        assert key.split(":voicepassword:")[1].startswith(("limit:", "budget:"))
        for secret in secrets:
            assert secret not in key


# --- the budget -----------------------------------------------------------------------


def test_no_budget_no_reservation():
    with limits():
        assert reserve("flash_call") is None
        release(None)


def test_an_unknown_channel_is_refused():
    with limits(budget="10"), pytest.raises(ValueError, match="telegram"):
        reserve("telegram")


def test_budget_reserves_and_refuses_until_moscow_midnight(clock):
    # 20:00 UTC is 23:00 in Moscow: an hour to the provider's midnight.
    clock.now = T0 + 20 * 3600
    with limits(budget="2.00"):
        first = reserve("voice_call")
        assert first == Reservation(day="2025-06-17", cents=100)
        assert reserve("flash_call") == Reservation("2025-06-17", 50)
        refused = _budget_refusal("voice_call")
        assert (refused.scope, refused.retry_after) == ("budget", 3600)
        assert reserve("flash_call") is not None  # what still fits, fits
        assert _budget_refusal("flash_call").scope == "budget"
        release(first)
        assert reserve("voice_call") == Reservation("2025-06-17", 100)


def _budget_refusal(channel: str) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        reserve(channel)
    return info.value


def test_budget_day_rolls_over_at_moscow_midnight_not_utc(clock):
    moscow_midnight = datetime(2025, 6, 18, tzinfo=PROVIDER_TZ).timestamp()
    clock.now = moscow_midnight - 30
    with limits(budget="1.00"):
        yesterday = reserve("voice_call")
        assert yesterday is not None
        assert yesterday.day == "2025-06-17"
        assert _budget_refusal("flash_call").retry_after == 30
        clock.advance(30)
        today = reserve("voice_call")
        assert today == Reservation("2025-06-18", 100)
        # Giving back yesterday's reservation does not add to today's budget.
        release(yesterday)
        assert _budget_refusal("flash_call").retry_after == 86400


def test_amounts_are_whole_kopecks_budget_down_prices_up(clock):
    settings = {
        **BASE,
        "DAILY_BUDGET": "1.019",
        "PRICE_ESTIMATES": {"flash_call": "0.501", "voice_call": "0", "sms": "4"},
    }
    with override_settings(VOICEPASSWORD=settings):
        assert reserve("flash_call") == Reservation("2025-06-17", 51)
        assert reserve("voice_call") == Reservation("2025-06-17", 0)
        # 101 kopecks of budget: 51 + 51 would be 102.
        assert _budget_refusal("flash_call").scope == "budget"
        assert _budget_refusal("sms").scope == "budget"


def test_a_budget_of_zero_sends_nothing(clock):
    with limits(budget="0"):
        assert _budget_refusal("flash_call").scope == "budget"


def test_budget_refusal_sends_the_signal(clock):
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    limit_exceeded.connect(receiver)
    request = request_from("203.0.113.1")
    try:
        with limits(budget="0.10"), pytest.raises(LimitExceeded):
            reserve("flash_call", request=request)
    finally:
        limit_exceeded.disconnect(receiver)
    assert [(r["scope"], r["request"]) for r in received] == [("budget", request)]
    assert received[0]["retry_after"] == 21 * 3600  # 03:00 Moscow at T0


def stored_counters() -> dict[str, int]:
    return {key: int(cache.get(unprefixed(key))) for key in stored_keys()}


def test_check_and_reserve_counts_as_check_send_then_reserve(clock):
    # On Redis one script does both; on any other cache (the default tier's
    # local memory) it is the two calls: either way the same counters.
    on_redis = type(caches["default"]).__name__ == "RedisCache"
    assert (ratelimit._redis_client() is not None) is on_redis
    request = request_from("203.0.113.5")
    with limits(budget="1.20", number="2/h", ip="5/h", **{"global": "9/h"}):
        for _ in range(2):
            check_send(NUMBER, request)
            reserve("flash_call", request=request)
        apart = stored_counters()
        forget_counters()
        cache.set("voicepassword:peeked", [0.5])
        for _ in range(2):
            reservation, read = ratelimit.check_and_reserve(
                NUMBER,
                request,
                channel="flash_call",
                peek=["voicepassword:peeked", "voicepassword:none"],
            )
            assert reservation is not None
            assert read == {"voicepassword:peeked": [0.5]}
        cache.delete("voicepassword:peeked")
        assert stored_counters() == apart
        # A limit refuses first, and nothing is reserved then...
        with pytest.raises(LimitExceeded) as refused:
            ratelimit.check_and_reserve(NUMBER, request, channel="flash_call")
        assert (refused.value.scope, refused.value.retry_after) == ("number", 3600)
        [budget] = [k for k in stored_keys() if ":budget:" in k]
        assert cache.get(unprefixed(budget)) == 100
        # ... and the budget refuses when the limits let a send through.
        with pytest.raises(LimitExceeded) as refused:
            ratelimit.check_and_reserve(OTHER, request, channel="flash_call")
        assert refused.value.scope == "budget"
        assert cache.get(unprefixed(budget)) == 100


def disconnect_thread_cache() -> None:
    """Close this thread's Redis connections: Django's caches are per thread and
    RedisCache.close() leaves its pool open (an unclosed socket warns at exit)."""
    client = getattr(caches["default"], "_cache", None)
    for pool in getattr(client, "_pools", {}).values():
        pool.disconnect()


def reserve_concurrently(attempts: int) -> list[Reservation | None]:
    """``attempts`` reservations of a flash call at once, each from its own thread."""
    start = threading.Barrier(attempts)

    def attempt(_: int) -> Reservation | None:
        start.wait()
        try:
            return reserve("flash_call")
        except LimitExceeded:
            return None
        finally:
            disconnect_thread_cache()

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        return list(pool.map(attempt, range(attempts)))


def assert_exactly_ten_of_a_hundred_fit() -> None:
    # 5.00 is ten flash calls at 0.50.
    with limits(budget="5.00"):
        results = reserve_concurrently(100)
        granted = [r for r in results if r is not None]
        assert len(granted) == 10
        [key] = [k for k in stored_keys() if ":budget:" in k]
        assert cache.get(unprefixed(key)) == 500
        for reservation in granted[:3]:
            release(reservation)
        assert cache.get(unprefixed(key)) == 350
        assert len([r for r in reserve_concurrently(20) if r is not None]) == 3


def test_concurrent_reservations_never_exceed_the_budget_locmem(clock):
    # Reads yield (tests/caches.py): a count that reads and then writes loses
    # updates here, as it would on Redis; LocMemCache.incr does not.
    with override_settings(CACHES=SLOW_READ_LOCMEM):
        try:
            assert isinstance(caches["default"], LocMemCache)
            assert_exactly_ten_of_a_hundred_fit()
        finally:
            forget_counters()


@pytest.mark.redis
def test_concurrent_reservations_never_exceed_the_budget_redis(clock):
    # The service tier's default cache: tests/services.py.
    assert type(caches["default"]).__name__ == "RedisCache"
    assert_exactly_ten_of_a_hundred_fit()


# --- every scope under concurrency ------------------------------------------------------

THREADS = 60

# scope -> (its rate, the arguments of the n-th concurrent send)
CONCURRENT: dict[str, tuple[str, Any]] = {
    "ip": ("7/h", lambda n: (numbers(1, n)[0], request_from("203.0.113.9"), "new")),
    "network": ("7/h", lambda n: (numbers(1, n)[0], request_from(f"203.0.113.{n}"), "new")),
    "number": ("7/h", lambda n: (NUMBER, None, "new")),
    "prefix": ("7/h", lambda n: (f"7916123{n:04d}", None, "new")),
    "global": ("14/h", lambda n: (numbers(1, n)[0], None, "verified" if n % 2 else "new")),
}


def send_concurrently(scope: str) -> int:
    """THREADS sends limited by ``scope`` alone, at once, each from its own thread."""
    make_args = CONCURRENT[scope][1]
    arguments = [make_args(n) for n in range(THREADS)]
    start = threading.Barrier(THREADS)

    def attempt(n: int) -> bool:
        number, request, kind = arguments[n]
        start.wait()
        try:
            check_send(number, request, kind=kind)
            return True
        except LimitExceeded:
            return False
        finally:
            disconnect_thread_cache()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return sum(pool.map(attempt, range(THREADS)))


def assert_scope_holds_under_concurrency(scope: str) -> None:
    with limits(**{scope: CONCURRENT[scope][0]}):
        passed = send_concurrently(scope)
    if scope != "global":
        # A fixed window counts every attempt: exactly the first 7 pass.
        assert passed == 7
        return
    # The global scope gives refused attempts back, so a send may be refused
    # while another's attempt is being given back (how many pass depends on
    # the interleaving), but never passed beyond a limit: at most 14, of them
    # at most 7 new numbers (half of 14), and the counters hold what passed.
    counters = global_counters()
    assert 1 <= passed <= 14
    assert counters["new"] <= 7
    assert counters["all"] == passed


@pytest.mark.parametrize("scope", sorted(CONCURRENT))
def test_every_scope_holds_under_concurrency_locmem(clock, scope):
    with override_settings(CACHES=SLOW_READ_LOCMEM):
        try:
            assert isinstance(caches["default"], LocMemCache)
            assert_scope_holds_under_concurrency(scope)
        finally:
            forget_counters()


@pytest.mark.redis
@pytest.mark.parametrize("scope", sorted(CONCURRENT))
def test_every_scope_holds_under_concurrency_redis(clock, scope):
    assert type(caches["default"]).__name__ == "RedisCache"
    assert_scope_holds_under_concurrency(scope)


@pytest.mark.redis
def test_global_counters_on_redis_outlive_their_window_by_one_window(clock):
    assert type(caches["default"]).__name__ == "RedisCache"
    with limits(**{"global": "5/10m"}):
        clock.advance(100)
        check_send(NUMBER, None, kind="verified")
        [key] = stored_keys()
        backend: Any = caches["default"]
        ttl = backend._cache.get_client().ttl(key)
        # Read as the previous window all through the next one.
        assert 1100 < ttl <= 1100 + 60


@pytest.mark.redis
def test_counters_on_redis_expire_with_their_window(clock):
    assert type(caches["default"]).__name__ == "RedisCache"
    with limits(number="1/10m"):
        check_send(NUMBER, None)
        [key] = stored_keys()
        backend: Any = caches["default"]
        ttl = backend._cache.get_client().ttl(key)
        assert 600 < ttl <= 660  # the window, and a minute's grace


# --- through the verification service ----------------------------------------------------


@pytest.mark.django_db
def test_a_flood_of_logins_by_strangers_does_not_lock_out_the_sites_users(
    clock, voicepassword_emulator, monkeypatch
):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser

    from django_voicepassword import verification
    from django_voicepassword.models import PhoneNumber

    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    user = get_user_model()._default_manager.create_user(username="known", password=None)
    PhoneNumber.objects.create(user=user, number="79990000001")

    def browser() -> Any:
        request = rf.post("/", REMOTE_ADDR="192.0.2.10")
        request.session = SessionStore()
        request.user = AnonymousUser()
        return request

    settings = {"API_KEY": "emulator-key", "LIMITS": {"global": "20/h"}}
    with override_settings(VOICEPASSWORD=settings):
        # Strangers' logins place no call, but fill the share of new numbers...
        for number in numbers(40):
            verification.start_challenge(number, request=browser())
        # ... and a stranger's verification (a number to call) is shed,
        stranger = get_user_model()._default_manager.create_user(username="new", password=None)
        with pytest.raises(LimitExceeded):
            verification.start_challenge(
                "79990000002", request=browser(), purpose="verify", user=stranger
            )
        # while the site's user is called.
        verification.start_challenge("79990000001", request=browser())
    assert len(voicepassword_emulator.sends("79990000001")) == 1
    assert voicepassword_emulator.sends("79990000002") == []
