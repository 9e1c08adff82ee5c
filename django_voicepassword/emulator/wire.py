"""The emulator's answers as ``requests`` sees them on the wire.

Shared by the ``responses`` fixture and by :class:`EmulatorAdapter` (the
transport of the offline gateways), so that a fault looks the same to the
client wherever the emulator runs: ``dropped`` raises the ``ConnectionError``
that ``requests`` raises when a server closes after reading the request, and
``slow`` raises ``ReadTimeout`` when the answer would come after the read
timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http.client import RemoteDisconnected
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

from requests import PreparedRequest
from requests.adapters import BaseAdapter
from requests.exceptions import ConnectionError, ReadTimeout
from requests.models import Response as RequestsResponse
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ProtocolError

from .core import Emulator

__all__ = ["EmulatorAdapter", "exchange", "read_timeout_of"]


def read_timeout_of(timeout: Any) -> float | None:
    """The read timeout in what ``requests`` accepts as ``timeout`` (``None``: forever)."""
    if isinstance(timeout, tuple):
        timeout = timeout[1]
    else:
        timeout = getattr(timeout, "read_timeout", timeout)
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return float(timeout)
    return None


def exchange(
    emulator: Emulator,
    request: PreparedRequest,
    *,
    read_timeout: float | None,
    wait: Callable[[float], None],
) -> tuple[int, dict[str, str], bytes]:
    """Answer ``request`` through ``emulator``; raise what ``requests`` would raise.

    ``wait`` is called with the delay of a ``slow`` answer that still comes
    within ``read_timeout`` (a test moves a manual clock; the offline gateways
    do nothing, since no callback is ever delivered from them).
    """
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    parts = urlsplit(request.url or "")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    answer = emulator.handle(request.method or "POST", path, dict(request.headers), bytes(body))
    if answer.drop:
        raise ConnectionError(
            ProtocolError(
                "Connection aborted.",
                RemoteDisconnected("Remote end closed connection without response"),
            ),
            request=request,
        )
    if answer.delay:
        if read_timeout is not None and answer.delay > read_timeout:
            raise ReadTimeout(f"Read timed out. (read timeout={read_timeout:g})", request=request)
        wait(answer.delay)
    return answer.status, answer.headers, answer.body


class EmulatorAdapter(BaseAdapter):
    """A ``requests`` transport adapter that answers from an :class:`Emulator`.

    Mount it on a session for a base URL and every request under that URL is
    answered in-process, with no socket and no ``responses`` patching.
    """

    def __init__(self, emulator: Emulator) -> None:
        super().__init__()
        self.emulator = emulator

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> RequestsResponse:
        """Answer ``request`` as the provider would."""
        status, headers, body = exchange(
            self.emulator, request, read_timeout=read_timeout_of(timeout), wait=lambda _: None
        )
        response = RequestsResponse()
        response.status_code = status
        response.headers = CaseInsensitiveDict(headers)
        response.raw = BytesIO(body)
        response._content = body
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        response.reason = "OK" if status < 400 else "Error"
        return response

    def close(self) -> None:
        """Nothing to release."""
