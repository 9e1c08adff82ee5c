"""The daily reconciliation: rows created, corrected, settled and marked not placed, in bulk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_voicepassword import calls, reconcile
from django_voicepassword.client import (
    PROVIDER_TZ,
    Balance,
    CallRecord,
    CallState,
    DailyReport,
    SendResult,
    VoicePasswordClient,
    parse_record,
)
from django_voicepassword.emulator.pytest_plugin import DEFAULT_BASE_URL
from django_voicepassword.exceptions import OutcomeUnknownError, TransportError
from django_voicepassword.gateways import BaseGateway, HttpGateway
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Call
from django_voicepassword.signals import call_status_changed

pytestmark = pytest.mark.django_db(transaction=True)

#: A day long over, so that unknown rows of it may be marked not placed.
DAY = date(2025, 3, 14)
NOON = datetime(2025, 3, 14, 12, 0, tzinfo=PROVIDER_TZ)


# --------------------------------------------------------------------------- the provider, faked

#: The reports ReportGateway answers, by day; a day mapped to an exception raises it.
REPORTS: dict[date, list[CallRecord] | Exception] = {}


class ReportGateway(BaseGateway):
    """Answers ``daily`` from :data:`REPORTS`; reconciliation needs nothing else."""

    def flash_call(self, number: str, **kwargs: Any) -> SendResult:
        raise NotImplementedError

    def voice_call(self, number: str, **kwargs: Any) -> SendResult:
        raise NotImplementedError

    def sms(self, request_id: str, *, callback_url: str | None = None) -> SendResult:
        raise NotImplementedError

    def balance(self) -> Balance:
        raise NotImplementedError

    def state(self, request_id: str) -> CallRecord:
        raise NotImplementedError

    def daily(self, day: date) -> list[CallRecord]:
        report = REPORTS.get(day, [])
        if isinstance(report, Exception):
            raise report
        if isinstance(report, DailyReport):
            return report
        return list(report)


@pytest.fixture
def report() -> Iterator[dict[date, list[CallRecord] | Exception]]:
    """The provider's reports by day, through the GATEWAY setting."""
    REPORTS.clear()
    with override_settings(VOICEPASSWORD={"GATEWAY": "tests.test_reconcile.ReportGateway"}):
        reset_gateway()
        yield REPORTS
    REPORTS.clear()
    reset_gateway()


@pytest.fixture
def signals() -> Iterator[list[tuple[str, str, str, str | None]]]:
    received: list[tuple[str, str, str, str | None]] = []

    def on_changed(sender, call, old_status, new_status, source, **kwargs):
        received.append((source, old_status, new_status, call.provider_id))

    call_status_changed.connect(on_changed)
    yield received
    call_status_changed.disconnect(on_changed)


def record(
    id: str,
    number: str = "79990000001",
    when: datetime = NOON,
    state: str = "Успешно",
    *,
    price: str = "0.35",
    duration: str = "00:04",
    service: str | None = "Voice Password",
) -> CallRecord:
    """A daily row, parsed from the provider's own format."""
    data = {
        "id": id,
        "number": number,
        "date": when.astimezone(PROVIDER_TZ).strftime("%d.%m.%Y %H:%M:%S"),
        "duration": duration,
        "price": price,
        "state": state,
    }
    if service is not None:
        data["service"] = service
    return parse_record(data)


def local(
    provider_id: str | None,
    number: str = "79990000001",
    when: datetime = NOON,
    status: str = Call.Status.PLACED,
    **fields: Any,
) -> Call:
    """A row this site wrote (``created_at`` a few seconds before the provider's stamp)."""
    return Call.objects.create(
        provider_id=provider_id,
        channel=fields.pop("channel", Call.Channel.FLASH_CALL),
        number=number,
        status=status,
        created_at=when - timedelta(seconds=2),
        **fields,
    )


def counts(result: calls.ReconcileReport) -> tuple[int, ...]:
    return (result.created, result.updated, result.settled, result.not_placed)


# --------------------------------------------------------------------------- created


