"""The fraud guard and the review numbers (``docs/topics/fraud.md``).

Everything runs in-process with the locmem gateway (``django_voicepassword.outbox``
is what would have gone to the provider); the guard's and the limits' clock
is moved by the ``clock`` fixture. The pumping run is ``bench/fraud.py``'s
simulation, judged here on the default tier at a smaller size.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

import django_voicepassword
from django_voicepassword import fraud, ratelimit, signals, verification
from django_voicepassword.adapter import get_adapter
from django_voicepassword.auth_backends import PhoneCodeBackend
from django_voicepassword.checks import check_review_numbers, check_settings
from django_voicepassword.conf import ConfigurationError
from django_voicepassword.conf import settings as vp_settings
from django_voicepassword.models import Call, Challenge, PrefixBlock
from django_voicepassword.ratelimit import LimitExceeded
from django_voicepassword.verification import confirm_challenge, start_challenge
from tests.test_bench import load
from tests.test_ratelimit import forget_counters

pytestmark = pytest.mark.django_db(transaction=True)

LOCMEM = "django_voicepassword.gateways.LocmemGateway"
#: A site under watch: new numbers are called (CREATE_USERS), the limits are
#: off (the guard alone is tested) and a prefix is 10 digits, so that the
#: emulator's test numbers make ten prefixes of ten numbers.
GUARDED: dict[str, Any] = {
    "GATEWAY": LOCMEM,
    "CREATE_USERS": True,
    "LIMITS": {},
    "PREFIX_LENGTH": 10,
    "FRAUD_GUARD": {},
}
#: The attacked prefix and its numbers; an account lives in it too.
PREFIX = "7999000009"
ATTACKED = ("79990000090", "79990000092", "79990000093", "79990000094")
ACCOUNT = "79990000091"
#: Other prefixes: numbers that sign up and confirm.
ELSEWHERE = tuple(f"799900000{n}" for n in range(50, 60))
REVIEW = "79990000080"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    frozen = Clock(T0)
    monkeypatch.setattr(fraud, "_now", frozen)
    monkeypatch.setattr(ratelimit, "_now", frozen)
    return frozen


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    forget_counters()
    django_voicepassword.outbox = []
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    yield
    forget_counters()


@pytest.fixture
def guarded(clock: Clock) -> Iterator[dict[str, Any]]:
    with override_settings(VOICEPASSWORD=GUARDED):
        yield GUARDED


@pytest.fixture
def account() -> Any:
    adapter = get_adapter()
    user = adapter.create_user(ACCOUNT, None)
    adapter.mark_verified(user, ACCOUNT)
    return user


def request() -> Any:
    """A request of a fresh session: every start below is a new challenge."""
    made: Any = RequestFactory().post("/", REMOTE_ADDR="192.0.2.7")
    made.session = SimpleNamespace(session_key=f"s{next(_sessions)}")
    return made


_sessions = iter(range(10**9))


def send(number: str) -> Challenge:
    return start_challenge(number, request=request())


def sent_to(number: str) -> int:
    return sum(message.number == number for message in django_voicepassword.outbox)


def confirm(challenge: Challenge) -> None:
    message = next(
        m for m in reversed(django_voicepassword.outbox) if m.number == challenge.number
    )
    assert confirm_challenge(challenge, message.code or "")


def warm_up_the_site(clock: Clock, count: int = 20, *, user: Any = None) -> None:
    """Normal sign-ups elsewhere (or ``user``'s verifications), four of five confirmed."""
    for index in range(count):
        clock.now += 30
        number = ELSEWHERE[index % len(ELSEWHERE)]
        if user is None:
            challenge = send(number)
        else:
            challenge = start_challenge(number, request=request(), purpose="verify", user=user)
        if index % 5 != 4:
            confirm(challenge)


def pump(clock: Clock, starts: int) -> tuple[int, list[LimitExceeded]]:
    """``starts`` logins to the attacked prefix; (codes that went out, refusals)."""
    before = len(django_voicepassword.outbox)
    refusals = []
    for index in range(starts):
        clock.now += 10
        try:
            send(ATTACKED[index % len(ATTACKED)])
        except LimitExceeded as refusal:
            refusals.append(refusal)
    return len(django_voicepassword.outbox) - before, refusals


# --------------------------------------------------------------------------- the pumping run


def test_a_pumping_run_is_blocked_soon_costs_little_and_refuses_no_normal_login(clock):
    bench = load("fraud")
    with override_settings(VOICEPASSWORD=bench.VOICEPASSWORD):
        report = bench.simulate(attack=2000, hours=8, per_hour=10, start=T0)
    assert report.first_block_after == fraud_min_sends() == 20
    assert report.cost_per_day <= bench.COST_PER_DAY
    assert report.attack_sent == sum(sent_to(number) for number in bench.ATTACK_NUMBERS), (
        "every attack send that went out is in the outbox, and only those"
    )
    assert report.normal_logins == report.sign_ups == 80
    assert report.normal_refused == report.sign_ups_refused == 0
    assert report.confirm_failures == 0
    assert dict(report.blocks) == {"7999000009": 1}
    assert bench.judge(report).passed


def fraud_min_sends() -> int:
    from django_voicepassword.conf import FRAUD_GUARD_DEFAULTS

    return int(FRAUD_GUARD_DEFAULTS["MIN_SENDS"])


def test_without_the_guard_the_same_run_misses_its_targets(clock):
    bench = load("fraud")
    with override_settings(VOICEPASSWORD={**bench.VOICEPASSWORD, "FRAUD_GUARD": None}):
        report = bench.simulate(attack=100, hours=2, per_hour=5, start=T0)
    verdict = bench.judge(report)
    assert not verdict.passed
    assert report.attack_sent == 100
    assert not PrefixBlock.objects.exists()


# --------------------------------------------------------------------------- the guard


def test_a_blocked_prefix_is_refused_as_a_prefix_limit_and_nothing_is_sent(guarded, clock):
    warm_up_the_site(clock)
    went_out, refusals = pump(clock, 30)
    assert went_out == 20
    assert len(refusals) == 10
    refusal = refusals[0]
    assert refusal.scope == "prefix"
    as_limit = LimitExceeded("prefix", refusal.retry_after)
    assert str(refusal) == str(as_limit)
    assert 86000 < refusal.retry_after <= 86400
    # A refused start wrote nothing: only the 20 challenges that were sent exist.
    assert Challenge.objects.filter(number__startswith=PREFIX).count() == 20


def test_the_refusal_sends_limit_exceeded_with_the_prefix_scope(guarded, clock):
    warm_up_the_site(clock)
    pump(clock, 20)
    seen: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    signals.limit_exceeded.connect(receive)
    try:
        with pytest.raises(LimitExceeded):
            send(ATTACKED[0])
    finally:
        signals.limit_exceeded.disconnect(receive)
    assert [(s["scope"], s["retry_after"] > 0) for s in seen] == [("prefix", True)]


def test_the_decision_is_recorded_with_its_figures_and_signalled(guarded, clock):
    warm_up_the_site(clock)
    blocked: list[PrefixBlock] = []

    def receive(sender: Any, block: PrefixBlock, **kwargs: Any) -> None:
        blocked.append(block)

    signals.prefix_blocked.connect(receive)
    try:
        pump(clock, 25)
    finally:
        signals.prefix_blocked.disconnect(receive)
    block = PrefixBlock.objects.get()
    assert blocked == [block]
    assert (block.prefix, block.country) == (PREFIX, "RU")
    assert (block.started, block.confirmed) == (20, 0)
    # The rest of the site: 16 of 20 confirmed, smoothed with 20 at 0.5.
    assert block.baseline == pytest.approx((16 + 10) / 40, abs=1e-3)
    assert block.in_force
    assert block.window == 86400


def test_other_prefixes_and_numbers_with_an_account_are_never_blocked(guarded, clock, account):
    warm_up_the_site(clock)
    pump(clock, 30)
    # An account's number in the blocked prefix is called as usual.
    before = sent_to(ACCOUNT)
    send(ACCOUNT)
    assert sent_to(ACCOUNT) == before + 1
    # So is a new number in another prefix.
    send(ELSEWHERE[0])
    assert PrefixBlock.objects.count() == 1


def test_a_login_without_an_account_is_answered_alike_in_a_blocked_prefix(clock, account):
    with override_settings(VOICEPASSWORD={**GUARDED, "CREATE_USERS": False}):
        warm_up_the_site(clock, user=get_user_model().objects.create_user("somebody"))
        # A pumper of verifications (a logged-in attacker adding numbers).
        user = get_user_model().objects.create_user("attacker")
        refused = 0
        for index in range(30):
            clock.now += 10
            try:
                start_challenge(
                    ATTACKED[index % 4], request=request(), purpose="verify", user=user
                )
            except LimitExceeded:
                refused += 1
        assert refused == 10
        # The logins of both kinds of number go on, and look alike: neither is refused.
        with_account = send(ACCOUNT)
        without_account = send(ATTACKED[0])
    assert with_account.purpose == without_account.purpose == "login"
    assert sent_to(ATTACKED[0]) > 0  # the verifications went out, not the login
    assert Challenge.objects.filter(number=ATTACKED[0], purpose="login").count() == 1


def test_a_prefix_that_confirms_like_the_site_is_not_blocked(guarded, clock):
    warm_up_the_site(clock)
    for index in range(60):
        clock.now += 10
        challenge = send(ATTACKED[index % 4])
        if index % 3:
            confirm(challenge)
    assert not PrefixBlock.objects.exists()


def test_a_provider_outage_blocks_nobody(guarded, clock):
    # Nothing is confirmed anywhere: no prefix is below the site's own rate.
    for index in range(200):
        clock.now += 10
        send(f"799900000{40 + index % 50}")
    went_out, refusals = pump(clock, 40)
    assert (went_out, refusals) == (40, [])
    assert not PrefixBlock.objects.exists()


def test_a_lifted_block_lets_sends_through_and_counts_from_zero(guarded, clock, admin_user):
    warm_up_the_site(clock)
    pump(clock, 25)
    block = PrefixBlock.objects.get()
    fraud.lift(block, admin_user)
    block.refresh_from_db()
    assert block.lifted_by == admin_user
    assert not block.in_force
    went_out, refusals = pump(clock, 25)
    assert went_out == 20
    assert len(refusals) == 5
    assert PrefixBlock.objects.count() == 2


def test_an_allow_listed_prefix_is_never_blocked_again(guarded, clock, admin_user):
    warm_up_the_site(clock)
    pump(clock, 25)
    fraud.lift(PrefixBlock.objects.get(), admin_user, allow_list=True)
    went_out, refusals = pump(clock, 100)
    assert (went_out, refusals) == (100, [])
    assert PrefixBlock.objects.count() == 1


def test_a_block_ends_after_block_seconds(clock):
    with override_settings(VOICEPASSWORD={**GUARDED, "FRAUD_GUARD": {"BLOCK_SECONDS": 600}}):
        warm_up_the_site(clock)
        pump(clock, 21)
        clock.now += 601
        went_out, _refusals = pump(clock, 1)
    assert went_out == 1


def test_the_guard_is_off_by_default(clock):
    with override_settings(VOICEPASSWORD={**GUARDED, "FRAUD_GUARD": None}):
        went_out, refusals = pump(clock, 60)
    assert (went_out, refusals) == (60, [])
    assert fraud.blocked_for(ATTACKED[0]) is None


# --------------------------------------------------------------------------- settings


def check_ids(**voicepassword: Any) -> list[str]:
    with override_settings(VOICEPASSWORD={"API_KEY": "k", **voicepassword}):
        return [str(m.id) for m in [*check_settings(), *check_review_numbers()]]


@pytest.mark.parametrize(
    "value",
    [
        "on",
        {"WINDOW": 0},
        {"RATIO": 1.5},
        {"BASELINE": 0},
        {"MIN_SENDS": "20"},
        {"BLOCK_SECONDS": True},
        {"RATE": 0.2},
    ],
)
def test_e020_a_fraud_guard_that_cannot_be_used(value):
    assert check_ids(FRAUD_GUARD=value) == ["voicepassword.E020"]
    with (
        override_settings(VOICEPASSWORD={"FRAUD_GUARD": value}),
        pytest.raises(ConfigurationError, match="FRAUD_GUARD"),
    ):
        _ = vp_settings.FRAUD_GUARD


def test_a_good_fraud_guard_passes_and_fills_in_its_defaults():
    assert check_ids(FRAUD_GUARD={"RATIO": 0.1}) == []
    with override_settings(VOICEPASSWORD={"FRAUD_GUARD": {"RATIO": 0.1}}):
        guard = vp_settings.FRAUD_GUARD
        assert guard is not None
        assert (guard["RATIO"], guard["MIN_SENDS"]) == (0.1, 20)


@pytest.mark.parametrize(
    "value",
    [["79990000080"], {"79990000080": 1234}, {"79990000080": "12345"}, {"79990000080": "١٢٣٤"}],
)
def test_e021_review_numbers_of_the_wrong_shape(value):
    assert check_ids(REVIEW_NUMBERS=value) == ["voicepassword.E021"]


def test_e021_a_review_number_that_is_no_number():
    ids = check_ids(REVIEW_NUMBERS={"not a number": "1234"}, REVIEW_NUMBERS_IN_PRODUCTION=True)
    assert ids == ["voicepassword.E021"]


def test_e022_review_numbers_in_production_only_when_allowed():
    assert check_ids(REVIEW_NUMBERS={REVIEW: "1234"}) == ["voicepassword.E022"]
    assert check_ids(REVIEW_NUMBERS={REVIEW: "1234"}, REVIEW_NUMBERS_IN_PRODUCTION=True) == []
    with override_settings(DEBUG=True):
        assert check_ids(REVIEW_NUMBERS={REVIEW: "1234"}) == []
    assert check_ids() == []


def test_e022_stops_manage_py_check():
    with (
        override_settings(VOICEPASSWORD={"API_KEY": "k", "REVIEW_NUMBERS": {REVIEW: "1234"}}),
        pytest.raises(SystemCheckError, match=r"voicepassword\.E022"),
    ):
        call_command("check")


# --------------------------------------------------------------------------- review numbers


@pytest.fixture
def reviewer() -> Any:
    adapter = get_adapter()
    user = adapter.create_user(REVIEW, None)
    adapter.mark_verified(user, REVIEW)
    return user


def reviewing(**extra: Any) -> Any:
    return override_settings(
        VOICEPASSWORD={
            "GATEWAY": LOCMEM,
            "REVIEW_NUMBERS": {"+7 999 000-00-80": "2468"},
            "REVIEW_NUMBERS_IN_PRODUCTION": True,
            **extra,
        }
    )


def test_a_review_number_logs_in_with_its_code_and_is_never_called(reviewer):
    with reviewing():
        challenge = start_challenge(REVIEW, request=request())
        user = PhoneCodeBackend().authenticate(None, challenge=challenge, otp_token="2468")
    assert user == reviewer
    assert django_voicepassword.outbox == []
    call = Call.objects.get()
    assert (call.status, call.price, call.challenge_id) == (
        Call.Status.REVIEW,
        Decimal(0),
        challenge.pk,
    )
    assert call.provider_id is None


def test_a_review_number_is_never_placed_through_the_provider(reviewer, voicepassword_emulator):
    settings = {"API_KEY": "emulator-key", "GATEWAY": "django_voicepassword.gateways.HttpGateway"}
    with reviewing(**settings):
        challenge = start_challenge(REVIEW)
        Challenge.objects.filter(pk=challenge.pk).update(resend_at=challenge.created_at)
        verification.resend_challenge(challenge, channel="voice_call")
        assert confirm_challenge(challenge, "2468")
    assert voicepassword_emulator.sends() == []
    assert list(Call.objects.values_list("channel", "status")) == [
        ("voice_call", "review"),
        ("flash_call", "review"),
    ]


def test_review_numbers_are_ignored_in_production_without_the_flag(reviewer):
    with reviewing(REVIEW_NUMBERS_IN_PRODUCTION=False):
        start_challenge(REVIEW)
    assert sent_to(REVIEW) == 1
    assert not Call.objects.filter(status=Call.Status.REVIEW).exists()


def test_review_numbers_work_under_debug(reviewer):
    with reviewing(REVIEW_NUMBERS_IN_PRODUCTION=False), override_settings(DEBUG=True):
        challenge = start_challenge(REVIEW)
        assert confirm_challenge(challenge, "2468")
    assert django_voicepassword.outbox == []


def test_review_numbers_keep_the_limits():
    with reviewing(LIMITS={"number": "2/h"}):
        start_challenge(REVIEW, request=request())
        start_challenge(REVIEW, request=request())
        with pytest.raises(LimitExceeded):
            start_challenge(REVIEW, request=request())


def test_a_review_number_is_not_counted_by_the_guard(clock):
    with override_settings(
        VOICEPASSWORD={
            **GUARDED,
            "REVIEW_NUMBERS": {REVIEW: "2468"},
            "REVIEW_NUMBERS_IN_PRODUCTION": True,
        }
    ):
        for _index in range(50):
            clock.now += 10
            send(REVIEW)
    assert not PrefixBlock.objects.exists()
    assert django_voicepassword.outbox == []


# --------------------------------------------------------------------------- the admin


@pytest.fixture
def staff(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_the_admin_marks_review_calls(staff, reviewer):
    with reviewing():
        start_challenge(REVIEW)
    page = staff.get("/admin/voicepassword/call/")
    assert page.status_code == 200
    assert b"vp-badge--review" in page.content
    assert b"review number, not placed" in page.content


def test_the_admin_shows_blocks_with_their_evidence(guarded, clock, staff):
    warm_up_the_site(clock)
    pump(clock, 25)
    page = staff.get("/admin/voicepassword/prefixblock/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "+7999000009…" in text
    assert "0 %" in text  # the prefix's confirmation rate
    assert "65 %" in text  # the baseline it was compared with
    block = PrefixBlock.objects.get()
    detail = staff.get(f"/admin/voicepassword/prefixblock/{block.pk}/change/")
    assert detail.status_code == 200
    assert "blocked" in detail.content.decode()


def test_staff_lift_a_block_in_the_admin(guarded, clock, staff, admin_user):
    warm_up_the_site(clock)
    pump(clock, 21)
    block = PrefixBlock.objects.get()
    answer = staff.post(
        "/admin/voicepassword/prefixblock/",
        {"action": "lift_blocks", "_selected_action": [block.pk]},
        follow=True,
    )
    assert answer.status_code == 200
    block.refresh_from_db()
    assert (block.lifted_by, block.in_force) == (admin_user, False)
    went_out, _refusals = pump(clock, 1)
    assert went_out == 1


def test_staff_allow_list_a_prefix_before_any_block(guarded, clock, staff):
    answer = staff.post(
        "/admin/voicepassword/prefixblock/add/",
        {"prefix": PREFIX, "country": "", "allow_listed": "on"},
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    entry = PrefixBlock.objects.get()
    assert (entry.prefix, entry.country, entry.allow_listed) == (PREFIX, "RU", True)
    warm_up_the_site(clock)
    went_out, refusals = pump(clock, 60)
    assert (went_out, refusals) == (60, [])


def test_the_admin_refuses_a_prefix_that_is_not_digits(staff):
    answer = staff.post(
        "/admin/voicepassword/prefixblock/add/", {"prefix": "7999-abc", "allow_listed": "on"}
    )
    assert answer.status_code == 200
    assert not PrefixBlock.objects.exists()


def test_staff_without_full_numbers_cannot_read_a_lifter_s_number(guarded, clock):
    user_model = get_user_model()
    lifter = user_model.objects.create_user("79990000041", is_staff=True)
    viewer = user_model.objects.create_user("viewer", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_prefixblock"))
    warm_up_the_site(clock)
    pump(clock, 21)
    fraud.lift(PrefixBlock.objects.get(), lifter)
    client = Client()
    client.force_login(viewer)
    page = client.get("/admin/voicepassword/prefixblock/")
    assert page.status_code == 200
    assert b"79990000041" not in page.content
    probe = client.get("/admin/voicepassword/prefixblock/?lifted_by__username__startswith=7999")
    assert probe.status_code == 400


def test_a_country_far_below_the_rest_of_the_site_is_blocked(clock, monkeypatch):
    # The test numbers are all Russian: the attacked prefix plays another country.
    monkeypatch.setattr(
        fraud, "country_of", lambda number: "KZ" if number.startswith(PREFIX) else "RU"
    )
    guard = {"MIN_SENDS": 40, "COUNTRY_MIN_SENDS": 30}
    with override_settings(VOICEPASSWORD={**GUARDED, "FRAUD_GUARD": guard}):
        warm_up_the_site(clock, 40)
        went_out, refusals = pump(clock, 35)
        block = PrefixBlock.objects.get()
        assert (block.prefix, block.country, str(block)) == ("", "KZ", "KZ")
        assert (went_out, len(refusals)) == (30, 5)
        send(ELSEWHERE[0])  # the rest of the site goes on


def allow_list_in_the_admin(staff: Client, prefix: str = PREFIX) -> PrefixBlock:
    answer = staff.post(
        "/admin/voicepassword/prefixblock/add/",
        {"prefix": prefix, "country": "", "allow_listed": "on"},
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    return PrefixBlock.objects.get(prefix=prefix, allow_listed=True)


def delete_on_its_page(staff: Client, entry: PrefixBlock) -> Any:
    return staff.post(f"/admin/voicepassword/prefixblock/{entry.pk}/delete/", {"post": "yes"})


def delete_from_the_list(staff: Client, entry: PrefixBlock) -> Any:
    return staff.post(
        "/admin/voicepassword/prefixblock/",
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )


@pytest.mark.parametrize("delete", [delete_on_its_page, delete_from_the_list])
def test_deleting_an_allow_list_entry_lets_the_guard_block_at_once(guarded, clock, staff, delete):
    entry = allow_list_in_the_admin(staff)
    warm_up_the_site(clock)
    # The prefix meets the guard's conditions at every send from the 20th on:
    # the guard asks whether it is allow-listed and keeps the answer a while.
    went_out, refusals = pump(clock, 30)
    assert (went_out, refusals) == (30, [])
    answer = delete(staff, entry)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert not PrefixBlock.objects.exists()
    # Not a minute later: the next sends are judged without the entry, and
    # its counts start from zero as after a lift.
    went_out, refusals = pump(clock, 25)
    assert (went_out, len(refusals)) == (20, 5)
    assert PrefixBlock.objects.get().prefix == PREFIX


def test_deleting_one_entry_from_the_list_keeps_the_others(guarded, clock, staff):
    kept = allow_list_in_the_admin(staff, "7999000005")
    entry = allow_list_in_the_admin(staff)
    answer = delete_from_the_list(staff, entry)
    assert answer.status_code == 302
    assert list(PrefixBlock.objects.all()) == [kept]


def test_staff_allow_list_a_blocked_prefix_on_its_page(guarded, clock, staff, admin_user):
    warm_up_the_site(clock)
    pump(clock, 21)
    block = PrefixBlock.objects.get()
    answer = staff.post(
        f"/admin/voicepassword/prefixblock/{block.pk}/change/", {"allow_listed": "on"}
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    block.refresh_from_db()
    # Allow-listing a block lifts it, in the staff member's name.
    assert (block.allow_listed, block.lifted_by, block.in_force) == (True, admin_user, False)
    assert block.lifted_at is not None
    # The block the sends read in the cache is gone with it, for good.
    went_out, refusals = pump(clock, 60)
    assert (went_out, refusals) == (60, [])
    assert PrefixBlock.objects.count() == 1


def test_allow_listing_a_lifted_block_keeps_who_lifted_it(guarded, clock, staff):
    lifter = get_user_model().objects.create_user("lifter", is_staff=True)
    warm_up_the_site(clock)
    pump(clock, 21)
    block = PrefixBlock.objects.get()
    fraud.lift(block, lifter)
    block.refresh_from_db()
    lifted_at = block.lifted_at
    answer = staff.post(
        f"/admin/voicepassword/prefixblock/{block.pk}/change/", {"allow_listed": "on"}
    )
    assert answer.status_code == 302
    block.refresh_from_db()
    assert (block.allow_listed, block.lifted_by, block.lifted_at) == (True, lifter, lifted_at)


def test_an_entry_added_by_hand_was_lifted_by_nobody(staff):
    entry = allow_list_in_the_admin(staff)
    assert (entry.lifted_at, entry.lifted_by, entry.blocked_until) == (None, None, None)


def test_the_add_page_offers_an_allow_list_entry(staff):
    page = staff.get("/admin/voicepassword/prefixblock/add/")
    assert page.status_code == 200
    checkbox = re.search(r'<input[^>]*name="allow_listed"[^>]*>', page.content.decode())
    assert checkbox is not None
    assert "checked" in checkbox.group(0)
    for name in ("prefix", "country"):
        assert f'name="{name}"' in page.content.decode()


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ({"prefix": PREFIX, "country": ""}, (PREFIX, "RU")),
        ({"prefix": PREFIX, "country": "kz"}, (PREFIX, "KZ")),
        ({"prefix": " 7999000 ", "country": ""}, ("7999000", "RU")),
        ({"prefix": "", "country": " kz "}, ("", "KZ")),
        ({"prefix": "", "country": "+7"}, ("", "+7")),
    ],
)
def test_the_add_form_stores_a_prefix_and_its_country(staff, fields, stored):
    answer = staff.post("/admin/voicepassword/prefixblock/add/", {**fields, "allow_listed": "on"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    entry = PrefixBlock.objects.get()
    assert (entry.prefix, entry.country, entry.allow_listed) == (*stored, True)


@pytest.mark.parametrize(
    ("fields", "field", "error"),
    [
        ({"prefix": "7999-abc"}, "prefix", "A prefix is the first digits of numbers"),
        ({"prefix": "+7999"}, "prefix", "A prefix is the first digits of numbers"),
        ({"country": "Russia"}, "country", "A country is a region code such as RU."),
        ({"country": "R"}, "country", "A country is a region code such as RU."),
        ({"country": "+12345"}, "country", "A country is a region code such as RU."),
        ({"prefix": PREFIX, "country": "RUS"}, "country", "A country is a region code"),
        ({}, None, "Give a prefix, a country, or both."),
        ({"prefix": "  ", "country": " "}, None, "Give a prefix, a country, or both."),
    ],
)
def test_the_add_form_refuses_what_is_no_prefix_or_country(staff, fields, field, error):
    answer = staff.post(
        "/admin/voicepassword/prefixblock/add/",
        {"prefix": "", "country": "", **fields, "allow_listed": "on"},
    )
    assert answer.status_code == 200
    form = answer.context["adminform"].form
    errors = form.errors.get(field or "__all__", [])
    assert any(error in message for message in errors), form.errors
    assert not PrefixBlock.objects.exists()


def test_staff_allow_list_blocks_from_the_list(guarded, clock, staff, admin_user):
    warm_up_the_site(clock)
    pump(clock, 21)
    block = PrefixBlock.objects.get()
    answer = staff.post(
        "/admin/voicepassword/prefixblock/",
        {"action": "allow_list", "_selected_action": [block.pk]},
        follow=True,
    )
    assert answer.status_code == 200
    assert "1 prefix allow-listed." in [str(m) for m in answer.context["messages"]]
    block.refresh_from_db()
    assert (block.allow_listed, block.lifted_by, block.in_force) == (True, admin_user, False)
    went_out, refusals = pump(clock, 60)
    assert (went_out, refusals) == (60, [])


def column(page: Any, name: str) -> list[str]:
    """The text of the change list's ``name`` column, row by row."""
    cells = re.findall(rf'<td class="field-{name}[^"]*">(.*?)</td>', page.content.decode(), re.S)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells]


def test_the_list_tells_each_decision_s_state_and_rate(staff):
    now = timezone.now()
    hour = dt.timedelta(hours=1)
    rows: dict[str, dict[str, Any]] = {
        "blocked": {"started": 20, "confirmed": 1, "blocked_until": now + hour},
        "over": {"started": 40, "confirmed": 0, "blocked_until": now - hour},
        "lifted": {"started": 3, "confirmed": 2, "blocked_until": now + hour, "lifted_at": now},
        "allow-listed": {"allow_listed": True},
    }
    # Newest first: created an hour apart in the order above.
    for age, fields in enumerate(rows.values()):
        PrefixBlock.objects.create(
            prefix=f"799900000{age}", country="RU", created_at=now - age * hour, **fields
        )
    page = staff.get("/admin/voicepassword/prefixblock/")
    assert page.status_code == 200
    assert column(page, "state_column") == list(rows)
    assert column(page, "rate_column") == ["5 %", "0 %", "67 %", "—"]


def test_staff_keep_the_allow_list_while_the_guard_is_off(staff, admin_user):
    # FRAUD_GUARD is off by default: a site allow-lists before turning it on,
    # or keeps the decisions of a guard it turned off.
    entry = allow_list_in_the_admin(staff)
    assert delete_on_its_page(staff, entry).status_code == 302
    assert not PrefixBlock.objects.exists()
    block = PrefixBlock.objects.create(prefix=PREFIX, country="RU", started=20)
    answer = staff.post(
        "/admin/voicepassword/prefixblock/",
        {"action": "lift_blocks", "_selected_action": [block.pk]},
    )
    assert answer.status_code == 302
    block.refresh_from_db()
    assert block.lifted_by == admin_user
