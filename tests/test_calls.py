"""Call history services: rows before requests, errors on rows, monotonic states."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.test import override_settings
from django.utils import timezone

from django_voicepassword import calls
from django_voicepassword.exceptions import (
    NumberNotValidError,
    OutcomeUnknownError,
    TransportError,
)
from django_voicepassword.gateways import HttpGateway
from django_voicepassword.gateways.base import get_gateway, reset_gateway
from django_voicepassword.models import Call, CallbackEvent, Challenge
from django_voicepassword.phone import InvalidPhoneNumber
from django_voicepassword.signals import call_placed, call_status_changed

pytestmark = pytest.mark.django_db(transaction=True)

LOCMEM = "django_voicepassword.gateways.LocmemGateway"
EMULATED = {
    "API_KEY": "emulator-key",
    "CALLBACK_BASE_URL": "https://site.example",
}


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator):
    with override_settings(VOICEPASSWORD=EMULATED):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def signals():
    received: list[tuple[str, ...]] = []

    def on_placed(sender, call, **kwargs):
        received.append(("placed", call.pk))

    def on_changed(sender, call, old_status, new_status, source, **kwargs):
        received.append((source, old_status, new_status))

    call_placed.connect(on_placed)
    call_status_changed.connect(on_changed)
    yield received
    call_placed.disconnect(on_placed)
    call_status_changed.disconnect(on_changed)


def test_a_placed_call_is_recorded_with_the_providers_answer(signals, emulated):
    call = calls.place_flash_call("+7 999 000-00-01")
    call.refresh_from_db()
    assert call.status == Call.Status.PLACED
    assert call.number == "79990000001"
    assert call.provider_id == emulated.sends()[0].call_id
    assert call.price == Decimal("0.35")
    assert signals == [("placed", call.pk), ("send", "pending", "placed")]
    sent = emulated.sends()[0]
    assert sent.callback_url.startswith("https://site.example/voicepassword/callback/")


def test_the_full_loop_through_the_callback(client, emulated):
    call = calls.place_voice_call("79990000002", code="1234")
    [delivery] = emulated.deliver_callbacks(client)
    assert delivery.status == 200
    call.refresh_from_db()
    assert call.status == Call.Status.BUSY
    assert call.state_label == "BUSY"
    event = CallbackEvent.objects.get()
    assert event.outcome == CallbackEvent.Outcome.APPLIED
    assert event.call == call


def test_an_invalid_number_writes_nothing():
    with pytest.raises(InvalidPhoneNumber):
        calls.place_flash_call("+7 800 000-00-00")
    assert not Call.objects.exists()


def test_a_provider_error_is_stored_on_the_row_and_raised(signals):
    with pytest.raises(NumberNotValidError):
        calls.place_flash_call("79990000020")
    call = Call.objects.get()
    assert call.status == Call.Status.NOT_PLACED
    assert call.error_code == "number_not_valid"
    assert call.provider_id is None
    assert signals == [("send", "pending", "not_placed")]


def test_an_unknown_outcome_is_left_for_reconciliation(emulated):
    with pytest.raises(OutcomeUnknownError):
        calls.place_flash_call("79990000034")
    call = Call.objects.get()
    assert call.status == Call.Status.UNKNOWN
    assert len(emulated.sends("79990000034")) == 1


def test_a_request_that_never_left_is_not_placed(monkeypatch):
    def refused(*args, **kwargs):
        raise requests.exceptions.ConnectTimeout("connect timed out")

    gateway = get_gateway()
    assert isinstance(gateway, HttpGateway)
    monkeypatch.setattr(gateway.client._session, "post", refused)
    with pytest.raises(TransportError) as caught:
        calls.place_flash_call("79990000001")
    assert not isinstance(caught.value, OutcomeUnknownError)
    call = Call.objects.get()
    assert (call.status, call.error_code) == (Call.Status.NOT_PLACED, "transport_error")


@pytest.mark.parametrize("number", ["79990000031", "79990000037"])
def test_a_5xx_without_a_refusal_is_an_unknown_outcome(emulated, number):
    """HTTP 500/502 may follow a placed call (``79990000037`` is placed): not "not placed"."""
    with pytest.raises(OutcomeUnknownError):
        calls.place_flash_call(number)
    call = Call.objects.get()
    assert (call.status, call.error_code) == (Call.Status.UNKNOWN, "outcome_unknown")
    assert call.provider_id is None
    assert len(emulated.sends(number)) == 1  # never retried
    placed = emulated.last_call(number)
    assert (placed is not None) is (number == "79990000037")


def test_refresh_reads_the_providers_state(emulated):
    call = calls.place_flash_call("79990000003")
    emulated.advance(5)
    calls.refresh_call(call)
    call.refresh_from_db()
    assert call.status == Call.Status.NO_ANSWER
    assert call.state_label == "Нет ответа"


def test_sms_fallback_confirms_the_state_and_is_sent_once(emulated):
    call = calls.place_flash_call("79990000003")
    emulated.advance(5)
    sms = calls.send_sms(call)
    assert sms.parent == call
    assert sms.channel == Call.Channel.SMS
    assert sms.status == Call.Status.PLACED
    with pytest.raises(calls.SmsFallbackError) as refused:
        calls.send_sms(call)
    assert refused.value.code == "already_sent"
    assert [e.kind for e in emulated.sends()] == ["flash_call", "sms"]
    # The document lists callback_url for every send/, the SMS's included: its
    # states go to the call's URL, where the view takes them by request id.
    flash, sent = emulated.sends()
    assert sent.payload is not None
    assert flash.payload is not None
    assert sent.payload["callback_url"] == flash.payload["callback_url"]
    assert sent.payload["callback_url"].startswith("https://site.example/")


def test_a_broken_configuration_writes_nothing():
    from django_voicepassword.conf import ConfigurationError

    with override_settings(VOICEPASSWORD={}), pytest.raises(ConfigurationError):
        calls.place_flash_call("79990000001")
    assert not Call.objects.exists()


def test_a_record_behind_the_call_changes_nothing(emulated):
    from datetime import timedelta

    from django_voicepassword.client import CallRecord, CallState

    call = calls.place_flash_call("79990000001")
    Call.objects.filter(pk=call.pk).update(
        status=Call.Status.ANSWERED, state_label="ANSWERED", duration=timedelta(seconds=1)
    )
    call.refresh_from_db()
    for state, label in ((CallState.DIALLING, "Дозвон"), (None, "Перезвон")):
        for source in ("callback", "state", "daily"):
            record = CallRecord(
                id=call.provider_id or "",
                number=call.number,
                date=None,
                duration=timedelta(0),
                price=Decimal("9.99"),
                state=state,
                state_label=label,
                service=None,
                raw={},
            )
            assert not calls.apply_record(call, record, source=source)
    call.refresh_from_db()
    assert (call.status, call.state_label, call.duration, call.price) == (
        Call.Status.ANSWERED,
        "ANSWERED",
        timedelta(seconds=1),
        Decimal("0.35"),
    )


@pytest.mark.parametrize("channel", ["sms", "fax"])
def test_place_refuses_what_is_no_call_and_writes_nothing(emulated, channel):
    with pytest.raises(ValueError, match="places flash and voice calls"):
        calls.place(channel, "79990000001")
    assert not Call.objects.exists()
    assert emulated.sends() == []


def test_a_request_id_the_provider_gave_twice_is_left_to_reconciliation(caplog):
    from django.db import IntegrityError

    # The local-memory gateway's provider numbers its requests from 1 again
    # when it restarts: the second call gets the first one's id.
    with override_settings(
        VOICEPASSWORD={"GATEWAY": "django_voicepassword.gateways.LocmemGateway"}
    ):
        reset_gateway()
        first = calls.place_flash_call("79990000001")
        reset_gateway()
        with pytest.raises(IntegrityError):
            calls.place_flash_call("79990000002")
    reset_gateway()
    second = Call.objects.get(number="79990000002")
    assert (second.status, second.error_code, second.provider_id) == (
        Call.Status.UNKNOWN,
        "duplicate_provider_id",
        None,
    )
    first.refresh_from_db()
    assert (first.status, first.provider_id) == (Call.Status.PLACED, "1")
    assert "returned request id 1 twice" in caplog.text


def test_an_sms_gets_no_sms_fallback(emulated):
    call = calls.place_flash_call("79990000003")
    emulated.advance(5)
    sms = calls.send_sms(call)
    with pytest.raises(calls.SmsFallbackError) as refused:
        calls.send_sms(sms)
    assert refused.value.code == "sms"
    assert [e.kind for e in emulated.sends()] == ["flash_call", "sms"]


def test_a_call_without_a_request_id_is_not_asked_about(emulated):
    emulated.set_fault("http500")
    with pytest.raises(OutcomeUnknownError):
        calls.place_flash_call("79990000001")
    emulated.set_fault(None)
    call = Call.objects.get()
    assert call.provider_id is None
    asked = len(emulated.emulator.log)
    assert calls.refresh_call(call) is call
    call.refresh_from_db()
    assert call.status == Call.Status.UNKNOWN
    assert len(emulated.emulator.log) == asked  # no get/ without an id


def test_a_new_challenge_is_stored_with_its_call_and_its_save_signals_are_sent(emulated):
    # calls.place() stores a challenge not stored yet with the call's row (one
    # statement on PostgreSQL), and sends pre_save and post_save as save() does.
    from django.db.models.signals import post_save, pre_save

    seen: list[tuple[str, str, bool | None]] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append((kwargs["signal_name"], sender.__name__, kwargs.get("created")))

    def named(name: str) -> Any:
        return lambda **kwargs: receiver(**kwargs, signal_name=name)

    on_pre, on_post = named("pre"), named("post")
    pre_save.connect(on_pre)
    post_save.connect(on_post)
    try:
        challenge = Challenge(
            number="79990000001",
            channel="flash_call",
            code_length=4,
            expires_at=timezone.now() + timedelta(minutes=5),
            resend_at=timezone.now(),
        )
        call, _result = calls.place("flash_call", "79990000001", challenge=challenge)
    finally:
        pre_save.disconnect(on_pre)
        post_save.disconnect(on_post)

    assert Challenge.objects.filter(pk=challenge.pk).exists()
    assert Call.objects.get(pk=call.pk).challenge_id == challenge.pk
    assert not challenge._state.adding
    assert call.created_at is not None
    assert challenge.created_at is not None
    pres = [entry for entry in seen if entry[0] == "pre"]
    posts = [entry for entry in seen if entry[0] == "post" and entry[2]]
    assert [name for _, name, _ in pres[:2]] == ["Challenge", "Call"]
    assert [name for _, name, _ in posts[:2]] == ["Challenge", "Call"]


@pytest.mark.parametrize(
    "values",
    [
        {"provider_id": "1796171034969", "price": Decimal("0.35"), "status": "placed"},
        {"provider_id": None, "price": Decimal("1.5"), "status": "unknown"},
        {"status": "placed", "updated_at": "now"},
    ],
)
def test_an_update_built_once_is_what_django_sends(values):
    # calls._update_sql keeps the compiler's text per set of fields and only
    # prepares the values: the text and the parameters are Django's own.
    from django.db import connection
    from django.db.models import Q
    from django.db.models.sql import UpdateQuery

    values = {k: (timezone.now() if v == "now" else v) for k, v in values.items()}
    for _ in range(2):  # built, then taken from what was kept
        text, params = calls._update_sql(Call, 42, values, "default")
        query = UpdateQuery(Call)
        query.add_update_values(values)
        query.add_q(Q(pk=42))
        expected_text, expected_params = query.get_compiler("default").as_sql()
        assert text == expected_text
        assert params == tuple(expected_params)
    assert connection.vendor in ("sqlite", "postgresql")