def test_calls_placed_elsewhere_become_rows(report):
    report[DAY] = [
        record("1", "79990000001", NOON, "Успешно", service="Voice Password"),
        record("2", "79990000002", NOON + timedelta(minutes=1), "Занято", service="Flash Call"),
        record("3", "79990000003", NOON + timedelta(minutes=2), "Доставлено", service="SMS"),
        record("4", "79990000004", NOON + timedelta(minutes=3), "Странно", service=None),
    ]
    result = calls.reconcile_day(DAY)
    assert result == calls.ReconcileReport(DAY, 4, 4, 0, 0, 0)
    rows = {call.provider_id: call for call in Call.objects.all()}
    assert rows["1"].channel == Call.Channel.VOICE_CALL
    assert rows["1"].status == Call.Status.ANSWERED
    assert rows["1"].created_at == NOON
    assert rows["1"].provider_date == NOON
    assert rows["1"].price == Decimal("0.35")
    assert rows["1"].duration == timedelta(seconds=4)
    assert rows["1"].state_label == "Успешно"
    assert (rows["2"].channel, rows["2"].status) == (Call.Channel.FLASH_CALL, Call.Status.BUSY)
    assert (rows["3"].channel, rows["3"].status) == (Call.Channel.SMS, Call.Status.DELIVERED)
    # A label nobody knows: the provider accepted the call, and that is all we know.
    assert (rows["4"].status, rows["4"].state_label) == (Call.Status.PLACED, "Странно")


def test_a_reconciled_past_day_makes_the_admin_read_its_figures_again(report):
    from django.core.cache import cache

    from django_voicepassword import dashboard

    generation = cache.get(dashboard.CLOSED_DAYS_GENERATION_KEY)
    report[DAY] = []
    calls.reconcile_day(DAY)  # nothing written: nothing to forget
    assert cache.get(dashboard.CLOSED_DAYS_GENERATION_KEY) == generation
    report[DAY] = [record("1")]
    calls.reconcile_day(DAY)
    assert cache.get(dashboard.CLOSED_DAYS_GENERATION_KEY) != generation


def test_a_created_row_takes_the_models_defaults(report):
    # The rows are written without model instances on PostgreSQL: every column
    # the record does not give must still take the model's default.
    before = timezone.now()
    report[DAY] = [record("1")]
    calls.reconcile_day(DAY)
    row = Call.objects.get(provider_id="1")
    assert (row.error_code, row.callbacks_dropped) == ("", 0)
    assert (row.parent_id, row.user_id, row.challenge_id) == (None, None, None)
    assert row.updated_at >= before


@pytest.mark.parametrize(
    ("service", "state", "channel"),
    [
        ("Voice Password", "Успешно", Call.Channel.VOICE_CALL),
        ("Flash Call", "Успешно", Call.Channel.FLASH_CALL),
        ("flashcall", "Успешно", Call.Channel.FLASH_CALL),
        ("SMS", "FAIL", Call.Channel.SMS),
        ("Смс-рассылка", "FAIL", Call.Channel.SMS),
        (None, "DELIVERED", Call.Channel.SMS),
        (None, "Успешно", Call.Channel.VOICE_CALL),
        ("Something new", "DELIVERED", Call.Channel.VOICE_CALL),
    ],
)
def test_the_channel_is_guessed_from_the_service(service, state, channel):
    assert reconcile.channel_of(record("1", state=state, service=service)) == channel


def test_a_record_without_a_date_is_dated_at_the_start_of_the_day(report):
    report[DAY] = [parse_record({"id": "9", "number": "79990000001", "state": "Успешно"})]
    calls.reconcile_day(DAY)
    assert Call.objects.get().created_at == datetime(2025, 3, 14, tzinfo=PROVIDER_TZ)


def test_a_repeated_request_id_makes_one_row(report):
    report[DAY] = [record("1", state="Дозвон"), record("1", state="Успешно")]
    result = calls.reconcile_day(DAY)
    assert (result.provider_rows, result.created) == (2, 1)
    assert Call.objects.get().status == Call.Status.ANSWERED


def test_records_that_cannot_be_stored_are_left_out(report, caplog):
    report[DAY] = [record("1" * 40), record("2", number="7" * 20), record("3")]
    result = calls.reconcile_day(DAY)
    assert result.created == 1
    assert list(Call.objects.values_list("provider_id", flat=True)) == ["3"]
    assert "left out" in caplog.text


# --------------------------------------------------------------------------- corrected


