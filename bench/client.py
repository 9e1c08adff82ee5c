"""What the client costs on top of requests: flash_call() against a bare Session.post().

Run ``python bench/client.py [--n N] [--server emulator|fixed]``. Both sides
post the same body with the same headers over one kept-alive connection to the
same server on 127.0.0.1; the rounds alternate (and alternate which side goes
first) so that drift in the machine's speed falls on both alike. The target is
a client/bare ratio of at most 1.10. The script reports and always exits 0: a
timing is not a test.

Servers:

* ``emulator`` (the default when it imports): the project's emulator, the
  provider as the demo and the end-to-end tests see it;
* ``fixed``: a few lines of ``http.server`` that answer one fixed JSON body.
  It does no work per request, so the client's share of the time is as large
  as it can be: the strictest reading of the ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from django_voicepassword.client import VoicePasswordClient

KEY = "bench-key-not-a-secret"
NUMBER = "79990000001"
ANSWER = b'{"result":"ok","id":"1","number":"79990000001","price":"0.35","code":"1234"}'


class _FixedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real provider
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # Head and body in one write: two small writes would meet Nagle and
        # delayed ACKs and measure the kernel instead of the client.
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fixed_server() -> Iterator[str]:
    """A server that answers ANSWER to every POST; yields the API base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FixedHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/api/voice-password/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@contextmanager
def emulator_server() -> Iterator[str]:
    """The project's emulator, with the bench's key and money for every call."""
    from django_voicepassword.emulator.core import Emulator
    from django_voicepassword.emulator.server import EmulatorServer

    emulator = Emulator(api_key=KEY, balance="100000000", callback_delay=3600)
    with EmulatorServer(emulator) as server:
        yield server.base_url


def timed(call: Callable[[], object], count: int) -> int:
    start = time.perf_counter_ns()
    for _ in range(count):
        call()
    return time.perf_counter_ns() - start


def run(n: int, rounds: int, base_url: str) -> None:
    with VoicePasswordClient(KEY, base_url=base_url) as client, requests.Session() as bare:
        url = base_url + "send/"
        # Exactly what flash_call() sends: the same bytes, the same headers.
        body = json.dumps({"number": NUMBER, "capacity": "4"}, separators=(",", ":")).encode()
        headers = dict(client._headers)

        def with_client() -> object:
            return client.flash_call(NUMBER)

        def with_requests() -> object:
            return bare.post(url, data=body, headers=headers)

        answer = with_requests()
        assert isinstance(answer, requests.Response)
        answer.raise_for_status()
        with_client()  # fails loudly if the server does not answer as the provider

        warmup = max(50, n // 20)
        timed(with_client, warmup)
        timed(with_requests, warmup)

        per_round = max(1, n // rounds)
        client_ns: list[float] = []
        bare_ns: list[float] = []
        gc.collect()
        for index in range(rounds):
            order = [(with_client, client_ns), (with_requests, bare_ns)]
            if index % 2:
                order.reverse()
            for call, results in order:
                results.append(timed(call, per_round) / per_round)

    client_us = statistics.fmean(client_ns) / 1000
    bare_us = statistics.fmean(bare_ns) / 1000
    ratios = [c / b for c, b in zip(client_ns, bare_ns, strict=True)]
    print(f"calls per side: {per_round * rounds} in {rounds} interleaved rounds")
    print(f"flash_call() through the client: {client_us:8.1f} us per call")
    print(f"bare Session.post():             {bare_us:8.1f} us per call")
    print(
        f"ratio client/bare: {client_us / bare_us:.3f} "
        f"(median of the rounds' ratios {statistics.median(ratios):.3f}; target <= 1.10)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per side (default 2000)")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    parser.add_argument("--server", choices=["emulator", "fixed"], default="emulator")
    args = parser.parse_args()

    server = emulator_server if args.server == "emulator" else fixed_server
    try:
        try:
            with server() as base_url:
                print(f"server: {args.server} at {base_url}")
                run(args.n, args.rounds, base_url)
        except ImportError as error:  # the emulator is optional for this script
            print(f"server: emulator unavailable ({error}); using the fixed server")
            with fixed_server() as base_url:
                run(args.n, args.rounds, base_url)
    except Exception as error:  # it reports, it does not judge
        print(f"the bench could not run: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
