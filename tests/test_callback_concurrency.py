"""Callbacks delivered at once, and the whole loop over real HTTP.

Concurrent deliveries of one callback must apply once "by database
constraints, not luck" (docs/architecture.md, rules): that needs a database with row
locks and concurrent writers, so those tests run on the service tier's
PostgreSQL (``VOICEPASSWORD_TEST_SERVICES=1``); the same rule without
concurrency runs everywhere in ``test_callbacks.py``.

The end-to-end tests run the emulator's real HTTP server and the site on
pytest-django's ``live_server``: the site places a call through
:class:`~django_voicepassword.gateways.HttpGateway`, and the emulator posts its
callbacks back with ``urllib``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings

from django_voicepassword import calls
from django_voicepassword.callbacks import _turns, callback_url
from django_voicepassword.emulator.core import Emulator
from django_voicepassword.emulator.server import EmulatorServer
from django_voicepassword.gateways import HttpGateway
from django_voicepassword.gateways.base import get_gateway, reset_gateway
from django_voicepassword.models import Call, CallbackEvent, status_rank
from django_voicepassword.signals import call_status_changed
from tests.test_callbacks import CALL_ID, NUMBER, SMS_ID, callback, path_of

Status = Call.Status
Outcome = CallbackEvent.Outcome
THREADS = 50


@pytest.fixture
def changes() -> Iterator[list[tuple[int, str, str]]]:
    """``call_status_changed`` as received, from whichever thread sends it."""
    received: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def on_changed(sender, call, old_status, new_status, source, **kwargs):
        with lock:
            received.append((call.pk, old_status, new_status))

    call_status_changed.connect(on_changed)
    yield received
    call_status_changed.disconnect(on_changed)


class Overlap:
    """The most callback statements seen in flight at once, across the delivering threads.

    Installed on each thread's connection: if the app serialised the deliveries
    of one call inside the process, this would never exceed one, and a test
    that means to exercise the database's own guarantees would prove nothing.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __call__(self, execute, sql, params, many, context):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            # Hold the statement a moment, so that overlap does not depend on
            # how the two cores happen to schedule fifty threads.
            time.sleep(0.005)
            return execute(sql, params, many, context)
        finally:
            with self.lock:
                self.now -= 1


def at_once(
    bodies: list[dict[str, Any]], path: str, overlap: Overlap | None = None
) -> list[tuple[int, str]]:
    """POST every body from its own thread, all released together; ``(status, outcome)``."""
    barrier = threading.Barrier(len(bodies))
    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def deliver(body: dict[str, Any]) -> None:
        try:
            client = Client()
            with connection.execute_wrapper(overlap) if overlap else contextlib.nullcontext():
                barrier.wait(timeout=10)
                answer = client.post(path, data=json.dumps(body), content_type="application/json")
            with lock:
                results.append((answer.status_code, answer.json().get("outcome", "")))
        except BaseException as error:  # reported by the test, not lost in a thread
            with lock:
                errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return results


@pytest.fixture(autouse=True)
def room_for_every_delivery() -> Iterator[None]:
    """These tests post more callbacks to one URL than CALLBACK_MAX_EVENTS keeps."""
    with override_settings(VOICEPASSWORD={"CALLBACK_MAX_EVENTS": 10_000}):
        yield


@pytest.fixture
def placed() -> tuple[Call, Call]:
    """A flash call and its SMS fallback, both placed (committed: transactional tests)."""
    call = Call.objects.create(
        channel=Call.Channel.FLASH_CALL, number=NUMBER, provider_id=CALL_ID, status=Status.PLACED
    )
    sms = Call.objects.create(
        channel=Call.Channel.SMS,
        number=NUMBER,
        provider_id=SMS_ID,
        parent=call,
        status=Status.PLACED,
    )
    return call, sms


def applied_states(call: Call) -> Counter[str]:
    """How many times each reported state was applied to ``call``, by the stored events."""
    events = CallbackEvent.objects.filter(call=call, outcome=Outcome.APPLIED)
    return Counter(events.values_list("state", flat=True))


