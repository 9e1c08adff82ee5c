"""The fraud guard against a pumping run: how soon it blocks, what it lets through, whom it hurts.

Run ``python bench/fraud.py [--attack N] [--hours H]`` (default 5,000 starts
over 72 hours). Nothing is timed: the figures are counts and money.

The script sets Django up on an in-memory SQLite database with the
local-memory cache and the locmem gateway (nothing leaves the process), the
fraud guard on with its defaults, ``CREATE_USERS`` on (so a login for a new
number is called: what a pumper needs) and the abuse limits off, so that the
guard alone is measured. The clock of the guard and the limits is moved by
the script. Over the simulated hours it interleaves, evenly:

* the attack: N logins to eight numbers of one prefix (``PREFIX_LENGTH``
  10: ``7999000009``), each from a fresh session, none ever confirmed;
* normal logins: accounts that exist (in the attacked prefix and in another
  one) log in and enter their code;
* normal sign-ups: new numbers of four other prefixes log in, and four of
  five enter their code.

It judges (exit status 0 pass, 1 miss, 2 not run; see ``bench/_harness.py``):

* the work: every start either sent a code (the locmem outbox has it) or was
  refused by a limit, and every normal confirmation succeeded;
* the targets: the first block of the attacked prefix within
  :data:`BLOCK_WITHIN` attack starts; the attack's sends cost at most
  :data:`COST_PER_DAY` a day (at ``PRICE_ESTIMATES``); no normal login and
  no normal sign-up refused; no other prefix blocked.

``tests/test_bench.py`` runs :func:`simulate` under the test settings, on the
guard and on a site without it (which must miss).
"""

from __future__ import annotations

import argparse
import math
import secrets
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from _harness import Verdict, main, spread

#: Accounts that log in: two in the attacked prefix, the rest in 7999000004.
ACCOUNTS = ("79990000091", "79990000097", *(f"799900000{n}" for n in range(40, 50)))
#: The attacked prefix's other numbers (emulator test numbers that answer): a
#: pumper sends to the numbers it is paid for, which have no account here.
ATTACK_NUMBERS = tuple(
    number for number in (f"799900000{n}" for n in range(90, 100)) if number not in ACCOUNTS
)
#: New numbers that sign up, in four other prefixes.
SIGN_UPS = tuple(f"799900000{n}" for n in range(50, 90))
#: The guard's figures this run is judged by (its defaults).
BLOCK_WITHIN = 20
COST_PER_DAY = Decimal("10.00")
#: What a simulated site sets.
VOICEPASSWORD: dict[str, Any] = {
    "GATEWAY": "django_voicepassword.gateways.LocmemGateway",
    "CREATE_USERS": True,
    "LIMITS": {},
    "PREFIX_LENGTH": 10,
    "FRAUD_GUARD": {},
}


class Clock:
    """The guard's and the limits' clock, moved by the run."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Report:
    """What one simulated run did."""

    hours: float
    attack_starts: int = 0
    attack_sent: int = 0
    attack_refused: int = 0
    #: Attack starts made before the first refusal (the first block's cost in sends).
    first_block_after: int | None = None
    normal_logins: int = 0
    normal_refused: int = 0
    sign_ups: int = 0
    sign_ups_refused: int = 0
    confirmed: int = 0
    confirm_failures: int = 0
    cost: Decimal = Decimal("0")
    blocks: Counter[str] = field(default_factory=Counter)
    unaccounted: int = 0

    @property
    def cost_per_day(self) -> Decimal:
        """The attack's cost over the run, per 24 hours (a run under a day counts as one)."""
        days = max(1.0, self.hours / 24)
        return (self.cost / Decimal(str(days))).quantize(Decimal("0.01"))

    def lines(self) -> list[str]:
        """The figures, as ``docs/benchmarks.md`` quotes them."""
        return [
            f"attack: {self.attack_starts} starts over {self.hours:g} h, "
            f"{self.attack_sent} sent, {self.attack_refused} refused; "
            f"first block after {self.first_block_after} starts",
            f"attack cost: {self.cost} ({self.cost_per_day} a day)",
            f"normal logins: {self.normal_logins}, refused {self.normal_refused}; "
            f"sign-ups: {self.sign_ups}, refused {self.sign_ups_refused}; "
            f"confirmed {self.confirmed}, confirmations failed {self.confirm_failures}",
            f"blocks: {dict(self.blocks) or 'none'}",
        ]


def _request() -> Any:
    """A request from a fresh session (a pumper's bots rotate them)."""
    from django.test import RequestFactory

    request: Any = RequestFactory().post("/", REMOTE_ADDR="192.0.2.1")
    request.session = SimpleNamespace(session_key=secrets.token_hex(16))
    return request


