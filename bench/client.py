"""What the client costs on top of requests: flash_call() against a bare Session.post().

Run ``python bench/client.py [--n N] [--rounds R] [--block B] [--server emulator|fixed]``
(default 20,000 calls per side per round, 5 rounds, turns of 1,000 calls).

Three sides place the same flash call, each to a number of its own (of the
same length, so that the server can tell them apart), over one kept-alive
connection each to the same server on 127.0.0.1:

* ``client``: ``VoicePasswordClient.flash_call()``;
* ``gateway``: ``HttpGateway.flash_call()``, around a client of its own: what
  the services call (the tracing span and the ``provider_request`` signal);
* ``bare``: ``requests.Session().post()`` of the same request, done as a plain
  caller would: the same URL, the same JSON encoded per call, the same headers
  (the key in ``Authorization``), the same timeout, and the JSON answer parsed.

Within each round the sides take turns by blocks, each side first as often as
the others, so that drift in the machine's speed falls on all alike; between
blocks (untimed) the server's records are drained and the garbage collected.
A round's ratio is a side's whole time over the bare side's.

It judges (exit status 0 pass, 1 miss, 2 not run; see ``bench/_harness.py``):

* the work: every call answered with the call placed (the bare side: HTTP 200
  and ``"result": "ok"``), and the server recorded exactly the requests of
  each side (warm-up included): a client that fails, or skips the request,
  is a miss, not a fast client;
* the targets: the median of the rounds' client/bare and gateway/bare ratios
  (wall clock) at most 1.05, printed with the rounds' range. The ratios in
  this process's CPU time (the in-process server's thread included, the same
  for every side) are printed for information: on a shared machine they move
  less than the wall clock.

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
#: Each side's number, so that the server can tell them apart: ordinary test
#: numbers (answered), all of the same length.
NUMBER = "79990000001"
GATEWAY_NUMBER = "79990000008"
BARE_NUMBER = "79990000007"
ANSWER = b'{"result":"ok","id":"1","number":"79990000001","price":"0.35","code":"1234"}'
#: client/bare and gateway/bare, at most (the median of the rounds).
TARGET = 1.05
#: Calls a side makes before the next side takes its turn.
BLOCK = 1000
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
    """A server under the bench: its API URL, and the requests it recorded per number.

    ``drain`` returns the requests recorded since the last drain and forgets
    them, so that the server's memory (the emulator keeps every call) does not
    grow over a run of 300,000 calls and slow the later rounds' garbage
    collections.
    """

    base_url: str
    drain: Callable[[], Counter[str]]


@contextmanager
def fixed_server() -> Iterator[Server]:
    """A server that answers ANSWER to every POST."""
    received: Counter[str] = Counter()
    handler = type("FixedHandler", (_FixedHandler,), {"received": received})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    def drain() -> Counter[str]:
        # Between blocks, when no request is in flight.
        recorded = Counter(received)
        received.clear()
        return recorded

    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}/api/voice-password/", drain)
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

    def drain() -> Counter[str]:
        recorded = Counter(call.number for call in emulator.calls)
        emulator.reset()  # the calls, the log and the balance; ids go on
        return recorded

    with EmulatorServer(emulator) as server:
        yield Server(server.base_url, drain)


@dataclass
class Side:
    """One way of placing a flash call, and what it did."""

    name: str
    number: str
    call: Callable[[], bool]  # True when the answer was the call placed
    made: int = 0
    refused: int = 0
    recorded: int = 0
    wall_ns: int = 0  # this round's
    cpu_ns: int = 0

    def run(self, count: int) -> None:
        """``count`` calls, timed on the wall clock and in this process's CPU time."""
        call = self.call
        refused = 0
        wall = time.perf_counter_ns()
        cpu = time.process_time_ns()
        for _ in range(count):
            if not call():
                refused += 1
        self.cpu_ns += time.process_time_ns() - cpu
        self.wall_ns += time.perf_counter_ns() - wall
        self.made += count
        self.refused += refused


