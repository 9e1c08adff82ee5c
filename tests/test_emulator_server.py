"""The emulator over real HTTP on loopback: API, callbacks, faults, control, page, CLI."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.test import override_settings

from django_voicepassword.client import VoicePasswordClient
from django_voicepassword.conf import settings as vp_settings
from django_voicepassword.emulator import __main__ as emulator_main
from django_voicepassword.emulator import server as server_module
from django_voicepassword.emulator.core import DEFAULT_API_KEY, Callback, Emulator, FaultPlan
from django_voicepassword.emulator.numbers import FaultMode
from django_voicepassword.emulator.server import EmulatorServer, post_callback, serve
from django_voicepassword.exceptions import OutcomeUnknownError, TransportError
from django_voicepassword.management.commands.voicepassword_emulator import Command

KEY = DEFAULT_API_KEY
ANSWERED = "79990000001"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(callback_delay=0.0, slow_seconds=1.0)) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False  # loopback only, whatever the environment's proxies
        yield http


def post(
    session: requests.Session, url: str, body: Any, *, key: str | None = KEY, timeout: Any = 5
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": key, "Content-Type": "application/json"} if key else {}
    return session.post(url, data=data, headers=headers, timeout=timeout)


class Receiver:
    """A tiny site that records the callbacks POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[str, str, Any, float]] = []
        self.status = status
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    (self.path, self.headers["Content-Type"], json.loads(body), time.monotonic())
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.arrived.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/callback/?token=t1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, str, Any, float]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            self.arrived.wait(0.05)
            self.arrived.clear()
        return self.received

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- API


