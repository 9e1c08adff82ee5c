"""A login start asks Redis at most twice: through the JSON API and through the HTML flow.

The limits, the budget, the fraud guard and the stand-in's send durations
run as one script on Django's RedisCache (``ratelimit.check_and_reserve``);
the second round trip is the one write after the send (the durations of
real calls kept, in batches once the cache has enough of them, or a
stand-in's reservation given back). Counted on the real
Redis of the service tier, at the connection: every request a connection
writes to the socket is one round trip, a pipeline or a script included.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache, caches
from django.test import Client, override_settings
from redis.connection import AbstractConnection

from django_voicepassword import verification
from django_voicepassword.gateways.base import reset_gateway
from django_voicepassword.models import Challenge, PhoneNumber

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django_voicepassword.auth_backends.PhoneCodeBackend",
]
KNOWN = "79990000001"  # has an account: called ("verified")
UNKNOWN = "79990000003"  # has none: not called ("uncalled")
WARM_UP = "79990000005"  # has an account too
# Every scope limited (the defaults), the budget and the fraud guard on.
SETTINGS: dict[str, Any] = {
    "API_KEY": "emulator-key",
    "DAILY_BUDGET": "1000",
    "FRAUD_GUARD": {},
}


def forget_counters() -> None:
    backend: Any = caches["default"]
    client = backend._cache.get_client()
    for key in client.scan_iter(match=backend.make_key("voicepassword:*")):
        client.delete(key)


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    assert type(caches["default"]).__name__ == "RedisCache"
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    forget_counters()
    with override_settings(VOICEPASSWORD=SETTINGS, AUTHENTICATION_BACKENDS=BACKENDS):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()
    forget_counters()


class Trips:
    """The requests written to Redis while counting, by their command names."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.counting = False

    def record(self, command: Any) -> None:
        if not self.counting:
            return
        chunks = command if isinstance(command, list | tuple) else [command]
        head = b"".join(bytes(chunk) for chunk in chunks)[:200]
        # RESP: *<n> $<len> NAME ...: the name of the first command.
        self.sent.append(head.split(b"\r\n")[2].decode(errors="replace").upper())


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Trips:
    counted = Trips()
    real = AbstractConnection.send_packed_command

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        counted.record(command)
        real(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send_packed_command)
    return counted


