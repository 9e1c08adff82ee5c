"""pytest fixtures: the emulator in-process (through ``responses``) and over HTTP.

Load with ``pytest_plugins = ["django_voicepassword.emulator.pytest_plugin"]``.

``voicepassword_emulator`` routes ``send/`` and ``get/`` of the real API URL
(and of every URL in the ``voicepassword_emulator_base_urls`` fixture) into one
:class:`~.core.Emulator` through a ``responses.RequestsMock``; other requests
through ``requests`` fail, except to loopback, which passes through. Faults look
to ``requests`` as they would on the wire: ``slow`` raises
``requests.exceptions.ReadTimeout`` when the request's read timeout is shorter
than the delay, ``dropped`` raises ``requests.exceptions.ConnectionError``.

``voicepassword_emulator_server`` runs the real HTTP server on a free loopback
port. Both use the key of the ``voicepassword_emulator_api_key`` fixture
(``"emulator-key"``; override it in a ``conftest.py`` to match the site's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import pytest
from requests.exceptions import RequestException

from .core import (
    API_PREFIX,
    DEFAULT_API_KEY,
    CallRecord,
    Delivery,
    Emulator,
    FaultPlan,
    LogEntry,
    ManualClock,
)
from .numbers import FaultMode
from .server import EmulatorServer
from .wire import exchange, read_timeout_of

if TYPE_CHECKING:
    from requests import PreparedRequest

__all__ = [
    "DEFAULT_BASE_URL",
    "EmulatorFixture",
    "voicepassword_emulator",
    "voicepassword_emulator_api_key",
    "voicepassword_emulator_base_urls",
    "voicepassword_emulator_server",
]

#: The provider's real API base URL, routed by default.
DEFAULT_BASE_URL = "https://vp.voicepassword.ru" + API_PREFIX
_LOOPBACK = re.compile(r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/")


def _import_responses() -> ModuleType:
    try:
        import responses
    except ImportError as error:
        raise ImportError(
            "The voicepassword_emulator fixture needs the 'responses' package: "
            "pip install django-voicepassword[testing]"
        ) from error
    return responses


class _Poster(Protocol):
    """Something with Django's test-client ``post``."""

    def post(self, path: str, data: Any = ..., content_type: str = ..., **extra: Any) -> Any:
        """POST ``data`` to ``path``."""


class EmulatorFixture:
    """What the ``voicepassword_emulator`` fixture yields.

    ``emulator`` is the core (log, calls, balance, faults); ``clock`` its
    :class:`~.core.ManualClock` (callbacks are due at once: the callback delay
    is 0 until changed); ``requests_mock`` the active ``responses.RequestsMock``;
    ``base_url`` the first routed API base URL.
    """

    def __init__(
        self,
        emulator: Emulator,
        clock: ManualClock,
        requests_mock: Any,
        base_urls: list[str],
    ) -> None:
        self.emulator = emulator
        self.clock = clock
        self.requests_mock = requests_mock
        self.base_url = base_urls[0] if base_urls else DEFAULT_BASE_URL
        for base_url in base_urls:
            self.route(base_url)

    def route(self, base_url: str) -> None:
        """Route ``send/`` and ``get/`` under ``base_url`` into the emulator too."""
        base = base_url if base_url.endswith("/") else base_url + "/"
        for endpoint in ("send/", "get/"):
            self.requests_mock.add_callback("POST", base + endpoint, callback=self._answer)

    def _answer(self, request: PreparedRequest) -> Any:
        try:
            return exchange(
                self.emulator,
                request,
                read_timeout=read_timeout_of(getattr(request, "req_kwargs", {}).get("timeout")),
                wait=self.clock.advance,
            )
        except RequestException as error:
            # responses raises an exception the callback returns.
            return error

    # -- conveniences -------------------------------------------------------

    @property
    def log(self) -> list[LogEntry]:
        """Every request the emulator received (see :attr:`.Emulator.log`)."""
        return self.emulator.log

    def sends(self, number: str | None = None) -> list[LogEntry]:
        """The ``send/`` requests received (to ``number``): assert "sent exactly once"."""
        return self.emulator.sends(number)

    def last_call(self, number: str | None = None) -> CallRecord | None:
        """The latest call or SMS (to ``number``)."""
        return self.emulator.last_call(number)

    def code_for(self, number: str) -> str:
        """The code the phone ``number`` last saw or heard (as a person would read it)."""
        call = self.emulator.last_call(number)
        if call is None:
            raise AssertionError(f"the emulator placed no call to {number}")
        return call.code

    def set_fault(
        self,
        mode: FaultMode | str | None,
        *,
        share: float = 1.0,
        endpoints: tuple[str, ...] = ("send", "get"),
        seconds: float | None = None,
    ) -> None:
        """Apply a fault to ``share`` of the requests (``None`` clears it)."""
        self.emulator.faults = (
            None
            if mode is None
            else FaultPlan(FaultMode(mode), share=share, endpoints=endpoints, seconds=seconds)
        )

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock (calls reach their final state, callbacks fall due)."""
        self.clock.advance(seconds)

    def deliver_callbacks(
        self, sender: _Poster | Callable[[str, dict[str, str]], Any]
    ) -> list[Delivery]:
        """Deliver the due callbacks through ``sender``; return what became of them.

        ``sender`` is a Django test client (the callback is POSTed as JSON to its
        URL's path and query) or a function ``(url, payload)`` returning a
        response with ``status_code``, or an ``int`` status.
        """
        deliveries = []
        for callback in self.emulator.due_callbacks():
            if hasattr(sender, "post"):
                parts = urlsplit(callback.url)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                result = sender.post(
                    path,
                    data=json.dumps(callback.payload),
                    content_type="application/json",
                    secure=parts.scheme == "https",
                )
            else:
                result = sender(callback.url, callback.payload)
            status = result if isinstance(result, int) else getattr(result, "status_code", None)
            deliveries.append(self.emulator.record_delivery(callback, status))
        return deliveries


@pytest.fixture
def voicepassword_emulator_api_key() -> str:
    """The API key the emulator fixtures accept; override to match the site's settings."""
    return DEFAULT_API_KEY


@pytest.fixture
def voicepassword_emulator_base_urls() -> list[str]:
    """The API base URLs ``voicepassword_emulator`` routes (override to add yours)."""
    return [DEFAULT_BASE_URL]


@pytest.fixture
def voicepassword_emulator(
    voicepassword_emulator_api_key: str, voicepassword_emulator_base_urls: list[str]
) -> Iterator[EmulatorFixture]:
    """The provider, faked in-process: ``requests`` to its API reach the emulator."""
    responses = _import_responses()
    clock = ManualClock()
    emulator = Emulator(
        api_key=voicepassword_emulator_api_key, callback_delay=0.0, clock=clock, id_start=1
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(_LOOPBACK)
        yield EmulatorFixture(emulator, clock, mock, list(voicepassword_emulator_base_urls))


@pytest.fixture
def voicepassword_emulator_server(
    voicepassword_emulator_api_key: str,
) -> Iterator[EmulatorServer]:
    """The emulator over real HTTP on a free loopback port (callbacks at once)."""
    emulator = Emulator(api_key=voicepassword_emulator_api_key, callback_delay=0.0)
    with EmulatorServer(emulator) as server:
        yield server
