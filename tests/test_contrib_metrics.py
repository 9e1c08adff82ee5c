"""contrib.metrics: the counters after a run of logins on the emulator, bounded labels, spans.

The metrics are scraped through the app's own view, as Prometheus would, and
compared before and after: the counters are process-wide, so each test checks
what its own run added. The multi-process set-up under gunicorn is in
``test_contrib_metrics_gunicorn.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import responses
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import include, path
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from django_voicepassword import calls, ratelimit, verification
from django_voicepassword.callbacks import callback_url
from django_voicepassword.client import CallState, VoicePasswordClient
from django_voicepassword.contrib.metrics import prometheus
from django_voicepassword.contrib.metrics.apps import MetricsConfig
from django_voicepassword.contrib.metrics.views import metrics_view
from django_voicepassword.exceptions import APIError, TransportError
from django_voicepassword.gateways import HttpGateway, tracing
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Call, CallbackEvent
from django_voicepassword.signals import (
    callback_received,
    limit_exceeded,
    login_failed,
    provider_request,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

urlpatterns = [
    path("voicepassword/", include("django_voicepassword.urls")),
    path("metrics/", metrics_view),
]

ROOT = Path(__file__).resolve().parent.parent
START = "/voicepassword/api/challenges/"
BUDGET = Decimal("100.00")
EMULATED: dict[str, Any] = {
    "API_KEY": "emulator-key",
    "CREATE_USERS": True,
    "CALLBACK_BASE_URL": "http://testserver",
    "DAILY_BUDGET": BUDGET,
    # Every login of the run comes from one test client: only the number is limited.
    "LIMITS": {"number": "1/h"},
}
ANSWERED = "79990000001"
NO_ANSWER = "79990000003"
REFUSED = "79990000022"  # number_in_spam_list
HTTP500 = "79990000031"  # HTTP 500 to a send/: its outcome is unknown (never retried)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

#: The spans of the provider requests, kept in memory. OpenTelemetry lets the
#: global tracer provider be set once per process, so it is set once here.
EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture(autouse=True)
def counting() -> Iterator[None]:
    """The receivers connected, as the app's ready() does; the limit counters empty."""
    prometheus.connect()
    _forget_counters()
    yield
    prometheus.disconnect()
    _forget_counters()


def _forget_counters() -> None:
    keys = getattr(cache, "_cache", None)
    if isinstance(keys, dict):  # the local-memory cache: drop this app's keys only
        for key in [k for k in keys if ":voicepassword:" in k]:
            cache.delete(key.split(":", 2)[2])
    else:
        client = cache._cache.get_client()  # type: ignore[attr-defined]
        for key in client.scan_iter(match=cache.make_key("voicepassword:*")):
            client.delete(key)