def start_by_api(client: Client, number: str) -> str:
    response = client.post(
        "/voicepassword/api/challenges/", {"number": number}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def start_by_form(client: Client, number: str) -> str:
    response = client.post("/voicepassword/login/", {"number": number})
    assert response.status_code == 302, response.content.decode()[:2000]
    return str(response["Location"]).rstrip("/").rsplit("/", 1)[-1]


FLOWS = {"api": start_by_api, "html": start_by_form}


def stored(pattern: str) -> dict[str, int]:
    backend: Any = caches["default"]
    client = backend._cache.get_client()
    found = client.scan_iter(match=backend.make_key(f"voicepassword:{pattern}"))
    return {key.decode(): int(client.get(key)) for key in found}


@pytest.mark.parametrize("flow", sorted(FLOWS))
@pytest.mark.parametrize(
    ("number", "create_users"), [(KNOWN, False), (UNKNOWN, False), (UNKNOWN, True)]
)
def test_a_login_start_makes_at_most_two_round_trips_to_redis(
    flow, number, create_users, trips, emulated
):
    for name, owned in (("alice", KNOWN), ("bob", WARM_UP)):
        person = get_user_model().objects.create_user(name, password=None)
        PhoneNumber.objects.create(user=person, number=owned)
    start = FLOWS[flow]
    with override_settings(VOICEPASSWORD={**SETTINGS, "CREATE_USERS": create_users}):
        # A first start warms what a running site has warm: the connection,
        # the script loaded into Redis, the gateway (whose warm sends are timed).
        start(Client(), WARM_UP)
        trips.counting = True
        challenge = start(Client(), number)
        trips.counting = False

    assert Challenge.objects.filter(pk=challenge).exists()
    assert 1 <= len(trips.sent) <= 2, trips.sent
    assert trips.sent[0] == "EVALSHA"
    called = number == KNOWN or create_users
    assert len(emulated.sends(number)) == (1 if called else 0)
    # The start was counted in every scope (one of each, the warm-up's in
    # the shared ones too) and its call held against the budget.
    assert sorted(stored("limit:number:*").values()) == [1, 1, 1, 1]  # two numbers, 2 rates
    assert sorted(stored("limit:session:*").values()) == [1, 1]
    assert sorted(stored("limit:ip:*").values()) == [2, 2]
    assert list(stored("limit:prefix:*").values()) == [2]  # the same 7 digits
    assert sum(stored("limit:global:all:*").values()) == 2
    [spent] = stored("budget:*").values()
    assert spent == 50 * (1 + called)  # a stand-in's reservation is given back
    # A new number's send (a sign-up's, here) is counted by the fraud guard.
    assert sum(stored("fraud:sends:site:*").values()) == int(create_users)
    # A real call's duration is kept (the warm-up's call was on a cold gateway).
    durations = cache.get("voicepassword:send-durations:flash_call")
    assert len(durations or []) == int(called)


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_a_start_on_a_running_site_asks_redis_once(flow, trips, emulated):
    # A running site has send durations already: the start's own is kept in
    # the process until a batch is written, so its only round trip is the script.
    for name, owned in (("alice", KNOWN), ("bob", WARM_UP)):
        person = get_user_model().objects.create_user(name, password=None)
        PhoneNumber.objects.create(user=person, number=owned)
    start = FLOWS[flow]
    with override_settings(VOICEPASSWORD=SETTINGS):
        start(Client(), WARM_UP)
        cache.set("voicepassword:send-durations:flash_call", [0.1] * 8)
        verification._pending_durations.clear()
        trips.counting = True
        challenge = start(Client(), KNOWN)
        trips.counting = False

    assert Challenge.objects.filter(pk=challenge).exists()
    assert trips.sent == ["EVALSHA"]
    assert len(emulated.sends(KNOWN)) == 1
    assert len(verification._pending_durations["flash_call"]) == 1


# --- the script counts as the cache's API does ----------------------------------------

T0 = 1_750_118_400  # a UTC midnight
# Tight limits, so that a run meets refusals in every scope: the global one and
# the budget in one profile, the fraud guard's blocks in the other.
TIGHT: dict[str, Any] = {
    "API_KEY": "tests-api-key",
    "LIMITS": {
        "session": "3/h",
        "ip": "4/h",
        "network": "5/h",
        "number": "2/10m,3/d",
        "prefix": "6/h",
        "global": "9/h,12/d",
    },
    "GLOBAL_NEW_SHARE": 0.4,
    "PREFIX_LENGTH": 9,
    "DAILY_BUDGET": "2.50",
    "FRAUD_GUARD": {"MIN_SENDS": 4, "BASELINE": 1.0, "WINDOW": 3600, "BLOCK_SECONDS": 900},
}
PROFILES: dict[str, dict[str, Any]] = {
    "global": TIGHT,
    "fraud": {
        **TIGHT,
        "LIMITS": {**TIGHT["LIMITS"], "prefix": "8/h", "global": "12/h,30/d"},
        "GLOBAL_NEW_SHARE": 0.75,
        "FRAUD_GUARD": {"MIN_SENDS": 3, "BASELINE": 1.0, "WINDOW": 7200, "BLOCK_SECONDS": 1800},
    },
}
NUMBERS = ["7999000001" + str(n) for n in range(4)] + ["7999000002" + str(n) for n in range(4)]
ADDRESSES = ["203.0.113.1", "203.0.113.2", "198.51.100.7", "2001:db8::1"]


def scenario(seed: int, clock: list[float]) -> list[Any]:
    """A seeded run of sends, reservations and releases; what each one answered."""
    import random

    from django.test import RequestFactory

    from django_voicepassword import ratelimit
    from django_voicepassword.ratelimit import LimitExceeded

    draw = random.Random(seed)
    factory = RequestFactory()
    answers: list[Any] = []
    held: list[Any] = []
    for _ in range(70):
        clock[0] += draw.choice([0, 0, 1, 7, 45, 300, 1900])
        request: Any = factory.post("/", REMOTE_ADDR=draw.choice(ADDRESSES))
        request.session = SimpleNamespace(session_key=draw.choice(["s1", "s2", "s3"]))
        number = draw.choice(NUMBERS)
        kind: ratelimit.NumberKind = draw.choice(["new", "new", "verified", "uncalled"])
        action = draw.choice(["check", "check", "both", "reserve", "release"])
        try:
            if action == "check":
                ratelimit.check_send(number, request, kind=kind)
                answers.append("sent")
            elif action == "both":
                reservation, _read = ratelimit.check_and_reserve(
                    number, request, kind=kind, channel="voice_call"
                )
                held.append(reservation)
                answers.append(reservation)
            elif action == "reserve":
                held.append(ratelimit.reserve("flash_call", request=request))
                answers.append(held[-1])
            elif held:
                ratelimit.release(held.pop(draw.randrange(len(held))))
                answers.append("released")
        except LimitExceeded as refused:
            answers.append((refused.scope, refused.retry_after))
    return answers


def counters() -> dict[str, tuple[int, int]]:
    """Every counter of this run with its value and its time to live."""
    backend: Any = caches["default"]
    client = backend._cache.get_client()
    found = {}
    for key in client.scan_iter(match=backend.make_key("voicepassword:*")):
        raw = client.get(key)
        value = int(raw) if raw.isdigit() else -1  # a block's pickled end
        found[key.decode()] = (value, client.ttl(key))
    return found


@pytest.mark.parametrize(
    ("profile", "seed"), [("global", seed) for seed in range(4)] + [("fraud", 2), ("fraud", 5)]
)
def test_the_script_answers_and_stores_exactly_what_the_cache_path_does(
    profile, seed, monkeypatch
):
    from django_voicepassword import fraud, ratelimit
    from django_voicepassword.models import PrefixBlock

    clock = [float(T0)]
    monkeypatch.setattr(ratelimit, "_now", lambda: clock[0])
    monkeypatch.setattr(fraud, "_now", lambda: clock[0])
    runs = []
    for path in ("script", "cache"):
        forget_counters()
        PrefixBlock.objects.all().delete()
        clock[0] = float(T0)
        if path == "cache":
            monkeypatch.setattr(ratelimit, "_redis_client", lambda: None)
        with override_settings(VOICEPASSWORD=PROFILES[profile]):
            answers = scenario(seed, clock)
        blocks = list(PrefixBlock.objects.values_list("prefix", "country", "started"))
        runs.append((answers, counters(), blocks))
    (script_answers, script_counters, script_blocks), cache_run = runs
    assert script_answers == cache_run[0]
    assert {k: v for k, (v, _ttl) in script_counters.items()} == {
        k: v for k, (v, _ttl) in cache_run[1].items()
    }
    # The same timeouts (both set when the counter was made: the runs are seconds apart).
    assert all(abs(ttl - cache_run[1][k][1]) <= 15 for k, (_v, ttl) in script_counters.items())
    assert script_blocks == cache_run[2]
    # The run did meet what it is meant to compare: refusals and passes alike.
    refused = {answer[0] for answer in script_answers if isinstance(answer, tuple)}
    if profile == "global":
        assert {"number", "global", "budget"} <= refused
    else:
        assert script_blocks  # and the sends after a block were refused as it says
        assert "prefix" in refused
    assert "sent" in script_answers


# --- a Redis that refuses scripts ------------------------------------------------------

NO_SCRIPTS_USER = "voicepassword-tests-noscript"


@pytest.fixture
def no_scripts_cache(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The default cache as a Redis user whose ACL denies ``@scripting``, for one test."""
    from django_voicepassword import ratelimit

    backend: Any = caches["default"]
    admin = backend._cache.get_client()
    admin.execute_command(
        "ACL", "SETUSER", NO_SCRIPTS_USER, "reset", "on", "nopass", "~*", "+@all", "-@scripting"
    )
    location = str(backend._servers[0]).replace("redis://", f"redis://{NO_SCRIPTS_USER}@", 1)
    monkeypatch.setattr(ratelimit, "_scripting_refused", False)
    monkeypatch.setattr(ratelimit, "_script", None)
    try:
        with override_settings(
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": location,
                    "KEY_PREFIX": backend.key_prefix,
                }
            }
        ):
            yield caches["default"]
    finally:
        admin.execute_command("ACL", "DELUSER", NO_SCRIPTS_USER)


def test_a_redis_that_refuses_scripts_counts_by_the_cache_api(no_scripts_cache, caplog, emulated):
    from django_voicepassword import ratelimit

    person = get_user_model().objects.create_user("alice", password=None)
    PhoneNumber.objects.create(user=person, number=KNOWN)
    with override_settings(VOICEPASSWORD={**SETTINGS, "LIMITS": {"number": "2/d"}}):
        client = Client()
        start_by_api(client, KNOWN)
        # Refused once, then the cache path counts: the same keys, no error.
        assert ratelimit._scripting_refused
        assert "refused the limits' script" in caplog.text
        start_by_api(Client(), KNOWN)
        response = Client().post(
            "/voicepassword/api/challenges/", {"number": KNOWN}, content_type="application/json"
        )
    assert response.status_code == 429, response.content
    # The refused start is counted too, as the script counts it.
    assert sorted(stored("limit:number:*").values()) == [3]
    [spent] = stored("budget:*").values()
    assert spent == 100  # two calls held; the refused start reserved nothing
    assert len(emulated.sends(KNOWN)) == 2


def test_the_script_reuses_one_redis_client_per_cache(settings) -> None:
    from django_voicepassword import ratelimit

    first = ratelimit._redis_client()
    assert first is not None
    assert ratelimit._redis_client() is first
    # A new cache instance (settings changed) gets a client of its own.
    with override_settings(CACHES={"default": {**settings.CACHES["default"], "KEY_PREFIX": "x"}}):
        assert ratelimit._redis_client() is not first
