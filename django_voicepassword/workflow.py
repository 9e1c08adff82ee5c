"""Workflows: the channels a challenge moves through on its own until a code is confirmed.

Without a workflow the person whose flash call does not arrive presses "call
me again" or "read out the code". With ``VOICEPASSWORD["WORKFLOW"]`` the
server takes the next step itself: a flash call, then after ``wait`` seconds
without a confirmed code a voice call, then an SMS of the last call's code
(``SMS_FALLBACK``). The steps of a number may be overridden by its region or
its operator (:func:`operator_of`, a hint: a ported number keeps the
operator of its prefix in libphonenumber's data).

A step is taken by :func:`take_step`: by the ``take_step`` task of
:mod:`django_voicepassword.tasks` at its time (``"tasks": True``, on a backend
that can run a task later), or by the next poll of the code page or of the
API (:func:`advance`) when no worker runs. Whoever takes it, it is taken once:
one conditional ``UPDATE`` of the challenge (``step`` and ``next_step_at``)
claims it, and of two workers or polls racing only one wins. It counts like a
resend: the ``number``, ``prefix`` and ``global`` limits and the daily budget
(a worker has no request, so no ``ip``, ``network`` or ``session`` scope);
a step they refuse stops the workflow, with a logged warning, and the person
asks for the next code as without one.

The privacy rule of logins holds here too (``docs/decisions.md``, "Accounts
and enumeration"): the plan depends on the number alone, and a login for a
number without an account takes the same steps at the same times, placing
nothing (:func:`~django_voicepassword.verification.pause` stands in for each
call). So a failed call moves a *verification* on at once (a receiver of
``callback_received``), never a login: a number without an account is
never called, so it cannot fail, and an early step would tell who has one.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import phonenumbers
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from django_voicepassword import calls, verification
from django_voicepassword.client import CallState
from django_voicepassword.conf import ConfigurationError, settings
from django_voicepassword.exceptions import VoicePasswordError
from django_voicepassword.models import Call, CallbackEvent, Challenge, status_for_state
from django_voicepassword.phone import mask
from django_voicepassword.signals import callback_received

__all__ = [
    "FAILED_STATUSES",
    "SKIPPED",
    "STOPPED",
    "TAKEN",
    "WORKER_GRACE",
    "Step",
    "Workflow",
    "WorkflowError",
    "advance",
    "first_step",
    "known_operators",
    "move_on_failed_call",
    "next_step",
    "operator_of",
    "plan_for",
    "problems",
    "read_workflow",
    "schedule",
    "take_step",
]

logger = logging.getLogger(__name__)

#: What :func:`take_step` did: the step was taken (its code sent, or for a
#: number without an account, stood in for); it was not wanted (taken by
#: someone else, not due, the challenge is over); or it was refused (a
#: limit, the budget, a verification's failed send) and the workflow stopped.
TAKEN: Final = "taken"
SKIPPED: Final = "skipped"
STOPPED: Final = "stopped"

#: Seconds a poll leaves a worker (``"tasks": True``) to take a due step
#: before taking it itself: a late or unreachable worker slows a workflow
#: down by this much, never stops it.
WORKER_GRACE: Final = 10

#: The statuses of a call that will not bring its code: a verification's
#: next step is taken at once (when the provider's ``state`` agrees).
FAILED_STATUSES: Final = frozenset(
    {
        Call.Status.BUSY,
        Call.Status.NO_ANSWER,
        Call.Status.FAILED,
        Call.Status.CANCELLED,
        Call.Status.NOT_PLACED,
    }
)

_CHANNELS: Final = (
    Call.Channel.FLASH_CALL.value,
    Call.Channel.VOICE_CALL.value,
    Call.Channel.SMS.value,
)
_KEYS: Final = frozenset({"steps", "regions", "operators", "tasks"})
_STEP_KEYS: Final = frozenset({"channel", "wait"})


class WorkflowError(ValueError):
    """``WORKFLOW`` cannot be used; the message says where and why (no number in it)."""


@dataclass(frozen=True)
class Step:
    """One step: the ``channel`` a code is sent by, and the seconds to ``wait`` for it.

    ``wait`` is ``None`` on the last step: nothing follows it.
    """

    channel: str
    wait: int | None


@dataclass(frozen=True)
class Workflow:
    """``WORKFLOW`` as read: the default steps, the overrides, and whether a worker takes steps.

    Region codes are as libphonenumber spells them (``"KZ"``); operator names
    are kept casefolded.
    """

    steps: tuple[Step, ...]
    regions: Mapping[str, tuple[Step, ...]]
    operators: Mapping[str, tuple[Step, ...]]
    tasks: bool


# --- reading the setting -------------------------------------------------------------


def _read_steps(value: Any, where: str) -> tuple[Step, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise WorkflowError(f"{where} must be a non-empty list of steps.")
    steps: list[Step] = []
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping) or not set(item) <= _STEP_KEYS:
            raise WorkflowError(f"{at} must be a dict of 'channel' and 'wait'.")
        channel = item.get("channel")
        if channel not in _CHANNELS:
            raise WorkflowError(f"{at}['channel'] must be one of {', '.join(_CHANNELS)}.")
        wait = item.get("wait")
        last = index == len(value) - 1
        if last and wait is not None:
            raise WorkflowError(f"{at} is the last step: nothing follows it, so no 'wait'.")
        if not last and (
            isinstance(wait, bool) or not isinstance(wait, int) or not 1 <= wait < 86400
        ):
            raise WorkflowError(f"{at}['wait'] must be a whole number of seconds, 1 or more.")
        if channel == Call.Channel.SMS:
            if not steps:
                raise WorkflowError(f"{at}: an SMS re-sends a call's code, so a call comes first.")
            if steps[-1].channel == Call.Channel.SMS:
                raise WorkflowError(f"{at}: a call has one SMS at most.")
        steps.append(Step(channel, wait))
    return tuple(steps)


def read_workflow(value: Mapping[str, Any]) -> Workflow:
    """``value`` (the ``WORKFLOW`` dict) as a :class:`Workflow`; :class:`WorkflowError` if invalid.

    Checks the shape, the channels and waits of every list of steps, the
    region codes and the operator names (:func:`known_operators`). The
    settings the steps depend on (``SMS_FALLBACK``, ``CHALLENGE_TTL``) are
    checked by :func:`problems`.
    """
    unknown = sorted(str(key) for key in value if key not in _KEYS)
    if unknown:
        raise WorkflowError(
            f"Unknown WORKFLOW key(s): {', '.join(unknown)}; use steps, regions, operators, tasks."
        )
    steps = _read_steps(value.get("steps"), "WORKFLOW['steps']")
    regions_in = value.get("regions") or {}
    operators_in = value.get("operators") or {}
    if not isinstance(regions_in, Mapping) or not isinstance(operators_in, Mapping):
        raise WorkflowError("WORKFLOW['regions'] and ['operators'] must be dicts of steps.")
    regions: dict[str, tuple[Step, ...]] = {}
    for region, region_steps in regions_in.items():
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise WorkflowError(f"WORKFLOW['regions']: {region!r} is not a region code ('RU').")
        regions[region] = _read_steps(region_steps, f"WORKFLOW['regions'][{region!r}]")
    operators: dict[str, tuple[Step, ...]] = {}
    known = known_operators()
    for name, operator_steps in operators_in.items():
        if not isinstance(name, str) or name.casefold() not in known:
            raise WorkflowError(
                f"WORKFLOW['operators']: {name!r} is not an operator libphonenumber knows."
            )
        operators[name.casefold()] = _read_steps(
            operator_steps, f"WORKFLOW['operators'][{name!r}]"
        )
    tasks = value.get("tasks", False)
    if not isinstance(tasks, bool):
        raise WorkflowError("WORKFLOW['tasks'] must be True or False.")
    return Workflow(steps, regions, operators, tasks)


def problems() -> list[str]:
    """What is wrong with ``WORKFLOW`` (for the system check ``voicepassword.E012``)."""
    value = settings.WORKFLOW
    if value is None:
        return []
    try:
        workflow = read_workflow(value)
    except WorkflowError as error:
        return [str(error)]
    found: list[str] = []
    plans = [workflow.steps, *workflow.regions.values(), *workflow.operators.values()]
    if not settings.SMS_FALLBACK and any(s.channel == "sms" for plan in plans for s in plan):
        found.append("WORKFLOW has an SMS step, but SMS_FALLBACK is off.")
    ttl = settings.CHALLENGE_TTL
    if any(s.wait is not None and s.wait >= ttl for plan in plans for s in plan):
        found.append(
            f"A WORKFLOW 'wait' is not shorter than CHALLENGE_TTL ({ttl} s): the code "
            "would expire before the next step."
        )
    return found


def _workflow() -> Workflow | None:
    """The site's workflow; ``None`` when there is none or it cannot be used (logged)."""
    value = settings.WORKFLOW
    if value is None:
        return None
    try:
        return read_workflow(value)
    except WorkflowError as error:
        # The system check (voicepassword.E012) says so at start; a site that
        # runs all the same gets manual resends, never a half-read workflow.
        logger.warning("WORKFLOW ignored, the person resends by hand: %s", error)
        return None


