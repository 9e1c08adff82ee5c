"""The management commands: call, sync, balance, purge."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.db.models import ProtectedError
from django.test import override_settings
from django.test.testcases import LiveServerThread
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_voicepassword import calls, retention
from django_voicepassword.calls import ReconcileReport
from django_voicepassword.exceptions import TransportError
from django_voicepassword.gateways import HttpGateway
from django_voicepassword.gateways.base import get_gateway, reset_gateway
from django_voicepassword.management.commands import voicepassword_call, voicepassword_sync
from django_voicepassword.models import BalanceSnapshot, Call, CallbackEvent

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "emulator-key"
EMULATED = {"API_KEY": API_KEY, "CALLBACK_BASE_URL": "https://site.example"}
COMMANDS = (
    "voicepassword_call",
    "voicepassword_sync",
    "voicepassword_balance",
    "voicepassword_purge",
)


class Ran:
    """What a command printed, and how it ended."""

    def __init__(self, out: str, err: str, error: CommandError | None) -> None:
        self.out = out
        self.err = err
        self.error = error

    @property
    def returncode(self) -> int:
        return 0 if self.error is None else self.error.returncode

    @property
    def message(self) -> str:
        return "" if self.error is None else str(self.error)

    @property
    def everything(self) -> str:
        return self.out + self.err + self.message


def run(name: str, *args: str) -> Ran:
    """Run a command as cron would see it: output, error output, exit status."""
    out, err = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except CommandError as error:
        return Ran(out.getvalue(), err.getvalue(), error)
    return Ran(out.getvalue(), err.getvalue(), None)


@pytest.fixture
def emulated(voicepassword_emulator):
    with override_settings(VOICEPASSWORD=EMULATED):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


def settings_with(**extra):
    return override_settings(VOICEPASSWORD={**EMULATED, **extra})


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exited:
        call_command(name, "--help")
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert name in out
    assert "Exit status" in out


# --------------------------------------------------------------------------- call


def test_a_flash_call_is_placed_and_shown_without_its_code(emulated):
    ran = run("voicepassword_call", "+7 (999) 000-00-01")
    assert ran.returncode == 0, ran.message
    call = Call.objects.get()
    assert call.channel == Call.Channel.FLASH_CALL
    assert call.number == "79990000001"
    assert ran.out.splitlines() == [
        f"call:        {call.pk} (flash call to +7 999 000-00-01)",
        f"provider id: {call.provider_id}",
        "status:      placed",
        "price:       0.35",
    ]
    code = emulated.code_for("79990000001")
    assert code not in ran.everything
    assert API_KEY not in ran.everything


def test_a_voice_call_with_every_option(emulated):
    ran = run(
        "voicepassword_call",
        "8 999 000 00 02",
        "--voice",
        "--code",
        "4821",
        "--repeat",
        "--ani",
        "+7 999 000-00-90",
    )
    assert ran.returncode == 0, ran.message
    assert "(voice call to +7 999 000-00-02)" in ran.out
    [sent] = emulated.sends()
    assert sent.payload["voice"] == {"code": "4821", "repeat": "1", "ani": "79990000090"}
    assert "4821" not in ran.everything


def test_the_code_is_shown_on_request(emulated):
    ran = run("voicepassword_call", "79990000001", "--capacity", "6", "--show-code")
    code = emulated.code_for("79990000001")
    assert len(code) == 6
    assert ran.out.splitlines()[-1] == f"code:        {code}"


def test_an_invalid_number_is_a_clear_error_and_writes_nothing(emulated):
    ran = run("voicepassword_call", "+7 800 000-00-00")
    assert ran.returncode == 1
    assert ran.message == "Toll-free numbers are not accepted."
    assert not Call.objects.exists()
    assert emulated.sends() == []


def test_a_refusal_names_the_error_and_is_recorded(emulated):
    ran = run("voicepassword_call", "79990000020")
    assert ran.returncode == 1
    assert ran.message.startswith("Not placed: the provider refused (NumberNotValidError: ")
    assert "number_not_valid" in ran.message
    assert Call.objects.get().status == Call.Status.NOT_PLACED
    assert API_KEY not in ran.everything


def test_an_unreachable_provider_is_not_placed(emulated, monkeypatch):
    def refused(*args, **kwargs):
        raise requests.exceptions.ConnectTimeout("connect timed out")

    gateway = get_gateway()
    assert isinstance(gateway, HttpGateway)
    monkeypatch.setattr(gateway.client._session, "post", refused)
    ran = run("voicepassword_call", "79990000001")
    assert ran.returncode == 1
    assert ran.message.startswith("Not placed: the provider could not be reached (TransportError")
    assert Call.objects.get().status == Call.Status.NOT_PLACED


# 34: the connection drops; 31 and 37: HTTP 500 and 502 without the provider's
# refusal, which may follow a placed call (37's is placed).
@pytest.mark.parametrize("number", ["79990000034", "79990000031", "79990000037"])
def test_an_unknown_outcome_has_its_own_message_and_exit_status(emulated, number):
    ran = run("voicepassword_call", number)
    assert ran.returncode == voicepassword_call.EXIT_OUTCOME_UNKNOWN == 3
    assert "may have been placed" in ran.message
    assert "voicepassword_sync" in ran.message
    assert Call.objects.get().status == Call.Status.UNKNOWN
    assert len(emulated.sends()) == 1


@pytest.mark.parametrize(
    ("args", "returncode", "words"),
    [
        (["--voice", "--capacity", "5"], 2, "--capacity applies to a flash call"),
        (["--code", "1234", "--capacity", "5"], 2, "--capacity applies to a flash call"),
        (["--repeat"], 2, "add --voice"),
        (["--ani", "79990000090"], 2, "add --voice"),
        # argparse's own errors: CommandError from call_command, exit 2 from a shell.
        (["--code", "12a4"], 1, "a code is exactly 4 digits"),
        (["--code", "123"], 1, "a code is exactly 4 digits"),
        (["--capacity", "7"], 1, "invalid choice"),
        (["--wait", "0"], 1, "give more than 0 and at most 600 seconds"),
        (["--wait", "601"], 1, "give more than 0 and at most 600 seconds"),
        (["--wait", "soon"], 1, "is not a number of seconds"),
    ],
)
def test_options_that_do_not_fit_are_refused_before_anything_is_sent(
    emulated, args, returncode, words
):
    ran = run("voicepassword_call", "79990000001", *args)
    assert ran.returncode == returncode
    assert words in ran.message
    assert not Call.objects.exists()
    assert emulated.sends() == []


def test_a_caller_number_that_is_no_number_is_refused(emulated):
    ran = run("voicepassword_call", "79990000001", "--voice", "--ani", "12")
    assert (ran.returncode, ran.message) == (2, "--ani: Enter a valid phone number.")
    assert not Call.objects.exists()


def test_an_unregistered_caller_number_is_the_providers_refusal(emulated):
    ran = run("voicepassword_call", "79990000001", "--voice", "--ani", "79990000099")
    assert ran.returncode == 1
    assert "AniPhoneNotValidError" in ran.message


def test_wait_reports_the_final_status_from_the_callback(emulated, client, monkeypatch):
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        emulated.deliver_callbacks(client)

    monkeypatch.setattr(voicepassword_call, "_sleep", sleep)
    ran = run("voicepassword_call", "79990000002", "--wait", "30")
    assert ran.returncode == 0, ran.message
    assert ran.out.splitlines()[4:] == [
        "Waiting up to 30 s for the callback...",
        "status:      busy (from the callback, provider: BUSY)",
        "duration:    0:00:00",
        "price:       0.35",
    ]
    assert len(slept) == 1
    # The callback said it all: the provider was not asked.
    assert [entry.kind for entry in emulated.log] == ["flash_call"]


def test_wait_without_callbacks_asks_the_provider(emulated, monkeypatch):
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
        emulated.advance(seconds)

    monkeypatch.setattr(voicepassword_call, "_sleep", sleep)
    monkeypatch.setattr(voicepassword_call, "_monotonic", lambda: now[0])
    emulated.emulator.callback_delay = 7.0
    with settings_with(CALLBACK_BASE_URL=None):
        ran = run("voicepassword_call", "79990000003", "--wait", "30")
    assert ran.returncode == 0, ran.message
    assert ran.out.splitlines()[4:] == [
        "Waiting up to 30 s for the provider's state...",
        "status:      no_answer (from the provider's state, provider: Нет ответа)",
        "duration:    0:00:00",
        "price:       0.35",
    ]
    # Asked every 5 s: still dialling at 5 s, ended (at 7 s) by 10 s.
    assert [entry.kind for entry in emulated.log] == ["flash_call", "state", "state"]
    assert now[0] == 10.0


def test_wait_gives_up_after_the_time_and_asks_once(emulated, monkeypatch):
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    monkeypatch.setattr(voicepassword_call, "_sleep", sleep)
    monkeypatch.setattr(voicepassword_call, "_monotonic", lambda: now[0])
    emulated.emulator.callback_delay = 600.0
    ran = run("voicepassword_call", "79990000001", "--wait", "3")
    assert ran.returncode == 0, ran.message
    assert ran.out.splitlines()[-1] == (
        "status:      dialling (not ended after 3 s; "
        "a callback or voicepassword_sync will record the end)"
    )
    assert [entry.kind for entry in emulated.log] == ["flash_call", "state"]
    assert now[0] == 3.0


def test_wait_survives_a_provider_that_cannot_be_asked(emulated, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(voicepassword_call, "_sleep", lambda s: now.__setitem__(0, now[0] + s))
    monkeypatch.setattr(voicepassword_call, "_monotonic", lambda: now[0])
    emulated.emulator.callback_delay = 600.0
    emulated.set_fault("http500", endpoints=("get",))
    with settings_with(GET_RETRIES=0):
        ran = run("voicepassword_call", "79990000001", "--wait", "2")
    assert ran.returncode == 0
    assert "Could not ask the provider for the call's state (TransportError" in ran.err
    assert "last known status: placed" in ran.err


@pytest.fixture
def site_url(transactional_db):
    """The test site over real HTTP, for the emulator's callbacks.

    Not pytest-django's ``live_server``: its static-files handler needs a
    ``STATIC_URL``, which the test settings do not have; this site serves none.
    """
    shared: dict[str, BaseDatabaseWrapper] = {
        conn.alias: conn
        for conn in connections.all()
        if isinstance(conn, SQLiteWrapper) and conn.is_in_memory_db()
    }
    for conn in shared.values():
        conn.inc_thread_sharing()
    thread = LiveServerThread(
        "localhost",
        lambda app: app,  # type: ignore[arg-type]  # no static-files handler: the site itself
        connections_override=shared,
    )
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    try:
        if thread.error:
            raise thread.error
        yield f"http://localhost:{thread.port}"
    finally:
        thread.terminate()
        for conn in shared.values():
            conn.dec_thread_sharing()


def test_the_whole_loop_over_http(site_url, voicepassword_emulator_server, monkeypatch):
    """The demo's loop: the emulator's phone gets the call, its callback reaches the site."""
    server = voicepassword_emulator_server
    # A callback that overtakes the send/ answer finds no call with its id yet
    # (an orphan): let the call be recorded first, as a real call's ringing does.
    server.emulator.callback_delay = 0.5
    monkeypatch.setattr(voicepassword_call, "POLL_INTERVAL", 0.05)
    vp = {"API_KEY": API_KEY, "API_URL": server.base_url, "CALLBACK_BASE_URL": site_url}
    with override_settings(VOICEPASSWORD=vp):
        reset_gateway()
        try:
            ran = run("voicepassword_call", "79990000003", "--wait", "20")
        finally:
            reset_gateway()
    assert ran.returncode == 0, ran.message
    assert "status:      no_answer (from the callback, provider: NO ANSWER)" in ran.out, (
        [delivery.status for delivery in server.emulator.deliveries],
        list(CallbackEvent.objects.values_list("outcome", flat=True)),
    )
    phone = server.emulator.last_call("79990000003")
    assert phone is not None
    assert phone.kind == "flash_call"
    call = Call.objects.get()
    assert call.provider_id == phone.id
    event = CallbackEvent.objects.get()
    assert event.outcome == CallbackEvent.Outcome.APPLIED
    assert event.call == call


# --------------------------------------------------------------------------- sync


@pytest.fixture
def reconciled(monkeypatch):
    days: list[date] = []

    def reconcile_day(day):
        days.append(day)
        return ReconcileReport(day, 3, 1, 1, 0, 0)

    monkeypatch.setattr(calls, "reconcile_day", reconcile_day)
    return days


def test_sync_reconciles_today_by_default(reconciled):
    ran = run("voicepassword_sync")
    today = voicepassword_sync.moscow_today()
    assert reconciled == [today]
    assert ran.out == (
        f"{today.isoformat()}: 3 provider records; "
        "1 created, 1 updated, 0 settled, 0 marked not placed\n"
    )


def test_sync_days_counts_back_from_today_oldest_first(reconciled):
    run("voicepassword_sync", "--days", "3")
    today = voicepassword_sync.moscow_today()
    assert reconciled == [today - timedelta(days=2), today - timedelta(days=1), today]


def test_sync_one_date(reconciled):
    ran = run("voicepassword_sync", "--date", "2025-01-31", "-v", "0")
    assert ran.returncode == 0
    assert ran.out == ""
    assert reconciled == [date(2025, 1, 31)]


def test_moscow_today_is_the_providers_day(monkeypatch):
    # 22:30 UTC is already tomorrow in Moscow.
    late = timezone.now().replace(hour=22, minute=30)
    monkeypatch.setattr(timezone, "now", lambda: late)
    assert voicepassword_sync.moscow_today() == late.date() + timedelta(days=1)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--date", "2025-02-30"], "'2025-02-30' is not a date in the form YYYY-MM-DD"),
        (["--date", "31.01.2025"], "is not a date in the form YYYY-MM-DD"),
        (["--date", "20250131"], "is not a date in the form YYYY-MM-DD"),
        (["--days", "0"], "from 1 to 31"),
        (["--days", "32"], "from 1 to 31"),
        (["--days", "a week"], "from 1 to 31"),
        (["--date", "2025-01-31", "--days", "2"], "not allowed with argument"),
    ],
)
def test_sync_refuses_bad_options(reconciled, args, words):
    ran = run("voicepassword_sync", *args)
    assert ran.returncode != 0
    assert words in ran.message
    assert reconciled == []


def test_sync_refuses_a_future_day(reconciled):
    tomorrow = voicepassword_sync.moscow_today() + timedelta(days=1)
    ran = run("voicepassword_sync", "--date", tomorrow.isoformat())
    assert ran.returncode == 2
    assert "is in the future" in ran.message
    assert reconciled == []


def test_a_failing_day_does_not_stop_the_others(monkeypatch):
    today = voicepassword_sync.moscow_today()
    done = []

    def reconcile_day(day):
        if day == today - timedelta(days=1):
            raise TransportError("get/ daily: HTTP 502")
        done.append(day)
        return ReconcileReport(day, 0, 0, 0, 0, 0)

    monkeypatch.setattr(calls, "reconcile_day", reconcile_day)
    ran = run("voicepassword_sync", "--days", "3")
    assert done == [today - timedelta(days=2), today]
    assert ran.returncode == 1
    yesterday = (today - timedelta(days=1)).isoformat()
    assert ran.err == f"{yesterday}: failed: TransportError: get/ daily: HTTP 502\n"
    assert ran.message == f"1 of 3 days could not be reconciled ({yesterday}); run again later."


def test_sync_against_the_emulator(emulated):
    call = calls.place_flash_call("79990000004")
    ran = run("voicepassword_sync")
    assert ran.returncode == 0, ran.message
    assert "1 provider records;" in ran.out
    call.refresh_from_db()
    assert call.status == Call.Status.FAILED


# --------------------------------------------------------------------------- balance


def test_balance_is_printed_and_stored(emulated):
    ran = run("voicepassword_balance")
    assert ran.returncode == 0
    assert ran.out == "999.00 Rub\n"
    snapshot = BalanceSnapshot.objects.get()
    assert snapshot.balance == Decimal("999.00")
    assert snapshot.currency == "Rub"


def test_below_min_exits_3_with_a_message(emulated):
    ran = run("voicepassword_balance", "--min", "1000")
    assert ran.returncode == 3
    assert ran.out == "999.00 Rub\n"
    assert ran.message == "The balance 999.00 Rub is below 1000.00: top up the account."
    assert BalanceSnapshot.objects.count() == 1


def test_at_the_threshold_is_not_low(emulated):
    assert run("voicepassword_balance", "--min", "999,00").returncode == 0


def test_low_balance_setting_is_the_default_threshold(emulated):
    with settings_with(LOW_BALANCE="1000.50"):
        ran = run("voicepassword_balance", "--quiet")
        assert ran.returncode == 3
        assert ran.out == ""
        assert "below 1000.50" in ran.message
        # --min overrides the setting, either way.
        assert run("voicepassword_balance", "--min", "10").returncode == 0
    with settings_with(LOW_BALANCE=10):
        assert run("voicepassword_balance", "--min", "5000").returncode == 3


def test_quiet_prints_nothing_when_all_is_well(emulated):
    ran = run("voicepassword_balance", "--quiet")
    assert (ran.returncode, ran.out, ran.err) == (0, "", "")
    assert run("voicepassword_balance", "-v", "0").out == ""


def test_a_provider_error_exits_1(emulated):
    with settings_with(API_KEY="a-wrong-key-3f9c"):
        reset_gateway()
        ran = run("voicepassword_balance", "--min", "1")
    assert ran.returncode == 1
    assert ran.message.startswith("Could not fetch the balance: AuthorisationFailedError: ")
    assert "a-wrong-key-3f9c" not in ran.everything
    assert not BalanceSnapshot.objects.exists()


@pytest.mark.parametrize("value", ["lots", "NaN", "Infinity", ""])
def test_a_bad_min_is_refused(emulated, value):
    ran = run("voicepassword_balance", "--min", value)
    assert ran.returncode != 0
    assert "is not an amount" in ran.message
    assert not BalanceSnapshot.objects.exists()


# --------------------------------------------------------------------------- purge


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def make_call(days: float, *, parent: Call | None = None) -> Call:
    return Call.objects.create(
        channel=Call.Channel.SMS if parent else Call.Channel.FLASH_CALL,
        number="79990000001",
        status=Call.Status.ANSWERED,
        parent=parent,
        created_at=days_ago(days),
    )


def make_event(days: float, call: Call | None = None) -> CallbackEvent:
    return CallbackEvent.objects.create(
        call=call,
        provider_id=str(CallbackEvent.objects.count() + 1),
        state="ANSWERED",
        payload={},
        outcome=CallbackEvent.Outcome.ORPHAN,
        received_at=days_ago(days),
    )


@pytest.fixture
def history():
    """Rows on both sides of the default cutoffs (180, 30 and 365 days)."""
    rows = {
        "young call": make_call(10),
        "old call": make_call(200),
        "old call with old sms": make_call(200),
        "old call with young sms": make_call(185),
    }
    rows["old sms"] = make_call(199, parent=rows["old call with old sms"])
    rows["young sms"] = make_call(170, parent=rows["old call with young sms"])
    make_event(40)  # old orphan event
    make_event(5)  # young orphan event
    make_event(40, rows["young call"])  # old event of a kept call
    make_event(20, rows["old call"])  # young event of a purged call: goes with it
    for days in (400, 366, 364, 1):
        BalanceSnapshot.objects.create(balance=1, currency="Rub", taken_at=days_ago(days))
    return rows


def test_purge_follows_the_retention_settings(history):
    ran = run("voicepassword_purge")
    assert ran.returncode == 0
    lines = ran.out.splitlines()
    assert lines[0].startswith("calls: deleted 3 (created before ")
    assert lines[0].endswith(", kept 180 days)")
    assert lines[1].startswith("callback events: deleted 3 (received before ")
    assert lines[2].startswith("balance snapshots: deleted 2 (taken before ")
    kept = set(Call.objects.values_list("pk", flat=True))
    assert kept == {
        history["young call"].pk,
        history["old call with young sms"].pk,
        history["young sms"].pk,
    }
    assert CallbackEvent.objects.count() == 1
    assert BalanceSnapshot.objects.count() == 2


def test_a_dry_run_counts_exactly_what_a_run_deletes(history):
    dry = run("voicepassword_purge", "--dry-run")
    assert [line.split(" (")[0] for line in dry.out.splitlines()] == [
        "calls: would delete 3",
        "callback events: would delete 3",
        "balance snapshots: would delete 2",
        "challenges: would delete 0",
    ]
    assert Call.objects.count() == 6
    assert CallbackEvent.objects.count() == 4
    assert BalanceSnapshot.objects.count() == 4
    real = run("voicepassword_purge", "--batch-size", "1")
    assert [line.split(" (")[0] for line in real.out.splitlines()] == [
        "calls: deleted 3",
        "callback events: deleted 3",
        "balance snapshots: deleted 2",
        "challenges: deleted 0",
    ]
    again = run("voicepassword_purge")
    assert [line.split(" (")[0] for line in again.out.splitlines()] == [
        "calls: deleted 0",
        "callback events: deleted 0",
        "balance snapshots: deleted 0",
        "challenges: deleted 0",
    ]


def test_purge_reads_the_settings_each_run(history):
    with settings_with(CALL_RETENTION_DAYS=1, CALLBACK_RETENTION_DAYS=1000):
        report = retention.purge()
    assert report.calls == 6
    # Only the events of the purged calls: the orphans are within 1000 days.
    assert report.callback_events == 2
    assert report.balance_snapshots == 2
    assert not Call.objects.exists()


def test_purge_deletes_in_batches(history):
    for _ in range(5):
        BalanceSnapshot.objects.create(balance=1, currency="Rub", taken_at=days_ago(500))
    table = BalanceSnapshot._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        report = retention.purge(batch_size=2)
    assert report.balance_snapshots == 7
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE") and table in q["sql"]]
    assert len(deletes) == 4
    with pytest.raises(ValueError, match="batch_size"):
        retention.purge(batch_size=0)


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_purge_refuses_a_bad_batch_size(history, value):
    ran = run("voicepassword_purge", "--batch-size", value)
    assert ran.returncode != 0
    assert "give a whole number, 1 or more" in ran.message
    assert Call.objects.count() == 6


def test_a_protected_row_is_a_clear_error(monkeypatch):
    def purge(**kwargs):
        raise ProtectedError("Cannot delete some instances of model 'Call'.", set())

    monkeypatch.setattr(retention, "purge", purge)
    ran = run("voicepassword_purge")
    assert ran.returncode == 1
    assert ran.message == (
        "Some rows cannot be deleted: Cannot delete some instances of model 'Call'."
    )


def test_purge_quietly(history):
    ran = run("voicepassword_purge", "-v", "0")
    assert (ran.returncode, ran.out, ran.err) == (0, "", "")
    assert Call.objects.count() == 3


@pytest.mark.django_db
def test_purge_deletes_old_challenges_and_keeps_their_calls():
    from django_voicepassword.models import Challenge

    old = timezone.now() - timedelta(days=31)
    challenge = Challenge.objects.create(
        number="79990000001",
        channel=Call.Channel.FLASH_CALL,
        expires_at=old,
        resend_at=old,
        created_at=old,
    )
    young = Challenge.objects.create(
        number="79990000002",
        channel=Call.Channel.FLASH_CALL,
        expires_at=timezone.now(),
        resend_at=timezone.now(),
    )
    call = Call.objects.create(
        channel=Call.Channel.FLASH_CALL, number="79990000001", challenge=challenge
    )
    out = StringIO()
    call_command("voicepassword_purge", "--dry-run", stdout=out)
    assert "challenges: would delete 1 " in out.getvalue()
    assert Challenge.objects.count() == 2
    out = StringIO()
    call_command("voicepassword_purge", stdout=out)
    assert "challenges: deleted 1 " in out.getvalue()
    assert list(Challenge.objects.all()) == [young]
    call.refresh_from_db()
    assert call.challenge is None