def test_states_prices_and_durations_are_corrected(report, signals):
    placed = local("1", status=Call.Status.PLACED, price=Decimal("0.30"))
    busy = local("2", status=Call.Status.BUSY, price=Decimal("0.35"))
    report[DAY] = [record("1", state="Нет ответа", price="0.40"), record("2", state="Успешно")]
    result = calls.reconcile_day(DAY)
    assert counts(result) == (0, 2, 0, 0)
    placed.refresh_from_db()
    busy.refresh_from_db()
    assert (placed.status, placed.price) == (Call.Status.NO_ANSWER, Decimal("0.40"))
    assert placed.duration == timedelta(seconds=4)
    assert placed.provider_date == NOON
    # The provider's own record corrects one final state into another.
    assert (busy.status, busy.state_label) == (Call.Status.ANSWERED, "Успешно")
    assert sorted(signals) == [
        ("daily", "busy", "answered", "2"),
        ("daily", "placed", "no_answer", "1"),
    ]


def test_a_receiver_gets_the_whole_call_without_a_query(report):
    # The rows are read as tuples; a receiver still gets a whole Call, as read
    # and as changed, whose fields cost no query.
    row = local("1", channel=Call.Channel.VOICE_CALL, state_label="Дозвон")
    report[DAY] = [record("1", state="Успешно", price="0.50")]
    seen: list[tuple[Any, ...]] = []

    def on_changed(sender, call, old_status, new_status, source, **kwargs):
        with CaptureQueriesContext(connection) as captured:
            seen.append(
                (
                    call.pk,
                    call.channel,
                    call.number,
                    call.created_at,
                    call.callbacks_dropped,
                    call.status,
                    call.state_label,
                    call.price,
                    call.updated_at > row.updated_at,
                    call._state.adding,
                )
            )
        assert captured.captured_queries == []

    call_status_changed.connect(on_changed)
    try:
        calls.reconcile_day(DAY)
    finally:
        call_status_changed.disconnect(on_changed)
    assert seen == [
        (
            row.pk,
            Call.Channel.VOICE_CALL,
            row.number,
            row.created_at,
            0,
            Call.Status.ANSWERED,
            "Успешно",
            Decimal("0.50"),
            True,
            False,
        )
    ]


def test_a_price_alone_is_corrected_without_a_signal(report, signals):
    call = local("1", status=Call.Status.ANSWERED, price=Decimal("0.30"), state_label="Успешно")
    report[DAY] = [record("1", price="0.35")]
    assert counts(calls.reconcile_day(DAY)) == (0, 1, 0, 0)
    call.refresh_from_db()
    assert call.price == Decimal("0.35")
    assert signals == []


def test_a_final_state_is_never_replaced_by_an_intermediate_one(report, signals):
    call = local("1", status=Call.Status.ANSWERED)
    report[DAY] = [record("1", state="Дозвон")]
    calls.reconcile_day(DAY)
    call.refresh_from_db()
    assert call.status == Call.Status.ANSWERED
    assert signals == []


def test_an_intermediate_state_moves_forward(report, signals):
    call = local("1", status=Call.Status.PLACED)
    report[DAY] = [record("1", state="Дозвон", duration="00:00")]
    calls.reconcile_day(DAY)
    call.refresh_from_db()
    assert call.status == Call.Status.DIALLING
    assert signals == [("daily", "placed", "dialling", "1")]


def test_rows_are_found_by_request_id_whatever_their_date(report):
    # Written a week earlier by this site's clock: still the same call.
    call = local("1", when=NOON - timedelta(days=7))
    report[DAY] = [record("1", state="Занято")]
    assert counts(calls.reconcile_day(DAY)) == (0, 1, 0, 0)
    call.refresh_from_db()
    assert call.status == Call.Status.BUSY
    assert Call.objects.count() == 1


def test_record_changes_is_pure():
    call = Call(status=Call.Status.PLACED, number="79990000001")
    changes = reconcile.record_changes(call, record("1"), authoritative=True)
    assert changes["status"] == Call.Status.ANSWERED
    assert changes["price"] == Decimal("0.35")
    assert call.status == Call.Status.PLACED
    assert call.price is None


def test_a_callback_corrects_no_final_state():
    call = Call(status=Call.Status.BUSY, number="79990000001")
    assert reconcile.record_changes(call, record("1"), authoritative=False) == {}


# --------------------------------------------------------------------------- settled