# --- operators -----------------------------------------------------------------------


@functools.cache
def known_operators() -> frozenset[str]:
    """Every operator name in libphonenumber's carrier data (any language), casefolded."""
    from phonenumbers.carrierdata import CARRIER_DATA

    return frozenset(
        name.casefold() for names in CARRIER_DATA.values() for name in names.values() if name
    )


def _parsed(number: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse("+" + number)
    except phonenumbers.NumberParseException:
        return None


def operator_of(number: str) -> str:
    """The operator libphonenumber gives for ``number`` (normalized), in English; ``""``: none.

    A hint: the data maps number blocks to the operator they were given to,
    and a number ported to another operator keeps its block (Russia has had
    number portability since 2013).
    """
    parsed = _parsed(number)
    if parsed is None:
        return ""
    from phonenumbers import carrier

    return str(carrier.name_for_number(parsed, "en"))


def plan_for(number: str) -> tuple[Step, ...]:
    """The steps of a challenge for ``number``: its operator's, its region's, or the default.

    Empty without a (usable) workflow. Depends on the number alone, never on
    whether it has an account.
    """
    workflow = _workflow()
    if workflow is None:
        return ()
    parsed = _parsed(number)
    if parsed is not None and workflow.operators:
        from phonenumbers import carrier

        for lang in ("en", "ru"):
            name = str(carrier.name_for_number(parsed, lang)).casefold()
            if name and name in workflow.operators:
                return workflow.operators[name]
    if parsed is not None and workflow.regions:
        region = phonenumbers.region_code_for_number(parsed)
        if region is not None and region in workflow.regions:
            return workflow.regions[region]
    return workflow.steps


def first_step(number: str, channel: str) -> tuple[str, int, int | None]:
    """Where a challenge for ``number`` asked to start by ``channel`` starts.

    ``(channel, step, wait)``: the first step of the plan by ``channel``, or
    the plan's first step when ``channel`` is not in it (an operator that
    blocks flash calls starts with a voice call); ``wait`` is the seconds
    until the next step (``None``: none). Without a workflow:
    ``(channel, 0, None)``.
    """
    plan = plan_for(number)
    for index, step in enumerate(plan):
        if step.channel == channel:
            return channel, index, step.wait
    if plan:
        return plan[0].channel, 0, plan[0].wait
    return channel, 0, None


def next_step(challenge: Challenge, now: datetime) -> tuple[int | None, str | None]:
    """``(seconds until the next step, its channel)`` of ``challenge``; ``(None, None)``: none."""
    if (
        challenge.next_step_at is None
        or challenge.verified_at is not None
        or challenge.expires_at <= now
    ):
        return None, None
    plan = plan_for(challenge.number)
    following = challenge.step + 1
    if following >= len(plan):
        return None, None
    seconds = max(0, int((challenge.next_step_at - now).total_seconds() + 0.999))
    return seconds, plan[following].channel


# --- taking a step ---------------------------------------------------------------------


def _stop(pk: uuid.UUID, step: int) -> None:
    Challenge.objects.filter(pk=pk, step=step).update(next_step_at=None)


def take_step(challenge_id: str | uuid.UUID, step: int) -> str:
    """Take the step after ``step`` of a challenge, if it is due and nobody took it.

    What the ``take_step`` task and :func:`advance` run. One conditional
    ``UPDATE`` claims the step (the challenge still at ``step``, its
    ``next_step_at`` passed, not confirmed, not expired): of any number of
    workers and polls racing, one gets :data:`TAKEN` and the others
    :data:`SKIPPED`; nothing is sent twice. The claim starts the next
    cooldown, as a resend does. Then the limits and the budget count the
    send and the code goes out as :func:`~.verification.resend_challenge`
    sends it (a login's failed send looks sent; a number without an account
    is stood in for). A limit, the budget or a verification's failed send
    gives the claim back, stops the workflow and logs a warning:
    :data:`STOPPED`. A broken configuration is raised after the same.
    """
    try:
        pk = challenge_id if isinstance(challenge_id, uuid.UUID) else uuid.UUID(challenge_id)
    except (TypeError, ValueError, AttributeError):
        return SKIPPED
    fresh = Challenge.objects.filter(pk=pk).first()
    now = timezone.now()
    if (
        fresh is None
        or fresh.step != step
        or fresh.next_step_at is None
        or fresh.next_step_at > now
        or fresh.verified_at is not None
        or fresh.expires_at <= now
    ):
        return SKIPPED
    plan = plan_for(fresh.number)
    following = step + 1
    if following >= len(plan):
        # The settings changed under the challenge: nothing to move on to.
        _stop(pk, step)
        return SKIPPED
    target = plan[following]
    sends = fresh.sends + 1
    claimed = Challenge.objects.filter(
        pk=pk,
        step=step,
        sends=fresh.sends,
        next_step_at__lte=now,
        verified_at__isnull=True,
        expires_at__gt=now,
    ).update(
        step=following,
        sends=sends,
        resend_at=now + verification._cooldown(sends),
        next_step_at=None if target.wait is None else now + timedelta(seconds=target.wait),
    )
    if not claimed:
        return SKIPPED

    def give_back() -> None:
        # Nothing was sent: the cooldown and the step are given back, and the
        # workflow stops; the old code goes on working.
        Challenge.objects.filter(pk=pk, step=following, sends=sends).update(
            step=step, sends=fresh.sends, resend_at=fresh.resend_at, next_step_at=None
        )

    result = verification.send_step(fresh, target.channel, sends=sends, give_back=give_back)
    if result == verification.SENT and target.wait is not None:
        fresh.refresh_from_db()
        schedule(fresh)
    return TAKEN if result == verification.SENT else STOPPED


def advance(challenge: Challenge) -> Challenge:
    """Take ``challenge``'s next step if it is due: what a poll of the code page or the API does.

    With ``"tasks": True`` a worker takes it at its time, and a poll only
    :data:`WORKER_GRACE` seconds later (a worker that is late or down). Returns
    ``challenge`` as the database has it now.
    """
    if challenge.next_step_at is None:
        return challenge
    workflow = _workflow()
    if workflow is None:
        return challenge
    grace = timedelta(seconds=WORKER_GRACE if workflow.tasks else 0)
    if challenge.next_step_at + grace > timezone.now():
        return challenge
    if workflow.tasks:
        logger.warning(
            "Workflow step for %s overdue: taken by a poll (is the worker running?)",
            mask(challenge.number),
        )
    take_step(challenge.pk, challenge.step)
    challenge.refresh_from_db()
    return challenge


def schedule(challenge: Challenge, *, at: datetime | None = None) -> None:
    """Enqueue the ``take_step`` task for ``challenge``'s next step (``"tasks": True`` only).

    At ``at`` or the challenge's ``next_step_at``, on ``ASYNC_SEND_BACKEND``
    and ``ASYNC_SEND_QUEUE``; after the commit when inside a transaction. A
    task that cannot be enqueued is logged: the next poll takes the step.
    """
    workflow = _workflow()
    when = at or challenge.next_step_at
    if workflow is None or not workflow.tasks or when is None:
        return
    pk, step, number = str(challenge.pk), challenge.step, challenge.number

    def enqueue() -> None:
        try:
            from django_voicepassword import tasks

            tasks.take_step.using(
                backend=settings.ASYNC_SEND_BACKEND,
                queue_name=settings.ASYNC_SEND_QUEUE,
                run_after=when,
            ).enqueue(pk, step)
        except Exception as error:  # any way a backend fails: the poll takes over
            logger.warning(
                "Workflow step for %s not enqueued (%s): the next poll takes it",
                mask(number),
                type(error).__name__,
            )

    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(enqueue, robust=True)
    else:
        enqueue()


@receiver(
    callback_received, sender=CallbackEvent, dispatch_uid="voicepassword-workflow-failed-call"
)
def move_on_failed_call(
    sender: type[CallbackEvent],
    event: CallbackEvent,
    outcome: str,
    state: CallState | None,
    **kwargs: Any,
) -> None:
    """A verification's call failed: take its next step now, not at the end of the wait.

    Heard through ``callback_received``, sent after the callback's commit, and
    not through ``call_status_changed``: a receiver of that signal makes every
    delivery of a call take turns inside the process (``callbacks._turn``),
    which the workflow does not need. A callback is a hint: the provider's
    ``state`` is asked first (it costs nothing; the step costs a call). The
    challenge's ``next_step_at`` is pulled in by a conditional ``UPDATE`` only
    while the failed call is the one whose code it holds; the step itself
    re-checks everything and is claimed once (:func:`take_step`). Logins are
    left to their schedule (see the module's documentation).
    """
    if outcome != CallbackEvent.Outcome.APPLIED or status_for_state(state) not in FAILED_STATUSES:
        return
    if settings.WORKFLOW is None:
        return  # no workflow: a callback stays one statement, no query more
    call = Call.objects.filter(pk=event.call_id).first() if event.call_id else None
    if call is None or call.challenge_id is None or call.channel == "sms":
        return
    challenge = Challenge.objects.filter(
        pk=call.challenge_id, purpose=Challenge.Purpose.VERIFY, next_step_at__isnull=False
    ).first()
    if challenge is None or _workflow() is None:
        return
    last = verification._last_call(challenge)
    if last is None or last.pk != call.pk:
        return
    try:
        calls.refresh_call(call)
    except (VoicePasswordError, ConfigurationError) as error:
        logger.info("Failed call not confirmed (%s): the step keeps its time", error)
        return
    if call.status not in FAILED_STATUSES:
        return
    now = timezone.now()
    pulled = Challenge.objects.filter(
        pk=challenge.pk,
        step=challenge.step,
        next_step_at__gt=now,
        verified_at__isnull=True,
        expires_at__gt=now,
    ).update(next_step_at=now)
    if pulled:
        challenge.next_step_at = now
        schedule(challenge, at=now)
