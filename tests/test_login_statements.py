"""How many SQL statements one phone login costs: a start, and a confirm.

Counts, not timings (issue #16): the statements of one request through the
HTML flow and through the API, for a number with an account and for a first
login (``CREATE_USERS``), on the tier's database (SQLite by default, PostgreSQL
on the service tier).

How the count is taken: ``CaptureQueriesContext`` records every statement a
cursor sends (``SAVEPOINT`` and ``RELEASE SAVEPOINT`` included), and the
connection writes its own transaction statements into the same log: Django's
``debug_transaction`` logs ``BEGIN`` (PostgreSQL: ``set_autocommit(False)``;
SQLite sends its ``BEGIN`` through a cursor), ``COMMIT`` and ``ROLLBACK``. The
tests run with ``transaction=True``, so that a request's ``atomic()`` is a real
transaction and not a savepoint inside the test's own; each confirm asserts
that its ``BEGIN`` and ``COMMIT`` are among the statements counted, so a count
that missed them would fail.

The targets hold with cache-backed sessions (``docs/howto/deploy.md``). With
database sessions Django's session store adds its own statements, listed
in :data:`DB_SESSION_STATEMENTS`; the package saves a session once per request.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.db import IntegrityError, connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_voicepassword import calls, verification
from django_voicepassword.client import SendResult
from django_voicepassword.gateways.base import get_gateway, reset_gateway
from django_voicepassword.models import Call, Challenge, PhoneNumber

pytestmark = pytest.mark.django_db(transaction=True)

BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django_voicepassword.auth_backends.PhoneCodeBackend",
]
KNOWN = "79990000001"  # has an account
UNKNOWN = "79990000003"  # has none: CREATE_USERS makes one at the login
LOGIN = "/voicepassword/login/"
API = "/voicepassword/api/challenges/"
EMULATED = {"API_KEY": "emulator-key", "LIMITS": {}, "CREATE_USERS": True}
CACHE_SESSIONS = "django.contrib.sessions.backends.cache"
DB_SESSIONS = "django.contrib.sessions.backends.db"

#: Issue #16's targets (6 and 10), transaction statements included; both are
#: below their targets now, and held there. On PostgreSQL a start stores the
#: challenge with its call's row in one statement, and the call's answer with
#: the code's digest in another, and a confirm reads
#: the number's user in the statement that counts the attempt (each two
#: elsewhere); a returning user's confirm has no user to link: its challenge
#: and call hold the user from the start.
POSTGRESQL = connection.vendor == "postgresql"
START = 3 if POSTGRESQL else 5
CONFIRM_KNOWN = 6 if POSTGRESQL else 7
#: Not a target: what a first login costs now (a user and a number created), kept
#: as a ceiling so that it does not grow unnoticed.
CONFIRM_FIRST = 14 if POSTGRESQL else 15
#: How a separate UPDATE that uses the code would begin (there is none).
CONSUME = 'UPDATE "voicepassword_challenge" SET "verified_at"'
#: The API's confirm finds the challenge with its attempt: one statement less;
#: on PostgreSQL a returning user's number is renewed in it too: two.
API_CONFIRM_SAVES = {KNOWN: 2 if POSTGRESQL else 1, UNKNOWN: 1}

#: Django's database session store, beyond the cache store. The HTML flow's
#: start creates the session (SELECT of the new key, BEGIN, INSERT, COMMIT);
#: login() loads it, cycles its key (SELECT of the new key, SAVEPOINT, INSERT,
#: RELEASE, SELECT and DELETE of the old row), and the login saves it
#: (SAVEPOINT, UPDATE, RELEASE). The API binds its start with the binding
#: cookie (:mod:`django_voicepassword.binding`): no session until the login,
#: which creates one (SELECT of the new key, SAVEPOINT, INSERT, RELEASE) and
#: saves it (SAVEPOINT, UPDATE, RELEASE).
DB_SESSION_STATEMENTS = {
    "html": {"start": 4, "confirm": 10},
    "api": {"start": 0, "confirm": 7},
}
#: The session rows a request writes with database sessions (INSERT or UPDATE).
DB_SESSION_WRITES = {
    "html": {"start": 1, "confirm": 2},  # created; the cycled key, then the login
    "api": {"start": 0, "confirm": 2},  # none; created by the login, then the login
}


@pytest.fixture(autouse=True)
def emulated(voicepassword_emulator, monkeypatch):
    monkeypatch.setattr(verification, "pause", lambda seconds: None)
    with override_settings(
        VOICEPASSWORD=EMULATED, AUTHENTICATION_BACKENDS=BACKENDS, LOGIN_REDIRECT_URL="/welcome/"
    ):
        reset_gateway()
        yield voicepassword_emulator
    reset_gateway()


@pytest.fixture
def user() -> Any:
    person = get_user_model().objects.create_user("alice", password=None)
    PhoneNumber.objects.create(user=person, number=KNOWN)
    return person


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in captured.captured_queries]


def session_writes(sql: list[str]) -> int:
    return sum(
        1 for text in sql if '"django_session"' in text and text.startswith(("INSERT", "UPDATE"))
    )


def start(client: Client, flow: str, number: str) -> str:
    """Start a login; the URL of its confirm."""
    if flow == "html":
        response = client.post(LOGIN, {"number": number})
        assert response.status_code == 302
        return str(response["Location"])
    response = client.post(API, {"number": "+" + number}, content_type="application/json")
    assert response.status_code == 201, response.content
    return f"{API}{response.json()['id']}/confirm/"


def confirm(client: Client, flow: str, url: str, code: str) -> None:
    if flow == "html":
        response = client.post(url, {"code": code})
        assert response.status_code == 302
        assert response["Location"] == "/welcome/"
    else:
        response = client.post(url, json.dumps({"code": code}), content_type="application/json")
        assert response.status_code == 200, response.content
        assert response.json()["verified"] is True


@pytest.mark.parametrize("engine", [CACHE_SESSIONS, DB_SESSIONS])
@pytest.mark.parametrize("flow", ["html", "api"])
@pytest.mark.parametrize(("number", "ceiling"), [(KNOWN, CONFIRM_KNOWN), (UNKNOWN, CONFIRM_FIRST)])
def test_a_login_keeps_to_its_statements(
    client: Client, user, emulated, settings, engine, flow, number, ceiling
):
    settings.SESSION_ENGINE = engine
    extra = DB_SESSION_STATEMENTS[flow] if engine == DB_SESSIONS else {"start": 0, "confirm": 0}

    with CaptureQueriesContext(connection) as started:
        url = start(client, flow, number)
    with CaptureQueriesContext(connection) as confirmed:
        confirm(client, flow, url, emulated.code_for(number))

    start_sql, confirm_sql = statements(started), statements(confirmed)
    assert len(start_sql) <= START + extra["start"], start_sql
    # The call's answer and the code: one statement where the database allows.
    placed = [sql for sql in start_sql if sql.startswith('UPDATE "voicepassword_call"')]
    coded = [sql for sql in start_sql if sql.startswith('UPDATE "voicepassword_challenge"')]
    with_call = [sql for sql in start_sql if sql.startswith("WITH placed AS (UPDATE")]
    if POSTGRESQL:
        assert (len(placed), len(coded), len(with_call)) == (0, 0, 1), start_sql
    else:
        assert (len(placed), len(coded), len(with_call)) == (1, 1, 0), start_sql
    # A new challenge is stored with its call's row, one statement on PostgreSQL.
    stored = [sql for sql in start_sql if sql.startswith("WITH new AS (INSERT")]
    assert len(stored) == int(POSTGRESQL), start_sql
    # A session keyed by this start has no challenge to reuse: none is looked for.
    assert not any(sql.startswith('SELECT "voicepassword_challenge"') for sql in start_sql)
    saved = API_CONFIRM_SAVES[number] if flow == "api" else 0
    assert len(confirm_sql) <= ceiling + extra["confirm"] - saved, confirm_sql
    # The count holds the transaction's own statements (see the module's docstring).
    # One transaction: the login's (atomic_login); nothing after it.
    assert sum(sql.startswith("BEGIN") for sql in confirm_sql) == 1
    assert confirm_sql.count("COMMIT") == 1
    # One save of the session per request: the middleware's second one writes nothing.
    if engine == DB_SESSIONS:
        assert session_writes(start_sql) == DB_SESSION_WRITES[flow]["start"], start_sql
        assert session_writes(confirm_sql) == DB_SESSION_WRITES[flow]["confirm"], confirm_sql
    # The API's start makes no session: nothing loaded or deleted at the login.
    # Its confirm finds the challenge with the statement that counts the
    # attempt: the challenge is not read first.
    if flow == "api":
        assert not any('"django_session"' in sql for sql in start_sql), start_sql
        assert not any(sql.startswith("DELETE") for sql in confirm_sql), confirm_sql
        reads = [sql for sql in confirm_sql if sql.startswith('SELECT "voicepassword_challenge"')]
        assert reads == [], confirm_sql
    # What the statements were for was done.
    assert SESSION_KEY in client.session
    [challenge] = Challenge.objects.filter(number=number)
    assert challenge.verified_at is not None
    assert challenge.attempts == 1
    assert challenge.user is not None
    assert PhoneNumber.objects.get(number=number).user == challenge.user
    assert Call.objects.get(challenge=challenge).user == challenge.user
    # Linked at the start when the number had its user then: nothing to write now.
    links = [sql for sql in confirm_sql if sql.startswith('UPDATE "voicepassword_call"')]
    assert len(links) == (1 if number == UNKNOWN else 0), confirm_sql
    # The user is read with the attempt on PostgreSQL, on its own elsewhere.
    lookups = [sql for sql in confirm_sql if 'FROM "voicepassword_phonenumber"' in sql]
    with_user = [sql for sql in confirm_sql if sql.startswith("WITH counted AS (UPDATE")]
    assert (len(lookups), len(with_user)) == ((0, 1) if POSTGRESQL else (1, 0)), confirm_sql
    # The attempt and the code's use are one statement: no UPDATE of its own
    # sets verified_at (a database without UPDATE ... RETURNING has one).
    uses = [sql for sql in confirm_sql if sql.startswith(CONSUME)]
    assert uses == [], confirm_sql
    # The number is marked verified once, a first login's too (by create_user()).
    # The API's confirm on PostgreSQL renews a returning user's number in the
    # statement that counts the attempt.
    marks = [sql for sql in confirm_sql if sql.startswith('UPDATE "voicepassword_phonenumber"')]
    renewals = [
        sql for sql in confirm_sql if 'renewed AS (UPDATE "voicepassword_phonenumber"' in sql
    ]
    in_attempt = flow == "api" and POSTGRESQL
    assert len(renewals) == int(in_attempt), confirm_sql
    # A first login's number is marked by create_user(): it had no row to renew.
    assert len(marks) == (0 if in_attempt and number == KNOWN else 1), confirm_sql


def test_confirm_reads_the_digest_when_the_database_cannot_return_rows(
    client: Client, user, emulated, monkeypatch
):
    # A database without UPDATE ... RETURNING (MySQL): the count, then a SELECT.
    monkeypatch.setattr(verification, "_returns_from_update", lambda connection: False)
    challenge = verification.start_challenge(KNOWN, request=None)
    code = emulated.code_for(KNOWN)
    wrong = "1111" if code != "1111" else "2222"

    with CaptureQueriesContext(connection) as refused:
        assert verification.confirm_challenge(challenge, wrong) is False
    assert verification.confirm_challenge(challenge, code) is True

    assert not any("RETURNING" in sql for sql in statements(refused))
    assert any('SELECT "voicepassword_challenge"."code_digest"' in s for s in statements(refused))
    challenge.refresh_from_db()
    assert challenge.attempts == 2
    assert challenge.verified_at is not None


@pytest.mark.parametrize(
    ("vendor", "returns"),
    [("postgresql", True), ("sqlite", True), ("mysql", False), ("oracle", False)],
)
def test_update_returning_is_used_where_the_plain_statement_returns_rows(vendor, returns):
    # Oracle can return rows from an UPDATE, but only with RETURNING ... INTO.
    database: Any = SimpleNamespace(vendor=vendor)
    assert verification._returns_from_update(database) is returns


@pytest.mark.parametrize("flow", ["html", "api"])
def test_a_second_start_in_the_same_session_finds_the_first(client: Client, user, emulated, flow):
    first = start(client, flow, KNOWN)
    with CaptureQueriesContext(connection) as again:
        second = start(client, flow, KNOWN)
    assert second == first
    assert any(sql.startswith('SELECT "voicepassword_challenge"') for sql in statements(again))
    assert Challenge.objects.count() == 1
    assert len(emulated.sends(KNOWN)) == 1


def test_a_request_id_given_twice_stores_neither_the_answer_nor_the_code(
    user, emulated, monkeypatch
):
    # The call's answer and the code's digest are one statement on PostgreSQL:
    # the duplicate request id refuses both, as the two statements did.
    first = verification.start_challenge(KNOWN, request=None)
    [taken] = Call.objects.filter(challenge=first).values_list("provider_id", flat=True)
    assert taken
    request_id = str(taken)
    real = get_gateway()

    class Repeating:
        def flash_call(self, number: str, **kwargs: Any) -> SendResult:
            return SendResult(
                id=request_id,
                number=number,
                price=Decimal("1.5"),
                code="1234",
                message=None,
                raw={},
            )

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    monkeypatch.setattr(calls, "get_gateway", Repeating)
    with pytest.raises(IntegrityError):
        verification.start_challenge(UNKNOWN, request=None)

    second = Challenge.objects.get(number=UNKNOWN)  # called: CREATE_USERS
    assert second.code_digest == ""
    assert not second.expires_at > timezone.now()
    call = Call.objects.get(challenge=second)
    assert (call.status, call.error_code, call.provider_id) == (
        Call.Status.UNKNOWN,
        "duplicate_provider_id",
        None,
    )
    assert Call.objects.get(challenge=first).provider_id == request_id


#: The deployment how-to's table of statements per request, by session engine.
DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "howto" / "deploy.md"
#: Its columns after the engine's: each flow's start, then its confirm for a
#: known number and for a first login.
DEPLOY_COLUMNS = [
    ("html", "start", KNOWN),
    ("html", "confirm", KNOWN),
    ("html", "confirm", UNKNOWN),
    ("api", "start", KNOWN),
    ("api", "confirm", KNOWN),
    ("api", "confirm", UNKNOWN),
]


def deploy_table() -> dict[str, list[int]]:
    """``{engine: [counts in DEPLOY_COLUMNS' order]}`` as the how-to prints them."""
    table = {}
    for line in DEPLOY.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `...backends."):
            engine, *counts = (cell.strip() for cell in line.strip().strip("|").split("|"))
            table[engine.strip("`").removeprefix("...backends.")] = [int(n) for n in counts]
    return table


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["cache", "cached_db", "db"])
@pytest.mark.parametrize("flow", ["html", "api"])
@pytest.mark.parametrize("number", [KNOWN, UNKNOWN])
def test_the_deployment_how_to_gives_the_counts_as_they_are(
    client: Client, user, emulated, settings, engine, flow, number
):
    """The table of statements per session engine in docs/howto/deploy.md, measured."""
    table = deploy_table()
    assert sorted(table) == ["cache", "cached_db", "db"]
    settings.SESSION_ENGINE = f"django.contrib.sessions.backends.{engine}"
    with CaptureQueriesContext(connection) as started:
        url = start(client, flow, number)
    with CaptureQueriesContext(connection) as confirmed:
        confirm(client, flow, url, emulated.code_for(number))
    measured = {"start": len(started.captured_queries), "confirm": len(confirmed.captured_queries)}
    printed = dict(zip(DEPLOY_COLUMNS, table[engine], strict=True))
    # A start's count is one column for both numbers.
    assert measured["start"] == printed[(flow, "start", KNOWN)]
    assert measured["confirm"] == printed[(flow, "confirm", number)]