def test_an_unknown_outcome_is_settled_by_number_and_time(report, signals):
    call = local(None, status=Call.Status.UNKNOWN, error_code="outcome_unknown")
    report[DAY] = [record("7", when=NOON + timedelta(seconds=3), state="Занято")]
    result = calls.reconcile_day(DAY)
    assert counts(result) == (0, 0, 1, 0)
    call.refresh_from_db()
    assert call.provider_id == "7"
    assert call.status == Call.Status.BUSY
    assert call.error_code == ""
    assert call.price == Decimal("0.35")
    assert Call.objects.count() == 1
    assert signals == [("daily", "unknown", "busy", "7")]


def test_each_record_settles_the_closest_row_and_one_only(report):
    first = local(None, when=NOON, status=Call.Status.UNKNOWN)
    second = local(None, when=NOON + timedelta(minutes=3), status=Call.Status.UNKNOWN)
    third = local(None, when=NOON + timedelta(minutes=4), status=Call.Status.UNKNOWN)
    report[DAY] = [
        # Listed out of order: the pairing does not depend on it.
        record("21", when=NOON + timedelta(minutes=3, seconds=5)),
        record("20", when=NOON + timedelta(seconds=1)),
    ]
    result = calls.reconcile_day(DAY)
    assert counts(result) == (0, 0, 2, 1)
    for call in (first, second, third):
        call.refresh_from_db()
    assert (first.provider_id, second.provider_id, third.provider_id) == ("20", "21", None)
    assert third.status == Call.Status.NOT_PLACED
    assert third.error_code == "not_in_daily"


@pytest.mark.parametrize(
    ("offset", "settles"),
    [
        (timedelta(seconds=-59), True),
        (timedelta(minutes=9, seconds=59), True),
        (timedelta(minutes=-1, seconds=-2), False),
        (timedelta(minutes=10, seconds=2), False),
    ],
)
def test_the_settle_window(report, offset, settles):
    created = NOON
    Call.objects.create(
        channel=Call.Channel.FLASH_CALL,
        number="79990000001",
        status=Call.Status.UNKNOWN,
        created_at=created,
    )
    report[DAY] = [record("5", when=created + offset)]
    result = calls.reconcile_day(DAY)
    assert (result.settled, result.created, result.not_placed) == (
        (1, 0, 0) if settles else (0, 1, 1)
    )


def test_another_number_does_not_settle(report):
    local(None, number="79990000001", status=Call.Status.UNKNOWN)
    report[DAY] = [record("5", number="79990000002")]
    assert counts(calls.reconcile_day(DAY)) == (1, 0, 0, 1)


def test_a_known_request_id_settles_nothing(report):
    local("5", status=Call.Status.ANSWERED, state_label="Успешно", price=Decimal("0.35"))
    unknown = local(None, status=Call.Status.UNKNOWN)
    report[DAY] = [record("5")]
    assert counts(calls.reconcile_day(DAY)) == (0, 1, 0, 1)
    unknown.refresh_from_db()
    assert unknown.provider_id is None


def test_a_row_marked_not_placed_is_revived_by_a_late_record(report, signals):
    call = local(None, status=Call.Status.UNKNOWN)
    calls.reconcile_day(DAY)
    call.refresh_from_db()
    assert (call.status, call.error_code) == (Call.Status.NOT_PLACED, "not_in_daily")
    report[DAY] = [record("8", state="Дозвон")]
    assert counts(calls.reconcile_day(DAY)) == (0, 0, 1, 0)
    call.refresh_from_db()
    assert (call.status, call.error_code, call.provider_id) == (Call.Status.DIALLING, "", "8")
    assert signals == [
        ("daily", "unknown", "not_placed", None),
        ("daily", "not_placed", "dialling", "8"),
    ]


def test_a_settled_row_with_an_unknown_label_is_placed(report):
    call = local(None, status=Call.Status.UNKNOWN)
    report[DAY] = [record("8", state="Странно")]
    calls.reconcile_day(DAY)
    call.refresh_from_db()
    assert (call.status, call.state_label) == (Call.Status.PLACED, "Странно")


# --------------------------------------------------------------------------- not placed


def test_not_placed_waits_for_the_end_of_the_day(report):
    now = timezone.now()
    today = now.astimezone(PROVIDER_TZ).date()
    call = local(None, when=now - timedelta(hours=1), status=Call.Status.UNKNOWN)
    assert counts(calls.reconcile_day(today)) == (0, 0, 0, 0)
    call.refresh_from_db()
    assert call.status == Call.Status.UNKNOWN


