"""What the client costs on top of requests: flash_call() against a bare Session.post().

Run ``python bench/client.py [--n N] [--rounds R] [--server emulator|fixed]``.
Both sides post the same body (to two numbers of the same length, so that the
server can tell them apart) with the same headers over one kept-alive
connection to the same server on 127.0.0.1; the rounds alternate (and
alternate which side goes first) so that drift in the machine's speed falls on
both alike.

It judges (exit status 0 pass, 1 miss, 2 not run; see ``bench/_harness.py``):

* the work: every ``flash_call()`` returned the call the server placed, every
  bare post was answered 200, and the server recorded exactly the requests of
  each side (warm-up included): a client that fails, or skips the request,
  is a miss, not a fast client;
* the target: the median of the rounds' client/bare ratios at most 1.10,
  printed with the rounds' range.

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
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from _harness import Verdict, main, ratios

from django_voicepassword.client import VoicePasswordClient

KEY = "bench-key-not-a-secret"
#: The client side's number, and the bare side's: ordinary test numbers (answered).
NUMBER = "79990000001"
BARE_NUMBER = "79990000007"
ANSWER = b'{"result":"ok","id":"1","number":"79990000001","price":"0.35","code":"1234"}'
TARGET = 1.10
_NUMBER_FIELD = re.compile(rb'"number":"(\d+)"')


class _FixedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real provider
    disable_nagle_algorithm = True
    #: Requests received per number (set per server).
    received: Counter[str]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = _NUMBER_FIELD.search(body)
        self.received[match[1].decode() if match else "?"] += 1
        # Head and body in one write: two small writes would meet Nagle and
        # delayed ACKs and measure the kernel instead of the client.
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Server:
    """A server under the bench: its API URL, and the requests it recorded per number."""

    base_url: str
    recorded: Callable[[], Counter[str]]


@contextmanager
def fixed_server() -> Iterator[Server]:
    """A server that answers ANSWER to every POST."""
    received: Counter[str] = Counter()
    handler = type("FixedHandler", (_FixedHandler,), {"received": received})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Server(
            f"http://127.0.0.1:{httpd.server_port}/api/voice-password/", lambda: Counter(received)
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@contextmanager
def emulator_server() -> Iterator[Server]:
    """The project's emulator, with the bench's key and money for every call."""
    from django_voicepassword.emulator.core import Emulator
    from django_voicepassword.emulator.server import EmulatorServer

    emulator = Emulator(api_key=KEY, balance="100000000", callback_delay=3600, max_log=None)
    with EmulatorServer(emulator) as server:
        yield Server(server.base_url, lambda: Counter(call.number for call in emulator.calls))


def timed(call: Callable[[], object], count: int) -> int:
    start = time.perf_counter_ns()
    for _ in range(count):
        call()
    return time.perf_counter_ns() - start


def measure(n: int, rounds: int, server: Server, verdict: Verdict) -> None:
    """Time both sides in ``rounds`` interleaved rounds; check their work into ``verdict``."""
    made: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    with VoicePasswordClient(KEY, base_url=server.base_url) as client, requests.Session() as bare:
        url = server.base_url + "send/"
        # Exactly what flash_call() sends: the same bytes, the same headers.
        body = json.dumps({"number": BARE_NUMBER, "capacity": "4"}, separators=(",", ":"))
        headers = dict(client._headers)

        def with_client() -> object:
            made["client"] += 1
            result = client.flash_call(NUMBER)
            # A cheap check, the same every call: the client returned the call placed.
            if not result.id:
                refused["client"] += 1
            return result

        def with_requests() -> object:
            made["bare"] += 1
            answer = bare.post(url, data=body, headers=headers)
            if answer.status_code != 200:
                refused["bare"] += 1
            return answer

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

    recorded = server.recorded()
    for side, number in (("client", NUMBER), ("bare", BARE_NUMBER)):
        verdict.require(
            f"{side}: every call answered",
            refused[side] == 0,
            f"{made[side] - refused[side]} of {made[side]}",
        )
        verdict.require(
            f"{side}: every call recorded by the server",
            recorded[number] == made[side],
            f"{recorded[number]} recorded for {made[side]} made",
        )

    print(f"calls per side: {per_round * rounds} in {rounds} interleaved rounds")
    print(
        f"flash_call() through the client: {statistics.median(client_ns) / 1000:8.1f} us per call"
    )
    print(f"bare Session.post():             {statistics.median(bare_ns) / 1000:8.1f} us per call")
    print("  (medians of the rounds)")
    verdict.target("ratio client/bare", ratios(client_ns, bare_ns), at_most=TARGET)


def run(args: argparse.Namespace) -> Verdict:
    verdict = Verdict()
    server = emulator_server if args.server == "emulator" else fixed_server
    try:
        with server() as chosen:
            print(f"server: {args.server} at {chosen.base_url}")
            measure(args.n, args.rounds, chosen, verdict)
    except ImportError as error:  # the emulator is optional for this script
        print(f"server: emulator unavailable ({error}); using the fixed server")
        with fixed_server() as chosen:
            measure(args.n, args.rounds, chosen, verdict)
    return verdict


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per side (default 2000)")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    parser.add_argument("--server", choices=["emulator", "fixed"], default="emulator")
    return parser


if __name__ == "__main__":
    main(run, parser())
