"""What a site can observe of each provider request: a signal and an OpenTelemetry span.

:class:`~django_voicepassword.gateways.HttpGateway` runs every request to the
provider inside :func:`observe`, which

- opens a span (``voicepassword.<kind>``, kind ``CLIENT``) when
  ``opentelemetry-api`` is installed; the span carries the request's kind, the
  endpoint and the outcome, never a number, a code, a request id or the key;
- sends :data:`provider_request` once the request ended, with its kind, its
  outcome and how long it took (the metrics of ``contrib.metrics`` listen).

The outcome is ``"ok"`` or the kind of error (:func:`outcome_of`): one of a
fixed set of words, whatever the provider answered, so a receiver can use it
as a metric label without a hostile answer creating new values.

``opentelemetry`` is imported on the first request, and only if it is
installed: importing this package imports neither it nor ``prometheus_client``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

from django.dispatch import Signal

from django_voicepassword.exceptions import (
    ERROR_CLASSES,
    APIError,
    OutcomeUnknownError,
    TransportError,
)

__all__ = ["ENDPOINTS", "KINDS", "OUTCOMES", "observe", "outcome_of", "provider_request"]

logger = logging.getLogger(__name__)

#: A request to the provider ended. Sent with ``sender`` the gateway's class and:
#: ``kind`` (one of :data:`KINDS`), ``outcome`` (one of :data:`OUTCOMES`) and
#: ``duration`` (seconds, a float). Sent at once, from the thread that asked; a
#: receiver that raises is logged and does not change the request's outcome.
provider_request = Signal()

#: Each request kind (a gateway method) and the provider's endpoint it uses.
ENDPOINTS: Final = {
    "flash_call": "send",
    "voice_call": "send",
    "sms": "send",
    "balance": "get",
    "state": "get",
    "daily": "get",
}
#: The request kinds: the gateway's six operations.
KINDS: Final = tuple(ENDPOINTS)

#: Every outcome :func:`outcome_of` can give: ``"ok"``, each documented
#: ``error_code`` lower-cased, ``"api_error"`` (an undocumented code),
#: ``"transport"`` (network, HTTP 5xx, not JSON), ``"outcome_unknown"`` (a
#: ``send/`` whose fate cannot be known) and ``"other"`` (anything else raised).
OUTCOMES: Final = (
    "ok",
    *sorted(code.lower() for code in ERROR_CLASSES),
    "api_error",
    "transport",
    "outcome_unknown",
    "other",
)
_DOCUMENTED: Final = {code: code.lower() for code in ERROR_CLASSES}


def outcome_of(error: BaseException | None) -> str:
    """The outcome word of a request that raised ``error`` (``None``: ``"ok"``).

    Always one of :data:`OUTCOMES`: an ``error_code`` the provider does not
    document (which the client keeps on :class:`APIError`) is ``"api_error"``,
    not the code itself, which an attacker-controlled or broken answer chooses.
    """
    if error is None:
        return "ok"
    if isinstance(error, OutcomeUnknownError):
        return "outcome_unknown"
    if isinstance(error, TransportError):
        return "transport"
    if isinstance(error, APIError):
        # Documented codes only: the class may be ERROR_CLASSES's while the
        # instance's error_code was overwritten, so look the code up.
        return _DOCUMENTED.get(error.error_code, "api_error")
    return "other"


@functools.cache
def _tracer() -> Any:
    """OpenTelemetry's tracer for this package, or ``None`` without ``opentelemetry-api``.

    Cached: before a site sets its tracer provider, the API hands out a proxy
    that follows the provider set later, so caching never pins a no-op.
    """
    if importlib.util.find_spec("opentelemetry") is None:
        return None
    try:
        trace = importlib.import_module("opentelemetry.trace")
    except ImportError:  # a namespace package without the API
        return None
    from django_voicepassword import __version__

    return trace.get_tracer("django_voicepassword", __version__)


def _span(kind: str) -> contextlib.AbstractContextManager[Any]:
    tracer = _tracer()
    if tracer is None:
        return contextlib.nullcontext()
    trace = sys.modules["opentelemetry.trace"]  # imported by _tracer()
    # Until a site sets a tracer provider, every span is a no-op that still
    # costs a context switched in and out: a few per cent of a request to a
    # nearby server. The provider is looked up per request, so one set later
    # is followed at once, as the proxy tracer would follow it.
    if isinstance(
        trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    ):
        return contextlib.nullcontext()
    from opentelemetry.trace import SpanKind

    # No exception recorded on the span: a provider's message may quote the
    # number it refused. The outcome word says what went wrong instead.
    return tracer.start_as_current_span(  # type: ignore[no-any-return]
        f"voicepassword.{kind}",
        kind=SpanKind.CLIENT,
        attributes={
            "voicepassword.request": kind,
            "voicepassword.endpoint": ENDPOINTS.get(kind, "other"),
        },
        record_exception=False,
        set_status_on_exception=False,
    )


def _end_span(span: Any, outcome: str) -> None:
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("voicepassword.outcome", outcome)
    if outcome != "ok":
        # error.type: OpenTelemetry's attribute for the class of an error.
        span.set_attribute("error.type", outcome)
        span.set_status(Status(StatusCode.ERROR, outcome))


@contextlib.contextmanager
def observe(kind: str, sender: type[Any]) -> Iterator[None]:
    """Trace and time one provider request of ``kind`` made by the gateway class ``sender``.

    Wrap the request in it (``with observe("flash_call", type(self)):``); the
    span ends and :data:`provider_request` is sent when the block ends,
    whether it returned or raised. A gateway of a site's own that reaches a
    provider can use it too.
    """
    if kind not in ENDPOINTS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    with _span(kind) as span:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as raised:
            error = raised
            raise
        finally:
            duration = time.perf_counter() - started
            outcome = outcome_of(error)
            _end_span(span, outcome)
            # Robust: a receiver that fails must not turn a call the provider
            # placed (and billed) into an error that records it as not placed.
            answers = provider_request.send_robust(
                sender=sender, kind=kind, outcome=outcome, duration=duration
            )
            for receiver, answer in answers:
                if isinstance(answer, Exception):
                    logger.error(
                        "A provider_request receiver failed: %r",
                        receiver,
                        exc_info=(type(answer), answer, answer.__traceback__),
                    )