@pytest.fixture
def emulated(voicepassword_emulator, monkeypatch):
    # The pause that makes a number without an account as slow as a call.
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    with override_settings(VOICEPASSWORD=EMULATED):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if trace.get_tracer_provider() is not _PROVIDER:
        trace.set_tracer_provider(_PROVIDER)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def scrape(client: Client) -> tuple[str, Samples]:
    response = client.get("/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


class Delta:
    """What a run added to each sample, between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.after, f"no sample {name}{labels}"
        return self.after[key] - self.before.get(key, 0.0)


def post_json(client: Client, url: str, body: Any) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


def login(client: Client, number: str, emulated: Any, *, wrong_first: bool = False) -> int:
    """Start a login and confirm it; the status of the start."""
    started = post_json(client, START, {"number": "+" + number})
    if started.status_code != 201:
        return int(started.status_code)
    challenge = started.json()["id"]
    code = emulated.code_for(number)
    if wrong_first:
        wrong = "1111" if code != "1111" else "2222"
        assert (
            post_json(client, f"{START}{challenge}/confirm/", {"code": wrong}).status_code == 400
        )
    confirmed = post_json(client, f"{START}{challenge}/confirm/", {"code": code})
    assert confirmed.status_code == 200, confirmed.content
    return 201


def test_a_run_of_logins_is_counted_in_every_metric(emulated):
    client = Client()
    _text, before = scrape(client)

    # Two people log in (one mistypes first), one again too soon: the number limit.
    assert login(Client(), ANSWERED, emulated, wrong_first=True) == 201
    assert login(Client(), NO_ANSWER, emulated) == 201
    assert login(Client(), ANSWERED, emulated) == 429
    # The provider refuses one number and fails on another; each is answered as
    # a number without an account would be, which is no concern here.
    for number in (REFUSED, HTTP500):
        post_json(Client(), START, {"number": "+" + number})
    # The calls' states come back: each once, then the first again.
    delivered = emulated.deliver_callbacks(client)
    assert [d.status for d in delivered] == [200, 200]
    again = delivered[0].callback
    assert post_json(client, _path(again.url), again.payload).status_code == 200
    calls.fetch_balance()
    emulated.set_fault("http500", endpoints=("get",))
    with pytest.raises(TransportError):
        calls.fetch_balance()

    _text, after = scrape(client)
    delta = Delta(before, after)
    assert delta("voicepassword_codes_sent_total", channel="flash_call", outcome="placed") == 2
    assert delta("voicepassword_codes_sent_total", channel="flash_call", outcome="not_placed") == 1
    assert delta("voicepassword_codes_sent_total", channel="flash_call", outcome="unknown") == 1
    assert delta("voicepassword_codes_sent_total", channel="voice_call", outcome="placed") == 0
    assert (
        delta("voicepassword_challenges_started_total", channel="flash_call", purpose="login") == 2
    )
    sent = {"kind": "flash_call"}
    assert delta("voicepassword_provider_requests_total", **sent, outcome="ok") == 2
    assert (
        delta("voicepassword_provider_requests_total", **sent, outcome="number_in_spam_list") == 1
    )
    assert delta("voicepassword_provider_requests_total", **sent, outcome="outcome_unknown") == 1
    assert delta("voicepassword_provider_requests_total", kind="balance", outcome="ok") == 1
    assert delta("voicepassword_provider_requests_total", kind="balance", outcome="transport") == 1
    duration = "voicepassword_provider_request_duration_seconds"
    assert delta(f"{duration}_count", kind="flash_call") == 4
    assert delta(f"{duration}_bucket", kind="flash_call", le="+Inf") == 4
    assert delta(f"{duration}_count", kind="balance") == 2
    assert delta(f"{duration}_sum", kind="flash_call") > 0
    assert delta("voicepassword_callbacks_total", outcome="applied", state="answered") == 1
    assert delta("voicepassword_callbacks_total", outcome="applied", state="no_answer") == 1
    first_state = (
        "answered" if delivered[0].callback.payload["state"] == "ANSWERED" else "no_answer"
    )
    assert delta("voicepassword_callbacks_total", outcome="duplicate", state=first_state) == 1
    assert delta("voicepassword_limit_refusals_total", scope="number") == 1
    assert delta("voicepassword_limit_refusals_total", scope="budget") == 0
    assert delta("voicepassword_confirmations_total", purpose="login") == 2
    assert delta("voicepassword_confirmation_failures_total", reason="wrong_code") == 1
    # The budget holds the calls placed and the one whose outcome is unknown
    # (it may have been billed); refused and failed sends gave theirs back.
    held = Call.objects.filter(status__in=["placed", "answered", "no_answer", "unknown"]).count()
    assert held == 3
    assert after[("voicepassword_daily_budget", frozenset())] == float(BUDGET)
    assert after[("voicepassword_daily_budget_left", frozenset())] == float(
        BUDGET - held * Decimal("0.50")
    )


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


def test_a_budget_refusal_is_counted_by_its_scope(emulated):
    client = Client()
    _text, before = scrape(client)
    with override_settings(VOICEPASSWORD={**EMULATED, "DAILY_BUDGET": "0.50"}):
        assert login(Client(), ANSWERED, emulated) == 201
        assert login(Client(), NO_ANSWER, emulated) == 429
        _text, after = scrape(client)
    delta = Delta(before, after)
    assert delta("voicepassword_limit_refusals_total", scope="budget") == 1
    assert after[("voicepassword_daily_budget_left", frozenset())] == 0.0


def test_a_hostile_callback_or_error_code_creates_no_label_value(emulated):
    client = Client()
    assert login(Client(), ANSWERED, emulated) == 201
    call = Call.objects.get(number=ANSWERED)
    url = callback_url(call)
    assert url is not None
    hostile = "EVIL_STATE_1234"
    payload = {"id": call.provider_id, "number": ANSWERED, "state": hostile, "price": "0.5"}
    _text, before = scrape(client)
    # An unknown state label, stored verbatim on the event, but not as a label.
    assert post_json(client, _path(url), payload).status_code == 200
    # An error code the provider does not document, and made-up signal values.
    with responses.RequestsMock() as mock:
        mock.post(
            "http://vp.invalid/api/send/",
            json={"result": "error", "error_code": "EVIL_CODE_5678"},
        )
        gateway = HttpGateway(VoicePasswordClient("key", base_url="http://vp.invalid/api/"))
        with pytest.raises(APIError) as raised:
            gateway.flash_call(ANSWERED)
    assert raised.value.error_code == "EVIL_CODE_5678"
    limit_exceeded.send(sender=None, scope="EVIL_SCOPE", retry_after=1, request=None)
    login_failed.send(sender=None, challenge=None, request=None, reason="EVIL", token="")
    provider_request.send(sender=HttpGateway, kind="EVIL_KIND", outcome="EVIL", duration=0.1)
    callback_received.send(sender=None, event=None, outcome="EVIL", state="EVIL")

    text, after = scrape(client)
    assert "EVIL" not in text
    assert ANSWERED not in text
    delta = Delta(before, after)
    assert delta("voicepassword_callbacks_total", outcome="stale", state="other") == 1
    assert delta("voicepassword_callbacks_total", outcome="other", state="other") == 1
    assert (
        delta("voicepassword_provider_requests_total", kind="flash_call", outcome="api_error") == 1
    )
    assert delta("voicepassword_provider_requests_total", kind="other", outcome="other") == 1
    assert delta("voicepassword_limit_refusals_total", scope="other") == 1
    assert delta("voicepassword_confirmation_failures_total", reason="other") == 1
    # Every label value of every series is one of the fixed words: no input chose one.
    values = {value for _name, labels in after for key, value in labels if key != "le"}
    assert values <= LABEL_VALUES


#: Every value a label may take.
LABEL_VALUES = {
    *tracing.KINDS,
    *tracing.OUTCOMES,
    *Call.Channel.values,
    "placed",
    "not_placed",
    "unknown",
    *CallbackEvent.Outcome.values,
    *(state.name.lower() for state in CallState),
    *ratelimit.SCOPES,
    "budget",
    "login",
    "verify",
    "wrong_code",
    "malformed",
    "expired",
    "exhausted",
    "used",
    "wrong_session",
    "no_user",
    "other",
}


def test_the_budget_gauges_are_absent_without_a_budget(emulated):
    with override_settings(VOICEPASSWORD={**EMULATED, "DAILY_BUDGET": None}):
        text, _samples = scrape(Client())
    assert "voicepassword_daily_budget_left " not in text
    assert "voicepassword_codes_sent_total" in text


def test_a_cache_that_fails_loses_the_gauge_not_the_scrape(emulated, monkeypatch, caplog):
    def broken() -> None:
        raise ConnectionError("cache down")

    monkeypatch.setattr(prometheus, "budget_left", broken)
    text, _samples = scrape(Client())
    assert "voicepassword_daily_budget_left " not in text
    assert "voicepassword_codes_sent_total" in text
    assert "budget left could not be read" in caplog.text


def test_budget_left_reads_the_day_without_counting(emulated):
    assert ratelimit.budget_left() == BUDGET
    ratelimit.reserve("voice_call")
    assert ratelimit.budget_left() == BUDGET - 1
    assert ratelimit.budget_left() == BUDGET - 1
    with override_settings(VOICEPASSWORD={**EMULATED, "DAILY_BUDGET": None}):
        assert ratelimit.budget_left() is None


def test_in_multiprocess_mode_the_collector_yields_the_gauges_alone(emulated):
    names = {m.name for m in prometheus.VoicePasswordCollector(multiprocess=True).collect()}
    assert names == {"voicepassword_daily_budget_left", "voicepassword_daily_budget"}
    single = {m.name for m in prometheus.VoicePasswordCollector(multiprocess=False).collect()}
    assert {"voicepassword_codes_sent", "voicepassword_daily_budget_left"} <= single
    described = {m.name for m in prometheus.VoicePasswordCollector(multiprocess=True).describe()}
    assert described == names


def test_a_site_registry_takes_the_collector(emulated):
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(prometheus.VoicePasswordCollector())
    text = generate_latest(registry).decode()
    assert "voicepassword_provider_requests_total" in text
    assert "voicepassword_daily_budget_left 100.0" in text


def test_the_view_answers_get_only(emulated):
    assert Client().post("/metrics/").status_code == 405
    assert Client().head("/metrics/").status_code == 200


def test_the_app_connects_the_receivers_when_ready(emulated):
    prometheus.disconnect()
    assert not provider_request.has_listeners(HttpGateway)
    MetricsConfig("django_voicepassword.contrib.metrics", prometheus).ready()
    assert provider_request.has_listeners(HttpGateway)


def test_the_app_without_prometheus_client_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "django_voicepassword.contrib.metrics.prometheus")
    monkeypatch.delattr("django_voicepassword.contrib.metrics.prometheus")
    with pytest.raises(Exception, match=r"django-voicepassword\[metrics\]"):
        MetricsConfig("django_voicepassword.contrib.metrics", prometheus).ready()


def test_a_failing_receiver_does_not_fail_a_placed_call(emulated, caplog):
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    provider_request.connect(broken)
    try:
        call = calls.place_flash_call(ANSWERED)
    finally:
        provider_request.disconnect(broken)
    assert call.status == Call.Status.PLACED
    assert "provider_request receiver failed" in caplog.text


def test_importing_the_package_imports_neither_prometheus_nor_opentelemetry():
    program = """
import sys, pkgutil, importlib, django
django.setup()
import django_voicepassword
# Every module but the integrations under contrib/: each is an app of its own that
# imports its third-party package and needs that package's apps installed.
for module in pkgutil.walk_packages(django_voicepassword.__path__, "django_voicepassword."):
    if not module.name.startswith("django_voicepassword.contrib."):
        importlib.import_module(module.name)
loaded = [m for m in sys.modules if m.split(".")[0] in ("prometheus_client", "opentelemetry")]
print(",".join(loaded) or "none")
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


# --- OpenTelemetry ------------------------------------------------------------------


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_every_provider_request_has_a_span_with_its_kind_and_outcome(emulated, spans):
    client = Client()
    assert login(client, ANSWERED, emulated) == 201
    code = emulated.code_for(ANSWERED)
    post_json(Client(), START, {"number": "+" + REFUSED})
    calls.fetch_balance()

    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == [
        "voicepassword.flash_call",
        "voicepassword.flash_call",
        "voicepassword.balance",
    ]
    placed, refused, balance = finished
    assert _attributes(placed) == {
        "voicepassword.request": "flash_call",
        "voicepassword.endpoint": "send",
        "voicepassword.outcome": "ok",
    }
    assert placed.kind is trace.SpanKind.CLIENT
    assert placed.status.status_code is trace.StatusCode.UNSET
    assert _attributes(refused) == {
        "voicepassword.request": "flash_call",
        "voicepassword.endpoint": "send",
        "voicepassword.outcome": "number_in_spam_list",
        "error.type": "number_in_spam_list",
    }
    assert refused.status.status_code is trace.StatusCode.ERROR
    assert not refused.events  # no exception recorded: its message may quote the number
    assert _attributes(balance)["voicepassword.endpoint"] == "get"
    # Never a number, a request id or a code in a span.
    provider_ids = [c.provider_id for c in Call.objects.exclude(provider_id=None)]
    for span in finished:
        values = " ".join(str(v) for v in _attributes(span).values()) + span.name
        for secret in (ANSWERED, REFUSED, code, *provider_ids):
            assert secret not in values


def test_without_opentelemetry_the_requests_go_on_without_spans(emulated, spans, monkeypatch):
    tracing._tracer.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    try:
        assert calls.place_flash_call(ANSWERED).status == Call.Status.PLACED
    finally:
        tracing._tracer.cache_clear()
    assert spans.get_finished_spans() == ()


@pytest.mark.parametrize("provider", [trace.ProxyTracerProvider, trace.NoOpTracerProvider])
def test_without_a_tracer_provider_no_span_is_started(monkeypatch, provider):
    started: list[str] = []

    class Tracer:
        def start_as_current_span(self, name: str, **kwargs: Any) -> Any:
            started.append(name)
            return contextlib.nullcontext()

    monkeypatch.setattr(tracing, "_tracer", Tracer)
    monkeypatch.setattr(trace, "get_tracer_provider", provider)
    with tracing.observe("flash_call", object):
        pass
    assert started == []
    # A provider set later is followed at once.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: _PROVIDER)
    with tracing.observe("flash_call", object):
        pass
    assert started == ["voicepassword.flash_call"]


def test_observe_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"), tracing.observe("nope", object):
        pass  # pragma: no cover


# --- the documentation ----------------------------------------------------------------

PAGE = ROOT / "docs" / "howto" / "metrics.md"


def test_the_documented_metrics_are_the_scraped_ones(emulated):
    documented = set(re.findall(r"^\| `(voicepassword_[a-z_]+)` \|", PAGE.read_text(), re.M))
    text, _samples = scrape(Client())
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(text)
        # The creation times prometheus_client adds beside each counter and histogram.
        if not family.name.endswith("_created")
    }
    assert documented == families


