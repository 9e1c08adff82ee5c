"""The metrics, the receivers that count them, and the collector a site registers.

Every metric is counted by a receiver of the package's signals (none of this
module's code runs in a request otherwise), into a registry of this module's
own. Sites expose it through :class:`VoicePasswordCollector`, which also
computes the daily budget left when scraped.

Labels are bounded: each is one of a fixed set of words (the channels, the
outcomes, the limits' scopes), and anything else, such as an unknown state
label in a callback or an undocumented error code, counts as ``"other"``. No
label ever holds a number, a code, a request id or a user.

Multi-process servers (gunicorn): with ``PROMETHEUS_MULTIPROC_DIR`` set before
``prometheus_client`` is imported, the counters and the histogram are written
to that folder by every worker, and a scrape sums them with
``prometheus_client.multiprocess.MultiProcessCollector``; the collector then
yields only the budget gauges, which no worker stores: they are read from the
shared cache at scrape time, so every worker reports the same value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from django_voicepassword.client import CallState
from django_voicepassword.conf import settings
from django_voicepassword.gateways.tracing import KINDS, OUTCOMES
from django_voicepassword.models import Call, CallbackEvent, Challenge
from django_voicepassword.ratelimit import SCOPES, budget_left
from django_voicepassword.signals import (
    call_status_changed,
    callback_received,
    challenge_started,
    limit_exceeded,
    login_failed,
    phone_verified,
    provider_request,
)

__all__ = [
    "CALLBACKS",
    "CHALLENGES_STARTED",
    "CODES_SENT",
    "CONFIRMATIONS",
    "CONFIRMATION_FAILURES",
    "LIMIT_REFUSALS",
    "OTHER",
    "PROVIDER_REQUESTS",
    "PROVIDER_REQUEST_DURATION",
    "REGISTRY",
    "VoicePasswordCollector",
    "connect",
    "is_multiprocess",
]

logger = logging.getLogger(__name__)

#: The label value of anything outside a label's fixed set.
OTHER: Final = "other"

# --- the label values --------------------------------------------------------------

_CHANNELS: Final = frozenset(Call.Channel.values)
#: What the provider's answer to send/ made of a call.
_SEND_OUTCOMES: Final = (Call.Status.PLACED, Call.Status.NOT_PLACED, Call.Status.UNKNOWN)
_CALLBACK_OUTCOMES: Final = frozenset(CallbackEvent.Outcome.values)
_STATES: Final = {state: state.name.lower() for state in CallState}
_SCOPES: Final = frozenset((*SCOPES, "budget"))
_PURPOSES: Final = frozenset(Challenge.Purpose.values)
#: The reasons of login_failed (django_voicepassword.signals).
_REASONS: Final = (
    "wrong_code",
    "malformed",
    "expired",
    "exhausted",
    "used",
    "wrong_session",
    "no_user",
)


def _bounded(value: object, allowed: Iterable[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``"other"``: no input makes a new label."""
    return value if isinstance(value, str) and value in allowed else OTHER


# --- the metrics -------------------------------------------------------------------

#: This app's registry. Not a site's: a site exposes it through
#: :class:`VoicePasswordCollector` (which knows the multi-process mode).
REGISTRY: Final = CollectorRegistry(auto_describe=True)