def test_records_too_recent_are_left_for_the_next_run(report):
    now = timezone.now()
    today = now.astimezone(PROVIDER_TZ).date()
    unknown = local(None, when=now - timedelta(seconds=30), status=Call.Status.UNKNOWN)
    report[today] = [
        record("1", when=now - timedelta(seconds=20)),
        record("2", number="79990000002", when=now - timedelta(seconds=10)),
    ]
    # Its send/ may still be waiting for its answer: the id is not taken yet.
    assert counts(calls.reconcile_day(today)) == (0, 0, 0, 0)
    unknown.refresh_from_db()
    assert unknown.provider_id is None


def test_rows_of_other_days_are_not_marked(report):
    yesterday = local(None, when=NOON - timedelta(days=1), status=Call.Status.UNKNOWN)
    assert counts(calls.reconcile_day(DAY)) == (0, 0, 0, 0)
    yesterday.refresh_from_db()
    assert yesterday.status == Call.Status.UNKNOWN


def test_a_row_near_midnight_is_settled_from_the_next_days_report(report):
    late = datetime(2025, 3, 14, 23, 58, tzinfo=PROVIDER_TZ)
    call = local(None, when=late, status=Call.Status.UNKNOWN)
    report[DAY] = []
    report[DAY + timedelta(days=1)] = [
        record("30", when=late + timedelta(minutes=3)),
        record("31", number="79990000002", when=late + timedelta(minutes=3)),
    ]
    assert counts(calls.reconcile_day(DAY)) == (0, 0, 1, 0)
    call.refresh_from_db()
    assert (call.provider_id, call.status) == ("30", Call.Status.ANSWERED)
    # The next day's own run finds the row by its id and creates the other.
    result = calls.reconcile_day(DAY + timedelta(days=1))
    assert counts(result) == (1, 0, 0, 0)


def test_a_closer_row_of_the_next_day_keeps_its_record(report):
    midnight = datetime(2025, 3, 15, tzinfo=PROVIDER_TZ)
    before = local(None, when=midnight - timedelta(seconds=8), status=Call.Status.UNKNOWN)
    after = local(None, when=midnight + timedelta(seconds=12), status=Call.Status.UNKNOWN)
    report[DAY + timedelta(days=1)] = [record("50", when=midnight + timedelta(seconds=12))]
    assert counts(calls.reconcile_day(DAY)) == (0, 0, 1, 1)
    before.refresh_from_db()
    after.refresh_from_db()
    assert (before.status, after.provider_id) == (Call.Status.NOT_PLACED, "50")


def test_a_row_near_midnight_is_not_placed_when_neither_day_has_it(report):
    early = datetime(2025, 3, 14, 0, 0, 30, tzinfo=PROVIDER_TZ)
    call = local(None, when=early, status=Call.Status.UNKNOWN)
    # A record the previous day, but one already some other row's: it settles nothing.
    local("40", when=early - timedelta(days=3))
    report[DAY - timedelta(days=1)] = [record("40", when=early - timedelta(seconds=40))]
    assert counts(calls.reconcile_day(DAY)) == (0, 0, 0, 1)
    call.refresh_from_db()
    assert call.status == Call.Status.NOT_PLACED


def test_a_row_near_midnight_stays_unknown_when_the_next_report_fails(report):
    late = datetime(2025, 3, 14, 23, 55, tzinfo=PROVIDER_TZ)
    near = local(None, when=late, status=Call.Status.UNKNOWN)
    inside = local(None, when=NOON, status=Call.Status.UNKNOWN)
    report[DAY + timedelta(days=1)] = TransportError("get/ daily: HTTP 500")
    assert counts(calls.reconcile_day(DAY)) == (0, 0, 0, 1)
    near.refresh_from_db()
    inside.refresh_from_db()
    assert (near.status, inside.status) == (Call.Status.UNKNOWN, Call.Status.NOT_PLACED)