def test_the_grafana_panels_query_metrics_that_exist(emulated):
    blocks = re.findall(r"```json\n(.*?)```", PAGE.read_text(), re.S)
    panels = [json.loads(block) for block in blocks]
    assert {panel["type"] for panel in panels} == {"timeseries", "stat"}
    _text, samples = scrape(Client())
    names = {name for name, _labels in samples}
    queried = set()
    for panel in panels:
        assert panel["datasource"]["type"] == "prometheus"
        for target in panel["targets"]:
            found = re.findall(r"voicepassword_[a-z_]+", target["expr"])
            assert found, target
            queried.update(found)
            # Every label a query names is one the metric has.
            for label in re.findall(r"(?:by \(|\{|,)\s*([a-z]+)\s*(?:=|!=|=~|\))", target["expr"]):
                assert label in {"le", "kind", "outcome", "scope", "channel", "purpose"}, label
    assert queried <= names
    assert "voicepassword_daily_budget_left" in queried


def test_in_multiprocess_mode_the_view_reads_the_folder(emulated, monkeypatch, tmp_path):
    from django_voicepassword.contrib.metrics import views

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(views, "is_multiprocess", lambda: True)
    monkeypatch.setattr(prometheus, "is_multiprocess", lambda: True)
    text, samples = scrape(Client())
    # The folder is empty: no worker has counted; this process's counters are
    # not served beside it (they would be counted twice), the budget is, once.
    assert "voicepassword_codes_sent_total" not in text
    assert samples == {
        ("voicepassword_daily_budget_left", frozenset()): float(BUDGET),
        ("voicepassword_daily_budget", frozenset()): float(BUDGET),
    }


def test_an_unexpected_error_is_the_outcome_other():
    assert tracing.outcome_of(RuntimeError("no")) == "other"
    assert tracing.outcome_of(None) == "ok"


def test_an_opentelemetry_without_its_api_traces_nothing(monkeypatch):
    def missing(name: str) -> Any:
        raise ImportError(name)

    tracing._tracer.cache_clear()
    monkeypatch.setattr(importlib, "import_module", missing)
    try:
        assert tracing._tracer() is None
    finally:
        tracing._tracer.cache_clear()


def test_the_app_does_not_hide_another_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "django_voicepassword.contrib.metrics.prometheus", None)
    monkeypatch.delattr("django_voicepassword.contrib.metrics.prometheus")
    with pytest.raises(ImportError) as raised:
        MetricsConfig("django_voicepassword.contrib.metrics", prometheus).ready()
    assert "django-voicepassword[metrics]" not in str(raised.value)
