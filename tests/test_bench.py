"""The benchmarks judge: each one's check of the measured side fails on a broken side.

A benchmark that only times would call a side that fails fast a fast side
(a callback endpoint that 404s, a page without rows, a reconciliation that
writes nothing). These tests run each script's verification, without timing
anything, on a side broken on purpose, and on the real one.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.test import Client

from django_voicepassword.client import VoicePasswordClient
from django_voicepassword.exceptions import UnknownRequestError
from django_voicepassword.models import Call

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str) -> ModuleType:
    """``bench/<name>.py`` as the module ``bench_<name>`` (its own names stay out of the way)."""
    module_name = f"bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))  # the scripts import _harness as their neighbour
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def failed(verdict: Any) -> list[str]:
    return [check.name for check in verdict.checks if not check.ok]


# --------------------------------------------------------------------------- the harness


def test_the_verdict_judges_the_median_not_the_best_repeat() -> None:
    harness = load("_harness")
    verdict = harness.Verdict()
    # The best repeat (1.0) meets the target; the median (1.3) does not.
    verdict.target("ratio", harness.spread([1.0, 1.3, 1.4]), at_most=1.1)
    assert not verdict.passed
    assert verdict.report() == 1
    assert "1.000-1.400 over 3 repeats" in verdict.checks[0].detail


def test_a_verdict_without_checks_does_not_pass() -> None:
    assert load("_harness").Verdict().report() == 1


# --------------------------------------------------------------------------- client.py


@pytest.fixture
def fixed_server() -> Iterator[Any]:
    with load("client").fixed_server() as server:
        yield server


def test_client_bench_passes_the_work_of_the_real_client(fixed_server: Any) -> None:
    client = load("client")
    verdict = client.Verdict()
    client.measure(20, 2, fixed_server, verdict, block=7)
    work = [check for check in verdict.checks if not check.name.startswith("ratio")]
    assert len(work) == 6  # client, gateway, bare: answered, recorded
    assert all(check.ok for check in work), work


def test_client_bench_stops_when_flash_call_raises(
    fixed_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: VoicePasswordClient, number: str, **kwargs: Any) -> Any:
        raise UnknownRequestError("broken on purpose", local=True)

    monkeypatch.setattr(VoicePasswordClient, "flash_call", broken)
    client = load("client")
    with pytest.raises(UnknownRequestError):
        client.measure(20, 2, fixed_server, client.Verdict())


def test_client_bench_fails_a_client_that_sends_nothing(
    fixed_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = VoicePasswordClient.flash_call
    first: list[Any] = []

    def cached(self: VoicePasswordClient, number: str, **kwargs: Any) -> Any:
        if not first:
            first.append(real(self, number, **kwargs))
        return first[0]  # fast: no request after the first

    monkeypatch.setattr(VoicePasswordClient, "flash_call", cached)
    client = load("client")
    verdict = client.Verdict()
    client.measure(20, 2, fixed_server, verdict)
    # The gateway places its calls through a client too.
    assert failed(verdict) == [
        "client: every call recorded by the server",
        "gateway: every call recorded by the server",
    ]


# --------------------------------------------------------------------------- callbacks.py


def side(name: str, answered: dict[str, int], outcomes: dict[str, int] | None = None) -> Any:
    module = load("callbacks")
    return module.Side(
        name, [], answered=Counter(answered), answered_outcomes=Counter(outcomes or {})
    )


def test_callback_bench_passes_callbacks_answered_and_written() -> None:
    callbacks = load("callbacks")
    verdict = callbacks.Verdict()
    sides = [
        side("bare", {"200": 50}),
        side("app", {"200": 40}, {"applied": 30, "duplicate": 6, "stale": 4}),
    ]
    callbacks.verify_sides(sides, {"app": 40, "bare": 50}, verdict)
    assert verdict.passed, verdict.checks


def test_callback_bench_fails_an_endpoint_that_404s() -> None:
    callbacks = load("callbacks")
    verdict = callbacks.Verdict()
    sides = [side("bare", {"200": 50}), side("app", {"404": 90}, {"-": 90})]
    callbacks.verify_sides(sides, {"app": 0, "bare": 50}, verdict)
    assert failed(verdict) == [
        "app: every request answered 200",
        "app: every callback applied, a duplicate or stale",
    ]


def test_callback_bench_fails_callbacks_answered_but_not_written() -> None:
    callbacks = load("callbacks")
    verdict = callbacks.Verdict()
    sides = [side("bare", {"200": 50}), side("app", {"200": 40}, {"applied": 40})]
    callbacks.verify_sides(sides, {"app": 0, "bare": 50}, verdict)
    assert failed(verdict) == ["app: every callback answered 200 was written (CallbackEvent rows)"]


def test_callback_bench_fails_in_process_callbacks_refused() -> None:
    callbacks = load("callbacks")
    verdict = callbacks.Verdict()
    refused = callbacks.QueryCount(statements=[0, 0], control=[0, 0])
    callbacks.verify_queries({"HTTP 404": refused}, verdict)
    assert failed(verdict) == ["query count: every in-process callback accepted"]


# --------------------------------------------------------------------------- admin.py


@pytest.mark.django_db
def test_admin_bench_sees_a_call_list_without_its_rows(admin_client: Client) -> None:
    admin = load("admin")
    Call.objects.bulk_create(
        Call(channel=Call.Channel.FLASH_CALL, number="79990000001", status=Call.Status.ANSWERED)
        for _ in range(3)
    )
    url = "/admin/voicepassword/call/"
    page = admin.Page(url, "list", lambda: Call.objects.count())
    assert admin.shows(page, admin_client.get(url).content.decode()) is None
    # A page that selects nothing where the database holds three calls.
    empty = admin_client.get(url + "?status__exact=busy").content.decode()
    assert admin.shows(page, empty) == "0 rows shown, 3 expected (3 calls selected)"


@pytest.mark.django_db
def test_admin_bench_sees_an_insights_page_without_its_figures(admin_client: Client) -> None:
    import datetime as dt

    from django.utils import timezone

    from django_voicepassword.models import Challenge

    admin = load("admin")
    now = timezone.now()
    Challenge.objects.bulk_create(
        Challenge(
            number="79990000001",
            channel=Call.Channel.FLASH_CALL,
            expires_at=now + dt.timedelta(minutes=5),
            resend_at=now,
        )
        for _ in range(3)
    )
    url = "/admin/voicepassword/challenge/insights/"
    page = admin.Page(url, "insights", lambda: Challenge.objects.count())
    assert admin.shows(page, admin_client.get(url).content.decode()) is None
    # A page narrowed to a channel without challenges shows none of the three.
    empty = admin_client.get(url + "?channel=sms").content.decode()
    assert admin.shows(page, empty) == "challenges of the last 30 days 0, 3 expected"


# --------------------------------------------------------------------------- reconcile.py


@pytest.fixture
def prepared_day(settings: Any) -> Iterator[Any]:
    reconcile = load("reconcile")
    settings.VOICEPASSWORD = {
        **settings.VOICEPASSWORD,
        "GATEWAY": "bench_reconcile.PreparedGateway",
    }
    day = reconcile.generate(200)
    Call.objects.bulk_create(Call(**fields) for fields in day.local)
    reconcile._PREPARED[reconcile.DAY] = day.records
    yield day
    reconcile._PREPARED.clear()


@pytest.mark.django_db(transaction=True)
def test_reconcile_bench_passes_a_reconciled_day(prepared_day: Any) -> None:
    from django_voicepassword.reconcile import reconcile_day

    reconcile = load("reconcile")
    report = reconcile_day(reconcile.DAY)
    assert reconcile.verify_reconciled(prepared_day, report) == []


@pytest.mark.django_db
def test_reconcile_bench_fails_a_reconciliation_that_writes_nothing(prepared_day: Any) -> None:
    from django_voicepassword.reconcile import ReconcileReport

    reconcile = load("reconcile")
    report = ReconcileReport(reconcile.DAY, len(prepared_day.records), 0, 0, 0, 0)
    problems = reconcile.verify_reconciled(prepared_day, report)
    assert any("records without a row" in problem for problem in problems), problems
    assert any("rows left unknown" in problem for problem in problems), problems


# --------------------------------------------------------------------------- login.py


NUMBER = "79990000040"


def logins(*pairs: Any) -> Any:
    login = load("login")
    return login.Side("app", login.API, [NUMBER], pairs=list(pairs))


def made(challenge: str, user: int, session: str = "s") -> Any:
    """A login as the client saw it go through."""
    return load("login").Pair(NUMBER, 201, challenge, True, 200, user, session, 0.01, 0.03)


@pytest.mark.django_db
def test_login_bench_reads_logins_confirmed_stored_and_logged_in(client: Client) -> None:
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from django_voicepassword.models import Challenge, PhoneNumber

    login = load("login")
    user = get_user_model().objects.create(username="bench-user")
    PhoneNumber.objects.create(user=user, number=NUMBER)
    now = timezone.now()

    def challenge(confirmed: bool) -> str:
        row = Challenge.objects.create(
            number=NUMBER,
            channel=Call.Channel.FLASH_CALL,
            expires_at=now + dt.timedelta(minutes=5),
            resend_at=now,
            verified_at=now if confirmed else None,
        )
        Call.objects.create(
            provider_id=str(row.pk.int % 10**9),
            channel=Call.Channel.FLASH_CALL,
            number=NUMBER,
            status=Call.Status.PLACED,
            challenge=row,
        )
        return str(row.pk)

    client.force_login(user, backend="django_voicepassword.auth_backends.PhoneCodeBackend")
    good = made(challenge(confirmed=True), user.pk, client.session.session_key or "")
    users = {NUMBER: user.pk}
    side = logins(good)
    facts = login.gather_facts(side, users, Counter({NUMBER: 1}))
    assert facts == login.Facts(1, 1, 1, 1, 1)
    verdict = login.Verdict()
    login.verify(side, users, facts, verdict)
    assert verdict.passed, verdict.checks

    # A confirm answered 200 whose code was not consumed and whose session is anonymous.
    anonymous = Client()
    anonymous.get("/")
    anonymous.session.save()
    broken = made(challenge(confirmed=False), user.pk, anonymous.session.session_key or "")
    side = logins(good, broken)
    facts = login.gather_facts(side, users, Counter({NUMBER: 2}))
    assert facts == login.Facts(2, 1, 2, 1, 2)
    verdict = login.Verdict()
    login.verify(side, users, facts, verdict)
    assert failed(verdict) == [
        "app: every challenge confirmed in the database, with its call row",
        "app: every confirm left a session logged in as the number's user",
    ]


def test_login_bench_fails_a_start_that_places_no_call() -> None:
    login = load("login")
    # Answered 201 at once, but nothing reached the provider or the phone.
    pair = login.Pair(NUMBER, 201, "c0ffee", False, 0, None, "", 0.001, 0.0, "no new call")
    side = logins(pair)
    verdict = login.Verdict()
    login.verify(side, {NUMBER: 7}, login.Facts(1, 0, 0, 0, 0), verdict)
    assert failed(verdict) == [
        "app: every start 201 with a call, every confirm 200 with the number's user",
        "app: every challenge confirmed in the database, with its call row",
        "app: every confirm left a session logged in as the number's user",
        "app: the emulator placed one flash call per start",
    ]


def test_login_bench_fails_a_confirm_that_logs_in_someone_else() -> None:
    login = load("login")
    verdict = login.Verdict()
    login.verify(logins(made("c0ffee", 8)), {NUMBER: 7}, login.Facts(1, 1, 1, 1, 1), verdict)
    assert failed(verdict) == [
        "app: every start 201 with a call, every confirm 200 with the number's user"
    ]


# --------------------------------------------------------------------------- the limits


@pytest.mark.redis
def test_limits_bench_sees_the_counting_done_and_a_side_that_counts_nothing(monkeypatch) -> None:
    from django.test import override_settings

    from django_voicepassword import ratelimit

    bench = load("limits")
    with override_settings(VOICEPASSWORD=bench.VOICEPASSWORD):
        starts = bench.Starts()
        try:
            assert bench.side(starts, 6, measured=False)[1] == bench.counted_by(6)
            assert bench.side(starts, 6, measured=True)[1] == bench.counted_by(6)
            assert bench.round_trips_per_start(starts) == 1
            # A measured side that does nothing is seen doing nothing.
            monkeypatch.setattr(ratelimit, "check_and_reserve", lambda *a, **k: (None, {}))
            assert bench.side(starts, 6, measured=True)[1] == (0, 0)
            assert bench.round_trips_per_start(starts) == 0
        finally:
            bench.forget()


@pytest.mark.postgres  # the floor's UPDATE joins PostgreSQL arrays
@pytest.mark.django_db(transaction=True)
def test_reconcile_bench_floor_writes_what_reconcile_writes(prepared_day: Any) -> None:
    from django_voicepassword.reconcile import reconcile_day

    reconcile = load("reconcile")
    report = reconcile_day(reconcile.DAY)
    _whole, _writes, planned = reconcile.run_floor(prepared_day)
    # The floor leaves the table reconciled, with the same inserts and updates.
    assert reconcile.verify_reconciled(prepared_day, None) == []
    assert len(planned.new) == report.created
    assert planned.updated == report.updated + report.settled + report.not_placed
    assert set(planned.taken) >= {"answered", "busy"}
    assert len(planned.not_placed) == report.not_placed