@pytest.mark.parametrize(
    "cut",
    [
        DailyReport(rows=2),  # "rows": "2" and no "data"
        DailyReport(rows=None),  # neither "rows" nor "data"
        DailyReport([record("5", number="79990000002")], rows=2),  # fewer than announced
        DailyReport([record("5", number="79990000002")], rows=2, skipped=1),  # one unreadable
    ],
    ids=["rows-without-data", "nothing", "fewer-than-rows", "one-unreadable"],
)
def test_an_incomplete_report_marks_nothing(report, signals, cut):
    """A call missing from a cut report may have been placed: it stays unknown."""
    unknown = local(None, status=Call.Status.UNKNOWN, error_code="outcome_unknown")
    report[DAY] = cut
    result = calls.reconcile_day(DAY)
    assert result.not_placed == 0
    assert not result.complete
    assert result.skipped == cut.skipped
    # What could be read is still used: the readable record became a row.
    assert result.created == len(cut)
    unknown.refresh_from_db()
    assert (unknown.status, unknown.error_code) == (Call.Status.UNKNOWN, "outcome_unknown")
    assert signals == []


def test_a_complete_report_still_marks_what_it_lacks(report):
    unknown = local(None, status=Call.Status.UNKNOWN)
    report[DAY] = DailyReport([record("5", number="79990000002")], rows=1)
    result = calls.reconcile_day(DAY)
    assert (result.complete, result.not_placed) == (True, 1)
    unknown.refresh_from_db()
    assert (unknown.status, unknown.error_code) == (Call.Status.NOT_PLACED, "not_in_daily")


def test_a_row_near_midnight_stays_unknown_when_the_next_report_is_incomplete(report):
    late = datetime(2025, 3, 14, 23, 55, tzinfo=PROVIDER_TZ)
    near = local(None, when=late, status=Call.Status.UNKNOWN)
    inside = local(None, when=NOON, status=Call.Status.UNKNOWN)
    report[DAY] = DailyReport(rows=0)
    report[DAY + timedelta(days=1)] = DailyReport(rows=3)
    assert counts(calls.reconcile_day(DAY)) == (0, 0, 0, 1)
    near.refresh_from_db()
    inside.refresh_from_db()
    assert (near.status, inside.status) == (Call.Status.UNKNOWN, Call.Status.NOT_PLACED)


def test_a_missing_data_is_not_a_quiet_day_end_to_end(report, voicepassword_emulator):
    """Through the real client: ``{"result": "ok", "rows": "1"}`` marks nothing."""
    unknown = local(None, status=Call.Status.UNKNOWN)
    gateway = HttpGateway(VoicePasswordClient("emulator-key", get_retries=0))
    voicepassword_emulator.requests_mock.replace(
        "POST", DEFAULT_BASE_URL + "get/", json={"result": "ok", "rows": "1"}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reconcile, "get_gateway", lambda: gateway)
        result = calls.reconcile_day(DAY)
    assert (result.provider_rows, result.complete, result.not_placed) == (0, False, 0)
    unknown.refresh_from_db()
    assert unknown.status == Call.Status.UNKNOWN


# --------------------------------------------------------------------------- the whole run


def mixed_day(count: int) -> list[CallRecord]:
    """``count`` records: a half known here (stale), a few unknown outcomes, the rest new."""
    records = []
    for index in range(count):
        when = NOON + timedelta(seconds=index)
        number = f"7999{index:07d}"
        records.append(record(str(100 + index), number, when, "Успешно"))
        if index % 2 == 0:
            local(str(100 + index), number, when, Call.Status.PLACED, price=Decimal("0.30"))
        elif index % 10 == 1:
            local(None, number, when, Call.Status.UNKNOWN)
    local(None, "79997777777", NOON, Call.Status.UNKNOWN)
    return records


def test_a_second_run_changes_nothing(report, signals):
    report[DAY] = mixed_day(40)
    first = calls.reconcile_day(DAY)
    assert counts(first) == (16, 20, 4, 1)
    assert len(signals) == 25
    rows = list(Call.objects.order_by("pk").values())
    signals.clear()
    second = calls.reconcile_day(DAY)
    assert second == calls.ReconcileReport(DAY, 40, 0, 0, 0, 0)
    assert list(Call.objects.order_by("pk").values()) == rows
    assert signals == []


def test_signals_wait_for_the_commit(report, signals):
    local("1")
    report[DAY] = [record("1")]
    with transaction.atomic():
        calls.reconcile_day(DAY)
        assert signals == []
    assert signals == [("daily", "placed", "answered", "1")]