CODES_SENT: Final = Counter(
    "voicepassword_codes_sent",
    "Flash calls, voice calls and SMS asked of the provider, by what its answer made of them: "
    "placed, not_placed (refused, or the request failed) or unknown (no answer; never retried).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
CHALLENGES_STARTED: Final = Counter(
    "voicepassword_challenges_started",
    "Codes sent for a phone login or verification (new, resent or switched channel).",
    ["channel", "purpose"],
    registry=REGISTRY,
)
PROVIDER_REQUESTS: Final = Counter(
    "voicepassword_provider_requests",
    "Requests to the provider by kind (flash_call, voice_call, sms, balance, state, daily) "
    "and outcome (ok, a documented error code, api_error, transport, outcome_unknown, other).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
PROVIDER_REQUEST_DURATION: Final = Histogram(
    "voicepassword_provider_request_duration_seconds",
    "How long a request to the provider took, answered or not (retries of get/ included).",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
CALLBACKS: Final = Counter(
    "voicepassword_callbacks",
    "Status callbacks with a valid token, by outcome (applied, duplicate, stale, orphan, "
    "dropped) and the state they reported (other: a label nobody knows).",
    ["outcome", "state"],
    registry=REGISTRY,
)
LIMIT_REFUSALS: Final = Counter(
    "voicepassword_limit_refusals",
    "Codes refused by an abuse limit or the daily budget, by scope.",
    ["scope"],
    registry=REGISTRY,
)
CONFIRMATIONS: Final = Counter(
    "voicepassword_confirmations",
    "Codes confirmed: phone logins and phone verifications.",
    ["purpose"],
    registry=REGISTRY,
)
CONFIRMATION_FAILURES: Final = Counter(
    "voicepassword_confirmation_failures",
    "Codes refused at confirmation, by reason.",
    ["reason"],
    registry=REGISTRY,
)


def _initialise() -> None:
    """Create every expected series at zero, so that rate() sees the first event."""
    for channel in _CHANNELS:
        for outcome in _SEND_OUTCOMES:
            CODES_SENT.labels(channel, outcome)
    for kind in KINDS:
        PROVIDER_REQUESTS.labels(kind, "ok")
        PROVIDER_REQUEST_DURATION.labels(kind)
    for scope in _SCOPES:
        LIMIT_REFUSALS.labels(scope)
    for purpose in _PURPOSES:
        CONFIRMATIONS.labels(purpose)
    for reason in _REASONS:
        CONFIRMATION_FAILURES.labels(reason)


# --- the receivers -----------------------------------------------------------------


def _on_status_changed(
    sender: Any, call: Call, new_status: str, source: str, **kwargs: Any
) -> None:
    if source != "send":
        return
    channel = _bounded(call.channel, _CHANNELS)
    CODES_SENT.labels(channel, _bounded(new_status, _SEND_OUTCOMES)).inc()


def _on_challenge_started(sender: Any, challenge: Challenge, channel: str, **kwargs: Any) -> None:
    CHALLENGES_STARTED.labels(
        _bounded(channel, _CHANNELS), _bounded(challenge.purpose, _PURPOSES)
    ).inc()


def _on_provider_request(
    sender: Any, kind: str, outcome: str, duration: float, **kwargs: Any
) -> None:
    kind = _bounded(kind, KINDS)
    PROVIDER_REQUESTS.labels(kind, _bounded(outcome, OUTCOMES)).inc()
    PROVIDER_REQUEST_DURATION.labels(kind).observe(duration)


def _on_callback(sender: Any, outcome: str, state: CallState | None, **kwargs: Any) -> None:
    CALLBACKS.labels(
        _bounded(outcome, _CALLBACK_OUTCOMES),
        _STATES.get(state, OTHER) if isinstance(state, CallState) else OTHER,
    ).inc()


def _on_limit(sender: Any, scope: str, **kwargs: Any) -> None:
    LIMIT_REFUSALS.labels(_bounded(scope, _SCOPES)).inc()


def _on_verified(sender: Any, challenge: Challenge, **kwargs: Any) -> None:
    CONFIRMATIONS.labels(_bounded(challenge.purpose, _PURPOSES)).inc()


def _on_failed(sender: Any, reason: str, **kwargs: Any) -> None:
    CONFIRMATION_FAILURES.labels(_bounded(reason, _REASONS)).inc()


_RECEIVERS: Final = (
    (call_status_changed, _on_status_changed),
    (challenge_started, _on_challenge_started),
    (provider_request, _on_provider_request),
    (callback_received, _on_callback),
    (limit_exceeded, _on_limit),
    (phone_verified, _on_verified),
    (login_failed, _on_failed),
)


def connect() -> None:
    """Connect the receivers that count (the app's ``ready()`` does); again: a no-op."""
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"{__name__}.{receiver.__name__}")
    _initialise()


def disconnect() -> None:
    """Disconnect the receivers (for tests): nothing is counted until :func:`connect`."""
    for signal, receiver in _RECEIVERS:
        signal.disconnect(dispatch_uid=f"{__name__}.{receiver.__name__}")


# --- the collector -----------------------------------------------------------------


def is_multiprocess() -> bool:
    """Whether ``prometheus_client`` writes values to ``PROMETHEUS_MULTIPROC_DIR``.

    Decided once, when ``prometheus_client`` was imported (as the library
    does): setting the variable later changes nothing.
    """
    return values.ValueClass is not values.MutexValue


def _budget_families(*, with_values: bool) -> list[Metric]:
    left = GaugeMetricFamily(
        "voicepassword_daily_budget_left",
        "What is left of DAILY_BUDGET for today (the Moscow day), in the account's "
        "currency; read from the shared cache when scraped.",
    )
    budget = GaugeMetricFamily(
        "voicepassword_daily_budget", "The DAILY_BUDGET setting, in the account's currency."
    )
    if with_values:
        configured = settings.DAILY_BUDGET
        try:
            remaining = budget_left()
        except Exception:
            # The cache is down: the scrape still reports the counters, and the
            # gauge's absence is what an alert on absent() sees.
            logger.warning("VoicePassword budget left could not be read", exc_info=True)
            return []
        if configured is None or remaining is None:
            return []
        left.add_metric([], float(remaining))
        budget.add_metric([], float(configured))
    return [left, budget]


class VoicePasswordCollector(Collector):
    """The package's metrics, for ``REGISTRY.register(VoicePasswordCollector())``.

    In a single process it yields every counter and histogram of this app and
    the budget gauges. In multi-process mode (:func:`is_multiprocess`) it
    yields only the budget gauges, computed at scrape time: the counters come
    from ``MultiProcessCollector`` in the registry the scrape builds, and
    yielding them here too would report them twice. ``multiprocess`` forces
    either behaviour.
    """

    def __init__(self, *, multiprocess: bool | None = None) -> None:
        self.multiprocess = multiprocess

    def _counted_here(self) -> bool:
        return not (is_multiprocess() if self.multiprocess is None else self.multiprocess)

    def collect(self) -> Iterator[Metric]:
        """The metrics, with the budget read from the cache now."""
        if self._counted_here():
            yield from REGISTRY.collect()
        yield from _budget_families(with_values=True)

    def describe(self) -> Iterator[Metric]:
        """The metrics without values: what a registry checks for duplicate names."""
        if self._counted_here():
            yield from REGISTRY.collect()
        yield from _budget_families(with_values=False)
