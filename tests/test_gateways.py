"""Gateways: chosen by settings, shared, and all speaking the client's protocol."""

from __future__ import annotations

import io
from datetime import date

import pytest
from django.test import override_settings

import django_voicepassword
from django_voicepassword.client import CallState, VoicePasswordClient
from django_voicepassword.conf import ConfigurationError
from django_voicepassword.exceptions import (
    CodeNotValidError,
    IdNotFoundError,
    NumberNotValidError,
    OutcomeUnknownError,
)
from django_voicepassword.gateways import (
    BaseGateway,
    ConsoleGateway,
    HttpGateway,
    LocmemGateway,
    get_gateway,
)
from django_voicepassword.gateways.base import reset_gateway

LOCMEM = {"GATEWAY": "django_voicepassword.gateways.LocmemGateway"}
KEY = "vp-test-key-DO-NOT-LEAK"


@pytest.fixture(autouse=True)
def _fresh_gateway_and_outbox():
    reset_gateway()
    django_voicepassword.outbox = []
    yield
    reset_gateway()


def test_get_gateway_builds_the_configured_class_once():
    with override_settings(VOICEPASSWORD=LOCMEM):
        gateway = get_gateway()
        assert isinstance(gateway, LocmemGateway)
        assert get_gateway() is gateway


def test_get_gateway_is_rebuilt_when_the_setting_changes():
    with override_settings(VOICEPASSWORD=LOCMEM):
        locmem = get_gateway()
    with override_settings(
        VOICEPASSWORD={"GATEWAY": "django_voicepassword.gateways.ConsoleGateway"}
    ):
        assert isinstance(get_gateway(), ConsoleGateway)
    assert get_gateway() is not locmem


def test_get_gateway_refuses_a_class_that_is_not_a_gateway():
    with (
        override_settings(VOICEPASSWORD={"GATEWAY": "django_voicepassword.conf.Problem"}),
        pytest.raises(ConfigurationError, match="BaseGateway"),
    ):
        get_gateway()


def test_http_gateway_is_configured_from_settings():
    settings = {
        "API_KEY": KEY,
        "API_URL": "http://127.0.0.1:8765/api/voice-password/",
        "AUTH_MODE": "body",
        "CONNECT_TIMEOUT": 1.5,
        "READ_TIMEOUT": 4.0,
        "GET_RETRIES": 0,
    }
    with override_settings(VOICEPASSWORD=settings):
        gateway = get_gateway()
    assert isinstance(gateway, HttpGateway)
    assert KEY not in repr(gateway)
    client = gateway.client
    assert client.base_url == settings["API_URL"]
    assert client.auth_mode == "body"
    assert client.timeout == (1.5, 4.0)
    assert client.get_retries == 0


def test_http_gateway_without_a_key_is_a_configuration_error():
    with override_settings(VOICEPASSWORD={}), pytest.raises(ConfigurationError, match="API_KEY"):
        get_gateway()


def test_http_gateway_speaks_to_the_provider(voicepassword_emulator):
    gateway = HttpGateway(
        VoicePasswordClient("emulator-key", base_url=voicepassword_emulator.base_url)
    )
    sent = gateway.flash_call("79990000001", code="1234")
    assert sent.code == "1234"
    assert gateway.voice_call("79990000001", code="4321", repeat=True).code == "4321"
    assert gateway.sms(sent.id).number == "79990000001"
    assert gateway.state(sent.id).id == sent.id
    placed = gateway.state(sent.id).date
    assert placed is not None
    assert {r.id for r in gateway.daily(placed.date())} >= {sent.id}
    assert gateway.balance().currency == "Rub"
    assert [e.kind for e in voicepassword_emulator.sends()] == ["flash_call", "voice_call", "sms"]
    gateway.close()


def test_locmem_records_what_would_be_sent_with_the_code():
    with override_settings(VOICEPASSWORD=LOCMEM):
        gateway = get_gateway()
        flash = gateway.flash_call("79990000001")
        voice = gateway.voice_call("79990000002", code="0042", repeat=True)
        sms = gateway.sms(flash.id)
    kinds = [(m.kind, m.number) for m in django_voicepassword.outbox]
    assert kinds == [
        ("flash_call", "79990000001"),
        ("voice_call", "79990000002"),
        ("sms", "79990000001"),
    ]
    first, second, third = django_voicepassword.outbox
    assert first.payload == {"number": "79990000001", "capacity": "4"}
    assert first.code == flash.code
    assert flash.code is not None
    assert len(flash.code) == 4
    assert flash.code.isdigit()
    assert second.payload == {"number": "79990000002", "voice": {"code": "0042", "repeat": "1"}}
    assert second.result is voice
    assert third.payload == {"sms": {"id": flash.id}}
    assert third.code == flash.code
    assert sms.price > 0


def test_locmem_answers_get_requests_from_its_emulator():
    gateway = LocmemGateway()
    start = gateway.balance().amount
    sent = gateway.flash_call("79990000002", code="1234")
    assert gateway.balance().amount == start - sent.price
    record = gateway.state(sent.id)
    assert record.state is CallState.BUSY
    assert record.date is not None
    assert [r.id for r in gateway.daily(record.date.date())] == [sent.id]
    assert gateway.daily(date(2000, 1, 1)) == []


def test_locmem_refuses_what_the_provider_would_refuse():
    gateway = LocmemGateway()
    with pytest.raises(CodeNotValidError) as refused:
        gateway.flash_call("79990000001", code="12")
    assert refused.value.local
    with pytest.raises(NumberNotValidError):
        gateway.flash_call("79990000020")
    with pytest.raises(IdNotFoundError):
        gateway.state("999999")
    assert django_voicepassword.outbox == []


def test_offline_gateways_honour_fault_numbers():
    gateway = LocmemGateway()
    with pytest.raises(OutcomeUnknownError):
        gateway.flash_call("79990000034")  # dropped after the request was read
    assert len(gateway.emulator.sends("79990000034")) == 1


def test_console_prints_the_request_and_places_nothing():
    stream = io.StringIO()
    gateway = ConsoleGateway(stream=stream)
    sent = gateway.flash_call("79990000001", code="5678", callback_url="https://example.com/cb/")
    line = stream.getvalue()
    assert line.startswith("[voicepassword] flash_call to 79990000001: ")
    assert '"flashcall": {"code": "5678"}' in line
    assert f"-> id {sent.id}, code 5678" in line
    assert "emulator-key" not in line
    assert django_voicepassword.outbox == []


def test_console_writes_to_standard_output_by_default(capsys):
    ConsoleGateway().voice_call("79990000001", code="1111")
    assert "[voicepassword] voice_call to 79990000001" in capsys.readouterr().out


def test_every_gateway_is_a_base_gateway():
    for klass in (HttpGateway, ConsoleGateway, LocmemGateway):
        assert issubclass(klass, BaseGateway)
