"""The emulator over HTTP: a threaded HTTP/1.1 server on loopback.

Routes:

- ``POST …/send/``, ``POST …/get/``: the provider's API (:meth:`.Emulator.handle`);
- ``GET /``: the phone page (``?number=`` filters);
- ``GET /_emulator/log``: the whole state as JSON;
- ``POST /_emulator/faults`` (``{"mode": "slow", "share": 1, "endpoints": ["send"],
  "seconds": 2}``; ``{"mode": null}`` clears), ``POST /_emulator/reset``
  (optional ``{"balance": "10.00"}``), ``POST /_emulator/balance``
  (``{"balance": "10.00"}``): control, for scripts and load runs.

Callbacks are delivered from a background thread with :mod:`urllib` (not
``requests``, so that a ``responses`` mock in a test process never swallows
them), and each delivery's HTTP status is recorded in the emulator. The control
endpoints have no authentication: the server binds to loopback by default.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .core import (
    API_PREFIX,
    DEFAULT_API_KEY,
    DEFAULT_BALANCE,
    Callback,
    Emulator,
    FaultPlan,
    Response,
)
from .page import render_page

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EmulatorServer",
    "Writer",
    "post_callback",
    "serve",
]

logger = logging.getLogger("django_voicepassword.emulator")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_MAX_BODY = 1 << 20
_JSON = "application/json; charset=utf-8"
# No proxy for callbacks, whatever the environment says: they go to the site.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_callback(callback: Callback, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """POST one callback as JSON; return the HTTP status, or ``None`` and the error."""
    request = urllib.request.Request(  # noqa: S310 - the emulator checked the scheme
        callback.url,
        data=json.dumps(callback.payload, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "VoicePasswordEmulator"},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read()
            return int(answer.status), None
    except urllib.error.HTTPError as error:
        with error:
            return error.code, None
    except (OSError, ValueError) as error:
        return None, f"{type(error).__name__}: {error}"


class Writer(Protocol):
    """Where :func:`serve` reports: a text stream (``sys.stdout``, a command's stdout)."""

    def write(self, text: str, /) -> object:
        """Write ``text``."""

    def flush(self) -> object:
        """Flush what was written."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "VoicePasswordEmulator"
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 60
    server: _HTTPServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only (never a header, so never the key), at debug level.
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            return
        route = urlsplit(self.path).path
        if route == "/":
            if method != "GET":
                self._write(405, "text/plain; charset=utf-8", b"Method Not Allowed")
                return
            query = parse_qs(urlsplit(self.path).query)
            number = query.get("number", [""])[0].strip() or None
            page = render_page(self.server.emulator, number)
            self._write(200, "text/html; charset=utf-8", page.encode())
        elif route.startswith("/_emulator/"):
            self._control(method, route, body)
        else:
            self._api(method, body)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._write(411, "text/plain; charset=utf-8", b"Length Required")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._write(413, "text/plain; charset=utf-8", b"Bad Content-Length")
            return None
        return self.rfile.read(length) if length else b""

    def _api(self, method: str, body: bytes) -> None:
        authorization = self.headers.get("Authorization")
        headers = {} if authorization is None else {"Authorization": authorization}
        answer = self.server.emulator.handle(method, self.path, headers, body)
        if answer.delay and self.server.stopping.wait(answer.delay):
            answer = Response(0, {}, b"", drop=True)  # stopping: never answer
        if answer.drop:
            # The request was read and the call placed; the answer never comes.
            self.close_connection = True
            self.log_request("-", "-")
            return
        content_type = answer.headers.get("Content-Type", "text/plain")
        extra = {k: v for k, v in answer.headers.items() if k != "Content-Type"}
        self._write(answer.status, content_type, answer.body, extra)

    def _control(self, method: str, route: str, body: bytes) -> None:
        emulator = self.server.emulator
        action = route.removeprefix("/_emulator/").strip("/")
        if action == "log":
            if method != "GET":
                self._json(405, {"result": "error", "error": "use GET"})
                return
            self._json(200, emulator.snapshot())
            return
        if action not in ("faults", "reset", "balance"):
            self._json(404, {"result": "error", "error": f"no control {action!r}"})
            return
        if method != "POST":
            self._json(405, {"result": "error", "error": "use POST"})
            return
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
            if not isinstance(data, Mapping):
                raise ValueError("the body must be a JSON object")
            if action == "faults":
                emulator.faults = FaultPlan.from_json(data)
            elif action == "reset":
                emulator.reset(balance=data.get("balance"))
            elif "balance" not in data:
                raise ValueError('give {"balance": "<amount>"}')
            else:
                emulator.balance = data["balance"]
        except (ValueError, TypeError) as error:
            self._json(400, {"result": "error", "error": str(error)})
            return
        faults = emulator.faults
        self._json(
            200,
            {
                "result": "ok",
                "balance": f"{emulator.balance:.2f}",
                "faults": faults.to_json() if faults else None,
            },
        )

    def _json(self, status: int, data: Any) -> None:
        self._write(status, _JSON, json.dumps(data, ensure_ascii=False).encode())

    def _write(
        self,
        status: int,
        content_type: str,
        body: bytes,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        # One write for head and body: no Nagle/delayed-ACK stall, fewer syscalls.
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        head.extend(f"{name}: {value}" for name, value in (extra or {}).items())
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        self.log_request(status, len(body))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (a DNS query): skip it.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request is not news.
        logger.debug("error handling a request from %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Wake every handler thread blocked on a keep-alive connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _CallbackThread(threading.Thread):
    def __init__(self, emulator: Emulator, stopping: threading.Event, timeout: float) -> None:
        super().__init__(name="voicepassword-emulator-callbacks", daemon=True)
        self.emulator = emulator
        self.stopping = stopping
        self.timeout = timeout

    def run(self) -> None:
        emulator = self.emulator
        while not self.stopping.is_set():
            # Cleared before looking, so a callback scheduled meanwhile wakes us.
            emulator.wakeup.clear()
            for callback in emulator.due_callbacks():
                status, error = post_callback(callback, self.timeout)
                emulator.record_delivery(callback, status, error)
            due = emulator.next_callback_due()
            wait = 0.5 if due is None else min(0.5, max(0.0, due - emulator.clock()))
            emulator.wakeup.wait(wait)


class EmulatorServer:
    """The emulator served over HTTP from background threads.

    Use it as a context manager (or :meth:`start`/:meth:`stop`)::

        with EmulatorServer(Emulator(callback_delay=0)) as server:
            requests.post(server.base_url + "send/", ...)

    ``port=0`` picks a free port; :attr:`url` and :attr:`base_url` tell which.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        callback_timeout: float = 5.0,
    ) -> None:
        self.emulator = emulator if emulator is not None else Emulator()
        self.host = host
        self.port = port
        self.callback_timeout = callback_timeout
        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("the emulator server is not running")
        return f"http://{self.host}:{self._httpd.server_port}"

    @property
    def base_url(self) -> str:
        """The API base URL, for the client's ``base_url`` (ends in ``/``)."""
        return self.url + API_PREFIX

    def start(self) -> EmulatorServer:
        """Bind and start serving in background threads; return ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the emulator server is already running")
        httpd = _HTTPServer((self.host, self.port), self.emulator)
        self._httpd = httpd
        self._stopped.clear()
        self._threads = [
            threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="voicepassword-emulator",
                daemon=True,
            ),
            _CallbackThread(self.emulator, httpd.stopping, self.callback_timeout),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join every thread."""
        httpd = self._httpd
        if httpd is None:
            return
        httpd.stopping.set()
        self.emulator.wakeup.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        for thread in self._threads:
            thread.join()
        self._httpd = None
        self._threads = []
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (or ``timeout`` seconds); true if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    api_key: str = DEFAULT_API_KEY,
    balance: Decimal | str | int = DEFAULT_BALANCE,
    callback_delay: float = 2.0,
    slow_seconds: float | None = None,
    run_for: float | None = None,
    out: Writer | None = None,
) -> None:
    """Run the emulator in the foreground until Ctrl-C (or for ``run_for`` seconds).

    The one function behind ``python -m django_voicepassword.emulator`` and the
    ``voicepassword_emulator`` management command. With ``out``, the addresses
    and a line per request (never the API key) are written there.
    """
    emulator = Emulator(api_key=api_key, balance=balance, callback_delay=callback_delay)
    if slow_seconds is not None:
        emulator.slow_seconds = slow_seconds
    handler: logging.StreamHandler[Writer] | None = None
    level = logger.level
    if out is not None:
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    def say(line: str) -> None:
        if out is not None:
            out.write(line + "\n")
            out.flush()

    try:
        if not _is_loopback(host):
            say(f"Warning: {host} is not loopback; the control endpoints have no authentication.")
        with EmulatorServer(emulator, host=host, port=port) as server:
            say(f"VoicePassword emulator: phone page {server.url}/")
            say(f"API base URL (VOICEPASSWORD['API_URL']): {server.base_url}")
            say("Quit with Ctrl-C.")
            try:
                server.wait(run_for)
            except KeyboardInterrupt:
                say("Stopping.")
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)