def simulate(
    attack: int = 5000, hours: float = 72.0, *, per_hour: int = 12, start: float = 1.8e9
) -> Report:
    """Run the pumping scenario on the configured site (Django set up); see the module docstring.

    Moves :mod:`~django_voicepassword.fraud`'s and
    :mod:`~django_voicepassword.ratelimit`'s clocks (and puts them back), and
    replaces the stand-in pause. The caller sets the settings
    (:data:`VOICEPASSWORD`, or a broken variant) and gives a fresh cache.
    ``per_hour`` normal logins and as many sign-ups come in each hour.
    """
    import django_voicepassword
    from django_voicepassword import fraud, ratelimit, verification
    from django_voicepassword.adapter import get_adapter
    from django_voicepassword.conf import settings
    from django_voicepassword.gateways import get_gateway
    from django_voicepassword.models import PrefixBlock

    clock = Clock(start)
    saved = (fraud._now, ratelimit._now, verification.pause)
    fraud._now = ratelimit._now = clock
    verification.pause = lambda seconds: None
    django_voicepassword.outbox = []
    report = Report(hours)
    gateway: Any = get_gateway()
    if hasattr(gateway, "emulator"):
        # The offline gateway's provider charges its calls: never let it run dry.
        gateway.emulator.balance = 10**9
    adapter = get_adapter()
    for number in ACCOUNTS:
        if adapter.get_user(number) is None:
            adapter.mark_verified(adapter.create_user(number, None), number)
    # Per hour: as many attack starts as the run asks, and a steady site.
    normal = max(1, round(per_hour * hours))
    events = [("attack", i) for i in range(attack)]
    events += [("login", i) for i in range(normal)] + [("sign-up", i) for i in range(normal)]
    # Interleaved evenly over the run by their share of it.
    counts = {"attack": attack, "login": normal, "sign-up": normal}
    events.sort(key=lambda event: (event[1] + 0.5) / counts[event[0]])
    step = hours * 3600 / len(events)
    price = settings.PRICE_ESTIMATES["flash_call"]
    try:
        for kind, index in events:
            clock.now += step
            if kind == "attack":
                _attack(report, ATTACK_NUMBERS[index % len(ATTACK_NUMBERS)], price)
            elif kind == "login":
                _normal(report, ACCOUNTS[index % len(ACCOUNTS)], confirm=True, sign_up=False)
            else:
                _normal(
                    report, SIGN_UPS[index % len(SIGN_UPS)], confirm=index % 5 != 4, sign_up=True
                )
    finally:
        fraud._now, ratelimit._now, verification.pause = saved
    for block in PrefixBlock.objects.all():
        report.blocks[block.prefix or block.country] += 1
    return report


def _send(number: str) -> tuple[Any, bool]:
    """Start a login to ``number``: (the challenge, or ``None`` when a limit refused)."""
    import django_voicepassword
    from django_voicepassword.ratelimit import LimitExceeded
    from django_voicepassword.verification import start_challenge

    before = len(django_voicepassword.outbox)
    try:
        challenge = start_challenge(number, request=_request())
    except LimitExceeded:
        return None, False
    return challenge, len(django_voicepassword.outbox) > before


def _attack(report: Report, number: str, price: Decimal) -> None:
    report.attack_starts += 1
    challenge, sent = _send(number)
    if challenge is None:
        report.attack_refused += 1
        if report.first_block_after is None:
            report.first_block_after = report.attack_starts - 1
        return
    if not sent:
        report.unaccounted += 1
    report.attack_sent += 1
    report.cost += price


def _normal(report: Report, number: str, *, confirm: bool, sign_up: bool) -> None:
    import django_voicepassword
    from django_voicepassword.verification import confirm_challenge

    if sign_up:
        report.sign_ups += 1
    else:
        report.normal_logins += 1
    challenge, sent = _send(number)
    if challenge is None:
        if sign_up:
            report.sign_ups_refused += 1
        else:
            report.normal_refused += 1
        return
    if not sent:
        report.unaccounted += 1
        return
    if confirm:
        code = django_voicepassword.outbox[-1].code
        try:
            ok = confirm_challenge(challenge, code or "")
        except Exception:  # any refusal is a failed confirmation here
            ok = False
        report.confirmed += ok
        report.confirm_failures += not ok


def judge(report: Report) -> Verdict:
    """The verdict on one run (see the module docstring)."""
    verdict = Verdict()
    attacked = ATTACK_NUMBERS[0][:10]
    verdict.require(
        "every start sent a code or was refused",
        report.unaccounted == 0,
        f"{report.unaccounted} starts neither sent nor refused",
    )
    verdict.require(
        "every normal confirmation succeeded",
        report.confirm_failures == 0 and report.confirmed > 0,
        f"{report.confirmed} confirmed, {report.confirm_failures} failed",
    )
    verdict.require(
        "the attacked prefix was blocked",
        report.blocks.get(attacked, 0) > 0 and report.first_block_after is not None,
        f"blocks: {dict(report.blocks)}",
    )
    verdict.target(
        "attack starts before the first block",
        spread([math.inf if report.first_block_after is None else report.first_block_after]),
        at_most=BLOCK_WITHIN,
        digits=0,
    )
    verdict.target(
        "attack cost a day",
        spread([float(report.cost_per_day)]),
        at_most=float(COST_PER_DAY),
        digits=2,
    )
    verdict.require(
        "no normal login refused", report.normal_refused == 0, f"{report.normal_refused} refused"
    )
    verdict.require(
        "no sign-up in another prefix refused",
        report.sign_ups_refused == 0,
        f"{report.sign_ups_refused} refused",
    )
    others = {prefix: n for prefix, n in report.blocks.items() if prefix != attacked}
    verdict.require("no other prefix or country blocked", not others, f"{others or 'none'}")
    return verdict


def run(args: argparse.Namespace) -> Verdict:
    """Set Django up in memory, simulate, print the figures, judge them."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        SECRET_KEY="bench-only-secret-key-not-for-production",  # noqa: S106 (not a secret)
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_voicepassword",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        VOICEPASSWORD=VOICEPASSWORD,
    )
    django.setup()
    call_command("migrate", verbosity=0)
    report = simulate(args.attack, args.hours)
    print("\n".join(report.lines()))
    return judge(report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attack", type=int, default=5000, help="attack starts (default 5000)")
    parser.add_argument("--hours", type=float, default=72.0, help="simulated hours (default 72)")
    main(run, parser)