def test_the_api_over_http(server, session):
    assert server.base_url == server.url + "/api/voice-password/"
    answer = post(session, server.base_url + "send/", {"number": ANSWERED, "capacity": "4"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    data = answer.json()
    assert data["result"] == "ok"
    assert data["code"] == server.emulator.last_call().code
    # The same connection serves the next request (HTTP/1.1 keep-alive).
    balance = post(session, server.base_url + "get/", {"request": "balance"})
    assert balance.json()["balance"] == "998.65"
    refused = post(session, server.base_url + "send/", {"number": ANSWERED}, key="wrong")
    assert refused.json() == {"result": "error", "error_code": "authorisation_failed"}
    body_key = post(
        session,
        server.base_url + "send/",
        {"number": ANSWERED, "security": {"apiKey": KEY}},
        key=None,
    )
    assert body_key.json()["result"] == "ok"
    assert len(server.emulator.sends(ANSWERED)) == 3


def test_other_methods_and_paths(server, session):
    assert session.get(server.base_url + "send/", timeout=5).status_code == 405
    assert session.post(server.url + "/", timeout=5).status_code == 405
    assert session.get(server.url + "/nowhere", timeout=5).status_code == 404
    assert session.put(server.base_url + "send/", timeout=5).status_code == 501


def test_bad_bodies(server):
    def raw(request: bytes) -> bytes:
        with closing(
            socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
        ) as sock:
            sock.sendall(request)
            return sock.recv(4096)

    chunked = raw(
        b"POST /api/voice-password/send/ HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert chunked.startswith(b"HTTP/1.1 411 ")
    assert b"Connection: close" in chunked
    for length in (b"abc", b"-1", str(2 << 20).encode()):
        answer = raw(
            b"POST /api/voice-password/send/ HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: " + length + b"\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 413 ")
    empty = raw(b"POST /api/voice-password/send/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert empty.startswith(b"HTTP/1.1 200 ")
    assert b"unknown_request" in empty


def test_a_crash_in_a_handler_closes_the_connection_quietly(server, session, monkeypatch, caplog):
    def crash(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(server.emulator, "handle", crash)
    caplog.set_level("DEBUG", logger="django_voicepassword.emulator")
    with pytest.raises(requests.exceptions.ConnectionError):
        post(session, server.base_url + "send/", {"number": ANSWERED})
    assert any("error handling a request" in r.getMessage() for r in caplog.records)


def test_the_server_lifecycle():
    server = EmulatorServer()
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018
    server.stop()  # stopping a server that never ran is harmless
    with server:
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        assert server.wait(0) is False
    assert server.wait(0) is True
    server.stop()


def test_stop_closes_idle_keep_alive_connections(session):
    with EmulatorServer() as server:
        post(session, server.base_url + "get/", {"request": "balance"})
        started = time.monotonic()
    assert time.monotonic() - started < 2  # did not wait for the idle connection


# --------------------------------------------------------------------------- callbacks


def test_callbacks_are_posted_after_the_delay(session):
    emulator = Emulator(callback_delay=0.3)
    with Receiver() as receiver, EmulatorServer(emulator) as server:
        sent_at = time.monotonic()
        answer = post(
            session,
            server.base_url + "send/",
            {"number": "79990000002", "voice": {"code": "1234"}, "callback_url": receiver.url},
        ).json()
        [(path, content_type, payload, arrived)] = receiver.wait_for(1)
    assert path == "/callback/?token=t1"
    assert content_type == "application/json"
    assert list(payload) == ["id", "number", "duration", "state", "price", "date"]
    assert (payload["id"], payload["state"], payload["duration"]) == (answer["id"], "BUSY", "0")
    assert 0.25 <= arrived - sent_at < 2.0
    [delivery] = emulator.deliveries
    assert (delivery.status, delivery.error) == (200, None)


def test_sms_callbacks_come_in_order(session):
    emulator = Emulator(callback_delay=0.15)
    with Receiver() as receiver, EmulatorServer(emulator) as server:
        call = post(
            session,
            server.base_url + "send/",
            {"number": "79990000011", "callback_url": receiver.url},
        ).json()
        receiver.wait_for(1)
        post(session, server.base_url + "send/", {"sms": {"id": call["id"]}})
        received = receiver.wait_for(4)
    states = [payload["state"] for _, _, payload, _ in received]
    assert states == ["NO ANSWER", "QUEUED", "SEND", "NOT DELIVERED"]


def test_a_failing_site_is_recorded(session):
    emulator = Emulator(callback_delay=0.0)
    with Receiver(status=500) as receiver, EmulatorServer(emulator) as server:
        post(
            session, server.base_url + "send/", {"number": ANSWERED, "callback_url": receiver.url}
        )
        receiver.wait_for(1)
        deadline = time.monotonic() + 5
        while not emulator.deliveries and time.monotonic() < deadline:
            time.sleep(0.01)
    assert emulator.deliveries[0].status == 500


def test_an_unreachable_site_is_recorded():
    callback = Callback("1", f"http://127.0.0.1:{free_port()}/cb/", {"state": "ANSWERED"}, 0.0)
    status, error = post_callback(callback, timeout=2)
    assert status is None
    assert error is not None
    assert "URLError" in error


# --------------------------------------------------------------------------- faults


def test_every_fault_over_http(server, session):
    url = server.base_url + "send/"
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(session, url, {"number": "79990000030"}, timeout=(2, 0.2))
    assert post(session, url, {"number": "79990000030"}).json()["result"] == "ok"  # late
    error = post(session, url, {"number": "79990000031"})
    assert error.status_code == 500
    assert error.headers["Content-Type"].startswith("text/html")
    html = post(session, url, {"number": "79990000032"})
    assert html.status_code == 200
    assert "<html>" in html.text
    truncated = post(session, url, {"number": "79990000033"})
    assert truncated.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        truncated.json()
    with pytest.raises(requests.exceptions.ConnectionError):
        post(session, url, {"number": "79990000034"})
    counts = {n: len(server.emulator.sends(n)) for n in ("79990000030", "79990000034")}
    assert counts == {"79990000030": 2, "79990000034": 1}
    assert server.emulator.last_call("79990000034") is not None  # placed all the same


def test_a_slow_answer_does_not_hold_up_the_stop():
    with requests.Session() as http, EmulatorServer(Emulator(slow_seconds=30)) as server:
        with pytest.raises(requests.exceptions.ReadTimeout):
            post(http, server.base_url + "send/", {"number": "79990000030"}, timeout=(2, 0.1))
        started = time.monotonic()
    assert time.monotonic() - started < 2


@pytest.fixture
def vp_client(server: EmulatorServer) -> Iterator[VoicePasswordClient]:
    with VoicePasswordClient(
        KEY, base_url=server.base_url, timeout=(2, 0.3), get_retries=1, backoff=0
    ) as client:
        yield client


@pytest.mark.parametrize(
    ("number", "error", "placed"),
    [
        ("79990000030", OutcomeUnknownError, True),
        # No refusal body: the client cannot know that nothing was placed.
        ("79990000031", OutcomeUnknownError, False),
        ("79990000032", OutcomeUnknownError, True),
        ("79990000033", OutcomeUnknownError, True),
        ("79990000034", OutcomeUnknownError, True),
        ("79990000037", OutcomeUnknownError, True),
    ],
)
def test_the_client_sees_each_fault_as_documented(vp_client, server, number, error, placed):
    with pytest.raises(error) as caught:
        vp_client.flash_call(number)
    assert type(caught.value) is error
    assert len(server.emulator.sends(number)) == 1  # sent exactly once
    assert (server.emulator.last_call(number) is not None) is placed


@pytest.mark.parametrize("mode", list(FaultMode))
def test_get_faults_through_the_client(vp_client, server, mode):
    server.emulator.faults = FaultPlan(mode, endpoints=("get",), seconds=1.0)
    with pytest.raises(TransportError) as caught:
        vp_client.state("1")
    assert type(caught.value) is TransportError
    assert len(server.emulator.log) == 2


def test_the_client_against_the_server(vp_client, server):
    sent = vp_client.voice_call(ANSWERED, code="2468", repeat=True, ani="79990000090")
    assert sent.code == "2468"
    assert vp_client.state(sent.id).state.value == "ANSWERED"
    assert vp_client.balance().amount == Decimal("998.65")


# --------------------------------------------------------------------------- control


def test_control_endpoints(server, session):
    control = server.url + "/_emulator/"
    answer = session.post(control + "faults", json={"mode": "http500", "endpoints": ["get"]})
    assert answer.json()["faults"]["mode"] == "http500"
    assert server.emulator.faults == FaultPlan(FaultMode.HTTP500, endpoints=["get"])
    assert post(session, server.base_url + "get/", {"request": "balance"}).status_code == 500
    assert session.post(control + "faults", json={"mode": None}).json()["faults"] is None
    assert session.post(control + "balance", json={"balance": "1.50"}).json()["balance"] == "1.50"
    assert post(session, server.base_url + "send/", {"number": ANSWERED}).json()["result"] == "ok"
    log = session.get(control + "log").json()
    assert log["balance"] == "1.15"
    assert [entry["endpoint"] for entry in log["log"]] == ["get", "send"]
    assert log["calls"][0]["number"] == ANSWERED
    assert KEY not in json.dumps(log)
    assert session.post(control + "reset", json={"balance": "7"}).json()["balance"] == "7.00"
    assert session.post(control + "reset", data=b"").json()["balance"] == "999.00"
    assert session.get(control + "log").json()["log"] == []


@pytest.mark.parametrize(
    ("method", "action", "body", "status"),
    [
        ("POST", "log", b"", 405),
        ("GET", "faults", b"", 405),
        ("GET", "nothing", b"", 404),
        ("POST", "faults", b"not json", 400),
        ("POST", "faults", b"[1]", 400),
        ("POST", "faults", b'{"mode": "boom"}', 400),
        ("POST", "balance", b"{}", 400),
        ("POST", "balance", b'{"balance": "lots"}', 400),
        ("POST", "reset", b'{"balance": []}', 400),
    ],
)
def test_control_errors(server, session, method, action, body, status):
    answer = session.request(method, server.url + "/_emulator/" + action, data=body, timeout=5)
    assert answer.status_code == status
    assert answer.json()["result"] == "error"


# --------------------------------------------------------------------------- page


def test_the_phone_page(server, session):
    code = post(session, server.base_url + "send/", {"number": ANSWERED}).json()["code"]
    page = session.get(server.url + "/", timeout=5)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert f"<mark>{code}</mark>" in page.text
    hostile = session.get(server.url + "/", params={"number": "<b>x</b>"}, timeout=5)
    assert "<b>x</b>" not in hostile.text
    assert "&lt;b&gt;x&lt;/b&gt;" in hostile.text
    only = session.get(server.url + "/", params={"number": "79990000002"}, timeout=5)
    assert f"<mark>{code}</mark>" not in only.text


# --------------------------------------------------------------------------- CLI


def test_serve_reports_and_stops():
    out = io.StringIO()
    serve("127.0.0.1", 0, run_for=0, callback_delay=0, slow_seconds=1.5, out=out)
    text = out.getvalue()
    assert "phone page http://127.0.0.1:" in text
    assert "/api/voice-password/" in text
    assert "Warning" not in text
    serve("127.0.0.1", 0, run_for=0)  # silent without out


def test_serve_warns_off_loopback_and_stops_on_ctrl_c(monkeypatch):
    monkeypatch.setattr(server_module, "_is_loopback", lambda host: False)

    def interrupted(self: EmulatorServer, timeout: float | None = None) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(EmulatorServer, "wait", interrupted)
    out = io.StringIO()
    serve("127.0.0.1", 0, out=out)
    assert "not loopback" in out.getvalue()
    assert out.getvalue().endswith("Stopping.\n")


def test_loopback_hosts():
    assert server_module._is_loopback("localhost")
    assert server_module._is_loopback("::1")
    assert server_module._is_loopback("127.0.0.2")
    assert not server_module._is_loopback("0.0.0.0")


def test_serve_logs_each_request_without_the_key():
    out = io.StringIO()
    port = free_port()
    thread = threading.Thread(
        target=serve, args=("127.0.0.1", port), kwargs={"run_for": 1.0, "out": out}
    )
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "Quit" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/voice-password/send/",
            data=b'{"number": "79990000001", "voice": {"code": "1357"}}',
            headers={"Authorization": KEY},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.loads(answer.read())["code"] == "1357"
    finally:
        thread.join()
    text = out.getvalue()
    assert "send voice_call 79990000001 -> ok" in text
    assert "hears the robot say 1357" in text
    assert KEY not in text


def test_main_runs_the_server(capsys):
    assert emulator_main.main(["--port", "0", "--run-for", "0", "--balance", "10"]) == 0
    assert "phone page http://127.0.0.1:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        emulator_main.main(["--balance", "lots"])
    assert "not an amount" in capsys.readouterr().err


def test_python_m_help():
    result = subprocess.run(
        [sys.executable, "-m", "django_voicepassword.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in ("--host", "--port", "--api-key", "--balance", "--callback-delay", "--run-for"):
        assert option in result.stdout


def test_python_m_runs():
    result = subprocess.run(
        [sys.executable, "-m", "django_voicepassword.emulator", "--port", "0", "--run-for", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "phone page http://127.0.0.1:" in result.stdout


def test_the_management_command():
    out = io.StringIO()
    call_command("voicepassword_emulator", "--port", "0", "--run-for", "0", stdout=out)
    assert "phone page http://127.0.0.1:" in out.getvalue()


def test_the_management_command_serves_with_the_sites_key():
    port = free_port()
    out = io.StringIO()
    thread = threading.Thread(
        target=call_command,
        args=("voicepassword_emulator", "--port", str(port), "--run-for", "1"),
        kwargs={"stdout": out},
    )
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "Quit" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        with VoicePasswordClient(
            str(vp_settings.API_KEY), base_url=f"http://127.0.0.1:{port}/api/voice-password/"
        ) as client:
            assert client.balance().amount == Decimal("999.00")
    finally:
        thread.join()


def test_the_management_command_defaults():
    parser = Command().create_parser("manage.py", "voicepassword_emulator")
    options = parser.parse_args([])
    assert (options.host, options.port) == ("127.0.0.1", 8765)
    assert options.api_key == vp_settings.API_KEY
    assert options.balance == Decimal("999.00")
    with override_settings(VOICEPASSWORD={}):
        parser = Command().create_parser("manage.py", "voicepassword_emulator")
        assert parser.parse_args([]).api_key == KEY