def test_nothing_is_kept_when_the_run_fails(report, monkeypatch, signals):
    local("1")
    report[DAY] = [record("1"), record("2", number="79990000002")]

    def fail(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(reconcile, "_update", fail)
    with pytest.raises(RuntimeError):
        calls.reconcile_day(DAY)
    assert list(Call.objects.values_list("provider_id", "status")) == [("1", "placed")]
    assert signals == []


def test_the_fallback_reads_ids_in_batches(report, monkeypatch):
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL reads every id in one statement")
    report[DAY] = mixed_day(60)
    monkeypatch.setattr(reconcile, "FALLBACK_BATCH", 4)
    # SQLite itself refuses a statement of more than 25 parameters now.
    connection.ensure_connection()
    sqlite = connection.connection
    limit = sqlite.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 25)
    try:
        result = calls.reconcile_day(DAY)
    finally:
        sqlite.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    assert counts(result) == (24, 30, 6, 1)
    assert Call.objects.filter(status=Call.Status.ANSWERED).count() == 60


@pytest.mark.postgres
def test_the_query_count_does_not_grow_with_the_rows(report):
    def queries(count: int) -> list[str]:
        Call.objects.all().delete()
        report[DAY] = mixed_day(count)
        with CaptureQueriesContext(connection) as captured:
            result = calls.reconcile_day(DAY)
        assert all(counts(result))
        words = [query["sql"].split()[0] for query in captured.captured_queries]
        # Django 6 logs the transaction's BEGIN and COMMIT too; 5.2 does not.
        return [word for word in words if word not in ("BEGIN", "COMMIT")]

    small, large = queries(10), queries(1000)
    # The day's lock, the abandoned pending rows made unknown, the rows read
    # (by id, UNION ALL the candidates), one INSERT of the new rows, one
    # UPDATE of the changed ones.
    assert small == large == ["SELECT", "UPDATE", "(SELECT", "INSERT", "UPDATE"]


@pytest.mark.postgres
def test_a_row_moved_meanwhile_is_left_to_its_mover(report, monkeypatch, signals):
    call = local("1", status=Call.Status.PLACED)
    report[DAY] = [record("1", state="Дозвон")]
    read = reconcile._read

    def read_then_callback(*args, **kwargs):
        rows = read(*args, **kwargs)
        # A callback lands between the SELECT and the UPDATE.
        Call.objects.filter(pk=call.pk).update(status=Call.Status.ANSWERED)
        return rows

    monkeypatch.setattr(reconcile, "_read", read_then_callback)
    assert counts(calls.reconcile_day(DAY)) == (0, 0, 0, 0)
    call.refresh_from_db()
    assert call.status == Call.Status.ANSWERED
    assert signals == []


def test_ids_with_a_comma_are_found_all_the_same(report):
    # Request ids are digits, so on PostgreSQL they travel as one string split
    # on commas; a gateway of one's own may answer others, which then go as an
    # array: each must find its own row, and only it.
    odd, plain = local("7,8"), local("7", "79990000002")
    report[DAY] = [
        replace(record("1"), id="7,8"),
        record("7", "79990000002", state="Занято"),
        record("8", "79990000003"),
    ]
    assert counts(calls.reconcile_day(DAY)) == (1, 2, 0, 0)
    odd.refresh_from_db()
    plain.refresh_from_db()
    assert (odd.status, plain.status) == (Call.Status.ANSWERED, Call.Status.BUSY)
    assert Call.objects.get(provider_id="8").number == "79990000003"


def test_statuses_travel_as_one_string_when_they_can():
    assert reconcile._words(["placed", "answered"]) == (
        "string_to_array(%s, ',')::varchar[]",
        "placed,answered",
    )
    # A word with a comma, or a lone empty one (which would split into no
    # element at all), goes as an array.
    assert reconcile._words(["a,b", "c"]) == ("%s::varchar[]", ["a,b", "c"])
    assert reconcile._words([""]) == ("%s::varchar[]", [""])