# These tests run with no receiver of call_status_changed: the app then takes no
# turn of its own, so the fifty deliveries meet only in the database, and what
# is asserted is what the database holds afterwards. Overlap proves they met.


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_deliveries_of_one_callback_at_once_apply_once(placed):
    call, _sms = placed
    assert not call_status_changed.has_listeners(Call)
    overlap = Overlap()
    results = at_once([callback("BUSY")] * THREADS, path_of(call), overlap)
    assert overlap.most > 1
    assert Counter(results) == {(200, "applied"): 1, (200, "duplicate"): THREADS - 1}
    outcomes = Counter(CallbackEvent.objects.values_list("outcome", flat=True))
    assert outcomes == {Outcome.APPLIED: 1, Outcome.DUPLICATE: THREADS - 1}
    assert set(CallbackEvent.objects.values_list("call", flat=True)) == {call.pk}
    call.refresh_from_db()
    assert (call.status, call.state_label) == (Status.BUSY, "BUSY")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_sms_states_at_once_end_in_the_final_one(placed):
    call, sms = placed
    states = ["QUEUED", "SEND", "DELIVERED", "Передано шлюзу", "Отправлено"]
    bodies = [callback(states[i % len(states)], id=SMS_ID) for i in range(THREADS)]
    overlap = Overlap()
    results = at_once(bodies, path_of(call), overlap)
    assert overlap.most > 1
    assert {status for status, _outcome in results} == {200}
    sms.refresh_from_db()
    assert (sms.status, sms.state_label) == (Status.DELIVERED, "DELIVERED")
    assert CallbackEvent.objects.filter(call=sms).count() == THREADS
    applied = applied_states(sms)
    assert all(count == 1 for count in applied.values()), applied
    assert applied["DELIVERED"] == 1
    # Whatever else was applied came before DELIVERED and moved the SMS forward:
    # at most one of each rank below it (queued, then sent).
    assert sum(applied[state] for state in ("QUEUED", "Передано шлюзу")) <= 1
    assert sum(applied[state] for state in ("SEND", "Отправлено")) <= 1
    assert CallbackEvent.objects.filter(call=call).count() == 0
    call.refresh_from_db()
    assert call.status == Status.PLACED  # the parent is untouched


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_call_states_at_once_end_answered_once(placed):
    call, _sms = placed
    states = ["Дозвон", "DIALLING", "ANSWERED", "Успешно", "Дозвон"]
    bodies = [callback(states[i % len(states)]) for i in range(THREADS)]
    overlap = Overlap()
    results = at_once(bodies, path_of(call), overlap)
    assert overlap.most > 1
    assert {status for status, _outcome in results} == {200}
    call.refresh_from_db()
    assert call.status == Status.ANSWERED
    applied = applied_states(call)
    assert sum(applied[state] for state in ("ANSWERED", "Успешно")) == 1
    assert sum(applied[state] for state in ("Дозвон", "DIALLING")) <= 1
    assert CallbackEvent.objects.filter(call=call).count() == THREADS


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_a_receiver_signals_follow_the_commits(placed, changes):
    """A receiver hears each applied change once, forward, in the order of the commits.

    With a receiver the deliveries of one call take turns inside the process
    (``callbacks._turn``) from the change to its signal, so that threads cannot
    send a call's signals out of order; the database's guarantees are tested
    above without it.
    """
    call, sms = placed
    states = ["QUEUED", "SEND", "DELIVERED", "Передано шлюзу", "Отправлено"]
    bodies = [callback(states[i % len(states)], id=SMS_ID) for i in range(THREADS)]
    assert {status for status, _outcome in at_once(bodies, path_of(call))} == {200}
    sms.refresh_from_db()
    assert sms.status == Status.DELIVERED
    applied = applied_states(sms)
    assert len(changes) == sum(applied.values())
    assert all(pk == sms.pk for pk, _old, _new in changes)
    assert all(status_rank(new) > status_rank(old) for _pk, old, new in changes)
    assert [old for _pk, old, _new in changes][1:] == [new for _pk, _old, new in changes][:-1]
    assert changes[-1][2] == Status.DELIVERED
    assert not _turns  # the turns the deliveries took are gone with them


# --------------------------------------------------------------------------- over HTTP

API_KEY = "callbacks-e2e-key"


@pytest.fixture
def site_url(request, settings) -> str:
    """pytest-django's ``live_server``, able to serve: its static-files handler
    needs a ``STATIC_URL``, which the test settings leave unset, when it starts."""
    settings.STATIC_URL = "/static/"
    return str(request.getfixturevalue("live_server").url)


@pytest.fixture
def provider(site_url) -> Iterator[EmulatorServer]:
    """The emulator over HTTP, and the site configured to call it and be called back."""
    with EmulatorServer(Emulator(api_key=API_KEY, callback_delay=0.3)) as server:
        site = {"API_KEY": API_KEY, "API_URL": server.base_url, "CALLBACK_BASE_URL": site_url}
        with override_settings(VOICEPASSWORD=site):
            reset_gateway()
            try:
                assert isinstance(get_gateway(), HttpGateway)  # the real client, over HTTP
                yield server
            finally:
                reset_gateway()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_a_call_reaches_its_final_state_through_the_callback(provider):
    call = calls.place_flash_call("79990000002")
    assert call.status == Status.PLACED
    sent = provider.emulator.sends("79990000002")
    assert len(sent) == 1
    assert sent[0].callback_url == provider_url(call)

    wait_for(lambda: Call.objects.get(pk=call.pk).status == Status.BUSY)
    wait_for(lambda: len(provider.emulator.deliveries) == 1)  # recorded after the answer
    call.refresh_from_db()
    assert call.state_label == "BUSY"
    assert call.price == Decimal("0.35")
    assert call.provider_date is not None
    event = CallbackEvent.objects.get()
    assert (event.call, event.outcome, event.state) == (call, Outcome.APPLIED, "BUSY")
    assert event.remote_addr == "127.0.0.1"
    assert [delivery.status for delivery in provider.emulator.deliveries] == [200]


@pytest.mark.django_db(transaction=True)
def test_an_sms_fallbacks_callbacks_reach_the_sms(provider):
    call = calls.place_flash_call("79990000003")
    wait_for(lambda: Call.objects.get(pk=call.pk).status == Status.NO_ANSWER)
    sms = calls.send_sms(call)
    wait_for(lambda: Call.objects.get(pk=sms.pk).status == Status.DELIVERED)
    wait_for(lambda: len(provider.emulator.deliveries) == 4)  # the call's, and the SMS's three

    sms.refresh_from_db()
    assert sms.parent_id == call.pk
    assert sms.price == Decimal("3.30")
    events = CallbackEvent.objects.filter(call=sms).order_by("received_at", "pk")
    assert [(e.state, e.outcome) for e in events] == [
        ("QUEUED", Outcome.APPLIED),
        ("SEND", Outcome.APPLIED),
        ("DELIVERED", Outcome.APPLIED),
    ]
    assert {e.provider_id for e in events} == {sms.provider_id}
    # The SMS's callbacks came to the call's URL: the request has none of its own.
    urls = {delivery.callback.url for delivery in provider.emulator.deliveries}
    assert urls == {provider_url(call)}
    assert {delivery.status for delivery in provider.emulator.deliveries} == {200}
    call.refresh_from_db()
    assert call.status == Status.NO_ANSWER


def provider_url(call: Call) -> str:
    url = callback_url(call)
    assert url is not None
    return url