def sides(client: VoicePasswordClient, bare: requests.Session, base_url: str) -> list[Side]:
    """The client, the HTTP gateway around a client of its own, and the bare post."""
    from django_voicepassword.gateways.http import HttpGateway

    gateway = HttpGateway(VoicePasswordClient(KEY, base_url=base_url))
    url = base_url + "send/"
    # What flash_call() sends: the same headers, the same timeout, the same
    # JSON (to another number), encoded per call and its answer parsed.
    headers = dict(client._headers)
    timeout = client.timeout

    def with_client() -> bool:
        return bool(client.flash_call(NUMBER).id)

    def with_gateway() -> bool:
        return bool(gateway.flash_call(GATEWAY_NUMBER).id)

    def with_requests() -> bool:
        body = json.dumps({"number": BARE_NUMBER, "capacity": "4"}, separators=(",", ":"))
        answer = bare.post(url, data=body.encode(), headers=headers, timeout=timeout)
        return answer.status_code == 200 and answer.json().get("result") == "ok"

    return [
        Side("client", NUMBER, with_client),
        Side("gateway", GATEWAY_NUMBER, with_gateway),
        Side("bare", BARE_NUMBER, with_requests),
    ]


def measure(n: int, rounds: int, server: Server, verdict: Verdict, block: int = BLOCK) -> None:
    """Time the sides in ``rounds`` rounds of ``n`` calls each; check their work into ``verdict``.

    Within a round the sides take turns by blocks of ``block`` calls, each
    side first as often as the others; between blocks (untimed) the server's
    records are drained and the garbage collected, so each block starts from
    the same state whichever side runs it.
    """
    with VoicePasswordClient(KEY, base_url=server.base_url) as client, requests.Session() as bare:
        every = sides(client, bare, server.base_url)
        by_number = {side.number: side for side in every}

        def drain() -> None:
            for number, count in server.drain().items():
                if number in by_number:
                    by_number[number].recorded += count
            gc.collect()

        drain()
        warmup = max(50, n // 20)
        for side in every:
            side.run(warmup)
        drain()

        block = max(1, min(block, n))
        wall: dict[str, list[float]] = {side.name: [] for side in every}
        cpu: dict[str, list[float]] = {side.name: [] for side in every}
        for _round in range(rounds):
            for side in every:
                side.wall_ns = side.cpu_ns = 0
            done = 0
            turn = 0
            while done < n:
                count = min(block, n - done)
                order = every[turn % len(every) :] + every[: turn % len(every)]
                for side in order:
                    side.run(count)
                    drain()
                done += count
                turn += 1
            for side in every:
                wall[side.name].append(side.wall_ns / n)
                cpu[side.name].append(side.cpu_ns / n)

    for side in every:
        verdict.require(
            f"{side.name}: every call answered",
            side.refused == 0,
            f"{side.made - side.refused} of {side.made}",
        )
        verdict.require(
            f"{side.name}: every call recorded by the server",
            side.recorded == side.made,
            f"{side.recorded} recorded for {side.made} made",
        )

    print(f"calls per side: {n} in each of {rounds} rounds, in turns of {block}")
    for side in every:
        print(
            f"{side.name:8s} {statistics.median(wall[side.name]) / 1000:7.1f} us per call, "
            f"{statistics.median(cpu[side.name]) / 1000:7.1f} us of CPU (medians of the rounds)"
        )
    for name in ("client", "gateway"):
        print(
            f"ratio {name}/bare in CPU time (this process, the server's thread included): "
            f"{ratios(cpu[name], cpu['bare']).describe()} (for information)"
        )
    for name in ("client", "gateway"):
        verdict.target(f"ratio {name}/bare", ratios(wall[name], wall["bare"]), at_most=TARGET)


def run(args: argparse.Namespace) -> Verdict:
    verdict = Verdict()
    server = emulator_server if args.server == "emulator" else fixed_server
    try:
        with server() as chosen:
            print(f"server: {args.server} at {chosen.base_url}")
            measure(args.n, args.rounds, chosen, verdict, args.block)
    except ImportError as error:  # the emulator is optional for this script
        print(f"server: emulator unavailable ({error}); using the fixed server")
        with fixed_server() as chosen:
            measure(args.n, args.rounds, chosen, verdict, args.block)
    return verdict


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=20_000, help="calls per side per round (default 20000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument(
        "--block", type=int, default=BLOCK, help=f"calls per turn (default {BLOCK})"
    )
    parser.add_argument("--server", choices=["emulator", "fixed"], default="emulator")
    return parser


if __name__ == "__main__":
    main(run, parser())