def test_a_receiver_connected_while_the_run_wrote_gets_whole_calls(report, monkeypatch):
    # On PostgreSQL the rows are read lean and the UPDATE returns every column
    # only when the signal has receivers: one connected after it still gets a
    # whole Call, read for it.
    row = local("1", channel=Call.Channel.VOICE_CALL, state_label="Дозвон")
    report[DAY] = [record("1", state="Успешно", price="0.50")]
    seen: list[tuple[Any, ...]] = []

    def on_changed(sender, call, old_status, new_status, source, **kwargs):
        seen.append((call.pk, call.channel, call.number, call.status, call.price, old_status))

    update = reconcile._update

    def update_then_connect(*args, **kwargs):
        written = update(*args, **kwargs)
        call_status_changed.connect(on_changed)
        return written

    monkeypatch.setattr(reconcile, "_update", update_then_connect)
    try:
        calls.reconcile_day(DAY)
    finally:
        call_status_changed.disconnect(on_changed)
    assert seen == [
        (row.pk, "voice_call", row.number, "answered", Decimal("0.5000"), "placed"),
    ]


# --------------------------------------------------------------------------- the emulator


def test_a_day_with_the_emulator(voicepassword_emulator, monkeypatch, signals):
    """The realistic path: calls placed here and elsewhere, the provider's own daily report."""
    emulated = voicepassword_emulator
    with override_settings(VOICEPASSWORD={"API_KEY": "emulator-key"}):
        reset_gateway()
        try:
            placed = calls.place_flash_call("79990000003")  # not answered, in the end
            with pytest.raises(OutcomeUnknownError):
                calls.place_flash_call("79990000034")  # placed, but the answer was lost
            lost = Call.objects.get(number="79990000034")
            never = Call.objects.create(
                channel=Call.Channel.VOICE_CALL, number="79990000005", status=Call.Status.UNKNOWN
            )
            # Calls placed from somewhere else: the provider's dashboard, another site.
            with VoicePasswordClient("emulator-key", base_url=DEFAULT_BASE_URL) as other:
                voice = other.voice_call("79990000002", code="1234")
                other.sms(voice.id)
            emulated.advance(60)
            day = emulated.last_call().created_at.date()
            # Reconciled two days later: the day is over, every record settled.
            later = timezone.now() + timedelta(days=2)
            monkeypatch.setattr(timezone, "now", lambda: later)
            result = calls.reconcile_day(day)
            again = calls.reconcile_day(day)
        finally:
            reset_gateway()
    assert result == calls.ReconcileReport(day, 4, 2, 1, 1, 1)
    assert again == calls.ReconcileReport(day, 4, 0, 0, 0, 0)
    placed.refresh_from_db()
    lost.refresh_from_db()
    never.refresh_from_db()
    assert (placed.status, placed.state_label) == (Call.Status.NO_ANSWER, "Нет ответа")
    assert lost.provider_id == emulated.last_call("79990000034").id
    assert lost.status == Call.Status.ANSWERED
    assert (never.status, never.error_code) == (Call.Status.NOT_PLACED, "not_in_daily")
    outside = Call.objects.filter(number="79990000002").order_by("pk")
    assert [(c.channel, c.status) for c in outside] == [
        (Call.Channel.VOICE_CALL, Call.Status.BUSY),
        (Call.Channel.SMS, Call.Status.DELIVERED),
    ]
    assert sorted(signal[1:3] for signal in signals if signal[0] == "daily") == [
        ("placed", "no_answer"),
        ("unknown", "answered"),
        ("unknown", "not_placed"),
    ]


def test_an_abandoned_pending_row_is_settled_not_duplicated(report):
    # A server killed between writing the row and recording the answer leaves
    # it pending; the provider placed the call all the same.
    placed = timezone.now() - timedelta(hours=1)
    call = Call.objects.create(
        channel=Call.Channel.FLASH_CALL, number="79990000001", created_at=placed
    )
    young = Call.objects.create(channel=Call.Channel.FLASH_CALL, number="79990000002")
    record = CallRecord(
        id="900001",
        number="79990000001",
        date=placed + timedelta(seconds=5),
        duration=timedelta(seconds=1),
        price=Decimal("0.35"),
        state=CallState.ANSWERED,
        state_label="Успешно",
        service="Flash Call",
        raw={},
    )
    report[placed.astimezone(PROVIDER_TZ).date()] = [record]
    calls.reconcile_day(placed.astimezone(PROVIDER_TZ).date())
    call.refresh_from_db()
    young.refresh_from_db()
    assert (call.provider_id, call.status) == ("900001", Call.Status.ANSWERED)
    assert Call.objects.filter(provider_id="900001").count() == 1
    assert young.status == Call.Status.PENDING  # its send may still be under way
